-- Every operation of the operation table, for every top-level JSON value (and an empty body)
-- that a server can answer, with the statuses it takes as success and the usual failures:
-- the call returns its value or `nil, err` with a typed kind and a message, and never raises.
-- The sandbox's `body` fault answers exactly the status, content type and body asked for.
local fixture = require "spec.helpers.fixture"
local h = require "spec.helpers.client"
local ops = require "flowmusic.ops"
local errors = require "flowmusic.errors"

local unpack = table.unpack or unpack -- luacheck: ignore 143

-- Arguments of each operation (a new operation fails this spec until it is listed here).
local ARGS = {
  add_account = { "sandbox:plus:every@x.com", 4 },
  set_max_jobs = { "every@x.com", 4 },
  list_accounts = {},
  get_account = { "every@x.com" },
  delete_account = { "every@x.com" },
  get_usage = { "every@x.com" },
  list_jobs = {},
  get_subscription = {},
  request = { "GET", "/accounts" },
}

-- The statuses each operation takes as success (add_account: 201 for a new account).
local SUCCESS = { add_account = { 200, 201 }, delete_account = { 200, 204 } }

local BODIES = {
  { "null", "null" }, { "true", "true" }, { "false", "false" }, { "a number", "12.5" },
  { "a string", '"text"' }, { "an array", '[1,"two",null]' }, { "an empty array", "[]" },
  { "an object", '{"email":"every@x.com","maxJobs":4}' }, { "an empty object", "{}" },
  { "no body", "" }, { "spaces only", "  \r\n" },
}

-- Check the outcome of one call: (true, value...) or (true, nil, err) with err typed.
local function check(where, ok, v, err)
  assert(ok, where .. ": raised " .. tostring(v))
  if v ~= nil then return "value" end
  assert(errors.is(err), where .. ": nil without an error value: " .. tostring(err))
  assert(type(err.kind) == "string" and err.kind ~= "", where .. ": error without a kind")
  assert(type(err.message) == "string" and err.message ~= "", where .. ": error without a message: " .. tostring(err))
  assert(not tostring(err):find("nil", 1, true) or err.message:find("nil", 1, true),
    where .. ": " .. tostring(err))
  return err.kind
end

describe("every operation, for every answer", function()
  local sb, client

  fixture.sandbox({ client = { retries = 0 }, reset = false }, function(s, _, cl) sb, client = s, cl end)

  it("has arguments for every operation of the table", function()
    for _, name in ipairs(ops.names()) do
      assert(ARGS[name], "no arguments listed for operation " .. name)
    end
  end)

  for _, ctype in ipairs { "application/json", "text/plain" } do
    it("returns a value or a typed error for each JSON value as " .. ctype .. ", never raising", function()
      local seen = {}
      for _, name in ipairs(ops.names()) do
        local statuses = { 400, 404, 429, 500, 596 }
        for _, s in ipairs(SUCCESS[name] or { 200 }) do table.insert(statuses, 1, s) end
        for _, status in ipairs(statuses) do
          for _, b in ipairs(BODIES) do
            sb:fault { fault = "body", code = status, content_type = ctype, body = b[2], count = 1 }
            local where = ("%s, %d %s, %s"):format(name, status, ctype, b[1])
            local outcome = check(where, pcall(client[name], client, unpack(ARGS[name])))
            seen[outcome] = true
            local _, queue = sb:control("GET", "/__sandbox/faults")
            assert(next(queue.faults or queue) == nil, where .. ": the fault was not taken")
          end
        end
      end
      -- both ways out were taken (values for object answers, errors for the rest)
      assert.is_true(seen.value)
      assert.is_true(seen.http)
      assert.is_true(seen.bad_response)
    end)
  end

  it("gives a top-level null of a raw request as flowmusic.null, never as a failure", function()
    sb:fault { fault = "body", code = 200, body = "null", count = 1 }
    local v, status = client:request("GET", "/accounts")
    assert.equal(h.flowmusic.null, v)
    assert.equal(200, status)
  end)

  it("decodes a raw or error body by what it is: a JSON type in any case, an error body that looks like JSON", function()
    sb:fault { fault = "body", code = 200, content_type = "Application/Problem+JSON; charset=utf-8",
      body = '{"a":1}', count = 1 }
    local v = client:request("GET", "/accounts")
    assert.same({ a = 1 }, v)
    sb:fault { fault = "body", code = 200, content_type = "text/plain", body = '{"a":1}', count = 1 }
    assert.equal('{"a":1}', (client:request("GET", "/accounts")))
    sb:fault { fault = "body", code = 404, content_type = "text/html", body = ' \n{"error":"gone away"}', count = 1 }
    local status
    v, status = client:request("GET", "/accounts")
    assert.same({ error = "gone away" }, v)
    assert.equal(404, status)
    sb:fault { fault = "body", code = 404, content_type = "text/html", body = '{"error":"gone away"}', count = 1 }
    local _, err = client:get_account("every@x.com")
    assert.equal("gone away", err.message)
    sb:fault { fault = "body", code = 500, content_type = "application/json", body = '{"error": broken', count = 1 }
    _, err = client:get_account("every@x.com")
    assert.equal("http", err.kind)
    assert.equal(500, err.status)
    assert.equal("HTTP 500 with an application/json body", err.message)
  end)

  it("types an answer that is JSON but not an object as a shape error, saying what it was", function()
    for _, b in ipairs { { "null", "null" }, { "12", "a number" }, { "[]", "an array" }, { '"x"', "a string" } } do
      sb:fault { fault = "body", code = 200, body = b[1], count = 1 }
      local v, err = client:get_account("every@x.com")
      assert.is_nil(v)
      assert.equal("bad_response", err.kind)
      assert.equal("shape", err.reason)
      assert.equal(200, err.status)
      assert.equal("expected a JSON object, got " .. b[2], err.message)
    end
    sb:fault { fault = "body", code = 200, body = "", count = 1 }
    local _, err = client:get_account("every@x.com")
    assert.equal("invalid_body", err.reason)
    assert.truthy(err.message:find("not valid JSON", 1, true), err.message)
  end)

  it("answers exactly the scripted status, content type and body", function()
    sb:fault { fault = "body", code = 201, content_type = "text/x-odd", body = "[1]", count = 1 }
    local status, body, headers = sb:http("GET", "/v1/flowmusic/accounts")
    assert.equal(201, status)
    assert.equal("[1]", body)
    assert.equal("text/x-odd", headers["content-type"])
    assert.equal("3", headers["content-length"])
    sb:fault { fault = "body", code = 200, count = 1 }
    status, body, headers = sb:http("GET", "/v1/flowmusic/accounts")
    assert.equal(200, status)
    assert.equal("", body)
    assert.equal("0", headers["content-length"])
    assert.equal("application/json", headers["content-type"])
  end)

  it("refuses a body fault over 4096 bytes, and a bad code", function()
    local status = sb:http("POST", "/__sandbox/faults", { headers = { ["Content-Type"] = "application/json" },
      body = '{"fault":"body","body":"' .. ("x"):rep(4097) .. '"}' })
    assert.equal(400, status)
    status = sb:http("POST", "/__sandbox/faults", { headers = { ["Content-Type"] = "application/json" },
      body = '{"fault":"body","code":600}' })
    assert.equal(400, status)
    status = sb:http("POST", "/__sandbox/faults", { headers = { ["Content-Type"] = "application/json" },
      body = '{"fault":"body","body":"' .. ("x"):rep(4096) .. '"}' })
    assert.equal(201, status)
    sb:clear_faults()
  end)
end)
