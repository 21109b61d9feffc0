//! HTTP/1.1 keep-alive connections over real sockets. An idle connection is parked outside
//! hyper between requests (src/proxy/server.rs `serve_h1`) and served again by a fresh hyper
//! connection: these tests hold that a client cannot tell, whatever falls on either side of
//! the park (sequential requests, pipelining, a head split across it, an upgrade, deadlines
//! and shutdown).

mod support;

use std::time::Duration;

use support::gateway::Gateway;
use support::origin::Origin;
use support::tls_client::TlsGateway;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Long enough for the connection to be parked (it parks as soon as it is idle).
const PAUSE: Duration = Duration::from_millis(150);

async fn gateway(origin: &Origin, limits: &str) -> Gateway {
    Gateway::start(&format!(
        "[limits]\n{limits}\n[[routes]]\nhosts = [\"k.example.com\"]\nupstreams = [\"{}\"]\n",
        origin.addr
    ))
    .await
}

fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: k.example.com\r\n\r\n")
}

/// Reads one response (head and `Content-Length` body); returns status line and body.
async fn response<S: AsyncRead + Unpin>(s: &mut S, pending: &mut Vec<u8>) -> (String, String) {
    let read = async {
        loop {
            if let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&pending[..end]).to_string();
                let len: usize = head
                    .lines()
                    .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_owned()))
                    .map_or(0, |v| v.parse().unwrap());
                if pending.len() >= end + 4 + len {
                    let body = String::from_utf8_lossy(&pending[end + 4..end + 4 + len]).to_string();
                    pending.drain(..end + 4 + len);
                    return (head.lines().next().unwrap_or_default().to_owned(), body);
                }
            }
            let mut buf = [0u8; 4096];
            let n = s.read(&mut buf).await.unwrap();
            assert!(n > 0, "connection closed; had {:?}", String::from_utf8_lossy(pending));
            pending.extend_from_slice(&buf[..n]);
        }
    };
    tokio::time::timeout(Duration::from_secs(5), read).await.expect("no response")
}

#[tokio::test]
async fn sequential_requests_on_a_parked_connection_are_all_served() {
    let a = Origin::start("a").await;
    let gw = gateway(&a, "").await;
    let mut s = TcpStream::connect(gw.http).await.unwrap();
    let mut pending = Vec::new();
    for i in 0..4 {
        s.write_all(get(&format!("/seq/{i}")).as_bytes()).await.unwrap();
        let (status, body) = response(&mut s, &mut pending).await;
        assert_eq!(status, "HTTP/1.1 200 OK");
        assert_eq!(body, format!("a GET /seq/{i}"));
        tokio::time::sleep(PAUSE).await;
    }
    assert_eq!(a.hits(), 4);
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order() {
    let a = Origin::start("a").await;
    let gw = gateway(&a, "").await;
    let mut s = TcpStream::connect(gw.http).await.unwrap();
    let mut pending = Vec::new();
    // Two requests in one write, after a parked period.
    tokio::time::sleep(PAUSE).await;
    s.write_all((get("/one") + &get("/two")).as_bytes()).await.unwrap();
    assert_eq!(response(&mut s, &mut pending).await.1, "a GET /one");
    assert_eq!(response(&mut s, &mut pending).await.1, "a GET /two");
    // A request and the start of the next: the connection goes idle holding that start in
    // hyper's buffer, and the rest arrives after the pause.
    let next = get("/four");
    let (start, rest) = next.split_at(20);
    s.write_all((get("/three") + start).as_bytes()).await.unwrap();
    assert_eq!(response(&mut s, &mut pending).await.1, "a GET /three");
    tokio::time::sleep(PAUSE).await;
    s.write_all(rest.as_bytes()).await.unwrap();
    assert_eq!(response(&mut s, &mut pending).await.1, "a GET /four");
    // A head split across a parked period on its own.
    s.write_all(b"GET /five HTTP/1.1\r\nHo").await.unwrap();
    tokio::time::sleep(PAUSE).await;
    s.write_all(b"st: k.example.com\r\n\r\n").await.unwrap();
    assert_eq!(response(&mut s, &mut pending).await.1, "a GET /five");
}

#[tokio::test]
async fn request_with_a_body_then_more_requests_on_the_same_connection() {
    let a = Origin::start("a").await;
    let gw = gateway(&a, "").await;
    let mut s = TcpStream::connect(gw.http).await.unwrap();
    let mut pending = Vec::new();
    s.write_all(b"POST /up HTTP/1.1\r\nHost: k.example.com\r\nContent-Length: 5\r\n\r\nhello").await.unwrap();
    assert_eq!(response(&mut s, &mut pending).await.1, "a POST /up");
    tokio::time::sleep(PAUSE).await;
    s.write_all(get("/after").as_bytes()).await.unwrap();
    assert_eq!(response(&mut s, &mut pending).await.1, "a GET /after");
    tokio::time::sleep(PAUSE).await;
    s.write_all(get("/again").as_bytes()).await.unwrap();
    assert_eq!(response(&mut s, &mut pending).await.1, "a GET /again");
    assert_eq!(a.seen()[0].body.as_ref(), b"hello");
}

#[tokio::test]
async fn websocket_upgrade_after_a_parked_period_passes_through() {
    let a = Origin::start("a").await;
    let gw = gateway(&a, "").await;
    let mut s = TcpStream::connect(gw.http).await.unwrap();
    let mut pending = Vec::new();
    s.write_all(get("/first").as_bytes()).await.unwrap();
    assert_eq!(response(&mut s, &mut pending).await.1, "a GET /first");
    tokio::time::sleep(PAUSE).await;
    s.write_all(b"GET /ws HTTP/1.1\r\nHost: k.example.com\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n").await.unwrap();
    let (status, _) = response(&mut s, &mut pending).await;
    assert!(status.starts_with("HTTP/1.1 101"), "{status}");
    // The tunnel outlives what would be idle parking: bytes still pass both ways.
    tokio::time::sleep(PAUSE).await;
    for msg in [&b"hello"[..], b"second message"] {
        s.write_all(msg).await.unwrap();
        let mut got = vec![0u8; msg.len()];
        tokio::time::timeout(Duration::from_secs(3), s.read_exact(&mut got)).await.unwrap().unwrap();
        assert_eq!(got, msg);
    }
}

#[tokio::test]
async fn parked_connection_is_closed_after_idle_timeout() {
    let a = Origin::start("a").await;
    let gw = gateway(&a, "header_read_timeout = \"300ms\"\nidle_timeout = \"1s\"").await;
    let mut s = TcpStream::connect(gw.http).await.unwrap();
    let mut pending = Vec::new();
    s.write_all(get("/x").as_bytes()).await.unwrap();
    assert_eq!(response(&mut s, &mut pending).await.1, "a GET /x");
    let idle = std::time::Instant::now();
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await.expect("still open").unwrap();
    assert_eq!(n, 0, "{:?}", String::from_utf8_lossy(&buf[..n]));
    let after = idle.elapsed();
    assert!(after >= Duration::from_millis(900) && after < Duration::from_secs(3), "closed after {after:?}");
}

#[tokio::test]
async fn parked_connection_closes_at_once_on_shutdown() {
    let a = Origin::start("a").await;
    let gw = gateway(&a, "grace_period = \"20s\"").await;
    let mut s = TcpStream::connect(gw.http).await.unwrap();
    let mut pending = Vec::new();
    s.write_all(get("/x").as_bytes()).await.unwrap();
    assert_eq!(response(&mut s, &mut pending).await.1, "a GET /x");
    tokio::time::sleep(PAUSE).await;
    let stopping = tokio::spawn(gw.stop());
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(3), s.read(&mut buf)).await.expect("held open").unwrap_or(0);
    assert_eq!(n, 0);
    tokio::time::timeout(Duration::from_secs(3), stopping)
        .await
        .expect("shutdown waited for the grace period")
        .unwrap();
}

