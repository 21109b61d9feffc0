//! The response body type: either a streamed upstream body or a small fixed one.
//! An enum rather than a boxed trait object so the common proxied case costs no allocation.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

/// Body of every response swarmgate sends.
pub enum ProxyBody {
    /// Streamed from the upstream as it arrives (no buffering).
    Upstream(Incoming),
    /// Streamed from a pooled HTTP/1.1 upstream connection, which goes back to its pool at the end.
    Pooled(super::pool::PooledBody),
    /// A fixed body produced by swarmgate (errors, redirects, `respond` routes, admin).
    Full(Option<Bytes>),
}

impl ProxyBody {
    pub fn empty() -> Self {
        ProxyBody::Full(None)
    }

    pub fn text(s: impl Into<Bytes>) -> Self {
        let b = s.into();
        if b.is_empty() {
            ProxyBody::Full(None)
        } else {
            ProxyBody::Full(Some(b))
        }
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = hyper::Error;

    #[inline]
    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            ProxyBody::Upstream(b) => Pin::new(b).poll_frame(cx),
            ProxyBody::Pooled(b) => Pin::new(b).poll_frame(cx),
            ProxyBody::Full(b) => Poll::Ready(b.take().map(|d| Ok(Frame::data(d)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ProxyBody::Upstream(b) => b.is_end_stream(),
            ProxyBody::Pooled(b) => b.is_end_stream(),
            ProxyBody::Full(b) => b.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ProxyBody::Upstream(b) => b.size_hint(),
            ProxyBody::Pooled(b) => b.size_hint(),
            ProxyBody::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            ProxyBody::Full(None) => SizeHint::with_exact(0),
        }
    }
}

/// The request body sent upstream. If the client connection to the upstream fails before the
/// body was ever polled, dropping this hands the untouched body back through a oneshot so the
/// request can be retried on another endpoint (nothing was sent, so any method is safe).
#[derive(Debug)]
pub struct ReclaimableBody {
    inner: Option<Incoming>,
    polled: bool,
    give_back: Option<tokio::sync::oneshot::Sender<Incoming>>,
}

impl ReclaimableBody {
    pub fn new(body: Incoming) -> (Self, tokio::sync::oneshot::Receiver<Incoming>) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        (ReclaimableBody { inner: Some(body), polled: false, give_back: Some(tx) }, rx)
    }
}

impl Drop for ReclaimableBody {
    fn drop(&mut self) {
        if !self.polled {
            if let (Some(tx), Some(body)) = (self.give_back.take(), self.inner.take()) {
                let _ = tx.send(body);
            }
        }
    }
}

impl Body for ReclaimableBody {
    type Data = Bytes;
    type Error = hyper::Error;

    #[inline]
    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        this.polled = true;
        match this.inner.as_mut() {
            Some(b) => Pin::new(b).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(|b| b.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.as_ref().map(|b| b.size_hint()).unwrap_or_else(|| SizeHint::with_exact(0))
    }
}

/// The request body sent on a pooled HTTP/1.1 connection: the client's body, or nothing (a
/// bodiless request rebuilt for a retry).
#[derive(Debug)]
pub enum RequestBody {
    Client(Incoming),
    Empty,
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = hyper::Error;

    #[inline]
    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            RequestBody::Client(b) => Pin::new(b).poll_frame(cx),
            RequestBody::Empty => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            RequestBody::Client(b) => b.is_end_stream(),
            RequestBody::Empty => true,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            RequestBody::Client(b) => b.size_hint(),
            RequestBody::Empty => SizeHint::with_exact(0),
        }
    }
}
