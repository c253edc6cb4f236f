#!/usr/bin/env bash
# Ingest cost of the Merkle-tree ledger against ledger v0 (the hash chain
# of the walking skeleton, commit ea48652), in one run, on the same input:
#
#   benches/ledger-append.sh OLD_BINARY NEW_BINARY [EVENTS] [ROUNDS]
#
# Build OLD_BINARY from a worktree of ea48652 with the same CARGO_TARGET_DIR
# (only the custos crate recompiles). Each round ingests the same synthetic
# JSON lines with each binary into a fresh store, alternating, and prints
# events/s; the summary gives the medians and their ratio.
set -euo pipefail
old=$1 new=$2 events=${3:-1000000} rounds=${4:-3}
work=$(mktemp -d /tmp/custos-append-XXXX)
trap 'rm -rf "$work"' EXIT
"$new" synth --events "$events" --seed 7 --out "$work/in.jsonl"
source "$(dirname "${BASH_SOURCE[0]}")/ingest-rate.sh"
run() { # binary label
  echo "$2 $(ingest_rate "$1" "$work/in.jsonl" "$work/store") $(du -sb "$work/store" | cut -f1)"
}
results=()
for r in $(seq 1 "$rounds"); do
  results+=("$(run "$old" v0)")
  results+=("$(run "$new" merkle)")
done
printf '%s\n' "${results[@]}"
printf '%s\n' "${results[@]}" | EVENTS=$events python3 -c '
import os, sys, statistics
rows = [l.split() for l in sys.stdin if l.strip()]
n = int(os.environ["EVENTS"])
med = {k: statistics.median(int(r[1]) for r in rows if r[0] == k) for k in ("v0", "merkle")}
size = {k: statistics.median(int(r[2]) for r in rows if r[0] == k) for k in ("v0", "merkle")}
v0, mk = med["v0"], med["merkle"]
print("median events/s: v0 %.0f, merkle %.0f; merkle takes %+.1f%% time per event" % (v0, mk, 100 * (v0 / mk - 1)))
print("bytes per event: v0 %.1f, merkle %.1f" % (size["v0"] / n, size["merkle"] / n))
'
