/* The YAML loader: values, positions, every kind of error with its line and column,
 * environment variables, lookups by dotted path, schema checks and overlays. */
#include "cfg.h"

#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

static cfg_node_t *s_parse_ok(const char *text)
{
    cfg_error_t err = {0};
    cfg_node_t *root = cfg_parse(text, strlen(text), "test.yaml", &err);
    char buf[1200];
    cr_assert(root, "parse failed: %s", cfg_error_text(&err, buf, sizeof buf));
    return root;
}

static cfg_error_t s_parse_fails(const char *text)
{
    cfg_error_t err = {0};
    cfg_node_t *root = cfg_parse(text, strlen(text), "bad.yaml", &err);
    cr_assert_null(root, "'%s' parsed", text);
    cr_assert_str_eq(err.file, "bad.yaml");
    return err;
}

Test(config, values_and_dotted_paths)
{
    cfg_node_t *root = s_parse_ok("gpio:\n"
                                  "  chip: gpiochip0\n"
                                  "  debounce_ms: 10\n"
                                  "  ratio: 0.5\n"
                                  "  enabled: yes\n"
                                  "  label: \"17\"\n"
                                  "  nothing: ~\n"
                                  "  outputs:\n"
                                  "    17: {initial: 1, name: Output17_ForBlinking}\n"
                                  "  lines: [4, 17, 27]\n");
    cfg_node_t *g = cfg_find(root, "gpio", NULL);
    cr_assert(g && g->type == CFG_MAP);
    const char *s;
    long long i;
    double d;
    bool b;
    cfg_error_t err;
    cr_assert_eq(cfg_get_str(g, "chip", "x", &s, &err), 0);
    cr_assert_str_eq(s, "gpiochip0");
    cr_assert_eq(cfg_get_int(g, "debounce_ms", 0, &i, &err), 0);
    cr_assert_eq(i, 10);
    cr_assert_eq(cfg_get_double(g, "ratio", 0, &d, &err), 0);
    cr_assert_float_eq(d, 0.5, 1e-9);
    cr_assert_eq(cfg_get_bool(g, "enabled", false, &b, &err), 0);
    cr_assert(b);
    /* Numeric keys, list indexes. */
    cr_assert_eq(cfg_get_int(g, "outputs.17.initial", 0, &i, &err), 0);
    cr_assert_eq(i, 1);
    cr_assert_eq(cfg_get_int(g, "lines.2", 0, &i, &err), 0);
    cr_assert_eq(i, 27);
    /* Missing and null give the default. */
    cr_assert_eq(cfg_get_int(g, "missing", 42, &i, &err), 0);
    cr_assert_eq(i, 42);
    cr_assert_eq(cfg_get_str(g, "nothing", "dflt", &s, &err), 0);
    cr_assert_str_eq(s, "dflt");
    cr_assert_eq(cfg_get_int(g, "outputs.99.initial", 7, &i, &err), 0);
    cr_assert_eq(i, 7);
    /* A quoted "17" is text; as an integer it still reads. */
    cr_assert_eq(cfg_get_str(g, "label", NULL, &s, &err), 0);
    cr_assert_str_eq(s, "17");
    cfg_free(&root);
    cr_assert_null(root);
}

Test(config, wrong_types_name_file_line_and_column)
{
    cfg_node_t *root = s_parse_ok("a:\n  n: ten\n  m: {x: 1}\n  flag: maybe\n");
    cfg_error_t err;
    long long i;
    bool b;
    const char *s;
    char buf[1200];
    cr_assert_eq(cfg_get_int(root, "a.n", 0, &i, &err), -1);
    cr_assert_str_eq(err.file, "test.yaml");
    cr_assert_eq(err.line, 2);
    cr_assert_eq(err.col, 6);
    cr_assert(strstr(err.message, "expected an integer"), "%s", err.message);
    cr_assert_str_eq(cfg_error_text(&err, buf, sizeof buf),
                     "test.yaml:2:6: a.n: expected an integer, found \"ten\"");
    cr_assert_eq(cfg_get_str(root, "a.m", NULL, &s, &err), -1);
    cr_assert_eq(err.line, 3);
    cr_assert(strstr(err.message, "found a map"), "%s", err.message);
    cr_assert_eq(cfg_get_bool(root, "a.flag", false, &b, &err), -1);
    cr_assert_eq(err.line, 4);
    /* Looking through a plain value is an error too, not a silent default. */
    cr_assert_eq(cfg_get_int(root, "a.n.deeper", 0, &i, &err), -1);
    cr_assert_eq(err.line, 2);
    cfg_free(&root);
}

