//! `RouteTable`: the compiled, immutable routing table the data plane reads.
//!
//! Everything that can be decided once per route is decided here (host index, route order,
//! header values, redirect templates, regexes, the balancer group) so a request only looks
//! things up. A table is published through `ArcSwap`; requests in flight keep the table they
//! started with.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderName, HeaderValue};
use rustc_hash::FxHashMap;

use super::spec::*;
use crate::admin::metrics::{Metrics, RouteMetrics};
use crate::proxy::balancer::{now_ns, EndpointRegistry, UpstreamGroup};
use crate::proxy::route_state::RouteStates;

/// Inputs to `compile` beyond the specs.
pub struct CompileOptions<'a> {
    pub registry: &'a EndpointRegistry,
    /// Per-route state kept across tables (rate limits, auth cache, round robin).
    pub states: &'a RouteStates,
    pub metrics: &'a Metrics,
    /// Names covered by static certificates (exact or `*.` wildcard), for the redirect default.
    pub static_cert_names: &'a BTreeSet<String>,
    pub generation: u64,
}

/// How a plain-HTTP request to a route is treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedirectHttps {
    Never,
    Always,
    /// Redirect only once a certificate for the host is live (ACME), so a host whose
    /// certificate is still being ordered keeps answering on HTTP.
    WhenCertificate,
}

/// A route's action, ready to run.
#[derive(Debug)]
pub enum CompiledAction {
    Proxy(Arc<UpstreamGroup>),
    Redirect { location: RedirectTemplate, status: http::StatusCode },
    Respond { status: http::StatusCode, body: Bytes },
}

/// A redirect target split around `{uri}` once, at build time.
#[derive(Debug, Clone)]
pub struct RedirectTemplate {
    pub before: String,
    /// `Some(after)` when the template contains `{uri}`.
    pub after: Option<String>,
}

impl RedirectTemplate {
    pub fn new(location: &str) -> Self {
        match location.split_once("{uri}") {
            Some((a, b)) => RedirectTemplate { before: a.into(), after: Some(b.into()) },
            None => RedirectTemplate { before: location.into(), after: None },
        }
    }

    pub fn render(&self, path_and_query: &str) -> String {
        match &self.after {
            Some(after) => format!("{}{}{}", self.before, path_and_query, after),
            None => self.before.clone(),
        }
    }
}

/// Precomputed header edits.
#[derive(Debug, Default)]
pub struct CompiledHeaders {
    pub set: Vec<(HeaderName, HeaderValue)>,
    pub add: Vec<(HeaderName, HeaderValue)>,
    pub remove: Vec<HeaderName>,
}

impl CompiledHeaders {
    pub fn apply(&self, headers: &mut http::HeaderMap) {
        for name in &self.remove {
            headers.remove(name);
        }
        for (name, value) in &self.set {
            headers.insert(name.clone(), value.clone());
        }
        for (name, value) in &self.add {
            headers.append(name.clone(), value.clone());
        }
    }

    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.add.is_empty() && self.remove.is_empty()
    }
}

/// `Authorization` values already verified for a route. bcrypt is deliberately slow (tens of
/// ms), so each distinct credential is verified once for as long as the route's users are
/// unchanged (kept across tables by `RouteStates`). Bounded: at most 1,024 entries.
///
/// It holds a keyed SHA-256 of each accepted value, never the value (a base64 password): a core
/// dump or a heap read shows no credential, and the key, random per process, keeps the digests
/// from being matched against a table of precomputed ones.
#[derive(Debug, Default)]
pub struct AuthCache(dashmap::DashSet<[u8; 32]>);

impl AuthCache {
    fn digest(value: &[u8]) -> [u8; 32] {
        use sha2::{Digest, Sha256};
        static KEY: std::sync::LazyLock<[u8; 32]> = std::sync::LazyLock::new(|| {
            let mut k = [0u8; 32];
            if getrandom::fill(&mut k).is_err() {
                // No OS randomness (never seen on Linux): the digest still hides the password.
                k.iter_mut().for_each(|b| *b = fastrand::u8(..));
            }
            k
        });
        Sha256::new().chain_update(*KEY).chain_update(value).finalize().into()
    }
}

/// Basic auth with its cache of accepted credentials.
#[derive(Debug)]
pub struct BasicAuth {
    pub realm: String,
    pub challenge: HeaderValue,
    users: Vec<(String, String)>,
    accepted: Arc<AuthCache>,
}

/// At most this many bcrypt verifications run at once, process-wide. bcrypt costs tens of
/// milliseconds of CPU by design; unbounded, a flood of wrong passwords (never cached) would
/// take every core and the whole blocking pool.
static VERIFY_SLOTS: std::sync::LazyLock<tokio::sync::Semaphore> = std::sync::LazyLock::new(|| {
    tokio::sync::Semaphore::new(std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2))
});

impl BasicAuth {
    /// Basic auth with a cache of its own (the admin listener; routes swap in theirs, which
    /// survives table rebuilds).
    pub fn new(realm: &str, users: Vec<(String, String)>) -> Self {
        BasicAuth {
            challenge: HeaderValue::from_str(&format!("Basic realm=\"{}\"", realm.replace('"', "")))
                .unwrap_or_else(|_| HeaderValue::from_static("Basic realm=\"restricted\"")),
            realm: realm.to_owned(),
            users,
            accepted: Arc::default(),
        }
    }

    /// True when `authorization` carries valid credentials. A credential already accepted is
    /// answered at once; a new one is verified on the blocking pool (never on a serving
    /// thread, which would stall every connection it carries), a bounded number at a time.
    pub async fn check(&self, authorization: Option<&HeaderValue>) -> bool {
        use base64::Engine;
        let Some(value) = authorization else {
            return false;
        };
        if self.accepted.0.contains(&AuthCache::digest(value.as_bytes())) {
            return true;
        }
        let Some(encoded) = value.to_str().ok().and_then(|v| v.strip_prefix("Basic ")) else {
            return false;
        };
        let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(encoded.trim()) else {
            return false;
        };
        let Ok(decoded) = String::from_utf8(decoded) else {
            return false;
        };
        let Some((user, password)) = decoded.split_once(':') else {
            return false;
        };
        let hashes: Vec<String> = self.users.iter().filter(|(u, _)| u == user).map(|(_, h)| h.clone()).collect();
        if hashes.is_empty() {
            return false;
        }
        let Ok(_slot) = VERIFY_SLOTS.acquire().await else {
            return false;
        };
        let password = password.to_owned();
        let verify = move || hashes.iter().any(|h| crate::password::verify(&password, h));
        let ok = tokio::task::spawn_blocking(verify).await.unwrap_or(false);
        if ok && self.accepted.0.len() < 1024 {
            self.accepted.0.insert(AuthCache::digest(value.as_bytes()));
        }
        ok
    }
}

