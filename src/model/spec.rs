//! `RouteSpec`: the one route model every provider produces.
//!
//! Providers (the file config, the Swarm labels in three dialects) never touch the data plane:
//! they describe what they want as plain data here, and `model::compile` turns the merged specs
//! into an immutable [`RouteTable`](super::RouteTable). Keeping this plain (no sockets, no
//! handles) is what lets `swarmgate check` show exactly what a label set would do.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// Where a route came from, so a problem or a `check` line can name it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub enum Provenance {
    /// `[[routes]]` entry number `index` of the config file.
    File { index: usize },
    /// A Swarm service label set; `key` is the label (or label prefix) that defined the route.
    Service { service: String, key: String },
    /// Built into swarmgate (e.g. the admin route of the embedded default).
    Builtin,
}

/// What stands in for a secret in anything shown to an operator.
pub const REDACTED: &str = "<redacted>";

/// Headers whose values are credentials (a route may set `Authorization: Bearer …` or an API
/// key towards its upstream).
fn is_secret_header(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    matches!(n.as_str(), "authorization" | "proxy-authorization" | "cookie" | "set-cookie")
        || ["token", "secret", "password", "api-key", "apikey", "auth"].iter().any(|s| n.contains(s))
}

impl Provenance {
    /// The `Problem::source` of anything this provenance defined: the service name, `config`
    /// for the file, `builtin`.
    pub fn source(&self) -> String {
        match self {
            Provenance::File { .. } => "config".into(),
            Provenance::Service { service, .. } => service.clone(),
            Provenance::Builtin => "builtin".into(),
        }
    }
}

impl std::fmt::Display for Provenance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Provenance::File { index } => write!(f, "routes[{index}]"),
            Provenance::Service { service, key } => write!(f, "service {service} label {key}"),
            Provenance::Builtin => f.write_str("builtin"),
        }
    }
}

/// How a route's path is matched. Chosen at table-build time; the request path is only compared.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum PathMatch {
    /// Segment-aware prefix: `/api` matches `/api`, `/api/`, `/api/x`, not `/apix`. `/` matches all.
    Prefix(String),
    /// Plain string prefix (Caddy `/api*`, Traefik `PathPrefix`): `/api` matches `/apix` too.
    RawPrefix(String),
    /// The whole path, exactly (Traefik `Path`, Caddy matcher without `*`).
    Exact(String),
}

impl PathMatch {
    /// Matches every path.
    pub fn any() -> Self {
        PathMatch::Prefix("/".into())
    }

    /// True for `path` (the request path, no query).
    #[inline]
    pub fn matches(&self, path: &str) -> bool {
        match self {
            PathMatch::Prefix(p) => {
                if p == "/" {
                    return true;
                }
                let p = p.strip_suffix('/').unwrap_or(p);
                path.starts_with(p) && (path.len() == p.len() || path.as_bytes()[p.len()] == b'/')
            }
            PathMatch::RawPrefix(p) => path.starts_with(p.as_str()),
            PathMatch::Exact(p) => path == p,
        }
    }

    /// Length used to order routes: the longer, more specific match wins.
    pub fn specificity(&self) -> usize {
        match self {
            PathMatch::Prefix(p) if p == "/" => 0,
            PathMatch::Prefix(p) | PathMatch::RawPrefix(p) => p.len(),
            // An exact match beats any prefix of the same length.
            PathMatch::Exact(p) => p.len() + 1,
        }
    }

    /// The literal the path is compared with.
    pub fn literal(&self) -> &str {
        match self {
            PathMatch::Prefix(p) | PathMatch::RawPrefix(p) | PathMatch::Exact(p) => p,
        }
    }
}

/// How a header (or query) value is compared.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum ValueMatch {
    /// Header present with any value.
    Present,
    Exact(String),
    /// Case-insensitive containment (Caddy `*Upgrade*`).
    Contains(String),
    Prefix(String),
    Suffix(String),
    /// A regular expression (Traefik `HeaderRegexp`); compiled once at table-build time.
    Regex(String),
}

