# Build: cargo build --release --locked; run: a small Debian image as a non-root user.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY actors ./actors
COPY src ./src
COPY benches ./benches
COPY examples ./examples
COPY tests ./tests
RUN cargo build --release --locked --bin ctsync

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates libssl3 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --no-create-home ctsync
COPY --from=build /src/target/release/ctsync /usr/local/bin/ctsync
USER 10001
EXPOSE 8080
ENV CTSYNC_HTTP_ADDR=0.0.0.0:8080
HEALTHCHECK --interval=15s --timeout=5s --start-period=10s --retries=3 CMD ["/usr/local/bin/ctsync", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/ctsync"]
CMD ["run"]
