/* lc-launch: reading and checking the system file. The rules are tables (cfg_rule_t), so a
 * typo in a key is reported with its line and column instead of passing silently. */
#include "system.h"
#include "lc.h"
#include "wire.h" /* lc_name_valid: the broker's own rule */

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const cfg_rule_t s_top[] = {
    {"bus", CFG_MAP}, {"launcher", CFG_MAP}, {"modules", CFG_MAP}, {NULL, 0}};

/* bus: key -> lc-broker option */
static const struct {
    const char *key;
    const char *option;
} s_bus_options[] = {
    {"max_payload", "--max-payload"},       {"max_queue", "--max-queue"},
    {"max_backlog", "--max-backlog"},       {"window", "--window"},
    {"max_sent", "--max-sent"},
    {"heartbeat_ms", "--heartbeat"},        {"call_timeout_ms", "--call-timeout"},
    {"grace_ms", "--grace"},                {"start_timeout_ms", "--start-timeout"},
    {"drain_ms", "--drain"},                {"stop_timeout_ms", "--stop-timeout"},
    {"exit_timeout_ms", "--exit-timeout"},  {NULL, NULL},
};

static const cfg_rule_t s_bus[] = {
    {"endpoint", CFG_SCALAR},        {"listen", CFG_SEQ},           {"max_payload", CFG_SCALAR},   {"max_queue", CFG_SCALAR},
    {"max_backlog", CFG_SCALAR},     {"window", CFG_SCALAR},        {"heartbeat_ms", CFG_SCALAR},
    {"max_sent", CFG_SCALAR},
    {"call_timeout_ms", CFG_SCALAR}, {"grace_ms", CFG_SCALAR},      {"start_timeout_ms", CFG_SCALAR},
    {"drain_ms", CFG_SCALAR},        {"stop_timeout_ms", CFG_SCALAR}, {"exit_timeout_ms", CFG_SCALAR},
    {"group", CFG_SCALAR},           {"allow_users", CFG_SEQ},      {"allow_groups", CFG_SEQ},
    {NULL, 0}};

static const cfg_rule_t s_launcher[] = {{"log_dir", CFG_SCALAR},
                                        {"exception_log", CFG_SCALAR},
                                        {"log_level", CFG_SCALAR},
                                        {NULL, 0}};

static const cfg_rule_t s_module[] = {
    {"program", CFG_SCALAR},   {"args", CFG_SEQ},        {"env", CFG_MAP},
    {"cwd", CFG_SCALAR},       {"restart", CFG_SCALAR},  {"backoff", CFG_MAP},
    {"intensity", CFG_MAP},    {"after", CFG_SEQ},       {"stop_timeout_ms", CFG_SCALAR},
    {"log_level", CFG_SCALAR}, {"config", CFG_NULL},     {NULL, 0}};

static const cfg_rule_t s_backoff[] = {{"initial_ms", CFG_SCALAR}, {"max_ms", CFG_SCALAR}, {NULL, 0}};
static const cfg_rule_t s_intensity[] = {{"restarts", CFG_SCALAR}, {"seconds", CFG_SCALAR}, {NULL, 0}};

static char **s_strv_add(char **v, const char *s)
{
    size_t n = 0;
    while (v && v[n])
        n++;
    char **bigger = realloc(v, (n + 2) * sizeof *bigger);
    if (!bigger)
        return v;
    bigger[n] = strdup(s);
    bigger[n + 1] = NULL;
    return bigger;
}

static void s_strv_free(char **v)
{
    for (size_t i = 0; v && v[i]; i++)
        free(v[i]);
    free(v);
}

/* Relative paths in the file resolve against the file's folder (decision 13). */
static char *s_path(const system_t *sys, const char *p)
{
    if (p[0] == '/')
        return strdup(p);
    char *out = NULL;
    if (asprintf(&out, "%s/%s", sys->dir, p) < 0)
        return NULL;
    return out;
}

