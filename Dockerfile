# swarmgate product image: a static binary FROM scratch (about the size of the binary itself).
#
#   docker build -t swarmgate .
#   docker service create --name swarmgate --mode global \
#     --constraint node.role==manager \
#     --mount type=bind,source=/var/run/docker.sock,target=/var/run/docker.sock,readonly \
#     --publish mode=host,target=80,published=80 --publish mode=host,target=443,published=443 \
#     --network my-overlay \
#     --config source=swarmgate-toml,target=/etc/swarmgate/swarmgate.toml \
#     swarmgate
#
# NOTE on testing: the development and CI machines cannot pull any base image (no registry
# access), so this file is not built there. The real-Swarm tests (tests/swarm_real.rs) build the
# equivalent runtime image FROM scratch around a static binary compiled on the host with the same
# flags as below: see tests/support/images/swarmgate.Dockerfile and tests/support/swarm.rs.
#
# Runtime layout (the same in both images):
#   /usr/local/bin/swarmgate                  static binary (glibc, +crt-static)
#   /etc/ssl/certs/ca-certificates.crt        CA roots for ACME directories and https upstreams
#   /etc/swarmgate/swarmgate.toml             configuration (a default is baked in; mount your
#                                             own, e.g. as a Swarm config, to replace it)
#   /var/lib/swarmgate                        working directory, so the default `storage`
#                                             (certificates, ACME account) lands in a volume-able place
# It runs as root because it binds 80/443 and talks to the Docker socket; the image holds nothing
# but the binary, the CA bundle and the config.

ARG RUST_VERSION=1.85

FROM rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
# Dependencies first, in their own layer: rebuilt only when the manifests (or benches, which the
# manifest names) change. The real sources may carry older mtimes than the stub build, hence
# the `touch` below.
COPY Cargo.toml Cargo.lock ./
COPY benches benches
RUN mkdir -p src \
 && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
 && RUSTFLAGS='-C target-feature=+crt-static' \
    cargo build --release --locked --target "$(uname -m)-unknown-linux-gnu" --bin swarmgate \
 && rm -rf src
COPY src src
COPY config config
RUN touch src/lib.rs src/main.rs \
 && RUSTFLAGS='-C target-feature=+crt-static' \
    cargo build --release --locked --target "$(uname -m)-unknown-linux-gnu" --bin swarmgate \
 && mkdir -p /out/bin /out/etc /out/data \
 && cp "target/$(uname -m)-unknown-linux-gnu/release/swarmgate" /out/bin/swarmgate \
 && /out/bin/swarmgate version \
 && printf '%s\n' \
    '# Default configuration of the swarmgate image: plain HTTP on :80, routes from Swarm labels.' \
    '# Mount your own file here (e.g. a Swarm config) for HTTPS/ACME and file routes.' \
    '[listen]' \
    'http = "0.0.0.0:80"' \
    '# /readyz here is what `swarmgate healthcheck` (the HEALTHCHECK below) asks.' \
    'admin = "127.0.0.1:2019"' \
    '' \
    '[docker]' \
    'enabled = "auto"' \
    > /out/etc/swarmgate.toml \
 && /out/bin/swarmgate check --config /out/etc/swarmgate.toml

FROM scratch
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /out/bin/swarmgate /usr/local/bin/swarmgate
COPY --from=build /out/etc/swarmgate.toml /etc/swarmgate/swarmgate.toml
COPY --from=build /out/data /var/lib/swarmgate
WORKDIR /var/lib/swarmgate
EXPOSE 80 443
STOPSIGNAL SIGTERM
# No curl in a scratch image: the binary asks its own admin listener's /readyz (the address comes
# from the config; a mounted config without `listen.admin` makes the check fail, naming the key).
HEALTHCHECK --interval=10s --timeout=5s --start-period=10s --retries=3 \
  CMD ["/usr/local/bin/swarmgate", "healthcheck", "--config", "/etc/swarmgate/swarmgate.toml"]
ENTRYPOINT ["/usr/local/bin/swarmgate", "run", "--config", "/etc/swarmgate/swarmgate.toml"]
