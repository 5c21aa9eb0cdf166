#!/bin/sh
# Installs what the browser test (tests/browser) needs, and only what is missing: Debian's
# chromium, Node.js and npm from Debian when there is no node at all, and playwright-core at
# the version of tests/browser/package-lock.json (`npm ci`). The browser is Debian's: the
# test never downloads one (no `playwright install`).
set -u
cd "$(dirname "$0")/.." || exit 1

missing=""
[ -x /usr/bin/chromium ] || missing="chromium"
if ! command -v node >/dev/null 2>&1; then
    missing="$missing nodejs"
    command -v npm >/dev/null 2>&1 || missing="$missing npm"
fi
if [ -n "$missing" ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "lc: the browser test needs Debian packages:$missing" >&2
        echo "lc: install them as root: apt-get install -y$missing" >&2
        exit 1
    fi
    echo "lc: installing for the browser test:$missing"
    export DEBIAN_FRONTEND=noninteractive
    # shellcheck disable=SC2086
    apt-get install -y --no-install-recommends $missing ||
        { apt-get update && apt-get install -y --no-install-recommends $missing; } || {
        echo "lc: could not install:$missing (apt-get failed; see above)" >&2
        exit 1
    }
fi

if ! command -v npm >/dev/null 2>&1; then
    echo "lc: node is here but npm is not: install npm for this Node.js (Debian: apt-get install npm)" >&2
    exit 1
fi
major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
if [ "$major" -lt 20 ]; then
    echo "lc: the browser test needs Node.js 20 or newer (playwright-core); this is $(node --version)" >&2
    exit 1
fi

# playwright-core as the lock file pins it; npm ci only when it is missing or another version.
lock=tests/browser/package-lock.json
want=$(sed -n '/"node_modules\/playwright-core"/,/"version"/s/.*"version": *"\([^"]*\)".*/\1/p' "$lock")
have=$(sed -n 's/^ *"version": *"\([^"]*\)".*/\1/p' \
    tests/browser/node_modules/playwright-core/package.json 2>/dev/null | head -n 1)
if [ -z "$want" ] || [ "$have" != "$want" ]; then
    echo "lc: installing playwright-core ${want:-?} for the browser test (npm ci in tests/browser)"
    (cd tests/browser && npm ci --no-audit --no-fund) || {
        echo "lc: npm ci failed in tests/browser (see above); the npm registry must be reachable" >&2
        exit 1
    }
fi
