//! Listeners: accept, TCP_NODELAY, optional TLS handshake with ALPN, HTTP/1.1 and HTTP/2
//! serving, connection limits, and graceful shutdown.

use std::convert::Infallible;
use std::future::Future;
use std::sync::atomic::AtomicBool;
use std::sync::Weak;
use std::task::{Context, Poll};

use futures_util::task::AtomicWaker;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::body::ProxyBody;
use super::handler::{handle, ConnInfo, ProxyState};
use super::preface::{detect, Detected};
use super::spread::{Placed, ThreadShare};
use super::watchdog::{Activity, Verdict, Watched, REQUEST_TIMEOUT};
use crate::config::Limits;
use crate::tls::ACME_TLS_ALPN;

/// Settings of a listener, fixed at start.
#[derive(Clone)]
pub struct ListenerSettings {
    pub limits: Limits,
    /// Shared across listeners so `max_connections` is process-wide.
    pub connections: Arc<Semaphore>,
}

/// The HTTP server builders, configured once per listener.
struct Builders {
    /// hyper's own HTTP/1.1 server, without hyper-util's protocol-detecting wrapper: the
    /// listener already knows the protocol (ALPN, or the h2c preface).
    h1: hyper::server::conn::http1::Builder,
    h2: hyper::server::conn::http2::Builder<TokioExecutor>,
}

impl Builders {
    fn new(limits: &Limits) -> Self {
        let mut h1 = hyper::server::conn::http1::Builder::new();
        h1.timer(TokioTimer::new())
            // Header and idle deadlines are enforced by `watchdog` (hyper's would close silently
            // and cut idle keep-alive connections at the header deadline).
            .header_read_timeout(None)
            .keep_alive(true)
            // Head and body in one buffer, one plain write: responses here are mostly small.
            .writev(false)
            .max_buf_size(limits.max_header_bytes.max(8192));
        let mut h2 = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
        h2.timer(TokioTimer::new())
            .max_concurrent_streams(256)
            .keep_alive_interval(Some(Duration::from_secs(30)))
            .keep_alive_timeout(Duration::from_secs(20))
            .max_header_list_size(limits.max_header_bytes as u32);
        Builders { h1, h2 }
    }
}

const OVERLOADED: &[u8] =
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nRetry-After: 1\r\nConnection: close\r\n\r\n";