/// A lock-free token bucket (GCRA): one atomic compare-and-swap per request.
#[derive(Debug)]
pub struct RateLimiter {
    interval_ns: u64,
    tolerance_ns: u64,
    tat_ns: AtomicU64,
}

impl RateLimiter {
    pub fn new(average: u64, period: std::time::Duration, burst: u64) -> Self {
        // Numbers come from labels: saturate rather than overflow (a huge burst means "no limit
        // in practice", never a panic or a wrapped-around tiny bucket).
        let period_ns = u64::try_from(period.as_nanos()).unwrap_or(u64::MAX);
        let interval_ns = (period_ns / average.max(1)).max(1);
        // `burst` requests may arrive at once: the bucket tolerates burst-1 intervals of debt.
        let tolerance_ns = interval_ns.saturating_mul(burst.max(1) - 1);
        RateLimiter { interval_ns, tolerance_ns, tat_ns: AtomicU64::new(0) }
    }

    /// True if the request may pass.
    pub fn allow(&self) -> bool {
        let now = now_ns();
        let mut tat = self.tat_ns.load(Ordering::Relaxed);
        loop {
            let start = tat.max(now);
            if start - now > self.tolerance_ns {
                return false;
            }
            let next = start.saturating_add(self.interval_ns);
            match self.tat_ns.compare_exchange_weak(tat, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return true,
                Err(actual) => tat = actual,
            }
        }
    }
}

/// A predicate with its regexes compiled.
#[derive(Debug)]
pub enum CompiledPredicate {
    Header { name: HeaderName, value: CompiledValue },
    Method(Vec<http::Method>),
    Query { name: String, value: CompiledValue },
    ClientIp { net: IpAddr, prefix_len: u8 },
    Path(PathMatch),
    Host(String),
    And(Vec<CompiledPredicate>),
    Or(Vec<CompiledPredicate>),
    Not(Box<CompiledPredicate>),
}

#[derive(Debug)]
pub enum CompiledValue {
    Present,
    Exact(String),
    Contains(String),
    Prefix(String),
    Suffix(String),
    Regex(regex::Regex),
}

impl CompiledValue {
    fn matches(&self, v: &str) -> bool {
        match self {
            CompiledValue::Present => true,
            CompiledValue::Exact(x) => v == x,
            // `x` was lower-cased at build time; compare without allocating per request.
            CompiledValue::Contains(x) => {
                x.is_empty() || v.as_bytes().windows(x.len()).any(|w| w.eq_ignore_ascii_case(x.as_bytes()))
            }
            CompiledValue::Prefix(x) => v.starts_with(x.as_str()),
            CompiledValue::Suffix(x) => v.ends_with(x.as_str()),
            CompiledValue::Regex(r) => r.is_match(v),
        }
    }
}

/// What a predicate may look at.
pub struct RequestFacts<'a> {
    pub method: &'a http::Method,
    pub host: &'a str,
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub headers: &'a http::HeaderMap,
    pub client_ip: Option<IpAddr>,
}

impl CompiledPredicate {
    pub fn matches(&self, r: &RequestFacts<'_>) -> bool {
        match self {
            CompiledPredicate::Header { name, value } => {
                r.headers.get_all(name).iter().any(|v| v.to_str().map(|v| value.matches(v)).unwrap_or(false))
            }
            CompiledPredicate::Method(ms) => ms.iter().any(|m| m == r.method),
            CompiledPredicate::Query { name, value } => r.query.is_some_and(|q| {
                q.split('&').any(|pair| {
                    let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                    k == name && value.matches(v)
                })
            }),
            CompiledPredicate::ClientIp { net, prefix_len } => {
                r.client_ip.is_some_and(|ip| ip_in(ip, *net, *prefix_len))
            }
            CompiledPredicate::Path(p) => p.matches(r.path),
            CompiledPredicate::Host(h) => host_matches(h, r.host),
            CompiledPredicate::And(ps) => ps.iter().all(|p| p.matches(r)),
            CompiledPredicate::Or(ps) => ps.iter().any(|p| p.matches(r)),
            CompiledPredicate::Not(p) => !p.matches(r),
        }
    }
}

fn host_matches(pattern: &str, host: &str) -> bool {
    match pattern.strip_prefix("*.") {
        Some(suffix) => host.split_once('.').is_some_and(|(_, rest)| rest == suffix),
        None => pattern == host,
    }
}

/// True when `ip` is inside `net/prefix` (an IPv4-mapped IPv6 address counts as IPv4).
pub fn ip_in(ip: IpAddr, net: IpAddr, prefix: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(b)) => {
            let mask = if prefix == 0 { 0 } else { u32::MAX << (32 - u32::from(prefix.min(32))) };
            u32::from(a) & mask == u32::from(b) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(b)) => {
            let mask = if prefix == 0 { 0 } else { u128::MAX << (128 - u32::from(prefix.min(128))) };
            u128::from(a) & mask == u128::from(b) & mask
        }
        (IpAddr::V6(a), IpAddr::V4(_)) => a.to_ipv4_mapped().is_some_and(|a| ip_in(IpAddr::V4(a), net, prefix)),
        _ => false,
    }
}

/// One route, compiled.
#[derive(Debug)]
pub struct CompiledRoute {
    pub id: Arc<str>,
    pub spec: RouteSpec,
    pub path: PathMatch,
    pub predicate: Option<CompiledPredicate>,
    pub action: CompiledAction,
    pub strip_prefix: Option<String>,
    pub replace_prefix: Option<(String, String)>,
    pub add_prefix: Option<String>,
    pub request_headers: CompiledHeaders,
    pub response_headers: CompiledHeaders,
    pub basic_auth: Option<BasicAuth>,
    pub forward_auth: Option<Arc<CompiledForwardAuth>>,
    /// Regex prefix strips, path replacement, regex redirect and IP allow list (rarer steps,
    /// boxed together so that routes without them stay small).
    pub extra: Option<Box<ExtraSteps>>,
    /// `MaxBodyBytes` (0: only `[limits] max_body_bytes`).
    pub max_body_bytes: u64,
    pub compress: Option<CompiledCompress>,
    pub cors: Option<Arc<CompiledCors>>,
    pub errors: Option<Arc<CompiledErrors>>,
    /// `InFlightLimit`: the limit and the route's counter (kept across table swaps).
    pub in_flight: Option<(usize, Arc<std::sync::atomic::AtomicUsize>)>,
    pub rate_limit: Option<Arc<RateLimiter>>,
    /// Extra attempts on another endpoint for idempotent requests after a failure.
    pub retries: u32,
    pub redirect_https: RedirectHttps,
    pub on_http: bool,
    pub on_https: bool,
    pub metrics: Arc<RouteMetrics>,
    order: (i64, usize),
}

