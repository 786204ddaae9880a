--- A small getopt for the flowmusic command line.
--
--     local args = require "flowmusic.cli.args"
--     local opts, pos = args.parse(argv, { json = false, ["max-jobs"] = true })
--
-- `spec` maps an option name (without the leading `--`) to `true` when it takes a value and
-- `false` when it is a switch. Accepted forms: `--name value`, `--name=value`, `--switch`,
-- `-h` (same as `--help`), `-` (a positional meaning standard input) and `--` (everything
-- after it is positional). Repeating a value option is an error.
-- @module flowmusic.cli.args
local M = {}

--- Parse an argument list.
-- @param argv array of strings
-- @param spec table name -> takes_value (boolean)
-- @return opts (name -> value or true), positionals (array); or nil, message
function M.parse(argv, spec)
  local opts, pos = {}, {}
  local i, only_pos = 1, false
  while i <= #argv do
    local a = argv[i]
    if only_pos or a == "-" or a:sub(1, 1) ~= "-" then
      pos[#pos + 1] = a
    elseif a == "--" then
      only_pos = true
    elseif a == "-h" then
      opts.help = true
    else
      local name, value = a:match("^%-%-([%w][%w%-]*)=(.*)$")
      if not name then name = a:match("^%-%-([%w][%w%-]*)$") end
      if not name then return nil, "unknown option '" .. a .. "'" end
      local takes = spec[name]
      if name == "help" then takes = false end
      if takes == nil then return nil, "unknown option '--" .. name .. "'" end
      if takes then
        if value == nil then
          i = i + 1
          value = argv[i]
          if value == nil then return nil, "option --" .. name .. " needs a value" end
        end
        if value == "" then return nil, "option --" .. name .. " needs a non-empty value" end
        if opts[name] ~= nil then return nil, "option --" .. name .. " given twice" end
        opts[name] = value
      else
        if value ~= nil then return nil, "option --" .. name .. " takes no value" end
        opts[name] = true
      end
    end
    i = i + 1
  end
  return opts, pos
end

--- An integer in [lo, hi] from a string, or nil, message (naming `what`).
function M.integer(s, lo, hi, what)
  local n = type(s) == "number" and s or (type(s) == "string" and s:match("^%s*[+]?%d+%s*$") and tonumber(s))
  if not n or n ~= math.floor(n) or n < lo or n > hi then
    return nil, ("%s must be an integer %d-%d, got '%s'"):format(what, lo, hi, tostring(s))
  end
  return n
end

--- A positive number of seconds from a string, or nil, message.
function M.seconds(s, what)
  local n = type(s) == "string" and s:match("^%s*%d+%.?%d*%s*$") and tonumber(s)
  if not n or n <= 0 then return nil, ("%s must be a positive number of seconds, got '%s'"):format(what, tostring(s)) end
  return n
end

return M
