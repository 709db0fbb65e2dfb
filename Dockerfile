# syntax=docker/dockerfile:1
#
# One image for every Sluice service and the CLI:
#   /usr/local/bin/sluice-broker, sluice-controller, sluice-coordinator, sluice
# Example configuration (deploy/config/*.yaml) is in /etc/sluice; data goes to
# /var/lib/sluice. The image runs as the non-root user sluice (uid/gid 10001)
# and has no ENTRYPOINT: the command names the binary, for example
#   docker run --rm sluice:dev sluice --help
#   docker run --rm sluice:dev sluice-broker --config /etc/sluice/broker.yaml
#
# Build: docker build -t sluice:dev .      (docs/deploy.md; docker compose builds it too)

ARG RUST_VERSION=1
ARG DEBIAN_RELEASE=bookworm

# ---- builder: release binaries ----------------------------------------------
FROM rust:${RUST_VERSION}-${DEBIAN_RELEASE} AS builder
# protoc: etcd-client's build script compiles etcd's protos with it (our own
# protos under proto/ are compiled by protox, in pure Rust).
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends protobuf-compiler \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY proto ./proto
COPY crates ./crates
# The cache mounts keep the crates.io registry and the target directory between
# builds (BuildKit), so a rebuild after a source change recompiles only our crates.
# target/ lives in a cache mount, so the binaries are copied out to /out.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked \
        -p sluice-broker -p sluice-controller -p sluice-coordinator -p sluice-cli \
 && mkdir -p /out \
 && cp target/release/sluice target/release/sluice-broker \
       target/release/sluice-controller target/release/sluice-coordinator /out/

# ---- runtime -----------------------------------------------------------------
FROM debian:${DEBIAN_RELEASE}-slim AS runtime
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/*
# A fixed uid/gid so volume ownership and Kubernetes' runAsUser/fsGroup match.
RUN groupadd --system --gid 10001 sluice \
 && useradd --system --uid 10001 --gid 10001 --no-create-home \
        --home-dir /var/lib/sluice --shell /usr/sbin/nologin sluice \
 && install -d -o 10001 -g 10001 -m 0750 /var/lib/sluice
COPY --from=builder /out/ /usr/local/bin/
COPY deploy/config/ /etc/sluice/
# 9092 broker, 9093 controller, 9094 coordinator (gRPC); 9100 metrics
# (--metrics-listen 0.0.0.0:9100).
EXPOSE 9092 9093 9094 9100
# A named volume mounted here starts out owned by sluice (Docker copies the
# directory's ownership into an empty volume).
VOLUME ["/var/lib/sluice"]
WORKDIR /var/lib/sluice
USER 10001:10001
CMD ["sluice", "--help"]
