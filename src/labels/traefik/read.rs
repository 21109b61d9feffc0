//! Reading one Swarm service's `traefik.*` labels into router, service and middleware
//! definitions. Keys are matched case-insensitively; a key that cannot be placed is a problem
//! naming it, and marks only the definition it belongs to as unusable.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::labels::common::{fixed_upstream, header_name, header_value, parse_bool, parse_duration, password_hash};
use crate::labels::ServiceInput;
use crate::model::{Cors, ForwardAuth, HeaderEdits, LbPolicy, Middleware, Problem, UpstreamScheme};

/// A router as declared by labels.
#[derive(Debug, Default)]
pub(super) struct RouterDef {
    /// `traefik.http.routers.<name>` as written (first spelling seen).
    pub(super) key: String,
    pub(super) rule: Option<(String, String)>,
    pub(super) entrypoints: Option<(String, Vec<String>)>,
    pub(super) priority: Option<i64>,
    pub(super) middlewares: Vec<String>,
    pub(super) middlewares_key: String,
    pub(super) service: Option<(String, String)>,
    pub(super) tls: bool,
    pub(super) certresolver: bool,
    pub(super) domains: BTreeMap<usize, (Option<String>, Vec<String>)>,
    pub(super) domains_key: String,
    /// Set when a label of this router could not be understood: the router is not served.
    pub(super) broken: bool,
}

/// A load-balancer service as declared by labels. `PartialEq` ignores the key, so identical
/// definitions in two Swarm services can be recognised and merged.
#[derive(Debug, Default, Clone)]
pub(super) struct ServiceDef {
    pub(super) key: String,
    pub(super) port: Option<u16>,
    pub(super) scheme: UpstreamScheme,
    pub(super) pass_host: bool,
    pub(super) sticky: bool,
    pub(super) cookie: Option<String>,
    pub(super) health_path: Option<String>,
    pub(super) health_interval: Option<Duration>,
    pub(super) strategy: Option<LbPolicy>,
    pub(super) broken: bool,
    /// `loadbalancer.serverstransport`, as written (`name` or `name@provider`).
    pub(super) servers_transport: Option<String>,
    /// `loadbalancer.server.url`: an address instead of the service's own tasks.
    pub(super) url: Option<(String, u16)>,
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
            &self.servers_transport,
            &self.url,
        ) == (
            o.port,
            o.scheme,
            o.pass_host,
            o.sticky,
            &o.cookie,
            &o.health_path,
            o.health_interval,
            o.strategy,
            &o.servers_transport,
            &o.url,
        )
    }
}

/// What a middleware does once understood.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum MwSpec {
    RedirectScheme {
        permanent: bool,
        port: Option<u16>,
    },
    Plain(Middleware),
    /// `chain.middlewares`: names, expanded where a router uses the chain.
    Chain(Vec<String>),
    /// `errors`: status ranges, the Traefik service of the pages (resolved where a router
    /// uses it, like the router's own service) and the page path.
    Errors {
        statuses: Vec<(u16, u16)>,
        service: String,
        query: String,
    },
}

#[derive(Debug, Default)]
pub(super) struct MwDef {
    pub(super) key: String,
    /// Type (`stripprefix`, …) and its fields: lower-case field → (label key, original field, value).
    pub(super) kind: Option<String>,
    pub(super) fields: Vec<(String, String, String, String)>,
    pub(super) broken: bool,
}

/// One Swarm service's traefik labels.
#[derive(Debug, Default)]
pub(super) struct SvcLabels {
    pub(super) any: bool,
    pub(super) enable: Option<bool>,
    /// `traefik.constraint-label` (the dockerswarm.rocks convention), with its key.
    pub(super) constraint: Option<(String, String)>,
    pub(super) network: Option<String>,
    pub(super) routers: BTreeMap<String, RouterDef>,
    pub(super) services: BTreeMap<String, ServiceDef>,
    pub(super) middlewares: BTreeMap<String, MwDef>,
    /// Understood middlewares (filled after parsing): name → spec or `None` if unusable.
    pub(super) mw_specs: BTreeMap<String, Option<Vec<MwSpec>>>,
}

