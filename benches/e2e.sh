#!/usr/bin/env bash
# End-to-end benchmark against the real broker (docs/performance.md,
# "Throughput and latency at the limit"):
#   1. throughput: custos against the bare-consumer floor on the same
#      pre-loaded topic (examples/e2e_bench.rs), at each size given;
#   2. fixed load: detection latency, event produced -> incident in the
#      sink, at a fixed rate (examples/alert_latency.rs).
#
# benches/e2e.sh [SIZES] [RATE] [SECS]
#   SIZES  comma-separated event counts (default 5000000)
#   RATE   offered events/s of the fixed-load run (default 50000)
#   SECS   its duration (default 45: long enough to hold a SQL detector
#          run and the chains' snapshots)
# BROKERS (default 127.0.0.1:9092) and REPEAT (default 1) from the
# environment. Topics are named bench-… and deleted afterwards. For the
# latency figures, start the broker with its log off custos's disk
# (CUSTOS_TEST_KAFKA_DATA=/dev/shm/custos-kafka scripts/kafka.sh start) and
# warm it with one full run: docs/performance.md, "The broker's disk".
set -euo pipefail
cd "$(dirname "$0")/.."
sizes=${1:-5000000}
rate=${2:-50000}
secs=${3:-45}
brokers=${BROKERS:-127.0.0.1:9092}
target=${CARGO_TARGET_DIR:-target}
cargo build --release --bin custos --example e2e_bench --example alert_latency
"$target/release/examples/e2e_bench" --brokers "$brokers" --events "$sizes" --repeat "${REPEAT:-1}"
"$target/release/examples/alert_latency" --brokers "$brokers" --rate "$rate" --secs "$secs"
