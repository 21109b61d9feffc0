//! HTTP/2 clients that try to hurt the proxy with raw frames over h2c (rapid reset, SETTINGS
//! and CONTINUATION floods, oversized header blocks, too many streams). For each: the attacking
//! connection is closed or its excess refused, memory stays bounded, and another client's
//! request through a proxied route still succeeds.

mod support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use support::gateway::Gateway;
use support::h2raw::*;
use support::origin::Origin;

const HOST: &str = "h.example.com";

async fn proxy(extra: &str) -> (Origin, Gateway) {
    let a = Origin::start("a").await;
    let gw =
        Gateway::start(&format!("{extra}\n[[routes]]\nhosts = [\"{HOST}\"]\nupstreams = [\"{}\"]\n", a.addr)).await;
    (a, gw)
}

/// Another client's request through the proxied route, over HTTP/1.1 and over h2c, answered
/// within a generous bound (a liveness check, not a speed test).
async fn assert_responsive(gw: &Gateway) {
    let limit = Duration::from_secs(10);
    let h1 = tokio::time::timeout(limit, support::client::get(gw.http, HOST, "/")).await.expect("h1 answer in time");
    assert_eq!(h1.status, 200);
    let h2 = async {
        let mut tx = support::client::h2c(gw.http).await;
        let req = http::Request::get(format!("http://{HOST}/")).body(Full::new(Bytes::new())).unwrap();
        tx.send_request(req).await.unwrap().status()
    };
    assert_eq!(tokio::time::timeout(limit, h2).await.expect("h2c answer in time"), 200);
}

/// CVE-2023-44487: thousands of streams opened and reset at once. The server sends GOAWAY
/// (ENHANCE_YOUR_CALM) after a bounded number, few requests reach the upstream, and other
/// clients are served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rapid_reset_gets_goaway_and_spares_the_upstream() {
    let (a, gw) = proxy("").await;
    let (mut c, _) = RawH2::connect(gw.http, true).await;
    let block = get_block(HOST, "/", &[]);
    let mut sent = 0;
    'attack: for batch in 0..50u32 {
        let mut bytes = Vec::new();
        for i in 0..100u32 {
            let id = (batch * 100 + i) * 2 + 1;
            bytes.extend(frame(HEADERS, END_HEADERS | END_STREAM, id, &block));
            bytes.extend(frame(RST_STREAM, 0, id, &8u32.to_be_bytes()));
        }
        if !c.send(&bytes).await {
            break 'attack;
        }
        sent += 100;
    }
    assert!(c.seen.closed_within(Duration::from_secs(5)).await, "attacker still connected after {sent} resets");
    assert_eq!(c.seen.goaway(), Some(11), "GOAWAY ENHANCE_YOUR_CALM");
    let hits = a.hits();
    eprintln!("rapid reset: {sent} streams sent and reset, {hits} reached the upstream");
    assert!(hits < 200, "{hits} of {sent} reset requests reached the upstream");
    assert_responsive(&gw).await;
}

/// Thousands of SETTINGS frames from a client that never reads the ACKs: the server stops
/// reading once its ACKs back up (no unbounded queue), drops the connection at the output
/// stall deadline, and serves others meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_flood_without_reading_acks_stays_bounded() {
    let (_a, gw) = proxy("[limits]\nidle_timeout = \"1s\"\nheader_read_timeout = \"1s\"\n").await;
    let rss_before = rss_kib();
    let (mut c, read) = RawH2::connect(gw.http, false).await;
    // INITIAL_WINDOW_SIZE = 65535, 200 000 times (3 MB).
    let one = frame(SETTINGS, 0, 0, &[0, 4, 0, 0, 0xff, 0xff]);
    let batch: Vec<u8> = one.iter().copied().cycle().take(one.len() * 1000).collect();
    let flood = async {
        for _ in 0..200 {
            if !c.send(&batch).await {
                break;
            }
        }
    };
    // The server stops reading when its ACKs back up, so the flood may never finish sending.
    let _ = tokio::time::timeout(Duration::from_secs(3), flood).await;
    assert_responsive(&gw).await;
    let grown = rss_kib().saturating_sub(rss_before);
    eprintln!("SETTINGS flood: RSS grew by {grown} KiB");
    assert!(grown < 64 * 1024, "RSS grew by {grown} KiB during a SETTINGS flood");
    // Reading now drains what the socket buffers hold and then sees the end.
    let mut read = read.unwrap();
    let mut sink = Vec::new();
    let ended =
        tokio::time::timeout(Duration::from_secs(10), tokio::io::AsyncReadExt::read_to_end(&mut read, &mut sink)).await;
    assert!(ended.is_ok(), "flooding connection still open");
}