#[tokio::test]
async fn https_keepalive_connection_is_served_across_parked_periods() {
    let a = Origin::start("a").await;
    let t = TlsGateway::start(
        &[&["k.example.com"]],
        &format!("[[routes]]\nhosts = [\"k.example.com\"]\nupstreams = [\"{}\"]\n", a.addr),
    )
    .await;
    let mut s = t.connect("k.example.com", &[b"http/1.1"]).await;
    let mut pending = Vec::new();
    s.write_all(get("/one").as_bytes()).await.unwrap();
    assert_eq!(response(&mut s, &mut pending).await.1, "a GET /one");
    tokio::time::sleep(PAUSE).await;
    // Two requests in one TLS record, then one split across a parked period.
    s.write_all((get("/two") + &get("/three")).as_bytes()).await.unwrap();
    assert_eq!(response(&mut s, &mut pending).await.1, "a GET /two");
    assert_eq!(response(&mut s, &mut pending).await.1, "a GET /three");
    s.write_all(b"GET /four HTTP/1.1\r\nHo").await.unwrap();
    s.flush().await.unwrap();
    tokio::time::sleep(PAUSE).await;
    s.write_all(b"st: k.example.com\r\n\r\n").await.unwrap();
    assert_eq!(response(&mut s, &mut pending).await.1, "a GET /four");
}

/// The start of a second head that came in the same read as the first request used to escape
/// the head deadline (bytes read while a request is in flight start no head), so a client could
/// hold the connection for `idle_timeout` with a never-finished head. Parking hands those bytes
/// to a fresh parser and starts the deadline: 408 after `header_read_timeout`.
#[tokio::test]
async fn partial_pipelined_head_gets_408_after_header_read_timeout() {
    let a = Origin::start("a").await;
    let gw = gateway(&a, "header_read_timeout = \"300ms\"\nidle_timeout = \"10s\"").await;
    let mut s = TcpStream::connect(gw.http).await.unwrap();
    let mut pending = Vec::new();
    s.write_all((get("/a") + "GET /b HTTP/1.1\r\nHo").as_bytes()).await.unwrap();
    assert_eq!(response(&mut s, &mut pending).await.1, "a GET /a");
    let started = std::time::Instant::now();
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest)).await;
    assert!(read.is_ok(), "no answer to the unfinished head within 5 s");
    let text = String::from_utf8_lossy(&rest);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(started.elapsed() < Duration::from_secs(3), "408 after {:?}", started.elapsed());
}
