/* lc-launch: the system file's checks, start order, restart policies, backoff and
 * intensity, shutdown in order, SIGKILL after a timeout, SIGHUP reloads, crashes of modules
 * and of the broker, and the launcher's own methods on the bus. Real processes only: every
 * wait has a deadline and watches something (the launcher's output, launcher.status,
 * broker.list or broker.wait), nothing waits for a fixed time. */
#include "harness.h"
#include "wire.h" /* lc_mono_ms() */

#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

/* The launcher of the running test, stopped (and whatever it started) in s_fini. */
static proc_t *s_lp;
static proc_t *s_mine[64]; /* every lc-launch this test ran (s_lp among them) */
static char s_sys[512];    /* the system file */

static void s_init(void)
{
    /* echo.crash aborts on purpose: no core files (the launcher's children inherit it). */
    struct rlimit none = {0, 0};
    setrlimit(RLIMIT_CORE, &none);
    h_setup();
    snprintf(s_sys, sizeof s_sys, "%s/system.yaml", h_dir);
    s_lp = NULL;
    memset(s_mine, 0, sizeof s_mine);
}

/* Every process this test's launcher started (and their children) has LC_BUS=h_bus in its
 * environment, and only those: whatever of them is left after a failed test is killed, so
 * a launcher that died does not leave a broker or modules behind. */
static void s_kill_leftovers(void)
{
    char want[400];
    int wlen = snprintf(want, sizeof want, "LC_BUS=%s", h_bus);
    DIR *d = opendir("/proc");
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d))) {
        char *end;
        long pid = strtol(e->d_name, &end, 10);
        if (*end || pid <= 1 || pid == getpid())
            continue;
        char path[64];
        snprintf(path, sizeof path, "/proc/%ld/environ", pid);
        FILE *f = fopen(path, "r");
        if (!f)
            continue;
        static char env[65536];
        size_t n = fread(env, 1, sizeof env - 1, f);
        fclose(f);
        env[n] = 0;
        for (size_t i = 0; i < n; i += strlen(env + i) + 1)
            if (strncmp(env + i, want, (size_t)wlen) == 0 && env[i + (size_t)wlen] == 0) {
                kill((pid_t)pid, SIGKILL);
                break;
            }
    }
    closedir(d);
}

static void s_fini(void)
{
    if (s_lp && !s_lp->exited) {
        kill(s_lp->pid, SIGTERM);
        if (h_wait_exit(s_lp, 15000) == -1)
            h_stop(s_lp, SIGKILL, 5000);
    }
    for (size_t i = 0; i < sizeof s_mine / sizeof s_mine[0]; i++)
        if (s_mine[i]) {
            if (!s_mine[i]->exited)
                h_stop(s_mine[i], SIGKILL, 5000);
            close(s_mine[i]->pidfd);
            free(s_mine[i]);
            s_mine[i] = NULL;
        }
    s_lp = NULL;
    s_kill_leftovers();
    h_teardown();
}

TestSuite(launch, .init = s_init, .fini = s_fini, .timeout = 90);

/* ---- Helpers ------------------------------------------------------------------------ */

/* Writes a file at once (a temporary file renamed over it), from a printf format. */
static void s_write(const char *path, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void s_write(const char *path, const char *fmt, ...)
{
    char tmp[600];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    cr_assert(f, "cannot write %s: %s", tmp, strerror(errno));
    va_list ap;
    va_start(ap, fmt);
    vfprintf(f, fmt, ap);
    va_end(ap);
    cr_assert_eq(fclose(f), 0);
    cr_assert_eq(rename(tmp, path), 0, "rename %s: %s", path, strerror(errno));
}

/* The whole contents of a file (caller frees); "" when it does not exist. */
static char *s_slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return strdup("");
    size_t cap = 8192, len = 0;
    char *buf = malloc(cap);
    cr_assert(buf);
    size_t n;
    while ((n = fread(buf + len, 1, cap - len - 1, f)) > 0) {
        len += n;
        if (cap - len < 4096) {
            cap *= 2;
            buf = realloc(buf, cap);
            cr_assert(buf);
        }
    }
    buf[len] = 0;
    fclose(f);
    return buf;
}

/* The end of the launcher's output, for failure messages (static buffer). */
static const char *s_out(void)
{
    static char tail[6000];
    tail[0] = 0;
    if (!s_lp)
        return tail;
    char *all = s_slurp(s_lp->log);
    size_t len = strlen(all);
    snprintf(tail, sizeof tail, "%s", len > sizeof tail - 1 ? all + len - (sizeof tail - 1) : all);
    free(all);
    return tail;
}

/* Whether the launcher's output has text so far. */
static bool s_out_has(const char *text)
{
    char *all = s_slurp(s_lp->log);
    bool found = strstr(all, text) != NULL;
    free(all);
    return found;
}

/* The pause of a polling loop that has a deadline: a few milliseconds, during which the
 * launcher must not end (that fails the test at once, with its output). */
static void s_tick(void)
{
    struct pollfd pfd = {.fd = s_lp->pidfd, .events = POLLIN};
    if (poll(&pfd, 1, 5) > 0) {
        int st = h_wait_exit(s_lp, 1000);
        cr_assert_fail("lc-launch ended (status 0x%x)\n%s", st, s_out());
    }
}

/* Waits until the launcher's output has text. */
static void s_wait_out(const char *text, int timeout_ms)
{
    int64_t deadline = lc_mono_ms() + timeout_ms;
    while (!s_out_has(text)) {
        cr_assert(lc_mono_ms() < deadline, "no \"%s\" in lc-launch's output after %d ms:\n%s",
                  text, timeout_ms, s_out());
        s_tick();
    }
}

static bool s_pid_alive(pid_t pid)
{
    if (pid <= 0 || kill(pid, 0) < 0)
        return false;
    /* A zombie (waiting for its parent, or for init after lc-launch ended) is gone too. */
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    const char *p = strrchr(buf, ')');
    return !(p && p[1] == ' ' && (p[2] == 'Z' || p[2] == 'X'));
}

/* Runs lc-launch with the given arguments (NULL-terminated); its output goes to
 * h_dir/<logname>.log. It gets SIGTERM if this test's process dies (a crash, a timeout),
 * so that it stops its system instead of leaving it running. */
