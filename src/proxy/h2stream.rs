//! Per-stream output-stall guard for HTTP/2.
//!
//! An HTTP/2 client can withhold WINDOW_UPDATE for one stream while it keeps the connection
//! alive (other streams, PINGs): the socket drains, so the connection-level stall guard in
//! [`watchdog`](super::watchdog) never fires, and the stream, with its upstream connection,
//! would be held for ever. hyper spawns each stream's future on the server's executor; this
//! executor wraps it in [`StreamGuard`], and the response body ([`BusyBody`]) records when it
//! handed a frame to hyper and whether hyper has come back for the next one. A frame not taken
//! for the output-stall deadline (`idle_timeout`, as for HTTP/1.1) means the client is not
//! reading this stream: the guard drops the stream's future, h2 resets the stream
//! (RST_STREAM CANCEL) and the upstream response is let go of. A body waiting on its upstream
//! (an idle event stream) has no frame outstanding and is never cut.
//!
//! [`BusyBody`]: super::watchdog::BusyBody

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use super::balancer::now_ns;

tokio::task_local! {
    /// The stall record of the HTTP/2 stream being polled (unset on HTTP/1.1).
    static CURRENT: Arc<StreamStall>;
}

/// When the stream's body last yielded a frame that hyper has not come back from.
#[derive(Debug, Default)]
pub struct StreamStall {
    /// 0 = no frame outstanding (the body is being polled, or waits on its upstream).
    yielded_since_ns: AtomicU64,
}

impl StreamStall {
    /// The record of the HTTP/2 stream whose task is running, if any.
    pub fn current() -> Option<Arc<StreamStall>> {
        CURRENT.try_with(Arc::clone).ok()
    }

    /// hyper asks the body for its next frame: the last one was taken.
    #[inline]
    pub fn taken(&self) {
        if self.yielded_since_ns.load(Ordering::Relaxed) != 0 {
            self.yielded_since_ns.store(0, Ordering::Relaxed);
        }
    }

    /// The body handed hyper a frame.
    #[inline]
    pub fn yielded(&self) {
        self.yielded_since_ns.store(now_ns().max(1), Ordering::Relaxed);
    }
}

/// The HTTP/2 server's executor: spawns each stream on tokio inside a [`StreamGuard`].
#[derive(Clone, Copy, Debug)]
pub struct StreamExec {
    /// The output-stall deadline.
    pub limit: Duration,
}

impl<F> hyper::rt::Executor<F> for StreamExec
where
    F: Future<Output = ()> + Send + 'static,
{
    fn execute(&self, fut: F) {
        tokio::spawn(StreamGuard { inner: fut, stall: Arc::default(), timer: None, limit: self.limit });
    }
}

pin_project_lite::pin_project! {
    /// Runs a stream's future with its stall record in scope, and drops it once a yielded
    /// frame has not been taken for `limit`.
    pub struct StreamGuard<F> {
        #[pin]
        inner: F,
        stall: Arc<StreamStall>,
        // Armed only while a frame is outstanding.
        timer: Option<Pin<Box<tokio::time::Sleep>>>,
        limit: Duration,
    }
}

impl<F: Future<Output = ()>> Future for StreamGuard<F> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut this = self.project();
        let stall = this.stall.clone();
        if CURRENT.sync_scope(stall, || this.inner.as_mut().poll(cx)).is_ready() {
            return Poll::Ready(());
        }
        loop {
            let since = this.stall.yielded_since_ns.load(Ordering::Relaxed);
            if since == 0 {
                // Waiting on the upstream (or on nothing of ours): no deadline.
                *this.timer = None;
                return Poll::Pending;
            }
            let limit_ns = this.limit.as_nanos().min(u64::MAX as u128) as u64;
            let deadline = since.saturating_add(limit_ns);
            let now = now_ns();
            if now >= deadline {
                tracing::debug!("HTTP/2 client stopped reading a stream; resetting it");
                return Poll::Ready(());
            }
            let at = tokio::time::Instant::now() + Duration::from_nanos(deadline - now);
            // A timer that fires early (the frame was taken and another yielded since) is
            // set again for the newer deadline.
            let timer = match this.timer {
                Some(timer) if timer.is_elapsed() => {
                    timer.as_mut().reset(at);
                    timer
                }
                Some(timer) => timer,
                None => this.timer.insert(Box::pin(tokio::time::sleep_until(at))),
            };
            if timer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
        }
    }
}
