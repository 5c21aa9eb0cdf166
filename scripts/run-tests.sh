#!/bin/sh
# Runs the whole test suite of the build folder given as $1 (default: build).
# Extra arguments go to the Criterion runner (e.g. --filter 'call/*' --verbose).
set -u
build=${1:-build}
[ $# -gt 0 ] && shift
bin="$build/tests/lc-tests"
if [ ! -x "$bin" ]; then
    echo "lc: $bin is missing; run 'make tests' first" >&2
    exit 1
fi
exec "$bin" "$@"
