# syntax=docker/dockerfile:1
# The operator image: vrouter-operator, plus the agent binary and .deb it installs into router
# VMs over the QEMU guest agent (chart value qga.agentBinary, operator flag --agent-binary).
#
#   docker build -t ghcr.io/kojuro/vrouter-operator:0.1.0 .
#
# BuildKit (the default builder) is needed for the cache mounts. See docs/install.md.

ARG RUST_VERSION=1.89

FROM rust:${RUST_VERSION}-bookworm AS builder
# cargo-deb builds the agent's Debian package exactly as CI does (.ci/run).
ARG CARGO_DEB_VERSION=3.8.0
RUN cargo install cargo-deb --version "${CARGO_DEB_VERSION}" --locked
WORKDIR /src
COPY . .
# Cargo's registry and target directory are cache mounts (kept between builds, not in the
# image), so the artifacts are copied out within the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p vrouter-operator -p vrouter-agent \
    && cargo deb -p vrouter-agent --locked --no-build --output target/debian/vrouter-agent.deb \
    && dpkg-deb --info target/debian/vrouter-agent.deb >/dev/null \
    && mkdir -p /out \
    && cp target/release/vrouter-operator target/release/vrouter-agent target/debian/vrouter-agent.deb /out/

# glibc, libgcc and CA certificates, no shell, no package manager; runs as uid 65532.
FROM gcr.io/distroless/cc-debian12:nonroot
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="vrouter-operator" \
      org.opencontainers.image.description="GitOps operator for VyOS routers (operator, agent binary and .deb)" \
      org.opencontainers.image.source="https://github.com/kojuro/vrouter" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}"
COPY --from=builder --chmod=0755 /out/vrouter-operator /usr/bin/vrouter-operator
COPY --from=builder --chmod=0755 /out/vrouter-agent /usr/share/vrouter/vrouter-agent
COPY --from=builder --chmod=0644 /out/vrouter-agent.deb /usr/share/vrouter/vrouter-agent.deb
USER 65532:65532
# Agent endpoint (gRPC, mTLS), admission webhook (HTTPS), metrics and health (HTTP).
EXPOSE 7443 9443 9464
ENTRYPOINT ["/usr/bin/vrouter-operator"]
CMD ["run"]
