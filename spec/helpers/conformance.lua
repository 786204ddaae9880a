--- Spec helper for the sandbox conformance specs (spec/01_sandbox_*_spec.lua): what they
-- share, in one place. They drive the sandbox with LuaSocket and the curl CLI only, never with
-- the flowmusic client.
--
--     local support = require "spec.helpers.conformance"
--     describe("...", function()
--       local sb
--       support.sandbox("user:42-SpecToken", function(s) sb = s end)  -- checked lifecycle
--       local post, add, assert_error = support.api(function() return sb end)
-- @module spec.helpers.conformance
local busted = require "busted"
local assert = require "luassert"
local cjson = require "cjson"
local sandbox = require "spec.helpers.sandbox"
local server = require "flowmusic.sandbox.server"

local M = {}

M.LUA = _VERSION == "Lua 5.1" and "lua5.1" or ("lua" .. _VERSION:match("%d%.%d"))
M.ELLIPSIS = "\226\128\166"
M.UUID = "^%x%x%x%x%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%x%x%x%x%x%x%x%x$"
M.ISO_MS = "^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.%d%d%dZ$"
M.REDACTED = "^...\226\128\166redacted\226\128\166...$"
M.LIMIT = "Maximum of 50 accounts reached; delete an account before adding another"

-- Whether a process runs (a zombie waiting for its reaper does not count).
function M.alive(pid)
  local state = server.proc_info(tonumber(pid))
  return state ~= nil and state ~= "Z" and state ~= "X"
end

-- Percent-encode everything but unreserved characters.
function M.enc(s)
  return (s:gsub("[^%w%-%._~]", function(c) return string.format("%%%02X", c:byte()) end))
end

-- Shell-quote.
function M.q(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

-- Run a command; output, exit code.
function M.sh(cmd)
  local p = io.popen(cmd .. "; echo \"__rc=$?\"", "r")
  local out = p:read("*a")
  p:close()
  local rc = tonumber(out:match("__rc=(%d+)%s*$"))
  return (out:gsub("__rc=%d+%s*$", "")), rc
end

-- Milliseconds since the epoch of an ISO 8601 UTC timestamp with milliseconds.
function M.epoch_ms(iso)
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
function M.multipart(fields)
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
function M.raw_get(sb, path, extra, timeout)
  return sb:raw_api("GET", path, extra, nil, timeout)
end

--- A private sandbox for the enclosing describe block, reset before each test. After the
-- block: its error log holds no error, stop is idempotent, nginx is gone, the port is free
-- and the directory removed.
function M.sandbox(token, assign)
  local sb
  busted.lazy_setup(function()
    sb = sandbox.start({ token = token })
    assign(sb)
  end)
  busted.lazy_teardown(function()
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
    assert.is_false(M.alive(pid), "nginx master still alive")
    local out = M.sh("ss -ltn")
    assert.is_nil(out:find("127.0.0.1:" .. port .. "%s"), "still listening on " .. port)
    assert.is_nil(io.open(sb.dir .. "/nginx.conf"), "directory not removed")
  end)
  busted.before_each(function() sb:reset() end)
end

--- post(body, opts), add(token, maxJobs) and assert_error(code, body, status, message) for the
-- sandbox that get() returns.
function M.api(get)
  local function post(body, opts)
    opts = opts or {}
    opts.json = body
    return get():api("POST", "/accounts", opts)
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
  return post, add, assert_error
end

return M
