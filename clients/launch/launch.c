/* lc-launch: a whole system from one YAML file. Starts lc-broker and the modules in
 * dependency order, collects their output, restarts them by policy, stops everything in
 * order through the bus's exit sequence, and is on the bus itself as module "launcher". */
#include "../common.h"
#include "lc.h"
#include "system.h"
#include "wire.h" /* lc_timestamp */

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define TAIL_LINES 20
#define LINE_MAX_LEN 4096
#define NAME_LEN 65 /* module names are at most 64 bytes */

enum { CH_WAITING, CH_RUNNING, CH_BACKOFF, CH_STOPPED, CH_FAILED };
static const char *const s_states[] = {"waiting", "running", "backoff", "stopped", "failed"};

typedef struct child {
    spec_t *spec; /* points into the current system (or is the broker's) */
    char name[NAME_LEN];
    pid_t pid;
    int pidfd, out_fd;
    char line[LINE_MAX_LEN];
    size_t linelen;
    char *tail[TAIL_LINES];
    int tail_pos;
    int state;
    int restarts;
    int64_t restart_times[64];
    int nrestart_times;
    int backoff_ms;
    int64_t next_start, started_at, kill_at;
    int last_status;
    bool has_status;
    bool stop_requested, restart_requested, removed;
    bool waiting_deps;
    FILE *log;
} child_t;

typedef struct {
    system_t *sys;
    char *sys_path;
    lc_client_t *bus;
    int epfd, sigfd;
    child_t broker;
    child_t *children;
    int nchildren;
    bool stopping;
    int64_t stop_deadline;
    bool unclean;
    char self_dir[PATH_MAX];
    system_t *retired[64]; /* systems replaced by a reload, still pointed at */
    int nretired;
} launcher_t;

static launcher_t L;

/* ---- Output --------------------------------------------------------------------------- */

static void s_say(const char *who, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void s_say(const char *who, const char *fmt, ...)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    localtime_r(&ts.tv_sec, &tm);
    char when[16], msg[LINE_MAX_LEN + 128];
    strftime(when, sizeof when, "%H:%M:%S", &tm);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    printf("%s.%03ld %-12s | %s\n", when, ts.tv_nsec / 1000000, who, msg);
    fflush(stdout);
}

static void s_line(child_t *c, const char *text)
{
    s_say(c->name, "%s", text);
    if (c->log) {
        fprintf(c->log, "%s\n", text);
        fflush(c->log);
    }
    free(c->tail[c->tail_pos]);
    c->tail[c->tail_pos] = strdup(text);
    c->tail_pos = (c->tail_pos + 1) % TAIL_LINES;
}

static void s_read_output(child_t *c)
{
    char buf[4096];
    ssize_t n;
    while ((n = read(c->out_fd, buf, sizeof buf)) > 0) {
        for (ssize_t i = 0; i < n; i++) {
            if (buf[i] == '\n' || c->linelen == sizeof c->line - 1) {
                c->line[c->linelen] = 0;
                s_line(c, c->line);
                c->linelen = 0;
                if (buf[i] == '\n')
                    continue;
            }
            c->line[c->linelen++] = buf[i];
        }
    }
    if (n == 0) { /* the child closed its output: it is ending */
        if (c->linelen) {
            c->line[c->linelen] = 0;
            s_line(c, c->line);
            c->linelen = 0;
        }
        epoll_ctl(L.epfd, EPOLL_CTL_DEL, c->out_fd, NULL);
        close(c->out_fd);
        c->out_fd = -1;
    }
}

static void s_status_text(int status, char *buf, size_t size)
{
    if (WIFEXITED(status))
        snprintf(buf, size, "exit code %d", WEXITSTATUS(status));
    else if (WIFSIGNALED(status))
        snprintf(buf, size, "signal %s", sigabbrev_np(WTERMSIG(status)) ? sigabbrev_np(WTERMSIG(status)) : "?");
    else
        snprintf(buf, size, "status %d", status);
}

