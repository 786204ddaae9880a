#!/usr/bin/env bash
# The flowmusic demo: installs what it needs (Debian), builds the C core, starts the local
# sandbox of the Flow Music accounts API, and drives it with the command line tool:
# adds accounts, runs examples/batch.csv (which has two rows that fail on purpose, to show
# the report), prints the accounts table and a usage report, brings the fleet to what
# examples/fleet.csv says (plan, apply), shows every account's health (status) and what the
# fleet spent (usage --all), then stops the sandbox.
# Exits 0 when the demo ran, even though the batch reported failed rows.
# Run from anywhere: bash scripts/demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== set-up: Debian packages (only those missing) and the C core"
bash scripts/setup.sh

fm() { lua5.4 bin/flowmusic "$@"; }

dir=$(mktemp -d "${TMPDIR:-/tmp}/flowmusic-demo.XXXXXX")
cleanup() {
    lua5.4 bin/flowmusic sandbox stop --dir "$dir" >/dev/null 2>&1 || true
    rm -rf "$dir"
}
trap cleanup EXIT

echo "== starting the sandbox"
url=$(fm sandbox start --dir "$dir" 2>/dev/null | tail -n 1)
[[ $url == http* ]] || { echo "demo: the sandbox did not start" >&2; exit 1; }
echo "sandbox at $url"
export FLOWMUSIC_BASE_URL=$url
export USEAPI_TOKEN=user:1-sandbox   # the sandbox's default API token
# The demo's own used-token store and apply lock: a second demo re-adds the same made-up
# tokens, which a real store would rightly refuse.
export FLOWMUSIC_STATE_DIR=$dir/state
# Token files must not be readable by others (flowmusic refuses them); git checks them out 0644.
chmod 600 examples/tokens/*.txt

echo
echo "== adding accounts (refresh tokens are read from files and never printed)"
fm accounts add --refresh-token-file examples/tokens/alice.txt --max-jobs 2 >/dev/null
fm accounts add --refresh-token-file examples/tokens/bob.txt >/dev/null
fm accounts list

echo
echo "== flowmusic batch examples/batch.csv"
echo "   (rows 8 and 9 fail on purpose: an expired refresh token and an unknown account)"
status=0
fm batch examples/batch.csv --concurrency 4 || status=$?
echo "(batch exit status $status: 1 means some operations failed, as intended here)"

echo
echo "== flowmusic accounts list"
fm accounts list

echo
echo "== flowmusic usage alice@example.com"
fm usage alice@example.com

echo
echo "== declarative fleet: examples/fleet.csv says which accounts should exist, and how"
echo "   (frank's refresh token expires: his account falls into error state)"
fm accounts add --refresh-token-file examples/tokens/frank-broken.txt >/dev/null
echo "== flowmusic plan examples/fleet.csv"
fm plan examples/fleet.csv
echo
echo "== flowmusic apply examples/fleet.csv --yes"
fm apply examples/fleet.csv --yes
echo
echo "== flowmusic plan examples/fleet.csv --detailed-exitcode (0: nothing left to do)"
fm plan examples/fleet.csv --detailed-exitcode

echo
echo "== flowmusic status --min-credits 50 (every account's health; exit 1 when one needs attention)"
status=0
fm status --min-credits 50 || status=$?
echo "(status exit status $status)"

echo
echo "== flowmusic usage --all --chart (what the fleet spent: per day, account, type and song)"
fm usage --all --chart

echo
echo "== stopping the sandbox"
