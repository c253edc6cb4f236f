# Sourced by the benchmark scripts, after `set -euo pipefail`.
# bench_input NAME BINARY EVENTS: a temporary folder `$work` (deleted on
# exit) holding `$work/in.jsonl`, EVENTS synthetic events (seed 11).
bench_input() {
  work=$(mktemp -d "/tmp/custos-$1-XXXX")
  trap 'rm -rf "$work"' EXIT
  "$2" synth --events "$3" --seed 11 --out "$work/in.jsonl"
}

# ingest_rate BINARY INPUT STORE [VAR=VALUE...]: ingests INPUT into a fresh
# STORE (demo key, no HTTP; extra CUSTOS_* settings as arguments) and
# prints the events/s `custos ingest` reports.
ingest_rate() {
  local bin=$1 input=$2 store=$3
  shift 3
  rm -rf "$store"
  local out
  out=$(env CUSTOS_PRIVACY_DEMO_KEY=true CUSTOS_STORE_PATH="$store" CUSTOS_HTTP_ENABLED=false \
    CUSTOS_LOG=warn "$@" "$bin" ingest "$input" 2>&1 | grep '^ingested')
  sed -E 's/.*\(([0-9]+)\/s\).*/\1/' <<<"$out"
}
