-- The retry policy as a table: every row of the README's policy, with exact delays from an
-- injected random source and clock. Pure function: no server involved.
local h = require "spec.helpers.client" -- sets up package paths
local retry = require "flowmusic.retry"
local errors = require "flowmusic.errors"

describe("retry policy", function()
  local cfg = { retries = 3, base_delay = 0.25, max_delay = 8, retry_after_max = 30,
    random = function() return 0.5 end, now = function() return 1000000 end }

  local safe_ops = { "get", "delete", "set_max_jobs", "idempotent" }
  local unsafe_ops = { "add_account", "unsafe" }

  -- op, class, reached, status -> expected retry, expected why
  local rows = {}
  local function row(ops, class, reached, status, want, why)
    for _, op in ipairs(ops) do rows[#rows + 1] = { op, class, reached, status, want, why } end
  end
  local all = { "get", "delete", "set_max_jobs", "idempotent", "add_account", "unsafe" }
  row(all, "network", false, nil, true, "not_sent")           -- connect, DNS, TLS handshake
  row(all, "timeout", false, nil, true, "not_sent")           -- connect timeout
  row(safe_ops, "network", true, nil, true, "network")        -- reset, truncated
  row(safe_ops, "timeout", true, nil, true, "timeout")
  row(unsafe_ops, "network", true, nil, false, "outcome_unknown")
  row(unsafe_ops, "timeout", true, nil, false, "outcome_unknown")
  row(all, "http", true, 429, true, "rate_limited")
  for _, s in ipairs { 408, 500, 502, 503, 504 } do
    row(safe_ops, "http", true, s, true, "transient_status")
    row(unsafe_ops, "http", true, s, false, "outcome_unknown")
  end
  for _, s in ipairs { 400, 401, 403, 404, 409, 422, 501, 505 } do
    row(all, "http", true, s, false, "not_retryable")
  end
  row(all, "fatal", true, nil, false, "not_retryable")        -- bad response, too large, redirect, TLS verify

  for _, r in ipairs(rows) do
    local op, class, reached, status, want, why = r[1], r[2], r[3], r[4], r[5], r[6]
    it(("%s / %s / reached=%s / %s -> %s (%s)"):format(op, class, tostring(reached), tostring(status), tostring(want), why), function()
      local again, delay, reason = retry.decide(op, class, reached, status, {}, 1, cfg)
      assert.equal(want, again)
      assert.equal(why, reason)
      if want then assert.equal(0.125, delay) else assert.is_nil(delay) end
    end)
  end

  it("backs off exponentially with full jitter up to max_delay", function()
    local want = { 0.125, 0.25, 0.5, 1, 2, 4, 4, 4 }
    local c = setmetatable({ retries = 20 }, { __index = cfg })
    for attempt, d in ipairs(want) do
      local again, delay = retry.decide("get", "http", true, 503, {}, attempt, c)
      assert.is_true(again)
      assert.equal(d, delay)
    end
    local zero = setmetatable({ random = function() return 0 end }, { __index = cfg })
    assert.equal(0, select(2, retry.decide("get", "http", true, 503, {}, 1, zero)))
  end)

  it("stops after `retries` re-sends", function()
    assert.is_true((retry.decide("get", "http", true, 503, {}, 3, cfg)))
    assert.same({ false, nil, "retries_exhausted" }, { retry.decide("get", "http", true, 503, {}, 4, cfg) })
  end)

  it("honours Retry-After in seconds and as an HTTP-date", function()
    assert.same({ true, 3, "rate_limited" }, { retry.decide("add_account", "http", true, 429, { ["retry-after"] = "3" }, 1, cfg) })
    local date = os.date("!%a, %d %b %Y %H:%M:%S GMT", 1000000 + 12)
    assert.same({ true, 12, "transient_status" }, { retry.decide("get", "http", true, 503, { ["retry-after"] = date }, 1, cfg) })
    local past = os.date("!%a, %d %b %Y %H:%M:%S GMT", 1000000 - 50)
    assert.same({ true, 0, "transient_status" }, { retry.decide("get", "http", true, 503, { ["retry-after"] = past }, 1, cfg) })
  end)

  it("refuses a Retry-After beyond retry_after_max", function()
    assert.same({ false, nil, "retry_after_too_long" },
      { retry.decide("get", "http", true, 429, { ["retry-after"] = "31" }, 1, cfg) })
  end)

  it("ignores a malformed Retry-After and backs off instead", function()
    assert.same({ true, 0.125, "rate_limited" }, { retry.decide("get", "http", true, 429, { ["retry-after"] = "soon" }, 1, cfg) })
  end)

  it("classifies error values", function()
    local function class(fields) return retry.class_of(errors.new(fields)) end
    assert.equal("http", class { kind = "http", status = 503 })
    assert.equal("timeout", class { kind = "timeout", reason = "timeout" })
    assert.equal("network", class { kind = "network", reason = "reset" })
    assert.equal("network", class { kind = "network", reason = "connect" })
    assert.equal("fatal", class { kind = "network", reason = "tls_verify" })
    assert.equal("fatal", class { kind = "bad_response" })
    assert.equal("fatal", class { kind = "too_large" })
    assert.equal("fatal", class { kind = "redirect", status = 302 })
  end)

  it("maps operations to policy kinds", function()
    assert.equal("get", retry.op_kind("get_account"))
    assert.equal("get", retry.op_kind("list_accounts"))
    assert.equal("get", retry.op_kind("get_usage"))
    assert.equal("delete", retry.op_kind("delete_account"))
    assert.equal("set_max_jobs", retry.op_kind("set_max_jobs"))
    assert.equal("add_account", retry.op_kind("add_account"))
    assert.equal("idempotent", retry.op_kind("request", "GET"))
    assert.equal("idempotent", retry.op_kind("request", "PUT"))
    assert.equal("unsafe", retry.op_kind("request", "POST"))
    assert.equal("unsafe", retry.op_kind("request", "PATCH"))
  end)

  it("classifies libcurl results: not sent vs may have reached", function()
    local function transport(code, sent)
      return errors.from_transport({ code = code, sent = sent, status = 0 }, "GET", "/x")
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
