//! Reading one Caddy site block the way Caddy does: named matchers, middleware directives
//! (which run before any handler whatever their label order), then the handlers in Caddy's
//! directive order, each becoming a route. Problems name the label of the directive.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use super::tree::{self, Block, Origin, UpstreamRef};
use crate::labels::common::{
    bcrypt_hash, fixed_upstream, header_name, header_value, label_host, parse_duration, tls_ca_path, tls_server_name,
};
use crate::labels::ServiceInput;
use crate::model::{
    Action, Entrypoints, ForwardAuth, HeaderEdits, HealthCheck, LbPolicy, Middleware, PathMatch, Predicate, Problem,
    Provenance, RouteSpec, TaskTarget, TlsPolicy, UpstreamScheme, UpstreamSpec, UpstreamTarget, UpstreamTls,
    ValueMatch,
};

/// A named matcher, or the matcher token of a directive: all conditions must hold.
#[derive(Debug, Clone, Default)]
struct Matcher {
    path: Option<PathMatch>,
    preds: Vec<Predicate>,
}

/// What surrounds a directive: the path and conditions of enclosing `handle`/`route` blocks
/// and the middlewares that apply to everything inside.
#[derive(Clone)]
struct Ctx {
    path: PathMatch,
    preds: Vec<Predicate>,
    middlewares: Vec<Middleware>,
    matchers: BTreeMap<String, Result<Matcher, ()>>,
}

/// A route before hosts and TLS are attached.
struct Emitted {
    origin: Origin,
    path: PathMatch,
    preds: Vec<Predicate>,
    middlewares: Vec<Middleware>,
    action: Action,
}

/// The routes under a context cannot be served as written (e.g. broken auth).
pub(super) struct Fatal;

pub(super) struct Interp<'a> {
    pub services: &'a [&'a ServiceInput],
    pub ups: &'a [UpstreamRef],
    pub snippets: &'a BTreeMap<String, Vec<Block>>,
    pub problems: Vec<Problem>,
    /// Blocks skipped while reading (removed before merging).
    pub failed: BTreeSet<u32>,
}

/// Caddy's directive order for the handlers we emit routes for (lower runs first).
fn terminal_rank(name: &str) -> Option<u8> {
    Some(match name {
        "redir" => 1,
        "handle" => 2,
        "handle_path" => 3,
        "route" => 4,
        "respond" => 5,
        "reverse_proxy" => 6,
        _ => return None,
    })
}

fn is_matcher_token(t: &str) -> bool {
    t == "*" || t.starts_with('/') || t.starts_with('@')
}

/// Caddy path pattern → `PathMatch`: `/api*` and `/path/*` are string prefixes, no `*` is exact.
fn caddy_path(p: &str) -> Result<PathMatch, String> {
    if p == "*" || p == "/*" {
        return Ok(PathMatch::any());
    }
    if !p.starts_with('/') {
        return Err(format!("path {p:?} must start with /"));
    }
    match p.find('*') {
        None => Ok(PathMatch::Exact(p.to_owned())),
        Some(i) if i == p.len() - 1 => Ok(PathMatch::RawPrefix(p[..i].to_owned())),
        Some(_) => Err(format!("path {p:?}: only a trailing * is supported")),
    }
}

fn and(mut preds: Vec<Predicate>) -> Option<Predicate> {
    match preds.len() {
        0 => None,
        1 => preds.pop(),
        _ => Some(Predicate::And(preds)),
    }
}

fn or(mut preds: Vec<Predicate>) -> Predicate {
    if preds.len() == 1 {
        preds.pop().unwrap_or(Predicate::Or(Vec::new()))
    } else {
        Predicate::Or(preds)
    }
}

/// Caddy header value patterns: `*x*` contains, `x*` prefix, `*x` suffix, `*` any.
fn header_pattern(v: &str) -> ValueMatch {
    if v == "*" {
        return ValueMatch::Present;
    }
    match (v.strip_prefix('*'), v.strip_suffix('*')) {
        (Some(_), Some(_)) if v.len() >= 2 => ValueMatch::Contains(v[1..v.len() - 1].to_owned()),
        (Some(rest), None) => ValueMatch::Suffix(rest.to_owned()),
        (None, Some(rest)) => ValueMatch::Prefix(rest.to_owned()),
        _ => ValueMatch::Exact(v.to_owned()),
    }
}

fn parse_cidr(s: &str) -> Result<Predicate, String> {
    let (net, prefix_len) = crate::model::parse_cidr(s)?;
    Ok(Predicate::ClientIp { net, prefix_len })
}

/// Site addresses split by how they are served.
struct Addresses {
    /// `http://` (or `:80`) addresses: plain HTTP only.
    http: Vec<String>,
    /// Everything else: HTTPS with the site's TLS policy.
    tls: Vec<String>,
}

