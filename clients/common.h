/* Shared by the lc programs: fatal errors and command-line arguments as JSON. */
#ifndef LC_CLIENTS_COMMON_H
#define LC_CLIENTS_COMMON_H

#include "lc.h"

#include <jansson.h>
#include <stdio.h>
#include <stdnoreturn.h>

/* The program's name in messages; set it first thing in main(). */
extern const char *prog;

/* Prints "prog: message" to stderr and exits with status. */
noreturn void die(int status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Builds a call's arguments from the command line: either one JSON object
 * ('{"line": 17}') or key=value words, where a value that parses as a JSON number,
 * true, false, null, object or array is taken as such and anything else as a string.
 * Returns a new object (caller owns it), or NULL after writing the reason into err. */
json_t *args_from_argv(int argc, char **argv, char *err, size_t errlen);

/* The options of a shipped module besides those lc_module_new() took out of argv: --help
 * (usage(stdout)) and --version, and nothing else. Returns -1 when the module goes on, or
 * the status to exit with (the client is then destroyed). */
int module_options(lc_client_t **client, int argc, char **argv, void (*usage)(FILE *out));

#endif
