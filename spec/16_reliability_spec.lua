-- Nothing lost, nothing sent twice: libcurl's hidden re-sends, unreadable answers to writes,
-- re-entrant calls, deadlines, early stops, and odd answers (issue: lossless runs).
local h = require "spec.helpers.client"
local sandbox = require "spec.helpers.sandbox"
local rawserver = require "spec.helpers.rawserver"
local core = require "flowmusic.core"

local flowmusic = h.flowmusic
local ACCOUNTS = "/v1/flowmusic/accounts"
local JOBS = "/v1/flowmusic/jobs"

describe("no invisible re-sends", function()
  local sb, client
  setup(function() sb = sandbox.start() end)
  teardown(function() sb:stop() end)
  before_each(function()
    sb:reset()
    sb:seed(1)
    client = h.client(sb, { retries = 1, random = function() return 0 end })
    assert.is_table(client:list_accounts()) -- a pooled keep-alive connection now exists
  end)
  after_each(function() client:close() end)

  for _, method in ipairs { "POST", "PATCH" } do
    for _, fault in ipairs { "reset", "close_after_headers" } do
      it(method .. " through request, " .. fault .. " after reading: received once, outcome unknown", function()
        sb:fault { fault = fault, apply = 1, method = method, path = JOBS }
        local body, err = client:request(method, "/jobs", { body = { x = 1 } })
        assert.is_nil(body)
        assert.is_true(err.outcome_unknown)
        assert.equal(1, err.attempts)
        assert.equal(1, sb:requests().by[method .. " " .. JOBS])
      end)
    end
  end

  it("set_max_jobs: attempts equals the POSTs the server received", function()
    sb:fault { fault = "reset", apply = 1, method = "POST", path = ACCOUNTS }
    local r = client:batch { { "set_max_jobs", "seed-01@sandbox.test", 3 } }[1]
    assert.is_true(r.ok)
    assert.equal(3, r.value.maxJobs)
    assert.equal(2, r.attempts)
    assert.equal(2, sb:requests().by["POST " .. ACCOUNTS])
  end)

  it("DELETE reset after it applied: true with its note, attempts = 2", function()
    local path = ACCOUNTS .. "/seed-01%40sandbox.test"
    sb:fault { fault = "reset", apply = 1, method = "DELETE", path = path }
    local r = client:batch { { "delete_account", "seed-01@sandbox.test" } }[1]
    assert.is_true(r.ok)
    assert.is_true(r.value)
    assert.is_string(r.note)
    assert.equal(2, r.attempts)
    assert.equal(2, sb:requests().by["DELETE " .. path])
  end)

  for _, f in ipairs {
    { fault = "invalid_json", apply = 1 },
    { fault = "huge", mb = 2, apply = 1 },
    { fault = "status", code = 302, apply = 1 },
  } do
    it("add_account answered with " .. f.fault .. " after it applied: outcome unknown, sent once", function()
      local c = h.client(sb, { retries = 3, max_response_bytes = 1024 * 1024 })
      f.method, f.path = "POST", ACCOUNTS
      sb:fault(f)
      local acct, err = c:add_account("sandbox:plus:unknown-outcome@x.com")
      assert.is_nil(acct)
      assert.is_true(err.outcome_unknown, tostring(err))
      assert.equal(1, sb:requests().by["POST " .. ACCOUNTS])
      assert.is_table(c:list_accounts()["unknown-outcome@x.com"]) -- it was applied
      c:close()
    end)
  end
end)

describe("re-entrant calls", function()
  local sb
  setup(function() sb = sandbox.start() end)
  teardown(function() sb:stop() end)
  before_each(function()
    sb:reset()
    sb:seed(4)
  end)

  it("calling the client from on_progress raises 'client is busy' at once, and it stays usable", function()
    local c = h.client(sb, { deadline = 10 })
    sb:fault { fault = "latency", ms = 300, method = "GET", count = 0 }
    local calls = {}
    for i = 1, 4 do calls[i] = { "get_account", ("seed-%02d@sandbox.test"):format(i) } end
    local t0 = core.now()
    local ok, err = pcall(c.batch, c, calls, { concurrency = 2, on_progress = function()
      c:list_accounts()
    end })
    assert.is_false(ok)
    assert.truthy(h.contains(err, "client is busy"))
    assert.is_true(core.now() - t0 < 5)
    sb:clear_faults()
    assert.is_table(c:list_accounts())
    c:close()
  end)

  it("a coroutine yielding from on_progress: another coroutine's call raises 'client is busy'", function()
    if _VERSION == "Lua 5.1" then return pending("Lua 5.1 can't yield across pcall") end
    local c = h.client(sb, { deadline = 10 })
    local calls = {}
    for i = 1, 4 do calls[i] = { "get_account", ("seed-%02d@sandbox.test"):format(i) } end
    local co = coroutine.create(function()
      return c:batch(calls, { concurrency = 2, on_progress = function() coroutine.yield("progress") end })
    end)
    local ok, what = coroutine.resume(co)
    assert.is_true(ok)
    assert.equal("progress", what)
    local ok2, err = pcall(c.list_accounts, c)
    assert.is_false(ok2)
    assert.truthy(h.contains(err, "client is busy"))
    while coroutine.status(co) ~= "dead" do assert(coroutine.resume(co)) end
    assert.is_table(c:list_accounts())
    c:close()
  end)

  it("a call never outlives its deadline, even while its transfer stalls", function()
    local c = h.client(sb, { deadline = 1, timeout = 30 })
    sb:fault { fault = "stall", ms = 8000, method = "GET", count = 0 }
    local t0 = core.now()
    local v, err = c:get_account("seed-01@sandbox.test")
    local took = core.now() - t0
    assert.is_nil(v)
    assert.equal("timeout", err.kind)
    assert.is_true(took < 1 + 1.0, "took " .. took)
    c:close()
  end)
end)