impl Interp<'_> {
    fn svc(&self, o: &Origin) -> &str {
        &self.services[o.service].name
    }

    pub(super) fn problem(&mut self, o: &Origin, msg: impl Into<String>) {
        let p = Problem::new(self.svc(o), &o.key, msg);
        self.problems.push(p);
    }

    /// Reports something that changes nothing served (see `Severity::Warning`).
    pub(super) fn warn(&mut self, o: &Origin, msg: impl Into<String>) {
        let p = Problem::warning(self.svc(o), &o.key, msg);
        self.problems.push(p);
    }

    /// Reports a directive that is skipped and remembers it so it is not merged.
    fn skip(&mut self, b: &Block, msg: impl Into<String>) {
        self.problem(&b.origin, msg);
        self.failed.insert(b.id);
    }

    fn addresses(&mut self, site: &Block) -> Addresses {
        let mut a = Addresses { http: Vec::new(), tls: Vec::new() };
        for raw in site.args.iter().flat_map(|t| t.split(',')).map(str::trim).filter(|t| !t.is_empty()) {
            let (plain, rest) = if let Some(r) = raw.strip_prefix("http://") {
                (true, r)
            } else if let Some(r) = raw.strip_prefix("https://") {
                (false, r)
            } else {
                (false, raw)
            };
            if rest.contains('/') {
                self.problem(
                    &site.origin,
                    format!("site address {raw:?}: a path in the address is not supported; use a handle block"),
                );
                continue;
            }
            let (host, port) = match rest.rsplit_once(':') {
                Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) && !p.is_empty() => (h, Some(p)),
                _ => (rest, None),
            };
            let plain = match port {
                Some("80") => true,
                Some("443") | None => plain,
                Some(p) => {
                    self.warn(
                        &site.origin,
                        format!("site address {raw:?}: port {p} ignored; swarmgate serves sites on its configured HTTP/HTTPS listeners"),
                    );
                    plain
                }
            };
            match label_host(host) {
                Ok(h) => {
                    let list = if plain { &mut a.http } else { &mut a.tls };
                    if !list.contains(&h) {
                        list.push(h);
                    }
                }
                Err(e) => self.problem(&site.origin, format!("site address {raw:?}: {e}")),
            }
        }
        a
    }

    /// Replaces `import name` with the snippet's blocks (recursively, bounded).
    fn expand_imports(&mut self, blocks: &[Block], depth: usize) -> Vec<Block> {
        let mut out = Vec::with_capacity(blocks.len());
        for b in blocks {
            if b.name == "import" {
                let Some(name) = b.args.first() else {
                    self.skip(b, "import needs a snippet name");
                    continue;
                };
                if b.args.len() > 1 {
                    self.problem(&b.origin, "snippet arguments are not supported; importing without them");
                }
                match self.snippets.get(name.as_str()) {
                    Some(_) if depth > 8 => {
                        self.skip(b, format!("import {name}: snippets nested too deeply (a cycle?)"))
                    }
                    Some(sn) => {
                        let sn = sn.clone();
                        out.extend(self.expand_imports(&sn, depth + 1));
                    }
                    None => self.skip(b, format!("import {name}: no snippet ({name}) is defined by any service")),
                }
                continue;
            }
            let mut b = b.clone();
            if !b.children.is_empty() {
                b.children = self.expand_imports(&b.children, depth);
            }
            out.push(b);
        }
        tree::sort_blocks(&mut out);
        out
    }

    /// Reads one site into routes. `Err` = the site cannot be served (reported).
    pub(super) fn site(&mut self, site: &Block, final_pass: bool) -> Result<Vec<RouteSpec>, Fatal> {
        let addrs = self.addresses(site);
        if addrs.http.is_empty() && addrs.tls.is_empty() {
            self.problem(&site.origin, "no usable site address; the site is not served");
            return Err(Fatal);
        }
        let children = self.expand_imports(&site.children, 0);
        // Site-wide TLS policy.
        let mut tls = TlsPolicy::Auto;
        let mut tls_from: Option<&Block> = None;
        for b in children.iter().filter(|b| b.name == "tls") {
            let policy = self.tls_policy(b)?;
            match tls_from {
                Some(prev) if policy != tls => {
                    let other = self.svc(&prev.origin).to_owned();
                    self.skip(
                        b,
                        format!(
                            "conflicting tls settings for this site (service {other} set {:?}); keeping the first",
                            tls
                        ),
                    );
                }
                Some(_) => {}
                None => {
                    tls = policy;
                    tls_from = Some(b);
                }
            }
        }
        let ctx = Ctx { path: PathMatch::any(), preds: Vec::new(), middlewares: Vec::new(), matchers: BTreeMap::new() };
        let emitted = self.walk(&children, &ctx, true)?;
        if emitted.is_empty() && final_pass {
            self.problem(
                &site.origin,
                "the site has no reverse_proxy, respond, redir or handle directive; nothing is served",
            );
        }
        let mut routes = Vec::new();
        let groups = [(addrs.http, true), (addrs.tls, false)];
        for (hosts, plain) in groups {
            if hosts.is_empty() {
                continue;
            }
            for e in &emitted {
                // `{host}` in a redirect target: one route per host, so the target can name it.
                let per_host: Vec<(Vec<String>, Action)> = match &e.action {
                    Action::Redirect { location, status } if location.contains("{host}") => {
                        let mut v = Vec::new();
                        for h in &hosts {
                            if h.starts_with("*.") {
                                self.problem(
                                    &e.origin,
                                    format!("redir with {{host}} cannot name wildcard host {h}; not redirected for it"),
                                );
                                continue;
                            }
                            v.push((
                                vec![h.clone()],
                                Action::Redirect { location: location.replace("{host}", h), status: *status },
                            ));
                        }
                        v
                    }
                    a => vec![(hosts.clone(), a.clone())],
                };
                for (route_hosts, action) in per_host {
                    let svc = self.svc(&e.origin).to_owned();
                    let mut r = RouteSpec::proxy(
                        String::new(),
                        Provenance::Service { service: svc, key: e.origin.key.clone() },
                        route_hosts,
                        UpstreamSpec::new(UpstreamTarget::Tasks(Vec::new())),
                    );
                    r.action = action;
                    r.path = e.path.clone();
                    r.predicate = and(e.preds.clone());
                    r.middlewares = e.middlewares.clone();
                    if plain || tls == TlsPolicy::Off {
                        r.tls = TlsPolicy::Off;
                        r.entrypoints = Entrypoints { http: true, https: false };
                    } else {
                        r.tls = tls.clone();
                    }
                    routes.push(r);
                }
            }
        }
        Ok(routes)
    }

    fn tls_policy(&mut self, b: &Block) -> Result<TlsPolicy, Fatal> {
        if let Some(c) = b.children.iter().find(|c| c.name == "client_auth") {
            self.problem(
                &c.origin,
                "tls client_auth: client certificates cannot be required by swarmgate; the site is not served",
            );
            return Err(Fatal);
        }
        for c in &b.children {
            self.warn(
                &c.origin,
                format!(
                    "tls option {} is not supported; ignored (certificates come from swarmgate's ACME issuer)",
                    c.name
                ),
            );
        }
        match b.args.as_slice() {
            [] => Ok(TlsPolicy::Auto),
            [a] if a == "internal" => Ok(TlsPolicy::Internal),
            [a] if a == "off" => Ok(TlsPolicy::Off),
            [a] if a == "force_automate" => Ok(TlsPolicy::Auto),
            [a] if a.contains('@') && !a.starts_with('@') => {
                self.warn(&b.origin, format!("per-site ACME email {a} is not used; swarmgate has one ACME account (set caddy.email or [acme] email)"));
                Ok(TlsPolicy::Auto)
            }
            [c, k] if !c.contains('@') => {
                self.problem(&b.origin, format!("tls {c} {k}: certificate files inside the proxy are not supported (use [[tls.certificates]] in the config); the site is not served"));
                Err(Fatal)
            }
            args => {
                self.problem(
                    &b.origin,
                    format!(
                        "tls {}: expected internal, off, or an email address; the site is not served",
                        args.join(" ")
                    ),
                );
                Err(Fatal)
            }
        }
    }

    fn matcher_def(&mut self, b: &Block) -> Result<Matcher, String> {
        let mut m = Matcher::default();
        if !b.args.is_empty() {
            self.condition(&b.args[0], &b.args[1..], &[], &mut m)?;
        }
        for c in &b.children {
            self.condition(&c.name, &c.args, &c.children, &mut m)?;
        }
        if m.path.is_none() && m.preds.is_empty() {
            return Err("empty matcher".into());
        }
        Ok(m)
    }

    fn condition(&mut self, kind: &str, args: &[String], children: &[Block], m: &mut Matcher) -> Result<(), String> {
        match kind {
            "path" => {
                let paths = args.iter().map(|p| caddy_path(p)).collect::<Result<Vec<_>, _>>()?;
                match paths.len() {
                    0 => return Err("path needs at least one path".into()),
                    1 if m.path.is_none() => m.path = paths.into_iter().next(),
                    _ => m.preds.push(or(paths.into_iter().map(Predicate::Path).collect())),
                }
            }
            "host" => {
                let hosts = args.iter().map(|h| label_host(h).map(Predicate::Host)).collect::<Result<Vec<_>, _>>()?;
                if hosts.is_empty() {
                    return Err("host needs at least one host name".into());
                }
                m.preds.push(or(hosts));
            }
            "header" => {
                let Some(field) = args.first() else { return Err("header needs a field name".into()) };
                let (neg, field) = match field.strip_prefix('!') {
                    Some(f) => (true, f),
                    None => (false, field.as_str()),
                };
                header_name(field)?;
                let p = if args.len() == 1 {
                    Predicate::Header { name: field.to_owned(), value: ValueMatch::Present }
                } else {
                    or(args[1..].iter().map(|v| Predicate::Header { name: field.to_owned(), value: header_pattern(v) }).collect())
                };
                m.preds.push(if neg { Predicate::Not(Box::new(p)) } else { p });
            }
            "method" => {
                if args.is_empty() {
                    return Err("method needs at least one method".into());
                }
                m.preds.push(Predicate::Method(args.iter().map(|a| a.to_ascii_uppercase()).collect()));
            }
            "query" => {
                let mut qs = Vec::new();
                for a in args {
                    let (k, v) = a.split_once('=').unwrap_or((a, "*"));
                    let value = if v == "*" { ValueMatch::Present } else { ValueMatch::Exact(v.to_owned()) };
                    qs.push(Predicate::Query { name: k.to_owned(), value });
                }
                if qs.is_empty() {
                    return Err("query needs key=value".into());
                }
                m.preds.push(and(qs).unwrap_or(Predicate::And(Vec::new())));
            }
            "client_ip" | "remote_ip" => {
                let nets = args.iter().map(|a| parse_cidr(a)).collect::<Result<Vec<_>, _>>()?;
                if nets.is_empty() {
                    return Err(format!("{kind} needs at least one address"));
                }
                m.preds.push(or(nets));
            }
            "not" => {
                let mut inner = Matcher::default();
                if let Some((k, rest)) = args.split_first() {
                    self.condition(k, rest, &[], &mut inner)?;
                }
                for c in children {
                    self.condition(&c.name, &c.args, &c.children, &mut inner)?;
                }
                let mut all = inner.preds;
                if let Some(p) = inner.path {
                    all.insert(0, Predicate::Path(p));
                }
                let Some(p) = and(all) else { return Err("not needs a condition".into()) };
                m.preds.push(Predicate::Not(Box::new(p)));
            }
            other => return Err(format!("matcher condition {other} is not supported (supported: path, host, header, method, query, client_ip, not)")),
        }
        Ok(())
    }

    /// Resolves the matcher token at the start of `args`: (matcher, tokens consumed).
    fn matcher_token(&self, args: &[String], ctx: &Ctx) -> Result<(Option<Matcher>, usize), String> {
        let Some(t) = args.first() else {
            return Ok((None, 0));
        };
        if t == "*" {
            return Ok((None, 1));
        }
        if let Some(name) = t.strip_prefix('@') {
            return match ctx.matchers.get(t) {
                Some(Ok(m)) => Ok((Some(m.clone()), 1)),
                Some(Err(())) => Err(format!("matcher @{name} is invalid (see its problem)")),
                None => Err(format!("matcher @{name} is not defined in this site")),
            };
        }
        if t.starts_with('/') {
            return Ok((Some(Matcher { path: Some(caddy_path(t)?), preds: Vec::new() }), 1));
        }
        Ok((None, 0))
    }

    /// Path and conditions of a directive inside `ctx`.
    fn combine(ctx: &Ctx, m: Option<&Matcher>) -> (PathMatch, Vec<Predicate>) {
        let mut path = ctx.path.clone();
        let mut preds = ctx.preds.clone();
        if let Some(m) = m {
            if let Some(p) = &m.path {
                if path != PathMatch::any() {
                    preds.insert(0, Predicate::Path(path));
                }
                path = p.clone();
            }
            preds.extend(m.preds.iter().cloned());
        }
        (path, preds)
    }

    /// Reads the directives of one block level.
    fn walk(&mut self, children: &[Block], outer: &Ctx, site_level: bool) -> Result<Vec<Emitted>, Fatal> {
        let mut ctx = outer.clone();
        for b in children.iter().filter(|b| b.name.starts_with('@')) {
            let def = self.matcher_def(b);
            let def = match def {
                Ok(m) => Ok(m),
                Err(e) => {
                    self.skip(b, format!("matcher {}: {e}", b.name));
                    Err(())
                }
            };
            ctx.matchers.insert(b.name.clone(), def);
        }
        // Middlewares first: in Caddy they run before any handler, whatever the label order.
        let mut terminals: Vec<(&Block, u8)> = Vec::new();
        for b in children.iter().filter(|b| !b.name.starts_with('@')) {
            if let Some(rank) = terminal_rank(&b.name) {
                terminals.push((b, rank));
                continue;
            }
            self.middleware(b, &mut ctx, site_level)?;
        }
        terminals.sort_by_key(|(b, rank)| (*rank, !b.args.first().is_some_and(|a| is_matcher_token(a) && a != "*")));
        let mut out = Vec::new();
        for (b, _) in terminals {
            match b.name.as_str() {
                "reverse_proxy" => {
                    if let Some(e) = self.reverse_proxy(b, &ctx) {
                        out.push(e);
                    }
                }
                "redir" => {
                    if let Some(e) = self.redir(b, &ctx) {
                        out.push(e);
                    }
                }
                "respond" => match self.respond(b, &ctx) {
                    Some(e) => out.push(e),
                    // A refusal (`respond @blocked 403`) that cannot be applied would let the
                    // blocked requests through to the next handler: fail closed.
                    None if is_refusal(b) => {
                        self.problem(&b.origin, "respond: this refusal cannot be applied, so the requests it blocks would be served; the routes it guards are not served");
                        return Err(Fatal);
                    }
                    None => {}
                },
                _ => out.extend(self.group(b, &ctx)?),
            }
        }
        Ok(out)
    }

    /// `handle`, `handle_path`, `route`: a nested block under a matcher.
    ///
    /// Fails closed: a block that guards its paths (auth, a refusal) and cannot be read makes
    /// the whole site fail, since its requests would otherwise fall through to the site's other
    /// handlers unguarded; a block whose own access control fails answers 503 on its paths.
    fn group(&mut self, b: &Block, ctx: &Ctx) -> Result<Vec<Emitted>, Fatal> {
        let unreadable = |me: &mut Self| {
            if guards(b) {
                me.problem(
                    &b.origin,
                    format!(
                        "{} guards its paths with access control but cannot be read; the site is not served",
                        b.name
                    ),
                );
                Err(Fatal)
            } else {
                Ok(Vec::new())
            }
        };
        let (m, used) = if b.name == "handle_path" {
            match b.args.first() {
                Some(p) if p.starts_with('/') => match caddy_path(p) {
                    Ok(pm) => (Some(Matcher { path: Some(pm), preds: Vec::new() }), 1),
                    Err(e) => {
                        self.skip(b, format!("handle_path: {e}"));
                        return unreadable(self);
                    }
                },
                _ => {
                    self.skip(b, "handle_path needs a path pattern such as /api/*");
                    return unreadable(self);
                }
            }
        } else {
            match self.matcher_token(&b.args, ctx) {
                Ok(x) => x,
                Err(e) => {
                    self.skip(b, format!("{}: {e}", b.name));
                    return unreadable(self);
                }
            }
        };
        if b.args.len() > used {
            self.skip(b, format!("{}: unexpected arguments {:?}", b.name, &b.args[used..]));
            return unreadable(self);
        }
        let (path, preds) = Self::combine(ctx, m.as_ref());
        let mut inner = Ctx { path, preds, middlewares: ctx.middlewares.clone(), matchers: ctx.matchers.clone() };
        if b.name == "handle_path" {
            let prefix = b.args[0].trim_end_matches('*').trim_end_matches('/');
            if !prefix.is_empty() {
                inner.middlewares.push(Middleware::StripPrefix(prefix.to_owned()));
            }
        }
        Ok(match self.walk(&b.children, &inner, false) {
            Ok(v) => {
                if v.is_empty() {
                    self.problem(
                        &b.origin,
                        format!("{} block has nothing that answers (reverse_proxy, respond, redir)", b.name),
                    );
                }
                v
            }
            Err(Fatal) => {
                self.problem(
                    &b.origin,
                    format!("{} block is not served (see the problems inside it); its paths answer 503", b.name),
                );
                vec![Emitted {
                    origin: b.origin.clone(),
                    path: inner.path,
                    preds: inner.preds,
                    middlewares: Vec::new(),
                    action: Action::Respond {
                        status: 503,
                        body: "not served: its access control cannot be applied\n".into(),
                    },
                }]
            }
        })
    }

    fn middleware(&mut self, b: &Block, ctx: &mut Ctx, site_level: bool) -> Result<(), Fatal> {
        match b.name.as_str() {
            "tls" if site_level => {}
            "tls" => self.skip(b, "tls only applies to a whole site; ignored here"),
            "header" | "request_header" => {
                if let Some(edits) = self.header_edits(b) {
                    ctx.middlewares.push(if b.name == "header" {
                        Middleware::ResponseHeaders(edits)
                    } else {
                        Middleware::RequestHeaders(edits)
                    });
                }
            }
            "uri" => match b.args.as_slice() {
                [op, p] if op == "strip_prefix" && p.starts_with('/') => {
                    ctx.middlewares.push(Middleware::StripPrefix(p.clone()))
                }
                [op, p] if op == "strip_prefix" => ctx.middlewares.push(Middleware::StripPrefix(format!("/{p}"))),
                [m, ..] if is_matcher_token(m) && m != "*" => {
                    self.skip(b, "uri with a matcher is not supported; put it in a handle block")
                }
                args => self
                    .skip(b, format!("uri {}: only `uri strip_prefix /prefix` is supported; skipped", args.join(" "))),
            },
            "rewrite" => {
                let args: &[String] = match b.args.first() {
                    Some(a) if a == "*" => &b.args[1..],
                    _ => &b.args,
                };
                match args {
                    [to] if !is_matcher_token(to) || to.starts_with('/') => {
                        let prefix = to.strip_suffix("{uri}").or_else(|| to.strip_suffix("{path}"));
                        match prefix {
                            Some(p) if p.starts_with('/') && !p.contains('{') => ctx.middlewares.push(Middleware::AddPrefix(p.to_owned())),
                            _ => self.skip(b, format!("rewrite {to}: only the prefix form `rewrite * /prefix{{uri}}` is supported; skipped")),
                        }
                    }
                    _ => self.skip(b, format!("rewrite {}: only the prefix form `rewrite * /prefix{{uri}}` is supported (no matcher); skipped", b.args.join(" "))),
                }
            }
            "basic_auth" | "basicauth" => match self.basic_auth(b) {
                Ok(m) => ctx.middlewares.push(m),
                Err(e) => {
                    // Not marked failed: a merged site must meet the same refusal again, not a
                    // copy with the auth removed.
                    self.problem(&b.origin, format!("{}: {e}; the routes it protects are not served", b.name));
                    return Err(Fatal);
                }
            },
            "forward_auth" => match forward_auth(b) {
                Ok(m) => ctx.middlewares.push(m),
                Err(e) => {
                    self.problem(&b.origin, format!("forward_auth: {e}; the routes it protects are not served"));
                    return Err(Fatal);
                }
            },
            "request_body" => {
                let size = match (b.args.as_slice(), b.children.as_slice()) {
                    ([], [c]) if c.name == "max_size" && c.args.len() == 1 => {
                        crate::labels::common::parse_byte_size(&c.args[0])
                    }
                    _ => Err("only `request_body { max_size <size> }` is supported".into()),
                };
                match size {
                    Ok(n) if n > 0 => ctx.middlewares.push(Middleware::MaxBodyBytes(n)),
                    Ok(_) => {}
                    Err(e) => self.skip(b, format!("request_body: {e}; skipped")),
                }
            }
            "encode" => {
                let mut min_bytes = 512;
                for c in &b.children {
                    match (c.name.as_str(), c.args.as_slice()) {
                        ("minimum_length", [n]) => match n.parse::<u64>() {
                            Ok(n) => min_bytes = n,
                            Err(_) => {
                                self.problem(&c.origin, format!("encode minimum_length {n:?} is not a number of bytes"))
                            }
                        },
                        ("gzip" | "zstd", _) => {}
                        (other, _) => self.warn(
                            &c.origin,
                            format!("encode {other}: not supported; swarmgate compresses text-like types"),
                        ),
                    }
                }
                if b.args.iter().any(|a| is_matcher_token(a)) {
                    self.skip(b, "encode with a matcher is not supported; put it in a handle block");
                } else {
                    if !b.args.is_empty() && !b.args.iter().any(|a| a == "gzip") {
                        self.warn(&b.origin, format!("encode {}: swarmgate encodes gzip only", b.args.join(" ")));
                    }
                    ctx.middlewares.push(Middleware::Compress { min_bytes, include: Vec::new(), exclude: Vec::new() });
                }
            }
            "log" | "skip_log" | "log_skip" => self.warn(
                &b.origin,
                format!("{}: ignored; swarmgate's access log is configured globally ([log] access)", b.name),
            ),
            other if is_access_control(other) => {
                // Serving the site without the check would open it to everyone: fail closed.
                self.problem(
                    &b.origin,
                    format!(
                        "{other}: access control that swarmgate cannot apply; the routes it protects are not served"
                    ),
                );
                return Err(Fatal);
            }
            other => {
                self.skip(b, format!("directive {other} is not supported; skipped (the rest of the site is served)"))
            }
        }
        Ok(())
    }

    fn header_edits(&mut self, b: &Block) -> Option<HeaderEdits> {
        let mut edits = HeaderEdits::default();
        let mut lines: Vec<(&Origin, Vec<String>)> = Vec::new();
        let mut args: &[String] = &b.args;
        if let Some(m) = args.first().filter(|a| is_matcher_token(a)) {
            if m != "*" {
                self.skip(b, format!("{} with a matcher is not supported; put it in a handle block", b.name));
                return None;
            }
            args = &args[1..];
        }
        if !args.is_empty() {
            lines.push((&b.origin, args.to_vec()));
        }
        for c in &b.children {
            let mut l = vec![c.name.clone()];
            l.extend(c.args.iter().cloned());
            lines.push((&c.origin, l));
        }
        for (origin, line) in lines {
            let field = &line[0];
            let (op, name) = match field.chars().next() {
                Some(c @ ('+' | '-' | '>' | '?')) => (c, &field[1..]),
                _ => (' ', field.as_str()),
            };
            let fail = |me: &mut Self, msg: String| {
                let o = origin.clone();
                me.problem(&o, format!("{} {}: {msg}; skipped", b.name, line.join(" ")));
                me.failed.insert(b.id);
            };
            if let Err(e) = header_name(name) {
                fail(self, e);
                return None;
            }
            let value = line.get(1).cloned().unwrap_or_default();
            if line.len() > 2 {
                fail(self, "the search-and-replace form is not supported".into());
                return None;
            }
            if value.contains('{') {
                fail(self, "placeholders in header values are not evaluated".into());
                return None;
            }
            if let Err(e) = header_value(&value) {
                fail(self, e);
                return None;
            }
            match op {
                '-' => edits.remove.push(name.to_owned()),
                '+' => {
                    edits.add.insert(name.to_owned(), value);
                }
                '?' => {
                    fail(self, "`?` (set only if missing) is not supported".into());
                    return None;
                }
                _ => {
                    edits.set.insert(name.to_owned(), value);
                }
            }
        }
        if edits.is_empty() {
            self.skip(b, format!("{} without a field", b.name));
            return None;
        }
        Some(edits)
    }

    fn basic_auth(&mut self, b: &Block) -> Result<Middleware, String> {
        let mut args: &[String] = &b.args;
        if let Some(m) = args.first().filter(|a| is_matcher_token(a)) {
            if m != "*" {
                return Err("a matcher on basic_auth is not supported; put basic_auth inside a handle block".into());
            }
            args = &args[1..];
        }
        let realm = match args {
            [] => "restricted".to_owned(),
            [alg] | [alg, _] if alg != "bcrypt" => {
                return Err(format!("hash algorithm {alg} is not supported (bcrypt only)"))
            }
            [_] => "restricted".to_owned(),
            [_, realm] => realm.replace('"', ""),
            _ => return Err("too many arguments".into()),
        };
        let mut users = BTreeMap::new();
        for c in &b.children {
            let [hash] = c.args.as_slice() else {
                return Err(format!("user {}: give exactly one hash", c.name));
            };
            users.insert(c.name.clone(), bcrypt_hash(hash).map_err(|e| format!("user {}: {e}", c.name))?);
        }
        if users.is_empty() {
            return Err("no users (add e.g. caddy.basic_auth.alice=<bcrypt hash>)".into());
        }
        Ok(Middleware::BasicAuth { realm, users })
    }

    fn reverse_proxy(&mut self, b: &Block, ctx: &Ctx) -> Option<Emitted> {
        let (m, used) = match self.matcher_token(&b.args, ctx) {
            Ok(x) => x,
            Err(e) => {
                self.skip(b, format!("reverse_proxy: {e}"));
                return None;
            }
        };
        let (path, preds) = Self::combine(ctx, m.as_ref());
        let mut tokens: Vec<(&Origin, &String)> = b.args[used..].iter().map(|t| (&b.origin, t)).collect();
        for c in b.children.iter().filter(|c| c.name == "to") {
            tokens.extend(c.args.iter().map(|t| (&c.origin, t)));
        }
        let mut targets: Vec<TaskTarget> = Vec::new();
        let mut schemes: Vec<UpstreamScheme> = Vec::new();
        let mut literal = Vec::new();
        for (origin, t) in tokens {
            match tree::upstream_index(t).and_then(|i| self.ups.get(i)) {
                Some(r) => {
                    let scheme = r.scheme.unwrap_or(UpstreamScheme::Http);
                    let port = r.port.unwrap_or(if scheme == UpstreamScheme::Https { 443 } else { 80 });
                    let tt =
                        TaskTarget { service: self.services[r.service].name.clone(), network: r.network.clone(), port };
                    if !targets.contains(&tt) {
                        targets.push(tt);
                    }
                    if !schemes.contains(&scheme) {
                        schemes.push(scheme);
                    }
                }
                None if tree::has_upstream_mark(t) => {
                    self.problem(
                        origin,
                        "{{upstreams}} glued to other text is not supported; write it as a separate argument",
                    );
                }
                None => literal.push((origin.clone(), t.clone())),
            }
        }
        let target = if targets.is_empty() {
            let mut names = Vec::new();
            for (o, t) in &literal {
                match fixed_upstream(t) {
                    Ok((scheme, host, port)) => {
                        if !schemes.contains(&scheme) {
                            schemes.push(scheme);
                        }
                        if !names.contains(&(host.clone(), port)) {
                            names.push((host, port));
                        }
                    }
                    Err(e) => {
                        self.problem(o, format!("reverse_proxy {e}; this reverse_proxy is not served"));
                        self.failed.insert(b.id);
                        return None;
                    }
                }
            }
            if names.is_empty() {
                self.skip(b, "reverse_proxy names no upstream; skipped");
                return None;
            }
            UpstreamTarget::Names(names)
        } else {
            for (o, t) in &literal {
                self.problem(o, format!("reverse_proxy mixes {{{{upstreams}}}} with the fixed address {t}, which is left out; give it a reverse_proxy of its own"));
            }
            UpstreamTarget::Tasks(targets)
        };
        let mut up = UpstreamSpec::new(target);
        up.scheme = schemes[0];
        if schemes.len() > 1 {
            self.problem(
                &b.origin,
                format!("reverse_proxy mixes upstream schemes {schemes:?}; using {:?} for all", schemes[0]),
            );
        }
        let mut middlewares = ctx.middlewares.clone();
        let mut health_uri: Option<String> = None;
        let mut health_interval = Duration::from_secs(30);
        let mut req = HeaderEdits::default();
        let mut resp = HeaderEdits::default();
        for c in &b.children {
            let bad = |me: &mut Self, msg: String| {
                me.problem(&c.origin, format!("reverse_proxy {}: {msg}; this reverse_proxy is not served", c.name));
                me.failed.insert(b.id);
            };
            let arg1 = c.args.first().map(String::as_str);
            match c.name.as_str() {
                "to" => {}
                "lb_policy" => match caddy_lb_policy(c) {
                    Ok(lb) => {
                        for n in &lb.notes {
                            self.warn(&c.origin, format!("lb_policy {}: {n}", c.args.join(" ")));
                        }
                        (up.lb, up.lb_key, up.lb_fallback) = (lb.policy, lb.key, lb.fallback);
                        up.lb_source = crate::model::LbSource::Label(c.origin.key.clone());
                        if lb.policy == LbPolicy::Cookie {
                            up.sticky_cookie = lb.cookie;
                        }
                    }
                    Err(e) => {
                        bad(self, e);
                        return None;
                    }
                },
                "health_uri" | "health_path" => match arg1 {
                    Some(p) if p.starts_with('/') => health_uri = Some(p.to_owned()),
                    _ => {
                        bad(self, "needs a path starting with /".into());
                        return None;
                    }
                },
                "health_interval" => match arg1.map(parse_duration) {
                    Some(Ok(d)) if d >= Duration::from_millis(100) => health_interval = d,
                    Some(Err(e)) => {
                        bad(self, e);
                        return None;
                    }
                    _ => {
                        bad(self, "needs a duration of at least 100ms".into());
                        return None;
                    }
                },
                "header_up" | "header_down" => {
                    let edits = if c.name == "header_up" { &mut req } else { &mut resp };
                    match c.args.as_slice() {
                        [f] if f.starts_with('-') && header_name(&f[1..]).is_ok() => edits.remove.push(f[1..].to_owned()),
                        [f, v] if c.name == "header_up" && f.eq_ignore_ascii_case("host") && v == "{upstream_hostport}" => up.pass_host = false,
                        [f, v] if f.eq_ignore_ascii_case("host") && v == "{host}" => {}
                        [f, v] if v.contains('{') => {
                            self.problem(&c.origin, format!("{} {f} {v}: placeholders are not evaluated; header not set", c.name));
                        }
                        [f, v] => {
                            let (add, name) = match f.strip_prefix('+') {
                                Some(n) => (true, n),
                                None => (false, f.as_str()),
                            };
                            if let Err(e) = header_name(name).and_then(|_| header_value(v)) {
                                bad(self, e);
                                return None;
                            }
                            if add {
                                edits.add.insert(name.to_owned(), v.clone());
                            } else {
                                edits.set.insert(name.to_owned(), v.clone());
                            }
                        }
                        _ => {
                            bad(self, "expected `Name value` or `-Name`".into());
                            return None;
                        }
                    }
                }
                "transport" => {
                    if arg1 != Some("http") {
                        bad(self, format!("transport {} is not supported (http only)", c.args.join(" ")));
                        return None;
                    }
                    for t in &c.children {
                        match t.name.as_str() {
                            "versions" if t.args.iter().any(|v| v == "h2c") => up.scheme = UpstreamScheme::H2c,
                            name if TLS_TRANSPORT.contains(&name) => {
                                // Any of these turns TLS on, as in Caddy.
                                up.scheme = UpstreamScheme::Https;
                                if let Err(e) = transport_tls(&mut up.tls, name, &t.args) {
                                    self.problem(&t.origin, format!("transport http {name}: {e}; this reverse_proxy is not served"));
                                    self.failed.insert(b.id);
                                    return None;
                                }
                            }
                            other => self.problem(&t.origin, format!("transport http {other}: not supported; ignored")),
                        }
                    }
                }
                "lb_retries" => match arg1.and_then(|a| a.parse::<u32>().ok()) {
                    Some(n) => middlewares.push(Middleware::Retry { attempts: n.min(8) + 1 }),
                    None => {
                        bad(self, "needs a number".into());
                        return None;
                    }
                },
                other => self.warn(
                    &c.origin,
                    format!("reverse_proxy {other}: not supported; ignored (swarmgate's own timeouts, passive health and retries apply)"),
                ),
            }
        }
        up.health = health_uri.map(|path| HealthCheck { path, interval: health_interval });
        if !req.is_empty() {
            middlewares.push(Middleware::RequestHeaders(req));
        }
        if !resp.is_empty() {
            middlewares.push(Middleware::ResponseHeaders(resp));
        }
        Some(Emitted { origin: b.origin.clone(), path, preds, middlewares, action: Action::Proxy(up) })
    }

    fn redir(&mut self, b: &Block, ctx: &Ctx) -> Option<Emitted> {
        let is_code = |s: &str| matches!(s, "permanent" | "temporary" | "html") || s.parse::<u16>().is_ok();
        let has_matcher = match b.args.as_slice() {
            [m, _, _] => is_matcher_token(m),
            [m, second] => is_matcher_token(m) && !is_code(second),
            _ => false,
        };
        let (m, used) = if has_matcher {
            match self.matcher_token(&b.args, ctx) {
                Ok(x) => x,
                Err(e) => {
                    self.skip(b, format!("redir: {e}"));
                    return None;
                }
            }
        } else {
            (None, 0)
        };
        let rest = &b.args[used..];
        let (to, code) = match rest {
            [to] => (to, None),
            [to, code] => (to, Some(code.as_str())),
            _ => {
                self.skip(b, "redir needs a target (and optionally a status)");
                return None;
            }
        };
        let status = match code {
            None | Some("temporary") => 302,
            Some("permanent") => 301,
            Some(c) => match c.parse::<u16>() {
                Ok(s) if (300..400).contains(&s) => s,
                _ => {
                    self.skip(b, format!("redir status {c} is not supported (a 3xx code, permanent or temporary)"));
                    return None;
                }
            },
        };
        let location = to.replace("{http.request.uri}", "{uri}").replace("{http.request.host}", "{host}");
        if location.replace("{uri}", "").replace("{host}", "").contains('{') {
            self.skip(b, format!("redir {to}: only the {{uri}} and {{host}} placeholders are supported"));
            return None;
        }
        let (path, preds) = Self::combine(ctx, m.as_ref());
        Some(Emitted {
            origin: b.origin.clone(),
            path,
            preds,
            middlewares: ctx.middlewares.clone(),
            action: Action::Redirect { location, status },
        })
    }

    fn respond(&mut self, b: &Block, ctx: &Ctx) -> Option<Emitted> {
        let has_matcher = b.args.len() >= 2 && is_matcher_token(&b.args[0]);
        let (m, used) = if has_matcher {
            match self.matcher_token(&b.args, ctx) {
                Ok(x) => x,
                Err(e) => {
                    self.skip(b, format!("respond: {e}"));
                    return None;
                }
            }
        } else {
            (None, 0)
        };
        let is_status = |s: &str| s.len() == 3 && s.bytes().all(|c| c.is_ascii_digit());
        let (body, status) = match &b.args[used..] {
            [] => (String::new(), "200"),
            [s] if is_status(s) => (String::new(), s.as_str()),
            [body] => (body.clone(), "200"),
            [body, s] => (body.clone(), s.as_str()),
            _ => {
                self.skip(b, "respond takes a body and/or a status");
                return None;
            }
        };
        let status = match status.parse::<u16>() {
            Ok(s) if (100..600).contains(&s) => s,
            _ => {
                self.skip(b, format!("respond status {status} is not an HTTP status"));
                return None;
            }
        };
        let (path, preds) = Self::combine(ctx, m.as_ref());
        Some(Emitted {
            origin: b.origin.clone(),
            path,
            preds,
            middlewares: ctx.middlewares.clone(),
            action: Action::Respond { status, body },
        })
    }
}

