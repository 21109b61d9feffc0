//! Bounded load through a real swarmgate where one of three endpoints is slow: latency (p50,
//! p90, p99) and each endpoint's share of the traffic, per balancing policy.
//!
//! `cargo bench --bench slow_endpoint` (optional arguments: `CONCURRENCY REQUESTS`, default
//! 16 and 4000 per policy). Everything runs on loopback: two origins answer after 1 ms, one
//! after 15 ms; the client keeps `CONCURRENCY` requests in flight until `REQUESTS` have been
//! answered (after 300 warm-up requests), then the next policy is measured. It stops by
//! itself; a request that takes over 5 s counts as an error.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};

const ORIGINS: [(&str, u64); 3] = [("fast-a", 1), ("fast-b", 1), ("slow", 15)];
const POLICIES: [&str; 4] = ["p2c", "round_robin", "random", "least_conn"];
const WARMUP: usize = 300;

async fn origin(name: &'static str, delay_ms: u64) -> SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let _ = s.set_nodelay(true);
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |_req| async move {
                    tokio::time::sleep(Duration::from_millis(delay_ms)).await;
                    let mut r = hyper::Response::new(Full::new(Bytes::from_static(b"ok")));
                    r.headers_mut().insert("x-origin", http::HeaderValue::from_static(name));
                    Ok::<_, Infallible>(r)
                });
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(s), svc).await;
            });
        }
    });
    addr
}

struct Outcome {
    latencies: Vec<Duration>,
    by_origin: Vec<usize>,
    errors: usize,
}

async fn load(gw: SocketAddr, host: &str, concurrency: usize, requests: usize) -> Outcome {
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let next = Arc::new(AtomicUsize::new(0));
    let out = Arc::new(Mutex::new(Outcome { latencies: Vec::new(), by_origin: vec![0; ORIGINS.len()], errors: 0 }));
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (client, next, out, host) = (client.clone(), next.clone(), out.clone(), host.to_owned());
            tokio::spawn(async move {
                while next.fetch_add(1, Ordering::Relaxed) < WARMUP + requests {
                    let measured = next.load(Ordering::Relaxed) > WARMUP;
                    let req = http::Request::get(format!("http://{gw}/"))
                        .header("host", host.as_str())
                        .body(Empty::new())
                        .unwrap();
                    let t0 = Instant::now();
                    let res = tokio::time::timeout(Duration::from_secs(5), async {
                        let resp = client.request(req).await.ok()?;
                        let origin = resp.headers().get("x-origin").and_then(|v| v.to_str().ok()).map(str::to_owned);
                        resp.into_body().collect().await.ok()?;
                        origin
                    })
                    .await;
                    let took = t0.elapsed();
                    let mut o = out.lock().unwrap();
                    match res.ok().flatten().and_then(|name| ORIGINS.iter().position(|(n, _)| *n == name)) {
                        Some(i) if measured => {
                            o.latencies.push(took);
                            o.by_origin[i] += 1;
                        }
                        Some(_) => {}
                        None => o.errors += 1,
                    }
                }
            })
        })
        .collect();
    for w in workers {
        w.await.unwrap();
    }
    Arc::try_unwrap(out).ok().unwrap().into_inner().unwrap()
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i].as_secs_f64() * 1e3
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` does not, and then a short run
    // only checks that the bench still works.
    let full = std::env::args().any(|a| a == "--bench");
    let mut args = std::env::args().skip(1).filter(|a| !a.starts_with('-'));
    let concurrency: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(16).clamp(1, 512);
    let default_requests = if full { 4000 } else { 100 };
    let requests: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(default_requests).clamp(1, 1_000_000);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let mut addrs = Vec::new();
        for (name, ms) in ORIGINS {
            addrs.push(origin(name, ms).await);
        }
        let ups: Vec<String> = addrs.iter().map(|a| format!("\"{a}\"")).collect();
        let mut toml = "[listen]\nhttp = \"127.0.0.1:0\"\n[log]\naccess = false\n".to_owned();
        for p in POLICIES {
            toml += &format!("[[routes]]\nhosts = [\"{p}.bench\"]\nupstreams = [{}]\nlb = \"{p}\"\n", ups.join(", "));
        }
        let storage = tempfile::tempdir().unwrap();
        let mut cfg = swarmgate::config::Config::parse(&toml, std::path::Path::new("bench.toml")).unwrap();
        cfg.storage = Some(storage.path().to_owned());
        let running = swarmgate::app::start(cfg, None).await.unwrap();
        let gw = running.http_addr.unwrap();
        println!(
            "one of three endpoints slow ({} ms vs {} ms); {concurrency} in flight, {requests} requests per policy after {WARMUP} warm-up",
            ORIGINS[2].1, ORIGINS[0].1
        );
        println!("{:<12} {:>8} {:>8} {:>8} {:>8}  share fast-a / fast-b / slow  errors", "policy", "p50 ms", "p90 ms", "p99 ms", "max ms");
        for p in POLICIES {
            let mut o = load(gw, &format!("{p}.bench"), concurrency, requests).await;
            o.latencies.sort();
            let total = o.by_origin.iter().sum::<usize>().max(1) as f64;
            let share: Vec<String> = o.by_origin.iter().map(|c| format!("{:5.1}%", *c as f64 * 100.0 / total)).collect();
            println!(
                "{p:<12} {:>8.2} {:>8.2} {:>8.2} {:>8.2}  {}  {}",
                pct(&o.latencies, 0.50),
                pct(&o.latencies, 0.90),
                pct(&o.latencies, 0.99),
                pct(&o.latencies, 1.0),
                share.join(" / "),
                o.errors
            );
        }
        running.shutdown().await;
    });
}
