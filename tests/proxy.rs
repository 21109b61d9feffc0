//! The data plane over real sockets: routing, forwarding hygiene, balancing, failures, limits.

mod support;

use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Full;
use support::client::{get, raw, send};
use support::gateway::Gateway;
use support::origin::Origin;

fn route(hosts: &str, upstreams: &[&Origin], extra: &str) -> String {
    let ups: Vec<String> = upstreams.iter().map(|o| format!("\"{}\"", o.addr)).collect();
    format!("[[routes]]\nhosts = [{hosts}]\nupstreams = [{}]\n{extra}\n", ups.join(", "))
}

#[tokio::test]
async fn routes_by_host_ignoring_case_port_and_trailing_dot() {
    let a = Origin::start("a").await;
    let b = Origin::start("b").await;
    let gw = Gateway::start(&(route("\"a.example.com\"", &[&a], "") + &route("\"b.example.com\"", &[&b], ""))).await;
    for host in ["a.example.com", "A.EXAMPLE.COM", "a.example.com:8080", "a.example.com."] {
        let r = get(gw.http, host, "/x").await;
        assert_eq!(r.status, StatusCode::OK, "{host}");
        assert_eq!(r.header("x-origin"), Some("a"), "{host}");
    }
    assert_eq!(get(gw.http, "b.example.com", "/").await.header("x-origin"), Some("b"));
}

