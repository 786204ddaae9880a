--- The sandbox's read-only endpoints beside the accounts: `GET /v1/flowmusic/jobs` (the jobs
-- running now, per account, against its maxJobs) and `GET /v2/account` (the useapi.net
-- subscription: active or not, accounts allowed per API, accounts per state). Their state is
-- set through control endpoints (`POST /__sandbox/jobs`, `POST /__sandbox/subscription`).
-- @module flowmusic.sandbox.saturation

local cjson = require "cjson.safe"
local accounts = require "flowmusic.sandbox.accounts"
local json = require "flowmusic.sandbox.json"
local util = require "flowmusic.sandbox.util"

local M = {}

--- Jobs one account may run at once at most (the vendor's maxJobs range).
M.MAX_RUNNING = 16

local RUNNING = "jobs:"          -- "jobs:<email>" -> jobs running now
local SUBSCRIPTION = "subscription" -- JSON { active, max_accounts }

local function dict() return ngx.shared.flowmusic_sandbox end

local function subscription()
  local s = dict():get(SUBSCRIPTION)
  local v = s and cjson.decode(s) or {}
  if v.active == nil then v.active = true end
  v.max_accounts = v.max_accounts or accounts.MAX_ACCOUNTS
  return v
end

--- GET /jobs: `{ "jobs": [ { jobid, email, status, created_at } ], "accounts": { email:
-- { maxJobs, executing, available } } }` (every account, in the order added).
-- @treturn table response
function M.jobs()
  local list, per, keys = {}, {}, {}
  for _, rec in ipairs(accounts.all()) do
    local n = dict():get(RUNNING .. rec.email) or 0
    for i = 1, n do
      list[#list + 1] = json.object({
        jobid = ("job:%s-user:1-%s-bot:flowmusic"):format(util.uuid_of("job:" .. rec.email .. ":" .. i), rec.email),
        email = rec.email, status = "pending", created_at = util.iso_ms(rec.refreshed_at),
      }, { "jobid", "email", "status", "created_at" })
    end
    per[rec.email] = json.object({ maxJobs = rec.maxJobs, executing = n,
      available = math.max(0, rec.maxJobs - n) }, { "maxJobs", "executing", "available" })
    keys[#keys + 1] = rec.email
  end
  return util.json_response(200, json.object({ jobs = json.array(list), accounts = json.object(per, keys) },
    { "jobs", "accounts" }))
end

--- GET /v2/account: the subscription as useapi.net's account endpoint gives it.
-- @treturn table response
function M.account()
  local sub = subscription()
  local total, errored = 0, 0
  for _, rec in ipairs(accounts.all()) do
    total = total + 1
    if rec.error then errored = errored + 1 end
  end
  return util.json_response(200, json.object({
    id = 1, email = "sandbox@flowmusic.sandbox", created = "2026-01-01T00:00:00.000Z", name = "Sandbox",
    subscriptionIsActive = sub.active, subscriptions = math.ceil(sub.max_accounts / 3),
    maxAccountsPerAPI = sub.max_accounts,
    accounts = json.object({ ["Flow Music API"] = json.object({ total = total, active = total - errored,
      error = errored }, { "total", "active", "error" }) }, { "Flow Music API" }),
    sub = os.date("!%y%m01"),
  }, { "id", "email", "created", "name", "subscriptionIsActive", "subscriptions", "maxAccountsPerAPI",
    "accounts", "sub" }))
end

--- POST /__sandbox/jobs `{ "email": ..., "running": 0-16 }`: how many jobs the account runs now.
-- @tparam table body
-- @treturn table response
function M.set_running(body)
  local email, n = body.email, body.running
  if type(email) ~= "string" then return util.error_response(400, "email is required") end
  if not util.is_integer(n) or n < 0 or n > M.MAX_RUNNING then
    return util.error_response(400, "running must be an integer 0-" .. M.MAX_RUNNING)
  end
  if not accounts.get(email) then return util.error_response(404, "Account " .. email .. " not found") end
  dict():set(RUNNING .. email, n)
  return util.json_response(200, json.object({ email = email, running = n }, { "email", "running" }))
end

--- POST /__sandbox/subscription `{ "active": bool, "max_accounts": 1-1000 }` (each optional).
-- @tparam table body
-- @treturn table response
function M.set_subscription(body)
  local sub = subscription()
  if body.active ~= nil then
    if type(body.active) ~= "boolean" then return util.error_response(400, "active must be a boolean") end
    sub.active = body.active
  end
  if body.max_accounts ~= nil then
    local n = body.max_accounts
    if not util.is_integer(n) or n < 1 or n > 1000 then
      return util.error_response(400, "max_accounts must be an integer 1-1000")
    end
    sub.max_accounts = n
  end
  dict():set(SUBSCRIPTION, cjson.encode(sub))
  return util.json_response(200, json.object({ active = sub.active, max_accounts = sub.max_accounts },
    { "active", "max_accounts" }))
end

return M
