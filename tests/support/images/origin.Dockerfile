# Test origin image for tests/swarm_real.rs.
#
# Built FROM scratch because the test machine cannot pull any base image. The build context is a
# temp dir holding the statically linked `test_origin` example (see examples/test_origin.rs).
# VERSION is baked in so that v1 and v2 images differ in ID, which is what a rolling update
# (`docker service update --image sha256:…`) needs.
FROM scratch
ARG VERSION=v1
ENV VERSION=${VERSION} PORT=8080
COPY test_origin /test_origin
EXPOSE 8080
ENTRYPOINT ["/test_origin"]
