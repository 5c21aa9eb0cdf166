/* The YAML loader on libyaml's parser events (no document object model in between). */
#include "cfg.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <yaml.h>

#define MAX_DEPTH 64

const char *cfg_type_name(int type)
{
    static const char *const names[] = {"null", "scalar", "map", "list"};
    return type >= CFG_NULL && type <= CFG_SEQ ? names[type] : "?";
}

const char *cfg_error_text(const cfg_error_t *err, char *buf, size_t size)
{
    if (err->file[0] && err->line)
        snprintf(buf, size, "%s:%d:%d: %s", err->file, err->line, err->col, err->message);
    else if (err->file[0])
        snprintf(buf, size, "%s: %s", err->file, err->message);
    else
        snprintf(buf, size, "%s", err->message);
    return buf;
}

static void s_errorv(cfg_error_t *err, const char *file, int line, int col, const char *fmt,
                     va_list ap)
{
    if (!err)
        return;
    snprintf(err->file, sizeof err->file, "%s", file ? file : "");
    err->line = line;
    err->col = col;
    vsnprintf(err->message, sizeof err->message, fmt, ap);
}

static int s_error(cfg_error_t *err, const char *file, int line, int col, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static int s_error(cfg_error_t *err, const char *file, int line, int col, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    s_errorv(err, file, line, col, fmt, ap);
    va_end(ap);
    return -1;
}

int cfg_fail(cfg_error_t *err, const cfg_node_t *node, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    s_errorv(err, node ? node->file : NULL, node ? node->line : 0, node ? node->col : 0, fmt, ap);
    va_end(ap);
    return -1;
}

/* ---- Tree ----------------------------------------------------------------------------- */

static cfg_node_t *s_node(int type, const char *file, const yaml_mark_t *mark)
{
    cfg_node_t *n = calloc(1, sizeof *n);
    if (n) {
        n->type = type;
        n->file = file;
        n->line = (int)mark->line + 1;
        n->col = (int)mark->column + 1;
    }
    return n;
}

static int s_add(cfg_node_t *parent, cfg_node_t *child)
{
    if (parent->n == parent->cap) {
        size_t cap = parent->cap ? parent->cap * 2 : 8;
        cfg_node_t **items = realloc(parent->items, cap * sizeof *items);
        if (!items)
            return -1;
        parent->items = items;
        parent->cap = cap;
    }
    parent->items[parent->n++] = child;
    return 0;
}

static void s_free(cfg_node_t *n)
{
    if (!n)
        return;
    for (size_t i = 0; i < n->n; i++)
        s_free(n->items[i]);
    free(n->items);
    free(n->text);
    free(n->key);
    free(n);
}

void cfg_free(cfg_node_t **root_p)
{
    if (!root_p || !*root_p)
        return;
    /* The root owns the file names its nodes point to. */
    cfg_node_t *root = *root_p;
    char **files = root->files;
    size_t n = root->nfiles;
    for (size_t i = 0; i < root->ndead; i++)
        s_free(root->dead[i]);
    free(root->dead);
    s_free(root);
    for (size_t i = 0; i < n; i++)
        free(files[i]);
    free(files);
    *root_p = NULL;
}

/* ---- Environment variables ------------------------------------------------------------ */

/* Expands ${VAR} and ${VAR:-default}; $${ is a literal ${. Returns a new string or NULL
 * with err filled (an unset variable without a default is an error: nothing silently
 * becomes empty). */
static char *s_expand(const char *in, const char *file, const yaml_mark_t *mark,
                      cfg_error_t *err)
{
    size_t cap = strlen(in) + 64, len = 0;
    char *out = malloc(cap);
    if (!out)
        return NULL;
    for (const char *p = in; *p;) {
        const char *piece = p;
        size_t plen = 1;
        char *value = NULL;
        if (p[0] == '$' && p[1] == '$' && p[2] == '{') {
            piece = "${";
            plen = 2;
            p += 3;
        } else if (p[0] == '$' && p[1] == '{') {
            /* The matching brace: a default may hold ${...} of its own. */
            const char *end = p + 2;
            int depth = 1;
            for (; *end && depth; end++)
                depth += *end == '{' ? 1 : *end == '}' ? -1 : 0;
            if (depth) {
                s_error(err, file, (int)mark->line + 1, (int)mark->column + 1,
                        "unterminated ${ in \"%s\"", in);
                free(out);
                return NULL;
            }
            end--; /* at the closing brace */
            char name[256];
            size_t n = (size_t)(end - p - 2);
            if (n >= sizeof name)
                n = sizeof name - 1;
            memcpy(name, p + 2, n);
            name[n] = 0;
            char *dflt = strstr(name, ":-");
            if (dflt) {
                *dflt = 0;
                dflt += 2;
            }
            const char *env = getenv(name);
            char *expanded = NULL;
            if (env && *env) {
                piece = env;
            } else if (dflt) {
                expanded = s_expand(dflt, file, mark, err);
                if (!expanded) {
                    free(out);
                    return NULL;
                }
                piece = expanded;
            } else {
                s_error(err, file, (int)mark->line + 1, (int)mark->column + 1,
                        "environment variable %s is not set (write ${%s:-default} for a "
                        "default)", name, name);
                free(out);
                return NULL;
            }
            value = expanded ? expanded : strdup(piece);
            piece = value;
            plen = strlen(piece);
            p = end + 1;
        } else {
            p++;
        }
        if (len + plen + 1 > cap) {
            cap = (len + plen + 1) * 2;
            char *bigger = realloc(out, cap);
            if (!bigger) {
                free(out);
                free(value);
                return NULL;
            }
            out = bigger;
        }
        memcpy(out + len, piece, plen);
        len += plen;
        free(value);
    }
    out[len] = 0;
    return out;
}

/* ---- Parsing -------------------------------------------------------------------------- */

typedef struct {
    yaml_parser_t parser;
    const char *file;
    cfg_error_t *err;
    bool expand;
} parse_t;

static int s_next(parse_t *ps, yaml_event_t *ev)
{
    if (yaml_parser_parse(&ps->parser, ev))
        return 0;
    const yaml_mark_t *m = &ps->parser.problem_mark;
    return s_error(ps->err, ps->file, (int)m->line + 1, (int)m->column + 1, "%s%s%s",
                   ps->parser.problem ? ps->parser.problem : "invalid YAML",
                   ps->parser.context ? " " : "", ps->parser.context ? ps->parser.context : "");
}

static bool s_is_null(const yaml_event_t *ev)
{
    if (ev->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return false;
    const char *v = (const char *)ev->data.scalar.value;
    return !*v || strcmp(v, "~") == 0 || strcmp(v, "null") == 0 || strcmp(v, "Null") == 0 ||
           strcmp(v, "NULL") == 0;
}

static cfg_node_t *s_parse(parse_t *ps, yaml_event_t *ev, int depth);

static cfg_node_t *s_scalar(parse_t *ps, yaml_event_t *ev)
{
    if (s_is_null(ev))
        return s_node(CFG_NULL, ps->file, &ev->start_mark);
    cfg_node_t *n = s_node(CFG_SCALAR, ps->file, &ev->start_mark);
    if (!n)
        return NULL;
    const char *v = (const char *)ev->data.scalar.value;
    n->quoted = ev->data.scalar.style != YAML_PLAIN_SCALAR_STYLE;
    /* Single quotes are literal in YAML: no expansion there. */
    n->text = ev->data.scalar.style == YAML_SINGLE_QUOTED_SCALAR_STYLE || !ps->expand
                  ? strdup(v)
                  : s_expand(v, ps->file, &ev->start_mark, ps->err);
    if (!n->text) {
        s_free(n);
        return NULL;
    }
    return n;
}

static cfg_node_t *s_collection(parse_t *ps, yaml_event_t *start, int depth)
{
    bool map = start->type == YAML_MAPPING_START_EVENT;
    cfg_node_t *n = s_node(map ? CFG_MAP : CFG_SEQ, ps->file, &start->start_mark);
    if (!n)
        return NULL;
    for (;;) {
        yaml_event_t ev;
        if (s_next(ps, &ev) < 0)
            goto fail;
        if (ev.type == (map ? YAML_MAPPING_END_EVENT : YAML_SEQUENCE_END_EVENT)) {
            yaml_event_delete(&ev);
            return n;
        }
        char *key = NULL;
        int kline = 0, kcol = 0;
        if (map) {
            if (ev.type != YAML_SCALAR_EVENT) {
                s_error(ps->err, ps->file, (int)ev.start_mark.line + 1,
                        (int)ev.start_mark.column + 1, "a key must be a plain value, not a %s",
                        ev.type == YAML_MAPPING_START_EVENT ? "map" : "list");
                yaml_event_delete(&ev);
                goto fail;
            }
            key = strdup((const char *)ev.data.scalar.value);
            kline = (int)ev.start_mark.line + 1;
            kcol = (int)ev.start_mark.column + 1;
            yaml_event_delete(&ev);
            for (size_t i = 0; key && i < n->n; i++)
                if (strcmp(n->items[i]->key, key) == 0) {
                    s_error(ps->err, ps->file, kline, kcol,
                            "duplicate key '%s' (first at line %d)", key, n->items[i]->line);
                    free(key);
                    goto fail;
                }
            if (!key || s_next(ps, &ev) < 0) {
                free(key);
                goto fail;
            }
        }
        cfg_node_t *child = s_parse(ps, &ev, depth + 1);
        yaml_event_delete(&ev);
        if (!child) {
            free(key);
            goto fail;
        }
        child->key = key;
        child->key_line = kline;
        child->key_col = kcol;
        if (key && child->type == CFG_NULL) {
            /* A key with nothing after it: point at the key. */
            child->line = kline;
            child->col = kcol;
        }
        if (s_add(n, child) < 0) {
            s_free(child);
            goto fail;
        }
    }
fail:
    s_free(n);
    return NULL;
}

static const yaml_char_t *s_anchor(const yaml_event_t *ev)
{
    switch (ev->type) {
    case YAML_SCALAR_EVENT: return ev->data.scalar.anchor;
    case YAML_MAPPING_START_EVENT: return ev->data.mapping_start.anchor;
    case YAML_SEQUENCE_START_EVENT: return ev->data.sequence_start.anchor;
    default: return NULL;
    }
}

static cfg_node_t *s_parse(parse_t *ps, yaml_event_t *ev, int depth)
{
    if (s_anchor(ev)) {
        s_error(ps->err, ps->file, (int)ev->start_mark.line + 1, (int)ev->start_mark.column + 1,
                "anchors (&%s) and aliases are not supported; write the value out",
                (const char *)s_anchor(ev));
        return NULL;
    }
    if (depth > MAX_DEPTH) {
        s_error(ps->err, ps->file, (int)ev->start_mark.line + 1, (int)ev->start_mark.column + 1,
                "nested deeper than %d levels", MAX_DEPTH);
        return NULL;
    }
    switch (ev->type) {
    case YAML_SCALAR_EVENT:
        return s_scalar(ps, ev);
    case YAML_MAPPING_START_EVENT:
    case YAML_SEQUENCE_START_EVENT:
        return s_collection(ps, ev, depth);
    case YAML_ALIAS_EVENT:
        s_error(ps->err, ps->file, (int)ev->start_mark.line + 1, (int)ev->start_mark.column + 1,
                "anchors and aliases (*name) are not supported; write the value out");
        return NULL;
    default:
        s_error(ps->err, ps->file, (int)ev->start_mark.line + 1, (int)ev->start_mark.column + 1,
                "unexpected YAML structure");
        return NULL;
    }
}

static cfg_node_t *s_parse_text(const char *text, size_t len, const char *name, bool expand,
                                cfg_error_t *err)
{
    parse_t ps = {.file = strdup(name ? name : "<string>"), .err = err, .expand = expand};
    if (!ps.file || !yaml_parser_initialize(&ps.parser)) {
        free((char *)ps.file);
        s_error(err, name, 0, 0, "out of memory");
        return NULL;
    }
    yaml_parser_set_input_string(&ps.parser, (const unsigned char *)text, len);
    cfg_node_t *root = NULL;
    yaml_event_t ev;
    bool ok = false;
    /* stream start, then a document (or none: an empty file) */
    if (s_next(&ps, &ev) < 0)
        goto done;
    yaml_event_delete(&ev);
    if (s_next(&ps, &ev) < 0)
        goto done;
    if (ev.type == YAML_STREAM_END_EVENT) {
        yaml_event_delete(&ev);
        yaml_mark_t start = {0, 0, 0};
        root = s_node(CFG_MAP, ps.file, &start);
        ok = root != NULL;
        goto done;
    }
    yaml_event_delete(&ev);
    if (s_next(&ps, &ev) < 0)
        goto done;
    root = s_parse(&ps, &ev, 0);
    yaml_event_delete(&ev);
    if (!root)
        goto done;
    if (root->type == CFG_NULL) {
        root->type = CFG_MAP; /* a document with nothing in it */
    }
    if (s_next(&ps, &ev) < 0) /* document end */
        goto done;
    yaml_event_delete(&ev);
    if (s_next(&ps, &ev) < 0)
        goto done;
    if (ev.type != YAML_STREAM_END_EVENT) {
        s_error(err, ps.file, (int)ev.start_mark.line + 1, (int)ev.start_mark.column + 1,
                "only one YAML document per file");
        yaml_event_delete(&ev);
        goto done;
    }
    yaml_event_delete(&ev);
    ok = true;
done:
    yaml_parser_delete(&ps.parser);
    if (ok && !(root->files = malloc(sizeof *root->files)))
        ok = false;
    if (!ok) {
        s_free(root);
        free((char *)ps.file);
        return NULL;
    }
    root->files[0] = (char *)ps.file;
    root->nfiles = 1;
    return root;
}

cfg_node_t *cfg_parse(const char *text, size_t len, const char *name, cfg_error_t *err)
{
    return s_parse_text(text, len, name, true, err);
}

cfg_node_t *cfg_parse_literal(const char *text, size_t len, const char *name, cfg_error_t *err)
{
    return s_parse_text(text, len, name, false, err);
}

cfg_node_t *cfg_load(const char *path, cfg_error_t *err)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        int e = errno;
        s_error(err, path, 0, 0, "cannot open: %s", strerror(e));
        errno = e;
        return NULL;
    }
    char *buf = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (len + 4096 > cap) {
            cap = cap ? cap * 2 : 8192;
            char *bigger = realloc(buf, cap);
            if (!bigger) {
                free(buf);
                fclose(f);
                s_error(err, path, 0, 0, "out of memory");
                return NULL;
            }
            buf = bigger;
        }
        size_t n = fread(buf + len, 1, cap - len, f);
        len += n;
        if (n == 0)
            break;
    }
    bool bad = ferror(f);
    fclose(f);
    if (bad) {
        free(buf);
        s_error(err, path, 0, 0, "cannot read");
        return NULL;
    }
    cfg_node_t *root = cfg_parse(buf, len, path, err);
    free(buf);
    return root;
}