/// Serves `listener` until `shutdown` fires, then lets open connections finish for up to the
/// grace period. `tls` = Some for the HTTPS listener. `share`: this serving thread's part in
/// spreading connections evenly over the threads (None when it is the only one).
pub async fn serve(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    state: Arc<ProxyState>,
    settings: ListenerSettings,
    shutdown: CancellationToken,
    mut share: Option<ThreadShare>,
) {
    let builders = Arc::new(Builders::new(&settings.limits));
    let tracker = TaskTracker::new();
    let signals = ConnSignals::default();
    let https = tls.is_some();
    loop {
        let (stream, peer, counted) = tokio::select! {
            _ = shutdown.cancelled() => break,
            Some((stream, peer, counted)) = handed_over(&mut share) => (stream, peer, Some(counted)),
            r = listener.accept() => match r {
                Ok((stream, peer)) => match &share {
                    Some(share) => match share.place(stream, peer) {
                        Some((stream, peer, counted)) => (stream, peer, Some(counted)),
                        None => continue,
                    },
                    None => (stream, peer, None),
                },
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
        let activity = Arc::new(Activity::default());
        // Everything a request on this connection reads, behind one reference count.
        let conn = Arc::new(ConnContext {
            state: state.clone(),
            info: ConnInfo::new(peer, https),
            activity: activity.clone(),
        });
        // HTTP/1.1 serves one request at a time in place; HTTP/2 moves each stream's future
        // into a task of its own (several copies of ~2 KB), so there it is boxed once instead.
        let h1_svc = {
            let conn = conn.clone();
            service_fn(move |req| serve_request(conn.clone(), req))
        };
        let h2_svc = service_fn(move |req| Box::pin(serve_request(conn.clone(), req)));
        let idle_timeout = settings.limits.idle_timeout.0;
        let builders = builders.clone();
        let metrics = state.metrics.clone();
        let handshake_timeout = settings.limits.header_read_timeout.0;
        let signal = signals.register();
        let acceptor = tls.clone();
        // The TLS handshake runs in the connection task so a slow client cannot stall accepts.
        tracker.spawn(async move {
            let _permit = permit;
            let _counted = counted;
            match acceptor {
                None => match detect(stream, handshake_timeout, &activity).await {
                    Detected::H2c(io) => {
                        let conn = builders.h2.serve_connection(TokioIo::new(io), h2_svc);
                        drive(conn, &signal, peer).await;
                    }
                    Detected::H1(io) => {
                        let deadlines = Deadlines {
                            activity: activity.clone(),
                            header: handshake_timeout,
                            idle: idle_timeout,
                            raw: duplicate(io.get_ref()),
                            plain: true,
                        };
                        let io = Watched::new(io, activity);
                        let conn = builders.h1.serve_connection(TokioIo::new(io), h1_svc).with_upgrades();
                        drive_h1(conn, &signal, peer, deadlines).await;
                    }
                    Detected::Stalled(mut stream) => {
                        tracing::debug!(client = %peer, "request head not complete in time: 408");
                        let _ = tokio::time::timeout(LINGER_PAUSE, stream.write_all(REQUEST_TIMEOUT)).await;
                    }
                    Detected::Closed => {}
                },
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
                        Some(s) if s.get_ref().1.alpn_protocol() == Some(b"h2") => {
                            let conn = builders.h2.serve_connection(TokioIo::new(s), h2_svc);
                            drive(conn, &signal, peer).await;
                        }
                        Some(s) => {
                            let deadlines = Deadlines {
                                activity: activity.clone(),
                                header: handshake_timeout,
                                idle: idle_timeout,
                                raw: duplicate(s.get_ref().0),
                                plain: false,
                            };
                            let io = Watched::new(s, activity);
                            let conn = builders.h1.serve_connection(TokioIo::new(io), h1_svc).with_upgrades();
                            drive_h1(conn, &signal, peer, deadlines).await;
                        }
                    }
                }
            }
            metrics.open_connections.fetch_sub(1, Ordering::Relaxed);
        });
    }
    drop(listener);
    signals.fire();
    tracker.close();
    let grace = settings.limits.grace_period.0;
    if tokio::time::timeout(grace, tracker.wait()).await.is_err() {
        tracing::warn!(?grace, "grace period over; closing remaining connections");
    }
}

/// One request on a connection: marks the connection busy (for the idle deadline and
/// lingering close) while the handler runs.
async fn serve_request(conn: Arc<ConnContext>, req: Request<Incoming>) -> Result<Response<ProxyBody>, Infallible> {
    let busy = conn.activity.begin();
    let resp = handle(&conn.state, req, &conn.info).await;
    if resp.status() == http::StatusCode::SWITCHING_PROTOCOLS {
        conn.activity.set_upgraded();
    }
    drop(busy);
    Ok(resp)
}

/// Connections other serving threads handed to this one (never, without a share).
async fn handed_over(share: &mut Option<ThreadShare>) -> Option<Placed> {
    match share {
        Some(share) => share.handed_over().await,
        None => std::future::pending().await,
    }
}

/// Per-connection state shared by the requests of one connection.
struct ConnContext {
    state: Arc<ProxyState>,
    info: ConnInfo,
    activity: Arc<Activity>,
}

/// Tells every connection of a listener to finish: set once at shutdown, read by each
/// connection's driver on every wake-up with one atomic load (a `CancellationToken` there would
/// lock a mutex on every poll of the request path).
#[derive(Default)]
struct ConnSignals {
    fired: AtomicBool,
    conns: std::sync::Mutex<Vec<Weak<ConnSignal>>>,
}

