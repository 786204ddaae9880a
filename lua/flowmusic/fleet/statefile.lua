--- The state file of `flowmusic status --state FILE`: each account's last known state (for
-- change events, flowmusic.fleet.events) and the events not yet delivered to every
-- notification target. JSON, private (mode 0600), replaced atomically, and used under an
-- exclusive lock (`FILE.lock`) held for the whole run, so two runs never interleave: the
-- second one waits, then sees what the first one stored.
--
--     {"format":"flowmusic-status-state","version":1,"updated_at":"2026-12-07T04:50:00Z",
--      "accounts":{"a@x.com":{"state":"ok","credits_remaining":5000,"since":1796000000,...}},
--      "pending":[{"event":{...},"targets":["notify-url"]}]}
--
-- A file that is not such a document (corrupt, truncated, another program's) is an error
-- that names it and leaves it as it is.
-- @module flowmusic.fleet.statefile
local core = require "flowmusic.core"
local format = require "flowmusic.format"
local files = require "flowmusic.files"
local events = require "flowmusic.fleet.events"

local M = {}

--- The `format` field of every state file.
M.FORMAT = "flowmusic-status-state"
--- The version this code writes and reads.
M.VERSION = 1

-- The largest state file read (50 accounts and a long backlog of undelivered events fit).
local MAX_BYTES = 16 * 1024 * 1024

--- An empty state.
function M.empty() return { accounts = {}, pending = {} } end

--- Take the exclusive lock of a state file, waiting up to `wait` seconds.
-- @tparam string path the state file
-- @tparam number wait seconds
-- @return the lock (`lock:unlock()`; also released when collected or when the process ends),
--   or nil and a message naming who holds it
function M.lock(path, wait)
  local lock, msg, pid = core.lock_file(path .. ".lock", wait)
  if lock then return lock end
  if msg == "locked" then
    return nil, ("%s is in use by another run (pid %s) and stayed locked for %s s"):format(
      format.escape(path), pid ~= 0 and tostring(pid) or "unknown", tostring(wait))
  end
  return nil, ("%s.lock: %s"):format(format.escape(path), msg)
end

local function bad(path, why)
  return nil, ("%s is not a flowmusic status state file (%s); it was left as it is: move it away "
    .. "or pass another --state FILE"):format(format.escape(path), why)
end

--- Read a state file.
-- @tparam string path
-- @return the state (`{ accounts = {...}, pending = {...}, updated_at = ... }`; an empty
--   one when the file does not exist), or nil and a message (unreadable, corrupt, foreign)
function M.load(path)
  local text, err = files.read_state(path, MAX_BYTES)
  if text == false then return M.empty() end
  if not text then return nil, err end
  local doc, derr = core.json_decode(text)
  if doc == nil then return bad(path, "not JSON: " .. tostring(derr)) end
  if type(doc) ~= "table" or doc.format ~= M.FORMAT then return bad(path, "no \"format\":\"" .. M.FORMAT .. "\"") end
  if doc.version ~= M.VERSION then
    return bad(path, ("version %s; this flowmusic reads version %d"):format(tostring(doc.version), M.VERSION))
  end
  local why = events.check_known(doc.accounts)
  if why then return bad(path, why) end
  if type(doc.pending) ~= "table" then return bad(path, "pending must be an array") end
  for _, p in ipairs(doc.pending) do
    if type(p) ~= "table" or type(p.event) ~= "table" or type(p.targets) ~= "table" then
      return bad(path, "pending entries must be objects with an event and targets")
    end
  end
  return { accounts = doc.accounts, pending = doc.pending, updated_at = doc.updated_at }
end

--- Write a state file (atomically, mode 0600).
-- @tparam string path
-- @tparam table state as from `load`
-- @tparam number now seconds since the epoch
-- @return true, or nil and a message
function M.save(path, state, now)
  local text = format.json({ format = M.FORMAT, version = M.VERSION, updated_at = events.iso(now),
    accounts = state.accounts, pending = state.pending }, true) .. "\n"
  -- (an empty pending table encodes as {}: load reads either as no events)
  local ok, err = core.write_private(path, text)
  if not ok then return nil, ("cannot write %s: %s"):format(format.escape(path), err) end
  return true
end

return M
