//! Per-request handling: ACME HTTP-01 answers, routing, HTTPS redirects, auth, rate limits,
//! fixed answers and proxying. Everything per-route was decided when the table was compiled;
//! this file only looks things up and forwards.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;

use super::access_log;
use super::balancer::{EndpointRegistry, PickContext};
use super::body::ProxyBody;
use super::forward::{local_response, splice_upgrade, ClientSide, Forwarded, Forwarder, Outbound, X_FORWARDED_PREFIX};
use super::hop_by_hop::is_upgrade_request;
use super::path::{normalize, PathPolicy};
use super::request_body::RequestBody;
use crate::admin::metrics::Metrics;
use crate::config::LogFormat;
use crate::model::table::{normalize_host, CompiledAction, CompiledRoute, Lookup, RedirectHttps, RequestFacts};
use crate::model::RouteTable;
use crate::tls::{covers, CertMap, Challenges, LiveCert};

const ACME_PREFIX: &str = "/.well-known/acme-challenge/";

/// Everything the request path reads. One per process, shared by all listeners.
#[derive(Debug)]
pub struct ProxyState {
    pub table: ArcSwap<RouteTable>,
    pub registry: EndpointRegistry,
    pub metrics: Arc<Metrics>,
    pub certs: Arc<CertMap>,
    pub challenges: Arc<Challenges>,
    pub forwarder: Forwarder,
    pub access_log: AtomicBool,
    /// 0 = unlimited.
    pub max_body_bytes: u64,
    /// Port to put in HTTPS redirects (`None` for 443).
    pub https_redirect_port: Option<u16>,
    /// `[limits] max_header_bytes`, enforced on the parsed head (see [`head_size`]).
    pub max_header_bytes: usize,
    /// `[server]`: how request paths are normalised before routing.
    pub paths: PathPolicy,
    /// `[log] format`: `clf` and `combined` make each access line one formatted message.
    pub log_format: crate::config::LogFormat,
}

/// Facts about the client connection, worked out once when it is accepted.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    pub peer: SocketAddr,
    pub https: bool,
    /// `peer`'s IP as a header value, for `X-Forwarded-For`.
    pub client_ip: HeaderValue,
    /// `peer` is a trusted proxy (`[forwarding] trusted_proxies`): its forwarding headers are kept.
    pub trusted: bool,
    /// TLS: the certificate the handshake presented (chosen by SNI), set once the handshake
    /// is done. A request for a host it does not cover gets 421 (domain fronting).
    pub tls_cert: std::sync::OnceLock<Arc<LiveCert>>,
}

impl ConnInfo {
    pub fn new(peer: SocketAddr, https: bool, trusted: bool) -> Self {
        let client_ip = HeaderValue::try_from(peer.ip().to_string()).expect("an IP address is a valid header value");
        ConnInfo { peer, https, client_ip, trusted, tls_cert: std::sync::OnceLock::new() }
    }
}

/// Where the request's host came from; owns the bytes (a reference-counted clone, not a copy).
enum HostSource {
    /// Absolute-form target or HTTP/2 `:authority`.
    Uri(http::uri::Authority),
    Header(HeaderValue),
}

pub(crate) fn with_status(status: StatusCode, body: &'static str) -> Response<ProxyBody> {
    local_response(status, body)
}

