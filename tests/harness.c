#include "harness.h"
#include "wire.h" /* lc_mono_ms() */

#include <criterion/criterion.h>
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
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

proc_t *h_spawn_bus(const char *logname, const char *prog, va_list args)
{
    char *argv[32];
    int n = 0;
    argv[n++] = (char *)prog;
    argv[n++] = "--bus";
    argv[n++] = h_bus;
    const char *a;
    while ((a = va_arg(args, const char *)) && n < 31)
        argv[n++] = (char *)a;
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

int h_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert(fd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = 0};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    socklen_t len = sizeof sa;
    cr_assert_eq(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    close(fd);
    return ntohs(sa.sin_port);
}

char *h_slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return strdup("");
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    for (;;) {
        cr_assert(buf, "out of memory reading %s", path);
        n += fread(buf + n, 1, cap - n - 1, f);
        if (n < cap - 1)
            break;
        cap *= 2;
        buf = realloc(buf, cap);
    }
    buf[n] = 0;
    fclose(f);
    return buf;
}

int h_count(const char *text, const char *needle)
{
    int n = 0;
    for (const char *p = text; (p = strstr(p, needle)); p += strlen(needle))
        n++;
    return n;
}

char *h_wait_log(proc_t *p, const char *needle, int n, int timeout_ms)
{
    int64_t deadline = lc_mono_ms() + timeout_ms;
    for (;;) {
        char *text = h_slurp(p->log);
        if (text && h_count(text, needle) >= n)
            return text;
        if (lc_mono_ms() >= deadline) {
            cr_log_error("%s", text ? text : "(no log)");
            free(text);
            cr_assert_fail("\"%s\" not %d times in %s within %d ms", needle, n, p->log,
                           timeout_ms);
        }
        free(text);
        poll(NULL, 0, 5); /* the interval of a wait that has a deadline */
    }
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

proc_t *h_echo_with(const char *name, ...)
{
    char *argv[32];
    int n = 0;
    argv[n++] = BIN("lc-echo");
    argv[n++] = "--name";
    argv[n++] = (char *)name;
    argv[n++] = "--bus";
    argv[n++] = h_bus;
    va_list ap;
    va_start(ap, name);
    const char *a;
    while ((a = va_arg(ap, const char *)) && n < 31)
        argv[n++] = (char *)a;
    va_end(ap);
    argv[n] = NULL;
    proc_t *p = h_spawnv(name, argv);
    lc_client_t *c = h_client();
    int64_t deadline = lc_mono_ms() + 10000;
    for (;;) {
        cr_assert_eq(h_wait_exit(p, 0), -1, "lc-echo %s exited\n%s", name, h_log(p));
        h_wait_modules(c, name, NULL);
        /* This process (not a predecessor the broker has not buried yet), and ready:
         * registered modules start inactive and become passive, then active. */
        json_t *m = h_module(c, name);
        const char *st = m ? json_string_value(json_object_get(m, "state")) : NULL;
        bool ready = m && json_integer_value(json_object_get(m, "pid")) == p->pid &&
                     (!st || strcmp(st, "passive") == 0 || strcmp(st, "active") == 0);
        json_decref(m);
        if (ready)
            break;
        cr_assert(lc_mono_ms() < deadline, "lc-echo %s (pid %d) is not listed\n%s", name,
                  (int)p->pid, h_log(p));
    }
    lc_client_destroy(&c);
    return p;
}

json_t *h_module(lc_client_t *c, const char *name)
{
    json_t *res = NULL;
    int rc = lc_call(c, "broker.list", NULL, &res, 5000);
    cr_assert_eq(rc, 0, "broker.list: %s", lc_strerror(rc));
    json_t *found = NULL, *m;
    size_t i;
    json_array_foreach(json_object_get(res, "modules"), i, m)
    {
        const char *n = json_string_value(json_object_get(m, "name"));
        if (n && strcmp(n, name) == 0)
            found = json_incref(m);
    }
    json_decref(res);
    return found;
}

json_int_t h_module_int(lc_client_t *c, const char *name, const char *key)
{
    json_t *m = h_module(c, name);
    if (!m)
        return -1;
    json_t *v = json_object_get(m, key);
    cr_assert(json_is_integer(v), "broker.list: module %s has no integer \"%s\"", name, key);
    json_int_t value = json_integer_value(v);
    json_decref(m);
    return value;
}

void h_wait_module_int(lc_client_t *c, const char *name, const char *key, json_int_t value,
                       int timeout_ms)
{
    int64_t deadline = lc_mono_ms() + timeout_ms;
    json_int_t last;
    while ((last = h_module_int(c, name, key)) != value)
        cr_assert(lc_mono_ms() < deadline, "module %s: %s is %lld, not %lld, after %d ms", name,
                  key, (long long)last, (long long)value, timeout_ms);
}

json_int_t h_stat(lc_client_t *c, const char *key)
{
    json_t *res = NULL;
    int rc = lc_call(c, "broker.stats", NULL, &res, 5000);
    cr_assert_eq(rc, 0, "broker.stats: %s", lc_strerror(rc));
    json_t *v = json_object_get(res, key);
    cr_assert(json_is_integer(v), "broker.stats has no integer \"%s\"", key);
    json_int_t value = json_integer_value(v);
    json_decref(res);
    return value;
}

json_t *h_recorded(lc_client_t *c, const char *name)
{
    char target[128];
    snprintf(target, sizeof target, "%s.recorded", name);
    json_t *res = NULL;
    int rc = lc_call(c, target, json_pack("{s:b}", "clear", 0), &res, 5000);
    cr_assert_eq(rc, 0, "%s: %s (%s)", target, lc_strerror(rc),
                 json_string_value(json_object_get(res, "message")));
    json_t *entries = json_incref(json_object_get(res, "entries"));
    json_decref(res);
    cr_assert(json_is_array(entries), "%s answered no entries", target);
    return entries;
}

json_t *h_wait_recorded(lc_client_t *c, const char *name, size_t n, int timeout_ms)
{
    int64_t deadline = lc_mono_ms() + timeout_ms;
    for (;;) {
        json_t *entries = h_recorded(c, name);
        if (json_array_size(entries) >= n)
            return entries;
        size_t have = json_array_size(entries);
        char *text = json_dumps(entries, JSON_COMPACT);
        json_decref(entries);
        if (lc_mono_ms() >= deadline) {
            cr_log_error("%s recorded: %.3000s", name, text ? text : "?");
            free(text);
            cr_assert_fail("%s recorded %zu entries, not %zu, after %d ms", name, have, n,
                           timeout_ms);
        }
        free(text);
    }
}

void h_dispatch_until(lc_client_t *c, const int *count, int n, int timeout_ms, const char *what)
{
    int fd = lc_fd(c);
    cr_assert_geq(fd, 0, "lc_fd: %s", lc_strerror(fd));
    int64_t deadline = lc_mono_ms() + timeout_ms;
    while (__atomic_load_n(count, __ATOMIC_ACQUIRE) < n) {
        int64_t left = deadline - lc_mono_ms();
        cr_assert_gt(left, 0, "%s: %d of %d within %d ms", what, *count, n, timeout_ms);
        int t = lc_timeout(c);
        if (t < 0 || t > left)
            t = (int)left;
        struct pollfd p = {.fd = fd, .events = POLLIN};
        poll(&p, 1, t);
        int rc = lc_dispatch(c);
        cr_assert_geq(rc, 0, "lc_dispatch: %s", lc_strerror(rc));
    }
}

void *h_stopper(void *arg)
{
    h_stopper_t *s = arg;
    for (int i = 0; i < s->n; i++)
        pthread_join(s->threads[i], NULL);
    lc_stop(s->client);
    return NULL;
}

json_int_t h_int(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    cr_assert(json_is_integer(v), "no integer \"%s\" in %s", key, h_dump(o));
    return json_integer_value(v);
}

const char *h_str(json_t *o, const char *key)
{
    const char *v = json_string_value(json_object_get(o, key));
    cr_assert(v, "no string \"%s\" in %s", key, h_dump(o));
    return v;
}

json_int_t h_arg(json_t *entry, const char *key)
{
    return h_int(json_object_get(entry, "args"), key);
}

char *h_dump(json_t *v)
{
    static char buf[8192];
    char *text = json_dumps(v, JSON_COMPACT);
    snprintf(buf, sizeof buf, "%s", text ? text : "?");
    free(text);
    return buf;
}

void h_enqueue_ok(lc_client_t *c, const char *target, json_t *args, int priority)
{
    json_t *info = NULL;
    int rc = lc_enqueue_wait(c, target, args, priority, 5000, &info);
    cr_assert_eq(rc, 0, "lc_enqueue_wait(%s): %s (%s)", target, lc_strerror(rc),
                 json_string_value(json_object_get(info, "message")));
    json_decref(info);
}

void h_outcome(lc_client_t *self, int rc, json_t *result, void *arg)
{
    (void)self;
    (void)result;
    h_outcome_t *o = arg;
    o->calls++;
    o->rc = rc;
}
