/* lc-bench: a whole system under lc-launch (start-up, exit, its memory) and the broker's
 * memory idle, with 100 modules and with a long queue. */
#include "bench.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define SYSTEM_MODULES 10

/* Polls broker.list until every module in it but the anonymous ones is active and there are
 * n of them; fills pids. Returns the time it saw that, or 0 at the deadline. */
static int64_t s_all_active(lc_client_t *c, int n, pid_t *pids, int timeout_ms)
{
    int64_t deadline = now_us() + (int64_t)timeout_ms * 1000;
    while (now_us() < deadline) {
        json_t *res = NULL;
        int active = 0;
        if (lc_call(c, "broker.list", NULL, &res, 2000) == 0) {
            size_t i;
            json_t *m;
            json_array_foreach(json_object_get(res, "modules"), i, m)
            {
                const char *name = json_string_value(json_object_get(m, "name"));
                const char *state = json_string_value(json_object_get(m, "state"));
                if (!name || name[0] != 'm' || !state || strcmp(state, "active") != 0)
                    continue;
                int idx = atoi(name + 1);
                if (idx >= 0 && idx < n) {
                    pids[idx] = (pid_t)json_integer_value(json_object_get(m, "pid"));
                    active++;
                }
            }
        }
        json_decref(res);
        if (active == n)
            return now_us();
        usleep(500);
    }
    return 0;
}

/* Waits until the ipc socket file of ep exists (the broker is listening). */
static bool s_wait_socket(const char *ep, int timeout_ms)
{
    const char *path = ep + strlen("ipc://");
    int64_t deadline = now_us() + (int64_t)timeout_ms * 1000;
    struct stat st;
    while (stat(path, &st) < 0) {
        if (now_us() > deadline)
            return false;
        usleep(200);
    }
    return true;
}

static bool s_gone(pid_t pid)
{
    return kill(pid, 0) < 0 && errno == ESRCH;
}

/* (h) lc-launch -> 10 modules active; exit -> every process gone; (i) a 10-module system's
 * total PSS and one idle module's memory. */
void sc_startup(void)
{
    char ep[400], file[400], launch[4200], echo[4200];
    static int round;
    char busname[32];
    snprintf(busname, sizeof busname, "sys%d", round++);
    endpoint(ep, sizeof ep, busname);
    snprintf(file, sizeof file, "%s/%s.yaml", cfg.dir, busname);
    snprintf(launch, sizeof launch, "%s/lc-launch", cfg.bin);
    snprintf(echo, sizeof echo, "%s/lc-echo", cfg.bin);
    FILE *f = fopen(file, "w");
    if (!f) {
        bench_fail("cannot write %s: %s", file, strerror(errno));
        return;
    }
    fprintf(f, "bus:\n  endpoint: %s\nlauncher:\n  log_level: warning\nmodules:\n", ep);
    for (int i = 0; i < SYSTEM_MODULES; i++)
        fprintf(f, "  m%d:\n    program: %s\n", i, echo);
    fclose(f);

    char *argv[] = {launch, file, NULL};
    int64_t t0 = now_us();
    proc_t *p = proc_start("launch", argv, OUT_LOG);
    if (!p)
        return;
    lc_client_t *c = NULL;
    pid_t pids[SYSTEM_MODULES] = {0}, broker_pid = 0;
    int64_t t1 = 0;
    if (s_wait_socket(ep, 10000) && (c = client_new(ep)))
        t1 = s_all_active(c, SYSTEM_MODULES, pids, 10000);
    if (!t1) {
        bench_fail("lc-launch did not bring 10 modules to active within 10 s:\n%s", proc_log(p));
        lc_client_destroy(&c);
        proc_stop(&p, SIGKILL, 1000);
        return;
    }
    bench_record("startup10_ms", (double)(t1 - t0) / 1000.0);

    json_t *res = NULL;
    if (lc_call(c, "broker.ping", NULL, &res, 2000) == 0)
        broker_pid = (pid_t)json_integer_value(json_object_get(res, "pid"));
    json_decref(res);
    lc_client_destroy(&c);
    /* Memory once the start-up work is over. */
    usleep(200000);
    long pss = proc_kib(p->pid, "Pss") + proc_kib(broker_pid, "Pss");
    for (int i = 0; i < SYSTEM_MODULES; i++)
        pss += proc_kib(pids[i], "Pss");
    bench_record("system10_pss_kib", (double)pss);
    bench_record("module_private_kib", (double)proc_kib(pids[0], "Private_Dirty"));
    bench_record("module_rss_kib", (double)proc_kib(pids[0], "VmRSS"));

    int64_t t2 = now_us();
    kill(p->pid, SIGTERM);
    int st;
    waitpid(p->pid, &st, 0);
    bool all = false;
    while (!all && now_us() - t2 < 20000000) {
        all = s_gone(broker_pid);
        for (int i = 0; i < SYSTEM_MODULES; i++)
            all = all && s_gone(pids[i]);
        if (!all)
            usleep(200);
    }
    if (!all)
        bench_fail("processes of the system still run 20 s after lc-launch got SIGTERM");
    else
        bench_record("exit10_ms", (double)(now_us() - t2) / 1000.0);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
        fprintf(stderr, "lc-bench: lc-launch ended with status %d (see %s)\n",
                WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st), p->log);
    close(p->out); /* already reaped */
    free(p);
}

