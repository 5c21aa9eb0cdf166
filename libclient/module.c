/* liblc: what a module process needs beside the bus — its log, its signals and its
 * configuration (the module's own section of the system file, with its state file laid
 * over it). */
#include "client_int.h"
#include "cfg.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/signalfd.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

/* ---- Logging -------------------------------------------------------------------------- */

static const char *const s_levels[] = {"CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG"};

int lc_log_level_parse(const char *name)
{
    for (int i = LC_LOG_CRITICAL; i <= LC_LOG_DEBUG; i++)
        if (name && strcasecmp(name, s_levels[i]) == 0)
            return i;
    return -1;
}

void lc_client_set_log_level(lc_client_t *self, int level)
{
    assert(self);
    if (level >= LC_LOG_CRITICAL && level <= LC_LOG_DEBUG)
        self->log_level = level;
}

void lc_client_set_syslog(lc_client_t *self, bool on)
{
    assert(self);
    if (on && !self->syslog)
        openlog(self->name[0] ? self->name : "lc", LOG_PID, LOG_DAEMON);
    self->syslog = on;
}

void lc_logv(lc_client_t *self, int level, const char *fmt, va_list ap)
{
    if (self && level > self->log_level)
        return;
    if (level < LC_LOG_CRITICAL)
        level = LC_LOG_CRITICAL;
    if (level > LC_LOG_DEBUG)
        level = LC_LOG_DEBUG;
    char msg[2048];
    vsnprintf(msg, sizeof msg, fmt, ap);
    const char *name = self ? lc_client_name(self) : "lc";
    if (self && self->syslog) {
        static const int prio[] = {LOG_CRIT, LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG};
        syslog(prio[level], "%s", msg);
        return;
    }
    char when[32];
    lc_timestamp(when, sizeof when, false);
    /* One write per line, so that lines of several threads do not mix. */
    char line[2300];
    int n = snprintf(line, sizeof line, "%s %s %s: %s\n", when, name[0] ? name : "lc",
                     s_levels[level], msg);
    if (n > (int)sizeof line - 1)
        n = (int)sizeof line - 1;
    ssize_t w = write(STDERR_FILENO, line, (size_t)n);
    (void)w;
}

void lc_log(lc_client_t *self, int level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    lc_logv(self, level, fmt, ap);
    va_end(ap);
}

/* ---- Signals -------------------------------------------------------------------------- */

int lc_on_signal(lc_client_t *self, int signum, lc_signal_fn *fn, void *arg)
{
    assert(self);
    if (signum <= 0 || signum >= 64 || signum == SIGKILL || signum == SIGSTOP ||
        !lcc_on_loop(self))
        return LC_EINVAL;
    self->signals[signum].fn = fn;
    self->signals[signum].arg = arg;
    if (self->signal_fd >= 0)
        return lcc_signals_setup(self);
    return 0;
}

void lc_client_set_signals(lc_client_t *self, bool handle)
{
    assert(self);
    self->handle_signals = handle;
}

/* Blocks the signals the loop handles in this thread and (re)creates the signalfd. */
int lcc_signals_setup(lc_client_t *self)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    for (int s = 1; s < 64; s++)
        if (self->signals[s].fn)
            sigaddset(&set, s);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    int fd = signalfd(self->signal_fd, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    if (fd < 0)
        return -errno;
    self->signal_fd = fd;
    return 0;
}

void lcc_signals_read(lc_client_t *self)
{
    struct signalfd_siginfo si;
    while (read(self->signal_fd, &si, sizeof si) == (ssize_t)sizeof si) {
        int s = (int)si.ssi_signo;
        if (s > 0 && s < 64 && self->signals[s].fn) {
            self->signals[s].fn(self, s, self->signals[s].arg);
        } else if (s == SIGHUP) {
            if (!self->cfg_file && !self->hooks[LC_HOOK_RELOAD].fn)
                continue; /* nothing to reload */
            lc_log(self, LC_LOG_INFO, "SIGHUP: reloading");
            lc_config_reload(self);
            if (self->hooks[LC_HOOK_RELOAD].fn)
                self->hooks[LC_HOOK_RELOAD].fn(self, self->hooks[LC_HOOK_RELOAD].arg);
        } else if (s == SIGTERM || s == SIGINT) {
            lc_log(self, LC_LOG_INFO, "%s: shutting down", s == SIGTERM ? "SIGTERM" : "SIGINT");
            lcc_shutdown_self(self);
        }
    }
}