/* ---- Lookups -------------------------------------------------------------------------- */

cfg_node_t *cfg_find(cfg_node_t *base, const char *path, cfg_error_t *err)
{
    cfg_node_t *n = base;
    const char *p = path;
    while (n && p && *p) {
        const char *dot = strchr(p, '.');
        size_t len = dot ? (size_t)(dot - p) : strlen(p);
        cfg_node_t *next = NULL;
        if (n->type == CFG_MAP) {
            for (size_t i = 0; i < n->n; i++)
                if (strlen(n->items[i]->key) == len && strncmp(n->items[i]->key, p, len) == 0)
                    next = n->items[i];
        } else if (n->type == CFG_SEQ) {
            char *end;
            unsigned long idx = strtoul(p, &end, 10);
            if (end == p + len && idx < n->n)
                next = n->items[idx];
        } else if (n->type == CFG_SCALAR) {
            cfg_fail(err, n, "'%.*s' cannot be looked up in a plain value", (int)len, p);
            return NULL;
        }
        n = next;
        p = dot ? dot + 1 : NULL;
    }
    return n;
}

bool cfg_scalar_int(const cfg_node_t *node, long long *out)
{
    if (!node || node->type != CFG_SCALAR || node->quoted || !node->text[0])
        return false;
    char *end;
    errno = 0;
    const char *t = node->text;
    bool hex = (t[0] == '0' && (t[1] == 'x' || t[1] == 'X')) ||
               ((t[0] == '-' || t[0] == '+') && t[1] == '0' && (t[2] == 'x' || t[2] == 'X'));
    long long v = strtoll(t, &end, hex ? 16 : 10);
    if (*end || errno)
        return false;
    *out = v;
    return true;
}

