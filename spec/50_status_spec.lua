-- Fleet status: flowmusic.fleet.status.collect, the Prometheus exposition and textfile
-- (flowmusic.fleet.prometheus) and the `flowmusic status` command, against a private sandbox
-- holding one account in each state.
local helper = require "spec.helpers.client"
local sandbox = require "spec.helpers.sandbox"
local metrics = require "spec.helpers.metrics"
local cjson = require "cjson"
local status = require "flowmusic.fleet.status"
local prometheus = require "flowmusic.fleet.prometheus"

local LUA = ({ ["Lua 5.1"] = "lua5.1", ["Lua 5.2"] = "lua5.2", ["Lua 5.3"] = "lua5.3",
  ["Lua 5.4"] = "lua5.4" })[_VERSION] or "lua"
local API_TOKEN = "user:5150-StatusSpecSecret9"

-- One account per state (with min_credits = 10):
local OK1, OK2 = "seed-01@sandbox.test", "seed-02@sandbox.test"
local LOW = "low@sandbox.test"           -- the sandbox's low tier: 3 credits, 36 tokens
local FREE = "free@sandbox.test"         -- free tier: 120 credits, tokens null (ok)
local BROKEN = "broken@sandbox.test"     -- stored in error state (needs_reauth from its record)
local GONE = "gone@sandbox.test"         -- its live call answers 596 (needs_reauth)
local DOWN = "down@sandbox.test"         -- its live call answers 503 (unreachable)
local QUOTE = 'q"uo\\te@sandbox.test'    -- a label value that needs escaping (ok)
local ALL = { BROKEN, DOWN, FREE, GONE, LOW, QUOTE, OK1, OK2 }
table.sort(ALL)

