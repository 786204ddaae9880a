rockspec_format = "3.0"
package = "flowmusic"
version = "scm-1"

source = {
   url = "git+https://example.invalid/flowmusic.git",
}

description = {
   summary = "Client for the useapi.net Flow Music accounts API: C core (libcurl), Lua API, batch CLI, local sandbox",
   detailed = [[
flowmusic drives the useapi.net Flow Music accounts API from Lua: every accounts call as one
method returning plain Lua tables, concurrent batches over one libcurl multi handle with a
retry policy that never double-applies, a command line for batch account updates, an
OpenResty adapter that keeps nginx's event loop free, and a local sandbox of the API.
]],
   homepage = "https://example.invalid/flowmusic",
   license = "MIT",
}

dependencies = {
   "lua >= 5.1, < 5.5",
   "luasocket", -- the sandbox launcher (flowmusic sandbox start)
   "lua-cjson",
   "argparse",
   "inifile", -- the command line's config file (flowmusic.cli.profile)
}

-- Debian keeps curl.h under /usr/include/<triplet>/, which the header check does not search:
-- look for the library; the compiler finds the header by itself.
external_dependencies = {
   CURL = { library = "curl" },
}

-- The C core is built by CMakeLists.txt in a temporary directory outside the source tree
-- (luarocks' builtin and cmake types leave objects or build.luarocks/ in it), for the Lua
-- that luarocks targets, and installed into the rock's lib dir. The Lua modules below are
-- copied by luarocks: every lua/**.lua file must be listed (scripts/check-rockspec.sh checks).
build = {
   type = "command",
   build_command = [[
d=$(mktemp -d "${TMPDIR:-/tmp}/flowmusic-rock.XXXXXX") || exit 1
v=$("$(LUA)" -e "io.write((_VERSION:gsub('^Lua ', '')))") &&
"$(CMAKE)" -S . -B "$d" -DCMAKE_BUILD_TYPE=Release -DLUA_VERSION="$v" -DLUA_INCLUDE_DIR="$(LUA_INCDIR)" \
   -DFLOWMUSIC_INSTALL_CMOD="$(LIBDIR)" &&
"$(CMAKE)" --build "$d" &&
"$(CMAKE)" --install "$d" --component core
s=$?
rm -rf "$d"
exit $s
]],
   install = {
      lua = {
      ["flowmusic.cli.accounts"] = "lua/flowmusic/cli/accounts.lua",
      ["flowmusic.cli"] = "lua/flowmusic/cli/init.lua",
      ["flowmusic.cli.apply"] = "lua/flowmusic/cli/apply.lua",
      ["flowmusic.cli.batch"] = "lua/flowmusic/cli/batch.lua",
      ["flowmusic.cli.common"] = "lua/flowmusic/cli/common.lua",
      ["flowmusic.cli.output"] = "lua/flowmusic/cli/output.lua",
      ["flowmusic.cli.plan"] = "lua/flowmusic/cli/plan.lua",
      ["flowmusic.cli.sandbox"] = "lua/flowmusic/cli/sandbox.lua",
      ["flowmusic.cli.selection"] = "lua/flowmusic/cli/selection.lua",
      ["flowmusic.cli.status"] = "lua/flowmusic/cli/status.lua",
      ["flowmusic.cli.history"] = "lua/flowmusic/cli/history.lua",
      ["flowmusic.cli.wait"] = "lua/flowmusic/cli/wait.lua",
      ["flowmusic.cli.config"] = "lua/flowmusic/cli/config.lua",
      ["flowmusic.cli.profile"] = "lua/flowmusic/cli/profile.lua",
      ["flowmusic.cli.usage"] = "lua/flowmusic/cli/usage.lua",
      ["flowmusic.cli.usage_all"] = "lua/flowmusic/cli/usage_all.lua",
      ["flowmusic.cli.usagereport"] = "lua/flowmusic/cli/usagereport.lua",
      ["flowmusic.defaults"] = "lua/flowmusic/defaults.lua",
      ["flowmusic.engine"] = "lua/flowmusic/engine.lua",
      ["flowmusic.errors"] = "lua/flowmusic/errors.lua",
      ["flowmusic.fleet.prometheus"] = "lua/flowmusic/fleet/prometheus.lua",
      ["flowmusic.fleet.alerts"] = "lua/flowmusic/fleet/alerts.lua",
      ["flowmusic.fleet.events"] = "lua/flowmusic/fleet/events.lua",
      ["flowmusic.fleet.history"] = "lua/flowmusic/fleet/history.lua",
      ["flowmusic.fleet.statefile"] = "lua/flowmusic/fleet/statefile.lua",
      ["flowmusic.fleet.wait"] = "lua/flowmusic/fleet/wait.lua",
      ["flowmusic.fleet.status"] = "lua/flowmusic/fleet/status.lua",
      ["flowmusic.fleet.usage"] = "lua/flowmusic/fleet/usage.lua",
      ["flowmusic"] = "lua/flowmusic/init.lua",
      ["flowmusic.files"] = "lua/flowmusic/files.lua",
      ["flowmusic.fleet.fleetfile"] = "lua/flowmusic/fleet/fleetfile.lua",
      ["flowmusic.fleet.labels"] = "lua/flowmusic/fleet/labels.lua",
      ["flowmusic.fleet.plan"] = "lua/flowmusic/fleet/plan.lua",
      ["flowmusic.fleet.planfile"] = "lua/flowmusic/fleet/planfile.lua",
      ["flowmusic.format"] = "lua/flowmusic/format.lua",
      ["flowmusic.ngx"] = "lua/flowmusic/ngx/init.lua",
      ["flowmusic.ngx.metrics"] = "lua/flowmusic/ngx/metrics.lua",
      ["flowmusic.ngx.report"] = "lua/flowmusic/ngx/report.lua",
      ["flowmusic.ngx.thread"] = "lua/flowmusic/ngx/thread.lua",
      ["flowmusic.ops"] = "lua/flowmusic/ops.lua",
      ["flowmusic.proxy"] = "lua/flowmusic/proxy.lua",
      ["flowmusic.report.chart"] = "lua/flowmusic/report/chart.lua",
      ["flowmusic.report.html"] = "lua/flowmusic/report/html.lua",
      ["flowmusic.retry"] = "lua/flowmusic/retry.lua",
      ["flowmusic.settings"] = "lua/flowmusic/settings.lua",
      ["flowmusic.statedir"] = "lua/flowmusic/statedir.lua",
      ["flowmusic.rowfile"] = "lua/flowmusic/rowfile.lua",
      ["flowmusic.sandbox.accounts"] = "lua/flowmusic/sandbox/accounts.lua",
      ["flowmusic.sandbox.faults"] = "lua/flowmusic/sandbox/faults.lua",
      ["flowmusic.sandbox.handler"] = "lua/flowmusic/sandbox/handler.lua",
      ["flowmusic.sandbox.host"] = "lua/flowmusic/sandbox/host.lua",
      ["flowmusic.sandbox.json"] = "lua/flowmusic/sandbox/json.lua",
      ["flowmusic.sandbox.multipart"] = "lua/flowmusic/sandbox/multipart.lua",
      ["flowmusic.sandbox.saturation"] = "lua/flowmusic/sandbox/saturation.lua",
      ["flowmusic.sandbox.server"] = "lua/flowmusic/sandbox/server.lua",
      ["flowmusic.sandbox.tokens"] = "lua/flowmusic/sandbox/tokens.lua",
      ["flowmusic.sandbox.usage"] = "lua/flowmusic/sandbox/usage.lua",
      ["flowmusic.sandbox.util"] = "lua/flowmusic/sandbox/util.lua",
      ["flowmusic.sandbox.watchdog"] = "lua/flowmusic/sandbox/watchdog.lua",
      ["flowmusic.trust"] = "lua/flowmusic/trust.lua",
      ["flowmusic.validate"] = "lua/flowmusic/validate.lua",
      ["flowmusic.used_tokens"] = "lua/flowmusic/used_tokens.lua",
      ["flowmusic.webhook"] = "lua/flowmusic/webhook.lua",
      },
      bin = { flowmusic = "bin/flowmusic" },
   },
}
