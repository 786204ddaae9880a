--- Wait until one account reaches a condition: `ok` (healthy, as `flowmusic.fleet.status`
-- judges it), `exists` (the API knows it, in any state) or `gone` (the API answers 404). For
-- scripts that add an account through the vendor's browser set-up and must go on once it is
-- healthy, instead of polling loops of their own.
--
--     local wait = require "flowmusic.fleet.wait"
--     local rec, err = wait.wait(client, "a@x.com", { ["for"] = "ok", timeout = 600, interval = 10 })
--     if not rec then print(err.reason, err.message) end   -- "timeout", "failed" or "cancelled"
--
-- One `get_account` per interval (its own retries included). A failure that won't pass by
-- waiting (401: the API token is refused; 400: the email is refused) ends the wait at once;
-- any other failure (network, 5xx, a 404 while waiting for the account to appear) is waited
-- out.
-- @module flowmusic.fleet.wait
local core = require "flowmusic.core"
local status = require "flowmusic.fleet.status"

local M = {}

--- The conditions.
M.CONDITIONS = { ok = true, exists = true, gone = true }

-- HTTP statuses that waiting cannot change.
local FINAL = { [400] = true, [401] = true, [403] = true }

local option_names = { ["for"] = true, timeout = true, interval = true, cancel = true, on_poll = true,
  min_credits = true, min_tokens = true, max_token_age = true }

local function check(opts)
  for k in pairs(opts) do
    if not option_names[k] then return ("unknown option '%s'"):format(tostring(k)) end
  end
  if opts["for"] ~= nil and not M.CONDITIONS[opts["for"]] then return "for must be ok, exists or gone" end
  for _, k in ipairs({ "timeout", "interval" }) do
    local v = opts[k]
    if v ~= nil and (type(v) ~= "number" or v ~= v or v <= 0) then return k .. " must be a positive number" end
  end
  for _, k in ipairs({ "cancel", "on_poll" }) do
    if opts[k] ~= nil and type(opts[k]) ~= "function" then return k .. " must be a function" end
  end
  return nil
end

--- Wait for an account.
-- @param client a flowmusic client
-- @tparam string email
-- @tparam[opt] table opts `for` (`"ok"`, default; `"exists"`; `"gone"`), `timeout` (seconds,
--   default 600), `interval` (seconds between calls, default 10), `cancel` (polled between
--   calls and while sleeping: a true value ends the wait), `on_poll` (function(record|nil,
--   result) after each call, e.g. for verbose output), and the judging options of
--   `status.collect` (`min_credits`, `min_tokens`, `max_token_age`)
-- @return the account's status record (`{ email, state, ... }`; for `gone`, `{ email = email,
--   state = "gone" }`) and the number of calls made, or nil and `{ reason = "timeout" |
--   "failed" | "cancelled", message = ..., err = the last error value, record = the last
--   record, calls = n }`
-- @raise on misuse (unknown option, bad value)
function M.wait(client, email, opts)
  opts = opts or {}
  if type(opts) ~= "table" then
    error("flowmusic.fleet.wait: bad argument #3 to 'wait' (options must be a table)", 2)
  end
  local why = check(opts)
  if why then error("flowmusic.fleet.wait: bad argument #3 to 'wait' (" .. why .. ")", 2) end
  local want, timeout, interval = opts["for"] or "ok", opts.timeout or 600, opts.interval or 10
  local deadline = core.now() + timeout
  local calls, last_err, last_rec = 0, nil, nil
  while true do
    if opts.cancel and opts.cancel() then
      return nil, { reason = "cancelled", message = "the wait was interrupted", err = last_err,
        record = last_rec, calls = calls }
    end
    local r = client:batch({ { "get_account", email } }, { concurrency = 1 })[1]
    calls = calls + 1
    local rec
    if r.ok or (r.status ~= 404 and not FINAL[r.status]) then
      rec = status.judge(email, {}, r, status.judging({ min_credits = opts.min_credits,
        min_tokens = opts.min_tokens, max_token_age = opts.max_token_age }))
      last_rec = rec
    end
    r.value = nil
    if opts.on_poll then opts.on_poll(rec, r) end
    if want == "exists" and r.ok then return rec, calls end
    if want == "ok" and rec and rec.state == "ok" then return rec, calls end
    if want == "gone" and r.status == 404 then return { email = email, state = "gone" }, calls end
    if not r.ok then last_err = r.err end
    if FINAL[r.status] then
      return nil, { reason = "failed", message = require("flowmusic.errors").text(r.err), err = r.err,
        record = last_rec, calls = calls }
    end
    local now = core.now()
    if now >= deadline then
      local where = last_rec and ("it is " .. last_rec.state)
        or (want == "gone" and "it still exists" or "it was not found")
      return nil, { reason = "timeout", message = ("%s is not %s after %g s (%s)"):format(email,
        want, timeout, where), err = last_err, record = last_rec, calls = calls }
    end
    -- Sleep in short steps, so a signal or a cancel ends the wait at once.
    local wake = math.min(deadline, now + interval)
    while core.now() < wake do
      if opts.cancel and opts.cancel() then break end
      core.sleep(math.min(0.1, wake - core.now()))
    end
  end
end

return M
