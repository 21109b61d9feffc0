//! TLS to `https` upstreams.
//!
//! A client per (TLS profile, endpoint), made when a table first needs it and kept in the
//! [`EndpointRegistry`](super::balancer::EndpointRegistry) across table swaps, like endpoint
//! state: a table is rebuilt every second during a rolling update, and rebuilding clients would
//! throw their keep-alive connections away each time. The rustls configuration (and so the CA
//! file) is read once per profile. A route picks its clients at table-build time; a request only
//! follows a pointer.
//!
//! Why a client per endpoint: the connector dials the endpoint's address whatever the request
//! URI says, so the URI's authority is free to be the client's `Host`. Over HTTP/2 that is what
//! becomes `:authority`, which HTTP/2 servers (Go's, nginx) read instead of a `Host` header;
//! with one client per profile the URI would have to name the endpoint's IP, and every HTTP/2
//! upstream would see the IP as the request's host.
//!
//! The connector is hyper-rustls's (rustls, ALPN offering `h2` and `http/1.1`, so an upstream
//! that speaks HTTP/2 gets it) over hyper-util's TCP connector, inside a timeout that covers
//! the TCP connect *and* the TLS handshake: an upstream that accepts and never finishes the
//! handshake is a connect failure (another endpoint may be tried), not a request stuck until the
//! response timeout.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use dashmap::DashMap;
use http::uri::Authority;
use http::{HeaderValue, Uri};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{pem::PemObject, CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

use super::body::ReclaimableBody;
use crate::model::UpstreamTls;

/// The TLS connector of one endpoint, with the connect+handshake timeout.
pub type TlsConnector = Timed<HttpsConnector<FixedAddr>>;

/// Distinct request hosts (URI authorities, so pools) one endpoint's client keeps apart. Past
/// this, requests go with the endpoint's address as authority: a wildcard route must not let
/// clients inventing host names open an upstream connection pool each.
const MAX_AUTHORITIES: usize = 64;

/// Why a route's TLS profile cannot be used; the route is not served.
#[derive(Debug, thiserror::Error)]
pub enum TlsProfileError {
    #[error("upstream_tls.ca {path}: {reason}")]
    Ca { path: PathBuf, reason: String },
    #[error("upstream_tls.server_name {0:?} is not a DNS name or an IP address")]
    ServerName(String),
    #[error("upstream_tls: ca and insecure_skip_verify contradict each other; give one")]
    Contradiction,
    #[error(
        "no system CA certificates ({0}); give upstream_tls.ca, or provide a CA bundle \
         (/etc/ssl/certs, or SSL_CERT_FILE / SSL_CERT_DIR)"
    )]
    NoSystemRoots(String),
    #[error("upstream TLS setup: {0}")]
    Setup(String),
}

/// What identifies a profile: the settings, and for a CA file its modification time and size,
/// so a replaced CA file is read again on the next table build.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ProfileKey {
    tls: UpstreamTls,
    ca_stamp: Option<(SystemTime, u64)>,
}

/// A ready TLS client for one endpoint under one profile.
pub struct TlsEndpoint {
    pub key: ProfileKey,
    /// For health probes (a client of their own, with their own body type).
    pub connector: TlsConnector,
    /// For proxied requests: pooled, HTTP/2 when the upstream chose it by ALPN.
    pub client: Client<TlsConnector, ReclaimableBody>,
    authorities: HostAuthorities,
}

impl std::fmt::Debug for TlsEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let endpoint = &self.authorities.endpoint;
        f.debug_struct("TlsEndpoint").field("profile", &self.key.tls).field("endpoint", endpoint).finish()
    }
}

impl TlsEndpoint {
    /// The URI authority for a request with `Host: host` (`None`: not passed on).
    pub fn authority_for(&self, host: Option<&HeaderValue>) -> Authority {
        self.authorities.authority_for(host)
    }
}

/// The URI authorities an endpoint's client (whose connector dials the endpoint whatever the
/// URI says) puts on requests; each is also a keep-alive pool of its own.
#[derive(Debug)]
pub struct HostAuthorities {
    /// `ip:port` of the endpoint: the authority when the client's host is not passed on.
    endpoint: Authority,
    /// Request hosts seen, as authorities (bounded by [`MAX_AUTHORITIES`]).
    authorities: DashMap<HeaderValue, Authority>,
}

impl HostAuthorities {
    pub fn new(endpoint: Authority) -> Self {
        HostAuthorities { endpoint, authorities: DashMap::new() }
    }

