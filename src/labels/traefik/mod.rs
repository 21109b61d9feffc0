//! The Traefik dialect: `traefik.*` service labels (reference/traefik-swarm.md §1).
//!
//! Routers, services and middlewares are declared by label; keys are case-insensitive. Where
//! Traefik is silent or harsh we are explicit (LABELS.md §3):
//! - a `treafik.`-style typo or an unknown namespace is a problem (Traefik ignores it);
//! - an unknown field is a problem naming the key, and only the router / service / middleware
//!   it belongs to is left out (Traefik drops the whole Swarm service);
//! - a missing port falls back to the service's single published port, else "port is missing";
//! - a name defined differently by two Swarm services is a problem on both, and each keeps
//!   its own definition (Traefik deletes the resource for everyone). Identical definitions
//!   merge, as in Traefik, so two Swarm services can share one Traefik service;
//! - a rule without `Host` is refused (no catch-all routes from labels);
//! - services without any `traefik.` label are never routed, even with `exposed_by_default`.
//! - `lbswarm` (the Swarm VIP) is not used: we balance the task IPs ourselves, which is what
//!   makes draining and per-task health checks possible. It is reported and ignored.

mod rule;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use super::common::{bcrypt_hash, header_name, header_value, label_host, normalize_name, parse_bool, parse_duration};
use super::{LabelsConfig, ServiceInput, Translation};
use crate::model::{
    Action, Entrypoints, HeaderEdits, HealthCheck, LbPolicy, Middleware, Problem, Provenance, RouteSpec, TaskTarget,
    TlsPolicy, UpstreamScheme, UpstreamSpec, UpstreamTarget,
};

/// A router as declared by labels.
#[derive(Debug, Default)]
struct RouterDef {
    /// `traefik.http.routers.<name>` as written (first spelling seen).
    key: String,
    rule: Option<(String, String)>,
    entrypoints: Option<(String, Vec<String>)>,
    priority: Option<i64>,
    middlewares: Vec<String>,
    middlewares_key: String,
    service: Option<(String, String)>,
    tls: bool,
    certresolver: bool,
    domains: BTreeMap<usize, (Option<String>, Vec<String>)>,
    domains_key: String,
    /// Set when a label of this router could not be understood: the router is not served.
    broken: bool,
}

/// A load-balancer service as declared by labels. `PartialEq` ignores the key, so identical
/// definitions in two Swarm services can be recognised and merged.
#[derive(Debug, Default, Clone)]
struct ServiceDef {
    key: String,
    port: Option<u16>,
    scheme: UpstreamScheme,
    pass_host: bool,
    sticky: bool,
    cookie: Option<String>,
    health_path: Option<String>,
    health_interval: Option<Duration>,
    strategy: Option<LbPolicy>,
    broken: bool,
}

impl PartialEq for ServiceDef {
    fn eq(&self, o: &Self) -> bool {
        (
            self.port,
            self.scheme,
            self.pass_host,
            self.sticky,
            &self.cookie,
            &self.health_path,
            self.health_interval,
            self.strategy,
        ) == (o.port, o.scheme, o.pass_host, o.sticky, &o.cookie, &o.health_path, o.health_interval, o.strategy)
    }
}

/// What a middleware does once understood.
#[derive(Debug, Clone, PartialEq)]
enum MwSpec {
    RedirectScheme { permanent: bool, port: Option<u16> },
    Plain(Middleware),
}

#[derive(Debug, Default)]
struct MwDef {
    key: String,
    /// Type (`stripprefix`, …) and its fields: lower-case field → (label key, original field, value).
    kind: Option<String>,
    fields: Vec<(String, String, String, String)>,
    broken: bool,
}

/// One Swarm service's traefik labels.
#[derive(Debug, Default)]
struct SvcLabels {
    any: bool,
    enable: Option<bool>,
    network: Option<String>,
    routers: BTreeMap<String, RouterDef>,
    services: BTreeMap<String, ServiceDef>,
    middlewares: BTreeMap<String, MwDef>,
    /// Understood middlewares (filled after parsing): name → spec or `None` if unusable.
    mw_specs: BTreeMap<String, Option<Vec<MwSpec>>>,
}

