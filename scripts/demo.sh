#!/bin/sh
# `make run`: the demo system (config/demo.yaml) under lc-launch, in the foreground.
set -u
build=${1:-build}
bin="$(cd "$build/bin" && pwd)"
bus=${LC_BUS:-ipc:///tmp/lc-demo-${USER:-user}/bus}
export LC_BUS="$bus"

cat <<EOT
lc demo: lc-launch runs the broker and the modules of config/demo.yaml.
Their output follows, one line each, with the module's name. Stop with Ctrl-C.

In another terminal:
  export LC_BUS=$bus PATH=$bin:\$PATH
  lc call launcher.status --pretty         # every module: state, pid, restarts
  lc call echo.echo text=hello n=3         # a call: {"text":"hello","n":3}
  lc listen '*'                            # every event on the bus, as it happens
  lc emit door_opened door=front           # an event; the module 'listener' records it
  lc call listener.recorded --pretty       # what it recorded, with the transaction id
  lc enqueue echo.record n=1               # a task through the broker's queue
  kill -9 \$(pidof lc-echo | cut -d' ' -f1)  # a crash: lc-launch restarts the module
  lc call broker.stats --pretty            # the bus's counters

EOT
exec "$bin/lc-launch" config/demo.yaml
