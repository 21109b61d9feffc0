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
use hyper::rt::bounds::Http2ServerConnExec;
use hyper::service::{service_fn, HttpService};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::body::ProxyBody;
use super::fdlimit::Backoff;
use super::h2stream::StreamExec;
use super::handler::{handle, ConnInfo, ProxyState};
use super::preface::{detect, Detected, Replay};
use super::spread::{Placed, ThreadShare};
use super::watchdog::{Activity, BusyBody, Verdict, Watched, REQUEST_TIMEOUT};
use crate::admin::metrics::Metrics;
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
pub(crate) struct Builders {
    /// hyper's own HTTP/1.1 server, without hyper-util's protocol-detecting wrapper: the
    /// listener already knows the protocol (ALPN, or the h2c preface).
    h1: hyper::server::conn::http1::Builder,
    h2: hyper::server::conn::http2::Builder<StreamExec>,
}

impl Builders {
    pub(crate) fn new(limits: &Limits) -> Self {
        let mut h1 = hyper::server::conn::http1::Builder::new();
        h1.timer(TokioTimer::new())
            // Header and idle deadlines are enforced by `watchdog` (hyper's would close silently
            // and cut idle keep-alive connections at the header deadline).
            .header_read_timeout(None)
            .keep_alive(true)
            // Bodies are queued as they are and written with the head in one `writev`, not
            // copied into hyper's write buffer: with `writev(false)` that buffer grows to the
            // largest body sent and every idle keep-alive connection keeps it (benches/
            // idle_memory.sh with 32 KiB bodies: 72 KiB per idle connection, 39 KiB with writev).
            .writev(true)
            .max_buf_size(limits.max_header_bytes.max(8192));
        Builders { h1, h2: h2_builder(limits) }
    }
}

