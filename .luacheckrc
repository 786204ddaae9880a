-- luacheck configuration: scripts/lint.sh runs `luacheck lua bin spec` from the repository root.
--
-- flowmusic runs on Lua 5.1 (LuaJIT, OpenResty) through 5.4, so the base standard is "min"
-- (the globals all of them share). A few newer functions are allowed because the code probes
-- for them with a fallback (`table.unpack or unpack`, `if package.searchpath then`).
-- The nginx API (`ngx`, the ngx_lua standard) is allowed only in files that run inside nginx;
-- the busted globals only in spec/.

stds.flowmusic_compat = {
   read_globals = {
      "unpack",                                  -- 5.1 / LuaJIT, probed with table.unpack
      "newproxy",                                -- 5.1 / LuaJIT (a __gc sentinel), probed
      table = { fields = { "unpack" } },         -- 5.2+, probed with unpack
      math = { fields = { "tointeger", "type" } }, -- 5.3+, probed
      package = { fields = { "searchpath" } },   -- 5.2+ and LuaJIT, probed
   },
}

-- lua-nginx-module API newer than luacheck's ngx_lua standard.
stds.ngx_lua_newer = {
   read_globals = {
      ngx = { fields = { "run_worker_thread" } }, -- lua-nginx-module 0.10.21+
   },
}

std = "min+flowmusic_compat"
max_line_length = 120
max_comment_line_length = 240 -- Markdown tables in module comments
codes = true
-- Lua files, and the command line entry point bin/flowmusic (a Lua script without .lua).
include_files = { "lua/**/*.lua", "spec/**/*.lua", "bin/flowmusic" }

-- Code that runs inside nginx (lua-nginx-module): the OpenResty adapter, and the sandbox's
-- request handlers and their helpers.
local NGINX = "min+flowmusic_compat+ngx_lua+ngx_lua_newer"
files["lua/flowmusic/ngx"] = { std = NGINX } -- the nginx side: one folder
files["lua/flowmusic/sandbox/accounts.lua"] = { std = NGINX }
files["lua/flowmusic/sandbox/faults.lua"] = { std = NGINX }
files["lua/flowmusic/sandbox/handler.lua"] = { std = NGINX }
files["lua/flowmusic/sandbox/json.lua"] = { std = NGINX }
files["lua/flowmusic/sandbox/multipart.lua"] = { std = NGINX }
files["lua/flowmusic/sandbox/saturation.lua"] = { std = NGINX }
files["lua/flowmusic/sandbox/tokens.lua"] = { std = NGINX }
files["lua/flowmusic/sandbox/usage.lua"] = { std = NGINX }
files["lua/flowmusic/sandbox/util.lua"] = { std = NGINX }
files["lua/flowmusic/sandbox/watchdog.lua"] = { std = NGINX }
-- (not sandbox/server.lua and sandbox/host.lua: the launcher runs outside nginx)
-- Spec helper code that nginx loads goes under spec/helpers/nginx/.
files["spec/helpers/nginx"] = { std = NGINX .. "+busted" }

-- Specs: busted's globals (describe, it, assert.*, spy, ...).
-- Specs spell out expected values and messages in full: longer lines are clearer there.
files["spec"] = { std = "+busted", max_line_length = 160 }
