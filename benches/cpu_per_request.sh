#!/usr/bin/env bash
# CPU time per proxied request (user + kernel), for swarmgate, nginx and HAProxy in front of the
# same origin, with the configs of ../shared/bench/peers. On a machine where load generator,
# origin and proxy share two cores, requests per second swing by ±8 % from round to round with
# scheduling; the CPU a proxy spends per request does not, and it is what decides throughput
# when the cores are the limit.
#
#   cargo build --release
#   benches/cpu_per_request.sh          # MODES="h1 tls" ROUNDS=2 DUR=8 by default
#
# Needs nginx, haproxy and wrk (apt-get install -y nginx haproxy wrk) and app.example.com ->
# 127.0.0.1 in /etc/hosts (for the TLS mode).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
peers=${PEERS_DIR:-$here/../shared/bench/peers}
bin=${SWARMGATE_BIN:-$here/target/release/swarmgate}
for t in nginx haproxy wrk; do
  command -v "$t" >/dev/null || { echo "missing $t" >&2; exit 2; }
done
[ -f "$peers/proxy-nginx.conf" ] || { echo "peer configs not found in $peers (set PEERS_DIR)" >&2; exit 2; }
D=${DUR:-8}; C=${CONNS:-64}; T=${THREADS:-2}; ROUNDS=${ROUNDS:-2}; MODES=${MODES:-h1 tls}
hz=$(getconf CLK_TCK)
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
for f in backend-nginx.conf proxy-nginx.conf proxy-haproxy.cfg; do sed "s#@DIR@#$peers#g" "$peers/$f" >"$work/$f"; done
nginx -c "$work/backend-nginx.conf" & pids+=($!)
nginx -c "$work/proxy-nginx.conf" & pids+=($!); nginx_pid=$!
(ulimit -n 20000; exec haproxy -f "$work/proxy-haproxy.cfg" -db) >/dev/null 2>&1 & pids+=($!); haproxy_pid=$!
PROJECT_CERT=$peers/cert.pem PROJECT_KEY=$peers/key.pem SWARMGATE_BIN=$bin "$here/benches/peers.sh" \
  >"$work/swarmgate.log" 2>&1 & pids+=($!); swarmgate_pid=$!
sleep 3

# User and system clock ticks of a process and its children (nginx's workers), threads included.
ticks() {
  local all=("$1") u=0 s=0
  mapfile -t -O 1 all < <(pgrep -P "$1" || true)
  all[0]=$1
  for p in "${all[@]}"; do
    read -r pu ps < <(awk '{print $14, $15}' "/proc/$p/stat" 2>/dev/null || echo "0 0")
    u=$((u + pu)); s=$((s + ps))
  done
  echo "$u $s"
}
measure() { # mode name pid port
  local mode=$1 name=$2 pid=$3 port=$4 url out requests
  case $mode in
    h1) url="http://127.0.0.1:$port/" ;;
    tls) url="https://app.example.com:$((port + 100))/" ;;
  esac
  read -r u0 s0 < <(ticks "$pid")
  out=$(wrk -t"$T" -c"$C" -d"${D}s" -H 'Host: app.example.com' "$url" 2>&1)
  read -r u1 s1 < <(ticks "$pid")
  requests=$(awk '/requests in/{print $1}' <<<"$out")
  errors=$(grep -E 'Non-2xx|Socket errors' <<<"$out" | tr -s ' \n' ' ' || true)
  awk -v m="$mode" -v n="$name" -v r="$requests" -v u=$((u1 - u0)) -v s=$((s1 - s0)) -v hz="$hz" -v d="$D" -v e="$errors" \
    'BEGIN { printf "%-4s %-9s rps=%-8d cpu_us_per_request=%.2f (user %.2f, kernel %.2f) %s\n", m, n, r / d, (u + s) * 1e6 / hz / r, u * 1e6 / hz / r, s * 1e6 / hz / r, e }'
}
for round in $(seq "$ROUNDS"); do
  for mode in $MODES; do
    measure "$mode" nginx "$nginx_pid" 9101
    measure "$mode" haproxy "$haproxy_pid" 9102
    measure "$mode" swarmgate "$swarmgate_pid" 9104
  done
done