static proc_t *s_run(const char *logname, ...)
{
    char *argv[16];
    int n = 0;
    argv[n++] = BIN("lc-launch");
    va_list ap;
    va_start(ap, logname);
    const char *a;
    while ((a = va_arg(ap, const char *)) && n < 15)
        argv[n++] = (char *)a;
    va_end(ap);
    argv[n] = NULL;
    proc_t *p = calloc(1, sizeof *p);
    cr_assert(p);
    snprintf(p->log, sizeof p->log, "%s/%s.log", h_dir, logname);
    pid_t parent = getpid();
    p->pid = fork();
    cr_assert(p->pid >= 0, "fork failed");
    if (p->pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        if (getppid() != parent)
            _exit(127);
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
    for (size_t i = 0; i < sizeof s_mine / sizeof s_mine[0]; i++)
        if (!s_mine[i]) {
            s_mine[i] = p;
            break;
        }
    return p;
}

/* Waits (broker.wait, in short rounds, watching that lc-launch still runs) until every
 * module named (NULL-terminated) is registered and ready. */
static void s_wait_ready(lc_client_t *c, int timeout_ms, ...)
{
    json_t *names = json_array();
    va_list ap;
    va_start(ap, timeout_ms);
    const char *n;
    while ((n = va_arg(ap, const char *)))
        json_array_append_new(names, json_string(n));
    va_end(ap);
    int64_t deadline = lc_mono_ms() + timeout_ms;
    for (;;) {
        json_t *res = NULL;
        /* The call's deadline is the wait's. */
        int rc = lc_call(c, "broker.wait", json_pack("{s:O}", "modules", names), &res, 250);
        json_decref(res);
        if (rc == 0)
            break;
        if (lc_mono_ms() >= deadline) {
            char *text = json_dumps(names, JSON_COMPACT);
            cr_log_error("lc-launch's output:\n%s", s_out());
            cr_assert_fail("%s did not register within %d ms: %s", text, timeout_ms,
                           lc_strerror(rc));
        }
        s_tick();
    }
    json_decref(names);
}

/* Starts lc-launch on s_sys and returns a client once the launcher and every module named
 * (NULL-terminated) are registered. */
static lc_client_t *s_up(const char *first, ...)
{
    s_lp = s_run("launch", s_sys, NULL);
    lc_client_t *c = lc_client_new(NULL, h_bus);
    cr_assert(c);
    int rc = lc_connect(c, 15000);
    cr_assert_eq(rc, 0, "cannot connect to %s: %s\n%s", h_bus, lc_strerror(rc), s_out());
    s_wait_ready(c, 15000, "launcher", NULL);
    va_list ap;
    va_start(ap, first);
    for (const char *n = first; n; n = va_arg(ap, const char *))
        s_wait_ready(c, 15000, n, NULL);
    va_end(ap);
    return c;
}

static json_t *s_status(lc_client_t *c)
{
    json_t *res = NULL;
    int rc = lc_call(c, "launcher.status", NULL, &res, 5000);
    cr_assert_eq(rc, 0, "launcher.status: %s (%s)\n%s", lc_strerror(rc),
                 json_string_value(json_object_get(res, "message")), s_out());
    return res;
}

/* launcher.status's entry of module name (a new reference), or NULL. */
static json_t *s_child(lc_client_t *c, const char *name)
{
    json_t *res = s_status(c), *found = NULL, *m;
    size_t i;
    json_array_foreach(json_object_get(res, "modules"), i, m)
    {
        if (strcmp(json_string_value(json_object_get(m, "name")), name) == 0)
            found = json_incref(m);
    }
    json_decref(res);
    return found;
}

static json_t *s_broker_entry(lc_client_t *c)
{
    json_t *res = s_status(c);
    json_t *b = json_incref(json_object_get(res, "broker"));
    json_decref(res);
    cr_assert(json_is_object(b), "launcher.status has no \"broker\"");
    return b;
}

static const char *s_str(json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s ? s : "(none)";
}

static int s_int(json_t *o, const char *key)
{
    return (int)json_integer_value(json_object_get(o, key));
}

/* Waits until launcher.status shows module name in state, with at least min_restarts
 * restarts and, if not_pid > 0, another pid than not_pid. Returns the entry. */
static json_t *s_wait_child(lc_client_t *c, const char *name, const char *state, int min_restarts,
                            pid_t not_pid, int timeout_ms)
{
    int64_t deadline = lc_mono_ms() + timeout_ms;
    for (;;) {
        json_t *m = s_child(c, name);
        if (m && strcmp(s_str(m, "state"), state) == 0 && s_int(m, "restarts") >= min_restarts &&
            (not_pid <= 0 || s_int(m, "pid") != not_pid))
            return m;
        char *text = m ? json_dumps(m, JSON_COMPACT) : strdup("not listed");
        json_decref(m);
        if (lc_mono_ms() >= deadline) {
            cr_log_error("lc-launch's output:\n%s", s_out());
            cr_assert_fail("module %s is not %s (restarts >= %d) after %d ms: %s", name, state,
                           min_restarts, timeout_ms, text);
        }
        free(text);
        s_tick();
    }
}

static pid_t s_pid_of(lc_client_t *c, const char *name)
{
    json_t *m = s_wait_child(c, name, "running", 0, 0, 10000);
    pid_t pid = s_int(m, "pid");
    json_decref(m);
    cr_assert_gt(pid, 0, "module %s runs without a pid", name);
    return pid;
}

/* Waits until broker.list shows module name registered by process pid (ready). */
static void s_wait_listed_pid(lc_client_t *c, const char *name, pid_t pid, int timeout_ms)
{
    int64_t deadline = lc_mono_ms() + timeout_ms;
    for (;;) {
        json_t *m = h_module(c, name);
        const char *st = m ? s_str(m, "state") : "";
        bool ok = m && s_int(m, "pid") == pid &&
                  (strcmp(st, "passive") == 0 || strcmp(st, "active") == 0);
        int listed = m ? s_int(m, "pid") : 0;
        json_decref(m);
        if (ok)
            return;
        cr_assert(lc_mono_ms() < deadline, "module %s is not registered by pid %d after %d ms "
                  "(listed pid %d)\n%s", name, (int)pid, timeout_ms, listed, s_out());
        s_tick();
    }
}

/* Waits until broker.list no longer shows module name. */
static void s_wait_unlisted(lc_client_t *c, const char *name, int timeout_ms)
{
    int64_t deadline = lc_mono_ms() + timeout_ms;
    for (;;) {
        json_t *m = h_module(c, name);
        if (!m)
            return;
        json_decref(m);
        cr_assert(lc_mono_ms() < deadline, "module %s is still registered after %d ms\n%s", name,
                  timeout_ms, s_out());
        s_tick();
    }
}

static void s_echo_ok(lc_client_t *c, const char *target)
{
    json_t *res = NULL;
    int rc = lc_call(c, target, json_pack("{s:s}", "ping", "pong"), &res, 5000);
    cr_assert_eq(rc, 0, "%s: %s (%s)\n%s", target, lc_strerror(rc), s_str(res, "message"),
                 s_out());
    cr_assert_str_eq(s_str(res, "ping"), "pong");
    json_decref(res);
}

/* Calls launcher.METHOD {"name": name}; returns the status, *res the result or error. */
static int s_ctl(lc_client_t *c, const char *method, const char *name, json_t **res)
{
    char target[64];
    snprintf(target, sizeof target, "launcher.%s", method);
    return lc_call(c, target, json_pack("{s:s}", "name", name), res, 5000);
}

/* SIGTERM to lc-launch; returns its wait status (fails the test after timeout_ms). */
static int s_term(int timeout_ms)
{
    kill(s_lp->pid, SIGTERM);
    int st = h_wait_exit(s_lp, timeout_ms);
    cr_assert_neq(st, -1, "lc-launch did not stop within %d ms of SIGTERM\n%s", timeout_ms,
                  s_out());
    return st;
}

/* ---- 1. The system file: every error with its place, exit status 2 ----------------- */

typedef struct {
    const char *what;
    const char *body; /* after "bus:\n  endpoint: ...\n" (lines 1 and 2) */
    const char *where; /* "line:col" of the error, or "line:" when only the line is checked */
    const char *message; /* a part of the message */
} bad_file_t;

static const bad_file_t s_bad[] = {
    {"YAML syntax error", "modules:\n  a:\n    program: lc-echo: x\n", "5:21",
     "mapping values are not allowed"},
    {"unknown top key", "extra: 1\nmodules:\n  a:\n    program: lc-echo\n", "3:1",
     "unknown key 'extra'"},
    {"unknown module key", "modules:\n  a:\n    progam: lc-echo\n", "5:5",
     "unknown key 'progam' in modules.a"},
    {"wrong type", "modules:\n  a:\n    program: lc-echo\n    args: x\n", "6:11",
     "modules.a.args: expected a list"},
    {"bad restart value", "modules:\n  a:\n    program: lc-echo\n    restart: sometimes\n", "6:14",
     "expected always, on-failure or never"},
    {"after: an unknown module",
     "modules:\n  a:\n    program: lc-echo\n    after: [b, zz]\n  b:\n    program: lc-echo\n",
     "6:16", "'zz' is not a module here"},
    {"a dependency cycle",
     "modules:\n  a:\n    program: lc-echo\n    after: [c]\n  b:\n    program: lc-echo\n"
     "    after: [a]\n  c:\n    program: lc-echo\n    after: [b]\n",
     "6:12", "wait for each other in a circle"},
    {"missing program", "modules:\n  a:\n    args: [x]\n", "5:5", "\"program\" is required"},
    {"reserved name broker", "modules:\n  a:\n    program: lc-echo\n  broker:\n    program: lc-echo\n",
     "6:3", "module name 'broker'"},
    {"reserved name launcher", "modules:\n  launcher:\n    program: lc-echo\n", "4:3",
     "module name 'launcher'"},
    {"unset variable without default",
     "modules:\n  a:\n    program: lc-echo\n    args: [--x, \"${LC_TEST_LAUNCH_UNSET}\"]\n", "6:17",
     "LC_TEST_LAUNCH_UNSET is not set"},
    {"an empty modules map", "modules: {}\n", "3:", "at least one module"},
};

/* "path:where" followed by a column when where ends in ':' (only the line is checked). */
static bool s_has_place(const char *out, const char *path, const char *where)
{
    char want[700];
    snprintf(want, sizeof want, "%s:%s", path, where);
    for (const char *p = strstr(out, want); p; p = strstr(p + 1, want)) {
        const char *after = p + strlen(want);
        if (where[strlen(where) - 1] != ':')
            return after[0] == ':';
        if (after[0] >= '1' && after[0] <= '9')
            return true;
    }
    return false;
}

static void s_bad_file(const bad_file_t *b, bool check)
{
    s_write(s_sys, "bus:\n  endpoint: %s\n%s", h_bus, b->body);
    proc_t *p = check ? s_run("check", "--check", s_sys, NULL) : s_run("start", s_sys, NULL);
    int st = h_wait_exit(p, 10000);
    char *out = s_slurp(p->log);
    if (st == -1)
        h_stop(p, SIGKILL, 5000);
    cr_assert_neq(st, -1, "%s (%s): lc-launch did not exit\n%s", b->what,
                  check ? "--check" : "start", out);
    cr_expect(WIFEXITED(st) && WEXITSTATUS(st) == 2, "%s (%s): status 0x%x, not exit 2\n%s",
              b->what, check ? "--check" : "start", st, out);
    cr_expect(s_has_place(out, s_sys, b->where), "%s (%s): no %s:%s in:\n%s", b->what,
              check ? "--check" : "start", s_sys, b->where, out);
    cr_expect(strstr(out, b->message), "%s (%s): no \"%s\" in:\n%s", b->what,
              check ? "--check" : "start", b->message, out);
    cr_expect(!strstr(out, "started"), "%s (start): something was started:\n%s", b->what, out);
    struct stat sb;
    cr_expect_neq(stat(h_bus + strlen("ipc://"), &sb), 0, "%s: a broker listened on %s",
                  b->what, h_bus);
    free(out);
    /* Each case appends to the same log file name: start afresh. */
    char log[600];
    snprintf(log, sizeof log, "%s/%s.log", h_dir, check ? "check" : "start");
    unlink(log);
}

Test(launch, config_errors_name_their_place_with_check)
{
    unsetenv("LC_TEST_LAUNCH_UNSET");
    for (size_t i = 0; i < sizeof s_bad / sizeof s_bad[0]; i++)
        s_bad_file(&s_bad[i], true);
}

Test(launch, config_errors_name_their_place_at_start)
{
    unsetenv("LC_TEST_LAUNCH_UNSET");
    for (size_t i = 0; i < sizeof s_bad / sizeof s_bad[0]; i++)
        s_bad_file(&s_bad[i], false);
}

/* The error names 'zz', so its place should be where 'zz' is written (line 8, column 9),
 * not the start of the `after` list (the entry 'b' on line 7). */
Test(launch, after_unknown_module_points_at_the_entry)
{
    s_write(s_sys,
            "bus:\n"
            "  endpoint: %s\n"
            "modules:\n"
            "  a:\n"
            "    program: lc-echo\n"
            "    after:\n"
            "      - b\n"
            "      - zz\n"
            "  b:\n"
            "    program: lc-echo\n",
            h_bus);
    proc_t *p = s_run("check", "--check", s_sys, NULL);
    int st = h_wait_exit(p, 10000);
    char *out = s_slurp(p->log);
    cr_assert(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 2, "status 0x%x\n%s", st, out);
    cr_assert(strstr(out, "'zz' is not a module here"), "%s", out);
    cr_assert(s_has_place(out, s_sys, "8:9"), "expected %s:8:9 (the entry 'zz'), got:\n%s", s_sys,
              out);
    free(out);
}

Test(launch, valid_file_check_exits_0)
{
    s_write(s_sys,
            "bus:\n  endpoint: %s\n  start_timeout_ms: 500\n"
            "launcher:\n  exception_log: exc.log\n"
            "modules:\n"
            "  a:\n    program: lc-echo\n    after: [b]\n    restart: always\n"
            "    backoff: {initial_ms: 50, max_ms: 400}\n    intensity: {restarts: 3, seconds: 60}\n"
            "    config: {greeting: hello}\n"
            "  b:\n    program: lc-echo\n    args: [--window, \"8\"]\n    env: {TZ: UTC}\n",
            h_bus);
    proc_t *p = s_run("check", "--check", s_sys, NULL);
    int st = h_wait_exit(p, 10000);
    cr_assert(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0, "status 0x%x\n%s", st, h_log(p));
    cr_assert(strstr(h_log(p), "valid, 2 modules"), "%s", h_log(p));
    struct stat sb;
    cr_assert_neq(stat(h_bus + strlen("ipc://"), &sb), 0, "--check started a broker");
}

Test(launch, usage_error_exits_2)
{
    proc_t *p = s_run("usage", NULL);
    int st = h_wait_exit(p, 10000);
    cr_assert(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 2, "status 0x%x\n%s", st, h_log(p));
    p = s_run("usage2", "--bogus", s_sys, NULL);
    st = h_wait_exit(p, 10000);
    cr_assert(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 2, "status 0x%x\n%s", st, h_log(p));
    p = s_run("missing", "--check", "/nonexistent/lc-system.yaml", NULL);
    st = h_wait_exit(p, 10000);
    cr_assert(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 2, "status 0x%x\n%s", st, h_log(p));
    cr_assert(strstr(h_log(p), "/nonexistent/lc-system.yaml"), "%s", h_log(p));
}

/* 11. The demo system in the source tree is valid. */
Test(launch, demo_yaml_is_valid)
{
    proc_t *p = s_run("check", "--check", LC_SOURCE_DIR "/config/demo.yaml", NULL);
    int st = h_wait_exit(p, 10000);
    cr_assert(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0, "status 0x%x\n%s", st, h_log(p));
    cr_assert(strstr(h_log(p), "demo.yaml: valid, "), "%s", h_log(p));
}

/* ---- 2. Dependency order ------------------------------------------------------------ */

Test(launch, after_starts_dependencies_first)
{
    /* a comes first in the file but waits for b. */
    s_write(s_sys,
            "bus:\n  endpoint: %s\n"
            "modules:\n"
            "  a:\n    program: lc-echo\n    after: [b]\n"
            "  b:\n    program: lc-echo\n",
            h_bus);
    lc_client_t *c = s_up("a", "b", NULL);
    char *out = s_slurp(s_lp->log);
    const char *sb = strstr(out, "started b (pid"), *sa = strstr(out, "started a (pid");
    cr_assert(sa && sb, "no start lines:\n%s", out);
    cr_assert_lt(sb, sa, "a was started before b:\n%s", out);
    free(out);

    json_t *ma = h_module(c, "a"), *mb = h_module(c, "b");
    cr_assert(ma && mb);
    json_int_t ta = json_integer_value(json_object_get(ma, "since_us"));
    json_int_t tb = json_integer_value(json_object_get(mb, "since_us"));
    cr_assert_gt(tb, 0);
    cr_assert_lt(tb, ta, "b registered at %lld, a at %lld", (long long)tb, (long long)ta);
    json_decref(ma);
    json_decref(mb);
    s_echo_ok(c, "a.echo");
    s_echo_ok(c, "b.echo");
    lc_client_destroy(&c);
    int st = s_term(20000);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "status 0x%x\n%s", st, s_out());
}

