--- Spec helper: the set-up most spec files share, in one place. Called inside a describe
-- block, it starts a private sandbox once for the block (and, when asked, a CLI runner and a
-- library client pointed at it), resets the sandbox's accounts, faults and counters before
-- each test, and stops everything after the block, by pid.
--
--     local fixture = require "spec.helpers.fixture"
--     describe("...", function()
--       local sb, c
--       fixture.sandbox({ token = API_TOKEN, cli = true }, function(s, runner) sb, c = s, runner end)
--
-- opts: `token`, `tls` (as spec.helpers.sandbox.start); `cli` (true: a runner whose environment
-- holds the sandbox's token and base URL; a table: more variables for it); `client` (true or
-- client options: a client from spec.helpers.client); `reset` (false: no reset before each).
-- assign(sb, runner, client) receives them once started.
-- @module spec.helpers.fixture
local busted = require "busted"
local sandbox = require "spec.helpers.sandbox"

local M = {}

function M.sandbox(opts, assign)
  local sb, runner, client
  busted.lazy_setup(function()
    sb = sandbox.start { token = opts.token, tls = opts.tls }
    if opts.cli then
      local env = { USEAPI_TOKEN = sb.token, FLOWMUSIC_BASE_URL = sb.base_url }
      if type(opts.cli) == "table" then
        for k, v in pairs(opts.cli) do env[k] = v end
      end
      runner = require("spec.helpers.cli").new { env = env }
    end
    if opts.client then
      client = require("spec.helpers.client").client(sb, type(opts.client) == "table" and opts.client or nil)
    end
    assign(sb, runner, client)
  end)
  busted.lazy_teardown(function()
    if client then client:close() end
    if runner then runner:close() end
    if sb then sb:stop() end
  end)
  if opts.reset ~= false then busted.before_each(function() sb:reset() end) end
end

return M
