//! The TOML configuration: listeners, static certificates, file routes, limits, logging, and
//! the Docker, label and ACME settings. Parsing is strict (`deny_unknown_fields`) so a typo is
//! an error that names the key instead of a silently ignored setting.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::labels::LabelsConfig;
use crate::model::{
    Action, Endpoint, Entrypoints, HeaderEdits, HealthCheck, LbPolicy, Middleware, PathMatch, Provenance, RouteSpec,
    TlsPolicy, UpstreamScheme, UpstreamSpec, UpstreamTarget, UpstreamTls,
};

/// The embedded default config (what `config/swarmgate.toml` holds), used when `--config` is
/// not given.
pub const EMBEDDED_DEFAULT: &str = include_str!("../../config/swarmgate.toml");

/// A config error, naming the key at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct ConfigError {
    pub key: String,
    pub message: String,
}

impl ConfigError {
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError { key: key.into(), message: message.into() }
    }
}

/// Every error found in one file (we report them all at once, not one per run).
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("reading {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path}: {}", .errors.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "))]
    Invalid { path: PathBuf, errors: Vec<ConfigError> },
    #[error("{path}: the file is empty (a truncated or half-written file?)")]
    Empty { path: PathBuf },
    #[error("{path}: the new file has no [[routes]] while {running} are serving (a truncated write?); to remove every file route on purpose, write `routes = []`")]
    RemovesAllRoutes { path: PathBuf, running: usize },
}

/// A duration written as `250ms`, `10s`, `1m30s`, `1h` (or a bare number of seconds); see
/// [`crate::duration`] for the grammar shared with the labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dur(pub Duration);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(u64),
            S(String),
        }
        match Raw::deserialize(d)? {
            // One grammar for every duration: a bare number goes through the same parser.
            Raw::N(n) => crate::duration::parse(&n.to_string()).map(Dur).map_err(serde::de::Error::custom),
            Raw::S(s) => crate::duration::parse(&s).map(Dur).map_err(serde::de::Error::custom),
        }
    }
}

impl serde::Serialize for Dur {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{}ms", self.0.as_millis()))
    }
}

/// True when the text names `routes` at top level (`routes = []`), as opposed to leaving it out.
fn declares_routes(text: &str) -> bool {
    toml::from_str::<toml::Table>(text).is_ok_and(|t| t.contains_key("routes"))
}

/// See [`Config::storage_dir`].
fn default_storage_dir() -> PathBuf {
    let env = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(dir) = env("STATE_DIRECTORY") {
        return dir;
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        return PathBuf::from("/var/lib/swarmgate");
    }
    if let Some(state) = env("XDG_STATE_HOME") {
        return state.join("swarmgate");
    }
    match env("HOME") {
        Some(home) => home.join(".local/state/swarmgate"),
        None => PathBuf::from("/var/lib/swarmgate"),
    }
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub listen: Listen,
    pub tls: TlsSection,
    pub routes: Vec<RouteConfig>,
    pub log: LogConfig,
    pub limits: Limits,
    pub docker: DockerConfig,
    pub labels: LabelsConfig,
    pub acme: AcmeConfig,
    pub forwarding: ForwardingConfig,
    /// Directory for state: certificates, ACME account, last good discovery snapshot.
    pub storage: Option<PathBuf>,
    pub dns: DnsConfig,
    pub server: ServerConfig,
    pub admin: AdminConfig,
}

/// `[admin]`: authentication on the admin listener. Secrets are read from files (at start) so
/// a Docker secret (`/run/secrets/…`) can hold them and the config file holds none.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct AdminConfig {
    /// A file holding one bearer token (surrounding whitespace ignored):
    /// `Authorization: Bearer <token>`.
    pub token_file: Option<PathBuf>,
    /// An htpasswd file: `user:hash` lines (bcrypt, `$apr1$`, `{SHA}`), `#` comments.
    pub basic_auth_file: Option<PathBuf>,
}

/// Lookups of DNS names among `[[routes]] upstreams`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DnsConfig {
    /// Every name is looked up again this often (names like `tasks.app` change).
    pub refresh: Dur,
    /// Longest wait for one lookup.
    pub timeout: Dur,
}

