/* A module's process: lc_module_new's command line and environment, the module's own
 * section of the system file (getters, wrong types, the state file), logging, signals on
 * the loop thread (lc-echo and in-process modules), lc_module_ready, the worker thread
 * limit and tools without a lifecycle. */
#include "harness.h"
#include "wire.h" /* lc_mono_ms() */

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <regex.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

TestSuite(module, .init = h_setup, .fini = h_teardown, .timeout = 60);

/* ---- Helpers ----------------------------------------------------------------------------- */

/* The variables lc_module_new and the configuration read: the runner's own must not leak
 * into a test. */
static void s_clear_env(void)
{
    unsetenv("LC_MODULE");
    unsetenv("LC_BUS");
    unsetenv("LC_CONFIG");
    unsetenv("LC_LOG_LEVEL");
    unsetenv("LC_STATE_DIR");
}

/* A whole file as a string (caller frees), or NULL if it cannot be read. */
static char *s_read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    cr_assert(buf);
    size_t got;
    while ((got = fread(buf + n, 1, cap - n - 1, f)) > 0) {
        n += got;
        if (n + 1 == cap) {
            cap *= 2;
            buf = realloc(buf, cap);
            cr_assert(buf);
        }
    }
    buf[n] = 0;
    fclose(f);
    return buf;
}

/* Writes text to path through a temporary file and a rename: a reader sees the old or the
 * new contents, never a part. */
static void s_write_file(const char *path, const char *text)
{
    char tmp[600];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    cr_assert(f, "cannot write %s", tmp);
    cr_assert_eq(fputs(text, f) >= 0, 1);
    cr_assert_eq(fclose(f), 0);
    cr_assert_eq(rename(tmp, path), 0, "rename %s: %s", tmp, strerror(errno));
}

static bool s_exists(const char *path)
{
    return access(path, F_OK) == 0;
}

/* ---- stderr captured into a file of h_dir -------------------------------------------------- */

typedef struct {
    int saved;
    char path[400];
} capture_t;

static void s_capture_start(capture_t *cap, const char *name)
{
    snprintf(cap->path, sizeof cap->path, "%s/%s.stderr", h_dir, name);
    int fd = open(cap->path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0600);
    cr_assert_geq(fd, 0, "cannot open %s", cap->path);
    fflush(stderr);
    cap->saved = dup(STDERR_FILENO);
    cr_assert_geq(cap->saved, 0);
    cr_assert_geq(dup2(fd, STDERR_FILENO), 0);
    close(fd);
}

/* Restores stderr and returns what was written meanwhile (caller frees). */
static char *s_capture_end(capture_t *cap)
{
    fflush(stderr);
    dup2(cap->saved, STDERR_FILENO);
    close(cap->saved);
    char *text = s_read_file(cap->path);
    cr_assert(text, "cannot read %s", cap->path);
    return text;
}

static int s_count_lines(const char *text)
{
    int n = 0;
    for (const char *p = text; *p; p++)
        n += *p == '\n';
    return n;
}

/* Which levels lc_log writes for this client: bit i set for LC_LOG_i. */
static int s_levels_written(lc_client_t *c, const char *tag)
{
    static const char *const names[] = {"CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG"};
    capture_t cap;
    s_capture_start(&cap, tag);
    for (int l = LC_LOG_CRITICAL; l <= LC_LOG_DEBUG; l++)
        lc_log(c, l, "probe %d", l);
    char *text = s_capture_end(&cap);
    int mask = 0;
    for (int l = LC_LOG_CRITICAL; l <= LC_LOG_DEBUG; l++) {
        char want[64];
        snprintf(want, sizeof want, "%s: probe %d\n", names[l], l);
        if (strstr(text, want))
            mask |= 1 << l;
    }
    free(text);
    return mask;
}

/* The mask s_levels_written gives for a client at `level`. */
#define UP_TO(level) ((1 << ((level) + 1)) - 1)

/* ---- The system file --------------------------------------------------------------------- */

/* modules.m.config starts at line 7: "chip" is on line 7, its value in column 13. */
static void s_write_system(const char *path, int value)
{
    char text[2048];
    snprintf(text, sizeof text,
             "bus:\n"
             "  endpoint: %s\n"
             "modules:\n"
             "  m:\n"
             "    program: x\n"
             "    config:\n"
             "      chip: gpiochip0\n"
             "      outputs:\n"
             "        17: {initial: 1}\n"
             "      ratio: 0.5\n"
             "      on: yes\n"
             "      lines: [4, 17]\n"
             "      value: %d\n"
             "  sig:\n"
             "    program: y\n"
             "    config:\n"
             "      value: %d\n"
             "  nosection:\n"
             "    program: z\n",
             h_bus, value, value);
    s_write_file(path, text);
}

static void s_system_path(char *buf, size_t size)
{
    snprintf(buf, size, "%s/system.yaml", h_dir);
}

/* A client named `name` (not registered: configuration needs no broker). */
static lc_client_t *s_named(const char *name)
{
    lc_client_t *c = lc_client_new(name, h_bus);
    cr_assert(c, "lc_client_new(%s): %s", name, strerror(errno));
    return c;
}

/* Checks the values of the system file as s_write_system wrote them. */
static void s_check_file_values(lc_client_t *c)
{
    cr_assert_str_eq(lc_config_str(c, "chip", "none"), "gpiochip0");
    cr_assert_float_eq(lc_config_double(c, "ratio", 9.0), 0.5, 1e-12);
    cr_assert_eq(lc_config_bool(c, "on", false), true);
    json_t *lines = lc_config_json(c, "lines");
    json_t *want = json_pack("[ii]", 4, 17);
    char *got = lines ? json_dumps(lines, JSON_COMPACT) : NULL;
    cr_assert(json_equal(lines, want), "lines: %s", got ? got : "NULL");
    free(got);
    json_decref(want);
    json_decref(lines);
}

/* ---- 1. lc_module_new: command line and environment ------------------------------------ */

Test(module, options_are_taken_out_of_argv)
{
    s_clear_env();
    char path[300];
    s_system_path(path, sizeof path);
    s_write_system(path, 1);
    char bus[320];
    snprintf(bus, sizeof bus, "--bus=%s", h_bus);
    char *argv[] = {"prog",   "first",    "--name", "m",     "second",
                    bus,      "--config", path,     "third", "--log-level=debug",
                    "fourth", NULL};
    int argc = 11;
    cr_assert_null(argv[argc]);
    lc_client_t *c = lc_module_new("dflt", &argc, argv);
    cr_assert(c, "lc_module_new: %s", strerror(errno));
    /* The other arguments stay, in order, and argv stays NULL-terminated. */
    cr_assert_eq(argc, 5);
    const char *rest[] = {"prog", "first", "second", "third", "fourth"};
    for (int i = 0; i < 5; i++)
        cr_assert_str_eq(argv[i], rest[i], "argv[%d] is %s, not %s", i, argv[i], rest[i]);
    cr_assert_null(argv[5]);
    cr_assert_str_eq(lc_client_name(c), "m");
    cr_assert_str_eq(lc_client_endpoint(c), h_bus);
    cr_assert_str_eq(lc_config_file(c), path);
    cr_assert_eq(s_levels_written(c, "debug"), UP_TO(LC_LOG_DEBUG));
    /* --config was loaded for module m. */
    cr_assert_str_eq(lc_config_str(c, "chip", NULL), "gpiochip0");
    lc_client_destroy(&c);
    cr_assert_null(c);
}

Test(module, option_with_equals_and_separate_value_forms)
{
    s_clear_env();
    char name[] = "--name=eqmod", level[] = "--log-level", lvl[] = "warning";
    char *argv[] = {"prog", name, "x", level, lvl, "--bus", h_bus, NULL};
    int argc = 7;
    lc_client_t *c = lc_module_new("dflt", &argc, argv);
    cr_assert(c, "lc_module_new: %s", strerror(errno));
    cr_assert_eq(argc, 2);
    cr_assert_str_eq(argv[0], "prog");
    cr_assert_str_eq(argv[1], "x");
    cr_assert_null(argv[2]);
    cr_assert_str_eq(lc_client_name(c), "eqmod");
    cr_assert_str_eq(lc_client_endpoint(c), h_bus);
    cr_assert_eq(s_levels_written(c, "warning"), UP_TO(LC_LOG_WARNING));
    lc_client_destroy(&c);
}

