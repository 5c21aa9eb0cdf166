/* lc-bench: the speed and memory of every path of the bus, each figure beside a baseline
 * measured in the same run. Shared machines are noisy, so the ratio is what counts. */
#include "bench.h"

#include <errno.h>
#include <ftw.h>
#include <getopt.h>
#include <limits.h>
#include <regex.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

bench_cfg_t cfg;
static bool s_failed;

#define MAX_REPS 100

/* Every figure: its unit, its baseline, and the target it is held to. A target on the ratio
 * compares median / baseline median; otherwise the median itself. */
typedef struct {
    const char *key;
    const char *unit;
    const char *baseline;
    char op; /* '>' at least, '<' at most, 0 none */
    double target;
    bool on_ratio;
    double v[MAX_REPS];
    int n;
} figure_t;

#define FIG(k, u, b, o, t, r)                                                                      \
    {                                                                                              \
        .key = k, .unit = u, .baseline = b, .op = o, .target = t, .on_ratio = r                    \
    }
static figure_t s_figs[] = {
    FIG("uds_pingpong_rate", "calls/s", NULL, 0, 0, false),
    FIG("uds_relay_rate", "calls/s", "uds_pingpong_rate", 0, 0, false),
    FIG("relay_depth1_rate", "calls/s", "uds_relay_rate", 0, 0, false),
    FIG("relay_depth1_p50_us", "us", NULL, 0, 0, false),
    FIG("relay_depth1_p99_us", "us", NULL, 0, 0, false),
    FIG("relay_depth16_rate", "calls/s", "relay_depth1_rate", 0, 0, false),
    FIG("relay_oneway_rate", "msgs/s", NULL, 0, 0, false),
    FIG("relay_1k_rate", "calls/s", NULL, 0, 0, false),
    FIG("relay_64k_rate", "calls/s", NULL, 0, 0, false),
    FIG("relay_1m_rate", "calls/s", NULL, 0, 0, false),
    FIG("call_depth1_rate", "calls/s", "relay_depth1_rate", '>', 0.9, true),
    FIG("call_depth1_p50_us", "us", "relay_depth1_p50_us", 0, 0, true),
    FIG("call_depth1_p99_us", "us", "relay_depth1_p99_us", '<', 1.2, true),
    FIG("call_depth16_rate", "calls/s", "relay_depth16_rate", '>', 0.9, true),
    FIG("call_threads8_rate", "calls/s", "relay_depth16_rate", 0, 0, true),
    FIG("tasks_rate", "tasks/s", "relay_oneway_rate", '>', 150000, false),
    FIG("enqueue_rate", "tasks/s", "relay_oneway_rate", 0, 0, false),
    FIG("events_k1_rate", "deliv/s", "relay_oneway_rate", 0, 0, false),
    FIG("events_k4_rate", "deliv/s", "relay_oneway_rate", 0, 0, false),
    FIG("events_k16_rate", "deliv/s", "relay_oneway_rate", '>', 300000, false),
    FIG("priority_latency_us", "us", "call_depth1_p50_us", '<', 1000, false),
    FIG("priority_lowest_before", "events", NULL, '<', 1, false),
    FIG("payload_1k_rate", "calls/s", "relay_1k_rate", 0, 0, false),
    FIG("payload_64k_rate", "calls/s", "relay_64k_rate", 0, 0, false),
    FIG("payload_1m_rate", "calls/s", "relay_1m_rate", 0, 0, false),
    FIG("startup10_ms", "ms", NULL, '<', 50, false),
    FIG("exit10_ms", "ms", NULL, 0, 0, false),
    FIG("broker_rss_idle_kib", "KiB", NULL, 0, 0, false),
    FIG("broker_rss_100_kib", "KiB", "broker_rss_idle_kib", 0, 0, false),
    FIG("broker_bytes_per_queued", "bytes", NULL, '<', 256, false),
    FIG("module_rss_kib", "KiB", NULL, 0, 0, false),
    FIG("module_private_kib", "KiB", NULL, '<', 1024, false),
    FIG("system10_pss_kib", "KiB", NULL, '<', 16384, false),
    FIG("spy_call_ratio", "x", NULL, '>', 0.9, false),
    FIG("spy_events_ratio", "x", NULL, '>', 0.9, false),
    FIG("spy_none_call_ratio", "x", NULL, '>', 0.9, false),
    FIG("gone_detect_ms", "ms", NULL, '<', 100, false),
    FIG("mqtt_depth1_rate", "calls/s", "relay_depth1_rate", 0, 0, true),
    FIG("mqtt_depth16_rate", "calls/s", "relay_depth16_rate", 0, 0, true),
    FIG("mqtt_events_k4_rate", "deliv/s", "relay_oneway_rate", 0, 0, true),
    FIG("dbus_depth1_rate", "calls/s", "relay_depth1_rate", 0, 0, true),
    FIG("dbus_depth16_rate", "calls/s", "relay_depth16_rate", 0, 0, true),
    FIG("dbus_signals_k4_rate", "deliv/s", "relay_oneway_rate", 0, 0, true),
};
#define NFIGS (sizeof s_figs / sizeof s_figs[0])

