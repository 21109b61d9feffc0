//! The HTTP client under instant-acme.
//!
//! instant-acme's default client has no request timeout and drops the `Retry-After` header of
//! error responses (it only honours it while polling). This wrapper bounds every request in time
//! and remembers the latest `Retry-After` of a 429/503 answer, so a rate-limited name waits as
//! long as the CA asked instead of our own (shorter) backoff.

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::{Request, StatusCode};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use instant_acme::{BodyWrapper, BytesResponse, Error, HttpClient};
use rustls::pki_types::{pem::PemObject, CertificateDer};

use super::AcmeError;

/// Time limit for one HTTP exchange with the CA.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The latest Retry-After seen on an error response: (when seen, until when).
pub type RetryAfterSlot = Arc<Mutex<Option<(Instant, SystemTime)>>>;

/// instant-acme `HttpClient` with a timeout and Retry-After capture.
pub struct AcmeHttp {
    inner: Client<hyper_rustls::HttpsConnector<HttpConnector>, BodyWrapper<Bytes>>,
    retry_after: RetryAfterSlot,
}

impl AcmeHttp {
    /// Trusts only the PEM roots in `ca_root` when given (test CAs such as Pebble), else the
    /// platform's roots.
    pub fn new(ca_root: Option<&Path>, retry_after: RetryAfterSlot) -> Result<Self, AcmeError> {
        let builder = hyper_rustls::HttpsConnectorBuilder::new();
        let builder = match ca_root {
            Some(path) => {
                let mut roots = rustls::RootCertStore::empty();
                let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
                    .and_then(|it| it.collect::<Result<_, _>>())
                    .map_err(|e| AcmeError::Config(format!("acme.ca_root {}: {e}", path.display())))?;
                if certs.is_empty() {
                    return Err(AcmeError::Config(format!(
                        "acme.ca_root {}: no certificate in the file",
                        path.display()
                    )));
                }
                for c in certs {
                    roots.add(c).map_err(|e| AcmeError::Config(format!("acme.ca_root {}: {e}", path.display())))?;
                }
                let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
                let cfg = rustls::ClientConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()
                    .map_err(|e| AcmeError::Config(e.to_string()))?
                    .with_root_certificates(roots)
                    .with_no_client_auth();
                builder.with_tls_config(cfg)
            }
            None => builder.try_with_platform_verifier().map_err(|e| {
                AcmeError::Config(format!(
                    "no system CA roots for talking to the ACME server ({e}); ship a CA bundle or set SSL_CERT_FILE"
                ))
            })?,
        };
        let connector = builder.https_only().enable_http1().enable_http2().build();
        let inner = Client::builder(TokioExecutor::new()).build(connector);
        Ok(AcmeHttp { inner, retry_after })
    }
}

impl HttpClient for AcmeHttp {
    fn request(
        &self,
        req: Request<BodyWrapper<Bytes>>,
    ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, Error>> + Send>> {
        let fut = self.inner.request(req);
        let slot = self.retry_after.clone();
        Box::pin(async move {
            let rsp = match tokio::time::timeout(REQUEST_TIMEOUT, fut).await {
                Err(_) => return Err(Error::Other("ACME request timed out".into())),
                Ok(Err(e)) => return Err(Error::Other(error_chain(&e).into())),
                Ok(Ok(rsp)) => rsp,
            };
            if matches!(rsp.status(), StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE) {
                if let Some(until) = rsp
                    .headers()
                    .get(http::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(parse_retry_after)
                {
                    if let Ok(mut s) = slot.lock() {
                        *s = Some((Instant::now(), until));
                    }
                }
            }
            Ok(BytesResponse::from(rsp))
        })
    }
}

/// "client error (Connect): tcp connect error: Connection refused": hyper's top-level message
/// alone hides the cause an operator needs.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let msg = s.to_string();
        if !out.contains(&msg) {
            out.push_str(": ");
            out.push_str(&msg);
        }
        cur = s.source();
    }
    out
}

/// `Retry-After: <seconds>` or an HTTP date.
pub fn parse_retry_after(v: &str) -> Option<SystemTime> {
    let v = v.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(SystemTime::now() + Duration::from_secs(secs));
    }
    httpdate::parse_http_date(v).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_forms() {
        let t = parse_retry_after("120").unwrap();
        let d = t.duration_since(SystemTime::now()).unwrap();
        assert!(d > Duration::from_secs(110) && d <= Duration::from_secs(120));
        let t = parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT").unwrap();
        assert_eq!(t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs(), 1445412480);
        assert!(parse_retry_after("soon").is_none());
    }
}