Test(module, environment_fallbacks)
{
    s_clear_env();
    char path[300];
    s_system_path(path, sizeof path);
    s_write_system(path, 1);
    setenv("LC_MODULE", "m", 1);
    setenv("LC_BUS", h_bus, 1);
    setenv("LC_CONFIG", path, 1);
    setenv("LC_LOG_LEVEL", "error", 1);
    char *argv[] = {"prog", "keep", NULL};
    int argc = 2;
    lc_client_t *c = lc_module_new("dflt", &argc, argv);
    cr_assert(c, "lc_module_new: %s", strerror(errno));
    cr_assert_eq(argc, 2);
    cr_assert_str_eq(argv[1], "keep");
    cr_assert_str_eq(lc_client_name(c), "m");
    cr_assert_str_eq(lc_client_endpoint(c), h_bus);
    cr_assert_str_eq(lc_config_file(c), path);
    cr_assert_str_eq(lc_config_str(c, "chip", NULL), "gpiochip0");
    cr_assert_eq(s_levels_written(c, "error"), UP_TO(LC_LOG_ERROR));
    lc_client_destroy(&c);

    /* Unset: the default name, the default endpoint, no system file, level info. */
    s_clear_env();
    char *argv2[] = {"prog", NULL};
    argc = 1;
    c = lc_module_new("dflt", &argc, argv2);
    cr_assert(c, "lc_module_new: %s", strerror(errno));
    cr_assert_eq(argc, 1);
    cr_assert_str_eq(lc_client_name(c), "dflt");
    char ep[512];
    cr_assert_eq(lc_endpoint_default(ep, sizeof ep), 0);
    cr_assert_str_eq(lc_client_endpoint(c), ep);
    cr_assert_null(lc_config_file(c));
    cr_assert_eq(s_levels_written(c, "info"), UP_TO(LC_LOG_INFO));
    lc_client_destroy(&c);
}

Test(module, command_line_wins_over_environment)
{
    s_clear_env();
    char path[300], other[300];
    s_system_path(path, sizeof path);
    s_write_system(path, 1);
    snprintf(other, sizeof other, "%s/other.yaml", h_dir);
    s_write_file(other, "modules: {m: {program: x, config: {chip: other}}}\n");
    setenv("LC_MODULE", "envname", 1);
    setenv("LC_BUS", "ipc:///nonexistent/lc/bus", 1);
    setenv("LC_CONFIG", other, 1);
    setenv("LC_LOG_LEVEL", "debug", 1);
    char *argv[] = {"prog",     "--name", "m",           "--bus",    h_bus,
                    "--config", path,     "--log-level", "critical", NULL};
    int argc = 9;
    lc_client_t *c = lc_module_new("dflt", &argc, argv);
    cr_assert(c, "lc_module_new: %s", strerror(errno));
    cr_assert_eq(argc, 1);
    cr_assert_null(argv[1]);
    cr_assert_str_eq(lc_client_name(c), "m");
    cr_assert_str_eq(lc_client_endpoint(c), h_bus);
    cr_assert_str_eq(lc_config_file(c), path);
    cr_assert_str_eq(lc_config_str(c, "chip", NULL), "gpiochip0");
    cr_assert_eq(s_levels_written(c, "critical"), UP_TO(LC_LOG_CRITICAL));
    lc_client_destroy(&c);
}

Test(module, bad_level_missing_value_bad_name_bad_file_give_null)
{
    s_clear_env();
    capture_t cap;

    char *a1[] = {"prog", "--log-level", "loud", NULL};
    int argc = 3;
    s_capture_start(&cap, "badlevel");
    errno = 0;
    lc_client_t *c = lc_module_new("dflt", &argc, a1);
    int e = errno;
    char *text = s_capture_end(&cap);
    cr_assert_null(c);
    cr_assert_eq(e, EINVAL, "errno %d", e);
    cr_assert(strstr(text, "loud"), "no message on stderr: '%s'", text);
    free(text);

    char *a2[] = {"prog", "--log-level=LOUD", NULL};
    argc = 2;
    errno = 0;
    s_capture_start(&cap, "badlevel2");
    c = lc_module_new("dflt", &argc, a2);
    e = errno;
    free(s_capture_end(&cap));
    cr_assert_null(c);
    cr_assert_eq(e, EINVAL);

    /* An option at the end without its value. */
    const char *opts[] = {"--name", "--bus", "--config", "--log-level"};
    for (int i = 0; i < 4; i++) {
        char *a3[] = {"prog", "x", (char *)opts[i], NULL};
        argc = 3;
        errno = 0;
        s_capture_start(&cap, "novalue");
        c = lc_module_new("dflt", &argc, a3);
        e = errno;
        text = s_capture_end(&cap);
        cr_assert_null(c, "%s without a value accepted", opts[i]);
        cr_assert_eq(e, EINVAL, "%s: errno %d", opts[i], e);
        cr_assert(strstr(text, opts[i]), "%s: no message on stderr: '%s'", opts[i], text);
        free(text);
    }

    /* A bad module name. */
    char *a4[] = {"prog", "--name", "9lives", NULL};
    argc = 3;
    errno = 0;
    s_capture_start(&cap, "badname");
    c = lc_module_new("dflt", &argc, a4);
    e = errno;
    text = s_capture_end(&cap);
    cr_assert_null(c);
    cr_assert_eq(e, EINVAL);
    cr_assert_neq(text[0], 0, "no message on stderr");
    free(text);

    /* A system file that does not parse. */
    char bad[300];
    snprintf(bad, sizeof bad, "%s/bad.yaml", h_dir);
    s_write_file(bad, "modules: [1, 2\n");
    char *a5[] = {"prog", "--config", bad, NULL};
    argc = 3;
    errno = 0;
    s_capture_start(&cap, "badfile");
    c = lc_module_new("dflt", &argc, a5);
    e = errno;
    text = s_capture_end(&cap);
    cr_assert_null(c);
    cr_assert_eq(e, EINVAL);
    cr_assert(strstr(text, bad), "the file is not named: '%s'", text);
    free(text);
}

/* lc-echo as a real process takes its name and bus from the environment (as lc-launch
 * sets them), and the log level too. */
Test(module, echo_process_takes_name_and_bus_from_environment)
{
    s_clear_env();
    h_broker(NULL);
    setenv("LC_MODULE", "envecho", 1);
    setenv("LC_BUS", h_bus, 1);
    setenv("LC_LOG_LEVEL", "debug", 1);
    proc_t *p = h_spawn("envecho", BIN("lc-echo"), NULL);
    s_clear_env();
    lc_client_t *c = h_client();
    h_wait_modules(c, "envecho", NULL);
    cr_assert_eq(h_module_int(c, "envecho", "pid"), p->pid);
    json_t *res = NULL;
    cr_assert_eq(lc_call(c, "envecho.echo", json_pack("{s:i}", "x", 1), &res, 0), 0);
    cr_assert_eq(json_integer_value(json_object_get(res, "x")), 1);
    json_decref(res);
    int st = h_stop(p, SIGTERM, 10000);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "status %d\n%s", st, h_log(p));
    lc_client_destroy(&c);
}

/* ---- 2. Configuration --------------------------------------------------------------------- */

Test(module, config_getters_read_the_module_section)
{
    s_clear_env();
    char path[300];
    s_system_path(path, sizeof path);
    s_write_system(path, 1);
    lc_client_t *c = s_named("m");
    cr_assert_eq(lc_config_load(c, path), 0);
    cr_assert_str_eq(lc_config_file(c), path);
    s_check_file_values(c);
    cr_assert_eq(lc_config_int(c, "outputs.17.initial", 9), 1);
    cr_assert_eq(lc_config_int(c, "lines.1", 0), 17);
    json_t *outputs = lc_config_json(c, "outputs");
    json_t *want = json_pack("{s:{s:i}}", "17", "initial", 1);
    cr_assert(json_equal(outputs, want));
    json_decref(outputs);
    json_decref(want);
    /* Missing gives the default. */
    cr_assert_str_eq(lc_config_str(c, "missing", "dflt"), "dflt");
    cr_assert_null(lc_config_str(c, "missing", NULL));
    cr_assert_eq(lc_config_int(c, "outputs.99.initial", 7), 7);
    cr_assert_float_eq(lc_config_double(c, "nothing", 2.5), 2.5, 1e-12);
    cr_assert_eq(lc_config_bool(c, "nothing", true), true);
    cr_assert_null(lc_config_json(c, "nothing"));
    /* "/..." reads from the file's root. */
    cr_assert_str_eq(lc_config_str(c, "/bus.endpoint", NULL), h_bus);
    cr_assert_str_eq(lc_config_str(c, "/modules.m.program", NULL), "x");
    /* Without the slash the same path is below the section: missing. */
    cr_assert_null(lc_config_str(c, "bus.endpoint", NULL));
    cr_assert_eq(lc_config_errors(c), 0);
    lc_client_destroy(&c);
}