/// `forward_auth <upstream> { uri <path>; copy_headers <names…> }`: the authentication service
/// by address (a service's tasks or a fixed host, as `reverse_proxy` addresses), the path of the
/// check, and the answer's headers to copy (`Name` or `From>To`, as arguments or one per line).
fn forward_auth(b: &Block) -> Result<Middleware, String> {
    let address = match b.args.as_slice() {
        [a] if !is_matcher_token(a) => a,
        [] => return Err("give the authentication service's address (e.g. authelia:9091)".into()),
        _ => return Err("exactly one upstream address, without a matcher (put forward_auth in a handle block)".into()),
    };
    let (mut up, _) = crate::labels::common::forward_auth_upstream(address)?;
    let mut fa = ForwardAuth { uri: "/".into(), copy_headers: Vec::new(), request_headers: None, service: None };
    for c in &b.children {
        match c.name.as_str() {
            "uri" => match c.args.as_slice() {
                [u] if u.starts_with('/') && !u.contains('{') => fa.uri = u.clone(),
                _ => return Err(format!("uri {}: give one path (placeholders are not supported)", c.args.join(" "))),
            },
            "copy_headers" => {
                let names = c.args.iter().chain(c.children.iter().map(|g| &g.name));
                fa.copy_headers.extend(names.map(|n| crate::config::copy_header(n)));
            }
            "transport"
                if c.args.first().is_some_and(|a| a == "http")
                    && c.children.iter().all(|t| t.name == "tls_insecure_skip_verify") =>
            {
                up.tls.insecure_skip_verify = !c.children.is_empty();
            }
            other => return Err(format!("subdirective {other} is not supported (uri and copy_headers are)")),
        }
    }
    fa.service = Some(Box::new(up));
    Ok(Middleware::ForwardAuth(fa))
}

