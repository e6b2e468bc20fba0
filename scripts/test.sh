#!/usr/bin/env bash
# The whole test suite, on a fresh machine or a warm one:
#   formatting and lints, Rust unit tests, then the interop suite that drives
#   the official LiveKit Python SDK (pinned, in a venv this creates) through
#   a ferrokit server built here, then the browser SDK (livekit-client in
#   Debian's headless Chromium, installed if missing) and the Node SDK.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== toolchain"
cargo --version
python3 --version
# Disk left for target/, the venv, npm and Chromium (a few GB in all).
df -h . | tail -n 1
# A CI clone is built once: incremental state would only take disk.
if [ "${CI:-}" = true ]; then
    export CARGO_INCREMENTAL=0
fi
# The venv module ships with this machine's CPython; on a Debian python3
# without it, install python3-venv.
if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
    apt-get update -qq && apt-get install -y -qq python3-venv
fi

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings

echo "== unit tests"
cargo test --workspace --quiet

echo "== build server"
cargo build --quiet -p ferrokit

echo "== interop: official Python SDK"
FERROKIT_BIN="$PWD/target/debug/ferrokit" tests/interop/run.sh -q

echo "== interop: browser SDK in headless Chromium, and the Node SDK"
FERROKIT_BIN="$PWD/target/debug/ferrokit" tests/browser/run.sh