static figure_t *s_fig(const char *key)
{
    for (size_t i = 0; i < NFIGS; i++)
        if (strcmp(s_figs[i].key, key) == 0)
            return &s_figs[i];
    return NULL;
}

void bench_record(const char *key, double value)
{
    figure_t *f = s_fig(key);
    if (!f) {
        bench_fail("internal: unknown figure %s", key);
        return;
    }
    if (f->n < MAX_REPS)
        f->v[f->n++] = value;
}

void bench_fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "lc-bench: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    s_failed = true;
}

bool bench_failed(void)
{
    return s_failed;
}

/* ---- Scenarios --------------------------------------------------------------------------------
 */

static void s_uds_pp(void)
{
    sc_uds_pingpong();
}
static void s_uds_rl(void)
{
    sc_uds_relay();
}
static void s_relay1(void)
{
    sc_relay_call(1, 64, "relay_depth1_rate", "relay_depth1_p50_us", "relay_depth1_p99_us");
}
static void s_relay16(void)
{
    sc_relay_call(16, 64, "relay_depth16_rate", NULL, NULL);
}
static void s_relay_ow(void)
{
    sc_relay_oneway();
}
static void s_relay_pl(void)
{
    sc_relay_call(1, 1024, "relay_1k_rate", NULL, NULL);
    sc_relay_call(1, 65536, "relay_64k_rate", NULL, NULL);
    sc_relay_call(1, 1048576, "relay_1m_rate", NULL, NULL);
}
static void s_call1(void)
{
    sc_call(1, 64, "call_depth1_rate", "call_depth1_p50_us", "call_depth1_p99_us");
}
static void s_call16(void)
{
    sc_call(16, 64, "call_depth16_rate", NULL, NULL);
}
static void s_threads(void)
{
    sc_call_threads();
}
static void s_tasks(void)
{
    sc_tasks();
}
static void s_events(void)
{
    sc_events(1, "events_k1_rate", false);
    sc_events(4, "events_k4_rate", false);
    sc_events(16, "events_k16_rate", false);
}
static void s_prio(void)
{
    sc_priority();
}
static void s_payload(void)
{
    sc_call(1, 1024, "payload_1k_rate", NULL, NULL);
    sc_call(1, 65536, "payload_64k_rate", NULL, NULL);
    sc_call(1, 1048576, "payload_1m_rate", NULL, NULL);
}
static void s_startup(void)
{
    sc_startup();
}
static void s_memory(void)
{
    sc_memory();
}
static void s_spy(void)
{
    if (spy_available())
        sc_spy();
}
static void s_gone(void)
{
    sc_gone();
}