/// Directives whose job is to keep requests out (authentication plugins, forward auth, IP
/// filters, aborts). One that swarmgate cannot apply must not leave its routes open.
fn is_access_control(name: &str) -> bool {
    matches!(
        name,
        "forward_auth"
            | "authenticate"
            | "authorize"
            | "authorization"
            | "jwtauth"
            | "jwt"
            | "digest_auth"
            | "security"
            | "oauth"
            | "oauth2"
            | "crowdsec"
            | "ip_filter"
            | "ipfilter"
            | "remote_ip"
            | "abort"
            | "error"
    )
}

/// True when the block or anything inside it keeps requests out.
fn guards(b: &Block) -> bool {
    let here = matches!(b.name.as_str(), "basic_auth" | "basicauth")
        || is_access_control(&b.name)
        || (b.name == "respond" && is_refusal(b));
    here || b.children.iter().any(guards)
}

/// `respond` with a 4xx/5xx status: a refusal.
fn is_refusal(b: &Block) -> bool {
    b.args.iter().any(|a| a.parse::<u16>().is_ok_and(|s| (400..600).contains(&s)))
}

/// `transport http` options about TLS to the upstream that swarmgate honours.
const TLS_TRANSPORT: &[&str] =
    &["tls", "tls_insecure_skip_verify", "tls_server_name", "tls_trusted_ca_certs", "tls_trust_pool"];