/* Decision 14: a process death goes to the exception log as a crash record. */
static void s_crash_record(child_t *c, int status)
{
    if (!L.sys->exception_log)
        return;
    FILE *f = fopen(L.sys->exception_log, "a");
    if (!f) {
        s_say("launcher", "cannot write the exception log %s: %s", L.sys->exception_log,
              strerror(errno));
        return;
    }
    char when[32], why[64];
    lc_timestamp(when, sizeof when, true);
    s_status_text(status, why, sizeof why);
    fprintf(f, "%s crash: module %s, pid %d, %s\n", when, c->name, (int)c->pid, why);
    for (int i = 0; i < TAIL_LINES; i++) {
        const char *t = c->tail[(c->tail_pos + i) % TAIL_LINES];
        if (t)
            fprintf(f, "  | %s\n", t);
    }
    fputc('\n', f);
    fclose(f);
}

/* ---- Children ------------------------------------------------------------------------- */

static int64_t s_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A program without a slash is looked for beside lc-launch first, then on PATH. */
static void s_exec(const char *program, char **argv)
{
    if (!strchr(program, '/')) {
        char path[PATH_MAX + 64];
        snprintf(path, sizeof path, "%s/%s", L.self_dir, program);
        if (access(path, X_OK) == 0)
            execv(path, argv);
    }
    execvp(program, argv);
}

static int s_spawn(child_t *c, const char *program, char **args, char **env, const char *cwd)
{
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) < 0)
        return -errno;
    pid_t launcher = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        int e = errno;
        close(fds[0]);
        close(fds[1]);
        return -e;
    }
    if (pid == 0) {
        /* A process group of its own: Ctrl-C reaches lc-launch, which stops things in order. */
        setpgid(0, 0);
        /* If lc-launch dies, its system stops (SIGTERM: each process shuts down in order)
         * rather than running on unsupervised, so that a service manager can start it all
         * again: a broker left behind would keep the new one from its endpoint. */
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        if (getppid() != launcher)
            _exit(1);
        dup2(fds[1], STDOUT_FILENO);
        dup2(fds[1], STDERR_FILENO);
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        if (cwd && chdir(cwd) < 0) {
            fprintf(stderr, "lc-launch: cannot enter %s: %s\n", cwd, strerror(errno));
            _exit(126);
        }
        setenv("LC_BUS", L.sys->endpoint, 1);
        setenv("LC_CONFIG", L.sys->path, 1);
        setenv("LC_MODULE", c->name, 1);
        if (L.sys->exception_log)
            setenv("LC_EXCEPTION_LOG", L.sys->exception_log, 1);
        const char *level = c->spec && c->spec->log_level ? c->spec->log_level : L.sys->log_level;
        if (level)
            setenv("LC_LOG_LEVEL", level, 1);
        for (char **e = env; e && *e; e++)
            putenv(*e);
        char *argv[256];
        int n = 0;
        argv[n++] = (char *)program;
        for (char **a = args; a && *a && n < 255; a++)
            argv[n++] = *a;
        argv[n] = NULL;
        s_exec(program, argv);
        fprintf(stderr, "lc-launch: cannot run %s: %s\n", program, strerror(errno));
        _exit(127);
    }
    close(fds[1]);
    fcntl(fds[0], F_SETFL, O_NONBLOCK);
    c->pid = pid;
    c->out_fd = fds[0];
    c->pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    c->state = CH_RUNNING;
    c->started_at = s_now();
    c->has_status = false;
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &c->out_fd};
    epoll_ctl(L.epfd, EPOLL_CTL_ADD, c->out_fd, &ev);
    struct epoll_event pe = {.events = EPOLLIN, .data.ptr = &c->pidfd};
    epoll_ctl(L.epfd, EPOLL_CTL_ADD, c->pidfd, &pe);
    return 0;
}

static void s_start_module(child_t *c)
{
    if (L.stopping || c->removed)
        return;
    c->stop_requested = false;
    int rc = s_spawn(c, c->spec->program, c->spec->args, c->spec->env, c->spec->cwd);
    if (rc < 0) {
        s_say("launcher", "cannot start %s: %s", c->name, strerror(-rc));
        c->state = CH_FAILED;
        return;
    }
    s_say("launcher", "started %s (pid %d)", c->name, (int)c->pid);
}

static child_t *s_child(const char *name);