Test(module, config_from_lc_config_at_the_first_getter)
{
    s_clear_env();
    char path[300];
    s_system_path(path, sizeof path);
    s_write_system(path, 1);
    setenv("LC_CONFIG", path, 1);
    lc_client_t *c = s_named("m");
    s_check_file_values(c);
    cr_assert_eq(lc_config_int(c, "outputs.17.initial", 9), 1);
    cr_assert_str_eq(lc_config_file(c), path);
    lc_client_destroy(&c);
    /* Another module reads its own section of the same file. */
    c = s_named("sig");
    cr_assert_eq(lc_config_int(c, "value", 0), 1);
    cr_assert_null(lc_config_str(c, "chip", NULL));
    lc_client_destroy(&c);
}

Test(module, config_wrong_type_gives_default_counts_and_logs_position)
{
    s_clear_env();
    char path[300];
    s_system_path(path, sizeof path);
    s_write_system(path, 1);
    lc_client_t *c = s_named("m");
    cr_assert_eq(lc_config_load(c, path), 0);
    capture_t cap;
    s_capture_start(&cap, "wrongtype");
    long long v = lc_config_int(c, "chip", 42);
    char *text = s_capture_end(&cap);
    cr_assert_eq(v, 42);
    cr_assert_eq(lc_config_errors(c), 1);
    char where[400];
    snprintf(where, sizeof where, "%s:7:13", path);
    cr_assert(strstr(text, where), "'%s' is not in the log: '%s'", where, text);
    cr_assert(strstr(text, " m ERROR: "), "not an error line of m: '%s'", text);
    cr_assert_eq(s_count_lines(text), 1, "'%s'", text);
    free(text);
    /* Each getter counts its own. */
    s_capture_start(&cap, "wrongtype2");
    cr_assert_str_eq(lc_config_str(c, "outputs", "d"), "d"); /* a map */
    cr_assert_eq(lc_config_bool(c, "ratio", true), true);    /* 0.5 */
    double d = lc_config_double(c, "chip", 1.5);             /* text */
    cr_assert_float_eq(d, 1.5, 1e-12);
    text = s_capture_end(&cap);
    cr_assert_eq(lc_config_errors(c), 4, "%d errors counted: '%s'", lc_config_errors(c), text);
    snprintf(where, sizeof where, "%s:10:14", path); /* ratio: 0.5 */
    cr_assert(strstr(text, where), "'%s' is not in the log: '%s'", where, text);
    cr_assert_eq(s_count_lines(text), 3, "'%s'", text);
    free(text);
    /* The right type still reads. */
    cr_assert_str_eq(lc_config_str(c, "chip", NULL), "gpiochip0");
    cr_assert_eq(lc_config_errors(c), 4);
    lc_client_destroy(&c);
}

Test(module, config_without_system_file_runs_on_defaults)
{
    s_clear_env();
    lc_client_t *c = s_named("m");
    capture_t cap;
    s_capture_start(&cap, "nofile");
    cr_assert_eq(lc_config_int(c, "outputs.17.initial", 5), 5);
    cr_assert_str_eq(lc_config_str(c, "chip", "d"), "d");
    cr_assert_null(lc_config_json(c, "lines"));
    char *text = s_capture_end(&cap);
    cr_assert(strstr(text, " m WARNING: "), "no warning: '%s'", text);
    cr_assert_eq(s_count_lines(text), 1, "one warning, at the first getter: '%s'", text);
    free(text);
    cr_assert_null(lc_config_file(c));
    cr_assert_eq(lc_config_errors(c), 0);
    /* Changes work for the getters, but cannot be saved without a file. */
    cr_assert_eq(lc_config_set(c, "a.b", json_integer(3)), 0);
    cr_assert_eq(lc_config_int(c, "a.b", 0), 3);
    s_capture_start(&cap, "nosave");
    cr_assert_eq(lc_config_save(c), LC_EINVAL);
    free(s_capture_end(&cap));
    lc_client_destroy(&c);
}

Test(module, config_missing_file_gives_defaults)
{
    s_clear_env();
    char path[300];
    snprintf(path, sizeof path, "%s/nothere.yaml", h_dir);
    lc_client_t *c = s_named("m");
    capture_t cap;
    s_capture_start(&cap, "missing");
    cr_assert_eq(lc_config_load(c, path), 0);
    char *text = s_capture_end(&cap);
    cr_assert(strstr(text, "WARNING"), "no warning: '%s'", text);
    cr_assert(strstr(text, path), "the file is not named: '%s'", text);
    free(text);
    cr_assert_eq(lc_config_int(c, "outputs.17.initial", 5), 5);
    cr_assert_str_eq(lc_config_str(c, "/bus.endpoint", "d"), "d");
    cr_assert_eq(lc_config_errors(c), 0);
    lc_client_destroy(&c);
    /* The same through LC_CONFIG. */
    setenv("LC_CONFIG", path, 1);
    c = s_named("m");
    s_capture_start(&cap, "missing2");
    cr_assert_eq(lc_config_bool(c, "on", false), false);
    free(s_capture_end(&cap));
    lc_client_destroy(&c);
}

Test(module, config_reload_reads_the_changed_file)
{
    s_clear_env();
    char path[300];
    s_system_path(path, sizeof path);
    s_write_system(path, 1);
    lc_client_t *c = s_named("m");
    cr_assert_eq(lc_config_load(c, path), 0);
    cr_assert_eq(lc_config_int(c, "value", 0), 1);
    s_write_system(path, 2);
    cr_assert_eq(lc_config_int(c, "value", 0), 1, "read again before the reload");
    cr_assert_eq(lc_config_reload(c), 0);
    cr_assert_eq(lc_config_int(c, "value", 0), 2);
    cr_assert_str_eq(lc_config_file(c), path);
    /* Changes not saved yet survive a reload. */
    cr_assert_eq(lc_config_set(c, "chip", json_string("gpiochip4")), 0);
    s_write_system(path, 3);
    cr_assert_eq(lc_config_reload(c), 0);
    cr_assert_eq(lc_config_int(c, "value", 0), 3);
    cr_assert_str_eq(lc_config_str(c, "chip", NULL), "gpiochip4");
    lc_client_destroy(&c);
}

/* A file that does not load on a reload leaves the module on what it had. */
Test(module, config_reload_of_a_broken_file_keeps_the_configuration)
{
    s_clear_env();
    char path[300];
    s_system_path(path, sizeof path);
    s_write_system(path, 1);
    lc_client_t *c = s_named("m");
    cr_assert_eq(lc_config_load(c, path), 0);
    cr_assert_eq(lc_config_int(c, "value", 0), 1);
    s_write_file(path, "modules: {m: {config: {value: [2\n");
    capture_t cap;
    s_capture_start(&cap, "broken");
    int rc = lc_config_reload(c);
    char *text = s_capture_end(&cap);
    cr_assert_eq(rc, LC_EINVAL, "reload: %s", lc_strerror(rc));
    cr_assert(strstr(text, " m ERROR: "), "not logged: '%s'", text);
    cr_assert(strstr(text, path), "the file is not named: '%s'", text);
    free(text);
    cr_assert_eq(lc_config_int(c, "value", 0), 1);
    s_check_file_values(c);
    cr_assert_str_eq(lc_config_file(c), path);
    /* Fixed: the next reload reads it. */
    s_write_system(path, 5);
    cr_assert_eq(lc_config_reload(c), 0);
    cr_assert_eq(lc_config_int(c, "value", 0), 5);
    lc_client_destroy(&c);
}

Test(module, config_path_is_relative_to_the_system_file)
{
    s_clear_env();
    char path[300], want[400];
    s_system_path(path, sizeof path);
    s_write_file(path, "modules:\n"
                       "  m:\n"
                       "    program: x\n"
                       "    config:\n"
                       "      cert: certs/m.pem\n"
                       "      abs: /etc/lc/key.pem\n");
    lc_client_t *c = s_named("m");
    cr_assert_eq(lc_config_load(c, path), 0);
    snprintf(want, sizeof want, "%s/certs/m.pem", h_dir);
    cr_assert_str_eq(lc_config_path(c, "cert", NULL), want);
    cr_assert_str_eq(lc_config_path(c, "abs", NULL), "/etc/lc/key.pem");
    snprintf(want, sizeof want, "%s/dflt.pem", h_dir);
    cr_assert_str_eq(lc_config_path(c, "missing", "dflt.pem"), want);
    cr_assert_null(lc_config_path(c, "missing", NULL));
    lc_client_destroy(&c);
    /* Without a system file the value is left as it is. */
    c = s_named("m");
    capture_t cap;
    s_capture_start(&cap, "nofile");
    const char *v = lc_config_path(c, "cert", "rel.pem");
    free(s_capture_end(&cap));
    cr_assert_str_eq(v, "rel.pem");
    lc_client_destroy(&c);
}