    /// The URI authority for a request with `Host: host` (`None`: not passed on): the host
    /// itself, so HTTP/2 carries it as `:authority` and HTTP/1.1 as `Host`.
    pub fn authority_for(&self, host: Option<&HeaderValue>) -> Authority {
        let Some(host) = host else {
            return self.endpoint.clone();
        };
        if let Some(a) = self.authorities.get(host) {
            return a.value().clone();
        }
        match Authority::try_from(host.as_bytes()) {
            Ok(a) if self.authorities.len() < MAX_AUTHORITIES => {
                self.authorities.insert(host.clone(), a.clone());
                a
            }
            _ => self.endpoint.clone(),
        }
    }
}

/// How the clients are shaped (from `[limits]`).
#[derive(Debug, Clone, Copy)]
pub struct TlsClientSettings {
    pub connect_timeout: Duration,
    pub idle_timeout: Duration,
}

/// The TLS clients of a process, by profile and endpoint; entries no table uses are dropped
/// after a swap.
#[derive(Debug)]
pub struct TlsClients {
    settings: TlsClientSettings,
    configs: DashMap<ProfileKey, Arc<rustls::ClientConfig>>,
    clients: DashMap<(ProfileKey, SocketAddr), Arc<TlsEndpoint>>,
}

impl TlsClients {
    pub fn new(settings: TlsClientSettings) -> Self {
        TlsClients { settings, configs: DashMap::new(), clients: DashMap::new() }
    }

    /// The clients for `endpoints` under `tls`, made on first use. Reads the CA file only when
    /// the profile is new (or the file changed); costs one `stat` otherwise.
    pub fn get(&self, tls: &UpstreamTls, endpoints: &[SocketAddr]) -> Result<Vec<Arc<TlsEndpoint>>, TlsProfileError> {
        if tls.ca.is_some() && tls.insecure_skip_verify {
            return Err(TlsProfileError::Contradiction);
        }
        let ca_stamp = match &tls.ca {
            Some(path) => {
                let meta = std::fs::metadata(path).map_err(|e| ca_error(path, e))?;
                Some((meta.modified().unwrap_or(SystemTime::UNIX_EPOCH), meta.len()))
            }
            None => None,
        };
        let key = ProfileKey { tls: tls.clone(), ca_stamp };
        let config = match self.configs.get(&key) {
            Some(c) => c.clone(),
            None => {
                let c = Arc::new(client_config(tls)?);
                self.configs.entry(key.clone()).or_insert(c).clone()
            }
        };
        let mut out = Vec::with_capacity(endpoints.len());
        for &addr in endpoints {
            let k = (key.clone(), addr);
            if let Some(c) = self.clients.get(&k) {
                out.push(c.clone());
                continue;
            }
            let client = Arc::new(endpoint_client(key.clone(), addr, config.clone(), self.settings)?);
            out.push(self.clients.entry(k).or_insert(client).clone());
        }
        Ok(out)
    }

    /// Forget clients no route refers to any more (called after a table swap).
    pub fn retain_used(&self) {
        self.clients.retain(|_, c| Arc::strong_count(c) > 1);
        // A profile's configuration is held by its endpoints' connectors.
        self.configs.retain(|_, c| Arc::strong_count(c) > 1);
    }

    pub fn len(&self) -> usize {
        self.clients.len()
    }

    pub fn is_empty(&self) -> bool {
        self.clients.is_empty()
    }
}

fn ca_error(path: &Path, e: impl std::fmt::Display) -> TlsProfileError {
    TlsProfileError::Ca { path: path.into(), reason: e.to_string() }
}

fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER.get_or_init(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider())).clone()
}

/// The verifier for a profile: the CA file alone, anything (skip-verify), or the system roots.
fn verifier(tls: &UpstreamTls) -> Result<Arc<dyn ServerCertVerifier>, TlsProfileError> {
    if tls.insecure_skip_verify {
        return Ok(Arc::new(AcceptAnyCertificate(provider())));
    }
    match &tls.ca {
        Some(path) => {
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
                .and_then(|it| it.collect::<Result<_, _>>())
                .map_err(|e| ca_error(path, e))?;
            if certs.is_empty() {
                return Err(ca_error(path, "no PEM certificate in the file"));
            }
            let mut roots = rustls::RootCertStore::empty();
            for c in certs {
                roots.add(c).map_err(|e| ca_error(path, e))?;
            }
            rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
                .build()
                .map(|v| v as Arc<dyn ServerCertVerifier>)
                .map_err(|e| ca_error(path, e))
        }
        None => system_verifier(),
    }
}

/// The system roots, loaded once (a few hundred files). A failure is not remembered, so a CA
/// bundle mounted later is found on a later table build.
fn system_verifier() -> Result<Arc<dyn ServerCertVerifier>, TlsProfileError> {
    static SYSTEM: OnceLock<Arc<dyn ServerCertVerifier>> = OnceLock::new();
    if let Some(v) = SYSTEM.get() {
        return Ok(v.clone());
    }
    let v = rustls_platform_verifier::Verifier::new(provider())
        .map_err(|e| TlsProfileError::NoSystemRoots(e.to_string()))?;
    Ok(SYSTEM.get_or_init(|| Arc::new(v)).clone())
}

