--- The directory where flowmusic keeps its own state: the used-token store
-- (flowmusic.used_tokens) and the lock that lets one apply run at a time. Chosen, first found:
-- the option (`--state-dir`, a profile's `state_dir`, the `dir` option from Lua),
-- `$FLOWMUSIC_STATE_DIR`, `$XDG_STATE_HOME/flowmusic`, `~/.local/state/flowmusic`. Created
-- with mode 0700 on first use.
-- @module flowmusic.statedir
local core = require "flowmusic.core"
local format = require "flowmusic.format"

local M = {}

--- The environment variable that moves the state directory.
M.ENV = "FLOWMUSIC_STATE_DIR"

local function set(name)
  local v = os.getenv(name)
  if v ~= nil and v ~= "" then return v end
end

--- The state directory and where it came from.
-- @tparam[opt] string dir given explicitly (wins)
-- @return dir, source ("option", "$FLOWMUSIC_STATE_DIR", "$XDG_STATE_HOME", "$HOME"); or nil,
--   message when there is nothing to go on (no $HOME)
function M.resolve(dir)
  if dir ~= nil and dir ~= "" then return dir, "option" end
  local env = set(M.ENV)
  if env then return env, "$" .. M.ENV end
  local xdg = set("XDG_STATE_HOME")
  if xdg then return xdg .. "/flowmusic", "$XDG_STATE_HOME" end
  local home = set("HOME")
  if home then return home .. "/.local/state/flowmusic", "$HOME" end
  return nil, "no state directory: set " .. M.ENV .. " (or HOME)"
end

--- Make sure dir exists (created 0700 with its parents when missing).
-- @return true, or nil and a message
function M.ensure(dir)
  local ok, err = core.make_private_dir(dir)
  if not ok then return nil, ("state directory %s: %s"):format(format.escape(dir), err) end
  return true
end

--- Take the exclusive lock `<dir>/<name>.lock`, waiting up to `wait` seconds (0: try once).
-- A lock whose holder died is free again (the kernel drops it).
-- @return the lock (`lock:unlock()`), or nil, message, and the holder's pid (when it is held)
function M.lock(dir, name, wait)
  local ok, err = M.ensure(dir)
  if not ok then return nil, err end
  local path = dir .. "/" .. name .. ".lock"
  local lock, msg, pid = core.lock_file(path, wait)
  if lock then return lock end
  if msg == "locked" then
    return nil, ("%s is held by another process (pid %s)"):format(format.escape(path),
      pid ~= 0 and tostring(pid) or "unknown"), pid
  end
  return nil, ("%s: %s"):format(format.escape(path), msg)
end

return M
