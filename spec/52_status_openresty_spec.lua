-- Fleet status inside nginx: flowmusic.ngx.metrics as examples/nginx/nginx.conf sets it up
-- (`location = /metrics`), with two workers, in front of a private sandbox. The spec process
-- only drives HTTP; the refreshes run in nginx (timer -> thread pool).
local cjson = require "cjson"
local socket = require "socket"
local openresty = require "spec.helpers.openresty"
local sandbox = require "spec.helpers.sandbox"
local metrics = require "spec.helpers.metrics"

local repo = openresty.repo_dir()
local API_TOKEN = "user:6262-NginxMetricsSecret4"

local missing
if not openresty.read_file(repo .. "/build51/flowmusic/core.so") then
  missing = "build51/flowmusic/core.so is missing: cmake -S . -B build51 -DLUA_VERSION=5.1 && cmake --build build51"
elseif not openresty.read_file(openresty.NGINX)
  or not openresty.read_file(openresty.MODULES .. "/ngx_http_lua_module.so") then
  missing = "nginx or ngx_http_lua_module is missing (apt-get install nginx-core libnginx-mod-http-lua lua-resty-core)"
end
if missing then
  describe("flowmusic.ngx.metrics in nginx", function() pending(missing) end)
  return
end

-- A test-only location: everything in the metrics dict (to show no secret is in it).
local DICT_LOCATION = [[
        location = /t/dict {
            content_by_lua_block {
                local d = ngx.shared.flowmusic_metrics
                local out = {}
                for _, k in ipairs(d:get_keys(0)) do out[#out + 1] = { k, tostring(d:get(k)) } end
                ngx.say(require("cjson").encode(out))
            }
        }
        location = /t/misuse {
            content_by_lua_block {
                local metrics = require "flowmusic.ngx.metrics"
                local out = {}
                for _, o in ipairs({ { intervall = 1 }, { interval = 0 }, { dict = "nope" },
                    { min_credits = -1 }, { client = 5 }, "x" }) do
                    local ok, err = pcall(metrics.start, o)
                    out[#out + 1] = ok and "ok" or tostring(err)
                end
                ngx.say(require("cjson").encode(out))
            }
        }
]]

-- Wait (bounded) until fn() returns a true value; that value, or nil after `seconds`.
local function eventually(seconds, fn)
  local deadline = socket.gettime() + seconds
  repeat
    local v = fn()
    if v then return v end
    socket.sleep(0.05)
  until socket.gettime() > deadline
  return nil
end

-- Start the example nginx on sandbox sb.
local function start_nginx(sb, o)
  local pid, started = openresty.self_pid()
  local conf = metrics.example_conf { interval = o.interval, workers = o.workers, start = o.start,
    watch_pid = pid, watch_start = started, locations = DICT_LOCATION }
  return openresty.start { conf = conf, env = { USEAPI_TOKEN = sb.token, FLOWMUSIC_BASE_URL = sb.base_url } }
end

-- GET /metrics, parsed.
local function scrape(srv)
  local code, body, headers = srv:get("/metrics")
  assert.equal(200, code, body)
  return metrics.parse(body), body, headers
end

-- The worker pids of an nginx master.
local function workers_of(pid)
  local kids = openresty.read_file("/proc/" .. pid .. "/task/" .. pid .. "/children") or ""
  local t = {}
  for p in kids:gmatch("%d+") do t[#t + 1] = tonumber(p) end
  return t
end

local function list_calls(sb)
  return sb:requests().by["GET /v1/flowmusic/accounts"] or 0
end

describe("flowmusic.ngx.metrics in nginx (two workers, one refresh per interval) #once", function()
  local sb, srv, broken, low

  setup(function()
    sb = sandbox.start { token = API_TOKEN }
    sb:seed(3)
    broken, low = "broken@sandbox.test", "low@sandbox.test"
    sb:api("POST", "/accounts", { json = { refresh_token = "sandbox:broken:" .. broken } })
    sb:api("POST", "/accounts", { json = { refresh_token = "sandbox:low:" .. low } })
    -- interval long enough that only the first refresh happens during these tests
    srv = start_nginx(sb, { interval = 3600, workers = 2, start = "min_credits = 10" })
    assert(eventually(15, function() return scrape(srv):value("flowmusic_status_success") == 1 end),
      "no successful refresh; error log:\n" .. srv:error_log())
  end)

  teardown(function()
    if srv then srv:stop() end
    if sb then sb:stop() end
  end)

  it("serves the sandbox's accounts in the Prometheus text format", function()
    local m, body, headers = scrape(srv)
    assert.matches("text/plain; version=0.0.4", headers["content-type"], 1, true)
    assert.equal(5000, m:value("flowmusic_account_credits_remaining", { email = "seed-01@sandbox.test" }))
    assert.equal(3, m:value("flowmusic_account_credits_remaining", { email = low }))
    assert.equal(1, m:value("flowmusic_account_needs_reauth", { email = broken }))
    assert.equal(0, m:value("flowmusic_account_up", { email = broken, tier = "unknown" }))
    assert.equal(3, m:value("flowmusic_accounts", { state = "ok" }))
    assert.equal(1, m:value("flowmusic_accounts", { state = "low_credits" }))
    assert.equal(1, m:value("flowmusic_accounts", { state = "needs_reauth" }))
    assert.truthy(m:value("flowmusic_status_age_seconds") >= 0)
    assert.truthy(m:value("flowmusic_status_timestamp_seconds") > 1.7e9)
    assert.equal("counter", m.type.flowmusic_requests_total)
    assert.equal(1, m:value("flowmusic_requests_total", { op = "list_accounts", outcome = "ok" }))
    assert.equal(5, m:value("flowmusic_requests_total", { op = "get_account", outcome = "ok" }))
    if metrics.have_promtool() then
      local ok, out = metrics.promtool(body)
      assert(ok, out)
    end
  end)

  it("runs two workers that refreshed once, not once each", function()
    assert(eventually(5, function() return #workers_of(srv.pid) == 2 end), "nginx has not two workers")
    socket.sleep(1) -- time for a second refresh, were there one (both workers are up)
    assert.equal(1, list_calls(sb))
    assert.equal(1, sb:requests().by["GET /v1/flowmusic/accounts/seed-01%40sandbox.test"])
  end)

  it("answers 50 scrapes in a second without any API request", function()
    local before = sb:requests().total
    for _ = 1, 50 do
      local m = scrape(srv)
      assert.equal(1, m:value("flowmusic_status_success"))
    end
    assert.equal(before, sb:requests().total)
  end)

  it("counts the requests of every worker in flowmusic_requests_total{op,outcome}", function()
    local function gets(outcome)
      return scrape(srv):value("flowmusic_requests_total", { op = "get_account", outcome = outcome }) or 0
    end
    local ok0, err0 = gets("ok"), gets("http_error")
    for _ = 1, 10 do
      local code = srv:get("/credits/seed-02@sandbox.test")
      assert.equal(200, code)
    end
    local code = srv:get("/credits/nobody@sandbox.test")
    assert.equal(404, code)
    assert.equal(ok0 + 10, gets("ok"))
    assert.equal(err0 + 1, gets("http_error"))
  end)

  it("start raises on misuse", function()
    local code, body = srv:get("/t/misuse")
    assert.equal(200, code, body)
    local out = cjson.decode(body)
    local want = {
      "bad argument #1 to 'start' (unknown option 'intervall')",
      "bad argument #1 to 'start' (interval must be a positive number of seconds)",
      "no lua_shared_dict 'nope'",
      "bad argument #1 to 'start' (min_credits must be a non-negative number)",
      "bad argument #1 to 'start' (client must be a table of options or a function)",
      "bad argument #1 to 'start' (options must be a table)",
    }
    assert.equal(#want, #out)
    for i, w in ipairs(want) do assert.matches("flowmusic.ngx.metrics: " .. w, out[i], 1, true) end
    -- the settings of start() in init_worker are still in force
    assert.equal(1, scrape(srv):value("flowmusic_status_success"))
  end)

  it("keeps the API token out of the answer, the shared dict and the error log", function()
    local _, body = scrape(srv)
    local code, dict = srv:get("/t/dict")
    assert.equal(200, code)
    assert.truthy(#cjson.decode(dict) > 0)
    for _, text in ipairs({ body, dict, srv:error_log() }) do
      assert.is_nil(text:find(API_TOKEN, 1, true))
      assert.is_nil(text:find("6262-NginxMetricsSecret4", 1, true))
    end
  end)
end)

describe("flowmusic.ngx.metrics in nginx (short interval) #once", function()
  local sb, srv
  local INTERVAL = 0.5 -- as short as a refresh of two accounts allows on a loaded machine

  setup(function()
    sb = sandbox.start { token = API_TOKEN }
    sb:seed(2)
  end)

  teardown(function()
    if srv then srv:stop() end
    if sb then sb:stop() end
  end)

  it("two workers refresh once per interval, not twice", function()
    local t0 = socket.gettime()
    srv = start_nginx(sb, { interval = INTERVAL, workers = 2 })
    assert(eventually(5, function() return #workers_of(srv.pid) == 2 end), "nginx has not two workers")
    assert(eventually(20, function() return list_calls(sb) >= 6 end), "fewer than 6 refreshes")
    local elapsed = socket.gettime() - t0
    -- one timer: at most one refresh at start and one per interval since; one timer per
    -- worker would have made about twice as many by now
    assert.is_true(list_calls(sb) <= elapsed / INTERVAL + 2,
      ("%d refreshes in %.2f s"):format(list_calls(sb), elapsed))
  end)

  it("reports data older than 3 x interval as stale: success 0 and its age", function()
    assert(eventually(10, function() return scrape(srv):value("flowmusic_status_success") == 1 end))
    -- every list call now takes 3 s (twice the stale age): the refresh in flight holds the
    -- lock, no data arrives
    sb:fault { fault = "latency", ms = 3000, method = "GET", path = "/v1/flowmusic/accounts", count = 0 }
    local m = eventually(12, function()
      local p = scrape(srv)
      return p:value("flowmusic_status_success") == 0 and p
    end)
    assert(m, "the data never went stale")
    assert.is_true(m:value("flowmusic_status_age_seconds") > 3 * INTERVAL)
    assert.truthy(m:value("flowmusic_status_timestamp_seconds"))
    -- the old values are still there, marked by success 0 and the age
    assert.equal(5000, m:value("flowmusic_account_credits_remaining", { email = "seed-01@sandbox.test" }))
    sb:clear_faults()
    assert(eventually(15, function() return scrape(srv):value("flowmusic_status_success") == 1 end),
      "fresh data never came back")
  end)

  it("a worker killed in the middle of a refresh does not block the next ones", function()
    assert(eventually(10, function() return scrape(srv):value("flowmusic_status_success") == 1 end))
    local calls = list_calls(sb)
    sb:fault { fault = "latency", ms = 10000, method = "GET", path = "/v1/flowmusic/accounts", count = 1 }
    -- wait for the slow list call to be in flight; the dict names the worker holding the lock
    assert(eventually(10, function() return list_calls(sb) > calls end))
    local holder = eventually(5, function()
      local _, dict = srv:get("/t/dict")
      for _, kv in ipairs(cjson.decode(dict)) do
        if kv[1] == "status:lock" then return tonumber(kv[2]) end
      end
    end)
    assert(holder, "no refresh holds the lock")
    local killed_at = socket.gettime()
    assert(os.execute("kill -KILL " .. holder))
    -- nginx starts a new worker 0; it takes the dead worker's lock over and refreshes
    local m = eventually(8, function()
      local p = scrape(srv)
      local ts = p:value("flowmusic_status_timestamp_seconds")
      return p:value("flowmusic_status_success") == 1 and ts and ts > killed_at and p
    end)
    assert(m, "no fresh refresh after the worker was killed; error log:\n" .. srv:error_log())
    assert(eventually(5, function() return #workers_of(srv.pid) == 2 end), "nginx has not two workers")
  end)

  it("a failed refresh gives success 0 at once, and the failure is logged", function()
    sb:fault { fault = "status", code = 401, method = "GET", path = "/v1/flowmusic/accounts", count = 0 }
    local m = eventually(10, function()
      local p = scrape(srv)
      return p:value("flowmusic_status_success") == 0 and p
    end)
    assert(m, "success never went to 0")
    assert.truthy(m:value("flowmusic_requests_total", { op = "list_accounts", outcome = "http_error" }) >= 1)
    assert.matches("flowmusic.ngx.metrics: status refresh failed: flowmusic: http 401 on GET /accounts",
      srv:error_log(), 1, true)
    assert.is_nil(srv:error_log():find(API_TOKEN, 1, true))
    sb:clear_faults()
    assert(eventually(10, function() return scrape(srv):value("flowmusic_status_success") == 1 end))
  end)
end)

describe("flowmusic.ngx.metrics in nginx: change events to notify #once", function()
  local sb, srv
  -- notify appends each event to a file, or refuses while a flag file exists
  local NOTIFY = [[notify = function(event, json)
      local refuse = io.open("@PREFIX@/refuse")
      if refuse then refuse:close() return false end
      local f = assert(io.open("@PREFIX@/events.jsonl", "a"))
      f:write(json, "\n")
      f:close()
      return true
    end]]

  local function received()
    local list = {}
    for line in (openresty.read_file(srv.dir .. "/events.jsonl") or ""):gmatch("[^\n]+") do
      local e = cjson.decode(line)
      list[#list + 1] = e.email .. " " .. e.event
    end
    return list
  end

  local function refreshes()
    return scrape(srv):value("flowmusic_requests_total", { op = "list_accounts", outcome = "ok" }) or 0
  end

  setup(function()
    sb = sandbox.start { token = API_TOKEN }
    sb:seed(2)
    srv = start_nginx(sb, { interval = 0.5, workers = 2, start = NOTIFY })
  end)

  teardown(function()
    if srv then srv:stop() end
    if sb then sb:stop() end
  end)

  it("calls notify once per change, keeps refused events for the next refresh, and stores no token", function()
    local A, B = "seed-01@sandbox.test", "seed-02@sandbox.test"
    assert(eventually(15, function() return #received() == 2 end), srv:error_log())
    local start = refreshes()
    assert(eventually(15, function() return refreshes() >= start + 3 end), "no further refreshes")
    assert.same({ A .. " appeared", B .. " appeared" }, received()) -- not once per refresh

    assert(io.open(srv.dir .. "/refuse", "w")):close()
    sb:api("POST", "/accounts", { json = { refresh_token = "sandbox:broken:" .. A } })
    start = refreshes()
    assert(eventually(15, function() return refreshes() >= start + 3 end), "no further refreshes")
    assert.equal(2, #received())
    local code, dict = srv:get("/t/dict")
    assert.equal(200, code)
    assert.truthy(dict:find("needs_reauth", 1, true), "the refused event is kept in the dict")
    assert.is_nil(dict:find(API_TOKEN, 1, true))

    os.remove(srv.dir .. "/refuse")
    assert(eventually(15, function() return #received() == 3 end), srv:error_log())
    sb:api("POST", "/accounts", { json = { refresh_token = "sandbox:plus:" .. A } })
    assert(eventually(15, function() return #received() == 4 end), srv:error_log())
    start = refreshes()
    assert(eventually(15, function() return refreshes() >= start + 2 end), "no further refreshes")
    assert.same({ A .. " appeared", B .. " appeared", A .. " needs_reauth", A .. " recovered" }, received())
  end)
end)