/// Extra request conditions beyond host and path (Traefik rule language, Caddy named matchers).
/// Evaluated per request only for routes that have one.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Predicate {
    Header {
        name: String,
        value: ValueMatch,
    },
    Method(Vec<String>),
    Query {
        name: String,
        value: ValueMatch,
    },
    /// Client address inside `net/prefix_len`.
    ClientIp {
        net: IpAddr,
        prefix_len: u8,
    },
    Path(PathMatch),
    /// Host test inside a compound rule (e.g. `Host(a) || Header(..)`); case-insensitive.
    Host(String),
    And(Vec<Predicate>),
    Or(Vec<Predicate>),
    Not(Box<Predicate>),
}

/// Upstream protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UpstreamScheme {
    #[default]
    Http,
    Https,
    /// Cleartext HTTP/2 (gRPC).
    H2c,
}

/// Balancing policy across a route's endpoints. The file key `lb` and `[labels] default_lb`
/// take these names (`"round_robin"`, …; `{ random_choose = 3 }`); each label dialect maps its
/// own spelling onto them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LbPolicy {
    RoundRobin,
    /// Fewest requests in flight (ties rotate).
    LeastConn,
    /// Power of two choices over peak-EWMA latency × in-flight; random between the two when
    /// their costs are close, so light traffic still reaches every endpoint.
    #[default]
    P2c,
    /// Rendezvous hash of the connecting peer's IP.
    IpHash,
    /// Sticky by cookie; a client without one is placed by [`UpstreamSpec::lb_fallback`].
    Cookie,
    /// Uniformly random (Caddy's default).
    Random,
    /// The first available endpoint in address order (primary/secondary failover).
    First,
    /// Rendezvous hash of the client IP: the leftmost `X-Forwarded-For` address when the peer
    /// is a trusted proxy, else the peer (Caddy `client_ip_hash`).
    ClientIpHash,
    /// Rendezvous hash of the request's path and query.
    UriHash,
    /// Rendezvous hash of the request header named by [`UpstreamSpec::lb_key`]; without the
    /// header, the fallback decides.
    Header,
    /// Rendezvous hash of the query parameter named by [`UpstreamSpec::lb_key`].
    Query,
    /// `n` endpoints at random, the one with fewest requests in flight (Caddy `random_choose`).
    RandomChoose(u8),
    /// Lowest latency × in-flight over all endpoints (Traefik `leasttime`).
    LeastTime,
}

impl LbPolicy {
    /// Policies that need [`UpstreamSpec::lb_key`] (a header or parameter name).
    pub fn needs_key(self) -> bool {
        matches!(self, LbPolicy::Header | LbPolicy::Query)
    }

    /// Policies that place a request without their value (no cookie, no header) by a fallback.
    pub fn uses_fallback(self) -> bool {
        matches!(self, LbPolicy::Cookie | LbPolicy::Header | LbPolicy::Query)
    }

    /// Policies that may place a request whose sticky value is missing: those that need nothing
    /// from the request but its peer address.
    pub fn can_fall_back_to(self) -> bool {
        !matches!(self, LbPolicy::Cookie | LbPolicy::Header | LbPolicy::Query | LbPolicy::UriHash)
    }
}

impl LbPolicy {
    /// Every policy that takes no argument, by its name (what `Display` writes).
    pub const NAMED: [LbPolicy; 12] = [
        LbPolicy::P2c,
        LbPolicy::RoundRobin,
        LbPolicy::Random,
        LbPolicy::LeastConn,
        LbPolicy::LeastTime,
        LbPolicy::First,
        LbPolicy::IpHash,
        LbPolicy::ClientIpHash,
        LbPolicy::UriHash,
        LbPolicy::Header,
        LbPolicy::Query,
        LbPolicy::Cookie,
    ];

    /// The policy called `name` (exact, lower case), for labels that spell policies as
    /// swarmgate does.
    pub fn from_name(name: &str) -> Option<LbPolicy> {
        Self::NAMED.into_iter().find(|p| p.to_string() == name)
    }

