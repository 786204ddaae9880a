#!/usr/bin/env bash
# Run every test of flowmusic, doing all set-up first (Debian packages, the five builds):
#   - the busted specs with Lua 5.4 against build/
#   - the same specs with lua5.1 against the Lua 5.1 API build (build51/, as LuaJIT loads it),
#     with lua5.2 (build52/), lua5.3 (build53/) and LuaJIT (build51/)
#   - the client specs under AddressSanitizer + UndefinedBehaviorSanitizer (build-asan/)
#   - the rockspec (`luarocks make` into a scratch tree, offline, then require + CLI),
#     `cmake --install` into a scratch prefix, the demo (the README's main job), luacheck (zero
#     warnings) and the LDoc API reference (zero warnings), one after another
#   - the monitoring pack: `promtool check rules` and `promtool test rules` (monitoring/check.sh)
# The suites are independent (own build directory, every server on a free port), so they run
# side by side, at most FLOWMUSIC_TEST_JOBS at once (default 6: they mostly wait on servers).
# Each writes its own log; the report comes in the fixed order above, with each suite's wall
# time, and the log's tail for a failed one. A suite still running after
# FLOWMUSIC_SUITE_LIMIT seconds (default 900) is stopped and reported; the others finish.
#
#   bash scripts/test.sh           everything (what CI runs)
#   bash scripts/test.sh --quick   the Lua 5.4 specs, luacheck and the monitoring pack
#
# Ends with one line "N passed, N failed"; exits non-zero when anything failed.
set -uo pipefail
cd "$(dirname "$0")/.."

quick=0
case ${1:-} in
    --quick) quick=1 ;;
    "") ;;
    *) echo "usage: bash scripts/test.sh [--quick]" >&2; exit 2 ;;
esac

bash scripts/setup.sh --test || { echo "0 passed, 1 failed"; exit 1; }

jobs_max=${FLOWMUSIC_TEST_JOBS:-6}
limit=${FLOWMUSIC_SUITE_LIMIT:-900}
logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT
# No spec may touch the user's own used-token store, apply lock or config file: the specs set
# their own; these catch any run that doesn't.
export FLOWMUSIC_STATE_DIR="$logs/state" XDG_CONFIG_HOME="$logs/config"
unset FLOWMUSIC_PROFILE FLOWMUSIC_MIN_CREDITS
names=()

# run_suite ID COMMAND...: run one suite under the time limit; its output, exit code and wall
# time go to files of its own. COMMAND may be one of the functions below (exported).
run_suite() {
    local id=$1 t0; shift
    t0=$(date +%s)
    # timeout signals its whole process group: the suite and every process it started
    timeout --kill-after=20 "$limit" bash -c '"$@"' _ "$@" >"$logs/$id.log" 2>&1
    echo $? >"$logs/$id.rc"
    echo $(($(date +%s) - t0)) >"$logs/$id.secs"
}