/* ---- 3. Restart policies ------------------------------------------------------------ */

Test(launch, on_failure_clean_exit_stays_stopped)
{
    s_write(s_sys,
            "bus:\n  endpoint: %s\n  start_timeout_ms: 500\n"
            "modules:\n"
            "  t:\n    program: /bin/true\n    restart: on-failure\n"
            "    backoff: {initial_ms: 50}\n",
            h_bus);
    lc_client_t *c = s_up(NULL);
    json_t *m = s_wait_child(c, "t", "stopped", 0, 0, 10000);
    int64_t deadline = lc_mono_ms() + 10000;
    while (json_is_null(json_object_get(m, "last_exit"))) {
        cr_assert(lc_mono_ms() < deadline, "t has no last_exit\n%s", s_out());
        json_decref(m);
        s_tick();
        m = s_wait_child(c, "t", "stopped", 0, 0, 10000);
    }
    cr_assert_str_eq(s_str(m, "last_exit"), "exit code 0");
    cr_assert_eq(s_int(m, "restarts"), 0);
    cr_assert_eq(s_int(m, "pid"), 0);
    json_decref(m);
    cr_assert(!s_out_has("restarting t"), "t was restarted:\n%s", s_out());
    lc_client_destroy(&c);
}

Test(launch, on_failure_crash_is_restarted)
{
    s_write(s_sys,
            "bus:\n  endpoint: %s\n"
            "modules:\n"
            "  e:\n    program: lc-echo\n    restart: on-failure\n"
            "    backoff: {initial_ms: 50}\n",
            h_bus);
    lc_client_t *c = s_up("e", NULL);
    pid_t old = s_pid_of(c, "e");
    json_t *res = NULL;
    int rc = lc_call(c, "e.crash", NULL, &res, 10000);
    cr_assert_eq(rc, LC_EGONE, "e.crash: %s", lc_strerror(rc));
    json_decref(res);
    json_t *m = s_wait_child(c, "e", "running", 1, old, 10000);
    cr_assert_eq(s_int(m, "restarts"), 1);
    pid_t now = s_int(m, "pid");
    json_decref(m);
    cr_assert(!s_pid_alive(old), "the crashed e (pid %d) is still there", (int)old);
    s_wait_listed_pid(c, "e", now, 10000);
    s_echo_ok(c, "e.echo");
    char ended[64];
    snprintf(ended, sizeof ended, "e (pid %d) ended: signal ABRT", (int)old);
    s_wait_out(ended, 5000);
    s_wait_out("restarting e in 50 ms", 5000);
    lc_client_destroy(&c);
}