bool cfg_scalar_double(const cfg_node_t *node, double *out)
{
    if (!node || node->type != CFG_SCALAR || node->quoted || !node->text[0])
        return false;
    char *end;
    double v = strtod(node->text, &end);
    if (*end || !isfinite(v))
        return false;
    *out = v;
    return true;
}

bool cfg_scalar_bool(const cfg_node_t *node, bool *out)
{
    static const char *const yes[] = {"true", "yes", "on", NULL};
    static const char *const no[] = {"false", "no", "off", NULL};
    if (!node || node->type != CFG_SCALAR || node->quoted)
        return false;
    for (int i = 0; yes[i]; i++) {
        if (strcasecmp(node->text, yes[i]) == 0) {
            *out = true;
            return true;
        }
        if (strcasecmp(node->text, no[i]) == 0) {
            *out = false;
            return true;
        }
    }
    return false;
}

static cfg_node_t *s_value(cfg_node_t *base, const char *path, cfg_error_t *err, bool *failed)
{
    *failed = false;
    if (err)
        err->message[0] = 0;
    cfg_node_t *n = cfg_find(base, path, err);
    if (!n && err && err->message[0])
        *failed = true;
    return n && n->type != CFG_NULL ? n : NULL;
}

int cfg_get_str(cfg_node_t *base, const char *path, const char *def, const char **out,
                cfg_error_t *err)
{
    bool failed;
    cfg_node_t *n = s_value(base, path, err, &failed);
    if (failed)
        return -1;
    if (n && n->type != CFG_SCALAR)
        return cfg_fail(err, n, "%s: expected a text value, found a %s", path,
                        cfg_type_name(n->type));
    *out = n ? n->text : def;
    return 0;
}