#[tokio::test]
async fn unknown_host_gets_404_and_never_reaches_an_upstream() {
    let a = Origin::start("a").await;
    let gw = Gateway::start(&route("\"a.example.com\"", &[&a], "")).await;
    let r = get(gw.http, "evil.example.net", "/").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    // Absolute-form target naming another host is routed by that host, not forwarded to it.
    let r = send(
        gw.http,
        Request::get(format!("http://{}/", a.addr))
            .header("host", "a.example.com")
            .body(Full::new(Bytes::new()))
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(a.hits(), 0, "nothing may reach the upstream for an unknown host");
}

#[tokio::test]
async fn absolute_form_target_takes_host_from_uri() {
    let a = Origin::start("a").await;
    let gw = Gateway::start(&route("\"a.example.com\"", &[&a], "")).await;
    let r = send(
        gw.http,
        Request::get("http://a.example.com/abs?q=1")
            .header("host", "other.example")
            .body(Full::new(Bytes::new()))
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(a.seen()[0].uri, "/abs?q=1");
}

#[tokio::test]
async fn exact_beats_wildcard_beats_default_and_longest_prefix_wins() {
    let exact = Origin::start("exact").await;
    let wild = Origin::start("wild").await;
    let dflt = Origin::start("default").await;
    let api = Origin::start("api").await;
    let cfg = route("\"*\"", &[&dflt], "")
        + &route("\"*.example.org\"", &[&wild], "")
        + &route("\"www.example.org\"", &[&exact], "")
        + &route("\"www.example.org\"", &[&api], "path = \"/api\"");
    let gw = Gateway::start(&cfg).await;
    assert_eq!(get(gw.http, "www.example.org", "/").await.header("x-origin"), Some("exact"));
    assert_eq!(get(gw.http, "shop.example.org", "/").await.header("x-origin"), Some("wild"));
    assert_eq!(get(gw.http, "a.b.example.org", "/").await.header("x-origin"), Some("default"));
    assert_eq!(get(gw.http, "www.example.org", "/api").await.header("x-origin"), Some("api"));
    assert_eq!(get(gw.http, "www.example.org", "/api/v1").await.header("x-origin"), Some("api"));
    assert_eq!(get(gw.http, "www.example.org", "/apix").await.header("x-origin"), Some("exact"));
}

#[tokio::test]
async fn forwarding_headers_and_hop_by_hop_hygiene() {
    let a = Origin::start("a").await;
    let gw = Gateway::start(&route("\"a.example.com\"", &[&a], "")).await;
    let req = Request::get("/h")
        .header("host", "a.example.com")
        .header("x-forwarded-for", "203.0.113.9")
        .header("connection", "keep-alive, x-secret-hop")
        .header("x-secret-hop", "1")
        .header("keep-alive", "timeout=5")
        .header("proxy-authorization", "Basic Zm9vOmJhcg==")
        .header("x-kept", "yes")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let r = send(gw.http, req).await;
    assert_eq!(r.status, StatusCode::OK);
    let seen = &a.seen()[0].headers;
    assert_eq!(seen.get("host").unwrap(), "a.example.com", "Host is preserved");
    // The client is no trusted proxy: its claim is replaced, not extended (tests/forwarding.rs).
    assert_eq!(seen.get("x-forwarded-for").unwrap(), "127.0.0.1");
    assert_eq!(seen.get("x-forwarded-proto").unwrap(), "http");
    assert_eq!(seen.get("x-forwarded-host").unwrap(), "a.example.com");
    assert_eq!(seen.get("x-kept").unwrap(), "yes");
    for hop in ["x-secret-hop", "keep-alive", "proxy-authorization"] {
        assert!(seen.get(hop).is_none(), "{hop} must not be forwarded");
    }
}

#[tokio::test]
async fn two_host_headers_and_connect_are_refused_before_any_upstream() {
    let a = Origin::start("a").await;
    let gw = Gateway::start(&route("\"a.example.com\"", &[&a], "")).await;
    let two_hosts = "GET / HTTP/1.1\r\nHost: a.example.com\r\nHost: admin.internal\r\nConnection: close\r\n\r\n";
    let r = raw(gw.http, two_hosts.as_bytes(), Duration::from_secs(3)).await;
    assert!(r.starts_with("HTTP/1.1 400"), "got {r:?}");
    let connect = "CONNECT a.example.com:443 HTTP/1.1\r\nHost: a.example.com:443\r\nConnection: close\r\n\r\n";
    let r = raw(gw.http, connect.as_bytes(), Duration::from_secs(3)).await;
    assert!(r.starts_with("HTTP/1.1 405"), "got {r:?}");
    assert_eq!(a.hits(), 0, "nothing reached the upstream");
}

#[tokio::test]
async fn via_header_is_added_when_configured() {
    let a = Origin::start("a").await;
    let gw = Gateway::start(&format!("[forwarding]\nvia = true\n{}", route("\"v.example.com\"", &[&a], ""))).await;
    get(gw.http, "v.example.com", "/").await;
    assert_eq!(a.seen()[0].headers.get("via").unwrap(), "1.1 swarmgate");
}

#[tokio::test]
async fn strip_prefix_and_header_edits() {
    let a = Origin::start("a").await;
    let extra = "path = \"/svc\"\nstrip_prefix = true\nheaders.request = { X-Added = \"in\", User-Agent = \"\" }\nheaders.response = { X-Served-By = \"swarmgate\" }";
    let gw = Gateway::start(&route("\"a.example.com\"", &[&a], extra)).await;
    let req = Request::get("/svc/inner?x=1")
        .header("host", "a.example.com")
        .header("user-agent", "curl")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let r = send(gw.http, req).await;
    assert_eq!(r.header("x-served-by"), Some("swarmgate"));
    let seen = &a.seen()[0];
    assert_eq!(seen.uri, "/inner?x=1");
    assert_eq!(seen.headers.get("x-added").unwrap(), "in");
    assert_eq!(seen.headers.get("x-forwarded-prefix").unwrap(), "/svc");
    assert!(seen.headers.get("user-agent").is_none(), "an empty value removes the header");
}

#[tokio::test]
async fn round_robin_spreads_and_cookie_sticks() {
    let a = Origin::start("a").await;
    let b = Origin::start("b").await;
    let gw = Gateway::start(
        &(route("\"rr.example.com\"", &[&a, &b], "lb = \"round_robin\"")
            + &route("\"sticky.example.com\"", &[&a, &b], "lb = \"cookie\"")),
    )
    .await;
    for _ in 0..10 {
        get(gw.http, "rr.example.com", "/").await;
    }
    assert_eq!((a.hits(), b.hits()), (5, 5));
    let first = get(gw.http, "sticky.example.com", "/").await;
    let cookie = first.header("set-cookie").expect("sticky cookie set").split(';').next().unwrap().to_owned();
    let origin = first.header("x-origin").unwrap().to_owned();
    for _ in 0..10 {
        let r = send(
            gw.http,
            Request::get("/")
                .header("host", "sticky.example.com")
                .header("cookie", &cookie)
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await;
        assert_eq!(r.header("x-origin"), Some(origin.as_str()));
        assert!(r.header("set-cookie").is_none(), "no new cookie while it sticks");
    }
}

#[tokio::test]
async fn ip_hash_and_least_conn_policies_route_consistently() {
    let a = Origin::start("a").await;
    let b = Origin::start("b").await;
    let gw = Gateway::start(
        &(route("\"ip.example.com\"", &[&a, &b], "lb = \"ip_hash\"")
            + &route("\"lc.example.com\"", &[&a, &b], "lb = \"least_conn\"")),
    )
    .await;
    let first = get(gw.http, "ip.example.com", "/").await.header("x-origin").unwrap().to_owned();
    for _ in 0..5 {
        assert_eq!(get(gw.http, "ip.example.com", "/").await.header("x-origin"), Some(first.as_str()));
    }
    // least_conn: while one endpoint holds a slow request, new requests go to the other.
    let addr = gw.http;
    let slow = tokio::spawn(async move { get(addr, "lc.example.com", "/delay/1500").await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let busy = if a.seen().iter().any(|s| s.uri == "/delay/1500") { "a" } else { "b" };
    for _ in 0..4 {
        assert_ne!(get(gw.http, "lc.example.com", "/").await.header("x-origin"), Some(busy));
    }
    slow.await.unwrap();
}

#[tokio::test]
async fn connect_failure_is_retried_on_another_endpoint_even_for_post() {
    let a = Origin::start("a").await;
    // A port with nothing listening.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let cfg = format!(
        "[[routes]]\nhosts = [\"r.example.com\"]\nupstreams = [\"{dead}\", \"{}\"]\nlb = \"round_robin\"\n",
        a.addr
    );
    let gw = Gateway::start(&cfg).await;
    for i in 0..6 {
        let req = Request::post("/submit")
            .header("host", "r.example.com")
            .body(Full::new(Bytes::from(format!("payload-{i}"))))
            .unwrap();
        let r = send(gw.http, req).await;
        assert_eq!(r.status, StatusCode::OK, "request {i} must succeed via the live endpoint");
    }
    let bodies: Vec<Bytes> = a.seen().iter().map(|s| s.body.clone()).collect();
    assert_eq!(bodies.len(), 6);
    assert!(
        bodies.iter().enumerate().all(|(i, b)| b == &Bytes::from(format!("payload-{i}"))),
        "bodies arrive intact after a retry"
    );
    // After repeated connect failures the dead endpoint is ejected (visible in the admin API).
    let api = get(gw.admin.unwrap(), "admin", "/api/endpoints").await.text();
    let v: serde_json::Value = serde_json::from_str(&api).unwrap();
    let dead_entry = v["endpoints"].as_array().unwrap().iter().find(|e| e["addr"] == dead.to_string()).unwrap();
    assert_eq!(dead_entry["ejected"], true);
}

#[tokio::test]
async fn all_endpoints_down_gives_502_and_no_live_endpoint_gives_503() {
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let gw = Gateway::start(&format!("[[routes]]\nhosts = [\"d.example.com\"]\nupstreams = [\"{dead}\"]\n")).await;
    assert_eq!(get(gw.http, "d.example.com", "/").await.status, StatusCode::BAD_GATEWAY);
    // Keep failing until ejected; then there is no live endpoint at all.
    for _ in 0..3 {
        get(gw.http, "d.example.com", "/").await;
    }
    let r = get(gw.http, "d.example.com", "/").await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(r.header("retry-after").is_some());
}

#[tokio::test]
async fn upstream_timeout_gives_504() {
    let a = Origin::start("a").await;
    let gw = Gateway::start(&format!(
        "[limits]\nupstream_response_timeout = \"300ms\"\n{}",
        route("\"t.example.com\"", &[&a], "")
    ))
    .await;
    let started = std::time::Instant::now();
    let r = get(gw.http, "t.example.com", "/delay/3000").await;
    assert_eq!(r.status, StatusCode::GATEWAY_TIMEOUT);
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn active_health_check_takes_failing_endpoint_out() {
    let good = Origin::start("good").await;
    let sick = Origin::start("sick").await;
    // The sick origin answers /status/503 for its health path; the good one 200 on /status/200.
    let cfg = format!(
        "[[routes]]\nhosts = [\"h.example.com\"]\nupstreams = [\"{}\"]\nhealth = {{ path = \"/status/200\", interval = \"100ms\" }}\n\
         [[routes]]\nhosts = [\"h2.example.com\"]\nupstreams = [\"{}\", \"{}\"]\nlb = \"round_robin\"\nhealth = {{ path = \"/status/503\", interval = \"100ms\" }}\n",
        good.addr, good.addr, sick.addr
    );
    let gw = Gateway::start(&cfg).await;
    assert_eq!(get(gw.http, "h.example.com", "/").await.status, StatusCode::OK);
    // Both endpoints of h2 fail their check: the route has no live upstream → 503.
    let mut status = StatusCode::OK;
    for _ in 0..50 {
        status = get(gw.http, "h2.example.com", "/").await.status;
        if status == StatusCode::SERVICE_UNAVAILABLE {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn responses_stream_without_buffering() {
    let a = Origin::start("a").await;
    let gw = Gateway::start(&route("\"s.example.com\"", &[&a], "")).await;
    // The first chunk arrives long before the 20 × 50 ms stream ends.
    let stream = tokio::net::TcpStream::connect(gw.http).await.unwrap();
    let (mut tx, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await.unwrap();
    tokio::spawn(conn);
    let started = std::time::Instant::now();
    let resp = tx
        .send_request(Request::get("/stream/20").header("host", "s.example.com").body(Full::new(Bytes::new())).unwrap())
        .await
        .unwrap();
    let mut body = resp.into_body();
    let first = http_body_util::BodyExt::frame(&mut body).await.unwrap().unwrap();
    assert!(first.is_data());
    assert!(started.elapsed() < Duration::from_millis(500), "first chunk took {:?}", started.elapsed());
}

#[tokio::test]
async fn slow_client_applies_backpressure_instead_of_buffering() {
    let a = Origin::start("a").await;
    let gw = Gateway::start(&route("\"big.example.com\"", &[&a], "")).await;
    // Ask for 256 MiB and read nothing: the proxy must not pull the whole body from the origin.
    let mut s = tokio::net::TcpStream::connect(gw.http).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut s, b"GET /big/256 HTTP/1.1\r\nHost: big.example.com\r\n\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let sent = a.big_sent.load(std::sync::atomic::Ordering::SeqCst);
    assert!(sent > 0, "the response started");
    assert!(sent < 64 * 1024 * 1024, "origin pushed {sent} bytes into the proxy for a client that reads nothing");
}

#[tokio::test]
async fn respond_and_redirect_routes() {
    let cfg = "[[routes]]\nhosts = [\"r.example.com\"]\nrespond = { status = 418, body = \"teapot\" }\n\
               [[routes]]\nhosts = [\"r.example.com\"]\npath = \"/old\"\nredirect = { to = \"https://new.example.com{uri}\", status = 301 }\n";
    let gw = Gateway::start(cfg).await;
    let r = get(gw.http, "r.example.com", "/").await;
    assert_eq!((r.status.as_u16(), r.text().as_str()), (418, "teapot"));
    let r = get(gw.http, "r.example.com", "/old/page?a=b").await;
    assert_eq!(r.status, StatusCode::MOVED_PERMANENTLY);
    assert_eq!(r.header("location"), Some("https://new.example.com/old/page?a=b"));
}

#[tokio::test]
async fn basic_auth_and_rate_limit() {
    let a = Origin::start("a").await;
    let hash = bcrypt::hash("s3cret", 4).unwrap();
    let cfg = route("\"auth.example.com\"", &[&a], &format!("auth.basic = [\"alice:{hash}\"]"))
        + &route("\"rl.example.com\"", &[&a], "rate_limit = { average = 1, period = \"1m\", burst = 2 }");
    let gw = Gateway::start(&cfg).await;
    let r = get(gw.http, "auth.example.com", "/").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.header("www-authenticate").unwrap().starts_with("Basic"));
    use base64::Engine;
    let good = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode("alice:s3cret"));
    let bad = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode("alice:wrong"));
    let with = |v: &str| {
        Request::get("/")
            .header("host", "auth.example.com")
            .header("authorization", v)
            .body(Full::new(Bytes::new()))
            .unwrap()
    };
    assert_eq!(send(gw.http, with(&good)).await.status, StatusCode::OK);
    assert_eq!(send(gw.http, with(&bad)).await.status, StatusCode::UNAUTHORIZED);
    assert!(a.seen().iter().all(|s| s.headers.get("authorization").is_none_or(|v| v == good.as_str())));
    let codes: Vec<u16> = futures_util::future::join_all((0..4).map(|_| get(gw.http, "rl.example.com", "/")))
        .await
        .iter()
        .map(|r| r.status.as_u16())
        .collect();
    assert_eq!(codes.iter().filter(|c| **c == 200).count(), 2, "{codes:?}");
    assert_eq!(codes.iter().filter(|c| **c == 429).count(), 2, "{codes:?}");
}

#[tokio::test]
async fn oversized_headers_get_431_and_bodies_413() {
    let a = Origin::start("a").await;
    let gw = Gateway::start(&format!(
        "[limits]\nmax_header_bytes = 8192\nmax_body_bytes = 1000\n{}",
        route("\"l.example.com\"", &[&a], "")
    ))
    .await;
    let big = "x".repeat(20_000);
    let out = raw(
        gw.http,
        format!("GET / HTTP/1.1\r\nHost: l.example.com\r\nX-Big: {big}\r\n\r\n").as_bytes(),
        Duration::from_secs(3),
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 431"), "{out}");
    let req =
        Request::post("/").header("host", "l.example.com").body(Full::new(Bytes::from(vec![b'z'; 5000]))).unwrap();
    assert_eq!(send(gw.http, req).await.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(a.hits(), 0);
}

#[tokio::test]
async fn slowloris_client_is_cut_off() {
    let gw = Gateway::start("[limits]\nheader_read_timeout = \"300ms\"\n[[routes]]\nhosts = [\"x.example.com\"]\nrespond = { body = \"x\" }\n").await;
    let started = std::time::Instant::now();
    let out = raw(gw.http, b"GET / HTTP/1.1\r\nHost: x.exa", Duration::from_secs(5)).await;
    assert!(started.elapsed() < Duration::from_secs(3), "connection held for {:?}", started.elapsed());
    assert!(out.starts_with("HTTP/1.1 408"), "{out}");
}

#[tokio::test]
async fn idle_keepalive_connection_is_closed_after_idle_timeout_not_header_timeout() {
    let gw = Gateway::start("[limits]
header_read_timeout = \"300ms\"\nidle_timeout = \"1200ms\"\n[[routes]]\nhosts = [\"x.example.com\"]\nrespond = { body = \"x\" }\n").await;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(gw.http).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x.example.com\r\n\r\n").await.unwrap();
    let mut buf = [0u8; 1024];
    let n = s.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    let idle_started = std::time::Instant::now();
    // Still open past the header timeout: a second request on the same connection works.
    tokio::time::sleep(Duration::from_millis(600)).await;
    s.write_all(b"GET / HTTP/1.1\r\nHost: x.example.com\r\n\r\n").await.unwrap();
    let n = s.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"), "keep-alive connection was cut early");
    let idle_started2 = std::time::Instant::now();
    let n =
        tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await.expect("idle connection closed").unwrap();
    assert_eq!(n, 0, "closed without a response");
    let idle = idle_started2.elapsed();
    assert!(idle >= Duration::from_millis(1000) && idle < Duration::from_millis(3000), "closed after {idle:?}");
    let _ = idle_started;
}

#[tokio::test]
async fn connections_over_the_limit_get_503() {
    let gw = Gateway::start(
        "[limits]\nmax_connections = 2\n[[routes]]\nhosts = [\"x.example.com\"]\nrespond = { body = \"x\" }\n",
    )
    .await;
    let _c1 = tokio::net::TcpStream::connect(gw.http).await.unwrap();
    let _c2 = tokio::net::TcpStream::connect(gw.http).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let out = raw(gw.http, b"GET / HTTP/1.1\r\nHost: x.example.com\r\n\r\n", Duration::from_secs(3)).await;
    assert!(out.starts_with("HTTP/1.1 503"), "{out}");
}

#[tokio::test]
async fn websocket_upgrade_passes_through_both_ways() {
    let a = Origin::start("a").await;
    let gw = Gateway::start(&route("\"ws.example.com\"", &[&a], "")).await;
    let mut s = tokio::net::TcpStream::connect(gw.http).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    s.write_all(b"GET /ws HTTP/1.1\r\nHost: ws.example.com\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n").await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = s.read(&mut buf).await.unwrap();
    let head = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(head.to_ascii_lowercase().contains("upgrade: websocket"), "{head}");
    for msg in [&b"hello"[..], b"second message"] {
        s.write_all(msg).await.unwrap();
        let mut got = vec![0u8; msg.len()];
        tokio::time::timeout(Duration::from_secs(3), s.read_exact(&mut got)).await.unwrap().unwrap();
        assert_eq!(got, msg);
    }
    assert_eq!(a.seen()[0].headers.get("upgrade").unwrap(), "websocket");
}

#[tokio::test]
async fn h2c_upstream_carries_trailers() {
    let a = Origin::start("grpc").await;
    let gw = Gateway::start(&route("\"g.example.com\"", &[&a], "scheme = \"h2c\"")).await;
    // Client speaks h2c (prior knowledge) to swarmgate, swarmgate h2c to the origin.
    let mut tx = support::client::h2c(gw.http).await;
    let req = Request::post("http://g.example.com/trailers")
        .header("te", "trailers")
        .header("content-type", "application/grpc")
        .body(Full::new(Bytes::from_static(b"\0\0\0\0\0")))
        .unwrap();
    let resp = tx.send_request(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let collected = http_body_util::BodyExt::collect(resp.into_body()).await.unwrap();
    let trailers = collected.trailers().cloned().expect("trailers forwarded");
    assert_eq!(trailers.get("grpc-status").unwrap(), "0");
    assert_eq!(collected.to_bytes(), Bytes::from_static(b"grpc-like-body"));
    let seen = &a.seen()[0];
    assert_eq!(seen.version, http::Version::HTTP_2, "upstream leg is HTTP/2");
    assert_eq!(seen.headers.get("te").unwrap(), "trailers");
}

#[tokio::test]
async fn graceful_shutdown_completes_in_flight_requests() {
    let a = Origin::start("a").await;
    let gw = Gateway::start(&route("\"g.example.com\"", &[&a], "")).await;
    let addr = gw.http;
    let inflight: Vec<_> =
        (0..5).map(|_| tokio::spawn(async move { get(addr, "g.example.com", "/delay/700").await })).collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let stopping = tokio::spawn(gw.stop());
    for r in inflight {
        assert_eq!(r.await.unwrap().status, StatusCode::OK, "in-flight request finished during shutdown");
    }
    tokio::time::timeout(Duration::from_secs(5), stopping).await.unwrap().unwrap();
    assert!(tokio::net::TcpStream::connect(addr).await.is_err(), "listener closed after shutdown");
}

#[tokio::test]
async fn admin_health_ready_and_metrics() {
    let a = Origin::start("a").await;
    let gw = Gateway::start(&route("\"m.example.com\"", &[&a], "")).await;
    get(gw.http, "m.example.com", "/").await;
    get(gw.http, "nobody.example.com", "/").await;
    let admin = gw.admin.unwrap();
    assert_eq!(get(admin, "admin", "/healthz").await.status, StatusCode::OK);
    assert_eq!(get(admin, "admin", "/readyz").await.status, StatusCode::OK);
    let m = get(admin, "admin", "/metrics").await.text();
    assert!(m.contains("swarmgate_requests_total{route=\"file/0\",code=\"2xx\"} 1"), "{m}");
    assert!(m.contains("swarmgate_request_duration_seconds_count{route=\"file/0\"} 1"), "{m}");
    assert!(m.contains("swarmgate_open_connections"), "{m}");
    assert!(m.contains("swarmgate_config_reloads_total"), "{m}");
    let routes: serde_json::Value = serde_json::from_str(&get(admin, "admin", "/api/routes").await.text()).unwrap();
    assert_eq!(routes["routes"][0]["spec"]["hosts"][0], "m.example.com");
}

/// An h2c upstream gets the client's host as `:authority` (what HTTP/2 servers read) and no
/// second, different `Host` header; without `pass_host`, its own address, once.
#[tokio::test]
async fn h2c_upstream_sees_the_client_host_as_authority_and_no_conflicting_host() {
    let a = Origin::start("a").await;
    let b = Origin::start("b").await;
    let cfg = route("\"g.example.com\"", &[&a], "scheme = \"h2c\"")
        + &route("\"own.example.com\"", &[&b], "scheme = \"h2c\"\npass_host = false");
    let gw = Gateway::start(&cfg).await;
    assert_eq!(get(gw.http, "g.example.com", "/x").await.status, StatusCode::OK);
    let seen = &a.seen()[0];
    assert_eq!(seen.version, http::Version::HTTP_2);
    assert_eq!(seen.authority.as_deref(), Some("g.example.com"));
    assert_eq!(seen.headers.get("host"), None, "{:?}", seen.headers);
    assert_eq!(get(gw.http, "own.example.com", "/").await.status, StatusCode::OK);
    let seen = &b.seen()[0];
    assert_eq!(seen.authority.as_deref(), Some(b.addr.to_string().as_str()));
    assert_eq!(seen.headers.get("host"), None, "{:?}", seen.headers);
}

/// The new series: bytes per route, endpoint up/down, config reloads by result and the time
/// of the last success; and `config/grafana-dashboard.json` queries only series a running
/// instance exports.
#[tokio::test]
async fn metrics_cover_bytes_endpoints_and_reloads_and_the_dashboard_uses_only_them() {
    let a = Origin::start("a").await;
    let gw = Gateway::start(&format!(
        "{}[[routes]]\nhosts = [\"down.example.com\"]\nupstreams = [\"127.0.0.1:1\"]\n",
        route("\"m.example.com\"", &[&a], "")
    ))
    .await;
    let r = get(gw.http, "m.example.com", "/hello").await;
    // A fixed-length body and a chunked one streamed in pieces.
    let body_len = r.text().len() + get(gw.http, "m.example.com", "/stream/3").await.text().len();
    assert_eq!(body_len, r.text().len() + 3 * 1024);
    for _ in 0..3 {
        get(gw.http, "down.example.com", "/").await; // three connect failures eject it
    }
    let admin = gw.admin.unwrap();
    let m = get(admin, "admin", "/metrics").await.text();
    let value = |series: &str| -> f64 {
        m.lines().find_map(|l| l.strip_prefix(series)?.trim().parse().ok()).unwrap_or_else(|| panic!("{series}: {m}"))
    };
    assert_eq!(value("swarmgate_response_bytes_total{route=\"file/0\"} "), body_len as f64);
    assert!(value("swarmgate_request_bytes_total{route=\"file/0\"} ") > 20.0);
    assert_eq!(value(&format!("swarmgate_endpoint_up{{route=\"file/0\",endpoint=\"{}\"}} ", a.addr)), 1.0);
    assert_eq!(value("swarmgate_endpoint_up{route=\"file/1\",endpoint=\"127.0.0.1:1\"} "), 0.0);
    assert_eq!(value("swarmgate_config_reloads_total{result=\"failure\"} "), 0.0);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    assert!((now - value("swarmgate_config_last_reload_success_timestamp_seconds ")).abs() < 60.0);

    let dashboard = include_str!("../config/grafana-dashboard.json");
    let json: serde_json::Value = serde_json::from_str(dashboard).unwrap();
    assert!(json["panels"].as_array().is_some_and(|p| !p.is_empty()));
    let names: std::collections::BTreeSet<&str> =
        regex::Regex::new(r"swarmgate_[a-z_]+").unwrap().find_iter(dashboard).map(|m| m.as_str()).collect();
    assert!(names.len() >= 10, "{names:?}");
    for name in names {
        let exported =
            m.lines().any(|l| l.strip_prefix(name).is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' ')));
        assert!(exported, "{name} is in the dashboard but not in /metrics");
    }
}

/// `max_body_bytes` holds for bodies that declare no length: a chunked HTTP/1.1 body and an
/// HTTP/2 body, to a plain and to an h2c upstream. Past the limit the client gets 413 and an
/// upstream sees at most the limit's worth of a cut-off body; a body under it goes through whole.
#[tokio::test]
async fn bodies_without_a_length_are_held_to_max_body_bytes() {
    let a = Origin::start("a").await;
    let b = Origin::start("b").await;
    let cfg = format!(
        "[limits]\nmax_body_bytes = 1000\n{}{}",
        route("\"h1.example.com\"", &[&a], ""),
        route("\"h2c.example.com\"", &[&b], "scheme = \"h2c\"")
    );
    let gw = Gateway::start(&cfg).await;
    let chunked = |host: &str, size: usize| {
        let body = "z".repeat(size);
        format!("POST / HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{size:x}\r\n{body}\r\n0\r\n\r\n")
    };
    for host in ["h1.example.com", "h2c.example.com"] {
        let out = raw(gw.http, chunked(host, 5000).as_bytes(), Duration::from_secs(5)).await;
        assert!(out.starts_with("HTTP/1.1 413"), "{host}: {out}");
        let out = raw(gw.http, chunked(host, 900).as_bytes(), Duration::from_secs(5)).await;
        assert!(out.starts_with("HTTP/1.1 200"), "{host}: {out}");
    }
    // An HTTP/2 client's body, streamed in pieces with no content-length.
    let stream = tokio::net::TcpStream::connect(gw.http).await.unwrap();
    let (mut tx, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let pieces =
        (0..10).map(|_| Ok::<_, std::convert::Infallible>(http_body::Frame::data(Bytes::from(vec![b'y'; 500]))));
    let req = Request::post("http://h1.example.com/")
        .body(http_body_util::StreamBody::new(futures_util::stream::iter(pieces)))
        .unwrap();
    let resp = tx.send_request(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    for seen in a.seen().iter().chain(b.seen().iter()) {
        assert!(seen.body.len() <= 1000, "an upstream got {} body bytes", seen.body.len());
    }
    let whole = a.seen().iter().chain(b.seen().iter()).filter(|s| s.body.len() == 900).count();
    assert_eq!(whole, 2, "the two bodies under the limit arrive whole");
}