Test(launch, always_restarts_after_clean_exit)
{
    s_write(s_sys,
            "bus:\n  endpoint: %s\n  start_timeout_ms: 500\n"
            "modules:\n"
            "  s:\n    program: /bin/sh\n    args: [-c, \"exit 0\"]\n    restart: always\n"
            "    backoff: {initial_ms: 50, max_ms: 100}\n"
            "    intensity: {restarts: 1000, seconds: 60}\n",
            h_bus);
    lc_client_t *c = s_up(NULL);
    int64_t deadline = lc_mono_ms() + 10000;
    for (;;) {
        json_t *m = s_child(c, "s");
        cr_assert(m, "s is not in launcher.status");
        bool ok = s_int(m, "restarts") >= 2 && strcmp(s_str(m, "last_exit"), "exit code 0") == 0;
        char *text = json_dumps(m, JSON_COMPACT);
        json_decref(m);
        if (ok) {
            free(text);
            break;
        }
        cr_assert(lc_mono_ms() < deadline, "s was not restarted after exit 0: %s\n%s", text,
                  s_out());
        free(text);
        s_tick();
    }
    s_wait_out("restarting s in 50 ms", 5000);
    lc_client_destroy(&c);
}

Test(launch, never_is_not_restarted_after_crash)
{
    s_write(s_sys,
            "bus:\n  endpoint: %s\n"
            "modules:\n"
            "  n:\n    program: lc-echo\n    restart: never\n    backoff: {initial_ms: 50}\n"
            "  other:\n    program: lc-echo\n",
            h_bus);
    lc_client_t *c = s_up("n", "other", NULL);
    pid_t old = s_pid_of(c, "n");
    json_t *res = NULL;
    int rc = lc_call(c, "n.crash", NULL, &res, 10000);
    cr_assert_eq(rc, LC_EGONE, "n.crash: %s", lc_strerror(rc));
    json_decref(res);
    json_t *m = s_wait_child(c, "n", "stopped", 0, 0, 10000);
    cr_assert_eq(s_int(m, "restarts"), 0);
    cr_assert_str_eq(s_str(m, "last_exit"), "signal ABRT");
    json_decref(m);
    cr_assert(!s_pid_alive(old));
    char ended[64];
    snprintf(ended, sizeof ended, "n (pid %d) ended: signal ABRT", (int)old);
    s_wait_out(ended, 5000);
    cr_assert(!s_out_has("restarting n"), "n was restarted:\n%s", s_out());
    s_wait_unlisted(c, "n", 10000);
    s_echo_ok(c, "other.echo");
    lc_client_destroy(&c);
}

/* ---- 4. Backoff and intensity ------------------------------------------------------- */

