//! The client's request body on its way upstream, with `[limits] max_body_bytes` enforced on
//! the bytes that actually arrive.
//!
//! A `Content-Length` above the limit is refused before anything is sent (see the handler),
//! but a chunked HTTP/1.1 body or an HTTP/2 body declares no length: this wrapper counts the
//! data frames as they pass and fails the body at the first byte past the limit, so the
//! upstream sees an incomplete request (never a complete oversized one) and the client gets 413.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

/// Why a client's request body did not reach its end.
#[derive(Debug, thiserror::Error)]
pub enum RequestBodyError {
    /// The client went away or sent a malformed body.
    #[error(transparent)]
    Client(#[from] hyper::Error),
    /// More bytes arrived than `[limits] max_body_bytes` allows.
    #[error("request body larger than {0} bytes")]
    TooLarge(u64),
}

/// A client's body with the bytes it may still carry.
#[derive(Debug)]
pub struct RequestBody {
    /// `None`: a request swarmgate makes itself (a forward-auth check) carries no body.
    inner: Option<Incoming>,
    limit: Option<Limit>,
}

#[derive(Debug)]
struct Limit {
    max: u64,
    left: u64,
    /// Set when the body went past `max`. Shared because hyper's clients take the body into a
    /// task of their own and report its failure as a reset stream or a closed connection, not
    /// with this error: the forwarder asks the flag instead.
    exceeded: Arc<AtomicBool>,
}

impl RequestBody {
    /// `max_bytes` 0 means unlimited, as in the config. A request without a body (most) needs
    /// no counter: nothing is allocated for it.
    pub fn new(inner: Incoming, max_bytes: u64) -> Self {
        let limit = (max_bytes > 0 && !inner.is_end_stream()).then(|| Limit {
            max: max_bytes,
            left: max_bytes,
            exceeded: Arc::default(),
        });
        RequestBody { inner: Some(inner), limit }
    }

    /// No body at all.
    pub fn empty() -> Self {
        RequestBody { inner: None, limit: None }
    }

    /// Tells later whether this body went past its limit (always false without one).
    pub fn overflow(&self) -> Overflow {
        Overflow(self.limit.as_ref().map(|l| l.exceeded.clone()))
    }
}

/// See [`RequestBody::overflow`].
#[derive(Debug, Clone)]
pub struct Overflow(Option<Arc<AtomicBool>>);

impl Overflow {
    pub fn happened(&self) -> bool {
        self.0.as_ref().is_some_and(|f| f.load(Ordering::Relaxed))
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = RequestBodyError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        let Some(inner) = this.inner.as_mut() else { return Poll::Ready(None) };
        let frame = match std::task::ready!(Pin::new(inner).poll_frame(cx)) {
            Some(Ok(frame)) => frame,
            Some(Err(e)) => return Poll::Ready(Some(Err(e.into()))),
            None => return Poll::Ready(None),
        };
        if let (Some(limit), Some(data)) = (this.limit.as_mut(), frame.data_ref()) {
            match limit.left.checked_sub(data.len() as u64) {
                Some(rest) => limit.left = rest,
                None => {
                    limit.exceeded.store(true, Ordering::Relaxed);
                    return Poll::Ready(Some(Err(RequestBodyError::TooLarge(limit.max))));
                }
            }
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(Incoming::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.as_ref().map_or(SizeHint::with_exact(0), Incoming::size_hint)
    }
}
