#!/usr/bin/env bash
# Browser (and Node SDK) interop tests: livekit-client 2.23.0 in headless
# Chromium, and @livekit/rtc-node, against ferrokit.
#
#   tests/browser/run.sh [test files or node --test args...]
#
# On a fresh machine it installs Debian's chromium (apt-get, when
# /usr/bin/chromium is missing) and the pinned npm packages (npm ci from
# package-lock.json, again whenever the lock changes). The server binary
# comes from $FERROKIT_BIN (default <repo>/target/debug/ferrokit); each test
# file starts its own server on free ports. Exit code is node --test's.
# Logs (server, browser consoles) are kept in tests/browser/logs/.
#
# Environment: FERROKIT_BIN, CHROMIUM (default /usr/bin/chromium),
# RUST_LOG (server log filter, default info), LK_LOG_LEVEL (SDK log level in
# the pages, default debug), FK_STRICT=1 (known failures are failures, not TODO),
# FK_NO_NETNS=1 (skip loss.test.mjs and bandwidth.test.mjs, which need root for ip netns, nft, tc).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
STAMP="$HERE/node_modules/.ferrokit-lock.sha256"

export FERROKIT_BIN="${FERROKIT_BIN:-$REPO/target/debug/ferrokit}"
case "$FERROKIT_BIN" in
    /*) ;;
    *) FERROKIT_BIN="$(pwd)/$FERROKIT_BIN" ;;
esac
export CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

if [ ! -x "$CHROMIUM" ]; then
    echo "run.sh: $CHROMIUM missing, installing Debian's chromium" >&2
    as_root apt-get update
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium
fi

# loss.test.mjs filters packets with nftables in a network namespace
if [ "${FK_NO_NETNS:-}" != 1 ] && ! { command -v nft && command -v ip; } >/dev/null; then
    echo "run.sh: nft or ip missing, installing Debian's nftables and iproute2" >&2
    as_root apt-get update
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends nftables iproute2
fi

if ! command -v node >/dev/null || [ "$(node -p 'process.versions.node.split(".")[0]')" -lt 20 ]; then
    echo "run.sh: Node.js 20 or newer is required" >&2
    exit 2
fi

want="$(sha256sum "$HERE/package-lock.json" | cut -d' ' -f1)"
if [ ! -d "$HERE/node_modules" ] || [ "$(cat "$STAMP" 2>/dev/null || true)" != "$want" ]; then
    (cd "$HERE" && npm ci --no-audit --no-fund --loglevel=error)
    echo "$want" >"$STAMP"
fi

if [ ! -x "$FERROKIT_BIN" ]; then
    echo "run.sh: server binary $FERROKIT_BIN missing: run 'cargo build -p ferrokit' in $REPO or set FERROKIT_BIN" >&2
    exit 2
fi

# Make path arguments absolute before changing dir; default: every test file.
args=()
files=0
for a in "$@"; do
    if [[ "$a" != -* && -e "$a" ]]; then
        a="$(cd "$(dirname "$a")" && pwd)/$(basename "$a")"
        files=1
    fi
    args+=("$a")
done
if [ "$files" = 0 ]; then
    args+=("$HERE"/*.test.mjs)
fi

cd "$HERE"
mkdir -p logs
# rtc-node logs at debug level unless NODE_ENV=production
export NODE_ENV="${NODE_ENV:-production}"
set +e
node --test --test-concurrency=1 --test-force-exit --test-reporter=spec "${args[@]}"
code=$?
set -e
if [ "$code" != 0 ]; then
    echo >&2
    echo "run.sh: FAILED (exit $code). Server logs and browser consoles: $HERE/logs/" >&2
    ls -1t "$HERE"/logs/*.diag.txt 2>/dev/null | head -5 | sed 's/^/  /' >&2 || true
fi
exit "$code"
