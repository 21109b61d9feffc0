//! Hot-path benchmarks: route lookup, balancer pick, and a full in-process round trip
//! (client → swarmgate → origin over loopback).

use std::collections::BTreeSet;
use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use http_body_util::Full;
use swarmgate::admin::metrics::Metrics;
use swarmgate::model::table::{normalize_host, Lookup, RequestFacts};
use swarmgate::model::*;
use swarmgate::proxy::balancer::{EndpointRegistry, PickContext, UpstreamGroup};

fn specs(hosts: usize) -> Vec<RouteSpec> {
    let mut out = Vec::new();
    for i in 0..hosts {
        let ep = Endpoint::fixed(SocketAddr::from(([10, 0, (i / 250) as u8, (i % 250) as u8 + 1], 8080)));
        let host = if i % 10 == 9 { format!("*.tenant{i}.example.com") } else { format!("svc{i}.example.com") };
        let mut root = RouteSpec::proxy(
            format!("r{i}"),
            Provenance::Builtin,
            vec![host.clone()],
            UpstreamSpec::new(UpstreamTarget::Static(vec![ep.clone()])),
        );
        root.path = PathMatch::any();
        let mut api = root.clone();
        api.id = format!("r{i}-api");
        api.path = PathMatch::Prefix("/api/v1".into());
        out.push(root);
        out.push(api);
    }
    out
}

fn lookup(c: &mut Criterion) {
    let mut g = c.benchmark_group("route_lookup");
    for hosts in [10usize, 10_000] {
        let registry = EndpointRegistry::new();
        let metrics = Metrics::new();
        let table = compile(
            &specs(hosts),
            vec![],
            &CompileOptions {
                registry: &registry,
                states: &swarmgate::proxy::route_state::RouteStates::new(),
                metrics: &metrics,
                static_cert_names: &BTreeSet::new(),
                generation: 1,
            },
        );
        let headers = http::HeaderMap::new();
        let exact = format!("svc{}.example.com", hosts / 2);
        let wild = format!("shop.tenant{}.example.com", hosts - 1);
        for (name, host, path) in [
            ("exact_api", exact.as_str(), "/api/v1/users/42"),
            ("wildcard_root", wild.as_str(), "/index.html"),
            ("unknown", "nobody.example.net", "/"),
        ] {
            g.bench_with_input(BenchmarkId::new(name, hosts), &(host, path), |b, (host, path)| {
                b.iter(|| {
                    let host = normalize_host(host);
                    let facts = RequestFacts {
                        method: &http::Method::GET,
                        host: &host,
                        path,
                        query: None,
                        headers: &headers,
                        client_ip: None,
                    };
                    matches!(table.lookup(&host, &facts, false), Lookup::Route(_))
                })
            });
        }
    }
    g.finish();
}

fn pick(c: &mut Criterion) {
    let mut g = c.benchmark_group("balancer_pick");
    for n in [3u16, 50] {
        let registry = EndpointRegistry::new();
        let eps: Vec<Endpoint> = (0..n).map(|i| Endpoint::fixed(SocketAddr::from(([10, 0, 0, 1], 8000 + i)))).collect();
        for policy in [LbPolicy::P2c, LbPolicy::RoundRobin, LbPolicy::LeastConn, LbPolicy::IpHash] {
            let group = UpstreamGroup::new(&registry, &eps, policy, UpstreamScheme::Http, true, None, None);
            let ctx = PickContext { client_ip: Some("192.0.2.1".parse().unwrap()), sticky: None, hash: None };
            g.bench_with_input(BenchmarkId::new(format!("{policy:?}"), n), &group, |b, group| {
                b.iter(|| group.pick(&ctx, 0))
            });
        }
    }
    g.finish();
}

async fn origin() -> SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (s, _) = l.accept().await.unwrap();
            let _ = s.set_nodelay(true);
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(|_req| async {
                    Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from_static(b"hello from origin"))))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    addr
}

fn round_trip(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let (client, url) = rt.block_on(async {
        let origin = origin().await;
        let cfg = format!(
            "[listen]\nhttp = \"127.0.0.1:0\"\n[log]\naccess = false\n[[routes]]\nhosts = [\"app.example.com\"]\nupstreams = [\"{origin}\"]\n"
        );
        let cfg = swarmgate::config::Config::parse(&cfg, std::path::Path::new("bench.toml")).unwrap();
        let running = swarmgate::app::start(cfg, None).await.unwrap();
        let url: http::Uri = format!("http://{}/", running.http_addr.unwrap()).parse().unwrap();
        std::mem::forget(running);
        let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http::<Full<Bytes>>();
        (client, url)
    });
    c.bench_function("round_trip_http1_keepalive", |b| {
        b.to_async(&rt).iter(|| async {
            let req = http::Request::get(url.clone())
                .header("host", "app.example.com")
                .body(Full::new(Bytes::new()))
                .unwrap();
            let resp = client.request(req).await.unwrap();
            assert_eq!(resp.status(), 200);
            http_body_util::BodyExt::collect(resp.into_body()).await.unwrap();
        })
    });
}

criterion_group!(benches, lookup, pick, round_trip);
criterion_main!(benches);
