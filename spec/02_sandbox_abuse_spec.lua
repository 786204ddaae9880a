-- The sandbox under abuse (issue 14): bounded input sizes, a fault queue that never evicts
-- accounts, JSON for every error (the handler's own and nginx's), HEAD like GET, and control
-- endpoints that refuse the shapes of cross-site requests. LuaSocket and curl only.

local cjson = require "cjson"
local sandbox = require "spec.helpers.sandbox"
local fixture = require "spec.helpers.fixture"

local parse_raw = sandbox.parse_raw

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

describe("sandbox under abuse #once", function()
  local sb

  fixture.sandbox({ token = "user:77-AbuseToken" }, function(s) sb = s end)

  local function assert_error(code, body, status, message)
    assert.are.equal(status, code, type(body) == "table" and cjson.encode(body) or tostring(body))
    assert.are.equal("table", type(body), tostring(body))
    assert.are.equal(status, body.code)
    assert.are.equal("string", type(body.error))
    if message then assert.matches(message, body.error, 1, true) end
  end

  local function post(body, headers)
    return sb:api("POST", "/accounts", { json = body, headers = headers })
  end

  describe("bounded sizes", function()
    it("emails: at most 320 bytes, everywhere an email comes in; never an HTML 500", function()
      local ok_email = string.rep("a", 320 - #"@x.com") .. "@x.com"
      local long = "a" .. ok_email
      local code = post({ refresh_token = "sandbox:plus:" .. ok_email })
      assert.are.equal(201, code)
      local body
      code, body = post({ refresh_token = "sandbox:plus:" .. long })
      assert_error(code, body, 400, "email must be at most 320 bytes")
      code, body = post({ refresh_token = "sandbox:plus:" .. string.rep("e", 5000) .. "@x.com" })
      assert_error(code, body, 400, "email must be at most 320 bytes")
      -- the 70 KB email of the report: its token is too long already
      code, body = post({ refresh_token = "sandbox:plus:" .. string.rep("e", 70000) .. "@x.com" })
      assert_error(code, body, 400, "refresh_token must be at most 8192 bytes")
      code, body = post({ email = long, maxJobs = 2 })
      assert_error(code, body, 400, "email must be at most 320 bytes")
      code, body = sb:api("GET", "/accounts/" .. long)
      assert_error(code, body, 400, "email must be at most 320 bytes")
      code, body = sb:api("DELETE", "/accounts/" .. long)
      assert_error(code, body, 400, "email must be at most 320 bytes")
      code, body = sb:api("GET", "/accounts/usage?email=" .. long)
      assert_error(code, body, 400, "email must be at most 320 bytes")
      code, body = sb:control("POST", "usage", { email = long, events = 1 })
      assert_error(code, body, 400, "email must be at most 320 bytes")
      -- beyond nginx's URI limit: still JSON
      code, body = sb:api("GET", "/accounts/" .. string.rep("e", 70000))
      assert_error(code, body, 414)
      -- the one long account is still there, and only it
      local _, list = sb:api("GET", "/accounts")
      assert.is_table(list[ok_email])
    end)

    it("refresh tokens: at most 8192 bytes", function()
      local code, body = post({ refresh_token = string.rep("r", 8193) })
      assert_error(code, body, 400, "refresh_token must be at most 8192 bytes")
      code = post({ refresh_token = string.rep("r", 8192) })
      assert.are.equal(201, code)
    end)

    it("request bodies: over 8 MiB is a JSON 413", function()
      local code, body = sb:api("POST", "/accounts", { body = string.rep(" ", 9 * 1024 * 1024),
        headers = { ["Content-Type"] = "application/json" } })
      assert_error(code, body, 413, "too large")
    end)

    it("usage documents: at most 200000 events", function()
      post({ refresh_token = "sandbox:plus:big@x.com" })
      for _, n in ipairs({ 200001, 1000000, 1e300, -1, 2.5 }) do
        local code, body = sb:control("POST", "usage", { email = "big@x.com", events = n })
        assert_error(code, body, 400, "events must be an integer 0-200000")
      end
      local code, body = sb:control("POST", "usage", { email = "big@x.com", events = 200000 })
      assert.are.equal(200, code)
      assert.are.equal(200000, body.events)
      -- the large history is this account's only
      post({ refresh_token = "sandbox:plus:small@x.com" })
      local _, small = sb:api("GET", "/accounts/usage?email=small%40x.com")
      assert.is_true(#small.events < 50)
    end)

    it("a usage document at the maximum does not wedge the sandbox: other requests are answered meanwhile", function()
      post({ refresh_token = "sandbox:plus:max@x.com" })
      assert.are.equal(200, (sb:control("POST", "usage", { email = "max@x.com", events = 200000 })))
      local done = sb.dir .. "/usage-done"
      os.remove(done)
      -- curl reports when the first byte of the answer came (seconds after its own start)
      os.execute("(start=$(date +%s.%N); curl -sS -o " .. q(sb.dir .. "/usage.json")
        .. " -w '%{http_code} %{time_starttransfer}' -H " .. q("Authorization: Bearer " .. sb.token) .. " "
        .. q(sb.base_url .. "/accounts/usage?email=max%40x.com") .. " > " .. q(done .. ".tmp")
        .. "; echo \" $start\" >> " .. q(done .. ".tmp") .. "; mv " .. q(done .. ".tmp") .. " " .. q(done)
        .. ") >/dev/null 2>&1 &")
      local socket = require "socket"
      -- once the request has arrived (it is counted first), other requests are answered
      -- before the usage document is: it is built in slices
      local deadline = socket.gettime() + 30
      repeat
        local counts = sb:requests()
        local arrived = counts.by["GET /v1/flowmusic/accounts/usage"] == 1
        if not arrived then socket.sleep(0.01) end
      until arrived or socket.gettime() > deadline
      assert.are.equal(200, (sb:control("GET", "health")))
      assert.are.equal(200, (sb:api("GET", "/accounts")))
      local answered = socket.gettime()
      repeat socket.sleep(0.05) until io.open(done) or socket.gettime() > deadline + 60
      local status, first_byte, start = assert(io.open(done)):read("*a"):match("^(%d+) ([%d.]+)%s+([%d.]+)")
      assert.are.equal("200", status)
      assert.is_true(answered < tonumber(start) + tonumber(first_byte),
                     "the others waited for the usage document")
      local f = assert(io.open(sb.dir .. "/usage.json"))
      local size = f:seek("end")
      f:close()
      assert.is_true(size > 40 * 1000 * 1000, "only " .. size .. " bytes")
    end)

    it("a client hanging up while its large document is built does not hold up the next one", function()
      post({ refresh_token = "sandbox:plus:quit@x.com" })
      post({ refresh_token = "sandbox:plus:next@x.com" })
      assert.are.equal(200, (sb:control("POST", "usage", { email = "quit@x.com", events = 200000 })))
      assert.are.equal(200, (sb:control("POST", "usage", { email = "next@x.com", events = 1000 })))
      local socket = require "socket"
      local c = socket.tcp()
      c:settimeout(5)
      assert(c:connect("127.0.0.1", sb.port))
      assert(c:send("GET /v1/flowmusic/accounts/usage?email=quit%40x.com HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        .. "Authorization: Bearer " .. sb.token .. "\r\n\r\n"))
      local deadline = socket.gettime() + 30
      repeat socket.sleep(0.01)
      until (sb:requests().by["GET /v1/flowmusic/accounts/usage"] or 0) >= 1 or socket.gettime() > deadline
      c:close() -- nginx ends that request at its next slice
      local code, doc = sb:api("GET", "/accounts/usage?email=next%40x.com", { timeout = 60 })
      assert.are.equal(200, code, tostring(doc))
      assert.are.equal(1000, #doc.events)
    end)

    it("fault parameters: numbers in range, messages at most 1024 bytes, no control characters in headers", function()
      local bad = {
        "latency ms=1e300", "latency ms=600001", "stall ms=-1", "endless seconds=3601",
        "huge mb=1025", "wide_json mb=nan", "drip interval_ms=60001", "status code=600",
        "echo_secret offset=4097", "echo_secret secret=cookie", "deep_json depth=10000001",
      }
      for _, spec in ipairs(bad) do
        local code, body = sb:api("GET", "/accounts", { headers = { ["X-Sandbox-Fault"] = spec } })
        assert_error(code, body, 400, "bad value")
        code, body = sb:control("POST", "faults", { fault = spec })
        assert_error(code, body, 400, "bad value")
      end
      local code, body = sb:control("POST", "faults", { fault = "status", message = string.rep("m", 1025) })
      assert_error(code, body, 400, "longer than 1024 bytes")
      code, body = sb:control("POST", "faults", { fault = "status", retry_after = "1\r\nSet-Cookie: x=1" })
      assert_error(code, body, 400, "control characters")
      code, body = sb:control("POST", "faults", { fault = "status", count = 1000001 })
      assert_error(code, body, 400, "count must be an integer 0-1000000")
      code, body = sb:control("POST", "faults", { fault = "status", path = string.rep("/", 4097) })
      assert_error(code, body, 400, "path must be a string of at most 4096 bytes")
      -- the largest accepted values
      for _, spec in ipairs({ "huge mb=70", "huge_chunked mb=1024", "wide_json mb=70", "latency ms=600000" }) do
        assert.are.equal(201, (sb:control("POST", "faults", { fault = spec, path = "/nowhere" })))
      end
      code = sb:control("POST", "faults", { fault = "status", message = string.rep("m", 1024), path = "/nowhere" })
      assert.are.equal(201, code)
    end)

    it("the fault queue is bounded, stored apart, and never evicts accounts", function()
      local emails = sb:seed(50)
      -- the report's attack: twelve 3 MB messages (now refused), then a full queue
      for _ = 1, 12 do
        local code = sb:control("POST", "faults", { fault = "status", message = string.rep("x", 3 * 1024 * 1024) })
        assert.are.equal(400, code)
      end
      for i = 1, 100 do
        local code = sb:control("POST", "faults", { fault = "status", message = string.rep("x", 1024),
                                                     path = "/v1/flowmusic/nowhere/" .. string.rep("p", 4000) .. i,
                                                     count = 0 })
        assert.are.equal(201, code, "fault " .. i)
      end
      local code, body = sb:control("POST", "faults", { fault = "status", path = "/nowhere" })
      assert_error(code, body, 507, "the fault queue is full (100 entries)")
      local _, list = sb:api("GET", "/accounts")
      local n = 0
      for _ in pairs(list) do n = n + 1 end
      assert.are.equal(50, n)
      for _, email in ipairs(emails) do assert.is_table(list[email], email) end
      sb:clear_faults()
      assert.are.equal(201, (sb:control("POST", "faults", { fault = "status", path = "/nowhere" })))
    end)
  end)

  describe("errors are JSON", function()
    it("a Lua error in a handler is a JSON 500 naming it; the sandbox goes on", function()
      local code, body = sb:api("GET", "/accounts", { headers = { ["X-Sandbox-Fault"] = "handler_error" } })
      assert_error(code, body, 500, "Sandbox handler error:")
      assert.matches("handler_error fault: a deliberate Lua error", body.error, 1, true)
      local log = assert(io.open(sb.dir .. "/error.log")):read("*a")
      assert.matches("handler error: .*stack traceback", log)
      assert.are.equal(200, (sb:api("GET", "/accounts")))
    end)

    it("what nginx answers by itself is JSON too (a malformed request, an over-long URI)", function()
      local data = sb:raw("GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nBad Header Line\r\n\r\n")
      local status, headers, body = parse_raw(data)
      assert.are.equal(400, status)
      assert.are.equal("application/json", headers["content-type"])
      assert.are.same({ error = "Bad request", code = 400 }, cjson.decode(body))
      data = sb:raw("GET /v1/flowmusic/accounts/" .. string.rep("u", 40000) .. " HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
      status, headers, body = parse_raw(data)
      assert.are.equal(414, status)
      assert.are.equal("application/json", headers["content-type"])
      assert.are.equal(414, cjson.decode(body).code)
    end)
  end)

  describe("HEAD", function()
    it("answers as GET would, with the real Content-Length and no body", function()
      local emails = sb:seed(2)
      for _, path in ipairs({ "/accounts", "/accounts/seed-01%40sandbox.test",
                              "/accounts/usage?email=seed-02%40sandbox.test" }) do
        local get = sb:raw_api("GET", path)
        local _, gh, gbody = parse_raw(get)
        local head, how = sb:raw_api("HEAD", path)
        assert.are.equal("closed", how)
        local status, hh, hbody = parse_raw(head)
        assert.are.equal(200, status, path)
        assert.are.equal(#gbody, tonumber(hh["content-length"]), path)
        assert.are.equal(gh["content-length"], hh["content-length"])
        assert.are.equal("application/json", hh["content-type"])
        assert.are.equal("", hbody)
      end
      assert.are.equal(2, #emails)
      local counts = sb:requests()
      assert.are.equal(1, counts.by["HEAD /v1/flowmusic/accounts"])
      -- the Allow header of a 405 names HEAD
      local _, _, headers = sb:api("PUT", "/accounts", { json = {} })
      assert.are.equal("GET, HEAD, POST", headers.allow)
    end)
  end)

  describe("control endpoints are cross-site-proof", function()
    local function curl(args)
      local out = capture("curl -sS -w '\\n%{http_code}' " .. args .. " 2>&1")
      local body, code = out:match("^(.*)\n(%d+)$")
      return tonumber(code), body and cjson.decode(body)
    end

    it("refuse any request carrying an Origin header (403 JSON), and do nothing", function()
      sb:seed(2)
      for _, args in ipairs({
        "-H 'Origin: http://evil.example' " .. q(sb.root .. "/__sandbox/health"),
        "-X POST -H 'Origin: http://evil.example' -H 'Content-Type: application/json' -d '{}' "
          .. q(sb.root .. "/__sandbox/reset"),
        "-X POST -H 'Origin: null' -H 'Content-Type: application/json' -d '{\"fault\":\"reset\",\"count\":0}' "
          .. q(sb.root .. "/__sandbox/faults"),
        "-X DELETE -H 'Origin: http://127.0.0.1' " .. q(sb.root .. "/__sandbox/faults"),
      }) do
        local code, body = curl(args)
        assert.are.equal(403, code, args)
        assert.matches("Origin", body.error)
      end
      local _, list = sb:api("GET", "/accounts")
      assert.is_table(list["seed-02@sandbox.test"])
      assert.are.same({}, select(2, sb:control("GET", "faults")).faults)
    end)

    it("accept a body only as application/json (415 JSON otherwise), and do nothing", function()
      sb:seed(2)
      for _, ctype in ipairs({ "text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x",
                               "" }) do
        local args = "-X POST " .. (ctype ~= "" and ("-H " .. q("Content-Type: " .. ctype)) or "-H 'Content-Type:'")
          .. " --data-binary '{}' " .. q(sb.root .. "/__sandbox/reset")
        local code, body = curl(args)
        assert.are.equal(415, code, ctype)
        assert.matches("application/json", body.error)
      end
      local _, list = sb:api("GET", "/accounts")
      assert.is_table(list["seed-01@sandbox.test"])
      local code = curl("-X POST -H 'Content-Type: application/json; charset=utf-8' -d '{}' "
        .. q(sb.root .. "/__sandbox/reset"))
      assert.are.equal(200, code)
      _, list = sb:api("GET", "/accounts")
      assert.are.same({}, list)
    end)

    it("refuse a Host that is not the loopback (DNS rebinding) and requests from web pages", function()
      local code, body = curl("-H 'Host: evil.example:8080' " .. q(sb.root .. "/__sandbox/health"))
      assert.are.equal(403, code)
      assert.matches("127.0.0.1, localhost", body.error, 1, true)
      code = curl("-H 'Sec-Fetch-Site: cross-site' " .. q(sb.root .. "/__sandbox/requests"))
      assert.are.equal(403, code)
      code = curl("-H " .. q("Host: localhost:" .. sb.port) .. " " .. q(sb.root .. "/__sandbox/health"))
      assert.are.equal(200, code)
    end)

    it("the API itself is not affected", function()
      local code = sb:api("GET", "/accounts", { headers = { Origin = "http://app.example" } })
      assert.are.equal(200, code)
    end)
  end)
end)
