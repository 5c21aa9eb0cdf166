#include "harness.h"

#include <criterion/criterion.h>
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

char h_dir[256];
char h_bus[300];

#define MAX_PROCS 32
static proc_t *s_procs[MAX_PROCS];

void h_setup(void)
{
    snprintf(h_dir, sizeof h_dir, "/tmp/lc-test-XXXXXX");
    cr_assert(mkdtemp(h_dir), "cannot create a temporary folder");
    snprintf(h_bus, sizeof h_bus, "ipc://%s/bus", h_dir);
    signal(SIGPIPE, SIG_IGN);
}

static int s_rm(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

void h_teardown(void)
{
    for (int i = 0; i < MAX_PROCS; i++)
        if (s_procs[i]) {
            if (!s_procs[i]->exited)
                h_stop(s_procs[i], SIGKILL, 5000);
            h_proc_free(&s_procs[i]);
        }
    if (h_dir[0] && !getenv("LC_TEST_KEEP"))
        nftw(h_dir, s_rm, 16, FTW_DEPTH | FTW_PHYS);
}

proc_t *h_spawnv(const char *logname, char *const argv[])
{
    proc_t *p = calloc(1, sizeof *p);
    cr_assert(p);
    snprintf(p->log, sizeof p->log, "%s/%s.log", h_dir, logname);
    p->pid = fork();
    cr_assert(p->pid >= 0, "fork failed");
    if (p->pid == 0) {
        int fd = open(p->log, O_WRONLY | O_CREAT | O_APPEND, 0600);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        execv(argv[0], argv);
        _exit(127);
    }
    p->pidfd = (int)syscall(SYS_pidfd_open, p->pid, 0);
    cr_assert(p->pidfd >= 0, "pidfd_open failed");
    for (int i = 0; i < MAX_PROCS; i++)
        if (!s_procs[i]) {
            s_procs[i] = p;
            break;
        }
    return p;
}

proc_t *h_spawn(const char *logname, const char *prog, ...)
{
    char *argv[32];
    int n = 0;
    argv[n++] = (char *)prog;
    va_list ap;
    va_start(ap, prog);
    const char *a;
    while ((a = va_arg(ap, const char *)) && n < 31)
        argv[n++] = (char *)a;
    va_end(ap);
    argv[n] = NULL;
    return h_spawnv(logname, argv);
}

int h_wait_exit(proc_t *p, int timeout_ms)
{
    if (p->exited)
        return p->status;
    struct pollfd pfd = {.fd = p->pidfd, .events = POLLIN};
    if (poll(&pfd, 1, timeout_ms) <= 0)
        return -1;
    waitpid(p->pid, &p->status, 0);
    p->exited = true;
    return p->status;
}

int h_stop(proc_t *p, int sig, int timeout_ms)
{
    if (p->exited)
        return p->status;
    kill(p->pid, sig);
    int st = h_wait_exit(p, timeout_ms);
    if (st == -1) {
        kill(p->pid, SIGKILL);
        st = h_wait_exit(p, 10000);
    }
    return st;
}

void h_proc_free(proc_t **pp)
{
    proc_t *p = *pp;
    if (!p)
        return;
    for (int i = 0; i < MAX_PROCS; i++)
        if (s_procs[i] == p)
            s_procs[i] = NULL;
    if (p->pidfd >= 0)
        close(p->pidfd);
    free(p);
    *pp = NULL;
}

const char *h_log(proc_t *p)
{
    static char buf[4096];
    buf[0] = 0;
    FILE *f = fopen(p->log, "r");
    if (f) {
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        buf[n] = 0;
        fclose(f);
    }
    return buf;
}

lc_client_t *h_client(void)
{
    lc_client_t *c = lc_client_new(NULL, h_bus);
    cr_assert(c, "lc_client_new failed");
    int rc = lc_connect(c, 10000);
    cr_assert_eq(rc, 0, "cannot connect to %s: %s", h_bus, lc_strerror(rc));
    return c;
}

proc_t *h_broker(const char *extra, ...)
{
    char *argv[32];
    int n = 0;
    argv[n++] = BIN("lc-broker");
    argv[n++] = "--endpoint";
    argv[n++] = h_bus;
    va_list ap;
    va_start(ap, extra);
    for (const char *a = extra; a && n < 31; a = va_arg(ap, const char *))
        argv[n++] = (char *)a;
    va_end(ap);
    argv[n] = NULL;
    proc_t *p = h_spawnv("broker", argv);
    /* Ready when a client can register; lc_connect waits for that with a deadline. */
    lc_client_t *c = lc_client_new(NULL, h_bus);
    int rc = lc_connect(c, 10000);
    lc_client_destroy(&c);
    cr_assert_eq(rc, 0, "broker did not come up: %s\n%s", lc_strerror(rc), h_log(p));
    return p;
}

void h_wait_modules(lc_client_t *c, ...)
{
    json_t *names = json_array();
    va_list ap;
    va_start(ap, c);
    const char *n;
    while ((n = va_arg(ap, const char *)))
        json_array_append_new(names, json_string(n));
    va_end(ap);
    json_t *res = NULL;
    int rc = lc_call(c, "broker.wait", json_pack("{s:o}", "modules", names), &res, 10000);
    cr_assert_eq(rc, 0, "modules did not register: %s", lc_strerror(rc));
    json_decref(res);
}

proc_t *h_echo(const char *name)
{
    proc_t *p = h_spawn(name, BIN("lc-echo"), "--name", name, "--bus", h_bus, NULL);
    lc_client_t *c = h_client();
    h_wait_modules(c, name, NULL);
    lc_client_destroy(&c);
    return p;
}
