//! CORS as Traefik's `headers` middleware does it: a preflight (`OPTIONS` with `Origin` and
//! `Access-Control-Request-Method`) from an allowed origin is answered here with the policy's
//! headers, never forwarded; any other response to an allowed origin gets
//! `Access-Control-Allow-Origin` (and credentials, exposed headers). A disallowed origin gets
//! no CORS headers, so the browser refuses the read.

use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Response, StatusCode};

use super::body::ProxyBody;
use crate::model::table::CompiledCors;

/// The preflight answer, when `req` is a preflight.
pub fn preflight(cors: &CompiledCors, method: &Method, headers: &HeaderMap) -> Option<Response<ProxyBody>> {
    if method != Method::OPTIONS || !headers.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD) {
        return None;
    }
    let origin = headers.get(header::ORIGIN)?;
    let mut resp = Response::new(ProxyBody::empty());
    *resp.status_mut() = StatusCode::OK;
    let h = resp.headers_mut();
    if allow_origin(cors, origin, h) {
        let pairs = [
            (header::ACCESS_CONTROL_ALLOW_METHODS, &cors.methods),
            (header::ACCESS_CONTROL_ALLOW_HEADERS, &cors.headers),
            (header::ACCESS_CONTROL_MAX_AGE, &cors.max_age),
        ];
        for (name, value) in pairs {
            if let Some(v) = value {
                h.insert(name, v.clone());
            }
        }
    }
    Some(resp)
}

/// Adds the headers a response to an allowed origin carries.
pub fn decorate(cors: &CompiledCors, origin: Option<&HeaderValue>, resp: &mut Response<ProxyBody>) {
    let h = resp.headers_mut();
    if let Some(origin) = origin {
        if allow_origin(cors, origin, h) {
            if let Some(v) = &cors.expose {
                h.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, v.clone());
            }
        }
    }
}

/// Sets `Access-Control-Allow-Origin` (and credentials, `Vary`) for an allowed origin.
fn allow_origin(cors: &CompiledCors, origin: &HeaderValue, h: &mut HeaderMap) -> bool {
    if cors.vary {
        h.append(header::VARY, HeaderValue::from_static("Origin"));
    }
    if !origin.to_str().is_ok_and(|o| cors.allows(o)) {
        return false;
    }
    // `*` cannot carry credentials: echo the origin then, as Traefik does.
    let value = if cors.any_origin && !cors.credentials { HeaderValue::from_static("*") } else { origin.clone() };
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
    if cors.credentials {
        h.insert(header::ACCESS_CONTROL_ALLOW_CREDENTIALS, HeaderValue::from_static("true"));
    }
    true
}