static void s_deps_ready(lc_client_t *bus, int rc, json_t *result, void *arg)
{
    (void)bus;
    (void)result;
    /* By name: a reload may have moved the children since the wait began. */
    char *name = arg;
    child_t *c = s_child(name);
    free(name);
    if (!c)
        return;
    c->waiting_deps = false;
    if (rc < 0)
        s_say("launcher", "%s: the modules it waits for are not ready (%s); starting it anyway",
              c->name, lc_strerror(rc));
    if (c->state == CH_WAITING)
        s_start_module(c);
}

/* Starts a module now, or once the modules it waits for are ready on the bus. */
static void s_launch(child_t *c)
{
    c->state = CH_WAITING;
    if (!c->spec->after || !c->spec->after[0]) {
        s_start_module(c);
        return;
    }
    json_t *names = json_array();
    for (char **a = c->spec->after; *a; a++)
        json_array_append_new(names, json_string(*a));
    c->waiting_deps = true;
    char *name = strdup(c->name);
    if (!name || lc_call_async(L.bus, "broker.wait", json_pack("{s:o}", "modules", names),
                               L.sys->start_timeout_ms > 0 ? L.sys->start_timeout_ms : 10000,
                               s_deps_ready, name) < 0) {
        free(name);
        c->waiting_deps = false;
        s_start_module(c);
    }
}

static void s_signal_child(child_t *c, int sig)
{
    if (c->state == CH_RUNNING && c->pid > 0)
        kill(c->pid, sig);
}

/* Stops one module: SIGTERM (it shuts down through its hooks), SIGKILL after its timeout. */
static void s_stop_child(child_t *c)
{
    c->stop_requested = true;
    if (c->state == CH_RUNNING) {
        s_signal_child(c, SIGTERM);
        c->kill_at = s_now() + (c->spec ? c->spec->stop_timeout_ms : 5000);
    } else if (c->state != CH_FAILED) {
        c->state = CH_STOPPED;
    }
}

static bool s_intensity_exceeded(child_t *c)
{
    int64_t now = s_now(), window = (int64_t)c->spec->intensity_seconds * 1000;
    int recent = 0;
    for (int i = 0; i < c->nrestart_times; i++)
        if (now - c->restart_times[i] <= window)
            c->restart_times[recent++] = c->restart_times[i];
    c->nrestart_times = recent;
    if (recent >= c->spec->intensity_restarts)
        return true;
    if (c->nrestart_times < 64)
        c->restart_times[c->nrestart_times++] = now;
    return false;
}

static void s_on_exit(child_t *c)
{
    int status = 0;
    if (waitpid(c->pid, &status, 0) < 0)
        return;
    if (c->out_fd >= 0)
        s_read_output(c);
    epoll_ctl(L.epfd, EPOLL_CTL_DEL, c->pidfd, NULL);
    close(c->pidfd);
    c->pidfd = -1;
    c->last_status = status;
    c->has_status = true;
    char why[64];
    s_status_text(status, why, sizeof why);
    bool clean = WIFEXITED(status) && WEXITSTATUS(status) == 0;
    int64_t ran = s_now() - c->started_at;
    s_say("launcher", "%s (pid %d) ended: %s", c->name, (int)c->pid, why);
    if (!clean && !(c->stop_requested && WIFSIGNALED(status) && WTERMSIG(status) == SIGTERM))
        s_crash_record(c, status);
    if (L.stopping) {
        if (!clean)
            L.unclean = true;
        c->state = CH_STOPPED;
        return;
    }
    if (c == &L.broker) {
        /* The modules reconnect and register again by themselves. */
        c->restarts++;
        c->state = CH_BACKOFF;
        c->next_start = s_now() + 100;
        s_say("launcher", "restarting the broker in 100 ms");
        return;
    }
    if (c->removed) {
        c->state = CH_STOPPED;
        return;
    }
    if (c->restart_requested) {
        c->restart_requested = false;
        c->state = CH_WAITING;
        s_launch(c);
        return;
    }
    if (c->stop_requested) {
        c->state = CH_STOPPED;
        return;
    }
    bool again = c->spec->restart == RESTART_ALWAYS ||
                 (c->spec->restart == RESTART_ON_FAILURE && !clean);
    if (!again) {
        c->state = CH_STOPPED;
        return;
    }
    if (s_intensity_exceeded(c)) {
        s_say("launcher", "%s restarted %d times within %d s: given up", c->name,
              c->spec->intensity_restarts, c->spec->intensity_seconds);
        c->state = CH_FAILED;
        return;
    }
    /* A module that ran a while starts again quickly; one that keeps failing, slower. */
    if (ran > c->spec->backoff_max_ms || c->backoff_ms == 0)
        c->backoff_ms = c->spec->backoff_initial_ms;
    else if (c->backoff_ms < c->spec->backoff_max_ms)
        c->backoff_ms = c->backoff_ms * 2 > c->spec->backoff_max_ms ? c->spec->backoff_max_ms
                                                                     : c->backoff_ms * 2;
    c->restarts++;
    c->state = CH_BACKOFF;
    c->next_start = s_now() + c->backoff_ms;
    s_say("launcher", "restarting %s in %d ms", c->name, c->backoff_ms);
}

