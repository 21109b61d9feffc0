//! swarmgate's own HTTP/1.1 client to upstreams, against a scripted origin that writes exact
//! bytes: framing (chunked with trailers, close-delimited, interim 1xx, HEAD), keep-alive
//! reuse, the idle-close race, early answers to uploads, and broken upstreams.

mod support;

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use support::client::{get, raw, send};
use support::gateway::Gateway;
use support::raw_origin::{RawOrigin, Reply};

const HOST: &str = "u.example.com";

async fn gateway(origin: &RawOrigin) -> Gateway {
    Gateway::start(&format!("[[routes]]\nhosts = [\"{HOST}\"]\nupstreams = [\"{}\"]\n", origin.addr)).await
}

fn ok(body: &str) -> Vec<u8> {
    format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}", body.len()).into_bytes()
}

/// One keep-alive HTTP/1.1 client connection: its requests are all served by the same
/// swarmgate thread, hence from the same upstream pool.
struct KeepAlive(hyper::client::conn::http1::SendRequest<Full<Bytes>>);

impl KeepAlive {
    async fn open(gw: &Gateway) -> KeepAlive {
        let stream = tokio::net::TcpStream::connect(gw.http).await.unwrap();
        let (tx, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await.unwrap();
        tokio::spawn(conn);
        KeepAlive(tx)
    }

    async fn send(&mut self, req: Request<Full<Bytes>>) -> (StatusCode, http::HeaderMap, Bytes) {
        let resp = tokio::time::timeout(Duration::from_secs(10), self.0.send_request(req)).await.unwrap().unwrap();
        let (parts, body) = resp.into_parts();
        (parts.status, parts.headers, body.collect().await.unwrap().to_bytes())
    }

    async fn get(&mut self, path: &str) -> (StatusCode, Bytes) {
        let (status, _, body) = self.send(Request::get(path).header("host", HOST).body(Full::default()).unwrap()).await;
        (status, body)
    }
}

/// An HTTP/2 (prior knowledge) client connection to swarmgate's plain listener.
async fn h2c(
    gw: &Gateway,
) -> hyper::client::conn::http2::SendRequest<http_body_util::combinators::BoxBody<Bytes, Infallible>> {
    let stream = tokio::net::TcpStream::connect(gw.http).await.unwrap();
    let (tx, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    tx
}

#[tokio::test]
async fn chunked_response_streams_with_its_trailers_and_the_connection_is_reused() {
    let origin = RawOrigin::start(|_| {
        Reply::Send(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nx-checksum: 42\r\n\r\n"
                .to_vec(),
        )
    })
    .await;
    let gw = gateway(&origin).await;
    let mut tx = h2c(&gw).await;
    for _ in 0..3 {
        let req = Request::get(format!("http://{HOST}/t")).body(Full::new(Bytes::new()).boxed()).unwrap();
        let resp = tx.send_request(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let collected = resp.into_body().collect().await.unwrap();
        assert_eq!(collected.trailers().and_then(|t| t.get("x-checksum")).unwrap(), "42");
        assert_eq!(collected.to_bytes(), "hello world");
    }
    assert_eq!(origin.connections(), 1, "one keep-alive connection served all three");
}

#[tokio::test]
async fn interim_responses_are_skipped_and_a_custom_reason_phrase_is_kept() {
    let origin = RawOrigin::start(|_| {
        Reply::Send(
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n\
              HTTP/1.1 200 Fine Thanks\r\nContent-Length: 2\r\n\r\nok"
                .to_vec(),
        )
    })
    .await;
    let gw = gateway(&origin).await;
    let text = raw(
        gw.http,
        format!("GET / HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n").as_bytes(),
        Duration::from_secs(5),
    )
    .await;
    assert!(text.starts_with("HTTP/1.1 200 Fine Thanks\r\n"), "got {text:?}");
    assert!(text.ends_with("\r\n\r\nok"), "got {text:?}");
}

#[tokio::test]
async fn close_delimited_body_is_read_to_the_end_and_the_connection_not_reused() {
    let body = "x".repeat(300 * 1024);
    let reply = format!("HTTP/1.1 200 OK\r\n\r\n{body}").into_bytes();
    let origin = RawOrigin::start(move |_| Reply::SendAndClose(reply.clone())).await;
    let gw = gateway(&origin).await;
    for _ in 0..2 {
        let r = get(gw.http, HOST, "/").await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.body.len(), body.len());
    }
    assert_eq!(origin.connections(), 2);
}

#[tokio::test]
async fn head_response_has_no_body_and_keeps_the_connection() {
    let origin = RawOrigin::start(|req| {
        if req.head.starts_with("head ") {
            Reply::Send(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n".to_vec())
        } else {
            Reply::Send(ok("after head"))
        }
    })
    .await;
    let gw = gateway(&origin).await;
    let mut client = KeepAlive::open(&gw).await;
    let (status, headers, body) =
        client.send(Request::head("/").header("host", HOST).body(Full::default()).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers.get("content-length").unwrap(), "1000");
    assert!(body.is_empty());
    assert_eq!(client.get("/").await.1, "after head");
    assert_eq!(origin.connections(), 1);
}

#[tokio::test]
async fn an_upstream_closing_an_idle_connection_costs_no_request() {
    // The origin answers as keep-alive, then closes each connection at once (its idle
    // timer firing): the pooled connection must be noticed as closed, not used.
    let origin = RawOrigin::start(|_| Reply::SendAndClose(ok("fine"))).await;
    let gw = gateway(&origin).await;
    for _ in 0..3 {
        let r = get(gw.http, HOST, "/").await;
        assert_eq!((r.status, r.text().as_str()), (StatusCode::OK, "fine"));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(origin.connections(), 3);
}

#[tokio::test]
async fn get_is_repeated_on_a_new_connection_when_a_reused_one_dies_before_answering() {
    // The second request on a connection is read, then the connection closes unanswered:
    // the upstream's keep-alive timer racing the request.
    let origin = RawOrigin::start(|req| if req.nth == 0 { Reply::Send(ok("fine")) } else { Reply::Close }).await;
    let gw = gateway(&origin).await;
    let mut client = KeepAlive::open(&gw).await;
    assert_eq!(client.get("/1").await.0, StatusCode::OK);
    assert_eq!(client.get("/2").await, (StatusCode::OK, Bytes::from("fine")));
    let paths: Vec<String> = origin.requests().iter().map(|r| r.head.lines().next().unwrap().to_owned()).collect();
    assert_eq!(paths, ["get /1 http/1.1", "get /2 http/1.1", "get /2 http/1.1"]);
}

#[tokio::test]
async fn post_is_not_repeated_once_the_upstream_may_have_acted_on_it() {
    let origin = RawOrigin::start(|req| if req.nth == 0 { Reply::Send(ok("fine")) } else { Reply::Close }).await;
    let gw = gateway(&origin).await;
    let mut client = KeepAlive::open(&gw).await;
    assert_eq!(client.get("/1").await.0, StatusCode::OK);
    let post = Request::post("/order").header("host", HOST).body(Full::new(Bytes::from_static(b"one"))).unwrap();
    assert_eq!(client.send(post).await.0, StatusCode::BAD_GATEWAY);
    let posts = origin.requests().iter().filter(|r| r.head.starts_with("post ")).count();
    assert_eq!(posts, 1, "the POST reached the origin exactly once");
}

#[tokio::test]
async fn request_body_of_unknown_length_goes_chunked() {
    let origin = RawOrigin::start(|_| Reply::Send(ok("got it"))).await;
    let gw = gateway(&origin).await;
    let mut tx = h2c(&gw).await;
    let frames =
        ["first ", "second ", "third"].map(|s| Ok::<_, Infallible>(Frame::data(Bytes::from_static(s.as_bytes()))));
    let body = StreamBody::new(futures_util::stream::iter(frames)).boxed();
    let resp = tx.send_request(Request::post(format!("http://{HOST}/up")).body(body).unwrap()).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let seen = &origin.requests()[0];
    assert_eq!(seen.header("transfer-encoding"), Some("chunked"));
    assert_eq!(seen.body, b"first second third");
}

#[tokio::test]
async fn an_upstream_answering_before_the_whole_upload_is_heard() {
    // The origin refuses the upload after reading only the head; the client must get that
    // answer, not a 502 or a timeout.
    let origin = RawOrigin::start(|_| {
        Reply::Early(
            b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 8\r\nConnection: close\r\n\r\ntoo big!".to_vec(),
        )
    })
    .await;
    let gw = gateway(&origin).await;
    let upload = Bytes::from(vec![b'u'; 16 * 1024 * 1024]);
    let req = Request::post("/upload").header("host", HOST).body(Full::new(upload)).unwrap();
    let r = tokio::time::timeout(Duration::from_secs(10), send(gw.http, req)).await.expect("answer in time");
    assert_eq!((r.status, r.text().as_str()), (StatusCode::PAYLOAD_TOO_LARGE, "too big!"));
}

#[tokio::test]
async fn malformed_answer_is_a_502_and_the_route_keeps_working() {
    let origin = RawOrigin::start(|req| {
        if req.conn == 0 {
            Reply::SendAndClose(b"SSH-2.0-OpenSSH\r\n\r\n".to_vec())
        } else {
            Reply::Send(ok("fine"))
        }
    })
    .await;
    let gw = gateway(&origin).await;
    assert_eq!(get(gw.http, HOST, "/").await.status, StatusCode::BAD_GATEWAY);
    let r = get(gw.http, HOST, "/").await;
    assert_eq!((r.status, r.text().as_str()), (StatusCode::OK, "fine"));
}

#[tokio::test]
async fn truncated_body_is_not_passed_off_as_complete() {
    let origin =
        RawOrigin::start(|_| Reply::SendAndClose(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten b".to_vec()))
            .await;
    let gw = gateway(&origin).await;
    let started = std::time::Instant::now();
    let text = raw(gw.http, format!("GET / HTTP/1.1\r\nHost: {HOST}\r\n\r\n").as_bytes(), Duration::from_secs(5)).await;
    assert!(started.elapsed() < Duration::from_secs(4), "the client connection is closed, not left hanging");
    // Depending on timing the client gets the head and the ten bytes, or nothing; never a
    // body that looks complete.
    if let Some((head, body)) = text.split_once("\r\n\r\n") {
        assert!(head.to_lowercase().contains("content-length: 100"), "head: {head}");
        assert_eq!(body, "only ten b");
    } else {
        assert_eq!(text, "", "no partial head either");
    }
}

#[tokio::test]
async fn hop_by_hop_response_fields_stay_behind() {
    let origin = RawOrigin::start(|_| {
        Reply::Send(
            b"HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Internal\r\nX-Internal: upstream-only\r\nKeep-Alive: timeout=5\r\n\
              Proxy-Authenticate: Basic\r\nX-Kept: yes\r\nContent-Length: 2\r\n\r\nok"
                .to_vec(),
        )
    })
    .await;
    let gw = gateway(&origin).await;
    let r = get(gw.http, HOST, "/").await;
    assert_eq!((r.status, r.text().as_str(), r.header("x-kept")), (StatusCode::OK, "ok", Some("yes")));
    for hop in ["x-internal", "keep-alive", "proxy-authenticate"] {
        assert!(r.header(hop).is_none(), "{hop} must not reach the client");
    }
}

#[tokio::test]
async fn expect_continue_upload_goes_through() {
    // curl's way with larger uploads: send the head, wait for 100 Continue, then the body.
    let origin = RawOrigin::start(|_| Reply::Send(ok("stored"))).await;
    let gw = gateway(&origin).await;
    let mut s = tokio::net::TcpStream::connect(gw.http).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let head = format!("POST /up HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: 5000\r\nExpect: 100-continue\r\n\r\n");
    s.write_all(head.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 256];
    let n =
        tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await.expect("100 Continue in time").unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 100 Continue"), "got {:?}", &buf[..n]);
    s.write_all(&[b'x'; 5000]).await.unwrap();
    let mut rest = Vec::new();
    let read = async {
        loop {
            let n = s.read(&mut buf).await.unwrap();
            rest.extend_from_slice(&buf[..n]);
            if n == 0 || rest.ends_with(b"stored") {
                break;
            }
        }
    };
    let in_time = tokio::time::timeout(Duration::from_secs(5), read).await.is_ok();
    let text = String::from_utf8_lossy(&rest);
    assert!(in_time, "final answer in time; got {text:?}");
    assert!(text.starts_with("HTTP/1.1 200 OK"), "got {text:?}");
    assert_eq!(origin.requests()[0].body.len(), 5000);
}

#[tokio::test]
async fn host_is_the_endpoint_when_the_route_does_not_pass_it() {
    let origin = RawOrigin::start(|_| Reply::Send(ok("fine"))).await;
    let gw = Gateway::start(&format!(
        "[[routes]]\nhosts = [\"{HOST}\"]\nupstreams = [\"{}\"]\npass_host = false\n",
        origin.addr
    ))
    .await;
    assert_eq!(get(gw.http, HOST, "/").await.status, StatusCode::OK);
    let seen = &origin.requests()[0];
    assert_eq!(seen.header("host"), Some(origin.addr.to_string().as_str()));
    assert_eq!(seen.header("x-forwarded-host"), Some(HOST));
}

#[tokio::test]
async fn response_timeout_is_rearmed_for_each_request_on_a_pooled_connection() {
    // Timeout 400 ms; two 250 ms answers on the same upstream connection with a pause between
    // them longer than the timeout: neither may time out, and a 600 ms answer must.
    let origin = support::origin::Origin::start("slow").await;
    let gw = Gateway::start(&format!(
        "[limits]\nupstream_response_timeout = \"400ms\"\n[[routes]]\nhosts = [\"{HOST}\"]\nupstreams = [\"{}\"]\n",
        origin.addr
    ))
    .await;
    let mut client = KeepAlive::open(&gw).await;
    assert_eq!(client.get("/delay/250").await.0, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(client.get("/delay/250").await.0, StatusCode::OK);
    assert_eq!(client.get("/delay/250").await.0, StatusCode::OK);
    assert_eq!(client.get("/delay/600").await.0, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(client.get("/delay/10").await.0, StatusCode::OK);
}

#[tokio::test]
async fn upload_goes_on_after_an_early_response_head() {
    // The origin sends its 200 head as soon as it has the request head, then reads the
    // whole upload, then says how much it got: the upload must not stop at the head.
    let origin =
        RawOrigin::start(|_| Reply::HeadFirst(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec())).await;
    let gw = gateway(&origin).await;
    let upload = Bytes::from(vec![b'u'; 4 * 1024 * 1024]);
    let req = Request::post("/echo").header("host", HOST).body(Full::new(upload)).unwrap();
    let r = tokio::time::timeout(Duration::from_secs(10), send(gw.http, req)).await.expect("answer in time");
    assert_eq!((r.status, r.text().as_str()), (StatusCode::OK, "4194304 bytes"));
}

#[tokio::test]
async fn trailers_reach_an_http11_client_that_accepts_them() {
    let origin = RawOrigin::start(|_| {
        Reply::Send(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: x-checksum\r\n\r\n2\r\nok\r\n0\r\nx-checksum: 42\r\n\r\n"
                .to_vec(),
        )
    })
    .await;
    let gw = gateway(&origin).await;
    let mut client = KeepAlive::open(&gw).await;
    let req = Request::get("/").header("host", HOST).header("te", "trailers").body(Full::default()).unwrap();
    let resp = client.0.send_request(req).await.unwrap();
    let collected = resp.into_body().collect().await.unwrap();
    assert_eq!(collected.trailers().and_then(|t| t.get("x-checksum")).unwrap(), "42");
    assert_eq!(collected.to_bytes(), "ok");
}

#[tokio::test]
async fn h2c_upgrade_is_not_passed_on() {
    // An upstream that would switch to HTTP/2 if asked: the client must get a plain answer,
    // or every later request on the tunnel would bypass routing and authentication.
    let origin = RawOrigin::start(|req| {
        if req.head.contains("upgrade: h2c") {
            Reply::Send(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n".to_vec())
        } else {
            Reply::Send(ok("plain"))
        }
    })
    .await;
    let gw = gateway(&origin).await;
    let req = Request::get("/")
        .header("host", HOST)
        .header("connection", "Upgrade, HTTP2-Settings")
        .header("upgrade", "h2c")
        .header("http2-settings", "AAMAAABkAAQAAP__")
        .body(Full::default())
        .unwrap();
    let r = send(gw.http, req).await;
    assert_eq!((r.status, r.text().as_str()), (StatusCode::OK, "plain"));
    let head = &origin.requests()[0].head;
    assert!(!head.contains("upgrade") && !head.contains("http2-settings"), "origin saw {head}");
}

#[tokio::test]
async fn broken_client_uploads_do_not_eject_a_healthy_endpoint() {
    // Clients that promise more body than they send get a 400 and cost the endpoint nothing:
    // after more of them than the ejection threshold, the route still answers.
    let origin = RawOrigin::start(|_| Reply::Send(ok("fine"))).await;
    let gw = gateway(&origin).await;
    for _ in 0..4 {
        let head = format!("POST /up HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: 100\r\n\r\nonly ten b");
        let mut s = tokio::net::TcpStream::connect(gw.http).await.unwrap();
        tokio::io::AsyncWriteExt::write_all(&mut s, head.as_bytes()).await.unwrap();
        tokio::io::AsyncWriteExt::shutdown(&mut s).await.unwrap();
        let mut out = Vec::new();
        let _ =
            tokio::time::timeout(Duration::from_secs(5), tokio::io::AsyncReadExt::read_to_end(&mut s, &mut out)).await;
    }
    let r = get(gw.http, HOST, "/").await;
    assert_eq!((r.status, r.text().as_str()), (StatusCode::OK, "fine"));
}
