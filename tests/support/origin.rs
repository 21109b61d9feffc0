//! A test origin on 127.0.0.1:0 speaking HTTP/1.1 and h2c. It records what it received and
//! answers by path:
//! - `/delay/<ms>`: waits, then 200
//! - `/slow-on/<name>/<ms>`: the origin called `<name>` waits, the others answer at once
//! - `/status/<code>`: that status
//! - `/stream/<chunks>`: `chunks` chunks of 1 KiB, 50 ms apart
//! - `/big/<MiB>`: that many MiB as fast as the client takes them; counts bytes handed to hyper
//! - `/ws`: WebSocket-style upgrade; echoes bytes after 101
//! - `/trailers`: body then `grpc-status: 0` trailer
//! - anything else: 200 with body `<name> <method> <path?query>`
//!   Every response carries `x-origin: <name>` and echoes request headers as `x-echo-<name>`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

type Body = http_body_util::combinators::BoxBody<Bytes, Infallible>;

/// What the origin saw.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub uri: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub version: http::Version,
    /// HTTP/2 `:authority` (the URI's authority), if any.
    pub authority: Option<String>,
}

/// Handshakes a TLS origin saw.
#[derive(Debug, Default)]
pub struct TlsStats {
    /// Completed TLS handshakes (= TLS connections).
    pub handshakes: AtomicUsize,
    /// Connections that did not complete a handshake (a cleartext request, a client that
    /// rejected the certificate).
    pub failed: AtomicUsize,
    /// SNI of the last completed handshake.
    pub last_sni: Mutex<Option<String>>,
    /// Why the last failed handshake failed (e.g. the client's alert).
    pub last_error: Mutex<Option<String>>,
}

impl TlsStats {
    pub fn handshakes(&self) -> usize {
        self.handshakes.load(Ordering::SeqCst)
    }
    pub fn failed(&self) -> usize {
        self.failed.load(Ordering::SeqCst)
    }
    pub fn last_sni(&self) -> Option<String> {
        self.last_sni.lock().unwrap().clone()
    }
    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().unwrap().clone()
    }
}

pub struct Origin {
    pub addr: SocketAddr,
    pub name: String,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    pub hits: Arc<AtomicUsize>,
    /// Bytes of `/big` responses hyper has accepted from us so far.
    pub big_sent: Arc<AtomicU64>,
    /// `/big` response bodies still alive in the origin (dropped when the proxy lets go of
    /// the upstream connection or the body is sent).
    pub big_open: Arc<AtomicUsize>,
    /// TLS origins only: what the handshakes did.
    pub tls_stats: Arc<TlsStats>,
    shutdown: tokio_util::sync::CancellationToken,
}

impl Drop for Origin {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

fn full(b: impl Into<Bytes>) -> Body {
    http_body_util::Full::new(b.into()).map_err(|e| match e {}).boxed()
}

impl Origin {
    pub async fn start(name: &str) -> Origin {
        Self::start_on("127.0.0.1:0".parse().unwrap(), name).await
    }

    pub async fn start_on(addr: SocketAddr, name: &str) -> Origin {
        Self::start_with(addr, name, None).await
    }

    /// An origin that speaks only TLS (HTTP/1.1, and h2 when `alpn` offers it) with the
    /// certificate and key in `cert`/`key` (PEM files). `tls_stats` counts handshakes.
    pub async fn start_tls(name: &str, cert: &std::path::Path, key: &std::path::Path, alpn: &[&[u8]]) -> Origin {
        use rustls::pki_types::pem::PemObject;
        let chain: Vec<_> =
            rustls::pki_types::CertificateDer::pem_file_iter(cert).unwrap().map(|c| c.unwrap()).collect();
        let key = rustls::pki_types::PrivateKeyDer::from_pem_file(key).unwrap();
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap();
        cfg.alpn_protocols = alpn.iter().map(|a| a.to_vec()).collect();
        Self::start_with("127.0.0.1:0".parse().unwrap(), name, Some(tokio_rustls::TlsAcceptor::from(Arc::new(cfg))))
            .await
    }

    async fn start_with(addr: SocketAddr, name: &str, tls: Option<tokio_rustls::TlsAcceptor>) -> Origin {
        let listener = TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let hits = Arc::new(AtomicUsize::new(0));
        let big_sent = Arc::new(AtomicU64::new(0));
        let big_open = Arc::new(AtomicUsize::new(0));
        let tls_stats = Arc::new(TlsStats::default());
        let shutdown = tokio_util::sync::CancellationToken::new();
        let o = Origin {
            addr,
            name: name.to_owned(),
            seen: seen.clone(),
            hits: hits.clone(),
            big_sent: big_sent.clone(),
            big_open: big_open.clone(),
            tls_stats: tls_stats.clone(),
            shutdown: shutdown.clone(),
        };
        let name = name.to_owned();
        tokio::spawn(async move {
            loop {
                let (stream, _) = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    r = listener.accept() => match r { Ok(x) => x, Err(_) => continue },
                };
                let (name, seen, hits, big_sent, big_open) =
                    (name.clone(), seen.clone(), hits.clone(), big_sent.clone(), big_open.clone());
                let conn_shutdown = shutdown.clone();
                let (tls, tls_stats) = (tls.clone(), tls_stats.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |req| {
                        let (name, seen, hits, big_sent, big_open) =
                            (name.clone(), seen.clone(), hits.clone(), big_sent.clone(), big_open.clone());
                        async move { Ok::<_, Infallible>(answer(req, &name, &seen, &hits, (&big_sent, &big_open)).await) }
                    });
                    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    match tls {
                        None => {
                            let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), svc);
                            tokio::select! {
                                _ = conn => {}
                                _ = conn_shutdown.cancelled() => {}
                            }
                        }
                        Some(acceptor) => {
                            let stream = match acceptor.accept(stream).await {
                                Ok(s) => s,
                                Err(e) => {
                                    *tls_stats.last_error.lock().unwrap() = Some(e.to_string());
                                    tls_stats.failed.fetch_add(1, Ordering::SeqCst);
                                    return;
                                }
                            };
                            tls_stats.handshakes.fetch_add(1, Ordering::SeqCst);
                            *tls_stats.last_sni.lock().unwrap() = stream.get_ref().1.server_name().map(str::to_owned);
                            let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), svc);
                            tokio::select! {
                                _ = conn => {}
                                _ = conn_shutdown.cancelled() => {}
                            }
                        }
                    }
                });
            }
        });
        o
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

