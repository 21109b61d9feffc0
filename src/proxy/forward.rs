//! Forwarding to upstreams: keep-alive pools (HTTP/1.1 and h2c), header hygiene, retries that
//! are known to be safe, timeouts, and protocol upgrades (WebSocket).

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode, Uri};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};

use super::balancer::{PickContext, UpstreamGroup};
use super::body::{ProxyBody, ReclaimableBody, RequestBody};
use super::pool::PooledBody;
use crate::config::Limits;
use crate::model::UpstreamScheme;

/// Why an attempt failed; decides the status and whether another endpoint may be tried.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// Nothing reached the upstream: safe to retry anywhere, counts toward ejection.
    #[error("connect to {addr} failed: {reason}")]
    Connect { addr: SocketAddr, reason: String },
    /// The upstream did not answer within the response timeout.
    #[error("{addr} sent no response head within {timeout:?}")]
    Timeout { addr: SocketAddr, timeout: Duration },
    /// The exchange broke after the request was (perhaps) sent.
    #[error("request to {addr} failed: {reason}")]
    Exchange { addr: SocketAddr, reason: String },
    #[error("no upstream endpoint is available")]
    NoEndpoint,
}

impl UpstreamError {
    pub fn status(&self) -> StatusCode {
        match self {
            UpstreamError::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            UpstreamError::NoEndpoint => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::BAD_GATEWAY,
        }
    }
}

/// Upstream connection pools, one per protocol. Pools are keyed by endpoint address inside.
pub struct Forwarder {
    http1: Client<HttpConnector, ReclaimableBody>,
    h2c: Client<HttpConnector, ReclaimableBody>,
    response_timeout: Duration,
    connect_timeout: Duration,
    pool_idle_timeout: Duration,
    add_via: bool,
}

impl std::fmt::Debug for Forwarder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Forwarder").finish_non_exhaustive()
    }
}

fn connector(limits: &Limits) -> HttpConnector {
    let mut c = HttpConnector::new();
    c.set_nodelay(true);
    c.set_connect_timeout(Some(limits.upstream_connect_timeout.0));
    c.set_keepalive(Some(Duration::from_secs(60)));
    c.enforce_http(false);
    c
}

/// Pooled connections idle at least this long may meet an upstream closing them.
const KEEPALIVE_RACE_IDLE: Duration = Duration::from_millis(500);

/// Header names removed before forwarding either way (RFC 9110 §7.6.1).
static HOP_BY_HOP: [HeaderName; 7] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TRAILER,
    header::TRANSFER_ENCODING,
];

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
pub static X_FORWARDED_PREFIX: HeaderName = HeaderName::from_static("x-forwarded-prefix");

/// Removes hop-by-hop headers, including any named in `Connection`. Keeps `TE: trailers`
/// (gRPC needs it) and, when `keep_upgrade`, the `Upgrade`/`Connection: upgrade` pair.
pub fn strip_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    if let Some(conn) = headers.get(header::CONNECTION) {
        if let Ok(conn) = conn.to_str() {
            let named: Vec<HeaderName> = conn
                .split(',')
                .map(str::trim)
                .filter(|n| {
                    !n.eq_ignore_ascii_case("upgrade")
                        && !n.eq_ignore_ascii_case("close")
                        && !n.eq_ignore_ascii_case("keep-alive")
                })
                .filter_map(|n| HeaderName::from_bytes(n.as_bytes()).ok())
                .collect();
            for n in named {
                headers.remove(n);
            }
        }
    }
    for h in &HOP_BY_HOP {
        headers.remove(h);
    }
    if let Some(te) = headers.get(header::TE) {
        if te.as_bytes().eq_ignore_ascii_case(b"trailers") {
            // keep
        } else {
            headers.remove(header::TE);
        }
    }
    if keep_upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    } else {
        headers.remove(header::UPGRADE);
    }
}

/// True for requests asking to switch protocols (WebSocket and friends).
pub fn is_upgrade_request(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
        && headers.get_all(header::CONNECTION).iter().any(|v| {
            v.to_str().map(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("upgrade"))).unwrap_or(false)
        })
}

