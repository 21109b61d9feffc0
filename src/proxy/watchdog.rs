//! Per-connection deadlines for HTTP/1.1: a client must send a complete request head within
//! `header_read_timeout` (else `408 Request Timeout` and the connection is closed: the
//! slowloris guard), and an idle keep-alive connection is closed after `idle_timeout`.
//!
//! hyper's own `header_read_timeout` closes silently and cuts idle keep-alive connections at
//! the same deadline. Here the IO wrapper only records when bytes of a new request head arrive,
//! the service records when requests start and end, and the connection's driver (one timer per
//! connection, in the same task) decides.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, ReadBuf};

use super::balancer::now_ns;

/// Bytes written on a plain connection whose request head did not arrive in time.
pub const REQUEST_TIMEOUT: &[u8] = b"HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";

/// What the IO wrapper and the service know about one connection.
#[derive(Debug)]
pub struct Activity {
    busy: AtomicU32,
    /// When the first byte of a not-yet-complete request head arrived (0 = none pending).
    head_since_ns: AtomicU64,
    /// When the connection last became idle (start, or end of the last request).
    idle_since_ns: AtomicU64,
    /// After a protocol upgrade the bytes are not HTTP any more: no deadlines.
    upgraded: AtomicBool,
}

impl Default for Activity {
    fn default() -> Self {
        Activity {
            busy: AtomicU32::new(0),
            head_since_ns: AtomicU64::new(0),
            idle_since_ns: AtomicU64::new(now_ns()),
            upgraded: AtomicBool::new(false),
        }
    }
}

/// What the driver should do now.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Check again after this long.
    Wait(Duration),
    /// A request head is overdue: answer 408 and close.
    HeadTimeout,
    /// Idle for too long: close.
    IdleTimeout,
}

impl Activity {
    /// Marks a request as being served until the guard drops.
    pub fn begin(&self) -> BusyGuard<'_> {
        self.busy.fetch_add(1, Ordering::Relaxed);
        self.head_since_ns.store(0, Ordering::Relaxed);
        BusyGuard(self)
    }

    pub fn set_upgraded(&self) {
        self.upgraded.store(true, Ordering::Relaxed);
    }

    pub fn is_upgraded(&self) -> bool {
        self.upgraded.load(Ordering::Relaxed)
    }

    pub(crate) fn saw_bytes(&self) {
        if self.busy.load(Ordering::Relaxed) == 0 && self.head_since_ns.load(Ordering::Relaxed) == 0 {
            self.head_since_ns.store(now_ns().max(1), Ordering::Relaxed);
        }
    }

    /// Decides, given the two limits.
    pub fn verdict(&self, header_timeout: Duration, idle_timeout: Duration) -> Verdict {
        if self.upgraded.load(Ordering::Relaxed) || self.busy.load(Ordering::Relaxed) > 0 {
            return Verdict::Wait(header_timeout.min(idle_timeout));
        }
        let now = now_ns();
        let check = |since: u64, limit: Duration, expired: Verdict| {
            let deadline = since + limit.as_nanos() as u64;
            if now >= deadline {
                expired
            } else {
                Verdict::Wait(Duration::from_nanos(deadline - now))
            }
        };
        match self.head_since_ns.load(Ordering::Relaxed) {
            0 => check(self.idle_since_ns.load(Ordering::Relaxed), idle_timeout, Verdict::IdleTimeout),
            since => check(since, header_timeout, Verdict::HeadTimeout),
        }
    }
}

/// Ends a request's busy period on drop.
pub struct BusyGuard<'a>(&'a Activity);

impl Drop for BusyGuard<'_> {
    fn drop(&mut self) {
        self.0.idle_since_ns.store(now_ns(), Ordering::Relaxed);
        self.0.busy.fetch_sub(1, Ordering::Relaxed);
    }
}

/// IO wrapper that reports when bytes arrive.
pub struct Watched<T> {
    inner: T,
    activity: Arc<Activity>,
}

impl<T> Watched<T> {
    pub fn new(inner: T, activity: Arc<Activity>) -> Self {
        Watched { inner, activity }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut this.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.activity.saw_bytes();
        }
        r
    }
}

/// `AsyncWrite` for an IO wrapper that only watches or replays reads: every write goes
/// straight to its `inner` field.
macro_rules! delegate_async_write {
    ($wrapper:ident) => {
        impl<T: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for $wrapper<T> {
            fn poll_write(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                buf: &[u8],
            ) -> std::task::Poll<std::io::Result<usize>> {
                std::pin::Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
            }

            fn poll_flush(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                std::pin::Pin::new(&mut self.get_mut().inner).poll_flush(cx)
            }

            fn poll_shutdown(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                std::pin::Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
            }

            fn is_write_vectored(&self) -> bool {
                self.inner.is_write_vectored()
            }

            fn poll_write_vectored(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                bufs: &[std::io::IoSlice<'_>],
            ) -> std::task::Poll<std::io::Result<usize>> {
                std::pin::Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
            }
        }
    };
}
pub(crate) use delegate_async_write;

delegate_async_write!(Watched);
