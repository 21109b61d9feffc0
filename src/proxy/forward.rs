//! Forwarding to upstreams: keep-alive pools (HTTP/1.1, h2c, and TLS), header hygiene, retries that
//! are known to be safe, timeouts, and protocol upgrades (WebSocket).

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::time::Duration;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode, Uri};
use hyper_util::rt::TokioIo;

use super::balancer::{PickContext, UpstreamGroup};
use super::body::{ProxyBody, ReclaimableBody};
use super::hop_by_hop::strip_hop_by_hop;
use super::request_body::{RequestBody, RequestBodyError};
use super::upstream::{self, codec, ExchangeError, OutgoingBody};
use super::upstream_tls::error_chain;
use crate::config::{ForwardingConfig, Limits};
use crate::model::parse_cidr;
use crate::model::table::ip_in;
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
    /// The client's request body failed before it was all sent.
    #[error("client request body: {0}")]
    ClientBody(String),
    /// The client's body grew past `[limits] max_body_bytes` (a chunked or HTTP/2 body,
    /// which declares no length up front).
    #[error("client request body larger than {0} bytes")]
    BodyTooLarge(u64),
    /// The client's request body stalled while the upstream waited for it.
    #[error("client request body stalled for {0:?}")]
    ClientStalled(Duration),
}

impl UpstreamError {
    pub fn status(&self) -> StatusCode {
        match self {
            UpstreamError::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            UpstreamError::NoEndpoint => StatusCode::SERVICE_UNAVAILABLE,
            UpstreamError::ClientBody(_) => StatusCode::BAD_REQUEST,
            UpstreamError::ClientStalled(_) => StatusCode::REQUEST_TIMEOUT,
            UpstreamError::BodyTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            _ => StatusCode::BAD_GATEWAY,
        }
    }
}

/// Forwarding settings. HTTP/1.1 is swarmgate's own client, on each endpoint; `h2c` and
/// `https` upstreams use a client per endpoint, which the route table holds (see
/// `upstream_h2c` and `upstream_tls`).
pub struct Forwarder {
    response_timeout: Duration,
    connect_timeout: Duration,
    add_via: bool,
    /// `[limits] max_body_bytes` (0: unlimited), for the 413's reason.
    max_body_bytes: u64,
    /// `[forwarding] trusted_proxies`, parsed.
    trusted: Box<[(IpAddr, u8)]>,
}

impl std::fmt::Debug for Forwarder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Forwarder").finish_non_exhaustive()
    }
}

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
pub static X_FORWARDED_PREFIX: HeaderName = HeaderName::from_static("x-forwarded-prefix");
static X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");

/// What a client may claim about earlier hops; only a trusted peer's claims are passed on (the
/// set Traefik strips from untrusted clients, plus RFC 7239 `Forwarded`).
const FORWARDING_HEADERS: &[&str] = &[
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-method",
    "x-forwarded-port",
    "x-forwarded-prefix",
    "x-forwarded-proto",
    "x-forwarded-server",
    "x-forwarded-ssl",
    "x-forwarded-tls-client-cert",
    "x-forwarded-tls-client-cert-info",
    "x-forwarded-uri",
    "x-real-ip",
];

/// Removes every [`FORWARDING_HEADERS`] entry. One pass over the names first: most requests
/// carry none, and then nothing else is looked up.
fn strip_forwarding_headers(headers: &mut HeaderMap) {
    let claims = |n: &HeaderName| {
        let n = n.as_str();
        n.starts_with("x-forwarded-") || n == "forwarded" || n == "x-real-ip"
    };
    if !headers.keys().any(claims) {
        return;
    }
    for name in FORWARDING_HEADERS {
        headers.remove(*name);
    }
}
/// The request as it goes upstream (path already rewritten, headers already prepared).
pub struct Outbound {
    pub method: http::Method,
    pub path_and_query: http::uri::PathAndQuery,
    pub headers: HeaderMap,
    pub body: RequestBody,
    /// The client asked to switch protocols (WebSocket and friends).
    pub upgrade: bool,
}