static void s_failing_system(void)
{
    s_write(s_sys,
            "bus:\n  endpoint: %s\n  start_timeout_ms: 500\n"
            "modules:\n"
            "  f:\n    program: /bin/false\n    restart: always\n"
            "    backoff: {initial_ms: 50, max_ms: 400}\n"
            "    intensity: {restarts: 3, seconds: 60}\n"
            "  e:\n    program: lc-echo\n",
            h_bus);
}

Test(launch, backoff_doubles_then_intensity_gives_up)
{
    s_failing_system();
    lc_client_t *c = s_up("e", NULL);
    pid_t epid = s_pid_of(c, "e");
    json_t *m = s_wait_child(c, "f", "failed", 3, 0, 15000);
    cr_assert_eq(s_int(m, "restarts"), 3, "f was restarted %d times", s_int(m, "restarts"));
    cr_assert_str_eq(s_str(m, "last_exit"), "exit code 1");
    cr_assert_eq(s_int(m, "pid"), 0);
    json_decref(m);

    char *out = s_slurp(s_lp->log);
    const char *d1 = strstr(out, "restarting f in 50 ms");
    const char *d2 = strstr(out, "restarting f in 100 ms");
    const char *d3 = strstr(out, "restarting f in 200 ms");
    const char *gave = strstr(out, "f restarted 3 times within 60 s: given up");
    cr_assert(d1 && d2 && d3 && gave, "the delays or the giving up are missing:\n%s", out);
    cr_assert(d1 < d2 && d2 < d3 && d3 < gave, "out of order:\n%s", out);
    cr_assert(!strstr(out, "restarting f in 400 ms"), "a fourth restart:\n%s", out);
    free(out);

    /* The rest runs on, untouched. */
    s_echo_ok(c, "e.echo");
    m = s_wait_child(c, "e", "running", 0, 0, 1000);
    cr_assert_eq(s_int(m, "pid"), epid);
    cr_assert_eq(s_int(m, "restarts"), 0);
    json_decref(m);
    cr_assert_eq(h_wait_exit(s_lp, 0), -1, "lc-launch ended\n%s", s_out());
    lc_client_destroy(&c);
}

/* lc-launch --help: "Exit status: 0 when everything stopped cleanly, 1 when a module had to
 * be killed or failed". A module given up is in state "failed". */
Test(launch, exit_status_1_after_a_module_was_given_up)
{
    s_failing_system();
    lc_client_t *c = s_up("e", NULL);
    json_decref(s_wait_child(c, "f", "failed", 3, 0, 15000));
    lc_client_destroy(&c);
    int st = s_term(20000);
    cr_assert(WIFEXITED(st), "status 0x%x\n%s", st, s_out());
    cr_expect_eq(WEXITSTATUS(st), 1, "exit status %d with module f failed\n%s", WEXITSTATUS(st),
                 s_out());
}

/* ---- 5. Shutdown in reverse dependency order ---------------------------------------- */

/* The order in which modules finished their shutdown: the first module_state event of each
 * that says "inactive" (it reported the end of its shutdown) or "gone" (it left: the broker
 * may notice the process's end before it reads the module's last report). */
typedef struct {
    char names[8][16];
    int n;
    char seen[512]; /* every event, for failure messages */
} inactive_t;

static void s_on_state(lc_request_t *req, json_t *args, void *arg)
{
    (void)req;
    inactive_t *in = arg;
    const char *module = s_str(args, "module"), *state = s_str(args, "state");
    size_t len = strlen(in->seen);
    snprintf(in->seen + len, sizeof in->seen - len, "%s:%s ", module, state);
    if (strcmp(state, "inactive") != 0 && strcmp(state, "gone") != 0)
        return;
    if (strcmp(module, "tail") == 0)
        return; /* not the launcher's (see below) */
    for (int i = 0; i < in->n; i++)
        if (strcmp(in->names[i], module) == 0)
            return;
    if (in->n < 8)
        snprintf(in->names[in->n++], sizeof in->names[0], "%s", module);
}

static void s_ignore_reply(lc_client_t *self, int rc, json_t *result, void *arg)
{
    (void)self;
    (void)rc;
    (void)result;
    (void)arg;
}

Test(launch, sigterm_stops_in_reverse_order)
{
    /* Written in another order than the dependencies (a, b, c): c, a, b. A short drain, for
     * the module `tail` below. */
    s_write(s_sys,
            "bus:\n  endpoint: %s\n  drain_ms: 300\n"
            "modules:\n"
            "  c:\n    program: lc-echo\n    after: [b]\n"
            "  a:\n    program: lc-echo\n"
            "  b:\n    program: lc-echo\n    after: [a]\n",
            h_bus);
    lc_client_t *c = s_up("a", "b", "c", NULL);
    pid_t pa = s_pid_of(c, "a"), pb = s_pid_of(c, "b"), pc = s_pid_of(c, "c");
    json_t *b = s_broker_entry(c);
    pid_t pbroker = s_int(b, "pid");
    json_decref(b);
    cr_assert_gt(pbroker, 0);
    lc_client_destroy(&c);

    /* An anonymous client (a tool: the exit sequence leaves it alone) hears every module
     * report the end of its shutdown ("inactive"), after which the broker asks the next. */
    inactive_t in = {0};
    lc_client_t *w = lc_client_new(NULL, h_bus);
    cr_assert(w);
    cr_assert_eq(lc_on(w, "module_state", s_on_state, &in), 0);
    int rc = lc_connect(w, 10000);
    cr_assert_eq(rc, 0, "%s", lc_strerror(rc));

    /* The broker's last events before it exits do not always reach a subscriber (see the
     * report), so the broker is kept running after c, b and a: a module that is not the
     * launcher's, registered last (so shut down last), busy in a handler for 1.5 s. */
    h_spawn("tail", BIN("lc-echo"), "--name", "tail", "--bus", h_bus, NULL);
    s_wait_ready(w, 10000, "tail", NULL);
    rc = lc_call_async(w, "tail.block", json_pack("{s:i}", "ms", 1500), 10000, s_ignore_reply,
                       NULL);
    cr_assert_eq(rc, 0, "%s", lc_strerror(rc));
    h_wait_module_int(w, "tail", "calls_in", 1, 5000);

    kill(s_lp->pid, SIGTERM);
    int fd = lc_fd(w);
    int64_t deadline = lc_mono_ms() + 20000;
    while (in.n < 3 && lc_mono_ms() < deadline) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int t = lc_timeout(w);
        poll(&p, 1, t < 0 || t > 20 ? 20 : t);
        lc_dispatch(w);
    }
    cr_assert_eq(in.n, 3, "shutdown reports: %d of 3 (events: %s)\n%s", in.n, in.seen, s_out());
    cr_assert(strcmp(in.names[0], "c") == 0 && strcmp(in.names[1], "b") == 0 &&
                  strcmp(in.names[2], "a") == 0,
              "shut down in the order %s, %s, %s, not c, b, a (events: %s)", in.names[0],
              in.names[1], in.names[2], in.seen);
    lc_client_destroy(&w);

    int st = h_wait_exit(s_lp, 20000);
    char *out = s_slurp(s_lp->log);
    cr_assert_neq(st, -1, "lc-launch did not stop\n%s", out);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "status 0x%x\n%s", st, out);
    /* Every module left the bus and ended cleanly. (The "said goodbye" lines themselves may
     * come out in another order: a module reports inactive, then disconnects, while the
     * next one already shuts down.) */
    const char *names[] = {"a", "b", "c"};
    pid_t pids[] = {pa, pb, pc};
    for (int i = 0; i < 3; i++) {
        char left[64], ended[64];
        snprintf(left, sizeof left, "module %s (pid %d) ", names[i], (int)pids[i]);
        snprintf(ended, sizeof ended, "%s (pid %d) ended: exit code 0", names[i], (int)pids[i]);
        cr_assert(strstr(out, left), "the broker did not see %s leave:\n%s", names[i], out);
        cr_assert(strstr(out, ended), "%s did not end cleanly:\n%s", names[i], out);
    }
    cr_assert(strstr(out, "| stopped\n"), "no clean \"stopped\":\n%s", out);
    free(out);
    pid_t all[] = {pa, pb, pc, pbroker};
    for (size_t i = 0; i < 4; i++)
        cr_assert(!s_pid_alive(all[i]), "pid %d still exists after lc-launch ended",
                  (int)all[i]);
}

