/* The YAML configuration loader: a file becomes a tree of nodes that remember where they
 * came from, read through dotted paths with typed getters. Used by liblc (a module's own
 * section), lc-launch (the system file) and lc-broker. docs/config.md describes the files.
 *
 * Errors never abort: every function that can fail fills a cfg_error_t with the file,
 * line and column (1-based; 0 when unknown) and what was expected. */
#ifndef LC_CFG_H
#define LC_CFG_H

#include <stdbool.h>
#include <stddef.h>

enum { CFG_NULL, CFG_SCALAR, CFG_MAP, CFG_SEQ };

typedef struct cfg_node {
    int type;
    char *text;     /* CFG_SCALAR: the value, environment variables expanded */
    bool quoted;    /* written in quotes: always a string */
    char *key;      /* the key, for an entry of a map */
    int line, col;  /* where the value starts */
    int key_line, key_col; /* where its key starts, for an entry of a map */
    struct cfg_node **items; /* CFG_MAP: entries in file order; CFG_SEQ: elements */
    size_t n, cap;
    const char *file; /* shared by every node of one file */
    char **files;     /* root only: file names it owns (its own, and merged ones) */
    size_t nfiles;
    struct cfg_node **dead; /* root only: nodes replaced by a merge, kept until the tree is */
    size_t ndead;           /* freed, since their strings may still be borrowed */
} cfg_node_t;

typedef struct {
    char file[512];
    int line, col;
    char message[512];
} cfg_error_t;

/* Formats "file:line:col: message" (parts that are unknown are left out). */
const char *cfg_error_text(const cfg_error_t *err, char *buf, size_t size);

/* Parses a YAML file into a tree (the root of the first document; an empty file gives an
 * empty map). ${VAR} and ${VAR:-default} in scalars that are not single-quoted are
 * replaced from the environment; $${ stays a literal "${". Returns NULL and fills err on
 * any error (missing file: errno ENOENT is left set). Caller owns the tree. */
cfg_node_t *cfg_load(const char *path, cfg_error_t *err);
cfg_node_t *cfg_parse(const char *text, size_t len, const char *name, cfg_error_t *err);
/* The same without environment variables: for data written by the program itself. */
cfg_node_t *cfg_parse_literal(const char *text, size_t len, const char *name, cfg_error_t *err);
void cfg_free(cfg_node_t **root_p);

/* The node at a dotted path below base ("outputs.17.initial": map keys; for a sequence a
 * number is an index). "" is base itself. NULL if any part is missing; also when the path
 * runs through a scalar (then err, if not NULL, says where). */
cfg_node_t *cfg_find(cfg_node_t *base, const char *path, cfg_error_t *err);

/* Typed getters: 0 with *out set (the default when missing or null), or -1 with err
 * filled when the value has another type. */
int cfg_get_str(cfg_node_t *base, const char *path, const char *def, const char **out,
                cfg_error_t *err);
int cfg_get_int(cfg_node_t *base, const char *path, long long def, long long *out,
                cfg_error_t *err);
int cfg_get_double(cfg_node_t *base, const char *path, double def, double *out,
                   cfg_error_t *err);
int cfg_get_bool(cfg_node_t *base, const char *path, bool def, bool *out, cfg_error_t *err);

/* Scalar conversions used by the getters (true on success). A quoted value is text: it is
 * never an integer, a number or a boolean. Integers are decimal, or hexadecimal with 0x. */
bool cfg_scalar_int(const cfg_node_t *node, long long *out);
bool cfg_scalar_double(const cfg_node_t *node, double *out);
bool cfg_scalar_bool(const cfg_node_t *node, bool *out);

/* Fills err with node's position and a message. Returns -1. */
int cfg_fail(cfg_error_t *err, const cfg_node_t *node, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* A rule of a schema: a key allowed in a map, the node type it takes (CFG_NULL: any). */
typedef struct {
    const char *key;
    int type;
} cfg_rule_t;

/* Reports the first key of map that no rule names (a typo must not pass silently), or a
 * value of the wrong type. rules end with {NULL, 0}. Returns 0 or -1 with err. */
int cfg_check(const cfg_node_t *map, const cfg_rule_t *rules, const char *what, cfg_error_t *err);

/* Lays the tree overlay (a root, which is freed) over base, a node of the tree root:
 * maps merge key by key, anything else replaces. What is replaced stays allocated until
 * root is freed, so strings read from it remain valid. Returns 0 or -1 (out of memory). */
int cfg_merge(cfg_node_t *root, cfg_node_t *base, cfg_node_t *overlay);

const char *cfg_type_name(int type);

#endif
