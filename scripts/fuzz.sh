#!/bin/sh
# `make fuzz`: runs each libFuzzer harness of BUILD/fuzz for SECONDS seconds.
#   scripts/fuzz.sh BUILD SECONDS NAME...
# New inputs go to BUILD/corpus/NAME (seeded from tests/fuzz/corpus/NAME); a crash, leak or
# stall leaves its input in BUILD/crashes/ and ends the run with status 1: copy that input
# into tests/fuzz/corpus/NAME/ as a regression input once fixed. To fold new coverage into
# the checked-in corpus: BUILD/fuzz/fuzz-NAME -merge=1 tests/fuzz/corpus/NAME BUILD/corpus/NAME
set -u
build=$1
seconds=$2
shift 2
status=0
mkdir -p "$build/crashes"
for name in "$@"; do
    bin="$build/fuzz/fuzz-$name"
    corpus="$build/corpus/$name"
    mkdir -p "$corpus"
    log="$build/fuzz-$name.log"
    echo "fuzz: $name for ${seconds}s (log: $log)"
    # -timeout: an input taking 60 s is a stall (wall-clock time: generous, so that a
    # loaded machine is not taken for one); -rss_limit_mb: memory must stay bounded.
    if ! "$bin" -max_total_time="$seconds" -timeout=60 -rss_limit_mb=2048 \
        -print_final_stats=1 -artifact_prefix="$build/crashes/$name-" \
        "$corpus" "tests/fuzz/corpus/$name" >"$log" 2>&1; then
        echo "fuzz: $name FAILED; the end of $log:" >&2
        tail -n 40 "$log" >&2
        status=1
        continue
    fi
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    cov=$(grep -E '^#[0-9]+' "$log" | tail -n 1 | sed -n 's/.*cov: \([0-9]*\).*ft: \([0-9]*\).*/\1 edges, \2 features/p')
    echo "fuzz: $name: $runs inputs, no crash; coverage $cov"
done
exit $status