/* mosquitto and dbus-daemon, through lc-bench-peers (built by `make bench-peers`). */
static void s_peers(void)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/lc-bench-peers", cfg.bin);
    if (access(path, X_OK) < 0) {
        bench_fail("no %s: build it with `make bench-peers`", path);
        return;
    }
    char secs[32];
    snprintf(secs, sizeof secs, "%g", cfg.secs);
    char *argv[] = {path, "--secs", secs, "--dir", cfg.dir, NULL};
    proc_t *p = proc_start("peers", argv, OUT_PIPE);
    const char *line;
    int n = 0;
    while (p && (line = proc_read(p, 120000))) {
        char key[64];
        double v;
        if (sscanf(line, "%63s %lf", key, &v) == 2 && v > 0) {
            bench_record(key, v);
            n++;
        }
    }
    if (p && !n)
        bench_fail("lc-bench-peers measured nothing:\n%s", proc_log(p));
    proc_stop(&p, SIGKILL, 1000);
}

/* In the order they run in each repetition: the baselines first. `needs` names the
 * scenarios whose figures are this one's baselines; they run with it under --only. */
typedef struct {
    const char *name;
    void (*run)(void);
    const char *keys;  /* its figures, for --only */
    const char *needs; /* scenario names, space separated */
    bool selected;
} scenario_t;

static scenario_t s_scen[] = {
    {"uds_pingpong", s_uds_pp, "uds_pingpong_rate", NULL, false},
    {"uds_relay", s_uds_rl, "uds_relay_rate", "uds_pingpong", false},
    {"relay_depth1", s_relay1, "relay_depth1_rate relay_depth1_p50_us relay_depth1_p99_us",
     "uds_relay", false},
    {"relay_depth16", s_relay16, "relay_depth16_rate", "relay_depth1", false},
    {"relay_oneway", s_relay_ow, "relay_oneway_rate", NULL, false},
    {"relay_payload", s_relay_pl, "relay_1k_rate relay_64k_rate relay_1m_rate", NULL, false},
    {"call_depth1", s_call1, "call_depth1_rate call_depth1_p50_us call_depth1_p99_us",
     "relay_depth1", false},
    {"call_depth16", s_call16, "call_depth16_rate", "relay_depth16", false},
    {"call_threads8", s_threads, "call_threads8_rate", "relay_depth16", false},
    {"tasks", s_tasks, "tasks_rate enqueue_rate", "relay_oneway", false},
    {"events", s_events, "events_k1_rate events_k4_rate events_k16_rate", "relay_oneway", false},
    {"priority", s_prio, "priority_latency_us priority_lowest_before", "call_depth1", false},
    {"payload", s_payload, "payload_1k_rate payload_64k_rate payload_1m_rate", "relay_payload",
     false},
    {"startup", s_startup,
     "startup10_ms exit10_ms system10_pss_kib module_private_kib "
     "module_rss_kib",
     NULL, false},
    {"memory", s_memory, "broker_rss_idle_kib broker_rss_100_kib broker_bytes_per_queued", NULL,
     false},
    {"spy", s_spy, "spy_call_ratio spy_events_ratio spy_none_call_ratio", NULL, false},
    {"gone", s_gone, "gone_detect_ms", NULL, false},
    /* Only with --peers. */
    {"peers", s_peers,
     "mqtt_depth1_rate mqtt_depth16_rate mqtt_events_k4_rate dbus_depth1_rate "
     "dbus_depth16_rate dbus_signals_k4_rate",
     "relay_depth1 relay_depth16 relay_oneway", false},
};
#define NSCEN (sizeof s_scen / sizeof s_scen[0])

static bool s_words_match(regex_t *re, const char *words)
{
    char buf[512];
    snprintf(buf, sizeof buf, "%s", words ? words : "");
    char *save = NULL;
    for (char *w = strtok_r(buf, " ", &save); w; w = strtok_r(NULL, " ", &save))
        if (regexec(re, w, 0, NULL, 0) == 0)
            return true;
    return false;
}

static bool s_alone; /* --alone: without the baselines' scenarios */

/* Whether space-separated words holds word exactly. */
static bool s_has_word(const char *words, const char *word)
{
    size_t n = strlen(word);
    for (const char *p = words; (p = strstr(p, word)); p += n)
        if ((p == words || p[-1] == ' ') && (p[n] == ' ' || p[n] == 0))
            return true;
    return false;
}

/* Whether a scenario that ran was to give figure key. */
static bool s_chosen(const char *key)
{
    for (size_t j = 0; j < NSCEN; j++)
        if (s_scen[j].selected && s_has_word(s_scen[j].keys, key))
            return true;
    return false;
}

