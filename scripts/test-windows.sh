#!/usr/bin/env bash
# Builds chatd for Windows (x86_64-pc-windows-gnu, linked with Debian's
# mingw-w64) and runs the whole transcript suite against chatd.exe under
# Wine with --backend iocp, checking that the driver in use is IOCP; then
# the whole suite again over TLS.
#
# It installs what it needs (rustup target, gcc-mingw-w64-x86-64, wine). If
# that is impossible it says so in one loud line and fails, unless
# CHATD_SKIP_WINDOWS=1 is set, in which case it says loudly that the Windows
# check did NOT run and exits 0. It never passes silently.
set -euo pipefail
cd "$(dirname "$0")/.."

target=x86_64-pc-windows-gnu
out=target/$target/release

fail() {
    if [ "${CHATD_SKIP_WINDOWS:-}" = "1" ]; then
        echo "!!! WINDOWS CHECK DID NOT RUN (CHATD_SKIP_WINDOWS=1): $1 !!!"
        exit 0
    fi
    echo "!!! WINDOWS CHECK FAILED: $1 (set CHATD_SKIP_WINDOWS=1 to skip it on purpose) !!!" >&2
    exit 1
}

if [ "${CHATD_SKIP_WINDOWS:-}" = "1" ]; then
    echo "!!! WINDOWS CHECK DID NOT RUN (CHATD_SKIP_WINDOWS=1) !!!"
    exit 0
fi

echo "== windows: toolchain"
rustup target add "$target" >/dev/null 2>&1 || fail "cannot install the rustup target $target"
if ! command -v x86_64-w64-mingw32-gcc >/dev/null || ! command -v wine >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null 2>&1 || fail "apt-get update failed"
    apt-get install -y -qq gcc-mingw-w64-x86-64 wine wine64 >/dev/null 2>&1 \
        || fail "cannot install gcc-mingw-w64-x86-64 and wine"
fi

echo "== windows: build the workspace for $target"
cargo build --release --target "$target" --workspace
# Wine 8 lacks bcryptprimitives.dll, from which Rust's std takes ProcessPrng.
x86_64-w64-mingw32-gcc -shared -O2 -o "$out/bcryptprimitives.dll" \
    scripts/windows/bcryptprimitives.c -ladvapi32

echo "== windows: transcripts against chatd.exe under Wine (iocp backend)"
cargo build --bin run-transcripts
export WINEDEBUG=-all
# The first start of a Wine prefix sets it up; do it before timing anything.
wine "$out/chatd.exe" --version >/dev/null 2>&1 || fail "chatd.exe does not start under Wine"
target/debug/run-transcripts --backend iocp --expect-driver IOCP -- wine "$out/chatd.exe"
echo "== windows: transcripts over TLS against chatd.exe under Wine (iocp backend)"
# The TLS mode: the server gets TLS listeners and a certificate made for
# the run; every client is a rustls client on the TLS listener of its dialect.
target/debug/run-transcripts --tls --backend iocp --expect-driver IOCP -- wine "$out/chatd.exe"
