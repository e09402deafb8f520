# syntax=docker/dockerfile:1
# Multi-stage build: a full Rust toolchain to compile, a small Debian runtime to run.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock rustfmt.toml ./
# .cargo/config.toml: the options SQLite is compiled with (see the file).
COPY .cargo ./.cargo
COPY vendor ./vendor
COPY migration ./migration
COPY sqlite-busy ./sqlite-busy
COPY malloc-tune ./malloc-tune
COPY templates ./templates
COPY src ./src
RUN cargo build --release --locked --bin turumba && strip target/release/turumba

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates tzdata \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /data turumba \
    && mkdir -p /data /app/config && chown turumba /data
COPY --from=build /src/target/release/turumba /usr/local/bin/turumba
COPY config/default.toml /app/config/default.toml
WORKDIR /app
# glibc's malloc with fixed mmap/trim thresholds (instead of its sliding ones): a 100,000-recipient send
# on SQLite peaks at 95 MiB instead of 126-130 MiB, ~8 % slower (BENCHMARKS.md). Unset them to trade back.
ENV TURUMBA_DATA_DIR=/data \
    TURUMBA_LOG_FORMAT=json \
    TURUMBA_BIND=0.0.0.0:8080 \
    MALLOC_MMAP_THRESHOLD_=131072 \
    MALLOC_TRIM_THRESHOLD_=131072
VOLUME ["/data"]
EXPOSE 8080
USER turumba
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 CMD ["turumba", "healthcheck"]
ENTRYPOINT ["turumba"]
CMD ["serve"]
