//! A tiny HTTP origin used by the real-Swarm end-to-end tests (`tests/swarm_real.rs`).
//!
//! It is compiled as a static binary and baked into a `FROM scratch` image, because the test
//! machine cannot pull any base image. Every answer names the replica that produced it, so the
//! tests can see load balancing across Swarm tasks, and echoes what the proxy forwarded, so the
//! tests can assert the request line, `Host` and `X-Forwarded-*` headers.
//!
//! Behaviour:
//! - listens on `0.0.0.0:$PORT` (default 80);
//! - `GET /health` answers `200 ok`;
//! - every other request answers `200` with a body of `key=value` lines:
//!   `origin=<name>`, `version=<VERSION>`, `method=`, `path=`, `host=`, and one line per
//!   `x-forwarded-*` / `forwarded` header; the same facts are also sent as `x-origin-*` response
//!   headers (`x-origin-name`, `x-origin-version`, `x-origin-host`, ...);
//! - the replica name is `$TASK_NAME`, else the hostname (the Swarm task's container id);
//! - `/sleep/<ms>` waits that long before answering (bounded to 10 s), to hold a request in
//!   flight across a rolling update;
//! - `test_origin get URL...` is a tiny client instead of a server: for each plain-`http://`
//!   URL it prints `url=…`, `status=…` and the body (or `error=…`), and exits 1 if any request
//!   failed or answered non-2xx. The tests run it in a throw-away container on a test network
//!   to check that task IPs are reachable from a peer (the proxy's vantage point), since the
//!   host itself is not on Swarm overlay networks.
//! - on SIGTERM or SIGINT it first keeps serving for `$SHUTDOWN_DELAY_MS` (default 0) with
//!   `connection: close` on every answer (a "lame duck" phase: the proxy learns from Swarm that
//!   the task is shutting down and stops sending new requests), then stops accepting, lets
//!   in-flight requests finish (idle keep-alive connections are closed), and exits 0. That is
//!   what makes a stop-first rolling update lossless when the proxy drains the task in time.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};

/// Who this replica is and what version it claims, fixed at start-up.
struct Identity {
    name: String,
    version: String,
    /// Set once SIGTERM arrived: answers then close their connection.
    draining: AtomicBool,
}

fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| {
            let mut buf = [0u8; 256];
            // SAFETY: gethostname writes at most buf.len() bytes into a buffer we own.
            let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
            if rc == 0 {
                let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
                String::from_utf8_lossy(&buf[..end]).into_owned()
            } else {
                "unknown".to_string()
            }
        })
}

async fn handle(id: Arc<Identity>, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_string();
    let draining = id.draining.load(Ordering::Relaxed);
    if path == "/health" {
        let mut resp = Response::new(Full::new(Bytes::from_static(b"ok\n")));
        if draining {
            resp.headers_mut().insert(hyper::header::CONNECTION, hyper::header::HeaderValue::from_static("close"));
        }
        return Ok(resp);
    }
    if let Some(ms) = path.strip_prefix("/sleep/") {
        let ms: u64 = ms.parse().unwrap_or(0).min(10_000);
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    let host = req.headers().get(hyper::header::HOST).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let method = req.method().as_str().to_string();
    let mut body = format!(
        "origin={}\nversion={}\nmethod={}\npath={}\nhost={}\n",
        id.name,
        id.version,
        method,
        req.uri().path_and_query().map(|p| p.as_str()).unwrap_or("/"),
        host
    );
    let mut builder = Response::builder()
        .status(200)
        .header("content-type", "text/plain")
        .header("x-origin-name", id.name.as_str())
        .header("x-origin-version", id.version.as_str())
        .header("x-origin-method", method.as_str())
        .header("x-origin-path", path.as_str());
    if draining {
        builder = builder.header("connection", "close");
    }
    if let Ok(v) = hyper::header::HeaderValue::from_str(&host) {
        builder = builder.header("x-origin-host", v);
    }
    for (name, value) in req.headers() {
        let n = name.as_str();
        if n.starts_with("x-forwarded-") || n == "forwarded" || n == "x-real-ip" {
            body.push_str(&format!("{}={}\n", n, value.to_str().unwrap_or("<binary>")));
            builder = builder.header(format!("x-origin-echo-{n}"), value.clone());
        }
    }
    Ok(builder
        .body(Full::new(Bytes::from(body)))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::from_static(b"origin: response build error\n")))))
}