    /// What is wrong with this policy given its key and fallback, as (`lb`, `lb_key` or
    /// `lb_fallback`; message). Shared by the file config and the labels, so both refuse alike.
    pub fn problems(self, key: Option<&str>, fallback: Option<LbPolicy>) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        match (self.needs_key(), key) {
            (true, None) => {
                out.push(("lb_key", format!("lb {self} needs the name of the header or parameter to hash")))
            }
            (true, Some(k)) if self == LbPolicy::Header && http::HeaderName::try_from(k).is_err() => {
                out.push(("lb_key", format!("{k:?} is not a header name")))
            }
            (true, Some("")) => out.push(("lb_key", "is empty".to_owned())),
            (false, Some(_)) => out.push(("lb_key", format!("only used with lb header or query, not {self}"))),
            _ => {}
        }
        if let LbPolicy::RandomChoose(n) = self {
            if n < 2 {
                out.push(("lb", "random_choose needs at least 2 choices".to_owned()));
            }
        }
        match fallback {
            Some(f) if !self.uses_fallback() => out
                .push(("lb_fallback", format!("only used with lb cookie, header or query, not {self} (fallback {f})"))),
            Some(f) if !f.can_fall_back_to() => {
                out.push(("lb_fallback", format!("{f} cannot be a fallback: it needs a value the request may lack")))
            }
            Some(f) => out.extend(f.problems(None, None)),
            None => {}
        }
        out
    }
}

impl std::fmt::Display for LbPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            LbPolicy::RoundRobin => "round_robin",
            LbPolicy::LeastConn => "least_conn",
            LbPolicy::P2c => "p2c",
            LbPolicy::IpHash => "ip_hash",
            LbPolicy::Cookie => "cookie",
            LbPolicy::Random => "random",
            LbPolicy::First => "first",
            LbPolicy::ClientIpHash => "client_ip_hash",
            LbPolicy::UriHash => "uri_hash",
            LbPolicy::Header => "header",
            LbPolicy::Query => "query",
            LbPolicy::RandomChoose(n) => return write!(f, "random_choose {n}"),
            LbPolicy::LeastTime => "least_time",
        })
    }
}

/// Where a route's balancing policy came from, shown by `swarmgate check` and `/api/routes` so
/// an operator can tell a policy somebody asked for from one nobody chose.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LbSource {
    /// swarmgate's own default (p2c): a file route without `lb`.
    #[default]
    Builtin,
    /// The label dialect's default (`caddy`: random, `traefik`: round robin, `native`: p2c).
    Dialect(String),
    /// `[labels] default_lb`, which replaces every dialect's default.
    LabelsDefault,
    /// Set by this label.
    Label(String),
    /// Set by this config key (`routes[0].lb`).
    Config(String),
}

impl std::fmt::Display for LbSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LbSource::Builtin => f.write_str("default"),
            LbSource::Dialect(d) => write!(f, "{d} default"),
            LbSource::LabelsDefault => f.write_str("config labels.default_lb"),
            LbSource::Label(k) => write!(f, "label {k}"),
            LbSource::Config(k) => write!(f, "config {k}"),
        }
    }
}

/// Active health check settings.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct HealthCheck {
    pub path: String,
    pub interval: Duration,
}

/// One backend address.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct Endpoint {
    pub addr: SocketAddr,
    /// Swarm task id (or empty for static upstreams); shown in check output and logs.
    pub task: String,
    /// Swarm node id the task runs on (empty for static upstreams), for the operator's view.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub node: String,
}

impl Endpoint {
    /// An address that is not a Swarm task (the file config, a DNS name).
    pub fn fixed(addr: SocketAddr) -> Self {
        Endpoint { addr, task: String::new(), node: String::new() }
    }
}

/// What a route's backends are before discovery resolves them.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum UpstreamTarget {
    /// Fixed addresses from the config file.
    Static(Vec<Endpoint>),
    /// The running tasks of one or more Swarm services (several when Caddy sites with the same
    /// address merge across services). Resolved into `Static` by discovery.
    Tasks(Vec<TaskTarget>),
    /// `host:port` upstreams of the config file, at least one a DNS name (IP literals among
    /// them resolve to themselves). Resolved into `Static` by the file provider's resolver,
    /// off the runtime and periodically.
    Names(Vec<(String, u16)>),
}

