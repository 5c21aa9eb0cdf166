#!/bin/sh
# `make run`: the demo system (config/demo.yaml) under lc-launch, in the foreground.
set -u
build=${1:-build}
bin="$(cd "$build/bin" && pwd)"
bus=${LC_BUS:-ipc:///tmp/lc-demo-${USER:-user}/bus}
export LC_BUS="$bus"
web_port=${LC_WEB_PORT:-8080}
if [ "$web_port" = 0 ]; then
    dashboard="the address on the line 'web: serving http://...' below"
else
    dashboard="http://127.0.0.1:$web_port/"
fi
metrics_port=${LC_PROMETHEUS_PORT:-9090}
if [ "$metrics_port" = 0 ]; then
    metrics="the address on prometheus's line 'serving http://...' below"
else
    metrics="http://127.0.0.1:$metrics_port/metrics"
fi

cat <<EOT
lc demo: lc-launch runs the broker and the modules of config/demo.yaml.
Their output follows, one line each, with the module's name. Stop with Ctrl-C.

The dashboard (lc-web): $dashboard
  the modules, the GPIO lines with their buttons, the seed's Trigger action, a panel to
  call methods and emit events, and a live feed of the bus (LC_WEB_PORT=N: another port)
The metrics for Prometheus (lc-prometheus): $metrics
  (LC_PROMETHEUS_PORT=N: another port)

In another terminal:
  export LC_BUS=$bus PATH=$bin:\$PATH
  lc-spy                                   # every message on the bus, live (Ctrl-C ends)
  lc list                                  # modules: state, pid, methods, subscriptions
  lc call gpio.sim_set_input line=22 value=0   # press the simulated button (pull-up:
  lc call gpio.sim_set_input line=22 value=1   #   0 is pressed); on release: pushed_short,
                                               #   and the controller toggles line 27
  lc call gpio.get_output_state line=27    # "on" after the first click
  lc emit webpage_trigger                  # the controller steps lines 4, 17 and 27
  lc call gpio.sim_output_log --pretty     # every output change with its time
  lc call echo.echo text=hello n=3         # a call: {"text":"hello","n":3}
  lc listen '*'                            # every event on the bus, as it happens
  lc call launcher.status --pretty         # every module: state, pid, restarts
  kill -9 \$(pidof lc-echo | cut -d' ' -f1)  # a crash: lc-launch restarts the module
  lc stats                                 # the bus's counters

EOT
exec "$bin/lc-launch" config/demo.yaml
