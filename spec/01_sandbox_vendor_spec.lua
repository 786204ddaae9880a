-- Conformance of the sandbox with ../shared/api (CONTRACT.md + the vendor's reference pages):
-- the vendor's own example calls, and concurrency.
-- Drives the sandbox with LuaSocket and the curl CLI only; never with the flowmusic client.
-- Shared helpers: spec/helpers/conformance.lua.

local cjson = require "cjson"
local socket = require "socket"
local support = require "spec.helpers.conformance"
local q, sh = support.q, support.sh

describe("flowmusic sandbox: the vendor's examples, concurrency", function()
  local sb
  support.sandbox("user:42-SpecToken", function(s) sb = s end)
  local _, add = support.api(function() return sb end)

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