/// HTTP/2: each stream under the per-stream output-stall guard (`h2stream`), and the
/// limits against hostile clients spelled out rather than left to library defaults
/// (tests/hostile_h2.rs probes each).
fn h2_builder(limits: &Limits) -> hyper::server::conn::http2::Builder<StreamExec> {
    let mut h2 = hyper::server::conn::http2::Builder::new(StreamExec { limit: limits.idle_timeout.0 });
    h2.timer(TokioTimer::new())
        // Streams over this are refused with RST_STREAM REFUSED_STREAM.
        .max_concurrent_streams(256)
        // Rapid reset (CVE-2023-44487): streams the client resets before they are served;
        // past this many at once, GOAWAY ENHANCE_YOUR_CALM.
        .max_pending_accept_reset_streams(20)
        // Streams the server had to reset for the client's errors; past this, GOAWAY.
        .max_local_error_reset_streams(1024)
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(20))
        // Also bounds CONTINUATION frames per header block (h2 derives the count from it).
        .max_header_list_size(limits.max_header_bytes as u32);
    h2
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
    let (mut accept_backoff, mut refusals) = (Backoff::default(), Backoff::default());
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
                    // EMFILE and friends: back off (exponentially) instead of spinning, and
                    // say so once per interval, not once per attempt.
                    let (wait, log) = accept_backoff.failed(std::time::Instant::now());
                    if let Some(suppressed) = log {
                        tracing::warn!(error = %e, suppressed, "accept failed; backing off");
                    }
                    tokio::time::sleep(wait).await;
                    continue;
                }
            },
        };
        accept_backoff.succeeded();
        let _ = stream.set_nodelay(true);
        let Ok(permit) = settings.connections.clone().try_acquire_owned() else {
            state.metrics.connections_refused.fetch_add(1, Ordering::Relaxed);
            if let Some(suppressed) = refusals.should_log(std::time::Instant::now()) {
                tracing::warn!(client = %peer, suppressed, "max_connections reached; refusing connections with 503");
            }
            tokio::spawn(refuse(stream));
            continue;
        };
        state.metrics.connections_total.fetch_add(1, Ordering::Relaxed);
        state.metrics.open_connections.fetch_add(1, Ordering::Relaxed);
        let activity = Arc::new(Activity::default());
        // Everything a request on this connection reads, behind one reference count.
        let conn = Arc::new(ConnContext {
            state: state.clone(),
            info: ConnInfo::new(peer, https, state.forwarder.trusts(peer.ip())),
            activity: activity.clone(),
        });
        // Boxed for both protocols. HTTP/2 moves each stream's future into a task of its own
        // (several copies of ~2 KB). HTTP/1.1 keeps the slot for the request in flight for the
        // whole life of the connection: unboxed, every idle keep-alive connection would carry
        // a request future's worth of memory.
        let conn_for_tls = conn.clone();
        let h1_svc = {
            let conn = conn.clone();
            service_fn(move |req| Box::pin(serve_request(conn.clone(), req)))
        };
        let h2_svc = service_fn(move |req| Box::pin(serve_request(conn.clone(), req)));
        let c = Conn {
            peer,
            activity,
            signal: signals.register(),
            header: settings.limits.header_read_timeout.0,
            idle: settings.limits.idle_timeout.0,
        };
        let (builders, metrics, acceptor) = (builders.clone(), state.metrics.clone(), tls.clone());
        let on_handshake = {
            let (certs, conn) = (state.certs.clone(), conn_for_tls);
            move |tls: &rustls::ServerConnection| {
                if let Some(cert) = tls.server_name().and_then(|name| certs.get(&name.to_ascii_lowercase())) {
                    let _ = conn.info.tls_cert.set(cert);
                }
            }
        };
        // The TLS handshake runs in the connection task so a slow client cannot stall accepts.
        tracker.spawn(async move {
            let _permit = permit;
            let _counted = counted;
            match acceptor {
                None => serve_plain(&builders, c, stream, h1_svc, h2_svc).await,
                Some(acceptor) => {
                    let services = (h1_svc, h2_svc);
                    serve_tls(&builders, c, stream, acceptor, services, on_handshake, &metrics).await
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
/// lingering close) from the moment the handler runs until the response body is sent.
async fn serve_request(conn: Arc<ConnContext>, req: Request<Incoming>) -> Result<Response<Reply>, Infallible> {
    let busy = conn.activity.begin(!http_body::Body::is_end_stream(req.body()));
    let resp = handle(&conn.state, req, &conn.info).await;
    if resp.status() == http::StatusCode::SWITCHING_PROTOCOLS {
        conn.activity.set_upgraded();
    }
    Ok(resp.map(|body| BusyBody::new(body, busy)))
}

/// The body of every response a connection served here sends.
pub(crate) type Reply = BusyBody<ProxyBody>;

/// One accepted connection and what its driver needs.
pub(crate) struct Conn {
    pub peer: std::net::SocketAddr,
    pub activity: Arc<Activity>,
    pub signal: Arc<ConnSignal>,
    /// `header_read_timeout` and `idle_timeout`.
    pub header: Duration,
    pub idle: Duration,
}

/// Serves a plain connection: h2c when it starts with the HTTP/2 preface, else HTTP/1.1.
pub(crate) async fn serve_plain<S1, S2>(b: &Builders, c: Conn, stream: TcpStream, h1: S1, h2: S2)
where
    S1: HttpService<Incoming, ResBody = Reply, Error = Infallible> + Unpin,
    S2: HttpService<Incoming, ResBody = Reply, Error = Infallible>,
    StreamExec: Http2ServerConnExec<S2::Future, Reply>,
{
    match detect(stream, c.header, &c.activity).await {
        // Boxed, like the TLS handshake: a task is allocated at the size of its largest
        // state, and a parked HTTP/1.1 connection should not pay for HTTP/2's.
        Detected::H2c(stream, replay) => Box::pin(serve_h2(b, c, stream, replay, h2)).await,
        Detected::H1(stream, replay) => {
            let raw = duplicate(&stream);
            serve_h1(b, c, stream, replay, raw, h1).await
        }
        Detected::Stalled(mut stream) => {
            tracing::debug!(client = %c.peer, "request head not complete in time: 408");
            let _ = tokio::time::timeout(LINGER_PAUSE, stream.write_all(REQUEST_TIMEOUT)).await;
        }
        Detected::Closed => {}
    }
}

/// Serves a TLS connection by its ALPN protocol. The handshake counts against the first
/// request head's deadline: a client gets `header_read_timeout` from accept to a complete
/// head, not that for the handshake and that again for the head.
async fn serve_tls<S1, S2>(
    b: &Builders,
    c: Conn,
    stream: TcpStream,
    acceptor: tokio_rustls::TlsAcceptor,
    (h1, h2): (S1, S2),
    on_handshake: impl FnOnce(&rustls::ServerConnection),
    metrics: &Metrics,
) where
    S1: HttpService<Incoming, ResBody = Reply, Error = Infallible> + Unpin,
    S2: HttpService<Incoming, ResBody = Reply, Error = Infallible>,
    StreamExec: Http2ServerConnExec<S2::Future, Reply>,
{
    c.activity.saw_bytes();
    let tls = match tokio::time::timeout(c.header, Box::pin(acceptor.accept(stream))).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::debug!(client = %c.peer, error = %e, "TLS handshake failed");
            metrics.tls_handshake_failures.fetch_add(1, Ordering::Relaxed);
            return;
        }
        Err(_) => {
            metrics.tls_handshake_failures.fetch_add(1, Ordering::Relaxed);
            return;
        }
    };
    let alpn = tls.get_ref().1.alpn_protocol();
    if alpn != Some(ACME_TLS_ALPN) {
        on_handshake(tls.get_ref().1);
    }
    match alpn {
        // TLS-ALPN-01 validation is the handshake itself; nothing more to serve.
        Some(ACME_TLS_ALPN) => {}
        Some(b"h2") => Box::pin(serve_h2(b, c, tls, Replay::default(), h2)).await,
        _ => {
            let raw = duplicate(tls.get_ref().0);
            serve_h1(b, c, tls, Replay::default(), raw, h1).await
        }
    }
}

/// Serves HTTP/1.1, parking the connection whenever it is idle: hyper's connection (with its
/// 8 KiB read and write buffers and cached header map, ~27 KiB in all) is taken apart and
/// dropped, the task waits on the bare stream, and a fresh hyper connection takes over when
/// the client sends again, reading first whatever the old one had read but not parsed. So an
/// idle keep-alive connection costs about what a just-accepted one does (benches/
/// idle_memory.sh). Parking only happens at a message boundary (`Activity::may_park`).
async fn serve_h1<I, S>(b: &Builders, c: Conn, io: I, replay: Replay, raw: Option<std::net::TcpStream>, svc: S)
where
    I: AsyncRead + AsyncWrite + Parkable + Unpin + Send + 'static,
    S: HttpService<Incoming, ResBody = Reply, Error = Infallible> + Unpin,
{
    let (mut io, mut svc) = (Watched::new(io, c.activity.clone(), replay), svc);
    loop {
        let mut conn = Box::new(b.h1.serve_connection(TokioIo::new(io), svc).with_upgrades());
        let may_park = || c.activity.may_park();
        let result = match drive(std::pin::Pin::new(&mut *conn), &c, Proto::H1, may_park).await {
            Ended::Finished(result) => result,
            Ended::Idle => match (*conn).into_parts() {
                Some(parts) => {
                    (io, svc) = (parts.io.into_inner(), parts.service);
                    io.replay_mut().push(parts.read_buf);
                    if park(&mut io, &c).await {
                        continue;
                    }
                    // Idle too long, or shutting down: close at once (nothing unread to linger for).
                    let _ = tokio::time::timeout(LINGER_PAUSE, io.get_mut().shutdown()).await;
                    return;
                }
                None => Ok(()),
            },
        };
        if let Err(e) = result {
            tracing::debug!(client = %c.peer, error = %e, "connection ended with an error");
        }
        break;
    }
    // After a protocol switch the socket belongs to the tunnel; after a 408 it is done.
    if let Some(raw) = raw.filter(|_| !c.activity.is_upgraded() && !c.activity.is_expired()) {
        Box::pin(linger(raw)).await;
    }
}

/// A stream an idle HTTP/1.1 connection can wait on without a hyper connection around it.
pub(crate) trait Parkable {
    /// Ready when the client sent something (or closed).
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>>;
    /// Whether input is already buffered above the socket (TLS: decrypted, not yet read).
    fn has_buffered_input(&mut self) -> bool;
}

impl Parkable for TcpStream {
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        TcpStream::poll_read_ready(self, cx)
    }

    fn has_buffered_input(&mut self) -> bool {
        false
    }
}

/// TLS parks too: the readiness is the socket's, and the rustls session (with its own
/// buffers) stays, so a parked TLS connection saves hyper's share only.
impl Parkable for tokio_rustls::server::TlsStream<TcpStream> {
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.get_ref().0.poll_read_ready(cx)
    }

    fn has_buffered_input(&mut self) -> bool {
        // An error is hyper's to meet: resume and let it read.
        self.get_mut().1.process_new_packets().map_or(true, |s| s.plaintext_bytes_to_read() > 0)
    }
}

