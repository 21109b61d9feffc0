//! Upstreams that misbehave, over real sockets: resets mid-body, heads that are not HTTP,
//! enormous heads, bodies delimited by the close, silence, bad chunk sizes, floods of interim
//! responses, conflicting framing. Each gets the status README.md's failure table documents,
//! and never a panic, a hung client or a response that looks complete when it is not.

mod support;

use std::time::{Duration, Instant};

use http::StatusCode;
use support::client::get;
use support::gateway::Gateway;
use support::raw_origin::{RawOrigin, Reply, Step};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const HOST: &str = "hostile.example.com";

async fn gateway(origin: &RawOrigin) -> Gateway {
    gateway_with(origin, "").await
}

async fn gateway_with(origin: &RawOrigin, limits: &str) -> Gateway {
    Gateway::start(&format!("{limits}[[routes]]\nhosts = [\"{HOST}\"]\nupstreams = [\"{}\"]\n", origin.addr)).await
}

/// What a raw HTTP/1.1 client saw: the bytes, and whether swarmgate closed the connection
/// (a completed keep-alive response leaves it open).
struct Seen {
    text: String,
    closed: bool,
    took: Duration,
}

impl Seen {
    fn head(&self) -> Option<&str> {
        self.text.split_once("\r\n\r\n").map(|(h, _)| h)
    }
    fn body(&self) -> &str {
        self.text.split_once("\r\n\r\n").map_or("", |(_, b)| b)
    }
}

/// Sends one keep-alive GET and reads until swarmgate closes or `wait` passes.
async fn raw_get(gw: &Gateway, wait: Duration) -> Seen {
    raw_request(gw, "", wait).await
}

/// Sends one GET with `fields` (each ending in CRLF) and reads until swarmgate closes or
/// `wait` passes.
async fn raw_request(gw: &Gateway, fields: &str, wait: Duration) -> Seen {
    let started = Instant::now();
    let mut s = TcpStream::connect(gw.http).await.unwrap();
    s.write_all(format!("GET / HTTP/1.1\r\nHost: {HOST}\r\n{fields}\r\n").as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let closed = tokio::time::timeout(wait, s.read_to_end(&mut out)).await.is_ok();
    Seen { text: String::from_utf8_lossy(&out).into_owned(), closed, took: started.elapsed() }
}

fn steps(s: Vec<Step>) -> impl Fn(&support::raw_origin::RawRequest) -> Reply + Send + Sync + 'static {
    let s = std::sync::Mutex::new(Some(s));
    move |_| Reply::Steps(s.lock().unwrap().take().unwrap_or_else(|| vec![Step::Write(ok_bytes("again"))]))
}

fn ok_bytes(body: &str) -> Vec<u8> {
    format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}", body.len()).into_bytes()
}

/// The route still answers after the hostile exchange (the origin's second answer is a plain
/// 200 "again").
async fn route_still_works(gw: &Gateway) {
    let r = get(gw.http, HOST, "/").await;
    assert_eq!((r.status, r.text().as_str()), (StatusCode::OK, "again"), "the route keeps working");
}