/// The running tasks of one Swarm service at one container port.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct TaskTarget {
    /// Service name (`Spec.Name`).
    pub service: String,
    /// Network whose task address is used; `None` = the networks shared with the proxy.
    pub network: Option<String>,
    pub port: u16,
}

/// The backend side of a proxying route.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct UpstreamSpec {
    pub target: UpstreamTarget,
    pub scheme: UpstreamScheme,
    pub lb: LbPolicy,
    /// Cookie name for `LbPolicy::Cookie` (default `swarmgate_sticky`).
    pub sticky_cookie: Option<String>,
    pub health: Option<HealthCheck>,
    /// Forward the client's `Host` header (true) or the upstream address (false).
    pub pass_host: bool,
    /// How to talk TLS to the endpoints; read only when `scheme` is `Https`.
    pub tls: UpstreamTls,
    /// Header or query parameter hashed by `LbPolicy::Header` / `LbPolicy::Query`.
    #[serde(default)]
    pub lb_key: Option<String>,
    /// How `Cookie`, `Header` and `Query` place a request that carries no value; `None` = p2c.
    #[serde(default)]
    pub lb_fallback: Option<LbPolicy>,
    /// Where `lb` came from.
    #[serde(default)]
    pub lb_source: LbSource,
}

/// TLS toward an `https` upstream. The file key `upstream_tls = { ca, server_name,
/// insecure_skip_verify }` deserialises straight into this, and every label dialect maps onto it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UpstreamTls {
    /// PEM file with the CA certificate(s) to trust *instead of* the system roots (a private
    /// PKI: trusting the public roots as well would let any public certificate pass).
    pub ca: Option<std::path::PathBuf>,
    /// Name sent as SNI and checked against the certificate. `None`: the upstream's host, which
    /// for Swarm tasks and IP upstreams is the IP address (the certificate needs an IP SAN).
    pub server_name: Option<String>,
    /// Accept any certificate (self-signed backends such as Portainer on 9443): the connection
    /// is encrypted but the upstream is not authenticated. Off unless asked for.
    pub insecure_skip_verify: bool,
}

impl UpstreamTls {
    /// True when nothing differs from the default (verify against the system roots).
    pub fn is_default(&self) -> bool {
        *self == UpstreamTls::default()
    }
}

impl UpstreamSpec {
    pub fn new(target: UpstreamTarget) -> Self {
        UpstreamSpec {
            target,
            scheme: UpstreamScheme::Http,
            lb: LbPolicy::default(),
            sticky_cookie: None,
            health: None,
            pass_host: true,
            tls: UpstreamTls::default(),
            lb_key: None,
            lb_fallback: None,
            lb_source: LbSource::Builtin,
        }
    }
}

/// What a matched request gets.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Action {
    Proxy(UpstreamSpec),
    /// Redirect to `location`; `{uri}` in it is replaced by the request's path and query.
    Redirect {
        location: String,
        status: u16,
    },
    /// A fixed response.
    Respond {
        status: u16,
        body: String,
    },
}

/// Header edits; an empty value removes the header.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct HeaderEdits {
    pub set: BTreeMap<String, String>,
    /// Appended (not replacing) values, Caddy `header +Name value`.
    pub add: BTreeMap<String, String>,
    pub remove: Vec<String>,
}

impl HeaderEdits {
    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.add.is_empty() && self.remove.is_empty()
    }

    /// The same edits with the values of credential-carrying headers replaced (see
    /// [`RouteSpec::redacted`]).
    fn redacted(&self) -> HeaderEdits {
        let hide = |m: &BTreeMap<String, String>| {
            m.iter()
                .map(|(k, v)| (k.clone(), if is_secret_header(k) { REDACTED.to_owned() } else { v.clone() }))
                .collect()
        };
        HeaderEdits { set: hide(&self.set), add: hide(&self.add), remove: self.remove.clone() }
    }
}

