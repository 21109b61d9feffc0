//! The native dialect: the TOML route schema flattened into `swarmgate.*` labels.
//!
//! `swarmgate.<key>` describes the service's default route; `swarmgate.routes.<name>.<key>`
//! describes more routes that inherit every unset key from the default route. A route with any
//! problem (unknown key, bad value) is left out whole: never half-applied.
//!
//! | key | meaning | default |
//! |---|---|---|
//! | `host` | comma-separated host names; `*.example.com` = one-label wildcard (`*` alone is refused) | required |
//! | `port` | container port on the task | 80 |
//! | `path` | path prefix, segment-aware (`/api` matches `/api`, `/api/x`, not `/apix`) | `/` |
//! | `path_match` | `prefix` or `exact` | prefix |
//! | `strip_prefix` | remove `path` before forwarding (sets `X-Forwarded-Prefix`) | false |
//! | `scheme` | upstream scheme: `http`, `https`, `h2c` | http |
//! | `tls` | `auto` (ACME), `off` (plain HTTP only), `internal` (self-signed), or a static certificate name | auto |
//! | `redirect_https` | plain-HTTP requests get 308 to https | true once a certificate exists |
//! | `lb` | `p2c`, `round_robin`, `random`, `least_conn`, `least_time`, `first`, `ip_hash`, `client_ip_hash`, `uri_hash`, `cookie` | p2c (or `[labels] default_lb`) |
//! | `sticky_cookie` | cookie name for `lb=cookie` | `swarmgate_sticky` |
//! | `pass_host` | forward the client's Host header | true |
//! | `health.path`, `health.interval` | active health check | off; 10s |
//! | `network` | Swarm network whose task IPs are used | the proxy's shared networks |
//! | `headers.request.<Name>`, `headers.response.<Name>` | set a header (empty value removes it) | — |
//! | `auth.basic`, `auth.realm` | `user:hash[,…]` (bcrypt, `$apr1$`, `{SHA}`); realm | —; `restricted` |
//! | `priority` | higher wins between overlapping routes | 0 (longest path first) |
//! | `retries` | extra attempts on another task for idempotent requests (0-8) | — |
//! | `upstream_tls.ca` | with `scheme=https`: absolute path of a PEM CA file to trust instead of the system roots | system roots |
//! | `upstream_tls.server_name` | with `scheme=https`: name for SNI and certificate verification | the task IP |
//! | `upstream_tls.insecure_skip_verify` | with `scheme=https`: accept any certificate (self-signed backends) | false |

use std::collections::BTreeMap;
use std::time::Duration;

use super::common::{
    header_name, header_value, label_host, parse_bool, parse_duration, password_hash, tls_ca_path, tls_server_name,
};
use super::{ServiceInput, Translation};
use crate::model::{
    Entrypoints, HeaderEdits, HealthCheck, LbPolicy, Middleware, PathMatch, Problem, Provenance, RouteSpec, TaskTarget,
    TlsPolicy, UpstreamScheme, UpstreamSpec, UpstreamTarget, UpstreamTls,
};

/// Keys a route understands (besides the `headers.request.` / `headers.response.` families).
/// The values `lb` takes (policies that need no key).
const NATIVE_LB: &str =
    "p2c, round_robin, random, least_conn, least_time, first, ip_hash, client_ip_hash, uri_hash, cookie";

const KEYS: &[&str] = &[
    "host",
    "port",
    "path",
    "path_match",
    "strip_prefix",
    "scheme",
    "tls",
    "redirect_https",
    "lb",
    "sticky_cookie",
    "pass_host",
    "health.path",
    "health.interval",
    "network",
    "auth.basic",
    "auth.realm",
    "priority",
    "retries",
    "upstream_tls.ca",
    "upstream_tls.server_name",
    "upstream_tls.insecure_skip_verify",
];

/// One label: its full key (for problems) and value.
#[derive(Clone, Copy)]
struct Label<'a> {
    key: &'a str,
    value: &'a str,
}