/* ---- Configuration -------------------------------------------------------------------- */

static void s_config_free(lc_client_t *self)
{
    cfg_free(&self->cfg_root);
    self->cfg_section = NULL;
}

static char *s_dirname(const char *path)
{
    const char *slash = strrchr(path, '/');
    if (!slash)
        return strdup(".");
    if (slash == path)
        return strdup("/");
    return strndup(path, (size_t)(slash - path));
}

static cfg_node_t *s_json_to_cfg(json_t *v, const char *file);
static void s_apply_changes(lc_client_t *self);
static void s_apply_overlay(lc_client_t *self, cfg_node_t *over);

/* The state file is the module's own data: read as it is, without ${VAR} expansion. */
static cfg_node_t *s_load_literal(const char *path, cfg_error_t *err)
{
    json_error_t jerr;
    json_t *j = json_load_file(path, 0, &jerr);
    if (!j) {
        snprintf(err->file, sizeof err->file, "%s", path);
        err->line = jerr.line;
        err->col = jerr.column;
        snprintf(err->message, sizeof err->message, "%s", jerr.text);
        return NULL;
    }
    cfg_node_t *n = s_json_to_cfg(j, path);
    json_decref(j);
    return n;
}

int lc_config_load(lc_client_t *self, const char *path)
{
    assert(self);
    s_config_free(self);
    self->cfg_loaded = true;
    const char *file = path ? path : getenv("LC_CONFIG");
    free(self->cfg_file);
    self->cfg_file = file && *file ? strdup(file) : NULL;
    if (!self->cfg_file) {
        /* As the seed did: a module without a system file runs on its defaults. */
        lc_log(self, LC_LOG_WARNING, "no system file (LC_CONFIG or --config): using defaults");
        return 0;
    }
    cfg_error_t err;
    self->cfg_root = cfg_load(self->cfg_file, &err);
    if (!self->cfg_root) {
        char buf[1200];
        int e = errno;
        lc_log(self, e == ENOENT ? LC_LOG_WARNING : LC_LOG_ERROR, "%s%s",
               cfg_error_text(&err, buf, sizeof buf),
               e == ENOENT ? "; using defaults" : "");
        return e == ENOENT ? 0 : LC_EINVAL;
    }
    char section[LC_NAME_MAX + 32];
    snprintf(section, sizeof section, "modules.%s.config", lc_client_name(self));
    self->cfg_section = cfg_find(self->cfg_root, section, NULL);
    /* The module's own changes, saved in its state file, are laid over its section. */
    const char *state = lcc_state_file(self);
    if (state && access(state, F_OK) == 0) {
        cfg_node_t *over = s_load_literal(state, &err);
        if (!over) {
            char buf[1200];
            lc_log(self, LC_LOG_ERROR, "%s; its changes are ignored",
                   cfg_error_text(&err, buf, sizeof buf));
        } else {
            s_apply_overlay(self, over);
        }
    }
    s_apply_changes(self); /* changes not saved yet survive a reload */
    return 0;
}

int lc_config_reload(lc_client_t *self)
{
    if (!self->cfg_file)
        return 0;
    /* A file that does not load now leaves the module on what it had. */
    cfg_error_t err;
    cfg_node_t *probe = cfg_load(self->cfg_file, &err);
    if (!probe) {
        char buf[1200];
        lc_log(self, LC_LOG_ERROR, "reload: %s; keeping the configuration read before",
               cfg_error_text(&err, buf, sizeof buf));
        return LC_EINVAL;
    }
    cfg_free(&probe);
    char *file = strdup(self->cfg_file);
    int rc = lc_config_load(self, file);
    free(file);
    return rc;
}

const char *lc_config_file(lc_client_t *self)
{
    assert(self);
    return self->cfg_file;
}

