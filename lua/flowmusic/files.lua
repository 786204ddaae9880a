--- Reading the files flowmusic is handed (batch, fleet and token files, saved plans): regular
-- files only (a FIFO, a device or a directory is refused before it is opened), bounded in
-- size, the content never echoed, and a path that names no file shown only when it could be
-- a file name (a token given where its file was meant is not). Also the one shell quoting.
-- @module flowmusic.files
local validate = require "flowmusic.validate"
local format = require "flowmusic.format"

local M = {}

--- Quote s for a POSIX shell.
function M.shell_quote(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

--- Run a shell command and return its exit status (0 for success, 128+N when signal N killed
-- it), whatever the Lua: 5.1 and LuaJIT give the wait status, 5.2+ three values.
function M.execute(cmd)
  local a, how, code = os.execute(cmd)
  if type(a) == "number" then
    if a % 256 == 0 then return math.floor(a / 256) end
    return 128 + a % 128
  end
  if how == "signal" then return 128 + code end
  return code or (a and 0 or 1)
end

--- Largest token file (API token or refresh token), in bytes.
M.SECRET_MAX = 64 * 1024

-- What a path names: "file", "directory", "fifo", "device", "socket", "other" or "missing"
-- (stat, without opening: opening a FIFO blocks); nil when stat itself failed otherwise (then
-- opening the file says why), and the permission bits when it exists.
local function kind_of(path)
  if path:find("%z") then return "other" end
  local mode, _, kind = require("flowmusic.core").file_mode(path)
  if mode then return kind, mode end
  return kind -- "missing", or nil
end

local KIND_WORDS = { directory = "a directory", fifo = "a FIFO (named pipe)", device = "a device",
  socket = "a socket", other = "not a regular file" }

-- How a path is named in messages.
local function named(path) return path == "-" and "(standard input)" or format.escape(path) end

--- A size in bytes for people: "16 MiB", "64 KiB", "100 bytes".
function M.size(n)
  if n >= 1048576 and n % 1048576 == 0 then return ("%d MiB"):format(n / 1048576) end
  if n >= 1024 and n % 1024 == 0 then return ("%d KiB"):format(n / 1024) end
  return ("%d bytes"):format(n)
end

--- Read a whole regular file ("-" = standard input) of at most max bytes, or nil, message.
-- FIFOs, devices and directories are refused before they are opened. The content is never
-- echoed.
-- @param path the file name, or "-"
-- @param what how the file is called in messages ("batch file", "token file", ...)
-- @param max the largest size accepted, in bytes
function M.read_file(path, what, max)
  local f, err
  if path == "-" then
    f = io.stdin
  else
    local kind = kind_of(path)
    if kind == "missing" then
      return nil, ("cannot read %s %s: no such file"):format(what, validate.quote_missing_path(format.escape(path)))
    elseif kind ~= "file" and kind ~= nil then
      return nil, ("%s '%s' is %s, not a regular file"):format(what, named(path), KIND_WORDS[kind] or KIND_WORDS.other)
    end
    f, err = io.open(path, "rb")
    if not f then
      -- io.open says "PATH: reason": keep the reason only.
      local reason = tostring(err or "?")
      if reason:sub(1, #path + 2) == path .. ": " then reason = reason:sub(#path + 3) end
      return nil, ("cannot read %s '%s': %s"):format(what, named(path), format.escape(reason))
    end
  end
  local data, rerr = f:read(max + 1)
  if path ~= "-" then f:close() end
  if data == nil and rerr then
    return nil, ("cannot read %s '%s': %s"):format(what, named(path), format.escape(tostring(rerr)))
  end
  data = data or ""
  if #data > max then
    return nil, ("%s '%s' is larger than %s"):format(what, named(path), M.size(max))
  end
  return data
end

--- Read one of flowmusic's own state files (alert state, history, used-token store): its
-- text, false when it does not exist yet, or nil, message.
-- @param path the file
-- @param max the largest size accepted, in bytes
function M.read_state(path, max)
  local f, err = io.open(path, "rb")
  if not f then
    if tostring(err):find("No such file", 1, true) then return false end
    return nil, ("cannot read %s: %s"):format(format.escape(path), tostring(err))
  end
  local text, rerr = f:read(max + 1)
  f:close()
  if text == nil and rerr then return nil, ("cannot read %s: %s"):format(format.escape(path), tostring(rerr)) end
  text = text or "" -- (an empty file)
  if #text > max then return nil, ("%s is larger than %s"):format(format.escape(path), M.size(max)) end
  return text
end

--- Whether a secret file is private: nil when it is (or is standard input), else the message
-- that refuses it, naming the file, its mode and the fix. A file group or others may read
-- leaks the secret; one they may write lets them swap it.
-- @param path the file
-- @param what how the file is called in messages
function M.loose_mode(path, what)
  if path == "-" then return nil end
  local _, mode = kind_of(path)
  if not mode then return nil end
  local group, others = math.floor(mode / 8) % 8, mode % 8
  if group < 2 and others < 2 then return nil end -- (an execute bit alone gives nothing away)
  return ("%s '%s' is readable or writable by group or others (mode %04o): run chmod 600 %s, "
    .. "or pass --allow-insecure-token-file"):format(what, named(path), mode,
    M.shell_quote(format.escape(path)))
end

--- Read a secret (API token or refresh token) from a file or "-": at most 64 KiB, trailing
-- whitespace and newlines trimmed; empty files are refused, and so are files group or others
-- may read or write (see loose_mode) unless `opts.allow_insecure`. Returns the secret or nil,
-- message (which never holds any of the file's content), and "insecure" when the mode was
-- the reason.
-- @param path the file, or "-"
-- @param what how the file is called in messages
-- @param opts optional `{ allow_insecure = bool }`
function M.read_secret(path, what, opts)
  local data, err = M.read_file(path, what, M.SECRET_MAX)
  if not data then return nil, err end
  if not (opts and opts.allow_insecure) then
    local loose = M.loose_mode(path, what)
    if loose then return nil, loose, "insecure" end
  end
  data = data:gsub("^\239\187\191", ""):gsub("[%s]+$", "")
  if data == "" then
    return nil, ("%s '%s' is empty"):format(what, named(path))
  end
  if data:find("[\r\n]") then
    return nil, ("%s '%s' must hold a single line"):format(what, named(path))
  end
  return data
end

return M