/// The `Errors` step.
#[derive(Debug)]
pub struct CompiledErrors {
    pub group: Arc<UpstreamGroup>,
    pub statuses: Vec<(u16, u16)>,
    /// The page's path and query, `{status}` filled in per response.
    pub query: String,
}

impl CompiledErrors {
    pub fn covers(&self, status: u16) -> bool {
        self.statuses.iter().any(|(lo, hi)| (*lo..=*hi).contains(&status))
    }
}

/// The `Cors` step, its header values built once.
#[derive(Debug)]
pub struct CompiledCors {
    pub any_origin: bool,
    pub origins: Vec<String>,
    pub origin_regex: Vec<regex::Regex>,
    pub credentials: bool,
    pub vary: bool,
    pub methods: Option<HeaderValue>,
    pub headers: Option<HeaderValue>,
    pub expose: Option<HeaderValue>,
    pub max_age: Option<HeaderValue>,
}

impl CompiledCors {
    /// Whether `origin` may read responses.
    pub fn allows(&self, origin: &str) -> bool {
        self.any_origin
            || self.origins.iter().any(|o| o == origin)
            || self.origin_regex.iter().any(|r| r.is_match(origin))
    }
}

fn compile_cors(c: &Cors) -> Result<CompiledCors, String> {
    let joined = |v: &[String]| -> Result<Option<HeaderValue>, String> {
        if v.is_empty() {
            return Ok(None);
        }
        HeaderValue::from_str(&v.join(", ")).map(Some).map_err(|_| format!("{v:?} is not a valid header value"))
    };
    Ok(CompiledCors {
        any_origin: c.origins.iter().any(|o| o == "*"),
        origins: c.origins.clone(),
        origin_regex: c.origin_regex.iter().map(|r| bounded_regex(r)).collect::<Result<_, _>>()?,
        credentials: c.credentials,
        vary: c.vary,
        methods: joined(&c.methods)?,
        headers: joined(&c.headers)?,
        expose: joined(&c.expose)?,
        max_age: c.max_age.map(HeaderValue::from),
    })
}

/// The `Compress` step (see `proxy::compress`).
#[derive(Debug, Clone)]
pub struct CompiledCompress {
    pub min_bytes: u64,
    pub include: Vec<String>,
    pub exclude: Vec<String>,
}

/// The rarer per-route steps, compiled once at table-build time.
#[derive(Debug, Default)]
pub struct ExtraSteps {
    pub strip_regex: Vec<regex::Regex>,
    pub replace_path: Option<(Option<regex::Regex>, String)>,
    pub redirect: Option<(regex::Regex, String, http::StatusCode)>,
    /// Allowed ranges and the `X-Forwarded-For` depth.
    pub allow: Option<(Vec<(IpAddr, u8)>, u32)>,
}

impl ExtraSteps {
    /// The path after the regex strip and the replacement, and what the strip removed.
    pub fn rewrite<'a>(&self, path: std::borrow::Cow<'a, str>) -> (std::borrow::Cow<'a, str>, Option<String>) {
        use std::borrow::Cow;
        let mut out = path;
        let mut stripped = None;
        if let Some(m) = self.strip_regex.iter().find_map(|re| re.find(&out).filter(|m| m.start() == 0)) {
            let (removed, rest) = out.split_at(m.end());
            stripped = Some(removed.to_owned());
            out = Cow::Owned(if rest.starts_with('/') { rest.to_owned() } else { format!("/{rest}") });
        }
        match &self.replace_path {
            Some((None, to)) => out = Cow::Owned(to.clone()),
            Some((Some(re), to)) if re.is_match(&out) => out = Cow::Owned(re.replace(&out, to.as_str()).into_owned()),
            _ => {}
        }
        (out, stripped)
    }

    /// Whether the client may in: the peer, or a trusted proxy's `X-Forwarded-For` entry at
    /// the configured depth (counted from the right; a list too short for it is refused).
    pub fn allows(&self, peer: IpAddr, trusted: bool, xff: Option<&str>) -> bool {
        let Some((ranges, depth)) = &self.allow else { return true };
        let client = if *depth > 0 && trusted {
            let hops: Vec<&str> = xff.unwrap_or("").split(',').map(str::trim).filter(|h| !h.is_empty()).collect();
            match hops.len().checked_sub(*depth as usize).and_then(|i| hops.get(i)) {
                Some(h) => match h.parse::<IpAddr>() {
                    Ok(ip) => ip,
                    Err(_) => return false,
                },
                None => return false,
            }
        } else {
            peer
        };
        ranges.iter().any(|(net, bits)| ip_in(client, *net, *bits))
    }
}

/// Regular expressions from labels are bounded: the regex crate matches in linear time, and
/// these limits bound the compiled program and the lazy DFA's cache (which otherwise grows
/// while matching, per thread), so a hostile label cannot take memory without end. Real
/// redirect and path patterns are a few dozen bytes.
fn bounded_regex(re: &str) -> Result<regex::Regex, String> {
    if re.len() > 4096 {
        return Err(format!("regex of {} bytes is longer than 4096", re.len()));
    }
    regex::RegexBuilder::new(re)
        .size_limit(256 * 1024)
        .dfa_size_limit(256 * 1024)
        .build()
        .map_err(|e| format!("regex {re:?}: {e}"))
}

/// A forward-auth step, with its header names parsed once at build time.
#[derive(Debug)]
pub struct CompiledForwardAuth {
    /// The authentication service's endpoints (its own route's group).
    pub group: Arc<UpstreamGroup>,
    pub path_and_query: http::uri::PathAndQuery,
    pub copy_headers: Vec<(HeaderName, HeaderName)>,
    pub request_headers: Option<Vec<HeaderName>>,
}

/// The upstream groups of side services, by their own route's id (`<route>/auth`,
/// `<route>/errors`).
type SideServices = std::collections::HashMap<String, Arc<UpstreamGroup>>;

impl CompiledRoute {
    /// True when the path rewrite middlewares would change the path.
    pub fn rewrites_path(&self) -> bool {
        self.strip_prefix.is_some()
            || self.replace_prefix.is_some()
            || self.add_prefix.is_some()
            || self.extra.as_ref().is_some_and(|e| !e.strip_regex.is_empty() || e.replace_path.is_some())
    }

