#!/usr/bin/python3
"""Strict checker of a Prometheus text exposition (format 0.0.4), for lc-prometheus' tests.

Usage: check_metrics.py FILE   (FILE '-' reads standard input)

The text must pass the Prometheus client library's own parser
(prometheus_client.parser.text_string_to_metric_families) and these checks of our own:
every line is a HELP, a TYPE or a sample; every family has one HELP and one TYPE before
its samples and its lines together; names and label names are valid; label values are
well escaped; no series appears twice; counters are not negative; histogram buckets come
in increasing order of le, are cumulative, end with +Inf, and +Inf equals _count.

On success prints one JSON object, each sample as 'name{a="x",b="y"}' (labels sorted, no
braces without labels) -> its value, and exits 0. Otherwise prints every problem with its
line number to standard error and exits 1.
"""

import json
import math
import re
import sys

from prometheus_client.parser import text_string_to_metric_families

METRIC_RE = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
LABEL_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
TYPES = ("counter", "gauge", "histogram", "summary", "untyped")
SUFFIXES = {
    "counter": ("", "_total"),
    "gauge": ("",),
    "untyped": ("",),
    "histogram": ("_bucket", "_sum", "_count"),
    "summary": ("", "_sum", "_count"),
}


class Problems(Exception):
    pass