/// HEADERS without END_HEADERS, then CONTINUATION frames without end: GOAWAY after a bounded
/// number of frames (h2's limit derives from max_header_list_size), nothing reaches the
/// upstream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn continuation_flood_is_cut_off() {
    let (a, gw) = proxy("").await;
    let rss_before = rss_kib();
    let (mut c, _) = RawH2::connect(gw.http, true).await;
    let block = get_block(HOST, "/", &[]);
    assert!(c.send(&frame(HEADERS, END_STREAM, 1, &block)).await);
    // Each continuation carries another literal header of 1 KiB.
    let mut lit = vec![0x00];
    hpack_str(&mut lit, b"x-junk");
    hpack_str(&mut lit, &[b'j'; 1024]);
    let cont = frame(CONTINUATION, 0, 1, &lit);
    let mut sent = 0;
    while sent < 100_000 && !c.seen.is_closed() {
        let batch: Vec<u8> = cont.iter().copied().cycle().take(cont.len() * 100).collect();
        if !c.send(&batch).await {
            break;
        }
        sent += 100;
    }
    assert!(c.seen.closed_within(Duration::from_secs(5)).await, "still open after {sent} CONTINUATION frames");
    assert_eq!(c.seen.goaway(), Some(11), "GOAWAY ENHANCE_YOUR_CALM");
    assert!(sent < 100_000, "the server read all {sent} CONTINUATION frames");
    assert_eq!(a.hits(), 0);
    let grown = rss_kib().saturating_sub(rss_before);
    eprintln!("CONTINUATION flood: {sent} frames written before the close, RSS grew by {grown} KiB");
    assert!(grown < 64 * 1024, "RSS grew by {grown} KiB during a CONTINUATION flood");
    assert_responsive(&gw).await;
}

/// A header block bigger than max_header_list_size (many headers, in HEADERS and
/// CONTINUATION frames) is refused (431 or RST_STREAM) and never forwarded; a single HPACK
/// literal announcing a 1 GiB value is cut off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_header_blocks_are_refused() {
    let (a, gw) = proxy("").await;
    let (mut c, _) = RawH2::connect(gw.http, true).await;
    let filler = vec![b'f'; 4000];
    let extra: Vec<(&str, &[u8])> = (0..25).map(|_| ("x-filler", &filler[..])).collect();
    let block = get_block(HOST, "/", &extra);
    assert!(block.len() > 64 * 1024 + 1000);
    let mut bytes = Vec::new();
    let pieces: Vec<&[u8]> = block.chunks(16_000).collect();
    for (i, piece) in pieces.iter().enumerate() {
        let last = if i + 1 == pieces.len() { END_HEADERS } else { 0 };
        let (kind, flags) = if i == 0 { (HEADERS, END_STREAM | last) } else { (CONTINUATION, last) };
        bytes.extend(frame(kind, flags, 1, piece));
    }
    assert!(c.send(&bytes).await);
    let refused = async {
        while c.seen.headers.load(Ordering::SeqCst) + c.seen.rst.load(Ordering::SeqCst) == 0 && !c.seen.is_closed() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(5), refused).await.expect("the oversized request got an answer");
    assert_eq!(a.hits(), 0, "an oversized head reached the upstream");

    // One literal whose length says 1 GiB, then 16 KB continuations of it.
    let (mut c, _) = RawH2::connect(gw.http, true).await;
    let mut head = get_block(HOST, "/", &[]);
    head.push(0x00);
    hpack_str(&mut head, b"x-huge");
    hpack_int(&mut head, 0, 7, 1 << 30);
    head.extend(vec![b'h'; 16_000]);
    let mut sent = 0;
    if c.send(&frame(HEADERS, END_STREAM, 1, &head)).await {
        let cont = frame(CONTINUATION, 0, 1, &[b'h'; 16_000]);
        while sent < 10_000 && !c.seen.is_closed() && c.send(&cont).await {
            sent += 1;
        }
    }
    assert!(c.seen.closed_within(Duration::from_secs(5)).await, "still open after {sent} frames of one header");
    assert!(sent < 10_000, "the server read {sent} frames (160 MB) of one header");
    assert_eq!(a.hits(), 0);
    assert_responsive(&gw).await;
}

