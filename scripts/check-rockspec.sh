#!/usr/bin/env bash
# Install the rock offline into a scratch tree with `luarocks make`, then prove it works from
# there, the way a user runs it: every Lua file under lua/ is a module of the rockspec, the
# rockspec lints clean, `luarocks make` leaves nothing behind in the source tree, and with only
# the environment `luarocks path --tree` gives (nothing pointing into the source tree),
# `require "flowmusic"` loads from the tree and the installed `flowmusic` command runs
# --version, the sandbox and `accounts list` against it.
set -euo pipefail
cd "$(dirname "$0")/.."
src=$PWD
rockspec=rockspec/flowmusic-scm-1.rockspec
tree=$(mktemp -d "${TMPDIR:-/tmp}/flowmusic-rocktree.XXXXXX")
trap 'rm -rf "$tree"' EXIT

# Every module file must be listed (luarocks copies exactly the files named).
status=0
while IFS= read -r f; do
    mod=${f#lua/}; mod=${mod%.lua}; mod=${mod%/init}; mod=${mod//\//.}
    if ! grep -q "\[\"$mod\"\] *= *\"$f\"" "$rockspec"; then
        echo "rockspec does not install $f as module $mod"; status=1
    fi
done < <(find lua -name '*.lua' | sort)
((status == 0))

luarocks lint "$rockspec" || { echo "luarocks lint $rockspec failed"; exit 1; }

in_git=0
git rev-parse --is-inside-work-tree >/dev/null 2>&1 && in_git=1
before=""
((in_git)) && before=$(git status --porcelain --ignored)

luarocks --lua-version=5.4 make --deps-mode=none --tree "$tree" "$rockspec" >"$tree/make.log" 2>&1 \
    || { cat "$tree/make.log"; exit 1; }

if ((in_git)); then
    after=$(git status --porcelain --ignored)
    if [[ $before != "$after" ]]; then
        echo "luarocks make left files in the source tree:"
        diff <(echo "$before") <(echo "$after") || true
        exit 1
    fi
fi

# From here on: only what `luarocks path` gives, run from inside the tree (not the sources).
unset LUA_PATH LUA_CPATH LUA_PATH_5_4 LUA_CPATH_5_4 LUA_INIT LUA_INIT_5_4
eval "$(luarocks --lua-version=5.4 path --tree "$tree")"
cd "$tree"
case "$LUA_PATH;$LUA_CPATH" in
    *"$src/"*) echo "luarocks path points into the source tree: $LUA_PATH $LUA_CPATH"; exit 1 ;;
esac

TREE=$tree lua5.4 -e '
  local tree = os.getenv "TREE"
  local f = require "flowmusic"
  assert(f._VERSION and f.new, "flowmusic did not load")
  for _, m in ipairs { { "flowmusic", package.path }, { "flowmusic.core", package.cpath },
                       { "flowmusic.cli.accounts", package.path } } do
    local where = assert(package.searchpath(m[1], m[2]))
    assert(where:sub(1, #tree + 1) == tree .. "/", m[1] .. " found at " .. where .. ", not in the tree")
  end'

[[ $(command -v flowmusic) == "$tree/bin/flowmusic" ]] || { echo "flowmusic on PATH is $(command -v flowmusic)"; exit 1; }
version=$(flowmusic --version)
[[ $version == "flowmusic "[0-9]* ]] || { echo "flowmusic --version said: $version"; exit 1; }
flowmusic --help >/dev/null

# The installed sandbox runs from the tree's own copy of its handlers, and the installed CLI
# drives it.
url=$(flowmusic sandbox start --dir "$tree/sandbox" 2>/dev/null | tail -n 1)
trap 'flowmusic sandbox stop --dir "$tree/sandbox" >/dev/null 2>&1 || true; rm -rf "$tree"' EXIT
[[ $url == http://127.0.0.1:*/v1/flowmusic ]] || { echo "installed sandbox did not start"; exit 1; }
grep -q "$tree/share/lua/5.4" "$tree/sandbox/nginx.conf" || { echo "sandbox does not use the installed handlers"; exit 1; }
if grep -q "$src/" "$tree/sandbox/nginx.conf"; then echo "sandbox nginx.conf points into the source tree"; exit 1; fi
USEAPI_TOKEN=user:1-sandbox flowmusic accounts list --base-url "$url" --json >/dev/null
flowmusic sandbox stop --dir "$tree/sandbox" >/dev/null 2>&1
echo "rockspec ok: lints clean; installed into a scratch tree leaving the sources clean; with only"
echo "  luarocks path: $version, the module, the sandbox and accounts list run from the tree"