int cfg_get_int(cfg_node_t *base, const char *path, long long def, long long *out,
                cfg_error_t *err)
{
    bool failed;
    cfg_node_t *n = s_value(base, path, err, &failed);
    if (failed)
        return -1;
    long long v = def;
    if (n && !cfg_scalar_int(n, &v))
        return cfg_fail(err, n, "%s: expected an integer, found %s%s%s", path,
                        n->type == CFG_SCALAR ? "\"" : "a ",
                        n->type == CFG_SCALAR ? n->text : cfg_type_name(n->type),
                        n->type == CFG_SCALAR ? "\"" : "");
    *out = v;
    return 0;
}

int cfg_get_double(cfg_node_t *base, const char *path, double def, double *out,
                   cfg_error_t *err)
{
    bool failed;
    cfg_node_t *n = s_value(base, path, err, &failed);
    if (failed)
        return -1;
    double v = def;
    if (n && !cfg_scalar_double(n, &v))
        return cfg_fail(err, n, "%s: expected a number, found %s%s%s", path,
                        n->type == CFG_SCALAR ? "\"" : "a ",
                        n->type == CFG_SCALAR ? n->text : cfg_type_name(n->type),
                        n->type == CFG_SCALAR ? "\"" : "");
    *out = v;
    return 0;
}

