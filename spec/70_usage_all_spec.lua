-- `flowmusic usage --all` and flowmusic.fleet.usage against a private sandbox. Every expected
-- number is computed here, in the spec, from the raw events the sandbox serves (fetched with
-- LuaSocket, summed by the few lines of `expect` below), never by the code under test.
local sandbox = require "spec.helpers.sandbox"
local helper = require "spec.helpers.client"
local cjson = require "cjson"

local LUA = ({ ["Lua 5.1"] = "lua5.1", ["Lua 5.2"] = "lua5.2", ["Lua 5.3"] = "lua5.3",
  ["Lua 5.4"] = "lua5.4" })[_VERSION] or "lua"
local API_TOKEN = "user:7070-UsageAllSpecToken9"
local EPS = 1e-9

local sb, tmp, emails, docs

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local function slurp(path)
  local f = io.open(path, "rb")
  if not f then return "" end
  local s = f:read("*a")
  f:close()
  return s
end

--- Run `flowmusic <argv>` with `lua` (default: this Lua; another one finds its own build
-- under build*/, so LUA_CPATH is unset for it); returns exit code, stdout, stderr.
local function run(argv, lua)
  local out, err, rc = tmp .. "/out", tmp .. "/err", tmp .. "/rc"
  local unset = lua and "-u LUA_CPATH -u LUA_CPATH_5_1 -u LUA_CPATH_5_4 " or ""
  os.execute(("env -u COLUMNS %sUSEAPI_TOKEN=%s FLOWMUSIC_BASE_URL=%s %s bin/flowmusic %s </dev/null >%s 2>%s;"
    .. " echo $? >%s"):format(unset, q(API_TOKEN), q(sb.base_url), lua or LUA, argv, q(out), q(err), q(rc)))
  return tonumber(slurp(rc):match("%d+")), slurp(out), slurp(err)
end