    /// The upstream path for `path` after every rewrite, in a fixed order: literal prefix
    /// strip, regex strip, path replacement, prefix replacement, added prefix; and what a
    /// regex strip removed (for `X-Forwarded-Prefix`).
    pub fn rewrite_path_and_prefix<'a>(&self, path: &'a str) -> (std::borrow::Cow<'a, str>, Option<String>) {
        use std::borrow::Cow;
        let mut out: Cow<'a, str> = Cow::Borrowed(path);
        if let Some(prefix) = &self.strip_prefix {
            if let Some(rest) = out.strip_prefix(prefix.as_str()) {
                out = if rest.starts_with('/') { Cow::Owned(rest.to_owned()) } else { Cow::Owned(format!("/{rest}")) };
            }
        }
        let mut stripped = None;
        if let Some(extra) = &self.extra {
            (out, stripped) = extra.rewrite(out);
        }
        if let Some((from, to)) = &self.replace_prefix {
            if let Some(rest) = out.strip_prefix(from.as_str()) {
                out = Cow::Owned(format!("{to}{rest}"));
            }
        }
        if let Some(prefix) = &self.add_prefix {
            out = Cow::Owned(format!("{}{}", prefix.trim_end_matches('/'), out));
        }
        (out, stripped)
    }

    /// The upstream path for `path` after strip/replace/add prefix.
    pub fn rewrite_path<'a>(&self, path: &'a str) -> std::borrow::Cow<'a, str> {
        self.rewrite_path_and_prefix(path).0
    }
}

/// Routes for one host, most specific first.
#[derive(Debug, Default)]
struct HostRoutes {
    routes: Vec<Arc<CompiledRoute>>,
}

/// Result of a lookup.
#[derive(Debug)]
pub enum Lookup<'a> {
    /// No route names this host: answer 404 from the proxy, never forward.
    UnknownHost,
    /// The host is known but no route matches this request.
    NoRoute,
    Route(&'a Arc<CompiledRoute>),
}

/// The immutable routing table.
#[derive(Debug, Default)]
pub struct RouteTable {
    exact: FxHashMap<Box<str>, HostRoutes>,
    /// Keyed by the suffix after `*.`.
    wildcard: FxHashMap<Box<str>, HostRoutes>,
    default: Option<HostRoutes>,
    /// Every compiled route, in spec order (for `check` and the admin API).
    pub routes: Vec<Arc<CompiledRoute>>,
    /// Problems found while compiling (and those the providers reported).
    pub problems: Vec<Problem>,
    pub generation: u64,
}

/// Normalises a Host header or URI authority: lower-case, no port, no trailing dot.
/// Borrows when nothing needs changing (the common case).
#[inline]
pub fn normalize_host(raw: &str) -> std::borrow::Cow<'_, str> {
    let without_port = if raw.starts_with('[') {
        match raw.find(']') {
            Some(end) => &raw[1..end],
            None => raw,
        }
    } else {
        match raw.rfind(':') {
            Some(i) if raw[i + 1..].bytes().all(|b| b.is_ascii_digit()) => &raw[..i],
            _ => raw,
        }
    };
    let trimmed = without_port.strip_suffix('.').unwrap_or(without_port);
    if trimmed.bytes().any(|b| b.is_ascii_uppercase()) {
        std::borrow::Cow::Owned(trimmed.to_ascii_lowercase())
    } else {
        std::borrow::Cow::Borrowed(trimmed)
    }
}

