-- Sandbox states the fleet tools are tested against: a low-credit tier, accounts in error
-- state, scripted failures of one account's live call or usage call (issue 9), and usage
-- histories that differ per account over several UTC days (issue 11).

local cjson = require "cjson"
local fixture = require "spec.helpers.fixture"

-- Percent-encode an email for a path segment.
local function enc(s)
  return (s:gsub("[^%w%-%._~]", function(c) return string.format("%%%02X", c:byte()) end))
end

describe("sandbox states for fleet tools", function()
  local sb

  fixture.sandbox({}, function(s) sb = s end)

  local function add(token)
    local code, body = sb:api("POST", "/accounts", { json = { refresh_token = token } })
    assert.is_true(code == 200 or code == 201, tostring(code) .. " " .. cjson.encode(body))
    return body
  end

  local function get(email, headers)
    return sb:api("GET", "/accounts/" .. enc(email), { headers = headers })
  end

  it("tier low: a plan nearly used up (3 credits, 36 tokens left)", function()
    local rec = add("sandbox:low:poor@x.com")
    assert.are.equal("low", rec.tier)
    assert.are.equal(4, rec.maxJobs)
    assert.are.equal("starter-monthly", rec.subscription_plan)
    local code, live = get("poor@x.com")
    assert.are.equal(200, code)
    assert.are.equal(3, live.credits_remaining)
    assert.are.equal(36, live.tokens_remaining)
    local emails = sb:seed(2, "low")
    local _, seeded = get(emails[2])
    assert.are.equal(3, seeded.credits_remaining)
  end)

  it("sandbox:broken: an account in error state: `error` set, no balances", function()
    local rec = add("sandbox:broken:reauth@x.com")
    assert.are.equal("string", type(rec.error))
    local _, live = get("reauth@x.com")
    assert.are.equal(rec.error, live.error)
    assert.is_nil(live.credits_remaining)
    assert.is_nil(live.tokens_remaining)
    -- listed like any other account
    local _, list = sb:api("GET", "/accounts")
    assert.are.equal(rec.error, list["reauth@x.com"].error)
  end)

  it("a fleet with one account in each state; one account's live call fails until cleared", function()
    add("sandbox:plus:ok@x.com")
    add("sandbox:low:low@x.com")
    add("sandbox:broken:broken@x.com")
    add("sandbox:plus:down@x.com")
    add("sandbox:plus:gone@x.com")
    -- by exact raw path...
    sb:fault({ fault = "status", code = 503, method = "GET", path = "/v1/flowmusic/accounts/down%40x.com", count = 0 })
    -- ...or by the account a request is about (however its email is encoded)
    sb:fault({ fault = "status", code = 596, message = "Refresh token rejected", email = "gone@x.com", count = 0 })
    for _ = 1, 3 do
      assert.are.equal(503, (get("down@x.com")))
      local code, body = sb:api("GET", "/accounts/gone@x.com")
      assert.are.equal(596, code)
      assert.are.equal("Refresh token rejected", body.error)
      assert.are.equal(596, (get("gone@x.com")))
      assert.are.equal(200, (get("ok@x.com")))
      assert.are.equal(200, (get("low@x.com")))
      assert.are.equal(200, (get("broken@x.com")))
    end
    local code, list = sb:api("GET", "/accounts")
    assert.are.equal(200, code)
    assert.is_table(list["down@x.com"])
    sb:clear_faults()
    assert.are.equal(200, (get("down@x.com")))
  end)

  it("a fault on every GET /accounts/{email} but not on the list: a path prefix ending in *", function()
    sb:seed(3)
    sb:fault({ fault = "status", code = 504, method = "GET", path = "/v1/flowmusic/accounts/*", count = 0 })
    for _, email in ipairs({ "seed-01@sandbox.test", "seed-02@sandbox.test", "seed-03@sandbox.test" }) do
      assert.are.equal(504, (get(email)))
    end
    assert.are.equal(200, (sb:api("GET", "/accounts")))
    -- (the prefix covers /accounts/usage too)
    assert.are.equal(504, (sb:api("GET", "/accounts/usage?email=seed-01%40sandbox.test")))
  end)

  it("one account's usage call fails (email match), the others answer", function()
    add("sandbox:plus:u1@x.com")
    add("sandbox:plus:u2@x.com")
    sb:fault({ fault = "status", code = 500, method = "GET", email = "u2@x.com", count = 0 })
    assert.are.equal(200, (sb:api("GET", "/accounts/usage?email=u1%40x.com")))
    assert.are.equal(500, (sb:api("GET", "/accounts/usage?email=u2%40x.com")))
    assert.are.equal(500, (sb:api("GET", "/accounts/usage?email=u2@x.com")))
  end)

  it("usage histories differ per account, span several UTC days, carry titles and conversation ids", function()
    local emails = { "h1@x.com", "h2@x.com", "h3@x.com" }
    local docs = {}
    for i, email in ipairs(emails) do
      add("sandbox:plus:" .. email)
      local code
      code, docs[i] = sb:api("GET", "/accounts/usage?email=" .. enc(email))
      assert.are.equal(200, code)
    end
    local function fingerprint(doc)
      local parts = {}
      for _, e in ipairs(doc.events) do
        parts[#parts + 1] = e.type .. e.amount .. tostring(e.conversation_id) .. e.max_created_at
      end
      return table.concat(parts, "|")
    end
    assert.are_not.equal(fingerprint(docs[1]), fingerprint(docs[2]))
    assert.are_not.equal(fingerprint(docs[2]), fingerprint(docs[3]))
    local totals = {}
    for _, doc in ipairs(docs) do totals[doc.summary.total_charged_credits] = true end
    local distinct = 0
    for _ in pairs(totals) do distinct = distinct + 1 end
    assert.is_true(distinct >= 2, "every account charged the same")
    for i, doc in ipairs(docs) do
      local days, titled = {}, 0
      for _, e in ipairs(doc.events) do
        days[e.event_at] = true
        assert.are.equal(emails[i], e._account_email)
        if e.conversation_title ~= cjson.null then titled = titled + 1 end
      end
      local n = 0
      for _ in pairs(days) do n = n + 1 end
      assert.are.equal(4, n, "UTC days")
      assert.is_true(titled > 0)
      assert.is_true(#doc.summary.per_conversation >= 3)
    end
  end)

  it("one account's usage can be made large, the others keep theirs", function()
    add("sandbox:plus:big@x.com")
    add("sandbox:plus:small@x.com")
    sb:usage("big@x.com", 5000)
    local _, big = sb:api("GET", "/accounts/usage?email=big%40x.com")
    local _, small = sb:api("GET", "/accounts/usage?email=small%40x.com")
    assert.are.equal(5000, #big.events)
    assert.is_true(#small.events < 50)
    local days = {}
    for _, e in ipairs(big.events) do days[e.event_at] = true end
    local n = 0
    for _ in pairs(days) do n = n + 1 end
    assert.are.equal(200, n) -- 25 rows a day
  end)
end)