int cfg_get_bool(cfg_node_t *base, const char *path, bool def, bool *out, cfg_error_t *err)
{
    bool failed;
    cfg_node_t *n = s_value(base, path, err, &failed);
    if (failed)
        return -1;
    bool v = def;
    if (n && !cfg_scalar_bool(n, &v))
        return cfg_fail(err, n, "%s: expected true or false, found %s%s%s", path,
                        n->type == CFG_SCALAR ? "\"" : "a ",
                        n->type == CFG_SCALAR ? n->text : cfg_type_name(n->type),
                        n->type == CFG_SCALAR ? "\"" : "");
    *out = v;
    return 0;
}

int cfg_check(const cfg_node_t *map, const cfg_rule_t *rules, const char *what, cfg_error_t *err)
{
    if (!map || map->type == CFG_NULL)
        return 0;
    if (map->type != CFG_MAP)
        return cfg_fail(err, map, "%s: expected a map, found a %s", what, cfg_type_name(map->type));
    for (size_t i = 0; i < map->n; i++) {
        const cfg_node_t *n = map->items[i];
        const cfg_rule_t *r = rules;
        while (r->key && strcmp(r->key, n->key) != 0)
            r++;
        if (!r->key) {
            char known[400] = "";
            for (const cfg_rule_t *k = rules; k->key; k++)
                snprintf(known + strlen(known), sizeof known - strlen(known), "%s%s",
                         known[0] ? ", " : "", k->key);
            s_error(err, n->file, n->key_line, n->key_col, "unknown key '%s' in %s (known: %s)",
                    n->key, what, known);
            return -1;
        }
        if (r->type != CFG_NULL && n->type != CFG_NULL && n->type != r->type)
            return cfg_fail(err, n, "%s.%s: expected a %s, found a %s", what, n->key,
                            cfg_type_name(r->type), cfg_type_name(n->type));
    }
    return 0;
}