impl RouteTable {
    /// Finds the route for a request. `host` must be normalised (`normalize_host`).
    #[inline]
    pub fn lookup(&self, host: &str, facts: &RequestFacts<'_>, https: bool) -> Lookup<'_> {
        let entry = self
            .exact
            .get(host)
            .or_else(|| host.split_once('.').and_then(|(_, rest)| self.wildcard.get(rest)))
            .or(self.default.as_ref());
        let Some(entry) = entry else {
            return Lookup::UnknownHost;
        };
        for route in &entry.routes {
            if !(if https { route.on_https } else { route.on_http }) {
                continue;
            }
            if route.path.matches(facts.path) && route.predicate.as_ref().is_none_or(|p| p.matches(facts)) {
                return Lookup::Route(route);
            }
        }
        Lookup::NoRoute
    }

    /// True when some route names `host` exactly or by wildcard (not the default route).
    pub fn knows_host(&self, host: &str) -> bool {
        self.exact.contains_key(host) || host.split_once('.').is_some_and(|(_, rest)| self.wildcard.contains_key(rest))
    }

    /// Host names whose routes want an ACME certificate (`TlsPolicy::Auto`), public names only,
    /// without those covered by static certificates.
    pub fn acme_names(&self, static_cert_names: &BTreeSet<String>) -> BTreeSet<String> {
        let mut names = BTreeSet::new();
        for r in &self.routes {
            if r.spec.tls != TlsPolicy::Auto || !r.spec.entrypoints.https {
                continue;
            }
            for h in r.spec.hosts.iter().chain(r.spec.tls_domains.iter()) {
                if h == "*" || h.starts_with("*.") || !is_public_dns_name(h) || covered_by(static_cert_names, h) {
                    continue;
                }
                names.insert(h.clone());
            }
        }
        names
    }

    /// Host names of routes with `tls internal` (self-signed certificates made locally).
    pub fn internal_tls_names(&self) -> BTreeSet<String> {
        self.routes
            .iter()
            .filter(|r| r.spec.tls == TlsPolicy::Internal && r.spec.entrypoints.https)
            .flat_map(|r| r.spec.hosts.iter())
            .filter(|h| *h != "*" && !h.starts_with("*."))
            .cloned()
            .collect()
    }

    pub fn len(&self) -> usize {
        self.routes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }
}

/// True when `names` (exact names and `*.` wildcards) covers `host`.
pub fn covered_by(names: &BTreeSet<String>, host: &str) -> bool {
    names.contains(host) || host.split_once('.').is_some_and(|(_, rest)| names.contains(&format!("*.{rest}")))
}

fn compile_value(v: &ValueMatch, key: &str, problems: &mut Vec<Problem>, source: &str) -> Option<CompiledValue> {
    Some(match v {
        ValueMatch::Present => CompiledValue::Present,
        ValueMatch::Exact(x) => CompiledValue::Exact(x.clone()),
        ValueMatch::Contains(x) => CompiledValue::Contains(x.to_ascii_lowercase()),
        ValueMatch::Prefix(x) => CompiledValue::Prefix(x.clone()),
        ValueMatch::Suffix(x) => CompiledValue::Suffix(x.clone()),
        ValueMatch::Regex(r) => match regex::Regex::new(r) {
            Ok(re) => CompiledValue::Regex(re),
            Err(e) => {
                problems.push(Problem::new(source, key, format!("invalid regular expression {r:?}: {e}")));
                return None;
            }
        },
    })
}

fn compile_predicate(p: &Predicate, key: &str, problems: &mut Vec<Problem>, source: &str) -> Option<CompiledPredicate> {
    Some(match p {
        Predicate::Header { name, value } => CompiledPredicate::Header {
            name: match HeaderName::from_bytes(name.as_bytes()) {
                Ok(n) => n,
                Err(_) => {
                    problems.push(Problem::new(source, key, format!("invalid header name {name:?}")));
                    return None;
                }
            },
            value: compile_value(value, key, problems, source)?,
        },
        Predicate::Method(ms) => {
            let mut out = Vec::new();
            for m in ms {
                match http::Method::from_bytes(m.to_ascii_uppercase().as_bytes()) {
                    Ok(m) => out.push(m),
                    Err(_) => {
                        problems.push(Problem::new(source, key, format!("invalid method {m:?}")));
                        return None;
                    }
                }
            }
            CompiledPredicate::Method(out)
        }
        Predicate::Query { name, value } => {
            CompiledPredicate::Query { name: name.clone(), value: compile_value(value, key, problems, source)? }
        }
        Predicate::ClientIp { net, prefix_len } => CompiledPredicate::ClientIp { net: *net, prefix_len: *prefix_len },
        Predicate::Path(pm) => CompiledPredicate::Path(pm.clone()),
        Predicate::Host(h) => CompiledPredicate::Host(h.to_ascii_lowercase()),
        Predicate::And(ps) => CompiledPredicate::And(
            ps.iter().map(|p| compile_predicate(p, key, problems, source)).collect::<Option<_>>()?,
        ),
        Predicate::Or(ps) => CompiledPredicate::Or(
            ps.iter().map(|p| compile_predicate(p, key, problems, source)).collect::<Option<_>>()?,
        ),
        Predicate::Not(p) => CompiledPredicate::Not(Box::new(compile_predicate(p, key, problems, source)?)),
    })
}

fn compile_headers(
    edits: &HeaderEdits,
    key: &str,
    problems: &mut Vec<Problem>,
    source: &str,
) -> Option<CompiledHeaders> {
    let mut out = CompiledHeaders::default();
    let name = |n: &str, problems: &mut Vec<Problem>| match HeaderName::from_bytes(n.as_bytes()) {
        Ok(n) => Some(n),
        Err(_) => {
            problems.push(Problem::new(source, key, format!("invalid header name {n:?}")));
            None
        }
    };
    let value = |v: &str, problems: &mut Vec<Problem>| match HeaderValue::from_str(v) {
        Ok(v) => Some(v),
        Err(_) => {
            problems.push(Problem::new(source, key, format!("invalid header value {v:?}")));
            None
        }
    };
    for (n, v) in &edits.set {
        let n = name(n, problems)?;
        if v.is_empty() {
            out.remove.push(n);
        } else {
            out.set.push((n, value(v, problems)?));
        }
    }
    for (n, v) in &edits.add {
        out.add.push((name(n, problems)?, value(v, problems)?));
    }
    for n in &edits.remove {
        out.remove.push(name(n, problems)?);
    }
    Some(out)
}

fn source_of(spec: &RouteSpec) -> String {
    spec.provenance.source()
}

/// Compiles one spec; `None` (with problems) when the route cannot be served as written.
/// A route is never half-applied.
fn compile_route(
    spec: &RouteSpec,
    opts: &CompileOptions<'_>,
    auth: &SideServices,
    problems: &mut Vec<Problem>,
) -> Option<CompiledRoute> {
    let source = source_of(spec);
    let key = route_key(spec);
    let action = match &spec.action {
        Action::Proxy(up) => {
            let endpoints = match &up.target {
                UpstreamTarget::Static(eps) => eps.as_slice(),
                UpstreamTarget::Tasks(_) => {
                    problems.push(Problem::new(&source, &key, "upstream tasks were not resolved to addresses"));
                    return None;
                }
                UpstreamTarget::Names(_) => {
                    problems.push(Problem::new(&source, &key, "upstream names were not resolved to addresses"));
                    return None;
                }
            };
            let mut group = UpstreamGroup::new(
                opts.registry,
                endpoints,
                up.lb,
                up.scheme,
                up.pass_host,
                up.sticky_cookie.clone(),
                up.health.clone(),
            )
            .with_rr_cursor(opts.states.rr_cursor(&spec.id))
            .with_lb_options(up.lb_key.as_deref(), up.lb_fallback);
            if up.scheme == UpstreamScheme::H2c {
                let addrs: Vec<_> = group.endpoints.iter().map(|e| e.addr).collect();
                group.h2c = opts.registry.h2c.get(&addrs).into();
            }
            if up.scheme == UpstreamScheme::Https {
                let addrs: Vec<_> = group.endpoints.iter().map(|e| e.addr).collect();
                match opts.registry.tls.get(&up.tls, &addrs) {
                    Ok(clients) => group.tls = clients.into(),
                    Err(e) => {
                        problems.push(Problem::new(&source, &key, format!("{e}; the route is not served")));
                        return None;
                    }
                }
            }
            CompiledAction::Proxy(Arc::new(group))
        }
        Action::Redirect { location, status } => CompiledAction::Redirect {
            location: RedirectTemplate::new(location),
            status: match http::StatusCode::from_u16(*status) {
                Ok(s) if s.is_redirection() => s,
                _ => {
                    problems.push(Problem::new(&source, &key, format!("redirect status {status} is not a 3xx status")));
                    return None;
                }
            },
        },
        Action::Respond { status, body } => CompiledAction::Respond {
            status: match http::StatusCode::from_u16(*status) {
                Ok(s) => s,
                Err(_) => {
                    problems.push(Problem::new(&source, &key, format!("invalid status {status}")));
                    return None;
                }
            },
            body: Bytes::from(body.clone()),
        },
    };
    let mut route = CompiledRoute {
        id: spec.id.as_str().into(),
        spec: spec.clone(),
        path: spec.path.clone(),
        predicate: match &spec.predicate {
            Some(p) => Some(compile_predicate(p, &key, problems, &source)?),
            None => None,
        },
        action,
        strip_prefix: None,
        replace_prefix: None,
        add_prefix: None,
        request_headers: CompiledHeaders::default(),
        response_headers: CompiledHeaders::default(),
        basic_auth: None,
        forward_auth: None,
        extra: None,
        max_body_bytes: 0,
        compress: None,
        cors: None,
        errors: None,
        in_flight: None,
        rate_limit: None,
        retries: 1,
        redirect_https: RedirectHttps::Never,
        on_http: spec.entrypoints.http,
        // `tls = "off"` is plain HTTP only: never served on the HTTPS listener, whatever
        // certificate a client's SNI picked there.
        on_https: spec.entrypoints.https && spec.tls != TlsPolicy::Off,
        metrics: opts.metrics.route(&spec.id),
        order: (spec.priority, spec.path.specificity()),
    };
    for m in &spec.middlewares {
        match m {
            Middleware::StripPrefix(p) => route.strip_prefix = Some(p.trim_end_matches('/').to_owned()),
            Middleware::ReplacePrefix { from, to } => route.replace_prefix = Some((from.clone(), to.clone())),
            Middleware::AddPrefix(p) => route.add_prefix = Some(p.clone()),
            Middleware::RequestHeaders(e) => {
                let h = compile_headers(e, &key, problems, &source)?;
                route.request_headers.set.extend(h.set);
                route.request_headers.add.extend(h.add);
                route.request_headers.remove.extend(h.remove);
            }
            Middleware::ResponseHeaders(e) => {
                let h = compile_headers(e, &key, problems, &source)?;
                route.response_headers.set.extend(h.set);
                route.response_headers.add.extend(h.add);
                route.response_headers.remove.extend(h.remove);
            }
            Middleware::BasicAuth { realm, users } => {
                if users.is_empty() {
                    problems.push(Problem::new(&source, &key, "basic auth without users would lock everyone out"));
                    return None;
                }
                let users: Vec<(String, String)> = users.iter().map(|(u, h)| (u.clone(), h.clone())).collect();
                let accepted = opts.states.auth_cache(&spec.id, &users);
                route.basic_auth = Some(BasicAuth { accepted, ..BasicAuth::new(realm, users) })
            }
            Middleware::RateLimit { average, period, burst } => {
                route.rate_limit = Some(opts.states.rate_limiter(&spec.id, *average, *period, *burst))
            }
            Middleware::Retry { attempts } => route.retries = attempts.saturating_sub(1).min(8),
            Middleware::StripPrefixRegex(_)
            | Middleware::ReplacePath(_)
            | Middleware::ReplacePathRegex { .. }
            | Middleware::RedirectRegex { .. }
            | Middleware::IpAllowList { .. } => {
                let extra = route.extra.get_or_insert_with(Box::default);
                if let Err(e) = compile_extra(m, extra) {
                    problems.push(Problem::new(&source, &key, format!("{e}; the route is not served")));
                    return None;
                }
            }
            Middleware::Compress { min_bytes, include, exclude } => {
                // Lowered once here so that matching a response's type never allocates.
                let lower = |v: &[String]| v.iter().map(|t| t.trim().to_ascii_lowercase()).collect();
                route.compress =
                    Some(CompiledCompress { min_bytes: *min_bytes, include: lower(include), exclude: lower(exclude) })
            }
            Middleware::Errors(e) => {
                let group = auth.get(&format!("{}/errors", spec.id));
                let (Some(group), None) = (group, &e.service) else {
                    problems.push(Problem::new(&source, &key, "error pages: the service is not available (or more than one errors step); the route is not served"));
                    return None;
                };
                if route.errors.is_some() {
                    problems.push(Problem::new(&source, &key, "more than one errors step; the route is not served"));
                    return None;
                }
                if !e.query.starts_with('/')
                    || e.query.replace("{status}", "500").parse::<http::uri::PathAndQuery>().is_err()
                {
                    problems.push(Problem::new(
                        &source,
                        &key,
                        format!("error pages: query {:?} is not a path; the route is not served", e.query),
                    ));
                    return None;
                }
                route.errors = Some(Arc::new(CompiledErrors {
                    group: group.clone(),
                    statuses: e.statuses.clone(),
                    query: e.query.clone(),
                }));
            }
            Middleware::Cors(c) => match compile_cors(c) {
                Ok(c) => route.cors = Some(Arc::new(c)),
                Err(e) => {
                    problems.push(Problem::new(&source, &key, format!("CORS: {e}; the route is not served")));
                    return None;
                }
            },
            Middleware::InFlightLimit(n) => {
                let limit = usize::try_from(*n).unwrap_or(usize::MAX).max(1);
                route.in_flight = Some((limit, opts.states.in_flight(&spec.id)));
            }
            Middleware::MaxBodyBytes(n) => {
                route.max_body_bytes = if route.max_body_bytes == 0 { *n } else { route.max_body_bytes.min(*n) }
            }
            Middleware::ForwardAuth(fa) => {
                // Fails closed: without its service the route is not served at all.
                if route.forward_auth.is_some() || fa.service.is_some() {
                    problems.push(Problem::new(
                        &source,
                        &key,
                        "more than one forward auth step; the route is not served",
                    ));
                    return None;
                }
                let Some(group) = auth.get(&format!("{}/auth", spec.id)) else {
                    problems.push(Problem::new(
                        &source,
                        &key,
                        "forward auth service not available; the route is not served",
                    ));
                    return None;
                };
                route.forward_auth = Some(Arc::new(compile_forward_auth(fa, group.clone(), &key, problems, &source)?));
            }
        }
    }
    route.redirect_https = match (spec.redirect_https, &spec.tls) {
        (_, TlsPolicy::Off) => RedirectHttps::Never,
        (Some(false), _) => RedirectHttps::Never,
        _ if !spec.entrypoints.https => RedirectHttps::Never,
        (Some(true), _) => RedirectHttps::Always,
        (None, TlsPolicy::Static(_)) => RedirectHttps::Always,
        (None, _) if spec.hosts.iter().all(|h| covered_by(opts.static_cert_names, h)) => RedirectHttps::Always,
        (None, _) => RedirectHttps::WhenCertificate,
    };
    Some(route)
}

fn compile_extra(m: &Middleware, extra: &mut ExtraSteps) -> Result<(), String> {
    match m {
        Middleware::StripPrefixRegex(res) => {
            for re in res {
                extra.strip_regex.push(bounded_regex(re)?);
            }
        }
        Middleware::ReplacePath(p) if p.starts_with('/') => extra.replace_path = Some((None, p.clone())),
        Middleware::ReplacePath(p) => return Err(format!("replacement path {p:?} must start with /")),
        Middleware::ReplacePathRegex { regex, replacement } => {
            extra.replace_path = Some((Some(bounded_regex(regex)?), replacement.clone()))
        }
        Middleware::RedirectRegex { regex, replacement, permanent } => {
            let status = if *permanent { http::StatusCode::MOVED_PERMANENTLY } else { http::StatusCode::FOUND };
            extra.redirect = Some((bounded_regex(regex)?, replacement.clone(), status));
        }
        Middleware::IpAllowList { ranges, depth } => {
            let parsed = ranges.iter().map(|r| parse_cidr(r)).collect::<Result<Vec<_>, _>>()?;
            if parsed.is_empty() {
                return Err("an IP allow list with no range would refuse everyone".into());
            }
            extra.allow = Some((parsed, *depth));
        }
        _ => {}
    }
    Ok(())
}

fn compile_forward_auth(
    fa: &ForwardAuth,
    group: Arc<UpstreamGroup>,
    key: &str,
    problems: &mut Vec<Problem>,
    source: &str,
) -> Option<CompiledForwardAuth> {
    let mut bad = |what: &str| {
        problems.push(Problem::new(source, key, format!("forward auth: {what}; the route is not served")));
        None
    };
    let Ok(path_and_query) = fa.uri.parse::<http::uri::PathAndQuery>() else {
        return bad(&format!("{:?} is not a path and query", fa.uri));
    };
    let name = |n: &str| HeaderName::from_bytes(n.trim().as_bytes()).ok();
    let mut copy_headers = Vec::with_capacity(fa.copy_headers.len());
    for (from, to) in &fa.copy_headers {
        let (Some(f), Some(t)) = (name(from), name(to)) else {
            return bad(&format!("{from:?} or {to:?} is not a header name"));
        };
        copy_headers.push((f, t));
    }
    let request_headers = match &fa.request_headers {
        None => None,
        Some(list) => Some(match list.iter().map(|n| name(n)).collect::<Option<Vec<_>>>() {
            Some(v) => v,
            None => return bad(&format!("{list:?} holds something that is not a header name")),
        }),
    };
    Some(CompiledForwardAuth { group, path_and_query, copy_headers, request_headers })
}

/// `compile`, with a panic (a bug met on some route nobody foresaw) costing only the routes
/// that trigger it: they are found by compiling each alone, reported, and left out, and the
/// table is compiled again without them. The old table keeps serving until then, and the
/// process never dies for one service's labels.
pub fn compile_guarded(specs: &[RouteSpec], problems: Vec<Problem>, opts: &CompileOptions<'_>) -> RouteTable {
    let attempt = |specs: &[RouteSpec], problems: Vec<Problem>| {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| compile(specs, problems, opts)))
    };
    if let Ok(table) = attempt(specs, problems.clone()) {
        return table;
    }
    let (bad, good): (Vec<&RouteSpec>, Vec<&RouteSpec>) =
        specs.iter().partition(|spec| attempt(std::slice::from_ref(*spec), Vec::new()).is_err());
    let mut problems = problems;
    for spec in &bad {
        let source = spec.provenance.source();
        tracing::error!(route = %spec.id, source, "internal error while compiling a route; not served");
        problems.push(Problem::new(
            source,
            spec.provenance.to_string(),
            "internal error while compiling this route (a swarmgate bug; please report it); the route is not served",
        ));
    }
    let good: Vec<RouteSpec> = good.into_iter().cloned().collect();
    attempt(&good, problems.clone()).unwrap_or_else(|_| compile(&[], problems, opts))
}

