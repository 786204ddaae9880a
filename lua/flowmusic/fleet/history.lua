--- The event history of `flowmusic status --state FILE`: every change event
-- (flowmusic.fleet.events), appended as one JSON Lines record, mode 0600; and reading it
-- back, with how long each account was down before it recovered.
--
--     local history = require "flowmusic.fleet.history"
--     local list = assert(history.read("/var/lib/flowmusic/status.history.jsonl", { email = "a@x.com" }))
--     for _, e in ipairs(list) do print(e.at, e.event, e.down_seconds) end
-- @module flowmusic.fleet.history
local core = require "flowmusic.core"
local format = require "flowmusic.format"
local events = require "flowmusic.fleet.events"
local status = require "flowmusic.fleet.status"
local files = require "flowmusic.files"

-- The largest history read back (rotate it with logrotate copytruncate well before).
local MAX_BYTES = 256 * 1024 * 1024

local M = {}

--- The history file that goes with a state file: `status.json` → `status.history.jsonl`
-- (any other name gets `.history.jsonl` appended).
-- @tparam string state_path
-- @treturn string
function M.beside(state_path)
  return (state_path:gsub("%.json$", "")) .. ".history.jsonl"
end

--- Append events (one JSON Lines record each, in one write).
-- @tparam string path
-- @tparam {table,...} list
-- @return true, or nil and a message
function M.append(path, list)
  if #list == 0 then return true end
  local lines = {}
  for i, e in ipairs(list) do lines[i] = events.json(e) end
  local ok, err = core.append_private(path, table.concat(lines, "\n") .. "\n")
  if not ok then return nil, ("cannot append to %s: %s"):format(format.escape(path), err) end
  return true
end

-- Annotate each `recovered` event with `down_seconds`: since the account left `ok` (or
-- appeared in another state).
local function downtimes(list)
  local down_since = {}
  for _, e in ipairs(list) do
    local t = status.timestamp(e.at)
    if e.event == "recovered" or e.event == "disappeared" then
      if e.event == "recovered" and down_since[e.email] and t then
        e.down_seconds = t - down_since[e.email]
      end
      down_since[e.email] = nil
    elseif e.to ~= nil and e.to ~= "ok" and not down_since[e.email] then
      down_since[e.email] = t
    end
  end
end

--- Read a history file.
-- @tparam string path
-- @tparam[opt] table filter `email` (only its events), `since` (`YYYY-MM-DD`, UTC: events
--   from that day on)
-- @return the events in file order (recovered ones with `down_seconds`), or nil and a message
--   (unreadable, or a line that is not an event: named by its number). A missing file is no
--   events.
function M.read(path, filter)
  filter = filter or {}
  local text, err = files.read_state(path, MAX_BYTES)
  if text == nil then return nil, err end
  local all, n = {}, 0
  for line in (text or ""):gmatch("([^\n]*)\n?") do
    n = n + 1
    if line ~= "" then
      local e = core.json_decode(line)
      if type(e) ~= "table" or type(e.at) ~= "string" or type(e.email) ~= "string" or type(e.event) ~= "string" then
        return nil, ("%s line %d is not a flowmusic event (at, email, event)"):format(format.escape(path), n)
      end
      all[#all + 1] = e
    end
  end
  downtimes(all) -- over the whole history, so a filter never hides when an outage began
  local list = {}
  for _, e in ipairs(all) do
    if (not filter.email or e.email == filter.email) and (not filter.since or e.at >= filter.since) then
      list[#list + 1] = e
    end
  end
  return list
end

return M
