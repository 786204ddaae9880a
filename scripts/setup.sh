#!/usr/bin/env bash
# Install (only when missing) the Debian packages flowmusic needs, then build the C core.
#   scripts/setup.sh            runtime + build: Lua 5.4, libcurl, cjson, nginx for the sandbox
#   scripts/setup.sh --test     also what the test suite needs: busted, Lua 5.1, 5.2, 5.3 and
#                               LuaJIT (luajit2), luacheck, LDoc (+ lua-markdown), Prometheus
#                               (+ promtool), Chromium, curl, openssl, python3-requests
# Builds build/ (Lua 5.4); with --test also build51/ (Lua 5.1 API, for LuaJIT too), build52/,
# build53/ and build-asan/, every one with -Werror.
# Packages are installed as root or through sudo. Without either, setup names the missing
# packages, prints the apt-get line to run as root, and exits 2.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(lua5.4 liblua5.4-dev lua-cjson lua-socket libcurl4-openssl-dev ca-certificates
          lua-argparse lua-inifile  # the command line; its config file (profiles)
          cmake gcc make libc6-dev pkg-config nginx-core libnginx-mod-http-lua lua-resty-core)
with_tests=0
if [[ ${1:-} == --test ]]; then
    with_tests=1
    packages+=(lua5.1 liblua5.1-0-dev lua-busted luarocks curl openssl python3-requests)
    # Every Lua the code supports, and lint + API reference tools. Not Debian's `luajit`: on
    # bookworm it conflicts with libnginx-mod-http-lua, and installing it removes nginx's lua
    # module; luajit2 is the OpenResty branch of LuaJIT.
    packages+=(lua5.2 liblua5.2-dev lua5.3 liblua5.3-dev luajit2 libluajit2-5.1-dev
               lua-check lua-ldoc lua-markdown
               prometheus  # the server and promtool: spec/5x_status_*
               tinyproxy   # a real forward proxy (CONNECT, 403, 407): spec/14_client_tinyproxy_spec.lua
               chromium)   # headless: spec/71_usage_report_browser_spec.lua
fi

missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    if [[ $(id -u) -ne 0 ]] && ! command -v sudo >/dev/null 2>&1; then
        echo "setup: missing Debian packages: ${missing[*]}" >&2
        echo "setup: not root and no sudo to install them; as root, run:" >&2
        echo "apt-get update && apt-get install -y --no-install-recommends ${missing[*]}" >&2
        exit 2
    fi
    echo "setup: installing ${missing[*]}" >&2
    sudo=""; [[ $(id -u) -ne 0 ]] && sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

build() { # dir, extra cmake args...
    local dir=$1; shift
    cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=Release "$@" >/dev/null
    cmake --build "$dir" -j2 >/dev/null
}
build build
if ((with_tests)); then
    # Tests also prove the C is warning-free with every Lua API.
    build build -DFLOWMUSIC_WERROR=ON
    build build51 -DLUA_VERSION=5.1 -DFLOWMUSIC_WERROR=ON
    build build52 -DLUA_VERSION=5.2 -DFLOWMUSIC_WERROR=ON
    build build53 -DLUA_VERSION=5.3 -DFLOWMUSIC_WERROR=ON
    build build-asan -DFLOWMUSIC_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug -DFLOWMUSIC_WERROR=ON
fi