/* ---- (i): the broker's memory
 * ---------------------------------------------------------------------- */

static void s_never(lc_request_t *req, json_t *args, void *arg)
{
    (void)req;
    (void)args;
    (void)arg;
}

/* lc-bench --role many --bus EP --n N: N named clients (m0...) that register and then do
 * nothing; the first, "sink", offers method t and never takes what is queued for it. */
int role_many(int argc, char **argv)
{
    const char *ep = NULL;
    int n = 0;
    for (int i = 1; i + 1 < argc; i++) {
        if (strcmp(argv[i], "--bus") == 0)
            ep = argv[i + 1];
        if (strcmp(argv[i], "--n") == 0)
            n = atoi(argv[i + 1]);
    }
    if (!ep || n < 1) {
        fprintf(stderr, "lc-bench --role many: --bus EP and --n N are required\n");
        return 2;
    }
    lc_client_t **cs = calloc((size_t)n, sizeof *cs);
    for (int i = 0; i < n; i++) {
        char name[32];
        snprintf(name, sizeof name, i ? "m%d" : "sink", i);
        cs[i] = lc_client_new(name, ep);
        if (!cs[i])
            return 1;
        lc_client_set_signals(cs[i], false);
        lc_method(cs[i], "t", s_never, NULL);
        int rc = lc_connect(cs[i], 10000);
        if (rc < 0) {
            fprintf(stderr, "lc-bench many: %s cannot register on %s: %s\n", name, ep,
                    lc_strerror(rc));
            return 1;
        }
    }
    dprintf(1, "registered\n");
    pause(); /* until killed */
    return 0;
}

void sc_memory(void)
{
    char ep[400];
    endpoint(ep, sizeof ep, "mem");
    proc_t *b = broker_start(ep, "--max-queue", "4000000", "--max-backlog", "2000000", NULL);
    if (!b)
        return;
    lc_client_t *c = client_new(ep);
    proc_t *many = NULL;
    if (!c)
        goto out;
    bench_record("broker_rss_idle_kib", (double)proc_kib(b->pid, "VmRSS"));
    many = proc_role("many", "many", "--bus", ep, "--n", "100", NULL);
    if (!many || !proc_read(many, 30000)) {
        bench_fail("100 modules did not register:\n%s", many ? proc_log(many) : "");
        goto out;
    }
    long before = proc_kib(b->pid, "VmRSS");
    bench_record("broker_rss_100_kib", (double)before);

    json_t *args = payload_json(64);
    long n = cfg.tasks;
    int rc = 0;
    for (long i = 0; i < n - 1 && rc == 0; i++)
        rc = lc_enqueue(c, "sink.t", json_incref(args), 0);
    if (rc == 0)
        rc = lc_enqueue_wait(c, "sink.t", json_incref(args), 0, 10000, NULL);
    json_decref(args);
    json_t *res = NULL;
    long queued = 0;
    if (rc == 0 && lc_call(c, "broker.stats", NULL, &res, 5000) == 0)
        queued = (long)json_integer_value(json_object_get(res, "queued"));
    json_decref(res);
    if (rc < 0 || queued < n / 2) {
        bench_fail("cannot queue %ld tasks for a module that takes none (%s, %ld queued)", n,
                   lc_strerror(rc), queued);
        goto out;
    }
    long after = proc_kib(b->pid, "VmRSS");
    bench_record("broker_bytes_per_queued", (double)(after - before) * 1024.0 / (double)queued);
out:
    lc_client_destroy(&c);
    proc_stop(&many, SIGKILL, 1000);
    proc_stop(&b, SIGKILL, 1000);
}
