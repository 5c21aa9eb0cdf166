#!/bin/sh
# Installs the Debian packages lc needs to build and test, and only those missing.
set -u

# pkg-config module : Debian package
pairs="libzmq:libzmq3-dev jansson:libjansson-dev yaml-0.1:libyaml-dev criterion:libcriterion-dev libgpiod:libgpiod-dev \
       libmicrohttpd:libmicrohttpd-dev libcrypt:libcrypt-dev libcurl:libcurl4-openssl-dev"

missing=""
command -v pkg-config >/dev/null 2>&1 || missing="pkg-config"
command -v cc >/dev/null 2>&1 || missing="$missing gcc"
command -v make >/dev/null 2>&1 || missing="$missing make"
for pair in $pairs; do
    module=${pair%%:*}
    package=${pair#*:}
    if ! command -v pkg-config >/dev/null 2>&1 || ! pkg-config --exists "$module"; then
        missing="$missing $package"
    fi
done
# The tests make TLS certificates with openssl, and run lc as another user with setpriv.
command -v openssl >/dev/null 2>&1 || missing="$missing openssl"
command -v setpriv >/dev/null 2>&1 || missing="$missing util-linux"
# The tests check /metrics with the Prometheus client library's own parser.
/usr/bin/python3 -c 'import prometheus_client.parser' >/dev/null 2>&1 ||
    missing="$missing python3-prometheus-client"
[ -z "$missing" ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
    echo "lc: missing Debian packages:$missing" >&2
    echo "lc: install them as root: apt-get install -y$missing" >&2
    exit 1
fi
echo "lc: installing missing Debian packages:$missing"
export DEBIAN_FRONTEND=noninteractive
# shellcheck disable=SC2086
apt-get install -y --no-install-recommends $missing ||
    { apt-get update && apt-get install -y --no-install-recommends $missing; } || {
    echo "lc: could not install:$missing" >&2
    exit 1
}
