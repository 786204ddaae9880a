-- One home per operation: the operation table drives the client, the retry policy, the
-- scheduler and batches; private state stays private; per-call options; the on_event hook.
local h = require "spec.helpers.client"
local sandbox = require "spec.helpers.sandbox"
local ops = require "flowmusic.ops"

local flowmusic = h.flowmusic

local function read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end

describe("the operation table", function()
  it("is the only library file naming operations (retry, engine, init and the nginx adapter name none)", function()
    for _, file in ipairs { "retry", "engine", "init", "ngx/init", "ngx/thread", "errors" } do
      local text = read("lua/flowmusic/" .. file .. ".lua")
      for _, name in ipairs(ops.names()) do
        if name ~= "request" then -- a common word; checked as a quoted name below
          assert.is_nil(text:find(name, 1, true), file .. ".lua names " .. name)
        end
        assert.is_nil(text:find('"' .. name .. '"', 1, true), file .. ".lua names \"" .. name .. "\"")
      end
    end
  end)

  it("gives every operation a label and the policy facts", function()
    for _, name in ipairs(ops.names()) do
      local rec = ops.get(name)
      assert.is_string(rec.label, name)
      assert.is_function(rec.resend, name)
      assert.is_function(rec.write, name)
    end
  end)
end)

describe("an operation added at run time", function()
  local sb, client
  local JOBS = "/v1/flowmusic/queue" -- (a path the sandbox does not serve)
  setup(function()
    sb = sandbox.start()
    -- A throwaway record: nothing else in the library changes.
    ops.define {
      name = "spec_list_jobs", label = "list jobs", max_args = 0,
      build = function() return { method = "GET", path = "/queue" } end,
      answer = "object", resend = function() return true end,
    }
    client = h.client(sb, { retries = 2, random = function() return 0 end })
  end)
  teardown(function()
    client:close()
    sb:stop()
  end)
  before_each(function() sb:reset() end)

  it("is a client method with the library's error typing", function()
    local v, err = client:spec_list_jobs()
    assert.is_nil(v)
    assert.is_true(flowmusic.errors.is(err))
    assert.equal("http", err.kind)
    assert.equal(404, err.status)
    assert.equal("GET", err.method)
    assert.equal("/queue", err.path)
  end)

  it("inherits the retry policy", function()
    sb:fault { fault = "status", code = 503, method = "GET", path = JOBS, count = 2 }
    local _, err = client:spec_list_jobs()
    assert.equal(404, err.status)
    assert.equal(3, err.attempts)
    assert.equal(3, sb:requests().by["GET " .. JOBS])
  end)

  it("takes per-call options and refuses unknown ones and extra arguments", function()
    sb:fault { fault = "status", code = 503, method = "GET", path = JOBS, count = 2 }
    local _, err = client:spec_list_jobs { retries = 0 }
    assert.equal(503, err.status)
    assert.equal(1, err.attempts)
    assert.has_error(function() client:spec_list_jobs { retires = 1 } end)
    assert.has_error(function() client:spec_list_jobs("extra") end)
  end)

  it("runs in batches", function()
    local rs = client:batch { { "spec_list_jobs" }, { "spec_list_jobs", { timeout = 2 } }, { "list_accounts" } }
    assert.equal(404, rs[1].status)
    assert.equal(404, rs[2].status)
    assert.is_true(rs[3].ok)
  end)
end)