/* The state file: beside the system file, <module>.state.json (JSON is YAML too). */
const char *lcc_state_file(lc_client_t *self)
{
    if (!self->cfg_file)
        return NULL;
    if (!self->state_file) {
        char *dir = s_dirname(self->cfg_file);
        const char *env = getenv("LC_STATE_DIR");
        if (asprintf(&self->state_file, "%s/%s.state.json", env && *env ? env : dir,
                     lc_client_name(self)) < 0)
            self->state_file = NULL;
        free(dir);
    }
    return self->state_file;
}

/* Resolves a path for a getter: "/a.b" from the file's root, else below the section. */
static cfg_node_t *s_base(lc_client_t *self, const char **path)
{
    if (!self->cfg_loaded)
        lc_config_load(self, NULL);
    if (**path == '/') {
        (*path)++;
        return self->cfg_root;
    }
    return self->cfg_section;
}

static void s_config_error(lc_client_t *self, cfg_error_t *err)
{
    char buf[1200];
    lc_log(self, LC_LOG_ERROR, "configuration: %s; using the default",
           cfg_error_text(err, buf, sizeof buf));
    self->cfg_errors++;
}

const char *lc_config_str(lc_client_t *self, const char *path, const char *def)
{
    assert(self && path);
    cfg_node_t *base = s_base(self, &path);
    const char *v = def;
    cfg_error_t err;
    if (base && cfg_get_str(base, path, def, &v, &err) < 0) {
        s_config_error(self, &err);
        v = def;
    }
    return v;
}

const char *lc_config_path(lc_client_t *self, const char *path, const char *def)
{
    const char *v = lc_config_str(self, path, def);
    if (!v || v[0] == '/' || !self->cfg_file)
        return v;
    /* Decision 13: relative paths are taken from the system file's folder. */
    char *dir = s_dirname(self->cfg_file);
    free(self->cfg_path_buf);
    if (asprintf(&self->cfg_path_buf, "%s/%s", dir, v) < 0)
        self->cfg_path_buf = NULL;
    free(dir);
    return self->cfg_path_buf ? self->cfg_path_buf : v;
}

long long lc_config_int(lc_client_t *self, const char *path, long long def)
{
    assert(self && path);
    cfg_node_t *base = s_base(self, &path);
    long long v = def;
    cfg_error_t err;
    if (base && cfg_get_int(base, path, def, &v, &err) < 0) {
        s_config_error(self, &err);
        v = def;
    }
    return v;
}

double lc_config_double(lc_client_t *self, const char *path, double def)
{
    assert(self && path);
    cfg_node_t *base = s_base(self, &path);
    double v = def;
    cfg_error_t err;
    if (base && cfg_get_double(base, path, def, &v, &err) < 0) {
        s_config_error(self, &err);
        v = def;
    }
    return v;
}

bool lc_config_bool(lc_client_t *self, const char *path, bool def)
{
    assert(self && path);
    cfg_node_t *base = s_base(self, &path);
    bool v = def;
    cfg_error_t err;
    if (base && cfg_get_bool(base, path, def, &v, &err) < 0) {
        s_config_error(self, &err);
        v = def;
    }
    return v;
}

static json_t *s_cfg_to_json(const cfg_node_t *n)
{
    switch (n->type) {
    case CFG_SCALAR: {
        long long i;
        double d;
        bool b;
        if (!n->quoted && cfg_scalar_int(n, &i))
            return json_integer(i);
        if (!n->quoted && cfg_scalar_double(n, &d))
            return json_real(d);
        if (!n->quoted && cfg_scalar_bool(n, &b))
            return json_boolean(b);
        return json_string(n->text);
    }
    case CFG_MAP: {
        json_t *o = json_object();
        for (size_t i = 0; i < n->n; i++)
            json_object_set_new(o, n->items[i]->key, s_cfg_to_json(n->items[i]));
        return o;
    }
    case CFG_SEQ: {
        json_t *a = json_array();
        for (size_t i = 0; i < n->n; i++)
            json_array_append_new(a, s_cfg_to_json(n->items[i]));
        return a;
    }
    default:
        return json_null();
    }
}

json_t *lc_config_json(lc_client_t *self, const char *path)
{
    assert(self && path);
    cfg_node_t *base = s_base(self, &path);
    cfg_node_t *n = base ? cfg_find(base, path, NULL) : NULL;
    return n ? s_cfg_to_json(n) : NULL;
}

