#!/usr/bin/env bash
# Install the rock offline into a scratch tree with `luarocks make`, then prove it works from
# there: every Lua file under lua/ is a module of the rockspec, `require "flowmusic"` loads,
# and the installed `flowmusic` command runs.
set -euo pipefail
cd "$(dirname "$0")/.."
tree=$(mktemp -d)
trap 'rm -rf "$tree"' EXIT

# Every module file must be listed (builtin builds can't glob).
status=0
while IFS= read -r f; do
    mod=${f#lua/}; mod=${mod%.lua}; mod=${mod%/init}; mod=${mod//\//.}
    if ! grep -q "\[\"$mod\"\] *= *\"$f\"" rockspec/flowmusic-scm-1.rockspec; then
        echo "rockspec does not install $f as module $mod"; status=1
    fi
done < <(find lua -name '*.lua' | sort)
((status == 0))

luarocks --lua-version=5.4 make --deps-mode=none --tree "$tree" rockspec/flowmusic-scm-1.rockspec >"$tree/make.log" 2>&1 \
    || { cat "$tree/make.log"; exit 1; }
export LUA_PATH="$tree/share/lua/5.4/?.lua;$tree/share/lua/5.4/?/init.lua;;"
export LUA_CPATH="$tree/lib/lua/5.4/?.so;;"
lua5.4 -e 'local f = require "flowmusic"; assert(f._VERSION and f.new, "flowmusic did not load")'
"$tree/bin/flowmusic" --help >/dev/null
# The installed sandbox runs from the tree's own copy of its handlers, and the installed CLI
# drives it.
url=$("$tree/bin/flowmusic" sandbox start --dir "$tree/sandbox" 2>/dev/null | tail -n 1)
trap '"$tree/bin/flowmusic" sandbox stop --dir "$tree/sandbox" >/dev/null 2>&1 || true; rm -rf "$tree"' EXIT
[[ $url == http://127.0.0.1:*/v1/flowmusic ]] || { echo "installed sandbox did not start"; exit 1; }
grep -q "$tree/share/lua/5.4" "$tree/sandbox/nginx.conf" || { echo "sandbox does not use the installed handlers"; exit 1; }
USEAPI_TOKEN=user:1-sandbox "$tree/bin/flowmusic" accounts list --base-url "$url" --json >/dev/null
"$tree/bin/flowmusic" sandbox stop --dir "$tree/sandbox" >/dev/null 2>&1
echo "rockspec ok: installed into a scratch tree; module loads; CLI and sandbox run from the tree"
