-- Saturation and headroom: list_jobs (GET /jobs) and get_subscription (useapi.net's
-- GET /v2/account) against the sandbox; the JOBS column, jobs_running and its metric; the
-- subscription metrics and the footer; plan/apply warnings about running jobs; and each of the
-- two endpoints failing (503, 596, an HTML page), which never fails `status`.
local sandbox = require "spec.helpers.sandbox"
local cli = require "spec.helpers.cli"
local metrics = require "spec.helpers.metrics"
local cjson = require "cjson"
local flowmusic = require "flowmusic"
local status = require "flowmusic.fleet.status"

local API_TOKEN = "user:5656-SaturationSpecSecret1"
local BUSY, IDLE = "busy@sat.test", "idle@sat.test"

local function contains(hay, needle) return tostring(hay):find(needle, 1, true) ~= nil end

describe("saturation and headroom", function()
  local sb, c

  setup(function()
    sb = sandbox.start { token = API_TOKEN }
    c = cli.new { env = cli.env_with { USEAPI_TOKEN = API_TOKEN, FLOWMUSIC_BASE_URL = sb.base_url } }
  end)

  teardown(function()
    c:close()
    sb:stop()
  end)

  before_each(function()
    sb:reset()
    for _, t in ipairs({ "sandbox:starter:" .. BUSY, "sandbox:plus:" .. IDLE }) do
      assert(sb:api("POST", "/accounts", { json = { refresh_token = t } }) == 201)
    end
    assert.equal(200, (sb:control("POST", "jobs", { email = BUSY, running = 3 })))
  end)

  it("list_jobs gives the jobs running now per account, get_subscription the subscription", function()
    local client = flowmusic.new { token = API_TOKEN, base_url = sb.base_url }
    local doc = assert(client:list_jobs())
    assert.equal(3, #doc.jobs)
    assert.equal(BUSY, doc.jobs[1].email)
    assert.equal("pending", doc.jobs[1].status)
    assert.same({ maxJobs = 4, executing = 3, available = 1 }, doc.accounts[BUSY])
    assert.same({ [BUSY] = 3, [IDLE] = 0 }, status.running_jobs(doc))
    -- counted from the jobs when a document gives no per-account numbers
    assert.same({ [BUSY] = 3 }, status.running_jobs({ jobs = doc.jobs }))
    local sub = assert(client:get_subscription())
    assert.equal(true, sub.subscriptionIsActive)
    assert.equal(50, sub.maxAccountsPerAPI)
    assert.same({ total = 2, active = 2, error = 0 }, sub.accounts["Flow Music API"])
    client:close()
    local req = sb:requests()
    assert.equal(1, req.by["GET /v1/flowmusic/jobs"])
    assert.equal(1, req.by["GET /v2/account"]) -- beside the base URL, as on api.useapi.net
  end)

  it("shows the JOBS column, jobs_running and the footer, and exports them as metrics", function()
    local prom = c.tmp .. "/f.prom"
    local code, out, err = c:run("status --prometheus " .. cli.q(prom))
    assert.equal(0, code, err)
    local l = cli.lines(out)
    assert.truthy(l[1]:match("MAXJOBS%s+JOBS%s+REFRESHED"), l[1])
    assert.truthy(l[2]:match("^busy@sat%.test%s+starter%s+ok%s+1000%s+12000%s+4%s+3%s"), l[2])
    assert.truthy(l[3]:match("^idle@sat%.test%s+plus%s+ok%s+5000%s+60000%s+12%s+0%s"), l[3])
    assert.equal("2 of 50 accounts", l[#l])
    local m = metrics.parse(cli.slurp(prom))
    assert.equal(3, m:value("flowmusic_account_jobs_running", { email = BUSY }))
    assert.equal(0, m:value("flowmusic_account_jobs_running", { email = IDLE }))
    assert.equal(1, m:value("flowmusic_subscription_active"))
    assert.equal(50, m:value("flowmusic_subscription_accounts_max"))
    assert.equal(1, m:value("flowmusic_account_info", { email = BUSY, tier = "starter",
      subscription_plan = "starter-monthly" }))
    assert.equal(1, m:value("flowmusic_build_info", { version = flowmusic._VERSION,
      libcurl = require("flowmusic.core").curl_version() }))
    assert.truthy(m:value("flowmusic_status_duration_seconds") >= 0)
    if metrics.have_promtool() then assert(metrics.promtool(cli.slurp(prom))) end
    code, out = c:run("status --json")
    assert.equal(0, code)
    assert.equal(3, cjson.decode(cli.lines(out)[1]).jobs_running)
  end)

  it("says when the subscription is not active, and how many accounts it allows", function()
    assert.equal(200, (sb:control("POST", "subscription", { active = false, max_accounts = 3 })))
    local prom = c.tmp .. "/g.prom"
    local code, out, err = c:run("status --json --prometheus " .. cli.q(prom))
    assert.equal(0, code, err)
    assert.equal(2, #cli.lines(out)) -- stdout keeps the JSON Lines to itself
    assert.truthy(contains(err, "2 of 3 accounts (the useapi.net subscription is not active)"), err)
    local m = metrics.parse(cli.slurp(prom))
    assert.equal(0, m:value("flowmusic_subscription_active"))
    assert.equal(3, m:value("flowmusic_subscription_accounts_max"))
    assert.equal(400, (sb:control("POST", "subscription", { max_accounts = 0 })))
    assert.equal(400, (sb:control("POST", "jobs", { email = BUSY, running = 17 })))
    assert.equal(404, (sb:control("POST", "jobs", { email = "nobody@sat.test", running = 1 })))
  end)

  for _, f in ipairs({
    { name = "503", fault = { fault = "status", code = 503 }, says = "http 503" },
    { name = "596", fault = { fault = "status", code = 596 }, says = "596" },
    { name = "an HTML page", fault = { fault = "html", code = 502 }, says = "502" },
  }) do
    it("never fails status when GET /jobs and GET /v2/account answer " .. f.name, function()
      for _, path in ipairs({ "/v1/flowmusic/jobs", "/v2/account" }) do
        local spec = { path = path, method = "GET", count = 0 }
        for k, v in pairs(f.fault) do spec[k] = v end
        sb:fault(spec)
      end
      local prom = c.tmp .. "/h.prom"
      local code, out, err = c:run("status --retries 0 --prometheus " .. cli.q(prom))
      assert.equal(0, code, err)
      local l = cli.lines(out)
      assert.equal(4, #l) -- header, two accounts, summary: no footer without the subscription
      assert.truthy(l[2]:match("^busy@sat%.test%s+starter%s+ok%s+1000%s+12000%s+4%s+%-%s"), l[2])
      assert.equal("2 accounts: 2 ok, 0 needs_reauth, 0 low_credits, 0 unreachable, 0 stale_token", l[4])
      assert.truthy(contains(err, "cannot list the running jobs: "), err)
      assert.truthy(contains(err, "cannot get the useapi.net subscription: "), err)
      assert.truthy(contains(err, f.says), err)
      local m = metrics.parse(cli.slurp(prom))
      assert.equal(1, m:value("flowmusic_status_success"))
      assert.equal(1000, m:value("flowmusic_account_credits_remaining", { email = BUSY }))
      assert.same({}, m:find("flowmusic_account_jobs_running"))
      assert.same({}, m:find("flowmusic_subscription_active"))
      -- the library says the same in the summary
      local client = flowmusic.new { token = API_TOKEN, base_url = sb.base_url, retries = 0 }
      local records, summary = status.collect(client)
      client:close()
      assert.equal(2, #records)
      assert.is_nil(records[1].jobs_running)
      assert.truthy(contains(summary.jobs_error, f.says), summary.jobs_error)
      assert.truthy(contains(summary.subscription_error, f.says), summary.subscription_error)
      sb:clear_faults()
    end)
  end

  it("makes plan and apply warn about maxJobs below the running jobs and deleting a busy account", function()
    assert.equal(200, (sb:control("POST", "jobs", { email = IDLE, running = 2 })))
    local fleet = cli.spit(c.tmp .. "/fleet.csv", "email,max_jobs,refresh_token_file\n" .. BUSY .. ",2,\n")
    local code, out, err = c:run("plan " .. cli.q(fleet) .. " --prune --json")
    assert.equal(0, code, err)
    assert.equal(2, #cli.lines(out)) -- the rows only: warnings go to stderr
    assert.truthy(contains(err, "warning: maxJobs 2 is below the 3 jobs busy@sat.test runs now"), err)
    assert.truthy(contains(err, "warning: deleting idle@sat.test while it runs 2 jobs"), err)
    local _
    code, _, err = c:run("apply " .. cli.q(fleet) .. " --prune --yes")
    assert.equal(0, code, err)
    assert.truthy(contains(err, "warning: deleting idle@sat.test while it runs 2 jobs"), err)
    -- warnings change nothing: the plan was applied
    local _, doc = sb:api("GET", "/accounts")
    assert.is_nil(doc[IDLE])
    assert.equal(2, doc[BUSY].maxJobs)
    -- jobs that can't be listed: a warning that says so, and the plan still stands
    sb:fault { fault = "status", code = 503, method = "GET", path = "/v1/flowmusic/jobs", count = 0 }
    code, out, err = c:run("plan " .. cli.q(fleet) .. " --retries 0")
    assert.equal(0, code, err)
    assert.truthy(contains(out, "Plan: 0 to add"), out)
    assert.truthy(contains(err, "warning: cannot check the jobs running now: http 503"), err)
    -- a plan within the running jobs has no warning
    sb:clear_faults()
    local calm = cli.spit(c.tmp .. "/calm.csv", "email,max_jobs,refresh_token_file\n" .. BUSY .. ",8,\n")
    code, _, err = c:run("plan " .. cli.q(calm))
    assert.equal(0, code, err)
    assert.falsy(contains(err, "warning"), err)
  end)
end)
