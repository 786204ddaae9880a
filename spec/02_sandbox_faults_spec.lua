-- The hostile faults the client's specs use (issue 14), seen on the wire: a Content-Length in a
-- trailer and in a 103 Early Hints, secrets echoed across byte 300, terminal escapes in JSON
-- strings, a 60 MiB body of empty arrays, a redirect to another host. Raw TCP (LuaSocket)
-- and the curl CLI only.

local cjson = require "cjson"
local socket = require "socket"
local sandbox = require "spec.helpers.sandbox"
local fixture = require "spec.helpers.fixture"

local parse_raw = sandbox.parse_raw
local ESC = "\27]0;pwned\7\27[31m"

-- Shell-quote.
local function q(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

-- Output of a command.
local function capture(cmd)
  local p = io.popen(cmd, "r")
  local out = p:read("*a")
  p:close()
  return out
end

-- The status and headers of a GET, then hang up without reading the body.
local function head_only(sb, path, fault)
  local c = socket.tcp()
  c:settimeout(10)
  assert(c:connect("127.0.0.1", sb.port))
  c:send("GET /v1/flowmusic" .. path .. " HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer " .. sb.token
    .. "\r\nX-Sandbox-Fault: " .. fault .. "\r\n\r\n")
  local lines = {}
  while true do
    local line = assert(c:receive("*l"))
    if line == "" then break end
    lines[#lines + 1] = line
  end
  local first = c:receive(4) -- the start of the body
  c:close()
  local status, headers = parse_raw(table.concat(lines, "\r\n") .. "\r\n\r\n")
  return status, headers, first
end

describe("sandbox hostile faults", function()
  local sb

  fixture.sandbox({ token = "user:31-FaultToken" }, function(s) sb = s end)

  local function fault(spec) return "X-Sandbox-Fault: " .. spec .. "\r\n" end

  it("cl_trailer: a complete chunked JSON body whose trailer says Content-Length: 99999999999", function()
    local data, how = sb:raw_api("GET", "/accounts", fault("cl_trailer"))
    assert.are.equal("closed", how)
    local status, headers, rest = parse_raw(data)
    assert.are.equal(200, status)
    assert.are.equal("chunked", headers["transfer-encoding"])
    assert.are.equal("Content-Length", headers.trailer)
    assert.is_nil(headers["content-length"])
    local size, chunk, after = rest:match("^(%x+)\r\n(.-)\r\n(.*)$")
    assert.are.equal(tonumber(size, 16), #chunk)
    assert.are.same({ email = "hostile@flowmusic.sandbox", tier = "plus" }, cjson.decode(chunk))
    assert.are.equal("0\r\nContent-Length: 99999999999\r\n\r\n", after)
    -- with apply=1 the chunk is the real answer; `length` sets the trailer's value
    sb:seed(1)
    data = sb:raw_api("GET", "/accounts/seed-01%40sandbox.test", fault("cl_trailer apply=1 length=5"))
    rest = select(3, parse_raw(data))
    size, chunk, after = rest:match("^(%x+)\r\n(.-)\r\n(.*)$")
    assert.are.equal(tonumber(size, 16), #chunk)
    assert.are.equal("seed-01@sandbox.test", cjson.decode(chunk).email)
    assert.are.equal("0\r\nContent-Length: 5\r\n\r\n", after)
    -- curl reads it as the complete body it is
    local out = capture("curl -sS -H " .. q("Authorization: Bearer " .. sb.token)
      .. " -H 'X-Sandbox-Fault: cl_trailer' "
      .. q(sb.base_url .. "/accounts"))
    assert.are.equal('{"email":"hostile@flowmusic.sandbox","tier":"plus"}', out)
  end)

  it("early_hints_cl: a 103 with Content-Length: 99999999999, then a 200 with the right one", function()
    local data, how = sb:raw_api("GET", "/accounts", fault("early_hints_cl"))
    assert.are.equal("closed", how)
    local status, headers, rest = parse_raw(data)
    assert.are.equal(103, status)
    assert.are.equal("99999999999", headers["content-length"])
    assert.matches("rel=preload", headers.link)
    local status2, headers2, body = parse_raw(rest)
    assert.are.equal(200, status2)
    assert.are.equal(#body, tonumber(headers2["content-length"]))
    assert.are.same({ email = "hostile@flowmusic.sandbox", tier = "plus" }, cjson.decode(body))
    -- apply=1: the real answer behind the 103
    sb:seed(2)
    data = sb:raw_api("GET", "/accounts", fault("early_hints_cl apply=1 length=7"))
    status, headers, rest = parse_raw(data)
    assert.are.equal(103, status)
    assert.are.equal("7", headers["content-length"])
    local _, h, list = parse_raw(rest)
    assert.are.equal(#list, tonumber(h["content-length"]))
    assert.is_table(cjson.decode(list)["seed-02@sandbox.test"])
    local out = capture("curl -sS -H " .. q("Authorization: Bearer " .. sb.token)
      .. " -H 'X-Sandbox-Fault: early_hints_cl' -w ' %{http_code}' " .. q(sb.base_url .. "/accounts"))
    assert.are.equal('{"email":"hostile@flowmusic.sandbox","tier":"plus"} 200', out)
  end)

  it("echo_secret: a 400 whose error puts the bearer token across byte 300", function()
    local code, body = sb:api("GET", "/accounts", { headers = { ["X-Sandbox-Fault"] = "echo_secret" } })
    assert.are.equal(400, code)
    assert.are.equal(400, body.code)
    local at = body.error:find(sb.token, 1, true)
    assert.are.equal(296, at)
    assert.is_true(at <= 300 and at + #sb.token - 1 > 300, "does not straddle byte 300")
    code, body = sb:api("GET", "/accounts", { headers = { ["X-Sandbox-Fault"] = "echo_secret offset=0 code=502" } })
    assert.are.equal(502, code)
    assert.are.equal(1, body.error:find(sb.token, 1, true))
  end)

  it("echo_secret on POST /accounts: the refresh token too; secret=refresh puts it at the offset", function()
    local rt = "sandbox:plus:REFRESHSENTINEL@x.com"
    local code, body = sb:api("POST", "/accounts", { json = { refresh_token = rt },
                                                     headers = { ["X-Sandbox-Fault"] = "echo_secret" } })
    assert.are.equal(400, code)
    assert.are.equal(296, body.error:find(sb.token, 1, true))
    assert.is_number(body.error:find(rt, 1, true))
    code, body = sb:api("POST", "/accounts", { json = { refresh_token = rt },
      headers = { ["X-Sandbox-Fault"] = "echo_secret secret=refresh offset=290" } })
    assert.are.equal(400, code)
    assert.are.equal(291, body.error:find(rt, 1, true))
    assert.is_number(body.error:find(sb.token, 1, true))
    -- nothing was stored without apply; with apply=1 the account exists afterwards
    assert.are.equal(404, (sb:api("GET", "/accounts/REFRESHSENTINEL%40x.com")))
    code = sb:api("POST", "/accounts", { json = { refresh_token = rt },
                                         headers = { ["X-Sandbox-Fault"] = "echo_secret apply=1" } })
    assert.are.equal(400, code)
    assert.are.equal(200, (sb:api("GET", "/accounts/REFRESHSENTINEL%40x.com")))
    -- multipart bodies too
    local boundary = "b0undary"
    local form = "--" .. boundary .. "\r\nContent-Disposition: form-data; name=\"refresh_token\"\r\n\r\n" .. rt
      .. "\r\n--" .. boundary .. "--\r\n"
    code, body = sb:api("POST", "/accounts", { body = form, headers = {
      ["Content-Type"] = "multipart/form-data; boundary=" .. boundary,
      ["X-Sandbox-Fault"] = "echo_secret secret=refresh" } })
    assert.are.equal(400, code)
    assert.are.equal(296, body.error:find(rt, 1, true))
  end)

  it("escape: ESC and OSC sequences in the strings a client shows", function()
    sb:api("POST", "/accounts", { json = { refresh_token = "sandbox:plus:esc@x.com" } })
    -- a record
    local data = sb:raw_api("GET", "/accounts/esc%40x.com", fault("escape"))
    local status, headers, body = parse_raw(data)
    assert.are.equal(200, status)
    assert.are.equal("application/json", headers["content-type"])
    assert.matches("\\u001b]0;pwned\\u0007\\u001b[31m", body, 1, true) -- valid JSON escapes on the wire
    local rec = cjson.decode(body)
    assert.are.equal("esc@x.com" .. ESC, rec.email)
    assert.are.equal("plus" .. ESC, rec.tier)
    assert.are.equal(5000, rec.credits_remaining)
    -- raw=1: the bytes themselves
    body = select(3, parse_raw(sb:raw_api("GET", "/accounts/esc%40x.com", fault("escape raw=1"))))
    assert.is_number(body:find(ESC, 1, true))
    -- the list: keys and values
    local _, list = sb:api("GET", "/accounts", { headers = { ["X-Sandbox-Fault"] = "escape" } })
    assert.are.equal("esc@x.com" .. ESC, list["esc@x.com" .. ESC].email)
    -- usage: song titles
    local _, doc = sb:api("GET", "/accounts/usage?email=esc%40x.com", { headers = { ["X-Sandbox-Fault"] = "escape" } })
    assert.are.equal("Sample Song" .. ESC, doc.summary.per_conversation[1].title)
    -- an unknown account: a made-up record for the email of the path
    local _, ghost = sb:api("GET", "/accounts/ghost%40x.com", { headers = { ["X-Sandbox-Fault"] = "escape" } })
    assert.are.equal("ghost@x.com" .. ESC, ghost.email)
    -- an error message
    local code, err = sb:api("GET", "/accounts", { headers = { ["X-Sandbox-Fault"] = "escape code=400" } })
    assert.are.equal(400, code)
    assert.is_number(err.error:find(ESC, 1, true))
  end)

  it("wide_json: about mb MiB of empty arrays, streamed, with Content-Length (or chunked)", function()
    local code, text, headers = sb:http("GET", sb.base_url .. "/accounts",
      { headers = { Authorization = "Bearer " .. sb.token, ["X-Sandbox-Fault"] = "wide_json mb=1" } })
    assert.are.equal(200, code)
    assert.are.equal("application/json", headers["content-type"])
    assert.are.equal(#text, tonumber(headers["content-length"]))
    assert.are.equal(1048576, #text)
    assert.are.equal("[[],[],", text:sub(1, 7))
    assert.are.equal(",[],[]]", text:sub(-7))
    local doc = cjson.decode(text)
    assert.are.equal((1048576 - 2 + 1) / 3, #doc)
    assert.are.same({}, doc[#doc])
    code, text, headers = sb:http("GET", sb.base_url .. "/accounts",
      { headers = { Authorization = "Bearer " .. sb.token, ["X-Sandbox-Fault"] = "wide_json mb=0.5 chunked=1" } })
    assert.are.equal(200, code)
    assert.are.equal("chunked", headers["transfer-encoding"])
    assert.is_true(#cjson.decode(text) > 100000)
    -- the default: 60 MiB (headers only; the client's specs read the body)
    local status, h, first = head_only(sb, "/accounts", "wide_json")
    assert.are.equal(200, status)
    assert.is_true(math.abs(tonumber(h["content-length"]) - 60 * 1048576) < 4)
    assert.are.equal("[[],", first)
    status, h = head_only(sb, "/accounts", "huge mb=70")
    assert.are.equal(200, status)
    assert.is_true(math.abs(tonumber(h["content-length"]) - 70 * 1048576) < 4096)
  end)

  it("redirect: a 302 to the same path on another host (127.0.0.2); location and code settable", function()
    local data = sb:raw_api("GET", "/accounts?x=1", fault("redirect"))
    local status, headers, body = parse_raw(data)
    assert.are.equal(302, status)
    assert.are.equal("http://127.0.0.2:" .. sb.port .. "/v1/flowmusic/accounts?x=1", headers.location)
    assert.are.equal(302, cjson.decode(body).code)
    data = sb:raw_api("POST", "/accounts", fault("redirect code=307 location=http://evil.example/steal")
      .. "Content-Type: application/json\r\n", cjson.encode({ refresh_token = "sandbox:plus:r@x.com" }))
    status, headers = parse_raw(data)
    assert.are.equal(307, status)
    assert.are.equal("http://evil.example/steal", headers.location)
    assert.are.equal(404, (sb:api("GET", "/accounts/r%40x.com")))
    sb:raw_api("POST", "/accounts", fault("redirect apply=1") .. "Content-Type: application/json\r\n",
               cjson.encode({ refresh_token = "sandbox:plus:r@x.com" }))
    assert.are.equal(200, (sb:api("GET", "/accounts/r%40x.com")))
  end)

  it("every new fault can be scripted for one path", function()
    sb:seed(1)
    local path = "/v1/flowmusic/accounts/seed-01%40sandbox.test"
    for _, name in ipairs({ "cl_trailer", "early_hints_cl", "echo_secret", "escape", "wide_json", "redirect" }) do
      sb:fault({ fault = name, method = "GET", path = path, mb = name == "wide_json" and 0.01 or nil })
      assert.are.equal(200, (sb:api("GET", "/accounts"))) -- another path: untouched
      local data = sb:raw_api("GET", "/accounts/seed-01%40sandbox.test")
      local status = parse_raw(data)
      local want = ({ echo_secret = 400, redirect = 302, early_hints_cl = 103 })[name] or 200
      assert.are.equal(want, status, name)
      assert.are.same({}, select(2, sb:control("GET", "faults")).faults)
    end
  end)
end)
