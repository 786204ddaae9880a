-- Conformance of the sandbox with ../shared/api (CONTRACT.md + the vendor's reference pages):
-- its lifecycle: the launcher, the CLI, the watchdog.
-- Drives the sandbox with LuaSocket and the curl CLI only; never with the flowmusic client.
-- Shared helpers: spec/helpers/conformance.lua.

local socket = require "socket"
local sandbox = require "spec.helpers.sandbox"
local server = require "flowmusic.sandbox.server"
local support = require "spec.helpers.conformance"
local LUA, alive, q, sh = support.LUA, support.alive, support.q, support.sh

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
