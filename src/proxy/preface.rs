//! Telling HTTP/1.1 from h2c prior knowledge on a plain connection.
//!
//! The first bytes are *read* (not peeked) and replayed to the protocol's server through
//! [`Prefixed`]. Peeking cannot work: `peek` is ready again at once while the bytes sit
//! unread, so waiting for "more of the preface" turns into a busy loop that never sees the
//! client close and never reaches its deadline (a single `P` then disconnect pinned a core).
//! A read waits for new bytes or the end of the stream like any other read.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};
use tokio::net::TcpStream;

use super::watchdog::Activity;

pub const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// What the first bytes of a plain connection said.
pub enum Detected {
    /// The full HTTP/2 preface: serve h2c.
    H2c(Prefixed<TcpStream>),
    /// Anything else (or nothing yet): serve HTTP/1.1.
    H1(Prefixed<TcpStream>),
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
            Err(_) if len == 0 => return Detected::H1(Prefixed::new(stream, buf, 0)),
            Err(_) => return Detected::Stalled(stream),
        };
        if len == 0 {
            activity.saw_bytes();
        }
        len += n;
        if buf[..len] != H2_PREFACE[..len] {
            return Detected::H1(Prefixed::new(stream, buf, len));
        }
        if len == H2_PREFACE.len() {
            return Detected::H2c(Prefixed::new(stream, buf, len));
        }
    }
}

/// An IO that first yields the bytes detection read, then reads from the stream. The replay
/// buffer is inline (24 bytes), so an idle connection carries no extra allocation.
pub struct Prefixed<T> {
    inner: T,
    buf: [u8; H2_PREFACE.len()],
    pos: u8,
    len: u8,
}

impl<T> Prefixed<T> {
    fn new(inner: T, buf: [u8; H2_PREFACE.len()], len: usize) -> Self {
        // `len` ≤ 24 by construction.
        Prefixed { inner, buf, pos: 0, len: len as u8 }
    }

    pub fn get_ref(&self) -> &T {
        &self.inner
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Prefixed<T> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, out: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.pos < this.len {
            let rest = &this.buf[this.pos as usize..this.len as usize];
            let n = rest.len().min(out.remaining());
            out.put_slice(&rest[..n]);
            this.pos += n as u8;
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, out)
    }
}

super::watchdog::delegate_async_write!(Prefixed);

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn replays_the_prefix_then_reads_on() {
        let (mut a, b) = tokio::io::duplex(64);
        let mut buf = [0u8; 24];
        buf[..3].copy_from_slice(b"GET");
        let mut p = Prefixed::new(b, buf, 3);
        tokio::io::AsyncWriteExt::write_all(&mut a, b" / HTTP/1.1").await.unwrap();
        drop(a);
        let mut out = String::new();
        p.read_to_string(&mut out).await.unwrap();
        assert_eq!(out, "GET / HTTP/1.1");
    }
}
