--- The used-token store: which refresh tokens flowmusic has already sent. A refresh token is
-- meant to be posted once; posting it again (a fleet file still naming an old token file, a
-- batch run twice) can break the account. After an add or refresh that succeeded, and after
-- one whose outcome is unknown (it may have arrived), the store records a fingerprint of the
-- token (its SHA-256, never the token), the account's email and the time, one JSON Lines
-- record each in `used-tokens.jsonl` in the state directory (flowmusic.statedir), mode 0600.
--
-- The command line checks every token it is about to send (`accounts add`, `batch`,
-- `apply`; `--force` sends it anyway). From Lua the check is opt-in: pass a store as the
-- client option `used_tokens`, and `add_account` refuses a used token with an error of
-- kind "refused", reason "token_used", before anything is sent.
--
--     local used_tokens = require "flowmusic.used_tokens"
--     local store = assert(used_tokens.open())            -- or { dir = ..., force = true }
--     local client = flowmusic.new { used_tokens = store }
-- @module flowmusic.used_tokens
local core = require "flowmusic.core"
local format = require "flowmusic.format"
local files = require "flowmusic.files"
local statedir = require "flowmusic.statedir"

local M = {}

--- The store's file name inside the state directory.
M.FILE = "used-tokens.jsonl"
local MAX_BYTES = 16 * 1024 * 1024

--- The fingerprint of a refresh token: `sha256:` and 64 hex digits.
function M.fingerprint(token) return "sha256:" .. core.sha256(token) end

local Store = {}
Store.__index = Store
Store.__name = "flowmusic.used_tokens"

local OUTCOMES = { ok = true, unknown = true }

-- The entries of the store's text by fingerprint (the last one wins), or nil, message.
local function parse(path, text)
  local entries, n = {}, 0
  for line in text:gmatch("([^\n]*)\n?") do
    n = n + 1
    if line:find("%S") then
      local e = core.json_decode(line)
      if type(e) ~= "table" or type(e.fingerprint) ~= "string"
        or not e.fingerprint:match("^sha256:" .. ("%x"):rep(64) .. "$") or type(e.at) ~= "string"
        or not OUTCOMES[e.outcome] or (e.email ~= nil and type(e.email) ~= "string") then
        return nil, ("%s line %d is not a used-token record (fingerprint, at, email, outcome); fix or remove "
          .. "that line"):format(format.escape(path), n)
      end
      entries[e.fingerprint] = { at = e.at, email = e.email, outcome = e.outcome }
    end
  end
  return entries
end

--- Open the store (reading what it holds; a store that does not exist yet is empty).
-- @tparam[opt] table opts `dir` (the state directory; default: flowmusic.statedir's choice),
--   `force` (never refuse a token; still record what is sent)
-- @return the store, or nil and a message (no state directory, unreadable or corrupt file)
function M.open(opts)
  opts = opts or {}
  if type(opts) ~= "table" then error("flowmusic.used_tokens.open: options must be a table", 2) end
  for k in pairs(opts) do
    if k ~= "dir" and k ~= "force" then
      error(("flowmusic.used_tokens.open: unknown option '%s'"):format(tostring(k)), 2)
    end
  end
  if opts.dir ~= nil and type(opts.dir) ~= "string" then
    error("flowmusic.used_tokens.open: dir must be a string", 2)
  end
  local dir, why = statedir.resolve(opts.dir)
  if not dir then return nil, why end
  local path = dir .. "/" .. M.FILE
  local text, err = files.read_state(path, MAX_BYTES)
  if text == nil then return nil, err end
  local entries, perr = parse(path, text or "")
  if not entries then return nil, perr end
  return setmetatable({ dir = dir, path = path, force = opts.force and true or false, entries = entries,
    claimed = {} }, Store)
end

--- What the store knows of a token: `{ at =, email = (nil when unknown), outcome = "ok" |
-- "unknown" }`, or nil when it was never sent.
function Store:lookup(token)
  return self.entries[M.fingerprint(token)]
end

-- The line refusing a token that entry e describes.
local function refusal_of(e)
  local when = e.at:gsub("T", " "):gsub("Z$", " UTC")
  local whom = e.email and ("for " .. e.email) or "for an account it did not name"
  if e.outcome == "unknown" then
    return ("this refresh token was already sent on %s %s, and that outcome is unknown (it may have been "
      .. "used): check the account, then get a fresh token, or send this one again with --force"):format(when, whom)
  end
  return ("this refresh token was already used on %s %s; a refresh token is good for one add: get a "
    .. "fresh one from the account, or send this one again with --force"):format(when, whom)
end

-- Why the token of fingerprint fp must not be sent, or nil.
local function refusal_of_fingerprint(self, fp)
  if self.force then return nil end
  if self.claimed[fp] then
    return "this refresh token is being sent by another call of this run: a refresh token is good for one add"
  end
  local e = self.entries[fp]
  return e and refusal_of(e) or nil
end

--- Why a token must not be sent, or nil when it may be (never sent, or the store was opened
-- with `force`). Tokens claimed by this process count as sent.
function Store:refusal(token)
  return refusal_of_fingerprint(self, M.fingerprint(token))
end

--- Claim a token about to be sent: nil when it may go (it is marked as in flight), else the
-- refusal (see `refusal`).
function Store:claim(token)
  local fp = M.fingerprint(token)
  local why = refusal_of_fingerprint(self, fp)
  if why then return why end
  self.claimed[fp] = true
  return nil
end

--- Give a claim back: the call ended without sending, or was refused for sure.
function Store:release(token)
  self.claimed[M.fingerprint(token)] = nil
end

--- Record that a token was sent (appended at once, one write).
-- @tparam string token
-- @tparam[opt] string email the account it was for
-- @tparam[opt] string outcome "ok" (default) or "unknown"
-- @return true, or nil and a message
function Store:record(token, email, outcome)
  local fp = M.fingerprint(token)
  local e = { at = format.iso(core.wall_time()), email = type(email) == "string" and email or nil,
    outcome = outcome or "ok" }
  self.entries[fp], self.claimed[fp] = e, nil
  local ok, err = statedir.ensure(self.dir)
  if ok then
    ok, err = core.append_private(self.path, format.json({ fingerprint = fp, at = e.at, email = e.email,
      outcome = e.outcome }) .. "\n")
    if not ok then err = ("cannot record in %s: %s"):format(format.escape(self.path), err) end
  end
  if not ok then return nil, err end
  return true
end

function Store:__tostring()
  local n = 0
  for _ in pairs(self.entries) do n = n + 1 end
  return ("flowmusic.used_tokens: %s (%d token%s used)"):format(format.escape(self.path), n, n == 1 and "" or "s")
end

--- Whether v is a store (for option checks).
function M.is_store(v) return getmetatable(v) == Store end

return M
