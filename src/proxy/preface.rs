//! Telling HTTP/1.1 from h2c prior knowledge on a plain connection.
//!
//! The first bytes are *read* (not peeked) and replayed to the protocol's server through
//! [`Replay`]. Peeking cannot work: `peek` is ready again at once while the bytes sit
//! unread, so waiting for "more of the preface" turns into a busy loop that never sees the
//! client close and never reaches its deadline (a single `P` then disconnect pinned a core).
//! A read waits for new bytes or the end of the stream like any other read.

use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, ReadBuf};
use tokio::net::TcpStream;

use super::watchdog::Activity;

pub const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// What the first bytes of a plain connection said.
pub enum Detected {
    /// The full HTTP/2 preface: serve h2c.
    H2c(TcpStream, Replay),
    /// Anything else (or nothing yet): serve HTTP/1.1.
    H1(TcpStream, Replay),
    /// The client closed (or the read failed) before a protocol was clear: nothing to serve.
    Closed,
    /// A strict prefix of the preface and then nothing until the head deadline: the request
    /// head is overdue (408), whatever protocol it was going to be.
    Stalled(TcpStream),
}

/// Reads until the bytes stop matching the preface, the whole preface arrived, the client
/// closed, or `timeout` passed. Marks `activity` when the first byte of a head arrives, so the
/// head deadline counts from then and not from when hyper reads the replayed bytes.
pub async fn detect(mut stream: TcpStream, timeout: Duration, activity: &Activity) -> Detected {
    let mut buf = [0u8; H2_PREFACE.len()];
    let mut len = 0;
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let n = match tokio::time::timeout_at(deadline, stream.read(&mut buf[len..])).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Detected::Closed,
            Ok(Ok(n)) => n,
            // Nothing at all yet: an idle connection, which HTTP/1.1's idle deadline governs.
            Err(_) if len == 0 => return Detected::H1(stream, Replay::default()),
            Err(_) => return Detected::Stalled(stream),
        };
        if len == 0 {
            activity.saw_bytes();
        }
        len += n;
        if buf[..len] != H2_PREFACE[..len] {
            return Detected::H1(stream, Replay::new(buf, len));
        }
        if len == H2_PREFACE.len() {
            return Detected::H2c(stream, Replay::new(buf, len));
        }
    }
}

/// The bytes detection read, to be handed to the protocol's server before anything else
/// from the socket (the IO wrapper [`Watched`](super::watchdog::Watched) replays them). Inline
/// (24 bytes), so an idle connection carries no extra allocation. `more`: what a parked
/// HTTP/1.1 connection's server had read but not yet parsed (see `server::serve_h1`).
#[derive(Default)]
pub struct Replay {
    buf: [u8; H2_PREFACE.len()],
    pos: u8,
    len: u8,
    more: Bytes,
}

impl Replay {
    fn new(buf: [u8; H2_PREFACE.len()], len: usize) -> Self {
        // `len` ≤ 24 by construction.
        Replay { buf, pos: 0, len: len as u8, more: Bytes::new() }
    }

    /// Queues `bytes` after whatever is left. Copied: hyper hands back a view of its whole
    /// read buffer (8 KiB or more, even when empty), which a parked connection must not keep.
    pub fn push(&mut self, bytes: Bytes) {
        if bytes.is_empty() {
            return;
        }
        if self.more.is_empty() {
            self.more = Bytes::copy_from_slice(&bytes);
        } else {
            let mut joined = Vec::with_capacity(self.more.len() + bytes.len());
            joined.extend_from_slice(&self.more);
            joined.extend_from_slice(&bytes);
            self.more = joined.into();
        }
    }

    pub fn is_empty(&self) -> bool {
        self.pos >= self.len && self.more.is_empty()
    }

    /// Moves what is left into `out`; false when nothing was left.
    pub fn take(&mut self, out: &mut ReadBuf<'_>) -> bool {
        if self.pos >= self.len {
            if self.more.is_empty() {
                return false;
            }
            let n = self.more.len().min(out.remaining());
            out.put_slice(&self.more.split_to(n));
            return true;
        }
        let rest = &self.buf[self.pos as usize..self.len as usize];
        let n = rest.len().min(out.remaining());
        out.put_slice(&rest[..n]);
        self.pos += n as u8;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replays_the_prefix_once() {
        let mut buf = [0u8; 24];
        buf[..3].copy_from_slice(b"GET");
        let mut r = Replay::new(buf, 3);
        let mut out = [0u8; 2];
        let mut rb = ReadBuf::new(&mut out);
        assert!(r.take(&mut rb));
        assert_eq!(rb.filled(), b"GE");
        let mut out = [0u8; 8];
        let mut rb = ReadBuf::new(&mut out);
        assert!(r.take(&mut rb));
        assert_eq!(rb.filled(), b"T");
        assert!(!r.take(&mut rb));
    }

    #[test]
    fn replays_pushed_bytes_after_the_prefix() {
        let mut buf = [0u8; 24];
        buf[0] = b'G';
        let mut r = Replay::new(buf, 1);
        r.push(Bytes::from_static(b"ET"));
        r.push(Bytes::from_static(b" /"));
        let mut out = [0u8; 8];
        let mut rb = ReadBuf::new(&mut out);
        while r.take(&mut rb) {}
        assert_eq!(rb.filled(), b"GET /");
        assert!(r.is_empty());
    }
}
