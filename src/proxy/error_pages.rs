//! Custom error pages (Traefik `errors`): an upstream answer whose status the route lists is
//! replaced by a page from another service, keeping the status. If the page cannot be had,
//! the upstream's own answer goes out: an error page is a nicety, never a new failure.

use http::header::HeaderMap;
use http::{Response, StatusCode};

use super::body::ProxyBody;
use super::forward::ClientSide;
use super::handler::{ConnInfo, ProxyState};
use crate::model::table::CompiledErrors;

/// The page for `status`, or `None` to keep the upstream's answer.
pub async fn page(
    state: &ProxyState,
    errors: &CompiledErrors,
    status: StatusCode,
    conn: &ConnInfo,
    raw_host: &str,
) -> Option<Response<ProxyBody>> {
    let path_and_query = errors.query.replace("{status}", status.as_str()).parse().ok()?;
    let mut headers = HeaderMap::new();
    if let Ok(host) = http::HeaderValue::from_str(raw_host) {
        headers.insert(http::header::HOST, host);
    }
    let client = ClientSide { ip: &conn.client_ip, https: conn.https, host: raw_host, trusted: false };
    state.forwarder.prepare_headers(&mut headers, &client, false, true);
    match super::forward_auth::side_get(state, &errors.group, path_and_query, headers, conn).await {
        Ok(f) if f.response.status().is_success() => {
            let mut resp = f.response;
            *resp.status_mut() = status;
            Some(resp)
        }
        Ok(f) => {
            tracing::debug!(status = %f.response.status(), "error page service did not serve the page");
            None
        }
        Err(e) => {
            tracing::debug!(error = %e, "error page service unreachable");
            None
        }
    }
}