/// Waits on a parked connection. True: the client sent something, serve it. False: the idle
/// deadline passed or the listener is shutting down; close.
async fn park<I: Parkable>(io: &mut Watched<I>, c: &Conn) -> bool {
    if !io.replay_mut().is_empty() || io.get_mut().has_buffered_input() {
        // The start of a head, read before the park: its deadline runs from now.
        c.activity.saw_bytes();
        return true;
    }
    let mut timer: Option<std::pin::Pin<Box<tokio::time::Sleep>>> = None;
    std::future::poll_fn(|cx| {
        if c.signal.is_set(cx) {
            return Poll::Ready(false);
        }
        if io.get_ref().poll_read_ready(cx).is_ready() {
            return Poll::Ready(true);
        }
        loop {
            let Verdict::Wait(d) = c.activity.verdict(c.header, c.idle) else { return Poll::Ready(false) };
            let at = tokio::time::Instant::now() + d;
            match &mut timer {
                Some(t) => t.as_mut().reset(at),
                None => timer = Some(Box::pin(tokio::time::sleep_until(at))),
            }
            if timer.as_mut().is_some_and(|t| t.as_mut().poll(cx).is_pending()) {
                return Poll::Pending;
            }
        }
    })
    .await
}

async fn serve_h2<I, S>(b: &Builders, c: Conn, io: I, replay: Replay, svc: S)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: HttpService<Incoming, ResBody = Reply, Error = Infallible>,
    StreamExec: Http2ServerConnExec<S::Future, Reply>,
{
    let io = Watched::h2(io, c.activity.clone(), replay);
    let conn = b.h2.serve_connection(TokioIo::new(io), svc);
    tokio::pin!(conn);
    if let Ended::Finished(Err(e)) = drive(conn, &c, Proto::H2, || false).await {
        tracing::debug!(client = %c.peer, error = %e, "connection ended with an error");
    }
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
pub(crate) struct ConnSignals {
    fired: AtomicBool,
    conns: std::sync::Mutex<Vec<Weak<ConnSignal>>>,
}

#[derive(Default)]
pub(crate) struct ConnSignal {
    flag: AtomicBool,
    waker: AtomicWaker,
}

impl ConnSignals {
    /// A signal for a new connection (touched only at accept, not per request).
    pub(crate) fn register(&self) -> Arc<ConnSignal> {
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

    pub(crate) fn fire(&self) {
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

#[derive(Clone, Copy, PartialEq, Eq)]
enum Proto {
    H1,
    H2,
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

/// How `drive` let go of a connection.
enum Ended<E> {
    /// hyper's connection future completed.
    Finished(Result<(), E>),
    /// `may_park` said the connection is idle at a message boundary: hyper's connection is
    /// still whole, waiting for input, and may be taken apart.
    Idle,
}

/// Runs a connection under its deadlines, checked on one timer per connection. On shutdown
/// asks it to finish in-flight requests and close (HTTP/1.1: after the current response;
/// HTTP/2: GOAWAY). Whenever the connection waits for input and `may_park` says yes, returns
/// `Ended::Idle` (never once shutdown began).
async fn drive<C, E>(mut conn: std::pin::Pin<&mut C>, c: &Conn, proto: Proto, may_park: impl Fn() -> bool) -> Ended<E>
where
    C: std::future::Future<Output = Result<(), E>> + GracefulConnection,
{
    let mut closing = false;
    // A head or an idle period may start at any moment: look again at least this often.
    let step = c.header.min(c.idle) / 2;
    let mut timer = Box::pin(tokio::time::sleep(step));
    std::future::poll_fn(|cx| loop {
        if let Poll::Ready(r) = conn.as_mut().poll(cx) {
            return Poll::Ready(Ended::Finished(r));
        }
        if !closing && c.signal.is_set(cx) {
            closing = true;
            conn.as_mut().graceful_shutdown();
            continue;
        }
        if !closing && may_park() {
            // At once: waiting even 50 ms held ~1 KiB more per idle connection (a burst of
            // connections is whole at its peak, and the allocator keeps the peak), and
            // keep-alive throughput under wrk was no better for the wait.
            return Poll::Ready(Ended::Idle);
        }
        if timer.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        if closing {
            // Asked to close a while ago and the client still holds on: stop waiting.
            return Poll::Ready(Ended::Finished(Ok(())));
        }
        let next = match c.activity.verdict(c.header, c.idle) {
            Verdict::Wait(d) => d.min(step),
            Verdict::HeadTimeout if proto == Proto::H1 => {
                tracing::debug!(client = %c.peer, "request head not complete in time: 408");
                // The IO wrapper writes the 408 and ends the stream when hyper next reads
                // (hyper's graceful shutdown would close at once, without an answer).
                c.activity.expire();
                closing = true;
                c.header
            }
            // HTTP/2: no stream opened in time, or idle: GOAWAY, then close.
            Verdict::HeadTimeout | Verdict::IdleTimeout => {
                closing = true;
                conn.as_mut().graceful_shutdown();
                c.header
            }
            Verdict::WriteStalled => {
                tracing::debug!(client = %c.peer, "client stopped reading its response; closing");
                return Poll::Ready(Ended::Finished(Ok(())));
            }
        };
        timer.as_mut().reset(tokio::time::Instant::now() + next);
    })
    .await
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
