--- Spec helper: run the flowmusic command line (bin/flowmusic) as a subprocess.
--
--     local cli = require "spec.helpers.cli"
--     local c = cli.new{ env = { USEAPI_TOKEN = "user:1-x", FLOWMUSIC_BASE_URL = sb.base_url } }
--     local code, out, err = c:run("accounts list --json", { stdin = "...", env = { X = false } })
--     c:spawn("batch f.csv --json")  -- background: { pid, wait(), out(), err() }
--     c:close()                       -- removes its temp dir
-- @module spec.helpers.cli
local M = {}

M.LUA = ({ ["Lua 5.1"] = "lua5.1", ["Lua 5.2"] = "lua5.2", ["Lua 5.3"] = "lua5.3",
  ["Lua 5.4"] = "lua5.4" })[_VERSION] or "lua"

--- Shell-quote a string.
function M.q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end
local q = M.q

--- Whole content of a file ("" when missing).
function M.slurp(path)
  local f = io.open(path, "rb")
  if not f then return "" end
  local s = f:read("*a")
  f:close()
  return s
end

--- Write text to a file, mode 0600 (token files must be private: flowmusic refuses others);
-- returns the path. A spec that wants another mode chmods the file itself.
function M.spit(path, text)
  -- A new file, created 0600 whatever the umask (no chmod process, no fsync per file).
  os.remove(path)
  assert(require("flowmusic.core").append_private(path, text))
  return path
end

--- A file's permission bits in octal ("600"), or nil when it is missing.
function M.mode_of(path)
  local p = io.popen("stat -c %a " .. M.q(path) .. " 2>/dev/null")
  local m = p:read("*l")
  p:close()
  return m
end

--- Lines of a text (empty lines dropped).
function M.lines(s)
  local t = {}
  for l in s:gmatch("[^\n]+") do t[#t + 1] = l end
  return t
end

--- The JSON Lines of a text, decoded (empty lines dropped).
function M.jsonl(s)
  local cjson = require "cjson"
  local t = {}
  for _, l in ipairs(M.lines(s)) do t[#t + 1] = cjson.decode(l) end
  return t
end

--- An environment for one run with none of the proxy or CA variables a spec run may have
-- inherited (each unset: false), then `vars` on top.
function M.env_with(vars)
  local e = {
    http_proxy = false, https_proxy = false, HTTPS_PROXY = false, all_proxy = false,
    ALL_PROXY = false, no_proxy = false, NO_PROXY = false,
    CURL_CA_BUNDLE = false, SSL_CERT_FILE = false, SSL_CERT_DIR = false,
  }
  for k, v in pairs(vars or {}) do e[k] = v end
  return e
end

local Cli = {}
Cli.__index = Cli

--- A runner with default environment variables (false: unset) and its own temp dir.
function M.new(opts)
  opts = opts or {}
  local p = io.popen("mktemp -d")
  local tmp = p:read("*l")
  p:close()
  return setmetatable({ env = opts.env or {}, tmp = tmp, n = 0 }, Cli)
end

function Cli:command(argv, opts)
  opts = opts or {}
  local env = {}
  for k, v in pairs(self.env) do env[k] = v end
  for k, v in pairs(opts.env or {}) do env[k] = v end
  -- SIGINT/SIGTERM back to their default: a shell starts background commands with SIGINT
  -- ignored, and a signal sent before the CLI's handler would be lost, unlike on a terminal.
  -- Each run has its own state directory (used-token store, apply lock) and no config file
  -- unless a spec sets them: the user's own must never leak into a spec, and a spec that
  -- re-adds a token tests the store only when it says so.
  if env.FLOWMUSIC_STATE_DIR == nil then env.FLOWMUSIC_STATE_DIR = self.tmp .. "/state" .. self.n end
  if env.XDG_CONFIG_HOME == nil then env.XDG_CONFIG_HOME = self.tmp .. "/config" end
  local parts = { "exec env --default-signal=INT,TERM -u USEAPI_TOKEN -u FLOWMUSIC_BASE_URL -u FLOWMUSIC_PROFILE"
    .. " -u FLOWMUSIC_MIN_CREDITS" }
  local sets = {}
  for k, v in pairs(env) do -- (env takes every -u before the first NAME=VALUE)
    if v then sets[#sets + 1] = k .. "=" .. q(v) else parts[#parts + 1] = "-u " .. q(k) end
  end
  for _, set in ipairs(sets) do parts[#parts + 1] = set end
  parts[#parts + 1] = M.LUA .. " bin/flowmusic " .. argv
  return table.concat(parts, " ")
end

--- Run `flowmusic <argv>` and wait; returns exit code, stdout, stderr.
-- opts: env (table; `false` values unset), stdin (text)
function Cli:run(argv, opts)
  opts = opts or {}
  self.n = self.n + 1
  local base = self.tmp .. "/run" .. self.n
  local stdin = opts.stdin and M.spit(base .. ".in", opts.stdin) or "/dev/null"
  os.execute("(" .. self:command(argv, opts) .. ") <" .. q(stdin) .. " >" .. q(base .. ".out")
    .. " 2>" .. q(base .. ".err") .. "; echo $? >" .. q(base .. ".rc"))
  return tonumber(M.slurp(base .. ".rc"):match("%d+")), M.slurp(base .. ".out"), M.slurp(base .. ".err")
end

--- Start `flowmusic <argv>` in the background; returns a handle with pid, and
-- wait() -> exit code (polls), out(), err().
function Cli:spawn(argv, opts)
  opts = opts or {}
  self.n = self.n + 1
  local base = self.tmp .. "/run" .. self.n
  local stdin = opts.stdin and M.spit(base .. ".in", opts.stdin) or "/dev/null"
  -- The subshell records the exit status when the command ends; $! is the command's pid.
  local p = io.popen("sh -c " .. q("(" .. self:command(argv, opts) .. ") <" .. q(stdin) .. " >" .. q(base .. ".out")
    .. " 2>" .. q(base .. ".err") .. " & pid=$!; echo $pid; wait $pid; echo $? >" .. q(base .. ".rc"))
    .. " 2>/dev/null &")
  local pid = tonumber(p:read("*l"))
  p:close()
  local h = { pid = pid }
  function h.done() return M.slurp(base .. ".rc"):match("%d+") ~= nil end
  function h.wait(limit)
    local socket = require "socket"
    local t0 = socket.gettime()
    while not h.done() do
      if limit and socket.gettime() - t0 > limit then return nil end
      socket.sleep(0.05)
    end
    return tonumber(M.slurp(base .. ".rc"):match("%d+"))
  end
  function h.out() return M.slurp(base .. ".out") end
  function h.err() return M.slurp(base .. ".err") end
  function h.signal(name) os.execute("kill -" .. name .. " " .. pid .. " 2>/dev/null") end
  return h
end

--- Remove the temp dir.
function Cli:close()
  if self.tmp then os.execute("rm -rf " .. q(self.tmp)) end
  self.tmp = nil
end

return M
