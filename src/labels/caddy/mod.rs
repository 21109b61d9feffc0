//! The caddy-docker-proxy dialect: `caddy` / `caddy_N` labels spell a Caddyfile.
//!
//! Pipeline (as CDP, reference/caddy-docker-proxy.md §1): each service's labels become a block
//! tree ([`tree`]); sites with the same addresses merge across services (their
//! `reverse_proxy` upstreams concatenate); snippets are imported; then each site is read the way
//! Caddy reads it (directive order, matchers) and turned into `RouteSpec`s.
//!
//! Isolation: every service's sites are first read on their own. A site whose settings are
//! invalid (e.g. `tls invalid_value`) is dropped, and a directive that cannot be served is
//! removed, *before* merging, so one service's mistake never changes what another service
//! contributes to a shared site. Unsupported directives are skipped with a problem that names
//! them; the rest of the site is still served. Directives whose absence would weaken security
//! (a broken `basic_auth`) drop the routes they guard instead.

mod site;
mod tree;

use std::collections::{BTreeMap, BTreeSet};

use site::Interp;
use tree::{Block, UpstreamRef};

use super::{LabelsConfig, ServiceInput, Translation};
use crate::model::{Problem, Provenance};

/// The Caddyfile the caddy labels of `services` spell, after merging (upstreams are shown as
/// `tasks.<service>[@network][:port]`). What `swarmgate check` prints for this dialect.
pub fn render_caddyfile(services: &[ServiceInput], cfg: &LabelsConfig) -> String {
    let mut ordered: Vec<&ServiceInput> = services.iter().collect();
    ordered.sort_by(|a, b| a.name.cmp(&b.name));
    let parsed = parse_all(&ordered, &cfg.caddy_prefix);
    let names: Vec<&str> = ordered.iter().map(|s| s.name.as_str()).collect();
    let mut out = String::new();
    let mut global: Vec<Block> = Vec::new();
    let mut others: Vec<Block> = Vec::new();
    for b in parsed.blocks {
        if b.args.is_empty() {
            tree::merge_children(&mut global, b.children);
        } else if let Some(a) = others.iter_mut().find(|a| same_addresses(a, &b)) {
            tree::merge_children(&mut a.children, b.children);
        } else {
            others.push(b);
        }
    }
    if !global.is_empty() {
        out.push_str("{\n");
        tree::write_blocks(&mut out, &global, 1, false, &parsed.ups, &names);
        out.push_str("}\n");
    }
    others.sort_by_key(|b| !is_snippet(b));
    tree::write_blocks(&mut out, &others, 0, true, &parsed.ups, &names);
    out
}

struct Parsed {
    blocks: Vec<Block>,
    ups: Vec<UpstreamRef>,
    problems: Vec<Problem>,
}

fn parse_all(services: &[&ServiceInput], prefix: &str) -> Parsed {
    let mut p = Parsed { blocks: Vec::new(), ups: Vec::new(), problems: Vec::new() };
    let mut next_id = 0;
    for (i, svc) in services.iter().enumerate() {
        match tree::parse_service(svc, i, prefix, &mut p.ups, &mut next_id) {
            Ok(blocks) => p.blocks.extend(blocks),
            Err((key, msg)) => p.problems.push(Problem::new(&svc.name, key, msg)),
        }
    }
    p
}

fn is_snippet(b: &Block) -> bool {
    b.args.len() == 1 && b.args[0].starts_with('(') && b.args[0].ends_with(')') && b.args[0].len() > 2
}

/// Site addresses as compared for merging: split at commas, lower-case, order-free.
/// (CDP compares tokens exactly, so `a, b` and `a b` would not merge and Caddy would then
/// refuse a duplicate address; treating them as the same list is strictly more useful.)
fn address_key(b: &Block) -> Vec<String> {
    let mut v: Vec<String> = b
        .args
        .iter()
        .flat_map(|a| a.split(','))
        .map(|a| a.trim().to_ascii_lowercase())
        .filter(|a| !a.is_empty())
        .collect();
    v.sort();
    v.dedup();
    v
}

fn same_addresses(a: &Block, b: &Block) -> bool {
    !a.args.is_empty() && !b.args.is_empty() && address_key(a) == address_key(b)
}