/* ---- 6. SIGKILL for a module that ignores SIGTERM ----------------------------------- */

Test(launch, stubborn_module_is_killed_after_its_timeout)
{
    s_write(s_sys,
            "bus:\n  endpoint: %s\n  exit_timeout_ms: 1000\n  start_timeout_ms: 500\n"
            "modules:\n"
            "  stubborn:\n    program: /bin/sh\n"
            "    args: [-c, \"trap '' TERM; echo ignoring TERM; while :; do sleep 0.2; done\"]\n"
            "    stop_timeout_ms: 300\n",
            h_bus);
    lc_client_t *c = s_up(NULL);
    pid_t pid = s_pid_of(c, "stubborn");
    lc_client_destroy(&c);
    s_wait_out("stubborn     | ignoring TERM", 10000); /* the trap is set */
    int64_t t0 = lc_mono_ms();
    int st = s_term(10000);
    int64_t took = lc_mono_ms() - t0;
    char *out = s_slurp(s_lp->log);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 1, "status 0x%x, not exit 1\n%s", st, out);
    /* Bounded by the configured timeouts (at most the broker's 5 s drain, 1 s exit, the
     * module's 300 ms), with room for a busy machine. */
    cr_assert_lt(took, 9000, "lc-launch took %lld ms\n%s", (long long)took, out);
    cr_assert(strstr(out, "stubborn did not stop within 300 ms: SIGKILL"), "%s", out);
    cr_assert(strstr(out, "signal KILL"), "%s", out);
    free(out);
    cr_assert(!s_pid_alive(pid), "the stubborn module (pid %d) is still there", (int)pid);
}

/* ---- 7. SIGHUP -------------------------------------------------------------------------- */

Test(launch, sighup_adds_removes_and_restarts_changed)
{
    s_write(s_sys,
            "bus:\n  endpoint: %s\n"
            "modules:\n"
            "  keep:\n    program: lc-echo\n"
            "  old:\n    program: lc-echo\n"
            "  changed:\n    program: lc-echo\n    args: [--window, \"8\"]\n",
            h_bus);
    lc_client_t *c = s_up("keep", "old", "changed", NULL);
    pid_t keep = s_pid_of(c, "keep"), changed = s_pid_of(c, "changed"), old = s_pid_of(c, "old");

    s_write(s_sys,
            "bus:\n  endpoint: %s\n"
            "modules:\n"
            "  keep:\n    program: lc-echo\n"
            "  newmod:\n    program: lc-echo\n"
            "  changed:\n    program: lc-echo\n    args: [--window, \"16\"]\n",
            h_bus);
    kill(s_lp->pid, SIGHUP);
    s_wait_ready(c, 10000, "newmod", NULL);
    s_wait_unlisted(c, "old", 10000);
    json_t *m = s_wait_child(c, "changed", "running", 0, changed, 10000);
    pid_t changed2 = s_int(m, "pid");
    json_decref(m);
    s_wait_listed_pid(c, "changed", changed2, 10000);
    cr_assert_eq(s_pid_of(c, "keep"), keep, "keep was restarted");
    s_wait_listed_pid(c, "keep", keep, 1000);
    json_t *gone = s_child(c, "old");
    cr_assert_null(gone, "old is still in launcher.status");
    int64_t deadline = lc_mono_ms() + 10000;
    while (s_pid_alive(old)) {
        cr_assert(lc_mono_ms() < deadline, "old (pid %d) still runs\n%s", (int)old, s_out());
        s_tick();
    }
    s_echo_ok(c, "newmod.echo");
    cr_assert(s_out_has("old was removed from the file"), "%s", s_out());
    cr_assert(s_out_has("newmod was added to the file"), "%s", s_out());
    cr_assert(s_out_has("changed changed in the file: restarting it"), "%s", s_out());
    cr_assert(!s_out_has("keep changed"), "%s", s_out());

    /* A file with an error changes nothing. */
    s_write(s_sys,
            "bus:\n  endpoint: %s\n"
            "modules:\n"
            "  keep:\n    program: lc-echo\n"
            "  newmod:\n    progam: lc-echo\n",
            h_bus);
    kill(s_lp->pid, SIGHUP);
    s_wait_out("reload refused", 10000);
    char place[600];
    snprintf(place, sizeof place, "%s:7:5", s_sys);
    cr_assert(s_out_has(place), "the refusal does not name %s:\n%s", place, s_out());
    cr_assert_eq(h_wait_exit(s_lp, 0), -1, "lc-launch ended\n%s", s_out());
    cr_assert_eq(s_pid_of(c, "keep"), keep);
    cr_assert_eq(s_pid_of(c, "changed"), changed2, "changed was touched by a refused reload");
    s_wait_listed_pid(c, "newmod", s_pid_of(c, "newmod"), 1000);
    s_echo_ok(c, "newmod.echo");
    s_echo_ok(c, "changed.echo");
    lc_client_destroy(&c);
    int st = s_term(20000);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "status 0x%x\n%s", st, s_out());
}

/* A module taken out of the file while it was not running, then put back: it is a module
 * of the file again and starts. */
Test(launch, sighup_readds_a_removed_module)
{
    s_write(s_sys,
            "bus:\n  endpoint: %s\n"
            "modules:\n"
            "  k:\n    program: lc-echo\n"
            "  t:\n    program: lc-echo\n",
            h_bus);
    lc_client_t *c = s_up("k", "t", NULL);
    json_t *res = NULL;
    int rc = s_ctl(c, "stop", "t", &res);
    cr_assert_eq(rc, 0, "launcher.stop: %s", lc_strerror(rc));
    json_decref(res);
    json_decref(s_wait_child(c, "t", "stopped", 0, 0, 10000));

    s_write(s_sys, "bus:\n  endpoint: %s\nmodules:\n  k:\n    program: lc-echo\n", h_bus);
    kill(s_lp->pid, SIGHUP);
    s_wait_out("t was removed from the file", 10000);
    cr_assert_null(s_child(c, "t"));

    s_write(s_sys,
            "bus:\n  endpoint: %s\n"
            "modules:\n"
            "  k:\n    program: lc-echo\n"
            "  t:\n    program: lc-echo\n",
            h_bus);
    kill(s_lp->pid, SIGHUP);
    s_wait_ready(c, 10000, "t", NULL);
    s_echo_ok(c, "t.echo");
    s_echo_ok(c, "k.echo");
    pid_t t = s_pid_of(c, "t");
    s_wait_listed_pid(c, "t", t, 5000);
    lc_client_destroy(&c);
}

