/* Who may connect: the socket and its folder are private by default, and a process of
 * another user that can reach the socket (through --group) is still refused by the broker
 * unless the allow-list names it. */
#include "harness.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

TestSuite(access, .init = h_setup, .fini = h_teardown, .timeout = 60);

static mode_t s_mode(const char *path)
{
    struct stat st;
    cr_assert_eq(stat(path, &st), 0, "stat %s", path);
    return st.st_mode & 07777;
}

Test(access, the_socket_and_its_folder_are_private_by_default)
{
    /* A folder the broker creates itself, with the socket and the monitor's socket in it. */
    snprintf(h_bus, sizeof h_bus, "ipc://%s/run/lc/bus", h_dir);
    proc_t *b = h_broker(NULL);
    char path[400];
    snprintf(path, sizeof path, "%s/run/lc", h_dir);
    cr_expect_eq(s_mode(path), 0700, "folder %s is %o", path, s_mode(path));
    snprintf(path, sizeof path, "%s/run/lc/bus", h_dir);
    cr_expect_eq(s_mode(path), 0600, "socket %s is %o", path, s_mode(path));
    snprintf(path, sizeof path, "%s/run/lc/bus.spy", h_dir);
    cr_expect_eq(s_mode(path), 0600, "monitor socket %s is %o", path, s_mode(path));
    h_stop(b, SIGTERM, 5000);
}

/* Runs `lc --bus BUS call broker.ping` as user 65534 (nobody) with group `regid` and the
 * supplementary groups `groups` (NULL: none); returns its exit status, its output in the
 * log `name`. */
static int s_ping_as(const char *name, const char *regid, const char *groups, proc_t **p)
{
    char gopt[64], ropt[64];
    snprintf(ropt, sizeof ropt, "--regid=%s", regid);
    snprintf(gopt, sizeof gopt, groups ? "--groups=%s" : "--clear-groups", groups);
    char *argv[] = {"/usr/bin/setpriv", "--reuid=65534", ropt, gopt, BIN("lc"), "--bus", h_bus,
                    "--timeout", "3000", "call", "broker.ping", NULL};
    *p = h_spawnv(name, argv);
    int status = h_wait_exit(*p, 20000);
    cr_assert(WIFEXITED(status), "lc as nobody did not exit: %d\n%s", status, h_log(*p));
    return WEXITSTATUS(status);
}

static int s_ping_as_nobody(const char *name, proc_t **p)
{
    return s_ping_as(name, "65534", NULL, p);
}

static void s_need_root(void)
{
    if (geteuid() != 0 || access("/usr/bin/setpriv", X_OK) != 0)
        cr_skip_test("needs root and setpriv to run a process as another user");
}

Test(access, another_user_who_reaches_the_socket_is_refused)
{
    s_need_root();
    /* The test folder is traversable (not listable), the socket is the group's. */
    cr_assert_eq(chmod(h_dir, 0711), 0);
    snprintf(h_bus, sizeof h_bus, "ipc://%s/bus", h_dir);
    proc_t *b = h_broker("--group", "nogroup", NULL);
    char path[400];
    snprintf(path, sizeof path, "%s/bus", h_dir);
    cr_expect_eq(s_mode(path), 0660, "socket %s is %o", path, s_mode(path));

    proc_t *p;
    int rc = s_ping_as_nobody("nobody", &p);
    cr_assert_neq(rc, 0, "a process of uid 65534 used the bus:\n%s", h_log(p));
    cr_expect(strstr(h_log(p), "uid 65534 may not use this bus"), "lc said:\n%s", h_log(p));
    free(h_wait_log(b, "refused pid", 1, 5000));
    lc_client_t *c = h_client();
    cr_expect_geq(h_stat(c, "refused"), 1);
    /* The broker's own user goes on using it. */
    json_t *res = NULL;
    cr_expect_eq(lc_call(c, "broker.ping", NULL, &res, 5000), 0);
    json_decref(res);
    lc_client_destroy(&c);
    h_stop(b, SIGTERM, 5000);
}

Test(access, allowed_users_and_groups_may_use_the_bus)
{
    s_need_root();
    cr_assert_eq(chmod(h_dir, 0711), 0);
    static const char *const allow[][2] = {{"--allow-user", "nobody"}, {"--allow-group", "65534"}};
    for (int i = 0; i < 2; i++) {
        snprintf(h_bus, sizeof h_bus, "ipc://%s/bus%d", h_dir, i);
        proc_t *b = h_broker("--group", "nogroup", allow[i][0], allow[i][1], NULL);
        proc_t *p;
        char name[32];
        snprintf(name, sizeof name, "nobody%d", i);
        int rc = s_ping_as_nobody(name, &p);
        cr_expect_eq(rc, 0, "with %s %s, lc as nobody failed:\n%s", allow[i][0], allow[i][1],
                     h_log(p));
        h_stop(b, SIGTERM, 5000);
    }
}