/// Translates every service's caddy labels.
pub(super) fn translate(services: &[&ServiceInput], cfg: &LabelsConfig, out: &mut Translation) {
    let parsed = parse_all(services, &cfg.caddy_prefix);
    out.problems.extend(parsed.problems);
    let mut globals = Vec::new();
    let mut snippets: BTreeMap<String, Vec<Block>> = BTreeMap::new();
    let mut sites: Vec<Block> = Vec::new();
    for b in parsed.blocks {
        if b.args.is_empty() {
            globals.push(b);
        } else if is_snippet(&b) {
            let name = b.args[0][1..b.args[0].len() - 1].to_owned();
            tree::merge_children(snippets.entry(name).or_default(), b.children);
        } else {
            sites.push(b);
        }
    }
    global_options(services, &globals, out);

    let mut ids: BTreeMap<String, usize> = BTreeMap::new();
    let mut interp =
        Interp { services, ups: &parsed.ups, snippets: &snippets, problems: Vec::new(), failed: BTreeSet::new() };

    // Pass 1: every service's site on its own; drop what is invalid before it can be merged.
    // (Only sites that share their address list with another block need it: a site read alone
    // here is read exactly the same way in pass 2.)
    let keys: Vec<Vec<String>> = sites.iter().map(address_key).collect();
    let mut shared: BTreeMap<&[String], usize> = BTreeMap::new();
    for k in &keys {
        *shared.entry(k.as_slice()).or_default() += 1;
    }
    let shared: BTreeSet<Vec<String>> = shared.into_iter().filter(|(_, n)| *n > 1).map(|(k, _)| k.to_vec()).collect();
    let mut valid: Vec<Block> = Vec::new();
    let mut by_address: BTreeMap<Vec<String>, usize> = BTreeMap::new();
    for (mut site, key) in sites.into_iter().zip(keys) {
        if shared.contains(&key) {
            interp.failed.clear();
            let fatal = interp.site(&site, false).is_err();
            if fatal {
                continue;
            }
            let failed = std::mem::take(&mut interp.failed);
            tree::remove_ids(&mut site.children, &failed);
        }
        match by_address.entry(key) {
            std::collections::btree_map::Entry::Occupied(e) => {
                tree::merge_children(&mut valid[*e.get()].children, site.children)
            }
            std::collections::btree_map::Entry::Vacant(e) => {
                e.insert(valid.len());
                valid.push(site);
            }
        }
    }
    // Pass 2: the merged sites.
    let mut host_site: BTreeMap<String, usize> = BTreeMap::new();
    for (si, site) in valid.iter().enumerate() {
        interp.failed.clear();
        let Ok(routes) = interp.site(site, true) else {
            continue;
        };
        let hosts: BTreeSet<&String> = routes.iter().flat_map(|r| r.hosts.iter()).collect();
        for h in hosts {
            if let Some(prev) = host_site.insert(h.clone(), si) {
                if prev != si {
                    // Caddy refuses a duplicate site address; we serve both and say so.
                    let other = services[valid[prev].origin.service].name.clone();
                    interp.problem(
                        &site.origin,
                        format!("host {h} is also in another site (service {other}) with a different address list, so the two sites are not merged (Caddy refuses this); both are served, and where their paths coincide only one answers (see the route problem)"),
                    );
                }
            }
        }
        for mut r in routes {
            let svc_name = match &r.provenance {
                Provenance::Service { service, .. } => service.clone(),
                _ => services[site.origin.service].name.clone(),
            };
            let n = ids.entry(svc_name.clone()).or_default();
            r.id = format!("svc/{svc_name}/caddy/{n}");
            *n += 1;
            out.routes.push(r);
        }
    }
    out.problems.append(&mut interp.problems);
}

/// Global options block (`caddy.email`, `caddy.acme_ca` on a service without a site label).
fn global_options(services: &[&ServiceInput], globals: &[Block], out: &mut Translation) {
    let mut email_from: Option<usize> = None;
    let mut ca_from: Option<usize> = None;
    for g in globals {
        for opt in &g.children {
            let svc = &services[opt.origin.service].name;
            let problem = |msg: String| Problem::new(svc, &opt.origin.key, msg);
            match opt.name.as_str() {
                "email" | "acme_ca" => {
                    // The ACME account and CA serve every host of the cluster: the operator's
                    // config chooses them, not whoever deploys a service. Said, not silent.
                    let key = if opt.name == "email" { "email" } else { "directory" };
                    out.problems.push(Problem::warning(
                        svc,
                        &opt.origin.key,
                        format!(
                            "global option {} is not applied: set [acme] {key} in swarmgate's config (the ACME account and CA serve every host, so a service's labels do not choose them)",
                            opt.name
                        ),
                    ));
                    let (slot, from) = if opt.name == "email" {
                        (&mut out.global.acme_email, &mut email_from)
                    } else {
                        (&mut out.global.acme_ca, &mut ca_from)
                    };
                    let [value] = opt.args.as_slice() else {
                        out.problems.push(problem(format!("{} takes exactly one value", opt.name)));
                        continue;
                    };
                    match (slot.as_ref(), *from) {
                        (Some(cur), Some(f)) if cur != value => out.problems.push(problem(format!(
                            "{} {value} conflicts with {cur} from service {}; keeping {cur}",
                            opt.name, services[f].name
                        ))),
                        (Some(_), _) => {}
                        (None, _) => {
                            *slot = Some(value.clone());
                            *from = Some(opt.origin.service);
                        }
                    }
                }
                name if is_directive(name) => out.problems.push(problem(format!(
                    "{name} is a site directive but this service has no site address label; add e.g. `{}=example.com`",
                    opt.origin.key.split('.').next().unwrap_or("caddy")
                ))),
                name => out.problems.push(Problem::warning(
                    svc,
                    &opt.origin.key,
                    format!("global option {name} is not supported; ignored (supported: email, acme_ca)"),
                )),
            }
        }
    }
}

fn is_directive(name: &str) -> bool {
    matches!(
        name,
        "reverse_proxy"
            | "handle"
            | "handle_path"
            | "route"
            | "respond"
            | "redir"
            | "rewrite"
            | "uri"
            | "header"
            | "request_header"
            | "basic_auth"
            | "basicauth"
            | "encode"
            | "tls"
            | "import"
    )
}
