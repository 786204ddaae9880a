-- Every error kind, produced by real faults of the sandbox (or a closed port), each checked
-- for both the nil and the error's fields.
local sandbox = require "spec.helpers.sandbox"
local h = require "spec.helpers.client"

describe("flowmusic error values", function()
  local sb, client
  local EMAIL = "err@x.com"
  local PATH = "/v1/flowmusic/accounts/err%40x.com"

  lazy_setup(function()
    sb = sandbox.start {}
    client = h.client(sb, { timeout = 1, max_response_bytes = 1024 * 1024 })
  end)
  lazy_teardown(function()
    if client then client:close() end
    if sb then sb:stop() end
  end)
  before_each(function()
    sb:reset()
    assert.is_table(client:add_account("sandbox:plus:" .. EMAIL))
  end)

  -- Script fault f for the next GET of the account, then make that call.
  local function get_with(f)
    f.method, f.path = "GET", PATH
    sb:fault(f)
    return client:get_account(EMAIL)
  end

  local function check(err, kind)
    assert.is_table(err)
    assert.equal(kind, err.kind)
    assert.equal("GET", err.method)
    assert.equal("/accounts/err%40x.com", err.path)
    local line = tostring(err)
    assert.is_nil(line:find("\n"))
    assert.truthy(h.contains(line, kind))
    assert.is_false(h.contains(line, sb.token))
  end

  it("http: a status with a JSON error body carries the server's message", function()
    local acct, err = get_with { fault = "status", code = 500, message = "boom" }
    assert.is_nil(acct)
    check(err, "http")
    assert.equal(500, err.status)
    assert.equal("boom", err.message)
  end)

  it("http: 401 for a wrong token", function()
    local c = h.client(sb, { token = "user:9-wrong" })
    local acct, err = c:get_account(EMAIL)
    assert.is_nil(acct)
    check(err, "http")
    assert.equal(401, err.status)
    c:close()
  end)

  it("http: an HTML 502 page from a proxy is still a typed error", function()
    local acct, err = get_with { fault = "html" }
    assert.is_nil(acct)
    check(err, "http")
    assert.equal(502, err.status)
    assert.truthy(h.contains(err.message, "text/html"))
  end)

  it("http: Retry-After in seconds and as an HTTP-date", function()
    local _, err = get_with { fault = "status", code = 429, retry_after = "7" }
    check(err, "http")
    assert.equal(429, err.status)
    assert.equal(7, err.retry_after)
    local date = os.date("!%a, %d %b %Y %H:%M:%S GMT", os.time() + 120)
    local _, err2 = get_with { fault = "status", code = 503, retry_after = date }
    assert.is_true(err2.retry_after >= 100 and err2.retry_after <= 121)
  end)

  it("redirect: a 3xx is not followed", function()
    local acct, err = get_with { fault = "status", code = 302 }
    assert.is_nil(acct)
    check(err, "redirect")
    assert.equal(302, err.status)
  end)

  it("timeout: a stalled server", function()
    local acct, err = get_with { fault = "stall", ms = 3000 }
    assert.is_nil(acct)
    check(err, "timeout")
    assert.is_true(err.reached)
  end)

  it("network: connection refused never reached the server", function()
    local c = h.client(sb, { base_url = "http://127.0.0.1:" .. h.closed_port() .. "/v1/flowmusic" })
    local acct, err = c:get_account(EMAIL)
    assert.is_nil(acct)
    check(err, "network")
    assert.equal("connect", err.reason)
    assert.is_false(err.reached)
    c:close()
  end)

  for _, f in ipairs { "reset", "close_after_headers", "short_body", "chunked_cut" } do
    it("network: " .. f, function()
      -- libcurl itself re-sends a request once per pooled connection that dies before
      -- answering (the sandbox reset clears what is left of the count)
      local acct, err = get_with { fault = f, count = 10 }
      assert.is_nil(acct)
      check(err, "network")
      assert.is_true(err.reached)
    end)
  end

  it("bad_response: invalid JSON with a 200", function()
    local acct, err = get_with { fault = "invalid_json" }
    assert.is_nil(acct)
    check(err, "bad_response")
    assert.equal(200, err.status)
  end)

  it("bad_response: JSON nested deeper than the limit", function()
    local acct, err = get_with { fault = "deep_json", depth = 100000 }
    assert.is_nil(acct)
    check(err, "bad_response")
  end)

  for _, f in ipairs { "huge", "huge_chunked", "endless" } do
    it("too_large: " .. f .. " is cut at max_response_bytes", function()
      local acct, err = get_with { fault = f, mb = f ~= "endless" and 20 or nil }
      assert.is_nil(acct)
      check(err, "too_large")
    end)
  end

  it("a slow drip within the timeout still succeeds", function()
    local acct, err = get_with { fault = "drip", bytes = 256, interval_ms = 5 }
    assert.is_nil(err)
    assert.equal(EMAIL, acct.email)
  end)

  it("the client keeps working after every kind of failure", function()
    for _, f in ipairs { "reset", "short_body", "invalid_json", "huge" } do get_with { fault = f } end
    local acct = client:get_account(EMAIL)
    assert.equal(EMAIL, acct.email)
  end)
end)
