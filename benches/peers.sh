#!/usr/bin/env bash
# Starts swarmgate the way ../shared/bench/peers/run.sh expects (PROJECT_CMD):
# app.example.com → 127.0.0.1:9001, plain on 127.0.0.1:9104, TLS on 127.0.0.1:9204 with
# $PROJECT_CERT/$PROJECT_KEY. Access log off, as in the nginx/HAProxy configs it is compared with.
#
#   cargo build --release
#   PROJECT_CMD="$PWD/benches/peers.sh" ../shared/bench/peers/run.sh
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
bin=${SWARMGATE_BIN:-$here/target/release/swarmgate}
cfg=$(mktemp --suffix=.toml)
cat >"$cfg" <<TOML
[listen]
http = "127.0.0.1:9104"
https = "127.0.0.1:9204"

[log]
access = false
level = "warn"

[docker]
enabled = false

[[tls.certificates]]
cert = "${PROJECT_CERT:?}"
key = "${PROJECT_KEY:?}"

[[routes]]
hosts = ["app.example.com"]
upstreams = ["127.0.0.1:9001"]
redirect_https = false
TOML
exec "$bin" run --config "$cfg"
