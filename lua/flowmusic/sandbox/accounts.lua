--- Account state and the account endpoints (POST/GET/DELETE /accounts...).
-- State lives in the `flowmusic_sandbox` shared dict, one JSON record per account under
-- `acct:<email>`; the single nginx worker makes read-modify-write sequences atomic.
-- @module flowmusic.sandbox.accounts

local cjson = require "cjson.safe"
local json = require "flowmusic.sandbox.json"
local tokens = require "flowmusic.sandbox.tokens"
local util = require "flowmusic.sandbox.util"

local M = {}

--- Accounts per API token.
M.MAX_ACCOUNTS = 50

--- Message of the 400 for a 51st account.
M.LIMIT_MESSAGE = "Maximum of 50 accounts reached; delete an account before adding another"

--- Longest email, in bytes (RFC 5321's path limit); longer ones are a 400 everywhere.
M.MAX_EMAIL = 320

--- Message of that 400.
M.EMAIL_MESSAGE = "email must be at most 320 bytes"

--- Longest refresh token, in bytes.
M.MAX_REFRESH_TOKEN = 8192

local PREFIX = "acct:"
local HOUR_MS = 3600 * 1000

local RECORD_KEYS = {
  "email", "tier", "subscription_plan", "provider", "user_id", "maxJobs", "added",
  "refreshed_at", "refreshed_count", "access_token", "access_token_expires_at",
  "refresh_token", "session_id", "error", "credits_remaining", "tokens_remaining",
}

-- The shared dict holding all sandbox state.
local function dict()
  return ngx.shared.flowmusic_sandbox
end

--- Load one stored account.
-- @tparam string email
-- @treturn table|nil the internal record
function M.get(email)
  local s = dict():get(PREFIX .. email)
  return s and cjson.decode(s) or nil
end

--- Store one account (never evicting another: a full dict is an error, not an eviction).
-- @tparam table rec internal record
-- @treturn true, or `nil, message`
function M.put(rec)
  local ok, err = dict():safe_set(PREFIX .. rec.email, cjson.encode(rec))
  if not ok then return nil, "the sandbox's account storage is full (" .. tostring(err) .. ")" end
  return true
end

-- The next sequence number (insertion order of accounts).
local function next_seq()
  dict():safe_add("seq", 0) -- fails harmlessly when it exists
  return dict():incr("seq", 1)
end

--- Remove one account (and its usage size override).
-- @tparam string email
-- @treturn boolean whether it existed
function M.remove(email)
  if not dict():get(PREFIX .. email) then return false end
  dict():delete(PREFIX .. email)
  dict():delete("usage:" .. email)
  dict():delete("jobs:" .. email) -- (flowmusic.sandbox.saturation: its running jobs)
  return true
end

--- All stored accounts, in the order they were added.
-- @treturn {table,...}
function M.all()
  local list = {}
  for _, k in ipairs(dict():get_keys(0)) do
    if k:sub(1, #PREFIX) == PREFIX then
      local rec = M.get(k:sub(#PREFIX + 1))
      if rec then list[#list + 1] = rec end
    end
  end
  table.sort(list, function(a, b) return a.seq < b.seq end)
  return list
end

-- Fresh session: new session id and access token.
local function new_session(rec, now)
  local hex = ngx.md5(rec.email .. ":" .. rec.refreshed_count .. ":" .. now .. ":" .. math.random())
  rec.session_id = util.uuid_from_hex(hex)
  rec.access_token = "eyJhbGciOiJIUzI1NiJ9."
    .. ngx.encode_base64(ngx.md5_bin(hex), true):gsub("[+/]", { ["+"] = "-", ["/"] = "_" })
end

--- Create (or overwrite) an account as if `sandbox:<tier>:<email>` had been posted.
-- Used by the POST handler and by `/__sandbox/seed`.
-- @tparam string email
-- @tparam string tier
-- @tparam string refresh_token
-- @tparam[opt] number maxJobs
-- @treturn table internal record, or `nil, message` when the storage is full
function M.create(email, tier, refresh_token, maxJobs)
  local now = util.now_ms()
  local rec = {
    email = email, tier = tier, maxJobs = maxJobs or tokens.tiers[tier].maxJobs,
    added = now, refreshed_at = now, refreshed_count = 0, refresh_token = refresh_token,
    seq = next_seq(),
  }
  new_session(rec, now)
  local ok, err = M.put(rec)
  if not ok then return nil, err end
  return rec
end

--- Number of stored accounts.
-- @treturn number
function M.count()
  local n = 0
  for _, k in ipairs(dict():get_keys(0)) do
    if k:sub(1, #PREFIX) == PREFIX then n = n + 1 end
  end
  return n
end

--- The public view of a record (redacted tokens, ISO times, ordered keys).
-- @tparam table rec internal record
-- @tparam boolean live add `credits_remaining`/`tokens_remaining` (healthy accounts only)
-- @treturn table ordered JSON object
function M.view(rec, live)
  local tier = tokens.tiers[rec.tier] or tokens.tiers.unknown
  local v = {
    email = rec.email, tier = rec.tier, subscription_plan = tier.plan, provider = tier.provider,
    user_id = util.uuid_of("user:" .. rec.email), maxJobs = rec.maxJobs,
    added = util.iso_ms(rec.added), refreshed_at = util.iso_ms(rec.refreshed_at),
    refreshed_count = rec.refreshed_count, access_token = util.redact(rec.access_token),
    access_token_expires_at = util.iso_ms(rec.refreshed_at + HOUR_MS),
    refresh_token = util.redact(rec.refresh_token), session_id = rec.session_id,
    error = rec.error,
  }
  if live and not rec.error then
    v.credits_remaining = tier.credits or json.null
    v.tokens_remaining = tier.tokens or json.null
  end
  return json.object(v, RECORD_KEYS)
end

local MAXJOBS_MESSAGE = "maxJobs must be an integer between 1 and 16"

-- Validate maxJobs: JSON integers only; multipart text must be decimal digits.
local function check_maxjobs(v, multipart)
  if multipart and type(v) == "string" and v:match("^%d+$") then
    v = tonumber(v)
  end
  if not util.is_integer(v) or v < 1 or v > 16 then
    return nil, MAXJOBS_MESSAGE
  end
  return v
end

-- Add mode: {refresh_token, maxJobs?}.
local function add(fields, multipart)
  for k in pairs(fields) do
    if k ~= "refresh_token" and k ~= "maxJobs" then
      return util.error_response(400, 'Unknown field "' .. k .. '"; send refresh_token and optionally maxJobs')
    end
  end
  local rt = fields.refresh_token
  if type(rt) ~= "string" or #rt < 10 then
    return util.error_response(400, "refresh_token is required and must be at least 10 characters")
  end
  if #rt > M.MAX_REFRESH_TOKEN then
    return util.error_response(400, "refresh_token must be at most " .. M.MAX_REFRESH_TOKEN .. " bytes")
  end
  local maxJobs
  if fields.maxJobs ~= nil then
    local err
    maxJobs, err = check_maxjobs(fields.maxJobs, multipart)
    if not maxJobs then return util.error_response(400, err) end
  end
  local who, err = tokens.resolve(rt)
  if not who then return util.error_response(400, err) end
  if #who.email > M.MAX_EMAIL then return util.error_response(400, M.EMAIL_MESSAGE) end

  local rec = M.get(who.email)
  local status = 200
  if rec then
    local now = util.now_ms()
    rec.refreshed_count = rec.refreshed_count + 1
    rec.refreshed_at = now
    rec.refresh_token = rt
    if not who.broken then rec.tier = who.tier end
    if maxJobs then rec.maxJobs = maxJobs end
    new_session(rec, now)
  else
    if M.count() >= M.MAX_ACCOUNTS then
      return util.error_response(400, M.LIMIT_MESSAGE)
    end
    rec, err = M.create(who.email, who.tier, rt, maxJobs)
    if not rec then return util.error_response(507, err) end
    status = 201
  end
  if who.stale then -- the refresh stalled: the access token expired an hour ago
    rec.refreshed_at = util.now_ms() - tokens.STALL_MS
    if status == 201 then rec.added = rec.refreshed_at end
  end
  rec.error = who.broken and tokens.BROKEN or nil
  local ok
  ok, err = M.put(rec)
  if not ok then return util.error_response(507, err) end
  return util.json_response(status, M.view(rec, false))
end

-- Update mode: {email, maxJobs}.
local function update(fields, multipart)
  for k in pairs(fields) do
    if k ~= "email" and k ~= "maxJobs" then
      return util.error_response(400, 'Unexpected field "' .. k
        .. '": send only email and maxJobs when updating an account')
    end
  end
  local email = fields.email
  if type(email) ~= "string" or email == "" then
    return util.error_response(400, "email must be a non-empty string")
  end
  if #email > M.MAX_EMAIL then return util.error_response(400, M.EMAIL_MESSAGE) end
  if fields.maxJobs == nil then
    return util.error_response(400, "maxJobs is required when updating an account by email")
  end
  local maxJobs, err = check_maxjobs(fields.maxJobs, multipart)
  if not maxJobs then return util.error_response(400, err) end
  local rec = M.get(email)
  if not rec then
    return util.error_response(404, "Account " .. email .. " not found")
  end
  rec.maxJobs = maxJobs
  local ok
  ok, err = M.put(rec)
  if not ok then return util.error_response(507, err) end
  return util.json_response(200, M.view(rec, false))
end

--- POST /accounts.
-- @tparam table fields decoded body fields (JSON nulls already removed)
-- @tparam boolean multipart whether they came from multipart/form-data (values are text)
-- @treturn table response
function M.post(fields, multipart)
  if fields.refresh_token ~= nil then
    if fields.email ~= nil then
      return util.error_response(400, "email must not be sent together with refresh_token")
    end
    return add(fields, multipart)
  elseif fields.email ~= nil then
    return update(fields, multipart)
  end
  return util.error_response(400, "refresh_token is required")
end

--- GET /accounts.
-- @treturn table response
function M.list()
  local body, keys = {}, {}
  for _, rec in ipairs(M.all()) do
    body[rec.email] = M.view(rec, false)
    keys[#keys + 1] = rec.email
  end
  return util.json_response(200, json.object(body, keys))
end

--- GET /accounts/{email}.
-- @tparam string email decoded
-- @treturn table response
function M.show(email)
  local rec = M.get(email)
  if not rec then return util.error_response(404, "Account " .. email .. " not found") end
  return util.json_response(200, M.view(rec, true))
end

--- DELETE /accounts/{email}.
-- @tparam string email decoded
-- @treturn table response
function M.delete(email)
  if not M.remove(email) then
    return util.error_response(404, "Account " .. email .. " not found")
  end
  return { status = 204, body = "", headers = {} }
end

return M
