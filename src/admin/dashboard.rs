//! The operator dashboard: one read-only page served by the admin listener at `/` and
//! `/dashboard/`, with its script, style sheet and icon under `/dashboard/`.
//!
//! The assets are compiled into the binary (`include_bytes!`) so the page works air-gapped and
//! always matches the API of the binary that serves it. The page holds no data: its script
//! polls the same-origin JSON API (`/api/routes`, `/api/problems`, `/api/certificates`), so
//! it sits behind the same admin authentication, and the browser's basic-auth credentials
//! apply to its fetches. It renders everything with `textContent`: label text is written by
//! whoever deploys a service, and must never become markup.

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};

use crate::model::{Provenance, RouteSpec};
use crate::proxy::body::ProxyBody;

/// One embedded file and the path it is served at.
#[derive(Debug)]
pub struct Asset {
    pub path: &'static str,
    pub content_type: &'static str,
    pub body: &'static [u8],
}

/// Every embedded file; the page is also served at `/`.
pub const ASSETS: [Asset; 4] = [
    Asset {
        path: "/dashboard/",
        content_type: "text/html; charset=utf-8",
        body: include_bytes!("dashboard/index.html"),
    },
    Asset {
        path: "/dashboard/app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("dashboard/app.js"),
    },
    Asset {
        path: "/dashboard/app.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("dashboard/app.css"),
    },
    Asset { path: "/dashboard/icon.svg", content_type: "image/svg+xml", body: include_bytes!("dashboard/icon.svg") },
];

/// Bytes of all embedded assets (the issue's budget is 150 KB; `tests/dashboard.rs` holds
/// the build to it).
pub fn total_size() -> usize {
    ASSETS.iter().map(|a| a.body.len()).sum()
}

/// Only same-origin script, style, images and fetches; no inline script or style at all (a
/// label that slipped through as markup could not run), no framing (clickjacking), no
/// `<base>` or form tricks.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
     img-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; \
     frame-ancestors 'none'";

/// The asset served at `path`, if any: `/` is the page too.
pub fn asset(path: &str) -> Option<&'static Asset> {
    let path = if path == "/" { "/dashboard/" } else { path };
    ASSETS.iter().find(|a| a.path == path)
}

/// The response for `asset`, with the security headers every dashboard answer carries.
pub fn respond(asset: &Asset) -> Response<ProxyBody> {
    let mut resp = Response::new(ProxyBody::text(Bytes::from_static(asset.body)));
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(asset.content_type));
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    // The page and its script must match the binary answering the API: never a stale copy.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// `/dashboard` → `/dashboard/`, so the page's relative view of itself is one URL.
pub fn redirect_to_page() -> Response<ProxyBody> {
    let mut resp = Response::new(ProxyBody::text(Bytes::new()));
    *resp.status_mut() = StatusCode::PERMANENT_REDIRECT;
    resp.headers_mut().insert(header::LOCATION, HeaderValue::from_static("/dashboard/"));
    resp
}

/// Where a route came from, as the dashboard shows it: the service (or `config`, `builtin`),
/// the label dialect (`native`, `caddy`, `traefik`; `file` and `builtin` otherwise) and the
/// label or config key that made it, so an operator can go from a route to the line to edit.
pub fn origin(spec: &RouteSpec) -> serde_json::Value {
    let (dialect, label) = match &spec.provenance {
        Provenance::File { .. } => ("file", spec.provenance.to_string()),
        Provenance::Service { service, key } => (label_dialect(&spec.id, service), key.clone()),
        Provenance::Builtin => ("builtin", String::new()),
    };
    serde_json::json!({ "service": spec.provenance.source(), "dialect": dialect, "label": label })
}

/// The dialect segment of a label route's id (`svc/<service>/<dialect>/…`): the label
/// prefixes are configurable, so the key alone cannot tell. Service names hold no `/`.
fn label_dialect(id: &str, service: &str) -> &'static str {
    let rest = id.strip_prefix("svc/").and_then(|r| r.strip_prefix(service)).and_then(|r| r.strip_prefix('/'));
    match rest.map(|r| r.split('/').next().unwrap_or_default()) {
        Some("native") => "native",
        Some("caddy") => "caddy",
        Some("traefik") => "traefik",
        _ => "labels",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{UpstreamSpec, UpstreamTarget};

    fn spec(id: &str, provenance: Provenance) -> RouteSpec {
        RouteSpec::proxy(
            id,
            provenance,
            vec!["a.example.com".into()],
            UpstreamSpec::new(UpstreamTarget::Static(vec![])),
        )
    }

    #[test]
    fn the_page_is_served_at_the_root_and_under_dashboard() {
        assert!(std::ptr::eq(asset("/").unwrap(), asset("/dashboard/").unwrap()));
        assert_eq!(asset("/dashboard/app.js").unwrap().content_type, "text/javascript; charset=utf-8");
        assert!(asset("/dashboard/../Cargo.toml").is_none());
        assert!(asset("/dashboard/app.js?x").is_none(), "the router passes the path only");
    }

    #[test]
    fn every_answer_carries_the_security_headers() {
        for a in &ASSETS {
            let r = respond(a);
            let h = r.headers();
            assert!(h["content-security-policy"].to_str().unwrap().starts_with("default-src 'self'"), "{}", a.path);
            assert_eq!(h["x-content-type-options"], "nosniff");
            assert_eq!(h["cache-control"], "no-store");
            assert_eq!(h["content-type"], a.content_type);
        }
    }

    #[test]
    fn the_page_loads_no_inline_script_or_style_and_nothing_from_elsewhere() {
        let html = std::str::from_utf8(asset("/").unwrap().body).unwrap();
        assert!(html.contains(r#"<script src="/dashboard/app.js""#));
        assert!(!html.contains("<script>") && !html.contains("<style") && !html.contains(" style="));
        assert!(!html.contains("http://") && !html.contains("https://") && !html.contains("//cdn"));
        let js = std::str::from_utf8(asset("/dashboard/app.js").unwrap().body).unwrap();
        assert!(!js.contains("innerHTML") && !js.contains("outerHTML") && !js.contains("insertAdjacentHTML"));
        assert!(!js.contains("eval(") && !js.contains("new Function"));
    }

    #[test]
    fn origin_names_the_service_the_dialect_and_the_label() {
        let svc = |key: &str| Provenance::Service { service: "shop_web".into(), key: key.into() };
        let o = origin(&spec("svc/shop_web/caddy/1", svc("caddy_0")));
        assert_eq!(o, serde_json::json!({ "service": "shop_web", "dialect": "caddy", "label": "caddy_0" }));
        let o = origin(&spec("svc/shop_web/traefik/api/0", svc("traefik.http.routers.api.rule")));
        assert_eq!(o["dialect"], "traefik");
        assert_eq!(origin(&spec("svc/shop_web/native/api", svc("swarmgate.routes.api")))["dialect"], "native");
        // A service named like another's prefix does not borrow its dialect.
        assert_eq!(origin(&spec("svc/shop_web_2/native", svc("swarmgate")))["dialect"], "labels");
        let o = origin(&spec("file/3", Provenance::File { index: 3 }));
        assert_eq!(o, serde_json::json!({ "service": "config", "dialect": "file", "label": "routes[3]" }));
        assert_eq!(origin(&spec("admin", Provenance::Builtin))["dialect"], "builtin");
    }
}
