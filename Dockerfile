# syntax=docker/dockerfile:1
#
# custos container image.
#
#   docker build -t custos .
#   docker run --rm custos --help
#
# The default command is the production job, `custos run`, reading
# /etc/custos/custos.toml. The image ships a minimal one (below): the store
# in /var/lib/custos (a volume), metrics and health on 0.0.0.0:9464, the
# pseudonym key from the secret file /run/secrets/custos_pseudonym_key, and
# the defaults for everything else (brokers 127.0.0.1:9092, topic
# custos.events). Mount your own file over it, or override single keys with
# CUSTOS_* environment variables (CUSTOS_KAFKA_BROKERS=kafka:9092).
# compose.yaml shows the whole stack.

# ---- build ------------------------------------------------------------------
FROM rust:1-bookworm AS build

# librdkafka (rdkafka-sys) is compiled from source with its own configure
# script; zlib comes from the system. The rust image has the compilers.
RUN apt-get update \
    && apt-get install -y --no-install-recommends pkg-config zlib1g-dev \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /src
# Only what the release build reads: the manifest, the lock file, the code.
COPY Cargo.toml Cargo.lock ./
COPY src ./src

# The registry and target caches survive between builds (BuildKit).
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin custos \
    && install -m 0755 target/release/custos /usr/local/bin/custos

# ---- workload generator -----------------------------------------------------
# custos (for `custos gen`) with kcat and jq, to produce a generated
# workload to Kafka keyed by actor (compose.yaml's `workload` service:
# `docker build --target workload .`).
FROM debian:bookworm-slim AS workload
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates zlib1g kcat jq \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /usr/local/bin/custos /usr/local/bin/custos
ENTRYPOINT ["custos"]
CMD ["--help"]

# ---- runtime (the default target: keep it last) -----------------------------
FROM debian:bookworm-slim AS runtime

RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates zlib1g \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 custos \
    && useradd --system --uid 10001 --gid custos --home-dir /var/lib/custos \
        --shell /usr/sbin/nologin custos \
    && install -d -o custos -g custos -m 0750 /var/lib/custos \
    && install -d -m 0755 /etc/custos

COPY --from=build /usr/local/bin/custos /usr/local/bin/custos
# The shipped SQL detectors (`sql_detectors.dir`).
COPY queries /usr/share/custos/queries
COPY <<'EOF' /etc/custos/custos.toml
# Default configuration of the custos image; see `custos check-config`.
[store]
path = "/var/lib/custos"

[http]
listen = "0.0.0.0:9464"

[privacy]
pseudonym_key_file = "/run/secrets/custos_pseudonym_key"

[sql_detectors]
dir = "/usr/share/custos/queries/detectors"
EOF

USER custos:custos
WORKDIR /var/lib/custos
VOLUME ["/var/lib/custos"]
# Logs as JSON lines on stderr (alerts from a `jsonl` sink with path "-" go
# to stdout).
ENV CUSTOS_LOG_FORMAT=json
EXPOSE 9464

ENTRYPOINT ["custos"]
CMD ["run", "--config", "/etc/custos/custos.toml"]