impl Default for DnsConfig {
    fn default() -> Self {
        DnsConfig { refresh: Dur(Duration::from_secs(10)), timeout: Dur(Duration::from_secs(5)) }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Listen {
    pub http: Option<SocketAddr>,
    pub https: Option<SocketAddr>,
    pub admin: Option<SocketAddr>,
    /// Serving threads, each with its own single-threaded runtime and its own `SO_REUSEPORT`
    /// listener (the kernel spreads connections); 0 = one per CPU, 1 = serve on the main runtime.
    pub workers: usize,
}

impl Default for Listen {
    fn default() -> Self {
        Listen { http: Some(SocketAddr::from(([127, 0, 0, 1], 8080))), https: None, admin: None, workers: 0 }
    }
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct TlsSection {
    pub certificates: Vec<StaticCertConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticCertConfig {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Optional name routes use in `tls = "<name>"`.
    #[serde(default)]
    pub name: Option<String>,
}

/// What swarmgate adds to forwarded requests beyond `X-Forwarded-*`.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct ForwardingConfig {
    /// Append `Via: 1.1 swarmgate` to requests sent upstream.
    pub via: bool,
    /// Peers (CIDRs or addresses) whose `Forwarded`, `X-Forwarded-*` and `X-Real-IP` headers
    /// are believed and extended; from anyone else they are replaced. Default: nobody.
    pub trusted_proxies: Vec<String>,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Json,
    #[default]
    Text,
    /// Access log lines in the Common Log Format (other log lines as `text`).
    Clf,
    /// Access log lines in the Combined Log Format: CLF with referer and user agent.
    Combined,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    pub access: bool,
    pub format: LogFormat,
    /// `tracing` filter, e.g. `info` or `swarmgate=debug`; `RUST_LOG` wins when set.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig { access: true, format: LogFormat::Text, level: "info".into() }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Time a client has to send a complete request head (slowloris guard) → 408.
    pub header_read_timeout: Dur,
    /// Idle keep-alive connections are closed after this.
    pub idle_timeout: Dur,
    /// Largest request head accepted → 431.
    pub max_header_bytes: usize,
    /// Largest request body accepted, 0 = unlimited → 413.
    pub max_body_bytes: u64,
    /// Client connections open at once; more get 503 and are closed.
    pub max_connections: usize,
    pub upstream_connect_timeout: Dur,
    /// Time for the upstream to send its response head → 504.
    pub upstream_response_timeout: Dur,
    /// Idle pooled upstream connections are closed after this.
    pub upstream_idle_timeout: Dur,
    /// Graceful shutdown: time in-flight requests get to finish after SIGTERM.
    pub grace_period: Dur,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_read_timeout: Dur(Duration::from_secs(10)),
            idle_timeout: Dur(Duration::from_secs(60)),
            max_header_bytes: 64 * 1024,
            max_body_bytes: 0,
            max_connections: 10_000,
            upstream_connect_timeout: Dur(Duration::from_secs(3)),
            upstream_response_timeout: Dur(Duration::from_secs(60)),
            upstream_idle_timeout: Dur(Duration::from_secs(50)),
            grace_period: Dur(Duration::from_secs(30)),
        }
    }
}

/// Whether to read Swarm services from Docker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DockerMode {
    /// Use Docker when its socket answers.
    #[default]
    Auto,
    On,
    Off,
}

impl<'de> Deserialize<'de> for DockerMode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            B(bool),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::B(true) => Ok(DockerMode::On),
            Raw::B(false) => Ok(DockerMode::Off),
            Raw::S(s) if s == "auto" => Ok(DockerMode::Auto),
            Raw::S(s) if s == "true" => Ok(DockerMode::On),
            Raw::S(s) if s == "false" => Ok(DockerMode::Off),
            Raw::S(s) => Err(serde::de::Error::custom(format!("expected true, false or \"auto\", got {s:?}"))),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DockerConfig {
    pub enabled: DockerMode,
    /// `unix:///var/run/docker.sock`, `tcp://host:2375` or `http://…`; `DOCKER_HOST` wins when
    /// this is not set.
    pub host: Option<String>,
    /// Networks whose task addresses are used (names or IDs); empty = the proxy's own networks
    /// when it runs in a container, else every swarm network the task is on.
    pub networks: Vec<String>,
    /// Task re-list interval.
    pub poll_interval: Dur,
    /// Task re-list interval while a service is rolling out.
    pub poll_interval_updating: Dur,
}