/// Edit distance between a label root and `traefik` (short ASCII words; no allocation).
pub(super) fn levenshtein(a: &str, b: &str) -> usize {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() > 15 || b.len() > 15 {
        return usize::MAX;
    }
    let mut prev = [0usize; 16];
    for (j, p) in prev.iter_mut().enumerate().take(b.len() + 1) {
        *p = j;
    }
    for (i, ca) in a.iter().enumerate() {
        let mut cur = [0usize; 16];
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != cb)).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// Splits `a,b , c` into trimmed, non-empty items.
pub(super) fn list(v: &str) -> Vec<String> {
    v.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect()
}

/// Reads one service's labels into definitions, reporting keys it cannot place.
/// Traefik v1 labels (`traefik.frontend.rule=Host:a.example.com`, `traefik.port=80`) are not
/// read (v1 is end-of-life, and its rule syntax differs); the problem gives the v2 label to
/// write instead, filled in where the value allows it.
fn v1_hint(rest: &str, v: &str, service: &str) -> String {
    let name = crate::labels::common::normalize_name(service);
    let v2 = match rest {
        "frontend.rule" => {
            let rule = v
                .split(';')
                .map(|part| match part.split_once(':') {
                    Some((m, args)) => {
                        let args: Vec<String> = args.split(',').map(|a| format!("`{}`", a.trim())).collect();
                        format!("{}({})", m.trim(), args.join(", "))
                    }
                    None => part.to_owned(),
                })
                .collect::<Vec<_>>()
                .join(" && ");
            format!("traefik.http.routers.{name}.rule={rule}")
        }
        "port" => format!("traefik.http.services.{name}.loadbalancer.server.port={v}"),
        "protocol" => format!("traefik.http.services.{name}.loadbalancer.server.scheme={v}"),
        "frontend.entrypoints" => format!("traefik.http.routers.{name}.entrypoints={v}"),
        _ => "the traefik.http.routers.* / traefik.http.services.* labels".to_owned(),
    };
    format!("Traefik v1 label, not read (v1 is end-of-life); the v2 form is {v2}")
}

pub(super) fn parse_service(svc: &ServiceInput, problems: &mut Vec<Problem>) -> SvcLabels {
    let mut s = SvcLabels::default();
    let mut docker_net: Option<String> = None;
    let mut swarm_net: Option<String> = None;
    // Errors (`p`) and warnings (`w`, for what changes nothing served) go to one list.
    let sink = std::cell::RefCell::new(std::mem::take(problems));
    for (key, value) in &svc.labels {
        let mut p = |msg: String| sink.borrow_mut().push(Problem::new(&svc.name, key, msg));
        let mut w = |msg: String| sink.borrow_mut().push(Problem::warning(&svc.name, key, msg));
        let is_ours = key.len() >= 8 && key.as_bytes()[..8].eq_ignore_ascii_case(b"traefik.");
        if !is_ours {
            // Most labels belong to someone else; only look closer at near-misses of `traefik.`.
            if key.eq_ignore_ascii_case("traefik") {
                p("traefik alone means nothing; use traefik.enable and traefik.http.*".into());
            } else if let Some((root, _)) = key.split_once('.') {
                if (5..=9).contains(&root.len()) && levenshtein(&root.to_ascii_lowercase(), "traefik") <= 2 {
                    p(format!("{root}. looks like a misspelt traefik.; this label is ignored"));
                }
            }
            continue;
        }
        let lk = key.to_ascii_lowercase();
        let rest = &lk[8..];
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
            ["constraint-label"] => s.constraint = Some((key.clone(), v.to_owned())),
            ["frontend" | "backend" | "port" | "protocol" | "weight", ..] => p(v1_hint(rest, v, &svc.name)),
            ["swarm", "network"] => swarm_net = Some(v.to_owned()),
            ["docker", "network"] => docker_net = Some(v.to_owned()),
            ["swarm" | "docker", "lbswarm"] => {
                if parse_bool(v) == Ok(true) {
                    w("lbswarm is not used: swarmgate balances across the task IPs itself (draining, per-task health); the label is ignored".into());
                }
            }
            ["http", "routers", name, field @ ..] => {
                let r = s.routers.entry((*name).to_owned()).or_default();
                if r.key.is_empty() {
                    r.key = orig[..4].join(".");
                }
                router_field(r, field, key, v, &mut p, &mut w);
            }
            ["http", "services", name, field @ ..] => {
                let d = s.services.entry((*name).to_owned()).or_insert_with(|| ServiceDef { pass_host: true, ..Default::default() });
                if d.key.is_empty() {
                    d.key = orig[..4].join(".");
                }
                service_field(d, field, v, &mut p, &mut w);
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
                let m = s.middlewares.entry((*name).to_owned()).or_default();
                m.broken = true;
                if m.key.is_empty() {
                    m.key = key.clone();
                }
            }
            ["tcp" | "udp", ..] => p("TCP/UDP routing is not supported by swarmgate; label ignored".into()),
            ["tls", ..] => w("TLS stores/options by label are not supported; certificates come from swarmgate's ACME issuer; label ignored".into()),
            ["enabled"] => p("unknown label (did you mean traefik.enable?); ignored".into()),
            _ => w("unknown traefik label; ignored (Traefik ignores it silently)".into()),
        }
    }
    *problems = sink.into_inner();
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

