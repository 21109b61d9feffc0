//! Domain fronting (issue 9): on a TLS connection, a request may only name a host the
//! certificate its SNI picked covers (else 421), a plain-HTTP-only route is never served over
//! HTTPS, and HTTP/2 connection coalescing across names of one certificate still works.

mod support;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Full;
use hyper_util::rt::{TokioExecutor, TokioIo};
use support::client::get;
use support::origin::Origin;
use support::tls_client::TlsGateway;

async fn start(origin: &Origin) -> TlsGateway {
    let route = |host: &str, extra: &str| {
        format!("[[routes]]\nhosts = [\"{host}\"]\nupstreams = [\"{}\"]\n{extra}\n", origin.addr)
    };
    let routes = route("a.example.com", "")
        + &route("b.example.com", "")
        + &route("x.example.com", "")
        + &route("y.example.com", "")
        + &route("plain.example.com", "tls = \"off\"")
        + &route("plain.w.example.com", "tls = \"off\"");
    TlsGateway::start(
        &[&["a.example.com"], &["b.example.com"], &["x.example.com", "y.example.com"], &["*.w.example.com"]],
        &routes,
    )
    .await
}

/// Status of a GET with `host` over a fresh HTTP/1.1 TLS connection whose SNI is `sni`.
async fn h1_status(t: &TlsGateway, sni: &str, host: &str) -> StatusCode {
    let tls = t.connect(sni, &[b"http/1.1"]).await;
    let (mut tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await.unwrap();
    tokio::spawn(conn);
    let req = Request::get("/").header("host", host).body(Full::new(Bytes::new())).unwrap();
    tx.send_request(req).await.unwrap().status()
}

#[tokio::test]
async fn a_host_the_certificate_does_not_cover_gets_421() {
    let origin = Origin::start("o").await;
    let t = start(&origin).await;
    assert_eq!(h1_status(&t, "a.example.com", "a.example.com").await, StatusCode::OK);
    assert_eq!(h1_status(&t, "a.example.com", "a.example.com:443").await, StatusCode::OK);
    assert_eq!(h1_status(&t, "a.example.com", "b.example.com").await, StatusCode::MISDIRECTED_REQUEST);
    assert_eq!(h1_status(&t, "a.example.com", "B.EXAMPLE.COM.").await, StatusCode::MISDIRECTED_REQUEST);
    assert_eq!(h1_status(&t, "a.example.com", "plain.example.com").await, StatusCode::MISDIRECTED_REQUEST);
    assert_eq!(origin.hits(), 2, "only the covered requests reached the upstream");
}

#[tokio::test]
async fn a_plain_http_only_route_is_not_served_over_https() {
    let origin = Origin::start("o").await;
    let t = start(&origin).await;
    // The wildcard certificate covers the name, but the route is declared tls = "off".
    let status = h1_status(&t, "plain.w.example.com", "plain.w.example.com").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(origin.hits(), 0);
    assert_eq!(get(t.gw.http, "plain.w.example.com", "/").await.status, StatusCode::OK);
}

#[tokio::test]
async fn h2_coalescing_across_names_of_one_certificate_still_works() {
    let origin = Origin::start("o").await;
    let t = start(&origin).await;
    let tls = t.connect("x.example.com", &[b"h2"]).await;
    let (mut tx, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls)).await.unwrap();
    tokio::spawn(conn);
    let mut status = |authority: &str| {
        let req = Request::get(format!("https://{authority}/")).body(Full::new(Bytes::new())).unwrap();
        let fut = tx.send_request(req);
        async move { fut.await.unwrap().status() }
    };
    assert_eq!(status("x.example.com").await, StatusCode::OK);
    assert_eq!(status("y.example.com").await, StatusCode::OK, "same certificate: coalescing allowed");
    assert_eq!(status("a.example.com").await, StatusCode::MISDIRECTED_REQUEST);
    assert_eq!(origin.hits(), 2);
}