-- Every table reachable from root by keys, values and metatables (not through functions'
-- upvalues: that is where private state belongs).
local function reachable_strings(root)
  local seen, strings, stack = {}, {}, { root }
  while #stack > 0 do
    local v = table.remove(stack)
    local t = type(v)
    if t == "string" then
      strings[#strings + 1] = v
    elseif (t == "table" or t == "userdata") and not seen[v] then
      seen[v] = true
      local mt = getmetatable(v)
      if type(mt) == "table" or type(mt) == "string" then stack[#stack + 1] = mt end
      if t == "table" then
        for k, x in pairs(v) do
          stack[#stack + 1] = k
          stack[#stack + 1] = x
        end
      end
    end
  end
  return strings
end

describe("private state", function()
  it("keeps the API token out of every table reachable from the module and a client", function()
    local token = "user:424242-SECRETSENTINELxyz"
    local c = flowmusic.new { token = token, base_url = "http://127.0.0.1:9/v1/flowmusic" }
    assert.is_nil(rawget(flowmusic, "_state"))
    assert.is_nil(rawget(flowmusic, "_runner"))
    local roots = { flowmusic, c, package.loaded }
    for _, root in ipairs(roots) do
      for _, s in ipairs(reachable_strings(root)) do
        assert.is_nil(s:find("SECRETSENTINEL", 1, true), "token reachable: " .. s:sub(1, 40))
      end
    end
    assert.is_nil(tostring(c):find("SECRET", 1, true))
    c:close()
  end)
end)

describe("per-call options and on_event", function()
  local sb
  local ACCOUNT = "/v1/flowmusic/accounts/"
  setup(function() sb = sandbox.start() end)
  teardown(function() sb:stop() end)
  before_each(function()
    sb:reset()
    sb:seed(1)
  end)

  it("a per-call timeout applies to that call only", function()
    local c = h.client(sb, { timeout = 10 })
    local email = "seed-01@sandbox.test"
    sb:fault { fault = "latency", ms = 1500, method = "GET", path = ACCOUNT .. "seed-01%40sandbox.test", count = 1 }
    local v, err = c:get_account(email, { timeout = 0.3 })
    assert.is_nil(v)
    assert.equal("timeout", err.kind)
    assert.is_table(c:get_account(email))
    c:close()
  end)

  it("a per-call deadline bounds the retries of that call", function()
    local c = h.client(sb, { retries = 5, deadline = 30 })
    sb:fault { fault = "status", code = 503, retry_after = "1", method = "GET", path = ACCOUNT .. "seed-01%40sandbox.test", count = 0 }
    local _, err = c:get_account("seed-01@sandbox.test", { deadline = 0.5 })
    assert.equal(503, err.status)
    assert.is_true(err.deadline_exceeded)
    assert.equal(1, err.attempts)
    c:close()
  end)

  it("reports a retried 503 as attempt 1 http_error with retry_in, then attempt 2 ok", function()
    local events = {}
    local c = h.client(sb, { retries = 2, random = function() return 0.5 end,
      on_event = function(ev) events[#events + 1] = ev end })
    sb:fault { fault = "status", code = 503, method = "GET", path = ACCOUNT .. "seed-01%40sandbox.test", count = 1 }
    assert.is_table(c:get_account("seed-01@sandbox.test"))
    assert.equal(2, #events)
    assert.same({ "get_account", 1, "http_error", 503 }, { events[1].op, events[1].attempt, events[1].outcome, events[1].status })
    assert.is_true(events[1].retry_in > 0)
    assert.same({ 2, "ok", 200 }, { events[2].attempt, events[2].outcome, events[2].status })
    assert.is_nil(events[2].retry_in)
    assert.equal("GET", events[2].method)
    assert.equal("/accounts/seed-01%40sandbox.test", events[2].path)
    assert.is_number(events[2].elapsed)
    assert.is_string(events[2].label)
    c:close()
  end)

  it("shows a hook no secret", function()
    local refresh = "sandbox:plus:hooked@x.com-REFRESHSENTINEL"
    local seen = {}
    local c = h.client(sb, { on_event = function(ev)
      for _, v in pairs(ev) do seen[#seen + 1] = tostring(v) end
    end })
    assert.is_table(c:add_account(refresh))
    c:get_account("nobody@x.com")
    assert.is_true(#seen > 0)
    for _, s in ipairs(seen) do
      assert.is_nil(s:find("REFRESHSENTINEL", 1, true))
      assert.is_nil(s:find(sb.token, 1, true))
    end
    c:close()
  end)

  it("propagates an error raised by on_event and stays usable", function()
    local fail = true
    local c = h.client(sb, { on_event = function() if fail then error("hook broke") end end })
    assert.has_error(function() c:list_accounts() end, "hook broke")
    fail = false
    assert.is_table(c:list_accounts())
    c:close()
  end)
end)

describe("the docs and examples", function()
  -- Every dotted flowmusic name they give is a module that exists, or a field of one.
  it("name only module paths that exist", function()
    local p = io.popen("ls README.md docs/*.md examples/*.* examples/*/*")
    local files = {}
    for f in p:lines() do files[#files + 1] = f end
    p:close()
    local path = "lua/?.lua;lua/?/init.lua"
    local checked = 0
    for _, file in ipairs(files) do
      local text = read(file)
      for before, name in text:gmatch("(.?)(flowmusic%.[%w_%.]*[%w_])") do
        if not before:match("[%w/%-_@]") then -- not node_exporter/flowmusic.prom, x@flowmusic.sandbox
          local parts, module, rest = {}, nil, {}
          for part in name:gmatch("[^.]+") do parts[#parts + 1] = part end
          for n = #parts, 1, -1 do
            local m = table.concat(parts, ".", 1, n)
            if package.searchpath(m, path) or package.searchpath(m, package.cpath) then
              module = m
              for i = n + 1, #parts do rest[#rest + 1] = parts[i] end
              break
            end
          end
          assert(module, file .. " names " .. name .. ": no such module")
          if rest[1] and not module:find("^flowmusic%.ngx") and not module:find("^flowmusic%.sandbox") then
            assert(require(module)[rest[1]] ~= nil, file .. " names " .. name .. ": " .. module .. " has no " .. rest[1])
          end
          checked = checked + 1
        end
      end
    end
    assert.is_true(checked > 20)
  end)
end)
