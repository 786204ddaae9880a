-- The client against the sandbox over real HTTP: every method, encoding, null/integers,
-- reload, close and garbage collection.
local fixture = require "spec.helpers.fixture"
local h = require "spec.helpers.client"
local flowmusic = h.flowmusic

describe("flowmusic client", function()
  local sb, client

  fixture.sandbox({ client = true }, function(s, _, cl) sb, client = s, cl end)

  describe("add_account", function()
    it("creates (201) then refreshes (200) the same account", function()
      local acct, created = client:add_account("sandbox:plus:new@x.com")
      assert.is_table(acct)
      assert.is_true(created)
      assert.equal("new@x.com", acct.email)
      assert.equal("plus", acct.tier)
      assert.equal(0, acct.refreshed_count)
      assert.is_true(h.is_integer(acct.maxJobs))
      local again, created2 = client:add_account("sandbox:plus:new@x.com", 3)
      assert.is_false(created2)
      assert.equal(1, again.refreshed_count)
      assert.equal(3, again.maxJobs)
      assert.equal(acct.added, again.added)
    end)

    it("redacts tokens in the record as the service does", function()
      local acct = client:add_account("sandbox:starter:red@x.com")
      assert.matches("^...…redacted…...$", acct.refresh_token)
      assert.matches("^...…redacted…...$", acct.access_token)
    end)

    it("free accounts carry no subscription_plan or provider", function()
      local acct = client:add_account("sandbox:free:free@x.com")
      assert.equal("free", acct.tier)
      assert.is_nil(acct.subscription_plan)
      assert.is_nil(acct.provider)
    end)

    it("a token that fails to refresh is an http 400 error that does not echo the token", function()
      local token = "sandbox:fail:fail@x.com"
      local acct, err = client:add_account(token)
      assert.is_nil(acct)
      assert.equal("http", err.kind)
      assert.equal(400, err.status)
      assert.equal("POST", err.method)
      assert.equal("/accounts", err.path)
      assert.is_string(err.message)
      assert.is_false(h.contains(tostring(err), token))
      assert.is_false(h.contains(err.message, token))
    end)
  end)

  describe("set_max_jobs", function()
    it("changes maxJobs only", function()
      local before = client:add_account("sandbox:plus:mj@x.com")
      local acct = client:set_max_jobs("mj@x.com", 16)
      assert.equal(16, acct.maxJobs)
      assert.equal(before.refreshed_count, acct.refreshed_count)
      assert.equal(16, client:get_account("mj@x.com").maxJobs)
    end)

    it("an unknown account is http 404 with the server's message", function()
      local acct, err = client:set_max_jobs("nobody@x.com", 4)
      assert.is_nil(acct)
      assert.equal("http", err.kind)
      assert.equal(404, err.status)
      assert.truthy(h.contains(err.message, "nobody@x.com"))
    end)
  end)

  describe("list_accounts", function()
    it("is an empty table when there are no accounts", function()
      local list = client:list_accounts()
      assert.same({}, list)
    end)

    it("is keyed by email, without credit balances", function()
      client:add_account("sandbox:plus:l1@x.com")
      client:add_account("sandbox:member:l2@x.com")
      local list = client:list_accounts()
      assert.equal("l1@x.com", list["l1@x.com"].email)
      assert.equal("member", list["l2@x.com"].tier)
      assert.is_nil(list["l1@x.com"].credits_remaining)
    end)
  end)

  describe("get_account", function()
    it("adds live credits for a healthy account", function()
      client:add_account("sandbox:plus:g@x.com")
      local acct = client:get_account("g@x.com")
      assert.equal("g@x.com", acct.email)
      assert.is_number(acct.credits_remaining)
      assert.is_nil(acct.error)
    end)

    it("an account in error state has error and no credits", function()
      client:add_account("sandbox:broken:b@x.com")
      local acct = client:get_account("b@x.com")
      assert.is_string(acct.error)
      assert.is_nil(acct.credits_remaining)
      assert.is_nil(acct.tokens_remaining)
    end)

    it("an unknown account is http 404", function()
      local acct, err = client:get_account("missing@x.com")
      assert.is_nil(acct)
      assert.equal(404, err.status)
      assert.equal("GET", err.method)
      assert.equal("/accounts/missing%40x.com", err.path)
    end)
  end)

  describe("delete_account", function()
    it("deletes (204), after which the account is gone", function()
      client:add_account("sandbox:plus:d@x.com")
      assert.is_true(client:delete_account("d@x.com"))
      local acct, err = client:get_account("d@x.com")
      assert.is_nil(acct)
      assert.equal(404, err.status)
      local ok, err2 = client:delete_account("d@x.com")
      assert.is_nil(ok)
      assert.equal(404, err2.status)
    end)
  end)

  describe("get_usage", function()
    it("returns events and a summary consistent with them", function()
      client:add_account("sandbox:plus:u@x.com")
      local usage = client:get_usage("u@x.com")
      assert.equal("u@x.com", usage.email)
      assert.is_true(#usage.events > 0)
      local by_type = {}
      for _, e in ipairs(usage.events) do by_type[e.type] = (by_type[e.type] or 0) + e.amount end
      for t, tokens in pairs(by_type) do
        assert.equal(tokens, usage.summary.by_type_tokens[t])
        assert.near(tokens / 12, usage.summary.by_type_credits[t], 1e-9)
      end
      assert.equal((by_type.grant or 0) + (by_type["daily-free"] or 0), usage.summary.total_received_tokens)
    end)

    it("asks for compression, and decodes a compressed document of 20 000 rows", function()
      client:add_account("sandbox:plus:big@x.com")
      sb:usage("big@x.com", 20000)
      local usage = client:get_usage("big@x.com")
      assert.equal(20000, #usage.events)
      local _, status, headers = client:request("GET", "/accounts/usage", { query = { email = "big@x.com" } })
      assert.equal(200, status)
      assert.equal("gzip", headers["content-encoding"])
      local small = h.client(sb, { max_response_bytes = 1024 * 1024 }) -- the cap counts decoded bytes
      local none, err = small:get_usage("big@x.com")
      assert.is_nil(none)
      assert.equal("too_large", err.kind)
      small:close()
    end)

    it("an unknown account is http 404", function()
      local usage, err = client:get_usage("nobody@x.com")
      assert.is_nil(usage)
      assert.equal(404, err.status)
      assert.equal("/accounts/usage?email=nobody%40x.com", err.path)
    end)
  end)

  describe("request", function()
    it("returns decoded body, status and headers", function()
      client:add_account("sandbox:plus:r@x.com")
      local body, status, headers = client:request("GET", "/accounts")
      assert.equal(200, status)
      assert.equal("r@x.com", body["r@x.com"].email)
      assert.truthy(h.contains(headers["content-type"], "application/json"))
    end)

    it("encodes a query table and a JSON body", function()
      client:add_account("sandbox:plus:q@x.com")
      local body, status = client:request("GET", "/accounts/usage", { query = { email = "q@x.com" } })
      assert.equal(200, status)
      assert.equal("q@x.com", body.email)
      local acct, status2 = client:request("POST", "/accounts", { body = { email = "q@x.com", maxJobs = 2 } })
      assert.equal(200, status2)
      assert.equal(2, acct.maxJobs)
    end)

    it("HTTP errors are results, not failures", function()
      local body, status = client:request("GET", "/accounts/none%40x.com")
      assert.equal(404, status)
      assert.is_string(body.error)
    end)

    it("an empty body is an empty string", function()
      client:add_account("sandbox:plus:e@x.com")
      local body, status = client:request("DELETE", "/accounts/e%40x.com")
      assert.equal(204, status)
      assert.equal("", body)
    end)
  end)

  describe("emails", function()
    local awkward = { "a/b@x.com", "q?x@x.com", "h#x@x.com", "p%x@x.com", "sp ace@x.com",
      "plus+tag@x.com", "ünï@x.com", "semi;colon@x.com" }
    for _, email in ipairs(awkward) do
      it("'" .. email .. "' is one encoded path segment and query value", function()
        assert.is_true(select(2, client:add_account("sandbox:plus:" .. email)))
        local acct, err = client:get_account(email)
        assert.is_nil(err)
        assert.equal(email, acct.email)
        assert.equal(email, client:get_usage(email).email)
        assert.equal(email, client:set_max_jobs(email, 2).email)
        local seg = email:gsub("[^%w%-%._~]", function(c) return ("%%%02X"):format(c:byte()) end)
        local by = sb:requests().by
        assert.equal(1, by["GET /v1/flowmusic/accounts/" .. seg])
        assert.is_true(client:delete_account(email))
      end)
    end
  end)

  describe("JSON values", function()
    it("null becomes nil by default and the sentinel with null = flowmusic.null", function()
      client:add_account("sandbox:plus:n@x.com")
      local function has_null_title(doc)
        for _, e in ipairs(doc.events) do
          if e.type == "grant" or e.type == "daily-free" then return e end
        end
      end
      local plain = has_null_title(client:get_usage("n@x.com"))
      assert.is_table(plain)
      assert.is_nil(plain.conversation_title)
      local c2 = h.client(sb, { null = flowmusic.null })
      local kept = has_null_title(c2:get_usage("n@x.com"))
      assert.equal(flowmusic.null, kept.conversation_title)
      c2:close()
    end)

    it("uses its own cjson instance: the host's cjson settings are neither read nor changed", function()
      local cjson = require "cjson"
      cjson.decode_max_depth(1) -- a host setting that would break our documents
      client:add_account("sandbox:plus:cj@x.com")
      local usage = client:get_usage("cj@x.com") -- nested objects and arrays
      assert.is_table(usage.summary.by_type_tokens)
      assert.has_error(function() cjson.decode('{"a":{"b":1}}') end) -- still the host's setting
      cjson.decode_max_depth(1000)
    end)

    it("integral numbers are integers on Lua 5.3+", function()
      local acct = client:add_account("sandbox:plus:i@x.com", 12)
      assert.equal("12", tostring(acct.maxJobs))
      assert.is_true(h.is_integer(acct.refreshed_count))
    end)
  end)

  describe("lifecycle", function()
    it("tostring of the client never shows the token", function()
      local c = h.client(sb, { token = "user:42-SecretValue123" })
      assert.is_false(h.contains(tostring(c), "SecretValue123"))
      for k, v in pairs(c) do
        assert.is_false(h.contains(tostring(k) .. tostring(v), "SecretValue123"))
      end
      local _, err = c:list_accounts()
      assert.equal(401, err.status)
      assert.is_false(h.contains(tostring(err), "SecretValue123"))
      c:close()
    end)

    it("keeps its connection alive between calls; add_account always opens a fresh one", function()
      local c = h.client(sb)
      for _ = 1, 5 do assert.is_table(c:list_accounts()) end
      local function connections()
        local n, counts = 0, {}
        for _, count in pairs(sb:requests().connections) do n = n + 1; counts[#counts + 1] = count end
        return n, counts
      end
      local n, counts = connections()
      assert.equal(1, n)
      assert.same({ 5 }, counts)
      c:add_account("sandbox:plus:fresh1@x.com")
      c:add_account("sandbox:plus:fresh2@x.com")
      assert.equal(3, (connections()))
      c:close()
    end)

    it("close is idempotent and a closed client raises", function()
      local c = h.client(sb)
      assert.is_table(c:list_accounts())
      c:close()
      c:close()
      assert.has_error(function() c:list_accounts() end, "flowmusic: attempt to use a closed client")
      assert.truthy(h.contains(tostring(c), "closed"))
    end)

    it("clients dropped without close are collected", function()
      for _ = 1, 20 do
        local c = h.client(sb)
        assert.is_table(c:list_accounts())
      end
      collectgarbage()
      collectgarbage()
      assert.is_table(client:list_accounts())
    end)

    it("a to-be-closed client is closed at scope end (Lua 5.4)", function()
      if _VERSION ~= "Lua 5.4" then return pending("needs Lua 5.4") end
      local run = assert(load([[
        local h, sb = ...
        local c <close> = h.client(sb)
        assert(c:list_accounts())
        return c
      ]]))
      local c = run(h, sb)
      assert.has_error(function() c:list_accounts() end)
    end)

    it("the module loads again after being unloaded", function()
      local c = h.client(sb)
      for name in pairs(package.loaded) do
        if name == "flowmusic" or name:match("^flowmusic%.") then package.loaded[name] = nil end
      end
      local again = require "flowmusic"
      assert.is_not.equal(flowmusic, again)
      local c2 = again.new { token = sb.token, base_url = sb.base_url }
      assert.is_table(c2:list_accounts())
      assert.is_table(c:list_accounts()) -- the old client still works
      c2:close()
      c:close()
    end)
  end)
end)
