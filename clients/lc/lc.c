/* lc: the command line of the lc bus. */
#include "../common.h"
#include "lc.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Exit codes, documented in --help and lc(1). */
enum {
    EXIT_OK = 0,
    EXIT_HANDLER = 1,
    EXIT_USAGE = 2,
    EXIT_UNKNOWN = 3,
    EXIT_TIMEOUT = 4,
    EXIT_NOBUS = 5,
    EXIT_REFUSED = 6,
};

static void s_usage(FILE *out)
{
    fprintf(out,
            "Usage: lc [--bus EP] COMMAND [ARGUMENT]...\n"
            "Talk to the modules of an lc bus.\n"
            "\n"
            "Commands:\n"
            "  call MODULE.METHOD [JSON | KEY=VALUE ...]\n"
            "        call a method and print its answer as JSON on stdout. Arguments are one\n"
            "        JSON object or KEY=VALUE words; a VALUE that reads as a JSON number,\n"
            "        true, false, null, array or object is taken as such, anything else as a\n"
            "        string.\n"
            "\n"
            "Options:\n"
            "  -b, --bus EP        the bus endpoint (default: $LC_BUS, else\n"
            "                      ipc://$XDG_RUNTIME_DIR/lc/bus, else ipc:///tmp/lc-$UID/bus)\n"
            "  -t, --timeout MS    how long to wait for the answer (default 5000)\n"
            "  -p, --pretty        indent the JSON output\n"
            "  -h, --help          show this help and exit\n"
            "  -V, --version       show the version and exit\n"
            "\n"
            "Exit status:\n"
            "  0  success\n"
            "  1  the handler returned an error (its code and message on stderr)\n"
            "  2  usage error\n"
            "  3  unknown, not ready or gone module or method\n"
            "  4  timeout: no answer within the deadline\n"
            "  5  bus unreachable: no broker at the endpoint\n"
            "  6  refused by the bus (payload too large, malformed, invalid name)\n"
            "\n"
            "Example: lc call echo.echo text=hello n=3\n"
            "See lc(1).\n");
}

static int s_exit_code(int rc)
{
    switch (rc) {
    case 0:
        return EXIT_OK;
    case LC_EHANDLER:
        return EXIT_HANDLER;
    case LC_ENOMODULE:
    case LC_ENOMETHOD:
    case LC_ENOTREADY:
    case LC_EGONE:
        return EXIT_UNKNOWN;
    case LC_ETIMEDOUT:
        return EXIT_TIMEOUT;
    case LC_ENOBUS:
        return EXIT_NOBUS;
    default:
        return EXIT_REFUSED;
    }
}

static int s_call(const char *bus, int timeout, bool pretty, int argc, char **argv)
{
    if (argc < 1)
        die(EXIT_USAGE, "call needs MODULE.METHOD; try 'lc --help'");
    const char *target = argv[0];
    const char *dot = strchr(target, '.');
    if (!dot || dot == target || !dot[1])
        die(EXIT_USAGE, "'%s' is not MODULE.METHOD", target);
    char err[512];
    json_t *args = args_from_argv(argc - 1, argv + 1, err, sizeof err);
    if (!args)
        die(EXIT_USAGE, "%s", err);

    lc_client_t *client = lc_client_new(NULL, bus);
    if (!client)
        die(EXIT_USAGE, "invalid bus endpoint '%s'", bus ? bus : "(default)");
    json_t *result = NULL;
    int rc = lc_call(client, target, args, &result, timeout);
    if (rc == 0) {
        char *text = json_dumps(result, JSON_ENCODE_ANY | (pretty ? JSON_INDENT(2) : JSON_COMPACT));
        printf("%s\n", text ? text : "null");
        free(text);
    } else if (rc == LC_ENOBUS) {
        fprintf(stderr,
                "%s: no broker answered at %s within %d ms (is lc-broker running? "
                "set LC_BUS or use --bus)\n",
                prog, lc_client_endpoint(client), timeout);
    } else {
        json_t *code = json_object_get(result, "code");
        json_t *msg = json_object_get(result, "message");
        if (rc == LC_EHANDLER)
            fprintf(stderr, "%s: %s failed with code %lld: %s\n", prog, target,
                    (long long)json_integer_value(code), json_string_value(msg));
        else
            fprintf(stderr, "%s: %s: %s: %s\n", prog, target, lc_strerror(rc),
                    msg ? json_string_value(msg) : "");
    }
    json_decref(result);
    lc_client_destroy(&client);
    return s_exit_code(rc);
}

int main(int argc, char **argv)
{
    prog = "lc";
    static const struct option longopts[] = {
        {"bus", required_argument, NULL, 'b'}, {"timeout", required_argument, NULL, 't'},
        {"pretty", no_argument, NULL, 'p'},    {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},   {NULL, 0, NULL, 0},
    };
    const char *bus = NULL;
    int timeout = LC_CALL_TIMEOUT_MS;
    bool pretty = false;
    int opt;
    while ((opt = getopt_long(argc, argv, "b:t:phV", longopts, NULL)) != -1) {
        switch (opt) {
        case 'b':
            bus = optarg;
            break;
        case 't': {
            char *end;
            long v = strtol(optarg, &end, 10);
            if (!*optarg || *end || v <= 0 || v > 86400000)
                die(EXIT_USAGE, "--timeout expects milliseconds from 1 to 86400000, not '%s'",
                    optarg);
            timeout = (int)v;
            break;
        }
        case 'p':
            pretty = true;
            break;
        case 'h':
            s_usage(stdout);
            return EXIT_OK;
        case 'V':
            printf("lc %s\n", LC_VERSION);
            return EXIT_OK;
        default:
            fprintf(stderr, "Try 'lc --help'.\n");
            return EXIT_USAGE;
        }
    }
    if (optind >= argc) {
        s_usage(stderr);
        return EXIT_USAGE;
    }
    const char *cmd = argv[optind];
    if (strcmp(cmd, "call") == 0)
        return s_call(bus, timeout, pretty, argc - optind - 1, argv + optind + 1);
    if (strcmp(cmd, "help") == 0) {
        s_usage(stdout);
        return EXIT_OK;
    }
    die(EXIT_USAGE, "unknown command '%s'; try 'lc --help'", cmd);
}