static void s_select(scenario_t *s)
{
    if (s->selected)
        return;
    s->selected = true;
    if (s_alone)
        return;
    char buf[256];
    snprintf(buf, sizeof buf, "%s", s->needs ? s->needs : "");
    char *save = NULL;
    for (char *w = strtok_r(buf, " ", &save); w; w = strtok_r(NULL, " ", &save))
        for (size_t i = 0; i < NSCEN; i++)
            if (strcmp(s_scen[i].name, w) == 0)
                s_select(&s_scen[i]);
}

/* ---- Results -----------------------------------------------------------------------------------
 */

static int s_cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Median (the mean of the middle two for an even count), min and max. */
static bool s_stats(figure_t *f, double *med, double *min, double *max)
{
    if (!f || !f->n)
        return false;
    double v[MAX_REPS];
    memcpy(v, f->v, sizeof(double) * (size_t)f->n);
    qsort(v, (size_t)f->n, sizeof *v, s_cmp_d);
    *min = v[0];
    *max = v[f->n - 1];
    *med = f->n % 2 ? v[f->n / 2] : (v[f->n / 2 - 1] + v[f->n / 2]) / 2;
    return true;
}

static const char *s_num(char *buf, size_t size, double v)
{
    double a = v < 0 ? -v : v;
    if (a >= 100)
        snprintf(buf, size, "%.0f", v);
    else if (a >= 10)
        snprintf(buf, size, "%.1f", v);
    else
        snprintf(buf, size, "%.2f", v);
    return buf;
}

/* "met", "MISSED" or "" for a figure without a target. */
static const char *s_verdict(figure_t *f, double med, double ratio, bool have_ratio)
{
    if (!f->op)
        return "";
    double x = f->on_ratio ? ratio : med;
    if (f->on_ratio && !have_ratio)
        return "?";
    bool ok = f->op == '>' ? x >= f->target : x <= f->target;
    return ok ? "met" : "MISSED";
}

static void s_print_table(void)
{
    printf("\n%-24s %10s %-8s %-21s %-20s %10s %7s  %s\n", "figure", "median", "unit",
           "[min - max]", "baseline", "baseline", "ratio", "target");
    for (size_t i = 0; i < NFIGS; i++) {
        figure_t *f = &s_figs[i];
        double med, min, max, bmed = 0, bmin, bmax;
        char a[32], b[32], c[32], d[32], e[32], range[48], target[48] = "";
        if (f->op)
            snprintf(target, sizeof target, "%s %s%s",
                     f->op == '>' ? ">=" : "<=", s_num(e, sizeof e, f->target),
                     f->on_ratio ? "x" : "");
        if (!s_stats(f, &med, &min, &max)) {
            bool skipped = strncmp(f->key, "spy_", 4) == 0 && !spy_available();
            if (s_chosen(f->key))
                printf("%-24s %s\n", f->key,
                       skipped ? "skipped (lc-spy not built)" : "no result (failed)");
            continue;
        }
        bool hb = f->baseline && s_stats(s_fig(f->baseline), &bmed, &bmin, &bmax) && bmed;
        double ratio = hb ? med / bmed : 0;
        snprintf(range, sizeof range, "[%s - %s]", s_num(a, sizeof a, min),
                 s_num(b, sizeof b, max));
        char verdict[64];
        snprintf(verdict, sizeof verdict, "%s %s", target, s_verdict(f, med, ratio, hb));
        printf("%-24s %10s %-8s %-21s %-20s %10s %7s  %s\n", f->key, s_num(c, sizeof c, med),
               f->unit, range, f->baseline && hb ? f->baseline : "",
               hb ? s_num(d, sizeof d, bmed) : "", hb ? s_num(e, sizeof e, ratio) : "", verdict);
    }
}

