//! One ACME order for one name: authorizations, challenge answers, finalize, download.

use std::sync::Arc;
use std::time::Duration;

use instant_acme::{Account, AuthorizationStatus, ChallengeType, Identifier, NewOrder, OrderStatus, RetryPolicy};
use rustls::pki_types::PrivateKeyDer;
use rustls::sign::CertifiedKey;

use crate::config::ChallengeKind;
use crate::tls::Challenges;

/// Why an order failed, in words for logs and the admin API.
#[derive(Debug, thiserror::Error)]
pub enum OrderError {
    #[error("ACME: {0}")]
    Acme(#[from] instant_acme::Error),
    #[error("authorization for {name} is {status:?}")]
    AuthzState { name: String, status: AuthorizationStatus },
    #[error("the CA offers none of the configured challenge types ({offered}) for {name}")]
    NoChallenge { name: String, offered: String },
    #[error("validation failed: {0}")]
    Invalid(String),
    #[error("building the TLS-ALPN-01 certificate: {0}")]
    ChallengeCert(String),
}

impl OrderError {
    /// True when the CA no longer knows the stored account (e.g. a test CA restarted), so the
    /// account must be created again.
    pub fn account_gone(&self) -> bool {
        match self {
            OrderError::Acme(instant_acme::Error::Api(p)) => p.r#type.as_deref().is_some_and(|t| {
                t.ends_with(":accountDoesNotExist")
                    || t.ends_with(":unauthorized") && p.detail.as_deref().is_some_and(|d| d.contains("account"))
            }),
            _ => false,
        }
    }
}

fn challenge_type(k: ChallengeKind) -> ChallengeType {
    match k {
        ChallengeKind::Http01 => ChallengeType::Http01,
        ChallengeKind::TlsAlpn01 => ChallengeType::TlsAlpn01,
    }
}

/// Removes the challenge answers it published when the order ends, however it ends.
struct Published<'a> {
    challenges: &'a Challenges,
    tokens: Vec<String>,
    alpn_names: Vec<String>,
}

impl Drop for Published<'_> {
    fn drop(&mut self) {
        for t in &self.tokens {
            self.challenges.http01.remove(t);
        }
        for n in &self.alpn_names {
            self.challenges.tls_alpn01.remove(n);
        }
    }
}

/// The RFC 8737 challenge certificate: one DNS SAN and the critical acmeIdentifier extension.
/// Built with `CertifiedKey::new` because webpki (used by `from_der`) refuses the critical
/// extension.
pub fn tls_alpn01_cert(name: &str, digest: &[u8]) -> Result<Arc<CertifiedKey>, OrderError> {
    let err = |e: &dyn std::fmt::Display| OrderError::ChallengeCert(e.to_string());
    let mut params = rcgen::CertificateParams::new(vec![name.to_owned()]).map_err(|e| err(&e))?;
    params.custom_extensions = vec![rcgen::CustomExtension::new_acme_identifier(digest)];
    let kp = rcgen::KeyPair::generate().map_err(|e| err(&e))?;
    let cert = params.self_signed(&kp).map_err(|e| err(&e))?;
    let der = PrivateKeyDer::try_from(kp.serialize_der()).map_err(|e| err(&e))?;
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    let key = provider.key_provider.load_private_key(der).map_err(|e| err(&e))?;
    Ok(Arc::new(CertifiedKey::new(vec![cert.der().clone()], key)))
}

/// Orders a certificate for `name`, answering with the first of `kinds` the CA offers.
/// Returns (PEM private key, PEM chain).
pub async fn issue(
    account: &Account,
    name: &str,
    kinds: &[ChallengeKind],
    challenges: &Challenges,
    poll: RetryPolicy,
) -> Result<(String, String), OrderError> {
    let mut order = account.new_order(&NewOrder::new(&[Identifier::Dns(name.to_owned())])).await?;
    let mut published = Published { challenges, tokens: Vec::new(), alpn_names: Vec::new() };

    {
        let mut authzs = order.authorizations();
        while let Some(a) = authzs.next().await {
            let mut authz = a?;
            match authz.status {
                AuthorizationStatus::Pending => {}
                // Reused authorization (the CA remembers a recent validation).
                AuthorizationStatus::Valid => continue,
                status => return Err(OrderError::AuthzState { name: name.to_owned(), status }),
            }
            let Some(kind) =
                kinds.iter().copied().find(|k| authz.challenges.iter().any(|c| c.r#type == challenge_type(*k)))
            else {
                let offered = authz.challenges.iter().map(|c| format!("{:?}", c.r#type)).collect::<Vec<_>>().join(", ");
                return Err(OrderError::NoChallenge { name: name.to_owned(), offered });
            };
            let mut ch = authz
                .challenge(challenge_type(kind))
                .ok_or_else(|| OrderError::NoChallenge { name: name.to_owned(), offered: String::new() })?;
            let key_auth = ch.key_authorization();
            match kind {
                ChallengeKind::Http01 => {
                    challenges.http01.insert(ch.token.clone(), key_auth.as_str().to_owned());
                    published.tokens.push(ch.token.clone());
                }
                ChallengeKind::TlsAlpn01 => {
                    let host = name.to_owned();
                    let ck = tls_alpn01_cert(&host, key_auth.digest().as_ref())?;
                    challenges.tls_alpn01.insert(host.clone(), ck);
                    published.alpn_names.push(host);
                }
            }
            tracing::debug!(name, challenge = ?kind, "ACME challenge published");
            ch.set_ready().await?;
        }
    }

    let status = order.poll_ready(&poll).await?;
    if status != OrderStatus::Ready {
        return Err(OrderError::Invalid(validation_errors(&mut order).await));
    }
    let key_pem = order.finalize().await?;
    let chain_pem = order.poll_certificate(&poll).await?;
    drop(published);
    Ok((key_pem, chain_pem))
}

/// Collects the CA's per-challenge error details for a failed order.
async fn validation_errors(order: &mut instant_acme::Order) -> String {
    let mut out = Vec::new();
    let mut authzs = order.authorizations();
    while let Some(a) = authzs.next().await {
        let Ok(mut authz) = a else { continue };
        if let Ok(state) = authz.refresh().await {
            for c in &state.challenges {
                if let Some(p) = &c.error {
                    out.push(format!("{:?}: {}", c.r#type, p));
                }
            }
        }
    }
    if out.is_empty() {
        "order became invalid".to_owned()
    } else {
        out.join("; ")
    }
}

/// Polling policy for order state: the validator may take a while on a real CA.
pub fn poll_policy() -> RetryPolicy {
    RetryPolicy::new().initial_delay(Duration::from_millis(250)).backoff(1.5).timeout(Duration::from_secs(120))
}