/// Which enabled Swarm services define each service / middleware name (built once, so
/// cross-service references cost a lookup, not a scan).
#[derive(Default)]
struct Index {
    services: BTreeMap<String, Vec<usize>>,
    middlewares: BTreeMap<String, Vec<usize>>,
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            cur.push((prev[j] + usize::from(ca != *cb)).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

/// Translates every service's traefik labels.
pub(super) fn translate(services: &[&ServiceInput], cfg: &LabelsConfig, out: &mut Translation) {
    let mut parsed: Vec<SvcLabels> = Vec::with_capacity(services.len());
    for svc in services {
        parsed.push(parse_service(svc, &mut out.problems));
    }
    let enabled: Vec<bool> = services
        .iter()
        .zip(&parsed)
        .map(|(svc, p)| {
            let on = p.any && p.enable.unwrap_or(cfg.exposed_by_default);
            if p.any && !on && p.enable.is_none() && (!p.routers.is_empty() || !p.services.is_empty()) {
                out.problems.push(Problem::new(
                    &svc.name,
                    "traefik.enable",
                    "traefik labels ignored: traefik.enable is not true and exposed_by_default is off",
                ));
            }
            on
        })
        .collect();
    for p in &mut parsed {
        let names: Vec<String> = p.middlewares.keys().cloned().collect();
        for n in names {
            let spec = build_middleware("", &p.middlewares[&n], &mut Vec::new());
            p.mw_specs.insert(n, spec);
        }
    }
    // Middleware problems are reported once, for enabled services.
    for (i, p) in parsed.iter().enumerate() {
        if !enabled[i] {
            continue;
        }
        for m in p.middlewares.values() {
            let _ = build_middleware(&services[i].name, m, &mut out.problems);
        }
    }
    collisions(services, &parsed, &enabled, out);
    let mut idx = Index::default();
    for (i, p) in parsed.iter().enumerate().filter(|(i, _)| enabled[*i]) {
        p.services.keys().for_each(|n| idx.services.entry(n.clone()).or_default().push(i));
        p.middlewares.keys().for_each(|n| idx.middlewares.entry(n.clone()).or_default().push(i));
    }
    for (i, _) in enabled.iter().enumerate().filter(|(_, on)| **on) {
        routes_for(i, services, &parsed, &idx, cfg, out);
    }
}

/// Reports names defined differently by two enabled Swarm services.
fn collisions(services: &[&ServiceInput], parsed: &[SvcLabels], enabled: &[bool], out: &mut Translation) {
    let mut routers: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    let mut svcs: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    let mut mws: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, p) in parsed.iter().enumerate().filter(|(i, _)| enabled[*i]) {
        p.routers.keys().for_each(|n| routers.entry(n).or_default().push(i));
        p.services.keys().for_each(|n| svcs.entry(n).or_default().push(i));
        p.middlewares.keys().for_each(|n| mws.entry(n).or_default().push(i));
    }
    let mut report = |kind: &str, name: &str, owners: &[usize], key: &dyn Fn(usize) -> String| {
        for &i in owners {
            let others: Vec<&str> = owners.iter().filter(|&&j| j != i).map(|&j| services[j].name.as_str()).collect();
            out.problems.push(Problem::new(
                &services[i].name,
                key(i),
                format!(
                    "{kind} name {name} is also defined, differently, by service {}; Traefik would drop it everywhere, swarmgate keeps each service's own {kind} (rename one)",
                    others.join(", ")
                ),
            ));
        }
    };
    for (name, owners) in &routers {
        if owners.len() > 1 {
            let rules: BTreeSet<Option<&str>> =
                owners.iter().map(|&i| parsed[i].routers[*name].rule.as_ref().map(|r| r.1.as_str())).collect();
            if rules.len() > 1 || rules.contains(&None) {
                report("router", name, owners, &|i| parsed[i].routers[*name].key.clone());
            }
        }
    }
    for (name, owners) in &svcs {
        let first = &parsed[owners[0]].services[*name];
        if owners.len() > 1 && owners.iter().any(|&i| &parsed[i].services[*name] != first) {
            report("service", name, owners, &|i| parsed[i].services[*name].key.clone());
        }
    }
    for (name, owners) in &mws {
        let first = &parsed[owners[0]].mw_specs[*name];
        if owners.len() > 1 && owners.iter().any(|&i| &parsed[i].mw_specs[*name] != first) {
            report("middleware", name, owners, &|i| parsed[i].middlewares[*name].key.clone());
        }
    }
}

/// Splits `a,b , c` into trimmed, non-empty items.
fn list(v: &str) -> Vec<String> {
    v.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect()
}

/// Reads one service's labels into definitions, reporting keys it cannot place.
fn parse_service(svc: &ServiceInput, problems: &mut Vec<Problem>) -> SvcLabels {
    let mut s = SvcLabels::default();
    let mut docker_net: Option<String> = None;
    let mut swarm_net: Option<String> = None;
    for (key, value) in &svc.labels {
        let lk = key.to_ascii_lowercase();
        let mut p = |msg: String| problems.push(Problem::new(&svc.name, key, msg));
        let Some(rest) = lk.strip_prefix("traefik.") else {
            if lk != "traefik" {
                if let Some((root, _)) = lk.split_once('.') {
                    if root != "traefik" && (5..=9).contains(&root.len()) && levenshtein(root, "traefik") <= 2 {
                        p(format!("{root}. looks like a misspelt traefik.; this label is ignored"));
                    }
                }
            } else {
                p("traefik alone means nothing; use traefik.enable and traefik.http.*".into());
            }
            continue;
        };
        s.any = true;
        // Original spelling of each segment (header names keep their case).
        let orig: Vec<&str> = key.split('.').collect();
        let segs: Vec<&str> = rest.split('.').collect();
        if segs.iter().any(|x| x.is_empty()) {
            p("empty segment in the label key".into());
            continue;
        }
        let v = value.trim();
        match segs.as_slice() {
            ["enable"] => match parse_bool(v) {
                Ok(b) => s.enable = Some(b),
                Err(e) => {
                    p(format!("{e}; the service is not exposed"));
                    s.enable = Some(false);
                }
            },
            ["swarm", "network"] => swarm_net = Some(v.to_owned()),
            ["docker", "network"] => docker_net = Some(v.to_owned()),
            ["swarm" | "docker", "lbswarm"] => {
                if parse_bool(v) == Ok(true) {
                    p("lbswarm is not used: swarmgate balances across the task IPs itself (draining, per-task health); the label is ignored".into());
                }
            }
            ["http", "routers", name, field @ ..] => {
                let r = s.routers.entry((*name).to_owned()).or_default();
                if r.key.is_empty() {
                    r.key = orig[..4].join(".");
                }
                router_field(r, field, key, v, &mut p);
            }
            ["http", "services", name, field @ ..] => {
                let d = s.services.entry((*name).to_owned()).or_insert_with(|| ServiceDef { pass_host: true, ..Default::default() });
                if d.key.is_empty() {
                    d.key = orig[..4].join(".");
                }
                service_field(d, field, v, &mut p);
            }
            ["http", "middlewares", name, kind, field @ ..] => {
                let m = s.middlewares.entry((*name).to_owned()).or_default();
                if m.key.is_empty() {
                    m.key = orig[..4].join(".");
                }
                match &m.kind {
                    Some(k) if k != kind => {
                        p(format!("middleware {name} is already a {k}; one middleware has one type"));
                        m.broken = true;
                    }
                    _ => m.kind = Some((*kind).to_owned()),
                }
                let orig_field = orig.get(5..).map(|f| f.join(".")).unwrap_or_default();
                m.fields.push((field.join("."), orig_field, key.clone(), v.to_owned()));
            }
            ["http", "middlewares", name] => {
                p(format!("middleware {name} needs a type, e.g. traefik.http.middlewares.{name}.stripprefix.prefixes"));
                s.middlewares.entry((*name).to_owned()).or_default().broken = true;
            }
            ["tcp" | "udp", ..] => p("TCP/UDP routing is not supported by swarmgate; label ignored".into()),
            ["tls", ..] => p("TLS stores/options by label are not supported; certificates come from swarmgate's ACME issuer; label ignored".into()),
            ["enabled"] => p("unknown label (did you mean traefik.enable?); ignored".into()),
            _ => p("unknown traefik label; ignored (Traefik ignores it silently)".into()),
        }
    }
    s.network = match (swarm_net, docker_net) {
        (Some(sw), Some(d)) if sw != d => {
            problems.push(Problem::new(
                &svc.name,
                "traefik.docker.network",
                format!("conflicts with traefik.swarm.network={sw}; using {sw}"),
            ));
            Some(sw)
        }
        (Some(n), _) | (None, Some(n)) if !n.is_empty() => Some(n),
        _ => None,
    };
    s
}

fn router_field(r: &mut RouterDef, field: &[&str], key: &str, v: &str, p: &mut dyn FnMut(String)) {
    let broken = |p: &mut dyn FnMut(String), msg: String| {
        p(format!("{msg}; router not served"));
        true
    };
    let bad = match field {
        [] => broken(p, "a router cannot be a standalone element; give a field such as .rule".into()),
        ["rule"] => {
            r.rule = Some((key.to_owned(), v.to_owned()));
            false
        }
        ["entrypoints"] => {
            r.entrypoints = Some((key.to_owned(), list(v)));
            false
        }
        ["priority"] => match v.parse::<i64>() {
            Ok(n) => {
                r.priority = Some(n);
                false
            }
            Err(_) => broken(p, format!("{v:?} is not an integer")),
        },
        ["middlewares"] => {
            r.middlewares = list(v);
            r.middlewares_key = key.to_owned();
            false
        }
        ["service"] => {
            r.service = Some((key.to_owned(), v.to_owned()));
            false
        }
        ["tls"] => {
            // As in Traefik: `true` enables TLS, any other value disables it.
            r.tls = v.eq_ignore_ascii_case("true");
            false
        }
        ["tls", "certresolver"] => {
            r.certresolver = !v.is_empty();
            false
        }
        ["tls", "options"] => {
            p("tls.options is ignored: swarmgate uses its own TLS settings".into());
            false
        }
        ["tls", dom, which] if dom.starts_with("domains[") && dom.ends_with(']') => {
            let Ok(n) = dom["domains[".len()..dom.len() - 1].parse::<usize>() else {
                return r.broken |= broken(p, "bad domains index".into());
            };
            r.domains_key = key.to_owned();
            let d = r.domains.entry(n).or_default();
            match *which {
                "main" => {
                    d.0 = Some(v.to_owned());
                    false
                }
                "sans" => {
                    d.1 = list(v);
                    false
                }
                other => broken(p, format!("unknown field {other} (main, sans)")),
            }
        }
        ["rulesyntax"] => {
            p("ruleSyntax is ignored: rules are read in the v3 syntax (v2 matcher names are accepted)".into());
            false
        }
        ["observability", ..] => {
            p("observability options are ignored (swarmgate's access log and metrics cover every route)".into());
            false
        }
        _ => broken(p, format!("unknown router field {} (rule, entrypoints, priority, middlewares, service, tls, tls.certresolver, tls.domains[n].main/sans)", field.join("."))),
    };
    r.broken |= bad;
}

fn service_field(d: &mut ServiceDef, field: &[&str], v: &str, p: &mut dyn FnMut(String)) {
    let mut bad = |msg: String| {
        p(format!("{msg}; service not usable"));
        true
    };
    let ignored = |p: &mut dyn FnMut(String), what: &str| {
        p(format!("{what} is not supported; ignored"));
        false
    };
    let broken = match field {
        [] => bad("a service cannot be a standalone element; give e.g. .loadbalancer.server.port".into()),
        ["loadbalancer", "server", "port"] => match v.parse::<u16>() {
            Ok(n) if n > 0 => {
                d.port = Some(n);
                false
            }
            _ => bad(format!("{v:?} is not a port (1-65535)")),
        },
        ["loadbalancer", "server", "scheme"] => match v.to_ascii_lowercase().as_str() {
            "http" => {
                d.scheme = UpstreamScheme::Http;
                false
            }
            "https" => {
                d.scheme = UpstreamScheme::Https;
                false
            }
            "h2c" => {
                d.scheme = UpstreamScheme::H2c;
                false
            }
            _ => bad(format!("{v:?} is not http, https or h2c")),
        },
        ["loadbalancer", "server", "url"] => bad("server.url (a fixed address) is not supported: routes go to the service's own tasks".into()),
        ["loadbalancer", "server", "weight" | "preservepath"] => ignored(p, &format!("server.{}", field[2])),
        ["loadbalancer", "passhostheader"] => match parse_bool(v) {
            Ok(b) => {
                d.pass_host = b;
                false
            }
            Err(e) => bad(e),
        },
        ["loadbalancer", "sticky", "cookie"] => match parse_bool(v) {
            Ok(b) => {
                d.sticky = b;
                false
            }
            Err(e) => bad(e),
        },
        ["loadbalancer", "sticky", "cookie", "name"] => {
            if v.is_empty() || !v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
                bad(format!("{v:?} is not a cookie name"))
            } else {
                d.sticky = true;
                d.cookie = Some(v.to_owned());
                false
            }
        }
        ["loadbalancer", "sticky", "cookie", other] => ignored(p, &format!("sticky.cookie.{other}")),
        ["loadbalancer", "healthcheck", "path"] => {
            if v.starts_with('/') {
                d.health_path = Some(v.to_owned());
                false
            } else {
                bad(format!("{v:?} must start with /"))
            }
        }
        ["loadbalancer", "healthcheck", "interval"] => match parse_duration(v) {
            Ok(i) if i >= Duration::from_millis(100) => {
                d.health_interval = Some(i);
                false
            }
            Ok(_) => bad("must be at least 100ms".into()),
            Err(e) => bad(e),
        },
        ["loadbalancer", "healthcheck", ..] => ignored(p, &format!("healthcheck.{}", field[2..].join("."))),
        ["loadbalancer", "strategy"] => match v.to_ascii_lowercase().as_str() {
            "wrr" => {
                d.strategy = Some(LbPolicy::RoundRobin);
                false
            }
            "p2c" => {
                d.strategy = Some(LbPolicy::P2c);
                false
            }
            other => ignored(p, &format!("strategy {other}")),
        },
        ["loadbalancer", "responseforwarding" | "serverstransport", ..] => ignored(p, field[1]),
        _ => bad(format!("unknown service field {} (loadbalancer.server.port/scheme, passhostheader, sticky.cookie[.name], healthcheck.path/interval, strategy)", field.join("."))),
    };
    d.broken |= broken;
}