/* A compact text of a node and everything below, for comparing module specs. */
static void s_dump(const cfg_node_t *n, char **buf, size_t *len, size_t *cap)
{
    char piece[64];
    const char *parts[3] = {n->key ? n->key : "", "=", ""};
    for (int i = 0; i < 3; i++) {
        const char *t = i == 2 ? (n->type == CFG_SCALAR ? n->text : cfg_type_name(n->type))
                               : parts[i];
        size_t tl = strlen(t);
        if (*len + tl + 8 > *cap) {
            *cap = (*len + tl + 8) * 2;
            char *b = realloc(*buf, *cap);
            if (!b)
                return;
            *buf = b;
        }
        memcpy(*buf + *len, t, tl);
        *len += tl;
    }
    snprintf(piece, sizeof piece, "{%zu;", n->n);
    size_t pl = strlen(piece);
    if (*len + pl + 2 > *cap) {
        *cap = (*len + pl + 2) * 2;
        char *b = realloc(*buf, *cap);
        if (!b)
            return;
        *buf = b;
    }
    memcpy(*buf + *len, piece, pl);
    *len += pl;
    for (size_t i = 0; i < n->n; i++)
        s_dump(n->items[i], buf, len, cap);
    (*buf)[(*len)++] = '}';
    (*buf)[*len] = 0;
}

static int s_int(cfg_node_t *base, const char *path, int def, int min, int *out, cfg_error_t *err)
{
    long long v;
    if (cfg_get_int(base, path, def, &v, err) < 0)
        return -1;
    if (v < min || v > INT_MAX)
        return cfg_fail(err, cfg_find(base, path, NULL), "%s must be at least %d", path, min);
    *out = (int)v;
    return 0;
}

static int s_level_ok(cfg_node_t *base, const char *path, char **out, cfg_error_t *err)
{
    const char *v;
    if (cfg_get_str(base, path, NULL, &v, err) < 0)
        return -1;
    if (v && lc_log_level_parse(v) < 0)
        return cfg_fail(err, cfg_find(base, path, NULL),
                        "%s: expected critical, error, warning, info or debug, found \"%s\"",
                        path, v);
    *out = v ? strdup(v) : NULL;
    return 0;
}