/// Applies one of [`TLS_TRANSPORT`] to `tls`.
fn transport_tls(tls: &mut UpstreamTls, name: &str, args: &[String]) -> Result<(), String> {
    let one_file = |args: &[String]| match args {
        [path] => tls_ca_path(path),
        _ => Err("give one PEM file (it may hold several certificates)".into()),
    };
    match (name, args) {
        ("tls", []) => {}
        ("tls_insecure_skip_verify", []) => tls.insecure_skip_verify = true,
        ("tls_server_name", [n]) if n.contains('{') => return Err("placeholders are not evaluated".into()),
        ("tls_server_name", [n]) => tls.server_name = Some(tls_server_name(n)?),
        ("tls_trusted_ca_certs", files) => tls.ca = Some(one_file(files)?),
        ("tls_trust_pool", [source, files @ ..]) if source == "file" => tls.ca = Some(one_file(files)?),
        ("tls_trust_pool", _) => return Err("only the `file <pem>` source is supported".into()),
        _ => return Err(format!("unexpected arguments {args:?}")),
    }
    if tls.ca.is_some() && tls.insecure_skip_verify {
        return Err("tls_insecure_skip_verify contradicts the trusted CA; give one".into());
    }
    Ok(())
}

/// A Caddy `lb_policy` as swarmgate runs it.
#[derive(Debug, PartialEq)]
struct CaddyLb {
    policy: LbPolicy,
    key: Option<String>,
    fallback: Option<LbPolicy>,
    cookie: Option<String>,
    /// Where swarmgate differs from Caddy (reported, the route is served).
    notes: Vec<String>,
}