local function jsonl(s)
  local t = {}
  for l in s:gmatch("[^\n]+") do
    local row = cjson.decode(l)
    for k, v in pairs(row) do if v == cjson.null then row[k] = nil end end
    t[#t + 1] = row
  end
  return t
end

local function rows_of(rows, section)
  local t = {}
  for _, r in ipairs(rows) do if r.section == section then t[#t + 1] = r end end
  return t
end

local function contains(s, needle) return s:find(needle, 1, true) ~= nil end

-- The raw usage document of each account, straight from the sandbox.
local function fetch_docs()
  local t = {}
  for _, email in ipairs(emails) do
    local code, doc = sb:api("GET", "/accounts/usage?email=" .. email:gsub("@", "%%40"))
    assert(code == 200, "usage of " .. email .. ": " .. tostring(code))
    t[email] = doc
  end
  return t
end

-- Independent sums (CONTRACT.md): 12 tokens a credit; producer-usage + riffusion charged;
-- grant + daily-free received; only events whose UTC day is in [since, till].
local function expect(which, since, till)
  local charged_types = { ["producer-usage"] = true, riffusion = true }
  local received_types = { grant = true, ["daily-free"] = true }
  local e = { charged = 0, received = 0, songs = 0, days = {}, accounts = {}, types = {}, songs_by = {} }
  for _, email in ipairs(which) do
    local a = { charged = 0, received = 0, songs = 0, convs = {} }
    e.accounts[email] = a
    for _, ev in ipairs(docs[email].events) do
      local day = ev.event_at:sub(1, 10)
      if (not since or day >= since) and (not till or day <= till) then
        local d = e.days[day] or { charged = 0, received = 0, convs = {}, songs = 0 }
        e.days[day] = d
        e.types[ev.type] = (e.types[ev.type] or 0) + ev.amount
        if charged_types[ev.type] then
          e.charged, a.charged, d.charged = e.charged + ev.amount, a.charged + ev.amount, d.charged + ev.amount
        elseif received_types[ev.type] then
          e.received, a.received, d.received = e.received + ev.amount, a.received + ev.amount, d.received + ev.amount
        end
        if type(ev.conversation_id) == "string" then
          local key = email .. " " .. ev.conversation_id
          if not d.convs[key] then d.convs[key] = true d.songs = d.songs + 1 end
          if not a.convs[key] then a.convs[key] = true a.songs = a.songs + 1 e.songs = e.songs + 1 end
          local s = e.songs_by[key] or { tokens = 0, title = ev.conversation_title }
          e.songs_by[key] = s
          s.tokens = s.tokens + ev.amount
        end
      end
    end
  end
  return e
end

local function days_of(e)
  local t = {}
  for day in pairs(e.days) do t[#t + 1] = day end
  table.sort(t)
  return t
end

local function near(expected, got, what)
  assert(type(got) == "number", what .. ": not a number: " .. tostring(got))
  assert(math.abs(expected - got) < EPS, ("%s: expected %.12g, got %.12g"):format(what, expected, got))
end

-- Check every row of `usage --all --json` against the independent sums.
local function check_rows(rows, e, failed)
  local total = rows_of(rows, "total")[1]
  near(e.charged / 12, total.charged_credits, "total charged credits")
  near(e.charged, total.charged_tokens, "total charged tokens")
  near(e.received, total.received_tokens, "total received tokens")
  assert.equal(e.songs, total.songs)

  local days = rows_of(rows, "day")
  local want_days = days_of(e)
  assert.equal(#want_days, #days)
  for i, r in ipairs(days) do
    local d = e.days[want_days[i]]
    assert.equal(want_days[i], r.key)
    near(d.charged / 12, r.charged_credits, "day " .. r.key .. " charged credits")
    near(d.received, r.received_tokens, "day " .. r.key .. " received")
    assert.equal(d.songs, r.songs)
    assert.is_nil(r.email)
  end

  local accounts = rows_of(rows, "account")
  local seen = 0
  for _, r in ipairs(accounts) do
    assert.equal(r.email, r.key)
    if r.email == failed then
      assert.is_string(r.error)
      assert.is_nil(r.charged_credits)
    else
      local a = e.accounts[r.email]
      assert(a, "unexpected account row " .. tostring(r.email))
      seen = seen + 1
      assert.is_nil(r.error)
      near(a.charged / 12, r.charged_credits, r.email .. " charged credits")
      near(a.received, r.received_tokens, r.email .. " received")
      assert.equal(a.songs, r.songs)
      near(a.charged / e.charged, r.share, r.email .. " share")
    end
  end
  local want_accounts = 0
  for _ in pairs(e.accounts) do want_accounts = want_accounts + 1 end
  assert.equal(want_accounts, seen)
  assert.equal(want_accounts + (failed and 1 or 0), #accounts)

  local types = rows_of(rows, "type")
  local want_types = 0
  for t, tokens in pairs(e.types) do
    want_types = want_types + 1
    local found
    for _, r in ipairs(types) do if r.key == t then found = r end end
    assert(found, "no type row for " .. t)
    near(tokens, found.tokens, "type " .. t)
    near(tokens / 12, found.credits, "type " .. t .. " credits")
  end
  assert.equal(want_types, #types)

  local songs = rows_of(rows, "song")
  local want_songs = 0
  for _ in pairs(e.songs_by) do want_songs = want_songs + 1 end
  assert.equal(want_songs, #songs)
  for _, r in ipairs(songs) do
    local s = e.songs_by[r.email .. " " .. r.key]
    assert(s, "unexpected song row " .. tostring(r.key))
    near(s.tokens, r.tokens, "song tokens")
    near(s.tokens / 12, r.credits, "song credits")
    if type(s.title) == "string" then assert.equal(s.title, r.title) else assert.is_nil(r.title) end
  end
end

describe("usage across the fleet", function()
  lazy_setup(function()
    sb = sandbox.start { token = API_TOKEN }
    local p = io.popen("mktemp -d")
    tmp = p:read("*l")
    p:close()
    sb:reset()
    emails = sb:seed(4)
    docs = fetch_docs()
  end)

  lazy_teardown(function()
    if sb then sb:stop() end
    if tmp then os.execute("rm -rf " .. q(tmp)) end
  end)

  before_each(function() sb:clear_faults() end)

  it("--json: totals, per day, per account, per type and per song match the raw events", function()
    local code, out, err = run("usage --all --json")
    assert.equal(0, code, err)
    local rows = jsonl(out)
    assert.equal("total", rows[1].section)
    local e = expect(emails)
    check_rows(rows, e)
    -- the data has fractional credits, and the total is the vendor's own summary summed
    local fractional, vendor = false, 0
    for _, r in ipairs(rows_of(rows, "account")) do
      if r.charged_credits ~= math.floor(r.charged_credits) then fractional = true end
    end
    for _, email in ipairs(emails) do vendor = vendor + docs[email].summary.total_charged_credits end
    assert.is_true(fractional)
    near(vendor, rows[1].charged_credits, "sum of the vendor's total_charged_credits")
    -- every account row and song row names its account; the others do not
    for _, r in ipairs(rows) do
      if r.section == "account" or r.section == "song" then assert.is_string(r.email)
      else assert.is_nil(r.email) end
    end
  end)

  it("--since/--until keep the boundary days and recompute every total", function()
    local days = days_of(expect(emails))
    assert.is_true(#days >= 4)
    local since, till = days[2], days[3]
    local code, out = run("usage --all --json --since " .. since .. " --until " .. till)
    assert.equal(0, code)
    local rows = jsonl(out)
    local e = expect(emails, since, till)
    check_rows(rows, e)
    local got = rows_of(rows, "day")
    assert.equal(2, #got)
    assert.equal(since, got[1].key)
    assert.equal(till, got[2].key)
    assert.is_true(rows[1].charged_credits < expect(emails).charged / 12)

    -- one day (since == until), the first day only, and a range with no events at all
    code, out = run("usage --all --json --since " .. days[#days] .. " --until " .. days[#days])
    assert.equal(0, code)
    check_rows(jsonl(out), expect(emails, days[#days], days[#days]))
    code, out = run("usage --all --json --until " .. days[1])
    assert.equal(0, code)
    check_rows(jsonl(out), expect(emails, nil, days[1]))
    code, out = run("usage --all --json --since 2001-01-01 --until 2001-01-31")
    assert.equal(0, code)
    rows = jsonl(out)
    assert.equal(0, rows[1].charged_credits)
    assert.equal(0, #rows_of(rows, "day"))
    assert.equal(#emails, #rows_of(rows, "account"))
  end)

  it("usage EMAIL --since/--until filters one account the same way", function()
    local days = days_of(expect(emails))
    local email = emails[2]
    local code, out = run("usage " .. email .. " --json --since " .. days[2])
    assert.equal(0, code)
    local rows = jsonl(out)
    local e = expect({ email }, days[2])
    near(e.charged / 12, rows[1].charged_credits, "charged")
    near(e.received, rows[1].received_tokens, "received")
    assert.equal(#days - 1, #rows_of(rows, "day"))
    for _, r in ipairs(rows) do assert.equal(email, r.email) end
    assert.equal(0, #rows_of(rows, "account"))
  end)

  it("an account whose usage call fails gets its own row with the error, out of the totals; exit 1", function()
    local path = sb.base_url:match("^https?://[^/]+(.*)$") .. "/accounts/usage"
    -- the sandbox matches a scripted fault's path without the query, and the account by the
    -- query's email: this one account's usage call fails
    sb:fault { fault = "status", code = 503, method = "GET", path = path, email = emails[2], count = 1 }
    local code, out, err = run("usage --all --json --retries 0 --concurrency 2")
    assert.equal(1, code)
    local rows = jsonl(out)
    local failed
    for _, r in ipairs(rows_of(rows, "account")) do
      if r.error then
        assert.is_nil(failed, "more than one account failed")
        failed = r.email
      end
    end
    assert.equal(emails[2], failed)
    assert.truthy(contains(rows_of(rows, "account")[1].error or "", "503")
      or contains(out, "503"))
    assert.truthy(contains(err, failed))
    local others = {}
    for _, email in ipairs(emails) do if email ~= failed then others[#others + 1] = email end end
    check_rows(rows, expect(others), failed)
    -- the fault was used up: the next run is whole again
    code = run("usage --all --json")
    assert.equal(0, code)
    -- the account list itself failing: nothing to report, exit 1
    sb:fault { fault = "status", code = 500, method = "GET", path = path:gsub("/usage$", ""), count = 1 }
    code, out, err = run("usage --all --json --retries 0")
    assert.equal(1, code)
    assert.equal("", out)
    assert.truthy(contains(err, "cannot list the accounts"))
  end)

  it("Ctrl-C reports the accounts read and names every other one with its cancelled error", function()
    local path = sb.base_url:match("^https?://[^/]+(.*)$") .. "/accounts/usage"
    sb:fault { fault = "latency", ms = 4000, method = "GET", path = path, count = 0 }
    local out, err, rc, pidf = tmp .. "/int.out", tmp .. "/int.err", tmp .. "/int.rc", tmp .. "/int.pid"
    os.remove(rc)
    local seen_before = sb:requests().by["GET " .. path] or 0
    os.execute(("(env USEAPI_TOKEN=%s FLOWMUSIC_BASE_URL=%s %s bin/flowmusic usage --all --json --concurrency 1"
      .. " </dev/null >%s 2>%s & echo $! >%s; wait $!; echo $? >%s) &")
      :format(q(API_TOKEN), q(sb.base_url), LUA, q(out), q(err), q(pidf), q(rc)))
    local socket = require "socket"
    local deadline = socket.gettime() + 20
    local usage_key = "GET " .. path
    -- (started before this line: count from what the sandbox had seen before the command ran)
    repeat socket.sleep(0.05) until (sb:requests().by[usage_key] or 0) >= seen_before + 1 or socket.gettime() > deadline
    local pid = tonumber(slurp(pidf):match("%d+"))
    assert(pid, "no pid")
    os.execute("kill -INT " .. pid)
    repeat socket.sleep(0.05) until slurp(rc) ~= "" or socket.gettime() > deadline
    sb:clear_faults()
    assert.equal(130, tonumber(slurp(rc):match("%d+"))) -- 128 + SIGINT, as the other fleet commands
    local rows = jsonl(slurp(out))
    local accounts = rows_of(rows, "account")
    assert.equal(#emails, #accounts)
    local cancelled = 0
    for _, r in ipairs(accounts) do
      assert.is_string(r.error)
      if contains(r.error, "cancel") then cancelled = cancelled + 1 end
    end
    assert.equal(#emails, cancelled)
    assert.equal(0, rows[1].charged_credits)
    assert.truthy(contains(slurp(err), emails[#emails]))
  end)

  it("terminal escapes in song titles and emails never reach the terminal or the HTML raw", function()
    local path = sb.base_url:match("^https?://[^/]+(.*)$") .. "/accounts/usage"
    sb:fault { fault = "escape", method = "GET", path = path, email = emails[1], count = 1 }
    local file = tmp .. "/escape.html"
    local code, out, err = run("usage --all --chart --html " .. q(file))
    assert.equal(0, code, err)
    assert.truthy(contains(out, "Per song:"))
    assert.truthy(contains(out, "pwned")) -- the poisoned titles are shown, escaped
    for _, text in ipairs({ out, err, slurp(file) }) do
      assert.falsy(text:find("[\27\7]"))
    end
  end)

  it("--csv keeps the columns of usage EMAIL, then share and error", function()
    local code, out = run("usage --all --csv --by account")
    assert.equal(0, code)
    local lines = {}
    for l in out:gmatch("[^\n]+") do lines[#lines + 1] = l end
    assert.equal("section,email,key,title,kind,tokens,credits,charged_tokens,charged_credits,"
      .. "received_tokens,songs,share,error", lines[1])
    assert.equal(#emails + 1, #lines)
    for i = 2, #lines do assert.truthy(lines[i]:find("^account,")) end
  end)

  it("tables: every section, bars only with --chart when stdout is not a terminal", function()
    local code, out = run("usage --all")
    assert.equal(0, code)
    for _, s in ipairs({ "Fleet usage: " .. #emails .. " accounts", "charged:", "received:", "Per day:",
      "Per account:", "Per type:", "Per song:" }) do
      assert.truthy(contains(out, s), s)
    end
    assert.falsy(contains(out, "\226\150\136")) -- no full block: stdout is a file
    code, out = run("usage --all --chart --by day")
    assert.equal(0, code)
    assert.truthy(contains(out, "Charged credits per day:"))
    assert.truthy(contains(out, "\226\150\136"))
    assert.falsy(contains(out, "Per account:"))
    -- the longest bar belongs to the day with the most charged credits
    local e, best, best_day = expect(emails), -1, nil
    for day, d in pairs(e.days) do if d.charged > best then best, best_day = d.charged, day end end
    local longest, longest_day = -1, nil
    for day, bar in out:gmatch("\n(%d%d%d%d%-%d%d%-%d%d)%s+[%d.]+%s+([\128-\255]+)") do
      local _, cells = bar:gsub("[^\128-\191]", "")
      if cells > longest then longest, longest_day = cells, day end
    end
    assert.equal(best_day, longest_day)
    code, out = run("usage --all --json --chart")
    assert.equal(0, code)
    assert.falsy(contains(out, "\226\150"))
  end)

  it("the same sections and numbers on Lua 5.4 and under the 5.1 build", function()
    local f51 = io.open("build51/flowmusic/core.so", "rb")
    local f54 = io.open("build/flowmusic/core.so", "rb")
    if not (f51 and f54) then
      if f51 then f51:close() end
      if f54 then f54:close() end
      return pending("needs both build/ and build51/ (scripts/setup.sh --test)")
    end
    f51:close()
    f54:close()
    for _, argv in ipairs({ "usage --all --json", "usage --all --chart", "usage " .. emails[1] .. " --csv" }) do
      local c1, o1 = run(argv, "lua5.1")
      local c4, o4 = run(argv, "lua5.4")
      assert.equal(0, c1)
      assert.equal(0, c4)
      assert.equal(o4, o1)
    end
  end)

  it("bad arguments are usage errors (exit 2) and send nothing", function()
    local before = sb:requests().total
    for _, argv in ipairs({ "usage --all --since 2026-02-30", "usage --all --since 2026-6-1",
      "usage --all --since 2026-06-05 --until 2026-06-01", "usage --all --by week",
      "usage --all " .. emails[1], "usage --all --concurrency 0", "usage --all --concurrency 51",
      "usage " .. emails[1] .. " --by account", "usage " .. emails[1] .. " --concurrency 4",
      "usage --all --html /nonexistent-dir/x.html", "usage" }) do
      local code, _, err = run(argv)
      assert.equal(2, code, argv)
      assert.truthy(contains(err, "flowmusic usage:"), argv)
    end
    assert.equal(before, sb:requests().total)
  end)

  it("--html writes one report file; a second run replaces it", function()
    local file = tmp .. "/report.html"
    local code = run("usage --all --html " .. q(file) .. " --json")
    assert.equal(0, code)
    local page = slurp(file)
    assert.truthy(page:find("^<!DOCTYPE html>"))
    assert.truthy(contains(page, "<svg"))
    for _, email in ipairs(emails) do assert.truthy(contains(page, email)) end
    assert.falsy(page:lower():find("<script", 1, true))
    assert.falsy(page:find("https?://"))
    code = run("usage " .. emails[1] .. " --since 2001-01-01 --until 2001-01-31 --html " .. q(file))
    assert.equal(0, code)
    page = slurp(file)
    assert.truthy(contains(page, "No charged credits in this range."))
    assert.falsy(io.open(file .. ".tmp", "rb"))
  end)

  describe("the Lua API", function()
    local fleet_usage = require "flowmusic.fleet.usage"

    it("collect() reduces each document as it arrives and drops it from its result", function()
      local client = helper.client(sb)
      local calls, values = 0, 0
      local agg = assert(fleet_usage.collect(client, { concurrency = 3,
        on_progress = function(done, total, email, r)
          calls = calls + 1
          assert.equal(calls, done)
          assert.equal(#emails, total)
          assert.is_string(email)
          if r.value ~= nil then values = values + 1 end
        end }))
      client:close()
      assert.equal(#emails, calls)
      assert.equal(0, values)
      local e = expect(emails)
      near(e.charged / 12, agg.total.charged_credits, "charged")
      assert.equal(#emails, agg.total.accounts)
      assert.equal(0, agg.total.failed)
      -- each day's by_account credits add up to the day
      for _, d in ipairs(agg.days) do
        local sum = 0
        for _, v in pairs(d.by_account) do sum = sum + v end
        near(d.charged_credits, sum, "day " .. d.key .. " by account")
      end
    end)

    it("collect() returns nil, err when the account list fails", function()
      sb:fault { fault = "status", code = 401, count = 1 }
      local client = helper.client(sb)
      local agg, err = fleet_usage.collect(client)
      client:close()
      assert.is_nil(agg)
      assert.equal(401, err.status)
    end)

    it("misuse raises before anything is sent", function()
      local client = helper.client(sb)
      local before = sb:requests().total
      assert.has_error(function() fleet_usage.collect(client, { sinse = "2026-01-01" }) end)
      assert.has_error(function() fleet_usage.collect(client, { since = "2026-13-01" }) end)
      assert.has_error(function() fleet_usage.collect(client, { since = "2026-01-02", ["until"] = "2026-01-01" }) end)
      assert.has_error(function() fleet_usage.reducer { since = 20260101 } end)
      assert.equal(before, sb:requests().total)
      client:close()
    end)

    it("the reducer keeps fractional credits exact and skips malformed rows", function()
      local red = fleet_usage.reducer { since = "2026-06-02" }
      red:add("a@x.test", { events = {
        { type = "producer-usage", amount = 50, conversation_id = "c1", event_at = "2026-06-02T00:00:00" },
        { type = "riffusion", amount = 25, conversation_id = "c1", event_at = "2026-06-03T00:00:00" },
        { type = "producer-usage", amount = 1000, conversation_id = "c2", event_at = "2026-06-01T00:00:00" },
        { type = "grant", amount = 7200, event_at = "2026-06-02T00:00:00" },
        "not a row", { type = "producer-usage", amount = 5, event_at = "garbage" },
      } })
      red:fail("b@x.test", "boom")
      local r = red:result()
      near(75 / 12, r.total.charged_credits, "charged")
      assert.equal(7200, r.total.received_tokens)
      assert.equal(1, r.total.songs)
      assert.equal(1, r.total.failed)
      assert.equal("boom", r.accounts[2].error)
      assert.equal("2026-06-02", r.first)
      assert.equal("2026-06-03", r.last)
    end)
  end)
end)
