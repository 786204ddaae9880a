--- Declarative fleets: compare the accounts you want with the live ones, and make them so.
--
--     local fleet = require "flowmusic.fleet.plan"
--     local want = {
--       { email = "alice@x.com", max_jobs = 8 },
--       { email = "carol@x.com", max_jobs = 2, refresh_token_file = "tokens/carol.txt" },
--       { email = "erin@x.com", refresh_token = os.getenv "ERIN_TOKEN" },
--     }
--     local plan, err = fleet.make(client, want, { prune = false }) -- GET /accounts and /jobs
--     for _, row in ipairs(plan.rows) do print(row.action, row.email) end
--     local results = fleet.apply(client, plan, { concurrency = 8 }) -- through client:batch
--     local live = client:list_accounts()
--     local diffs = fleet.converge(live, plan)                       -- {} when converged
--
-- A **plan** is a table `{ rows = {...}, fingerprint = {...}, prune = bool, base_url = url,
-- labels = selector|nil }`.
-- Each row is plain data:
--
-- * `action`: `add` (missing, token given), `reauth` (live record has `error`, token given),
--   `set-max-jobs` (maxJobs differs), `delete` (live but not wanted; only with `prune`),
--   `ok` (nothing to do), or a problem: `missing` (not live, no token), `needs-reauth`
--   (error state, no token). maxJobs travels in the POST of an `add` or `reauth`; an account
--   in error state without a token gets `set-max-jobs` (when needed) and `needs-reauth`.
-- * `email`, `from_max_jobs` (live), `to_max_jobs` (wanted; nil = leave alone), `message`
--   (why, for problems and re-authentication), `line` (of the fleet file, when known),
--   `refresh_token_file` (path, when the token comes from a file), `labels` (the wanted
--   entry's, nil when none).
--
-- **Label selector** (`labels = { team = "a" }`, `flowmusic.fleet.labels`): the plan covers
-- only the wanted entries with every one of those labels; all others are left alone, as if
-- they were not in the list. Live accounts that are not wanted have no labels, so a plan with
-- a selector never deletes: `prune` then deletes nothing.
--
-- Refresh tokens are never stored in a plan: a row that needs one has a private token source
-- (the in-memory token given to `make`/`compute`, or its file, read again at apply time).
-- `encode` writes a plan as JSON with token **file paths** only; `decode` reads it back.
--
-- `fingerprint[email] = { exists = bool, max_jobs = n|nil, error = bool }` records the live
-- state of every account a write row touches; `check` refuses a plan whose accounts changed.
-- Failures of the world return `nil, err`; misuse raises.
-- @module flowmusic.fleet.plan
local validate = require "flowmusic.validate"
local planfile = require "flowmusic.fleet.planfile"
local labels = require "flowmusic.fleet.labels"

local M = {}

--- The row actions that write, in the order a plan lists them per account.
M.WRITES = { add = true, reauth = true, ["set-max-jobs"] = true, delete = true }
--- The row actions that are problems (nothing can be done about them).
M.PROBLEMS = { missing = true, ["needs-reauth"] = true }
--- Every row action.
M.ACTIONS = { "add", "reauth", "set-max-jobs", "delete", "missing", "needs-reauth", "ok" }
local KNOWN_ACTION = {}
for _, a in ipairs(M.ACTIONS) do KNOWN_ACTION[a] = true end

-- Row -> function() returning the refresh token or nil, message. Private: a plan's tables
-- never hold a token, and this table is reachable from nowhere but this file.
local token_source = setmetatable({}, { __mode = "k" })

-- The default reader of token files (the fleet file module's: trims, refuses loose modes).
local function default_reader(path)
  return require("flowmusic.fleet.fleetfile").read_token(path)
end

-- A token source for one wanted entry, or nil when it has none.
local function source_of(entry, read_token)
  if entry.refresh_token ~= nil then
    local token = entry.refresh_token
    return function() return token end
  end
  local file = entry.refresh_token_file
  if file ~= nil then
    return function()
      local token, err = read_token(file)
      if not token then return nil, err end
      local ok, msg = validate.refresh_token(token)
      if not ok then return nil, ("refresh token file '%s': %s"):format(file, msg) end
      return token
    end
  end
  return nil
end

-- Check the wanted list (misuse raises at the caller's caller).
local function check_wanted(wanted)
  if type(wanted) ~= "table" then error("flowmusic.fleet: the wanted list must be an array", 3) end
  local seen = {}
  for i, e in ipairs(wanted) do
    if type(e) ~= "table" then error(("flowmusic.fleet: wanted entry %d must be a table"):format(i), 3) end
    for k in pairs(e) do
      if k ~= "email" and k ~= "max_jobs" and k ~= "refresh_token" and k ~= "refresh_token_file"
        and k ~= "line" and k ~= "labels" then
        error(("flowmusic.fleet: wanted entry %d: unknown key '%s'"):format(i, tostring(k)), 3)
      end
    end
    local email, msg = validate.email(e.email)
    if not email then error(("flowmusic.fleet: wanted entry %d: %s"):format(i, msg), 3) end
    if seen[email] then
      error(("flowmusic.fleet: wanted entry %d: duplicate email %s (also entry %d)"):format(i, email, seen[email]), 3)
    end
    seen[email] = i
    if e.max_jobs ~= nil then
      local n, m = validate.max_jobs(e.max_jobs)
      if not n then error(("flowmusic.fleet: wanted entry %d (%s): %s"):format(i, email, m), 3) end
    end
    if e.refresh_token ~= nil then
      local ok, m = validate.refresh_token(e.refresh_token)
      if not ok then error(("flowmusic.fleet: wanted entry %d (%s): %s"):format(i, email, m), 3) end
    end
    if e.refresh_token_file ~= nil and type(e.refresh_token_file) ~= "string" then
      error(("flowmusic.fleet: wanted entry %d (%s): refresh_token_file must be a string"):format(i, email), 3)
    end
    if e.labels ~= nil then
      local _, m = labels.check(e.labels)
      if m then error(("flowmusic.fleet: wanted entry %d (%s): labels: %s"):format(i, email, m), 3) end
    end
  end
end

-- A checked copy of a label selector option, nil for none or `{}` (misuse raises at the
-- caller's caller).
local function check_selector(sel, fname)
  if sel == nil then return nil end
  local copy, m = labels.check(sel)
  if m then error(("flowmusic.fleet.%s: labels: %s"):format(fname, m), 3) end
  return copy
end

-- The live facts a plan depends on, for one account.
local function fact(rec)
  if rec == nil then return { exists = false, error = false } end
  return { exists = true, max_jobs = type(rec.maxJobs) == "number" and rec.maxJobs or nil,
           error = rec.error ~= nil and rec.error ~= false and type(rec.error) ~= "userdata" }
end

local sorted_keys = require("flowmusic.format").sorted_keys

-- Raise (at the caller's caller) on an option key not in `known`.
local function check_options(opts, known, fname)
  if opts == nil then return {} end
  if type(opts) ~= "table" then error(("flowmusic.fleet.%s: options must be a table"):format(fname), 3) end
  for k in pairs(opts) do
    if not known[k] then error(("flowmusic.fleet.%s: unknown option '%s'"):format(fname, tostring(k)), 3) end
  end
  return opts
end

-- The live accounts (GET /accounts) and, with_jobs, the jobs running now (GET /jobs) in one
-- batch, so that `cancel` can stop it. The jobs are only for warnings: their failure is a
-- message.
local function read_live(client, cancel, with_jobs)
  if not with_jobs then
    local r = client:batch({ { "list_accounts" } }, { concurrency = 1, cancel = cancel })[1]
    if r.ok then return r.value end
    return nil, r.err
  end
  local rs = client:batch({ { "list_accounts" }, { "list_jobs" } }, { concurrency = 2, cancel = cancel })
  if not rs[1].ok then return nil, rs[1].err end
  if not rs[2].ok then return rs[1].value, nil, require("flowmusic.errors").text(rs[2].err) end
  return rs[1].value, require("flowmusic.fleet.status").running_jobs(rs[2].value)
end

--- Warnings about running jobs: a `set-max-jobs` row below the jobs an account runs now,
-- a `delete` row of an account with jobs running.
-- @param p a plan
-- @tparam table running `email -> jobs running now` (flowmusic.fleet.status.running_jobs)
-- @treturn {table,...} `{ email =, message = }`, in row order
function M.warnings(p, running)
  local list = {}
  for _, r in ipairs(p.rows) do
    local n = running[r.email] or 0
    if r.action == "set-max-jobs" and r.to_max_jobs and n > r.to_max_jobs then
      list[#list + 1] = { email = r.email, message = ("maxJobs %d is below the %d jobs %s runs now"
        .. " (they go on; new ones wait until fewer run)"):format(r.to_max_jobs, n, r.email) }
    elseif r.action == "delete" and n > 0 then
      list[#list + 1] = { email = r.email, message = ("deleting %s while it runs %d job%s"):format(
        r.email, n, n == 1 and "" or "s") }
    end
  end
  return list
end

local function new_plan(rows, fingerprint, prune, base_url, selector)
  return { rows = rows, fingerprint = fingerprint, prune = prune and true or false, base_url = base_url,
           labels = selector }
end

--- Compute a plan from live state (no I/O besides reading token files to check them).
-- @param live the accounts as `client:list_accounts()` returns them (table keyed by email)
-- @param wanted array of `{ email =, max_jobs = n|nil, refresh_token = string|nil,
--   refresh_token_file = path|nil, line = n|nil, labels = table|nil }`; `max_jobs` nil leaves
--   maxJobs alone
-- @param opts optional `{ prune = bool, labels = selector, read_token = function(path) ->
--   token | nil, msg }` (default reader: `flowmusic.fleet.fleetfile.read_token`); with
--   `labels` only the matching entries are planned and nothing is deleted
-- @return plan. Raises on a malformed wanted list (bad email, duplicate, bad max_jobs, bad
--   labels) or selector. A token that can't be read turns its row into a problem whose
--   message says why.
function M.compute(live, wanted, opts)
  if type(live) ~= "table" then error("flowmusic.fleet.compute: live must be a table keyed by email", 2) end
  check_wanted(wanted)
  opts = check_options(opts, { prune = true, labels = true, read_token = true }, "compute")
  local selector = check_selector(opts.labels, "compute")
  wanted = labels.select(wanted, selector)
  local read_token = opts.read_token or default_reader
  local rows, fingerprint, wanted_set = {}, {}, {}
  local function row(action, e, rec, message)
    local r = { action = action, email = e.email, from_max_jobs = rec and fact(rec).max_jobs or nil,
                to_max_jobs = e.max_jobs and validate.max_jobs(e.max_jobs) or nil, message = message,
                line = e.line, refresh_token_file = e.refresh_token_file,
                labels = e.labels and labels.check(e.labels) or nil }
    rows[#rows + 1] = r
    if M.WRITES[action] then fingerprint[e.email] = fact(rec) end
    return r
  end
  for _, e in ipairs(wanted) do
    wanted_set[e.email] = true
    local rec = live[e.email]
    local f = fact(rec)
    local want_jobs = e.max_jobs and validate.max_jobs(e.max_jobs) or nil
    local jobs_differ = want_jobs ~= nil and f.max_jobs ~= want_jobs
    local source = source_of(e, read_token)
    local token_err
    if source and (not f.exists or f.error) then
      -- Read now to find problems early; the token itself is dropped (apply reads it again).
      local readable, err = source()
      if not readable then token_err, source = err, nil end
    end
    local live_error = f.error and tostring(rec.error) or nil
    if not f.exists then
      if source then
        token_source[row("add", e, nil)] = source
      else
        row("missing", e, nil, token_err or "no refresh_token_file")
      end
    elseif f.error then
      if source then
        token_source[row("reauth", e, rec, "live error: " .. live_error)] = source
      else
        if jobs_differ then row("set-max-jobs", e, rec) end
        row("needs-reauth", e, rec, (token_err or "no refresh_token_file") .. "; live error: " .. live_error)
      end
    elseif jobs_differ then
      row("set-max-jobs", e, rec)
    else
      row("ok", e, rec)
    end
  end
  if opts.prune and not selector then -- (unwanted live accounts have no labels: none matches)
    for _, email in ipairs(sorted_keys(live)) do
      if not wanted_set[email] then row("delete", { email = email }, live[email]) end
    end
  end
  return new_plan(rows, fingerprint, opts.prune, nil, selector)
end

--- Read the live state (`GET /accounts`, and `GET /jobs` for warnings; nothing else) and
-- compute a plan.
-- @param client a flowmusic client
-- @param wanted see `compute`
-- @param opts optional: those of `compute`, and `cancel` (the batch option, for the GETs)
-- @return plan (with `base_url` set to the client's, and `warnings`: see `warnings`; when
--   `GET /jobs` failed, one warning without an email saying so); or nil, err (the API error
--   value of `GET /accounts`)
function M.make(client, wanted, opts)
  check_wanted(wanted)
  opts = check_options(opts, { prune = true, labels = true, read_token = true, cancel = true }, "make")
  check_selector(opts.labels, "make")
  local live, running, jobs_error = read_live(client, opts.cancel, true)
  if not live then return nil, running end
  local p = M.compute(live, wanted, { prune = opts.prune, labels = opts.labels, read_token = opts.read_token })
  p.base_url = client.base_url
  if running then
    p.warnings = M.warnings(p, running)
  else
    p.warnings = { { message = "cannot check the jobs running now: " .. tostring(jobs_error) } }
  end
  return p
end

--- Count the rows of a plan per action.
-- @return table action -> count (every action present), plus `writes` and `problems`
function M.counts(p)
  local c = { writes = 0, problems = 0 }
  for _, a in ipairs(M.ACTIONS) do c[a] = 0 end
  for _, r in ipairs(p.rows) do
    c[r.action] = c[r.action] + 1
    if M.WRITES[r.action] then c.writes = c.writes + 1 end
    if M.PROBLEMS[r.action] then c.problems = c.problems + 1 end
  end
  return c
end

--- Compare a plan's fingerprint with live state.
-- @param live table keyed by email (`client:list_accounts()`)
-- @param p plan
-- @return true; or nil, message (naming the first account that changed), email
function M.check_live(live, p)
  for _, email in ipairs(sorted_keys(p.fingerprint or {})) do
    local was, now = p.fingerprint[email], fact(live[email])
    local what
    if was.exists ~= now.exists then
      what = was.exists and "it was deleted" or "it was added"
    elseif was.exists and was.max_jobs ~= now.max_jobs then
      what = ("maxJobs was %s, now %s"):format(tostring(was.max_jobs), tostring(now.max_jobs))
    elseif was.exists and was.error ~= now.error then
      what = now.error and "it is now in error state" or "its error state was cleared"
    end
    if what then
      return nil, ("the plan is stale: %s changed since it was made (%s)"):format(email, what), email
    end
  end
  return true
end

--- Check a (saved) plan against the live state: `GET /accounts`, then `check_live`.
-- @param client a flowmusic client
-- @param p plan
-- @param opts optional `{ cancel = the batch option, for the GET }`
-- @return true; or nil, message, email (stale plan or another API); or nil, err (API error)
function M.check(client, p, opts)
  opts = check_options(opts, { cancel = true }, "check")
  if p.base_url and client.base_url ~= p.base_url then
    -- (the saved URL comes from a file: never echoed, see validate.quote)
    return nil, ("the plan was made for another API: its base URL %s is not this client's"):format(
      validate.quote(p.base_url))
  end
  local live, err = read_live(client, opts.cancel)
  if not live then return nil, err end
  return M.check_live(live, p)
end

local function call_of(r)
  if r.action == "add" or r.action == "reauth" then
    local source = token_source[r]
    if not source then return nil, "no refresh token for " .. r.email end
    local token, err = source()
    if not token then return nil, err end
    return { "add_account", token, r.to_max_jobs }
  elseif r.action == "set-max-jobs" then
    return { "set_max_jobs", r.email, r.to_max_jobs }
  end
  return { "delete_account", r.email }
end

-- Judge a finished batch result for a row: ok, or a message saying what is wrong.
local function judge(res, b)
  if not b.ok then return false end
  local v, r = b.value, res.row
  if r.action == "add" or r.action == "reauth" then
    if type(v) ~= "table" then return false, "unexpected answer" end
    if v.email ~= r.email then
      return false, ("the refresh token belongs to %s, not %s (that account was %s)"):format(
        tostring(v.email), r.email, res.created and "added" or "refreshed")
    end
    if v.error ~= nil and type(v.error) ~= "userdata" then
      return false, "the account still needs re-authentication: " .. tostring(v.error)
    end
  end
  return true
end

-- Fill a result from its finished batch result.
local function settle(res, b)
  res.batch = b
  if b.ok and (res.row.action == "add" or res.row.action == "reauth") then
    -- 201 Created: the account is new (on_progress may see the result before batch sets `created`)
    if b.created ~= nil then res.created = b.created else res.created = b.status == 201 end
  end
  local ok, why = judge(res, b)
  res.ok = ok
  if ok then
    res.status = "ok"
    return
  end
  local e = b.err
  if type(e) == "table" and e.kind == "cancelled" then
    res.status = e.reason == "interrupted" and "interrupted" or "not_run"
  else
    res.status = "failed"
  end
  res.message = why
  res.outcome_unknown = type(e) == "table" and e.outcome_unknown or false
end

--- Apply a plan's write rows through `client:batch` (so a refresh-token POST whose outcome is
-- unknown is never re-sent). Token files are read again here; a token that can't be read
-- fails its row without sending anything. Does not check the fingerprint: call `check` first.
-- @param client a flowmusic client
-- @param p plan
-- @param opts optional `{ concurrency = 1-50, on_result = function(result), on_progress =,
--   ... }`; every key but `on_result` is passed to `client:batch` (`on_progress` keeps its
--   meaning there, including stopping the batch early where the client supports it)
-- @return array of results, one per write row in plan order: `{ row = row, ok = bool,
--   status = "ok" | "failed" | "interrupted" | "not_run", batch = batch result or nil (not
--   sent), message = string or nil, outcome_unknown = bool, created = bool (add/reauth: the
--   account is new) }`. `on_result(result)` is called
--   in plan order, for each result as soon as it and every earlier one are complete (so a
--   caller can stream them).
function M.apply(client, p, opts)
  opts = opts or {}
  local results, calls, index_of = {}, {}, {}
  for _, r in ipairs(p.rows) do
    if M.WRITES[r.action] then
      local res = { row = r, ok = false }
      results[#results + 1] = res
      local call, err = call_of(r)
      if call then
        calls[#calls + 1] = call
        index_of[#calls] = #results
      else
        res.status, res.message = "failed", tostring(err) .. " (nothing sent)"
      end
    end
  end
  -- Hand out complete results in order.
  local next_out = 1
  local function flush()
    while results[next_out] and results[next_out].status do
      if opts.on_result then opts.on_result(results[next_out]) end
      next_out = next_out + 1
    end
  end
  local batch_opts = {}
  for k, v in pairs(opts) do
    if k ~= "on_result" then batch_opts[k] = v end
  end
  batch_opts.on_progress = function(done, total, j, b)
    local res = results[index_of[j]]
    if b and not res.status then settle(res, b) end
    flush()
    if opts.on_progress then return opts.on_progress(done, total, j, b) end
  end
  flush()
  if #calls > 0 then
    local done = client:batch(calls, batch_opts)
    for i = 1, #calls do calls[i] = nil end -- drop the tokens at once
    for j, b in ipairs(done) do
      local res = results[index_of[j]]
      if not res.status then settle(res, b) end
    end
  end
  flush()
  return results
end

--- What still differs between live state and what the plan wants.
-- @param live table keyed by email (`client:list_accounts()`)
-- @param p plan
-- @return array of `{ email =, message = }` (empty when converged), one per account
function M.converge(live, p)
  local diffs, seen = {}, {}
  for _, r in ipairs(p.rows) do
    if not seen[r.email] then
      seen[r.email] = true
      local f, msg = fact(live[r.email]), nil
      if r.action == "delete" then
        if f.exists then msg = "still present" end
      elseif not f.exists then
        msg = "missing"
      elseif f.error then
        msg = "needs re-authentication"
      elseif r.to_max_jobs and f.max_jobs ~= r.to_max_jobs then
        msg = ("maxJobs %s, wanted %d"):format(tostring(f.max_jobs), r.to_max_jobs)
      end
      if msg then diffs[#diffs + 1] = { email = r.email, message = msg } end
    end
  end
  return diffs
end

--- Encode a plan as JSON (see flowmusic.fleet.planfile): token file paths only.
-- @param p plan
-- @return text; or nil, message when a row's token has no file (it was given in memory)
M.encode = planfile.encode

--- True when text is a saved plan.
M.is_saved = planfile.is_saved

--- Decode a saved plan. Rows that need a token get a source reading their file at apply time.
-- @param text JSON from `encode`
-- @param opts optional `{ read_token = function(path) -> token | nil, msg }`
-- @return plan; or nil, message (not a plan, another version, malformed)
function M.decode(text, opts)
  opts = opts or {}
  local saved, err = planfile.parse(text, KNOWN_ACTION, M.WRITES)
  if not saved then return nil, err end
  local read_token = opts.read_token or default_reader
  for _, row in ipairs(saved.rows) do
    if row.action == "add" or row.action == "reauth" then
      token_source[row] = source_of({ refresh_token_file = row.refresh_token_file }, read_token)
    end
  end
  return new_plan(saved.rows, saved.fingerprint, saved.prune, saved.base_url, saved.labels)
end

return M
