#!/usr/bin/env bash
# Run the benchmarks in one go: set-up, build the raw libcurl peer, measure, print a table.
#   bash bench/run.sh            (BENCH_SEQ=3000 BENCH_RSS=100000 by default)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
pkgs=(curl python3-requests)
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || {
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null; break; }
done
mkdir -p build/bench
gcc -O2 -std=c11 -D_POSIX_C_SOURCE=200809L -Wall -Wextra -o build/bench/raw_libcurl bench/raw_libcurl.c -lcurl
RAW_LIBCURL=build/bench/raw_libcurl LUA_CPATH="build/?.so;;" LUA_PATH="lua/?.lua;lua/?/init.lua;./?.lua;;" \
    lua5.4 bench/bench.lua
