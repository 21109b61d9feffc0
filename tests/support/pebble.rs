//! Test harness: a real Pebble (Debian 2.4) + pebble-challtestsrv on free loopback ports, killed
//! on drop, plus TLS client helpers that trust only Pebble's issuing root.
//!
//! Debian 2.4 traps handled here: the challtestsrv DNS flag is `-dns01`; AAAA answers are
//! disabled (`-defaultIPv6 ""`) so validation dials 127.0.0.1; no certificates are shipped, so
//! the ACME listener's CA and a CA:FALSE leaf are generated; PEBBLE_VA_NOSLEEP=1 and
//! PEBBLE_WFE_NONCEREJECT=0 remove random sleeps and badNonce flakiness.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::{pem::PemObject, CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A free loopback port (bound and released). Never hands out the same port twice in this test
/// process, so parallel tests cannot be given each other's Pebble ports.
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

/// One Pebble + challtestsrv pair.
pub struct Pebble {
    pub dir: tempfile::TempDir,
    pub acme_port: u16,
    pub mgmt_port: u16,
    dns_port: u16,
    challtest_mgmt_port: u16,
    pebble: Option<Child>,
    challtest: Option<Child>,
}

impl Pebble {
    /// Starts Pebble validating HTTP-01 on `http_port` and TLS-ALPN-01 on `tls_port` (127.0.0.1),
    /// issuing certificates valid for `validity` seconds when given.
    pub async fn start(http_port: u16, tls_port: u16, validity: Option<u64>) -> Pebble {
        let dir = tempfile::tempdir().unwrap();
        write_listener_certs(dir.path());
        let acme_port = free_port();
        let mgmt_port = free_port();
        let dns_port = free_port();
        let challtest_mgmt_port = free_port();
        let mut cfg = serde_json::json!({ "pebble": {
            "listenAddress": format!("127.0.0.1:{acme_port}"),
            "managementListenAddress": format!("127.0.0.1:{mgmt_port}"),
            "certificate": dir.path().join("cert.pem"),
            "privateKey": dir.path().join("key.pem"),
            "httpPort": http_port,
            "tlsPort": tls_port,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": false,
        }});
        if let Some(v) = validity {
            cfg["pebble"]["certificateValidityPeriod"] = v.into();
        }
        std::fs::write(dir.path().join("pebble.json"), cfg.to_string()).unwrap();
        let challtest = Command::new("pebble-challtestsrv")
            .args([
                "-management",
                &format!("127.0.0.1:{challtest_mgmt_port}"),
                "-dns01",
                &format!("127.0.0.1:{dns_port}"),
            ])
            .args(["-defaultIPv6", "", "-defaultIPv4", "127.0.0.1", "-http01", "", "-https01", "", "-tlsalpn01", ""])
            .stdout(log_file(dir.path(), "challtestsrv.out"))
            .stderr(log_file(dir.path(), "challtestsrv.err"))
            .spawn()
            .expect("pebble-challtestsrv (apt-get install pebble)");
        let mut p = Pebble {
            dir,
            acme_port,
            mgmt_port,
            dns_port,
            challtest_mgmt_port,
            pebble: None,
            challtest: Some(challtest),
        };
        wait_port(challtest_mgmt_port).await;
        p.start_pebble().await;
        p
    }

    async fn start_pebble(&mut self) {
        // A restart can race the old process's sockets; Pebble then exits at once, so retry.
        for attempt in 0..5 {
            let child = Command::new("pebble")
                .arg("-config")
                .arg(self.dir.path().join("pebble.json"))
                .args(["-dnsserver", &format!("127.0.0.1:{}", self.dns_port)])
                .env("PEBBLE_VA_NOSLEEP", "1")
                .env("PEBBLE_WFE_NONCEREJECT", "0")
                .stdout(log_file(self.dir.path(), "pebble.out"))
                .stderr(log_file(self.dir.path(), "pebble.err"))
                .spawn()
                .expect("pebble (apt-get install pebble)");
            self.pebble = Some(child);
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                if let Ok((200, _)) = self.https_get(self.acme_port, "/dir").await {
                    return;
                }
                if let Some(Ok(Some(status))) = self.pebble.as_mut().map(|c| c.try_wait()) {
                    eprintln!("pebble exited ({status}) on start attempt {attempt}; log:\n{}", self.log());
                    self.pebble = None;
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    break;
                }
                assert!(Instant::now() < deadline, "pebble did not come up; log:\n{}", self.log());
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        panic!("pebble would not start; log:\n{}", self.log());
    }

    /// Stops Pebble (the CA is down; challtestsrv stays).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.pebble.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts Pebble again on the same ports. Pebble keeps nothing: new roots, no accounts.
    pub async fn restart(&mut self) {
        self.stop();
        self.start_pebble().await;
    }

    pub fn directory_url(&self) -> String {
        format!("https://127.0.0.1:{}/dir", self.acme_port)
    }

    /// The CA that signed Pebble's own HTTPS listener (for the ACME client).
    pub fn listener_ca(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// Pebble's current issuing root (changes at every Pebble start).
    pub async fn issuing_root(&self) -> CertificateDer<'static> {
        let (status, body) = self.https_get(self.mgmt_port, "/roots/0").await.expect("GET /roots/0");
        assert_eq!(status, 200);
        CertificateDer::from_pem_slice(&body).expect("root PEM")
    }

    pub fn log(&self) -> String {
        let read = |f: &str| std::fs::read_to_string(self.dir.path().join(f)).unwrap_or_default();
        format!("{}{}", read("pebble.out"), read("pebble.err"))
    }

    async fn https_get(&self, port: u16, path: &str) -> Result<(u16, Vec<u8>), String> {
        let ca = CertificateDer::from_pem_file(self.listener_ca()).map_err(|e| e.to_string())?;
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca).map_err(|e| e.to_string())?;
        let stream = TcpStream::connect(("127.0.0.1", port)).await.map_err(|e| e.to_string())?;
        let mut tls = tls_connect(stream, roots, "localhost", &[]).await?;
        http_get(&mut tls, "localhost", path, true).await
    }
}

