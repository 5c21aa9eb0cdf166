/* `make install` gives a module author everything: a tiny module is built outside the
 * tree with `pkg-config --cflags --libs lc` against the installed copy, and serves calls. */
#include "harness.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>

TestSuite(install, .init = h_setup, .fini = h_teardown, .timeout = 120);

static const char *s_module_src =
    "#include <lc.h>\n"
    "static void hello(lc_request_t *req, json_t *args, void *arg)\n"
    "{\n"
    "    (void)arg;\n"
    "    const char *who = json_string_value(json_object_get(args, \"who\"));\n"
    "    lc_reply(req, json_pack(\"{s:s}\", \"greeting\", who ? who : \"nobody\"));\n"
    "}\n"
    "int main(void)\n"
    "{\n"
    "    lc_client_t *c = lc_client_new(\"tiny\", NULL);\n"
    "    lc_method(c, \"hello\", hello, NULL);\n"
    "    int rc = lc_run(c);\n"
    "    lc_client_destroy(&c);\n"
    "    return rc < 0;\n"
    "}\n";

static int s_sh(const char *name, const char *cmd)
{
    proc_t *p = h_spawn(name, "/bin/sh", "-c", cmd, NULL);
    int st = h_wait_exit(p, 100000);
    cr_assert(st != -1, "'%s' did not finish", cmd);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "'%s' failed:\n%s", cmd, h_log(p));
    return 0;
}

Test(install, module_builds_against_installed_copy)
{
    if (LC_SANITIZE)
        cr_skip_test("the installed library of a sanitizer build needs its runtime");
    char prefix[512], cmd[4096], path[600];
    snprintf(prefix, sizeof prefix, "%s/prefix", h_dir);
    snprintf(cmd, sizeof cmd, "make -s -C '%s' install PREFIX='%s' BUILD='%s'", LC_SOURCE_DIR,
             prefix, LC_BUILD_DIR);
    s_sh("install", cmd);

    const char *installed[] = {"bin/lc-broker",
                               "bin/lc",
                               "bin/lc-echo",
                               "lib/liblc.so.0",
                               "lib/liblc.so",
                               "lib/liblc.a",
                               "include/lc.h",
                               "lib/pkgconfig/lc.pc",
                               "share/man/man1/lc.1",
                               "share/man/man1/lc-broker.1",
                               NULL};
    struct stat st;
    for (int i = 0; installed[i]; i++) {
        snprintf(path, sizeof path, "%s/%s", prefix, installed[i]);
        cr_assert(stat(path, &st) == 0, "%s was not installed", installed[i]);
    }

    snprintf(path, sizeof path, "%s/tiny.c", h_dir);
    FILE *f = fopen(path, "w");
    cr_assert(f);
    fputs(s_module_src, f);
    fclose(f);
    snprintf(cmd, sizeof cmd,
             "cd '%s' && export PKG_CONFIG_PATH='%s/lib/pkgconfig' && "
             "cc -Wall -Werror tiny.c -o tiny $(pkg-config --cflags --libs lc) && "
             "objdump -p '%s/lib/liblc.so.0' | grep -q 'SONAME *liblc.so.0'",
             h_dir, prefix, prefix);
    s_sh("build", cmd);

    h_broker(NULL);
    char env_bus[400], env_lib[600], tiny[400];
    snprintf(env_bus, sizeof env_bus, "LC_BUS=%s", h_bus);
    snprintf(env_lib, sizeof env_lib, "LD_LIBRARY_PATH=%s/lib", prefix);
    snprintf(tiny, sizeof tiny, "%s/tiny", h_dir);
    h_spawn("tiny", "/usr/bin/env", env_bus, env_lib, tiny, NULL);
    lc_client_t *c = h_client();
    h_wait_modules(c, "tiny", NULL);
    json_t *res = NULL;
    int rc = lc_call(c, "tiny.hello", json_pack("{s:s}", "who", "world"), &res, 0);
    cr_assert_eq(rc, 0, "%s", lc_strerror(rc));
    cr_assert_str_eq(json_string_value(json_object_get(res, "greeting")), "world");
    json_decref(res);
    lc_client_destroy(&c);
}