/// The side services' groups (forward auth, error pages): routes of their own (so discovery fills their endpoints
/// as any other), never put in front of clients.
fn compile_side_services(specs: &[RouteSpec], opts: &CompileOptions<'_>, problems: &mut Vec<Problem>) -> SideServices {
    let none = SideServices::new();
    let mut out = SideServices::new();
    for spec in specs {
        if spec.auth_of.is_none() {
            continue;
        }
        if !spec.middlewares.is_empty() {
            problems.push(Problem::new(
                source_of(spec),
                route_key(spec),
                "a side service (forward auth, error pages) has no middlewares",
            ));
            continue;
        }
        if let Some(CompiledRoute { action: CompiledAction::Proxy(group), .. }) =
            compile_route(spec, opts, &none, problems)
        {
            out.insert(spec.id.clone(), group);
        }
    }
    out
}

/// Compiles specs into a table. Routes that cannot be compiled are left out with a problem;
/// duplicate ids keep the first.
pub fn compile(specs: &[RouteSpec], provider_problems: Vec<Problem>, opts: &CompileOptions<'_>) -> RouteTable {
    let mut table = RouteTable { problems: provider_problems, generation: opts.generation, ..Default::default() };
    let mut seen = BTreeSet::new();
    let auth = compile_side_services(specs, opts, &mut table.problems);
    for spec in specs.iter().filter(|s| s.auth_of.is_none()) {
        if !seen.insert(spec.id.clone()) {
            table.problems.push(Problem::new(
                source_of(spec),
                spec.provenance.to_string(),
                format!("duplicate route id {}", spec.id),
            ));
            continue;
        }
        if spec.hosts.is_empty() {
            table.problems.push(Problem::new(source_of(spec), spec.provenance.to_string(), "route has no host"));
            continue;
        }
        let Some(route) = compile_route(spec, opts, &auth, &mut table.problems) else {
            continue;
        };
        let route = Arc::new(route);
        for host in &spec.hosts {
            let host = normalize_host(host).into_owned();
            let entry = if host == "*" {
                table.default.get_or_insert_with(HostRoutes::default)
            } else if let Some(suffix) = host.strip_prefix("*.") {
                table.wildcard.entry(suffix.into()).or_default()
            } else {
                table.exact.entry(host.into()).or_default()
            };
            entry.routes.push(route.clone());
        }
        table.routes.push(route);
    }
    let sort = |e: &mut HostRoutes| e.routes.sort_by_key(|r| std::cmp::Reverse(r.order));
    table.exact.values_mut().for_each(sort);
    table.wildcard.values_mut().for_each(sort);
    if let Some(d) = table.default.as_mut() {
        sort(d)
    }
    let mut shadowed = Vec::new();
    for (host, entry) in &table.exact {
        report_shadowed(host, entry, &mut shadowed);
    }
    for (suffix, entry) in &table.wildcard {
        report_shadowed(&format!("*.{suffix}"), entry, &mut shadowed);
    }
    if let Some(entry) = &table.default {
        report_shadowed("*", entry, &mut shadowed);
    }
    table.problems.extend(shadowed);
    table
}

