#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# tests/browser/setup.sh: install what the dashboard's browser test needs.
#
#   - Debian's chromium, with apt-get, when it is missing and we are root;
#   - puppeteer-core, at the version pinned by package-lock.json beside this
#     file, with `npm ci` into a cache directory outside the source tree:
#     $ASYNCQ_BROWSER_CACHE, else $XDG_CACHE_HOME/asyncq-browser, else
#     ~/.cache/asyncq-browser (build/browser-cache without a HOME), in a
#     subdirectory named by the lock file's hash (a changed lock installs
#     afresh; an unchanged one costs nothing).
#
# On success prints one line on stdout, the directory whose node_modules holds
# puppeteer-core (the test reads it from ASYNCQ_BROWSER_MODULES), and exits 0.
# When chromium is missing and cannot be installed (not root, or no apt-get)
# it says "skipped: ..." on stderr and exits 77; any other failure is non-zero.
# CHROMIUM names another browser binary (default /usr/bin/chromium).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
chromium=${CHROMIUM:-/usr/bin/chromium}

say() { echo "browser setup: $*" >&2; }

if [ ! -x "$chromium" ]; then
    if [ -n "${CHROMIUM:-}" ]; then
        say "CHROMIUM=$chromium is not an executable"
        exit 1
    fi
    if [ "$(id -u)" -ne 0 ]; then
        say "skipped: chromium is not installed and installing it needs root" \
            "(run as root, or: sudo apt-get install -y chromium)"
        exit 77
    fi
    if ! command -v apt-get >/dev/null; then
        say "skipped: chromium is not installed and there is no apt-get"
        exit 77
    fi
    say "installing chromium (Debian package)"
    apt-get update -q >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >&2
fi
"$chromium" --version >/dev/null 2>&1 ||
    { say "$chromium --version failed"; exit 1; }

command -v node >/dev/null ||
    { say "node is missing (tools/dev deps installs nodejs)"; exit 1; }
# Debian's nodejs comes without npm (NodeSource's bundles it).
if ! command -v npm >/dev/null; then
    if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
        say "npm is missing (run as root, or: sudo apt-get install -y npm)"
        exit 1
    fi
    say "installing npm (Debian package)"
    apt-get update -q >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q npm >&2
fi

cache=${ASYNCQ_BROWSER_CACHE:-}
if [ -z "$cache" ]; then
    if [ -n "${XDG_CACHE_HOME:-}" ]; then
        cache=$XDG_CACHE_HOME/asyncq-browser
    elif [ -n "${HOME:-}" ]; then
        cache=$HOME/.cache/asyncq-browser
    else # no home: beside the build, still outside the sources
        cache=$here/../../build/browser-cache
    fi
fi
hash=$(cat "$here/package.json" "$here/package-lock.json" | sha256sum |
    cut -c1-16)
dir=$cache/$hash
if [ ! -f "$dir/.installed" ]; then
    say "installing puppeteer-core into $dir"
    rm -rf "$dir"
    mkdir -p "$dir"
    cp "$here/package.json" "$here/package-lock.json" "$dir/"
    # Puppeteer's own browser download is not wanted (puppeteer-core has
    # none, but say so in case a dependency asks).
    PUPPETEER_SKIP_DOWNLOAD=1 npm ci --prefix "$dir" --no-audit --no-fund \
        --loglevel=error >&2
    touch "$dir/.installed"
    # Older installs (another lock: a 16-hex-digit name with .installed)
    # are dropped; nothing else in the cache directory is touched.
    for old in "$cache"/*/.installed; do
        old=${old%/.installed}
        name=${old##*/}
        if [ "$name" != "$hash" ] && [[ $name =~ ^[0-9a-f]{16}$ ]]; then
            rm -rf "$old"
        fi
    done
fi
echo "$dir"
