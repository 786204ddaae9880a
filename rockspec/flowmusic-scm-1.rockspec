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
   license = "MIT",
}

dependencies = {
   "lua >= 5.1, < 5.5",
   "lua-cjson",
}

-- Debian keeps curl.h under /usr/include/<triplet>/, which the header check does not search:
-- look for the library; the compiler finds the header by itself.
external_dependencies = {
   CURL = { library = "curl" },
}

build = {
   type = "builtin",
   modules = {
      ["flowmusic.core"] = {
         sources = { "src/core.c", "src/clock.c", "src/codes.c", "src/headers.c", "src/signals.c", "src/session.c", "src/transfer.c", "src/json.c", "src/buffer.c", "src/compat.c" },
         defines = { "_POSIX_C_SOURCE=200809L" },
         libraries = { "curl", "pthread" },
         incdirs = { "$(CURL_INCDIR)" },
         libdirs = { "$(CURL_LIBDIR)" },
      },
      ["flowmusic.cli.accounts"] = "lua/flowmusic/cli/accounts.lua",
      ["flowmusic.cli.args"] = "lua/flowmusic/cli/args.lua",
      ["flowmusic.cli.batch"] = "lua/flowmusic/cli/batch.lua",
      ["flowmusic.cli.batchfile"] = "lua/flowmusic/cli/batchfile.lua",
      ["flowmusic.cli.common"] = "lua/flowmusic/cli/common.lua",
      ["flowmusic.cli.output"] = "lua/flowmusic/cli/output.lua",
      ["flowmusic.cli.sandbox"] = "lua/flowmusic/cli/sandbox.lua",
      ["flowmusic.cli.usage"] = "lua/flowmusic/cli/usage.lua",
      ["flowmusic.cli.usage_all"] = "lua/flowmusic/cli/usage_all.lua",
      ["flowmusic.cli.usagereport"] = "lua/flowmusic/cli/usagereport.lua",
      ["flowmusic.defaults"] = "lua/flowmusic/defaults.lua",
      ["flowmusic.engine"] = "lua/flowmusic/engine.lua",
      ["flowmusic.errors"] = "lua/flowmusic/errors.lua",
      ["flowmusic.fleet.usage"] = "lua/flowmusic/fleet/usage.lua",
      ["flowmusic"] = "lua/flowmusic/init.lua",
      ["flowmusic.ngx"] = "lua/flowmusic/ngx.lua",
      ["flowmusic.ngx_report"] = "lua/flowmusic/ngx_report.lua",
      ["flowmusic.ngx_thread"] = "lua/flowmusic/ngx_thread.lua",
      ["flowmusic.ops"] = "lua/flowmusic/ops.lua",
      ["flowmusic.report.chart"] = "lua/flowmusic/report/chart.lua",
      ["flowmusic.report.html"] = "lua/flowmusic/report/html.lua",
      ["flowmusic.retry"] = "lua/flowmusic/retry.lua",
      ["flowmusic.sandbox.accounts"] = "lua/flowmusic/sandbox/accounts.lua",
      ["flowmusic.sandbox.faults"] = "lua/flowmusic/sandbox/faults.lua",
      ["flowmusic.sandbox.handler"] = "lua/flowmusic/sandbox/handler.lua",
      ["flowmusic.sandbox.host"] = "lua/flowmusic/sandbox/host.lua",
      ["flowmusic.sandbox.json"] = "lua/flowmusic/sandbox/json.lua",
      ["flowmusic.sandbox.multipart"] = "lua/flowmusic/sandbox/multipart.lua",
      ["flowmusic.sandbox.server"] = "lua/flowmusic/sandbox/server.lua",
      ["flowmusic.sandbox.tokens"] = "lua/flowmusic/sandbox/tokens.lua",
      ["flowmusic.sandbox.usage"] = "lua/flowmusic/sandbox/usage.lua",
      ["flowmusic.sandbox.util"] = "lua/flowmusic/sandbox/util.lua",
      ["flowmusic.sandbox.watchdog"] = "lua/flowmusic/sandbox/watchdog.lua",
      ["flowmusic.validate"] = "lua/flowmusic/validate.lua",
   },
   install = {
      bin = { flowmusic = "bin/flowmusic" },
   },
}
