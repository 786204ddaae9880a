--- Benchmark: peak memory and wall time of the fleet usage report (`flowmusic usage --all`)
-- over 50 accounts whose usage documents have 20 000 event rows each (about 5 MB of JSON
-- apiece), against a private sandbox.
--
--     lua5.4 bench/usage_all.lua            (from the repository root, after scripts/setup.sh)
--     BENCH_ACCOUNTS=50 BENCH_EVENTS=20000 BENCH_CONCURRENCY=16 lua5.4 bench/usage_all.lua
--
-- Each variant runs in a fresh process, which reads VmRSS from /proc/self/status after loading
-- the modules and making the client (the baseline, before the first call) and VmHWM (peak RSS)
-- at the end:
--   stream  flowmusic.fleet.usage.collect: each document reduced in on_progress and dropped
--   cli     the command itself, in process: usage --all --json (stdout to /dev/null)
--   keep    the naive way: client:batch keeps every document, then they are reduced
-- Not a test: nothing fails on a figure; the target (stream peak <= 64 MiB above the baseline)
-- is printed beside it. The wall time is mostly the sandbox generating each 5 MB document on
-- the same cores (and varies with the machine's load); the client's own CPU time is printed
-- beside it.

if not os.getenv("LUA_CPATH") then package.cpath = "build/?.so;" .. package.cpath end
package.path = "lua/?.lua;lua/?/init.lua;./?.lua;" .. package.path

local function status_kib(field)
  for line in io.lines("/proc/self/status") do
    local kb = line:match("^" .. field .. ":%s+(%d+)")
    if kb then return tonumber(kb) end
  end
end

------------------------------------------------------------------------------- child process
if arg[1] == "child" then
  local mode, base_url, token, concurrency = arg[2], arg[3], arg[4], tonumber(arg[5])
  local flowmusic = require "flowmusic"
  local core = require "flowmusic.core"
  local fleet_usage = require "flowmusic.fleet.usage"
  local cli = require "flowmusic.cli"
  local client = flowmusic.new { token = token, base_url = base_url, timeout = 120, deadline = 600 }
  collectgarbage("collect")
  local base = status_kib("VmRSS")
  local t0, c0 = core.now(), os.clock()
  local charged
  if mode == "stream" then
    local agg = assert(fleet_usage.collect(client, { concurrency = concurrency }))
    assert(agg.total.failed == 0, "an account failed")
    charged = agg.total.charged_credits
  elseif mode == "keep" then
    local list = assert(client:list_accounts())
    local emails, calls = {}, {}
    for email in pairs(list) do emails[#emails + 1] = email end
    table.sort(emails)
    for i, email in ipairs(emails) do calls[i] = { "get_usage", email } end
    local results = client:batch(calls, { concurrency = concurrency })
    local red = fleet_usage.reducer()
    for i, r in ipairs(results) do
      assert(r.ok, tostring(r.err))
      red:add(emails[i], r.value)
    end
    charged = red:result().total.charged_credits
  elseif mode == "cli" then
    io.stdout:close()
    local devnull = assert(io.open("/dev/null", "w"))
    io.output(devnull)
    local real = io.stdout
    io.stdout = devnull -- luacheck: ignore (the command writes to io.stdout)
    local code = cli.main({ "usage", "--all", "--json", "--concurrency", tostring(concurrency) })
    io.stdout = real -- luacheck: ignore
    assert(code == 0, "usage --all exited " .. tostring(code))
    charged = 0
  else
    error("unknown mode " .. tostring(mode))
  end
  local wall, cpu = core.now() - t0, os.clock() - c0
  client:close()
  io.stderr:write(("RESULT %s %d %d %.3f %.6f %.3f\n"):format(mode, base, status_kib("VmHWM"), wall, charged, cpu))
  os.exit(0)
end

------------------------------------------------------------------------------- parent process
local sandbox = require "spec.helpers.sandbox"
local ACCOUNTS = tonumber(os.getenv("BENCH_ACCOUNTS") or "50")
local EVENTS = tonumber(os.getenv("BENCH_EVENTS") or "20000")
local CONCURRENCY = tonumber(os.getenv("BENCH_CONCURRENCY") or "16")
local LUA = ({ ["Lua 5.1"] = "lua5.1", ["Lua 5.4"] = "lua5.4" })[_VERSION] or "lua5.4"

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local sb = sandbox.start {}
local results = {}
local ok, err = pcall(function()
  local emails = sb:seed(ACCOUNTS)
  for _, email in ipairs(emails) do sb:usage(email, EVENTS) end -- control POSTs carry Content-Type: application/json
  io.stderr:write(("%d accounts x %d event rows, concurrency %d, %s\n"):format(ACCOUNTS, EVENTS, CONCURRENCY, LUA))
  local modes = {}
  for m in (os.getenv("BENCH_MODES") or "stream cli keep"):gmatch("%S+") do modes[#modes + 1] = m end
  for _, mode in ipairs(modes) do
    local p = assert(io.popen(("env USEAPI_TOKEN=%s FLOWMUSIC_BASE_URL=%s %s bench/usage_all.lua child %s %s %s %d"
      .. " 2>&1")
      :format(q(sb.token), q(sb.base_url), LUA, mode, q(sb.base_url), q(sb.token), CONCURRENCY)))
    local out = p:read("*a")
    p:close()
    local m, base, hwm, wall, charged, cpu = out:match("RESULT (%S+) (%d+) (%d+) ([%d.]+) ([%d.]+) ([%d.]+)")
    if not m then error("child " .. mode .. " failed: " .. out) end
    results[#results + 1] = { mode = m, base = tonumber(base), hwm = tonumber(hwm), wall = tonumber(wall),
      charged = tonumber(charged), cpu = tonumber(cpu) }
    io.stderr:write(("  %-6s baseline %7.1f MiB, peak %7.1f MiB, peak above baseline %7.1f MiB, wall %6.2f s,"
      .. " cpu %5.2f s\n")
      :format(m, base / 1024, hwm / 1024, (hwm - base) / 1024, tonumber(wall), tonumber(cpu)))
  end
end)
sb:stop()
if not ok then error(err, 0) end

local by = {}
for _, r in ipairs(results) do by[r.mode] = r end
if by.stream and by.keep then
  assert(math.abs(by.stream.charged - by.keep.charged) < 1e-6, "stream and keep disagree on the totals")
end
print(("| variant | peak RSS above the process before the first call | wall time | client CPU | target |"))
print("|---|---|---|---|---|")
local labels = { stream = "`fleet.usage.collect` (reduce and drop each document)",
  cli = "`flowmusic usage --all --json` (in process)", keep = "keep every document, then reduce" }
for _, r in ipairs(results) do
  print(("| %s | %.1f MiB | %.2f s | %.2f s | %s |"):format(labels[r.mode], (r.hwm - r.base) / 1024, r.wall, r.cpu,
    r.mode == "keep" and "(about 420 MiB)" or "<= 64 MiB"))
end
if by.stream and by.keep then
  print(("\nratio keep / stream peak: %.1f; wall stream / keep: %.2f"):format(
    (by.keep.hwm - by.keep.base) / math.max(1, by.stream.hwm - by.stream.base), by.stream.wall / by.keep.wall))
end