Test(config, syntax_errors_have_positions)
{
    cfg_error_t e = s_parse_fails("a: 1\nb: [1, 2\n");
    cr_assert_gt(e.line, 0);
    e = s_parse_fails("a: 1\na: 2\n");
    cr_assert_eq(e.line, 2);
    cr_assert_eq(e.col, 1);
    cr_assert(strstr(e.message, "duplicate key 'a'"), "%s", e.message);
    e = s_parse_fails("x: &anchor 1\ny: *anchor\n");
    cr_assert_eq(e.line, 1, "the anchor is refused where it stands");
    cr_assert(strstr(e.message, "anchors"), "%s", e.message);
    e = s_parse_fails("x: 1\ny: *anchor\n");
    cr_assert_eq(e.line, 2);
    cr_assert(strstr(e.message, "aliases"), "%s", e.message);
    e = s_parse_fails("a: 1\n---\nb: 2\n");
    cr_assert(strstr(e.message, "one YAML document"), "%s", e.message);
    e = s_parse_fails("? [1, 2]\n: x\n");
    cr_assert(strstr(e.message, "key must be a plain value"), "%s", e.message);
    e = s_parse_fails("a:\n\tb: 1\n");
    cr_assert_gt(e.line, 0);
}

Test(config, environment_variables)
{
    setenv("LC_TEST_CHIP", "gpiochip3", 1);
    unsetenv("LC_TEST_UNSET");
    cfg_node_t *root = s_parse_ok("chip: ${LC_TEST_CHIP}\n"
                                  "path: /dev/${LC_TEST_CHIP}/x\n"
                                  "dflt: ${LC_TEST_UNSET:-fallback}\n"
                                  "literal: '${LC_TEST_CHIP}'\n"
                                  "escaped: $${LC_TEST_CHIP}\n"
                                  "nested: ${LC_TEST_UNSET:-/dev/${LC_TEST_CHIP}}\n");
    const char *s;
    cr_assert_eq(cfg_get_str(root, "chip", NULL, &s, NULL), 0);
    cr_assert_str_eq(s, "gpiochip3");
    cfg_get_str(root, "path", NULL, &s, NULL);
    cr_assert_str_eq(s, "/dev/gpiochip3/x");
    cfg_get_str(root, "dflt", NULL, &s, NULL);
    cr_assert_str_eq(s, "fallback");
    cfg_get_str(root, "literal", NULL, &s, NULL);
    cr_assert_str_eq(s, "${LC_TEST_CHIP}");
    cfg_get_str(root, "escaped", NULL, &s, NULL);
    cr_assert_str_eq(s, "${LC_TEST_CHIP}");
    cfg_get_str(root, "nested", NULL, &s, NULL);
    cr_assert_str_eq(s, "/dev/gpiochip3");
    cfg_free(&root);
    cfg_error_t e = s_parse_fails("a: 1\nb: ${LC_TEST_UNSET}\n");
    cr_assert_eq(e.line, 2);
    cr_assert(strstr(e.message, "LC_TEST_UNSET is not set"), "%s", e.message);
}

Test(config, schema_reports_unknown_keys)
{
    cfg_node_t *root = s_parse_ok("bus:\n  endpoint: ipc:///x\n  windw: 3\n");
    static const cfg_rule_t rules[] = {{"endpoint", CFG_SCALAR}, {"window", CFG_SCALAR}, {0, 0}};
    cfg_error_t err;
    cr_assert_eq(cfg_check(cfg_find(root, "bus", NULL), rules, "bus", &err), -1);
    cr_assert_eq(err.line, 3);
    cr_assert_eq(err.col, 3);
    cr_assert(strstr(err.message, "unknown key 'windw'"), "%s", err.message);
    cr_assert(strstr(err.message, "window"), "the known keys are listed: %s", err.message);
    cfg_free(&root);
}

Test(config, overlay_merges_maps)
{
    cfg_node_t *root = s_parse_ok("m:\n  config:\n    a: 1\n    sub: {x: 1, y: 2}\n");
    cfg_node_t *over = s_parse_ok("a: 5\nsub: {y: 3}\nnew: [1]\n");
    cfg_node_t *section = cfg_find(root, "m.config", NULL);
    cr_assert_eq(cfg_merge(root, section, over), 0);
    long long i;
    cfg_get_int(section, "a", 0, &i, NULL);
    cr_assert_eq(i, 5);
    cfg_get_int(section, "sub.x", 0, &i, NULL);
    cr_assert_eq(i, 1);
    cfg_get_int(section, "sub.y", 0, &i, NULL);
    cr_assert_eq(i, 3);
    cfg_get_int(section, "new.0", 0, &i, NULL);
    cr_assert_eq(i, 1);
    cfg_free(&root);
}

Test(config, missing_file_and_empty_file)
{
    cfg_error_t err;
    cr_assert_null(cfg_load("/nonexistent/lc.yaml", &err));
    cr_assert(strstr(err.message, "cannot open"), "%s", err.message);
    cfg_node_t *root = s_parse_ok("");
    cr_assert_eq(root->type, CFG_MAP);
    cr_assert_eq(root->n, 0);
    cfg_free(&root);
    root = s_parse_ok("# only a comment\n");
    cr_assert_eq(root->type, CFG_MAP);
    cfg_free(&root);
}
