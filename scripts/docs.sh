#!/usr/bin/env bash
# Generate the API reference of flowmusic's public modules (LDoc, configured by config.ld)
# as HTML into docs/api/. Fails when LDoc reports anything but its two progress lines:
# every warning (undocumented argument, unparsable comment, missing Markdown formatter) is
# an error here.
#   bash scripts/docs.sh        then open docs/api/index.html
set -uo pipefail
cd "$(dirname "$0")/.."
log=$(mktemp)
trap 'rm -f "$log"' EXIT

# lua5.1: Debian's lua-markdown (the formatter config.ld names) is installed for Lua 5.1 only.
# --testing: no date in the output, so regenerating unchanged sources changes nothing.
lua5.1 /usr/bin/ldoc --fatalwarnings --testing . >"$log" 2>&1
status=$?
warnings=$(grep -v -E '^(reading configuration from config\.ld|output written to .*)$' "$log")
if [[ -n $warnings ]]; then
    echo "$warnings"
    echo "docs: $(grep -c . <<<"$warnings") LDoc warning(s)"
    exit 1
fi
if ((status != 0)); then cat "$log"; echo "docs: ldoc failed (exit $status)"; exit 1; fi
echo "docs: API reference written to docs/api/index.html"