/* ---- 3. lc_config_set and lc_config_save ---------------------------------------------- */

Test(module, config_set_save_and_state_file_laid_over)
{
    s_clear_env();
    char path[300], state[400];
    s_system_path(path, sizeof path);
    s_write_system(path, 1);
    snprintf(state, sizeof state, "%s/m.state.json", h_dir);
    char *before = s_read_file(path);
    cr_assert(before);

    lc_client_t *c = s_named("m");
    cr_assert_eq(lc_config_load(c, path), 0);
    cr_assert_eq(lc_config_set(c, "outputs.17.initial", json_integer(0)), 0);
    cr_assert_eq(lc_config_set(c, "new.key", json_string("x")), 0);
    /* The getters see them at once. */
    cr_assert_eq(lc_config_int(c, "outputs.17.initial", 9), 0);
    cr_assert_str_eq(lc_config_str(c, "new.key", NULL), "x");
    s_check_file_values(c);
    cr_assert_not(s_exists(state), "saved before lc_config_save");
    cr_assert_eq(lc_config_save(c), 0);
    lc_client_destroy(&c);

    /* The state file is JSON with the changes; the system file is untouched. */
    json_error_t jerr;
    json_t *saved = json_load_file(state, 0, &jerr);
    cr_assert(saved, "%s: %s", state, jerr.text);
    cr_assert_eq(json_integer_value(json_object_get(
                     json_object_get(json_object_get(saved, "outputs"), "17"), "initial")),
                 0);
    cr_assert(json_is_integer(
        json_object_get(json_object_get(json_object_get(saved, "outputs"), "17"), "initial")));
    cr_assert_str_eq(json_string_value(json_object_get(json_object_get(saved, "new"), "key")), "x");
    cr_assert_null(json_object_get(saved, "chip"), "only the changes are saved");
    json_decref(saved);
    char *after = s_read_file(path);
    cr_assert_str_eq(after, before, "the system file was rewritten");
    free(after);

    /* A new client loading the same file sees the changes over the section. */
    c = s_named("m");
    cr_assert_eq(lc_config_load(c, path), 0);
    cr_assert_eq(lc_config_int(c, "outputs.17.initial", 9), 0);
    cr_assert_str_eq(lc_config_str(c, "new.key", NULL), "x");
    s_check_file_values(c);
    cr_assert_eq(lc_config_int(c, "value", 0), 1);
    cr_assert_eq(lc_config_errors(c), 0);
    /* A second save keeps the first one's changes. */
    cr_assert_eq(lc_config_set(c, "ratio", json_real(0.25)), 0);
    cr_assert_eq(lc_config_save(c), 0);
    lc_client_destroy(&c);
    c = s_named("m");
    cr_assert_eq(lc_config_load(c, path), 0);
    cr_assert_float_eq(lc_config_double(c, "ratio", 9), 0.25, 1e-12);
    cr_assert_eq(lc_config_int(c, "outputs.17.initial", 9), 0);
    cr_assert_str_eq(lc_config_str(c, "new.key", NULL), "x");
    cr_assert_str_eq(lc_config_str(c, "chip", NULL), "gpiochip0");
    lc_client_destroy(&c);
    after = s_read_file(path);
    cr_assert_str_eq(after, before, "the system file was rewritten");
    free(after);
    free(before);
}

Test(module, config_state_dir_moves_the_state_file)
{
    s_clear_env();
    char path[300], dir[320], moved[400], beside[400];
    s_system_path(path, sizeof path);
    s_write_system(path, 1);
    snprintf(dir, sizeof dir, "%s/state", h_dir);
    cr_assert_eq(mkdir(dir, 0700), 0);
    snprintf(moved, sizeof moved, "%s/m.state.json", dir);
    snprintf(beside, sizeof beside, "%s/m.state.json", h_dir);
    setenv("LC_STATE_DIR", dir, 1);
    lc_client_t *c = s_named("m");
    cr_assert_eq(lc_config_load(c, path), 0);
    cr_assert_eq(lc_config_set(c, "value", json_integer(7)), 0);
    cr_assert_eq(lc_config_save(c), 0);
    lc_client_destroy(&c);
    cr_assert(s_exists(moved), "%s missing", moved);
    cr_assert_not(s_exists(beside), "%s written", beside);
    c = s_named("m");
    cr_assert_eq(lc_config_load(c, path), 0);
    cr_assert_eq(lc_config_int(c, "value", 0), 7);
    lc_client_destroy(&c);
    /* Without LC_STATE_DIR the file beside the system file counts: there is none. */
    unsetenv("LC_STATE_DIR");
    c = s_named("m");
    cr_assert_eq(lc_config_load(c, path), 0);
    cr_assert_eq(lc_config_int(c, "value", 0), 1);
    lc_client_destroy(&c);
}

Test(module, config_set_refuses_bad_paths)
{
    s_clear_env();
    char path[300];
    s_system_path(path, sizeof path);
    s_write_system(path, 1);
    lc_client_t *c = s_named("m");
    cr_assert_eq(lc_config_load(c, path), 0);
    cr_assert_eq(lc_config_set(c, "", json_integer(1)), LC_EINVAL);
    cr_assert_eq(lc_config_set(c, "/bus.endpoint", json_string("x")), LC_EINVAL);
    cr_assert_eq(lc_config_set(c, "a", NULL), LC_EINVAL);
    cr_assert_str_eq(lc_config_str(c, "/bus.endpoint", NULL), h_bus);
    lc_client_destroy(&c);
}

/* The state file is laid over the section also after a reload. */
Test(module, config_reload_keeps_saved_changes)
{
    s_clear_env();
    char path[300];
    s_system_path(path, sizeof path);
    s_write_system(path, 1);
    lc_client_t *c = s_named("m");
    cr_assert_eq(lc_config_load(c, path), 0);
    cr_assert_eq(lc_config_set(c, "chip", json_string("gpiochip9")), 0);
    cr_assert_eq(lc_config_save(c), 0);
    s_write_system(path, 3);
    cr_assert_eq(lc_config_reload(c), 0);
    cr_assert_eq(lc_config_int(c, "value", 0), 3);
    cr_assert_str_eq(lc_config_str(c, "chip", NULL), "gpiochip9");
    lc_client_destroy(&c);
}

/* A module listed in the system file without a config section: its saved changes must
 * come back at the next load, and its section must not become the whole file. */
Test(module, config_module_without_section_keeps_saved_changes)
{
    s_clear_env();
    char path[300];
    s_system_path(path, sizeof path);
    s_write_system(path, 1);
    lc_client_t *c = s_named("nosection");
    cr_assert_eq(lc_config_load(c, path), 0);
    cr_assert_null(lc_config_str(c, "bus.endpoint", NULL));
    cr_assert_eq(lc_config_set(c, "speed", json_integer(5)), 0);
    cr_assert_eq(lc_config_int(c, "speed", 0), 5);
    cr_expect_null(lc_config_str(c, "bus.endpoint", NULL),
                   "after lc_config_set the module's section reads the file's root");
    cr_assert_eq(lc_config_save(c), 0);
    lc_client_destroy(&c);
    c = s_named("nosection");
    cr_assert_eq(lc_config_load(c, path), 0);
    cr_expect_eq(lc_config_int(c, "speed", 0), 5, "the saved change was not laid over");
    lc_client_destroy(&c);
}

/* "Strings are borrowed until the next load": lc_config_set is no load. */
Test(module, config_string_stays_valid_after_set)
{
    s_clear_env();
    char path[300];
    s_system_path(path, sizeof path);
    s_write_system(path, 1);
    lc_client_t *c = s_named("m");
    cr_assert_eq(lc_config_load(c, path), 0);
    const char *chip = lc_config_str(c, "chip", NULL);
    cr_assert_str_eq(chip, "gpiochip0");
    cr_assert_eq(lc_config_set(c, "chip", json_string("gpiochip1")), 0);
    cr_assert_str_eq(lc_config_str(c, "chip", NULL), "gpiochip1");
    /* Under AddressSanitizer a freed string is reported here. */
    char copy[32];
    snprintf(copy, sizeof copy, "%s", chip);
    cr_assert_str_eq(copy, "gpiochip0");
    lc_client_destroy(&c);
}

