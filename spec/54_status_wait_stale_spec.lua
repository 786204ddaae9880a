-- `flowmusic wait` and flowmusic.fleet.wait against the sandbox (an account that appears
-- later, one that never does, one that goes, a refused token), and the `stale_token` state
-- from the sandbox's stalled-refresh accounts in every output of `status` and its metrics.
-- The waits that take seconds are #once (Lua 5.4 only); the other suites run the rest.
local sandbox = require "spec.helpers.sandbox"
local cli = require "spec.helpers.cli"
local metrics = require "spec.helpers.metrics"
local cjson = require "cjson"
local socket = require "socket"
local flowmusic = require "flowmusic"
local wait = require "flowmusic.fleet.wait"
local status = require "flowmusic.fleet.status"

local API_TOKEN = "user:5454-WaitSpecSecret3"

local function contains(hay, needle) return tostring(hay):find(needle, 1, true) ~= nil end

describe("flowmusic wait", function()
  local sb, c

  before_each(function()
    sb = sandbox.start { token = API_TOKEN }
    c = cli.new { env = cli.env_with { USEAPI_TOKEN = API_TOKEN, FLOWMUSIC_BASE_URL = sb.base_url } }
  end)

  after_each(function()
    c:close()
    sb:stop()
  end)

  local function add(token)
    local code = sb:api("POST", "/accounts", { json = { refresh_token = token } })
    assert(code == 200 or code == 201)
  end

  it("ends with 0 within one interval of an account added 2 s after the start #once", function()
    local h = c:spawn("wait new@wait.test --interval 1s --timeout 30s --json")
    socket.sleep(2)
    add("sandbox:plus:new@wait.test")
    local added_at = socket.gettime()
    local code = h.wait(30)
    local ended_at = socket.gettime()
    assert.equal(0, code, h.err())
    local result = cjson.decode(h.out())
    assert.equal(true, result.reached)
    assert.equal("ok", result.state)
    assert.equal("new@wait.test", result.email)
    assert.equal("ok", result["for"])
    -- one call per second from the start: the one after the add is at most one interval later
    assert.truthy(result.calls >= 2 and result.calls <= 4, tostring(result.calls))
    assert.truthy(ended_at - added_at < 1 + 1.5, "ended more than one interval after the add")
  end)

  it("ends with 124 at the timeout when the account never appears #once", function()
    local code, out, err = c:run("wait never@wait.test --interval 0.5 --timeout 2s --json")
    assert.equal(124, code, err)
    local result = cjson.decode(out)
    assert.equal(false, result.reached)
    assert.truthy(contains(result.error, "never@wait.test is not ok after 2 s"), result.error)
    assert.truthy(result.calls >= 3 and result.calls <= 6, tostring(result.calls))
    assert.truthy(contains(err, "is not ok after 2 s (it was not found)"), err)
  end)

  it("ends with 1 at once on a refused token, and never shows it", function()
    local code, out, err = c:run("wait a@wait.test --interval 0.2 --timeout 1m --json",
      { env = { USEAPI_TOKEN = "user:1-WrongTokenXyz" } })
    assert.equal(1, code, err)
    local result = cjson.decode(out)
    assert.equal(1, result.calls)
    assert.truthy(contains(result.error, "401"), result.error)
    assert.falsy(contains(out .. err, "WrongTokenXyz"))
  end)

  it("waits for exists (any state) and for gone #once", function()
    add("sandbox:broken:b@wait.test")
    local code, out = c:run("wait b@wait.test --for exists --interval 0.2 --timeout 5s")
    assert.equal(0, code)
    assert.truthy(contains(out, "b@wait.test is there"), out)
    -- not ok while in error state
    code = c:run("wait b@wait.test --interval 0.2 --timeout 1s")
    assert.equal(124, code)
    local h = c:spawn("wait b@wait.test --for gone --interval 0.3 --timeout 20s --json")
    socket.sleep(0.8)
    assert.equal(204, (sb:api("DELETE", "/accounts/b%40wait.test")))
    assert.equal(0, h.wait(30), h.err())
    assert.equal("gone", cjson.decode(h.out()).state)
  end)

  it("refuses bad arguments as usage errors", function()
    for _, argv in ipairs({ "wait", "wait a@wait.test --for healthy", "wait a@wait.test --timeout soon",
      "wait a@wait.test --interval 0", "wait 'not an email'" }) do
      local code, _, err = c:run(argv)
      assert.equal(2, code, argv .. ": " .. err)
    end
  end)

  it("is there from Lua: wait.wait", function()
    local client = flowmusic.new { token = API_TOKEN, base_url = sb.base_url }
    add("sandbox:plus:lua@wait.test")
    local rec, calls = wait.wait(client, "lua@wait.test", { interval = 0.2, timeout = 5 })
    assert.equal("ok", rec.state)
    assert.equal(1, calls)
    local none, why = wait.wait(client, "none@wait.test", { ["for"] = "exists", interval = 0.2, timeout = 0.5 })
    assert.is_nil(none)
    assert.equal("timeout", why.reason)
    assert.has_error(function() wait.wait(client, "x@wait.test", { ["for"] = "soon" }) end)
    assert.has_error(function() wait.wait(client, "x@wait.test", { interval = 0 / 0 }) end)
    assert.has_error(function() wait.wait(client, "x@wait.test", { colour = 1 }) end)
    client:close()
  end)
end)

