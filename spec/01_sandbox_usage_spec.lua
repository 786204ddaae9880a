-- Conformance of the sandbox with ../shared/api (CONTRACT.md + the vendor's reference pages):
-- the usage endpoint and its arithmetic.
-- Drives the sandbox with LuaSocket and the curl CLI only; never with the flowmusic client.
-- Shared helpers: spec/helpers/conformance.lua.

local cjson = require "cjson"
local support = require "spec.helpers.conformance"
local UUID, enc = support.UUID, support.enc

describe("flowmusic sandbox: usage", function()
  local sb
  support.sandbox("user:42-SpecToken", function(s) sb = s end)
  local _, add, assert_error = support.api(function() return sb end)

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
end)
