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
//!
//! Entry points and TLS: a router with `tls`, `tls.certresolver` (any resolver name = our ACME)
//! or `tls.domains` answers on HTTPS only; plain HTTP to it is not served by it (as in Traefik).
//! A router without TLS answers on its entry points (both when none are given): HTTP as is,
//! without redirect, and HTTPS with an ACME certificate (what Traefik does with a certresolver on
//! the `websecure` entry point). `redirectscheme` (scheme https) becomes one redirect route per
//! host on the HTTP listener (307, or 308 when permanent); the router still serves HTTPS.
//! `ratelimit` counts per route, not per client IP (reported). Priority defaults to the rule
//! length, as in Traefik; other dialects use 0, so on a shared host Traefik routes sort first.

mod read;
mod rule;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use read::{build_middleware, parse_service, MwSpec, RouterDef, ServiceDef, SvcLabels};

use super::common::{label_host, normalize_name};
use super::{LabelsConfig, ServiceInput, Translation};
use crate::model::{
    Action, Entrypoints, HealthCheck, LbPolicy, Middleware, Problem, Provenance, RouteSpec, TaskTarget, TlsPolicy,
    UpstreamScheme, UpstreamSpec, UpstreamTarget, UpstreamTls,
};

/// Which enabled Swarm services define each service / middleware name (built once, so
/// cross-service references cost a lookup, not a scan).
#[derive(Default)]
struct Index {
    services: BTreeMap<String, Vec<usize>>,
    middlewares: BTreeMap<String, Vec<usize>>,
}

/// Translates every service's traefik labels.
/// Entry point names real stacks use for the two listeners besides Traefik's `web` and
/// `websecure`: accepted out of the box unless the other listener is configured to be called so.
const HTTP_ALIASES: &[&str] = &["web", "http", "insecure"];
const HTTPS_ALIASES: &[&str] = &["websecure", "https", "secure", "web-secure"];

fn is_alias(name: &str, other_listener: &str, aliases: &[&str]) -> bool {
    !name.eq_ignore_ascii_case(other_listener) && aliases.iter().any(|a| a.eq_ignore_ascii_case(name))
}

/// Traefik's `--providers.swarm.constraints=Label(`traefik.constraint-label`, `X`)` as
/// `[labels] traefik_constraint = "X"`: when set, only services whose label equals it are
/// routed (the others get a problem saying why); when unset, the label changes nothing, as in
/// a Traefik without constraints.
fn constraint_allows(svc: &ServiceInput, p: &SvcLabels, cfg: &LabelsConfig, problems: &mut Vec<Problem>) -> bool {
    let Some(want) = &cfg.traefik_constraint else {
        return true;
    };
    let (key, msg) = match &p.constraint {
        Some((_, v)) if v == want => return true,
        Some((k, v)) => {
            (k.clone(), format!("{v:?} does not match [labels] traefik_constraint = {want:?}; traefik labels ignored"))
        }
        None => (
            "traefik.constraint-label".to_owned(),
            format!("missing, and [labels] traefik_constraint = {want:?} is set; traefik labels ignored"),
        ),
    };
    problems.push(Problem::warning(&svc.name, &key, msg));
    false
}