int lc_config_errors(lc_client_t *self)
{
    assert(self);
    return self->cfg_errors;
}

/* Writes value at path into obj, creating the maps on the way. */
static int s_json_set_path(json_t *obj, const char *path, json_t *value)
{
    char *copy = strdup(path), *save = NULL;
    if (!copy) {
        json_decref(value);
        return LC_ENOMEM;
    }
    json_t *cur = obj;
    char *part = strtok_r(copy, ".", &save);
    while (part) {
        char *next = strtok_r(NULL, ".", &save);
        if (!next) {
            json_object_set_new(cur, part, value);
            break;
        }
        json_t *child = json_object_get(cur, part);
        if (!json_is_object(child)) {
            child = json_object();
            json_object_set_new(cur, part, child);
        }
        cur = child;
        part = next;
    }
    free(copy);
    return 0;
}

static cfg_node_t *s_json_to_cfg(json_t *v, const char *file)
{
    char *text = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    if (!text)
        return NULL;
    cfg_node_t *n = cfg_parse_literal(text, strlen(text), file, NULL);
    free(text);
    return n;
}

/* Lays a tree over the module's section, creating modules.<name>.config if needed. */
static void s_apply_overlay(lc_client_t *self, cfg_node_t *over)
{
    if (!over)
        return;
    if (!self->cfg_root) {
        json_t *empty = json_object();
        self->cfg_root = s_json_to_cfg(empty, "<changes>");
        json_decref(empty);
        if (!self->cfg_root) {
            cfg_free(&over);
            return;
        }
    }
    if (!self->cfg_section) {
        char path[LC_NAME_MAX + 32];
        snprintf(path, sizeof path, "modules.%s.config", lc_client_name(self));
        json_t *shell = json_pack("{s:{s:{s:{}}}}", "modules", lc_client_name(self), "config");
        cfg_node_t *tree = s_json_to_cfg(shell, "<changes>");
        json_decref(shell);
        if (tree)
            cfg_merge(self->cfg_root, self->cfg_root, tree);
        self->cfg_section = cfg_find(self->cfg_root, path, NULL);
        if (!self->cfg_section) {
            cfg_free(&over);
            return;
        }
    }
    cfg_merge(self->cfg_root, self->cfg_section, over);
}

static void s_apply_changes(lc_client_t *self)
{
    if (self->cfg_changes && json_object_size(self->cfg_changes))
        s_apply_overlay(self, s_json_to_cfg(self->cfg_changes, "<changes>"));
}

int lc_config_set(lc_client_t *self, const char *path, json_t *value)
{
    assert(self);
    if (!path || !*path || *path == '/' || !value) {
        json_decref(value);
        return LC_EINVAL;
    }
    if (!self->cfg_loaded)
        lc_config_load(self, NULL);
    if (!self->cfg_changes)
        self->cfg_changes = json_object();
    /* Kept for saving, and laid over the section at once so the getters see it. */
    json_t *one = json_object();
    s_json_set_path(one, path, json_incref(value));
    s_json_set_path(self->cfg_changes, path, value);
    cfg_node_t *over = s_json_to_cfg(one, "<changes>");
    json_decref(one);
    if (!over)
        return LC_ENOMEM;
    s_apply_overlay(self, over);
    return 0;
}

int lc_config_save(lc_client_t *self)
{
    assert(self);
    const char *state = lcc_state_file(self);
    if (!state) {
        lc_log(self, LC_LOG_ERROR, "cannot save the configuration: the module has no system "
               "file (LC_CONFIG)");
        return LC_EINVAL;
    }
    /* The saved changes so far, plus the new ones; the system file is never rewritten. */
    json_t *all = json_load_file(state, 0, NULL);
    if (!json_is_object(all)) {
        json_decref(all);
        all = json_object();
    }
    if (self->cfg_changes)
        json_object_update_recursive(all, self->cfg_changes);
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", state);
    int rc = json_dump_file(all, tmp, JSON_INDENT(2) | JSON_SORT_KEYS);
    json_decref(all);
    if (rc < 0 || rename(tmp, state) < 0) {
        int e = errno;
        lc_log(self, LC_LOG_ERROR, "cannot save the configuration to %s: %s", state,
               strerror(e));
        unlink(tmp);
        return -e;
    }
    json_decref(self->cfg_changes);
    self->cfg_changes = NULL;
    return 0;
}

