#!/bin/sh
# `make run`: starts a broker and the example module, says how to talk to them, and
# stops both on Ctrl-C.
set -u
build=${1:-build}
bin="$build/bin"
run=$(mktemp -d /tmp/lc-demo-XXXXXX)
bus=${LC_BUS:-ipc://$run/bus}
export LC_BUS="$bus"

cleanup() {
    trap - INT TERM EXIT
    [ -n "${echo_pid:-}" ] && kill "$echo_pid" 2>/dev/null
    [ -n "${broker_pid:-}" ] && kill "$broker_pid" 2>/dev/null
    wait 2>/dev/null
    rm -rf "$run"
    echo
    echo "lc demo stopped."
}
trap cleanup INT TERM EXIT

"$bin/lc-broker" --endpoint "$bus" 2>>"$run/broker.log" &
broker_pid=$!
"$bin/lc-echo" --bus "$bus" 2>>"$run/echo.log" &
echo_pid=$!
if ! "$bin/lc" --bus "$bus" --timeout 5000 call broker.wait '{"modules":["echo"]}' >/dev/null; then
    echo "lc: the demo did not start; see $run/broker.log and $run/echo.log" >&2
    cat "$run/broker.log" "$run/echo.log" >&2
    exit 1
fi

cat <<EOT
lc demo running: lc-broker (pid $broker_pid) and the module 'echo' (pid $echo_pid).

In another terminal:
  export LC_BUS=$bus
  $bin/lc call echo.echo text=hello n=3      # answers {"text":"hello","n":3}
  $bin/lc call echo.sleep ms=500             # a deferred answer after 500 ms
  $bin/lc call echo.fail; echo \$?            # a handler error: exit status 1
  $bin/lc call broker.list --pretty          # the modules and their methods
  $bin/lc listen '*' &                       # print every event on the bus
  $bin/lc emit door_opened door=front        # an event to its subscribers
  $bin/lc enqueue echo.record n=1            # a task through the broker's queue

Logs: $run/broker.log, $run/echo.log
Stop with Ctrl-C.
EOT
wait "$broker_pid"