static json_t *s_machine(int argc, char **argv)
{
    struct utsname u;
    uname(&u);
    char model[256] = "unknown", line[512];
    FILE *f = fopen("/proc/cpuinfo", "r");
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, "model name", 10) == 0) {
            char *v = strchr(line, ':');
            if (v) {
                snprintf(model, sizeof model, "%s", v + 2);
                model[strcspn(model, "\n")] = 0;
            }
            break;
        }
    if (f)
        fclose(f);
    int maj, min, pat;
    zmq_version(&maj, &min, &pat);
    char zv[32], cmd[1024] = "";
    snprintf(zv, sizeof zv, "%d.%d.%d", maj, min, pat);
    for (int i = 0; i < argc; i++) {
        strncat(cmd, argv[i], sizeof cmd - strlen(cmd) - 2);
        if (i + 1 < argc)
            strcat(cmd, " ");
    }
    time_t now = time(NULL);
    char when[64];
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
    return json_pack("{s:i, s:s, s:s, s:s, s:I, s:s, s:s, s:s, s:s, s:i, s:f, s:b}", "nproc",
                     (int)sysconf(_SC_NPROCESSORS_ONLN), "cpu", model, "kernel", u.release, "arch",
                     u.machine, "mem_kib",
                     (json_int_t)sysconf(_SC_PHYS_PAGES) * (sysconf(_SC_PAGESIZE) / 1024), "libzmq",
                     zv, "lc", LC_VERSION, "date", when, "command", cmd, "reps", cfg.reps, "secs",
                     cfg.secs, "quick", cfg.quick);
}

static int s_write_json(const char *path, int argc, char **argv)
{
    json_t *results = json_array();
    for (size_t i = 0; i < NFIGS; i++) {
        figure_t *f = &s_figs[i];
        double med, min, max, bmed = 0, bmin, bmax;
        if (!s_stats(f, &med, &min, &max)) {
            /* A figure of a scenario that ran but gave none: say why, with null values. */
            if (s_chosen(f->key))
                json_array_append_new(
                    results, json_pack("{s:s, s:s, s:n, s:n, s:n, s:n, s:n, s:n, s:s}", "key",
                                       f->key, "unit", f->unit, "median", "min", "max",
                                       "baseline_key", "baseline_median", "ratio", "skipped",
                                       strncmp(f->key, "spy_", 4) == 0 && !spy_available()
                                           ? "lc-spy not built"
                                           : "the scenario failed"));
            continue;
        }
        bool hb = f->baseline && s_stats(s_fig(f->baseline), &bmed, &bmin, &bmax) && bmed;
        json_t *r = json_pack("{s:s, s:s, s:f, s:f, s:f, s:o, s:o, s:o}", "key", f->key, "unit",
                              f->unit, "median", med, "min", min, "max", max, "baseline_key",
                              hb ? json_string(f->baseline) : json_null(), "baseline_median",
                              hb ? json_real(bmed) : json_null(), "ratio",
                              hb ? json_real(med / bmed) : json_null());
        if (f->op) {
            json_object_set_new(r, "target",
                                json_pack("{s:s, s:f, s:s}", "op",
                                          f->op == '>' ? ">=" : "<=", "value", f->target, "of",
                                          f->on_ratio ? "ratio" : "median"));
            json_object_set_new(
                r, "met",
                json_boolean(strcmp(s_verdict(f, med, hb ? med / bmed : 0, hb), "met") == 0));
        }
        json_array_append_new(results, r);
    }
    json_t *doc = json_pack("{s:o, s:o}", "machine", s_machine(argc, argv), "results", results);
    int rc = json_dump_file(doc, path, JSON_INDENT(2));
    json_decref(doc);
    if (rc < 0)
        fprintf(stderr, "lc-bench: cannot write %s: %s\n", path, strerror(errno));
    return rc;
}

/* ---- main
 * ---------------------------------------------------------------------------------------- */

