--- The retry policy of flowmusic: one pure function, used by single calls and batches alike.
-- It knows nothing of operation names: a call says whether it may be re-sent after it may have
-- reached the server (`resend`) and whether it changes state (`write`); see flowmusic.ops.
--
-- | call                                 | not sent (connect, DNS, TLS handshake) | may have reached (reset, timeout, truncated) | 429 | 408, 500, 502, 503, 504 | unreadable answer (bad JSON, too large, redirect) | other 4xx |
-- |--------------------------------------|-------|-------|-------|-------|-------|----|
-- | resend (GET, DELETE, set maxJobs...) | retry | retry | retry | retry | no (a write: outcome unknown) | no |
-- | no resend (adding an account, POST/PATCH) | retry | no: outcome unknown | retry | no: outcome unknown | no: outcome unknown | no |
--
-- The vendor's own 402, 412 and 596 are, like other 4xx, never retried (waiting fixes none).
-- Delay: the server's Retry-After (seconds or HTTP-date) when it sent one, else a 429 body's
-- `retryAfter` (errors.from_status); refused (no retry, the error keeps `retry_after`)
-- beyond `retry_after_max`; otherwise exponential backoff with
-- full jitter: random() * min(max_delay, base_delay * 2^(attempt-1)). At most `retries`
-- re-sends; the scheduler also stops when the delay would cross the call's deadline.
-- @module flowmusic.retry
local errors = require "flowmusic.errors"
local defaults = require "flowmusic.defaults"

local M = {}

-- Statuses that say "try again later" without saying the request was refused for good.
local transient_status = { [408] = true, [429] = true, [500] = true, [502] = true, [503] = true, [504] = true }
-- Answers that arrived but can't be read: the server may well have acted on the request.
local unreadable = { bad_response = true, too_large = true, redirect = true }
local fatal_reason = { tls_verify = true, bad_url = true, protocol = true, out_of_memory = true }

--- The class of an error value, as the policy sees it.
-- @return "network" | "timeout" | "http" | "unreadable" | "fatal"
function M.class_of(err)
  local kind = err.kind
  if kind == "http" then return "http" end
  if kind == "timeout" then return "timeout" end
  if kind == "network" and not fatal_reason[err.reason] then return "network" end
  if unreadable[kind] then return "unreadable" end
  return "fatal"
end

--- Decide whether to send a failed call again, and after how long.
-- @param call table with `resend` (may be re-sent after it may have reached the server) and
--   `write` (changes state on the server)
-- @param class error class (see class_of)
-- @param reached false when the request provably never reached the server
-- @param status HTTP status or nil
-- @param headers response headers (lower-case names) or nil
-- @param attempt number of attempts made so far (1 after the first)
-- @param cfg table: retries, base_delay, max_delay, retry_after_max, random (function
--   returning [0,1)); missing ones take flowmusic.defaults
-- @param body_retry_after optional: seconds the answer's body asked to wait (useapi's
--   `retryAfter` on a 429), used when the headers say nothing
-- @return retry (boolean), delay (seconds, when retrying), why (string: "not_sent",
--   "network", "timeout", "rate_limited", "transient_status"; or when not retrying
--   "not_retryable", "outcome_unknown", "retries_exhausted", "retry_after_too_long")
function M.decide(call, class, reached, status, headers, attempt, cfg, body_retry_after)
  cfg = cfg or defaults
  local safe = call.resend
  local ok, why
  if class == "network" or class == "timeout" then
    if reached == false then ok, why = true, "not_sent"
    elseif safe then ok, why = true, class
    else ok, why = false, "outcome_unknown" end
  elseif class == "http" then
    if status == 429 then ok, why = true, "rate_limited"
    elseif transient_status[status] then
      if safe then ok, why = true, "transient_status" else ok, why = false, "outcome_unknown" end
    else ok, why = false, "not_retryable" end
  elseif class == "unreadable" and call.write and reached ~= false then
    ok, why = false, "outcome_unknown"
  else
    ok, why = false, "not_retryable"
  end
  if not ok then return false, nil, why end
  if attempt > (cfg.retries or defaults.retries) then return false, nil, "retries_exhausted" end
  local retry_after = headers and errors.parse_retry_after(headers["retry-after"]) or body_retry_after
  if retry_after then
    if retry_after > (cfg.retry_after_max or defaults.retry_after_max) then
      return false, nil, "retry_after_too_long"
    end
    return true, retry_after, why
  end
  local base = cfg.base_delay or defaults.base_delay
  local ceiling = math.min(cfg.max_delay or defaults.max_delay, base * 2 ^ (attempt - 1))
  return true, (cfg.random or math.random)() * ceiling, why
end

return M
