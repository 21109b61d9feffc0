//! The HTTPS listener: SNI selection over static certificates, ALPN, protocol versions, key
//! types, resumption, redirects.

mod support;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::ServerName;
use support::client::get;
use support::gateway::Gateway;
use support::origin::Origin;
use support::pki::Ca;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

struct Setup {
    ca: Ca,
    gw: Gateway,
    origin: Origin,
    _dir: tempfile::TempDir,
}

async fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new();
    let (ec_cert, ec_key) = ca.leaf(dir.path(), "ec", &["secure.example.com"], false);
    let (rsa_cert, rsa_key) = ca.leaf(dir.path(), "rsa", &["legacy.example.com"], true);
    let (wc_cert, wc_key) = ca.leaf(dir.path(), "wild", &["*.apps.example.com"], false);
    let origin = Origin::start("tls-origin").await;
    let cfg = format!(
        "[listen]\nhttp = \"127.0.0.1:0\"\nhttps = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\n\
         [[tls.certificates]]\ncert = \"{}\"\nkey = \"{}\"\n[[tls.certificates]]\ncert = \"{}\"\nkey = \"{}\"\n[[tls.certificates]]\ncert = \"{}\"\nkey = \"{}\"\n\
         [[routes]]\nhosts = [\"secure.example.com\", \"legacy.example.com\", \"*.apps.example.com\"]\nupstreams = [\"{}\"]\n\
         [[routes]]\nhosts = [\"plain.example.com\"]\nupstreams = [\"{}\"]\n",
        ec_cert.display(), ec_key.display(), rsa_cert.display(), rsa_key.display(), wc_cert.display(), wc_key.display(), origin.addr, origin.addr
    );
    let gw = Gateway::start(&cfg).await;
    Setup { ca, gw, origin, _dir: dir }
}

async fn connect(
    s: &Setup,
    sni: &str,
    cfg: Arc<rustls::ClientConfig>,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(s.gw.https.unwrap()).await?;
    TlsConnector::from(cfg).connect(ServerName::try_from(sni.to_owned()).unwrap(), tcp).await
}

fn leaf_names(stream: &tokio_rustls::client::TlsStream<TcpStream>) -> Vec<String> {
    let der = stream.get_ref().1.peer_certificates().unwrap()[0].clone();
    swarmgate::tls::leaf_info(&der).unwrap().names
}

#[tokio::test]
async fn sni_selects_exact_rsa_and_wildcard_certificates() {
    let s = setup().await;
    let cfg = s.ca.client_config(&[b"http/1.1"]);
    assert_eq!(leaf_names(&connect(&s, "secure.example.com", cfg.clone()).await.unwrap()), ["secure.example.com"]);
    assert_eq!(leaf_names(&connect(&s, "legacy.example.com", cfg.clone()).await.unwrap()), ["legacy.example.com"]);
    assert_eq!(leaf_names(&connect(&s, "shop.apps.example.com", cfg.clone()).await.unwrap()), ["*.apps.example.com"]);
    // A name with no certificate: the handshake fails cleanly, the listener keeps serving.
    assert!(connect(&s, "unknown.example.com", cfg.clone()).await.is_err());
    assert!(connect(&s, "secure.example.com", cfg).await.is_ok());
}