/// Handles one request.
pub async fn handle(state: &ProxyState, req: Request<Incoming>, conn: &ConnInfo) -> Response<ProxyBody> {
    let started = Instant::now();
    let (mut req, body) = req.into_parts();
    if head_size(&req) > state.max_header_bytes {
        state.metrics.unrouted.fetch_add(1, Ordering::Relaxed);
        return with_status(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, "request head too large\n");
    }
    // Host: absolute-form/HTTP/2 authority first, then the Host header. Two Host lines are
    // refused (RFC 9112 §3.2): routing by one while the upstream reads the other would let a
    // client reach a host it was not routed (or authenticated) for.
    let mut hosts = req.headers.get_all(header::HOST).iter();
    let (first_host, second_host) = (hosts.next(), hosts.next());
    if second_host.is_some() {
        state.metrics.unrouted.fetch_add(1, Ordering::Relaxed);
        return with_status(StatusCode::BAD_REQUEST, "more than one Host header\n");
    }
    // swarmgate is a reverse proxy, not a tunnel: CONNECT is refused before routing.
    if req.method == http::Method::CONNECT {
        state.metrics.unrouted.fetch_add(1, Ordering::Relaxed);
        return with_status(StatusCode::METHOD_NOT_ALLOWED, "CONNECT is not supported\n");
    }
    let source = match (req.uri.authority(), first_host) {
        (Some(a), _) => Some(HostSource::Uri(a.clone())),
        (None, Some(h)) => Some(HostSource::Header(h.clone())),
        (None, None) => None,
    };
    let raw_host = match &source {
        Some(HostSource::Uri(a)) => Some(a.as_str()),
        Some(HostSource::Header(h)) => h.to_str().ok(),
        None => None,
    };
    let Some(raw_host) = raw_host else {
        state.metrics.unrouted.fetch_add(1, Ordering::Relaxed);
        return with_status(StatusCode::BAD_REQUEST, "missing Host header\n");
    };
    // Routing, policies and the upstream all see one spelling of the path.
    match normalize(req.uri.path(), state.paths) {
        Ok(Cow::Borrowed(_)) => {}
        Ok(Cow::Owned(normal)) => match with_path(&req.uri, &normal) {
            Some(uri) => req.uri = uri,
            None => return with_status(StatusCode::BAD_REQUEST, "invalid request path\n"),
        },
        Err(e) => {
            state.metrics.unrouted.fetch_add(1, Ordering::Relaxed);
            return with_status(StatusCode::BAD_REQUEST, e.body());
        }
    }
    let path = req.uri.path();
    if !conn.https && path.starts_with(ACME_PREFIX) && !state.challenges.http01.is_empty() {
        if let Some(key_auth) = state.challenges.http01.get(&path[ACME_PREFIX.len()..]) {
            let mut resp = Response::new(ProxyBody::text(key_auth.clone()));
            resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
            return resp;
        }
    }
    let host = normalize_host(raw_host);
    // A TLS client may only ask for hosts its certificate covers: otherwise the SNI would
    // pick one host's certificate (and policies tied to it) while Host routes to another.
    // Names one certificate covers may share a connection (HTTP/2 coalescing, RFC 9113 §9.1.1).
    if conn.https && !conn.tls_cert.get().is_some_and(|c| covers(&c.names, &host)) {
        state.metrics.unrouted.fetch_add(1, Ordering::Relaxed);
        return with_status(StatusCode::MISDIRECTED_REQUEST, "this host is not served on this TLS connection\n");
    }
    let request_id = access_log::for_request(&req.headers, conn.trusted);
    // Taken now: forwarding moves the headers out of the request.
    let referer_agent = (state.access_log.load(Ordering::Relaxed) && state.log_format == LogFormat::Combined)
        .then(|| (req.headers.get(header::REFERER).cloned(), req.headers.get(header::USER_AGENT).cloned()));
    let logged = Logged { request_id: &request_id, route: "", referer_agent: referer_agent.as_ref() };
    let table = state.table.load();
    let facts = RequestFacts {
        method: &req.method,
        host: &host,
        path,
        query: req.uri.query(),
        headers: &req.headers,
        client_ip: Some(conn.peer.ip()),
    };
    let route = match table.lookup(&host, &facts, conn.https) {
        Lookup::Route(r) => r.clone(),
        Lookup::UnknownHost => {
            state.metrics.unrouted.fetch_add(1, Ordering::Relaxed);
            let resp = with_status(StatusCode::NOT_FOUND, "no route for this host\n");
            access(state, &req, &host, conn, &logged, &resp, started, "unknown host");
            return resp;
        }
        Lookup::NoRoute => {
            state.metrics.unrouted.fetch_add(1, Ordering::Relaxed);
            let resp = with_status(StatusCode::NOT_FOUND, "no route for this path\n");
            access(state, &req, &host, conn, &logged, &resp, started, "no route");
            return resp;
        }
    };
    drop(table);
    // Upstream sees the id the access line carries (replacing a client's, unless trusted).
    req.headers.insert(access_log::X_REQUEST_ID.clone(), request_id.clone());
    let declared = req.headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    let request_bytes = (head_size(&req) as u64).saturating_add(declared.unwrap_or(0));
    route.metrics.request_bytes.fetch_add(request_bytes, Ordering::Relaxed);
    let place = match &route.in_flight {
        Some((limit, counter)) => match super::body::InFlight::enter(counter, *limit) {
            Some(place) => Some(place),
            None => {
                let resp = with_status(StatusCode::TOO_MANY_REQUESTS, "too many requests in flight\n");
                route.metrics.record(resp.status().as_u16(), started.elapsed());
                access(state, &req, &host, conn, &Logged { route: &route.id, ..logged }, &resp, started, "in flight");
                return resp;
            }
        },
        None => None,
    };
    let mut resp = route_request(state, &route, &mut req, body, conn, &host, raw_host).await;
    if let Some(place) = place {
        resp = resp.map(|b| ProxyBody::Held(Box::new((b, place))));
    }
    let resp = resp.map(|b| b.counted(&route.metrics));
    let status = resp.status();
    route.metrics.record(status.as_u16(), started.elapsed());
    access(state, &req, &host, conn, &Logged { route: &route.id, ..logged }, &resp, started, "");
    resp
}