#[tokio::test]
async fn reset_mid_body_with_a_length_is_never_a_complete_looking_response() {
    let origin = RawOrigin::start(steps(vec![
        Step::Write(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n".to_vec()),
        Step::Write(vec![b'x'; 1000]),
        Step::Sleep(Duration::from_millis(200)),
        Step::Reset,
    ]))
    .await;
    let gw = gateway(&origin).await;
    let seen = raw_get(&gw, Duration::from_secs(5)).await;
    assert!(seen.closed, "the client connection is closed, not left hanging ({:?})", seen.took);
    if let Some(head) = seen.head() {
        assert!(head.starts_with("HTTP/1.1 200"), "head: {head}");
        assert!(head.to_lowercase().contains("content-length: 100000"), "head: {head}");
        assert!(seen.body().len() < 100000, "fewer bytes than the declared length");
    }
    route_still_works(&gw).await;
}

#[tokio::test]
async fn reset_mid_chunked_body_never_sends_the_last_chunk() {
    let origin = RawOrigin::start(steps(vec![
        Step::Write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n".to_vec()),
        Step::Sleep(Duration::from_millis(200)),
        Step::Reset,
    ]))
    .await;
    let gw = gateway(&origin).await;
    let seen = raw_get(&gw, Duration::from_secs(5)).await;
    assert!(seen.closed, "the client connection is closed, not left hanging");
    assert!(seen.head().is_some_and(|h| h.starts_with("HTTP/1.1 200")), "saw {:?}", seen.text);
    assert!(!seen.body().contains("0\r\n\r\n"), "no last chunk: {:?}", seen.body());
    route_still_works(&gw).await;
}

#[tokio::test]
async fn heads_that_are_not_http_are_502() {
    for bad in [
        "HTTP/1.1 abc OK\r\n\r\n",
        "HTTP/1.1 099 Low\r\nContent-Length: 0\r\n\r\n",
        "HTTP/1.1 2000 Long\r\n\r\n",
        "HTTP/9.9 200 OK\r\n\r\n",
        "HTTP/1.1 200 OK\r\nBad Name: v\r\n\r\n",
        "HTTP/1.1 200 OK\r\nX-Nul: a\0b\r\nContent-Length: 0\r\n\r\n",
        "\0\0\0\0\0\0\0\0\r\n\r\n",
    ] {
        let origin = RawOrigin::start(steps(vec![Step::Write(bad.as_bytes().to_vec())])).await;
        let gw = gateway(&origin).await;
        let r = get(gw.http, HOST, "/").await;
        assert_eq!(r.status, StatusCode::BAD_GATEWAY, "for {bad:?}");
        route_still_works(&gw).await;
    }
}

#[tokio::test]
async fn enormous_response_heads_are_502() {
    let big_field = format!("HTTP/1.1 200 OK\r\nX-Big: {}\r\nContent-Length: 0\r\n\r\n", "a".repeat(100 * 1024));
    let many: String = (0..500).map(|i| format!("X-{i}: v\r\n")).collect();
    let many_fields = format!("HTTP/1.1 200 OK\r\n{many}Content-Length: 0\r\n\r\n");
    // A head that never ends: the origin keeps sending fields and never the empty line.
    let endless: Vec<Step> = std::iter::once(Step::Write(b"HTTP/1.1 200 OK\r\n".to_vec()))
        .chain(
            (0..200)
                .map(|_| Step::Write(b"X-More: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n".repeat(20))),
        )
        .chain([Step::Hang])
        .collect();
    for (what, script) in [
        ("100 KB field", vec![Step::Write(big_field.into_bytes())]),
        ("500 fields", vec![Step::Write(many_fields.into_bytes())]),
        ("endless head", endless),
    ] {
        let origin = RawOrigin::start(steps(script)).await;
        let gw = gateway(&origin).await;
        let started = Instant::now();
        let r = get(gw.http, HOST, "/").await;
        assert_eq!(r.status, StatusCode::BAD_GATEWAY, "{what}");
        assert!(started.elapsed() < Duration::from_secs(5), "{what}: refused at the limit, not at the timeout");
        route_still_works(&gw).await;
    }
}

#[tokio::test]
async fn body_delimited_by_the_close_streams_through_whole() {
    let body: Vec<u8> = (0..2 * 1024 * 1024).map(|i| b'a' + (i % 26) as u8).collect();
    let mut script = vec![Step::Write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n".to_vec())];
    for piece in body.chunks(256 * 1024) {
        script.push(Step::Write(piece.to_vec()));
        script.push(Step::Sleep(Duration::from_millis(20)));
    }
    let origin = RawOrigin::start(steps(script)).await;
    let gw = gateway(&origin).await;
    let r = get(gw.http, HOST, "/").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body.len(), body.len(), "the whole close-delimited body arrives");
    assert!(r.body == body, "byte for byte");
    route_still_works(&gw).await;
}

#[tokio::test]
async fn an_upstream_that_never_answers_is_504_within_the_response_timeout() {
    let origin = RawOrigin::start(steps(vec![Step::Hang])).await;
    let gw = gateway_with(&origin, "[limits]\nupstream_response_timeout = \"500ms\"\n").await;
    let started = Instant::now();
    let r = get(gw.http, HOST, "/").await;
    assert_eq!(r.status, StatusCode::GATEWAY_TIMEOUT);
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(450) && took < Duration::from_secs(3), "took {took:?}");
    route_still_works(&gw).await;
}

