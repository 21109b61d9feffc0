//! Connection deadlines over real sockets: request heads (408), idle connections of every
//! protocol, responses that outlive the idle deadline, and the admin listener.

mod support;

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use support::client::{h2c, raw};
use support::gateway::Gateway;
use support::origin::Origin;
use support::tls_client::{tls_over, TlsGateway};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const RESPOND: &str = "[[routes]]\nhosts = [\"x.example.com\"]\nrespond = { body = \"x\" }\n";

/// One request over HTTP/2 on `io`, then true if the server closes the connection within
/// `limit`.
async fn h2_request_then_closed<I>(io: I, uri: &str, limit: Duration) -> bool
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut tx, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(io)).await.unwrap();
    let conn = tokio::spawn(async move {
        let _ = conn.await;
    });
    let req = Request::get(uri).body(Full::new(Bytes::new())).unwrap();
    assert_eq!(tx.send_request(req).await.unwrap().status(), 200);
    tokio::time::timeout(limit, conn).await.is_ok()
}

/// Issue 9, item 8: an h2c connection with no open stream is closed after `idle_timeout`
/// (hyper's keep-alive PING is answered by any client, so it alone never closes one).
#[tokio::test]
async fn idle_h2c_connection_is_closed_after_idle_timeout() {
    let gw = Gateway::start(&format!("[limits]\nidle_timeout = \"1s\"\n{RESPOND}")).await;
    let stream = TcpStream::connect(gw.http).await.unwrap();
    let closed = h2_request_then_closed(stream, "http://x.example.com/", Duration::from_secs(3)).await;
    assert!(closed, "idle h2c connection still open");
}

/// The same over TLS with ALPN h2.
#[tokio::test]
async fn idle_h2_tls_connection_is_closed_after_idle_timeout() {
    let t = TlsGateway::start(&[&["x.example.com"]], &format!("[limits]\nidle_timeout = \"1s\"\n{RESPOND}")).await;
    let tls = t.connect("x.example.com", &[b"h2"]).await;
    let closed = h2_request_then_closed(tls, "https://x.example.com/", Duration::from_secs(3)).await;
    assert!(closed, "idle h2 connection still open");
}

/// A TLS client has `header_read_timeout` from accept to a complete head, handshake
/// included, and gets a 408 through TLS when it runs out (before: the handshake's time and
/// the head's again, and no answer).
#[tokio::test]
async fn slow_tls_client_gets_408_within_the_head_deadline_counted_from_accept() {
    let t =
        TlsGateway::start(&[&["x.example.com"]], &format!("[limits]\nheader_read_timeout = \"1s\"\n{RESPOND}")).await;
    let started = Instant::now();
    let tcp = TcpStream::connect(t.https()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(700)).await;
    let mut tls = tls_over(tcp, &t.ca.client_config(&[b"http/1.1"]), "x.example.com").await;
    tls.write_all(b"GET / HTTP/1.1\r\nHost: x.exa").await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut out)).await.expect("closed");
    let took = started.elapsed();
    let out = String::from_utf8_lossy(&out);
    assert!(out.starts_with("HTTP/1.1 408"), "{out:?}");
    assert!(took < Duration::from_millis(1600), "closed after {took:?}, the deadline is 1 s from accept");
    // A client that completes the handshake and never sends a request is closed too.
    let mut tls = t.connect("x.example.com", &[b"http/1.1"]).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut out)).await.expect("closed");
    assert!(String::from_utf8_lossy(&out).starts_with("HTTP/1.1 408"));
}

/// The admin listener has the same head deadline.
#[tokio::test]
async fn admin_listener_cuts_off_slow_heads() {
    let gw = Gateway::start(&format!("[limits]\nheader_read_timeout = \"300ms\"\n{RESPOND}")).await;
    let admin = gw.admin.unwrap();
    let out = raw(admin, b"GET /healthz HTTP/1.1\r\nHost: adm", Duration::from_secs(5)).await;
    assert!(out.starts_with("HTTP/1.1 408"), "{out:?}");
    let out =
        raw(admin, b"GET /healthz HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n", Duration::from_secs(5)).await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out:?}");
    let mut tx = h2c(admin).await;
    let resp = tx.send_request(Request::get("http://admin/healthz").body(Full::new(Bytes::new())).unwrap()).await;
    assert_eq!(resp.unwrap().status(), 200);
}

/// A response streamed for longer than `idle_timeout` + `header_read_timeout` is not cut:
/// the connection is busy until its body is sent, not only until its head is ready.
#[tokio::test]
async fn a_long_streamed_response_outlives_the_idle_deadline() {
    let a = Origin::start("a").await;
    let gw = Gateway::start(&format!(
        "[limits]\nheader_read_timeout = \"300ms\"\nidle_timeout = \"400ms\"\n[[routes]]\nhosts = [\"s.example.com\"]\nupstreams = [\"{}\"]\n",
        a.addr
    ))
    .await;
    // 30 chunks of 1 KiB, 50 ms apart: 1.5 s of streaming.
    let stream = TcpStream::connect(gw.http).await.unwrap();
    let (mut tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
    tokio::spawn(conn);
    let resp = tx
        .send_request(Request::get("/stream/30").header("host", "s.example.com").body(Full::new(Bytes::new())).unwrap())
        .await
        .unwrap();
    let body = resp.into_body().collect().await.expect("body complete").to_bytes();
    assert_eq!(body.len(), 30 * 1024);
    let resp = tx
        .send_request(Request::get("/again").header("host", "s.example.com").body(Full::new(Bytes::new())).unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "the connection stays usable after the stream");
}

/// An HTTP/1.1 client that asks for a large response and never reads it: the proxy drops the
/// connection at the output-stall deadline (`idle_timeout`), lets go of the upstream response
/// (the origin sees its body dropped), and serves other clients meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h1_client_that_never_reads_is_dropped_and_the_upstream_released() {
    let a = Origin::start("a").await;
    let gw = Gateway::start(&format!(
        "[limits]\nidle_timeout = \"1s\"\n[[routes]]\nhosts = [\"b.example.com\"]\nupstreams = [\"{}\"]\n",
        a.addr
    ))
    .await;
    let mut s = TcpStream::connect(gw.http).await.unwrap();
    s.write_all(b"GET /big/1024 HTTP/1.1\r\nHost: b.example.com\r\n\r\n").await.unwrap();
    let started = async {
        while a.big_sent.load(std::sync::atomic::Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(5), started).await.expect("the response started");
    assert_eq!(a.big_open.load(std::sync::atomic::Ordering::SeqCst), 1);
    let other = support::client::get(gw.http, "b.example.com", "/").await;
    assert_eq!(other.status, 200, "another client is served meanwhile");
    // Dropped at the deadline: the upstream body is let go of.
    let released = async {
        while a.big_open.load(std::sync::atomic::Ordering::SeqCst) > 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    assert!(tokio::time::timeout(Duration::from_secs(6), released).await.is_ok(), "upstream response still held");
    // What the socket buffers hold, then the end (not 1 GiB).
    let mut sink = Vec::new();
    let ended = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut sink)).await;
    assert!(ended.is_ok(), "connection still open");
    assert!(sink.len() < 256 * 1024 * 1024, "read {} bytes", sink.len());
}