# start NAME COMMAND... [-- NAME COMMAND...]: run suites in the background (at most jobs_max
# jobs at once); the suites of one call run one after another.
start() {
    local group=() id
    while (($#)); do
        local cmd=()
        names+=("$1"); id=$((${#names[@]} - 1)); shift
        while (($#)) && [[ $1 != -- ]]; do cmd+=("$1"); shift; done
        (($#)) && shift
        group+=("run_suite $id $(printf '%q ' "${cmd[@]}")")
    done
    while (($(jobs -rp | wc -l) >= jobs_max)); do wait -n; done
    (for step in "${group[@]}"; do eval "$step"; done) &
}

passed=0
failed=0
# report ID: add suite ID's busted counts (or 1 pass/fail) to the totals and print its lines.
report() {
    local id=$1 log="$logs/$1.log" rc secs line s f e
    rc=$(cat "$logs/$id.rc" 2>/dev/null || echo 1)
    secs=$(cat "$logs/$id.secs" 2>/dev/null || echo "?")
    echo "== ${names[$id]} (${secs} s)"
    line=$(grep -E '^[0-9]+ success(es)? / [0-9]+ failures? / [0-9]+ errors? / [0-9]+ pending' "$log" | tail -n 1)
    if ((rc == 124 || rc == 137)); then
        failed=$((failed + 1)); echo "   TIMED OUT: stopped after the ${limit} s limit"
    elif [[ -n $line ]]; then
        read -r s f e <<<"$(sed -E 's#^([0-9]+) [a-z]+ / ([0-9]+) [a-z]+ / ([0-9]+) .*#\1 \2 \3#' <<<"$line")"
        passed=$((passed + s)); failed=$((failed + f + e))
        echo "   $line"
        if ((rc != 0 && f + e == 0)); then failed=$((failed + 1)); echo "   exit code $rc"; fi
    elif ((rc == 0)); then
        passed=$((passed + 1)); echo "   ok"
    else
        failed=$((failed + 1)); echo "   FAILED (exit code $rc)"
    fi
    # (awk ends every line, also the unfinished last one of a suite that was stopped)
    if ((rc != 0)); then tail -n 60 "$log" | awk '{ print "   | " $0 }'; fi
}

# specs LUA BUILD_DIR [K N]: the specs with one interpreter and one build (part K of N).
# Specs tagged #once test what is the same whatever Lua runs busted: the sandbox's own limits,
# the nginx side (nginx's LuaJIT always loads build51/), pages in a headless browser. They
# run with Lua 5.4 only.
specs() {
    local lua=$1 build=$2 files once=()
    [[ $lua == lua5.4 ]] || once=(--exclude-tags=once)
    if (($# == 4)); then # every Nth file from the Kth, in name order: the parts come out even
        files=$(ls spec/*_spec.lua | awk -v k="$3" -v n="$4" 'NR % n == k % n')
    else
        files=spec
    fi
    # shellcheck disable=SC2086 # the file list splits on purpose
    env LUA_CPATH="$build/?.so;;" "$lua" /usr/bin/busted "${once[@]}" $files
}

# The sanitizer runtimes are preloaded into lua5.4 only; the sandbox launcher starts nginx
# without them. Leak checking covers the module: anything it loses is a direct leak.
# LeakSanitizer's own stop-the-world tracer now and then crashes at exit ("Tracer caught
# signal 11", "LeakSanitizer has encountered a fatal error"): a known sanitizer flake
# (google/sanitizers#1353), not a leak report. Only on exactly that, with no sanitizer report,
# the run is repeated once, and the log says so.
sanitized_specs() {
    local out rc asan ubsan
    asan=$(gcc -print-file-name=libasan.so)
    ubsan=$(gcc -print-file-name=libubsan.so)
    run() {
        env LD_PRELOAD="$asan $ubsan" ASAN_OPTIONS="detect_leaks=1:exitcode=23" \
            LSAN_OPTIONS="suppressions=$PWD/spec/lsan.supp:print_suppressions=0" \
            UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1" \
            LUA_CPATH="build-asan/?.so;;" lua5.4 /usr/bin/busted spec/1*_spec.lua spec/2*_spec.lua
    }
    out=$(mktemp)
    run >"$out" 2>&1; rc=$?
    if ((rc != 0)) && grep -q "LeakSanitizer has encountered a fatal error" "$out" &&
       ! grep -qE "ERROR: (LeakSanitizer|AddressSanitizer)|runtime error:" "$out"; then
        echo "note: LeakSanitizer's tracer crashed at exit (no leak report); running the suite again once"
        run >"$out" 2>&1; rc=$?
    fi
    cat "$out"
    rm -f "$out"
    return $rc
}

# `cmake --install` gives a tree that LUA_PATH/LUA_CPATH can point at: flowmusic and its core
# load from the prefix (run outside the source tree; the system paths are kept for cjson).
cmake_install() {
    local prefix rc
    prefix=$(mktemp -d "${TMPDIR:-/tmp}/flowmusic-install.XXXXXX")
    cmake --install build --prefix "$prefix" &&
    (cd "$prefix" &&
     LUA_PATH="$prefix/share/lua/5.4/?.lua;$prefix/share/lua/5.4/?/init.lua;;" \
     LUA_CPATH="$prefix/lib/lua/5.4/?.so;;" FM_PREFIX="$prefix" lua5.4 -e '
        local prefix = os.getenv "FM_PREFIX"
        local flowmusic = require "flowmusic"
        assert(flowmusic._VERSION and flowmusic.new, "flowmusic did not load")
        for _, m in ipairs { { "flowmusic", package.path }, { "flowmusic.core", package.cpath } } do
          local where = assert(package.searchpath(m[1], m[2]))
          assert(where:sub(1, #prefix + 1) == prefix .. "/", m[1] .. " loaded from " .. where)
        end
        print("installed flowmusic " .. flowmusic._VERSION .. " loads from " .. prefix)') &&
    [[ -x $prefix/bin/flowmusic ]]
    rc=$?
    rm -rf "$prefix"
    return $rc
}

export -f specs sanitized_specs cmake_install

t_all=$(date +%s)
# The 5.4 suite is the longest (it alone runs the #once specs): in parts, side by side.
parts=$((quick ? 3 : 2))
for ((k = 1; k <= parts; k++)); do start "specs, Lua 5.4, part $k of $parts" specs lua5.4 build "$k" "$parts"; done
start "luacheck lua bin spec: zero warnings" bash scripts/lint.sh
start "monitoring pack: promtool check rules, test rules" bash monitoring/check.sh
if ((!quick)); then
    start "specs, Lua 5.1 API build under lua5.1" specs lua5.1 build51
    start "client specs under ASan+UBSan" sanitized_specs
    start "specs, Lua 5.2" specs lua5.2 build52
    start "specs, Lua 5.3" specs lua5.3 build53
    # /usr/bin/busted is a Lua 5.1 script: luajit runs it, finding busted, luassert, cjson and
    # LuaSocket through its default paths (/usr/share/lua/5.1, /usr/lib/<triplet>/lua/5.1).
    start "specs, LuaJIT (luajit, 5.1 API build)" specs luajit build51
    # One after another: the rockspec check compares the tree before and after `luarocks make`,
    # so nothing of theirs may write into it meanwhile (LDoc writes docs/api/).
    start "rockspec installs offline" bash scripts/check-rockspec.sh \
       -- "cmake --install into a scratch prefix" cmake_install \
       -- "the demo (scripts/demo.sh) runs" bash scripts/demo.sh \
       -- "API reference (LDoc, docs/api/): zero warnings" bash scripts/docs.sh
fi
wait

for id in "${!names[@]}"; do report "$id"; done
echo "all suites: $(($(date +%s) - t_all)) s of wall time"
echo "$passed passed, $failed failed"
((failed == 0))
