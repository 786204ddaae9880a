-- client:batch against the sandbox with scripted faults: concurrency, order, retries that
-- never double-apply, Retry-After, deadlines, progress and clean aborts.
local fixture = require "spec.helpers.fixture"
local h = require "spec.helpers.client"

local ACCOUNTS = "/v1/flowmusic/accounts"

describe("client:batch", function()
  local sb, client

  fixture.sandbox({ client = { retries = 3, random = function() return 0 end } }, function(s, _, cl) sb, client = s, cl end)

  local function elapsed(f)
    local core = require "flowmusic.core"
    local t0 = core.now()
    local a, b = f()
    return core.now() - t0, a, b
  end

  it("runs 50 calls with 200 ms latency in about one latency period, results in order", function()
    local emails = sb:seed(50)
    sb:fault { fault = "latency", ms = 200, method = "POST", path = ACCOUNTS, count = 0 }
    local calls = {}
    for i, e in ipairs(emails) do calls[i] = { "set_max_jobs", e, (i % 16) + 1 } end
    local t, results = elapsed(function() return client:batch(calls, { concurrency = 50 }) end)
    assert.equal(50, #results)
    for i, r in ipairs(results) do
      assert.is_true(r.ok, tostring(r.err))
      assert.equal(emails[i], r.value.email)
      assert.equal((i % 16) + 1, r.value.maxJobs)
      assert.equal(200, r.status)
      assert.equal(1, r.attempts)
      assert.is_true(r.elapsed >= 0.19)
    end
    -- sequential would take 50 x 0.2 s = 10 s
    assert.is_true(t < 2.5, ("took %.2fs"):format(t))
  end)

  it("gives each item of a mix of failures and successes its own result", function()
    local emails = sb:seed(2)
    sb:fault { fault = "status", code = 400, method = "GET", path = ACCOUNTS .. "/seed-02%40sandbox.test", count = 1 }
    local results = client:batch {
      { "get_account", emails[1] },
      { "get_account", "missing@x.com" },
      { "set_max_jobs", emails[1], 3 },
      { "get_account", emails[2] },
      { "add_account", "sandbox:fail:f@x.com" },
      { "list_accounts" },
      { "request", "GET", "/accounts" },
      { "delete_account", emails[1] },
      { "get_usage", emails[2] },
      { "add_account", "sandbox:starter:new@x.com", 2 },
    }
    assert.equal(10, #results)
    assert.is_true(results[1].ok)
    assert.equal(emails[1], results[1].value.email)
    assert.same({ false, 404, "http" }, { results[2].ok, results[2].status, results[2].err.kind })
    assert.equal(3, results[3].value.maxJobs)
    assert.same({ false, 400 }, { results[4].ok, results[4].status })
    assert.same({ false, 400 }, { results[5].ok, results[5].status })
    assert.is_table(results[6].value[emails[2]])
    assert.same({ true, 200 }, { results[7].ok, results[7].status })
    assert.is_table(results[7].headers)
    assert.same({ true, true }, { results[8].ok, results[8].value })
    assert.equal(emails[2], results[9].value.email)
    assert.same({ true, true, 201 }, { results[10].ok, results[10].created, results[10].status })
  end)

  it("retries a GET that sees 503, 503, then 200 (attempts == 3)", function()
    local email = sb:seed(1)[1]
    local path = ACCOUNTS .. "/seed-01%40sandbox.test"
    sb:fault { fault = "status", code = 503, method = "GET", path = path, count = 2 }
    local r = client:batch { { "get_account", email } }[1]
    assert.is_true(r.ok)
    assert.equal(3, r.attempts)
    assert.equal(3, sb:requests().by["GET " .. path])
    -- the same through a single call
    sb:fault { fault = "status", code = 503, method = "GET", path = path, count = 2 }
    local acct = client:get_account(email)
    assert.equal(email, acct.email)
  end)

  it("waits the exact backoff delays with an injected clock, sleep and random", function()
    local email = sb:seed(1)[1]
    sb:fault { fault = "status", code = 503, method = "GET", path = ACCOUNTS .. "/seed-01%40sandbox.test", count = 2 }
    local now, slept = 100, {}
    local c = h.client(sb, { retries = 3, random = function() return 0.5 end,
      clock = function() return now end, sleep = function(s) slept[#slept + 1] = s; now = now + s end })
    local acct = c:get_account(email)
    assert.equal(email, acct.email)
    assert.same({ 0.125, 0.25 }, slept)
    c:close()
  end)

  it("sends an add_account that reached the server and got 500 exactly once", function()
    sb:fault { fault = "status", code = 500, apply = 1, method = "POST", path = ACCOUNTS, count = 0 }
    local r = client:batch { { "add_account", "sandbox:plus:once@x.com" } }[1]
    assert.is_false(r.ok)
    assert.equal(500, r.status)
    assert.equal(1, r.attempts)
    assert.is_true(r.err.outcome_unknown)
    assert.truthy(h.contains(r.err.message, "list_accounts"))
    assert.equal(1, sb:requests().by["POST " .. ACCOUNTS])
    sb:clear_faults()
    assert.is_table(client:list_accounts()["once@x.com"]) -- it was applied
  end)

  it("sends an add_account whose connection was reset after sending exactly once", function()
    sb:fault { fault = "reset", method = "POST", path = ACCOUNTS, count = 0 }
    local acct, err = client:add_account("sandbox:plus:reset@x.com")
    assert.is_nil(acct)
    assert.is_true(err.outcome_unknown)
    assert.equal(1, sb:requests().by["POST " .. ACCOUNTS])
  end)

  it("re-sends an add_account on 429", function()
    sb:fault { fault = "status", code = 429, method = "POST", path = ACCOUNTS, count = 1 }
    local acct, created = client:add_account("sandbox:plus:rl@x.com")
    assert.equal("rl@x.com", acct.email)
    assert.is_true(created)
    assert.equal(2, sb:requests().by["POST " .. ACCOUNTS])
  end)

  it("re-sends an add_account that provably never reached a server", function()
    local c = h.client(sb, { retries = 2, random = function() return 0 end,
      base_url = "http://127.0.0.1:" .. h.closed_port() .. "/v1/flowmusic" })
    local r = c:batch { { "add_account", "sandbox:plus:nc@x.com" } }[1]
    assert.is_false(r.ok)
    assert.equal(3, r.attempts)
    assert.is_false(r.err.reached)
    assert.is_nil(r.err.outcome_unknown)
    c:close()
  end)

  it("respects Retry-After", function()
    local email = sb:seed(1)[1]
    sb:fault { fault = "status", code = 503, retry_after = "1", method = "GET", path = ACCOUNTS .. "/seed-01%40sandbox.test", count = 1 }
    local t, acct = elapsed(function() return client:get_account(email) end)
    assert.equal(email, acct.email)
    assert.is_true(t >= 0.95 and t < 3, ("took %.2fs"):format(t))
  end)

  it("fails at once with retry_after set when Retry-After is beyond the cap", function()
    local email = sb:seed(1)[1]
    sb:fault { fault = "status", code = 429, retry_after = "3600", method = "GET", path = ACCOUNTS .. "/seed-01%40sandbox.test", count = 1 }
    local t, acct, err = elapsed(function() return client:get_account(email) end)
    assert.is_nil(acct)
    assert.equal(3600, err.retry_after)
    assert.equal(1, err.attempts)
    assert.is_true(t < 1)
  end)

  it("a 429 holds back the whole batch (shared backoff)", function()
    local emails = sb:seed(3)
    sb:fault { fault = "status", code = 429, retry_after = "1", method = "GET", path = ACCOUNTS .. "/seed-01%40sandbox.test", count = 1 }
    local results = client:batch({ { "get_account", emails[1] }, { "get_account", emails[2] }, { "get_account", emails[3] } },
      { concurrency = 1 })
    for _, r in ipairs(results) do assert.is_true(r.ok) end
    assert.equal(2, results[1].attempts)
    -- item 2 could not start before the pause ended
    assert.is_true(results[2].elapsed >= 0.95, ("item 2 finished after %.2fs"):format(results[2].elapsed))
  end)

  it("respects the per-call deadline across retries", function()
    local email = sb:seed(1)[1]
    sb:fault { fault = "stall", ms = 5000, method = "GET", path = ACCOUNTS .. "/seed-01%40sandbox.test", count = 0 }
    local c = h.client(sb, { retries = 5, deadline = 1, timeout = 5, random = function() return 0 end })
    local t, acct, err = elapsed(function() return c:get_account(email) end)
    assert.is_nil(acct)
    assert.equal("timeout", err.kind)
    assert.is_true(t < 2, ("took %.2fs"):format(t))
    c:close()
  end)

  it("counts a DELETE that answers 404 after an attempt that may have succeeded as done", function()
    local email = sb:seed(1)[1]
    sb:fault { fault = "status", code = 500, apply = 1, method = "DELETE", path = ACCOUNTS .. "/seed-01%40sandbox.test", count = 1 }
    local r = client:batch { { "delete_account", email } }[1]
    assert.is_true(r.ok)
    assert.equal(2, r.attempts)
    assert.equal(404, r.status)
    assert.truthy(h.contains(r.note, "earlier attempt"))
    local ok, note = client:delete_account(email)
    assert.is_nil(ok) -- a first attempt answering 404 is a plain 404
    assert.equal(404, note.status)
  end)

  it("calls on_progress once per item", function()
    local emails = sb:seed(8)
    local calls, seen, dones = {}, {}, {}
    for i, e in ipairs(emails) do calls[i] = { "get_account", e } end
    local results = client:batch(calls, { concurrency = 3, on_progress = function(done, total, index, result)
      assert.equal(8, total)
      assert.is_nil(seen[index])
      seen[index] = result
      dones[#dones + 1] = done
    end })
    assert.same({ 1, 2, 3, 4, 5, 6, 7, 8 }, dones)
    for i = 1, 8 do assert.equal(results[i], seen[i]) end
  end)

  it("an error in on_progress stops the batch and releases every handle", function()
    local emails = sb:seed(20)
    sb:fault { fault = "latency", ms = 100, method = "GET", count = 0 }
    local calls = {}
    for i, e in ipairs(emails) do calls[i] = { "get_account", e } end
    local ok, err = pcall(client.batch, client, calls, { concurrency = 10, on_progress = function(done)
      if done == 3 then error("stop here") end
    end })
    assert.is_false(ok)
    assert.truthy(h.contains(err, "stop here"))
    sb:clear_faults()
    assert.equal(emails[1], client:get_account(emails[1]).email) -- still usable
  end)

  it("raises before sending anything when an item is malformed", function()
    local before = sb:requests().total
    assert.has_error(function()
      client:batch { { "get_account", "a@x.com" }, { "set_max_jobs", "a@x.com", 99 } }
    end, "flowmusic: batch item 2: bad argument #2 to 'set_max_jobs' (max_jobs must be an integer 1-16)")
    assert.has_error(function() client:batch { { "get_account", "a@x.com" }, { "fly" } } end,
      "flowmusic: batch item 2: unknown operation 'fly'")
    assert.has_error(function() client:batch { { "close" } } end)
    assert.has_error(function() client:batch { "get_account" } end)
    assert.has_error(function() client:batch({}, { concurrency = 0 }) end)
    assert.has_error(function() client:batch({}, { concurrency = 51 }) end)
    assert.has_error(function() client:batch({}, { parallel = 3 }) end)
    assert.equal(before, sb:requests().total)
  end)

  it("an empty batch returns an empty list", function()
    assert.same({}, client:batch {})
  end)
end)