/// An upstream's answer.
pub struct Forwarded {
    pub response: Response<ProxyBody>,
    /// Index of the endpoint that answered, in the route's group.
    pub endpoint: usize,
    /// After a 101: the upstream side of the tunnel.
    pub tunnel: Option<UpstreamTunnel>,
}

/// The upstream side of a switched-protocol connection.
pub enum UpstreamTunnel {
    /// From hyper's client (h2c and HTTPS upstreams).
    Hyper(hyper::upgrade::OnUpgrade),
    /// The socket of swarmgate's own HTTP/1.1 client, with bytes already read past the head.
    Http1(tokio::net::TcpStream, bytes::BytesMut),
}

/// What the handler knows about the client side of a request.
pub struct ClientSide<'a> {
    /// The client's IP as a header value, formatted once per connection.
    pub ip: &'a HeaderValue,
    pub https: bool,
    /// Normalised-as-sent host (with port if any), for `Host` and `X-Forwarded-Host`.
    pub host: &'a str,
    /// The peer is one of `[forwarding] trusted_proxies` (decided once per connection).
    pub trusted: bool,
}

impl Forwarder {
    pub fn new(limits: &Limits, forwarding: &ForwardingConfig) -> Self {
        Forwarder {
            response_timeout: limits.upstream_response_timeout.0,
            connect_timeout: limits.upstream_connect_timeout.0,
            add_via: forwarding.via,
            max_body_bytes: limits.max_body_bytes,
            // Validated with the config; an entry that does not parse trusts nobody.
            trusted: forwarding.trusted_proxies.iter().filter_map(|c| parse_cidr(c).ok()).collect(),
        }
    }

    /// True when `peer` is a trusted proxy, whose forwarding headers are believed. Called once
    /// per client connection.
    pub fn trusts(&self, peer: IpAddr) -> bool {
        self.trusted.iter().any(|(net, len)| ip_in(peer, *net, *len))
    }

    /// Adds the forwarding headers and strips hop-by-hop ones, in place. From a client that is
    /// not a trusted proxy, whatever it claims about earlier hops is dropped first, so the
    /// upstream sees only what swarmgate knows (`X-Forwarded-For` and `X-Real-IP` = the peer).
    /// A trusted proxy's claims are kept: `X-Forwarded-For` is appended to, the others are left.
    pub fn prepare_headers(&self, headers: &mut HeaderMap, client: &ClientSide<'_>, upgrade: bool, pass_host: bool) {
        strip_hop_by_hop(headers, upgrade);
        if !client.trusted {
            strip_forwarding_headers(headers);
        }
        if !headers.contains_key(&X_REAL_IP) {
            headers.insert(X_REAL_IP.clone(), client.ip.clone());
        }
        let xff = match headers.get(&X_FORWARDED_FOR) {
            Some(prev) => {
                let mut v = Vec::with_capacity(prev.len() + 2 + client.ip.len());
                v.extend_from_slice(prev.as_bytes());
                v.extend_from_slice(b", ");
                v.extend_from_slice(client.ip.as_bytes());
                HeaderValue::from_bytes(&v).ok()
            }
            None => Some(client.ip.clone()),
        };
        if let Some(v) = xff {
            headers.insert(X_FORWARDED_FOR.clone(), v);
        }
        // A trusted proxy in front (a TLS-terminating load balancer) knows the original scheme.
        if !(client.trusted && headers.contains_key(&X_FORWARDED_PROTO)) {
            let proto = HeaderValue::from_static(if client.https { "https" } else { "http" });
            headers.insert(X_FORWARDED_PROTO.clone(), proto);
        }
        let keep_host = client.trusted && headers.contains_key(&X_FORWARDED_HOST);
        // The client's Host value is usually the host we routed by: reuse it (a cheap clone)
        // and leave `Host` as it is.
        match headers.get(header::HOST) {
            Some(h) if h.as_bytes() == client.host.as_bytes() => {
                let h = h.clone();
                if !pass_host {
                    headers.remove(header::HOST);
                }
                if !keep_host {
                    headers.insert(X_FORWARDED_HOST.clone(), h);
                }
            }
            _ => {
                if let Ok(h) = HeaderValue::from_str(client.host) {
                    if pass_host {
                        headers.insert(header::HOST, h.clone());
                    } else {
                        headers.remove(header::HOST);
                    }
                    if !keep_host {
                        headers.insert(X_FORWARDED_HOST.clone(), h);
                    }
                }
            }
        }
        if self.add_via {
            headers.append(header::VIA, HeaderValue::from_static("1.1 swarmgate"));
        }
    }