#[tokio::test]
async fn h2_over_alpn_and_http11_fallback_reach_the_upstream() {
    let s = setup().await;
    let tls = connect(&s, "secure.example.com", s.ca.client_config(&[b"h2", b"http/1.1"])).await.unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut tx, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls)).await.unwrap();
    tokio::spawn(conn);
    let resp = tx
        .send_request(Request::get("https://secure.example.com/over-h2").body(Full::new(Bytes::new())).unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"tls-origin GET /over-h2");
    let seen = s.origin.seen();
    assert_eq!(seen[0].headers.get("x-forwarded-proto").unwrap(), "https");
    assert_eq!(seen[0].headers.get("host").unwrap(), "secure.example.com");

    let tls = connect(&s, "secure.example.com", s.ca.client_config(&[b"http/1.1"])).await.unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let (mut tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await.unwrap();
    tokio::spawn(conn);
    let resp = tx
        .send_request(
            Request::get("/over-h1").header("host", "secure.example.com").body(Full::new(Bytes::new())).unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
}

#[tokio::test]
async fn tls12_and_tls13_both_work() {
    let s = setup().await;
    for version in [&rustls::version::TLS12, &rustls::version::TLS13] {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(s.ca.cert.der().clone()).unwrap();
        let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
            .with_protocol_versions(&[version])
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let tls = connect(&s, "legacy.example.com", Arc::new(cfg)).await.unwrap();
        assert_eq!(tls.get_ref().1.protocol_version(), Some(version.version));
    }
}

#[tokio::test]
async fn sessions_resume() {
    let s = setup().await;
    let cfg = s.ca.client_config(&[b"http/1.1"]);
    for _ in 0..2 {
        let mut tls = connect(&s, "secure.example.com", cfg.clone()).await.unwrap();
        // Read the server's session tickets (sent after the handshake) before closing.
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        tls.write_all(b"GET / HTTP/1.1\r\nHost: secure.example.com\r\nConnection: close\r\n\r\n").await.unwrap();
        let mut sink = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(3), tls.read_to_end(&mut sink)).await;
    }
    let tls = connect(&s, "secure.example.com", cfg).await.unwrap();
    assert_eq!(tls.get_ref().1.handshake_kind(), Some(rustls::HandshakeKind::Resumed));
}

#[tokio::test]
async fn plain_http_redirects_to_https_when_the_host_has_a_certificate() {
    let s = setup().await;
    let r = get(s.gw.http, "secure.example.com", "/a?b=c").await;
    assert_eq!(r.status, StatusCode::PERMANENT_REDIRECT);
    let port = s.gw.https.unwrap().port();
    assert_eq!(r.header("location").unwrap(), format!("https://secure.example.com:{port}/a?b=c"));
    // No certificate for this host: it keeps answering on plain HTTP.
    assert_eq!(get(s.gw.http, "plain.example.com", "/").await.status, StatusCode::OK);
}

#[tokio::test]
async fn tls_internal_routes_get_a_self_signed_certificate() {
    let origin = Origin::start("internal").await;
    let cfg = format!(
        "[listen]\nhttp = \"127.0.0.1:0\"\nhttps = \"127.0.0.1:0\"\n[docker]\nenabled = false\n[[routes]]\nhosts = [\"site-a.example.com\"]\nupstreams = [\"{}\"]\n",
        origin.addr
    );
    let cfg = swarmgate::config::Config::parse(&cfg, std::path::Path::new("t.toml")).unwrap();
    let running = swarmgate::app::start(cfg, None).await.unwrap();
    // A Swarm-provided route with `tls internal` (as Caddy's `tls internal` label produces).
    let mut spec = swarmgate::model::RouteSpec::proxy(
        "svc/site-a/caddy/0",
        swarmgate::model::Provenance::Service { service: "site-a".into(), key: "caddy_1".into() },
        vec!["site-a.example.com".into()],
        swarmgate::model::UpstreamSpec::new(swarmgate::model::UpstreamTarget::Static(vec![
            swarmgate::model::Endpoint::fixed(origin.addr),
        ])),
    );
    spec.tls = swarmgate::model::TlsPolicy::Internal;
    running
        .publisher
        .set_swarm(Arc::new(swarmgate::discovery::ProviderSnapshot { routes: vec![spec], ..Default::default() }));
    let cert = running.state.certs.get("site-a.example.com").expect("internal certificate made");
    assert_eq!(cert.source, swarmgate::tls::CertSource::Internal);
    assert_eq!(cert.names, ["site-a.example.com"]);
    running.shutdown().await;
}
