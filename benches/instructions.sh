#!/usr/bin/env bash
# User-space instructions per proxied request, counted by callgrind: a repeatable measure of
# the hot path's cost (wall-clock figures on a shared 2-core machine move by ±8 % run to run;
# this one moves by well under 1 %). Kernel work (the four socket calls per request) is not
# counted.
#
#   cargo build --release
#   benches/instructions.sh            # needs valgrind, wrk and nginx (apt-get install -y ...)
#   MODE=h2 benches/instructions.sh    # the same over h2c (prior knowledge), with h2load
#
# swarmgate runs with one serving runtime in front of an nginx origin; wrk sends keep-alive
# requests for DUR seconds (default 20) over 8 connections; the instructions executed by the
# runtime's threads are divided by the number of requests served.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
bin=${SWARMGATE_BIN:-$here/target/release/swarmgate}
for t in valgrind callgrind_annotate wrk nginx $([ "${MODE:-h1}" = h2 ] && echo h2load); do
  command -v "$t" >/dev/null || { echo "missing $t" >&2; exit 2; }
done
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

cat >"$work/origin.conf" <<EOF
worker_processes 1;
daemon off;
pid $work/origin.pid;
error_log /dev/null crit;
events { worker_connections 1024; }
http {
  access_log off;
  keepalive_requests 1000000;
  server { listen 127.0.0.1:19001; location / { return 200 "hello from backend\n"; } }
}
EOF
cat >"$work/swarmgate.toml" <<EOF
[listen]
http = "127.0.0.1:19104"
workers = 1

[log]
access = false
level = "warn"

[docker]
enabled = false

[[routes]]
hosts = ["app.example.com"]
upstreams = ["127.0.0.1:19001"]
EOF
nginx -c "$work/origin.conf" & pids+=($!)
valgrind --tool=callgrind --callgrind-out-file="$work/callgrind.out" "$bin" run --config "$work/swarmgate.toml" \
  >"$work/swarmgate.log" 2>&1 & pids+=($!)
# Start-up under valgrind is slow (the TLS library seeds its entropy pool instruction by instruction).
for _ in $(seq 60); do
  curl -s -o /dev/null -H 'Host: app.example.com' http://127.0.0.1:19104/ && break
  sleep 1
done
if [ "${MODE:-h1}" = h2 ]; then
  # h2c with prior knowledge: 8 connections, 10 streams in flight on each.
  requests=$(h2load -t1 -c8 -m10 -D"${DUR:-20}" -H ':authority: app.example.com' http://127.0.0.1:19104/ |
    awk '/^status codes:/{print $3}')
else
  requests=$(wrk -t1 -c8 -d"${DUR:-20}s" -H 'Host: app.example.com' http://127.0.0.1:19104/ | awk '/requests in/{print $1}')
fi
if [ -z "$requests" ] || [ "$requests" -eq 0 ]; then
  echo "no requests were served (ports 19001/19104 busy?); swarmgate said:" >&2
  cat "$work/swarmgate.log" >&2
  exit 1
fi
kill -INT "${pids[1]}"
wait "${pids[1]}" 2>/dev/null || true
# The warm-up request above is counted too; it is one among hundreds of thousands.
serving=$(callgrind_annotate --inclusive=yes --auto=no "$work/callgrind.out" 2>/dev/null |
  awk '!found && /pthread_create.c:start_thread/ {gsub(",", "", $1); print $1; found = 1}')
echo "requests=$requests serving_thread_instructions=$serving per_request=$((serving / (requests + 1)))"
# KEEP=file keeps the profile for callgrind_annotate.
if [ -n "${KEEP:-}" ]; then cp "$work/callgrind.out" "$KEEP"; fi
