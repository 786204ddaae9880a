#!/usr/bin/env bash
# Install (only when missing) the Debian packages flowmusic needs, then build the C core.
#   scripts/setup.sh            runtime + build: Lua 5.4, libcurl, cjson, nginx for the sandbox
#   scripts/setup.sh --test     also what the test suite needs (busted, Lua 5.1, python3-requests, chromium)
# Builds build/ (Lua 5.4); with --test also build51/ (Lua 5.1 API) and build-asan/.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(lua5.4 liblua5.4-dev lua-cjson lua-socket libcurl4-openssl-dev ca-certificates
          cmake gcc make libc6-dev pkg-config nginx-core libnginx-mod-http-lua lua-resty-core)
with_tests=0
if [[ ${1:-} == --test ]]; then
    with_tests=1
    packages+=(lua5.1 liblua5.1-0-dev lua-busted luarocks curl openssl python3-requests chromium)
fi

missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
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
    # Tests also prove the C is warning-free with both Lua APIs.
    build build -DFLOWMUSIC_WERROR=ON
    build build51 -DLUA_VERSION=5.1 -DFLOWMUSIC_WERROR=ON
    build build-asan -DFLOWMUSIC_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug -DFLOWMUSIC_WERROR=ON
fi
