#!/usr/bin/env bash
# Lint every Lua file of flowmusic with luacheck (configured by .luacheckrc): the library,
# the command line entry point and the specs. Exits non-zero on any warning or error.
set -euo pipefail
cd "$(dirname "$0")/.."
luacheck --no-color lua bin spec "$@"