/// More concurrent streams than the advertised SETTINGS_MAX_CONCURRENT_STREAMS: the excess is
/// refused (RST_STREAM REFUSED_STREAM, or GOAWAY), and no more than the limit reach the
/// upstream at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_beyond_the_advertised_limit_are_refused() {
    let (a, gw) = proxy("").await;
    let (mut c, _) = RawH2::connect(gw.http, true).await;
    // Slow answers keep the streams open while the rest arrive.
    let block = get_block(HOST, "/delay/2000", &[]);
    let mut bytes = Vec::new();
    for i in 0..600u32 {
        bytes.extend(frame(HEADERS, END_HEADERS | END_STREAM, i * 2 + 1, &block));
    }
    assert!(c.send(&bytes).await);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let limit = c.seen.max_concurrent.load(Ordering::SeqCst);
    assert_eq!(limit, 256, "advertised MAX_CONCURRENT_STREAMS");
    let in_flight = a.hits();
    assert!(in_flight <= limit as usize, "{in_flight} requests in flight upstream, limit {limit}");
    let refused = c.seen.rst.load(Ordering::SeqCst);
    eprintln!("600 streams opened: {in_flight} reached the upstream, {refused} refused");
    assert!(refused >= 600 - limit as usize || c.seen.goaway().is_some(), "only {refused} streams refused");
    assert_responsive(&gw).await;
}

/// A client that opens a stream for a large response and never opens that stream's window,
/// while it keeps the connection busy (PINGs, another stream): the stream is reset at the
/// output-stall deadline and the upstream response let go of; the other stream, which reads,
/// streams for longer than that deadline and is not cut.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_whose_window_is_never_opened_is_reset_and_frees_the_upstream() {
    let (a, gw) = proxy("[limits]\nidle_timeout = \"1s\"\n").await;
    let (mut c, _) = RawH2::connect(gw.http, true).await;
    // SETTINGS_INITIAL_WINDOW_SIZE = 0: no stream may receive DATA until opened by
    // WINDOW_UPDATE (the connection window stays at 64 KiB).
    assert!(c.send(&frame(SETTINGS, 0, 0, &[0, 4, 0, 0, 0, 0])).await);
    assert!(c.send(&frame(HEADERS, END_HEADERS | END_STREAM, 1, &get_block(HOST, "/big/1024", &[]))).await);
    // Stream 3 reads: 40 chunks, 50 ms apart (2 s, longer than idle_timeout).
    assert!(c.send(&frame(HEADERS, END_HEADERS | END_STREAM, 3, &get_block(HOST, "/stream/40", &[]))).await);
    assert!(c.send(&frame(WINDOW_UPDATE, 0, 3, &(1u32 << 20).to_be_bytes())).await);
    let started = tokio::time::Instant::now();
    let mut reset_after = None;
    while started.elapsed() < Duration::from_secs(6) {
        assert!(c.send(&frame(PING, 0, 0, &[0; 8])).await, "connection closed");
        tokio::time::sleep(Duration::from_millis(100)).await;
        if reset_after.is_none() && c.seen.rst.load(Ordering::SeqCst) > 0 {
            reset_after = Some(started.elapsed());
        }
        if reset_after.is_some() && c.seen.data_bytes.load(Ordering::SeqCst) >= 40 * 1024 {
            break;
        }
    }
    eprintln!("withheld window: stream reset after {reset_after:?} (idle_timeout 1 s)");
    assert!(reset_after.is_some(), "the stalled stream was never reset");
    assert_eq!(c.seen.rst.load(Ordering::SeqCst), 1, "only the stalled stream is reset");
    assert!(!c.seen.is_closed(), "the connection itself stays up");
    assert_eq!(c.seen.data_bytes.load(Ordering::SeqCst), 40 * 1024, "the reading stream got its whole body");
    let released = async {
        while a.big_open.load(Ordering::SeqCst) > 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    assert!(tokio::time::timeout(Duration::from_secs(3), released).await.is_ok(), "upstream response still held");
    assert_responsive(&gw).await;
}

/// An event stream whose upstream is silent for longer than the output-stall deadline is not
/// a stalled client: the HTTP/2 stream stays open and the next event arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quiet_upstream_stream_over_h2_is_not_cut() {
    use http_body_util::BodyExt;
    use support::raw_origin::{RawOrigin, Reply, Step};
    let o = RawOrigin::start(|_| {
        Reply::Steps(vec![
            Step::Write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nfirst\n\r\n".to_vec()),
            Step::Sleep(Duration::from_millis(2500)),
            Step::Write(b"7\r\nsecond\n\r\n0\r\n\r\n".to_vec()),
        ])
    })
    .await;
    let gw = Gateway::start(&format!(
        "[limits]\nidle_timeout = \"1s\"\n[[routes]]\nhosts = [\"{HOST}\"]\nupstreams = [\"{}\"]\n",
        o.addr
    ))
    .await;
    let mut tx = support::client::h2c(gw.http).await;
    let req = http::Request::get(format!("http://{HOST}/events")).body(Full::new(Bytes::new())).unwrap();
    let resp = tx.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let body = tokio::time::timeout(Duration::from_secs(10), resp.into_body().collect()).await.expect("body in time");
    assert_eq!(body.expect("stream not reset").to_bytes(), "first\nsecond\n");
}