/// The rustls configuration of a profile: its verifier, ALPN `h2` then `http/1.1`.
fn client_config(tls: &UpstreamTls) -> Result<rustls::ClientConfig, TlsProfileError> {
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsProfileError::Setup(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(verifier(tls)?)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

fn endpoint_client(
    key: ProfileKey,
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
    settings: TlsClientSettings,
) -> Result<TlsEndpoint, TlsProfileError> {
    let server_name = match &key.tls.server_name {
        Some(name) => {
            let trimmed = name.trim_start_matches('[').trim_end_matches(']');
            ServerName::try_from(trimmed.to_owned()).map_err(|_| TlsProfileError::ServerName(name.clone()))?
        }
        // The endpoint's address (what Traefik and Caddy check too): never the request's host,
        // which a client chooses.
        None => ServerName::IpAddress(addr.ip().into()),
    };
    let mut http = HttpConnector::new();
    http.set_nodelay(true);
    http.set_keepalive(Some(Duration::from_secs(60)));
    http.enforce_http(false);
    let endpoint: Authority = addr.to_string().parse().map_err(|_| TlsProfileError::Setup(format!("{addr}")))?;
    let resolver = Arc::new(hyper_rustls::FixedServerNameResolver::new(server_name));
    let https = HttpsConnector::new(FixedAddr::new(http, addr), config, true, resolver);
    let connector = Timed { inner: https, timeout: settings.connect_timeout };
    let mut b = Client::builder(TokioExecutor::new());
    b.pool_idle_timeout(settings.idle_timeout)
        .pool_max_idle_per_host(512)
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        .http2_keep_alive_interval(Some(Duration::from_secs(30)))
        .http2_adaptive_window(true)
        .retry_canceled_requests(true)
        // HTTP/1.1 gets `Host` from the URI's authority, HTTP/2 gets `:authority`: one value.
        .set_host(true);
    let client = b.build(connector.clone());
    Ok(TlsEndpoint { key, connector, client, authorities: HostAuthorities::new(endpoint) })
}

/// Dials one endpoint whatever the URI names (the URI carries the request's host instead).
#[derive(Clone, Debug)]
pub struct FixedAddr {
    http: HttpConnector,
    /// `http://ip:port/`, in the form hyper-util's connector wants.
    dst: Uri,
}

impl FixedAddr {
    /// Dials `addr` with `http`.
    pub fn new(http: HttpConnector, addr: SocketAddr) -> Self {
        let dst = Uri::builder()
            .scheme("http")
            .authority(addr.to_string().as_str())
            .path_and_query("/")
            .build()
            .unwrap_or_default();
        FixedAddr { http, dst }
    }
}

impl tower_service::Service<Uri> for FixedAddr {
    type Response = <HttpConnector as tower_service::Service<Uri>>::Response;
    type Error = <HttpConnector as tower_service::Service<Uri>>::Error;
    type Future = <HttpConnector as tower_service::Service<Uri>>::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.http.poll_ready(cx)
    }

    fn call(&mut self, _: Uri) -> Self::Future {
        self.http.call(self.dst.clone())
    }
}

/// Accepts any certificate chain but still checks the handshake signatures, so the peer holds
/// the key of the certificate it showed. Only for `insecure_skip_verify`; rustls deliberately
/// ships no such verifier, hence written here.
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A connector whose connection (TCP connect and TLS handshake) must be ready within `timeout`.
/// hyper-util's connect timeout covers only the TCP part.
#[derive(Clone, Debug)]
pub struct Timed<C> {
    inner: C,
    timeout: Duration,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl<C> tower_service::Service<Uri> for Timed<C>
where
    C: tower_service::Service<Uri>,
    C::Future: Send + 'static,
    C::Error: Into<BoxError>,
{
    type Response = C::Response;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<C::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, dst: Uri) -> Self::Future {
        let timeout = self.timeout;
        let fut = self.inner.call(dst);
        Box::pin(async move {
            match tokio::time::timeout(timeout, fut).await {
                Ok(r) => r.map_err(Into::into),
                Err(_) => Err(format!("TLS connection not ready within {timeout:?}").into()),
            }
        })
    }
}

/// An error with its causes, `a: b: c`: hyper's own message ("client error (Connect)") says
/// nothing; the cause says which certificate check failed. Certificates and keys never appear
/// in these messages.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    let mut depth = 0;
    while let Some(s) = cur {
        let text = s.to_string();
        if !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cur = s.source();
        depth += 1;
        if depth > 8 {
            break;
        }
    }
    out
}
