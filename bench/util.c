/* lc-bench: helper processes, clocks, payloads, percentiles and memory figures. */
#include "bench.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

proc_t *proc_start(const char *name, char *const argv[], int out)
{
    proc_t *p = calloc(1, sizeof *p);
    int fds[2];
    if (!p || pipe2(fds, O_CLOEXEC) < 0) {
        bench_fail("cannot start %s: %s", name, strerror(errno));
        free(p);
        return NULL;
    }
    snprintf(p->name, sizeof p->name, "%s", name);
    snprintf(p->log, sizeof p->log, "%s/%s.log", cfg.dir, name);
    p->pid = fork();
    if (p->pid < 0) {
        bench_fail("cannot start %s: fork: %s", name, strerror(errno));
        close(fds[0]);
        close(fds[1]);
        free(p);
        return NULL;
    }
    if (p->pid == 0) {
        int log = open(p->log, O_WRONLY | O_CREAT | O_APPEND, 0600);
        int null = open("/dev/null", O_WRONLY);
        dup2(out == OUT_PIPE ? fds[1] : out == OUT_LOG ? log : null, 1);
        if (log >= 0)
            dup2(log, 2);
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        execv(argv[0], argv);
        dprintf(2, "lc-bench: cannot run %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    close(fds[1]);
    p->out = fds[0];
    return p;
}

proc_t *proc_role(const char *name, const char *role, ...)
{
    char *argv[40];
    int n = 0;
    argv[n++] = cfg.self;
    argv[n++] = "--role";
    argv[n++] = (char *)role;
    va_list ap;
    va_start(ap, role);
    const char *a;
    while ((a = va_arg(ap, const char *)) && n < 39)
        argv[n++] = (char *)a;
    va_end(ap);
    argv[n] = NULL;
    return proc_start(name, argv, OUT_PIPE);
}

const char *proc_read(proc_t *p, int timeout_ms)
{
    int64_t deadline = now_us() + (int64_t)timeout_ms * 1000;
    for (;;) {
        char *nl = memchr(p->buf, '\n', p->have);
        if (nl) {
            size_t len = (size_t)(nl - p->buf);
            size_t copy = len < sizeof p->line - 1 ? len : sizeof p->line - 1;
            memcpy(p->line, p->buf, copy);
            p->line[copy] = 0;
            p->have -= len + 1;
            memmove(p->buf, nl + 1, p->have);
            return p->line;
        }
        int left = (int)((deadline - now_us()) / 1000);
        if (left < 0 || p->have == sizeof p->buf)
            return NULL;
        struct pollfd pfd = {.fd = p->out, .events = POLLIN};
        if (poll(&pfd, 1, left) <= 0)
            continue;
        ssize_t r = read(p->out, p->buf + p->have, sizeof p->buf - p->have);
        if (r <= 0)
            return NULL; /* ended */
        p->have += (size_t)r;
    }
}

void proc_stop(proc_t **pp, int sig, int timeout_ms)
{
    proc_t *p = *pp;
    if (!p)
        return;
    kill(p->pid, sig);
    int64_t deadline = now_us() + (int64_t)timeout_ms * 1000;
    int st;
    while (waitpid(p->pid, &st, WNOHANG) == 0) {
        if (now_us() > deadline) {
            kill(p->pid, SIGKILL);
            waitpid(p->pid, &st, 0);
            break;
        }
        usleep(1000);
    }
    if (p->out >= 0)
        close(p->out);
    free(p);
    *pp = NULL;
}

const char *proc_log(proc_t *p)
{
    static char buf[1024];
    buf[0] = 0;
    FILE *f = p ? fopen(p->log, "r") : NULL;
    if (!f)
        return buf;
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, size > (long)sizeof buf - 1 ? size - (long)sizeof buf + 1 : 0, SEEK_SET);
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = 0;
    fclose(f);
    return buf;
}

const char *endpoint(char *buf, size_t size, const char *name)
{
    snprintf(buf, size, "ipc://%s/%s", cfg.dir, name);
    return buf;
}

lc_client_t *client_new(const char *ep)
{
    lc_client_t *c = lc_client_new(NULL, ep);
    if (!c) {
        bench_fail("cannot create a client for %s: %s", ep, strerror(errno));
        return NULL;
    }
    lc_client_set_signals(c, false);
    int rc = lc_connect(c, 10000);
    if (rc < 0) {
        bench_fail("cannot connect to the broker at %s: %s", ep, lc_strerror(rc));
        lc_client_destroy(&c);
    }
    return c;
}

proc_t *broker_start(const char *ep, ...)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/lc-broker", cfg.bin);
    char *argv[40];
    int n = 0;
    argv[n++] = path;
    argv[n++] = "--endpoint";
    argv[n++] = (char *)ep;
    argv[n++] = "--quiet";
    va_list ap;
    va_start(ap, ep);
    const char *a;
    while ((a = va_arg(ap, const char *)) && n < 39)
        argv[n++] = (char *)a;
    va_end(ap);
    argv[n] = NULL;
    proc_t *p = proc_start("broker", argv, OUT_LOG);
    if (!p)
        return NULL;
    lc_client_t *c = client_new(ep);
    if (!c) {
        fprintf(stderr, "lc-bench: the broker's log (%s):\n%s", p->log, proc_log(p));
        proc_stop(&p, SIGKILL, 1000);
        return NULL;
    }
    lc_client_destroy(&c);
    return p;
}

