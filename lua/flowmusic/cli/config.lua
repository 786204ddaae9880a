--- `flowmusic config show [--profile NAME] [options] [--json|--csv]`: the settings a command
-- would use, resolved from flags, the environment, the profile and the defaults
-- (flowmusic.cli.profile), and where each came from. Secrets are never shown: the API token
-- only by its size, a proxy's password not at all.
-- @module flowmusic.cli.config
local common = require "flowmusic.cli.common"
local output = require "flowmusic.cli.output"
local profile = require "flowmusic.cli.profile"

local COLUMNS = { { key = "setting", title = "SETTING" }, { key = "value", title = "VALUE" },
  { key = "source", title = "SOURCE" } }

local DESCRIPTION = [[
Print the settings a command would use and where each came from: a flag, the
environment, the profile of the config file, or the default. Precedence, for every
setting: flag, then environment, then profile, then default.

The config file is $XDG_CONFIG_HOME/flowmusic/config, else ~/.config/flowmusic/config
(INI: [NAME] starts a profile; keys base_url, token_file, cacert, capath, proxy,
min_credits, state_dir). --profile NAME or $FLOWMUSIC_PROFILE picks a profile; without
either, [default] applies when the file has one. See docs/cli.md.

The API token is never printed: only where it comes from and its size.]]

local function run(args)
  local s, err = common.settings(args)
  if not s then return common.usage_error("config show", err) end
  local rows = {}
  local function add(setting, value, source)
    rows[#rows + 1] = { setting = setting, value = value, source = source }
  end
  local prof = s.profile
  local config_path, chosen_by = profile.path()
  add("config", config_path or "(none: no $HOME)", chosen_by)
  add("profile", prof and prof.name or "(none)", prof and prof.how or nil)
  add("base_url", s.base_url.value, s.base_url.source)
  -- The token: its file, or the variable that holds it, and its size once read; never a byte of it.
  local tok, terr = common.api_token(args)
  local token_value
  if tok then
    token_value = ("%s(%d bytes)"):format(s.token.file and (s.token.file .. " ") or "", #tok)
  elseif s.token.file then
    token_value = s.token.file .. " (unreadable: " .. terr .. ")"
  else
    token_value = "(none)"
  end
  add("token", token_value, s.token.source)
  add("cacert", s.cacert.value, s.cacert.source)
  add("capath", s.capath.value, s.capath.source)
  add("proxy", s.proxy.value and require("flowmusic.proxy").show(s.proxy.value), s.proxy.source)
  local min, merr = common.min_credits(args)
  if merr then return common.usage_error("config show", merr) end
  add("min_credits", min, s.min_credits.source)
  add("state_dir", s.state_dir.value, s.state_dir.source)
  local mode = common.mode(args)
  if mode == "table" then
    for _, r in ipairs(rows) do
      if r.value == nil then r.value = "-" end
      r.value, r.source = common.redact(tostring(r.value)), r.source or ""
    end
    io.stdout:write(output.render(COLUMNS, rows))
  else
    local w = output.writer(mode, COLUMNS)
    for _, r in ipairs(rows) do
      if type(r.value) == "string" then r.value = common.redact(r.value) end
      w:add(r)
    end
    w:finish()
  end
  return common.OK
end

return {
  name = "config",
  configure = function(cmd)
    cmd:description(DESCRIPTION)
    cmd:command_target("subcommand")
    local show = cmd:command("show"):summary("The resolved settings and where each came from.")
      :description(DESCRIPTION)
    show:option("--min-credits", "As 'flowmusic status --min-credits'.")
      :argname("N"):overwrite(false):convert(common.converter(common.minimum, "--min-credits"))
    common.connection_options(show)
    common.write_options(show, true)
    common.output_options(show)
  end,
  run = run,
}