/* ---- The broker ----------------------------------------------------------------------- */

static char s_broker_name[] = "broker";

static int s_start_broker(void)
{
    char **args = NULL;
    int n = 0;
    args = calloc(64, sizeof *args);
    args[n++] = "--endpoint";
    args[n++] = L.sys->endpoint;
    for (char **a = L.sys->broker_args; a && *a && n < 62; a++)
        args[n++] = *a;
    args[n] = NULL;
    int rc = s_spawn(&L.broker, "lc-broker", args, NULL, NULL);
    free(args);
    if (rc == 0)
        s_say("launcher", "started the broker on %s (pid %d)", L.sys->endpoint, (int)L.broker.pid);
    return rc;
}

/* ---- The launcher on the bus ---------------------------------------------------------- */

static child_t *s_child(const char *name)
{
    for (int i = 0; i < L.nchildren; i++)
        if (name && strcmp(L.children[i].name, name) == 0)
            return &L.children[i];
    return NULL;
}

static json_t *s_child_info(child_t *c)
{
    char why[64] = "";
    if (c->has_status)
        s_status_text(c->last_status, why, sizeof why);
    json_t *o = json_pack("{s:s, s:s, s:i, s:i}", "name", c->name, "state", s_states[c->state],
                          "pid", c->state == CH_RUNNING ? (int)c->pid : 0, "restarts",
                          c->restarts);
    json_object_set_new(o, "last_exit", c->has_status ? json_string(why) : json_null());
    json_object_set_new(o, "uptime_ms", json_integer(c->state == CH_RUNNING
                                                         ? (json_int_t)(s_now() - c->started_at)
                                                         : 0));
    return o;
}

static void s_m_status(lc_request_t *req, json_t *args, void *arg)
{
    (void)args;
    (void)arg;
    json_t *list = json_array();
    for (int i = 0; i < L.nchildren; i++)
        if (!L.children[i].removed)
            json_array_append_new(list, s_child_info(&L.children[i]));
    lc_reply(req, json_pack("{s:o, s:o, s:s, s:b}", "modules", list, "broker",
                            s_child_info(&L.broker), "system", L.sys->path, "stopping",
                            L.stopping));
}

static child_t *s_named(lc_request_t *req, json_t *args)
{
    const char *name = json_string_value(json_object_get(args, "name"));
    child_t *c = s_child(name);
    if (!c || c->removed)
        lc_reply_error(req, 2, "no module '%s' in %s", name ? name : "(name missing)",
                       L.sys->path);
    return c && !c->removed ? c : NULL;
}

static void s_m_stop(lc_request_t *req, json_t *args, void *arg)
{
    (void)arg;
    child_t *c = s_named(req, args);
    if (!c)
        return;
    s_say("launcher", "stopping %s (asked by %s)", c->name, lc_request_source(req));
    s_stop_child(c);
    lc_reply(req, s_child_info(c));
}

static void s_m_start(lc_request_t *req, json_t *args, void *arg)
{
    (void)arg;
    child_t *c = s_named(req, args);
    if (!c)
        return;
    if (c->state == CH_RUNNING || c->state == CH_WAITING) {
        lc_reply_error(req, 3, "%s is already %s", c->name, s_states[c->state]);
        return;
    }
    c->nrestart_times = 0;
    c->backoff_ms = 0;
    s_launch(c);
    lc_reply(req, s_child_info(c));
}

