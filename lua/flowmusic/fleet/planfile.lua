--- The saved-plan file format: a plan as JSON (`flowmusic plan --out FILE`, read back by
-- `flowmusic apply FILE`), one row per line for review and diffs. It holds the rows, the
-- fingerprint of the live state and refresh token **file paths** only; never a token.
--
--     {"format":"flowmusic-plan","version":1,"base_url":...,"prune":false,"labels":null,
--     "rows":[ {"action":...,"email":...,...,"labels":{"team":"a"}}, ... ],
--     "fingerprint":{ "a@x.com":{"exists":true,"max_jobs":4,"error":false}, ... }}
--
-- `labels` at the top is the label selector the plan was made with (`plan --label`; null
-- without one): its rows are already that selection, and it deletes nothing. It is kept so
-- the plan says what it covers; a row's `labels` are its account's (null when none). Both
-- are optional, so plans written before labels existed read the same.
--
-- flowmusic.fleet.plan gives the plans it reads their token sources.
-- @module flowmusic.fleet.planfile
local validate = require "flowmusic.validate"
local format = require "flowmusic.format"
local labels = require "flowmusic.fleet.labels"

local M = {}

--- Format tag of a saved plan.
M.FORMAT = "flowmusic-plan"
--- Version of the saved plan format.
M.VERSION = 1

local sorted_keys = require("flowmusic.format").sorted_keys

-- JSON text of a scalar (nil -> null), its bytes kept: paths must read back as they were.
local function jv(v)
  if v == nil then return "null" end
  return format.json(v, true)
end

local ROW_KEYS = { "action", "email", "from_max_jobs", "to_max_jobs", "message", "line", "refresh_token_file",
  "labels" }
local FACT_KEYS = { "exists", "max_jobs", "error" }

local function object(keys, t)
  local parts = {}
  for i, k in ipairs(keys) do parts[i] = jv(k) .. ":" .. jv(t[k]) end
  return "{" .. table.concat(parts, ",") .. "}"
end

--- Encode a plan as JSON (one row per line, for review and diffs). Refresh tokens are never
-- written: rows that need one name their `refresh_token_file` (give absolute paths, or paths
-- that stay valid from where the plan will be applied).
-- @param p plan
-- @return text; or nil, message when a row's token has no file (it was given in memory)
function M.encode(p)
  local rows = {}
  for i, r in ipairs(p.rows) do
    if (r.action == "add" or r.action == "reauth") and not r.refresh_token_file then
      return nil, ("cannot save the plan: the refresh token for %s was given in memory; a saved plan "
        .. "refers to token files only"):format(r.email)
    end
    local saved = {}
    for k, v in pairs(r) do saved[k] = v end
    if r.action ~= "add" and r.action ~= "reauth" then saved.refresh_token_file = nil end
    rows[i] = "  " .. object(ROW_KEYS, saved)
  end
  local fp = {}
  for _, email in ipairs(sorted_keys(p.fingerprint or {})) do
    fp[#fp + 1] = "  " .. jv(email) .. ":" .. object(FACT_KEYS, p.fingerprint[email])
  end
  return table.concat({
    "{",
    ('"format":%s,"version":%d,"base_url":%s,"prune":%s,"labels":%s,'):format(jv(M.FORMAT), M.VERSION,
      jv(p.base_url), p.prune and "true" or "false", jv(p.labels)),
    '"rows":[', table.concat(rows, ",\n"), "],",
    '"fingerprint":{', table.concat(fp, ",\n"), "}",
    "}",
  }, "\n") .. "\n"
end

--- True when text is a saved plan (a JSON object with `"format":"flowmusic-plan"`).
function M.is_saved(text)
  if type(text) ~= "string" or not text:match("^[\239\187\191]*%s*{") then return false end
  local core = require "flowmusic.core"
  local doc = core.json_decode((text:gsub("^\239\187\191", "")))
  return type(doc) == "table" and doc.format == M.FORMAT
end

local function int_or_nil(v) return v == nil or (type(v) == "number" and v == math.floor(v)) end

--- Read a saved plan's text: its rows (the saved keys only), fingerprint, prune, base URL
-- and label selector, checked.
-- @param text JSON from `encode`
-- @param actions set of the known row actions
-- @param writes set of the actions that write
-- @return `{ rows =, fingerprint =, prune =, base_url =, labels = }`; or nil, message (not a
--   plan, another version, malformed)
function M.parse(text, actions, writes)
  local core = require "flowmusic.core"
  local doc, err = core.json_decode((tostring(text):gsub("^\239\187\191", "")))
  if type(doc) ~= "table" then return nil, "not a saved plan: " .. tostring(err or "not a JSON object") end
  if doc.format ~= M.FORMAT then return nil, "not a saved plan (no \"format\":\"" .. M.FORMAT .. "\")" end
  if doc.version ~= M.VERSION then
    return nil, ("saved plan version %s is not supported (this is version %d)"):format(validate.quote(doc.version),
      M.VERSION)
  end
  if type(doc.rows) ~= "table" or type(doc.fingerprint) ~= "table" then
    return nil, "malformed saved plan: rows and fingerprint are required"
  end
  local rows, fingerprint = {}, {}
  for i, r in ipairs(doc.rows) do
    local bad
    local label_err = type(r) == "table" and r.labels ~= nil and select(2, labels.check(r.labels)) or nil
    if type(r) ~= "table" or not actions[r.action] then bad = "unknown action"
    elseif not validate.email(r.email) then bad = "bad email"
    elseif not int_or_nil(r.from_max_jobs) or not int_or_nil(r.to_max_jobs) then bad = "bad maxJobs"
    elseif r.action == "set-max-jobs" and not (r.to_max_jobs and validate.max_jobs(r.to_max_jobs)) then
      bad = "set-max-jobs without a valid to_max_jobs"
    elseif (r.action == "add" or r.action == "reauth") and type(r.refresh_token_file) ~= "string" then
      bad = r.action .. " without refresh_token_file"
    elseif writes[r.action] and type(doc.fingerprint[r.email]) ~= "table" then
      bad = "no fingerprint for " .. r.email -- (a valid email: checked above)
    elseif label_err then
      bad = "labels: " .. label_err
    end
    if bad then return nil, ("malformed saved plan: row %d: %s"):format(i, bad) end
    local row = {}
    for _, k in ipairs(ROW_KEYS) do row[k] = r[k] end
    row.labels = type(r.labels) == "table" and labels.check(r.labels) or nil
    rows[i] = row
  end
  for email, f in pairs(doc.fingerprint) do
    if type(f) ~= "table" or type(f.exists) ~= "boolean" or not int_or_nil(f.max_jobs) then
      return nil, "malformed saved plan: fingerprint of " .. validate.quote(email)
    end
    fingerprint[email] = { exists = f.exists, max_jobs = f.max_jobs, error = f.error == true }
  end
  local selector
  if doc.labels ~= nil then
    local lerr
    selector, lerr = labels.check(doc.labels)
    if lerr then return nil, "malformed saved plan: labels: " .. lerr end
  end
  return { rows = rows, fingerprint = fingerprint, prune = doc.prune == true,
           base_url = type(doc.base_url) == "string" and doc.base_url or nil, labels = selector }
end

return M