int wait_modules(lc_client_t *c, ...)
{
    json_t *names = json_array();
    va_list ap;
    va_start(ap, c);
    const char *n;
    while ((n = va_arg(ap, const char *)))
        json_array_append_new(names, json_string(n));
    va_end(ap);
    int rc = lc_call(c, "broker.wait", json_pack("{s:o}", "modules", names), NULL, 10000);
    if (rc < 0)
        bench_fail("modules did not become ready within 10 s: %s", lc_strerror(rc));
    return rc;
}

long proc_kib(pid_t pid, const char *field)
{
    char path[64], line[256];
    bool status = strcmp(field, "VmRSS") == 0;
    snprintf(path, sizeof path, "/proc/%d/%s", (int)pid, status ? "status" : "smaps_rollup");
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    long kib = -1;
    size_t flen = strlen(field);
    while (fgets(line, sizeof line, f))
        if (strncmp(line, field, flen) == 0 && line[flen] == ':') {
            kib = strtol(line + flen + 1, NULL, 10);
            break;
        }
    fclose(f);
    return kib;
}

char *payload_text(size_t size)
{
    if (size < 8)
        size = 8;
    char *t = malloc(size + 1);
    if (!t)
        abort();
    memcpy(t, "{\"d\":\"", 6);
    memset(t + 6, 'x', size - 8);
    memcpy(t + size - 2, "\"}", 3);
    return t;
}

json_t *payload_json(size_t size)
{
    if (size < 8)
        size = 8;
    json_t *s = json_stringn_nocheck("", 0);
    char *x = malloc(size - 8 + 1);
    if (!x)
        abort();
    memset(x, 'x', size - 8);
    x[size - 8] = 0;
    json_string_setn_nocheck(s, x, size - 8);
    free(x);
    return json_pack("{s:o}", "d", s);
}

void lat_add(lat_t *l, int64_t us)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 4096;
        l->us = realloc(l->us, l->cap * sizeof *l->us);
        if (!l->us)
            abort();
    }
    l->us[l->n++] = us < 0 ? 0 : (uint32_t)us;
}

static int s_cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

double lat_pct(lat_t *l, int pct)
{
    if (!l->n)
        return 0;
    qsort(l->us, l->n, sizeof *l->us, s_cmp_u32);
    size_t rank = ((size_t)pct * l->n + 99) / 100; /* ceil(pct/100 * n) */
    if (rank < 1)
        rank = 1;
    if (rank > l->n)
        rank = l->n;
    return l->us[rank - 1];
}

void lat_free(lat_t *l)
{
    free(l->us);
    *l = (lat_t){0};
}
