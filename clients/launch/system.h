/* lc-launch: the system file, read and checked as a whole before anything starts.
 * docs/config.md describes every key. */
#ifndef LC_LAUNCH_SYSTEM_H
#define LC_LAUNCH_SYSTEM_H

#include "cfg.h"

#include <stdbool.h>

enum { RESTART_ALWAYS, RESTART_ON_FAILURE, RESTART_NEVER };

typedef struct {
    char *name;
    char *program;
    char **args; /* NULL-terminated, without the program */
    char **env;  /* "KEY=value", NULL-terminated */
    char *cwd;   /* absolute */
    int restart;
    int backoff_initial_ms, backoff_max_ms;
    int intensity_restarts, intensity_seconds;
    char **after; /* NULL-terminated */
    int stop_timeout_ms;
    char *log_level; /* NULL: the launcher's */
    char *signature; /* everything above and the config section: what a reload compares */
} spec_t;

typedef struct {
    cfg_node_t *root;
    char *path; /* absolute */
    char *dir;
    char *endpoint;
    char **broker_args; /* options for lc-broker from bus: */
    char *log_dir;      /* per-module log files, or NULL */
    char *exception_log;
    char *log_level;
    int start_timeout_ms, exit_timeout_ms, stop_timeout_ms;
    spec_t *modules; /* in start order: every module after those it waits for */
    int nmodules;
} system_t;

/* Reads and checks the system file. Returns NULL with err filled (file:line:col). */
system_t *system_load(const char *path, cfg_error_t *err);
void system_free(system_t **self_p);
const spec_t *system_find(const system_t *self, const char *name);

#endif