/* ---- 4. Logging -------------------------------------------------------------------------- */

typedef struct {
    regex_t re;
} linefmt_t;

static void s_linefmt_init(linefmt_t *f, const char *module)
{
    char pattern[256];
    snprintf(pattern, sizeof pattern,
             "^([0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2})\\.[0-9]{3} %s "
             "(CRITICAL|ERROR|WARNING|INFO|DEBUG): (.*)$",
             module);
    cr_assert_eq(regcomp(&f->re, pattern, REG_EXTENDED), 0);
}

/* Checks one line (without its newline); returns the level and copies the message. */
static const char *s_check_line(linefmt_t *f, const char *line, char *msg, size_t size)
{
    regmatch_t m[4];
    cr_assert_eq(regexec(&f->re, line, 4, m, 0), 0, "line '%s' is not in the format", line);
    struct tm tm = {0};
    char when[32];
    snprintf(when, sizeof when, "%.*s", (int)(m[1].rm_eo - m[1].rm_so), line + m[1].rm_so);
    cr_assert(strptime(when, "%Y-%m-%d %H:%M:%S", &tm), "bad time '%s'", when);
    tm.tm_isdst = -1;
    double off = difftime(time(NULL), mktime(&tm));
    cr_assert(off > -5 && off < 120, "time %s is %.0f s off", when, off);
    snprintf(msg, size, "%.*s", (int)(m[3].rm_eo - m[3].rm_so), line + m[3].rm_so);
    static const char *const levels[] = {"CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG"};
    for (int l = 0; l < 5; l++)
        if ((int)strlen(levels[l]) == m[2].rm_eo - m[2].rm_so &&
            strncmp(line + m[2].rm_so, levels[l], strlen(levels[l])) == 0)
            return levels[l];
    cr_assert_fail("no level in '%s'", line);
    return NULL;
}

Test(module, log_lines_have_time_module_level_and_message)
{
    s_clear_env();
    lc_client_t *c = s_named("logmod");
    lc_client_set_log_level(c, LC_LOG_DEBUG);
    capture_t cap;
    s_capture_start(&cap, "levels");
    lc_log(c, LC_LOG_CRITICAL, "message %d of %s", 0, "five");
    lc_log(c, LC_LOG_ERROR, "message %d of %s", 1, "five");
    lc_log(c, LC_LOG_WARNING, "message %d of %s", 2, "five");
    lc_log(c, LC_LOG_INFO, "message %d of %s", 3, "five");
    lc_log(c, LC_LOG_DEBUG, "message %d of %s", 4, "five");
    char *text = s_capture_end(&cap);
    linefmt_t f;
    s_linefmt_init(&f, "logmod");
    static const char *const want[] = {"CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG"};
    int n = 0;
    char *save = NULL;
    cr_assert_eq(s_count_lines(text), 5, "'%s'", text);
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char msg[256], expect[64];
        const char *level = s_check_line(&f, line, msg, sizeof msg);
        cr_assert_lt(n, 5);
        cr_assert_str_eq(level, want[n]);
        snprintf(expect, sizeof expect, "message %d of five", n);
        cr_assert_str_eq(msg, expect);
        n++;
    }
    cr_assert_eq(n, 5);
    regfree(&f.re);
    free(text);
    lc_client_destroy(&c);
}

Test(module, log_level_filters_lines)
{
    s_clear_env();
    lc_client_t *c = s_named("logmod");
    cr_assert_eq(s_levels_written(c, "default"), UP_TO(LC_LOG_INFO), "default is info");
    for (int l = LC_LOG_CRITICAL; l <= LC_LOG_DEBUG; l++) {
        lc_client_set_log_level(c, l);
        cr_assert_eq(s_levels_written(c, "set"), UP_TO(l), "level %d", l);
    }
    /* Out of range: ignored. */
    lc_client_set_log_level(c, LC_LOG_WARNING);
    lc_client_set_log_level(c, 99);
    lc_client_set_log_level(c, -1);
    cr_assert_eq(s_levels_written(c, "ignored"), UP_TO(LC_LOG_WARNING));
    lc_client_destroy(&c);
    /* $LC_LOG_LEVEL sets the default of a new client. */
    setenv("LC_LOG_LEVEL", "Error", 1);
    c = s_named("logmod");
    cr_assert_eq(s_levels_written(c, "env"), UP_TO(LC_LOG_ERROR));
    lc_client_destroy(&c);
}

Test(module, log_without_client_and_long_messages)
{
    s_clear_env();
    capture_t cap;
    s_capture_start(&cap, "noclient");
    lc_log(NULL, LC_LOG_WARNING, "no client %d", 1);
    char *text = s_capture_end(&cap);
    cr_assert_eq(s_count_lines(text), 1, "'%s'", text);
    cr_assert(strstr(text, " WARNING: no client 1\n"), "'%s'", text);
    free(text);

    /* A message longer than a line may be is cut, but stays one line. */
    lc_client_t *c = s_named("logmod");
    char *big = malloc(10000);
    memset(big, 'a', 9999);
    big[9999] = 0;
    s_capture_start(&cap, "long");
    lc_log(c, LC_LOG_INFO, "%s", big);
    lc_log(c, LC_LOG_INFO, "after");
    text = s_capture_end(&cap);
    cr_assert_eq(s_count_lines(text), 2);
    cr_assert(strstr(text, " logmod INFO: after\n"), "the next line is glued on");
    free(text);
    free(big);
    lc_client_destroy(&c);
}

typedef struct {
    lc_client_t *c;
    int id;
} logger_t;

static void *s_logger(void *arg)
{
    logger_t *l = arg;
    char pad[301];
    memset(pad, 'a' + l->id, 300);
    pad[300] = 0;
    for (int i = 0; i < 200; i++)
        lc_log(l->c, LC_LOG_INFO, "thread %d line %d %s", l->id, i, pad);
    return NULL;
}

Test(module, log_lines_of_threads_do_not_mix)
{
    s_clear_env();
    lc_client_t *c = s_named("logmod");
    capture_t cap;
    s_capture_start(&cap, "threads");
    pthread_t tids[4];
    logger_t ls[4];
    for (int i = 0; i < 4; i++) {
        ls[i] = (logger_t){c, i};
        cr_assert_eq(pthread_create(&tids[i], NULL, s_logger, &ls[i]), 0);
    }
    for (int i = 0; i < 4; i++)
        pthread_join(tids[i], NULL);
    char *text = s_capture_end(&cap);
    cr_assert_eq(s_count_lines(text), 800);
    linefmt_t f;
    s_linefmt_init(&f, "logmod");
    int next[4] = {0};
    char *save = NULL;
    static char msg[1024];
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        s_check_line(&f, line, msg, sizeof msg);
        int id, i;
        cr_assert_eq(sscanf(msg, "thread %d line %d", &id, &i), 2, "'%s'", msg);
        cr_assert(id >= 0 && id < 4);
        cr_assert_eq(i, next[id], "thread %d: line %d after %d", id, i, next[id] - 1);
        next[id]++;
        const char *pad = strrchr(msg, ' ') + 1;
        cr_assert_eq(strlen(pad), 300);
        cr_assert_eq(strspn(pad, (char[]){(char)('a' + id), 0}), 300, "mixed: '%s'", line);
    }
    regfree(&f.re);
    free(text);
    lc_client_destroy(&c);
}

