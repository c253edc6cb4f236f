#!/usr/bin/env bash
# What durability costs: `custos ingest` of the same synthetic events with
# fsync on (the default) and off (`store.fsync = false`, never for
# production), alternating, in one run; at the default flush size and at a
# ten times smaller one (more flushes, so more fsyncs per event):
#
#   benches/durability.sh BINARY [EVENTS] [ROUNDS]
#
# Prints events/s per run, then per flush size the medians and the ratio
# off/on (the issue's target: fsync on within 20% of off).
set -euo pipefail
bin=$1 events=${2:-1000000} rounds=${3:-3}
source "$(dirname "${BASH_SOURCE[0]}")/ingest-rate.sh"
bench_input durability "$bin" "$events"
run() { # fsync flush_rows
  echo "$1 $2 $(ingest_rate "$bin" "$work/in.jsonl" "$work/store" \
    CUSTOS_STORE_FSYNC="$1" CUSTOS_STORE_FLUSH_ROWS="$2")"
}
results=()
for r in $(seq 1 "$rounds"); do
  for rows in 50000 5000; do
    results+=("$(run true "$rows")")
    results+=("$(run false "$rows")")
  done
done
printf 'fsync flush_rows events/s\n'
printf '%s\n' "${results[@]}"
printf '%s\n' "${results[@]}" | python3 -c '
import sys, statistics
rows = [l.split() for l in sys.stdin if l.strip()]
for size in sorted({r[1] for r in rows}, key=int, reverse=True):
    med = {f: statistics.median(int(r[2]) for r in rows if r[0] == f and r[1] == size) for f in ("true", "false")}
    print("flush_rows %s: fsync on %.0f events/s, off %.0f events/s; on/off = %.3f (on takes %+.1f%% time per event)"
          % (size, med["true"], med["false"], med["true"] / med["false"], 100 * (med["false"] / med["true"] - 1)))
'