impl Default for DockerConfig {
    fn default() -> Self {
        DockerConfig {
            enabled: DockerMode::Auto,
            host: None,
            networks: Vec::new(),
            poll_interval: Dur(Duration::from_secs(1)),
            poll_interval_updating: Dur(Duration::from_millis(200)),
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ChallengeKind {
    #[serde(rename = "http-01")]
    Http01,
    #[serde(rename = "tls-alpn-01")]
    TlsAlpn01,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AcmeConfig {
    pub enabled: bool,
    pub email: Option<String>,
    /// ACME directory URL; Let's Encrypt production by default.
    pub directory: String,
    /// Extra trust root (PEM) for the ACME server's HTTPS (test CAs such as Pebble).
    pub ca_root: Option<PathBuf>,
    /// Where certificates and the account live; default `<storage>/acme`.
    pub storage: Option<PathBuf>,
    /// Challenge types to use, in order of preference.
    pub challenges: Vec<ChallengeKind>,
    /// Renew when this fraction of the lifetime has passed.
    pub renew_fraction: f64,
    /// How often renewals are checked.
    pub check_interval: Dur,
    /// First wait after a failed order; doubles per failure (with jitter) up to `backoff_max`.
    pub backoff_min: Dur,
    /// Longest wait between failed orders for one name.
    pub backoff_max: Dur,
}

impl Default for AcmeConfig {
    fn default() -> Self {
        AcmeConfig {
            enabled: false,
            email: None,
            directory: "https://acme-v02.api.letsencrypt.org/directory".into(),
            ca_root: None,
            storage: None,
            challenges: vec![ChallengeKind::Http01, ChallengeKind::TlsAlpn01],
            renew_fraction: 2.0 / 3.0,
            check_interval: Dur(Duration::from_secs(3600)),
            // 5 min doubling stays under Let's Encrypt's 5 failed validations per name per hour.
            backoff_min: Dur(Duration::from_secs(300)),
            backoff_max: Dur(Duration::from_secs(12 * 3600)),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct HealthConfig {
    pub path: Option<String>,
    pub interval: Option<Dur>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct HeadersConfig {
    pub request: BTreeMap<String, String>,
    pub response: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// `user:hash` entries (bcrypt, Apache MD5 `$apr1$`, `{SHA}`).
    pub basic: Vec<String>,
    pub realm: Option<String>,
}

/// `forward_auth = { address = "http://authelia:9091/api/verify?rd=…", copy_headers = […] }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForwardAuthConfig {
    /// `http://host:port/path?query` of the authentication service (`https://` too).
    pub address: String,
    /// Headers of a 2xx answer set on the request: `Name`, or `From>To` to rename.
    #[serde(default)]
    pub copy_headers: Vec<String>,
    /// Client headers sent to the service (default: all).
    pub request_headers: Option<Vec<String>>,
}

impl ForwardAuthConfig {
    /// The model step with its service; `Err` names what is wrong with `address`.
    pub fn to_model(&self) -> Result<crate::model::ForwardAuth, String> {
        let (scheme, authority, path) = split_address(&self.address)?;
        let default_port = if scheme == UpstreamScheme::Https { 443 } else { 80 };
        let with_port = if authority.contains(':') && !authority.ends_with(']') {
            authority.to_owned()
        } else {
            format!("{authority}:{default_port}")
        };
        let target = match parse_upstream(&with_port)? {
            UpstreamAddr::Ip(addr) => UpstreamTarget::Static(vec![Endpoint::fixed(addr)]),
            UpstreamAddr::Name(host, port) => UpstreamTarget::Names(vec![(host, port)]),
        };
        let mut up = UpstreamSpec::new(target);
        up.scheme = scheme;
        Ok(crate::model::ForwardAuth {
            uri: path.to_owned(),
            copy_headers: self.copy_headers.iter().map(|h| copy_header(h)).collect(),
            request_headers: self.request_headers.clone(),
            service: Some(Box::new(up)),
        })
    }
}

/// `From>To` (Caddy's rename form) or `Name`.
pub fn copy_header(entry: &str) -> (String, String) {
    match entry.split_once('>') {
        Some((from, to)) => (from.trim().to_owned(), to.trim().to_owned()),
        None => (entry.trim().to_owned(), entry.trim().to_owned()),
    }
}

/// `scheme://authority/path?query` → its parts (`path` defaults to `/`); only http and https.
pub fn split_address(s: &str) -> Result<(UpstreamScheme, &str, &str), String> {
    let (scheme, rest) = match s.split_once("://") {
        Some(("http", rest)) => (UpstreamScheme::Http, rest),
        Some(("https", rest)) => (UpstreamScheme::Https, rest),
        Some((other, _)) => return Err(format!("{s:?}: scheme {other} is not http or https")),
        None => (UpstreamScheme::Http, s),
    };
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) if rest.as_bytes()[i] == b'/' => rest.split_at(i),
        Some(_) => return Err(format!("{s:?}: a query needs a path before it")),
        None => (rest, "/"),
    };
    if authority.is_empty() || authority.contains('@') {
        return Err(format!("{s:?}: give scheme://host:port/path, without a user"));
    }
    Ok((scheme, authority, path))
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RespondConfig {
    #[serde(default = "default_200")]
    pub status: u16,
    #[serde(default)]
    pub body: String,
}

fn default_200() -> u16 {
    200
}

fn default_308() -> u16 {
    308
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedirectConfig {
    pub to: String,
    #[serde(default = "default_308")]
    pub status: u16,
}

#[derive(Debug, Clone, Copy, Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum PathKind {
    /// Segment-aware prefix.
    #[default]
    Prefix,
    Exact,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    pub average: u64,
    #[serde(default)]
    pub period: Option<Dur>,
    #[serde(default)]
    pub burst: Option<u64>,
}

/// One `[[routes]]` entry.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct RouteConfig {
    pub hosts: Vec<String>,
    pub path: Option<String>,
    pub path_match: PathKind,
    pub strip_prefix: bool,
    pub upstreams: Vec<String>,
    pub scheme: UpstreamScheme,
    /// `None`: swarmgate's default (p2c).
    pub lb: Option<LbPolicy>,
    pub sticky_cookie: Option<String>,
    pub pass_host: Option<bool>,
    pub redirect_https: Option<bool>,
    /// `auto`, `off`, or the `name` of a static certificate.
    pub tls: Option<String>,
    pub health: HealthConfig,
    pub headers: HeadersConfig,
    pub auth: AuthConfig,
    pub priority: i64,
    pub retries: Option<u32>,
    pub rate_limit: Option<RateLimitConfig>,
    pub forward_auth: Option<ForwardAuthConfig>,
    pub respond: Option<RespondConfig>,
    pub redirect: Option<RedirectConfig>,
    /// TLS toward `scheme = "https"` upstreams: `{ ca, server_name, insecure_skip_verify }`.
    pub upstream_tls: Option<UpstreamTls>,
    /// Header (`lb = "header"`) or query parameter (`lb = "query"`) whose value is hashed.
    pub lb_key: Option<String>,
    /// How `cookie`, `header` and `query` place a request without a value (default p2c).
    pub lb_fallback: Option<LbPolicy>,
}

impl Config {
    /// Parses TOML text and validates it; `path` only labels messages.
    pub fn parse(text: &str, path: &Path) -> Result<Config, LoadError> {
        let cfg: Config =
            toml::from_str(text).map_err(|e| LoadError::Parse { path: path.into(), message: e.to_string() })?;
        let errors = cfg.validate();
        if errors.is_empty() {
            Ok(cfg)
        } else {
            Err(LoadError::Invalid { path: path.into(), errors })
        }
    }

    /// Reads and validates a file.
    pub fn load(path: &Path) -> Result<Config, LoadError> {
        let text = std::fs::read_to_string(path).map_err(|source| LoadError::Read { path: path.into(), source })?;
        let mut cfg = Self::parse(&text, path)?;
        cfg.resolve_relative_paths(path.parent().unwrap_or(Path::new(".")));
        Ok(cfg)
    }

    /// Reads a file to replace a running config of `running_routes` file routes. On top of
    /// `load`'s checks it refuses what is almost always an accident, since applying it would
    /// answer 404 for every file host: an empty file (an editor or `: >` that truncates before
    /// writing) and a file without routes while routes are serving, unless it says
    /// `routes = []`.
    pub fn load_for_reload(path: &Path, running_routes: usize) -> Result<Config, LoadError> {
        let text = std::fs::read_to_string(path).map_err(|source| LoadError::Read { path: path.into(), source })?;
        if text.trim().is_empty() {
            return Err(LoadError::Empty { path: path.into() });
        }
        let mut cfg = Self::parse(&text, path)?;
        if cfg.routes.is_empty() && running_routes > 0 && !declares_routes(&text) {
            return Err(LoadError::RemovesAllRoutes { path: path.into(), running: running_routes });
        }
        cfg.resolve_relative_paths(path.parent().unwrap_or(Path::new(".")));
        Ok(cfg)
    }

    /// The embedded default.
    pub fn embedded() -> Config {
        Self::parse(EMBEDDED_DEFAULT, Path::new("<embedded config/swarmgate.toml>"))
            .expect("the embedded config is valid")
    }

    /// Certificate paths are relative to the config file's folder.
    fn resolve_relative_paths(&mut self, base: &Path) {
        for c in &mut self.tls.certificates {
            if c.cert.is_relative() {
                c.cert = base.join(&c.cert);
            }
            if c.key.is_relative() {
                c.key = base.join(&c.key);
            }
        }
        for file in [&mut self.admin.token_file, &mut self.admin.basic_auth_file].into_iter().flatten() {
            if file.is_relative() {
                *file = base.join(&*file);
            }
        }
        if let Some(root) = self.acme.ca_root.as_mut().filter(|r| r.is_relative()) {
            *root = base.join(&*root);
        }
        let transports = self.labels.traefik_servers_transports.values_mut();
        let route_tls = self.routes.iter_mut().filter_map(|r| r.upstream_tls.as_mut());
        for ca in route_tls.chain(transports).filter_map(|t| t.ca.as_mut()) {
            if ca.is_relative() {
                *ca = base.join(&*ca);
            }
        }
    }

    /// The state directory: `storage`, else a per-machine default that is never the working
    /// directory (running the binary inside a checkout must not write state into it):
    /// `$STATE_DIRECTORY` (systemd), `/var/lib/swarmgate` for root (the container image),
    /// `$XDG_STATE_HOME/swarmgate` or `~/.local/state/swarmgate` for anyone else.
    pub fn storage_dir(&self) -> PathBuf {
        self.storage.clone().unwrap_or_else(default_storage_dir)
    }

    /// Every problem in the file, each naming its key.
    pub fn validate(&self) -> Vec<ConfigError> {
        let mut errors = Vec::new();
        if self.listen.http.is_none() && self.listen.https.is_none() {
            errors.push(ConfigError::new("listen", "set at least one of listen.http and listen.https"));
        }
        if let Some(addr) = self.listen.admin.filter(|a| !a.ip().is_loopback()) {
            if self.admin.token_file.is_none() && self.admin.basic_auth_file.is_none() {
                errors.push(ConfigError::new(
                    "admin.token_file",
                    format!("listen.admin = \"{addr}\" is not a loopback address, so the admin listener needs authentication: set admin.token_file or admin.basic_auth_file (or bind listen.admin to 127.0.0.1)"),
                ));
            }
        }
        if self.limits.max_connections == 0 {
            errors.push(ConfigError::new("limits.max_connections", "must be at least 1"));
        }
        if self.limits.max_header_bytes < 1024 {
            errors.push(ConfigError::new("limits.max_header_bytes", "must be at least 1024"));
        }
        if !(0.1..1.0).contains(&self.acme.renew_fraction) {
            errors.push(ConfigError::new("acme.renew_fraction", "must be between 0.1 and 1"));
        }
        if self.acme.enabled && self.acme.challenges.is_empty() {
            errors.push(ConfigError::new("acme.challenges", "list at least one of \"http-01\", \"tls-alpn-01\""));
        }
        let names: Vec<&str> = self.tls.certificates.iter().filter_map(|c| c.name.as_deref()).collect();
        for (i, r) in self.routes.iter().enumerate() {
            let key = |k: &str| format!("routes[{i}].{k}");
            if r.hosts.is_empty() {
                errors.push(ConfigError::new(key("hosts"), "list at least one host (\"*\" for every host)"));
            }
            for h in &r.hosts {
                if h != "*" && (h.is_empty() || h.contains('/') || h[h.starts_with("*.") as usize * 2..].contains('*'))
                {
                    errors.push(ConfigError::new(
                        key("hosts"),
                        format!("{h:?} is not a host name (a leading \"*.\" is the only wildcard)"),
                    ));
                }
            }
            if let Some(p) = &r.path {
                if !p.starts_with('/') {
                    errors.push(ConfigError::new(key("path"), format!("{p:?} must start with /")));
                }
            }
            let actions = usize::from(!r.upstreams.is_empty())
                + usize::from(r.respond.is_some())
                + usize::from(r.redirect.is_some());
            if actions != 1 {
                errors.push(ConfigError::new(key("upstreams"), "give exactly one of upstreams, respond, redirect"));
            }
            for u in &r.upstreams {
                if let Err(e) = parse_upstream(u) {
                    errors.push(ConfigError::new(key("upstreams"), e));
                }
            }
            if let Some(t) = &r.tls {
                if t != "auto" && t != "off" && !names.contains(&t.as_str()) {
                    errors.push(ConfigError::new(
                        key("tls"),
                        format!("{t:?} is not auto, off or the name of a [[tls.certificates]] entry"),
                    ));
                }
            }
            match (&r.health.path, &r.health.interval) {
                (Some(p), _) if !p.starts_with('/') => {
                    errors.push(ConfigError::new(key("health.path"), "must start with /"))
                }
                (None, Some(_)) => {
                    errors.push(ConfigError::new(key("health.path"), "health.interval needs health.path"))
                }
                _ => {}
            }
            for entry in &r.auth.basic {
                match entry.split_once(':') {
                    Some((user, hash)) if !user.is_empty() => {
                        if let Err(e) = crate::password::scheme(hash.trim()) {
                            errors.push(ConfigError::new(key("auth.basic"), format!("user {user}: {e}")));
                        }
                    }
                    _ => errors
                        .push(ConfigError::new(key("auth.basic"), "entries are user:hash (bcrypt, $apr1$ or {SHA})")),
                }
            }
            if r.lb != Some(LbPolicy::Cookie) && r.sticky_cookie.is_some() {
                errors.push(ConfigError::new(key("sticky_cookie"), "only used with lb = \"cookie\""));
            }
            for (k, e) in r.lb.unwrap_or_default().problems(r.lb_key.as_deref(), r.lb_fallback) {
                errors.push(ConfigError::new(key(k), e));
            }
            if let Some(Err(e)) = r.forward_auth.as_ref().map(ForwardAuthConfig::to_model) {
                errors.push(ConfigError::new(key("forward_auth.address"), e));
            }
            if let Some(rl) = &r.rate_limit {
                if rl.average == 0 {
                    errors.push(ConfigError::new(key("rate_limit.average"), "must be at least 1"));
                }
            }
            errors.extend(r.upstream_tls_errors(&key));
        }
        for (i, cidr) in self.forwarding.trusted_proxies.iter().enumerate() {
            if let Err(e) = crate::model::parse_cidr(cidr) {
                errors.push(ConfigError::new(format!("forwarding.trusted_proxies[{i}]"), e));
            }
        }
        if let Some(p) = self.labels.default_lb {
            for (_, e) in p.problems(None, None) {
                errors.push(ConfigError::new("labels.default_lb", e));
            }
        }
        for (name, tls) in &self.labels.traefik_servers_transports {
            errors.extend(upstream_tls_errors(tls, &format!("labels.traefik_servers_transports.{name}")));
        }
        errors
    }

    /// The file routes as `RouteSpec`s.
    pub fn route_specs(&self) -> Vec<RouteSpec> {
        let mut specs: Vec<RouteSpec> = self.routes.iter().enumerate().map(|(i, r)| r.to_spec(i)).collect();
        crate::model::split_side_services(&mut specs);
        specs
    }
}

/// One `upstreams` entry: `ip:port`, `[ipv6]:port` or `host:port`, optionally after `http://`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamAddr {
    Ip(SocketAddr),
    /// A DNS name, resolved later and periodically (never while loading: see `discovery::dns`).
    Name(String, u16),
}

/// Parses an `upstreams` entry without any lookup.
pub fn parse_upstream(s: &str) -> Result<UpstreamAddr, String> {
    let s = s.strip_prefix("http://").unwrap_or(s);
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(UpstreamAddr::Ip(a));
    }
    let Some((host, port)) = s.rsplit_once(':') else {
        return Err(format!("{s:?} needs a port (host:port)"));
    };
    let port: u16 = port.parse().ok().filter(|p| *p != 0).ok_or_else(|| format!("{s:?}: {port:?} is not a port"))?;
    let valid = !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|l| {
            !l.is_empty() && l.len() <= 63 && l.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        });
    if !valid {
        return Err(format!("{s:?}: {host:?} is not an IP address or a DNS name"));
    }
    Ok(UpstreamAddr::Name(host.to_ascii_lowercase(), port))
}

impl RouteConfig {
    fn to_spec(&self, index: usize) -> RouteSpec {
        let addrs: Vec<UpstreamAddr> = self.upstreams.iter().filter_map(|u| parse_upstream(u).ok()).collect();
        let target = if addrs.iter().all(|a| matches!(a, UpstreamAddr::Ip(_))) {
            let ip = |a: &UpstreamAddr| match a {
                UpstreamAddr::Ip(addr) => Some(Endpoint::fixed(*addr)),
                UpstreamAddr::Name(..) => None,
            };
            UpstreamTarget::Static(addrs.iter().filter_map(ip).collect())
        } else {
            let name = |a: UpstreamAddr| match a {
                UpstreamAddr::Ip(addr) => (addr.ip().to_string(), addr.port()),
                UpstreamAddr::Name(host, port) => (host, port),
            };
            UpstreamTarget::Names(addrs.into_iter().map(name).collect())
        };
        let mut up = UpstreamSpec::new(target);
        up.scheme = self.scheme;
        up.lb = self.lb.unwrap_or_default();
        if self.lb.is_some() {
            up.lb_source = crate::model::LbSource::Config(format!("routes[{index}].lb"));
        }
        up.lb_key = self.lb_key.clone();
        up.lb_fallback = self.lb_fallback;
        up.sticky_cookie = self.sticky_cookie.clone();
        up.pass_host = self.pass_host.unwrap_or(true);
        up.health = self.health.path.as_ref().map(|p| HealthCheck {
            path: p.clone(),
            interval: self.health.interval.map(|d| d.0).unwrap_or(Duration::from_secs(10)),
        });
        up.tls = self.upstream_tls.clone().unwrap_or_default();
        if up.tls.server_name.is_none() {
            // Verify a named upstream by its name, as a browser would (not by the address it
            // resolved to). Several different names need an explicit server_name (validate).
            if let [name] = self.upstream_host_names().as_slice() {
                up.tls.server_name = Some((*name).to_owned());
            }
        }
        let hosts = self.hosts.iter().map(|h| h.to_ascii_lowercase()).collect();
        let mut spec = RouteSpec::proxy(format!("file/{index}"), Provenance::File { index }, hosts, up);
        let path = self.path.clone().unwrap_or_else(|| "/".into());
        spec.path = match self.path_match {
            PathKind::Prefix => PathMatch::Prefix(path.clone()),
            PathKind::Exact => PathMatch::Exact(path.clone()),
        };
        if let Some(r) = &self.respond {
            spec.action = Action::Respond { status: r.status, body: r.body.clone() };
        } else if let Some(r) = &self.redirect {
            spec.action = Action::Redirect { location: r.to.clone(), status: r.status };
        }
        spec.priority = self.priority;
        spec.redirect_https = self.redirect_https;
        spec.tls = match self.tls.as_deref() {
            None | Some("auto") => TlsPolicy::Auto,
            Some("off") => TlsPolicy::Off,
            Some(name) => TlsPolicy::Static(name.into()),
        };
        spec.entrypoints = Entrypoints::default();
        if self.strip_prefix && path != "/" {
            spec.middlewares.push(Middleware::StripPrefix(path));
        }
        if !self.headers.request.is_empty() {
            spec.middlewares.push(Middleware::RequestHeaders(HeaderEdits {
                set: self.headers.request.clone(),
                ..Default::default()
            }));
        }
        if !self.headers.response.is_empty() {
            spec.middlewares.push(Middleware::ResponseHeaders(HeaderEdits {
                set: self.headers.response.clone(),
                ..Default::default()
            }));
        }
        if !self.auth.basic.is_empty() {
            let users = self
                .auth
                .basic
                .iter()
                .filter_map(|e| e.split_once(':'))
                .map(|(u, h)| (u.to_owned(), h.trim().to_owned()))
                .collect();
            spec.middlewares.push(Middleware::BasicAuth {
                realm: self.auth.realm.clone().unwrap_or_else(|| "restricted".into()),
                users,
            });
        }
        if let Some(rl) = &self.rate_limit {
            spec.middlewares.push(Middleware::RateLimit {
                average: rl.average,
                period: rl.period.map(|d| d.0).unwrap_or(Duration::from_secs(1)),
                burst: rl.burst.unwrap_or(rl.average),
            });
        }
        if let Some(n) = self.retries {
            spec.middlewares.push(Middleware::Retry { attempts: n + 1 });
        }
        // Validated with the config.
        if let Some(Ok(fa)) = self.forward_auth.as_ref().map(ForwardAuthConfig::to_model) {
            spec.middlewares.insert(0, Middleware::ForwardAuth(fa));
        }
        spec
    }
}

impl RouteConfig {
    /// Host names (not IP addresses) among `upstreams`, each once.
    fn upstream_host_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = Vec::new();
        for u in &self.upstreams {
            let u = u.strip_prefix("http://").unwrap_or(u);
            if u.parse::<SocketAddr>().is_ok() {
                continue;
            }
            if let Some((host, _)) = u.rsplit_once(':') {
                if !host.is_empty() && !names.contains(&host) {
                    names.push(host);
                }
            }
        }
        names
    }

    /// Problems with `upstream_tls` and TLS to the upstreams.
    fn upstream_tls_errors(&self, key: &dyn Fn(&str) -> String) -> Vec<ConfigError> {
        let tls = self.upstream_tls.clone().unwrap_or_default();
        let https = self.scheme == UpstreamScheme::Https;
        let mut errors = upstream_tls_errors(&tls, &key("upstream_tls"));
        if self.upstream_tls.is_some() && !https {
            errors.push(ConfigError::new(key("upstream_tls"), "only used with scheme = \"https\""));
        }
        if https && tls.server_name.is_none() && self.upstream_host_names().len() > 1 {
            errors.push(ConfigError::new(
                key("upstream_tls.server_name"),
                "the upstreams have different host names; give the name their certificates carry",
            ));
        }
        errors
    }
}

/// Problems within one set of upstream TLS settings at `key` (`routes[0].upstream_tls`, …).
fn upstream_tls_errors(tls: &UpstreamTls, key: &str) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    if tls.ca.is_some() && tls.insecure_skip_verify {
        errors.push(ConfigError::new(
            format!("{key}.insecure_skip_verify"),
            "contradicts ca (verify against that CA, or not at all); give one",
        ));
    }
    if let Some(n) = &tls.server_name {
        if rustls::pki_types::ServerName::try_from(n.as_str()).is_err() {
            errors.push(ConfigError::new(
                format!("{key}.server_name"),
                format!("{n:?} is not a DNS name or an IP address"),
            ));
        }
    }
    errors
}

