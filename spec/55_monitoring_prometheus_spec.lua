-- The monitoring pack against a real Prometheus: it scrapes the example nginx's /metrics
-- (flowmusic.ngx.metrics in front of a sandbox fleet with one account in error state and one
-- low on credits) and a usage textfile, loads monitoring/alerts.yml (its `for:` windows cut
-- to 1 s, so the spec need not wait minutes) and monitoring/rules.yml, and must show exactly
-- the re-auth and low-credit alerts firing. Every expression of the Grafana dashboard must
-- return data from it. promtool's own checks of the pack run in scripts/test.sh.
local cjson = require "cjson"
local socket = require "socket"
local openresty = require "spec.helpers.openresty"
local sandbox = require "spec.helpers.sandbox"
local metrics = require "spec.helpers.metrics"
local prometheus = require "spec.helpers.prometheus"
local cli = require "spec.helpers.cli"
local host = require "flowmusic.sandbox.host"

local repo = openresty.repo_dir()

local missing
if not prometheus.available() then
  missing = "prometheus is missing (apt-get install prometheus; scripts/setup.sh --test does)"
elseif not openresty.read_file(repo .. "/build51/flowmusic/core.so") then
  missing = "build51/flowmusic/core.so is missing: cmake -S . -B build51 -DLUA_VERSION=5.1 && cmake --build build51"
elseif not openresty.read_file(openresty.NGINX) then
  missing = "nginx is missing (apt-get install nginx-core libnginx-mod-http-lua lua-resty-core)"
end
if missing then
  describe("the monitoring pack in Prometheus #once", function() pending(missing) end)
  return
end

local function eventually(seconds, fn)
  local deadline = socket.gettime() + seconds
  repeat
    local v = fn()
    if v then return v end
    socket.sleep(0.2)
  until socket.gettime() > deadline
  return nil
end