static int s_module_load(system_t *sys, cfg_node_t *m, spec_t *spec, cfg_error_t *err)
{
    spec->name = strdup(m->key);
    if (!lc_name_valid(m->key, strlen(m->key)) || strcmp(m->key, "broker") == 0 ||
        strcmp(m->key, "launcher") == 0) {
        err->line = m->key_line;
        err->col = m->key_col;
        snprintf(err->file, sizeof err->file, "%s", m->file);
        snprintf(err->message, sizeof err->message,
                 "module name '%s': use 1-64 characters of [A-Za-z0-9_-] starting with a "
                 "letter; broker and launcher are reserved", m->key);
        return -1;
    }
    char what[128];
    snprintf(what, sizeof what, "modules.%s", m->key);
    if (m->type != CFG_MAP)
        return cfg_fail(err, m, "%s: expected a map with at least \"program\"", what);
    if (cfg_check(m, s_module, what, err) < 0 ||
        cfg_check(cfg_find(m, "backoff", NULL), s_backoff, "backoff", err) < 0 ||
        cfg_check(cfg_find(m, "intensity", NULL), s_intensity, "intensity", err) < 0)
        return -1;
    const char *program, *restart, *cwd;
    if (cfg_get_str(m, "program", NULL, &program, err) < 0)
        return -1;
    if (!program || !*program)
        return cfg_fail(err, m, "%s: \"program\" is required (a path, or a name on PATH)", what);
    spec->program = strchr(program, '/') ? s_path(sys, program) : strdup(program);
    if (cfg_get_str(m, "restart", "on-failure", &restart, err) < 0)
        return -1;
    if (strcmp(restart, "always") == 0)
        spec->restart = RESTART_ALWAYS;
    else if (strcmp(restart, "on-failure") == 0)
        spec->restart = RESTART_ON_FAILURE;
    else if (strcmp(restart, "never") == 0)
        spec->restart = RESTART_NEVER;
    else
        return cfg_fail(err, cfg_find(m, "restart", NULL),
                        "%s.restart: expected always, on-failure or never, found \"%s\"", what,
                        restart);
    if (cfg_get_str(m, "cwd", ".", &cwd, err) < 0)
        return -1;
    spec->cwd = s_path(sys, cwd);
    if (s_int(m, "backoff.initial_ms", 100, 1, &spec->backoff_initial_ms, err) < 0 ||
        s_int(m, "backoff.max_ms", 10000, 1, &spec->backoff_max_ms, err) < 0 ||
        s_int(m, "intensity.restarts", 5, 0, &spec->intensity_restarts, err) < 0 ||
        s_int(m, "intensity.seconds", 60, 1, &spec->intensity_seconds, err) < 0 ||
        s_int(m, "stop_timeout_ms", sys->stop_timeout_ms, 0, &spec->stop_timeout_ms, err) < 0 ||
        s_level_ok(m, "log_level", &spec->log_level, err) < 0)
        return -1;
    cfg_node_t *args = cfg_find(m, "args", NULL);
    for (size_t i = 0; args && i < args->n; i++) {
        if (args->items[i]->type != CFG_SCALAR)
            return cfg_fail(err, args->items[i], "%s.args: every argument must be a plain value",
                            what);
        spec->args = s_strv_add(spec->args, args->items[i]->text);
    }
    cfg_node_t *env = cfg_find(m, "env", NULL);
    for (size_t i = 0; env && i < env->n; i++) {
        cfg_node_t *e = env->items[i];
        if (e->type == CFG_MAP || e->type == CFG_SEQ)
            return cfg_fail(err, e, "%s.env.%s: expected a plain value", what, e->key);
        char *kv = NULL;
        if (asprintf(&kv, "%s=%s", e->key, e->type == CFG_SCALAR ? e->text : "") < 0)
            return cfg_fail(err, e, "out of memory");
        spec->env = s_strv_add(spec->env, kv);
        free(kv);
    }
    cfg_node_t *after = cfg_find(m, "after", NULL);
    for (size_t i = 0; after && i < after->n; i++) {
        cfg_node_t *a = after->items[i];
        if (a->type != CFG_SCALAR)
            return cfg_fail(err, a, "%s.after: expected module names", what);
        spec->after = s_strv_add(spec->after, a->text);
    }
    size_t len = 0, cap = 256;
    spec->signature = calloc(1, cap);
    if (spec->signature)
        s_dump(m, &spec->signature, &len, &cap);
    return 0;
}

static void s_spec_free(spec_t *s)
{
    free(s->name);
    free(s->program);
    s_strv_free(s->args);
    s_strv_free(s->env);
    free(s->cwd);
    s_strv_free(s->after);
    free(s->log_level);
    free(s->signature);
}

/* Orders modules so that each comes after those it waits for; refuses unknown names and
 * cycles, pointing at the `after` entry. */
