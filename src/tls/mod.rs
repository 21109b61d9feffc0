//! TLS: the live certificate map, the SNI resolver over it, static certificates from files,
//! and the `ServerConfig` the HTTPS listener uses.
//!
//! The map is read by rustls' synchronous resolver on every handshake and written by the ACME
//! issuer and by config reloads; certificates are swapped without touching open connections.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use arc_swap::ArcSwap;
use dashmap::DashMap;
use rustc_hash::FxBuildHasher;
use rustls::pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// ALPN id of the TLS-ALPN-01 challenge (RFC 8737).
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// Errors loading certificates.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("reading {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: no certificate found in the PEM file")]
    NoCertificate { path: PathBuf },
    #[error("{path}: no private key found in the PEM file ({detail})")]
    NoKey { path: PathBuf, detail: String },
    #[error("{path}: certificate and key do not belong together or the key type is unsupported: {detail}")]
    Mismatch { path: PathBuf, detail: String },
    #[error("certificate has no DNS names (subjectAltName)")]
    NoNames,
    #[error("parsing certificate: {0}")]
    Parse(String),
}

/// Where a live certificate came from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub enum CertSource {
    Static(PathBuf),
    Acme,
    Internal,
}

/// A certificate ready for handshakes, with what the admin API shows about it.
#[derive(Debug, Clone)]
pub struct LiveCert {
    pub key: Arc<CertifiedKey>,
    pub names: Vec<String>,
    pub not_after: SystemTime,
    pub not_before: SystemTime,
    pub issuer: String,
    pub source: CertSource,
}

impl LiveCert {
    /// Builds from a PEM chain and PEM key, reading names and validity from the leaf.
    pub fn from_pem(chain_pem: &[u8], key_pem: &[u8], source: CertSource) -> Result<Self, TlsError> {
        let label = match &source {
            CertSource::Static(p) => p.clone(),
            _ => PathBuf::from("<memory>"),
        };
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(chain_pem)
            .collect::<Result<_, _>>()
            .map_err(|e| TlsError::Parse(e.to_string()))?;
        if certs.is_empty() {
            return Err(TlsError::NoCertificate { path: label });
        }
        let key = PrivateKeyDer::from_pem_slice(key_pem)
            .map_err(|e| TlsError::NoKey { path: label.clone(), detail: e.to_string() })?;
        let provider = rustls::crypto::aws_lc_rs::default_provider();
        let certified = CertifiedKey::from_der(certs, key, &provider)
            .map_err(|e| TlsError::Mismatch { path: label, detail: e.to_string() })?;
        Self::from_certified(Arc::new(certified), source)
    }

    /// Reads names and validity from an already built key.
    pub fn from_certified(key: Arc<CertifiedKey>, source: CertSource) -> Result<Self, TlsError> {
        let leaf = key.cert.first().ok_or(TlsError::NoNames)?;
        let info = leaf_info(leaf)?;
        Ok(LiveCert {
            key,
            names: info.names,
            not_after: info.not_after,
            not_before: info.not_before,
            issuer: info.issuer,
            source,
        })
    }

    /// Loads a static certificate pair from files.
    pub fn load_files(cert: &Path, key: &Path) -> Result<Self, TlsError> {
        let chain = std::fs::read(cert).map_err(|source| TlsError::Read { path: cert.into(), source })?;
        let key_pem = std::fs::read(key).map_err(|source| TlsError::Read { path: key.into(), source })?;
        Self::from_pem(&chain, &key_pem, CertSource::Static(cert.into()))
    }
}

/// What a leaf certificate says about itself.
pub struct LeafInfo {
    pub names: Vec<String>,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
    pub issuer: String,
}

/// Parses DNS names, validity and issuer from a DER certificate.
pub fn leaf_info(der: &CertificateDer<'_>) -> Result<LeafInfo, TlsError> {
    use x509_parser::prelude::*;
    let (_, cert) = X509Certificate::from_der(der.as_ref()).map_err(|e| TlsError::Parse(e.to_string()))?;
    let mut names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for n in &san.value.general_names {
            if let GeneralName::DNSName(d) = n {
                names.push(d.to_ascii_lowercase());
            }
        }
    }
    if names.is_empty() {
        if let Some(cn) = cert.subject().iter_common_name().next().and_then(|c| c.as_str().ok()) {
            names.push(cn.to_ascii_lowercase());
        }
    }
    let ts = |t: i64| SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(t.max(0) as u64);
    Ok(LeafInfo {
        names,
        not_before: ts(cert.validity().not_before.timestamp()),
        not_after: ts(cert.validity().not_after.timestamp()),
        issuer: cert.issuer().to_string(),
    })
}

