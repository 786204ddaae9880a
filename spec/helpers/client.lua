--- Spec helper: load the client module from the build tree and make clients for a sandbox.
-- The C module comes from $LUA_CPATH when set (scripts/test.sh points it at build/ or
-- build51/), else from build/.
local M = {}

if not os.getenv("LUA_CPATH") then package.cpath = "build/?.so;" .. package.cpath end

M.flowmusic = require "flowmusic"

--- A client for sandbox sb; extra options override the defaults (no retries, short waits).
function M.client(sb, opts)
  local o = { token = sb.token, base_url = sb.base_url, retries = 0, timeout = 5 }
  for k, v in pairs(opts or {}) do o[k] = v end
  return M.flowmusic.new(o)
end

--- True when s contains needle literally.
function M.contains(s, needle) return tostring(s):find(needle, 1, true) ~= nil end

--- Integer check that also holds on Lua 5.1 (which has no integer subtype).
function M.is_integer(v)
  if math.type then return math.type(v) == "integer" end
  return type(v) == "number" and v == math.floor(v)
end

--- Every 8-byte piece of secret that appears in s (for secret sweeps: a piece of a token
-- that survived a cut or a partial scrub shows up here).
function M.secret_pieces(s, secret)
  local found = {}
  for i = 1, #secret - 7 do
    local piece = secret:sub(i, i + 7)
    if tostring(s):find(piece, 1, true) then found[#found + 1] = piece end
  end
  return found
end

--- A loopback port with nothing listening (bound, then closed).
function M.closed_port()
  local socket = require "socket"
  local s = assert(socket.bind("127.0.0.1", 0))
  local _, port = s:getsockname()
  s:close()
  return tonumber(port)
end

return M