static int s_order(system_t *sys, cfg_node_t *mods, cfg_error_t *err)
{
    int n = sys->nmodules;
    spec_t *sorted = calloc((size_t)n, sizeof *sorted);
    bool *placed = calloc((size_t)n, sizeof *placed);
    if (!sorted || !placed) {
        free(sorted);
        free(placed);
        return cfg_fail(err, mods, "out of memory");
    }
    for (int i = 0; i < n; i++)
        for (char **a = sys->modules[i].after; a && *a; a++)
            if (!system_find(sys, *a) || strcmp(*a, sys->modules[i].name) == 0) {
                cfg_node_t *list = cfg_find(mods->items[i], "after", NULL), *at = list;
                for (size_t e = 0; list && e < list->n; e++)
                    if (list->items[e]->text && strcmp(list->items[e]->text, *a) == 0)
                        at = list->items[e]; /* point at the entry itself */
                free(sorted);
                free(placed);
                return cfg_fail(err, at, "modules.%s.after: '%s' is %s", sys->modules[i].name,
                                *a, strcmp(*a, sys->modules[i].name) == 0 ? "the module itself"
                                                                          : "not a module here");
            }
    int k = 0;
    while (k < n) {
        int progress = 0;
        for (int i = 0; i < n; i++) {
            if (placed[i])
                continue;
            bool ready = true;
            for (char **a = sys->modules[i].after; a && *a && ready; a++)
                for (int j = 0; j < n; j++)
                    if (strcmp(sys->modules[j].name, *a) == 0 && !placed[j])
                        ready = false;
            if (ready) {
                placed[i] = true;
                sorted[k++] = sys->modules[i];
                progress++;
            }
        }
        if (!progress) {
            for (int i = 0; i < n; i++)
                if (!placed[i]) {
                    cfg_node_t *at = cfg_find(mods->items[i], "after", NULL);
                    free(sorted);
                    free(placed);
                    return cfg_fail(err, at, "modules.%s.after: the modules wait for each other "
                                    "in a circle", sys->modules[i].name);
                }
        }
    }
    free(sys->modules);
    sys->modules = sorted;
    free(placed);
    return 0;
}