/// A route that can never answer because an earlier one (in match order) has the same host,
/// path and conditions on the same listener: the typical result of two services declaring the
/// same host (a Caddy site with different address spellings, the same Traefik rule twice, a
/// file route and a label). Without this the second route would vanish without a word.
fn report_shadowed(host: &str, entry: &HostRoutes, out: &mut Vec<Problem>) {
    // Keyed by what decides a match, so this stays linear in the number of routes.
    // What decides a match → the first route on [http, https].
    type MatchKey<'a> = (&'a PathMatch, &'a Option<Predicate>, i64);
    let mut first: FxHashMap<MatchKey<'_>, [Option<&CompiledRoute>; 2]> = FxHashMap::default();
    for r in &entry.routes {
        let winners = first.entry((&r.spec.path, &r.spec.predicate, r.order.0)).or_default();
        let mut lost_on = Vec::new();
        for (slot, (on, name)) in [(r.on_http, "http"), (r.on_https, "https")].into_iter().enumerate() {
            if !on {
                continue;
            }
            match winners[slot] {
                Some(w) if w.id != r.id => lost_on.push((name, w)),
                Some(_) => {}
                None => winners[slot] = Some(r),
            }
        }
        let Some((_, winner)) = lost_on.first() else {
            continue;
        };
        let listeners: Vec<&str> = lost_on.iter().map(|(n, _)| *n).collect();
        out.push(Problem::new(
            source_of(&r.spec),
            route_key(&r.spec),
            format!(
                "route {} for {host} {} is never used on {}: route {} of {} has the same host, path and conditions and comes first; declare the host once (for Caddy: the same site address in both services merges their upstreams)",
                r.id,
                path_text(&r.spec.path),
                listeners.join(" and "),
                winner.id,
                source_of(&winner.spec),
            ),
        ));
    }
}