Test(module, log_level_parse)
{
    cr_assert_eq(lc_log_level_parse("critical"), LC_LOG_CRITICAL);
    cr_assert_eq(lc_log_level_parse("error"), LC_LOG_ERROR);
    cr_assert_eq(lc_log_level_parse("warning"), LC_LOG_WARNING);
    cr_assert_eq(lc_log_level_parse("info"), LC_LOG_INFO);
    cr_assert_eq(lc_log_level_parse("debug"), LC_LOG_DEBUG);
    cr_assert_eq(lc_log_level_parse("CRITICAL"), LC_LOG_CRITICAL);
    cr_assert_eq(lc_log_level_parse("Error"), LC_LOG_ERROR);
    cr_assert_eq(lc_log_level_parse("WaRnInG"), LC_LOG_WARNING);
    cr_assert_eq(lc_log_level_parse("INFO"), LC_LOG_INFO);
    cr_assert_eq(lc_log_level_parse("Debug"), LC_LOG_DEBUG);
    const char *bad[] = {"", "warn", "verbose", "info ", " debug", "errors", "3", "crit"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        cr_assert_eq(lc_log_level_parse(bad[i]), -1, "'%s' parsed", bad[i]);
    cr_assert_eq(lc_log_level_parse(NULL), -1);
}

/* ---- 5. Signals --------------------------------------------------------------------------- */

static void s_echo_stops_on(int sig, const char *signame)
{
    proc_t *broker = h_broker(NULL);
    proc_t *e = h_echo_with("echo1", NULL);
    lc_client_t *c = h_client();
    cr_assert_eq(lc_module_ready(c, "echo1"), 1);
    cr_assert_eq(kill(e->pid, sig), 0);
    int st = h_wait_exit(e, 10000);
    cr_assert_neq(st, -1, "lc-echo did not exit on %s\n%s", signame, h_log(e));
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "%s: status %d\n%s", signame, st, h_log(e));
    /* broker.list loses it. */
    int64_t deadline = lc_mono_ms() + 10000;
    for (;;) {
        json_t *m = h_module(c, "echo1");
        if (!m)
            break;
        json_decref(m);
        cr_assert(lc_mono_ms() < deadline, "echo1 is still listed\n%s", h_log(broker));
    }
    cr_assert_eq(lc_module_ready(c, "echo1"), 0);
    char bye[128];
    snprintf(bye, sizeof bye, "module echo1 (pid %d) said goodbye", (int)e->pid);
    cr_assert(strstr(h_log(broker), bye), "the broker did not hear goodbye:\n%s", h_log(broker));
    char said[64];
    snprintf(said, sizeof said, "echo1 INFO: %s: shutting down", signame);
    cr_assert(strstr(h_log(e), said), "lc-echo's log:\n%s", h_log(e));
    lc_client_destroy(&c);
}

Test(module, sigterm_shuts_echo_down_through_liblc)
{
    s_clear_env();
    s_echo_stops_on(SIGTERM, "SIGTERM");
}

/* SIGHUP to a module process with a system file: it reads the file again and runs on. */
Test(module, sighup_reloads_echo_and_it_runs_on)
{
    s_clear_env();
    char path[300];
    s_system_path(path, sizeof path);
    s_write_system(path, 1);
    h_broker(NULL);
    proc_t *e = h_echo_with("m", "--config", path, NULL);
    lc_client_t *c = h_client();
    cr_assert_eq(kill(e->pid, SIGHUP), 0);
    int64_t deadline = lc_mono_ms() + 5000;
    for (;;) {
        json_t *res = NULL;
        int rc = lc_call(c, "m.echo", json_pack("{s:i}", "x", 1), &res, 5000);
        json_decref(res);
        cr_assert_eq(rc, 0, "m.echo after SIGHUP: %s\n%s", lc_strerror(rc), h_log(e));
        if (strstr(h_log(e), "m INFO: SIGHUP: reloading"))
            break;
        cr_assert(lc_mono_ms() < deadline, "no reload in the log:\n%s", h_log(e));
    }
    cr_assert_eq(h_wait_exit(e, 0), -1, "lc-echo exited on SIGHUP");
    cr_assert_eq(lc_module_ready(c, "m"), 1);
    int st = h_stop(e, SIGTERM, 10000);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "status %d\n%s", st, h_log(e));
    lc_client_destroy(&c);
}

Test(module, sigint_shuts_echo_down_through_liblc)
{
    s_clear_env();
    s_echo_stops_on(SIGINT, "SIGINT");
}

/* ---- An in-process module for signals ---------------------------------------------------- */

static pthread_mutex_t s_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t s_changed = PTHREAD_COND_INITIALIZER;

typedef struct {
    char name[16];
    char path[300];
    bool replace_term; /* take SIGTERM with an own callback that calls lc_stop */
    bool hold_startup; /* the startup hook waits until release_startup */
    pthread_t tid;
    lc_client_t *client; /* set before lc_run */
    int on_signal_rc, hook_rc, term_rc, usr2_rc, kill_rc;
    int run_rc;
    /* Guarded by s_lock. */
    int in_startup, release_startup;
    int active;
    int usr1, usr1_signum;
    bool usr1_on_loop;
    int usr2;
    bool usr2_on_loop;
    int reloads;
    bool reload_on_loop;
    long long reload_value;
    int terms;
    int deactivates, shutdowns;
    int done;
} sigmod_t;

static void s_bump(int *field)
{
    pthread_mutex_lock(&s_lock);
    (*field)++;
    pthread_cond_broadcast(&s_changed);
    pthread_mutex_unlock(&s_lock);
}

/* Waits until *field >= n, at most ms milliseconds. */
static bool s_wait_count(int *field, int n, int ms)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += ms / 1000;
    until.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&s_lock);
    bool ok = true;
    while (*field < n && ok)
        ok = pthread_cond_timedwait(&s_changed, &s_lock, &until) == 0 || *field >= n;
    ok = *field >= n;
    pthread_mutex_unlock(&s_lock);
    return ok;
}

static int s_get(int *field)
{
    pthread_mutex_lock(&s_lock);
    int v = *field;
    pthread_mutex_unlock(&s_lock);
    return v;
}

static void s_on_usr1(lc_client_t *c, int signum, void *arg)
{
    (void)c;
    sigmod_t *m = arg;
    pthread_mutex_lock(&s_lock);
    m->usr1_signum = signum;
    m->usr1_on_loop = pthread_equal(pthread_self(), m->tid);
    pthread_mutex_unlock(&s_lock);
    s_bump(&m->usr1);
}

static void s_on_usr2(lc_client_t *c, int signum, void *arg)
{
    (void)c;
    sigmod_t *m = arg;
    pthread_mutex_lock(&s_lock);
    m->usr2_on_loop = pthread_equal(pthread_self(), m->tid) && signum == SIGUSR2;
    pthread_mutex_unlock(&s_lock);
    s_bump(&m->usr2);
}

static void s_on_term(lc_client_t *c, int signum, void *arg)
{
    sigmod_t *m = arg;
    if (signum == SIGTERM)
        s_bump(&m->terms);
    lc_stop(c);
}

static void s_on_reload(lc_client_t *c, void *arg)
{
    sigmod_t *m = arg;
    pthread_mutex_lock(&s_lock);
    m->reload_on_loop = pthread_equal(pthread_self(), m->tid);
    m->reload_value = lc_config_int(c, "value", -1);
    pthread_mutex_unlock(&s_lock);
    s_bump(&m->reloads);
}

static void s_on_startup(lc_client_t *c, void *arg)
{
    (void)c;
    sigmod_t *m = arg;
    s_bump(&m->in_startup);
    if (m->hold_startup)
        s_wait_count(&m->release_startup, 1, 30000);
}

static void s_on_active(lc_client_t *c, void *arg)
{
    sigmod_t *m = arg;
    /* Taken after the loop runs: the signalfd is made again. */
    m->usr2_rc = lc_on_signal(c, SIGUSR2, s_on_usr2, m);
    s_bump(&m->active);
}

static void s_on_deactivate(lc_client_t *c, void *arg)
{
    (void)c;
    s_bump(&((sigmod_t *)arg)->deactivates);
}

static void s_on_shutdown(lc_client_t *c, void *arg)
{
    (void)c;
    s_bump(&((sigmod_t *)arg)->shutdowns);
}

static void s_value(lc_request_t *req, json_t *args, void *arg)
{
    (void)args;
    (void)arg;
    lc_reply(req, json_pack("{s:I}", "value",
                            (json_int_t)lc_config_int(lc_request_client(req), "value", -1)));
}

static void *s_sig_module(void *arg)
{
    sigmod_t *m = arg;
    lc_client_t *c = lc_client_new(m->name, h_bus);
    if (!c) {
        m->run_rc = -errno;
        s_bump(&m->done);
        return NULL;
    }
    if (m->path[0])
        lc_config_load(c, m->path);
    m->on_signal_rc = lc_on_signal(c, SIGUSR1, s_on_usr1, m);
    m->kill_rc = lc_on_signal(c, SIGKILL, s_on_usr1, m);
    m->hook_rc = lc_hook(c, LC_HOOK_RELOAD, s_on_reload, m);
    if (m->replace_term)
        m->term_rc = lc_on_signal(c, SIGTERM, s_on_term, m);
    lc_hook(c, LC_HOOK_STARTUP, s_on_startup, m);
    lc_hook(c, LC_HOOK_ACTIVE, s_on_active, m);
    lc_hook(c, LC_HOOK_DEACTIVATE, s_on_deactivate, m);
    lc_hook(c, LC_HOOK_SHUTDOWN, s_on_shutdown, m);
    lc_method(c, "value", s_value, m);
    pthread_mutex_lock(&s_lock);
    m->client = c;
    pthread_mutex_unlock(&s_lock);
    m->run_rc = lc_run(c);
    lc_client_destroy(&c);
    s_bump(&m->done);
    return NULL;
}

