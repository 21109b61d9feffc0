//! Per-connection deadlines: a client must send a complete request head within
//! `header_read_timeout` (else `408 Request Timeout` and the connection is closed: the
//! slowloris guard), an idle connection (HTTP/1.1 keep-alive, or HTTP/2 with no open stream)
//! is closed after `idle_timeout`, and a connection whose response output has not drained for
//! `idle_timeout` (a client that stopped reading) is dropped.
//!
//! hyper's own `header_read_timeout` closes silently and cuts idle keep-alive connections at
//! the same deadline, and its HTTP/2 keep-alive PING is answered by any client, so it never
//! closes an idle one. Here the IO wrapper records when bytes of a new request head arrive and
//! when output stalls, the service records when requests start and when their response bodies
//! end, and the connection's driver (one timer per connection, in the same task) decides.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, ReadBuf};

use super::balancer::now_ns;
use super::h2stream::StreamStall;
use super::preface::Replay;

/// Bytes written on a connection whose request head did not arrive in time.
pub const REQUEST_TIMEOUT: &[u8] = b"HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";

/// What the IO wrapper and the service know about one connection.
#[derive(Debug)]
pub struct Activity {
    /// Requests (HTTP/2: streams) whose response has not been fully handed to the connection.
    busy: AtomicU32,
    /// When the first byte of a not-yet-complete request head arrived (0 = none pending).
    head_since_ns: AtomicU64,
    /// When the connection last became idle (start, or end of the last response).
    idle_since_ns: AtomicU64,
    /// Since when a write has been waiting for the client to read (0 = output is draining).
    write_blocked_since_ns: AtomicU64,
    /// After a protocol upgrade the bytes are not HTTP any more: no deadlines.
    upgraded: AtomicBool,
    /// The head deadline passed: the IO wrapper answers 408 and ends the stream.
    expired: AtomicBool,
    /// The last request came with a body: hyper may still be reading (or discarding) it, so
    /// the connection is not at a message boundary and must not be parked.
    body_pending: AtomicBool,
    /// hyper began shutting the stream (keep-alive off, or an error): no parking.
    shutting: AtomicBool,
}

impl Default for Activity {
    fn default() -> Self {
        Activity {
            busy: AtomicU32::new(0),
            head_since_ns: AtomicU64::new(0),
            idle_since_ns: AtomicU64::new(now_ns()),
            write_blocked_since_ns: AtomicU64::new(0),
            upgraded: AtomicBool::new(false),
            expired: AtomicBool::new(false),
            body_pending: AtomicBool::new(false),
            shutting: AtomicBool::new(false),
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
    /// The client has not read its response for too long: drop the connection.
    WriteStalled,
}

impl Activity {
    /// Marks a request as being served until the guard drops (the guard travels with the
    /// response body, so a long download or event stream is not "idle"). `has_body`: whether
    /// the request came with a body; until a request without one has been served, the
    /// connection is not parked: whether hyper has read that body to its end is not visible
    /// from here, and a fresh parser would take its rest for a request.
    pub fn begin(self: &Arc<Self>, has_body: bool) -> Busy {
        self.body_pending.store(has_body, Ordering::Relaxed);
        self.busy.fetch_add(1, Ordering::Relaxed);
        self.head_since_ns.store(0, Ordering::Relaxed);
        Busy(self.clone())
    }

    /// Whether an HTTP/1.1 connection whose server is waiting for input may be taken apart and
    /// parked (see `server::serve_h1`): nothing in flight, no head begun, output drained, no
    /// request body possibly unread, not upgraded, expired or closing.
    pub fn may_park(&self) -> bool {
        self.busy.load(Ordering::Relaxed) == 0
            && self.head_since_ns.load(Ordering::Relaxed) == 0
            && self.write_blocked_since_ns.load(Ordering::Relaxed) == 0
            && !self.body_pending.load(Ordering::Relaxed)
            && !self.upgraded.load(Ordering::Relaxed)
            && !self.expired.load(Ordering::Relaxed)
            && !self.shutting.load(Ordering::Relaxed)
    }

    pub fn set_upgraded(&self) {
        self.upgraded.store(true, Ordering::Relaxed);
    }

    pub fn is_upgraded(&self) -> bool {
        self.upgraded.load(Ordering::Relaxed)
    }

    /// Asks the IO wrapper to answer 408 and end the stream on its next read.
    pub fn expire(&self) {
        self.expired.store(true, Ordering::Relaxed);
    }

    pub fn is_expired(&self) -> bool {
        self.expired.load(Ordering::Relaxed)
    }

    /// Bytes of a request head arrived (or, on TLS, the connection was accepted: the
    /// handshake counts against the first head's deadline).
    pub(crate) fn saw_bytes(&self) {
        if self.busy.load(Ordering::Relaxed) == 0 && self.head_since_ns.load(Ordering::Relaxed) == 0 {
            self.head_since_ns.store(now_ns().max(1), Ordering::Relaxed);
        }
    }

    fn write_blocked(&self, blocked: bool) {
        let since = self.write_blocked_since_ns.load(Ordering::Relaxed);
        match (blocked, since) {
            (true, 0) => self.write_blocked_since_ns.store(now_ns().max(1), Ordering::Relaxed),
            (false, s) if s != 0 => self.write_blocked_since_ns.store(0, Ordering::Relaxed),
            _ => {}
        }
    }

    /// Decides, given the two limits.
    pub fn verdict(&self, header_timeout: Duration, idle_timeout: Duration) -> Verdict {
        if self.upgraded.load(Ordering::Relaxed) {
            return Verdict::Wait(header_timeout.min(idle_timeout));
        }
        let now = now_ns();
        let check = |since: u64, limit: Duration, expired: Verdict| {
            let deadline = since.saturating_add(limit.as_nanos().min(u64::MAX as u128) as u64);
            if now >= deadline {
                expired
            } else {
                Verdict::Wait(Duration::from_nanos(deadline - now))
            }
        };
        match self.write_blocked_since_ns.load(Ordering::Relaxed) {
            0 => {}
            since => match check(since, idle_timeout, Verdict::WriteStalled) {
                Verdict::WriteStalled => return Verdict::WriteStalled,
                wait if self.busy.load(Ordering::Relaxed) > 0 => return wait,
                _ => {}
            },
        }
        if self.busy.load(Ordering::Relaxed) > 0 {
            return Verdict::Wait(header_timeout.min(idle_timeout));
        }
        match self.head_since_ns.load(Ordering::Relaxed) {
            0 => check(self.idle_since_ns.load(Ordering::Relaxed), idle_timeout, Verdict::IdleTimeout),
            since => check(since, header_timeout, Verdict::HeadTimeout),
        }
    }
}

/// Ends a request's busy period on drop.
pub struct Busy(Arc<Activity>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.idle_since_ns.store(now_ns(), Ordering::Relaxed);
        self.0.busy.fetch_sub(1, Ordering::Relaxed);
    }
}

pin_project_lite::pin_project! {
    /// A response body that keeps its connection busy until hyper has sent it all (and drops
    /// it), so the idle deadline never cuts a response still being streamed.
    pub struct BusyBody<B> {
        #[pin]
        inner: B,
        busy: Busy,
        // HTTP/2: tells the stream's guard whether a yielded frame awaits the client.
        stall: Option<Arc<StreamStall>>,
    }
}

impl<B> BusyBody<B> {
    /// Made inside the request's task: on HTTP/2 it picks up the stream's stall record.
    pub fn new(inner: B, busy: Busy) -> Self {
        BusyBody { inner, busy, stall: StreamStall::current() }
    }
}

impl<B: Body<Data = Bytes>> Body for BusyBody<B> {
    type Data = Bytes;
    type Error = B::Error;

