--- `flowmusic batch FILE`: run one account operation per row of a CSV or JSON Lines file,
-- concurrently, and report exactly one result per row.
-- A command module of flowmusic.cli.
-- @module flowmusic.cli.batch
local common = require "flowmusic.cli.common"
local defaults = require "flowmusic.defaults"
local validate = require "flowmusic.validate"
local files = require "flowmusic.files"
local output = require "flowmusic.cli.output"
local format = require "flowmusic.format"
local rowfile = require "flowmusic.rowfile"
local report = require "flowmusic.cli.usagereport"
local used_tokens = require "flowmusic.used_tokens"
local ops = require "flowmusic.ops"

local DESCRIPTION = [[
Runs one account operation per row of FILE ('-' = standard input), concurrently
(client:batch), and prints exactly one result per row, in file order.

FILE is CSV with the header row
    op,email,max_jobs,refresh_token_file
(columns in any order; optional ones may be left out; quoted fields allowed) or JSON
Lines, one object per line with the same keys, e.g.
    {"op":"set-max-jobs","email":"a@example.com","max_jobs":4}
The format follows the extension (.csv, .jsonl/.ndjson/.json) or the first line.
Blank lines and lines starting with # are ignored.

ops and their columns:
  add           refresh_token_file (required), max_jobs (optional 1-16),
                email (optional, checked against the account the token belongs to)
  set-max-jobs  email, max_jobs (integer 1-16)
  get           email
  delete        email
  usage         email (the result shows charged credits and received tokens)
refresh_token_file is relative to FILE's directory (to the current directory for '-');
the token is read from it (trailing newline trimmed) and never printed.]]

local EPILOG = [[
output: one row per input row with line, op, email, status (ok, failed, invalid;
planned in a dry run; interrupted or not_run after Ctrl-C), http_status, max_jobs,
attempts, elapsed_ms, message. A malformed row is reported with its line number (also on
stderr) and the other rows still run. With --json / --csv each row is written as soon as
it and every row before it are done. A summary line follows (on stderr with --json /
--csv, so stdout stays parseable).

SIGINT or SIGTERM stops the run: nothing new starts, requests in flight get 2 s, then
every row is reported; a second Ctrl-C aborts at once.

examples:
  flowmusic batch examples/batch.csv
  flowmusic batch examples/batch.jsonl --dry-run
  flowmusic batch ops.csv --concurrency 16 --json > results.jsonl

exit status: 0 every row succeeded, 1 some operation failed, 2 usage or input error
(bad options, unreadable file or header, or at least one invalid row), 130/143
interrupted by SIGINT/SIGTERM.]]

local COLUMNS = {
  { key = "line", title = "LINE", right = true }, { key = "op", title = "OP" },
  { key = "email", title = "EMAIL" }, { key = "status", title = "STATUS" },
  { key = "http_status", title = "HTTP", right = true }, { key = "max_jobs", title = "MAXJOBS", right = true },
  { key = "attempts", title = "TRIES", right = true }, { key = "elapsed_ms", title = "MS", right = true },
  { key = "message", title = "MESSAGE" },
}

local OPS = {
  add = { need = { refresh_token_file = true }, allow = { email = true, max_jobs = true } },
  ["set-max-jobs"] = { need = { email = true, max_jobs = true }, allow = {} },
  get = { need = { email = true }, allow = {} },
  delete = { need = { email = true }, allow = {} },
  usage = { need = { email = true }, allow = {} },
}
local OP_NAMES = "add, set-max-jobs, get, delete, usage"

-- At most this many invalid rows are also written to stderr (all are in the report).
local MAX_STDERR = 20

-- A refresh_token_file of a row, relative to the batch file's directory.
local function token_path(file, base_dir)
  if file:sub(1, 1) ~= "/" then return base_dir .. "/" .. file end
  return file
end

local function dir_of(path)
  if path == "-" then return "." end
  return path:match("^(.*)/[^/]*$") or "."
end

