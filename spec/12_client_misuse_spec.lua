-- Misuse raises before any I/O, with a message that never echoes a secret.
local fixture = require "spec.helpers.fixture"
local h = require "spec.helpers.client"
local flowmusic = h.flowmusic

describe("flowmusic misuse", function()
  local sb, client

  fixture.sandbox({ client = true, reset = false }, function(s, _, cl) sb, client = s, cl end)

  -- f must raise; the message must mention want and contain none of the secrets.
  local function raises(f, want, secrets)
    local ok, msg = pcall(f)
    assert.is_false(ok, "expected an error mentioning " .. want)
    msg = tostring(msg)
    assert.truthy(h.contains(msg, want), "message was: " .. msg)
    for _, s in ipairs(secrets or {}) do assert.is_false(h.contains(msg, s), "secret echoed: " .. msg) end
  end

  describe("flowmusic.new", function()
    it("rejects non-table options and unknown keys", function()
      raises(function() flowmusic.new("x") end, "options must be a table")
      raises(function() flowmusic.new { token = sb.token, timout = 3 } end, "unknown option 'timout'")
    end)

    local bad_tokens = {
      ["a CR"] = "user:1-abc\rdef", ["a LF"] = "user:1-abc\ndef", ["a NUL"] = "user:1-abc\0def",
      ["a space"] = "user:1-abc def", ["non-ASCII"] = "user:1-abcdéf", ["empty"] = "",
    }
    for what, token in pairs(bad_tokens) do
      it("rejects a token with " .. what .. " without echoing it", function()
        raises(function() flowmusic.new { token = token, base_url = sb.base_url } end, "token", { token ~= "" and token or nil })
      end)
    end

    it("rejects a token of the wrong type", function()
      raises(function() flowmusic.new { token = 42 } end, "token must be a string")
    end)

    it("refuses plain http to a non-loopback host unless allowed", function()
      raises(function() flowmusic.new { token = sb.token, base_url = "http://example.com/v1/flowmusic" } end,
        "only allowed for loopback")
      local c = flowmusic.new { token = sb.token, base_url = "http://example.com/v1/flowmusic", allow_http = true }
      assert.equal("http://example.com/v1/flowmusic", c.base_url)
      c:close()
      local d = flowmusic.new { token = sb.token, base_url = "https://api.example.com/v1/flowmusic/" }
      assert.equal("https://api.example.com/v1/flowmusic", d.base_url)
      d:close()
    end)

    it("rejects base URLs with user info, queries or other schemes", function()
      raises(function() flowmusic.new { token = sb.token, base_url = "https://u:p@h/v1" } end, "user info", { "u:p" })
      raises(function() flowmusic.new { token = sb.token, base_url = "https://h/v1?x=1" } end, "query")
      raises(function() flowmusic.new { token = sb.token, base_url = "ftp://h/v1" } end, "https://")
    end)

    it("checks numeric options", function()
      raises(function() flowmusic.new { token = sb.token, timeout = -1 } end, "timeout")
      raises(function() flowmusic.new { token = sb.token, timeout = "5" } end, "timeout")
      raises(function() flowmusic.new { token = sb.token, retries = 1.5 } end, "retries")
      raises(function() flowmusic.new { token = sb.token, max_response_bytes = 0 } end, "max_response_bytes")
      raises(function() flowmusic.new { token = sb.token, deadline = 0 } end, "deadline")
    end)
  end)

  describe("methods", function()
    local before
    before_each(function() before = sb:requests().total end)
    after_each(function() assert.equal(before, sb:requests().total, "misuse must not send anything") end)

    it("add_account checks the refresh token without echoing it", function()
      raises(function() client:add_account(nil) end, "refresh_token must be a string")
      raises(function() client:add_account("short") end, "at least 10", { "short" })
      raises(function() client:add_account("sandbox:plus:a\1b@x.com") end, "control characters", { "sandbox:plus" })
      raises(function() client:add_account("sandbox:plus:ok@x.com\n") end, "control characters", { "sandbox:plus" })
    end)

    local bad_max_jobs = { 0, 17, 4.5, -1, "4", true }
    for _, v in ipairs(bad_max_jobs) do
      it("max_jobs " .. tostring(v) .. " (" .. type(v) .. ") is refused", function()
        raises(function() client:set_max_jobs("a@x.com", v) end, "max_jobs must be an integer 1-16")
        raises(function() client:add_account("sandbox:plus:a@x.com", v) end, "max_jobs must be an integer 1-16")
      end)
    end

    it("max_jobs is required by set_max_jobs", function()
      raises(function() client:set_max_jobs("a@x.com") end, "max_jobs")
    end)

    local bad_emails = { [""] = "must not be empty", ["."] = "'.' or '..'", [".."] = "'.' or '..'",
      ["a\n@x.com"] = "control characters", ["a\0@x.com"] = "control characters" }
    for email, want in pairs(bad_emails) do
      it(("email %q is refused by every method"):format(email), function()
        raises(function() client:get_account(email) end, want)
        raises(function() client:delete_account(email) end, want)
        raises(function() client:get_usage(email) end, want)
        raises(function() client:set_max_jobs(email, 2) end, want)
      end)
    end

    it("an email of the wrong type is refused", function()
      raises(function() client:get_account(42) end, "email must be a string")
      raises(function() client:get_account() end, "email must be a string")
    end)

    it("'usage' can't be an account path, nor any other string that is not name@domain", function()
      raises(function() client:get_account("usage") end, "name@domain")
      raises(function() client:delete_account("not-an-email") end, "name@domain")
      raises(function() client:set_max_jobs("a@b@c", 4) end, "name@domain")
      raises(function() client:get_usage("@x.com") end, "name@domain")
    end)

    it("methods must be called with ':'", function()
      raises(function() client.list_accounts() end, "client:list_accounts")
      raises(function() client.get_account("a@x.com") end, "client:get_account")
    end)

    it("list_accounts takes no arguments", function()
      raises(function() client:list_accounts("x") end, "no arguments")
    end)

    it("request checks method, path and options", function()
      raises(function() client:request("BREW", "/x") end, "method must be one of")
      raises(function() client:request("GET", "x") end, "must start with")
      raises(function() client:request("GET", "/a/../b") end, "'..'")
      raises(function() client:request("GET", "/a b") end, "spaces")
      raises(function() client:request("GET", "/a", { qurey = {} }) end, "unknown request option 'qurey'")
      raises(function() client:request("GET", "/a", { body = {} }) end, "GET takes no body")
      raises(function() client:request("GET", "/a", { query = { x = {} } }) end, "query value")
      raises(function() client:request("POST", "/a", { body = { id = 0 / 0 } }) end, "not finite")
      raises(function() client:request("POST", "/a", { body = { f = function() end } }) end, "cannot encode")
    end)
  end)
end)
