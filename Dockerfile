# syntax=docker/dockerfile:1
#
# Image of `coder server`. Build and run (see docs/deploy.md):
#
#   docker build -t coder-rs .
#   docker run --rm -p 8080:8080 -v coder-cache:/home/coder/.cache/coder coder-rs
#
# Without CODER_PG_CONNECTION_URL the server starts the built-in PostgreSQL (the Debian `postgresql`
# package below) with its data under the cache directory, so keep that directory on a volume.

# ---- build ----------------------------------------------------------------------------------------
FROM rust:1-bookworm AS builder
WORKDIR /src
COPY . .
# Optional: the commit stamped into `coder --version` (docker build --build-arg CODER_BUILD_COMMIT=...);
# the build reads it from the environment, empty means none.
ARG CODER_BUILD_COMMIT=""
# The release build of docs/install.md (`cargo build --locked --release`), of the binary only. The
# cache mounts (BuildKit) keep the crate registry and the target directory between builds; the binary
# is copied out of the mounted target directory because the mount is not part of the image.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --locked --release --bin coder \
    && cp target/release/coder /usr/local/bin/coder

# ---- runtime --------------------------------------------------------------------------------------
FROM debian:bookworm-slim

LABEL org.opencontainers.image.title="coder" \
      org.opencontainers.image.description="A Rust re-implementation of Coder's control plane (coder server)" \
      org.opencontainers.image.licenses="AGPL-3.0-only"

# PostgreSQL's server binaries (initdb, pg_ctl, postgres under /usr/lib/postgresql/15/bin) for the
# built-in database, and the CA bundle. The package would create and start a "main" cluster on
# install; it is not used (the server runs its own cluster in the cache directory as user coder), so
# createcluster.d turns that off. Versions are not pinned: the image follows bookworm's security updates.
# hadolint ignore=DL3008
RUN mkdir -p /etc/postgresql-common/createcluster.d \
    && echo "create_main_cluster = false" > /etc/postgresql-common/createcluster.d/coder.conf \
    && apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        ca-certificates \
        postgresql \
    && rm -rf /var/lib/apt/lists/*

# The same user as Coder's image: coder, uid and gid 1000.
RUN groupadd --gid 1000 coder \
    && useradd --uid 1000 --gid 1000 --create-home --home-dir /home/coder --shell /bin/bash coder \
    && mkdir -p /home/coder/.cache/coder \
    && chown -R 1000:1000 /home/coder

COPY --from=builder /usr/local/bin/coder /opt/coder

# Listen on all interfaces inside the container (Coder's chart sets the same address); Prometheus is
# still off until CODER_PROMETHEUS_ENABLE=true.
ENV CODER_HTTP_ADDRESS=0.0.0.0:8080 \
    CODER_PROMETHEUS_ADDRESS=0.0.0.0:2112 \
    CODER_CACHE_DIRECTORY=/home/coder/.cache/coder

# Numeric, so that Kubernetes' runAsNonRoot can verify it without a runAsUser.
USER 1000:1000
WORKDIR /home/coder
EXPOSE 8080 2112

# `coder` has no health-check subcommand and the slim image has no curl. Rather than adding curl (and
# its libraries, a frequent source of CVEs) only for this, the check uses bash's /dev/tcp (bash is an
# Essential package in Debian): one HTTP/1.0 GET /healthz on the port of CODER_HTTP_ADDRESS, healthy on
# status 200. Docker kills it after --timeout.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["/bin/bash", "-c", "exec 3<>\"/dev/tcp/127.0.0.1/${CODER_HTTP_ADDRESS##*:}\" && printf 'GET /healthz HTTP/1.0\\r\\nHost: localhost\\r\\n\\r\\n' >&3 && read -r -t 5 _ status _ <&3 && [ \"$status\" = 200 ]"]

ENTRYPOINT ["/opt/coder", "server"]