#[tokio::test]
async fn an_upstream_that_stops_mid_head_is_504_within_the_response_timeout() {
    let origin = RawOrigin::start(steps(vec![Step::Write(b"HTTP/1.1 200 OK\r\nX-Half: ".to_vec()), Step::Hang])).await;
    let gw = gateway_with(&origin, "[limits]\nupstream_response_timeout = \"500ms\"\n").await;
    let r = get(gw.http, HOST, "/").await;
    assert_eq!(r.status, StatusCode::GATEWAY_TIMEOUT);
    route_still_works(&gw).await;
}

#[tokio::test]
async fn a_bad_chunk_size_before_any_body_byte_is_502() {
    for bad in ["zz\r\nhello\r\n0\r\n\r\n", "-1\r\nx\r\n0\r\n\r\n", "10000000000000000\r\n", ";\r\n\r\n"] {
        let head = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
        let origin = RawOrigin::start(steps(vec![Step::Write(format!("{head}{bad}").into_bytes())])).await;
        let gw = gateway(&origin).await;
        let seen = raw_request(&gw, "Connection: close\r\n", Duration::from_secs(5)).await;
        assert!(
            seen.head().is_some_and(|h| h.starts_with("HTTP/1.1 502")),
            "for {bad:?} the client gets a 502, not {:?}",
            seen.text
        );
        route_still_works(&gw).await;
    }
}

#[tokio::test]
async fn a_bad_chunk_size_after_the_head_went_out_aborts_the_client_connection() {
    let origin = RawOrigin::start(steps(vec![
        Step::Write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n".to_vec()),
        Step::Sleep(Duration::from_millis(300)),
        Step::Write(b"zz\r\nworld\r\n0\r\n\r\n".to_vec()),
        Step::Hang,
    ]))
    .await;
    let gw = gateway(&origin).await;
    let seen = raw_get(&gw, Duration::from_secs(5)).await;
    assert!(seen.closed, "the client connection is aborted, not left hanging ({:?})", seen.took);
    assert!(seen.head().is_some_and(|h| h.starts_with("HTTP/1.1 200")), "saw {:?}", seen.text);
    assert!(seen.body().contains("hello"), "what came before the fault arrived");
    assert!(!seen.body().contains("0\r\n\r\n"), "no last chunk: {:?}", seen.body());
    route_still_works(&gw).await;
}

#[tokio::test]
async fn a_flood_of_interim_responses_is_502_not_a_spin() {
    let flood = b"HTTP/1.1 100 Continue\r\n\r\n".repeat(10_000);
    let mut script = vec![Step::Write(flood)];
    script.push(Step::Write(ok_bytes("late")));
    let origin = RawOrigin::start(steps(script)).await;
    let gw = gateway(&origin).await;
    let started = Instant::now();
    let r = get(gw.http, HOST, "/").await;
    assert_eq!(r.status, StatusCode::BAD_GATEWAY);
    assert!(started.elapsed() < Duration::from_secs(5));
    route_still_works(&gw).await;
}

