# syntax=docker/dockerfile:1.7
#
# identity: container image.
#
#   make sbom && docker build \
#     --build-arg VERSION=$(git describe --tags --always) \
#     --build-arg REVISION=$(git rev-parse HEAD) \
#     --build-arg CREATED=$(date -u +%Y-%m-%dT%H:%M:%SZ) \
#     -t registry.example.com/identity/identity:0.1.0 .
#
# Needs BuildKit (Docker 23+ or `docker buildx`). Stages:
#   chef     -> Rust toolchain + cargo-chef
#   planner  -> recipe.json: the dependency graph only (Cargo.toml/Cargo.lock)
#   builder  -> dependencies built in their own layer (cached until the
#               recipe changes), then the workspace itself
#   runtime  -> distroless cc (glibc, libgcc_s, CA certificates; no shell, no
#               package manager) running as the fixed non-root UID/GID 65532
#
# Both bases are pinned by digest: a tag can be moved to other content, a
# digest cannot, so the same Dockerfile always builds on the same bases.
# Renovate proposes new digests (renovate.json); to check one by hand:
#   docker buildx imagetools inspect docker.io/library/rust:1.95-slim-bookworm
#   docker buildx imagetools inspect gcr.io/distroless/cc-debian12:nonroot

# Build on Debian 12 (bookworm): the runtime's glibc is Debian 12's. The
# Rust version moves together with rust-toolchain.toml.
ARG BUILDER_IMAGE=docker.io/library/rust:1.95-slim-bookworm@sha256:d7482085ff5b415f84dba5647ae71606650bdef00db7aeb69f4b3d170c3e4082
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot@sha256:9dac0a79194e45a7da0158a9c6da57b217585af0786db3845d1f0ec1a0dd182f

# ---------------------------------------------------------------------------
FROM ${BUILDER_IMAGE} AS chef
ARG CARGO_CHEF_VERSION=0.1.76
RUN cargo install --locked cargo-chef --version "${CARGO_CHEF_VERSION}"
WORKDIR /src

# ---------------------------------------------------------------------------
FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json --bin identity

# ---------------------------------------------------------------------------
FROM chef AS builder
# Dependencies only: this layer is reused until Cargo.toml/Cargo.lock change.
COPY --from=planner /src/recipe.json recipe.json
RUN cargo chef cook --release --recipe-path recipe.json --bin identity
# The workspace (protos are compiled by protox in build.rs: no protoc needed).
COPY . .
RUN cargo build --release --locked --package identity --bin identity \
 && install -D -m 0755 target/release/identity /out/identity

# ---------------------------------------------------------------------------
FROM ${RUNTIME_IMAGE} AS runtime
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=1970-01-01T00:00:00Z
ARG SOURCE=""
ARG RUNTIME_IMAGE

LABEL org.opencontainers.image.title="identity" \
      org.opencontainers.image.description="gRPC identity service: tokens (EdDSA/HS256 JWT, rotating refresh tokens), passwords (bcrypt), user profiles" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.base.name="${RUNTIME_IMAGE}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      identity.sbom.path="/sbom.cdx.json" \
      identity.sbom.format="CycloneDX JSON"

# CycloneDX SBOM of the binary's crates, written by `make sbom`.
COPY --chmod=0444 target/sbom/identity.cdx.json /sbom.cdx.json
COPY --from=builder --chmod=0555 /out/identity /usr/local/bin/identity

# Same addresses as the Helm chart: API, plaintext health-only listener.
ENV IDENTITY_LISTEN_ADDR=0.0.0.0:50051 \
    IDENTITY_HEALTH_LISTEN_ADDR=0.0.0.0:50052 \
    IDENTITY_HEALTHCHECK_ADDR=http://127.0.0.1:50052 \
    IDENTITY_LOG_FORMAT=json

# distroless "nonroot": UID/GID 65532. Numeric, so Kubernetes' runAsNonRoot
# can verify it without reading /etc/passwd.
USER 65532:65532
WORKDIR /
EXPOSE 50051 50052 9464
STOPSIGNAL SIGTERM

# Docker/Podman only (Kubernetes uses the chart's native gRPC probes).
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
    CMD ["/usr/local/bin/identity", "healthcheck"]

ENTRYPOINT ["/usr/local/bin/identity"]
CMD ["serve"]
