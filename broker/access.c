/* The bus's allow-list (see access.h). */
#include "access.h"

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Splits list at commas and spaces; calls one() for each word. */
static int s_each(access_list_t *self, const char *list, char *err, size_t errlen,
                  int (*one)(access_list_t *, const char *, char *, size_t))
{
    char *copy = strdup(list ? list : "");
    if (!copy) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    int rc = 0;
    char *save = NULL;
    for (char *w = strtok_r(copy, ", ", &save); w && rc == 0; w = strtok_r(NULL, ", ", &save))
        rc = one(self, w, err, errlen);
    free(copy);
    return rc;
}

static bool s_number(const char *word, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(word, &end, 10);
    if (!*word || *end || errno || v < 0 || v > 0x7fffffffL)
        return false;
    *out = v;
    return true;
}

static int s_user(access_list_t *self, const char *word, char *err, size_t errlen)
{
    long n;
    uid_t uid;
    if (s_number(word, &n)) {
        uid = (uid_t)n;
    } else {
        struct passwd *pw = getpwnam(word);
        if (!pw) {
            snprintf(err, errlen, "no user '%s' on this system (allow-list of users)", word);
            return -1;
        }
        uid = pw->pw_uid;
    }
    if (self->nuids == ACCESS_MAX) {
        snprintf(err, errlen, "more than %d users in the allow-list; use a group", ACCESS_MAX);
        return -1;
    }
    self->uids[self->nuids++] = uid;
    return 0;
}

int access_group_id(const char *name, gid_t *out)
{
    long n;
    if (s_number(name, &n)) {
        *out = (gid_t)n;
        return 0;
    }
    struct group *gr = getgrnam(name);
    if (!gr)
        return -1;
    *out = gr->gr_gid;
    return 0;
}

static int s_group(access_list_t *self, const char *word, char *err, size_t errlen)
{
    gid_t gid;
    if (access_group_id(word, &gid) < 0) {
        snprintf(err, errlen, "no group '%s' on this system (allow-list of groups)", word);
        return -1;
    }
    if (self->ngids == ACCESS_MAX) {
        snprintf(err, errlen, "more than %d groups in the allow-list", ACCESS_MAX);
        return -1;
    }
    self->gids[self->ngids++] = gid;
    return 0;
}

int access_add_users(access_list_t *self, const char *list, char *err, size_t errlen)
{
    return s_each(self, list, err, errlen, s_user);
}

int access_add_groups(access_list_t *self, const char *list, char *err, size_t errlen)
{
    return s_each(self, list, err, errlen, s_group);
}

static bool s_gid_listed(const access_list_t *self, gid_t gid)
{
    for (size_t i = 0; i < self->ngids; i++)
        if (self->gids[i] == gid)
            return true;
    return false;
}

/* The supplementary groups of a running process, from the kernel (/proc/PID/status, line
 * "Groups:"): what it may really use, not what the user database says. */
static bool s_proc_in_groups(const access_list_t *self, pid_t pid)
{
    char path[64], line[4096];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    bool found = false;
    while (!found && fgets(line, sizeof line, f)) {
        if (strncmp(line, "Groups:", 7) != 0)
            continue;
        char *p = line + 7, *end;
        for (;;) {
            errno = 0;
            unsigned long g = strtoul(p, &end, 10);
            if (end == p || errno)
                break;
            if (s_gid_listed(self, (gid_t)g)) {
                found = true;
                break;
            }
            p = end;
        }
        break;
    }
    fclose(f);
    return found;
}

bool access_allowed(const access_list_t *self, uid_t uid, gid_t gid, pid_t pid)
{
    if (uid == geteuid())
        return true;
    for (size_t i = 0; i < self->nuids; i++)
        if (self->uids[i] == uid)
            return true;
    if (!self->ngids)
        return false;
    return s_gid_listed(self, gid) || (pid > 0 && s_proc_in_groups(self, pid));
}

void access_describe(const access_list_t *self, char *buf, size_t size)
{
    size_t at = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < self->nuids && at < size; i++)
        at += (size_t)snprintf(buf + at, size - at, "%s%u", i ? ", " : "uids ",
                               (unsigned)self->uids[i]);
    for (size_t i = 0; i < self->ngids && at < size; i++)
        at += (size_t)snprintf(buf + at, size - at, "%s%u",
                               i ? ", " : (self->nuids ? "; groups " : "groups "),
                               (unsigned)self->gids[i]);
}
