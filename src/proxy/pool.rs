//! Keep-alive HTTP/1.1 connections to one upstream endpoint.
//!
//! One small pool per endpoint (held by its `EndpointState`), instead of hyper-util's legacy
//! client with one mutex for all hosts and a spawned task per request to return connections:
//! here a connection goes back to its endpoint's idle list the moment its response body ends.
//! The lock is held only for a `Vec` push or pop.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;

use super::body::RequestBody;

/// Idle connections kept per endpoint.
const MAX_IDLE: usize = 256;

/// A connection the pool handed out.
pub struct Checkout {
    pub sender: SendRequest<RequestBody>,
    /// True when the connection served a request before.
    pub reused: bool,
    /// How long it sat idle in the pool (zero for a new connection). Upstreams close idle
    /// keep-alive connections on a timer, so only a connection idle for a while can race
    /// with such a close.
    pub idle_for: Duration,
}

/// Idle lists per endpoint: one per serving thread (modulo), so a thread reuses the
/// connections whose tasks run on its own runtime and threads do not contend.
const BUCKETS: usize = 8;

thread_local! {
    static WORKER: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Marks the current thread as serving thread `index` (picks its pool bucket).
pub fn set_worker_index(index: usize) {
    WORKER.with(|w| w.set(index % BUCKETS));
}

/// One thread's idle connections, newest last, with the time each went idle.
type IdleList = Mutex<Vec<(SendRequest<RequestBody>, Instant)>>;

/// Idle keep-alive connections to one endpoint.
#[derive(Default)]
pub struct Http1Pool {
    idle: [IdleList; BUCKETS],
}

impl Http1Pool {
    fn bucket(&self) -> &IdleList {
        &self.idle[WORKER.with(|w| w.get())]
    }
}

impl std::fmt::Debug for Http1Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Http1Pool").field("idle", &self.idle_len()).finish()
    }
}

/// Why a connection could not be had.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("connect timed out after {0:?}")]
    Timeout(Duration),
    #[error("connect: {0}")]
    Io(#[from] std::io::Error),
    #[error("HTTP/1.1 handshake: {0}")]
    Handshake(#[from] hyper::Error),
}

impl Http1Pool {
    /// An idle connection younger than `max_idle`, or a new one.
    pub async fn checkout(
        &self,
        addr: SocketAddr,
        connect_timeout: Duration,
        max_idle: Duration,
    ) -> Result<Checkout, ConnectError> {
        loop {
            let candidate = {
                let mut idle = self.bucket().lock().unwrap_or_else(|e| e.into_inner());
                idle.pop()
            };
            let Some((mut sender, since)) = candidate else { break };
            if sender.is_closed() || since.elapsed() > max_idle {
                continue;
            }
            if sender.ready().await.is_ok() {
                return Ok(Checkout { sender, reused: true, idle_for: since.elapsed() });
            }
        }
        let stream = tokio::time::timeout(connect_timeout, tokio::net::TcpStream::connect(addr))
            .await
            .map_err(|_| ConnectError::Timeout(connect_timeout))??;
        let _ = stream.set_nodelay(true);
        let (sender, conn) = hyper::client::conn::http1::Builder::new().handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            if let Err(e) = conn.with_upgrades().await {
                tracing::trace!(upstream = %addr, error = %e, "upstream connection ended");
            }
        });
        Ok(Checkout { sender, reused: false, idle_for: Duration::ZERO })
    }

    /// Returns a connection whose exchange completed.
    pub fn checkin(&self, sender: SendRequest<RequestBody>) {
        if sender.is_closed() {
            return;
        }
        let mut idle = self.bucket().lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < MAX_IDLE {
            idle.push((sender, Instant::now()));
        }
    }

    pub fn idle_len(&self) -> usize {
        self.idle.iter().map(|b| b.lock().map(|v| v.len()).unwrap_or(0)).sum()
    }
}

/// An upstream response body that returns its connection to the pool when it ends.
pub struct PooledBody {
    inner: Incoming,
    give_back: Option<(SendRequest<RequestBody>, Arc<super::balancer::EndpointState>)>,
}

impl PooledBody {
    pub fn new(
        inner: Incoming,
        sender: SendRequest<RequestBody>,
        endpoint: Arc<super::balancer::EndpointState>,
    ) -> Self {
        let mut body = PooledBody { inner, give_back: Some((sender, endpoint)) };
        if body.inner.is_end_stream() {
            body.release();
        }
        body
    }

    fn release(&mut self) {
        if let Some((sender, endpoint)) = self.give_back.take() {
            endpoint.pool.checkin(sender);
        }
    }
}

impl Body for PooledBody {
    type Data = Bytes;
    type Error = hyper::Error;

    #[inline]
    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let r = Pin::new(&mut self.inner).poll_frame(cx);
        match &r {
            Poll::Ready(None) => self.release(),
            Poll::Ready(Some(Ok(_))) if self.inner.is_end_stream() => self.release(),
            // An error: the connection is not reused (dropped with `give_back`).
            Poll::Ready(Some(Err(_))) => self.give_back = None,
            _ => {}
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
