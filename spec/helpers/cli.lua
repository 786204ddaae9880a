--- Spec helper: run `bin/flowmusic` as a subprocess of the Lua running the specs.
--
--     local cli = require("spec.helpers.cli").new { dir = tmp, env = { USEAPI_TOKEN = t, ... } }
--     local rc, out, err = cli:run("plan fleet.csv --json", { stdin = "text", env = { X = false } })
--     cli.seen   -- every stdout and stderr so far (for secret checks)
-- @module spec.helpers.cli
local M = {}

--- The interpreter running the specs (so the 5.1 suite runs the CLI with lua5.1).
M.LUA = ({ ["Lua 5.1"] = "lua5.1", ["Lua 5.2"] = "lua5.2", ["Lua 5.3"] = "lua5.3",
  ["Lua 5.4"] = "lua5.4" })[_VERSION] or "lua"

--- Shell-quote a string.
function M.q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

--- Whole content of a file ("" when missing).
function M.slurp(path)
  local f = io.open(path, "rb")
  if not f then return "" end
  local s = f:read("*a")
  f:close()
  return s
end

--- Write a file; returns its path.
function M.spit(path, text)
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
  return path
end

local Runner = {}
Runner.__index = Runner

--- A runner writing its scratch files into `dir`, with a default environment.
function M.new(o)
  return setmetatable({ dir = assert(o.dir), env = o.env or {}, seen = {} }, Runner)
end

--- Run `flowmusic <argv>` (argv is shell text); returns exit code, stdout, stderr.
-- opts: env (overrides; `false` unsets), stdin (text; default /dev/null), prefix (shell text
-- put before the interpreter, e.g. "timeout 20")
function Runner:run(argv, opts)
  opts = opts or {}
  local env = {}
  for k, v in pairs(self.env) do env[k] = v end
  for k, v in pairs(opts.env or {}) do env[k] = v end
  local parts = { "env -u USEAPI_TOKEN -u FLOWMUSIC_BASE_URL" }
  for k, v in pairs(env) do
    if v then parts[#parts + 1] = k .. "=" .. M.q(v) end
  end
  parts[#parts + 1] = (opts.prefix and opts.prefix .. " " or "") .. M.LUA .. " bin/flowmusic " .. argv
  local out, err, rc = self.dir .. "/out", self.dir .. "/err", self.dir .. "/rc"
  local stdin = opts.stdin and M.spit(self.dir .. "/stdin", opts.stdin) or "/dev/null"
  os.execute("(" .. table.concat(parts, " ") .. ") <" .. M.q(stdin) .. " >" .. M.q(out) .. " 2>" .. M.q(err)
    .. "; echo $? >" .. M.q(rc))
  local o, e = M.slurp(out), M.slurp(err)
  self.seen[#self.seen + 1] = o
  self.seen[#self.seen + 1] = e
  return tonumber(M.slurp(rc):match("%d+")), o, e
end

--- Non-empty lines of a text.
function M.lines(s)
  local t = {}
  for l in s:gmatch("[^\n]+") do t[#t + 1] = l end
  return t
end

--- Make a fresh temp directory.
function M.temp_dir(tag)
  local p = io.popen("mktemp -d /tmp/flowmusic-" .. (tag or "spec") .. ".XXXXXX")
  local d = p:read("*l")
  p:close()
  return assert(d)
end

return M
