--- Benchmark of the fleet status over TLS: a fresh client (as every cron run is) collects the
-- status of 50 accounts with 50 ms of server latency each, over
--   * TLS with HTTP/2 (requests wait to multiplex on one connection),
--   * TLS with HTTP/1.1 only (a listener without h2: one connection per concurrent request),
--   * plain HTTP/1.1 (no handshake at all),
-- and reports, from the sandbox's own counters, the TLS handshakes and TCP connections each
-- paid, with the wall time as a ratio to the HTTP/2 run measured beside it. On loopback a
-- handshake costs about a millisecond of CPU; over the internet each one is also a round trip
-- or two, so the handshake count is the figure that carries over. Not a test: nothing fails
-- on a figure.
--
--     LUA_CPATH="build/?.so;;" LUA_PATH="lua/?.lua;lua/?/init.lua;./?.lua;;" lua5.4 bench/status_tls.lua
local core = require "flowmusic.core"
local flowmusic = require "flowmusic"
local status = require "flowmusic.fleet.status"
local sandbox = require "spec.helpers.sandbox"
local CA = require "spec.helpers.ca"

local ACCOUNTS, LATENCY_MS, REPEAT = 50, 50, 5
local now = core.now

local function esc(s) return (s:gsub("[^%w%-%._~]", function(c) return ("%%%02X"):format(c:byte()) end)) end
local function median(xs)
  table.sort(xs)
  return xs[math.floor((#xs + 1) / 2)]
end

local ca = CA.new()
local servers = { h2 = sandbox.start { tls = ca }, h1 = sandbox.start { tls = ca, http2 = false } }

-- Seed both sandboxes alike: accounts, and the latency on every account's GET.
for _, sb in pairs(servers) do
  for _, email in ipairs(sb:seed(ACCOUNTS)) do
    sb:fault { fault = "latency", ms = LATENCY_MS, method = "GET", count = 0,
      path = "/v1/flowmusic/accounts/" .. esc(email) }
  end
end

-- One status collection per repetition, each with a fresh client; the sandbox's counters
-- say what it cost. Returns the median wall time and the handshakes/connections of one run.
local function measure(sb, base_url, concurrency)
  local times, handshakes, connections = {}, 0, 0
  for i = 1, REPEAT do
    local before = sb:requests()
    local client = flowmusic.new { token = sb.token, base_url = base_url, cainfo = ca.cert }
    local t0 = now()
    local records = assert(status.collect(client, { concurrency = concurrency }))
    times[i] = now() - t0
    client:close()
    assert(#records == ACCOUNTS)
    for _, r in ipairs(records) do assert(r.state == "ok", r.error) end
    local after = sb:requests()
    handshakes = after.tls_handshakes - before.tls_handshakes
    local seen = 0
    for conn in pairs(after.connections) do if not before.connections[conn] then seen = seen + 1 end end
    connections = seen
  end
  return median(times), handshakes, connections
end

local rows = {}
local ok, err = pcall(function()
  for _, concurrency in ipairs { 16, 50 } do
    local t2, hs2, c2 = measure(servers.h2, servers.h2.tls_base_url, concurrency)
    local t1, hs1, c1 = measure(servers.h1, servers.h1.tls_base_url, concurrency)
    local tp, _, cp = measure(servers.h1, servers.h1.base_url, concurrency)
    for _, r in ipairs {
      { "TLS + HTTP/2", concurrency, hs2, c2, t2 },
      { "TLS + HTTP/1.1", concurrency, hs1, c1, t1 },
      { "plain HTTP/1.1", concurrency, 0, cp, tp },
    } do
      r[6] = r[5] / t2
      rows[#rows + 1] = r
      io.stderr:write(("  %-16s concurrency %2d: %2d handshakes, %2d connections, %.3f s (%.2f x h2)\n")
        :format(r[1], r[2], r[3], r[4], r[5], r[6]))
    end
  end
end)
for _, sb in pairs(servers) do sb:stop() end
ca:remove()
if not ok then error(err, 0) end

print(("Fleet status of %d accounts, %d ms latency each, a fresh client per run (median of %d):")
  :format(ACCOUNTS, LATENCY_MS, REPEAT))
print("| transport | concurrency | TLS handshakes | TCP connections | wall s | x TLS + HTTP/2 |")
print("|---|---:|---:|---:|---:|---:|")
for _, r in ipairs(rows) do print(("| %s | %d | %d | %d | %.3f | %.2f |"):format(table.unpack(r))) end