/// Size of a request head as `max_header_bytes` counts it: the request line and every header
/// line (`name: value` CRLF) and the blank line, as parsed. hyper's `max_buf_size` bounds the
/// read buffer, not the head: how much of a head it accepts depends on how the bytes arrived
/// (one 100 KB write passed, the same bytes in 4 KB pieces got 431). Counting the parsed head
/// gives one limit whatever the timing; the buffer bound stays as the memory guard.
fn head_size(req: &http::request::Parts) -> usize {
    let target =
        req.uri.path_and_query().map_or(1, |p| p.as_str().len()) + req.uri.authority().map_or(0, |a| a.as_str().len());
    let line = req.method.as_str().len() + 1 + target + " HTTP/1.1\r\n".len();
    req.headers.iter().fold(line + 2, |n, (k, v)| n.saturating_add(k.as_str().len() + v.len() + 4))
}

/// What the access line needs beyond the request and response.
#[derive(Clone, Copy)]
struct Logged<'a> {
    request_id: &'a HeaderValue,
    route: &'a str,
    /// `Referer` and `User-Agent`, for the Combined format only.
    referer_agent: Option<&'a (Option<HeaderValue>, Option<HeaderValue>)>,
}

/// One access log line. Header values other than `Referer`
/// and `User-Agent` (the Combined format's) are never logged: no Authorization, Cookie,
/// Set-Cookie or Proxy-Authorization at any level.
#[inline]
#[allow(clippy::too_many_arguments)]
fn access(
    state: &ProxyState,
    req: &http::request::Parts,
    host: &str,
    conn: &ConnInfo,
    logged: &Logged<'_>,
    resp: &Response<ProxyBody>,
    started: Instant,
    note: &str,
) {
    let Logged { request_id, route, referer_agent } = *logged;
    if !state.access_log.load(Ordering::Relaxed) {
        return;
    }
    let status = resp.status().as_u16();
    if matches!(state.log_format, LogFormat::Clf | LogFormat::Combined) {
        let fields = access_log::ClfFields {
            client: conn.peer.ip(),
            method: req.method.as_str(),
            target: req.uri.path_and_query().map_or("/", |p| p.as_str()),
            version: req.version,
            status,
            bytes: http_body::Body::size_hint(resp.body()).exact(),
            combined: referer_agent.map(|(r, a)| (r.as_ref(), a.as_ref())),
            request_id,
        };
        tracing::info!(target: "swarmgate::access", "{}", access_log::clf_line(&fields, std::time::SystemTime::now()));
        return;
    }
    tracing::info!(
        target: "swarmgate::access",
        client = %conn.peer.ip(),
        method = %req.method,
        host,
        path = req.uri.path(),
        status,
        route,
        micros = started.elapsed().as_micros() as u64,
        tls = conn.https,
        request_id = request_id.to_str().unwrap_or("-"),
        note,
    );
}

