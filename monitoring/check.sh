#!/usr/bin/env bash
# Check the monitoring pack with promtool: the rule files parse, and every alert fires (and
# stays quiet) where its tests say. No network. Called by scripts/test.sh.
set -euo pipefail
cd "$(dirname "$0")"
command -v promtool >/dev/null || { echo "promtool is missing (apt-get install prometheus)" >&2; exit 1; }
promtool check rules alerts.yml rules.yml
promtool test rules tests/*.yml
echo "monitoring pack: rules valid, rule tests pass"