/// Turns a middleware's fields into specs; problems name the label. `None` = not usable.
fn build_middleware(svc: &str, m: &MwDef, problems: &mut Vec<Problem>) -> Option<Vec<MwSpec>> {
    if m.broken {
        return None;
    }
    let kind = m.kind.as_deref()?;
    let mut errs: Vec<Problem> = Vec::new();
    let mut notes: Vec<Problem> = Vec::new();
    let mut bad = |key: &str, msg: String| errs.push(Problem::new(svc, key, format!("{msg}; middleware not usable")));
    let mut note = |key: &str, msg: String| notes.push(Problem::new(svc, key, msg));
    let get = |f: &str| m.fields.iter().find(|x| x.0 == f).map(|x| (x.2.as_str(), x.3.as_str()));
    let known = |allowed: &[&str], prefixes: &[&str]| -> Vec<(String, String)> {
        m.fields
            .iter()
            .filter(|x| !allowed.contains(&x.0.as_str()) && !prefixes.iter().any(|p| x.0.starts_with(p)))
            .map(|x| (x.2.clone(), x.0.clone()))
            .collect()
    };
    let spec = match kind {
        "redirectscheme" => {
            for (k, f) in known(&["scheme", "permanent", "port"], &[]) {
                bad(&k, format!("unknown redirectscheme field {f}"));
            }
            let scheme = get("scheme").map(|(_, v)| v.to_ascii_lowercase());
            if scheme.as_deref() != Some("https") {
                let key = get("scheme").map(|x| x.0).unwrap_or(&m.key).to_owned();
                bad(&key, "only redirectscheme.scheme=https is supported".into());
            }
            let permanent = match get("permanent").map(|(k, v)| (k, parse_bool(v))) {
                Some((k, Err(e))) => {
                    bad(k, e);
                    false
                }
                Some((_, Ok(b))) => b,
                None => false,
            };
            let port = match get("port") {
                Some((k, v)) => match v.parse::<u16>() {
                    Ok(p) if p > 0 => Some(p).filter(|p| *p != 443),
                    _ => {
                        bad(k, format!("{v:?} is not a port"));
                        None
                    }
                },
                None => None,
            };
            vec![MwSpec::RedirectScheme { permanent, port }]
        }
        "stripprefix" => {
            for (k, f) in known(&["prefixes", "forceslash"], &[]) {
                bad(&k, format!("unknown stripprefix field {f}"));
            }
            match get("prefixes").map(|(k, v)| (k, list(v))) {
                Some((_, ps)) if ps.len() == 1 && ps[0].starts_with('/') => {
                    vec![MwSpec::Plain(Middleware::StripPrefix(ps[0].clone()))]
                }
                Some((k, ps)) if ps.len() > 1 => {
                    bad(k, "several prefixes are not supported (one prefix per middleware)".into());
                    vec![]
                }
                Some((k, _)) => {
                    bad(k, "give one prefix starting with /".into());
                    vec![]
                }
                None => {
                    bad(&m.key, "stripprefix.prefixes is missing".into());
                    vec![]
                }
            }
        }
        "addprefix" => match get("prefix") {
            Some((_, v)) if v.starts_with('/') => {
                vec![MwSpec::Plain(Middleware::AddPrefix(v.to_owned()))]
            }
            Some((k, v)) => {
                bad(k, format!("{v:?} must start with /"));
                vec![]
            }
            None => {
                bad(&m.key, "addprefix.prefix is missing".into());
                vec![]
            }
        },
        "headers" => {
            let mut req = HeaderEdits::default();
            let mut resp = HeaderEdits::default();
            let mut sts: Option<(u64, bool, bool)> = None;
            for (f, orig, k, v) in &m.fields {
                let set = |edits: &mut HeaderEdits, name: &str, value: &str, bad: &mut dyn FnMut(&str, String)| {
                    match header_name(name).and_then(|_| header_value(value)) {
                        Ok(()) => {
                            edits.set.insert(name.to_owned(), value.to_owned());
                        }
                        Err(e) => bad(k, e),
                    }
                };
                let on = || parse_bool(v).unwrap_or(false);
                match f.as_str() {
                    _ if f.starts_with("customrequestheaders.") => set(&mut req, &orig["customrequestheaders.".len()..], v, &mut bad),
                    _ if f.starts_with("customresponseheaders.") => set(&mut resp, &orig["customresponseheaders.".len()..], v, &mut bad),
                    "framedeny" if on() => set(&mut resp, "X-Frame-Options", "DENY", &mut bad),
                    "customframeoptionsvalue" => set(&mut resp, "X-Frame-Options", v, &mut bad),
                    "contenttypenosniff" if on() => set(&mut resp, "X-Content-Type-Options", "nosniff", &mut bad),
                    "browserxssfilter" if on() => set(&mut resp, "X-XSS-Protection", "1; mode=block", &mut bad),
                    "referrerpolicy" => set(&mut resp, "Referrer-Policy", v, &mut bad),
                    "contentsecuritypolicy" => set(&mut resp, "Content-Security-Policy", v, &mut bad),
                    "permissionspolicy" => set(&mut resp, "Permissions-Policy", v, &mut bad),
                    "stsseconds" => match v.parse::<u64>() {
                        Ok(n) => sts.get_or_insert((0, false, false)).0 = n,
                        Err(_) => bad(k, format!("{v:?} is not a number of seconds")),
                    },
                    "stsincludesubdomains" => sts.get_or_insert((0, false, false)).1 = on(),
                    "stspreload" => sts.get_or_insert((0, false, false)).2 = on(),
                    "forcestsheader" => note(k, "forceSTSHeader is implied: the STS header is sent on every response".into()),
                    "framedeny" | "contenttypenosniff" | "browserxssfilter" => {}
                    _ => bad(k, format!("headers.{orig} is not supported (supported: customrequestheaders, customresponseheaders, framedeny, customframeoptionsvalue, contenttypenosniff, browserxssfilter, sts*, referrerpolicy, contentsecuritypolicy, permissionspolicy)")),
                }
            }
            if let Some((secs, sub, pre)) = sts.filter(|s| s.0 > 0) {
                let mut v = format!("max-age={secs}");
                if sub {
                    v.push_str("; includeSubDomains");
                }
                if pre {
                    v.push_str("; preload");
                }
                resp.set.insert("Strict-Transport-Security".into(), v);
            }
            let mut out = Vec::new();
            if !req.is_empty() {
                out.push(MwSpec::Plain(Middleware::RequestHeaders(req)));
            }
            if !resp.is_empty() {
                out.push(MwSpec::Plain(Middleware::ResponseHeaders(resp)));
            }
            out
        }
        "basicauth" => {
            for (k, f) in known(&["users", "realm", "removeheader"], &[]) {
                bad(&k, format!("basicauth.{f} is not supported"));
            }
            if let Some((k, v)) = get("removeheader") {
                if parse_bool(v) == Ok(true) {
                    note(
                        k,
                        "removeHeader is not supported: the Authorization header is forwarded to the service".into(),
                    );
                }
            }
            let realm = get("realm").map(|(_, v)| v.replace('"', "")).unwrap_or_else(|| "traefik".into());
            let mut users = BTreeMap::new();
            match get("users") {
                Some((k, v)) => {
                    for entry in list(v) {
                        match entry.split_once(':') {
                            Some((u, h)) if !u.is_empty() => match bcrypt_hash(h) {
                                Ok(h) => {
                                    users.insert(u.to_owned(), h);
                                }
                                Err(e) => bad(k, format!("user {u}: {e}")),
                            },
                            _ => bad(k, "entries are user:hash, comma-separated".into()),
                        }
                    }
                    if users.is_empty() {
                        bad(k, "no users".into());
                    }
                }
                None => bad(&m.key, "basicauth.users is missing".into()),
            }
            vec![MwSpec::Plain(Middleware::BasicAuth { realm, users })]
        }
        "ratelimit" => {
            for (k, f) in known(&["average", "period", "burst"], &["sourcecriterion"]) {
                bad(&k, format!("ratelimit.{f} is not supported"));
            }
            if let Some((k, _)) = get("sourcecriterion").or_else(|| {
                m.fields.iter().find(|x| x.0.starts_with("sourcecriterion")).map(|x| (x.2.as_str(), x.3.as_str()))
            }) {
                note(k, "sourceCriterion is ignored".into());
            }
            let num = |f: &str, default: u64, bad: &mut dyn FnMut(&str, String)| match get(f) {
                Some((k, v)) => v.parse::<u64>().unwrap_or_else(|_| {
                    bad(k, format!("{v:?} is not a whole number"));
                    default
                }),
                None => default,
            };
            let average = num("average", 0, &mut bad);
            let burst = num("burst", 1, &mut bad);
            let period = match get("period") {
                Some((k, v)) => parse_duration(v).unwrap_or_else(|e| {
                    bad(k, e);
                    Duration::from_secs(1)
                }),
                None => Duration::from_secs(1),
            };
            note(&m.key, "rate limits are counted per route across all clients (Traefik counts per client IP)".into());
            if average == 0 {
                // Traefik: average 0 means no limit.
                vec![]
            } else {
                vec![MwSpec::Plain(Middleware::RateLimit { average, period, burst: burst.max(1) })]
            }
        }
        "retry" => {
            for (k, f) in known(&["attempts", "initialinterval"], &[]) {
                bad(&k, format!("retry.{f} is not supported"));
            }
            if let Some((k, _)) = get("initialinterval") {
                note(k, "retry.initialInterval is ignored: retries go to another task at once".into());
            }
            match get("attempts").map(|(k, v)| (k, v.parse::<u32>())) {
                Some((_, Ok(n))) if n >= 1 => {
                    vec![MwSpec::Plain(Middleware::Retry { attempts: n.min(9) })]
                }
                Some((k, _)) => {
                    bad(k, "attempts must be a whole number ≥ 1".into());
                    vec![]
                }
                None => {
                    bad(&m.key, "retry.attempts is missing".into());
                    vec![]
                }
            }
        }
        other => {
            bad(&m.key, format!("middleware type {other} is not supported (supported: redirectscheme, stripprefix, addprefix, headers, basicauth, ratelimit, retry)"));
            vec![]
        }
    };
    let ok = errs.is_empty();
    problems.append(&mut errs);
    problems.append(&mut notes);
    ok.then_some(spec)
}

