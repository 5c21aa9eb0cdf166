/* Who may use the bus: the broker's own uid, and the users and groups of the allow-list
 * (--allow-user, --allow-group). On ipc the kernel names every peer's uid and gid; a
 * registration from anyone else is refused. Peers without kernel credentials (tcp) are
 * not checked here: tcp is for loopback or trusted networks until it gets CURVE. */
#ifndef LC_BROKER_ACCESS_H
#define LC_BROKER_ACCESS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#define ACCESS_MAX 64

typedef struct {
    uid_t uids[ACCESS_MAX];
    size_t nuids;
    gid_t gids[ACCESS_MAX];
    size_t ngids;
} access_list_t;

/* Adds the users (names or numbers, separated by commas or spaces) to the list. Returns 0,
 * or -1 after writing which one is unknown into err. */
int access_add_users(access_list_t *self, const char *list, char *err, size_t errlen);

/* The same for groups. */
int access_add_groups(access_list_t *self, const char *list, char *err, size_t errlen);

/* A group's id from its name or number. Returns 0, or -1 if there is no such group. */
int access_group_id(const char *name, gid_t *out);

/* Whether a peer with this uid, gid and pid (from the kernel) may use the bus: it is the
 * broker's own effective uid, a listed user, or its process is in a listed group (its gid,
 * or one of the supplementary groups the kernel gives the process in /proc/PID/status;
 * read from the kernel, not the user database, so a process that dropped a group is not
 * let in by it and no name service is asked from the broker's loop). */
bool access_allowed(const access_list_t *self, uid_t uid, gid_t gid, pid_t pid);

/* "uids 1001, 1002; groups 20" for messages ("" for an empty list). */
void access_describe(const access_list_t *self, char *buf, size_t size);

#endif