/// The request as it goes upstream (path already rewritten, headers already prepared).
pub struct Outbound {
    pub method: http::Method,
    pub path_and_query: http::uri::PathAndQuery,
    pub headers: HeaderMap,
    pub body: Incoming,
}

/// What the handler knows about the client side of a request.
pub struct ClientSide<'a> {
    pub addr: SocketAddr,
    pub https: bool,
    /// Normalised-as-sent host (with port if any), for `Host` and `X-Forwarded-Host`.
    pub host: &'a str,
}

impl Forwarder {
    pub fn new(limits: &Limits, add_via: bool) -> Self {
        let mut b1 = Client::builder(TokioExecutor::new());
        b1.pool_idle_timeout(limits.upstream_idle_timeout.0)
            .pool_max_idle_per_host(512)
            .pool_timer(TokioTimer::new())
            .retry_canceled_requests(true)
            .set_host(false);
        let http1 = b1.build(connector(limits));
        let mut b2 = Client::builder(TokioExecutor::new());
        b2.pool_idle_timeout(limits.upstream_idle_timeout.0)
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .http2_only(true)
            .http2_keep_alive_interval(Some(Duration::from_secs(30)))
            .http2_adaptive_window(true)
            .retry_canceled_requests(true)
            .set_host(false);
        let h2c = b2.build(connector(limits));
        Forwarder {
            http1,
            h2c,
            response_timeout: limits.upstream_response_timeout.0,
            connect_timeout: limits.upstream_connect_timeout.0,
            pool_idle_timeout: limits.upstream_idle_timeout.0,
            add_via,
        }
    }