static void s_sig_start(sigmod_t *m)
{
    cr_assert_eq(pthread_create(&m->tid, NULL, s_sig_module, m), 0);
}

/* Waits for the module's thread to end (it was told to stop). */
static void s_sig_join(sigmod_t *m)
{
    cr_assert(s_wait_count(&m->done, 1, 15000), "%s did not stop", m->name);
    pthread_join(m->tid, NULL);
}

static long long s_call_value(lc_client_t *c, const char *module)
{
    char target[64];
    snprintf(target, sizeof target, "%s.value", module);
    json_t *res = NULL;
    int rc = lc_call(c, target, NULL, &res, 5000);
    cr_assert_eq(rc, 0, "%s: %s", target, lc_strerror(rc));
    long long v = json_integer_value(json_object_get(res, "value"));
    json_decref(res);
    return v;
}

Test(module, signals_run_callbacks_on_the_loop_thread)
{
    s_clear_env();
    char path[300];
    s_system_path(path, sizeof path);
    s_write_system(path, 1);
    h_broker(NULL);
    lc_client_t *c = h_client();
    static sigmod_t m = {.name = "sig"};
    snprintf(m.path, sizeof m.path, "%s", path);
    s_sig_start(&m);
    /* Active: lc_run has taken the signals (they are blocked in its thread). */
    cr_assert(s_wait_count(&m.active, 1, 10000), "sig was not activated");
    cr_assert_eq(m.on_signal_rc, 0, "lc_on_signal(SIGUSR1): %s", lc_strerror(m.on_signal_rc));
    cr_assert_eq(m.kill_rc, LC_EINVAL, "SIGKILL cannot be taken");
    cr_assert_eq(m.usr2_rc, 0, "lc_on_signal(SIGUSR2) from a hook: %s", lc_strerror(m.usr2_rc));
    /* Loop thread only. */
    cr_assert_eq(lc_on_signal(m.client, SIGUSR2, s_on_usr2, &m), LC_EINVAL);
    cr_assert_eq(s_call_value(c, "sig"), 1);

    cr_assert_eq(pthread_kill(m.tid, SIGUSR1), 0);
    cr_assert(s_wait_count(&m.usr1, 1, 5000), "the SIGUSR1 callback did not run");
    pthread_mutex_lock(&s_lock);
    cr_assert_eq(m.usr1_signum, SIGUSR1);
    cr_assert(m.usr1_on_loop, "the SIGUSR1 callback ran on another thread");
    pthread_mutex_unlock(&s_lock);

    cr_assert_eq(pthread_kill(m.tid, SIGUSR2), 0);
    cr_assert(s_wait_count(&m.usr2, 1, 5000), "the SIGUSR2 callback did not run");
    cr_assert(m.usr2_on_loop, "the SIGUSR2 callback ran on another thread");
    cr_assert_eq(s_get(&m.usr1), 1, "SIGUSR1 callback ran again");

    /* SIGHUP: the changed file is read again, then the reload hook runs. */
    s_write_system(path, 2);
    cr_assert_eq(pthread_kill(m.tid, SIGHUP), 0);
    /* The module's own getter sees the new value (asked until it does, with a deadline). */
    int64_t deadline = lc_mono_ms() + 5000;
    while (s_call_value(c, "sig") != 2)
        cr_assert(lc_mono_ms() < deadline, "the configuration was not read again on SIGHUP");
    cr_expect_eq(m.hook_rc, 0, "lc_hook(LC_HOOK_RELOAD): %s", lc_strerror(m.hook_rc));
    bool reloaded = s_wait_count(&m.reloads, 1, 2000);
    cr_expect(reloaded, "the LC_HOOK_RELOAD hook did not run after SIGHUP");
    if (reloaded) {
        pthread_mutex_lock(&s_lock);
        cr_expect(m.reload_on_loop, "the reload hook ran on another thread");
        cr_expect_eq(m.reload_value, 2, "the reload hook saw %lld", m.reload_value);
        pthread_mutex_unlock(&s_lock);
    }
    cr_assert_eq(s_get(&m.shutdowns), 0);
    cr_assert_eq(lc_module_ready(c, "sig"), 1, "still running after SIGHUP");

    /* SIGTERM: the module shuts down through its hooks; lc_run returns 0. */
    cr_assert_eq(pthread_kill(m.tid, SIGTERM), 0);
    s_sig_join(&m);
    cr_assert_eq(m.run_rc, 0, "lc_run: %s", lc_strerror(m.run_rc));
    cr_assert_eq(m.deactivates, 1);
    cr_assert_eq(m.shutdowns, 1);
    cr_assert_eq(lc_module_ready(c, "sig"), 0);
    lc_client_destroy(&c);
}

Test(module, on_signal_replaces_the_sigterm_default)
{
    s_clear_env();
    h_broker(NULL);
    lc_client_t *c = h_client();
    static sigmod_t m = {.name = "sigrep", .replace_term = true};
    s_sig_start(&m);
    cr_assert(s_wait_count(&m.active, 1, 10000), "sigrep was not activated");
    cr_assert_eq(m.term_rc, 0);
    cr_assert_eq(pthread_kill(m.tid, SIGTERM), 0);
    s_sig_join(&m);
    cr_assert_eq(m.terms, 1, "the own SIGTERM callback did not run");
    cr_assert_eq(m.run_rc, 0);
    /* Not the default: no shutdown through the hooks. */
    cr_assert_eq(m.shutdowns, 0);
    cr_assert_eq(m.deactivates, 0);
    lc_client_destroy(&c);
}

/* Without a system file, SIGHUP still reaches the hook, and the module keeps running on
 * its defaults. */
Test(module, sighup_without_system_file)
{
    s_clear_env();
    h_broker(NULL);
    lc_client_t *c = h_client();
    static sigmod_t m = {.name = "nofile"};
    s_sig_start(&m);
    cr_assert(s_wait_count(&m.active, 1, 10000), "nofile was not activated");
    cr_assert_eq(s_call_value(c, "nofile"), -1);
    cr_assert_eq(pthread_kill(m.tid, SIGHUP), 0);
    cr_expect(s_wait_count(&m.reloads, 1, 5000), "the reload hook did not run (lc_hook: %s)",
              lc_strerror(m.hook_rc));
    cr_assert_eq(s_call_value(c, "nofile"), -1);
    cr_assert_eq(lc_module_ready(c, "nofile"), 1);
    cr_assert_eq(pthread_kill(m.tid, SIGINT), 0);
    s_sig_join(&m);
    cr_assert_eq(m.run_rc, 0);
    cr_assert_eq(m.shutdowns, 1);
    lc_client_destroy(&c);
}

/* ---- 6. lc_module_ready ----------------------------------------------------------------- */

Test(module, module_ready_for_registered_ready_modules_only)
{
    s_clear_env();
    h_broker(NULL);
    h_echo_with("e1", NULL);
    lc_client_t *c = h_client();
    cr_assert_eq(lc_module_ready(c, "e1"), 1);
    cr_assert_eq(lc_module_ready(c, "nobody"), 0);
    cr_assert_eq(lc_module_ready(c, "broker"), 0, "the broker is no module");
    cr_assert_eq(lc_module_ready(c, "9bad"), LC_EINVAL);
    cr_assert_eq(lc_module_ready(c, ""), LC_EINVAL);
    cr_assert_eq(lc_module_ready(c, NULL), LC_EINVAL);

    /* Registered but still in its startup hook: inactive, not ready. */
    static sigmod_t m = {.name = "slow", .hold_startup = true};
    s_sig_start(&m);
    cr_assert(s_wait_count(&m.in_startup, 1, 10000), "slow did not start");
    json_t *listed = h_module(c, "slow");
    cr_assert(listed, "slow is not listed while starting");
    json_decref(listed);
    cr_assert_eq(lc_module_ready(c, "slow"), 0);
    s_bump(&m.release_startup);
    int64_t deadline = lc_mono_ms() + 5000;
    while (lc_module_ready(c, "slow") != 1)
        cr_assert(lc_mono_ms() < deadline, "slow did not become ready");
    pthread_kill(m.tid, SIGTERM);
    s_sig_join(&m);
    cr_assert_eq(lc_module_ready(c, "slow"), 0);
    lc_client_destroy(&c);
}

