//! Forward authentication (Caddy `forward_auth`, Traefik `forwardauth`): before a request is
//! proxied, a GET with the client's headers goes to an authentication service (Authelia,
//! Authentik, oauth2-proxy). A 2xx answer lets the request through, with the answer's named
//! headers (`Remote-User`, …) set on it; any other answer (401, a 302 to a login page) goes
//! back to the client as it came. An unreachable service fails closed.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Response, StatusCode};

use super::balancer::{PickContext, UpstreamGroup};
use super::body::ProxyBody;
use super::forward::{ClientSide, Forwarded, Outbound, UpstreamError};
use super::handler::{with_status, ConnInfo, ProxyState};
use super::request_body::RequestBody;
use crate::model::table::CompiledForwardAuth;

static X_FORWARDED_METHOD: HeaderName = HeaderName::from_static("x-forwarded-method");
static X_FORWARDED_URI: HeaderName = HeaderName::from_static("x-forwarded-uri");

/// `None`: let the request through (its headers now carry what the service said). `Some`: the
/// answer for the client.
pub async fn check(
    state: &ProxyState,
    fa: &CompiledForwardAuth,
    req: &mut http::request::Parts,
    conn: &ConnInfo,
    raw_host: &str,
) -> Option<Response<ProxyBody>> {
    let mut headers = auth_request_headers(fa, &req.headers);
    let client = ClientSide { ip: &conn.client_ip, https: conn.https, host: raw_host, trusted: conn.trusted };
    state.forwarder.prepare_headers(&mut headers, &client, false, true);
    if let Ok(v) = HeaderValue::from_str(req.method.as_str()) {
        headers.insert(X_FORWARDED_METHOD.clone(), v);
    }
    let uri = req.uri.path_and_query().map_or("/", |p| p.as_str());
    if let Ok(v) = HeaderValue::from_str(uri) {
        headers.insert(X_FORWARDED_URI.clone(), v);
    }
    let resp = match side_get(state, &fa.group, fa.path_and_query.clone(), headers, conn).await {
        Ok(f) => f.response,
        Err(e) => {
            tracing::warn!(error = %e, "forward auth service failed; request refused");
            return Some(with_status(StatusCode::SERVICE_UNAVAILABLE, "authentication service unavailable\n"));
        }
    };
    // What the client claimed under a copied name never reaches the upstream.
    for (_, to) in &fa.copy_headers {
        req.headers.remove(to);
    }
    if !resp.status().is_success() {
        return Some(resp);
    }
    for (from, to) in &fa.copy_headers {
        for v in resp.headers().get_all(from) {
            req.headers.append(to.clone(), v.clone());
        }
    }
    None
}

/// A GET without a body to a side service (forward auth, error pages), balanced over its
/// endpoints like any request; its failures are the caller's to report.
pub(crate) async fn side_get(
    state: &ProxyState,
    group: &UpstreamGroup,
    path_and_query: http::uri::PathAndQuery,
    headers: HeaderMap,
    conn: &ConnInfo,
) -> Result<Forwarded, UpstreamError> {
    let out =
        Outbound { method: http::Method::GET, path_and_query, headers, body: RequestBody::empty(), upgrade: false };
    let ctx = PickContext { client_ip: Some(conn.peer.ip()), sticky: None, hash: None };
    let errors = std::sync::atomic::AtomicU64::new(0);
    state.forwarder.send(group, &ctx, out, 0, &errors).await
}

/// The client's headers the service sees: all of them or the listed ones, never a body's
/// framing (the subrequest has no body).
fn auth_request_headers(fa: &CompiledForwardAuth, client: &HeaderMap) -> HeaderMap {
    let mut headers = match &fa.request_headers {
        None => client.clone(),
        Some(names) => {
            let mut h = HeaderMap::with_capacity(names.len() + 1);
            for name in names {
                for v in client.get_all(name) {
                    h.append(name.clone(), v.clone());
                }
            }
            if let Some(host) = client.get(header::HOST) {
                h.insert(header::HOST, host.clone());
            }
            h
        }
    };
    for name in [header::CONTENT_LENGTH, header::TRANSFER_ENCODING, header::CONTENT_TYPE, header::EXPECT] {
        headers.remove(name);
    }
    headers
}
