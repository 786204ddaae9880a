--- The sandbox's stand-in for "ask Flow Music who owns this refresh token".
--
-- * `sandbox:<tier>:<email>` (tier `free|starter|plus|member|low|unknown`) → `<email>` on that tier
--   (`low`: a starter plan nearly used up, 3 credits / 36 tokens left);
-- * `sandbox:fail:<email>` → the refresh fails (400, nothing stored);
-- * `sandbox:broken:<email>` → the account is stored in error state;
-- * `sandbox:stale:<email>` → tier plus, but useapi's refresh of its access token stalled two
--   hours ago (`refreshed_at` 2 h back, so `access_token_expires_at` is 1 h past);
-- * `sandbox:<kind>:<email>/<anything>` (after the domain) → as `sandbox:<kind>:<email>`: another token of the same
--   account (real refresh tokens change on every refresh; the store of used tokens tells them apart);
-- * any other token (≥ 10 chars) → `user-<first 8 hex of md5(token)>@flowmusic.sandbox`, tier plus.
-- @module flowmusic.sandbox.tokens

local M = {}

--- Plan facts per tier: default maxJobs, plan/provider (paid tiers only) and live balances.
M.tiers = {
  free    = { maxJobs = 1,  credits = 120 },
  starter = { maxJobs = 4,  plan = "starter-monthly", provider = "stripe",
              credits = 1000, tokens = 12000 },
  plus    = { maxJobs = 12, plan = "plus-monthly", provider = "g1_entitlement",
              credits = 5000, tokens = 60000 },
  member  = { maxJobs = 16, plan = "member-annual", provider = "g1_entitlement",
              credits = 20000, tokens = 240000 },
  low     = { maxJobs = 4,  plan = "starter-monthly", provider = "stripe",
              credits = 3, tokens = 36 },
  unknown = { maxJobs = 2 },
}

--- The message of a refresh that fails.
M.FAILED = "refresh token failed to refresh"

--- The `error` of an account in error state.
M.BROKEN = "Refresh token is invalid or expired; re-add the account"

--- How far back a `sandbox:stale:` account's last refresh lies, in milliseconds.
M.STALL_MS = 2 * 3600 * 1000

--- The email a non-`sandbox:` token maps to.
-- @tparam string token
-- @treturn string
function M.derived_email(token)
  return "user-" .. ngx.md5(token):sub(1, 8) .. "@flowmusic.sandbox"
end

--- Resolve a refresh token.
-- @tparam string token at least 10 characters
-- @treturn table `{email=, tier=, broken=bool, stale=bool}`, or `nil, message` when the refresh fails
function M.resolve(token)
  local kind, email = token:match("^sandbox:(%a+):(.+)$")
  -- (a '/' after the domain starts the rotated part; one before the '@' is the email's own)
  email = email and (email:match("^(.*@[^/]*)/[^@]*$") or email)
  if kind == "fail" then
    return nil, M.FAILED
  elseif kind == "broken" then
    return { email = email, tier = "unknown", broken = true }
  elseif kind == "stale" then
    return { email = email, tier = "plus", stale = true }
  elseif kind and M.tiers[kind] then
    return { email = email, tier = kind }
  end
  return { email = M.derived_email(token), tier = "plus" }
end

return M