void lcc_config_free(lc_client_t *self)
{
    s_config_free(self);
    json_decref(self->cfg_changes);
    self->cfg_changes = NULL;
    free(self->cfg_file);
    free(self->state_file);
    free(self->cfg_path_buf);
}

/* ---- A module's command line ---------------------------------------------------------- */

/* Takes "--opt VALUE" or "--opt=VALUE" out of argv; returns the value or NULL. */
static const char *s_take(int *argc, char **argv, const char *opt, bool *bad)
{
    size_t olen = strlen(opt);
    const char *value = NULL;
    for (int i = 1; i < *argc; i++) {
        int drop = 0;
        if (strcmp(argv[i], opt) == 0) {
            if (i + 1 >= *argc) {
                fprintf(stderr, "%s: %s needs a value\n", argv[0], opt);
                *bad = true;
                return NULL;
            }
            value = argv[i + 1];
            drop = 2;
        } else if (strncmp(argv[i], opt, olen) == 0 && argv[i][olen] == '=') {
            value = argv[i] + olen + 1;
            drop = 1;
        } else if (strcmp(argv[i], "--") == 0) {
            break;
        }
        if (drop) {
            memmove(&argv[i], &argv[i + drop], (size_t)(*argc - i - drop + 1) * sizeof *argv);
            *argc -= drop;
            i--;
        }
    }
    return value;
}

lc_client_t *lc_module_new(const char *default_name, int *argc, char **argv)
{
    bool bad = false;
    const char *name = s_take(argc, argv, "--name", &bad);
    const char *bus = s_take(argc, argv, "--bus", &bad);
    const char *config = s_take(argc, argv, "--config", &bad);
    const char *level = s_take(argc, argv, "--log-level", &bad);
    if (bad) {
        errno = EINVAL;
        return NULL;
    }
    if (!name)
        name = getenv("LC_MODULE");
    if (!bus)
        bus = getenv("LC_BUS");
    if (!config)
        config = getenv("LC_CONFIG");
    if (!level)
        level = getenv("LC_LOG_LEVEL");
    if (!name || !*name)
        name = default_name;
    int lvl = level && *level ? lc_log_level_parse(level) : LC_LOG_INFO;
    if (lvl < 0) {
        fprintf(stderr, "%s: log level '%s' is not one of critical, error, warning, info, "
                "debug\n", argv[0], level);
        errno = EINVAL;
        return NULL;
    }
    lc_client_t *c = lc_client_new(name, bus && *bus ? bus : NULL);
    if (!c) {
        int e = errno;
        fprintf(stderr, "%s: cannot create the client: %s\n", argv[0],
                e == EINVAL ? "invalid module name or bus endpoint (a name is 1-64 characters "
                              "of [A-Za-z0-9_-], starting with a letter)"
                            : strerror(e));
        errno = e;
        return NULL;
    }
    lc_client_set_log_level(c, lvl);
    if (config && *config && lc_config_load(c, config) < 0) {
        lc_client_destroy(&c);
        errno = EINVAL;
        return NULL;
    }
    return c;
}

/* ---- The exception log ---------------------------------------------------------------- */

void lcc_exception_record(lc_client_t *self, const lc_request_t *req, const char *why)
{
    const char *path = getenv("LC_EXCEPTION_LOG");
    if (!path || !*path)
        return;
    char when[32], rec[2048];
    lc_timestamp(when, sizeof when, true);
    int n = snprintf(rec, sizeof rec,
                     "%s handler failed: module %s, %s %s, tx %llu, from %s\n  | %s\n\n", when,
                     lc_client_name(self),
                     req->kind == LC_KIND_TASK ? "task" : "event", req->method,
                     (unsigned long long)req->hdr.tx, req->source, why ? why : "");
    /* One append per record: records of several modules do not mix. */
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
        return;
    ssize_t w = write(fd, rec, (size_t)(n < (int)sizeof rec ? n : (int)sizeof rec - 1));
    (void)w;
    close(fd);
}