static void s_m_restart(lc_request_t *req, json_t *args, void *arg)
{
    (void)arg;
    child_t *c = s_named(req, args);
    if (!c)
        return;
    s_say("launcher", "restarting %s (asked by %s)", c->name, lc_request_source(req));
    c->nrestart_times = 0;
    c->backoff_ms = 0;
    if (c->state == CH_RUNNING) {
        s_stop_child(c);
        c->restart_requested = true;
    } else {
        s_launch(c);
    }
    lc_reply(req, s_child_info(c));
}

static void s_on_exit_event(lc_request_t *req, json_t *args, void *arg)
{
    (void)req;
    (void)args;
    (void)arg;
    if (!L.stopping) {
        s_say("launcher", "the bus is exiting: no module is restarted from now on");
        L.stopping = true;
        L.stop_deadline = s_now() + L.sys->exit_timeout_ms + L.sys->stop_timeout_ms + 2000;
    }
}

/* ---- Start, reload, stop -------------------------------------------------------------- */

static void s_children_from(system_t *sys)
{
    L.children = calloc((size_t)sys->nmodules, sizeof *L.children);
    L.nchildren = sys->nmodules;
    for (int i = 0; i < sys->nmodules; i++) {
        child_t *c = &L.children[i];
        c->spec = &sys->modules[i];
        snprintf(c->name, sizeof c->name, "%s", sys->modules[i].name);
        c->pidfd = c->out_fd = -1;
        c->state = CH_STOPPED;
        if (sys->log_dir) {
            char path[PATH_MAX + 80];
            snprintf(path, sizeof path, "%s/%s.log", sys->log_dir, c->name);
            c->log = fopen(path, "a");
            if (!c->log)
                s_say("launcher", "cannot open %s: %s", path, strerror(errno));
        }
    }
}

/* SIGHUP: the file again. Added modules start, removed ones stop, changed ones restart,
 * the rest runs on. A file with errors changes nothing. */
static void s_reload(void)
{
    cfg_error_t err;
    system_t *fresh = system_load(L.sys_path, &err);
    if (!fresh) {
        char buf[1200];
        s_say("launcher", "reload refused, nothing changed: %s",
              cfg_error_text(&err, buf, sizeof buf));
        return;
    }
    int n = L.nchildren;
    child_t *all = calloc((size_t)(n + fresh->nmodules), sizeof *all);
    memcpy(all, L.children, (size_t)n * sizeof *all);
    for (int i = 0; i < n; i++) {
        const spec_t *now = system_find(fresh, all[i].name);
        if (!now && !all[i].removed) {
            s_say("launcher", "%s was removed from the file: stopping it", all[i].name);
            all[i].removed = true;
            s_stop_child(&all[i]);
        }
    }
    for (int i = 0; i < fresh->nmodules; i++) {
        spec_t *spec = &fresh->modules[i];
        child_t *c = NULL;
        for (int k = 0; k < n; k++)
            if (strcmp(all[k].name, spec->name) == 0)
                c = &all[k];
        if (!c) {
            c = &all[n++];
            snprintf(c->name, sizeof c->name, "%s", spec->name);
            c->pidfd = c->out_fd = -1;
            c->state = CH_STOPPED;
            c->spec = spec;
            s_say("launcher", "%s was added to the file: starting it", c->name);
            s_launch(c);
            continue;
        }
        if (c->removed || !c->spec) {
            /* Removed earlier, back in the file now. */
            bool running = c->state == CH_RUNNING;
            c->spec = spec;
            c->removed = false;
            s_say("launcher", "%s was added to the file again: %s", c->name,
                  running ? "restarting it" : "starting it");
            if (running)
                c->restart_requested = true;
            else
                s_launch(c);
            continue;
        }
        bool changed = strcmp(c->spec->signature, spec->signature) != 0;
        c->spec = spec;
        if (changed && (c->state == CH_RUNNING || c->state == CH_BACKOFF)) {
            s_say("launcher", "%s changed in the file: restarting it", c->name);
            if (c->state == CH_RUNNING) {
                s_stop_child(c);
                c->restart_requested = true;
            } else {
                s_launch(c);
            }
        }
    }
    /* Removed modules keep their (old) spec until they have ended. */
    for (int i = 0; i < n; i++)
        if (all[i].removed && all[i].state != CH_RUNNING)
            all[i].spec = NULL;
    /* epoll data points into the children: re-register the descriptors that moved. */
    for (int i = 0; i < L.nchildren; i++) {
        if (all[i].out_fd >= 0) {
            struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &all[i].out_fd};
            epoll_ctl(L.epfd, EPOLL_CTL_MOD, all[i].out_fd, &ev);
        }
        if (all[i].pidfd >= 0) {
            struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &all[i].pidfd};
            epoll_ctl(L.epfd, EPOLL_CTL_MOD, all[i].pidfd, &ev);
        }
    }
    free(L.children);
    L.children = all;
    L.nchildren = n;
    /* The old system's specs are still pointed at by removed children that run. */
    if (L.nretired < 64)
        L.retired[L.nretired++] = L.sys;
    else
        system_free(&L.retired[0]); /* very old by now */
    L.sys = fresh;
}