/// Pending ACME challenge answers, read by the HTTP listener and the resolver.
#[derive(Debug, Default)]
pub struct Challenges {
    /// HTTP-01: token → key authorization.
    pub http01: DashMap<String, String>,
    /// TLS-ALPN-01: host → challenge certificate.
    pub tls_alpn01: DashMap<String, Arc<CertifiedKey>>,
}

/// The live certificates: static ones from the config (replaced as a whole on reload) and
/// dynamic ones (ACME, internal) added one by one. Static certificates win for names they cover.
#[derive(Debug, Default)]
pub struct CertMap {
    statics: ArcSwap<StaticCerts>,
    /// Fx-hashed, like `StaticCerts::by_name`: plain-HTTP requests look their host up here (to
    /// decide a redirect), and SipHash was most of that cost. The keys are our own names, so a
    /// client choosing hosts cannot make the table degrade.
    dynamic: DashMap<String, Arc<LiveCert>, FxBuildHasher>,
    /// Entries in `dynamic`, so `has` skips the map while there are none (DashMap's own
    /// `is_empty` visits every shard).
    dynamic_names: AtomicUsize,
}

/// Static certificates indexed by name (exact and `*.` wildcard).
#[derive(Debug, Default)]
pub struct StaticCerts {
    by_name: std::collections::HashMap<String, Arc<LiveCert>, FxBuildHasher>,
    pub certs: Vec<Arc<LiveCert>>,
}

impl StaticCerts {
    pub fn new(certs: Vec<LiveCert>) -> Self {
        let certs: Vec<Arc<LiveCert>> = certs.into_iter().map(Arc::new).collect();
        let mut by_name = std::collections::HashMap::default();
        for c in &certs {
            for n in &c.names {
                by_name.entry(n.clone()).or_insert_with(|| c.clone());
            }
        }
        StaticCerts { by_name, certs }
    }

    /// Every name (exact and wildcard) covered.
    pub fn names(&self) -> BTreeSet<String> {
        self.by_name.keys().cloned().collect()
    }
}

/// Exact name, then the `*.` wildcard one label up. Runs for every plain-HTTP request to a
/// route that redirects once a certificate exists, so the wildcard key is built in a reused
/// per-thread buffer instead of a fresh allocation.
fn lookup<'a, T>(get: impl Fn(&str) -> Option<T> + 'a, host: &str) -> Option<T> {
    thread_local! {
        static WILDCARD_KEY: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
    }
    get(host).or_else(|| {
        let (_, rest) = host.split_once('.')?;
        WILDCARD_KEY.with(|key| {
            let mut key = key.borrow_mut();
            key.clear();
            key.push_str("*.");
            key.push_str(rest);
            get(&key)
        })
    })
}

impl CertMap {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn set_static(&self, certs: StaticCerts) {
        self.statics.store(Arc::new(certs));
    }

    pub fn statics(&self) -> Arc<StaticCerts> {
        self.statics.load_full()
    }

