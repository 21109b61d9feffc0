//! A hand-written HTTP/2 client for hostile-client tests: it writes whatever frames a test
//! asks for (no flow control, no limits, no HPACK state) and records what the server sends.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;

pub const DATA: u8 = 0;
pub const HEADERS: u8 = 1;
pub const RST_STREAM: u8 = 3;
pub const SETTINGS: u8 = 4;
pub const PING: u8 = 6;
pub const GOAWAY: u8 = 7;
pub const WINDOW_UPDATE: u8 = 8;
pub const CONTINUATION: u8 = 9;

pub const END_STREAM: u8 = 0x1;
pub const END_HEADERS: u8 = 0x4;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// One frame on the wire.
pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut out = Vec::with_capacity(9 + payload.len());
    out.extend_from_slice(&len.to_be_bytes()[1..]);
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// An HPACK integer with an `n`-bit prefix; `first` holds the pattern bits above the prefix.
pub fn hpack_int(out: &mut Vec<u8>, first: u8, n: u32, mut value: usize) {
    let max = (1usize << n) - 1;
    if value < max {
        out.push(first | value as u8);
        return;
    }
    out.push(first | max as u8);
    value -= max;
    while value >= 128 {
        out.push((value % 128 + 128) as u8);
        value /= 128;
    }
    out.push(value as u8);
}

/// An HPACK string literal, not Huffman-coded.
pub fn hpack_str(out: &mut Vec<u8>, s: &[u8]) {
    hpack_int(out, 0, 7, s.len());
    out.extend_from_slice(s);
}

/// A header block for `GET path` to `authority` (static-table names, literals not indexed),
/// plus `extra` headers as literals with new names.
pub fn get_block(authority: &str, path: &str, extra: &[(&str, &[u8])]) -> Vec<u8> {
    // :method GET (2), :scheme http (6).
    let mut out = vec![0x82, 0x86];
    // Literal without indexing, indexed names :path (4) and :authority (1).
    hpack_int(&mut out, 0x00, 4, 4);
    hpack_str(&mut out, path.as_bytes());
    hpack_int(&mut out, 0x00, 4, 1);
    hpack_str(&mut out, authority.as_bytes());
    for (name, value) in extra {
        out.push(0x00);
        hpack_str(&mut out, name.as_bytes());
        hpack_str(&mut out, value);
    }
    out
}

/// What the server sent on a raw connection, counted as it arrives.
#[derive(Default, Debug)]
pub struct Seen {
    pub frames: AtomicUsize,
    pub headers: AtomicUsize,
    pub rst: AtomicUsize,
    pub data_bytes: AtomicUsize,
    /// GOAWAY error code + 1 (0 = none yet).
    pub goaway: AtomicU32,
    /// Largest stream id the server's SETTINGS advertised as MAX_CONCURRENT_STREAMS (0 = none).
    pub max_concurrent: AtomicU32,
    pub closed: AtomicBool,
    pub closed_notify: tokio::sync::Notify,
}

impl Seen {
    pub fn goaway(&self) -> Option<u32> {
        self.goaway.load(Ordering::SeqCst).checked_sub(1)
    }
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }
    /// True once the server closed the connection, false if it did not within `limit`.
    pub async fn closed_within(&self, limit: Duration) -> bool {
        let wait = async {
            loop {
                let notified = self.closed_notify.notified();
                if self.is_closed() {
                    return;
                }
                notified.await;
            }
        };
        tokio::time::timeout(limit, wait).await.is_ok()
    }
}

/// A raw HTTP/2 prior-knowledge connection: the preface and an empty SETTINGS are sent.
pub struct RawH2 {
    pub w: OwnedWriteHalf,
    pub seen: Arc<Seen>,
}

impl RawH2 {
    /// Connects; `read`: whether a task reads (and records) what the server sends, or the
    /// client never reads at all.
    pub async fn connect(addr: SocketAddr, read: bool) -> (RawH2, Option<tokio::net::tcp::OwnedReadHalf>) {
        let s = TcpStream::connect(addr).await.unwrap();
        let (r, mut w) = s.into_split();
        w.write_all(PREFACE).await.unwrap();
        w.write_all(&frame(SETTINGS, 0, 0, &[])).await.unwrap();
        let seen = Arc::new(Seen::default());
        let kept = if read {
            tokio::spawn(read_frames(r, seen.clone()));
            None
        } else {
            Some(r)
        };
        (RawH2 { w, seen }, kept)
    }

    /// Writes bytes; false once the server has closed (or reset) the connection.
    pub async fn send(&mut self, bytes: &[u8]) -> bool {
        self.w.write_all(bytes).await.is_ok()
    }
}

async fn read_frames(mut r: tokio::net::tcp::OwnedReadHalf, seen: Arc<Seen>) {
    let mut head = [0u8; 9];
    let mut payload = Vec::new();
    loop {
        if r.read_exact(&mut head).await.is_err() {
            break;
        }
        let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
        payload.resize(len, 0);
        if r.read_exact(&mut payload).await.is_err() {
            break;
        }
        seen.frames.fetch_add(1, Ordering::SeqCst);
        match head[3] {
            HEADERS => _ = seen.headers.fetch_add(1, Ordering::SeqCst),
            RST_STREAM => _ = seen.rst.fetch_add(1, Ordering::SeqCst),
            DATA => _ = seen.data_bytes.fetch_add(len, Ordering::SeqCst),
            GOAWAY if len >= 8 => {
                let code = u32::from_be_bytes([payload[4], payload[5], payload[6], payload[7]]);
                seen.goaway.store(code + 1, Ordering::SeqCst);
            }
            SETTINGS if head[4] & 1 == 0 => {
                for s in payload.chunks_exact(6) {
                    if u16::from_be_bytes([s[0], s[1]]) == 3 {
                        seen.max_concurrent.store(u32::from_be_bytes([s[2], s[3], s[4], s[5]]), Ordering::SeqCst);
                    }
                }
            }
            _ => {}
        }
    }
    seen.closed.store(true, Ordering::SeqCst);
    seen.closed_notify.notify_waiters();
}

/// Resident set size of this process (the test and the in-process proxy), in KiB.
pub fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}
