# swarmgate image as the real-Swarm tests build it (tests/swarm_real.rs).
#
# Same layout as the product Dockerfile at the repo root, but without the Rust builder stage: the
# test machine cannot pull base images, so the tests compile a static binary on the host
# (`-C target-feature=+crt-static`) and copy it into an image FROM scratch. The build context is a
# temp dir holding `swarmgate` and `ca-certificates.crt` (the host's bundle, or an empty file).
# The configuration is mounted at run time as a Swarm config at the path ENTRYPOINT names.
FROM scratch
COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY swarmgate /usr/local/bin/swarmgate
EXPOSE 80 443
ENTRYPOINT ["/usr/local/bin/swarmgate", "run", "--config", "/etc/swarmgate/swarmgate.toml"]