/// Translates one service's native labels.
pub(super) fn translate(svc: &ServiceInput, prefix: &str, out: &mut Translation) {
    let dotted = format!("{prefix}.");
    let mut default: BTreeMap<&str, Label<'_>> = BTreeMap::new();
    let mut named: BTreeMap<&str, BTreeMap<&str, Label<'_>>> = BTreeMap::new();
    let mut problems = Vec::new();
    let mut bad_names = Vec::new();
    for (key, value) in &svc.labels {
        if key == prefix {
            problems.push(Problem::new(
                &svc.name,
                key,
                format!("{prefix} alone means nothing; use {prefix}.host, {prefix}.port, …"),
            ));
            continue;
        }
        let Some(rest) = key.strip_prefix(&dotted) else {
            continue;
        };
        let label = Label { key, value };
        if let Some(r) = rest.strip_prefix("routes.") {
            let (name, sub) = r.split_once('.').unwrap_or((r, ""));
            if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
                problems.push(Problem::new(
                    &svc.name,
                    key,
                    format!("route name {name:?} must be letters, digits, '-' or '_'"),
                ));
                bad_names.push(name);
                continue;
            }
            if sub.is_empty() {
                problems.push(Problem::new(&svc.name, key, format!("give a key, e.g. {prefix}.routes.{name}.host")));
                bad_names.push(name);
                continue;
            }
            named.entry(name).or_default().insert(sub, label);
        } else {
            default.insert(rest, label);
        }
    }
    let has_default = default.contains_key("host");
    if !has_default && named.is_empty() && !default.is_empty() {
        problems.push(Problem::new(
            &svc.name,
            format!("{prefix}.host"),
            "host is required (comma-separated host names)",
        ));
    }
    if has_default {
        match build(svc, prefix, None, &default) {
            Ok(r) => out.routes.push(r),
            Err(p) => problems.extend(p),
        }
    }
    for (name, own) in &named {
        if bad_names.contains(name) {
            continue;
        }
        let mut merged = default.clone();
        merged.extend(own.iter().map(|(k, v)| (*k, *v)));
        match build(svc, prefix, Some(name), &merged) {
            Ok(r) => out.routes.push(r),
            Err(p) => problems.extend(p),
        }
    }
    out.problems.extend(problems);
}

