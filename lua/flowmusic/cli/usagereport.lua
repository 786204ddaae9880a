--- Report rows of one account's usage document (GET /accounts/usage): totals, per day, per
-- type and per song. Used by `flowmusic usage` and by the `usage` op of `flowmusic batch`.
-- The sums come from the one reducer, flowmusic.fleet.usage (where the vendor's rules live).
-- @module flowmusic.cli.usagereport
local fleet_usage = require "flowmusic.fleet.usage"

local M = {}

--- Summarise one usage document.
-- @param doc the decoded document
-- @param email the account (default: the document's email)
-- @param range optional `{ since =, ["until"] = }` (inclusive UTC days; raises when malformed)
-- @return the aggregates of flowmusic.fleet.usage (`total`, `days`, `types`, `songs`, `first`,
--   `last`, ...) for this one account, with `email` set on every row and `events` = kept rows
function M.summarize(doc, email, range)
  local red = fleet_usage.reducer(range)
  if type(email) ~= "string" then email = type(doc) == "table" and type(doc.email) == "string" and doc.email or nil end
  red:add(email, doc)
  local r = red:result()
  for _, section in ipairs({ r.days, r.types, r.songs }) do
    for _, row in ipairs(section) do row.email = email end
  end
  r.total.email = email
  r.events = r.total.events
  return r
end

--- Columns of the machine-readable rows (--json / --csv).
M.COLUMNS = {
  { key = "section" }, { key = "email" }, { key = "key" }, { key = "title" }, { key = "kind" },
  { key = "tokens" }, { key = "credits" }, { key = "charged_tokens" }, { key = "charged_credits" },
  { key = "received_tokens" }, { key = "songs" },
}

return M
