#!/usr/bin/env bash
# What erasure and retention cost on a store of synthetic events:
#
#   benches/erasure.sh BINARY [EVENTS]
#
# Ingests EVENTS (default 1,000,000) synthetic events, then times
# `custos erase` of the patient that has the most events, `custos verify`
# before and after, and `custos prune` of the older half of the store
# (by event time), then verify again. Prints seconds and rows for each.
set -euo pipefail
bin=$1 events=${2:-1000000}
work=$(mktemp -d /tmp/custos-erasure-XXXX)
trap 'rm -rf "$work"' EXIT
export CUSTOS_PRIVACY_DEMO_KEY=true CUSTOS_STORE_PATH="$work/store" CUSTOS_HTTP_ENABLED=false CUSTOS_LOG=warn
"$bin" synth --events "$events" --seed 11 --out "$work/in.jsonl"
"$bin" ingest "$work/in.jsonl" 2>&1 | grep '^ingested'
patient=$(grep -o '"patient":"MRN-[0-9]*"' "$work/in.jsonl" | sort | uniq -c | sort -rn \
  | awk 'NR == 1 { sub(/.*:"/, "", $2); sub(/"$/, "", $2); print $2 }')
echo "patient $patient: $(grep -c "\"$patient\"" "$work/in.jsonl") input lines name it"
timed() { # label command...
  local start end
  start=$(date +%s.%N)
  "$@"
  end=$(date +%s.%N)
  printf '%s: %.2f s\n' "$1 $2" "$(echo "$end - $start" | bc)"
}
du -sb "$work/store" | awk '{print "store bytes " $1}'
timed "$bin" verify "$work/store"
timed "$bin" erase --store "$work/store" --patient "$patient" --reason bench
timed "$bin" verify "$work/store"
mid=$("$bin" query --store "$work/store" --format json \
  "select cast(min(time) as bigint) as lo, cast(max(time) as bigint) as hi from events" \
  | python3 -c 'import json, sys, datetime
r = json.loads(sys.stdin.readline())
mid = (r["lo"] + r["hi"]) // 2 // 1_000_000
print(datetime.datetime.fromtimestamp(mid, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S"))')
echo "pruning flushes wholly before ${mid}Z"
timed "$bin" prune --store "$work/store" --before "${mid}Z"
timed "$bin" verify "$work/store"
du -sb "$work/store" | awk '{print "store bytes " $1}'
