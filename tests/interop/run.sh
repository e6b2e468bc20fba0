#!/usr/bin/env bash
# Runs the interop suite: official LiveKit Python SDK <-> ferrokit.
#
#   tests/interop/run.sh [pytest args...]
#
# Creates tests/interop/.venv on first use, installs requirements.txt when it
# changed since the last install, runs `npm ci` in tests/interop/api_node when
# its node_modules is missing or package-lock.json changed (the Node server
# SDK used by the API and webhook tests), then runs pytest from tests/interop. The
# server binary comes from $FERROKIT_BIN (default <repo>/target/debug/ferrokit).
# Test paths given relative to the caller's cwd are accepted. Exit code is
# pytest's.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
VENV="$HERE/.venv"
STAMP="$VENV/.requirements.sha256"

export FERROKIT_BIN="${FERROKIT_BIN:-$REPO/target/debug/ferrokit}"
case "$FERROKIT_BIN" in
    /*) ;;
    *) FERROKIT_BIN="$(pwd)/$FERROKIT_BIN" ;;
esac

if ! "$VENV/bin/python" -c '' >/dev/null 2>&1; then
    rm -rf "$VENV"
    python3 -m venv "$VENV"
fi

want="$(sha256sum "$HERE/requirements.txt" | cut -d' ' -f1)"
if [ "$(cat "$STAMP" 2>/dev/null || true)" != "$want" ]; then
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
        -r "$HERE/requirements.txt"
    echo "$want" >"$STAMP"
fi

NODE_DIR="$HERE/api_node"
NODE_STAMP="$NODE_DIR/node_modules/.package-lock.sha256"
want="$(sha256sum "$NODE_DIR/package-lock.json" | cut -d' ' -f1)"
if [ "$(cat "$NODE_STAMP" 2>/dev/null || true)" != "$want" ]; then
    (cd "$NODE_DIR" && npm ci --no-audit --no-fund --loglevel=error)
    echo "$want" >"$NODE_STAMP"
fi

# Make path arguments (file, dir, file::test) absolute before changing dir.
args=()
for a in "$@"; do
    p="${a%%::*}"
    if [[ "$a" != -* && -e "$p" ]]; then
        a="$(cd "$(dirname "$p")" && pwd)/$(basename "$p")${a:${#p}}"
    fi
    args+=("$a")
done

cd "$HERE"
exec "$VENV/bin/python" -m pytest "${args[@]+"${args[@]}"}"