/// A step applied to the request (and response) before the action.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Middleware {
    /// Remove a literal path prefix before forwarding; sets `X-Forwarded-Prefix`.
    StripPrefix(String),
    /// Replace a literal path prefix (Caddy `rewrite` prefix form).
    ReplacePrefix {
        from: String,
        to: String,
    },
    /// Prepend a prefix to the path.
    AddPrefix(String),
    RequestHeaders(HeaderEdits),
    ResponseHeaders(HeaderEdits),
    /// `user` → bcrypt hash. Requests without valid credentials get 401.
    BasicAuth {
        realm: String,
        users: BTreeMap<String, String>,
    },
    /// Token bucket: `average` requests per `period`, `burst` extra. Excess gets 429.
    RateLimit {
        average: u64,
        period: Duration,
        burst: u64,
    },
    /// Retry idempotent requests on another endpoint up to `attempts` times.
    Retry {
        attempts: u32,
    },
    /// Remove the first match of any of these regular expressions (anchored at the start of
    /// the path) before forwarding; sets `X-Forwarded-Prefix` to what was removed. Traefik
    /// `stripprefixregex`, and `stripprefix` with several prefixes (escaped).
    StripPrefixRegex(Vec<String>),
    /// Replace the whole path (Traefik `replacepath`).
    ReplacePath(String),
    /// Replace the path where `regex` matches (`${1}` groups; Traefik `replacepathregex`).
    ReplacePathRegex {
        regex: String,
        replacement: String,
    },
    /// Redirect when the request URL (`scheme://host/path?query`) matches `regex`, to
    /// `replacement` with its `${1}` groups filled (Traefik `redirectregex`: www → bare domain).
    RedirectRegex {
        regex: String,
        replacement: String,
        permanent: bool,
    },
    /// Only clients in these CIDRs get through; others get 403 (Traefik `ipallowlist`).
    /// `depth` > 0 takes the address that many hops from the right of `X-Forwarded-For`, and
    /// only from a trusted proxy (`[forwarding] trusted_proxies`); otherwise the peer address.
    IpAllowList {
        ranges: Vec<String>,
        depth: u32,
    },
    /// At most this many requests of the route at once (until each response's last byte);
    /// more get 429 (Traefik `inflightreq`).
    InFlightLimit(u64),
    /// Request bodies larger than this get 413 (Caddy `request_body max_size`, Traefik
    /// `buffering.maxRequestBodyBytes`); the smaller of this and `[limits] max_body_bytes`.
    MaxBodyBytes(u64),
    /// Gzip responses for clients that take it (Traefik `compress`, Caddy `encode`): only
    /// bodies of at least `min_bytes` (when their length is known) and of text-like types, or
    /// of the `include` types; never the `exclude` ones, or bodies already encoded.
    Compress {
        min_bytes: u64,
        include: Vec<String>,
        exclude: Vec<String>,
    },
    /// Custom error pages (Traefik `errors`): a response whose status is in `statuses` is
    /// replaced by the page `query` (`{status}` filled in) from another service, with the
    /// original status. The service goes to a side route, as for [`Middleware::ForwardAuth`].
    Errors(ErrorPages),
    /// Cross-origin resource sharing (Traefik `headers.accessControl*`): preflight requests
    /// from an allowed origin are answered here; other responses to one get its headers.
    Cors(Cors),
    /// Ask an authentication service first (Caddy `forward_auth`, Traefik `forwardauth`):
    /// a 2xx answer lets the request through, anything else goes back to the client. The
    /// service is the upstream of the route whose `auth_of` names this route.
    ForwardAuth(ForwardAuth),
}

/// The CORS policy of a route. An origin is allowed when it is listed, when `*` is listed, or
/// when it matches one of `origin_regex`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Cors {
    pub origins: Vec<String>,
    pub origin_regex: Vec<String>,
    pub methods: Vec<String>,
    pub headers: Vec<String>,
    pub expose: Vec<String>,
    pub credentials: bool,
    pub max_age: Option<u64>,
    /// Add `Vary: Origin` (Traefik `addVaryHeader`).
    pub vary: bool,
}

