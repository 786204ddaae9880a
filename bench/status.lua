--- Benchmark of the fleet status: 50 accounts, 300 ms server latency on every
-- GET /accounts/{email}. Reports the wall time of a whole status collection as a ratio to
-- the latency of one get_account call measured in the same run (serial would be ~50).
-- Not a test: nothing fails on a figure.
--
--     LUA_CPATH="build/?.so;;" LUA_PATH="lua/?.lua;lua/?/init.lua;./?.lua;;" lua5.4 bench/status.lua
local core = require "flowmusic.core"
local flowmusic = require "flowmusic"
local status = require "flowmusic.fleet.status"
local sandbox = require "spec.helpers.sandbox"

local ACCOUNTS, LATENCY_MS, REPEAT = 50, 300, 3
local now = core.now

local function median(f, n)
  local xs = {}
  for i = 1, n or REPEAT do xs[i] = f() end
  table.sort(xs)
  return xs[math.floor((#xs + 1) / 2)]
end
local function timed(f) local t0 = now(); f(); return now() - t0 end
local function esc(s) return (s:gsub("[^%w%-%._~]", function(c) return ("%%%02X"):format(c:byte()) end)) end
local function q(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

local rows = {}
local function report(name, value, ratio, note)
  rows[#rows + 1] = { name, value, ratio, note or "" }
  io.stderr:write(("  %-52s %8.3f s  ratio %6.2f\n"):format(name, value, ratio))
end

local sb = sandbox.start {}
local ok, err = pcall(function()
  local emails = sb:seed(ACCOUNTS)
  for _, email in ipairs(emails) do
    sb:fault { fault = "latency", ms = LATENCY_MS, method = "GET", count = 0,
      path = "/v1/flowmusic/accounts/" .. esc(email) }
  end
  local client = flowmusic.new { token = sb.token, base_url = sb.base_url }
  assert(client:list_accounts()) -- warm the connection

  local one = median(function() return timed(function() assert(client:get_account(emails[1])) end) end, 5)
  report("one get_account (the unit)", one, 1)

  local records
  local t = median(function()
    return timed(function() records = assert(status.collect(client)) end)
  end)
  assert(#records == ACCOUNTS)
  for _, r in ipairs(records) do assert(r.state == "ok", r.error) end
  report("status.collect, 50 accounts, default concurrency", t, t / one, "batch default (16)")

  t = median(function()
    return timed(function() records = assert(status.collect(client, { concurrency = 50 })) end)
  end)
  assert(#records == ACCOUNTS)
  report("status.collect, 50 accounts, concurrency 50", t, t / one)

  local cmd = ("USEAPI_TOKEN=%s FLOWMUSIC_BASE_URL=%s lua5.4 bin/flowmusic status --json >/dev/null 2>&1")
    :format(q(sb.token), q(sb.base_url))
  t = median(function() return timed(function() os.execute(cmd) end) end)
  report("flowmusic status (CLI, whole process)", t, t / one, "default --concurrency 8; includes process start")
  t = median(function() return timed(function() os.execute((cmd:gsub("%-%-json", "--json --concurrency 50"))) end) end)
  report("flowmusic status --concurrency 50 (CLI)", t, t / one, "includes process start")
  report("serial: 50 x one call (for comparison)", ACCOUNTS * one, ACCOUNTS)
  client:close()
end)
sb:stop()
if not ok then error(err, 0) end

print(("| measurement | seconds | x one call (%d ms latency) | note |"):format(LATENCY_MS))
print("|---|---:|---:|---|")
for _, r in ipairs(rows) do print(("| %s | %.3f | %.2f | %s |"):format(r[1], r[2], r[3], r[4])) end
