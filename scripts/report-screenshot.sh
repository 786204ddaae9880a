#!/usr/bin/env bash
# Make docs/report.png: the HTML usage report of the demo's sandbox (the accounts of
# examples/tokens/, as scripts/demo.sh adds them), rendered by headless Chromium.
# Needs the C core built (scripts/setup.sh) and chromium (scripts/setup.sh --test).
#   bash scripts/report-screenshot.sh [OUT.png]     (default docs/report.png)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-docs/report.png}
command -v chromium >/dev/null || { echo "report-screenshot: chromium is not installed" >&2; exit 1; }

fm() { lua5.4 bin/flowmusic "$@"; }

dir=$(mktemp -d "${TMPDIR:-/tmp}/flowmusic-report.XXXXXX")
cleanup() {
    lua5.4 bin/flowmusic sandbox stop --dir "$dir/sandbox" >/dev/null 2>&1 || true
    rm -rf "$dir"
}
trap cleanup EXIT

mkdir "$dir/sandbox"
url=$(fm sandbox start --dir "$dir/sandbox" 2>/dev/null | tail -n 1)
[[ $url == http* ]] || { echo "report-screenshot: the sandbox did not start" >&2; exit 1; }
export FLOWMUSIC_BASE_URL=$url
export USEAPI_TOKEN=user:1-sandbox   # the sandbox's default API token

for t in alice bob carol; do
    fm accounts add --refresh-token-file "examples/tokens/$t.txt" >/dev/null
done
fm usage --all --html "$dir/report.html" --chart   # the terminal report, bars included
mkdir -p "$(dirname "$out")"
case $out in /*) abs=$out ;; *) abs=$PWD/$out ;; esac
chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    --user-data-dir="$dir/profile" --window-size=1200,900 --hide-scrollbars \
    --screenshot="$abs" "file://$dir/report.html" >/dev/null 2>&1
[[ -s $out ]] || { echo "report-screenshot: chromium wrote no screenshot" >&2; exit 1; }
echo "wrote $out"