    /// Sends the request to an endpoint of `group` and returns the response (body streaming)
    /// with the index of the endpoint that answered. Retries on another endpoint when that is
    /// safe: always when nothing was sent (connect failure, or a pooled connection that had
    /// closed before the request head went out), and up to `retries` times for idempotent
    /// requests without a body when a reused connection closed before any response (the
    /// upstream's keep-alive timer racing the request) — then on a new connection.
    pub async fn send(
        &self,
        group: &UpstreamGroup,
        ctx: &PickContext<'_>,
        out: Outbound,
        retries: u32,
        errors: &std::sync::atomic::AtomicU64,
    ) -> Result<Forwarded, UpstreamError> {
        if group.scheme != UpstreamScheme::Http {
            // Boxed: its future is large and would otherwise size every request's state.
            return Box::pin(self.send_legacy(group, ctx, out, retries, errors)).await;
        }
        let Outbound { method, path_and_query, mut headers, body, upgrade } = out;
        let idempotent = is_idempotent(&method);
        // Requests without a body (most) send only their head. A body of unknown length (an
        // HTTP/2 client's, or a chunked one) goes as chunks.
        let mut body = (!http_body::Body::is_end_stream(&body)).then(|| {
            let chunked = !headers.contains_key(header::CONTENT_LENGTH);
            OutgoingBody::new(body, chunked)
        });
        let chunked = body.as_ref().is_some_and(OutgoingBody::is_chunked);
        let mut tried: u64 = 0;
        let mut exchange_retries_left = retries;
        let max_attempts = group.endpoints.len().clamp(1, 64) + retries as usize + 1;
        let mut last_err = UpstreamError::NoEndpoint;
        let mut fresh = false;
        let mut head = Vec::new();
        for _ in 0..max_attempts {
            let Some(idx) = group.pick(ctx, tried) else { break };
            let endpoint = &group.endpoints[idx];
            if !group.pass_host {
                headers.insert(header::HOST, endpoint.host_header.clone());
            }
            head.clear();
            codec::encode_request_head(&mut head, &method, path_and_query.as_str(), &headers, chunked);
            let mut inflight = endpoint.start();
            let checkout = endpoint.pool.checkout(endpoint.addr, self.connect_timeout, fresh);
            let mut conn = match checkout.await {
                Ok(c) => {
                    // Connection set-up is a one-off cost, not the endpoint's response time.
                    if !c.reused {
                        inflight.restart_clock();
                    }
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
            let (mut response_head, sent) =
                match conn.exchange(&head, body.as_mut(), upgrade, self.response_timeout).await {
                    Ok(answer) => answer,
                    Err(ExchangeError::Timeout(timeout)) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                        // A stall while the client's body was still coming may be the client's.
                        if !body.as_ref().is_some_and(OutgoingBody::is_active) {
                            inflight.failure();
                        }
                        return Err(UpstreamError::Timeout { addr: endpoint.addr, timeout });
                    }
                    // The client broke its own request: not the endpoint's fault.
                    Err(ExchangeError::ClientBody(RequestBodyError::TooLarge(max))) => {
                        return Err(UpstreamError::BodyTooLarge(max))
                    }
                    Err(ExchangeError::ClientBody(e)) => return Err(UpstreamError::ClientBody(e.to_string())),
                    Err(ExchangeError::ClientStalled(t)) => return Err(UpstreamError::ClientStalled(t)),
                    Err(e) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                        let reused = conn.reused;
                        last_err = UpstreamError::Exchange { addr: endpoint.addr, reason: e.to_string() };
                        match e {
                            // The pooled connection had closed: not the endpoint's fault, and
                            // nothing reached it. Go again on a new connection.
                            ExchangeError::NotSent(_) if reused => {
                                fresh = true;
                                continue;
                            }
                            ExchangeError::NotSent(_) => {
                                inflight.failure();
                                tried |= 1u64 << idx.min(63);
                                continue;
                            }
                            // The keep-alive race: the upstream closed the idle connection as the
                            // request went out. Only safe to repeat if repeating changes nothing.
                            ExchangeError::NoResponse(_)
                                if reused && idempotent && body.is_none() && exchange_retries_left > 0 =>
                            {
                                exchange_retries_left -= 1;
                                fresh = true;
                                continue;
                            }
                            _ => {
                                inflight.failure();
                                return Err(last_err);
                            }
                        }
                    }
                };
            inflight.success();
            let status = response_head.status;
            let mut response = Response::new(ProxyBody::empty());
            *response.status_mut() = status;
            if let Some(reason) = response_head.reason.take() {
                response.extensions_mut().insert(reason);
            }
            if status == StatusCode::SWITCHING_PROTOCOLS {
                *response.headers_mut() = response_head.headers;
                let (io, leftover) = conn.into_tunnel();
                return Ok(Forwarded { response, endpoint: idx, tunnel: Some(UpstreamTunnel::Http1(io, leftover)) });
            }
            let length = match codec::response_body_length(&mut response_head, &method) {
                Ok(length) => length,
                Err(e) => return Err(UpstreamError::Exchange { addr: endpoint.addr, reason: e.to_string() }),
            };
            let reusable = sent && !response_head.close;
            *response.headers_mut() = response_head.headers;
            *response.body_mut() = match upstream::response_body(conn, length, reusable, endpoint, body.take()) {
                Ok(b) => b,
                Err(e) => return Err(UpstreamError::Exchange { addr: endpoint.addr, reason: e.to_string() }),
            };
            return Ok(Forwarded { response, endpoint: idx, tunnel: None });
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
    ) -> Result<Forwarded, UpstreamError> {
        let Outbound { method, path_and_query, headers, mut body, upgrade: _ } = out;
        let idempotent = is_idempotent(&method);
        let mut tried: u64 = 0;
        let mut exchange_retries_left = retries;
        let max_attempts = group.endpoints.len().clamp(1, 64) + retries as usize;
        let mut last_err = UpstreamError::NoEndpoint;
        // TLS and h2c upstreams take the host from the URI (`:authority` over HTTP/2, `Host`
        // over HTTP/1.1): never both, never two values.
        let mut headers = headers;
        let client_host = headers.remove(header::HOST).filter(|_| group.pass_host);
        for _ in 0..max_attempts {
            let Some(idx) = group.pick(ctx, tried) else { break };
            tried |= 1u64 << idx.min(63);
            let endpoint = &group.endpoints[idx];
            let (tls, h2c) = (group.tls.get(idx), group.h2c.get(idx));
            let authority = match (tls, h2c) {
                (Some(tls), _) => tls.authority_for(client_host.as_ref()),
                (None, Some(h2c)) => h2c.authorities.authority_for(client_host.as_ref()),
                (None, None) => endpoint.authority.clone(),
            };
            let uri = Uri::builder()
                .scheme(if group.scheme == UpstreamScheme::Https { "https" } else { "http" })
                .authority(authority)
                .path_and_query(path_and_query.clone())
                .build()
                .map_err(|_| UpstreamError::NoEndpoint)?;
            let end_stream = http_body::Body::is_end_stream(&body);
            let overflow = body.overflow();
            let (wrapped, reclaim) = ReclaimableBody::new(body);
            let mut req = Request::new(wrapped);
            *req.method_mut() = method.clone();
            *req.uri_mut() = uri;
            *req.headers_mut() = headers.clone();
            let mut inflight = endpoint.start();
            let request = match (group.scheme, tls, h2c) {
                (UpstreamScheme::H2c, _, Some(h2c)) => h2c.client.request(req),
                (UpstreamScheme::Https, Some(tls), _) => tls.client.request(req),
                // Never cleartext to an `https` upstream (the table always gives each endpoint
                // of `https` and `h2c` groups a client); plain HTTP goes through `send`.
                _ => return Err(UpstreamError::NoEndpoint),
            };
            let result = tokio::time::timeout(self.response_timeout, request).await;
            match result {
                Ok(Ok(mut resp)) => {
                    inflight.success();
                    let tunnel = if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
                        Some(UpstreamTunnel::Hyper(hyper::upgrade::on(&mut resp)))
                    } else {
                        strip_hop_by_hop(resp.headers_mut(), false);
                        None
                    };
                    let (parts, body) = resp.into_parts();
                    let response = Response::from_parts(parts, ProxyBody::Upstream(body));
                    return Ok(Forwarded { response, endpoint: idx, tunnel });
                }
                Ok(Err(e)) if e.is_connect() => {
                    errors.fetch_add(1, Ordering::Relaxed);
                    if inflight.failure() {
                        tracing::warn!(upstream = %endpoint.addr, "ejecting upstream after repeated connect failures");
                    }
                    // The cause says why (refused, or which certificate check failed).
                    last_err = UpstreamError::Connect { addr: endpoint.addr, reason: error_chain(&e) };
                    match reclaim.await {
                        Ok(b) => body = b,
                        Err(_) => return Err(last_err),
                    }
                }
                // The client's fault: not counted against the endpoint.
                Ok(Err(_)) if overflow.happened() => {
                    return Err(UpstreamError::BodyTooLarge(self.max_body_bytes));
                }
                Ok(Err(e)) => {
                    errors.fetch_add(1, Ordering::Relaxed);
                    inflight.failure();
                    last_err = UpstreamError::Exchange { addr: endpoint.addr, reason: error_chain(&e) };
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
pub fn splice_upgrade(client: hyper::upgrade::OnUpgrade, upstream: UpstreamTunnel) {
    tokio::spawn(async move {
        let client = match client.await {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(error = %e, "client upgrade failed");
                return;
            }
        };
        let mut client = TokioIo::new(client);
        match upstream {
            UpstreamTunnel::Hyper(upstream) => match upstream.await {
                Ok(u) => {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut TokioIo::new(u)).await;
                }
                Err(e) => tracing::debug!(error = %e, "upstream upgrade failed"),
            },
            UpstreamTunnel::Http1(mut io, leftover) => {
                use tokio::io::AsyncWriteExt;
                if !leftover.is_empty() && client.write_all(&leftover).await.is_err() {
                    return;
                }
                let _ = tokio::io::copy_bidirectional(&mut client, &mut io).await;
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trust_covers_ipv4_ipv6_and_ipv4_mapped_peers() {
        let forwarding = ForwardingConfig {
            trusted_proxies: vec!["10.0.0.0/8".into(), "2001:db8::/32".into(), "192.0.2.7".into()],
            ..Default::default()
        };
        let f = Forwarder::new(&Limits::default(), &forwarding);
        for ip in ["10.1.2.3", "2001:db8::1", "::ffff:10.9.9.9", "192.0.2.7"] {
            assert!(f.trusts(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["11.0.0.1", "2001:db9::1", "192.0.2.8", "::1"] {
            assert!(!f.trusts(ip.parse().unwrap()), "{ip}");
        }
        assert!(!Forwarder::new(&Limits::default(), &ForwardingConfig::default()).trusts("127.0.0.1".parse().unwrap()));
    }
}
