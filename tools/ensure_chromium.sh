#!/usr/bin/env bash
# Makes sure a Chromium the console's browser tests can drive is installed (Debian's `chromium` package);
# Playwright's own browser download is not used.
set -euo pipefail
for candidate in chromium chromium-browser; do
    if command -v "$candidate" >/dev/null 2>&1; then
        exit 0
    fi
done
if ! command -v apt-get >/dev/null 2>&1; then
    echo "ensure_chromium: Chromium is missing and this system has no apt-get; install Chromium and make" \
         "\`chromium\` reachable on PATH" >&2
    exit 1
fi
run=()
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        run=(sudo)
    else
        echo "ensure_chromium: Chromium is missing and installing it needs root (or sudo):" \
             "apt-get install -y chromium" >&2
        exit 1
    fi
fi
echo "ensure_chromium: installing Debian's chromium package for the console's browser tests"
if ! { "${run[@]}" apt-get update -qq && "${run[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } \
        >/tmp/ensure_chromium.log 2>&1; then
    echo "ensure_chromium: apt-get could not install chromium (see /tmp/ensure_chromium.log):" >&2
    tail -5 /tmp/ensure_chromium.log >&2
    exit 1
fi
command -v chromium >/dev/null 2>&1 || { echo "ensure_chromium: chromium installed but not on PATH" >&2; exit 1; }