describe("stopping a batch early", function()
  local sb
  setup(function() sb = sandbox.start() end)
  teardown(function() sb:stop() end)
  before_each(function()
    sb:reset()
    sb:seed(6)
  end)

  local function calls_for(n)
    local calls = {}
    for i = 1, n do calls[i] = { "set_max_jobs", ("seed-%02d@sandbox.test"):format(i), 5 } end
    return calls
  end

  it("on_progress returning false keeps every completed result; unstarted ones are cancelled/not_run", function()
    local c = h.client(sb)
    local rs = c:batch(calls_for(6), { concurrency = 1, on_progress = function(done) return done < 2 end })
    assert.equal(6, #rs)
    assert.is_true(rs[1].ok and rs[2].ok)
    for i = 3, 6 do
      assert.is_false(rs[i].ok)
      assert.equal("cancelled", rs[i].err.kind)
      assert.equal("not_run", rs[i].err.reason)
      assert.equal(0, rs[i].attempts)
    end
    assert.equal(2, sb:requests().by["POST " .. ACCOUNTS])
    c:close()
  end)

  it("cancel 'stop' gives calls in flight a grace period, then reports them interrupted and unknown", function()
    local c = h.client(sb)
    sb:fault { fault = "latency", ms = 3000, method = "POST", path = ACCOUNTS, count = 0 }
    local t0 = core.now()
    local rs = c:batch(calls_for(6), { concurrency = 2, grace = 0.5,
      cancel = function() return core.now() - t0 > 0.3 and "stop" or nil end })
    assert.is_true(core.now() - t0 < 2.5)
    local interrupted, not_run = 0, 0
    for _, r in ipairs(rs) do
      assert.equal("cancelled", r.err.kind)
      if r.err.reason == "interrupted" then
        interrupted = interrupted + 1
        assert.is_true(r.err.outcome_unknown)
      else
        not_run = not_run + 1
        assert.equal("not_run", r.err.reason)
      end
    end
    assert.same({ 2, 4 }, { interrupted, not_run })
    c:close()
  end)

  it("cancel 'abort' drops calls in flight at once", function()
    local c = h.client(sb)
    sb:fault { fault = "latency", ms = 3000, method = "POST", path = ACCOUNTS, count = 0 }
    local t0 = core.now()
    local rs = c:batch(calls_for(3), { concurrency = 3,
      cancel = function() return core.now() - t0 > 0.2 and "abort" or nil end })
    assert.is_true(core.now() - t0 < 1.5)
    for _, r in ipairs(rs) do assert.equal("interrupted", r.err.reason) end
    c:close()
  end)
end)

describe("input and answers", function()
  local sb
  setup(function() sb = sandbox.start() end)
  teardown(function() sb:stop() end)

  it("refuses NaN and infinite numbers before anything is sent", function()
    sb:reset()
    local c = h.client(sb)
    assert.has_error(function() c:request("GET", "/jobs", { timeout = 0 / 0 }) end)
    assert.has_error(function() c:get_account("a@x.com", { deadline = math.huge }) end)
    assert.has_error(function() c:batch { { "list_accounts" }, { "request", "GET", "/jobs", { timeout = 0 / 0 } } } end)
    assert.has_error(function() c:set_max_jobs("a@x.com", 0 / 0) end)
    assert.has_error(function() flowmusic.new { token = "t", timeout = 0 / 0 } end)
    assert.equal(0, sb:requests().total)
    c:close()
  end)

  local function raw_client(responses)
    local raw = rawserver.start(responses)
    return raw, flowmusic.new { token = "user:1-raw", base_url = raw.base_url, retries = 0, timeout = 5 }
  end

  for _, case in ipairs {
    { '{"message":"quota exceeded"}', "quota exceeded" },
    { '{"error":{"message":"nested text"}}', "nested text" },
    { '{"error":"plain text"}', "plain text" },
    { '{"detail":"something else"}', '{"detail":"something else"}' },
  } do
    it("takes an error's text from " .. case[1], function()
      local raw, c = raw_client { rawserver.response(400, { ["Content-Type"] = "application/json" }, case[1]) }
      local v, err = c:get_account("a@x.com")
      raw:stop()
      assert.is_nil(v)
      assert.equal(400, err.status)
      assert.truthy(h.contains(err.message, case[2]), err.message)
      assert.is_nil(err.message:find("non-JSON", 1, true))
    end)
  end

  it("accepts a body that starts with a UTF-8 BOM", function()
    local raw, c = raw_client { rawserver.response(200, { ["Content-Type"] = "application/json" },
      '\239\187\191{"email":"a@x.com","maxJobs":3}') }
    local acct, err = c:get_account("a@x.com")
    raw:stop()
    assert.is_nil(err)
    assert.equal(3, acct.maxJobs)
  end)

  it("names the content type of a non-JSON error body, or says there was none", function()
    local raw, c = raw_client {
      rawserver.response(502, { ["Content-Type"] = "text/html" }, "<html>bad</html>"),
      rawserver.response(500, {}, "oops"),
    }
    local _, e1 = c:get_account("a@x.com")
    local _, e2 = c:get_account("a@x.com")
    raw:stop()
    assert.equal("HTTP 502 with a text/html body", e1.message)
    assert.equal("HTTP 500 without a content type", e2.message)
  end)
end)