system_t *system_load(const char *path, cfg_error_t *err)
{
    system_t *sys = calloc(1, sizeof *sys);
    if (!sys)
        return NULL;
    char abs[PATH_MAX];
    if (!realpath(path, abs)) {
        snprintf(err->file, sizeof err->file, "%s", path);
        err->line = err->col = 0;
        snprintf(err->message, sizeof err->message, "cannot open: %s", strerror(errno));
        free(sys);
        return NULL;
    }
    sys->path = strdup(abs);
    char *slash = strrchr(abs, '/');
    *slash = 0;
    sys->dir = strdup(abs[0] ? abs : "/");
    sys->root = cfg_load(sys->path, err);
    if (!sys->root || cfg_check(sys->root, s_top, "the system file", err) < 0)
        goto fail;
    cfg_node_t *bus = cfg_find(sys->root, "bus", NULL);
    cfg_node_t *launcher = cfg_find(sys->root, "launcher", NULL);
    if (cfg_check(bus, s_bus, "bus", err) < 0 || cfg_check(launcher, s_launcher, "launcher", err) < 0)
        goto fail;
    const char *endpoint, *log_dir, *exc;
    char dflt[512];
    lc_endpoint_default(dflt, sizeof dflt);
    if (cfg_get_str(sys->root, "bus.endpoint", dflt, &endpoint, err) < 0 ||
        cfg_get_str(sys->root, "launcher.log_dir", NULL, &log_dir, err) < 0 ||
        cfg_get_str(sys->root, "launcher.exception_log", NULL, &exc, err) < 0 ||
        s_level_ok(sys->root, "launcher.log_level", &sys->log_level, err) < 0 ||
        s_int(sys->root, "bus.start_timeout_ms", 10000, 0, &sys->start_timeout_ms, err) < 0 ||
        s_int(sys->root, "bus.exit_timeout_ms", 10000, 0, &sys->exit_timeout_ms, err) < 0 ||
        s_int(sys->root, "bus.stop_timeout_ms", 5000, 0, &sys->stop_timeout_ms, err) < 0)
        goto fail;
    if (strncmp(endpoint, "ipc://", 6) != 0 && strncmp(endpoint, "tcp://", 6) != 0) {
        cfg_fail(err, cfg_find(sys->root, "bus.endpoint", NULL),
                 "bus.endpoint: expected ipc://PATH or tcp://HOST:PORT, found \"%s\"", endpoint);
        goto fail;
    }
    if (strncmp(endpoint, "ipc://", 6) == 0 && endpoint[6] != '/') {
        char *p = s_path(sys, endpoint + 6);
        if (asprintf(&sys->endpoint, "ipc://%s", p) < 0)
            sys->endpoint = NULL;
        free(p);
    } else {
        sys->endpoint = strdup(endpoint);
    }
    /* More endpoints for the broker, e.g. tcp:// for modules on other hosts. */
    cfg_node_t *listen = cfg_find(bus, "listen", NULL);
    for (size_t i = 0; listen && i < listen->n; i++) {
        cfg_node_t *l = listen->items[i];
        if (l->type != CFG_SCALAR ||
            (strncmp(l->text, "ipc://", 6) != 0 && strncmp(l->text, "tcp://", 6) != 0)) {
            cfg_fail(err, l, "bus.listen: expected ipc:// or tcp:// endpoints");
            goto fail;
        }
        sys->broker_args = s_strv_add(sys->broker_args, "--endpoint");
        sys->broker_args = s_strv_add(sys->broker_args, l->text);
    }
    /* Who may use the bus (lc-broker --group, --allow-user, --allow-group). */
    cfg_node_t *group = cfg_find(bus, "group", NULL);
    if (group && group->type == CFG_SCALAR) {
        sys->broker_args = s_strv_add(sys->broker_args, "--group");
        sys->broker_args = s_strv_add(sys->broker_args, group->text);
    }
    static const struct {
        const char *key, *option;
    } lists[] = {{"allow_users", "--allow-user"}, {"allow_groups", "--allow-group"}};
    for (size_t k = 0; k < sizeof lists / sizeof lists[0]; k++) {
        cfg_node_t *list = cfg_find(bus, lists[k].key, NULL);
        for (size_t i = 0; list && i < list->n; i++) {
            cfg_node_t *item = list->items[i];
            if (item->type != CFG_SCALAR || !*item->text) {
                cfg_fail(err, item, "bus.%s: expected user or group names or numbers",
                         lists[k].key);
                goto fail;
            }
            sys->broker_args = s_strv_add(sys->broker_args, lists[k].option);
            sys->broker_args = s_strv_add(sys->broker_args, item->text);
        }
    }
    sys->log_dir = log_dir ? s_path(sys, log_dir) : NULL;
    sys->exception_log = exc ? s_path(sys, exc) : NULL;
    for (int i = 0; s_bus_options[i].key; i++) {
        cfg_node_t *v = cfg_find(bus, s_bus_options[i].key, NULL);
        int x;
        if (!v || v->type == CFG_NULL)
            continue;
        if (s_int(bus, s_bus_options[i].key, 0, 0, &x, err) < 0)
            goto fail;
        char num[32];
        snprintf(num, sizeof num, "%d", x);
        sys->broker_args = s_strv_add(sys->broker_args, s_bus_options[i].option);
        sys->broker_args = s_strv_add(sys->broker_args, num);
    }
    cfg_node_t *mods = cfg_find(sys->root, "modules", NULL);
    if (!mods || mods->type != CFG_MAP || mods->n == 0) {
        cfg_fail(err, mods ? mods : sys->root, "the system file needs a \"modules:\" map with "
                 "at least one module");
        goto fail;
    }
    sys->modules = calloc(mods->n, sizeof *sys->modules);
    if (!sys->modules)
        goto fail;
    for (size_t i = 0; i < mods->n; i++) {
        sys->nmodules++;
        if (s_module_load(sys, mods->items[i], &sys->modules[i], err) < 0)
            goto fail;
    }
    if (s_order(sys, mods, err) < 0)
        goto fail;
    return sys;
fail:
    system_free(&sys);
    return NULL;
}

const spec_t *system_find(const system_t *self, const char *name)
{
    for (int i = 0; i < self->nmodules; i++)
        if (self->modules[i].name && strcmp(self->modules[i].name, name) == 0)
            return &self->modules[i];
    return NULL;
}

void system_free(system_t **self_p)
{
    system_t *s = *self_p;
    if (!s)
        return;
    for (int i = 0; i < s->nmodules; i++)
        s_spec_free(&s->modules[i]);
    free(s->modules);
    cfg_free(&s->root);
    free(s->path);
    free(s->dir);
    free(s->endpoint);
    s_strv_free(s->broker_args);
    free(s->log_dir);
    free(s->exception_log);
    free(s->log_level);
    free(s);
    *self_p = NULL;
}