async fn route_request(
    state: &ProxyState,
    route: &Arc<CompiledRoute>,
    req: &mut http::request::Parts,
    body: Incoming,
    conn: &ConnInfo,
    host: &str,
    raw_host: &str,
) -> Response<ProxyBody> {
    if !conn.https {
        let redirect = match route.redirect_https {
            RedirectHttps::Never => false,
            RedirectHttps::Always => true,
            RedirectHttps::WhenCertificate => state.certs.has(host),
        };
        if redirect {
            let pq = req.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
            let location = match state.https_redirect_port {
                Some(port) => format!("https://{host}:{port}{pq}"),
                None => format!("https://{host}{pq}"),
            };
            return redirect_response(StatusCode::PERMANENT_REDIRECT, &location);
        }
    }
    if let Some(extra) = &route.extra {
        if let Some(answer) = extra_steps(extra, req, conn, raw_host) {
            return answer;
        }
    }
    if let Some(answer) = route.cors.as_ref().and_then(|c| super::cors::preflight(c, &req.method, &req.headers)) {
        return answer;
    }
    if let Some(auth) = &route.basic_auth {
        if !auth.check(req.headers.get(header::AUTHORIZATION)).await {
            let mut resp = with_status(StatusCode::UNAUTHORIZED, "authentication required\n");
            resp.headers_mut().insert(header::WWW_AUTHENTICATE, auth.challenge.clone());
            return resp;
        }
    }
    if let Some(fa) = &route.forward_auth {
        if let Some(answer) = super::forward_auth::check(state, fa, req, conn, raw_host).await {
            return answer;
        }
    }
    if let Some(rl) = &route.rate_limit {
        if !rl.allow() {
            let mut resp = with_status(StatusCode::TOO_MANY_REQUESTS, "rate limit exceeded\n");
            resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            return resp;
        }
    }
    let group = match &route.action {
        CompiledAction::Respond { status, body } => {
            let mut resp = Response::new(ProxyBody::text(body.clone()));
            *resp.status_mut() = *status;
            resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
            route.response_headers.apply(resp.headers_mut());
            return resp;
        }
        CompiledAction::Redirect { location, status } => {
            let pq = req.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
            return redirect_response(*status, &location.render(pq));
        }
        CompiledAction::Proxy(group) => group.clone(),
    };
    if group.is_empty() {
        return with_status(StatusCode::SERVICE_UNAVAILABLE, "no healthy upstream for this route\n");
    }
    let max_body = match (state.max_body_bytes, route.max_body_bytes) {
        (0, r) => r,
        (s, 0) => s,
        (s, r) => s.min(r),
    };
    if max_body > 0 {
        let too_big = req
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .is_some_and(|n| n > max_body);
        if too_big {
            return with_status(StatusCode::PAYLOAD_TOO_LARGE, "request body too large\n");
        }
    }

    // Upstream path (rewrites decided at build time) and query.
    let path = req.uri.path();
    let mut stripped = None;
    let path_and_query: http::uri::PathAndQuery = if route.rewrites_path() {
        let new_path;
        (new_path, stripped) = route.rewrite_path_and_prefix(path);
        let pq = match req.uri.query() {
            Some(q) => format!("{new_path}?{q}"),
            None => new_path.into_owned(),
        };
        match pq.parse() {
            Ok(p) => p,
            Err(_) => return with_status(StatusCode::BAD_REQUEST, "invalid request path\n"),
        }
    } else {
        match req.uri.path_and_query() {
            Some(p) => p.clone(),
            None => http::uri::PathAndQuery::from_static("/"),
        }
    };

    let upgrade = is_upgrade_request(&req.headers);
    let client_upgrade = if upgrade { req.extensions.remove::<hyper::upgrade::OnUpgrade>() } else { None };
    let sticky_cookie_value =
        group.sticky_cookie.as_deref().and_then(|name| cookie_value(&req.headers, name)).map(str::to_owned);
    let ctx = PickContext {
        client_ip: Some(conn.peer.ip()),
        sticky: sticky_cookie_value.as_deref(),
        hash: group.request_hash(&req.uri, &req.headers, conn.peer.ip(), conn.trusted),
    };

    let method = req.method.clone();
    let gzip = route.compress.as_ref().filter(|_| super::compress::accepts_gzip(&req.headers));
    let origin = route.cors.as_ref().and_then(|_| req.headers.get(header::ORIGIN).cloned());
    let mut headers = std::mem::take(&mut req.headers);
    state.forwarder.prepare_headers(
        &mut headers,
        &ClientSide { ip: &conn.client_ip, https: conn.https, host: raw_host, trusted: conn.trusted },
        upgrade,
        group.pass_host,
    );
    if let Some(prefix) = stripped.as_ref().or(route.strip_prefix.as_ref()) {
        if let Ok(v) = HeaderValue::from_str(prefix) {
            headers.insert(X_FORWARDED_PREFIX.clone(), v);
        }
    }
    route.request_headers.apply(&mut headers);
    let body = RequestBody::new(body, max_body);
    let out = Outbound { method, path_and_query, headers, body, upgrade };
    let result = state.forwarder.send(&group, &ctx, out, route.retries, &route.metrics.upstream_errors).await;
    match result {
        Ok(Forwarded { response: mut resp, endpoint: idx, tunnel }) => {
            if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
                if let (Some(client_upgrade), Some(tunnel)) = (client_upgrade, tunnel) {
                    splice_upgrade(client_upgrade, tunnel);
                }
                return resp;
            }
            if let Some(errors) = route.errors.as_ref().filter(|e| e.covers(resp.status().as_u16())) {
                if let Some(page) = super::error_pages::page(state, errors, resp.status(), conn, raw_host).await {
                    resp = page;
                }
            }
            route.response_headers.apply(resp.headers_mut());
            if let Some(cfg) = gzip {
                resp = super::compress::apply(cfg, &req.method, resp);
            }
            if let Some(cors) = &route.cors {
                super::cors::decorate(cors, origin.as_ref(), &mut resp);
            }
            if let Some(name) = &group.sticky_cookie {
                let token = &group.endpoints[idx].sticky_token;
                if sticky_cookie_value.as_deref() != Some(token.as_str()) {
                    if let Ok(v) = HeaderValue::from_str(&format!("{name}={token}; Path=/; HttpOnly; SameSite=Lax")) {
                        resp.headers_mut().append(header::SET_COOKIE, v);
                    }
                }
            }
            resp
        }
        Err(e) => {
            tracing::warn!(route = %route.id, error = %e, "upstream request failed");
            match e.status() {
                StatusCode::GATEWAY_TIMEOUT => with_status(StatusCode::GATEWAY_TIMEOUT, "upstream timed out\n"),
                StatusCode::SERVICE_UNAVAILABLE => {
                    with_status(StatusCode::SERVICE_UNAVAILABLE, "no healthy upstream for this route\n")
                }
                StatusCode::BAD_REQUEST => with_status(StatusCode::BAD_REQUEST, "request body incomplete\n"),
                StatusCode::REQUEST_TIMEOUT => with_status(StatusCode::REQUEST_TIMEOUT, "request body timed out\n"),
                StatusCode::PAYLOAD_TOO_LARGE => with_status(StatusCode::PAYLOAD_TOO_LARGE, "request body too large\n"),
                _ => with_status(StatusCode::BAD_GATEWAY, "upstream unreachable\n"),
            }
        }
    }
}