    #[inline]
    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.project();
        let Some(stall) = this.stall else { return this.inner.poll_frame(cx) };
        stall.taken();
        let r = this.inner.poll_frame(cx);
        if let Poll::Ready(Some(Ok(_))) = &r {
            stall.yielded();
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// IO wrapper that reports when bytes arrive and when output stalls, and answers 408 once the
/// driver expired the connection.
pub struct Watched<T> {
    inner: T,
    activity: Arc<Activity>,
    /// Bytes of `REQUEST_TIMEOUT` written so far (`DONE` once written, flushed and shut).
    sent: u8,
    /// Whether arriving bytes start a request head (HTTP/1.1); HTTP/2 frames such as PING
    /// arrive on idle connections too, so there only stalls are watched.
    heads: bool,
    /// What protocol detection already read from the socket, read first.
    replay: Replay,
}

const DONE: u8 = u8::MAX;
const _: () = assert!(REQUEST_TIMEOUT.len() < DONE as usize);

impl<T> Watched<T> {
    /// For HTTP/1.1.
    pub fn new(inner: T, activity: Arc<Activity>, replay: Replay) -> Self {
        Watched { inner, activity, sent: 0, heads: true, replay }
    }

    /// For HTTP/2: only output stalls are recorded.
    pub fn h2(inner: T, activity: Arc<Activity>, replay: Replay) -> Self {
        Watched { inner, activity, sent: 0, heads: false, replay }
    }

    pub fn get_ref(&self) -> &T {
        &self.inner
    }

    pub fn get_mut(&mut self) -> &mut T {
        &mut self.inner
    }

    /// What is read before the stream (a parked connection's unparsed bytes go here).
    pub fn replay_mut(&mut self) -> &mut Replay {
        &mut self.replay
    }
}

impl<T: AsyncRead + tokio::io::AsyncWrite + Unpin> Watched<T> {
    /// Writes the 408, flushes and shuts the write side; any error means the client is gone.
    fn poll_answer_timeout(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        while self.sent < DONE && (self.sent as usize) < REQUEST_TIMEOUT.len() {
            match ready!(Pin::new(&mut self.inner).poll_write(cx, &REQUEST_TIMEOUT[self.sent as usize..])) {
                Ok(n) if n > 0 => self.sent += n as u8,
                _ => self.sent = DONE,
            }
        }
        if self.sent != DONE {
            let _ = ready!(Pin::new(&mut self.inner).poll_flush(cx));
            let _ = ready!(Pin::new(&mut self.inner).poll_shutdown(cx));
            self.sent = DONE;
        }
        Poll::Ready(())
    }
}

impl<T: AsyncRead + tokio::io::AsyncWrite + Unpin> AsyncRead for Watched<T> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.heads && this.activity.is_expired() {
            // End of stream for hyper, after the 408 went out.
            ready!(this.poll_answer_timeout(cx));
            return Poll::Ready(Ok(()));
        }
        if this.replay.take(buf) {
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let r = Pin::new(&mut this.inner).poll_read(cx, buf);
        if this.heads && buf.filled().len() > before {
            this.activity.saw_bytes();
        }
        r
    }
}

impl<T: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for Watched<T> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.activity.write_blocked(r.is_pending());
        r
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_flush(cx);
        this.activity.write_blocked(r.is_pending());
        r
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.activity.shutting.store(true, Ordering::Relaxed);
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.activity.write_blocked(r.is_pending());
        r
    }
}