/// One plain-HTTP GET with a 5 s budget; returns (status, body).
async fn get(url: &str) -> Result<(u16, String), String> {
    let uri: hyper::Uri = url.parse().map_err(|e| format!("bad url: {e}"))?;
    if uri.scheme_str() != Some("http") {
        return Err("only http:// urls are supported".into());
    }
    let host = uri.host().ok_or("url has no host")?.to_string();
    let port = uri.port_u16().unwrap_or(80);
    let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/").to_string();
    let work = async {
        let stream = tokio::net::TcpStream::connect((host.as_str(), port))
            .await
            .map_err(|e| format!("connect {host}:{port}: {e}"))?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|e| format!("handshake: {e}"))?;
        tokio::spawn(conn);
        let req = Request::get(path)
            .header(hyper::header::HOST, format!("{host}:{port}"))
            .body(http_body_util::Empty::<Bytes>::new())
            .map_err(|e| format!("request: {e}"))?;
        let resp = sender.send_request(req).await.map_err(|e| format!("send: {e}"))?;
        let status = resp.status().as_u16();
        let body =
            http_body_util::BodyExt::collect(resp.into_body()).await.map_err(|e| format!("body: {e}"))?.to_bytes();
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    };
    tokio::time::timeout(Duration::from_secs(5), work).await.map_err(|_| "timed out after 5s".to_string())?
}

async fn client(urls: &[String]) -> std::io::Result<()> {
    let mut ok = true;
    for url in urls {
        println!("url={url}");
        match get(url).await {
            Ok((status, body)) => {
                ok &= (200..300).contains(&status);
                println!("status={status}\n{body}");
            }
            Err(e) => {
                ok = false;
                println!("error={e}");
            }
        }
    }
    if !ok {
        std::process::exit(1);
    }
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("get") {
        return client(&args[1..]).await;
    }
    let port: u16 = std::env::var("PORT").ok().and_then(|p| p.parse().ok()).unwrap_or(80);
    let id = Arc::new(Identity {
        name: std::env::var("TASK_NAME").ok().filter(|s| !s.is_empty()).unwrap_or_else(hostname),
        version: std::env::var("VERSION").unwrap_or_else(|_| "v1".to_string()),
        draining: AtomicBool::new(false),
    });
    let shutdown_delay =
        Duration::from_millis(std::env::var("SHUTDOWN_DELAY_MS").ok().and_then(|v| v.parse().ok()).unwrap_or(0));
    let listener = TcpListener::bind(SocketAddr::from(([0, 0, 0, 0], port))).await?;
    eprintln!("test_origin {} ({}) listening on {}", id.name, id.version, listener.local_addr()?);

    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    // `None` while serving normally; the lame-duck deadline once a signal arrived.
    let mut stop_at: Option<tokio::time::Instant> = None;
    loop {
        let lame_duck_over = async {
            match stop_at {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, _) = match accepted {
                    Ok(s) => s,
                    Err(e) => {
                        eprintln!("accept: {e}");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let id = id.clone();
                let conn = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service_fn(move |req| handle(id.clone(), req)));
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    let _ = conn.await;
                });
            }
            _ = term.recv(), if stop_at.is_none() => {
                eprintln!("test_origin {}: SIGTERM, lame duck for {:?}", id.name, shutdown_delay);
                id.draining.store(true, Ordering::Relaxed);
                stop_at = Some(tokio::time::Instant::now() + shutdown_delay);
            }
            _ = int.recv(), if stop_at.is_none() => {
                id.draining.store(true, Ordering::Relaxed);
                stop_at = Some(tokio::time::Instant::now() + shutdown_delay);
            }
            _ = lame_duck_over => break,
        }
    }
    drop(listener);
    eprintln!("test_origin {}: signal received, draining in-flight requests", id.name);
    match tokio::time::timeout(Duration::from_secs(20), graceful.shutdown()).await {
        Ok(()) => eprintln!("test_origin {}: drained, exiting", id.name),
        Err(_) => eprintln!("test_origin {}: drain timed out, exiting", id.name),
    }
    Ok(())
}