#[derive(Default)]
struct ConnSignal {
    flag: AtomicBool,
    waker: AtomicWaker,
}

impl ConnSignals {
    /// A signal for a new connection (touched only at accept, not per request).
    fn register(&self) -> Arc<ConnSignal> {
        let signal = Arc::new(ConnSignal::default());
        let mut conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
        if conns.len() >= 256 && conns.len().is_power_of_two() {
            conns.retain(|w| w.strong_count() > 0);
        }
        conns.push(Arc::downgrade(&signal));
        if self.fired.load(Ordering::Acquire) {
            signal.flag.store(true, Ordering::Release);
        }
        signal
    }

    fn fire(&self) {
        self.fired.store(true, Ordering::Release);
        let conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
        for s in conns.iter().filter_map(Weak::upgrade) {
            s.flag.store(true, Ordering::Release);
            s.waker.wake();
        }
    }
}

impl ConnSignal {
    /// True once shutdown was asked for; otherwise arranges a wake-up when it is.
    #[inline]
    fn is_set(&self, cx: &mut Context<'_>) -> bool {
        if self.flag.load(Ordering::Acquire) {
            return true;
        }
        self.waker.register(cx.waker());
        self.flag.load(Ordering::Acquire)
    }
}

/// Runs a connection; on shutdown asks it to finish in-flight requests and close
/// (HTTP/1.1: after the current response; HTTP/2: GOAWAY).
async fn drive<C, E>(conn: C, signal: &ConnSignal, peer: std::net::SocketAddr)
where
    C: std::future::Future<Output = Result<(), E>> + GracefulConnection,
    E: std::fmt::Display,
{
    tokio::pin!(conn);
    let mut closing = false;
    let result = std::future::poll_fn(|cx| loop {
        if let Poll::Ready(r) = conn.as_mut().poll(cx) {
            return Poll::Ready(r);
        }
        if !closing && signal.is_set(cx) {
            closing = true;
            conn.as_mut().graceful_shutdown();
            continue;
        }
        return Poll::Pending;
    })
    .await;
    if let Err(e) = result {
        tracing::debug!(client = %peer, error = %e, "connection ended with an error");
    }
}

/// The header and idle deadlines of one HTTP/1.1 connection.
struct Deadlines {
    activity: Arc<Activity>,
    header: Duration,
    idle: Duration,
    /// A duplicate handle of the socket, usable while hyper owns the stream: where a 408 can
    /// be written (plain TCP only; TLS connections are closed without one), and what keeps the
    /// socket open for a lingering close once hyper has let go of it.
    raw: Option<std::net::TcpStream>,
    plain: bool,
}

fn duplicate(stream: &TcpStream) -> Option<std::net::TcpStream> {
    std::os::fd::AsFd::as_fd(stream).try_clone_to_owned().ok().map(std::net::TcpStream::from)
}

/// How long a lingering close waits for the client to stop sending, in all and between reads.
const LINGER_TIME: Duration = Duration::from_secs(5);
const LINGER_PAUSE: Duration = Duration::from_secs(1);