/* Keeps a replaced node with the root (see cfg_merge). */
static void s_retire(cfg_node_t *root, cfg_node_t *n)
{
    cfg_node_t **dead = realloc(root->dead, (root->ndead + 1) * sizeof *dead);
    if (!dead)
        return; /* out of memory: left allocated; a small leak beats a dangling borrow */
    root->dead = dead;
    root->dead[root->ndead++] = n;
}

static void s_merge(cfg_node_t *root, cfg_node_t *base, cfg_node_t *overlay)
{
    for (size_t i = 0; i < overlay->n; i++) {
        cfg_node_t *o = overlay->items[i];
        overlay->items[i] = NULL;
        cfg_node_t *b = NULL;
        size_t at = 0;
        for (size_t k = 0; k < base->n; k++)
            if (strcmp(base->items[k]->key, o->key) == 0) {
                b = base->items[k];
                at = k;
            }
        if (b && b->type == CFG_MAP && o->type == CFG_MAP) {
            s_merge(root, b, o);
            s_free(o);
        } else if (b) {
            free(o->key);
            o->key = b->key;
            b->key = NULL;
            s_retire(root, b);
            base->items[at] = o;
        } else if (s_add(base, o) < 0) {
            s_free(o);
        }
    }
    overlay->n = 0;
}

int cfg_merge(cfg_node_t *root, cfg_node_t *base, cfg_node_t *overlay)
{
    if (!root || !base || !overlay)
        return -1;
    char **files = realloc(root->files, (root->nfiles + overlay->nfiles) * sizeof *files);
    if (!files) {
        cfg_free(&overlay);
        return -1;
    }
    root->files = files;
    /* The overlay's nodes keep pointing at its file name: the root now owns it. */
    for (size_t i = 0; i < overlay->nfiles; i++)
        root->files[root->nfiles++] = overlay->files[i];
    overlay->nfiles = 0;
    if (base->type == CFG_NULL && overlay->type == CFG_MAP) {
        base->type = CFG_MAP;
    }
    if (base->type == CFG_MAP && overlay->type == CFG_MAP)
        s_merge(root, base, overlay);
    cfg_free(&overlay);
    return 0;
}