/// `[server]`: how the proxy reads client requests before routing them.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// A request path not in normal form (dot segments, `//`, escaped unreserved characters).
    pub path_normalization: PathNormalization,
    /// `%2F`, `%5C` or `%00` in a request path.
    pub encoded_slashes: EncodedSlashes,
}

/// `[server] path_normalization`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PathNormalization {
    /// Route by the normal form and forward the normal form upstream.
    #[default]
    Forward,
    /// Answer 400 to any path that is not already in normal form.
    Reject,
}

/// `[server] encoded_slashes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EncodedSlashes {
    /// 400: servers disagree on whether `%2F` separates segments, so no upstream can read the
    /// path differently from the route table.
    #[default]
    Reject,
    /// Forward as sent; `%2F` is an ordinary character to routing (for apps such as GitLab
    /// whose API puts `group%2Fproject` in paths).
    Keep,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Running the binary (or a test) inside a checkout must not write state into it.
    #[test]
    fn default_storage_is_never_the_working_directory() {
        let dir = Config::default().storage_dir();
        assert!(dir.is_absolute(), "{}", dir.display());
    }

    #[test]
    fn embedded_default_is_valid() {
        let c = Config::embedded();
        assert!(!c.routes.is_empty());
    }

    #[test]
    fn shipped_stack_config_is_valid() {
        let c = Config::parse(include_str!("../../config/swarmgate.stack.toml"), Path::new("swarmgate.stack.toml"))
            .unwrap();
        assert_eq!(c.docker.enabled, DockerMode::On);
        assert!(c.acme.enabled);
        // config/stack.yml's `healthcheck:` runs `swarmgate healthcheck`, which asks this address.
        assert!(c.listen.admin.is_some_and(|a| a.ip().is_loopback()));
    }

    #[test]
    fn a_non_loopback_admin_listener_needs_authentication() {
        let open = Config::parse("[listen]\nadmin = \"0.0.0.0:2019\"\n", Path::new("t.toml")).unwrap_err().to_string();
        assert!(open.contains("admin.token_file") && open.contains("admin.basic_auth_file"), "{open}");
        for key in ["token_file", "basic_auth_file"] {
            let text = format!("[listen]\nadmin = \"0.0.0.0:2019\"\n[admin]\n{key} = \"/run/secrets/x\"\n");
            assert!(Config::parse(&text, Path::new("t.toml")).is_ok(), "{key}");
        }
        assert!(Config::parse("[listen]\nadmin = \"[::1]:2019\"\n", Path::new("t.toml")).is_ok());
    }

    #[test]
    fn unknown_key_is_an_error_naming_it() {
        let err = Config::parse("[listen]\nhttp = \"127.0.0.1:1\"\nhtps = \"x\"\n", Path::new("t.toml")).unwrap_err();
        assert!(err.to_string().contains("htps"), "{err}");
    }

    #[test]
    fn route_errors_name_their_key() {
        let text = "[[routes]]\nhosts = [\"a.com\"]\nupstreams = [\"nope\"]\n[[routes]]\nhosts = []\nrespond = { body = \"x\" }\n";
        let err = Config::parse(text, Path::new("t.toml")).unwrap_err().to_string();
        assert!(err.contains("routes[0].upstreams"), "{err}");
        assert!(err.contains("routes[1].hosts"), "{err}");
    }

    #[test]
    fn durations_use_the_shared_grammar_and_refuse_huge_values() {
        let ok = Config::parse("[limits]\nidle_timeout = \"1m30s\"\n", Path::new("t.toml")).unwrap();
        assert_eq!(ok.limits.idle_timeout.0, Duration::from_secs(90));
        for bad in ["\"99999999999999999999999s\"", "18446744073709551615", "\"-1s\""] {
            let err = Config::parse(&format!("[limits]\nidle_timeout = {bad}\n"), Path::new("t.toml"))
                .unwrap_err()
                .to_string();
            assert!(err.contains("idle_timeout"), "{bad}: {err}");
        }
    }

    #[test]
    fn lb_settings_are_checked_and_name_their_key() {
        let route =
            |extra: &str| format!("[[routes]]\nhosts = [\"a.example.com\"]\nupstreams = [\"127.0.0.1:1\"]\n{extra}\n");
        let ok = Config::parse(
            &(route("lb = \"header\"\nlb_key = \"X-User\"\nlb_fallback = \"first\"")
                + &route("lb = { random_choose = 3 }")
                + "[labels]\ndefault_lb = \"round_robin\"\n"),
            Path::new("t.toml"),
        )
        .unwrap();
        let up = ok.routes[0].to_spec(0).upstream().cloned().unwrap();
        assert_eq!(
            (up.lb, up.lb_key.as_deref(), up.lb_fallback),
            (LbPolicy::Header, Some("X-User"), Some(LbPolicy::First))
        );
        assert_eq!(up.lb_source, crate::model::LbSource::Config("routes[0].lb".into()));
        assert_eq!(ok.routes[1].lb, Some(LbPolicy::RandomChoose(3)));
        assert_eq!(ok.labels.default_lb, Some(LbPolicy::RoundRobin));
        for (extra, key, needle) in [
            ("lb = \"header\"", "routes[0].lb_key", "needs the name"),
            ("lb = \"header\"\nlb_key = \"bad name\"", "routes[0].lb_key", "not a header name"),
            ("lb = \"round_robin\"\nlb_key = \"x\"", "routes[0].lb_key", "only used with"),
            ("lb = \"random\"\nlb_fallback = \"first\"", "routes[0].lb_fallback", "only used with"),
            ("lb = \"cookie\"\nlb_fallback = \"header\"", "routes[0].lb_fallback", "cannot be a fallback"),
            ("lb = { random_choose = 1 }", "routes[0].lb", "at least 2"),
            ("lb = \"fastest\"", "lb = \"fastest\"", "unknown variant"),
        ] {
            let err = Config::parse(&route(extra), Path::new("t.toml")).unwrap_err().to_string();
            assert!(err.contains(key) && err.contains(needle), "{extra}: {err}");
        }
        let err = Config::parse("[labels]\ndefault_lb = \"query\"\n", Path::new("t.toml")).unwrap_err().to_string();
        assert!(err.contains("labels.default_lb"), "{err}");
    }
}