static void s_usage(FILE *out)
{
    fprintf(out,
            "Usage: lc-bench [OPTION]...\n"
            "Measure the speed and memory of every path of the lc bus, each figure beside a\n"
            "baseline measured in the same run (a plain ZeroMQ relay, Unix sockets). It starts\n"
            "its own brokers and modules on endpoints in a temporary folder.\n"
            "\n"
            "  -r, --reps N       repetitions of every scenario (default 5)\n"
            "  -s, --secs S       measuring window of the timed scenarios (default 1)\n"
            "  -o, --only REGEX   only the scenarios whose name or a figure's key matches\n"
            "                     (with the scenarios giving their baselines)\n"
            "  -a, --alone        with --only: without the baselines' scenarios (profiling)\n"
            "  -q, --quick        every scenario once and briefly (CI: keeps it working)\n"
            "  -j, --json FILE    also write the results with the machine's description\n"
            "  -b, --bin DIR      where lc-broker, lc-echo, lc-launch (and lc-spy) are\n"
            "                     (default: this program's folder)\n"
            "  -p, --peers        also through mosquitto and a private dbus-daemon\n"
            "                     (needs lc-bench-peers: make bench-peers)\n"
            "  -l, --list         list the scenarios and their figures, and exit\n"
            "  -h, --help         show this help and exit\n"
            "  -V, --version      show the version and exit\n"
            "\n"
            "Exit status: 0 when every scenario ran, 1 when one failed (e.g. events lost),\n"
            "2 on a usage error. Speed is never a reason to fail. See lc-bench(1) and\n"
            "docs/performance.md.\n");
}