async fn answer(
    mut req: Request<Incoming>,
    name: &str,
    seen: &Mutex<Vec<Seen>>,
    hits: &AtomicUsize,
    (big_sent, big_open): (&Arc<AtomicU64>, &Arc<AtomicUsize>),
) -> Response<Body> {
    hits.fetch_add(1, Ordering::SeqCst);
    let path = req.uri().path().to_owned();
    let pq = req.uri().path_and_query().map(|p| p.to_string()).unwrap_or_default();
    let method = req.method().to_string();
    let headers = req.headers().clone();
    let version = req.version();
    let authority = req.uri().authority().map(|a| a.to_string());
    let on_upgrade = if path == "/ws" { Some(hyper::upgrade::on(&mut req)) } else { None };
    let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    seen.lock().unwrap().push(Seen {
        method: method.clone(),
        uri: pq.clone(),
        headers: headers.clone(),
        body: body.clone(),
        version,
        authority,
    });
    let slow_here = path.strip_prefix("/slow-on/").and_then(|r| r.split_once('/')).filter(|(n, _)| *n == name);
    let mut resp = if let Some((_, ms)) = slow_here {
        tokio::time::sleep(Duration::from_millis(ms.parse().unwrap_or(0))).await;
        Response::new(full(format!("{name} slow")))
    } else if let Some(ms) = path.strip_prefix("/delay/") {
        tokio::time::sleep(Duration::from_millis(ms.parse().unwrap_or(0))).await;
        Response::new(full(format!("{name} delayed")))
    } else if let Some(code) = path.strip_prefix("/status/") {
        let mut r = Response::new(full(format!("{name} status")));
        *r.status_mut() = StatusCode::from_u16(code.parse().unwrap_or(500)).unwrap();
        r
    } else if let Some(n) = path.strip_prefix("/stream/") {
        let n: usize = n.parse().unwrap_or(1);
        let stream = futures_util::stream::unfold(0usize, move |i| async move {
            if i >= n {
                return None;
            }
            if i > 0 {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Some((Ok::<_, Infallible>(Frame::data(Bytes::from(vec![b'x'; 1024]))), i + 1))
        });
        Response::new(StreamBody::new(stream).boxed())
    } else if let Some(mib) = path.strip_prefix("/big/") {
        let chunks: u64 = mib.parse::<u64>().unwrap_or(1) * 16;
        let counter = big_sent.clone();
        let open = OpenGuard::new(big_open.clone());
        let stream = futures_util::stream::unfold(0u64, move |i| {
            let counter = counter.clone();
            let _open = &open;
            async move {
                if i >= chunks {
                    return None;
                }
                counter.fetch_add(64 * 1024, Ordering::SeqCst);
                Some((Ok::<_, Infallible>(Frame::data(Bytes::from(vec![b'b'; 64 * 1024]))), i + 1))
            }
        });
        Response::new(StreamBody::new(stream).boxed())
    } else if path == "/ws" {
        let up = on_upgrade.unwrap();
        tokio::spawn(async move {
            if let Ok(up) = up.await {
                let mut io = TokioIo::new(up);
                let mut buf = [0u8; 1024];
                while let Ok(n) = io.read(&mut buf).await {
                    if n == 0 || io.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            }
        });
        let mut r = Response::new(full(Bytes::new()));
        *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        r.headers_mut().insert("upgrade", "websocket".parse().unwrap());
        r.headers_mut().insert("connection", "upgrade".parse().unwrap());
        r
    } else if path == "/trailers" {
        let frames = vec![
            Ok::<_, Infallible>(Frame::data(Bytes::from_static(b"grpc-like-body"))),
            Ok(Frame::trailers({
                let mut t = HeaderMap::new();
                t.insert("grpc-status", "0".parse().unwrap());
                t.insert("grpc-message", "ok".parse().unwrap());
                t
            })),
        ];
        Response::new(StreamBody::new(futures_util::stream::iter(frames)).boxed())
    } else {
        Response::new(full(format!("{name} {method} {pq}")))
    };
    resp.headers_mut().insert("x-origin", name.parse().unwrap());
    for (k, v) in headers.iter() {
        if let Ok(n) = http::HeaderName::from_bytes(format!("x-echo-{}", k.as_str()).as_bytes()) {
            resp.headers_mut().append(n, v.clone());
        }
    }
    resp
}

/// Counts a live `/big` body until dropped.
struct OpenGuard(Arc<AtomicUsize>);

impl OpenGuard {
    fn new(count: Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::SeqCst);
        OpenGuard(count)
    }
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}
