#!/usr/bin/env bash
# Memory per idle client connection: RSS of a running swarmgate before and after N clients
# each open a connection and (MODE=h1) send one keep-alive request through a proxied route and
# read its response, (MODE=bare) send nothing, or (MODE=h2c) send the HTTP/2 prior-knowledge
# preface and SETTINGS and read the server's SETTINGS. Then all N sit idle and the RSS growth
# per connection is printed. Bounded: the clients close after measuring, the script stops
# swarmgate and the origin on exit.
#
#   cargo build --release
#   N=10000 MODE=h1 benches/idle_memory.sh
#   BODY_BYTES=32768 N=1000 MODE=h1 benches/idle_memory.sh   # response body size (default 2)
#
# File descriptors: swarmgate caps max_connections at what its open-file limit allows at 3 per
# connection (keeping a tenth in reserve), so N=10000 needs an open-file limit of about 34000
# (10/3 per connection); the client side (one process, N sockets) shares the same limit. Run
# as root, the script raises the hard limit itself when it is lower than that; otherwise run
# it under `prlimit --nofile=70000:70000 -- bash benches/idle_memory.sh` as root.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
bin=${SWARMGATE_BIN:-$here/target/release/swarmgate}
n=${N:-10000}
mode=${MODE:-h1}
case $mode in h1 | bare | h2c) ;; *) echo "MODE must be h1, bare or h2c" >&2; exit 2 ;; esac
need=$(((n + 100) * 10 / 3 + 1))
if [ "$(ulimit -Hn)" != unlimited ] && [ "$(ulimit -Hn)" -lt "$need" ] && [ "$(id -u)" = 0 ]; then
    ulimit -Hn "$need" 2>/dev/null || true
fi
ulimit -n "$(ulimit -Hn)"
if [ "$(ulimit -n)" -lt "$need" ]; then
    echo "N=$n needs an open-file limit of about $need (have $(ulimit -n)); swarmgate would refuse the rest" >&2
    exit 2
fi
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
port_http=${PORT:-9310}
origin_port=$((port_http + 1))
python3 - "$origin_port" "${BODY_BYTES:-2}" >"$work/origin.log" 2>&1 <<'PY' &
import asyncio, sys
BODY = b"o" * int(sys.argv[2])
RESP = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(BODY) + BODY
async def handle(r, w):
    try:
        while True:
            head = await r.readuntil(b"\r\n\r\n")
            w.write(RESP)
            await w.drain()
    except Exception:
        w.close()
async def main():
    s = await asyncio.start_server(handle, "127.0.0.1", int(sys.argv[1]), backlog=4096)
    async with s:
        await s.serve_forever()
asyncio.run(main())
PY
cat >"$work/sg.toml" <<TOML
storage = "$work/data"
[listen]
http = "127.0.0.1:$port_http"
workers = ${WORKERS:-2}
[log]
access = false
level = "warn"
[docker]
enabled = false
[limits]
max_connections = $((n + 100))
idle_timeout = "300s"
[[routes]]
hosts = ["app.test"]
upstreams = ["127.0.0.1:$origin_port"]
TOML
# The origin first: an upstream refusing the first connects is taken out of rotation for a while.
wait_port() {
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "nothing listens on port $1" >&2
    exit 1
}
wait_port "$origin_port"
"$bin" run --config "$work/sg.toml" &
sg=$!
wait_port "$port_http"
python3 - "$port_http" "$n" "$mode" "$sg" <<'PY'
import asyncio, sys, os
port, n, mode, pid = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
def rss():
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1])
REQ = b"GET / HTTP/1.1\r\nHost: app.test\r\n\r\n"
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes.fromhex("000000040000000000")
failed = []
async def one(conns):
    r, w = await asyncio.open_connection("127.0.0.1", port)
    if mode == "h1":
        w.write(REQ); await w.drain()
        head = await r.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            k, _, v = line.partition(b":")
            if k.strip().lower() == b"content-length":
                length = int(v)
        await r.readexactly(length)
        if not head.startswith(b"HTTP/1.1 200"):
            failed.append(head.split(b"\r\n")[0])
    elif mode == "h2c":
        w.write(PREFACE); await w.drain()
        await r.read(9)
    conns.append((r, w))
async def main():
    # warm up: one round of requests so pools and allocator arenas exist
    warm = []
    await asyncio.gather(*(one(warm) for _ in range(50)))
    for _, w in warm: w.close()
    await asyncio.sleep(1)
    before = rss()
    conns = []
    sem = asyncio.Semaphore(100)
    async def limited():
        async with sem:
            await asyncio.wait_for(one(conns), 30)
    await asyncio.gather(*(limited() for _ in range(n)))
    # let swarmgate finish protocol detection, responses and pool bookkeeping
    await asyncio.sleep(3)
    after = rss()
    print(f"mode={mode} connections={len(conns)} rss_before={before}KiB rss_after={after}KiB "
          f"per_connection={(after-before)/len(conns):.1f}KiB non_200={len(failed)} {failed[:1]}")
    for _, w in conns: w.close()
asyncio.run(main())
PY