/// A lingering close, as nginx does: the client may still be sending a request body nobody
/// read (an upstream answered 413 or 401 early). Closing at once would make the kernel answer
/// those bytes with a reset, which can destroy the response still on its way to the client.
/// So the write side is shut and what still arrives is read and dropped until the client
/// closes, for at most `LINGER_TIME` in all and `LINGER_PAUSE` between reads. (A byte limit
/// would bring the reset back for exactly the big uploads this is for.)
async fn linger(raw: std::net::TcpStream) {
    use std::io::Read;
    let _ = raw.shutdown(std::net::Shutdown::Write);
    // Usually the client has closed already: one read says so.
    let mut probe = [0u8; 64];
    match (&raw).read(&mut probe) {
        Ok(0) => return,
        Err(e) if e.kind() != std::io::ErrorKind::WouldBlock => return,
        _ => {}
    }
    let Ok(mut stream) = TcpStream::from_std(raw) else { return };
    let drain = async {
        let mut buf = vec![0u8; 16 * 1024];
        while let Ok(Ok(n)) =
            tokio::time::timeout(LINGER_PAUSE, tokio::io::AsyncReadExt::read(&mut stream, &mut buf)).await
        {
            if n == 0 {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(LINGER_TIME, drain).await;
}

/// `drive` plus the HTTP/1.1 deadlines, checked on one timer per connection.
async fn drive_h1<C, E>(conn: C, signal: &ConnSignal, peer: std::net::SocketAddr, deadlines: Deadlines)
where
    C: std::future::Future<Output = Result<(), E>> + GracefulConnection,
    E: std::fmt::Display,
{
    tokio::pin!(conn);
    let mut closing = false;
    let mut timer = Box::pin(tokio::time::sleep(deadlines.header / 2));
    let result = std::future::poll_fn(|cx| loop {
        if let Poll::Ready(r) = conn.as_mut().poll(cx) {
            return Poll::Ready(r);
        }
        if !closing && signal.is_set(cx) {
            closing = true;
            conn.as_mut().graceful_shutdown();
            continue;
        }
        if timer.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        if closing {
            // Asked to close a while ago and the client still holds on: stop waiting.
            return Poll::Ready(Ok(()));
        }
        let next = match deadlines.activity.verdict(deadlines.header, deadlines.idle) {
            // A head may start at any moment: look again at least every half header timeout.
            Verdict::Wait(d) => d.min(deadlines.header / 2),
            Verdict::HeadTimeout => {
                tracing::debug!(client = %peer, "request head not complete in time: 408");
                if let Some(raw) = deadlines.raw.as_ref().filter(|_| deadlines.plain) {
                    use std::io::Write;
                    let _ = (&*raw).write(REQUEST_TIMEOUT);
                    let _ = raw.shutdown(std::net::Shutdown::Both);
                }
                closing = true;
                conn.as_mut().graceful_shutdown();
                deadlines.header
            }
            Verdict::IdleTimeout => {
                closing = true;
                conn.as_mut().graceful_shutdown();
                deadlines.header
            }
        };
        timer.as_mut().reset(tokio::time::Instant::now() + next);
    })
    .await;
    if let Err(e) = result {
        tracing::debug!(client = %peer, error = %e, "connection ended with an error");
    }
    // After a protocol switch the socket belongs to the tunnel.
    if let Some(raw) = deadlines.raw.filter(|_| !deadlines.activity.is_upgraded()) {
        Box::pin(linger(raw)).await;
    }
}

/// The one method `drive` needs from hyper's connection types.
pub trait GracefulConnection {
    fn graceful_shutdown(self: std::pin::Pin<&mut Self>);
}

impl<I, S> GracefulConnection for hyper::server::conn::http1::UpgradeableConnection<I, S>
where
    S: hyper::service::HttpService<hyper::body::Incoming>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    S::ResBody: http_body::Body + 'static,
    <S::ResBody as http_body::Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    fn graceful_shutdown(self: std::pin::Pin<&mut Self>) {
        hyper::server::conn::http1::UpgradeableConnection::graceful_shutdown(self)
    }
}

impl<I, S, E> GracefulConnection for hyper::server::conn::http2::Connection<I, S, E>
where
    S: hyper::service::HttpService<hyper::body::Incoming>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    S::ResBody: http_body::Body + 'static,
    <S::ResBody as http_body::Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin,
    E: hyper::rt::bounds::Http2ServerConnExec<S::Future, S::ResBody>,
{
    fn graceful_shutdown(self: std::pin::Pin<&mut Self>) {
        hyper::server::conn::http2::Connection::graceful_shutdown(self)
    }
}

async fn refuse(mut stream: TcpStream) {
    let _ = tokio::time::timeout(Duration::from_secs(2), stream.write_all(OVERLOADED)).await;
    let _ = stream.shutdown().await;
}
