--- flowmusic benchmarks: measure flowmusic and its peers side by side, in one run, against a
-- private sandbox, and print ratios. Run through bench/run.sh (it builds raw_libcurl first).
-- Not a test: no thresholds fail anything; the targets are printed beside the figures.
local core = require "flowmusic.core"
local flowmusic = require "flowmusic"
local sandbox = require "spec.helpers.sandbox"
local http = require "socket.http"
local ltn12 = require "ltn12"

local RAW = assert(os.getenv("RAW_LIBCURL"), "RAW_LIBCURL must name the raw_libcurl binary")
local N_SEQ = tonumber(os.getenv("BENCH_SEQ") or "3000")
local N_RSS = tonumber(os.getenv("BENCH_RSS") or "100000")
local REPEAT = 3
local now = core.now
local tmp = os.tmpname()

local function sh(cmd)
  local p = assert(io.popen(cmd))
  local out = p:read("*a")
  local ok = p:close()
  assert(ok, "command failed: " .. cmd:sub(1, 80))
  return out
end
local function timed(f) local t0 = now(); f(); return now() - t0 end
local function median(f, n)
  local xs = {}
  for i = 1, n or REPEAT do xs[i] = f() end
  table.sort(xs)
  return xs[math.floor((#xs + 1) / 2)]
end
local function q(s) return "'" .. s:gsub("'", "'\\''") .. "'" end
local function esc(s) return (s:gsub("[^%w%-%._~]", function(c) return ("%%%02X"):format(c:byte()) end)) end
local function rss_kib()
  for line in io.lines("/proc/self/status") do
    local kb = line:match("^VmRSS:%s+(%d+)")
    if kb then return tonumber(kb) end
  end
end
local PY = "/usr/bin/python3"

local rows = {}
local function report(section, name, value, unit, ratio, note)
  rows[#rows + 1] = { section, name, value, unit, ratio, note }
  io.stderr:write(("  %-44s %12.3f %-8s %s\n"):format(name, value, unit, ratio and ("ratio %.3f"):format(ratio) or ""))
end

local sb = sandbox.start {}
local ok, err = pcall(function()
  local client = flowmusic.new { token = sb.token, base_url = sb.base_url }
  local emails = sb:seed(50)
  local email = emails[1]
  local one_url = sb.base_url .. "/accounts/" .. esc(email)
  local auth = "Authorization: Bearer " .. sb.token

  -------------------------------------------------------------------- (1) sequential calls/s
  io.stderr:write(("(1) %d sequential keep-alive get_account calls\n"):format(N_SEQ))
  for _ = 1, 300 do assert(client:get_account(email)) end
  -- flowmusic and the raw loop alternate, so a drift of the machine hits both alike.
  local fm_runs, raw_runs = {}, {}
  for i = 1, 2 * REPEAT + 1 do
    fm_runs[i] = timed(function() for _ = 1, N_SEQ do assert(client:get_account(email)) end end)
    raw_runs[i] = tonumber(sh(RAW .. " " .. q(one_url) .. " " .. q(sb.token) .. " " .. N_SEQ):match("^(%S+)"))
  end
  local fm = median(function() return table.remove(fm_runs) end, #fm_runs)
  local raw = median(function() return table.remove(raw_runs) end, #raw_runs)
  local cfg = assert(io.open(tmp, "w"))
  cfg:write(("header = %q\n"):format(auth))
  for _ = 1, N_SEQ do cfg:write(("url = %q\n"):format(one_url)) end
  cfg:close()
  local curl_cli = median(function() return timed(function() sh("curl -s -K " .. q(tmp) .. " >/dev/null") end) end)
  local py = median(function() return tonumber(sh(PY .. " -c " .. q(([[
import requests, time
s = requests.Session(); s.headers['Authorization'] = %q
s.get(%q)
t = time.monotonic()
for _ in range(%d): r = s.get(%q); r.json()
print(time.monotonic() - t)]]):format("Bearer " .. sb.token, one_url, N_SEQ, one_url)))) end)
  local n_ls = math.floor(N_SEQ / 3)
  local luasocket = median(function() return timed(function()
    for _ = 1, n_ls do
      local body = {}
      local _, code = http.request { url = one_url, headers = { Authorization = "Bearer " .. sb.token }, sink = ltn12.sink.table(body) }
      assert(code == 200)
    end
  end) * N_SEQ / n_ls end)
  report(1, "flowmusic get_account", N_SEQ / fm, "calls/s", raw / fm, "target >= 0.9 x raw libcurl")
  report(1, "raw libcurl C loop (the limit)", N_SEQ / raw, "calls/s", 1)
  report(1, "curl CLI, one process, keep-alive", N_SEQ / curl_cli, "calls/s", raw / curl_cli)
  report(1, "Python requests.Session (+ .json())", N_SEQ / py, "calls/s", raw / py)
  report(1, "LuaSocket socket.http (no keep-alive)", N_SEQ / luasocket, "calls/s", raw / luasocket)

  -- Client-side cost, independent of the machine's load: instructions per call counted by
  -- callgrind (the difference of two runs of different lengths cancels start-up).
  if os.execute("command -v valgrind >/dev/null 2>&1") then
    local script = os.tmpname()
    local f = assert(io.open(script, "w"))
    f:write(("local c = require('flowmusic').new{token=%q, base_url=%q}\n"):format(sb.token, sb.base_url),
      ("for _ = 1, tonumber(arg[1]) do assert(c:get_account(%q)) end\n"):format(email))
    f:close()
    local function instructions(cmd)
      local out = sh("valgrind --tool=callgrind --callgrind-out-file=/dev/null " .. cmd .. " 2>&1")
      return tonumber((out:match("Collected : (%d+)")))
    end
    local function per_call(cmd_of)
      return (instructions(cmd_of(1500)) - instructions(cmd_of(500))) / 1000
    end
    local fm_ir = per_call(function(n) return "lua5.4 " .. q(script) .. " " .. n end)
    local raw_ir = per_call(function(n) return RAW .. " " .. q(one_url) .. " " .. q(sb.token) .. " " .. n end)
    os.remove(script)
    report(1, "flowmusic get_account: client instructions", fm_ir / 1000, "k/call", fm_ir / raw_ir,
      "target <= 125 k/call")
    report(1, "raw libcurl loop: client instructions", raw_ir / 1000, "k/call", 1)
  end

  ------------------------------------------------------- (2) 50 set_max_jobs at 200 ms latency
  io.stderr:write("(2) 50 set_max_jobs calls, 200 ms server latency\n")
  sb:fault { fault = "latency", ms = 200, method = "POST", path = "/v1/flowmusic/accounts", count = 0 }
  local calls = {}
  for i, e in ipairs(emails) do calls[i] = { "set_max_jobs", e, (i % 16) + 1 } end
  local fm_batch = median(function() return timed(function()
    for _, r in ipairs(client:batch(calls, { concurrency = 50 })) do assert(r.ok, tostring(r.err)) end
  end) end)
  cfg = assert(io.open(tmp, "w"))
  for i, e in ipairs(emails) do
    if i > 1 then cfg:write("next\n") end
    cfg:write(("silent\nurl = %q\nheader = %q\nheader = \"Content-Type: application/json\"\ndata = %q\noutput = \"/dev/null\"\n")
      :format(sb.base_url .. "/accounts", auth, ('{"email":"%s","maxJobs":%d}'):format(e, (i % 16) + 1)))
  end
  cfg:close()
  local curl_par = median(function() return timed(function() sh("curl -s --parallel --parallel-max 50 -K " .. q(tmp)) end) end)
  local py_threads = median(function() return tonumber(sh(PY .. " -c " .. q(([[
import requests, time, threading, json
emails = json.loads(%q)
def one(i, e):
    r = requests.post(%q, json={'email': e, 'maxJobs': (i %% 16) + 1}, headers={'Authorization': %q}); r.json()
ts = [threading.Thread(target=one, args=(i + 1, e)) for i, e in enumerate(emails)]
t = time.monotonic()
for th in ts: th.start()
for th in ts: th.join()
print(time.monotonic() - t)]]):format(require("cjson").encode(emails), sb.base_url .. "/accounts", "Bearer " .. sb.token)))) end)
  sb:clear_faults()
  report(2, "flowmusic batch, concurrency 50", fm_batch, "s", fm_batch / 0.2, "target <= 1.1 x ideal 0.2 s")
  report(2, "curl --parallel --parallel-max 50", curl_par, "s", curl_par / 0.2)
  report(2, "Python, 50 threads", py_threads, "s", py_threads / 0.2)

  ------------------------------------------------------------- (3) 5 MB usage document
  sb:usage(email, 20000)
  local usage_url = sb.base_url .. "/accounts/usage?email=" .. esc(email)
  local body = sh("curl -s -H " .. q(auth) .. " " .. q(usage_url))
  io.stderr:write(("(3) usage document of %.1f MB: get + decode\n"):format(#body / 1e6))
  local fm_usage = median(function() return timed(function() assert(client:get_usage(email)) end) end, 7)
  -- The same request as flowmusic's: it offers compression for usage documents.
  local raw_get = median(function() return tonumber(sh(RAW .. " " .. q(usage_url) .. " " .. q(sb.token) .. " 1 gzip"):match("^(%S+)")) end, 7)
  local cjson = require "cjson"
  local decode = median(function() return timed(function() cjson.decode(body) end) end, 7)
  report(3, "flowmusic get_usage (get + decode)", fm_usage * 1000, "ms", fm_usage / (raw_get + decode), "target <= 1.15 x raw")
  report(3, "raw libcurl GET (gzip offered) + cjson.decode", (raw_get + decode) * 1000, "ms", 1)
  report(3, "  of which raw libcurl GET", raw_get * 1000, "ms")
  report(3, "  of which cjson.decode", decode * 1000, "ms")
  sb:usage(email, 0)

  ----------------------------------------------------------------------- (4) RSS growth
  io.stderr:write(("(4) RSS over %d calls\n"):format(N_RSS))
  for _ = 1, 2000 do assert(client:get_account(email)) end
  collectgarbage(); collectgarbage()
  local before = rss_kib()
  local t = timed(function() for _ = 1, N_RSS do assert(client:get_account(email)) end end)
  collectgarbage(); collectgarbage()
  local after = rss_kib()
  report(4, "RSS before", before / 1024, "MiB")
  report(4, ("RSS after %d get_account calls"):format(N_RSS), after / 1024, "MiB")
  report(4, "RSS growth", (after - before) / 1024, "MiB", nil, "target < 1 MiB")
  report(4, "(throughput during the run)", N_RSS / t, "calls/s")
  ------------------------------------------------ (5) decoding bound: 60 MB of nested arrays
  -- Each in a fresh process, so VmHWM (peak RSS) is this decode's alone.
  io.stderr:write("(5) a 60 MB body of nested empty arrays: peak RSS\n")
  sb:fault { fault = "wide_json", mb = 60, method = "GET", path = "/v1/flowmusic/big", count = 0 }
  local function peak(script)
    local out = sh("lua5.4 -e " .. q(([[
      local function hwm() for l in io.lines("/proc/self/status") do
        local kb = l:match("^VmHWM:%%s+(%%d+)") if kb then return tonumber(kb) end end end
      local before = hwm()
      local t0 = require("flowmusic.core").now()
      %s
      io.write(before, " ", hwm(), " ", require("flowmusic.core").now() - t0, " ", what)]]):format(script)))
    local before, after, secs, what = out:match("^(%d+) (%d+) (%S+) (.*)$")
    return (tonumber(after) - tonumber(before)) / 1024, tonumber(secs), what
  end
  local fm_peak, fm_secs, fm_what = peak(([[
      local c = require("flowmusic").new { token = %q, base_url = %q }
      local v, err = c:request("GET", "/big")
      local what = err and (err.kind .. "/" .. tostring(err.reason)) or "decoded"]]):format(sb.token, sb.base_url))
  local cj_peak, cj_secs = peak(([[
      local body = io.popen("curl -s -H %s %s"):read("*a")
      require("cjson").decode(body)
      local what = "decoded"]]):format(q(auth), q(sb.base_url .. "/big")))
  sb:clear_faults()
  report(5, "flowmusic: peak RSS growth (" .. fm_what .. ")", fm_peak, "MiB", fm_peak / cj_peak, "target well under 1 GiB")
  report(5, "  time to refuse it", fm_secs, "s")
  report(5, "cjson.decode of the same body: peak RSS growth", cj_peak, "MiB", 1)
  report(5, "  time to decode it", cj_secs, "s")

  client:close()
end)
sb:stop()
os.remove(tmp)
if not ok then error(err, 0) end

print("| # | measurement | value | unit | ratio | target |")
print("|---|---|---:|---|---:|---|")
for _, r in ipairs(rows) do
  print(("| %d | %s | %.3f | %s | %s | %s |"):format(r[1], r[2], r[3], r[4], r[5] and ("%.3f"):format(r[5]) or "", r[6] or ""))
end