-- Every `expr` in a decoded Grafana dashboard (panels nested in rows included).
local function expressions(dash)
  local list = {}
  local function walk(panels)
    for _, p in ipairs(panels or {}) do
      for _, t in ipairs(p.targets or {}) do
        if type(t.expr) == "string" then list[#list + 1] = { panel = p.title, expr = t.expr } end
      end
      walk(p.panels)
    end
  end
  walk(dash.panels)
  return list
end

describe("the monitoring pack in Prometheus #once", function()
  local sb, srv, prom, tmp

  setup(function()
    tmp = host.capture("mktemp -d"):gsub("%s+$", "")
    sb = sandbox.start {}
    sb:seed(2)
    sb:api("POST", "/accounts", { json = { refresh_token = "sandbox:low:low@sandbox.test" } })
    sb:api("POST", "/accounts", { json = { refresh_token = "sandbox:broken:broken@sandbox.test" } })
    sb:control("POST", "jobs", { email = "seed-01@sandbox.test", running = 2 })
    -- the spend textfile, as cron would write it for node_exporter, served beside /metrics
    local c = cli.new { env = cli.env_with { USEAPI_TOKEN = sb.token, FLOWMUSIC_BASE_URL = sb.base_url } }
    local code, _, err = c:run("usage --all --prometheus " .. cli.q(tmp .. "/usage.prom"))
    c:close()
    assert(code == 0, err)
    local pid, started = openresty.self_pid()
    srv = openresty.start { conf = metrics.example_conf { interval = 2, workers = 1,
      watch_pid = pid, watch_start = started,
      locations = "        location = /usage-metrics { default_type text/plain; alias " .. tmp .. "/usage.prom; }" },
      env = { USEAPI_TOKEN = sb.token, FLOWMUSIC_BASE_URL = sb.base_url } }
    assert(eventually(15, function()
      local mcode, body = srv:get("/metrics")
      return mcode == 200 and metrics.parse(body):value("flowmusic_status_success") == 1
    end), "nginx never had the status; error log:\n" .. srv:error_log())
    -- the alert rules with their `for:` windows cut to 1 s
    local alerts = assert(host.read_file(repo .. "/monitoring/alerts.yml"))
    local fast, n = alerts:gsub("(\n%s*for:%s*)[%w]+", "%11s")
    assert(n >= 7, "alerts.yml has fewer `for:` windows than alerts")
    assert(host.write_file(tmp .. "/alerts.yml", fast))
    prom = prometheus.start {
      targets = { { job = "flowmusic", target = "127.0.0.1:" .. srv.port },
        { job = "flowmusic-usage", target = "127.0.0.1:" .. srv.port, path = "/usage-metrics" } },
      rule_files = { tmp .. "/alerts.yml", repo .. "/monitoring/rules.yml" } }
    assert(prom:ready(30), "Prometheus never became ready:\n" .. prom:log())
  end)

  teardown(function()
    if prom then prom:stop() end
    if srv then srv:stop() end
    if sb then sb:stop() end
    if tmp then os.execute("rm -rf " .. cli.q(tmp)) end
  end)

  it("fires the re-auth and low-credit alerts, and no others", function()
    local firing
    local ok = eventually(60, function()
      local code, doc = prom:get("/api/v1/alerts")
      if code ~= 200 then return false end
      firing = {}
      for _, a in ipairs(doc.data.alerts) do
        if a.state == "firing" then firing[#firing + 1] = a.labels.alertname .. " " .. (a.labels.email or "") end
      end
      table.sort(firing)
      return #firing >= 2
    end)
    assert(ok, "no alerts fired: " .. cjson.encode(firing or {}) .. "\n" .. prom:log())
    socket.sleep(3) -- time for any other alert to fire too, were one wrong
    local _, doc = prom:get("/api/v1/alerts")
    firing = {}
    for _, a in ipairs(doc.data.alerts) do
      if a.state == "firing" or a.state == "pending" then
        firing[#firing + 1] = a.labels.alertname .. " " .. (a.labels.email or "")
        assert.is_string(a.annotations.summary)
        assert.is_string(a.annotations.description)
        assert.truthy(a.annotations.description:find(a.labels.email, 1, true), a.annotations.description)
      end
    end
    table.sort(firing)
    assert.same({ "FlowMusicAccountNeedsReauth broken@sandbox.test", "FlowMusicCreditsLow low@sandbox.test" }, firing)
    -- the rules loaded without error
    local rcode, rules = prom:get("/api/v1/rules")
    assert.equal(200, rcode)
    for _, g in ipairs(rules.data.groups) do
      for _, r in ipairs(g.rules) do assert.equal("ok", r.health, r.name .. ": " .. tostring(r.lastError)) end
    end
  end)

  it("has a Grafana dashboard with a datasource variable and no hard-coded datasource", function()
    local text = assert(host.read_file(repo .. "/monitoring/grafana/flowmusic-dashboard.json"))
    local dash = cjson.decode(text)
    local var
    for _, v in ipairs(dash.templating.list) do if v.name == "datasource" then var = v end end
    assert.equal("datasource", var and var.type)
    assert.equal("prometheus", var.query)
    local uses = 0
    local function check(t)
      for k, v in pairs(t) do
        if k == "datasource" then
          assert.is_table(v, "a datasource given by name")
          assert.equal("${datasource}", v.uid)
          uses = uses + 1
        elseif type(v) == "table" then
          check(v)
        end
      end
    end
    check(dash.panels)
    assert.truthy(uses >= 2 * #dash.panels, "every panel and target names the variable")
  end)

  it("has data for every expression of the Grafana dashboard", function()
    local dash = cjson.decode((assert(host.read_file(repo .. "/monitoring/grafana/flowmusic-dashboard.json"))))
    local exprs = expressions(dash)
    assert.truthy(#exprs >= 6, "the dashboard has fewer expressions than panels")
    for _, e in ipairs(exprs) do
      local result, why
      local ok = eventually(30, function()
        result, why = prom:query(e.expr)
        return result and #result > 0
      end)
      assert(ok, ("panel %q: %s has no data (%s)"):format(tostring(e.panel), e.expr,
        why or cjson.encode(result or {})))
    end
  end)

  it("records the recording rules", function()
    local states = eventually(30, function()
      local r = prom:query("flowmusic:accounts:by_state")
      return r and #r == 5 and r
    end)
    assert(states, "flowmusic:accounts:by_state never had the five states")
    local sum = eventually(30, function()
      local r = prom:query("flowmusic:credits_remaining:sum")
      return r and #r == 1 and tonumber(r[1].value[2])
    end)
    assert.equal(5000 + 5000 + 3, sum)
  end)
end)
