//! Listeners: accept, TCP_NODELAY, optional TLS handshake with ALPN, HTTP/1.1 and HTTP/2
//! serving, connection limits, and graceful shutdown.

use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::handler::{handle, ConnInfo, ProxyState};
use crate::config::Limits;
use crate::tls::ACME_TLS_ALPN;

/// Settings of a listener, fixed at start.
#[derive(Clone)]
pub struct ListenerSettings {
    pub limits: Limits,
    /// Shared across listeners so `max_connections` is process-wide.
    pub connections: Arc<Semaphore>,
}

/// Builds the HTTP server builders once; each connection clones one.
struct Builders {
    auto: auto::Builder<TokioExecutor>,
    h1: auto::Builder<TokioExecutor>,
    h2: auto::Builder<TokioExecutor>,
}

fn builder(limits: &Limits) -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout.0)
        .keep_alive(true)
        .max_buf_size(limits.max_header_bytes.max(8192));
    b.http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(256)
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(20))
        .max_header_list_size(limits.max_header_bytes as u32);
    b
}

impl Builders {
    fn new(limits: &Limits) -> Self {
        Builders { auto: builder(limits), h1: builder(limits).http1_only(), h2: builder(limits).http2_only() }
    }
}

const OVERLOADED: &[u8] =
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nRetry-After: 1\r\nConnection: close\r\n\r\n";

/// Serves `listener` until `shutdown` fires, then lets open connections finish for up to the
/// grace period. `tls` = Some for the HTTPS listener.
pub async fn serve(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    state: Arc<ProxyState>,
    settings: ListenerSettings,
    shutdown: CancellationToken,
) {
    let builders = Arc::new(Builders::new(&settings.limits));
    let tracker = TaskTracker::new();
    let https = tls.is_some();
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and friends: back off briefly instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let Ok(permit) = settings.connections.clone().try_acquire_owned() else {
            state.metrics.connections_refused.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(client = %peer, "max_connections reached; refusing connection with 503");
            tokio::spawn(refuse(stream));
            continue;
        };
        state.metrics.connections_total.fetch_add(1, Ordering::Relaxed);
        state.metrics.open_connections.fetch_add(1, Ordering::Relaxed);
        let conn_info = ConnInfo { peer, https };
        let state2 = state.clone();
        let svc = service_fn(move |req| {
            let state = state2.clone();
            async move { Ok::<_, Infallible>(handle(&state, req, conn_info).await) }
        });
        let builders = builders.clone();
        let metrics = state.metrics.clone();
        let handshake_timeout = settings.limits.header_read_timeout.0;
        let cancel = shutdown.clone();
        let acceptor = tls.clone();
        // The TLS handshake runs in the connection task so a slow client cannot stall accepts.
        tracker.spawn(async move {
            let _permit = permit;
            match acceptor {
                None => {
                    let conn = builders.auto.serve_connection_with_upgrades(TokioIo::new(stream), svc);
                    drive(conn, &cancel, peer).await;
                }
                Some(acceptor) => {
                    let tls_stream = match tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await {
                        Ok(Ok(s)) => Some(s),
                        Ok(Err(e)) => {
                            tracing::debug!(client = %peer, error = %e, "TLS handshake failed");
                            None
                        }
                        Err(_) => None,
                    };
                    match tls_stream {
                        None => {
                            metrics.tls_handshake_failures.fetch_add(1, Ordering::Relaxed);
                        }
                        // TLS-ALPN-01 validation is the handshake itself; nothing more to serve.
                        Some(s) if s.get_ref().1.alpn_protocol() == Some(ACME_TLS_ALPN) => {}
                        Some(s) => {
                            let h2 = s.get_ref().1.alpn_protocol() == Some(b"h2");
                            let builder = if h2 { &builders.h2 } else { &builders.h1 };
                            let conn = builder.serve_connection_with_upgrades(TokioIo::new(s), svc);
                            drive(conn, &cancel, peer).await;
                        }
                    }
                }
            }
            metrics.open_connections.fetch_sub(1, Ordering::Relaxed);
        });
    }
    drop(listener);
    tracker.close();
    let grace = settings.limits.grace_period.0;
    if tokio::time::timeout(grace, tracker.wait()).await.is_err() {
        tracing::warn!(?grace, "grace period over; closing remaining connections");
    }
}

/// Runs a connection; on shutdown asks it to finish in-flight requests and close
/// (HTTP/1.1: after the current response; HTTP/2: GOAWAY).
async fn drive<C>(conn: C, cancel: &CancellationToken, peer: std::net::SocketAddr)
where
    C: std::future::Future<Output = Result<(), Box<dyn std::error::Error + Send + Sync>>> + GracefulConnection,
{
    tokio::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        _ = cancel.cancelled() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(client = %peer, error = %e, "connection ended with an error");
    }
}

/// The one method `drive` needs from hyper's connection types.
pub trait GracefulConnection {
    fn graceful_shutdown(self: std::pin::Pin<&mut Self>);
}

impl<I, S, E> GracefulConnection for auto::UpgradeableConnection<'_, I, S, E>
where
    S: hyper::service::HttpService<hyper::body::Incoming>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    S::ResBody: http_body::Body + Send + 'static,
    <S::ResBody as http_body::Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    E: hyper::rt::bounds::Http2ServerConnExec<S::Future, S::ResBody>,
{
    fn graceful_shutdown(self: std::pin::Pin<&mut Self>) {
        auto::UpgradeableConnection::graceful_shutdown(self)
    }
}

async fn refuse(mut stream: TcpStream) {
    let _ = tokio::time::timeout(Duration::from_secs(2), stream.write_all(OVERLOADED)).await;
    let _ = stream.shutdown().await;
}
