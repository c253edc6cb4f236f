#!/usr/bin/env bash
# Starts or stops a single-node Apache Kafka broker (KRaft) on 127.0.0.1 for
# custos's integration tests. The broker's jars come from Maven Central
# (scripts/kafka/pom.xml) and are cached in $CUSTOS_TEST_KAFKA_DIR (default:
# .kafka in the repository, ignored by git). The broker's log goes to
# $CUSTOS_TEST_KAFKA_DATA (default: $CUSTOS_TEST_KAFKA_DIR/data); the latency
# benchmark puts it on a tmpfs, where a production broker's disk is not
# custos's (docs/performance.md).
#
#   scripts/kafka.sh start    fetch (first time), format, start, wait until it answers
#   scripts/kafka.sh stop     stop the broker this script started
#   scripts/kafka.sh status   exit 0 when a broker answers on the port
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
KAFKA_DIR="${CUSTOS_TEST_KAFKA_DIR:-$ROOT/.kafka}"
PORT="${CUSTOS_TEST_KAFKA_PORT:-9092}"
CONTROLLER_PORT="${CUSTOS_TEST_KAFKA_CONTROLLER_PORT:-9093}"
LIBS="${CUSTOS_TEST_KAFKA_LIBS:-$KAFKA_DIR/libs}"
DATA="${CUSTOS_TEST_KAFKA_DATA:-$KAFKA_DIR/data}"
PIDFILE="$KAFKA_DIR/broker.pid"
LOG="$KAFKA_DIR/broker.log"

answers() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

fetch() {
  if [ -f "$LIBS/.complete" ]; then return; fi
  echo "kafka.sh: fetching the Kafka broker from Maven Central into $LIBS" >&2
  mkdir -p "$LIBS"
  mvn -q -B -f "$ROOT/scripts/kafka/pom.xml" dependency:copy-dependencies \
    -DoutputDirectory="$LIBS" >&2
  touch "$LIBS/.complete"
}

configure() {
  mkdir -p "$DATA"
  cat > "$KAFKA_DIR/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$PORT,CONTROLLER://127.0.0.1:$CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$DATA
num.partitions=3
auto.create.topics.enable=true
offsets.topic.replication.factor=1
offsets.topic.num.partitions=6
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
log.retention.hours=24
PROPS
  if [ ! -f "$DATA/meta.properties" ]; then
    local cluster_id
    cluster_id="$(java -cp "$LIBS/*" kafka.tools.StorageTool random-uuid 2>/dev/null | tail -1)"
    java -cp "$LIBS/*" kafka.tools.StorageTool format -t "$cluster_id" \
      -c "$KAFKA_DIR/server.properties" >"$KAFKA_DIR/format.log" 2>&1 || {
        cat "$KAFKA_DIR/format.log" >&2; exit 1; }
  fi
}

start() {
  if answers "$PORT"; then
    echo "kafka.sh: a broker already answers on 127.0.0.1:$PORT (its log is where it was started with; stop it to move it to $DATA)" >&2
    return 0
  fi
  command -v java >/dev/null || { echo "kafka.sh: java is required" >&2; exit 1; }
  fetch
  configure
  nohup java -Xms256m -Xmx768m -XX:+UseG1GC \
    -Dorg.slf4j.simpleLogger.defaultLogLevel=warn \
    -cp "$LIBS/*" kafka.Kafka "$KAFKA_DIR/server.properties" >"$LOG" 2>&1 &
  echo $! >"$PIDFILE"
  for _ in $(seq 1 240); do
    if answers "$PORT"; then
      echo "kafka.sh: broker up on 127.0.0.1:$PORT (pid $(cat "$PIDFILE"), log in $DATA)" >&2
      return 0
    fi
    if ! kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
      echo "kafka.sh: the broker exited; its log:" >&2; tail -50 "$LOG" >&2; exit 1
    fi
    sleep 0.5
  done
  echo "kafka.sh: the broker did not answer within 120 s; its log:" >&2
  tail -50 "$LOG" >&2
  exit 1
}

stop() {
  if [ -f "$PIDFILE" ]; then
    local pid; pid="$(cat "$PIDFILE")"
    if kill -0 "$pid" 2>/dev/null; then
      kill "$pid"
      for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
      kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$PIDFILE"
    echo "kafka.sh: broker stopped" >&2
  fi
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) answers "$PORT" ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
