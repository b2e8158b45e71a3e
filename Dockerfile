# The outflow image for agent and controller, for a registry's build (`docker build -t REGISTRY/outflow:TAG .`).
# `cargo xtask image` builds the same image without a daemon; its runtime packages are
# RUNTIME_PACKAGES in xtask/src/image.rs, and a test fails when the list below drifts from it.

FROM rust:1-bookworm AS build
# clang and libbpf-dev compile the eBPF programs (ebpf/build.rs); the binary embeds the object.
RUN apt-get update && apt-get install -y --no-install-recommends clang llvm libbpf-dev libpcap-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p outflow && cp target/release/outflow /outflow

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends libpcap0.8 ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && mkdir -p /var/lib/outflow && chown 65532:65532 /var/lib/outflow
COPY --from=build /outflow /usr/local/bin/outflow
# The controller's user; the DaemonSet runs the agent as 0 with four capabilities.
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/outflow"]