static int s_rm(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

int main(int argc, char **argv)
{
    /* Helper processes: lc-bench --role ROLE ... */
    if (argc > 2 && strcmp(argv[1], "--role") == 0) {
        const char *role = argv[2];
        argv[2] = argv[0];
        argc -= 2;
        argv += 2;
        if (strcmp(role, "worker") == 0)
            return role_worker(argc, argv);
        if (strcmp(role, "zrelay") == 0)
            return role_zrelay(argc, argv);
        if (strcmp(role, "zworker") == 0)
            return role_zworker(argc, argv);
        if (strcmp(role, "many") == 0)
            return role_many(argc, argv);
        fprintf(stderr, "lc-bench: unknown role '%s'\n", role);
        return 2;
    }
    static const struct option longopts[] = {
        {"reps", required_argument, NULL, 'r'}, {"secs", required_argument, NULL, 's'},
        {"only", required_argument, NULL, 'o'}, {"quick", no_argument, NULL, 'q'},
        {"json", required_argument, NULL, 'j'}, {"bin", required_argument, NULL, 'b'},
        {"list", no_argument, NULL, 'l'},       {"alone", no_argument, NULL, 'a'},
        {"peers", no_argument, NULL, 'p'},      {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},    {NULL, 0, NULL, 0},
    };
    const char *only = NULL, *json_path = NULL, *bin = NULL;
    int reps = -1, opt;
    double secs = -1;
    bool list = false, peers = false;
    while ((opt = getopt_long(argc, argv, "r:s:o:qj:b:laphV", longopts, NULL)) != -1) {
        char *end;
        switch (opt) {
        case 'r':
            reps = (int)strtol(optarg, &end, 10);
            if (*end || reps < 1 || reps > MAX_REPS) {
                fprintf(stderr, "lc-bench: --reps expects a number from 1 to %d\n", MAX_REPS);
                return 2;
            }
            break;
        case 's':
            secs = strtod(optarg, &end);
            if (*end || secs < 0.05 || secs > 60) {
                fprintf(stderr, "lc-bench: --secs expects seconds from 0.05 to 60\n");
                return 2;
            }
            break;
        case 'o':
            only = optarg;
            break;
        case 'q':
            cfg.quick = true;
            break;
        case 'j':
            json_path = optarg;
            break;
        case 'b':
            bin = optarg;
            break;
        case 'l':
            list = true;
            break;
        case 'a':
            s_alone = true;
            break;
        case 'p':
            peers = true;
            break;
        case 'h':
            s_usage(stdout);
            return 0;
        case 'V':
            printf("lc-bench %s\n", LC_VERSION);
            return 0;
        default:
            fprintf(stderr, "Try 'lc-bench --help'.\n");
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "lc-bench: unexpected argument '%s'; try 'lc-bench --help'\n",
                argv[optind]);
        return 2;
    }
    if (list) {
        for (size_t i = 0; i < NSCEN; i++)
            printf("%-14s %s\n", s_scen[i].name, s_scen[i].keys);
        return 0;
    }
    cfg.reps = reps > 0 ? reps : cfg.quick ? 1 : 5;
    cfg.secs = secs > 0 ? secs : cfg.quick ? 0.2 : 1;
    cfg.tasks = cfg.quick ? 20000 : 100000;

    ssize_t n = readlink("/proc/self/exe", cfg.self, sizeof cfg.self - 1);
    if (n <= 0) {
        fprintf(stderr, "lc-bench: cannot find its own program (/proc/self/exe): %s\n",
                strerror(errno));
        return 1;
    }
    cfg.self[n] = 0;
    char dirbuf[4096];
    snprintf(dirbuf, sizeof dirbuf, "%s", cfg.self);
    char *slash = strrchr(dirbuf, '/');
    if (slash)
        *slash = 0;
    cfg.bin = bin ? bin : dirbuf;
    char broker[4200];
    snprintf(broker, sizeof broker, "%s/lc-broker", cfg.bin);
    if (access(broker, X_OK) < 0) {
        fprintf(stderr, "lc-bench: no lc-broker in %s; build it (make) or give --bin DIR\n",
                cfg.bin);
        return 2;
    }

    if (only) {
        regex_t re;
        if (regcomp(&re, only, REG_EXTENDED | REG_NOSUB) != 0) {
            fprintf(stderr, "lc-bench: --only: '%s' is not a valid regular expression\n", only);
            return 2;
        }
        for (size_t i = 0; i < NSCEN; i++)
            if ((s_scen[i].run != s_peers || peers) &&
                (regexec(&re, s_scen[i].name, 0, NULL, 0) == 0 ||
                 s_words_match(&re, s_scen[i].keys)))
                s_select(&s_scen[i]);
        regfree(&re);
    } else {
        for (size_t i = 0; i < NSCEN; i++)
            if (s_scen[i].run != s_peers || peers)
                s_select(&s_scen[i]);
    }

    bool any = false;
    for (size_t i = 0; i < NSCEN; i++)
        any = any || s_scen[i].selected;
    if (!any) {
        fprintf(stderr, "lc-bench: no scenario matches --only '%s'; see lc-bench --list\n",
                only ? only : "");
        return 2;
    }
    snprintf(cfg.dir, sizeof cfg.dir, "/tmp/lc-bench-XXXXXX");
    if (!mkdtemp(cfg.dir)) {
        fprintf(stderr, "lc-bench: cannot create a temporary folder in /tmp: %s\n",
                strerror(errno));
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);
    setvbuf(stdout, NULL, _IOLBF, 0);
    printf("lc-bench %s: %d repetition(s), %.2f s windows, %ld CPU(s); helpers' logs in %s\n",
           LC_VERSION, cfg.reps, cfg.secs, sysconf(_SC_NPROCESSORS_ONLN), cfg.dir);
    int64_t t0 = now_us();
    for (int r = 0; r < cfg.reps; r++) {
        printf("repetition %d/%d:", r + 1, cfg.reps);
        for (size_t i = 0; i < NSCEN; i++) {
            if (!s_scen[i].selected)
                continue;
            printf(" %s", s_scen[i].name);
            fflush(stdout);
            s_scen[i].run();
        }
        printf("\n");
    }
    for (size_t i = 0; i < NSCEN; i++)
        if (s_scen[i].run == s_spy && s_scen[i].selected && !spy_available())
            printf("spy: skipped (lc-spy not built)\n");
    s_print_table();
    printf("\n%.1f s in all. Ratios compare medians measured in this run; see "
           "docs/performance.md.\n",
           (double)(now_us() - t0) / 1e6);
    int rc = bench_failed() ? 1 : 0;
    if (json_path && s_write_json(json_path, argc, argv) < 0)
        rc = 1;
    if (rc == 0 && !getenv("LC_BENCH_KEEP"))
        nftw(cfg.dir, s_rm, 16, FTW_DEPTH | FTW_PHYS);
    else
        fprintf(stderr, "lc-bench: the helpers' logs are kept in %s\n", cfg.dir);
    return rc;
}