/* A reload while a module waits for the modules in its `after` (here for one that never
 * registers, until the start timeout): the module still starts, and the launcher knows it
 * runs (its pid, its end). */
Test(launch, sighup_while_a_module_waits_for_its_dependencies)
{
    s_write(s_sys,
            "bus:\n  endpoint: %s\n  start_timeout_ms: 3000\n"
            "modules:\n"
            "  gate:\n    program: /bin/sh\n    args: [-c, \"exec sleep 60\"]\n"
            "  w:\n    program: lc-echo\n    after: [gate]\n",
            h_bus);
    lc_client_t *c = s_up(NULL);
    json_decref(s_wait_child(c, "w", "waiting", 0, 0, 5000));
    s_write(s_sys,
            "bus:\n  endpoint: %s\n  start_timeout_ms: 3000\n"
            "modules:\n"
            "  gate:\n    program: /bin/sh\n    args: [-c, \"exec sleep 60\"]\n"
            "  w:\n    program: lc-echo\n    after: [gate]\n"
            "  x:\n    program: lc-echo\n",
            h_bus);
    kill(s_lp->pid, SIGHUP);
    s_wait_ready(c, 10000, "x", NULL);
    /* After the start timeout w starts anyway. */
    s_wait_ready(c, 15000, "w", NULL);
    json_t *m = s_wait_child(c, "w", "running", 0, 0, 5000);
    pid_t w = s_int(m, "pid");
    json_decref(m);
    s_wait_listed_pid(c, "w", w, 5000);
    s_echo_ok(c, "w.echo");
    lc_client_destroy(&c);
}

/* ---- 8. A crash under load touches nobody else --------------------------------------- */

typedef struct {
    int done, failed, first_rc, enough;
    char first_msg[256];
} load_t;

static void *s_load(void *arg)
{
    load_t *l = arg;
    lc_client_t *c = lc_client_new(NULL, h_bus);
    if (!c || lc_connect(c, 10000) < 0) {
        l->first_rc = LC_ENOBUS;
        __atomic_store_n(&l->failed, 1, __ATOMIC_RELEASE);
        __atomic_store_n(&l->done, -1, __ATOMIC_RELEASE);
        lc_client_destroy(&c);
        return NULL;
    }
    for (int i = 0; i < 1000000; i++) {
        if (i >= 2000 && __atomic_load_n(&l->enough, __ATOMIC_ACQUIRE))
            break;
        json_t *res = NULL;
        int rc = lc_call(c, i % 2 ? "a.echo" : "b.echo", json_pack("{s:i}", "i", i), &res, 5000);
        if (rc == 0 && json_integer_value(json_object_get(res, "i")) != i)
            rc = LC_EPROTO;
        if (rc != 0 && __atomic_fetch_add(&l->failed, 1, __ATOMIC_ACQ_REL) == 0) {
            l->first_rc = rc;
            snprintf(l->first_msg, sizeof l->first_msg, "call %d to %s: %s", i,
                     i % 2 ? "a" : "b", s_str(res, "message"));
        }
        json_decref(res);
        __atomic_add_fetch(&l->done, 1, __ATOMIC_ACQ_REL);
    }
    lc_client_destroy(&c);
    return NULL;
}

Test(launch, kill9_of_one_module_under_load)
{
    s_write(s_sys,
            "bus:\n  endpoint: %s\n"
            "launcher:\n  exception_log: %s/exc.log\n"
            "modules:\n"
            "  a:\n    program: lc-echo\n"
            "  b:\n    program: lc-echo\n"
            "  victim:\n    program: lc-echo\n    backoff: {initial_ms: 50}\n",
            h_bus, h_dir);
    lc_client_t *c = s_up("a", "b", "victim", NULL);
    pid_t victim = s_pid_of(c, "victim");
    pid_t pa = s_pid_of(c, "a"), pb = s_pid_of(c, "b");

    load_t l = {0};
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, s_load, &l), 0);
    int64_t deadline = lc_mono_ms() + 20000;
    while (__atomic_load_n(&l.done, __ATOMIC_ACQUIRE) < 200) {
        if (__atomic_load_n(&l.done, __ATOMIC_ACQUIRE) < 0 || lc_mono_ms() >= deadline) {
            __atomic_store_n(&l.enough, 1, __ATOMIC_RELEASE);
            pthread_join(th, NULL);
            cr_assert_fail("the calls did not get going (%d done)", l.done);
        }
        s_tick();
    }
    cr_assert_eq(kill(victim, SIGKILL), 0);
    json_t *m = s_wait_child(c, "victim", "running", 1, victim, 10000);
    pid_t victim2 = s_int(m, "pid");
    json_decref(m);
    s_wait_listed_pid(c, "victim", victim2, 10000);
    int at_restart = __atomic_load_n(&l.done, __ATOMIC_ACQUIRE);
    __atomic_store_n(&l.enough, 1, __ATOMIC_RELEASE);
    pthread_join(th, NULL);

    cr_assert_geq(l.done, 2000, "only %d calls", l.done);
    cr_assert_eq(l.failed, 0, "%d of %d calls failed; first: %s (%s)", l.failed, l.done,
                 lc_strerror(l.first_rc), l.first_msg);
    cr_assert_gt(at_restart, 200);
    s_echo_ok(c, "victim.echo");
    cr_assert_eq(s_pid_of(c, "a"), pa);
    cr_assert_eq(s_pid_of(c, "b"), pb);

    char path[400], want[128];
    snprintf(path, sizeof path, "%s/exc.log", h_dir);
    snprintf(want, sizeof want, "crash: module victim, pid %d, signal KILL", (int)victim);
    char *exc = s_slurp(path);
    cr_assert(strstr(exc, want), "no \"%s\" in the exception log:\n%s", want, exc);
    cr_assert(!strstr(exc, "module a,") && !strstr(exc, "module b,"), "%s", exc);
    free(exc);
    lc_client_destroy(&c);
    int st = s_term(20000);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "status 0x%x\n%s", st, s_out());
}

/* ---- 9. The broker crashes ---------------------------------------------------------- */