describe("stale_token", function()
  local sb, c, tmp
  local STALE, OK = "stale@stale.test", "ok@stale.test"

  setup(function()
    sb = sandbox.start { token = API_TOKEN }
    c = cli.new { env = cli.env_with { USEAPI_TOKEN = API_TOKEN, FLOWMUSIC_BASE_URL = sb.base_url } }
    tmp = c.tmp
    for _, t in ipairs({ "sandbox:stale:" .. STALE, "sandbox:plus:" .. OK }) do
      assert(sb:api("POST", "/accounts", { json = { refresh_token = t } }) == 201)
    end
  end)

  teardown(function()
    c:close()
    sb:stop()
  end)

  it("comes from the sandbox's stalled refresh, in collect", function()
    local client = flowmusic.new { token = API_TOKEN, base_url = sb.base_url }
    local records, summary = status.collect(client)
    client:close()
    assert.equal(1, summary.stale_token)
    assert.equal(1, summary.ok)
    local r = records[2]
    assert.equal(STALE, r.email)
    assert.equal("stale_token", r.state)
    assert.truthy(contains(r.error, "access token expired"), r.error)
    assert.truthy(status.timestamp(r.access_token_expires_at) < os.time() - 3000)
    -- a longer allowance makes it ok again
    client = flowmusic.new { token = API_TOKEN, base_url = sb.base_url }
    records = status.collect(client, { max_token_age = 2 * 3600 })
    client:close()
    assert.equal("ok", records[2].state)
  end)

  it("shows in the table, JSON, CSV, --fail-on and the summary", function()
    local code, out = c:run("status")
    assert.equal(0, code) -- not in the default --fail-on
    assert.truthy(out:match(STALE:gsub("%p", "%%%0") .. "%s+plus%s+stale_token"), out)
    assert.truthy(contains(out, "2 accounts: 1 ok, 0 needs_reauth, 0 low_credits, 0 unreachable, 1 stale_token"))
    code, out = c:run("status --json")
    assert.equal(0, code)
    local last = cjson.decode(cli.lines(out)[2])
    assert.equal("stale_token", last.state)
    assert.truthy(last.access_token_expires_at:match("^%d%d%d%d%-"))
    code, out = c:run("status --csv")
    assert.equal(0, code)
    assert.truthy(cli.lines(out)[1]:match(",access_token_expires_at,jobs_running$"))
    assert.truthy(cli.lines(out)[3]:match("^" .. STALE:gsub("%p", "%%%0") .. ",plus,stale_token,"))
    code = c:run("status --fail-on stale_token")
    assert.equal(1, code)
    code = c:run("status --max-token-age 3h --fail-on stale_token")
    assert.equal(0, code)
    local _, err
    code, _, err = c:run("status --max-token-age later")
    assert.equal(2, code)
    assert.truthy(contains(err, "--max-token-age must be a duration"), err)
  end)

  it("is in the metrics: the state count and the access token's expiry", function()
    local prom = tmp .. "/flowmusic.prom"
    local code = c:run("status --prometheus " .. cli.q(prom))
    assert.equal(0, code)
    local m = metrics.parse(cli.slurp(prom))
    assert.equal(1, m:value("flowmusic_accounts", { state = "stale_token" }))
    assert.equal(0, m:value("flowmusic_account_up", { email = STALE, tier = "plus" }))
    local exp = m:value("flowmusic_account_access_token_expires_timestamp_seconds", { email = STALE })
    assert.truthy(exp < os.time() - 3000 and exp > os.time() - 4000, tostring(exp))
    local fresh = m:value("flowmusic_account_access_token_expires_timestamp_seconds", { email = OK })
    assert.truthy(fresh > os.time() + 3000, tostring(fresh))
  end)

  it("recovers when a good token refreshes the account", function()
    assert(sb:api("POST", "/accounts", { json = { refresh_token = "sandbox:plus:" .. STALE } }) == 200)
    local code, out = c:run("status --json --fail-on stale_token")
    assert.equal(0, code)
    assert.equal("ok", cjson.decode(cli.lines(out)[2]).state)
  end)
end)