local REFRESH_TOKENS = {
  "sandbox:low:" .. LOW, "sandbox:free:" .. FREE, "sandbox:broken:" .. BROKEN, "sandbox:plus:" .. GONE,
  "sandbox:plus:" .. DOWN, "sandbox:plus:" .. QUOTE,
}
local secrets = { API_TOKEN }
for _, t in ipairs(REFRESH_TOKENS) do secrets[#secrets + 1] = t end

local function encoded(email)
  return (email:gsub("[^%w%-%._~]", function(c) return ("%%%02X"):format(c:byte()) end))
end

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local function slurp(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end

local function contains(hay, needle) return tostring(hay):find(needle, 1, true) ~= nil end

local function assert_no_secret(text, where)
  for _, s in ipairs(secrets) do
    assert(not contains(text, s), "a secret appeared in " .. where)
  end
end

local sb, tmp

-- Run `flowmusic status <argv>`: exit code, stdout, stderr (each checked for secrets).
local function run(argv, env)
  local e = { USEAPI_TOKEN = API_TOKEN, FLOWMUSIC_BASE_URL = sb.base_url }
  for k, v in pairs(env or {}) do e[k] = v end
  local parts = { "env -u USEAPI_TOKEN -u FLOWMUSIC_BASE_URL" }
  for k, v in pairs(e) do parts[#parts + 1] = k .. "=" .. q(v) end
  parts[#parts + 1] = LUA .. " bin/flowmusic status " .. argv
  local out, err, rc = tmp .. "/out", tmp .. "/err", tmp .. "/rc"
  os.execute("(" .. table.concat(parts, " ") .. ") </dev/null >" .. q(out) .. " 2>" .. q(err)
    .. "; echo $? >" .. q(rc))
  local o, x = slurp(out) or "", slurp(err) or ""
  assert_no_secret(o, "stdout of status " .. argv)
  assert_no_secret(x, "stderr of status " .. argv)
  return tonumber((slurp(rc) or ""):match("%d+")), o, x
end

local function lines(s)
  local t = {}
  for l in s:gmatch("[^\n]+") do t[#t + 1] = l end
  return t
end

local function by_email(records)
  local t = {}
  for _, r in ipairs(records) do t[r.email] = r end
  return t
end

setup(function()
  sb = sandbox.start { token = API_TOKEN }
  sb:seed(2)
  for _, t in ipairs(REFRESH_TOKENS) do
    local code = sb:api("POST", "/accounts", { json = { refresh_token = t } })
    assert(code == 201, "could not add an account: " .. tostring(code))
  end
  sb:fault { fault = "status", code = 596, method = "GET", path = "/v1/flowmusic/accounts/" .. encoded(GONE), count = 0,
    message = "Account needs attention" }
  sb:fault { fault = "status", code = 503, method = "GET", count = 0,
    path = "/v1/flowmusic/accounts/" .. encoded(DOWN) }
  tmp = io.popen("mktemp -d /tmp/flowmusic-status-spec.XXXXXX"):read("*l")
end)

teardown(function()
  if sb then sb:stop() end
  if tmp then os.execute("rm -rf " .. q(tmp)) end
end)

describe("flowmusic.fleet.status.collect", function()
  it("gives one record per account, sorted by email, each in its state", function()
    local c = helper.client(sb)
    local records, summary = status.collect(c, { min_credits = 10 })
    assert.is_table(records, tostring(summary))
    local emails = {}
    for i, r in ipairs(records) do emails[i] = r.email end
    assert.same(ALL, emails)
    local r = by_email(records)
    assert.equal("ok", r[OK1].state)
    assert.equal("ok", r[QUOTE].state)
    assert.same({ email = OK1, tier = "plus", state = "ok", credits_remaining = 5000,
      tokens_remaining = 60000, max_jobs = 12, refreshed_at = r[OK1].refreshed_at,
      access_token_expires_at = r[OK1].access_token_expires_at, subscription_plan = "plus-monthly",
      jobs_running = 0 }, r[OK1])
    assert.truthy(status.timestamp(r[OK1].refreshed_at))
    -- the sandbox's access tokens live an hour from the refresh
    assert.equal(3600, status.timestamp(r[OK1].access_token_expires_at) - status.timestamp(r[OK1].refreshed_at))
    assert.equal("low_credits", r[LOW].state)
    assert.equal(3, r[LOW].credits_remaining)
    assert.equal(36, r[LOW].tokens_remaining)
    assert.equal("low", r[LOW].tier)
    assert.equal("ok", r[FREE].state)
    assert.equal(120, r[FREE].credits_remaining)
    assert.is_nil(r[FREE].tokens_remaining)          -- null for the free tier
    assert.equal("needs_reauth", r[BROKEN].state)
    assert.equal("Refresh token is invalid or expired; re-add the account", r[BROKEN].error)
    assert.is_nil(r[BROKEN].credits_remaining)
    assert.equal("needs_reauth", r[GONE].state)
    assert.equal(596, r[GONE].status)
    assert.matches("http 596 on GET /accounts/gone%%40sandbox%.test: Account needs attention",
      r[GONE].error)
    assert.equal("unreachable", r[DOWN].state)
    assert.equal(503, r[DOWN].status)
    assert.matches("^http 503 on GET /accounts/down%%40sandbox%.test", r[DOWN].error)
    assert.equal("plus", r[DOWN].tier)                -- from the list: still known
    assert.equal(12, r[DOWN].max_jobs)
    assert.same({ total = 8, ok = 4, needs_reauth = 2, low_credits = 1, unreachable = 1, stale_token = 0,
      subscription = { active = true, accounts_max = 50 } }, summary)
    assert.equal("8 accounts: 4 ok, 2 needs_reauth, 1 low_credits, 1 unreachable, 0 stale_token",
      status.summary_line(summary))
    c:close()
  end)

  it("calls list once, get_account once per account, list_jobs and get_subscription once, and writes nothing", function()
    local sb2 = sandbox.start { token = API_TOKEN }
    sb2:seed(3)
    local c = helper.client(sb2)
    local records = assert(status.collect(c, { concurrency = 2 }))
    c:close()
    local req = sb2:requests()
    sb2:stop()
    assert.equal(3, #records)
    assert.equal(6, req.total)
    assert.equal(1, req.by["GET /v1/flowmusic/accounts"])
    assert.equal(1, req.by["GET /v1/flowmusic/jobs"])
    assert.equal(1, req.by["GET /v2/account"])
    for _, r in ipairs(records) do
      assert.equal("ok", r.state)
      assert.equal(1, req.by["GET /v1/flowmusic/accounts/" .. encoded(r.email)])
    end
  end)

  it("a cancel that stops the live calls leaves every account reported, as unreachable", function()
    local c = helper.client(sb)
    -- Abort once the list is in: from the second batch (the per-account calls) on.
    local batches, batch = 0, c.batch
    c.batch = function(self, ...) batches = batches + 1 return batch(self, ...) end
    local records, summary = status.collect(c, { cancel = function() if batches >= 2 then return "abort" end end })
    c:close()
    assert.equal(#ALL, #records)
    for _, r in ipairs(records) do
      assert.equal("string", type(r.error))
      if r.email ~= BROKEN then      -- its record says needs_reauth already (from the list)
        assert.equal("unreachable", r.state)
        assert.matches("cancelled", r.error, 1, true)
      end
    end
    assert.equal(#ALL, summary.total)
  end)

  it("a cancel during the list stops it too: nil and a cancelled error, nothing else sent", function()
    local c = helper.client(sb)
    local before = sb:requests().total
    local records, err = status.collect(c, { cancel = function() return "abort" end })
    c:close()
    assert.is_nil(records)
    assert.equal("cancelled", err.kind)
    assert.equal(before, sb:requests().total) -- (control requests are not counted)
  end)

  it("on_result sees each record with its live call's result, the value already dropped", function()
    local c = helper.client(sb)
    local seen = {}
    local records = assert(status.collect(c, { on_result = function(rec, r)
      seen[#seen + 1] = { rec.email, r.status, r.attempts, r.value == nil }
    end }))
    c:close()
    assert.equal(#records, #seen)
    table.sort(seen, function(a, b) return a[1] < b[1] end)
    for i, email in ipairs(ALL) do
      assert.equal(email, seen[i][1])
      assert.equal(1, seen[i][3])
      assert.is_true(seen[i][4])
    end
    local by = {}
    for _, x in ipairs(seen) do by[x[1]] = x[2] end
    assert.equal(200, by[OK1])
    assert.equal(596, by[GONE])
    assert.equal(503, by[DOWN])
  end)

  it("min_tokens marks accounts below it low_credits; an unknown value never is", function()
    local c = helper.client(sb)
    local r = by_email(assert(status.collect(c, { min_tokens = 70000 })))
    assert.equal("low_credits", r[OK1].state)
    assert.equal("ok", r[FREE].state)         -- tokens unknown (null), credits not checked
    assert.equal("low_credits", r[LOW].state)
    assert.equal("needs_reauth", r[BROKEN].state)
    c:close()
  end)

  it("returns nil and the error value when the list call fails", function()
    sb:fault { fault = "status", code = 503, method = "GET", path = "/v1/flowmusic/accounts", count = 1 }
    local c = helper.client(sb)
    local records, err = status.collect(c)
    assert.is_nil(records)
    assert.is_true(helper.flowmusic.errors.is(err))
    assert.equal("http", err.kind)
    assert.equal(503, err.status)
    c:close()
  end)

  it("raises on misuse", function()
    local c = helper.client(sb)
    assert.has_error(function() status.collect(c, { min_credit = 1 }) end,
      "flowmusic.fleet.status: bad argument #2 to 'collect' (unknown option 'min_credit')")
    assert.has_error(function() status.collect(c, { min_credits = -1 }) end,
      "flowmusic.fleet.status: bad argument #2 to 'collect' (min_credits must be a non-negative number)")
    assert.has_error(function() status.collect(c, "x") end)
    assert.has_error(function() status.collect(nil) end)
    assert.has_error(function() status.collect(c, { on_result = true }) end,
      "flowmusic.fleet.status: bad argument #2 to 'collect' (on_result must be a function)")
    c:close()
  end)

  it("reads ISO 8601 times as seconds since the epoch", function()
    assert.equal(0, status.timestamp("1970-01-01T00:00:00Z"))
    assert.equal(951782400, status.timestamp("2000-02-29T00:00:00Z"))
    assert.equal(1795322898.5, status.timestamp("2026-11-22T04:48:18.500Z"))
    assert.equal(1795322898, status.timestamp("2026-11-22T06:48:18+02:00"))
    assert.equal(1795322898, status.timestamp("2026-11-22T04:48:18"))
    assert.is_nil(status.timestamp("yesterday"))
    assert.is_nil(status.timestamp(nil))
  end)
end)

describe("flowmusic.fleet.prometheus", function()
  local have_promtool = metrics.have_promtool()

  it("escapes label values and help text as the text format requires", function()
    assert.equal('a\\\\b\\"c\\nd', prometheus.escape_label('a\\b"c\nd'))
    assert.equal('say \\\\ and \\n "quoted"', prometheus.escape_help('say \\ and \n "quoted"'))
    assert.equal("5000", prometheus.number(5000))
    assert.equal("0.1", prometheus.number(0.1))
    assert.equal("NaN", prometheus.number(0 / 0))
    assert.equal("+Inf", prometheus.number(math.huge))
  end)

  it("renders every metric with HELP and TYPE, and the sandbox's values", function()
    local c = helper.client(sb)
    local records, summary = assert(status.collect(c, { min_credits = 10 }))
    c:close()
    local text = prometheus.exposition(records, summary, { timestamp = 1795322898 })
    assert_no_secret(text, "the exposition")
    local m = metrics.parse(text)
    for _, name in ipairs({ "flowmusic_account_up", "flowmusic_account_needs_reauth",
      "flowmusic_account_credits_remaining", "flowmusic_account_tokens_remaining",
      "flowmusic_account_max_jobs", "flowmusic_account_refreshed_timestamp_seconds",
      "flowmusic_accounts", "flowmusic_status_success", "flowmusic_status_timestamp_seconds" }) do
      assert.equal("gauge", m.type[name], name)
      assert.truthy(m.help[name] and m.help[name] ~= "", name)
    end
    assert.equal(1, m:value("flowmusic_status_success"))
    assert.equal(1795322898, m:value("flowmusic_status_timestamp_seconds"))
    assert.equal(1, m:value("flowmusic_account_up", { email = OK1, tier = "plus" }))
    assert.equal(1, m:value("flowmusic_account_up", { email = LOW, tier = "low" }))
    assert.equal(1, m:value("flowmusic_account_up", { email = FREE, tier = "free" }))
    assert.equal(0, m:value("flowmusic_account_up", { email = BROKEN }))
    assert.equal(0, m:value("flowmusic_account_up", { email = DOWN }))
    assert.equal(1, m:value("flowmusic_account_up", { email = QUOTE }))   -- escaped and read back
    assert.equal(1, m:value("flowmusic_account_needs_reauth", { email = BROKEN }))
    assert.equal(1, m:value("flowmusic_account_needs_reauth", { email = GONE }))
    assert.equal(0, m:value("flowmusic_account_needs_reauth", { email = DOWN }))
    assert.equal(5000, m:value("flowmusic_account_credits_remaining", { email = OK2 }))
    assert.equal(3, m:value("flowmusic_account_credits_remaining", { email = LOW }))
    assert.equal(120, m:value("flowmusic_account_credits_remaining", { email = FREE }))
    assert.is_nil(m:value("flowmusic_account_credits_remaining", { email = BROKEN }))  -- unknown: left out
    assert.is_nil(m:value("flowmusic_account_credits_remaining", { email = DOWN }))
    assert.is_nil(m:value("flowmusic_account_tokens_remaining", { email = FREE }))
    assert.equal(36, m:value("flowmusic_account_tokens_remaining", { email = LOW }))
    assert.equal(60000, m:value("flowmusic_account_tokens_remaining", { email = OK1 }))
    assert.equal(4, m:value("flowmusic_account_max_jobs", { email = LOW }))
    assert.equal(1, m:value("flowmusic_account_max_jobs", { email = FREE }))
    local r = by_email(records)
    assert.equal(status.timestamp(r[OK1].refreshed_at),
      m:value("flowmusic_account_refreshed_timestamp_seconds", { email = OK1 }))
    assert.equal(4, m:value("flowmusic_accounts", { state = "ok" }))
    assert.equal(2, m:value("flowmusic_accounts", { state = "needs_reauth" }))
    assert.equal(1, m:value("flowmusic_accounts", { state = "low_credits" }))
    assert.equal(1, m:value("flowmusic_accounts", { state = "unreachable" }))
    assert.truthy(contains(text, 'email="q\\"uo\\\\te@sandbox.test"'))
    if have_promtool then
      local ok, out = metrics.promtool(text)
      assert(ok, out)
    end
  end)

  it("a failed list call gives flowmusic_status_success 0 and no account metrics", function()
    local text = prometheus.exposition(nil, nil, { timestamp = 1795322898 })
    local m = metrics.parse(text)
    assert.equal(0, m:value("flowmusic_status_success"))
    assert.equal(1795322898, m:value("flowmusic_status_timestamp_seconds"))
    assert.equal(0, #m:find("flowmusic_account_up"))
    if have_promtool then
      local ok, out = metrics.promtool(text)
      assert(ok, out)
    end
  end)

  it("writes the file atomically: temporary file in the same directory, then rename", function()
    local dir = tmp .. "/textfile"
    os.execute("mkdir -p " .. q(dir))
    local path = dir .. "/flowmusic.prom"
    assert.is_true(prometheus.write_file(path, "first\n"))
    assert.equal("first\n", slurp(path))
    -- the old file is replaced by a rename: a reader holding it open keeps the whole old text
    local reader = assert(io.open(path, "rb"))
    assert.is_true(prometheus.write_file(path, "second\n"))
    assert.equal("first\n", reader:read("*a"))
    reader:close()
    assert.equal("second\n", slurp(path))
    local listing = io.popen("ls -a " .. q(dir)):read("*a")
    assert.same({ ".", "..", "flowmusic.prom" }, lines(listing))
    local ok, err = prometheus.write_file(tmp .. "/no/such/dir/x.prom", "x")
    assert.is_nil(ok)
    assert.matches("cannot write '.*/no/such/dir/x%.prom'", err)
  end)
end)

describe("flowmusic status", function()
  local HEADER = { "EMAIL", "TIER", "STATE", "CREDITS", "TOKENS", "MAXJOBS", "JOBS", "REFRESHED", "MESSAGE" }
  local KEYS = "email,tier,state,credits_remaining,tokens_remaining,max_jobs,refreshed_at,error,"
    .. "access_token_expires_at,jobs_running"

  it("prints a table sorted by email and the summary line", function()
    local code, out, err = run("--retries 0 --min-credits 10")
    assert.equal(1, code, err)      -- needs_reauth and unreachable accounts (the default --fail-on)
    local l = lines(out)
    local head = {}
    for w in l[1]:gmatch("%S+") do head[#head + 1] = w end
    assert.same(HEADER, head)
    assert.equal(#ALL + 3, #l)
    for i, email in ipairs(ALL) do assert.equal(email, l[i + 1]:match("^(%S+)")) end
    assert.equal("8 accounts: 4 ok, 2 needs_reauth, 1 low_credits, 1 unreachable, 0 stale_token", l[#l - 1])
    assert.equal("8 of 50 accounts", l[#l]) -- the subscription's headroom (GET /v2/account)
    local ok_row = l[1 + 7]      -- seed-01
    assert.matches("^seed%-01@sandbox%.test%s+plus%s+ok%s+5000%s+60000%s+12%s+0%s+%d+s ago%s+%-$", ok_row)
    local low_row
    local free_row
    for _, row in ipairs(l) do
      if row:find(LOW, 1, true) then low_row = row end
      if row:find(FREE, 1, true) then free_row = row end
    end
    assert.matches("^low@sandbox%.test%s+low%s+low_credits%s+3%s+36%s+4%s+0%s+%d+s ago%s+%-$", low_row)
    assert.matches("^free@sandbox%.test%s+free%s+ok%s+120%s+%-%s+1%s+0%s+%d+s ago%s+%-$", free_row)
    assert.truthy(contains(out, "Refresh token is invalid or expired; re-add the account"))
    assert.truthy(contains(out, "http 503 on GET /accounts/down%40sandbox.test"))
  end)

  it("--json writes JSON Lines with exactly the documented keys, summary on stderr", function()
    local code, out, err = run("--retries 0 --min-credits 10 --json")
    assert.equal(1, code)
    local l = lines(out)
    assert.equal(#ALL, #l)
    for i, line in ipairs(l) do
      local keys = {}
      for k in line:gmatch('[{,]"([%w_]+)":') do keys[#keys + 1] = k end
      assert.equal(KEYS, table.concat(keys, ","))
      local doc = cjson.decode(line)
      assert.equal(ALL[i], doc.email)
    end
    local low = cjson.decode(l[5])
    assert.equal(LOW, low.email)
    assert.equal("low_credits", low.state)
    assert.equal(3, low.credits_remaining)
    assert.equal(36, low.tokens_remaining)
    assert.equal(4, low.max_jobs)
    local free = cjson.decode(l[3])
    assert.equal(FREE, free.email)
    assert.equal(cjson.null, free.tokens_remaining)
    assert.equal(cjson.null, free.error)
    assert.truthy(status.timestamp(low.refreshed_at))
    assert.equal("8 accounts: 4 ok, 2 needs_reauth, 1 low_credits, 1 unreachable, 0 stale_token\n"
      .. "8 of 50 accounts\n", err)
  end)

  it("--csv writes CSV with the same keys, summary on stderr", function()
    local code, out, err = run("--retries 0 --csv")
    assert.equal(1, code)
    local l = lines(out)
    assert.equal(KEYS, l[1])
    assert.equal(#ALL + 1, #l)
    assert.matches("^broken@sandbox%.test,unknown,needs_reauth,,,2,[^,]+,Refresh token is invalid", l[2])
    assert.equal("8 accounts: 5 ok, 2 needs_reauth, 0 low_credits, 1 unreachable, 0 stale_token\n"
      .. "8 of 50 accounts\n", err)
  end)

  it("--verbose adds one line per live call on stderr: status, attempts, time", function()
    local code, out, err = run("--retries 1 --json --verbose")
    assert.equal(1, code)
    assert.equal(#ALL, #lines(out))
    assert.matches("get account seed%-01@sandbox%.test: 200, 1 attempt, %d+ ms", err)
    assert.matches("get account down@sandbox%.test: 503, 2 attempts, %d+ ms", err)
    assert.matches("get account gone@sandbox%.test: 596, 1 attempt, %d+ ms", err)
  end)

  it("exits 0 or 1 as --fail-on says", function()
    local cases = {
      { "", 1 },                                         -- default needs_reauth,unreachable
      { "--fail-on unreachable", 1 },
      { "--fail-on needs_reauth", 1 },
      { "--fail-on low_credits", 0 },                    -- no minimum given: nothing is low
      { "--fail-on low_credits --min-credits 10", 1 },
      { "--fail-on low_credits --min-credits 2", 0 },
      { "--fail-on low_credits --min-tokens 100", 1 },
      { "--fail-on low_credits --min-tokens 30", 0 },
      { "--fail-on ok", 1 },
      { "--fail-on low_credits,unreachable", 1 },
    }
    for _, case in ipairs(cases) do
      local code, _, err = run("--retries 0 --json " .. case[1])
      assert.equal(case[2], code, case[1] .. ": " .. err)
    end
  end)

  it("exits 0 when every account is healthy (default --fail-on)", function()
    local sb2 = sandbox.start { token = API_TOKEN }
    sb2:seed(2)
    local code, out, err = run("", { FLOWMUSIC_BASE_URL = sb2.base_url })
    sb2:stop()
    assert.equal(0, code, err)
    assert.truthy(contains(out, "2 accounts: 2 ok, 0 needs_reauth, 0 low_credits, 0 unreachable, 0 stale_token"))
  end)

  it("exits 2 on usage errors, before any request", function()
    local before = sb:requests().total
    for _, argv in ipairs({ "--fail-on bogus", "--fail-on ok,,unreachable", "--min-credits -1",
      "--min-credits many", "--min-tokens x", "--concurrency 0", "--concurrency 51",
      "--json --csv", "extra", "--no-such-option" }) do
      local code, out, err = run(argv)
      assert.equal(2, code, argv .. ": " .. err)
      assert.equal("", out, argv)
      assert.truthy(err ~= "", argv)
    end
    local code = run("", { USEAPI_TOKEN = "" })
    assert.equal(2, code)
    assert.equal(before, sb:requests().total)
  end)

  it("--prometheus FILE writes the textfile (promtool accepts it) and leaves no temporary file", function()
    local dir = tmp .. "/prom"
    os.execute("mkdir -p " .. q(dir))
    local path = dir .. "/flowmusic.prom"
    local code = run("--retries 0 --min-credits 10 --json --prometheus " .. q(path))
    assert.equal(1, code)
    local text = assert(slurp(path))
    assert_no_secret(text, "the textfile")
    local m = metrics.parse(text)
    assert.equal(1, m:value("flowmusic_status_success"))
    assert.equal(5000, m:value("flowmusic_account_credits_remaining", { email = OK1 }))
    assert.equal(1, m:value("flowmusic_accounts", { state = "low_credits" }))
    assert.truthy(m:value("flowmusic_status_timestamp_seconds") > 1.7e9)
    assert.same({ ".", "..", "flowmusic.prom" }, lines(io.popen("ls -a " .. q(dir)):read("*a")))
    if metrics.have_promtool() then
      local ok, out = metrics.promtool(text)
      assert(ok, out)
    end
  end)

  it("a failing list call exits 1 and writes flowmusic_status_success 0", function()
    sb:fault { fault = "status", code = 503, method = "GET", path = "/v1/flowmusic/accounts", count = 1 }
    local path = tmp .. "/failed.prom"
    local code, out, err = run("--retries 0 --prometheus " .. q(path))
    assert.equal(1, code)
    assert.equal("", out)
    assert.matches("^flowmusic status: cannot list the accounts: http 503 on GET /accounts", err)
    local text = assert(slurp(path))
    local m = metrics.parse(text)
    assert.equal(0, m:value("flowmusic_status_success"))
    assert.equal(0, #m:find("flowmusic_account_up"))
    if metrics.have_promtool() then
      local ok, pout = metrics.promtool(text)
      assert(ok, pout)
    end
  end)

  it("an unwritable --prometheus FILE is reported and exits 1", function()
    -- nothing is low without a minimum: the failed write alone makes the exit status 1
    local code, _, err = run("--retries 0 --fail-on low_credits --prometheus " .. q(tmp .. "/no/such/dir/x.prom"))
    assert.equal(1, code)
    assert.matches("flowmusic status: cannot write '.*/no/such/dir/x%.prom'", err)
  end)
end)

describe("flowmusic status interrupted", function()
  it("SIGINT during the live calls: every account is still reported, exit 130", function()
    local cli = require "spec.helpers.cli"
    local socket = require "socket"
    local sb3 = sandbox.start { token = API_TOKEN }
    local emails = sb3:seed(10)
    for _, e in ipairs(emails) do   -- each live call takes 5 s; the list call is fast
      sb3:fault { fault = "latency", ms = 5000, method = "GET", count = 0,
        path = "/v1/flowmusic/accounts/" .. encoded(e) }
    end
    local c = cli.new { env = { USEAPI_TOKEN = API_TOKEN, FLOWMUSIC_BASE_URL = sb3.base_url } }
    local h = c:spawn("status --concurrency 2 --retries 0 --json")
    local deadline = socket.gettime() + 10
    repeat socket.sleep(0.05) until sb3:requests().total >= 3 or socket.gettime() > deadline
    h.signal("INT")
    local code = h.wait(30)
    local out, err = h.out(), h.err()
    c:close()
    sb3:stop()
    assert.equal(130, code, err)
    assert_no_secret(out .. err, "the interrupted run's output")
    local l = lines(out)
    assert.equal(10, #l)
    for i, line in ipairs(l) do
      local r = cjson.decode(line)
      assert.equal(emails[i], r.email)
      assert.equal("unreachable", r.state)
      assert.matches("cancelled", r.error, 1, true)
    end
    assert.truthy(contains(err, "10 accounts: 0 ok, 0 needs_reauth, 0 low_credits, 10 unreachable, 0 stale_token"), err)
    assert.truthy(contains(err, "interrupted by SIGINT"), err)
  end)
end)
