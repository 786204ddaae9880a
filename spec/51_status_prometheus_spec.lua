-- A real Prometheus server scrapes the example nginx's /metrics (flowmusic.ngx.metrics in
-- front of a private sandbox) every second; its HTTP API then answers the sandbox's values.
-- promtool checks the /metrics answer. Everything runs on free loopback ports in private
-- directories and is stopped by pid.
local cjson = require "cjson"
local socket = require "socket"
local openresty = require "spec.helpers.openresty"
local sandbox = require "spec.helpers.sandbox"
local metrics = require "spec.helpers.metrics"
local prometheus = require "spec.helpers.prometheus"

local repo = openresty.repo_dir()

local missing
if not prometheus.available() or not metrics.have_promtool() then
  missing = "prometheus and promtool are missing (apt-get install prometheus; scripts/setup.sh --test does)"
elseif not openresty.read_file(repo .. "/build51/flowmusic/core.so") then
  missing = "build51/flowmusic/core.so is missing: cmake -S . -B build51 -DLUA_VERSION=5.1 && cmake --build build51"
elseif not openresty.read_file(openresty.NGINX) then
  missing = "nginx is missing (apt-get install nginx-core libnginx-mod-http-lua lua-resty-core)"
end
if missing then
  describe("Prometheus scraping flowmusic", function() pending(missing) end)
  return
end

local alive = prometheus.alive

-- Start Prometheus scraping `target` (host:port) every second, in a private directory.
local function start_prometheus(target)
  return prometheus.start { targets = { { job = "flowmusic", target = target } } }
end

-- Wait (bounded) until fn() returns a true value; that value, or nil after `seconds`.
local function eventually(seconds, fn)
  local deadline = socket.gettime() + seconds
  repeat
    local v = fn()
    if v then return v end
    socket.sleep(0.1)
  until socket.gettime() > deadline
  return nil
end

describe("Prometheus scraping the example nginx's /metrics", function()
  local sb, srv, prom

  setup(function()
    sb = sandbox.start {}
    sb:seed(3)
    sb:api("POST", "/accounts", { json = { refresh_token = "sandbox:low:low@sandbox.test" } })
    local pid, started = openresty.self_pid()
    srv = openresty.start { conf = metrics.example_conf { interval = 60, workers = 1,
      watch_pid = pid, watch_start = started },
      env = { USEAPI_TOKEN = sb.token, FLOWMUSIC_BASE_URL = sb.base_url } }
    assert(eventually(15, function()
      local code, body = srv:get("/metrics")
      return code == 200 and metrics.parse(body):value("flowmusic_status_success") == 1
    end), "nginx never had the status; error log:\n" .. srv:error_log())
  end)

  teardown(function()
    if prom then prom:stop() end
    if srv then srv:stop() end
    if sb then sb:stop() end
  end)

  it("promtool accepts the /metrics answer", function()
    local code, body = srv:get("/metrics")
    assert.equal(200, code)
    local ok, out = metrics.promtool(body)
    assert(ok, out)
  end)

  it("Prometheus scrapes it and answers flowmusic_account_credits_remaining with the sandbox's values", function()
    prom = start_prometheus("127.0.0.1:" .. srv.port)
    assert(eventually(30, function() return prom:get("/-/ready") == 200 end),
      "Prometheus never became ready:\n" .. prom:log())
    local want = { ["seed-01@sandbox.test"] = 5000, ["seed-02@sandbox.test"] = 5000,
      ["seed-03@sandbox.test"] = 5000, ["low@sandbox.test"] = 3 }
    local got
    local ok = eventually(30, function()
      local code, doc = prom:get("/api/v1/query?query=flowmusic_account_credits_remaining")
      if code ~= 200 or type(doc) ~= "table" or doc.status ~= "success" then return false end
      got = {}
      for _, r in ipairs(doc.data.result) do
        assert.equal("flowmusic", r.metric.job)
        got[r.metric.email] = tonumber(r.value[2])
      end
      local n = 0
      for _ in pairs(got) do n = n + 1 end
      return n == 4
    end)
    assert(ok, "Prometheus never had the four series; last answer: " .. cjson.encode(got or {})
      .. "\n" .. prom:log())
    assert.same(want, got)
    local code, doc = prom:get("/api/v1/query?query=flowmusic_status_success")
    assert.equal(200, code)
    assert.equal("1", doc.data.result[1].value[2])
    code, doc = prom:get("/api/v1/query?query=up")
    assert.equal(200, code)
    assert.equal("1", doc.data.result[1].value[2])   -- every scrape parsed
    prom:stop()
    assert.is_false(alive(prom.pid))
  end)
end)