/// What a forward-auth subrequest carries and what comes back from it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct ForwardAuth {
    /// Path and query of the subrequest (Caddy `uri`; Traefik: the address's own path).
    pub uri: String,
    /// Headers of a 2xx answer set on the proxied request, `(from, to)`. Whatever the client
    /// sent under a `to` name is removed first, so a client cannot claim an identity.
    pub copy_headers: Vec<(String, String)>,
    /// The client headers sent to the service; `None`: all of them.
    pub request_headers: Option<Vec<String>>,
    /// The service, as a provider names it. [`split_side_services`] moves it into a route of
    /// its own before discovery, so it is found (tasks, names) like any other upstream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<Box<UpstreamSpec>>,
}

/// Error pages from another service: the status ranges, the page path and the service.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct ErrorPages {
    pub statuses: Vec<(u16, u16)>,
    pub query: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<Box<UpstreamSpec>>,
}

/// Moves each route's side services (forward auth, error pages) into routes of their own,
/// `<id>/auth` and `<id>/errors` with `auth_of` = the route's id, once ids are final. A route
/// with more than one of a kind is left to `compile`, which refuses it.
pub fn split_side_services(routes: &mut Vec<RouteSpec>) {
    let mut services = Vec::new();
    for r in routes.iter_mut() {
        let (mut auth, mut errors) = (Vec::new(), Vec::new());
        for m in r.middlewares.iter_mut() {
            match m {
                Middleware::ForwardAuth(fa) => auth.push(&mut fa.service),
                Middleware::Errors(e) => errors.push(&mut e.service),
                _ => {}
            }
        }
        for (kind, mut found) in [("auth", auth), ("errors", errors)] {
            if let [only] = found.as_mut_slice() {
                if let Some(up) = only.take() {
                    services.push((format!("{}/{kind}", r.id), r.id.clone(), r.provenance.clone(), *up));
                }
            }
        }
    }
    for (id, owner, provenance, up) in services {
        let mut spec = RouteSpec::proxy(id, provenance, Vec::new(), up);
        spec.auth_of = Some(owner);
        routes.push(spec);
    }
}

/// Certificate policy for a route's hosts.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize)]
pub enum TlsPolicy {
    /// ACME for public names, none for IPs/localhost-style names.
    #[default]
    Auto,
    /// Plain HTTP only; no certificate, no redirect.
    Off,
    /// A static certificate from the config, by name (or any static certificate covering the host).
    Static(String),
    /// A self-signed certificate made locally (Caddy `tls internal`).
    Internal,
}

/// Which listeners a route answers on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Entrypoints {
    pub http: bool,
    pub https: bool,
}

impl Default for Entrypoints {
    fn default() -> Self {
        Entrypoints { http: true, https: true }
    }
}

/// One route as a provider wants it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct RouteSpec {
    /// Stable, unique name (used as the metrics label), e.g. `file/0` or `svc/shop_web/caddy_0/1`.
    pub id: String,
    pub provenance: Provenance,
    /// Lower-case host names; `*.example.com` is a one-label wildcard; `*` alone is the default
    /// host (file config only: labels may not create a catch-all).
    pub hosts: Vec<String>,
    pub path: PathMatch,
    /// Extra conditions (headers, methods, …); `None` for plain host+path routes.
    pub predicate: Option<Predicate>,
    /// Higher wins; ties go to the more specific path. 0 = derived from the path.
    pub priority: i64,
    pub middlewares: Vec<Middleware>,
    pub action: Action,
    pub tls: TlsPolicy,
    /// Plain-HTTP requests get 308 to https. `None` = true when the host has a certificate.
    pub redirect_https: Option<bool>,
    /// Extra names to put on the certificate (Traefik `tls.domains`), beyond `hosts`.
    pub tls_domains: Vec<String>,
    pub entrypoints: Entrypoints,
    /// Not served to clients: a side service (forward auth, error pages) of the route with
    /// this id. Its upstream is discovered like any other (tasks, names), then lent to that
    /// route.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_of: Option<String>,
}