pub(super) fn translate(services: &[&ServiceInput], cfg: &LabelsConfig, out: &mut Translation) {
    let mut parsed: Vec<SvcLabels> = Vec::with_capacity(services.len());
    for svc in services {
        parsed.push(parse_service(svc, &mut out.problems));
    }
    let enabled: Vec<bool> = services
        .iter()
        .zip(&parsed)
        .map(|(svc, p)| {
            let mut on = p.any && p.enable.unwrap_or(cfg.exposed_by_default);
            if on && !constraint_allows(svc, p, cfg, &mut out.problems) {
                on = false;
            }
            if p.any && !on && p.enable.is_none() && (!p.routers.is_empty() || !p.services.is_empty()) {
                out.problems.push(Problem::warning(
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
    let first = out.routes.len();
    for (i, _) in enabled.iter().enumerate().filter(|(_, on)| **on) {
        routes_for(i, services, &parsed, &idx, cfg, out);
    }
    let problems = priority_disagreements(&out.routes[first..]);
    out.problems.extend(problems);
}

/// Traefik orders all routers by priority (by default the rule's length), whatever their
/// hosts, so a longer `HostRegexp` router wins a name over a shorter `Host` one. swarmgate
/// gives an exact host precedence over a wildcard (and both over a catch-all), as Caddy and
/// nginx do. Where the two orders disagree for a name, the exact router is still the one
/// served, and this says so on it, with the priority that makes Traefik agree.
fn priority_disagreements(routes: &[crate::model::RouteSpec]) -> Vec<Problem> {
    let covers = |pattern: &str, host: &str| {
        pattern == "*"
            || pattern.strip_prefix("*.").is_some_and(|d| {
                host.strip_suffix(d)
                    .and_then(|l| l.strip_suffix('.'))
                    .is_some_and(|l| !l.is_empty() && !l.contains('.'))
            })
    };
    // Only wildcard and catch-all routers can take a name from an exact one: usually few.
    let wides: Vec<&crate::model::RouteSpec> =
        routes.iter().filter(|r| r.hosts.iter().any(|h| h.starts_with('*'))).collect();
    let mut out = Vec::new();
    if wides.is_empty() {
        return out;
    }
    for exact in routes {
        let path = path_text(&exact.path);
        for wide in wides.iter().filter(|w| w.priority > exact.priority && w.path.matches(path)) {
            let Some((pattern, host)) = wide
                .hosts
                .iter()
                .find_map(|p| exact.hosts.iter().find(|h| !h.starts_with('*') && covers(p, h)).map(|h| (p, h)))
            else {
                continue;
            };
            let (
                crate::model::Provenance::Service { service, key },
                crate::model::Provenance::Service { key: wide_key, .. },
            ) = (&exact.provenance, &wide.provenance)
            else {
                continue;
            };
            out.push(Problem::warning(
                service,
                key,
                format!(
                    "Traefik would send {host} to {wide_key} ({pattern}, priority {} > {}); swarmgate serves it here (an exact host beats a wildcard); set this router's priority above {} to make both agree",
                    wide.priority, exact.priority, wide.priority
                ),
            ));
        }
    }
    out
}

/// A path the route matches, to test whether another route's path covers it.
fn path_text(p: &crate::model::PathMatch) -> &str {
    match p {
        crate::model::PathMatch::Prefix(s)
        | crate::model::PathMatch::RawPrefix(s)
        | crate::model::PathMatch::Exact(s) => s,
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
) -> Result<(UpstreamTarget, ServiceDef), String> {
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
    if let Some(url) = &def.url {
        // Merged definitions are identical, so they name the same address.
        return Ok((UpstreamTarget::Names(vec![url.clone()]), def));
    }
    let targets = group.into_iter().map(|j| target(j, &parsed[j].services[name])).collect::<Result<Vec<_>, _>>()?;
    Ok((UpstreamTarget::Tasks(targets), def))
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
        let (parts, notes) = match rule::parse(&rule_text).and_then(|e| rule::parts(&e, cfg.allow_catch_all)) {
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
                None if s.eq_ignore_ascii_case("api@internal") || s.eq_ignore_ascii_case("dashboard@internal") => {
                    problem(
                        &svc_key,
                        format!("{s} is Traefik's own dashboard; swarmgate's dashboard and API are on its admin listener ([listen] admin), not a router; router {name} not served"),
                    );
                    continue;
                }
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
                    [port] => Ok((UpstreamTarget::Tasks(vec![TaskTarget { service: svc.name.clone(), network: p.network.clone(), port: *port }]), def.clone())),
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
                if n.eq_ignore_ascii_case(&cfg.entrypoint_http) || is_alias(n, &cfg.entrypoint_https, HTTP_ALIASES) {
                    eps.http = true;
                } else if n.eq_ignore_ascii_case(&cfg.entrypoint_https)
                    || is_alias(n, &cfg.entrypoint_http, HTTPS_ALIASES)
                {
                    eps.https = true;
                } else {
                    problem(
                        k,
                        format!(
                            "entry point {n} does not exist here (known: {}, {} and their common aliases; [labels] entrypoint_http / entrypoint_https name others)",
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
        // A `chain` puts its members in its place; bounded, so a cycle ends in a problem.
        let mut pending: std::collections::VecDeque<String> = r.middlewares.iter().cloned().collect();
        let mut chains = 0usize;
        while let Some(m) = pending.pop_front() {
            let m = &m;
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
                Some(s) => match s.as_slice() {
                    [MwSpec::Chain(members)] => {
                        chains += 1;
                        if chains > 16 {
                            problem(
                                &r.middlewares_key,
                                format!("chain {n} nests more than 16 chains (a cycle?); router {name} not served"),
                            );
                            mw_ok = false;
                            break;
                        }
                        members.iter().rev().for_each(|m| pending.push_front(m.clone()));
                    }
                    _ => mws.extend(s),
                },
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
        let mut middlewares: Vec<Middleware> = Vec::with_capacity(mws.len());
        for m in mws {
            match m {
                MwSpec::Plain(m) => middlewares.push(m),
                MwSpec::Errors { statuses, service, query } => {
                    match resolve_service(i, &service, services, parsed, idx) {
                        Ok((target, def)) => {
                            let mut up = UpstreamSpec::new(target);
                            up.scheme = def.scheme;
                            let service = Some(Box::new(up));
                            middlewares.push(Middleware::Errors(crate::model::ErrorPages { statuses, query, service }));
                        }
                        Err(e) => {
                            problem(&r.middlewares_key, format!("errors: {e}; router {name} not served"));
                            mw_ok = false;
                            break;
                        }
                    }
                }
                MwSpec::RedirectScheme { .. } | MwSpec::Chain(_) => {}
            }
        }
        if !mw_ok {
            continue;
        }
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
        let mut up = UpstreamSpec::new(targets);
        let transport_key = format!("{}.loadbalancer.serverstransport", def.key);
        match servers_transport(&def, cfg) {
            Ok((tls, note)) => {
                up.tls = tls;
                if let Some(note) = note {
                    problem(&transport_key, note);
                }
            }
            Err(e) => {
                problem(&transport_key, format!("{e}; router {name} not served"));
                continue;
            }
        }
        up.scheme = def.scheme;
        up.pass_host = def.pass_host;
        // Without a strategy the source stays `Builtin`: `labels::translate` fills in the
        // default (wrr). A sticky cookie sits on top of the strategy, which places new clients.
        if let Some(s) = def.strategy {
            up.lb = s;
            up.lb_source = crate::model::LbSource::Label(format!("{}.loadbalancer.strategy", def.key));
        }
        if def.sticky {
            up.lb_fallback = def.strategy;
            up.lb = LbPolicy::Cookie;
            up.lb_source = crate::model::LbSource::Label(format!("{}.loadbalancer.sticky.cookie", def.key));
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

/// The TLS settings of a service's `serverstransport`, from swarmgate's
/// `[labels.traefik_servers_transports]` (by name, whatever the `@provider`), or the `default`
/// entry when the service names none. Only TLS settings are honoured, and only for `https`.
fn servers_transport(def: &ServiceDef, cfg: &LabelsConfig) -> Result<(UpstreamTls, Option<String>), String> {
    let named = def.servers_transport.as_deref();
    if def.scheme != UpstreamScheme::Https {
        let note =
            named.map(|n| format!("serverstransport {n}: only TLS settings are honoured (with scheme=https); ignored"));
        return Ok((UpstreamTls::default(), note));
    }
    let name = named.map(|n| n.split('@').next().unwrap_or(n)).unwrap_or("default");
    match (cfg.traefik_servers_transports.get(name), named) {
        (Some(tls), _) => Ok((tls.clone(), None)),
        (None, None) => Ok((UpstreamTls::default(), None)),
        (None, Some(n)) => Err(format!(
            "serverstransport {n} is not defined here; define it in swarmgate's config as \
             [labels.traefik_servers_transports.{name}] (ca, server_name, insecure_skip_verify)"
        )),
    }
}
