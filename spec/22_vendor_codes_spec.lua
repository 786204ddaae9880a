-- The vendor's own answers (issue 21): 402 (subscription expired or no credits), 412 (not
-- enough credits), 596 (account in error state) get their reasons, are never retried and
-- carry a hint in CLI output; a 429 that says when to come back only in its body
-- (`retryAfter`, an ISO 8601 time) is waited for, within retry_after_max.
local fixture = require "spec.helpers.fixture"
local h = require "spec.helpers.client"
local cli = require "spec.helpers.cli"
local errors = require "flowmusic.errors"
local cjson = require "cjson"

local EMAIL = "vendor@x.com"
local PATH = "/v1/flowmusic/accounts/vendor%40x.com"

describe("the vendor's own codes", function()
  local sb, c
  fixture.sandbox({ cli = true }, function(s, runner) sb, c = s, runner end)

  local CASES = {
    { 402, "payment_required", "renew it or add credits" },
    { 412, "insufficient_credits", "add credits" },
    { 596, "account_error", "re-add it with a fresh refresh token" },
  }

  for _, case in ipairs(CASES) do
    local status, reason, hint = case[1], case[2], case[3]

    it(status .. " is typed " .. reason .. " and never retried", function()
      local client = h.client(sb, { retries = 3 })
      sb:fault { fault = "status", code = status, method = "GET", path = PATH, count = 0 }
      local v, err = client:get_account(EMAIL)
      assert.is_nil(v)
      assert.equal("http", err.kind)
      assert.equal(status, err.status)
      assert.equal(reason, err.reason)
      assert.equal(1, err.attempts)
      assert.equal(1, sb:requests().by["GET " .. PATH])
      client:close()
    end)

    it(status .. " gets a hint saying what to do, in human and JSON output", function()
      sb:fault { fault = "status", code = status, method = "GET", path = PATH, count = 0 }
      local code, out, err = c:run("accounts get " .. EMAIL .. " --retries 3")
      assert.equal(1, code)
      assert.equal("", out)
      assert.truthy(err:find("hint: ", 1, true) and err:find(hint, 1, true), err)
      local file = cli.spit(c.tmp .. "/get-" .. status .. ".csv", "op,email\nget," .. EMAIL .. "\n")
      code, out = c:run("batch " .. cli.q(file) .. " --json --retries 3")
      assert.equal(1, code)
      local row = cjson.decode(cli.lines(out)[1])
      assert.equal("failed", row.status)
      assert.equal(status, row.http_status)
      assert.equal(1, row.attempts)
      assert.truthy(row.message:find("hint: ", 1, true) and row.message:find(hint, 1, true), row.message)
    end)
  end

  it("an ordinary 4xx gets no hint", function()
    sb:fault { fault = "status", code = 403, method = "GET", path = PATH, count = 0 }
    local code, _, err = c:run("accounts get " .. EMAIL)
    assert.equal(1, code)
    assert.is_nil(err:find("hint:", 1, true), err)
  end)

  describe("a 429 with the time to come back in its body only", function()
    local function events_of(client_opts)
      local events = {}
      client_opts.on_event = function(ev) events[#events + 1] = ev end
      return h.client(sb, client_opts), events
    end

    it("waits until then (retryAfter), not by the backoff", function()
      local seed = sb:seed(1)[1]
      local path = "/v1/flowmusic/accounts/" .. seed:gsub("@", "%%40")
      sb:fault { fault = "status", code = 429, retry_after_body = 1, method = "GET", path = path, count = 1 }
      local client, events = events_of { retries = 2, base_delay = 0.001, max_delay = 0.001 }
      local acct, err = client:get_account(seed)
      assert.is_table(acct, tostring(err))
      local waited
      for _, ev in ipairs(events) do if ev.retry_in then waited = ev.retry_in end end
      assert.is_number(waited)
      -- about a second (the body said now + 1 s; the backoff alone would wait 1 ms)
      assert.is_true(waited > 0.3 and waited <= 1.5, "waited " .. tostring(waited))
      assert.equal(2, sb:requests().by["GET " .. path])
      client:close()
    end)

    it("refuses to wait longer than retry_after_max, keeping the delay in the error", function()
      sb:fault { fault = "status", code = 429, retry_after_body = 30, method = "GET", path = PATH, count = 0 }
      local client = h.client(sb, { retries = 2, retry_after_max = 0.2 })
      local v, err = client:get_account(EMAIL)
      assert.is_nil(v)
      assert.equal(429, err.status)
      assert.is_true(err.retry_after > 25 and err.retry_after <= 30, tostring(err.retry_after))
      assert.equal(1, sb:requests().by["GET " .. PATH])
      client:close()
    end)

    it("lets a Retry-After header win over the body", function()
      sb:fault { fault = "status", code = 429, retry_after = "7", retry_after_body = 30, method = "GET",
                 path = PATH, count = 0 }
      local client = h.client(sb, { retries = 0 })
      local _, err = client:get_account(EMAIL)
      assert.equal(7, err.retry_after)
      client:close()
    end)
  end)
end)

describe("errors.parse_iso_time", function()
  local now = 1796587200 -- 2026-12-06T20:00:00Z
  local parse = errors.parse_iso_time

  it("reads UTC times with or without a fraction, Z or +00:00", function()
    assert.equal(5, parse("2026-12-06T20:00:05Z", now))
    assert.equal(5.25, parse("2026-12-06T20:00:05.250Z", now))
    assert.equal(65, parse("2026-12-06T20:01:05+00:00", now))
    assert.equal(86400, parse("2026-12-07T20:00:00.000Z", now))
  end)

  it("gives 0 for a time already past", function()
    assert.equal(0, parse("2026-12-06T19:59:00Z", now))
    assert.equal(0, parse("1999-01-01T00:00:00Z", now))
  end)

  it("refuses anything else", function()
    for _, v in ipairs { "soon", "", "2026-12-06 20:00:05Z", "2026-12-06T20:00:05", "2026-12-06T20:00:05+01:00",
                         "2026-13-06T20:00:05Z", "2026-12-06T25:00:05Z", "2026-12-06T20:00:05.Z", 5, true } do
      assert.is_nil(parse(v, now), tostring(v))
    end
    assert.is_nil(parse(nil, now))
  end)
end)