pub(super) fn router_field(
    r: &mut RouterDef,
    field: &[&str],
    key: &str,
    v: &str,
    p: &mut dyn FnMut(String),
    w: &mut dyn FnMut(String),
) {
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
            let name = v.split('@').next().unwrap_or("").trim();
            if name.is_empty() || name.eq_ignore_ascii_case("default") {
                w("tls.options is ignored: swarmgate uses its own TLS settings".into());
                false
            } else {
                // Options may require client certificates (clientAuth): access control that
                // cannot be applied fails closed.
                broken(p, format!("tls.options {v}: TLS options (which may require client certificates) cannot be applied by swarmgate; remove the label if it only sets versions or ciphers"))
            }
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
            w("ruleSyntax is ignored: rules are read in the v3 syntax (v2 matcher names are accepted)".into());
            false
        }
        ["observability", ..] => {
            w("observability options are ignored (swarmgate's access log and metrics cover every route)".into());
            false
        }
        _ => broken(p, format!("unknown router field {} (rule, entrypoints, priority, middlewares, service, tls, tls.certresolver, tls.domains[n].main/sans)", field.join("."))),
    };
    r.broken |= bad;
}

pub(super) fn service_field(
    d: &mut ServiceDef,
    field: &[&str],
    v: &str,
    p: &mut dyn FnMut(String),
    w: &mut dyn FnMut(String),
) {
    let mut bad = |msg: String| {
        p(format!("{msg}; service not usable"));
        true
    };
    let ignored = |w: &mut dyn FnMut(String), what: &str| {
        w(format!("{what} is not supported; ignored"));
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
        ["loadbalancer", "server", "url"] => match fixed_upstream(v) {
            Ok((scheme, host, port)) => {
                d.scheme = scheme;
                d.url = Some((host, port));
                false
            }
            Err(e) => bad(e),
        },
        ["loadbalancer", "server", "weight" | "preservepath"] => ignored(w, &format!("server.{}", field[2])),
        ["loadbalancer", "passhostheader"] => match parse_bool(v) {
            Ok(b) => {
                d.pass_host = b;
                false
            }
            Err(e) => bad(e),
        },
        // Traefik v2's short form: `sticky=true` is a sticky cookie with the default name.
        ["loadbalancer", "sticky"] | ["loadbalancer", "sticky", "cookie"] => match parse_bool(v) {
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
        ["loadbalancer", "sticky", "cookie", other] => ignored(w, &format!("sticky.cookie.{other}")),
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
        ["loadbalancer", "healthcheck", ..] => ignored(w, &format!("healthcheck.{}", field[2..].join("."))),
        // Traefik v3's strategies. `p2c` there compares in-flight requests only; swarmgate's
        // also weighs latency (README). `hrw` is rendezvous hashing of the client IP, as
        // swarmgate's ip_hash; `leasttime` is lowest response time × in-flight.
        ["loadbalancer", "strategy"] => match v.trim().to_ascii_lowercase().as_str() {
            s @ ("wrr" | "p2c" | "hrw" | "leasttime") => {
                d.strategy = Some(match s {
                    "wrr" => LbPolicy::RoundRobin,
                    "p2c" => LbPolicy::P2c,
                    "hrw" => LbPolicy::IpHash,
                    _ => LbPolicy::LeastTime,
                });
                false
            }
            other => bad(format!("strategy {other:?} is not one of wrr, p2c, hrw, leasttime")),
        },
        ["loadbalancer", "serverstransport"] if !v.trim().is_empty() => {
            d.servers_transport = Some(v.trim().to_owned());
            false
        }
        ["loadbalancer", "responseforwarding" | "serverstransport", ..] => ignored(w, field[1]),
        _ => bad(format!("unknown service field {} (loadbalancer.server.port/scheme, passhostheader, sticky[.cookie[.name]], healthcheck.path/interval, strategy)", field.join("."))),
    };
    d.broken |= broken;
}

/// Turns a middleware's fields into specs; problems name the label. `None` = not usable.
pub(super) fn build_middleware(svc: &str, m: &MwDef, problems: &mut Vec<Problem>) -> Option<Vec<MwSpec>> {
    if m.broken {
        return None;
    }
    let kind = m.kind.as_deref()?;
    let mut errs: Vec<Problem> = Vec::new();
    let mut notes: Vec<Problem> = Vec::new();
    let mut bad = |key: &str, msg: String| errs.push(Problem::new(svc, key, format!("{msg}; middleware not usable")));
    let mut note = |key: &str, msg: String| notes.push(Problem::warning(svc, key, msg));
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
                // The first prefix that matches is removed, as Traefik does.
                Some((_, ps)) if ps.len() > 1 && ps.iter().all(|p| p.starts_with('/')) => {
                    let res = ps.iter().map(|p| format!("^{}", regex::escape(p.trim_end_matches('/')))).collect();
                    vec![MwSpec::Plain(Middleware::StripPrefixRegex(res))]
                }
                Some((k, _)) => {
                    bad(k, "give prefixes starting with /".into());
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
            let mut cors: Option<Cors> = None;
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
                    _ if f.starts_with("accesscontrol") || f == "addvaryheader" => {
                        let c = cors.get_or_insert_with(Cors::default);
                        match f.as_str() {
                            "accesscontrolalloworiginlist" => c.origins = list(v),
                            "accesscontrolalloworiginlistregex" => c.origin_regex = list(v),
                            "accesscontrolallowmethods" => c.methods = list(v),
                            "accesscontrolallowheaders" => c.headers = list(v),
                            "accesscontrolexposeheaders" => c.expose = list(v),
                            "accesscontrolallowcredentials" => c.credentials = on(),
                            "addvaryheader" => c.vary = on(),
                            "accesscontrolmaxage" => match v.parse::<u64>() {
                                Ok(n) => c.max_age = Some(n),
                                Err(_) => bad(k, format!("{v:?} is not a number of seconds")),
                            },
                            _ => bad(k, format!("headers.{orig} is not supported")),
                        }
                    }
                    "framedeny" | "contenttypenosniff" | "browserxssfilter" => {}
                    _ => bad(k, format!("headers.{orig} is not supported (supported: customrequestheaders, customresponseheaders, accessControl*, addVaryHeader, framedeny, customframeoptionsvalue, contenttypenosniff, browserxssfilter, sts*, referrerpolicy, contentsecuritypolicy, permissionspolicy)")),
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
            if let Some(c) = cors {
                out.push(MwSpec::Plain(Middleware::Cors(c)));
            }
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
                            Some((u, h)) if !u.is_empty() => match password_hash(h) {
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
        "stripprefixregex" => match get("regex").map(|(k, v)| (k, list(v))) {
            Some((_, res)) if !res.is_empty() => {
                // Traefik matches at the start of the path.
                let res = res.into_iter().map(|r| if r.starts_with('^') { r } else { format!("^{r}") }).collect();
                vec![MwSpec::Plain(Middleware::StripPrefixRegex(res))]
            }
            _ => {
                bad(&m.key, "stripprefixregex.regex is missing".into());
                vec![]
            }
        },
        "replacepath" => match get("path") {
            Some((_, v)) if v.starts_with('/') => vec![MwSpec::Plain(Middleware::ReplacePath(v.to_owned()))],
            Some((k, v)) => {
                bad(k, format!("{v:?} must start with /"));
                vec![]
            }
            None => {
                bad(&m.key, "replacepath.path is missing".into());
                vec![]
            }
        },
        "replacepathregex" | "redirectregex" => {
            let fields: &[&str] = if kind == "redirectregex" {
                &["regex", "replacement", "permanent"]
            } else {
                &["regex", "replacement"]
            };
            for (k, f) in known(fields, &[]) {
                bad(&k, format!("{kind}.{f} is not supported"));
            }
            match (get("regex"), get("replacement")) {
                (Some((_, regex)), Some((_, replacement))) => {
                    let (regex, replacement) = (regex.to_owned(), replacement.to_owned());
                    if kind == "redirectregex" {
                        let permanent = get("permanent").is_some_and(|(_, v)| parse_bool(v) == Ok(true));
                        vec![MwSpec::Plain(Middleware::RedirectRegex { regex, replacement, permanent })]
                    } else {
                        vec![MwSpec::Plain(Middleware::ReplacePathRegex { regex, replacement })]
                    }
                }
                _ => {
                    bad(&m.key, format!("{kind} needs regex and replacement"));
                    vec![]
                }
            }
        }
        "ipallowlist" | "ipwhitelist" => {
            for (k, f) in known(&["sourcerange", "ipstrategy.depth"], &[]) {
                bad(&k, format!("{kind}.{f} is not supported (sourceRange and ipStrategy.depth are)"));
            }
            let depth = match get("ipstrategy.depth").map(|(k, v)| (k, v.parse::<u32>())) {
                Some((_, Ok(d))) if d <= 64 => d,
                Some((k, _)) => {
                    bad(k, "ipStrategy.depth must be a whole number up to 64".into());
                    0
                }
                None => 0,
            };
            if depth > 0 {
                note(&m.key, "ipStrategy.depth reads X-Forwarded-For only from [forwarding] trusted_proxies; from any other client its own address is checked".into());
            }
            match get("sourcerange").map(|(k, v)| (k, list(v))) {
                Some((k, ranges)) => match ranges.iter().map(|r| crate::model::parse_cidr(r)).find_map(Result::err) {
                    Some(e) => {
                        bad(k, e);
                        vec![]
                    }
                    None => vec![MwSpec::Plain(Middleware::IpAllowList { ranges, depth })],
                },
                None => {
                    bad(&m.key, format!("{kind}.sourceRange is missing"));
                    vec![]
                }
            }
        }
        "buffering" => {
            for (k, f) in known(&["maxrequestbodybytes", "memrequestbodybytes", "memresponsebodybytes"], &[]) {
                bad(&k, format!("buffering.{f} is not supported (maxRequestBodyBytes is)"));
            }
            for f in ["memrequestbodybytes", "memresponsebodybytes"] {
                if let Some((k, _)) = get(f) {
                    note(k, "swarmgate streams bodies and buffers none; ignored".into());
                }
            }
            match get("maxrequestbodybytes").map(|(k, v)| (k, v.parse::<u64>())) {
                Some((_, Ok(n))) if n > 0 => vec![MwSpec::Plain(Middleware::MaxBodyBytes(n))],
                Some((_, Ok(_))) | None => vec![],
                Some((k, Err(_))) => {
                    bad(k, "maxRequestBodyBytes must be a whole number of bytes".into());
                    vec![]
                }
            }
        }
        "compress" => {
            for (k, f) in known(
                &[
                    "",
                    "excludedcontenttypes",
                    "includedcontenttypes",
                    "minresponsebodybytes",
                    "encodings",
                    "defaultencoding",
                ],
                &[],
            ) {
                bad(&k, format!("compress.{f} is not supported"));
            }
            let min_bytes = match get("minresponsebodybytes").map(|(k, v)| (k, v.parse::<u64>())) {
                Some((_, Ok(n))) => n,
                Some((k, Err(_))) => {
                    bad(k, "minResponseBodyBytes must be a whole number of bytes".into());
                    1024
                }
                None => 1024,
            };
            if let Some((k, v)) = get("encodings").or(get("defaultencoding")) {
                if !list(v).iter().any(|e| e.eq_ignore_ascii_case("gzip")) {
                    note(k, format!("{v}: swarmgate encodes gzip only; clients that take gzip get it"));
                }
            }
            let types = |f: &str| get(f).map(|(_, v)| list(v)).unwrap_or_default();
            let (include, exclude) = (types("includedcontenttypes"), types("excludedcontenttypes"));
            vec![MwSpec::Plain(Middleware::Compress { min_bytes, include, exclude })]
        }
        "inflightreq" => {
            for (k, f) in known(&["amount"], &["sourcecriterion"]) {
                bad(&k, format!("inflightreq.{f} is not supported"));
            }
            note(
                &m.key,
                "in-flight requests are counted per route across all clients (Traefik counts per client IP)".into(),
            );
            match get("amount").map(|(k, v)| (k, v.parse::<u64>())) {
                Some((_, Ok(n))) if n > 0 => vec![MwSpec::Plain(Middleware::InFlightLimit(n))],
                Some((k, _)) => {
                    bad(k, "amount must be a whole number ≥ 1".into());
                    vec![]
                }
                None => {
                    bad(&m.key, "inflightreq.amount is missing".into());
                    vec![]
                }
            }
        }
        "errors" => {
            for (k, f) in known(&["status", "service", "query"], &[]) {
                bad(&k, format!("errors.{f} is not supported"));
            }
            let mut statuses = Vec::new();
            for r in get("status").map(|(_, v)| list(v)).unwrap_or_default() {
                let (lo, hi) = r.split_once('-').unwrap_or((&r, &r));
                match (lo.trim().parse::<u16>(), hi.trim().parse::<u16>()) {
                    (Ok(lo), Ok(hi)) if (100..=599).contains(&lo) && lo <= hi && hi <= 599 => statuses.push((lo, hi)),
                    _ => bad(&m.key, format!("errors.status {r:?} is not a status or a range such as 500-599")),
                }
            }
            let query = get("query").map(|(_, v)| v.to_owned()).unwrap_or_else(|| "/".into());
            if query.contains("{url}") {
                bad(&m.key, "errors.query: the {url} placeholder is not supported ({status} is)".into());
            }
            match get("service") {
                Some((_, s)) if !statuses.is_empty() => {
                    let service = s.split('@').next().unwrap_or(s).to_owned();
                    vec![MwSpec::Errors { statuses, service, query }]
                }
                _ => {
                    bad(&m.key, "errors needs status and service".into());
                    vec![]
                }
            }
        }
        "chain" => match get("middlewares").map(|(k, v)| (k, list(v))) {
            Some((_, names)) if !names.is_empty() => vec![MwSpec::Chain(names)],
            _ => {
                bad(&m.key, "chain.middlewares is missing".into());
                vec![]
            }
        },
        "forwardauth" => {
            for (k, f) in
                known(&["address", "authresponseheaders", "authrequestheaders", "trustforwardheader"], &["tls"])
            {
                bad(&k, format!("forwardauth.{f} is not supported"));
            }
            if let Some((k, v)) = get("trustforwardheader") {
                if parse_bool(v) == Ok(true) {
                    note(k, "trustForwardHeader: X-Forwarded-* from clients are kept only from [forwarding] trusted_proxies".into());
                }
            }
            let headers = |f: &str| get(f).map(|(_, v)| list(v));
            match get("address").map(|(k, v)| (k, crate::labels::common::forward_auth_upstream(v))) {
                Some((k, Ok((mut up, uri)))) => {
                    for (f, _, fk, v) in m.fields.iter().filter(|f| f.0.starts_with("tls.")) {
                        match (f.as_str(), parse_bool(v)) {
                            ("tls.insecureskipverify", Ok(on)) => up.tls.insecure_skip_verify = on,
                            _ => bad(fk, format!("forwardauth.{f}={v} is not supported (tls.insecureSkipVerify is)")),
                        }
                    }
                    if up.scheme == UpstreamScheme::H2c {
                        bad(k, "forwardauth.address is http:// or https://".into());
                    }
                    let copy = headers("authresponseheaders").unwrap_or_default();
                    let fa = ForwardAuth {
                        uri,
                        copy_headers: copy.into_iter().map(|h| (h.clone(), h)).collect(),
                        request_headers: headers("authrequestheaders"),
                        service: Some(Box::new(up)),
                    };
                    vec![MwSpec::Plain(Middleware::ForwardAuth(fa))]
                }
                Some((k, Err(e))) => {
                    bad(k, e);
                    vec![]
                }
                None => {
                    bad(&m.key, "forwardauth.address is missing".into());
                    vec![]
                }
            }
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
            bad(&m.key, format!("middleware type {other} is not supported (supported: redirectscheme, redirectregex, compress, errors, inflightreq, stripprefix, stripprefixregex, addprefix, replacepath, replacepathregex, headers, basicauth, forwardauth, ipallowlist, buffering, chain, ratelimit, retry)"));
            vec![]
        }
    };
    let ok = errs.is_empty();
    problems.append(&mut errs);
    problems.append(&mut notes);
    ok.then_some(spec)
}