#[tokio::test]
async fn an_endless_trickle_of_interim_responses_ends_at_the_response_timeout() {
    // One 103 every 50 ms, for ever: each one is a fresh head, none the answer.
    let script: Vec<Step> = (0..400)
        .flat_map(|_| {
            [
                Step::Write(b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n".to_vec()),
                Step::Sleep(Duration::from_millis(50)),
            ]
        })
        .chain([Step::Hang])
        .collect();
    let origin = RawOrigin::start(steps(script)).await;
    let gw = gateway_with(&origin, "[limits]\nupstream_response_timeout = \"1s\"\n").await;
    let started = Instant::now();
    let r = get(gw.http, HOST, "/").await;
    assert!(matches!(r.status, StatusCode::GATEWAY_TIMEOUT | StatusCode::BAD_GATEWAY), "got {}", r.status);
    assert!(started.elapsed() < Duration::from_secs(4), "took {:?}", started.elapsed());
}

#[tokio::test]
async fn both_content_length_and_chunked_reads_the_chunks_and_drops_the_connection() {
    let origin = RawOrigin::start(|req| {
        if req.conn == 0 {
            Reply::Send(
                b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
                    .to_vec(),
            )
        } else {
            Reply::Send(ok_bytes("again"))
        }
    })
    .await;
    let gw = gateway(&origin).await;
    let r = get(gw.http, HOST, "/").await;
    assert_eq!((r.status, r.text().as_str()), (StatusCode::OK, "hello"), "Transfer-Encoding wins");
    assert_ne!(r.header("content-length"), Some("3"), "the overridden length is not passed on");
    route_still_works(&gw).await;
    assert_eq!(origin.connections(), 2, "a message framed both ways is not trusted with a second request");
}

#[tokio::test]
async fn conflicting_content_lengths_are_502() {
    for lengths in ["Content-Length: 5\r\nContent-Length: 6\r\n", "Content-Length: 5, 6\r\n", "Content-Length: +5\r\n"]
    {
        let origin =
            RawOrigin::start(steps(vec![Step::Write(format!("HTTP/1.1 200 OK\r\n{lengths}\r\nhello!").into_bytes())]))
                .await;
        let gw = gateway(&origin).await;
        let r = get(gw.http, HOST, "/").await;
        assert_eq!(r.status, StatusCode::BAD_GATEWAY, "for {lengths:?}");
        route_still_works(&gw).await;
    }
}

#[tokio::test]
async fn a_bad_chunk_size_after_the_head_went_out_resets_the_http2_stream() {
    let origin = RawOrigin::start(steps(vec![
        Step::Write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n".to_vec()),
        Step::Sleep(Duration::from_millis(300)),
        Step::Write(b"zz\r\n".to_vec()),
        Step::Hang,
    ]))
    .await;
    let gw = gateway(&origin).await;
    let stream = TcpStream::connect(gw.http).await.unwrap();
    let (mut tx, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let req = http::Request::get(format!("http://{HOST}/")).body(http_body_util::Empty::<bytes::Bytes>::new()).unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(5), tx.send_request(req)).await.unwrap().unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let body = tokio::time::timeout(Duration::from_secs(5), http_body_util::BodyExt::collect(resp.into_body()))
        .await
        .expect("the stream ends, it does not hang");
    assert!(body.is_err(), "the client sees the body fail, not end cleanly");
}

#[tokio::test]
async fn a_client_body_that_stalls_is_408_and_not_held_against_the_upstream() {
    let origin = RawOrigin::start(|_| Reply::Send(ok_bytes("again"))).await;
    let gw = gateway_with(&origin, "[limits]\nupstream_response_timeout = \"500ms\"\n").await;
    // More stalls than the passive health check tolerates before it ejects an endpoint.
    for _ in 0..4 {
        let started = Instant::now();
        let mut s = TcpStream::connect(gw.http).await.unwrap();
        let head = format!("POST /upload HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: 100\r\n\r\nonly ten b");
        s.write_all(head.as_bytes()).await.unwrap();
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
        let text = String::from_utf8_lossy(&out);
        assert!(text.starts_with("HTTP/1.1 408"), "a stalled upload is the client's fault: {text:?}");
        assert!(started.elapsed() < Duration::from_secs(3), "answered at the timeout, took {:?}", started.elapsed());
    }
    route_still_works(&gw).await;
}