def parse_value(text):
    """A sample value as Prometheus writes it (Go's float syntax)."""
    special = {"NaN": math.nan, "+Inf": math.inf, "-Inf": -math.inf, "Inf": math.inf}
    if text in special:
        return special[text]
    if not re.match(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$", text):
        raise ValueError("'%s' is not a number" % text)
    return float(text)


def parse_labels(text, pos):
    """Labels from text[pos] == '{' to the closing '}': returns (dict, position after)."""
    labels = {}
    pos += 1
    while True:
        if text[pos:pos + 1] == "}":
            return labels, pos + 1
        m = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*").match(text, pos)
        if not m:
            raise ValueError("bad label name at column %d" % (pos + 1))
        name = m.group(0)
        if name.startswith("__"):
            raise ValueError("label name '%s' starts with '__' (reserved)" % name)
        pos = m.end()
        if text[pos:pos + 2] != '="':
            raise ValueError("label '%s': expected =\" at column %d" % (name, pos + 1))
        pos += 2
        value = []
        while True:
            if pos >= len(text):
                raise ValueError("label '%s': value not closed" % name)
            ch = text[pos]
            if ch == "\\":
                nxt = text[pos + 1:pos + 2]
                if nxt not in ("\\", '"', "n"):
                    raise ValueError("label '%s': bad escape \\%s" % (name, nxt))
                value.append({"\\": "\\", '"': '"', "n": "\n"}[nxt])
                pos += 2
            elif ch == '"':
                pos += 1
                break
            elif ch == "\n":
                raise ValueError("label '%s': raw newline in the value" % name)
            else:
                value.append(ch)
                pos += 1
        if name in labels:
            raise ValueError("label '%s' given twice" % name)
        labels[name] = "".join(value)
        if text[pos:pos + 1] == ",":
            pos += 1
        elif text[pos:pos + 1] != "}":
            raise ValueError("expected ',' or '}' at column %d" % (pos + 1))


def series_key(name, labels):
    if not labels:
        return name
    inner = ",".join('%s="%s"' % (k, labels[k].replace("\\", "\\\\").replace('"', '\\"')
                                  .replace("\n", "\\n")) for k in sorted(labels))
    return "%s{%s}" % (name, inner)


def check(text):
    problems = []

    def fail(lineno, msg):
        problems.append("line %d: %s" % (lineno, msg))

    if not text.endswith("\n"):
        problems.append("the text does not end with a newline")
    families = {}  # name -> {"help", "type", "samples", "line"}
    order = []
    current = None
    samples = {}
    hist = {}  # (family, labels without le) -> {"buckets": [(le, v, line)], "count", "sum"}
    for lineno, line in enumerate(text.split("\n")[:-1] if text.endswith("\n")
                                  else text.split("\n"), 1):
        if line == "":
            fail(lineno, "empty line")
            continue
        if line.startswith("#"):
            m = re.match(r"^# (HELP|TYPE) (\S+)(?: (.*))?$", line)
            if not m:
                fail(lineno, "a comment that is neither HELP nor TYPE: %r" % line)
                continue
            kind, name, rest = m.group(1), m.group(2), m.group(3) or ""
            if not METRIC_RE.match(name):
                fail(lineno, "invalid metric name '%s'" % name)
            fam = families.get(name)
            if fam is None:
                fam = families[name] = {"help": None, "type": None, "samples": 0,
                                        "line": lineno}
                order.append(name)
            elif current != name:
                fail(lineno, "family '%s' continues after other families" % name)
            if fam["samples"]:
                fail(lineno, "%s of '%s' after its samples" % (kind, name))
            key = kind.lower()
            if fam[key] is not None:
                fail(lineno, "second %s of '%s'" % (kind, name))
            if kind == "TYPE" and rest not in TYPES:
                fail(lineno, "unknown type '%s'" % rest)
            if kind == "HELP":
                if re.search(r"\\[^\\n]", rest.replace("\\\\", "")):
                    fail(lineno, "bad escape in the HELP text of '%s'" % name)
            fam[key] = rest
            current = name
            continue
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)", line)
        if not m:
            fail(lineno, "invalid sample line %r" % line)
            continue
        name = m.group(1)
        pos = m.end()
        labels = {}
        try:
            if line[pos:pos + 1] == "{":
                labels, pos = parse_labels(line, pos)
            parts = line[pos:].split(" ")
            if parts[0] != "" or len(parts) not in (2, 3):
                raise ValueError("expected ' value' (and a timestamp) after the name")
            value = parse_value(parts[1])
        except ValueError as e:
            fail(lineno, "%s: %s" % (name, e))
            continue
        fam = families.get(current) if current else None
        if fam is None or fam["type"] is None or fam["help"] is None:
            fail(lineno, "sample '%s' before its family's HELP and TYPE" % name)
            continue
        ftype = fam["type"]
        if not any(name == current + s for s in SUFFIXES.get(ftype, ("",))):
            fail(lineno, "sample '%s' does not belong to the %s '%s' declared above"
                 % (name, ftype, current))
            continue
        fam["samples"] += 1
        key = series_key(name, labels)
        if key in samples:
            fail(lineno, "series %s appears twice" % key)
        samples[key] = value
        if ftype == "counter" and not value >= 0:
            fail(lineno, "counter %s is negative or NaN" % key)
        if ftype == "histogram":
            rest = {k: v for k, v in labels.items() if k != "le"}
            h = hist.setdefault((current, series_key("", rest)),
                                {"buckets": [], "count": None, "sum": None, "line": lineno})
            if name.endswith("_bucket"):
                if "le" not in labels:
                    fail(lineno, "bucket %s has no le" % key)
                    continue
                try:
                    le = parse_value(labels["le"])
                except ValueError as e:
                    fail(lineno, "bucket %s: le %s" % (key, e))
                    continue
                h["buckets"].append((le, value, lineno))
            elif name.endswith("_count"):
                h["count"] = value
            else:
                h["sum"] = value
    for (fam, rest), h in hist.items():
        where = "histogram %s%s (line %d)" % (fam, rest, h["line"])
        b = h["buckets"]
        if not b:
            problems.append("%s has no buckets" % where)
            continue
        for i in range(1, len(b)):
            if not b[i][0] > b[i - 1][0]:
                fail(b[i][2], "%s: le %s after %s: not increasing" % (where, b[i][0], b[i - 1][0]))
            if b[i][1] < b[i - 1][1]:
                fail(b[i][2], "%s: bucket le=%s holds %s, less than le=%s's %s: not cumulative"
                     % (where, b[i][0], b[i][1], b[i - 1][0], b[i - 1][1]))
        if b[-1][0] != math.inf:
            problems.append("%s: the last bucket is not le=\"+Inf\"" % where)
        if h["count"] is None or h["sum"] is None:
            problems.append("%s: _count or _sum missing" % where)
        elif b[-1][1] != h["count"]:
            problems.append("%s: +Inf bucket %s differs from _count %s"
                            % (where, b[-1][1], h["count"]))
        if any(v != int(v) or v < 0 for _, v, _ in b):
            problems.append("%s: a bucket count is not a whole number" % where)
    for name in order:
        fam = families[name]
        if fam["help"] is None or fam["type"] is None:
            problems.append("line %d: family '%s' lacks its %s" % (
                fam["line"], name, "HELP" if fam["help"] is None else "TYPE"))
    # The client library's own parser must take it too (it raises on what it refuses).
    try:
        for _ in text_string_to_metric_families(text):
            pass
    except Exception as e:  # noqa: BLE001 - any refusal is a failure of the check
        problems.append("prometheus_client's parser refuses the text: %s: %s"
                        % (type(e).__name__, e))
    if problems:
        raise Problems(problems)
    return samples


def main():
    if len(sys.argv) != 2 or sys.argv[1] in ("-h", "--help"):
        print(__doc__.strip())
        return 0 if len(sys.argv) == 2 else 2
    path = sys.argv[1]
    try:
        if path == "-":
            text = sys.stdin.read()
        else:
            with open(path, encoding="utf-8") as f:
                text = f.read()
    except (OSError, UnicodeDecodeError) as e:
        print("check_metrics: cannot read %s: %s" % (path, e), file=sys.stderr)
        return 2
    try:
        samples = check(text)
    except Problems as p:
        for msg in p.args[0]:
            print("check_metrics: %s: %s" % (path, msg), file=sys.stderr)
        return 1
    out = {}
    for k, v in samples.items():
        out[k] = v if math.isfinite(v) else str(v)
    json.dump(out, sys.stdout, sort_keys=True)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
