-- Streaming batch output: with --json/--csv every result row is written (and flushed) as
-- soon as it and every earlier row are complete, so a run killed with SIGKILL leaves every
-- completed row on stdout, in file order.
local fixture = require "spec.helpers.fixture"
local cli = require "spec.helpers.cli"
local cjson = require "cjson"
local socket = require "socket"

local API_TOKEN = "user:4545-CliStreamToken"

-- Wait (bounded) until pred() is true; returns whether it became true.
local function wait_for(pred, limit)
  local t0 = socket.gettime()
  while socket.gettime() - t0 < limit do
    if pred() then return true end
    socket.sleep(0.05)
  end
  return pred()
end

describe("flowmusic batch streaming output", function()
  local sb, c

  fixture.sandbox({ token = API_TOKEN, cli = true }, function(s, runner) sb, c = s, runner end)

  -- 20 set-max-jobs rows (each POST slowed down by the sandbox), file order = seed order.
  local function slow_batch(name, ms)
    local emails = sb:seed(20)
    local lines = { "op,email,max_jobs" }
    for _, e in ipairs(emails) do lines[#lines + 1] = "set-max-jobs," .. e .. ",3" end
    sb:fault { fault = "latency", ms = ms, method = "POST", path = "/v1/flowmusic/accounts", count = 0 }
    return cli.spit(c.tmp .. "/" .. name, table.concat(lines, "\n") .. "\n"), emails
  end

  for _, mode in ipairs({ "json", "csv" }) do
    it("--" .. mode .. ": rows appear while the batch runs; SIGKILL keeps every completed row", function()
      local file, emails = slow_batch("kill-" .. mode .. ".csv", 400)
      local h = c:spawn("batch " .. cli.q(file) .. " --concurrency 2 --retries 0 --" .. mode)
      local header = mode == "csv" and 1 or 0
      assert.is_true(wait_for(function() return #cli.lines(h.out()) >= header + 3 end, 30),
        "no rows were written while the batch ran")
      assert.is_false(h.done())       -- still running: the rows were streamed, not written at the end
      h.signal("KILL")
      assert.equal(137, h.wait(10))
      local lines = cli.lines(h.out())
      local rows = {}
      if mode == "json" then
        for i, l in ipairs(lines) do rows[i] = cjson.decode(l) end
      else
        assert.equal("line,op,email,status,http_status,max_jobs,attempts,elapsed_ms,message", lines[1])
        for i = 2, #lines do
          local line, op, email, status = lines[i]:match("^(%d+),([^,]*),([^,]*),([^,]*),")
          rows[#rows + 1] = { line = tonumber(line), op = op, email = email, status = status }
        end
      end
      assert.truthy(#rows >= 3 and #rows < 20, #rows)
      for i, r in ipairs(rows) do
        assert.equal(i + 1, r.line)          -- a prefix of the file, in order
        assert.equal(emails[i], r.email)
        assert.equal("ok", r.status)
      end
      -- Every row reported ok was applied on the server.
      sb:clear_faults()
      for i = 1, #rows do
        local _, acct = sb:api("GET", "/accounts/" .. emails[i]:gsub("@", "%%40"))
        assert.equal(3, acct.maxJobs, emails[i])
      end
      assert.truthy(sb:requests().by["POST /v1/flowmusic/accounts"] >= #rows)
    end)
  end
end)