static void s_begin_stop(const char *why)
{
    if (L.stopping) {
        /* A second request: do not wait any longer. */
        s_say("launcher", "%s again: killing what still runs", why);
        for (int i = 0; i < L.nchildren; i++)
            s_signal_child(&L.children[i], SIGKILL);
        s_signal_child(&L.broker, SIGKILL);
        return;
    }
    s_say("launcher", "%s: stopping the system", why);
    L.stopping = true;
    L.stop_deadline = s_now() + L.sys->exit_timeout_ms + L.sys->stop_timeout_ms + 2000;
    /* The broker runs the exit sequence: exit event, deactivation, drain, shutdown in
     * reverse start order; the modules then leave by themselves. */
    if (L.broker.state == CH_RUNNING)
        s_signal_child(&L.broker, SIGTERM);
    else
        for (int i = 0; i < L.nchildren; i++)
            s_stop_child(&L.children[i]);
}

static bool s_all_ended(void)
{
    for (int i = 0; i < L.nchildren; i++)
        if (L.children[i].state == CH_RUNNING)
            return false;
    return L.broker.state != CH_RUNNING;
}

/* ---- The loop ------------------------------------------------------------------------- */

static int s_timeout(void)
{
    int64_t now = s_now(), next = INT64_MAX;
    for (int i = 0; i < L.nchildren; i++) {
        child_t *c = &L.children[i];
        if (c->state == CH_BACKOFF && c->next_start < next)
            next = c->next_start;
        if (c->state == CH_RUNNING && c->stop_requested && c->kill_at && c->kill_at < next)
            next = c->kill_at;
    }
    if (L.broker.state == CH_BACKOFF && L.broker.next_start < next)
        next = L.broker.next_start;
    if (L.stopping && L.stop_deadline < next)
        next = L.stop_deadline;
    int t = L.bus ? lc_timeout(L.bus) : -1;
    if (next != INT64_MAX) {
        int64_t d = next > now ? next - now : 0;
        if (t < 0 || d < t)
            t = (int)(d > INT32_MAX ? INT32_MAX : d);
    }
    return t;
}

static void s_timers(void)
{
    int64_t now = s_now();
    for (int i = 0; i < L.nchildren; i++) {
        child_t *c = &L.children[i];
        if (c->state == CH_BACKOFF && now >= c->next_start && !L.stopping)
            s_launch(c);
        if (c->state == CH_RUNNING && c->stop_requested && c->kill_at && now >= c->kill_at) {
            s_say("launcher", "%s did not stop within %d ms: SIGKILL", c->name,
                  c->spec ? c->spec->stop_timeout_ms : 5000);
            s_signal_child(c, SIGKILL);
            c->kill_at = 0;
            L.unclean = true;
        }
    }
    if (L.broker.state == CH_BACKOFF && now >= L.broker.next_start && !L.stopping)
        s_start_broker();
    if (L.stopping && now >= L.stop_deadline) {
        for (int i = 0; i < L.nchildren; i++)
            if (L.children[i].state == CH_RUNNING) {
                s_say("launcher", "%s still runs after the exit timeout: SIGKILL",
                      L.children[i].name);
                s_signal_child(&L.children[i], SIGKILL);
                L.unclean = true;
            }
        if (L.broker.state == CH_RUNNING)
            s_signal_child(&L.broker, SIGKILL);
        L.stop_deadline = now + 5000;
    }
    /* Once the broker has ended, what still runs is stopped directly. */
    if (L.stopping && L.broker.state != CH_RUNNING)
        for (int i = 0; i < L.nchildren; i++)
            if (L.children[i].state == CH_RUNNING && !L.children[i].stop_requested)
                s_stop_child(&L.children[i]);
}

