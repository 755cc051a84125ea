# syntax=docker/dockerfile:1.7
#
# The `switchyard` binary in a small image. Gateway and worker are the same executable,
# chosen by the first argument (`switchyard gateway --config ...`):
#
#   docker build -t switchyard:0.1.0 .
#
# Layers, least to most often changed: the dependencies are compiled from the manifests
# and Cargo.lock alone (the workspace's own crates replaced by empty stand-ins), so
# editing a source file rebuilds only the workspace's crates. With BuildKit (Docker 23+
# by default) the cargo registry is also kept in a cache mount between builds.
#
# Not built where it was written (no container engine there): deploy/README.md.

ARG RUST_IMAGE=rust:1.95-slim-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12

FROM ${RUST_IMAGE} AS build
# make: jemalloc, the binary's allocator, is built from C by tikv-jemalloc-sys (the slim
# image has gcc but no make).
RUN apt-get update \
    && apt-get install -y --no-install-recommends make \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src

# 1. Dependencies. cargo reads the whole workspace to resolve it, so every member's
# manifest is here, each with an empty target file; vendor/ holds the patched
# dependency of `[patch.crates-io]` (vendor/fastwebsockets/PATCHES.md); .cargo/ sets
# jemalloc's compiled-in options.
# scripts/check-dockerfile.py checks these lists against the workspace.
COPY Cargo.toml Cargo.lock ./
COPY .cargo/ .cargo/
COPY protocol/Cargo.toml protocol/
COPY telemetry/Cargo.toml telemetry/
COPY tls/Cargo.toml tls/
COPY broker/Cargo.toml broker/
COPY gateway/Cargo.toml gateway/
COPY worker/Cargo.toml worker/
COPY client/Cargo.toml client/
COPY testkit/Cargo.toml testkit/
COPY vendor/ vendor/
RUN for crate in protocol telemetry tls broker gateway worker client testkit; do \
      mkdir -p "$crate/src" && touch "$crate/src/lib.rs"; \
    done \
    && mkdir -p src && echo 'fn main() {}' > src/main.rs \
    && for t in e2e faults browser security traces; do \
      mkdir -p "tests/$t" && touch "tests/$t/main.rs"; \
    done
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    cargo build --release --locked --bin switchyard

# 2. The sources (.dockerignore keeps target/, node_modules and .git out). cargo judges
# staleness by modification time, and a file from the build context can be older than
# the stand-ins built above: touch the workspace's sources so that all of them are
# compiled for real. The dependencies stay as built in step 1.
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    find src protocol telemetry tls broker gateway worker client testkit -name '*.rs' \
      -exec touch {} + \
    && cargo build --release --locked --bin switchyard \
    && install -D -m 0755 target/release/switchyard /out/switchyard

# distroless/cc: glibc and libgcc_s (all the binary links: rustls with ring, no
# OpenSSL) and CA certificates in /etc/ssl/certs; no shell, no package manager.
FROM ${RUNTIME_IMAGE}
COPY --from=build /out/switchyard /usr/local/bin/switchyard
# A numeric user, so that Kubernetes' runAsNonRoot can check it without /etc/passwd.
USER 10001:10001
# 8443: a gateway's public TLS listener. 9101: a worker's hand-off listener (for
# gateways only). 9464: the admin listener (/metrics, /healthz, /readyz) when
# `admin_listen` or --admin-listen asks for one. Nothing listens unless configured.
EXPOSE 8443 9101 9464
ENTRYPOINT ["/usr/local/bin/switchyard"]
CMD ["--help"]