impl Drop for Pebble {
    fn drop(&mut self) {
        self.stop();
        if let Some(mut c) = self.challtest.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Appends, so a restarted Pebble's log follows the first one.
fn log_file(dir: &Path, name: &str) -> Stdio {
    Stdio::from(std::fs::OpenOptions::new().create(true).append(true).open(dir.join(name)).unwrap())
}

async fn wait_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).await.is_err() {
        assert!(Instant::now() < deadline, "port {port} never opened");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// ca.pem (CA) and cert.pem/key.pem (leaf for localhost/127.0.0.1 with CA:FALSE; rustls refuses
/// a CA certificate as the server's end-entity).
fn write_listener_certs(dir: &Path) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(DnType::CommonName, "swarmgate test pebble listener CA");
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let mut leaf = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    leaf.is_ca = IsCa::ExplicitNoCa;
    leaf.distinguished_name.push(DnType::CommonName, "localhost");
    let issuer = Issuer::new(ca_params, ca_key);
    let leaf_cert = leaf.signed_by(&leaf_key, &issuer).unwrap();
    std::fs::write(dir.join("ca.pem"), ca_cert.pem()).unwrap();
    std::fs::write(dir.join("cert.pem"), leaf_cert.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), leaf_key.serialize_pem()).unwrap();
}

/// TLS client handshake with SNI `name` trusting only `roots`.
pub async fn tls_connect(
    stream: TcpStream,
    roots: rustls::RootCertStore,
    name: &str,
    alpn: &[&[u8]],
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, String> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = alpn.iter().map(|a| a.to_vec()).collect();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(cfg));
    let server_name = ServerName::try_from(name.to_owned()).map_err(|e| e.to_string())?;
    connector.connect(server_name, stream).await.map_err(|e| e.to_string())
}

/// Minimal HTTP/1.1 GET; `close` asks the server to close so the body can be read to EOF,
/// otherwise the body length comes from Content-Length and the connection stays usable.
pub async fn http_get<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    s: &mut S,
    host: &str,
    path: &str,
    close: bool,
) -> Result<(u16, Vec<u8>), String> {
    let conn = if close { "close" } else { "keep-alive" };
    let req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: {conn}\r\n\r\n");
    s.write_all(req.as_bytes()).await.map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        let n = s.read(&mut chunk).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Err(format!("connection closed before the response head ({} bytes)", buf.len()));
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let status: u16 = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).ok_or("bad status line")?;
    let len = head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case("content-length").then(|| v.trim().parse::<usize>().ok()).flatten()
    });
    let mut body = buf[head_end..].to_vec();
    match len {
        Some(len) => {
            while body.len() < len {
                let n = s.read(&mut chunk).await.map_err(|e| e.to_string())?;
                if n == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..n]);
            }
            body.truncate(len);
        }
        None => {
            let _ = s.read_to_end(&mut body).await;
        }
    }
    Ok((status, body))
}

/// What a TLS client trusting only `root` sees at `addr` for SNI `name`: the leaf certificate.
pub async fn served_leaf(
    addr: SocketAddr,
    root: &CertificateDer<'static>,
    name: &str,
) -> Result<CertificateDer<'static>, String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(root.clone()).map_err(|e| e.to_string())?;
    let stream = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let tls = tls_connect(stream, roots, name, &[b"http/1.1"]).await?;
    let leaf = tls.get_ref().1.peer_certificates().and_then(|c| c.first()).cloned().ok_or("no peer certificate")?;
    Ok(leaf.into_owned())
}

/// Serial number of a DER certificate (hex), to tell two certificates apart.
pub fn serial(der: &CertificateDer<'_>) -> String {
    use x509_parser::prelude::*;
    let (_, c) = X509Certificate::from_der(der.as_ref()).unwrap();
    c.raw_serial_as_string()
}

/// DNS SANs of a DER certificate.
pub fn dns_names(der: &CertificateDer<'_>) -> Vec<String> {
    use x509_parser::prelude::*;
    let (_, c) = X509Certificate::from_der(der.as_ref()).unwrap();
    let mut out = Vec::new();
    if let Ok(Some(san)) = c.subject_alternative_name() {
        for n in &san.value.general_names {
            if let GeneralName::DNSName(d) = n {
                out.push(d.to_string());
            }
        }
    }
    out
}

/// Polls `f` every 100 ms until it returns Some or `timeout` passes.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A plain HTTP upstream answering `200 hello <host>` to everything, until dropped.
pub struct Upstream {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Upstream {
    pub async fn start() -> Upstream {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = l.accept().await {
                tokio::spawn(serve_hello(hyper_util::rt::TokioIo::new(stream)));
            }
        });
        Upstream { addr, task }
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve_hello<I>(io: I)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    use http_body_util::Full;
    let svc = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| async move {
        let host = req.headers().get("host").and_then(|h| h.to_str().ok()).unwrap_or("").to_string();
        let rsp = hyper::Response::builder()
            .status(200)
            .body(Full::new(bytes::Bytes::from(format!("hello {host}"))))
            .unwrap();
        Ok::<_, std::convert::Infallible>(rsp)
    });
    let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, svc).await;
}