Test(launch, kill9_of_the_broker)
{
    s_write(s_sys,
            "bus:\n  endpoint: %s\n"
            "modules:\n"
            "  a:\n    program: lc-echo\n"
            "  b:\n    program: lc-echo\n",
            h_bus);
    lc_client_t *c = s_up("a", "b", NULL);
    pid_t pa = s_pid_of(c, "a"), pb = s_pid_of(c, "b");
    json_t *b = s_broker_entry(c);
    pid_t broker = s_int(b, "pid");
    json_decref(b);
    cr_assert_gt(broker, 0);
    lc_client_destroy(&c);

    cr_assert_eq(kill(broker, SIGKILL), 0);
    int64_t deadline = lc_mono_ms() + 10000;
    while (s_pid_alive(broker)) {
        cr_assert(lc_mono_ms() < deadline, "the killed broker is still there");
        s_tick();
    }
    /* A new client, as soon as the new broker answers. */
    deadline = lc_mono_ms() + 20000;
    for (;;) {
        c = lc_client_new(NULL, h_bus);
        cr_assert(c);
        int rc = lc_connect(c, 1000);
        if (rc == 0)
            break;
        lc_client_destroy(&c);
        cr_assert(lc_mono_ms() < deadline, "no broker after 20 s: %s\n%s", lc_strerror(rc),
                  s_out());
        s_tick();
    }
    s_wait_ready(c, 15000, "launcher", "a", "b", NULL);
    s_echo_ok(c, "a.echo");
    s_echo_ok(c, "b.echo");
    /* The same processes, registered again by themselves. */
    s_wait_listed_pid(c, "a", pa, 5000);
    s_wait_listed_pid(c, "b", pb, 5000);
    cr_assert_eq(s_pid_of(c, "a"), pa);
    cr_assert_eq(s_pid_of(c, "b"), pb);

    b = s_broker_entry(c);
    cr_assert_str_eq(s_str(b, "state"), "running");
    cr_assert_neq(s_int(b, "pid"), broker);
    cr_assert_gt(s_int(b, "pid"), 0);
    char ended[64];
    snprintf(ended, sizeof ended, "broker (pid %d) ended: signal KILL", (int)broker);
    s_wait_out(ended, 5000);
    json_t *res = NULL;
    int rc = lc_call(c, "broker.ping", NULL, &res, 5000);
    cr_assert_eq(rc, 0, "broker.ping: %s", lc_strerror(rc));
    cr_assert_eq(s_int(res, "pid"), s_int(b, "pid"), "launcher.status names another broker");
    json_decref(res);
    cr_expect_eq(s_int(b, "restarts"), 1, "launcher.status: broker restarted, restarts is %d",
                 s_int(b, "restarts"));
    json_decref(b);
    lc_client_destroy(&c);
    int st = s_term(20000);
    cr_assert(WIFEXITED(st), "status 0x%x\n%s", st, s_out());
}

/* ---- 10. The launcher's methods --------------------------------------------------------- */

Test(launch, launcher_methods)
{
    s_write(s_sys,
            "bus:\n  endpoint: %s\n"
            "modules:\n"
            "  a:\n    program: lc-echo\n"
            "  b:\n    program: lc-echo\n    after: [a]\n",
            h_bus);
    lc_client_t *c = s_up("a", "b", NULL);

    /* status: every module, and the broker. */
    json_t *st = s_status(c);
    json_t *mods = json_object_get(st, "modules");
    cr_assert_eq(json_array_size(mods), 2);
    cr_assert_str_eq(s_str(json_array_get(mods, 0), "name"), "a");
    cr_assert_str_eq(s_str(json_array_get(mods, 1), "name"), "b");
    for (size_t i = 0; i < 2; i++) {
        json_t *m = json_array_get(mods, i);
        cr_assert_str_eq(s_str(m, "state"), "running");
        cr_assert_gt(s_int(m, "pid"), 0);
        cr_assert_eq(s_int(m, "restarts"), 0);
        cr_assert(json_is_null(json_object_get(m, "last_exit")));
        cr_assert(json_is_integer(json_object_get(m, "uptime_ms")));
    }
    json_t *br = json_object_get(st, "broker");
    cr_assert_str_eq(s_str(br, "state"), "running");
    cr_assert_gt(s_int(br, "pid"), 0);
    json_decref(st);
    pid_t pa = s_pid_of(c, "a"), pb = s_pid_of(c, "b");

    /* stop: stopped, gone from the bus, not restarted. */
    json_t *res = NULL;
    int rc = s_ctl(c, "stop", "a", &res);
    cr_assert_eq(rc, 0, "launcher.stop: %s (%s)", lc_strerror(rc), s_str(res, "message"));
    json_decref(res);
    json_t *m = s_wait_child(c, "a", "stopped", 0, 0, 10000);
    cr_assert_str_eq(s_str(m, "last_exit"), "exit code 0");
    json_decref(m);
    s_wait_unlisted(c, "a", 10000);
    cr_assert(!s_pid_alive(pa));
    cr_assert(!s_out_has("restarting a"), "%s", s_out());
    cr_assert_eq(s_pid_of(c, "b"), pb);

    /* start: running again. */
    rc = s_ctl(c, "start", "a", &res);
    cr_assert_eq(rc, 0, "launcher.start: %s (%s)", lc_strerror(rc), s_str(res, "message"));
    json_decref(res);
    m = s_wait_child(c, "a", "running", 0, pa, 10000);
    pid_t pa2 = s_int(m, "pid");
    json_decref(m);
    s_wait_listed_pid(c, "a", pa2, 10000);
    s_echo_ok(c, "a.echo");

    /* start of a running module: an error. */
    rc = s_ctl(c, "start", "a", &res);
    cr_assert_eq(rc, LC_EHANDLER, "launcher.start of a running module: %s", lc_strerror(rc));
    json_decref(res);

    /* restart: a new process. */
    rc = s_ctl(c, "restart", "b", &res);
    cr_assert_eq(rc, 0, "launcher.restart: %s (%s)", lc_strerror(rc), s_str(res, "message"));
    json_decref(res);
    m = s_wait_child(c, "b", "running", 0, pb, 10000);
    pid_t pb2 = s_int(m, "pid");
    json_decref(m);
    cr_assert_neq(pb2, pb);
    s_wait_listed_pid(c, "b", pb2, 10000);
    s_echo_ok(c, "b.echo");
    cr_assert(!s_pid_alive(pb));

    /* Unknown or missing names: a handler error. */
    const char *methods[] = {"stop", "start", "restart"};
    for (size_t i = 0; i < 3; i++) {
        rc = s_ctl(c, methods[i], "nosuch", &res);
        cr_assert_eq(rc, LC_EHANDLER, "launcher.%s nosuch: %s", methods[i], lc_strerror(rc));
        cr_assert(strstr(s_str(res, "message"), "nosuch"), "%s", s_str(res, "message"));
        json_decref(res);
    }
    res = NULL;
    rc = lc_call(c, "launcher.stop", json_object(), &res, 5000);
    cr_assert_eq(rc, LC_EHANDLER, "launcher.stop {}: %s", lc_strerror(rc));
    json_decref(res);
    lc_client_destroy(&c);
    int status = s_term(20000);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status 0x%x\n%s", status, s_out());
}

/* A second lc-launch on an endpoint a running system serves: its broker cannot start, and
 * it says so with the broker's own words instead of starting modules on the wrong bus. */
Test(launch, second_system_on_the_same_endpoint_is_refused)
{
    s_write(s_sys, "bus:\n  endpoint: %s\nmodules:\n  e:\n    program: lc-echo\n", h_bus);
    lc_client_t *c = s_up("e", NULL);
    proc_t *second = s_run("second", s_sys, NULL);
    int st = h_wait_exit(second, 15000);
    char *out = s_slurp(second->log);
    cr_assert(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 1, "status 0x%x\n%s", st, out);
    cr_assert(strstr(out, "another broker is already serving"), "%s", out);
    cr_assert(strstr(out, "lc-broker could not start"), "%s", out);
    cr_assert(!strstr(out, "started e"), "the second system started a module:\n%s", out);
    free(out);
    s_echo_ok(c, "e.echo"); /* the first system runs on */
    lc_client_destroy(&c);
}