static child_t *s_owner(void *ptr)
{
    if (ptr == &L.broker.out_fd || ptr == &L.broker.pidfd)
        return &L.broker;
    for (int i = 0; i < L.nchildren; i++)
        if (ptr == &L.children[i].out_fd || ptr == &L.children[i].pidfd)
            return &L.children[i];
    return NULL;
}

static void s_usage(FILE *out)
{
    fprintf(out,
            "Usage: lc-launch [OPTION]... SYSTEM.yaml\n"
            "Run a whole lc system from one file: the broker and every module, each its own\n"
            "process, started in dependency order, restarted by policy, stopped in order.\n"
            "\n"
            "  -c, --check          check the file and exit (0: valid, 2: errors)\n"
            "  -h, --help           show this help and exit\n"
            "  -V, --version        show the version and exit\n"
            "\n"
            "Signals: SIGTERM or SIGINT stop the system through the bus's exit sequence (a\n"
            "second one kills what still runs); SIGHUP reads the file again and starts,\n"
            "stops or restarts the modules that were added, removed or changed.\n"
            "On the bus as module 'launcher': status, start, stop, restart (name=MODULE).\n"
            "Exit status: 0 when everything stopped cleanly, 1 when a module had to be\n"
            "killed or failed, 2 for an invalid file or usage. See lc-launch(1), "
            "docs/config.md.\n");
}

