-- Conformance of the sandbox with ../shared/api (CONTRACT.md + the vendor's reference pages):
-- the accounts endpoints: authentication, add and refresh (JSON and multipart), maxJobs, list, get, delete, the refresh-token scheme, routing.
-- Drives the sandbox with LuaSocket and the curl CLI only; never with the flowmusic client.
-- Shared helpers: spec/helpers/conformance.lua.

local cjson = require "cjson"
local socket = require "socket"
local server = require "flowmusic.sandbox.server"
local support = require "spec.helpers.conformance"
local ELLIPSIS, UUID, ISO_MS, REDACTED, LIMIT = support.ELLIPSIS, support.UUID, support.ISO_MS, support.REDACTED,
  support.LIMIT
local alive, enc, epoch_ms, multipart = support.alive, support.enc, support.epoch_ms, support.multipart

describe("flowmusic sandbox: accounts", function()
  local sb
  support.sandbox("user:42-SpecToken", function(s) sb = s end)
  local post, add, assert_error = support.api(function() return sb end)

  describe("helper", function()
    it("exposes base_url, root, token, pid, dir", function()
      assert.matches("^http://127%.0%.0%.1:%d+/v1/flowmusic$", sb.base_url)
      assert.are.equal(sb.root .. "/v1/flowmusic", sb.base_url)
      assert.are.equal("user:42-SpecToken", sb.token)
      assert.is_true(alive(sb.pid))
      assert.is_not_nil(io.open(sb.dir .. "/nginx.conf"))
      local code, body = sb:control("GET", "/__sandbox/health")
      assert.are.equal(200, code)
      assert.is_true(body.ok)
    end)
  end)
  describe("authentication", function()
    local calls = {
      { "POST", "/accounts" }, { "GET", "/accounts" }, { "GET", "/accounts/a%40b.com" },
      { "DELETE", "/accounts/a%40b.com" }, { "GET", "/accounts/usage?email=a%40b.com" },
    }
    for _, call in ipairs(calls) do
      it("answers 401 JSON on " .. call[1] .. " " .. call[2] .. " without or with a wrong token", function()
        for _, token in ipairs({ false, "user:42-Wrong", "user:42-SpecToke", "USER:42-SpecToken",
                                 "user:42-SpecTokenX" }) do
          local code, body, headers = sb:api(call[1], call[2],
            { token = token, json = { refresh_token = "sandbox:plus:a@b.com" } })
          assert.are.equal(401, code)
          assert.are.same({ error = "Unauthorized", code = 401 }, body)
          assert.are.equal("application/json", headers["content-type"])
        end
      end)
    end

    it("requires the exact 'Bearer <token>' form", function()
      local code = sb:api("GET", "/accounts",
        { token = false, headers = { Authorization = "bearer user:42-SpecToken" } })
      assert.are.equal(401, code)
      code = sb:api("GET", "/accounts", { token = false, headers = { Authorization = "user:42-SpecToken" } })
      assert.are.equal(401, code)
      code = sb:api("GET", "/accounts")
      assert.are.equal(200, code)
    end)

    it("uses the token given to start, default user:1-sandbox", function()
      assert.are.equal("user:1-sandbox", server.DEFAULT_TOKEN)
    end)
  end)
  describe("POST /accounts (add or refresh)", function()
    it("creates a new account: 201 with the full record", function()
      local code, r, headers = post({ refresh_token = "sandbox:plus:new@example.com", maxJobs = 3 })
      assert.are.equal(201, code)
      assert.are.equal("application/json", headers["content-type"])
      assert.are.equal("new@example.com", r.email)
      assert.are.equal("plus", r.tier)
      assert.are.equal("plus-monthly", r.subscription_plan)
      assert.are.equal("g1_entitlement", r.provider)
      assert.matches(UUID, r.user_id)
      assert.matches(UUID, r.session_id)
      assert.are.equal(3, r.maxJobs)
      assert.matches(ISO_MS, r.added)
      assert.are.equal(r.added, r.refreshed_at)
      assert.are.equal(0, r.refreshed_count)
      assert.matches(REDACTED, r.access_token)
      assert.matches(REDACTED, r.refresh_token)
      assert.are.equal("san" .. ELLIPSIS .. "redacted" .. ELLIPSIS .. "com", r.refresh_token)
      assert.matches(ISO_MS, r.access_token_expires_at)
      assert.are.equal(3600 * 1000, epoch_ms(r.access_token_expires_at) - epoch_ms(r.refreshed_at))
      assert.is_nil(r.error)
      assert.is_nil(r.credits_remaining)
      assert.is_nil(r.tokens_remaining)
      assert.is_true(math.abs(epoch_ms(r.added) - socket.gettime() * 1000) < 60000)
    end)

    it("encodes integers as integers", function()
      local _, text = sb:http("POST", sb.base_url .. "/accounts", {
        body = '{"refresh_token":"sandbox:member:int@example.com"}',
        headers = { Authorization = "Bearer " .. sb.token, ["Content-Type"] = "application/json" } })
      assert.matches('"maxJobs":16[,}]', text)
      assert.matches('"refreshed_count":0[,}]', text)
      assert.is_nil(text:find("%d%.0[,}]"))
    end)

    it("refreshes an existing account: 200, refreshed_count + 1, added unchanged", function()
      local first = add("sandbox:plus:again@example.com", 5)
      socket.sleep(0.01)
      local code, r = post({ refresh_token = "sandbox:starter:again@example.com" })
      assert.are.equal(200, code)
      assert.are.equal(1, r.refreshed_count)
      assert.are.equal(first.added, r.added)
      assert.is_true(epoch_ms(r.refreshed_at) > epoch_ms(first.refreshed_at))
      assert.are.equal(3600 * 1000, epoch_ms(r.access_token_expires_at) - epoch_ms(r.refreshed_at))
      assert.are_not.equal(first.session_id, r.session_id)
      assert.are.equal(first.user_id, r.user_id)
      assert.are.equal(5, r.maxJobs)        -- kept when not sent
      assert.are.equal("starter", r.tier)   -- the plan follows the token
      code, r = post({ refresh_token = "sandbox:starter:again@example.com", maxJobs = 7 })
      assert.are.equal(200, code)
      assert.are.equal(2, r.refreshed_count)
      assert.are.equal(7, r.maxJobs)
    end)

    it("derives user_id deterministically from the email", function()
      local a = add("sandbox:plus:same@example.com")
      sb:api("DELETE", "/accounts/" .. enc("same@example.com"))
      local b = add("sandbox:free:same@example.com")
      assert.are.equal(a.user_id, b.user_id)
      local c = add("sandbox:free:other@example.com")
      assert.are_not.equal(a.user_id, c.user_id)
    end)

    it("defaults maxJobs from the tier; plan and provider on paid tiers only", function()
      local want = { free = 1, starter = 4, plus = 12, member = 16, unknown = 2 }
      for tier, n in pairs(want) do
        local r = add("sandbox:" .. tier .. ":" .. tier .. "@example.com")
        assert.are.equal(tier, r.tier)
        assert.are.equal(n, r.maxJobs)
        if tier == "free" or tier == "unknown" then
          assert.is_nil(r.subscription_plan)
          assert.is_nil(r.provider)
        else
          assert.are.equal("string", type(r.subscription_plan))
          assert.are.equal("string", type(r.provider))
        end
      end
    end)

    it("rejects a missing, short or non-string refresh_token with 400", function()
      assert_error(select(1, post({})), select(2, post({})), 400, "refresh_token is required")
      local code, body = post({ maxJobs = 4 })
      assert_error(code, body, 400, "refresh_token is required")
      for _, bad in ipairs({ "123456789", "", 1234567890, true }) do
        code, body = post({ refresh_token = bad })
        assert_error(code, body, 400, "refresh_token is required and must be at least 10 characters")
      end
      code = post({ refresh_token = "1234567890" }) -- exactly 10 characters is enough
      assert.are.equal(201, code)
    end)

    it("answers 400 when the token fails to refresh, and stores nothing", function()
      local code, body = post({ refresh_token = "sandbox:fail:nope@example.com" })
      assert_error(code, body, 400, "refresh token failed to refresh")
      local _, list = sb:api("GET", "/accounts")
      assert.are.same({}, list)
    end)

    it("rejects maxJobs outside 1-16 or not a JSON integer", function()
      for _, bad in ipairs({ 0, 17, -1, 4.5, "4", true, {} }) do
        local code, body = post({ refresh_token = "sandbox:plus:mj@example.com", maxJobs = bad })
        assert_error(code, body, 400, "maxJobs must be an integer between 1 and 16")
      end
      assert.are.equal(1, add("sandbox:plus:one@example.com", 1).maxJobs)
      assert.are.equal(16, add("sandbox:plus:sixteen@example.com", 16).maxJobs)
    end)

    it("rejects unknown fields beside refresh_token", function()
      local code, body = post({ refresh_token = "sandbox:plus:x@example.com", refreshToken = "y" })
      assert_error(code, body, 400)
      assert.matches("refreshToken", body.error)
    end)

    it("rejects email sent together with refresh_token", function()
      local code, body = post({ refresh_token = "sandbox:plus:x@example.com", email = "x@example.com", maxJobs = 2 })
      assert_error(code, body, 400, "email must not be sent together with refresh_token")
    end)

    it("treats JSON null as an absent field", function()
      local code, r = sb:api("POST", "/accounts", {
        body = '{"refresh_token":"sandbox:plus:n@example.com","maxJobs":null}',
        headers = { ["Content-Type"] = "application/json" } })
      assert.are.equal(201, code)
      assert.are.equal(12, r.maxJobs)
    end)

    it("rejects a body that is neither a JSON object nor multipart with 400", function()
      for _, body in ipairs({ "", "not json", "[]", '["refresh_token"]', '"x"', "42", '{"refresh_token":' }) do
        local code, b = sb:api("POST", "/accounts",
          { body = body, headers = { ["Content-Type"] = "application/json" } })
        assert_error(code, b, 400, "Request body must be a JSON object or multipart/form-data")
      end
      local code, b = sb:api("POST", "/accounts", { body = "refresh_token=sandbox%3Aplus%3Ax%40y.z",
        headers = { ["Content-Type"] = "application/x-www-form-urlencoded" } })
      assert_error(code, b, 400)
    end)

    it("answers 400 for the 51st account, still refreshes existing ones", function()
      local emails = sb:seed(49)
      assert.are.equal(49, #emails)
      add("sandbox:plus:fiftieth@example.com")
      local code, body = post({ refresh_token = "sandbox:plus:fiftyfirst@example.com" })
      assert_error(code, body, 400, LIMIT)
      code = post({ refresh_token = "sandbox:plus:fiftieth@example.com" })
      assert.are.equal(200, code)
      code, body = post({ refresh_token = "sandbox:fail:fiftyfirst@example.com" })
      assert_error(code, body, 400, "refresh token failed to refresh")
      assert.are.equal(204, (sb:api("DELETE", "/accounts/" .. enc(emails[1]))))
      assert.are.equal(201, (post({ refresh_token = "sandbox:plus:fiftyfirst@example.com" })))
    end)
  end)
  describe("POST /accounts (update maxJobs by email)", function()
    it("changes maxJobs only: 200, no refresh", function()
      local before = add("sandbox:plus:upd@example.com", 12)
      local code, r = post({ email = "upd@example.com", maxJobs = 4 })
      assert.are.equal(200, code)
      assert.are.equal(4, r.maxJobs)
      assert.are.equal(before.refreshed_count, r.refreshed_count)
      assert.are.equal(before.refreshed_at, r.refreshed_at)
      assert.are.equal(before.session_id, r.session_id)
      local _, one = sb:api("GET", "/accounts/" .. enc("upd@example.com"))
      assert.are.equal(4, one.maxJobs)
    end)

    it("requires maxJobs, an integer 1-16", function()
      add("sandbox:plus:upd@example.com")
      local code, body = post({ email = "upd@example.com" })
      assert_error(code, body, 400, "maxJobs is required when updating an account by email")
      for _, bad in ipairs({ 0, 17, 2.5, "3", false }) do
        code, body = post({ email = "upd@example.com", maxJobs = bad })
        assert_error(code, body, 400, "maxJobs must be an integer between 1 and 16")
      end
    end)

    it("rejects anything else sent beside email and maxJobs", function()
      add("sandbox:plus:upd@example.com")
      local code, body = post({ email = "upd@example.com", maxJobs = 3, tier = "free" })
      assert_error(code, body, 400)
      assert.matches("tier", body.error)
    end)

    it("answers 404 for an unknown email", function()
      local code, body = post({ email = "ghost@example.com", maxJobs = 3 })
      assert_error(code, body, 404, "Account ghost@example.com not found")
    end)

    it("rejects a non-string or empty email", function()
      assert_error(select(1, post({ email = "", maxJobs = 3 })), select(2, post({ email = "", maxJobs = 3 })), 400)
      local code, body = post({ email = 5, maxJobs = 3 })
      assert_error(code, body, 400)
    end)
  end)
  describe("POST /accounts as multipart/form-data", function()
    local function post_form(fields)
      local body, ctype = multipart(fields)
      return sb:api("POST", "/accounts", { body = body, headers = { ["Content-Type"] = ctype } })
    end

    it("adds, refreshes and updates with form fields", function()
      local code, r = post_form({ { "refresh_token", "sandbox:starter:form@example.com" }, { "maxJobs", "5" } })
      assert.are.equal(201, code)
      assert.are.equal("form@example.com", r.email)
      assert.are.equal(5, r.maxJobs)
      code, r = post_form({ { "refresh_token", "sandbox:starter:form@example.com" } })
      assert.are.equal(200, code)
      assert.are.equal(1, r.refreshed_count)
      code, r = post_form({ { "email", "form@example.com" }, { "maxJobs", "9" } })
      assert.are.equal(200, code)
      assert.are.equal(9, r.maxJobs)
    end)

    it("applies the same validation", function()
      local code, body = post_form({ { "refresh_token", "short" } })
      assert_error(code, body, 400)
      code, body = post_form({ { "refresh_token", "sandbox:plus:f@example.com" }, { "maxJobs", "4.5" } })
      assert_error(code, body, 400, "maxJobs must be an integer between 1 and 16")
      code, body = post_form({ { "refresh_token", "sandbox:plus:f@example.com" }, { "maxJobs", "17" } })
      assert_error(code, body, 400, "maxJobs must be an integer between 1 and 16")
      code, body = post_form({ { "email", "f@example.com" } })
      assert_error(code, body, 400, "maxJobs is required when updating an account by email")
      code, body = post_form({ { "email", "nobody@example.com" }, { "maxJobs", "2" } })
      assert_error(code, body, 404, "Account nobody@example.com not found")
      code, body = sb:api("POST", "/accounts", { body = "garbage",
        headers = { ["Content-Type"] = "multipart/form-data; boundary=xyz" } })
      assert_error(code, body, 400)
    end)
  end)
  describe("GET /accounts", function()
    it("is an empty JSON object when there are none", function()
      local code, text = sb:http("GET", sb.base_url .. "/accounts",
                                 { headers = { Authorization = "Bearer " .. sb.token } })
      assert.are.equal(200, code)
      assert.are.equal("{}", text)
    end)

    it("is keyed by email, records without credit balances", function()
      add("sandbox:plus:l1@example.com")
      add("sandbox:free:l2@example.com")
      add("sandbox:broken:l3@example.com")
      local code, list = sb:api("GET", "/accounts")
      assert.are.equal(200, code)
      local n = 0
      for email, r in pairs(list) do
        n = n + 1
        assert.are.equal(email, r.email)
        assert.is_nil(r.credits_remaining)
        assert.is_nil(r.tokens_remaining)
      end
      assert.are.equal(3, n)
      assert.are.equal("Refresh token is invalid or expired; re-add the account", list["l3@example.com"].error)
    end)
  end)
  describe("GET /accounts/{email}", function()
    it("adds live balances for healthy accounts", function()
      local want = { free = { 120, nil }, starter = { 1000, 12000 }, plus = { 5000, 60000 },
                     member = { 20000, 240000 }, unknown = { nil, nil } }
      for tier, w in pairs(want) do
        local email = tier .. "+tag@example.com"
        add("sandbox:" .. tier .. ":" .. email)
        local code, r, headers = sb:api("GET", "/accounts/" .. enc(email))
        assert.are.equal(200, code)
        assert.are.equal("application/json", headers["content-type"])
        assert.are.equal(email, r.email)
        assert.are.equal(w[1] or cjson.null, r.credits_remaining)
        assert.are.equal(w[2] or cjson.null, r.tokens_remaining)
      end
    end)

    it("accepts %40 and a raw @", function()
      add("sandbox:plus:raw@example.com")
      assert.are.equal(200, (sb:api("GET", "/accounts/raw%40example.com")))
      assert.are.equal(200, (sb:api("GET", "/accounts/raw@example.com")))
      assert.are.equal(200, (sb:api("GET", "/accounts/raw%40example%2Ecom")))
    end)

    it("omits both balances for an account in error state", function()
      add("sandbox:broken:sick@example.com")
      local code, r = sb:api("GET", "/accounts/" .. enc("sick@example.com"))
      assert.are.equal(200, code)
      assert.are.equal("Refresh token is invalid or expired; re-add the account", r.error)
      assert.is_nil(r.credits_remaining)
      assert.is_nil(r.tokens_remaining)
    end)

    it("answers 404 for an unknown account", function()
      local code, body = sb:api("GET", "/accounts/" .. enc("ghost@example.com"))
      assert_error(code, body, 404, "Account ghost@example.com not found")
    end)
  end)
  describe("DELETE /accounts/{email}", function()
    it("answers 204 with an empty body, then GET is 404", function()
      add("sandbox:plus:del@example.com")
      local code, text, headers = sb:http("DELETE", sb.base_url .. "/accounts/del%40example.com",
                                          { headers = { Authorization = "Bearer " .. sb.token } })
      assert.are.equal(204, code)
      assert.are.equal("", text)
      assert.is_nil(headers["content-length"] ~= "0" and headers["content-length"] or nil)
      local body
      code, body = sb:api("GET", "/accounts/del%40example.com")
      assert_error(code, body, 404, "Account del@example.com not found")
      code, body = sb:api("DELETE", "/accounts/del%40example.com")
      assert_error(code, body, 404, "Account del@example.com not found")
      code, body = sb:api("GET", "/accounts/usage?email=del%40example.com")
      assert_error(code, body, 404)
    end)
  end)
  describe("refresh-token scheme", function()
    it("maps sandbox:<tier>:<email>", function()
      for _, tier in ipairs({ "free", "starter", "plus", "member", "unknown" }) do
        local r = add("sandbox:" .. tier .. ":t-" .. tier .. "@example.com")
        assert.are.equal("t-" .. tier .. "@example.com", r.email)
        assert.are.equal(tier, r.tier)
      end
    end)

    it("stores sandbox:broken:<email> in error state; a good token heals it", function()
      local r = add("sandbox:broken:b@example.com")
      assert.are.equal("Refresh token is invalid or expired; re-add the account", r.error)
      local code
      code, r = post({ refresh_token = "sandbox:plus:b@example.com" })
      assert.are.equal(200, code)
      assert.is_nil(r.error)
      local _, one = sb:api("GET", "/accounts/b%40example.com")
      assert.are.equal(5000, one.credits_remaining)
      code, r = post({ refresh_token = "sandbox:broken:b@example.com" })
      assert.are.equal(200, code)
      assert.are.equal("plus", r.tier) -- a broken refresh keeps the known tier
      assert.are.equal("string", type(r.error))
    end)

    it("maps any other token to a stable derived email on tier plus", function()
      local r = add("bdykxtrr5eaf-some-real-looking-token")
      assert.matches("^user%-%x%x%x%x%x%x%x%x@flowmusic%.sandbox$", r.email)
      assert.are.equal("plus", r.tier)
      local code, again = post({ refresh_token = "bdykxtrr5eaf-some-real-looking-token" })
      assert.are.equal(200, code)
      assert.are.equal(r.email, again.email)
      local other = add("another-token-0123456789")
      assert.are_not.equal(r.email, other.email)
      assert.are.equal("bdy" .. ELLIPSIS .. "redacted" .. ELLIPSIS .. "ken", r.refresh_token)
    end)
  end)
  describe("routing", function()
    it("answers 404 JSON for unknown paths and 405 for wrong methods", function()
      local code, body = sb:api("GET", "/nope")
      assert_error(code, body, 404)
      code, body = sb:api("GET", "/accounts/a/b")
      assert_error(code, body, 404)
      code, body = sb:api("PUT", "/accounts", { json = {} })
      assert_error(code, body, 405)
      code, body = sb:api("POST", "/accounts/usage", { json = {} })
      assert_error(code, body, 405)
    end)
  end)
end)