-- Check one parsed row; returns the plan entry { line, op, email, max_jobs, call } or
-- { line, op, email, error }. Token files are read here; their content goes only into call.
-- ctx: `opts` (the command's arguments), `store` (the used-token store, flowmusic.used_tokens),
-- `spent` (fingerprint -> line of the row that sends that token).
local function plan_row(row, base_dir, ctx)
  local p = { line = row.line, op = row.op, email = row.email }
  if row.error then p.error = row.error return p end
  local op = row.op
  if not op then p.error = "missing op (one of " .. OP_NAMES .. ")" return p end
  local rule = OPS[op]
  if not rule then
    p.error = "unknown op " .. output.show(op, common.secrets()) .. " (one of " .. OP_NAMES .. ")"
    return p
  end
  for _, k in ipairs(rowfile.KEYS) do
    if k ~= "op" then
      if rule.need[k] and row[k] == nil then p.error = ("%s needs %s"):format(op, k) return p end
      if row[k] ~= nil and not rule.need[k] and not rule.allow[k] then
        p.error = ("%s takes no %s"):format(op, k)
        return p
      end
    end
  end
  if row.email ~= nil then
    local ok, err = common.email(row.email)
    if not ok then p.error = err return p end
  end
  if row.max_jobs ~= nil then
    local n, err = common.max_jobs(row.max_jobs)
    if not n then p.error = err return p end
    p.max_jobs = n
  end
  if op == "add" then
    local file = token_path(row.refresh_token_file, base_dir)
    if row.refresh_token_file == "-" then
      p.error = "refresh_token_file must name a file"
      return p
    end
    local token, err = common.refresh_token(ctx.opts, file)
    if not token then p.error = err return p end
    local ok, verr = validate.refresh_token(token)
    if not ok then p.error = ("refresh token file '%s': %s"):format(file, verr) return p end
    local fp = used_tokens.fingerprint(token)
    if ctx.spent[fp] and not ctx.opts.force then
      p.error = ("refresh token file '%s' holds the token line %d sends: a refresh token is good for one add")
        :format(file, ctx.spent[fp])
      return p
    end
    local used = ctx.store and ctx.store:refusal(token)
    if used then p.error = ("refresh token file '%s': %s"):format(file, used) return p end
    ctx.spent[fp] = row.line
    p.call = { "add_account", token, p.max_jobs }
  elseif op == "set-max-jobs" then
    p.call = { "set_max_jobs", row.email, p.max_jobs }
  elseif op == "get" then
    p.call = { "get_account", row.email }
  elseif op == "delete" then
    p.call = { "delete_account", row.email }
  else
    p.call = { "get_usage", row.email }
  end
  return p
end

-- The op and email of a row as the report shows them. They come straight from the file: each
-- is kept when it is what it should be (a known op, a valid email) or may be quoted
-- (validate.quotable), else only its size is given, like a value in a message.
local function as_read(v, good)
  if v == nil or good or validate.quotable(v, common.secrets()) then return common.redact(v) end
  return validate.hidden(v)
end

-- Fill a result row from a successful batch result (status "ok" unless it says otherwise).
local function describe_ok(p, r, out)
  local v = r.value
  if p.op == "add" then
    if type(v) == "table" then
      out.email = type(v.email) == "string" and v.email or p.email
      out.max_jobs = v.maxJobs
      local msg = r.created and "added" or "refreshed"
      if type(v.tier) == "string" then msg = msg .. " (" .. v.tier .. ")" end
      if p.email and tostring(out.email):lower() ~= p.email:lower() then
        -- The row named another account: the add went to the token's own account.
        out.status = "failed"
        out.message = ("the refresh token belongs to %s, not %s: it %s %s"):format(tostring(out.email),
          p.email, msg, tostring(out.email))
        return
      end
      if type(v.error) == "string" then msg = msg .. "; account needs re-authentication: " .. v.error end
      out.message = msg
    end
  elseif p.op == "set-max-jobs" then
    out.max_jobs = type(v) == "table" and v.maxJobs or p.max_jobs
    out.message = "maxJobs set to " .. tostring(out.max_jobs)
  elseif p.op == "get" then
    if type(v) == "table" then
      out.max_jobs = v.maxJobs
      if type(v.error) == "string" then
        out.message = "account needs re-authentication: " .. v.error
      else
        local parts = { tostring(v.tier or "?") }
        if type(v.credits_remaining) == "number" then
          parts[#parts + 1] = format.number(v.credits_remaining) .. " credits left"
        end
        if type(v.tokens_remaining) == "number" then
          parts[#parts + 1] = format.number(v.tokens_remaining) .. " tokens left"
        end
        out.message = table.concat(parts, ", ")
      end
    end
  elseif p.op == "delete" then
    out.message = "deleted" .. (r.note and (" (" .. tostring(r.note) .. ")") or "")
  else
    local t = report.summarize(v, p.email).total
    out.message = ("charged %s credits, received %s tokens, %d songs"):format(
      format.number(t.charged_credits), format.number(t.received_tokens), t.songs)
  end
end

local function clock()
  local ok, core = pcall(require, "flowmusic.core")
  if ok and core.now then return core.now() end
  return os.time()
end

local function run(opts)
  common.catch_signals()
  local mode = common.mode(opts)
  local path = opts.file
  local text, rerr = files.read_file(path, "batch file", rowfile.MAX_BYTES)
  if not text then return common.usage_error("batch", rerr) end
  if opts.token_file then common.api_token(opts) end -- known before anything is quoted
  local file_format = opts.format or rowfile.detect(path, text)
  local rows, perr = rowfile.parse(text, file_format, common.secrets())
  text = nil -- luacheck: ignore (let the collector have it)
  if not rows then
    return common.usage_error("batch", (path == "-" and "standard input" or path) .. ": " .. perr)
  end

  local started = clock()
  local name = path == "-" and "(stdin)" or path
  local base_dir = dir_of(path)
  local plan, calls, index_of = {}, {}, {}
  local invalid = 0
  -- Tokens sent before are refused row by row, before anything is sent (--force sends them).
  local ctx = { opts = opts, spent = {} }
  for _, row in ipairs(rows) do
    if row.op == "add" then
      local store, serr = common.used_tokens(opts)
      if not store then return common.usage_error("batch", serr) end
      ctx.store = store
      break
    end
  end
  for i, row in ipairs(rows) do
    local p = plan_row(row, base_dir, ctx)
    p.file = row.refresh_token_file
    plan[i] = p
    if p.error then
      invalid = invalid + 1
      p.error = ("line %d: %s"):format(p.line, p.error)
      if invalid <= MAX_STDERR then
        io.stderr:write("flowmusic batch: ", common.clean(name), ": ", common.clean(p.error), "\n")
      end
    else
      calls[#calls + 1] = p.call
      index_of[#calls] = i
    end
  end
  rows = nil -- luacheck: ignore
  if invalid > MAX_STDERR then
    io.stderr:write(("flowmusic batch: ... and %d more invalid rows (every one is in the report)\n")
      :format(invalid - MAX_STDERR))
  end

  local client, lock
  if not opts.dry_run and #calls > 0 then
    local cerr
    client, cerr = common.client(opts, { used_tokens = ctx.store })
    if not client then return common.usage_error("batch", cerr) end
    -- Rows that write wait for (or refuse) another apply or writing batch: one at a time.
    for _, call in ipairs(calls) do
      if ops.get(call[1]).write() then -- (the operation table's rule; batch's have one method each)
        local lerr
        lock, lerr = common.write_lock(opts)
        if not lock then
          client:close()
          common.say("batch", lerr .. "; nothing was sent")
          return common.FAILED
        end
        break
      end
    end
  end

  -- Rows are written in file order, each as soon as it and every row before it are known
  -- (--json/--csv flush each one: a run that is killed leaves every completed row behind).
  local w = output.writer(mode, COLUMNS)
  local counts = { ok = 0, failed = 0, invalid = invalid, planned = 0, interrupted = 0, not_run = 0 }
  local results = {}  -- plan index -> batch result, until its row is written
  local next_row = 1
  local function row_of(i)
    local p = plan[i]
    local out = { line = p.line, op = as_read(p.op, OPS[p.op] ~= nil),
                  email = as_read(p.email, p.email ~= nil and validate.email(p.email) ~= nil), max_jobs = p.max_jobs }
    if p.error then
      out.status, out.message = "invalid", p.error
    elseif opts.dry_run then
      out.status = "planned"
      counts.planned = counts.planned + 1
      out.message = p.op == "add" and "would add/refresh from " .. tostring(p.file) or ("would " .. p.op)
    else
      local r = results[i]
      out.http_status, out.attempts = r.status, r.attempts
      out.elapsed_ms = r.elapsed and math.floor(r.elapsed * 1000 + 0.5) or nil
      if r.ok then
        out.status = "ok"
        describe_ok(p, r, out)
      elseif type(r.err) == "table" and r.err.kind == "cancelled" then
        -- Stopped by a signal: never started, or dropped in flight (outcome unknown for writes).
        out.status = r.err.reason == "not_run" and "not_run" or "interrupted"
        out.message = common.error_message(r)
        if out.status == "not_run" then out.elapsed_ms = nil end
      else
        out.status = "failed"
        out.message = common.error_message(r)
      end
      counts[out.status] = counts[out.status] + 1
    end
    return out
  end
  local function write_ready()
    while next_row <= #plan do
      local p = plan[next_row]
      if not p.error and not opts.dry_run and results[next_row] == nil then return end
      w:add(row_of(next_row))
      -- Keep nothing of a written row: not its decoded answer, not its token.
      if results[next_row] then results[next_row].value = nil end
      results[next_row], plan[next_row] = nil, { line = p.line }
      next_row = next_row + 1
    end
  end

  write_ready()
  if client then
    local show = opts.progress or (not opts.no_progress and output.isatty(io.stderr))
    local bar = output.progress(show, io.stderr)
    local function take(j, r)
      local i = index_of[j]
      if results[i] ~= nil or i < next_row then return end
      results[i] = r
      plan[i].call = nil
      if opts.verbose then
        local p = plan[i]
        io.stderr:write(common.clean(common.verbose_line(("line %d %s %s"):format(p.line, p.op,
          tostring(r.ok and type(r.value) == "table" and p.op == "add" and r.value.email or p.email or "")), r)), "\n")
      end
    end
    local res = client:batch(calls, {
      concurrency = opts.concurrency,
      cancel = common.cancel,
      on_progress = function(done, total, j, r)
        bar:update(done, total)
        take(j, r)
        write_ready()
      end,
    })
    bar:finish()
    client:close()
    if lock then lock:unlock() end
    for j, r in ipairs(res) do take(j, r) end
  end
  write_ready()
  w:finish()

  local elapsed = clock() - started
  local summary
  local n = #plan
  if opts.dry_run then
    summary = ("dry run: %d row%s, %d planned, %d invalid; nothing sent"):format(n,
      n == 1 and "" or "s", counts.planned, counts.invalid)
  else
    summary = ("%d row%s: %d ok, %d failed, %d skipped (invalid) in %.2f s"):format(n,
      n == 1 and "" or "s", counts.ok, counts.failed, counts.invalid, elapsed)
  end
  local stopped, signame = common.interrupted()
  if stopped then
    summary = summary:gsub(" skipped %(invalid%)", (" skipped (invalid), %d interrupted, %d not run")
      :format(counts.interrupted, counts.not_run), 1) .. "; interrupted by " .. signame
    common.reported_interruption = true
  end
  local sink = mode == "table" and io.stdout or io.stderr
  sink:write(summary, "\n")
  if stopped then return stopped end
  if counts.invalid > 0 then return common.USAGE end
  if counts.failed > 0 then return common.FAILED end
  return common.OK
end

return {
  name = "batch",
  configure = function(cmd)
    cmd:description(DESCRIPTION)
    cmd:epilog(EPILOG)
    cmd:argument("FILE", "The batch file ('-': standard input)."):target("file")
    cmd:option("--concurrency", "Requests in flight at once, 1-" .. defaults.max_concurrency
      .. "; rows run in no particular "
      .. "order, use --concurrency 1 to run them one by one in order.")
      :argname("N"):default(tostring(defaults.cli_concurrency)):overwrite(false)
      :convert(common.converter(common.integer, 1, defaults.max_concurrency, "--concurrency"))
    cmd:flag("--dry-run", "Check every row (and read the token files) and print the plan; "
      .. "nothing is sent and no API token is needed.")
    cmd:option("--format", "csv or jsonl, instead of guessing."):choices({ "csv", "jsonl" })
      :argname("F"):overwrite(false)
    cmd:mutex(
      cmd:flag("--progress", "Force the progress bar on stderr on (default: on when stderr is a terminal)."),
      cmd:flag("--no-progress", "Force the progress bar off."))
    common.connection_options(cmd)
    common.write_options(cmd)
    common.lock_option(cmd)
    common.output_options(cmd)
  end,
  run = run,
}