    /// Adds the forwarding headers and strips hop-by-hop ones, in place.
    pub fn prepare_headers(&self, headers: &mut HeaderMap, client: &ClientSide<'_>, upgrade: bool, pass_host: bool) {
        strip_hop_by_hop(headers, upgrade);
        // The client IP formatted on the stack: one allocation (the header value) per request.
        let mut buf = [0u8; 64];
        let ip_len = {
            use std::io::Write;
            let mut cursor = std::io::Cursor::new(&mut buf[..]);
            let _ = write!(cursor, "{}", client.addr.ip());
            cursor.position() as usize
        };
        let ip = &buf[..ip_len];
        let xff = match headers.get(&X_FORWARDED_FOR) {
            Some(prev) => {
                let mut v = Vec::with_capacity(prev.len() + 2 + ip.len());
                v.extend_from_slice(prev.as_bytes());
                v.extend_from_slice(b", ");
                v.extend_from_slice(ip);
                HeaderValue::from_bytes(&v)
            }
            None => HeaderValue::from_bytes(ip),
        };
        if let Ok(v) = xff {
            headers.insert(X_FORWARDED_FOR.clone(), v);
        }
        headers
            .insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static(if client.https { "https" } else { "http" }));
        // Reuse the client's Host value (a cheap clone) when it is the host we routed by.
        let host = match headers.get(header::HOST) {
            Some(h) if h.as_bytes() == client.host.as_bytes() => Some(h.clone()),
            _ => HeaderValue::from_str(client.host).ok(),
        };
        if let Some(h) = host {
            if pass_host {
                headers.insert(header::HOST, h.clone());
            } else {
                headers.remove(header::HOST);
            }
            headers.insert(X_FORWARDED_HOST.clone(), h);
        }
        if self.add_via {
            headers.append(header::VIA, HeaderValue::from_static("1.1 swarmgate"));
        }
    }

    /// Sends the request to an endpoint of `group` and returns the response (body streaming)
    /// with the index of the endpoint that answered. Retries on another endpoint when that is
    /// safe: always when nothing was sent (connect failure, or a pooled connection that closed
    /// before the request went out), and up to `retries` times for idempotent requests without
    /// a body after an exchange failure on a reused connection.
    pub async fn send(
        &self,
        group: &UpstreamGroup,
        ctx: &PickContext<'_>,
        out: Outbound,
        retries: u32,
        errors: &std::sync::atomic::AtomicU64,
    ) -> Result<(Response<ProxyBody>, usize), UpstreamError> {
        if group.scheme != UpstreamScheme::Http {
            return self.send_legacy(group, ctx, out, retries, errors).await;
        }
        let Outbound { method, path_and_query, headers, body } = out;
        let idempotent = is_idempotent(&method);
        let mut tried: u64 = 0;
        let mut exchange_retries_left = retries;
        let max_attempts = group.endpoints.len().clamp(1, 64) + retries as usize + 1;
        let mut last_err = UpstreamError::NoEndpoint;
        let mut req = Request::new(RequestBody::Client(body));
        *req.method_mut() = method;
        *req.uri_mut() = Uri::from(path_and_query);
        *req.headers_mut() = headers;
        for _ in 0..max_attempts {
            let Some(idx) = group.pick(ctx, tried) else { break };
            let endpoint = &group.endpoints[idx];
            if !group.pass_host {
                if let Ok(v) = HeaderValue::from_str(endpoint.authority.as_str()) {
                    req.headers_mut().insert(header::HOST, v);
                }
            }
            let mut inflight = endpoint.start();
            let mut checkout = match endpoint
                .pool
                .checkout(endpoint.addr, self.connect_timeout, self.pool_idle_timeout)
                .await
            {
                Ok(c) => {
                    inflight.restart_clock();
                    c
                }
                Err(e) => {
                    tried |= 1u64 << idx.min(63);
                    errors.fetch_add(1, Ordering::Relaxed);
                    if inflight.failure() {
                        tracing::warn!(upstream = %endpoint.addr, "ejecting upstream after repeated connect failures");
                    }
                    last_err = UpstreamError::Connect { addr: endpoint.addr, reason: e.to_string() };
                    continue;
                }
            };
            // A copy for a retry after the request went out, only where a retry is allowed.
            // Only a connection that idled long enough to meet the upstream's keep-alive timer
            // can fail after the request went out; copying the head for every request would
            // cost more than the rare retry it enables.
            let copy = (checkout.reused
                && checkout.idle_for >= KEEPALIVE_RACE_IDLE
                && idempotent
                && exchange_retries_left > 0
                && http_body::Body::is_end_stream(req.body()))
            .then(|| (req.method().clone(), req.uri().clone(), req.headers().clone()));
            let sent = tokio::time::timeout(self.response_timeout, checkout.sender.try_send_request(req)).await;
            match sent {
                Ok(Ok(resp)) => {
                    inflight.success();
                    let (parts, body) = resp.into_parts();
                    let body = if parts.status == StatusCode::SWITCHING_PROTOCOLS {
                        // The connection becomes the tunnel; it never returns to the pool.
                        ProxyBody::Upstream(body)
                    } else {
                        ProxyBody::Pooled(PooledBody::new(body, checkout.sender, endpoint.clone()))
                    };
                    return Ok((Response::from_parts(parts, body), idx));
                }
                Ok(Err(mut e)) => {
                    errors.fetch_add(1, Ordering::Relaxed);
                    let error = e.error().to_string();
                    if let Some(unsent) = e.take_message() {
                        // Nothing was written: the pooled connection had closed. Not the
                        // endpoint's fault; try again on a fresh connection.
                        req = unsent;
                        last_err = UpstreamError::Exchange { addr: endpoint.addr, reason: error };
                        continue;
                    }
                    inflight.failure();
                    last_err = UpstreamError::Exchange { addr: endpoint.addr, reason: error };
                    match copy {
                        Some((m, u, h)) => {
                            exchange_retries_left -= 1;
                            tried |= 1u64 << idx.min(63);
                            req = Request::new(RequestBody::Empty);
                            *req.method_mut() = m;
                            *req.uri_mut() = u;
                            *req.headers_mut() = h;
                        }
                        None => return Err(last_err),
                    }
                }
                Err(_) => {
                    errors.fetch_add(1, Ordering::Relaxed);
                    inflight.failure();
                    return Err(UpstreamError::Timeout { addr: endpoint.addr, timeout: self.response_timeout });
                }
            }
        }
        Err(last_err)
    }

    /// h2c and https upstreams, through hyper-util's pooled client.
    async fn send_legacy(
        &self,
        group: &UpstreamGroup,
        ctx: &PickContext<'_>,
        out: Outbound,
        retries: u32,
        errors: &std::sync::atomic::AtomicU64,
    ) -> Result<(Response<ProxyBody>, usize), UpstreamError> {
        let Outbound { method, path_and_query, headers, mut body } = out;
        let idempotent = is_idempotent(&method);
        let mut tried: u64 = 0;
        let mut exchange_retries_left = retries;
        let max_attempts = group.endpoints.len().clamp(1, 64) + retries as usize;
        let mut last_err = UpstreamError::NoEndpoint;
        for _ in 0..max_attempts {
            let Some(idx) = group.pick(ctx, tried) else { break };
            tried |= 1u64 << idx.min(63);
            let endpoint = &group.endpoints[idx];
            let uri = Uri::builder()
                .scheme(if group.scheme == UpstreamScheme::Https { "https" } else { "http" })
                .authority(endpoint.authority.clone())
                .path_and_query(path_and_query.clone())
                .build()
                .map_err(|_| UpstreamError::NoEndpoint)?;
            let end_stream = http_body::Body::is_end_stream(&body);
            let (wrapped, reclaim) = ReclaimableBody::new(body);
            let mut req = Request::new(wrapped);
            *req.method_mut() = method.clone();
            *req.uri_mut() = uri;
            *req.headers_mut() = headers.clone();
            if !group.pass_host {
                if let Ok(v) = HeaderValue::from_str(endpoint.authority.as_str()) {
                    req.headers_mut().insert(header::HOST, v);
                }
            }
            let client = if group.scheme == UpstreamScheme::H2c { &self.h2c } else { &self.http1 };
            let mut inflight = endpoint.start();
            let result = tokio::time::timeout(self.response_timeout, client.request(req)).await;
            match result {
                Ok(Ok(resp)) => {
                    inflight.success();
                    let (parts, body) = resp.into_parts();
                    return Ok((Response::from_parts(parts, ProxyBody::Upstream(body)), idx));
                }
                Ok(Err(e)) if e.is_connect() => {
                    errors.fetch_add(1, Ordering::Relaxed);
                    if inflight.failure() {
                        tracing::warn!(upstream = %endpoint.addr, "ejecting upstream after repeated connect failures");
                    }
                    last_err = UpstreamError::Connect { addr: endpoint.addr, reason: e.to_string() };
                    match reclaim.await {
                        Ok(b) => body = b,
                        Err(_) => return Err(last_err),
                    }
                }
                Ok(Err(e)) => {
                    errors.fetch_add(1, Ordering::Relaxed);
                    inflight.failure();
                    last_err = UpstreamError::Exchange { addr: endpoint.addr, reason: e.to_string() };
                    if !(idempotent && end_stream && exchange_retries_left > 0) {
                        return Err(last_err);
                    }
                    exchange_retries_left -= 1;
                    match reclaim.await {
                        Ok(b) => body = b,
                        Err(_) => return Err(last_err),
                    }
                }
                Err(_) => {
                    errors.fetch_add(1, Ordering::Relaxed);
                    inflight.failure();
                    return Err(UpstreamError::Timeout { addr: endpoint.addr, timeout: self.response_timeout });
                }
            }
        }
        Err(last_err)
    }
}

fn is_idempotent(method: &http::Method) -> bool {
    matches!(
        *method,
        http::Method::GET
            | http::Method::HEAD
            | http::Method::OPTIONS
            | http::Method::PUT
            | http::Method::DELETE
            | http::Method::TRACE
    )
}

/// Joins the client's upgraded connection with the upstream's after a 101.
pub fn splice_upgrade(client: hyper::upgrade::OnUpgrade, upstream: hyper::upgrade::OnUpgrade) {
    tokio::spawn(async move {
        let (c, u) = match tokio::try_join!(client, upstream) {
            Ok(pair) => pair,
            Err(e) => {
                tracing::debug!(error = %e, "upgrade failed");
                return;
            }
        };
        let mut c = TokioIo::new(c);
        let mut u = TokioIo::new(u);
        let _ = tokio::io::copy_bidirectional(&mut c, &mut u).await;
    });
}

/// A response generated by swarmgate itself.
pub fn local_response(status: StatusCode, body: &'static str) -> Response<ProxyBody> {
    let mut resp = Response::new(ProxyBody::text(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    if status == StatusCode::SERVICE_UNAVAILABLE {
        resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    }
    resp
}