/// Renders the default rule template: `{{ normalize .Name }}`, `{{ .Name }}`, `{{ index .Labels "k" }}`.
fn default_rule(template: &str, svc: &ServiceInput) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find("}}").ok_or("unclosed {{ in the default rule")?;
        let action: Vec<&str> = after[..end].trim().trim_matches('-').split_whitespace().collect();
        match action.as_slice() {
            ["normalize", ".Name"] | [".Name"] => out.push_str(&normalize_name(&svc.name)),
            ["index", ".Labels", k] => {
                out.push_str(svc.labels.get(k.trim_matches('"')).map(String::as_str).unwrap_or(""))
            }
            other => return Err(format!("default rule template {{{{{}}}}} is not supported", other.join(" "))),
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Strips the provider suffix of a reference; `None` for other providers.
fn local_ref(name: &str) -> Option<String> {
    let lower = name.to_ascii_lowercase();
    match lower.split_once('@') {
        None => Some(lower),
        Some((n, "swarm" | "docker")) => Some(n.to_owned()),
        Some(_) => None,
    }
}

/// Where a router's service lives: the Swarm services (with their networks) and the definition.
fn resolve_service(
    i: usize,
    name: &str,
    services: &[&ServiceInput],
    parsed: &[SvcLabels],
    idx: &Index,
) -> Result<(Vec<TaskTarget>, ServiceDef), String> {
    let target = |j: usize, d: &ServiceDef| -> Result<TaskTarget, String> {
        let port = match d.port {
            Some(p) => p,
            None => match services[j].ports.as_slice() {
                [p] => *p,
                [] => return Err(format!("port is missing: set traefik.http.services.{name}.loadbalancer.server.port (service {} publishes no port)", services[j].name)),
                _ => return Err(format!("port is missing: set traefik.http.services.{name}.loadbalancer.server.port (service {} publishes several ports)", services[j].name)),
            },
        };
        Ok(TaskTarget { service: services[j].name.clone(), network: parsed[j].network.clone(), port })
    };
    let owners: &[usize] = idx.services.get(name).map(Vec::as_slice).unwrap_or(&[]);
    let def = if let Some(d) = parsed[i].services.get(name) {
        d.clone()
    } else {
        match owners {
            [] => return Err(format!("service {name} is not defined by any enabled service")),
            [j, rest @ ..] if rest.iter().all(|k| parsed[*k].services[name] == parsed[*j].services[name]) => {
                parsed[*j].services[name].clone()
            }
            _ => {
                return Err(format!(
                    "service {name} is defined differently by several services; cannot tell which one is meant"
                ))
            }
        }
    };
    if def.broken {
        return Err(format!("service {name} is not usable (see its problem)"));
    }
    // Identical definitions merge (Traefik appends their servers); the local one comes first.
    let mut group: Vec<usize> = if parsed[i].services.contains_key(name) { vec![i] } else { Vec::new() };
    group.extend(owners.iter().copied().filter(|&j| j != i && parsed[j].services[name] == def));
    let targets = group.into_iter().map(|j| target(j, &parsed[j].services[name])).collect::<Result<Vec<_>, _>>()?;
    Ok((targets, def))
}

fn routes_for(
    i: usize,
    services: &[&ServiceInput],
    parsed: &[SvcLabels],
    idx: &Index,
    cfg: &LabelsConfig,
    out: &mut Translation,
) {
    let svc = services[i];
    let p = &parsed[i];
    let mut problem = |key: &str, msg: String| out.problems.push(Problem::new(&svc.name, key, msg));
    let default_name = normalize_name(&svc.name).to_ascii_lowercase();
    // Traefik's defaults: no router → one router named after the service; no service → one
    // service named after it (when there is nothing else to route).
    let mut routers: Vec<(String, RouterDef)> = Vec::new();
    let mut local_services: Vec<String> = p.services.keys().cloned().collect();
    if p.routers.is_empty() {
        if p.services.len() > 1 {
            problem(
                "traefik.http.routers",
                "no router labels and several services: cannot create a default router; add a router per service"
                    .into(),
            );
            return;
        }
        if p.services.is_empty() && !p.middlewares.is_empty() {
            // A service that only declares middlewares for others.
            return;
        }
        routers.push((
            default_name.clone(),
            RouterDef { key: format!("traefik.http.routers.{default_name}"), ..Default::default() },
        ));
    }
    let mut implicit_service: Option<ServiceDef> = None;
    if local_services.is_empty() {
        local_services.push(default_name.clone());
        implicit_service = Some(ServiceDef {
            key: format!("traefik.http.services.{default_name}"),
            pass_host: true,
            ..Default::default()
        });
    }
    let mut all_routers: Vec<(&String, &RouterDef)> = p.routers.iter().collect();
    all_routers.extend(routers.iter().map(|(n, r)| (n, r)));
    for (name, r) in all_routers {
        if r.broken {
            continue;
        }
        // Rule.
        let (rule_key, rule_text) = match &r.rule {
            Some((k, v)) if !v.trim().is_empty() => (k.clone(), v.clone()),
            _ => match default_rule(&cfg.traefik_default_rule, svc) {
                Ok(v) => (format!("{}.rule", r.key), v),
                Err(e) => {
                    problem(&format!("{}.rule", r.key), e);
                    continue;
                }
            },
        };
        let (parts, notes) = match rule::parse(&rule_text).and_then(|e| rule::parts(&e)) {
            Ok(x) => x,
            Err(e) => {
                problem(&rule_key, format!("{e}; router not served"));
                continue;
            }
        };
        for n in notes {
            problem(&rule_key, n);
        }
        // Service.
        let svc_key = r.service.as_ref().map(|s| s.0.clone()).unwrap_or_else(|| format!("{}.service", r.key));
        let svc_name = match &r.service {
            Some((_, s)) => match local_ref(s) {
                Some(n) => n,
                None => {
                    problem(
                        &svc_key,
                        format!("service {s} is from another provider; only services defined by labels are supported"),
                    );
                    continue;
                }
            },
            None if local_services.len() == 1 => local_services[0].clone(),
            None => {
                problem(&svc_key, format!("router {name} cannot be linked automatically: the service defines several services ({}); set .service", local_services.join(", ")));
                continue;
            }
        };
        let resolved =
            match &implicit_service {
                Some(def) if svc_name == default_name && !p.services.contains_key(&svc_name) => {
                    match svc.ports.as_slice() {
                    [port] => Ok((vec![TaskTarget { service: svc.name.clone(), network: p.network.clone(), port: *port }], def.clone())),
                    _ => Err(format!(
                        "port is missing: set traefik.http.services.<name>.loadbalancer.server.port (service {} publishes {} ports)",
                        svc.name,
                        if svc.ports.is_empty() { "no".to_owned() } else { svc.ports.len().to_string() }
                    )),
                }
                }
                _ => resolve_service(i, &svc_name, services, parsed, idx),
            };
        let (targets, def) = match resolved {
            Ok(x) => x,
            Err(e) => {
                problem(&svc_key, format!("{e}; router {name} not served"));
                continue;
            }
        };
        // Entry points.
        let tls = r.tls || r.certresolver || !r.domains.is_empty();
        let mut eps = Entrypoints { http: r.entrypoints.is_none(), https: r.entrypoints.is_none() };
        if let Some((k, names)) = &r.entrypoints {
            for n in names {
                if n.eq_ignore_ascii_case(&cfg.entrypoint_http) {
                    eps.http = true;
                } else if n.eq_ignore_ascii_case(&cfg.entrypoint_https) {
                    eps.https = true;
                } else {
                    problem(
                        k,
                        format!(
                            "entry point {n} does not exist here (known: {}, {})",
                            cfg.entrypoint_http, cfg.entrypoint_https
                        ),
                    );
                }
            }
            if !eps.http && !eps.https {
                problem(k, format!("no known entry point; router {name} not served"));
                continue;
            }
        }
        if tls {
            if !eps.https {
                problem(
                    &format!("{}.tls", r.key),
                    format!("a TLS router needs the {} entry point; router {name} not served", cfg.entrypoint_https),
                );
                continue;
            }
            eps.http = false;
        }
        // Middlewares.
        let mut mws: Vec<MwSpec> = Vec::new();
        let mut mw_ok = true;
        for m in &r.middlewares {
            let Some(n) = local_ref(m) else {
                problem(&r.middlewares_key, format!("middleware {m} is from another provider; only middlewares defined by labels are supported; router {name} not served"));
                mw_ok = false;
                break;
            };
            let spec = match p.mw_specs.get(&n) {
                Some(s) => s.clone(),
                None => {
                    let owners: &[usize] = idx.middlewares.get(&n).map(Vec::as_slice).unwrap_or(&[]);
                    match owners {
                        [] => {
                            problem(
                                &r.middlewares_key,
                                format!("middleware {n} is not defined; router {name} not served"),
                            );
                            mw_ok = false;
                            break;
                        }
                        [j, rest @ ..] if rest.iter().all(|k| parsed[*k].mw_specs[&n] == parsed[*j].mw_specs[&n]) => {
                            parsed[*j].mw_specs[&n].clone()
                        }
                        _ => {
                            problem(&r.middlewares_key, format!("middleware {n} is defined differently by several services; router {name} not served"));
                            mw_ok = false;
                            break;
                        }
                    }
                }
            };
            match spec {
                Some(s) => mws.extend(s),
                None => {
                    problem(
                        &r.middlewares_key,
                        format!("middleware {n} is not usable (see its problem); router {name} not served"),
                    );
                    mw_ok = false;
                    break;
                }
            }
        }
        if !mw_ok {
            continue;
        }
        let redirect = mws.iter().find_map(|m| match m {
            MwSpec::RedirectScheme { permanent, port } => Some((*permanent, *port)),
            _ => None,
        });
        let middlewares: Vec<Middleware> = mws
            .into_iter()
            .filter_map(|m| match m {
                MwSpec::Plain(m) => Some(m),
                MwSpec::RedirectScheme { .. } => None,
            })
            .collect();
        // TLS domains.
        let mut tls_domains = Vec::new();
        for (main, sans) in r.domains.values() {
            for d in main.iter().chain(sans.iter()) {
                match label_host(d) {
                    Ok(h) if !tls_domains.contains(&h) => tls_domains.push(h),
                    Ok(_) => {}
                    Err(e) => problem(&r.domains_key, e),
                }
            }
        }
        let priority = r.priority.filter(|p| *p != 0).unwrap_or(rule_text.len() as i64);
        let mut up = UpstreamSpec::new(UpstreamTarget::Tasks(targets));
        up.scheme = def.scheme;
        up.pass_host = def.pass_host;
        if let Some(s) = def.strategy {
            up.lb = s;
        }
        if def.sticky {
            up.lb = LbPolicy::Cookie;
            up.sticky_cookie = def.cookie.clone();
        }
        up.health = def
            .health_path
            .clone()
            .map(|path| HealthCheck { path, interval: def.health_interval.unwrap_or(Duration::from_secs(30)) });
        let many = parts.len() > 1;
        for (k, part) in parts.into_iter().enumerate() {
            let id = if many {
                format!("svc/{}/traefik/{name}/{k}", svc.name)
            } else {
                format!("svc/{}/traefik/{name}", svc.name)
            };
            let prov = Provenance::Service { service: svc.name.clone(), key: r.key.clone() };
            let mut route = RouteSpec::proxy(id.clone(), prov.clone(), part.hosts.clone(), up.clone());
            route.path = part.path.clone();
            route.predicate = part.predicate.clone();
            route.priority = priority;
            route.middlewares = middlewares.clone();
            route.tls_domains = tls_domains.clone();
            route.entrypoints = eps;
            if tls {
                route.tls = TlsPolicy::Auto;
            } else if eps.https {
                // Traefik serves a non-TLS router as it is: no redirect unless a middleware says so.
                route.tls = TlsPolicy::Auto;
                route.redirect_https = Some(false);
            } else {
                route.tls = TlsPolicy::Off;
            }
            if let Some((permanent, port)) = redirect {
                if eps.http {
                    // Plain-HTTP requests get redirected; one route per host so the target names it.
                    route.entrypoints.http = false;
                    for h in &part.hosts {
                        if h.starts_with("*.") {
                            problem(
                                &r.middlewares_key,
                                format!(
                                    "redirectscheme: cannot redirect wildcard host {h}; it is not served on {}",
                                    cfg.entrypoint_http
                                ),
                            );
                            continue;
                        }
                        let mut red =
                            RouteSpec::proxy(format!("{id}/redirect/{h}"), prov.clone(), vec![h.clone()], up.clone());
                        red.path = part.path.clone();
                        red.predicate = part.predicate.clone();
                        red.priority = priority;
                        red.entrypoints = Entrypoints { http: true, https: false };
                        red.tls = TlsPolicy::Off;
                        let port = port.map(|p| format!(":{p}")).unwrap_or_default();
                        red.action = Action::Redirect {
                            location: format!("https://{h}{port}{{uri}}"),
                            status: if permanent { 308 } else { 307 },
                        };
                        out.routes.push(red);
                    }
                }
                if !route.entrypoints.https {
                    continue;
                }
            }
            out.routes.push(route);
        }
    }
}