/// The IP allow list (403) and the regex redirect, if the route has them.
fn extra_steps(
    extra: &crate::model::table::ExtraSteps,
    req: &http::request::Parts,
    conn: &ConnInfo,
    raw_host: &str,
) -> Option<Response<ProxyBody>> {
    let xff = req.headers.get("x-forwarded-for").and_then(|v| v.to_str().ok());
    if !extra.allows(conn.peer.ip(), conn.trusted, xff) {
        return Some(with_status(StatusCode::FORBIDDEN, "forbidden\n"));
    }
    let (re, replacement, status) = extra.redirect.as_ref()?;
    let pq = req.uri.path_and_query().map_or("/", |p| p.as_str());
    let url = format!("{}://{raw_host}{pq}", if conn.https { "https" } else { "http" });
    if !re.is_match(&url) {
        return None;
    }
    Some(redirect_response(*status, &re.replace(&url, replacement.as_str())))
}

/// `uri` with its path replaced by `path`, the query kept as sent.
fn with_path(uri: &http::Uri, path: &str) -> Option<http::Uri> {
    let pq = match uri.query() {
        Some(q) => format!("{path}?{q}"),
        None => path.to_owned(),
    };
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = Some(pq.parse().ok()?);
    http::Uri::from_parts(parts).ok()
}

fn redirect_response(status: StatusCode, location: &str) -> Response<ProxyBody> {
    let mut resp = Response::new(ProxyBody::empty());
    *resp.status_mut() = status;
    if let Ok(v) = HeaderValue::from_str(location) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp
}

/// Value of cookie `name` in the request's `Cookie` headers.
fn cookie_value<'a>(headers: &'a http::HeaderMap, name: &str) -> Option<&'a str> {
    headers.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(';')).find_map(|pair| {
        let (k, v) = pair.trim().split_once('=')?;
        (k == name).then_some(v)
    })
}