int main(int argc, char **argv)
{
    prog = "lc-launch";
    static const struct option longopts[] = {
        {"check", no_argument, NULL, 'c'},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };
    bool check = false;
    int opt;
    while ((opt = getopt_long(argc, argv, "chV", longopts, NULL)) != -1) {
        switch (opt) {
        case 'c': check = true; break;
        case 'h': s_usage(stdout); return 0;
        case 'V': printf("lc-launch %s\n", LC_VERSION); return 0;
        default: fprintf(stderr, "Try 'lc-launch --help'.\n"); return 2;
        }
    }
    if (optind != argc - 1) {
        s_usage(stderr);
        return 2;
    }
    L.sys_path = argv[optind];
    cfg_error_t err;
    L.sys = system_load(L.sys_path, &err);
    if (!L.sys) {
        char buf[1200];
        fprintf(stderr, "lc-launch: %s\n", cfg_error_text(&err, buf, sizeof buf));
        return 2;
    }
    if (check) {
        printf("%s: valid, %d modules\n", L.sys->path, L.sys->nmodules);
        system_free(&L.sys);
        return 0;
    }
    ssize_t n = readlink("/proc/self/exe", L.self_dir, sizeof L.self_dir - 1);
    if (n > 0) {
        L.self_dir[n] = 0;
        char *slash = strrchr(L.self_dir, '/');
        if (slash)
            *slash = 0;
    }
    /* Signals come through a signalfd, before any thread (ZeroMQ's) starts. */
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGHUP);
    sigprocmask(SIG_BLOCK, &mask, NULL);
    signal(SIGPIPE, SIG_IGN);
    L.sigfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
    L.epfd = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event sev = {.events = EPOLLIN, .data.ptr = &L.sigfd};
    epoll_ctl(L.epfd, EPOLL_CTL_ADD, L.sigfd, &sev);

    snprintf(L.broker.name, sizeof L.broker.name, "%s", s_broker_name);
    L.broker.pidfd = L.broker.out_fd = -1;
    if (L.sys->log_dir) {
        char path[PATH_MAX + 16];
        snprintf(path, sizeof path, "%s/broker.log", L.sys->log_dir);
        L.broker.log = fopen(path, "a");
    }
    if (s_start_broker() < 0)
        die(1, "cannot start lc-broker");
    s_children_from(L.sys);

    /* On the bus: only the broker's parent may be "launcher". */
    L.bus = lc_client_new("launcher", L.sys->endpoint);
    if (!L.bus)
        die(1, "invalid bus endpoint %s", L.sys->endpoint);
    lc_client_set_lifecycle(L.bus, false);
    lc_client_set_signals(L.bus, false);
    lc_method(L.bus, "status", s_m_status, NULL);
    lc_method_doc(L.bus, "status", "every module's state, pid, restarts and last exit", NULL);
    lc_method(L.bus, "stop", s_m_stop, NULL);
    lc_method_doc(L.bus, "stop", "stops a module (it is not restarted)", "name:string");
    lc_method(L.bus, "start", s_m_start, NULL);
    lc_method_doc(L.bus, "start", "starts a stopped or given-up module", "name:string");
    lc_method(L.bus, "restart", s_m_restart, NULL);
    lc_method_doc(L.bus, "restart", "stops a module and starts it again", "name:string");
    lc_on(L.bus, "exit", s_on_exit_event, NULL);
    int rc = lc_connect(L.bus, 10000);
    /* A broker that could not start (e.g. another one serves the endpoint) has ended by
     * now: say so, with its own words, rather than blame what answered in its place. */
    struct pollfd bp = {.fd = L.broker.pidfd, .events = POLLIN};
    if (poll(&bp, 1, rc < 0 ? 1000 : 0) == 1) {
        if (L.broker.out_fd >= 0)
            s_read_output(&L.broker);
        s_say("launcher", "lc-broker could not start on %s (see its output above)",
              L.sys->endpoint);
        lc_client_destroy(&L.bus);
        return 1;
    }
    if (rc < 0) {
        s_say("launcher", "cannot register on the bus at %s: %s", L.sys->endpoint,
              lc_strerror(rc));
        s_signal_child(&L.broker, SIGKILL);
        return 1;
    }
    /* The system is activated together once every module is passive (decision 7). */
    json_t *names = json_array();
    for (int i = 0; i < L.nchildren; i++)
        json_array_append_new(names, json_string(L.children[i].name));
    json_t *res = NULL;
    lc_call(L.bus, "broker.expect",
            json_pack("{s:o, s:i}", "modules", names, "timeout_ms", L.sys->start_timeout_ms), &res,
            0);
    json_decref(res);
    for (int i = 0; i < L.nchildren; i++)
        s_launch(&L.children[i]);
    int busfd = lc_fd(L.bus);
    struct epoll_event bev = {.events = EPOLLIN, .data.ptr = &L.bus};
    epoll_ctl(L.epfd, EPOLL_CTL_ADD, busfd, &bev);

    while (!(L.stopping && s_all_ended())) {
        struct epoll_event evs[32];
        int k = epoll_wait(L.epfd, evs, 32, s_timeout());
        for (int i = 0; i < k; i++) {
            void *ptr = evs[i].data.ptr;
            if (ptr == &L.sigfd) {
                struct signalfd_siginfo si;
                while (read(L.sigfd, &si, sizeof si) == (ssize_t)sizeof si) {
                    if (si.ssi_signo == SIGHUP)
                        s_reload();
                    else
                        s_begin_stop(si.ssi_signo == SIGTERM ? "SIGTERM" : "SIGINT");
                }
            } else if (ptr == &L.bus) {
                continue;
            } else {
                child_t *c = s_owner(ptr);
                if (!c)
                    continue;
                if (ptr == &c->out_fd && c->out_fd >= 0)
                    s_read_output(c);
                else if (ptr == &c->pidfd && c->pidfd >= 0)
                    s_on_exit(c);
            }
        }
        lc_dispatch(L.bus);
        s_timers();
    }
    for (int i = 0; i < L.nchildren; i++)
        if (L.children[i].state == CH_FAILED && !L.children[i].removed)
            L.unclean = true; /* given up on: the system did not run as described */
    s_say("launcher", "stopped%s", L.unclean ? " (not everything cleanly)" : "");
    lc_client_destroy(&L.bus);
    for (int i = 0; i < L.nchildren; i++) {
        if (L.children[i].log)
            fclose(L.children[i].log);
        for (int t = 0; t < TAIL_LINES; t++)
            free(L.children[i].tail[t]);
    }
    for (int t = 0; t < TAIL_LINES; t++)
        free(L.broker.tail[t]);
    if (L.broker.log)
        fclose(L.broker.log);
    free(L.children);
    system_free(&L.sys);
    for (int i = 0; i < L.nretired; i++)
        system_free(&L.retired[i]);
    return L.unclean ? 1 : 0;
}
