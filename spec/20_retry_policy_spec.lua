-- The retry policy as a table: every row of the README's policy, with exact delays from an
-- injected random source and clock. Pure function: no server involved.
require "spec.helpers.client" -- sets up package paths
local retry = require "flowmusic.retry"
local errors = require "flowmusic.errors"

describe("retry policy", function()
  local ops = require "flowmusic.ops"
  local cfg = { retries = 3, base_delay = 0.25, max_delay = 8, retry_after_max = 30,
    random = function() return 0.5 end }

  -- The policy facts (resend, write) come from the operation table, as the scheduler reads them.
  local function call_of(name, ...)
    return assert(ops.prepare(name, { n = select("#", ...), ... }))
  end
  local calls = {
    get_account = call_of("get_account", "a@x.com"),
    list_accounts = call_of("list_accounts"),
    get_usage = call_of("get_usage", "a@x.com"),
    delete_account = call_of("delete_account", "a@x.com"),
    set_max_jobs = call_of("set_max_jobs", "a@x.com", 4),
    ["request GET"] = call_of("request", "GET", "/jobs"),
    ["request PUT"] = call_of("request", "PUT", "/jobs/1"),
    add_account = call_of("add_account", "sandbox:plus:a@x.com"),
    ["request POST"] = call_of("request", "POST", "/jobs"),
    ["request PATCH"] = call_of("request", "PATCH", "/jobs/1"),
  }
  local reads = { "get_account", "list_accounts", "get_usage", "request GET" }
  local safe_writes = { "delete_account", "set_max_jobs", "request PUT" }
  local unsafe = { "add_account", "request POST", "request PATCH" }
  local safe = {}
  for _, list in ipairs { reads, safe_writes } do for _, n in ipairs(list) do safe[#safe + 1] = n end end
  local all = {}
  for _, list in ipairs { safe, unsafe } do for _, n in ipairs(list) do all[#all + 1] = n end end

  -- call, class, reached, status -> expected retry, expected why
  local rows = {}
  local function row(names, class, reached, status, want, why)
    for _, name in ipairs(names) do rows[#rows + 1] = { name, class, reached, status, want, why } end
  end
  row(all, "network", false, nil, true, "not_sent")           -- connect, DNS, TLS handshake
  row(all, "timeout", false, nil, true, "not_sent")           -- connect timeout
  row(safe, "network", true, nil, true, "network")            -- reset, truncated
  row(safe, "timeout", true, nil, true, "timeout")
  row(unsafe, "network", true, nil, false, "outcome_unknown")
  row(unsafe, "timeout", true, nil, false, "outcome_unknown")
  row(all, "http", true, 429, true, "rate_limited")
  for _, s in ipairs { 408, 500, 502, 503, 504 } do
    row(safe, "http", true, s, true, "transient_status")
    row(unsafe, "http", true, s, false, "outcome_unknown")
  end
  for _, s in ipairs { 400, 401, 403, 404, 409, 422, 501, 505 } do
    row(all, "http", true, s, false, "not_retryable")
  end
  row(reads, "unreadable", true, 200, false, "not_retryable") -- bad JSON, too large, redirect
  row(safe_writes, "unreadable", true, 200, false, "outcome_unknown")
  row(unsafe, "unreadable", true, 200, false, "outcome_unknown")
  row(all, "fatal", true, nil, false, "not_retryable")        -- TLS verification, bad URL

  for _, r in ipairs(rows) do
    local name, class, reached, status, want, why = r[1], r[2], r[3], r[4], r[5], r[6]
    it(("%s / %s / reached=%s / %s -> %s (%s)"):format(name, class, tostring(reached), tostring(status), tostring(want), why), function()
      local again, delay, reason = retry.decide(calls[name], class, reached, status, {}, 1, cfg)
      assert.equal(want, again)
      assert.equal(why, reason)
      if want then assert.equal(0.125, delay) else assert.is_nil(delay) end
    end)
  end

  it("backs off exponentially with full jitter up to max_delay", function()
    local want = { 0.125, 0.25, 0.5, 1, 2, 4, 4, 4 }
    local c = setmetatable({ retries = 20 }, { __index = cfg })
    for attempt, d in ipairs(want) do
      local again, delay = retry.decide(calls.get_account, "http", true, 503, {}, attempt, c)
      assert.is_true(again)
      assert.equal(d, delay)
    end
    local zero = setmetatable({ random = function() return 0 end }, { __index = cfg })
    assert.equal(0, select(2, retry.decide(calls.get_account, "http", true, 503, {}, 1, zero)))
  end)

  it("stops after `retries` re-sends", function()
    assert.is_true((retry.decide(calls.get_account, "http", true, 503, {}, 3, cfg)))
    assert.same({ false, nil, "retries_exhausted" }, { retry.decide(calls.get_account, "http", true, 503, {}, 4, cfg) })
  end)

  it("honours Retry-After in seconds and as an HTTP-date", function()
    assert.same({ true, 3, "rate_limited" }, { retry.decide(calls.add_account, "http", true, 429, { ["retry-after"] = "3" }, 1, cfg) })
    local date = os.date("!%a, %d %b %Y %H:%M:%S GMT", os.time() + 12)
    local again, delay, why = retry.decide(calls.get_account, "http", true, 503, { ["retry-after"] = date }, 1, cfg)
    assert.same({ true, "transient_status" }, { again, why })
    assert.is_true(delay == 12 or delay == 11, tostring(delay)) -- a second may tick meanwhile
    assert.equal(12, errors.parse_retry_after(date, os.time(), os.time()) and errors.parse_retry_after(
      os.date("!%a, %d %b %Y %H:%M:%S GMT", 1000000 + 12), 1000000))
    local past = os.date("!%a, %d %b %Y %H:%M:%S GMT", os.time() - 50)
    assert.same({ true, 0, "transient_status" }, { retry.decide(calls.get_account, "http", true, 503, { ["retry-after"] = past }, 1, cfg) })
  end)

  it("refuses a Retry-After beyond retry_after_max", function()
    assert.same({ false, nil, "retry_after_too_long" },
      { retry.decide(calls.get_account, "http", true, 429, { ["retry-after"] = "31" }, 1, cfg) })
  end)

  it("ignores a malformed Retry-After and backs off instead", function()
    assert.same({ true, 0.125, "rate_limited" }, { retry.decide(calls.get_account, "http", true, 429, { ["retry-after"] = "soon" }, 1, cfg) })
  end)

  it("classifies error values", function()
    local function class(fields) return retry.class_of(errors.new(fields)) end
    assert.equal("http", class { kind = "http", status = 503 })
    assert.equal("timeout", class { kind = "timeout", reason = "timeout" })
    assert.equal("network", class { kind = "network", reason = "reset" })
    assert.equal("network", class { kind = "network", reason = "connect" })
    assert.equal("fatal", class { kind = "network", reason = "tls_verify" })
    assert.equal("unreadable", class { kind = "bad_response" })
    assert.equal("unreadable", class { kind = "too_large" })
    assert.equal("unreadable", class { kind = "redirect", status = 302 })
  end)

  it("takes what may be re-sent from the operation table, not from names", function()
    for name, c in pairs(calls) do
      assert.equal(c.op.resend(c.method), c.resend, name)
      assert.equal(c.op.write(c.method), c.write, name)
    end
    assert.is_false(calls.add_account.resend)
    assert.is_true(calls.set_max_jobs.resend and calls.set_max_jobs.write)
    assert.is_true(calls["request GET"].resend and not calls["request GET"].write)
  end)

  it("classifies libcurl results: not sent vs may have reached", function()
    local function transport(code, sent)
      return errors.from_transport({ code = code, sent = sent, status = 0 }, { method = "GET", path = "/x" })
    end
    assert.same({ "network", "connect", false }, { transport(7, false).kind, transport(7, false).reason, transport(7, false).reached })
    assert.same({ "network", "dns", false }, { transport(6, false).kind, transport(6, false).reason, transport(6, false).reached })
    assert.same({ "network", "tls", false }, { transport(35, true).kind, transport(35, true).reason, transport(35, true).reached })
    assert.same({ "timeout", "connect_timeout", false }, { transport(28, false).kind, transport(28, false).reason, transport(28, false).reached })
    assert.same({ "timeout", "timeout", true }, { transport(28, true).kind, transport(28, true).reason, transport(28, true).reached })
    assert.same({ "network", "empty_reply", true }, { transport(52, true).kind, transport(52, true).reason, transport(52, true).reached })
    assert.same({ "network", "truncated", true }, { transport(18, true).kind, transport(18, true).reason, transport(18, true).reached })
  end)
end)