fn path_text(p: &PathMatch) -> String {
    match p {
        PathMatch::Prefix(p) => format!("{p}*"),
        PathMatch::RawPrefix(p) => format!("{p}*"),
        PathMatch::Exact(p) => p.clone(),
    }
}

fn route_key(spec: &RouteSpec) -> String {
    match &spec.provenance {
        Provenance::Service { key, .. } => key.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn respond(id: &str, hosts: &[&str], path: PathMatch, body: &str) -> RouteSpec {
        let mut r = RouteSpec::proxy(
            id,
            Provenance::Builtin,
            hosts.iter().map(|s| s.to_string()).collect(),
            UpstreamSpec::new(UpstreamTarget::Static(vec![])),
        );
        r.action = Action::Respond { status: 200, body: body.into() };
        r.path = path;
        r
    }

    fn build(specs: &[RouteSpec]) -> RouteTable {
        let reg = EndpointRegistry::new();
        let m = Metrics::new();
        compile(
            specs,
            vec![],
            &CompileOptions {
                registry: &reg,
                states: &RouteStates::new(),
                metrics: &m,
                static_cert_names: &BTreeSet::new(),
                generation: 1,
            },
        )
    }

    fn find<'a>(t: &'a RouteTable, host: &str, path: &str) -> Option<&'a str> {
        let headers = http::HeaderMap::new();
        let host = normalize_host(host);
        let facts = RequestFacts {
            method: &http::Method::GET,
            host: &host,
            path,
            query: None,
            headers: &headers,
            client_ip: None,
        };
        match t.lookup(&host, &facts, false) {
            Lookup::Route(r) => Some(match &r.action {
                CompiledAction::Respond { body, .. } => std::str::from_utf8(body).unwrap(),
                _ => "?",
            })
            .map(|s| Box::leak(s.to_owned().into_boxed_str()) as &str),
            _ => None,
        }
    }

    #[test]
    fn host_matching_ignores_case_port_and_trailing_dot() {
        let t = build(&[respond("a", &["example.com"], PathMatch::any(), "a")]);
        for h in ["example.com", "EXAMPLE.COM", "example.com:8080", "example.com."] {
            assert_eq!(find(&t, h, "/"), Some("a"), "{h}");
        }
        assert_eq!(find(&t, "other.com", "/"), None);
    }

    #[test]
    fn exact_beats_wildcard_beats_default() {
        let t = build(&[
            respond("d", &["*"], PathMatch::any(), "default"),
            respond("w", &["*.example.org"], PathMatch::any(), "wild"),
            respond("e", &["a.example.org"], PathMatch::any(), "exact"),
        ]);
        assert_eq!(find(&t, "a.example.org", "/"), Some("exact"));
        assert_eq!(find(&t, "b.example.org", "/"), Some("wild"));
        assert_eq!(find(&t, "x.b.example.org", "/"), Some("default"), "wildcard covers one label only");
        assert_eq!(find(&t, "elsewhere", "/"), Some("default"));
    }

    #[test]
    fn longest_segment_aware_prefix_wins() {
        let t = build(&[
            respond("root", &["h"], PathMatch::Prefix("/".into()), "root"),
            respond("api", &["h"], PathMatch::Prefix("/api".into()), "api"),
            respond("v2", &["h"], PathMatch::Prefix("/api/v2".into()), "v2"),
        ]);
        assert_eq!(find(&t, "h", "/api"), Some("api"));
        assert_eq!(find(&t, "h", "/api/x"), Some("api"));
        assert_eq!(find(&t, "h", "/apix"), Some("root"));
        assert_eq!(find(&t, "h", "/api/v2/y"), Some("v2"));
    }

    #[test]
    fn unknown_host_is_not_routed_without_default() {
        let t = build(&[respond("a", &["a.com"], PathMatch::any(), "a")]);
        let headers = http::HeaderMap::new();
        let facts = RequestFacts {
            method: &http::Method::GET,
            host: "evil.com",
            path: "/",
            query: None,
            headers: &headers,
            client_ip: None,
        };
        assert!(matches!(t.lookup("evil.com", &facts, false), Lookup::UnknownHost));
    }

    #[test]
    fn bad_route_is_reported_and_others_survive() {
        let mut bad = respond("bad", &["b.com"], PathMatch::any(), "b");
        bad.action = Action::Redirect { location: "/x".into(), status: 200 };
        let t = build(&[bad, respond("good", &["g.com"], PathMatch::any(), "g")]);
        assert_eq!(find(&t, "g.com", "/"), Some("g"));
        assert_eq!(find(&t, "b.com", "/"), None);
        assert!(t.problems.iter().any(|p| p.message.contains("not a 3xx")));
    }

    #[test]
    fn rate_limiter_allows_burst_then_refuses() {
        let rl = RateLimiter::new(1, std::time::Duration::from_secs(60), 3);
        let allowed = (0..10).filter(|_| rl.allow()).count();
        assert_eq!(allowed, 3);
        let rl = RateLimiter::new(1, std::time::Duration::from_secs(60), 2);
        assert_eq!((0..4).filter(|_| rl.allow()).count(), 2);
    }

    #[test]
    fn rate_limiter_saturates_on_label_sized_numbers() {
        // Numbers straight from a label: neither may overflow (a panic in debug, a tiny wrapped
        // bucket in release).
        let rl = RateLimiter::new(1, crate::duration::MAX, u64::MAX);
        assert_eq!((0..100).filter(|_| rl.allow()).count(), 100);
        let rl = RateLimiter::new(u64::MAX, std::time::Duration::from_nanos(1), u64::MAX);
        assert!(rl.allow());
    }

    #[test]
    fn contains_matches_case_insensitively() {
        let v = CompiledValue::Contains("upgrade".into());
        assert!(v.matches("keep-alive, Upgrade"));
        assert!(v.matches("UPGRADE"));
        assert!(!v.matches("keep-alive"));
        assert!(!v.matches("upgrad"));
    }

    #[test]
    fn strip_prefix_keeps_leading_slash() {
        let mut s = respond("s", &["h"], PathMatch::Prefix("/path".into()), "s");
        s.middlewares.push(Middleware::StripPrefix("/path".into()));
        let t = build(&[s]);
        let r = &t.routes[0];
        assert_eq!(r.rewrite_path("/path/x"), "/x");
        assert_eq!(r.rewrite_path("/path"), "/");
    }
}