Test(module, module_ready_without_broker)
{
    s_clear_env();
    lc_client_t *c = lc_client_new(NULL, h_bus);
    cr_assert(c);
    lc_client_set_timeout(c, 300);
    int rc = lc_module_ready(c, "e1");
    cr_assert(rc == LC_ENOBUS || rc == LC_ETIMEDOUT, "no broker: %d (%s)", rc, lc_strerror(rc));
    lc_client_destroy(&c);
}

/* ---- 7. The worker thread limit ---------------------------------------------------------- */

static int s_worker_ended;

static void s_waiting_worker(lc_thread_t *t, void *arg)
{
    (void)arg;
    struct pollfd p = {lc_thread_fd(t), POLLIN, 0};
    while (!lc_thread_stopping(t))
        poll(&p, 1, -1);
    s_bump(&s_worker_ended);
}

static int s_worker_returned;

static void s_returning_worker(lc_thread_t *t, void *arg)
{
    (void)t;
    (void)arg;
    s_bump(&s_worker_returned);
}

Test(module, thread_limit_refuses_with_ebusy)
{
    s_clear_env();
    lc_client_t *c = s_named("w");
    lc_client_set_max_threads(c, 2);
    lc_thread_t *a = lc_thread_start(c, LC_STATE_ACTIVE, s_waiting_worker, NULL);
    lc_thread_t *b = lc_thread_start(c, LC_STATE_PASSIVE, s_waiting_worker, NULL);
    cr_assert(a && b, "the first two were refused: %s", strerror(errno));
    cr_assert_eq(lc_thread_client(a), c);
    capture_t cap;
    s_capture_start(&cap, "limit");
    errno = 0;
    lc_thread_t *third = lc_thread_start(c, LC_STATE_ACTIVE, s_waiting_worker, NULL);
    int e = errno;
    char *text = s_capture_end(&cap);
    cr_assert_null(third);
    cr_assert_eq(e, EBUSY, "errno %d (%s)", e, strerror(e));
    cr_assert(strstr(text, " w ERROR: "), "not logged: '%s'", text);
    free(text);
    /* Not from another thread, nor with a bad phase. */
    cr_assert_null(lc_thread_start(c, LC_STATE_INACTIVE, s_waiting_worker, NULL));
    cr_assert_eq(errno, EINVAL);
    /* lc_client_destroy stops and joins them. */
    lc_client_destroy(&c);
    cr_assert_eq(s_get(&s_worker_ended), 2);
}

Test(module, thread_limit_default_is_ten)
{
    s_clear_env();
    lc_client_t *c = s_named("w");
    for (int i = 0; i < 10; i++)
        cr_assert(lc_thread_start(c, LC_STATE_ACTIVE, s_waiting_worker, NULL), "thread %d: %s", i,
                  strerror(errno));
    capture_t cap;
    s_capture_start(&cap, "limit10");
    errno = 0;
    cr_assert_null(lc_thread_start(c, LC_STATE_ACTIVE, s_waiting_worker, NULL));
    int e = errno;
    free(s_capture_end(&cap));
    cr_assert_eq(e, EBUSY);
    lc_client_destroy(&c);
    cr_assert_eq(s_get(&s_worker_ended), 10);
}

/* A thread that returned by itself stays recorded, and counts, until its phase ends
 * (docs/architecture.md); lc_client_destroy() still joins it. */
Test(module, thread_that_returned_counts_until_its_phase_ends)
{
    s_clear_env();
    lc_client_t *c = s_named("w");
    lc_client_set_max_threads(c, 1);
    cr_assert(lc_thread_start(c, LC_STATE_ACTIVE, s_returning_worker, NULL));
    cr_assert(s_wait_count(&s_worker_returned, 1, 5000));
    capture_t cap;
    s_capture_start(&cap, "slot");
    errno = 0;
    lc_thread_t *t = lc_thread_start(c, LC_STATE_PASSIVE, s_waiting_worker, NULL);
    int e = errno;
    free(s_capture_end(&cap));
    cr_assert_null(t, "the returned thread no longer counts");
    cr_assert_eq(e, EBUSY);
    lc_client_destroy(&c);
}

/* ---- 8. Tools and the lifecycle ----------------------------------------------------------- */

Test(module, tool_is_active_at_once_and_emits_without_hooks)
{
    s_clear_env();
    h_broker(NULL);
    h_echo_with("rec", "--listen", "tool_ping", NULL);
    lc_client_t *t = lc_client_new("tool", h_bus);
    cr_assert(t);
    lc_client_set_lifecycle(t, false);
    cr_assert_eq(lc_state(t), 0, "a state before registration");
    int rc = lc_connect(t, 10000);
    cr_assert_eq(rc, 0, "lc_connect: %s", lc_strerror(rc));
    cr_assert_eq(lc_state(t), LC_STATE_ACTIVE);
    json_t *info = NULL;
    rc = lc_emit_wait(t, "tool_ping", json_pack("{s:i}", "n", 1), 0, 5000, &info);
    cr_assert_eq(rc, 0, "lc_emit_wait: %s", lc_strerror(rc));
    json_decref(info);
    cr_assert_eq(lc_emit(t, "tool_ping", json_pack("{s:i}", "n", 2), 0), 0);
    lc_client_t *c = h_client();
    json_t *rec = h_wait_recorded(c, "rec", 2, 5000);
    for (size_t i = 0; i < 2; i++) {
        json_t *e = json_array_get(rec, i);
        cr_assert_str_eq(json_string_value(json_object_get(e, "source")), "tool");
        cr_assert_str_eq(json_string_value(json_object_get(e, "name")), "tool_ping");
        cr_assert_eq(json_integer_value(json_object_get(json_object_get(e, "args"), "n")),
                     (json_int_t)i + 1);
    }
    json_decref(rec);
    cr_assert_eq(lc_module_ready(c, "tool"), 1);
    lc_client_destroy(&t);
    lc_client_destroy(&c);
}

static int s_life_active;

static void s_life_on_active(lc_client_t *c, void *arg)
{
    (void)c;
    (void)arg;
    s_bump(&s_life_active);
}

Test(module, lifecycle_module_refused_before_activation)
{
    s_clear_env();
    h_broker(NULL);
    h_echo_with("rec", "--listen", "life_ping", NULL);
    lc_client_t *l = lc_client_new("life", h_bus);
    cr_assert(l);
    lc_hook(l, LC_HOOK_ACTIVE, s_life_on_active, NULL);
    capture_t cap;
    s_capture_start(&cap, "refused");
    /* Not registered yet. */
    int emit0 = lc_emit(l, "life_ping", NULL, 0);
    int task0 = lc_enqueue(l, "rec.record", NULL, 0);
    int state0 = lc_state(l);
    int conn = lc_connect(l, 10000);
    /* Registered, passive: still refused outside a handler. */
    int state1 = lc_state(l);
    int emit1 = lc_emit(l, "life_ping", NULL, 0);
    char *text = s_capture_end(&cap);
    cr_assert_eq(emit0, LC_ENOTACTIVE, "emit before registration: %s", lc_strerror(emit0));
    cr_assert_eq(task0, LC_ENOTACTIVE, "task before registration: %s", lc_strerror(task0));
    cr_assert_eq(state0, 0);
    cr_assert_eq(conn, 0, "lc_connect: %s", lc_strerror(conn));
    cr_assert_neq(state1, LC_STATE_ACTIVE);
    cr_assert_eq(emit1, LC_ENOTACTIVE, "emit while %d: %s", state1, lc_strerror(emit1));
    cr_assert(strstr(text, " life ERROR: "), "the refusal is not logged: '%s'", text);
    free(text);
    /* Once the broker activates it, it may. */
    h_dispatch_until(l, &s_life_active, 1, 10000, "activation");
    cr_assert_eq(lc_state(l), LC_STATE_ACTIVE);
    cr_assert_eq(lc_emit(l, "life_ping", json_pack("{s:i}", "n", 3), 0), 0);
    lc_client_t *c = h_client();
    json_t *rec = h_wait_recorded(c, "rec", 1, 5000);
    cr_assert_eq(json_array_size(rec), 1, "the refused events were sent");
    cr_assert_str_eq(json_string_value(json_object_get(json_array_get(rec, 0), "source")), "life");
    json_decref(rec);
    lc_client_destroy(&l);
    lc_client_destroy(&c);
}