impl RouteSpec {
    /// The spec as the admin API shows it: bcrypt hashes and credential header values are
    /// replaced by [`REDACTED`] (a hash can be cracked offline; a header value is the secret
    /// itself). The persisted snapshot keeps the real spec; only what is shown is redacted.
    pub fn redacted(&self) -> RouteSpec {
        let mut spec = self.clone();
        for m in &mut spec.middlewares {
            match m {
                Middleware::BasicAuth { users, .. } => users.values_mut().for_each(|h| *h = REDACTED.to_owned()),
                Middleware::RequestHeaders(e) | Middleware::ResponseHeaders(e) => *e = e.redacted(),
                _ => {}
            }
        }
        spec
    }

    /// A proxy route with defaults for everything but hosts and upstream.
    pub fn proxy(id: impl Into<String>, provenance: Provenance, hosts: Vec<String>, upstream: UpstreamSpec) -> Self {
        RouteSpec {
            id: id.into(),
            provenance,
            hosts,
            path: PathMatch::any(),
            predicate: None,
            priority: 0,
            middlewares: Vec::new(),
            action: Action::Proxy(upstream),
            tls: TlsPolicy::Auto,
            redirect_https: None,
            tls_domains: Vec::new(),
            entrypoints: Entrypoints::default(),
            auth_of: None,
        }
    }

    /// The upstream spec, for proxy routes.
    pub fn upstream(&self) -> Option<&UpstreamSpec> {
        match &self.action {
            Action::Proxy(u) => Some(u),
            _ => None,
        }
    }

    pub fn upstream_mut(&mut self) -> Option<&mut UpstreamSpec> {
        match &mut self.action {
            Action::Proxy(u) => Some(u),
            _ => None,
        }
    }
}

/// Something a provider could not understand. Never fatal for other services.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct Problem {
    /// Service name, or `config` for the file.
    pub source: String,
    /// The label key or config key at fault.
    pub key: String,
    pub message: String,
    #[serde(default)]
    pub severity: Severity,
}

/// Whether a problem drops or changes what is served (`error`: a route, directive, middleware
/// or upstream is not served as written) or only says that something has no effect here or
/// behaves as documented but differently from the dialect's origin (`warning`). `swarmgate
/// check` exits 1 on errors only, unless `--strict`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    #[default]
    Error,
    Warning,
}

impl Problem {
    pub fn new(source: impl Into<String>, key: impl Into<String>, message: impl Into<String>) -> Self {
        Problem { source: source.into(), key: key.into(), message: message.into(), severity: Severity::Error }
    }

    /// A problem that changes nothing that is served (see [`Severity`]).
    pub fn warning(source: impl Into<String>, key: impl Into<String>, message: impl Into<String>) -> Self {
        Problem { severity: Severity::Warning, ..Problem::new(source, key, message) }
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}: {}", self.source, self.key, self.message)
    }
}

/// True for names that never get a public certificate: IP literals, `localhost`, single-label
/// names and reserved test suffixes handled by the ACME issuer decide the rest.
pub fn is_public_dns_name(host: &str) -> bool {
    if host.parse::<IpAddr>().is_ok() || host == "localhost" || host.ends_with(".localhost") {
        return false;
    }
    if host.ends_with(".local") || host.ends_with(".internal") || !host.contains('.') {
        return false;
    }
    !host.starts_with("*.") || host.len() > 2
}

/// `10.0.0.0/8`, `2001:db8::/32`, or a bare address (a /32 or /128) → network and prefix length.
pub fn parse_cidr(s: &str) -> Result<(IpAddr, u8), String> {
    let (ip, len) = s.trim().split_once('/').unwrap_or((s.trim(), ""));
    let net: IpAddr = ip.parse().map_err(|_| format!("{s:?} is not an IP address or CIDR"))?;
    let max = if net.is_ipv4() { 32 } else { 128 };
    let prefix_len = if len.is_empty() {
        max
    } else {
        len.parse::<u8>().ok().filter(|l| *l <= max).ok_or_else(|| format!("{s:?}: bad prefix length"))?
    };
    Ok((net, prefix_len))
}