/// The `lb_policy` values Caddy documents.
const CADDY_LB: &str = "random, random_choose N, round_robin, weighted_round_robin, least_conn, first, ip_hash, \
     client_ip_hash, uri_hash, header FIELD, query KEY, cookie [NAME [SECRET]]";

/// Reads `lb_policy NAME [ARGS] [{ fallback POLICY }]`. Unknown names and missing arguments are
/// errors (the caller does not serve the reverse_proxy: a mistyped `cookie` must not quietly
/// lose stickiness); what swarmgate does differently from Caddy is a note.
fn caddy_lb_policy(c: &Block) -> Result<CaddyLb, String> {
    let args: Vec<&str> = c.args.iter().map(String::as_str).collect();
    let mut lb = CaddyLb { policy: LbPolicy::Random, key: None, fallback: None, cookie: None, notes: Vec::new() };
    let extra = |want: usize| match args.get(want..) {
        Some(rest) if !rest.is_empty() => Err(format!("{}: unexpected argument {:?}", args[0], rest[0])),
        _ => Ok(()),
    };
    lb.policy = match args.first().copied() {
        Some("random") => LbPolicy::Random,
        Some("random_choose") => {
            extra(2)?;
            let n = match args.get(1) {
                None => 2,
                Some(a) => a
                    .parse::<u8>()
                    .ok()
                    .filter(|n| *n >= 2)
                    .ok_or_else(|| format!("random_choose {a:?}: needs a number from 2 to 255"))?,
            };
            LbPolicy::RandomChoose(n)
        }
        Some("weighted_round_robin") => {
            lb.notes.push("weights are not supported (the tasks of {{upstreams}} have no fixed order to weigh); plain round_robin is used".into());
            LbPolicy::RoundRobin
        }
        Some(name @ ("header" | "query")) => {
            extra(2)?;
            let key = args.get(1).ok_or_else(|| {
                format!(
                    "{name} needs the name of the {} to hash",
                    if name == "header" { "header field" } else { "query parameter" }
                )
            })?;
            lb.key = Some((*key).to_owned());
            if name == "header" {
                LbPolicy::Header
            } else {
                LbPolicy::Query
            }
        }
        Some("cookie") => {
            extra(3)?;
            // Caddy's default cookie name. The name goes into `Set-Cookie` as is.
            let name = args.get(1).map_or("lb", |n| n);
            if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
                return Err(format!("cookie {name:?}: not a cookie name (letters, digits, _ and -)"));
            }
            lb.cookie = Some(name.to_owned());
            if args.len() == 3 {
                lb.notes.push(
                    "the secret is not used: the cookie holds swarmgate's own token for the endpoint, not Caddy's HMAC"
                        .into(),
                );
            }
            LbPolicy::Cookie
        }
        Some(name) => {
            extra(1)?;
            match name {
                "round_robin" => LbPolicy::RoundRobin,
                "least_conn" => LbPolicy::LeastConn,
                "first" => LbPolicy::First,
                "ip_hash" => LbPolicy::IpHash,
                "client_ip_hash" => LbPolicy::ClientIpHash,
                "uri_hash" => LbPolicy::UriHash,
                other => return Err(format!("{other:?} is not a policy swarmgate knows ({CADDY_LB})")),
            }
        }
        None => return Err(format!("needs a policy ({CADDY_LB})")),
    };
    for f in &c.children {
        if f.name != "fallback" || !lb.policy.uses_fallback() {
            return Err(format!("{}: only cookie, header and query take a block, with `fallback POLICY`", f.name));
        }
        let inner = caddy_lb_policy(f)?;
        if !inner.policy.can_fall_back_to() {
            return Err(format!("fallback {}: a fallback must not need a value the request may lack", inner.policy));
        }
        lb.notes.extend(inner.notes);
        lb.fallback = Some(inner.policy);
    }
    // The checks the file config makes too (a header field that is not a header name, …).
    match lb.policy.problems(lb.key.as_deref(), lb.fallback).into_iter().next() {
        Some((_, e)) => Err(e),
        None => Ok(lb),
    }
}