/* The groups that count are the process's own, from the kernel: a supplementary group
 * lets it in (as it lets it through the socket's mode), whatever the user database says. */
Test(access, a_supplementary_group_of_the_process_counts)
{
    s_need_root();
    cr_assert_eq(chmod(h_dir, 0711), 0);
    snprintf(h_bus, sizeof h_bus, "ipc://%s/bus", h_dir);
    proc_t *b = h_broker("--group", "nogroup", "--allow-group", "nogroup", NULL);
    proc_t *p;
    /* gid 12345 (no such group), nogroup only as a supplementary group. */
    int rc = s_ping_as("supplementary", "12345", "65534", &p);
    cr_expect_eq(rc, 0, "a process in nogroup (supplementary) was refused:\n%s", h_log(p));
    rc = s_ping_as("other", "12345", "12346", &p);
    cr_expect_neq(rc, 0, "a process outside nogroup got in:\n%s", h_log(p));
    h_stop(b, SIGTERM, 5000);

    /* The socket is the group users' (100), and nogroup is allowed: a process of nobody
     * (whose group in the user database is nogroup) that reaches the socket through users
     * but runs without nogroup is refused by the broker. */
    snprintf(h_bus, sizeof h_bus, "ipc://%s/bus2", h_dir);
    b = h_broker("--group", "users", "--allow-group", "nogroup", NULL);
    rc = s_ping_as("dropped", "12345", "100", &p);
    cr_expect_neq(rc, 0, "a process without nogroup got in:\n%s", h_log(p));
    cr_expect(strstr(h_log(p), "uid 65534 may not use this bus"), "%s", h_log(p));
    h_stop(b, SIGTERM, 5000);
}

/* A folder others of a group may write to would let them replace the socket. */
Test(access, a_group_writable_folder_is_refused)
{
    char dir[400];
    snprintf(dir, sizeof dir, "%s/shared", h_dir);
    cr_assert_eq(mkdir(dir, 0770), 0);
    cr_assert_eq(chmod(dir, 0770), 0);
    char ep[450];
    snprintf(ep, sizeof ep, "ipc://%s/bus", dir);
    proc_t *p = h_spawn("groupdir", BIN("lc-broker"), "--endpoint", ep, NULL);
    int status = h_wait_exit(p, 10000);
    cr_expect(WIFEXITED(status) && WEXITSTATUS(status) == 1, "status %d\n%s", status, h_log(p));
    cr_expect(strstr(h_log(p), "writable by others"), "%s", h_log(p));
}

Test(access, bad_allow_lists_and_groups_are_usage_errors)
{
    static const char *const bad[][2] = {{"--group", "no-such-group-xyz"},
                                         {"--allow-user", "no-such-user-xyz"},
                                         {"--allow-group", "1,no-such-group-xyz"}};
    for (int i = 0; i < 3; i++) {
        char name[32];
        snprintf(name, sizeof name, "bad%d", i);
        proc_t *p = h_spawn(name, BIN("lc-broker"), "--endpoint", h_bus, bad[i][0], bad[i][1],
                            NULL);
        int status = h_wait_exit(p, 10000);
        cr_expect(WIFEXITED(status) && WEXITSTATUS(status) == 2, "%s %s: status %d", bad[i][0],
                  bad[i][1], status);
        cr_expect(strstr(h_log(p), "no-such-"), "%s %s said:\n%s", bad[i][0], bad[i][1], h_log(p));
    }
}

Test(access, the_system_file_passes_the_allow_list_to_the_broker)
{
    s_need_root();
    cr_assert_eq(chmod(h_dir, 0711), 0);
    snprintf(h_bus, sizeof h_bus, "ipc://%s/bus", h_dir);
    char path[400];
    snprintf(path, sizeof path, "%s/system.yaml", h_dir);
    FILE *f = fopen(path, "w");
    cr_assert(f);
    fprintf(f,
            "bus:\n"
            "  endpoint: %s\n"
            "  group: nogroup\n"
            "  allow_users: [nobody]\n"
            "modules:\n"
            "  echo: {program: %s}\n",
            h_bus, BIN("lc-echo"));
    fclose(f);
    proc_t *l = h_spawn("launch", BIN("lc-launch"), path, NULL);
    lc_client_t *c = lc_client_new(NULL, h_bus);
    cr_assert_eq(lc_connect(c, 10000), 0, "no bus:\n%s", h_log(l));
    h_wait_modules(c, "echo", NULL);
    proc_t *p;
    int rc = s_ping_as_nobody("nobody", &p);
    cr_expect_eq(rc, 0, "bus.allow_users [nobody] did not let nobody in:\n%s\n%s", h_log(p),
                 h_log(l));
    lc_client_destroy(&c);
    h_stop(l, SIGTERM, 15000);
}