    /// Adds or replaces a dynamic certificate for each of its names.
    pub fn insert(&self, cert: LiveCert) {
        let cert = Arc::new(cert);
        for n in &cert.names {
            if self.dynamic.insert(n.clone(), cert.clone()).is_none() {
                self.dynamic_names.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    pub fn remove(&self, name: &str) {
        if self.dynamic.remove(name).is_some() {
            self.dynamic_names.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// The certificate a handshake for `host` gets.
    pub fn get(&self, host: &str) -> Option<Arc<LiveCert>> {
        let statics = self.statics.load();
        lookup(|n| statics.by_name.get(n).cloned(), host)
            .or_else(|| lookup(|n| self.dynamic.get(n).map(|c| c.clone()), host))
    }

    /// True when a handshake for `host` would succeed (used for HTTP→HTTPS redirects).
    /// Runs for every plain-HTTP request to a route that redirects once a certificate exists:
    /// one pass over the two names, and no lookup at all while there are no certificates.
    pub fn has(&self, host: &str) -> bool {
        let statics = self.statics.load();
        let any_dynamic = self.dynamic_names.load(Ordering::Relaxed) > 0;
        if statics.by_name.is_empty() && !any_dynamic {
            return false;
        }
        let found = |n: &str| statics.by_name.contains_key(n) || (any_dynamic && self.dynamic.contains_key(n));
        lookup(|n| found(n).then_some(()), host).is_some()
    }

    /// Dynamic certificates (one entry per name).
    pub fn dynamic(&self) -> Vec<(String, Arc<LiveCert>)> {
        self.dynamic.iter().map(|e| (e.key().clone(), e.value().clone())).collect()
    }
}

/// True when a certificate for `names` is valid for `host` (lowercase, no port): an exact
/// name, or a `*.` wildcard for exactly one more label (RFC 6125 §6.4.3).
pub fn covers(names: &[String], host: &str) -> bool {
    let parent = host.split_once('.').map(|(_, rest)| rest);
    names.iter().any(|n| match n.strip_prefix("*.") {
        Some(suffix) => parent == Some(suffix),
        None => n.eq_ignore_ascii_case(host),
    })
}

/// rustls resolver: TLS-ALPN-01 challenge certificates for `acme-tls/1`, else the live map.
#[derive(Debug)]
pub struct SniResolver {
    pub certs: Arc<CertMap>,
    pub challenges: Arc<Challenges>,
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let name = hello.server_name()?.to_ascii_lowercase();
        let wants_acme = hello.alpn().is_some_and(|mut p| p.any(|p| p == ACME_TLS_ALPN));
        if wants_acme {
            // Never hand a challenge certificate to an ordinary client, nor a real one here.
            return self.challenges.tls_alpn01.get(&name).map(|c| c.clone());
        }
        self.certs.get(&name).map(|c| c.key.clone())
    }
}

/// The HTTPS listener's config: ALPN h2 + http/1.1 (+ acme-tls/1), TLS 1.2 and 1.3,
/// stateless session tickets and a large session cache.
pub fn server_config(certs: Arc<CertMap>, challenges: Arc<Challenges>) -> Arc<rustls::ServerConfig> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("aws-lc-rs supports the default protocol versions")
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(SniResolver { certs, challenges }));
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec(), ACME_TLS_ALPN.to_vec()];
    cfg.session_storage = rustls::server::ServerSessionMemoryCache::new(64 * 1024);
    if let Ok(ticketer) = rustls::crypto::aws_lc_rs::Ticketer::new() {
        cfg.ticketer = ticketer;
    }
    Arc::new(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(names: &[&str]) -> LiveCert {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let rcgen::CertifiedKey { cert, signing_key } = rcgen::generate_simple_self_signed(names).expect("rcgen");
        LiveCert::from_pem(cert.pem().as_bytes(), signing_key.serialize_pem().as_bytes(), CertSource::Internal)
            .expect("parse generated certificate")
    }

    /// `has` decides HTTP→HTTPS redirects: it must follow dynamic certificates as they come
    /// and go (ACME issues, a service leaves), exact and wildcard names alike.
    #[test]
    fn has_follows_dynamic_and_static_certificates() {
        let map = CertMap::new();
        assert!(!map.has("app.example.com"), "no certificates yet");

        map.insert(cert(&["app.example.com", "*.example.org"]));
        assert!(map.has("app.example.com"));
        assert!(map.has("api.example.org"), "wildcard covers one label");
        assert!(!map.has("a.b.example.org"), "wildcard covers one label only");
        assert!(!map.has("other.example.com"));

        // Re-inserting the same names must not count them twice.
        map.insert(cert(&["app.example.com"]));
        map.remove("app.example.com");
        assert!(!map.has("app.example.com"), "removed");
        assert!(map.has("api.example.org"), "the other name stays");
        map.remove("*.example.org");
        assert!(!map.has("api.example.org"));

        map.set_static(StaticCerts::new(vec![cert(&["static.example.net"])]));
        assert!(map.has("static.example.net"));
        assert!(!map.has("app.example.com"));
    }

    #[test]
    fn covers_exact_names_and_one_wildcard_label() {
        let names = vec!["a.example.com".to_owned(), "*.w.example.com".to_owned()];
        assert!(covers(&names, "a.example.com"));
        assert!(covers(&names, "x.w.example.com"));
        assert!(!covers(&names, "w.example.com"));
        assert!(!covers(&names, "x.y.w.example.com"));
        assert!(!covers(&names, "b.example.com"));
    }
}
