-- flowmusic.webhook: JSON POSTs to a real local receiver through flowmusic's own session, with
-- no API token, basic authentication from the URL, the retry policy of a write, and the URL's
-- secrets in no error and no tostring.
local webhook = require "flowmusic.webhook"
local receiver = require "spec.helpers.webhook"
local sandbox = require "spec.helpers.sandbox"
local cjson = require "cjson"

local function contains(hay, needle) return tostring(hay):find(needle, 1, true) ~= nil end

describe("flowmusic.webhook", function()
  local w

  before_each(function() w = receiver.start() end)
  after_each(function() w:stop() end)

  it("POSTs a table or JSON text, with no Authorization header unless the URL has credentials", function()
    local hook = assert(webhook.new(w.url))
    assert.equal("flowmusic.webhook (" .. w.url .. ")", tostring(hook))
    local ok, status = hook:post { event = "appeared", email = "a@x.com", n = 3 }
    assert.is_true(ok)
    assert.equal(200, status)
    assert.is_true((hook:post('{"raw":true}')))
    hook:close()
    hook:close()
    assert.has_error(function() hook:post {} end, "flowmusic.webhook: attempt to use a closed sender")
    local r = w:requests()
    assert.equal(2, #r)
    assert.equal("POST", r[1].method)
    assert.equal("/hook", r[1].path)
    assert.equal(false, r[1].authorization)
    assert.truthy(contains(r[1].content_type, "application/json"))
    assert.same({ event = "appeared", email = "a@x.com", n = 3 }, cjson.decode(r[1].body))
    assert.equal('{"raw":true}', r[2].body)

    local url = w.url:gsub("^http://", "http://hookuser:S3cretPassw0rd@") .. "?key=Qu3ryKeySecret"
    hook = assert(webhook.new(url))
    assert.is_true((hook:post {}))
    assert.equal("flowmusic.webhook (http://***@127.0.0.1:" .. w.port .. "/hook?***)", tostring(hook))
    hook:close()
    r = w:requests()[3]
    assert.equal("/hook?key=Qu3ryKeySecret", r.path)
    assert.equal("Basic " .. "aG9va3VzZXI6UzNjcmV0UGFzc3cwcmQ=", r.authorization)
  end)

  it("fails with an error value on a non-2xx answer, keeping the URL's secrets out of it", function()
    w:answer(500)
    local hook = assert(webhook.new(w.url:gsub("^http://", "http://u:S3cretPassw0rd@") .. "?key=Qu3ryKeySecret",
      { retries = 0 }))
    local ok, err = hook:post {}
    assert.is_nil(ok)
    assert.equal(500, err.status)
    for _, text in ipairs({ tostring(err), err.message or "", tostring(hook) }) do
      assert.falsy(contains(text, "S3cretPassw0rd"))
      assert.falsy(contains(text, "Qu3ryKeySecret"))
    end
    assert.equal(1, #w:requests()) -- a POST that arrived is never re-sent
    hook:close()
  end)

  it("retries a receiver that refuses connections, then says so", function()
    w:down()
    local hook = assert(webhook.new(w.url .. "?key=Qu3ryKeySecret", { retries = 2, timeout = 2 }))
    local ok, err = hook:post {}
    assert.is_nil(ok)
    assert.falsy(err.outcome_unknown)
    assert.equal(3, err.attempts)
    assert.equal("connect", err.reason)
    assert.falsy(contains(tostring(err), "Qu3ryKeySecret"))
    hook:close()
    w:up()
  end)

  it("speaks TLS with verification always on, trusting the CAs it is given", function()
    local sb = sandbox.start { tls = true }
    -- the sandbox's TLS listener stands in for an https receiver: it answers 401 (no token)
    local url = sb.tls_base_url .. "/accounts"
    local hook = assert(webhook.new(url, { retries = 0 }))
    local ok, err = hook:post {}
    assert.is_nil(ok)
    assert.equal("tls_verify", err.reason) -- a self-signed certificate is not trusted by default
    hook:close()
    hook = assert(webhook.new(url, { retries = 0, cainfo = sb.tls_cert }))
    ok, err = hook:post {}
    assert.is_nil(ok)
    assert.equal(401, err.status) -- the handshake passed; no API token went along
    hook:close()
    assert.equal(1, sb:requests().by["POST /v1/flowmusic/accounts"])
    sb:stop()
  end)

  it("says a delivery whose answer never came may have arrived, and never re-sends it", function()
    local sb = sandbox.start {}
    sb:fault { fault = "latency", ms = 1200, method = "POST", path = "/v1/flowmusic/accounts", count = 0 }
    local hook = assert(webhook.new(sb.base_url .. "/accounts", { retries = 3, timeout = 0.5 }))
    local ok, err = hook:post {}
    assert.is_nil(ok)
    assert.equal("timeout", err.kind)
    assert.is_true(err.outcome_unknown)
    assert.truthy(contains(err.message, "the receiver may have it"), err.message)
    assert.falsy(contains(err.message, "list_accounts"))
    assert.equal(1, err.attempts) -- a POST that may have arrived is not sent again
    hook:close()
    sb:stop()
  end)

  it("refuses bad URLs with a message and misuse with an error", function()
    for url, want in pairs({
      ["ftp://127.0.0.1/x"] = "must start with https:// or http://",
      ["http://hooks.example/x"] = "only allowed to loopback hosts",
      ["http://127.0.0.1/a b"] = "must not contain spaces",
      ["https:///x"] = "has no valid host",
    }) do
      local hook, msg = webhook.new(url)
      assert.is_nil(hook)
      assert.truthy(contains(msg, want), msg)
    end
    assert.is_truthy(webhook.new("http://hooks.example/x", { allow_http = true }))
    assert.is_truthy(webhook.new("https://hooks.example/x"))
    assert.has_error(function() webhook.new(w.url, { colour = 1 }) end, "flowmusic.webhook: unknown option 'colour'")
    assert.has_error(function() webhook.new(w.url, { retries = -1 }) end)
    assert.has_error(function() webhook.new(w.url, "x") end)
    local hook = assert(webhook.new(w.url))
    assert.has_error(function() hook:post(42) end)
    hook:close()
    assert.equal("https://***@h.example/p?***", webhook.show("https://a:b@h.example/p?x=1#f"))
    assert.equal("(not a URL)", webhook.show("nope"))
  end)
end)
