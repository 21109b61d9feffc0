//! The response body type: either a streamed upstream body or a small fixed one.
//! An enum rather than a boxed trait object so the common proxied case costs no allocation.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use super::request_body::{RequestBody, RequestBodyError};

/// Error of a response body: the upstream's, whichever client read it.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Body of every response swarmgate sends.
pub enum ProxyBody {
    /// Streamed from an h2c or HTTPS upstream (hyper's client) as it arrives.
    Upstream(Incoming),
    /// Streamed from a pooled HTTP/1.1 upstream connection, which goes back to its pool at the
    /// end. Boxed: it is large, and every response (most carry a small `Full` body instead) is
    /// moved a few times on its way out.
    Http1(Box<super::upstream::UpstreamBody>),
    /// A fixed body produced by swarmgate (errors, redirects, `respond` routes, admin).
    Full(Option<Bytes>),
    /// A streamed body whose bytes count toward a route's `swarmgate_response_bytes_total`.
    Counted(Box<Counted>),
    /// Gzip-encoded on its way out (the `compress` / `encode` middlewares).
    Gzip(Box<super::compress::Gzip>),
    /// A body that holds a place of its route's in-flight limit until it ends or is dropped.
    Held(Box<(ProxyBody, InFlight)>),
}

/// One request counted against a route's `InFlightLimit`; the count drops with it.
pub struct InFlight(std::sync::Arc<std::sync::atomic::AtomicUsize>);

impl InFlight {
    /// A place under `limit`, or `None` when the route is full.
    pub fn enter(counter: &std::sync::Arc<std::sync::atomic::AtomicUsize>, limit: usize) -> Option<InFlight> {
        use std::sync::atomic::Ordering::AcqRel;
        let taken =
            counter.fetch_update(AcqRel, std::sync::atomic::Ordering::Acquire, |n| (n < limit).then_some(n + 1));
        taken.ok().map(|_| InFlight(counter.clone()))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

/// A streamed response body and its route's byte counter: counted locally as frames pass and
/// added to the shared counter once, when the body ends or is dropped (one atomic add per
/// response, not per frame).
pub struct Counted {
    body: ProxyBody,
    sent: u64,
    total: std::sync::Arc<crate::admin::metrics::RouteMetrics>,
}

impl Counted {
    fn flush(&mut self) {
        if self.sent > 0 {
            self.total.response_bytes.fetch_add(std::mem::take(&mut self.sent), std::sync::atomic::Ordering::Relaxed);
        }
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.flush();
    }
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

    /// This body with its bytes counted for `route`: a fixed body at once, a streamed one as
    /// it is sent.
    pub fn counted(self, route: &std::sync::Arc<crate::admin::metrics::RouteMetrics>) -> Self {
        use std::sync::atomic::Ordering::Relaxed;
        match self {
            ProxyBody::Full(b) => {
                route.response_bytes.fetch_add(b.as_ref().map_or(0, |b| b.len() as u64), Relaxed);
                ProxyBody::Full(b)
            }
            body => ProxyBody::Counted(Box::new(Counted { body, sent: 0, total: route.clone() })),
        }
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = BoxError;

    #[inline]
    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            ProxyBody::Upstream(b) => Pin::new(b).poll_frame(cx).map_err(BoxError::from),
            ProxyBody::Http1(b) => Pin::new(b).poll_frame(cx),
            ProxyBody::Full(b) => Poll::Ready(b.take().map(|d| Ok(Frame::data(d)))),
            ProxyBody::Counted(c) => {
                let polled = Pin::new(&mut c.body).poll_frame(cx);
                if let Poll::Ready(Some(Ok(frame))) = &polled {
                    c.sent += frame.data_ref().map_or(0, |d| d.len() as u64);
                }
                // Counted by the time the client has the last byte, not when the body is dropped.
                if matches!(polled, Poll::Ready(None)) || c.body.is_end_stream() {
                    c.flush();
                }
                polled
            }
            ProxyBody::Gzip(g) => Pin::new(&mut **g).poll_frame(cx),
            ProxyBody::Held(h) => Pin::new(&mut h.0).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ProxyBody::Upstream(b) => b.is_end_stream(),
            ProxyBody::Http1(b) => b.is_end_stream(),
            ProxyBody::Full(b) => b.is_none(),
            ProxyBody::Counted(c) => c.body.is_end_stream(),
            ProxyBody::Gzip(g) => g.is_end_stream(),
            ProxyBody::Held(h) => h.0.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ProxyBody::Upstream(b) => b.size_hint(),
            ProxyBody::Http1(b) => b.size_hint(),
            ProxyBody::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            ProxyBody::Full(None) => SizeHint::with_exact(0),
            ProxyBody::Counted(c) => c.body.size_hint(),
            ProxyBody::Gzip(g) => g.size_hint(),
            ProxyBody::Held(h) => h.0.size_hint(),
        }
    }
}

/// The request body sent upstream. If the client connection to the upstream fails before the
/// body was ever polled, dropping this hands the untouched body back through a oneshot so the
/// request can be retried on another endpoint (nothing was sent, so any method is safe).
#[derive(Debug)]
pub struct ReclaimableBody {
    inner: Option<RequestBody>,
    polled: bool,
    give_back: Option<tokio::sync::oneshot::Sender<RequestBody>>,
}

impl ReclaimableBody {
    pub fn new(body: RequestBody) -> (Self, tokio::sync::oneshot::Receiver<RequestBody>) {
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
    type Error = RequestBodyError;

    #[inline]
    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, RequestBodyError>>> {
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
