#!/bin/sh
# Installs what `make bench-peers` needs beside lc's own dependencies, and only what is
# missing: mosquitto (the MQTT broker and its library) and dbus-daemon with sd-bus.
set -u
missing=""
[ -x /usr/sbin/mosquitto ] || missing="mosquitto"
[ -f /usr/include/mosquitto.h ] || missing="$missing libmosquitto-dev"
[ -x /usr/bin/dbus-daemon ] || missing="$missing dbus-daemon"
[ -f /usr/include/systemd/sd-bus.h ] || missing="$missing libsystemd-dev"
[ -z "$missing" ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
    echo "lc: make bench-peers needs Debian packages:$missing" >&2
    echo "lc: install them as root: apt-get install -y$missing" >&2
    exit 1
fi
echo "lc: installing for make bench-peers:$missing"
export DEBIAN_FRONTEND=noninteractive
# shellcheck disable=SC2086
apt-get install -y --no-install-recommends $missing ||
    { apt-get update && apt-get install -y --no-install-recommends $missing; } || {
    echo "lc: could not install:$missing" >&2
    exit 1
}
# The packaged broker must not serve the machine's port 1883: lc-bench-peers starts its own.
if command -v systemctl >/dev/null 2>&1; then
    systemctl disable --now mosquitto >/dev/null 2>&1 || true
fi
exit 0
