-- Hostile answers: secrets scrubbed before a message is shortened, Content-Length taken only
-- from the final header section, wrong shapes refused, decoding bounded (issue: hostile input).
local h = require "spec.helpers.client"
local rawserver = require "spec.helpers.rawserver"

local flowmusic = h.flowmusic
local TOKEN = "user:999-SENTINELxyzAPITOKEN0123456789"
local REFRESH = "sandbox:plus:REFRESHSENTINEL-abcdefghijklmnop@x.com"
local JSON = { ["Content-Type"] = "application/json" }

local pieces_in = h.secret_pieces

local function serve(responses, opts)
  local raw = rawserver.start(responses)
  local o = { token = TOKEN, base_url = raw.base_url, retries = 0, timeout = 10 }
  for k, v in pairs(opts or {}) do o[k] = v end
  return raw, flowmusic.new(o)
end

describe("secrets in server text", function()
  for _, offset in ipairs { 280, 295, 299, 300, 301 } do
    it("are scrubbed before the message is cut (secret at byte " .. offset .. ")", function()
      local text = ("x"):rep(offset) .. TOKEN .. " and " .. REFRESH .. ("y"):rep(400)
      local raw, c = serve { rawserver.response(400, JSON, '{"error":"' .. text .. '"}') }
      local _, err = c:add_account(REFRESH)
      raw:stop()
      for _, s in ipairs { err.message, tostring(err) } do
        assert.same({}, pieces_in(s, TOKEN))
        assert.same({}, pieces_in(s, REFRESH))
      end
      assert.is_true(#err.message <= 310)
    end)
  end
end)

describe("Content-Length", function()
  it("in a trailer does not make a complete body too large", function()
    local body = '{"email":"a@x.com","maxJobs":2}'
    local raw, c = serve { "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n"
      .. "Trailer: Content-Length\r\nConnection: close\r\n\r\n" .. ("%x"):format(#body) .. "\r\n" .. body
      .. "\r\n0\r\nContent-Length: 99999999999\r\n\r\n" }
    local acct, err = c:get_account("a@x.com")
    raw:stop()
    assert.is_nil(err)
    assert.equal(2, acct.maxJobs)
  end)

  it("in a 103 Early Hints answer is ignored", function()
    local body = '{"email":"a@x.com","maxJobs":4}'
    local raw, c = serve { "HTTP/1.1 103 Early Hints\r\nContent-Length: 99999999999\r\nLink: </s.css>\r\n\r\n"
      .. rawserver.response(200, JSON, body) }
    local acct, err = c:get_account("a@x.com")
    raw:stop()
    assert.is_nil(err)
    assert.equal(4, acct.maxJobs)
  end)

  it("in the answer to HEAD describes no body", function()
    local raw, c = serve { "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 99999999999\r\n"
      .. "Connection: close\r\n\r\n" }
    local body, status = c:request("HEAD", "/accounts")
    raw:stop()
    assert.equal(200, status)
    assert.equal("", body)
  end)
end)

describe("shapes", function()
  it("an array where an object is documented is a bad_response", function()
    local raw, c = serve { rawserver.response(200, JSON, "[1,2,3]") }
    local acct, err = c:get_account("a@x.com")
    raw:stop()
    assert.is_nil(acct)
    assert.equal("bad_response", err.kind)
    assert.truthy(h.contains(err.message, "array"))
  end)

  it("a number that is not finite is a bad_response naming its field", function()
    local raw, c = serve { rawserver.response(200, JSON, '{"email":"a@x.com","maxJobs":1e400}') }
    local acct, err = c:get_account("a@x.com")
    raw:stop()
    assert.is_nil(acct)
    assert.equal("bad_response", err.kind)
    assert.truthy(h.contains(err.message, "maxJobs"))
  end)

  it("a field of the wrong type is a bad_response naming it", function()
    local raw, c = serve { rawserver.response(200, JSON, '{"email":"a@x.com","maxJobs":"4"}') }
    local _, err = c:get_account("a@x.com")
    raw:stop()
    assert.equal("bad_response", err.kind)
    assert.truthy(h.contains(err.message, "maxJobs"))
  end)
end)

describe("decoding", function()
  it("refuses a 60 MB body of nested empty arrays as too_large, before building it", function()
    local raw, c = serve({ rawserver.response(200, JSON, "[" .. ("[],"):rep(20 * 1000 * 1000) .. "[]]") },
      { timeout = 60 })
    collectgarbage()
    local v, err = c:request("GET", "/big")
    raw:stop()
    assert.is_nil(v)
    assert.equal("too_large", err.kind)
    assert.equal("too_many_values", err.reason)
  end)
end)
