#!/bin/sh
# Runs the browser test: the demo system (config/demo.yaml) under lc-launch, lc-web's pages
# in Debian's headless chromium driven by playwright-core. $1 is the build folder (default
# build); the screenshot goes to $1/test-output/web.png. Set LC_CHROMIUM to use another
# chromium binary. scripts/browser-deps.sh installs what it needs.
set -u
build=${1:-build}
# The build folder as given from here; the test runs from the source tree.
case $build in /*) ;; *) build="$PWD/$build" ;; esac
cd "$(dirname "$0")/.." || exit 1
for prog in lc-launch lc-broker lc-web lc-gpio lc-controller lc-clickhandler lc-echo lc-simple; do
    if [ ! -x "$build/bin/$prog" ]; then
        echo "lc: $build/bin/$prog is missing; build first: make BUILD=$build all" >&2
        exit 1
    fi
done
if [ ! -d tests/browser/node_modules/playwright-core ]; then
    echo "lc: playwright-core is not installed; run scripts/browser-deps.sh first" >&2
    exit 1
fi
exec node tests/browser/web.test.mjs "$build"
