-- Conformance of the sandbox with /work/shared/api (CONTRACT.md + the vendor's reference pages),
-- its token scheme, usage arithmetic, control endpoints, fault injection, the vendor's own
-- example calls, concurrency and lifecycle (launcher, CLI, watchdog).
-- Drives the sandbox with LuaSocket and the curl CLI only; never with the flowmusic client.

local cjson = require "cjson"
local socket = require "socket"
local sandbox = require "spec.helpers.sandbox"
local server = require "flowmusic.sandbox.server"

local LUA = _VERSION == "Lua 5.1" and "lua5.1" or ("lua" .. _VERSION:match("%d%.%d"))
local ELLIPSIS = "\226\128\166"
local UUID = "^%x%x%x%x%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%x%x%x%x%x%x%x%x$"
local ISO_MS = "^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.%d%d%dZ$"
local REDACTED = "^...\226\128\166redacted\226\128\166...$"
local LIMIT = "Maximum of 50 accounts reached; delete an account before adding another"

-- Whether a process runs (a zombie waiting for its reaper does not count).
local function alive(pid)
  local state = server.proc_info(tonumber(pid))
  return state ~= nil and state ~= "Z" and state ~= "X"
end

-- Percent-encode everything but unreserved characters.
local function enc(s)
  return (s:gsub("[^%w%-%._~]", function(c) return string.format("%%%02X", c:byte()) end))
end

-- Shell-quote.
local function q(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

-- Run a command; output, exit code.
local function sh(cmd)
  local p = io.popen(cmd .. "; echo \"__rc=$?\"", "r")
  local out = p:read("*a")
  p:close()
  local rc = tonumber(out:match("__rc=(%d+)%s*$"))
  return (out:gsub("__rc=%d+%s*$", "")), rc
end

-- Milliseconds since the epoch of an ISO 8601 UTC timestamp with milliseconds.
local function epoch_ms(iso)
  local y, mo, d, h, mi, s, ms = iso:match("^(%d+)%-(%d+)%-(%d+)T(%d+):(%d+):(%d+)%.(%d+)Z$")
  -- days from civil (proleptic Gregorian), no os.time (local time zone)
  y, mo = tonumber(y), tonumber(mo)
  if mo <= 2 then y = y - 1 end
  local era = math.floor(y / 400)
  local yoe = y - era * 400
  local mp = (mo + 9) % 12
  local doy = math.floor((153 * mp + 2) / 5) + tonumber(d) - 1
  local doe = yoe * 365 + math.floor(yoe / 4) - math.floor(yoe / 100) + doy
  local days = era * 146097 + doe - 719468
  return ((days * 24 + tonumber(h)) * 60 + tonumber(mi)) * 60000 + tonumber(s) * 1000 + tonumber(ms)
end

-- A multipart/form-data body built by hand from {{name, value}, ...}.
local function multipart(fields)
  local boundary = "----flowmusicSpecBoundary7MA4YWxkTrZu0gW"
  local parts = {}
  for _, f in ipairs(fields) do
    parts[#parts + 1] = "--" .. boundary .. "\r\nContent-Disposition: form-data; name=\"" .. f[1]
        .. "\"\r\n\r\n" .. f[2] .. "\r\n"
  end
  parts[#parts + 1] = "--" .. boundary .. "--\r\n"
  return table.concat(parts), "multipart/form-data; boundary=" .. boundary
end

-- A raw GET of an API path with optional extra header lines.
local function raw_get(sb, path, extra, timeout)
  return sb:raw_api("GET", path, extra, nil, timeout)
end

local parse_raw = sandbox.parse_raw

describe("flowmusic sandbox", function()
  local sb

  lazy_setup(function()
    sb = sandbox.start({ token = "user:42-SpecToken" })
  end)

  lazy_teardown(function()
    local pid, port = sb.pid, sb.port
    local f = assert(io.open(sb.dir .. "/error.log", "r"))
    local log = f:read("*a")
    f:close()
    for line in log:gmatch("[^\n]+") do
      assert.is_nil(line:match("%[(error)%]") or line:match("%[(alert)%]") or line:match("%[(crit)%]")
                    or line:match("%[(emerg)%]"), line)
    end
    sb:stop()
    assert.is_true(sb:stop()) -- idempotent
    assert.is_false(alive(pid), "nginx master still alive")
    local out = sh("ss -ltn")
    assert.is_nil(out:find("127.0.0.1:" .. port .. "%s"), "still listening on " .. port)
    assert.is_nil(io.open(sb.dir .. "/nginx.conf"), "directory not removed")
  end)

  before_each(function()
    sb:reset()
  end)

  local function post(body, opts)
    opts = opts or {}
    opts.json = body
    return sb:api("POST", "/accounts", opts)
  end

  local function add(token, maxJobs)
    local code, body = post({ refresh_token = token, maxJobs = maxJobs })
    assert.are.equal(201, code, cjson.encode(body))
    return body
  end

  local function assert_error(code, body, status, message)
    assert.are.equal(status, code, type(body) == "table" and cjson.encode(body) or tostring(body))
    assert.are.equal("table", type(body))
    assert.are.equal(status, body.code)
    assert.are.equal("string", type(body.error))
    if message then assert.are.equal(message, body.error) end
  end

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

  describe("GET /accounts/usage", function()
    local function usage(email)
      return sb:api("GET", "/accounts/usage?email=" .. enc(email))
    end

    -- Recompute the summary from the events, as the vendor defines it.
    local function recompute(doc)
      local tokens, convs, order = {}, {}, {}
      for _, e in ipairs(doc.events) do
        tokens[e.type] = (tokens[e.type] or 0) + e.amount
        if e.conversation_id ~= cjson.null then
          if not convs[e.conversation_id] then
            convs[e.conversation_id] = { tokens = 0, title = e.conversation_title }
            order[#order + 1] = e.conversation_id
          end
          convs[e.conversation_id].tokens = convs[e.conversation_id].tokens + e.amount
        end
      end
      return tokens, convs, order
    end

    local function check_summary(doc, email)
      local tokens, convs, order = recompute(doc)
      local s = doc.summary
      assert.are.same(tokens, s.by_type_tokens)
      for t, n in pairs(tokens) do
        assert.is_true(math.abs(s.by_type_credits[t] - n / 12) < 1e-9, t)
      end
      local charged = ((tokens["producer-usage"] or 0) + (tokens.riffusion or 0)) / 12
      assert.is_true(math.abs(s.total_charged_credits - charged) < 1e-9)
      assert.are.equal((tokens.grant or 0) + (tokens["daily-free"] or 0), s.total_received_tokens)
      assert.are.equal(#order, #s.per_conversation)
      for i, c in ipairs(s.per_conversation) do
        assert.are.equal(order[i], c.conversation_id)
        assert.are.equal(convs[c.conversation_id].tokens, c.tokens)
        assert.are.equal(convs[c.conversation_id].title, c.title)
        assert.are.equal(email, c.email)
        assert.is_true(math.abs(c.credits - c.tokens / 12) < 1e-9)
      end
    end

    it("answers 400 without email, 404 for an unknown account", function()
      for _, path in ipairs({ "/accounts/usage", "/accounts/usage?email=", "/accounts/usage?other=1" }) do
        local code, body = sb:api("GET", path)
        assert_error(code, body, 400, "email query parameter is required")
      end
      local code, body = usage("ghost@example.com")
      assert_error(code, body, 404, "Account ghost@example.com not found")
    end)

    it("is a multi-day history aggregated per (UTC day, type, conversation)", function()
      add("sandbox:plus:use@example.com")
      local code, doc = usage("use@example.com")
      assert.are.equal(200, code)
      assert.are.equal("use@example.com", doc.email)
      local days, seen, types, nonmult, nulltitle = {}, {}, {}, false, false
      local ndays = 0
      for _, e in ipairs(doc.events) do
        assert.matches("^%d%d%d%d%-%d%d%-%d%dT00:00:00$", e.event_at)
        assert.matches("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.%d%d%d%d%d%dZ$", e.max_created_at)
        assert.are.equal(e.event_at:sub(1, 10), e.max_created_at:sub(1, 10))
        assert.are.equal("use@example.com", e._account_email)
        assert.are.equal("number", type(e.amount))
        local key = e.event_at .. "|" .. e.type .. "|" .. tostring(e.conversation_id)
        assert.is_nil(seen[key], "duplicate row " .. key)
        seen[key] = true
        if not days[e.event_at] then days[e.event_at] = true ndays = ndays + 1 end
        types[e.type] = true
        if e.amount % 12 ~= 0 then nonmult = true end
        if e.conversation_id == cjson.null then
          assert.are.equal(cjson.null, e.conversation_title)
          assert.is_true(e.type == "grant" or e.type == "daily-free")
        else
          assert.matches(UUID, e.conversation_id)
          if e.conversation_title == cjson.null then nulltitle = true end
        end
      end
      assert.is_true(ndays >= 3)
      for _, t in ipairs({ "producer-usage", "riffusion", "daily-free", "grant" }) do
        assert.is_true(types[t], t)
      end
      assert.is_true(nonmult, "no amount that is not a multiple of 12")
      assert.is_true(nulltitle, "no song without a title")
      check_summary(doc, "use@example.com")
      -- fractional credits really occur
      local frac = false
      for _, c in pairs(doc.summary.by_type_credits) do
        if c ~= math.floor(c) then frac = true end
      end
      assert.is_true(frac)
      -- deterministic
      local _, again = usage("use@example.com")
      assert.are.same(doc, again)
    end)

    it("sums the raw events of a day into one row", function()
      add("sandbox:plus:sum@example.com")
      local _, doc = usage("sum@example.com")
      -- the first day holds one 60-token producer-usage row made of two raw events (24 + 36)
      local first = doc.events[1].event_at
      local found
      for _, e in ipairs(doc.events) do
        if e.event_at == first and e.type == "producer-usage" then found = e end
      end
      assert.are.equal(60, found.amount)
      assert.are.equal("Sample Song", found.conversation_title)
      assert.are.equal(1440, doc.summary.by_type_tokens["daily-free"])
      assert.are.equal(7200, doc.summary.by_type_tokens.grant)
      assert.are.equal(8640, doc.summary.total_received_tokens)
    end)

    it("differs per account", function()
      add("sandbox:plus:u1@example.com")
      add("sandbox:plus:u2@example.com")
      local _, a = usage("u1@example.com")
      local _, b = usage("u2@example.com")
      assert.are_not.equal(a.events[3].conversation_id, b.events[3].conversation_id)
    end)

    it("can be made large for benchmarks (generated on the fly)", function()
      add("sandbox:plus:big@example.com")
      local code, body = sb:control("POST", "/__sandbox/usage", { email = "big@example.com", events = 20000 })
      assert.are.equal(200, code)
      assert.are.equal(20000, body.events)
      local text
      code, text = sb:http("GET", sb.base_url .. "/accounts/usage?email=big%40example.com",
                           { headers = { Authorization = "Bearer " .. sb.token } })
      assert.are.equal(200, code)
      assert.is_true(#text > 4 * 1024 * 1024, "only " .. #text .. " bytes")
      local doc = cjson.decode(text)
      assert.are.equal(20000, #doc.events)
      check_summary(doc, "big@example.com")
      sb:usage("big@example.com", 0)
      local _, small = usage("big@example.com")
      assert.is_true(#small.events < 50)
      code = sb:control("POST", "/__sandbox/usage", { email = "ghost@example.com", events = 10 })
      assert.are.equal(404, code)
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

  describe("control endpoints", function()
    it("seed creates seed-NN@sandbox.test accounts of a tier", function()
      local emails = sb:seed(3)
      assert.are.same({ "seed-01@sandbox.test", "seed-02@sandbox.test", "seed-03@sandbox.test" }, emails)
      local _, r = sb:api("GET", "/accounts/seed-02%40sandbox.test")
      assert.are.equal("plus", r.tier)
      emails = sb:seed(4, "free")
      assert.are.equal(4, #emails)
      _, r = sb:api("GET", "/accounts/seed-04%40sandbox.test")
      assert.are.equal("free", r.tier)
      local code = sb:control("POST", "/__sandbox/seed", { count = 0 })
      assert.are.equal(400, code)
      code = sb:control("POST", "/__sandbox/seed", { count = 2, tier = "gold" })
      assert.are.equal(400, code)
    end)

    it("reset clears accounts, faults and counters", function()
      sb:seed(2)
      sb:fault({ fault = "status", code = 500, count = 0 })
      sb:api("GET", "/accounts")
      sb:reset()
      assert.are.same({ total = 0, by = {}, connections = {}, protocols = {}, tls_handshakes = 0 }, sb:requests())
      local code, list = sb:api("GET", "/accounts")
      assert.are.equal(200, code)
      assert.are.same({}, list)
    end)

    it("counts every API request by method and raw path, not control requests", function()
      sb:api("GET", "/accounts")
      sb:api("GET", "/accounts", { token = false })
      sb:api("GET", "/accounts/a%40x.com")
      sb:api("GET", "/accounts/usage?email=a%40x.com")
      sb:api("POST", "/accounts", { json = { refresh_token = "sandbox:plus:c@x.com" } })
      sb:api("GET", "/accounts", { headers = { ["X-Sandbox-Fault"] = "status code=503" } })
      sb:control("GET", "/__sandbox/health")
      local counts = sb:requests()
      assert.are.equal(6, counts.total)
      assert.are.same({
        ["GET /v1/flowmusic/accounts"] = 3,
        ["GET /v1/flowmusic/accounts/a%40x.com"] = 1,
        ["GET /v1/flowmusic/accounts/usage"] = 1,
        ["POST /v1/flowmusic/accounts"] = 1,
      }, counts.by)
    end)

    it("answers 404 for unknown control endpoints and 400 for bad bodies", function()
      assert.are.equal(404, (sb:control("GET", "/__sandbox/nothing")))
      local code = sb:http("POST", "/__sandbox/faults",
        { body = "[1", headers = { ["Content-Type"] = "application/json" } })
      assert.are.equal(400, code)
    end)
  end)

  describe("faults", function()
    local function fault_get(spec, path, opts)
      opts = opts or {}
      opts.headers = opts.headers or {}
      opts.headers["X-Sandbox-Fault"] = spec
      return sb:api("GET", path or "/accounts", opts)
    end

    it("status: error JSON with the given code and a verbatim Retry-After", function()
      local code, body, headers = fault_get("status code=503 retry_after=2")
      assert_error(code, body, 503)
      assert.are.equal("2", headers["retry-after"])
      assert.are.equal("application/json", headers["content-type"])
      code, body, headers = fault_get('status code=429 retry_after="Wed, 21 Oct 2015 07:28:00 GMT"')
      assert_error(code, body, 429, "Too many requests")
      assert.are.equal("Wed, 21 Oct 2015 07:28:00 GMT", headers["retry-after"])
      code, body, headers = fault_get("status code=429")
      assert_error(code, body, 429)
      assert.is_nil(headers["retry-after"])
      code, body = fault_get("status")
      assert_error(code, body, 500)
      code, body = fault_get("status code=596 message=custom")
      assert_error(code, body, 596, "custom")
    end)

    it("status without apply does nothing; apply=1 performs the operation first", function()
      local code = post({ refresh_token = "sandbox:plus:ap@example.com" },
                        { headers = { ["X-Sandbox-Fault"] = "status code=502" } })
      assert.are.equal(502, code)
      assert.are.equal(404, (sb:api("GET", "/accounts/ap%40example.com")))
      code = post({ refresh_token = "sandbox:plus:ap@example.com" },
                  { headers = { ["X-Sandbox-Fault"] = "status code=504 apply=1" } })
      assert.are.equal(504, code)
      assert.are.equal(200, (sb:api("GET", "/accounts/ap%40example.com")))
    end)

    it("html: a 502 HTML page", function()
      local code, body, headers = fault_get("html")
      assert.are.equal(502, code)
      assert.matches("^text/html", headers["content-type"])
      assert.are.equal("string", type(body))
      assert.matches("<html>", body)
    end)

    it("reset: the connection is reset without any response", function()
      local data, err = raw_get(sb, "/accounts", "X-Sandbox-Fault: reset\r\n")
      assert.are.equal("", data)
      assert.are.equal("closed", err) -- LuaSocket reports ECONNRESET as "closed"
      local code, msg = fault_get("reset")
      assert.is_nil(code)
      assert.are.equal("closed", msg)
      local out, rc = sh("curl -sS -o /dev/null -H " .. q("X-Sandbox-Fault: reset") .. " "
        .. q(sb.base_url .. "/accounts") .. " 2>&1")
      assert.are.equal(56, rc)
      assert.matches("reset by peer", out)
    end)

    it("close_after_headers: headers announce 1000 bytes, then the connection closes", function()
      local data, err = raw_get(sb, "/accounts", "X-Sandbox-Fault: close_after_headers\r\n")
      assert.are.equal("closed", err)
      local status, headers, body = parse_raw(data)
      assert.are.equal(200, status)
      assert.are.equal("1000", headers["content-length"])
      assert.are.equal("", body)
      local code, msg = fault_get("close_after_headers")
      assert.is_nil(code)
      assert.are.equal("closed", msg)
    end)

    it("short_body: fewer bytes than Content-Length, then close", function()
      local data, err = raw_get(sb, "/accounts", "X-Sandbox-Fault: short_body\r\n")
      assert.are.equal("closed", err)
      local status, headers, body = parse_raw(data)
      assert.are.equal(200, status)
      assert.is_true(#body > 0)
      assert.is_true(#body < tonumber(headers["content-length"]))
      assert.is_nil(pcall(cjson.decode, body) and true or nil)
      -- with apply=1 the truncated body is the real response
      sb:seed(1)
      data = raw_get(sb, "/accounts/seed-01%40sandbox.test", "X-Sandbox-Fault: short_body apply=1\r\n")
      status, headers, body = parse_raw(data)
      assert.are.equal(200, status)
      assert.is_true(#body < tonumber(headers["content-length"]))
      assert.matches('^{"email":"seed%-01@sandbox%.test"', body)
    end)

    it("chunked_cut: a chunked body without its last chunk, then close", function()
      local data, err = raw_get(sb, "/accounts", "X-Sandbox-Fault: chunked_cut\r\n")
      assert.are.equal("closed", err)
      local status, headers, body = parse_raw(data)
      assert.are.equal(200, status)
      assert.are.equal("chunked", headers["transfer-encoding"])
      assert.is_nil(headers["content-length"])
      assert.matches("^%x+\r\n", body)
      assert.is_nil(body:find("\r\n0\r\n\r\n", 1, true))
      local code, msg = fault_get("chunked_cut")
      assert.is_nil(code)
      assert.are.equal("closed", msg)
    end)

    it("stall: nothing is sent, the client times out", function()
      local t0 = socket.gettime()
      local data, err = raw_get(sb, "/accounts", "X-Sandbox-Fault: stall ms=2000\r\n", 0.3)
      assert.are.equal("timeout", err)
      assert.are.equal("", data)
      assert.is_true(socket.gettime() - t0 < 1.5)
      local code, msg = fault_get("stall ms=2000", nil, { timeout = 0.3 })
      assert.is_nil(code)
      assert.are.equal("timeout", msg)
      -- a short stall ends with the connection closed, no response
      data, err = raw_get(sb, "/accounts", "X-Sandbox-Fault: stall ms=100\r\n", 3)
      assert.are.equal("", data)
      assert.are.equal("closed", err)
    end)

    it("latency: delays, then answers normally", function()
      sb:seed(1)
      local t0 = socket.gettime()
      local code, list = fault_get("latency ms=250")
      assert.is_true(socket.gettime() - t0 >= 0.25)
      assert.are.equal(200, code)
      assert.is_not_nil(list["seed-01@sandbox.test"])
    end)

    it("drip: the real JSON body, a few bytes at a time", function()
      sb:seed(1)
      local path = "/accounts/seed-01%40sandbox.test"
      local _, plain = sb:api("GET", path)
      local t0 = socket.gettime()
      local code, body, headers = fault_get("drip bytes=40 interval_ms=10", path)
      local elapsed = socket.gettime() - t0
      assert.are.equal(200, code)
      assert.are.same(plain.email, body.email)
      assert.are.equal(plain.session_id, body.session_id)
      local chunks = math.ceil(tonumber(headers["content-length"]) / 40)
      assert.is_true(elapsed >= chunks * 0.01 * 0.8, "too fast: " .. elapsed)
    end)

    it("endless: 200 with a body that never ends", function()
      local c = socket.tcp()
      c:settimeout(2)
      assert(c:connect("127.0.0.1", sb.port))
      c:send("GET /v1/flowmusic/accounts HTTP/1.1\r\nHost: x\r\nX-Sandbox-Fault: endless\r\n\r\n")
      local got, deadline = 0, socket.gettime() + 0.4
      local first = c:receive("*l")
      assert.matches("^HTTP/1%.1 200", first)
      while socket.gettime() < deadline do
        local data, err, partial = c:receive(65536)
        got = got + #(data or partial or "")
        assert.is_nil(err == "closed" and err or nil)
      end
      c:close()
      assert.is_true(got > 1024 * 1024, "only " .. got .. " bytes")
      socket.sleep(0.05)
      assert.are.equal(200, (sb:control("GET", "/__sandbox/health")))
    end)

    it("huge: a valid JSON body of N MB with Content-Length", function()
      local code, text, headers = sb:http("GET", sb.base_url .. "/accounts",
        { headers = { Authorization = "Bearer " .. sb.token, ["X-Sandbox-Fault"] = "huge mb=3" } })
      assert.are.equal(200, code)
      assert.are.equal(#text, tonumber(headers["content-length"]))
      assert.is_true(#text > 3 * 1000 * 1000)
      assert.is_true(cjson.decode(text).huge)
    end)

    it("huge_chunked: the same, chunked without Content-Length", function()
      local code, text, headers = sb:http("GET", sb.base_url .. "/accounts",
        { headers = { Authorization = "Bearer " .. sb.token, ["X-Sandbox-Fault"] = "huge_chunked mb=2" } })
      assert.are.equal(200, code)
      assert.is_nil(headers["content-length"])
      assert.are.equal("chunked", headers["transfer-encoding"])
      assert.is_true(#text > 2 * 1000 * 1000)
      assert.is_true(cjson.decode(text).huge)
    end)

    it("huge defaults to 25 MB", function()
      local data = raw_get(sb, "/accounts", "X-Sandbox-Fault: huge\r\n")
      local _, headers, body = parse_raw(data)
      assert.are.equal(#body, tonumber(headers["content-length"]))
      assert.is_true(math.abs(#body - 25 * 1048576) < 4096)
    end)

    it("invalid_json: 200 application/json that does not parse", function()
      local code, text, headers = sb:http("GET", sb.base_url .. "/accounts",
        { headers = { Authorization = "Bearer " .. sb.token, ["X-Sandbox-Fault"] = "invalid_json" } })
      assert.are.equal(200, code)
      assert.are.equal("application/json", headers["content-type"])
      assert.is_false(pcall(cjson.decode, text))
    end)

    it("deep_json: deeply nested arrays", function()
      local code, text = sb:http("GET", sb.base_url .. "/accounts",
        { headers = { Authorization = "Bearer " .. sb.token, ["X-Sandbox-Fault"] = "deep_json" } })
      assert.are.equal(200, code)
      assert.are.equal(string.rep("[", 10000) .. string.rep("]", 10000), text)
      code, text = sb:http("GET", sb.base_url .. "/accounts",
        { headers = { Authorization = "Bearer " .. sb.token, ["X-Sandbox-Fault"] = "deep_json depth=3" } })
      assert.are.equal(200, code)
      assert.are.equal("[[[]]]", text)
    end)

    it("rejects unknown faults and parameters with 400", function()
      local code, body = fault_get("bogus")
      assert_error(code, body, 400)
      code, body = fault_get("status cod=503")
      assert_error(code, body, 400)
      code, body = fault_get("status code=abc")
      assert_error(code, body, 400)
      code = sb:control("POST", "/__sandbox/faults", { fault = "bogus" })
      assert.are.equal(400, code)
      code = sb:control("POST", "/__sandbox/faults", { fault = "latency", ms = -1 })
      assert.are.equal(400, code)
      code = sb:control("POST", "/__sandbox/faults", { fault = "status", count = -1 })
      assert.are.equal(400, code)
    end)

    describe("scripted", function()
      it("applies to the next `count` matching requests, then normal", function()
        add("sandbox:plus:a@x.com")
        sb:fault({ fault = "status", code = 503, retry_after = "2", method = "GET",
                   path = "/v1/flowmusic/accounts/a%40x.com", count = 2 })
        -- other paths and methods do not match
        assert.are.equal(200, (sb:api("GET", "/accounts")))
        assert.are.equal(200, (sb:api("GET", "/accounts/a@x.com")))
        local code, body, headers = sb:api("GET", "/accounts/a%40x.com")
        assert_error(code, body, 503)
        assert.are.equal("2", headers["retry-after"])
        code = sb:api("GET", "/accounts/a%40x.com")
        assert.are.equal(503, code)
        code = sb:api("GET", "/accounts/a%40x.com")
        assert.are.equal(200, code)
        local counts = sb:requests()
        assert.are.equal(3, counts.by["GET /v1/flowmusic/accounts/a%40x.com"])
        assert.are.equal(6, counts.total) -- with the POST of add()
      end)

      it("defaults to count 1, any method, any path", function()
        sb:fault({ fault = "status", code = 500 })
        assert.are.equal(500, (sb:api("DELETE", "/accounts/x%40y.z")))
        assert.are.equal(200, (sb:api("GET", "/accounts")))
      end)

      it("matches the method; '*' is any", function()
        sb:fault({ fault = "status", code = 500, method = "POST" })
        assert.are.equal(200, (sb:api("GET", "/accounts")))
        assert.are.equal(500, (post({ refresh_token = "sandbox:plus:m@x.com" })))
        sb:fault({ fault = "status", code = 501, method = "*" })
        assert.are.equal(501, (sb:api("GET", "/accounts")))
      end)

      it("queues several faults in order", function()
        sb:fault({ fault = "status", code = 503 })
        sb:fault({ fault = "status", code = 429, retry_after = "1" })
        local _, list = sb:control("GET", "/__sandbox/faults")
        assert.are.equal(2, #list.faults)
        assert.are.equal(503, (sb:api("GET", "/accounts")))
        local code, _, headers = sb:api("GET", "/accounts")
        assert.are.equal(429, code)
        assert.are.equal("1", headers["retry-after"])
        assert.are.equal(200, (sb:api("GET", "/accounts")))
      end)

      it("count 0 applies until cleared", function()
        sb:fault({ fault = "status", code = 502, count = 0 })
        for _ = 1, 5 do assert.are.equal(502, (sb:api("GET", "/accounts"))) end
        sb:clear_faults()
        assert.are.equal(200, (sb:api("GET", "/accounts")))
      end)

      it("accepts the header syntax in `fault`", function()
        sb:fault({ fault = "status code=418", count = 1 })
        assert.are.equal(418, (sb:api("GET", "/accounts")))
      end)

      it("a per-request header wins and does not consume the scripted fault", function()
        sb:fault({ fault = "status", code = 503 })
        assert.are.equal(500, (fault_get("status code=500")))
        assert.are.equal(503, (sb:api("GET", "/accounts")))
        assert.are.equal(200, (sb:api("GET", "/accounts")))
      end)

      it("scripts network faults too", function()
        sb:fault({ fault = "reset", path = "/v1/flowmusic/accounts" })
        local code, err = sb:api("GET", "/accounts")
        assert.is_nil(code)
        assert.are.equal("closed", err)
        assert.are.equal(200, (sb:api("GET", "/accounts")))
        sb:fault({ fault = "latency", ms = 150 })
        local t0 = socket.gettime()
        assert.are.equal(200, (sb:api("GET", "/accounts")))
        assert.is_true(socket.gettime() - t0 >= 0.15)
      end)
    end)
  end)

  describe("concurrency", function()
    it("serves 50 concurrent requests with latency ms=200 in parallel", function()
      local urls = {}
      for _ = 1, 50 do urls[#urls + 1] = q(sb.base_url .. "/accounts") end
      local t0 = socket.gettime()
      local out, rc = sh("curl -s --no-progress-meter --parallel --parallel-immediate --parallel-max 50"
        .. " -o /dev/null -w '%{http_code}\\n' -H "
        .. q("Authorization: Bearer " .. sb.token) .. " -H " .. q("X-Sandbox-Fault: latency ms=200") .. " "
        .. table.concat(urls, " ") .. " 2>/dev/null")
      local elapsed = socket.gettime() - t0
      assert.are.equal(0, rc)
      local n = 0
      for code in out:gmatch("%d+") do
        assert.are.equal("200", code)
        n = n + 1
      end
      assert.are.equal(50, n)
      assert.is_true(elapsed < 2.0, "took " .. elapsed .. " s")
      assert.are.equal(50, sb:requests().total)
    end)

    it("keeps 50 keep-alive connections open at once", function()
      local conns = {}
      for i = 1, 50 do
        local c = socket.tcp()
        c:settimeout(5)
        assert(c:connect("127.0.0.1", sb.port))
        conns[i] = c
      end
      for round = 1, 2 do
        for _, c in ipairs(conns) do
          assert(c:send("GET /v1/flowmusic/accounts HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " .. sb.token
            .. "\r\n\r\n"))
        end
        for _, c in ipairs(conns) do
          local status = c:receive("*l")
          assert.matches("^HTTP/1%.1 200", status, "round " .. round)
          local len
          repeat
            local line = c:receive("*l")
            len = len or tonumber(line:match("^[Cc]ontent%-[Ll]ength:%s*(%d+)"))
          until line == ""
          assert.are.equal("{}", c:receive(len))
        end
      end
      for _, c in ipairs(conns) do c:close() end
    end)
  end)

  describe("the vendor's example calls", function()
    local PY = "/usr/bin/python3"
    local email = "example.user@example.com"

    -- The reference pages' snippets, pointed at the sandbox.
    local function vendor(snippet)
      return (snippet:gsub("https://api%.useapi%.net/v1/flowmusic", sb.base_url)
                     :gsub("YOUR_API_TOKEN", sb.token):gsub("EMAIL", email))
    end

    it("POST /accounts with curl and with Python requests", function()
      local out, rc = sh(vendor([[curl -s -w '\n%{http_code}' -H "Content-Type: application/json" \
     -H "Authorization: Bearer YOUR_API_TOKEN" \
     -X POST "https://api.useapi.net/v1/flowmusic/accounts" \
     -d '{ "refresh_token": "bdykxtrr5eaf...", "maxJobs": 12 }']]))
      assert.are.equal(0, rc)
      local body, status = out:match("^(.*)\n(%d+)%s*$")
      assert.are.equal("201", status)
      local r = cjson.decode(body)
      assert.are.equal(12, r.maxJobs)
      assert.matches("@flowmusic%.sandbox$", r.email)
      local py = vendor([[
import requests
response = requests.post(
    'https://api.useapi.net/v1/flowmusic/accounts',
    headers={'Authorization': 'Bearer YOUR_API_TOKEN'},
    json={'refresh_token': 'bdykxtrr5eaf...', 'maxJobs': 12}
)
print(response.status_code, response.json())
]])
      out, rc = sh(PY .. " -c " .. q(py) .. " 2>&1")
      assert.are.equal(0, rc, out)
      assert.matches("^200 {'email': '" .. r.email:gsub("%p", "%%%0") .. "'", out)
      assert.matches("'refreshed_count': 1", out)
    end)

    it("GET /accounts/{email} with curl and with Python requests", function()
      add("sandbox:plus:" .. email)
      local out, rc = sh(vendor([[curl -s -w '\n%{http_code}' -H "Authorization: Bearer YOUR_API_TOKEN" \
     "https://api.useapi.net/v1/flowmusic/accounts/EMAIL"]]))
      assert.are.equal(0, rc)
      local body, status = out:match("^(.*)\n(%d+)%s*$")
      assert.are.equal("200", status)
      local r = cjson.decode(body)
      assert.are.equal(email, r.email)
      assert.are.equal(5000, r.credits_remaining)
      assert.are.equal(60000, r.tokens_remaining)
      local py = vendor([[
import requests, urllib.parse
email = 'EMAIL'
r = requests.get('https://api.useapi.net/v1/flowmusic/accounts/' + urllib.parse.quote(email, safe=''),
                 headers={'Authorization': 'Bearer YOUR_API_TOKEN'})
print(r.status_code, r.json())
]])
      out, rc = sh(PY .. " -c " .. q(py) .. " 2>&1")
      assert.are.equal(0, rc, out)
      assert.matches("^200 {'email': 'example%.user@example%.com'", out)
      assert.matches("'credits_remaining': 5000, 'tokens_remaining': 60000}", out)
      assert.are.equal(1, sb:requests().by["GET /v1/flowmusic/accounts/example.user%40example.com"])
    end)

    it("GET /accounts/usage with curl and with Python requests", function()
      add("sandbox:plus:" .. email)
      local out, rc = sh(vendor([[curl -s -w '\n%{http_code}' -H "Authorization: Bearer YOUR_API_TOKEN" \
     "https://api.useapi.net/v1/flowmusic/accounts/usage?email=EMAIL"]]))
      assert.are.equal(0, rc)
      local body, status = out:match("^(.*)\n(%d+)%s*$")
      assert.are.equal("200", status)
      local doc = cjson.decode(body)
      assert.are.equal(email, doc.email)
      assert.is_true(#doc.events > 0)
      local py = vendor([[
import requests
r = requests.get('https://api.useapi.net/v1/flowmusic/accounts/usage',
                 headers={'Authorization': 'Bearer YOUR_API_TOKEN'},
                 params={'email': 'EMAIL'})
print(r.status_code, r.json())
]])
      out, rc = sh(PY .. " -c " .. q(py) .. " 2>&1")
      assert.are.equal(0, rc, out)
      assert.matches("^200 {'email': 'example%.user@example%.com', 'events': %[{'type': ", out)
      assert.matches("'summary': {'by_type_tokens': ", out)
      assert.matches("'total_received_tokens': 8640", out)
    end)
  end)
end)

describe("sandbox lifecycle", function()
  local function listening(port)
    return sh("ss -ltn"):find("127.0.0.1:" .. port .. "%s") ~= nil
  end

  local function temp_dir()
    local out = sh("mktemp -d")
    return (out:gsub("%s+$", ""))
  end

  it("bin/flowmusic sandbox start|status|stop with --dir", function()
    local dir = temp_dir()
    local out, rc = sh("bin/flowmusic sandbox start --port 0 --token user:5-cli --dir " .. q(dir) .. " 2>/dev/null")
    assert.are.equal(0, rc, out)
    local last = out:match("([^\n]+)\n?$")
    local port = tonumber(last:match("^http://127%.0%.0%.1:(%d+)/v1/flowmusic$"))
    assert.is_not_nil(port, out)
    assert.is_true(listening(port))
    out, rc = sh("bin/flowmusic sandbox status --dir " .. q(dir))
    assert.are.equal(0, rc)
    assert.matches(last:gsub("%p", "%%%0"), out)
    out, rc = sh("bin/flowmusic sandbox start --dir " .. q(dir) .. " 2>&1")
    assert.are.equal(1, rc)
    assert.matches("already running", out)
    out = sh("curl -s -H 'Authorization: Bearer user:5-cli' " .. q(last .. "/accounts"))
    assert.are.equal("{}", out)
    out, rc = sh("bin/flowmusic sandbox stop --dir " .. q(dir) .. " 2>&1")
    assert.are.equal(0, rc, out)
    assert.is_false(listening(port))
    out, rc = sh("bin/flowmusic sandbox status --dir " .. q(dir))
    assert.are.equal(1, rc)
    assert.matches("not running", out)
    out, rc = sh("bin/flowmusic sandbox stop --dir " .. q(dir) .. " 2>&1")
    assert.are.equal(1, rc)
    assert.matches("no sandbox running", out)
    sh("rm -rf " .. q(dir))
  end)

  it("bin/flowmusic usage errors and help", function()
    local _, rc = sh("bin/flowmusic 2>&1")
    assert.are.equal(2, rc)
    _, rc = sh("bin/flowmusic --help")
    assert.are.equal(0, rc)
    _, rc = sh("bin/flowmusic frobnicate 2>&1")
    assert.are.equal(2, rc)
    _, rc = sh("bin/flowmusic sandbox --help")
    assert.are.equal(0, rc)
    _, rc = sh("bin/flowmusic sandbox start --port nope 2>&1")
    assert.are.equal(2, rc)
    _, rc = sh("bin/flowmusic sandbox stop --token x 2>&1")
    assert.are.equal(2, rc)
    _, rc = sh("bin/flowmusic sandbox restart 2>&1")
    assert.are.equal(2, rc)
  end)

  it("server.start: a busy port fails cleanly, unknown options raise", function()
    local busy = assert(socket.bind("127.0.0.1", 0))
    local _, port = busy:getsockname()
    local dir = temp_dir()
    local base, err = server.start({ dir = dir, port = tonumber(port) })
    busy:close()
    assert.is_nil(base)
    assert.matches("failed to start", err)
    assert.is_false((server.status({ dir = dir })))
    assert.has_error(function() server.start({ prot = 1 }) end)
    assert.has_error(function() server.stop({ dir = 1 }) end)
    sh("rm -rf " .. q(dir))
  end)

  it("stops by itself when the process that started it dies (watchdog)", function()
    local dir = temp_dir()
    local script = [[
package.path = "lua/?.lua;lua/?/init.lua;" .. package.path
local f = io.open("/proc/self/stat"); local pid = tonumber(f:read("*l"):match("^%d+")); f:close()
local base, npid = require("flowmusic.sandbox.server").start{ dir = arg[1], watch_pid = pid }
print(base, npid)
]]
    local f = assert(io.open(dir .. "/child.lua", "w"))
    f:write(script)
    f:close()
    local out, rc = sh(LUA .. " " .. q(dir .. "/child.lua") .. " " .. q(dir))
    assert.are.equal(0, rc, out)
    local port, pid = out:match("^http://127%.0%.0%.1:(%d+)/v1/flowmusic%s+(%d+)")
    assert.is_not_nil(pid, out)
    local deadline = socket.gettime() + 5
    while alive(pid) and socket.gettime() < deadline do socket.sleep(0.1) end
    assert.is_false(alive(pid), "nginx still running")
    assert.is_false(listening(port))
    server.stop({ dir = dir, remove = true })
  end)

  it("the helper's stop_all stops what is left", function()
    local a = sandbox.start()
    assert.are.equal("user:1-sandbox", a.token)
    local pid = a.pid
    sandbox.stop_all()
    assert.is_true(a.stopped)
    assert.is_false(alive(pid))
  end)
end)