/// Builds one route from its (already inherited) keys, or every problem found.
fn build(
    svc: &ServiceInput,
    prefix: &str,
    name: Option<&str>,
    keys: &BTreeMap<&str, Label<'_>>,
) -> Result<RouteSpec, Vec<Problem>> {
    let mut problems = Vec::new();
    let mut bad = |l: &Label<'_>, msg: String| problems.push(Problem::new(&svc.name, l.key, msg));
    let mut hosts = Vec::new();
    let mut port: u16 = 80;
    let mut path = "/".to_owned();
    let mut exact = false;
    let mut strip = false;
    let mut scheme = UpstreamScheme::Http;
    let mut tls = TlsPolicy::Auto;
    let mut redirect_https = None;
    let mut lb: Option<(Label<'_>, LbPolicy)> = None;
    let mut sticky_cookie = None;
    let mut pass_host = true;
    let mut health_path: Option<String> = None;
    let mut health_interval: Option<(Label<'_>, Duration)> = None;
    let mut network = None;
    let mut users = BTreeMap::new();
    let mut realm = "restricted".to_owned();
    let mut priority = 0i64;
    let mut retries = None;
    let mut req_headers = HeaderEdits::default();
    let mut resp_headers = HeaderEdits::default();
    let mut upstream_tls = UpstreamTls::default();
    let mut tls_label: Option<Label<'_>> = None;
    for (sub, l) in keys {
        let v = l.value.trim();
        match *sub {
            "host" => {
                for h in v.split(',').map(str::trim).filter(|h| !h.is_empty()) {
                    match label_host(h) {
                        Ok(h) if !hosts.contains(&h) => hosts.push(h),
                        Ok(_) => {}
                        Err(e) => bad(l, e),
                    }
                }
                if hosts.is_empty() && !v.split(',').any(|h| !h.trim().is_empty()) {
                    bad(l, "host is empty".into());
                }
            }
            "port" => match v.parse::<u16>() {
                Ok(p) if p > 0 => port = p,
                _ => bad(l, format!("{v:?} is not a port (1-65535)")),
            },
            "path" => {
                if v.starts_with('/') {
                    path = v.to_owned();
                } else {
                    bad(l, format!("{v:?} must start with /"));
                }
            }
            "path_match" => match v {
                "prefix" => exact = false,
                "exact" => exact = true,
                _ => bad(l, format!("{v:?} is not prefix or exact")),
            },
            "strip_prefix" => match parse_bool(v) {
                Ok(b) => strip = b,
                Err(e) => bad(l, e),
            },
            "scheme" => match v {
                "http" => scheme = UpstreamScheme::Http,
                "https" => scheme = UpstreamScheme::Https,
                "h2c" => scheme = UpstreamScheme::H2c,
                _ => bad(l, format!("{v:?} is not http, https or h2c")),
            },
            "tls" => match v {
                "" => bad(l, "empty; use auto, off, internal or the name of a static certificate".into()),
                "auto" => tls = TlsPolicy::Auto,
                "off" => tls = TlsPolicy::Off,
                "internal" => tls = TlsPolicy::Internal,
                name => tls = TlsPolicy::Static(name.to_owned()),
            },
            "redirect_https" => match parse_bool(v) {
                Ok(b) => redirect_https = Some(b),
                Err(e) => bad(l, e),
            },
            "lb" => match LbPolicy::from_name(v).filter(|p| !p.needs_key()) {
                Some(p) => lb = Some((*l, p)),
                None => bad(l, format!("{v:?} is not one of {NATIVE_LB}")),
            },
            "sticky_cookie" => {
                if v.is_empty() || !v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
                    bad(l, format!("{v:?} is not a cookie name"));
                } else {
                    sticky_cookie = Some((l, v.to_owned()));
                }
            }
            "pass_host" => match parse_bool(v) {
                Ok(b) => pass_host = b,
                Err(e) => bad(l, e),
            },
            "health.path" => {
                if v.starts_with('/') {
                    health_path = Some(v.to_owned());
                } else {
                    bad(l, format!("{v:?} must start with /"));
                }
            }
            "health.interval" => match parse_duration(v) {
                Ok(d) if d >= Duration::from_millis(100) => health_interval = Some((*l, d)),
                Ok(_) => bad(l, "must be at least 100ms".into()),
                Err(e) => bad(l, e),
            },
            "network" => {
                if v.is_empty() {
                    bad(l, "empty network name".into());
                } else {
                    network = Some(v.to_owned());
                }
            }
            "auth.basic" => {
                for entry in v.split(',').map(str::trim).filter(|e| !e.is_empty()) {
                    match entry.split_once(':') {
                        Some((user, hash)) if !user.is_empty() => match password_hash(hash) {
                            Ok(h) => {
                                users.insert(user.to_owned(), h);
                            }
                            Err(e) => bad(l, format!("user {user}: {e}")),
                        },
                        _ => bad(l, "entries are user:hash (bcrypt, $apr1$ or {SHA}), comma-separated".into()),
                    }
                }
                if users.is_empty() {
                    bad(l, "no users: basic auth without users would lock everyone out".into());
                }
            }
            "auth.realm" => realm = v.replace('"', ""),
            "priority" => match v.parse::<i64>() {
                Ok(p) => priority = p,
                Err(_) => bad(l, format!("{v:?} is not an integer")),
            },
            "retries" => match v.parse::<u32>() {
                Ok(n) if n <= 8 => retries = Some(n),
                _ => bad(l, format!("{v:?} is not a number of retries (0-8)")),
            },
            "upstream_tls.ca" | "upstream_tls.server_name" | "upstream_tls.insecure_skip_verify" => {
                tls_label = Some(*l);
                let set = match *sub {
                    "upstream_tls.ca" => tls_ca_path(v).map(|p| upstream_tls.ca = Some(p)),
                    "upstream_tls.server_name" => tls_server_name(v).map(|n| upstream_tls.server_name = Some(n)),
                    _ => parse_bool(v).map(|b| upstream_tls.insecure_skip_verify = b),
                };
                if let Err(e) = set {
                    bad(l, e);
                }
            }
            other => {
                let header = other
                    .strip_prefix("headers.request.")
                    .map(|n| (n, &mut req_headers))
                    .or_else(|| other.strip_prefix("headers.response.").map(|n| (n, &mut resp_headers)));
                match header {
                    Some((n, edits)) => match header_name(n).and_then(|_| header_value(v)) {
                        Ok(()) => {
                            edits.set.insert(n.to_owned(), v.to_owned());
                        }
                        Err(e) => bad(l, e),
                    },
                    None => bad(
                        l,
                        format!(
                            "unknown key {other:?}; known keys: {}, headers.request.<Name>, headers.response.<Name>",
                            KEYS.join(", ")
                        ),
                    ),
                }
            }
        }
    }
    if !keys.contains_key("host") {
        let key = match name {
            Some(n) => format!("{prefix}.routes.{n}.host"),
            None => format!("{prefix}.host"),
        };
        problems.push(Problem::new(&svc.name, key, "host is required (comma-separated host names)"));
    }
    if let (Some((l, _)), true) = (&sticky_cookie, lb.as_ref().map(|x| x.1) != Some(LbPolicy::Cookie)) {
        problems.push(Problem::new(&svc.name, l.key, "only used with lb = cookie"));
    }
    if let (Some((l, _)), None) = (&health_interval, &health_path) {
        problems.push(Problem::new(&svc.name, l.key, "health.interval needs health.path"));
    }
    if let Some(l) = tls_label {
        if scheme != UpstreamScheme::Https {
            problems.push(Problem::new(&svc.name, l.key, "upstream_tls is only used with scheme=https"));
        } else if upstream_tls.ca.is_some() && upstream_tls.insecure_skip_verify {
            problems.push(Problem::new(
                &svc.name,
                l.key,
                "upstream_tls.ca and insecure_skip_verify contradict; give one",
            ));
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }

    let mut up =
        UpstreamSpec::new(UpstreamTarget::Tasks(vec![TaskTarget { service: svc.name.clone(), network, port }]));
    up.scheme = scheme;
    up.tls = upstream_tls;
    // Without the label the source stays `Builtin`: `labels::translate` fills in the default.
    if let Some((l, p)) = lb {
        up.lb = p;
        up.lb_source = crate::model::LbSource::Label(l.key.to_owned());
    }
    up.sticky_cookie = sticky_cookie.map(|(_, n)| n);
    up.pass_host = pass_host;
    up.health = health_path
        .map(|p| HealthCheck { path: p, interval: health_interval.map(|(_, d)| d).unwrap_or(Duration::from_secs(10)) });
    let (id, key) = match name {
        Some(n) => (format!("svc/{}/native/{n}", svc.name), format!("{prefix}.routes.{n}")),
        None => (format!("svc/{}/native", svc.name), prefix.to_owned()),
    };
    let mut spec = RouteSpec::proxy(id, Provenance::Service { service: svc.name.clone(), key }, hosts, up);
    spec.path = if exact { PathMatch::Exact(path.clone()) } else { PathMatch::Prefix(path.clone()) };
    spec.priority = priority;
    spec.redirect_https = redirect_https;
    if tls == TlsPolicy::Off {
        // Off means plain HTTP only: answering on 443 without a certificate helps nobody.
        spec.entrypoints = Entrypoints { http: true, https: false };
    }
    spec.tls = tls;
    if strip && path != "/" {
        spec.middlewares.push(Middleware::StripPrefix(path));
    }
    if !users.is_empty() {
        spec.middlewares.push(Middleware::BasicAuth { realm, users });
    }
    if !req_headers.is_empty() {
        spec.middlewares.push(Middleware::RequestHeaders(req_headers));
    }
    if !resp_headers.is_empty() {
        spec.middlewares.push(Middleware::ResponseHeaders(resp_headers));
    }
    if let Some(n) = retries {
        spec.middlewares.push(Middleware::Retry { attempts: n + 1 });
    }
    Ok(spec)
}
