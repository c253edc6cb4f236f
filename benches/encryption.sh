#!/usr/bin/env bash
# What encryption at rest costs: `custos ingest` of the same synthetic
# events into a plaintext store and into an encrypted one
# (`store.encryption_key`), alternating, then `custos verify` of each:
#
#   benches/encryption.sh BINARY [EVENTS] [ROUNDS]
set -euo pipefail
bin=$1 events=${2:-1000000} rounds=${3:-3}
source "$(dirname "${BASH_SOURCE[0]}")/ingest-rate.sh"
bench_input encryption "$bin" "$events"
key=$("$bin" keygen)
verify_rate() { # store [key]
  env CUSTOS_STORE_ENCRYPTION_KEY="${2:-}" "$bin" verify "$1" | sed -nE 's/.*\(([0-9]+) rows\/s\).*/\1/p'
}
for r in $(seq 1 "$rounds"); do
  echo "plain ingest $(ingest_rate "$bin" "$work/in.jsonl" "$work/plain") events/s, verify $(verify_rate "$work/plain") rows/s, $(du -sb "$work/plain/events" | cut -f1) bytes of events segments"
  echo "encrypted ingest $(ingest_rate "$bin" "$work/in.jsonl" "$work/enc" CUSTOS_STORE_ENCRYPTION_KEY="$key") events/s, verify $(verify_rate "$work/enc" "$key") rows/s, $(du -sb "$work/enc/events" | cut -f1) bytes of events segments"
done
