//! `swarmgate check`: compile routes without serving them and print the table an operator
//! would get, with every problem naming its source and key.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use crate::admin::metrics::Metrics;
use crate::model::table::CompiledAction;
use crate::model::{compile_guarded, CompileOptions, Problem, RouteSpec, RouteTable, TlsPolicy};
use crate::proxy::balancer::EndpointRegistry;

/// Compiles specs in isolation (fresh registry and metrics).
pub fn compile_for_check(specs: &[RouteSpec], problems: Vec<Problem>) -> RouteTable {
    let registry = EndpointRegistry::new();
    let metrics = Metrics::new();
    compile_guarded(
        specs,
        problems,
        &CompileOptions {
            registry: &registry,
            states: &crate::proxy::route_state::RouteStates::new(),
            metrics: &metrics,
            static_cert_names: &BTreeSet::new(),
            generation: 0,
        },
    )
}

/// One line per route (host, path, action/upstreams, TLS, policy), then the problems.
pub fn render_table(table: &RouteTable) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{} route(s)", table.routes.len());
    for r in &table.routes {
        let s = &r.spec;
        let path = match &s.path {
            crate::model::PathMatch::Prefix(p) => format!("{p} (prefix)"),
            crate::model::PathMatch::RawPrefix(p) => format!("{p}* (raw prefix)"),
            crate::model::PathMatch::Exact(p) => format!("{p} (exact)"),
        };
        let action = match &r.action {
            CompiledAction::Proxy(g) => {
                let eps: Vec<String> = g.endpoints.iter().map(|e| e.addr.to_string()).collect();
                format!(
                    "proxy {:?} lb={} ({}) -> [{}]",
                    g.scheme,
                    g.policy,
                    s.upstream().map(|u| u.lb_source.to_string()).unwrap_or_default(),
                    if eps.is_empty() { "no endpoints: 503".to_owned() } else { eps.join(", ") }
                )
            }
            CompiledAction::Redirect { location, status } => format!(
                "redirect {} {}{}",
                status.as_u16(),
                location.before,
                if location.after.is_some() { "{uri}…" } else { "" }
            ),
            CompiledAction::Respond { status, .. } => format!("respond {}", status.as_u16()),
        };
        let tls = match &s.tls {
            TlsPolicy::Auto => "tls=auto".to_owned(),
            TlsPolicy::Off => "tls=off".to_owned(),
            TlsPolicy::Static(n) => format!("tls={n}"),
            TlsPolicy::Internal => "tls=internal".to_owned(),
        };
        let mw: Vec<String> = s.middlewares.iter().map(|m| format!("{m:?}")).collect();
        let _ = writeln!(
            out,
            "  {id}  hosts={hosts}  path={path}  {action}  {tls}  redirect_https={redir:?}  priority={prio}{mw}  [{prov}]",
            id = r.id,
            hosts = s.hosts.join(","),
            redir = r.redirect_https,
            prio = s.priority,
            mw = if mw.is_empty() { String::new() } else { format!("  middlewares={}", mw.join(";")) },
            prov = s.provenance,
        );
    }
    if table.problems.is_empty() {
        let _ = writeln!(out, "no problems");
    } else {
        let errors = table.problems.iter().filter(|p| p.is_error()).count();
        let _ = writeln!(
            out,
            "{} problem(s): {errors} error(s), {} warning(s):",
            table.problems.len(),
            table.problems.len() - errors
        );
        for p in &table.problems {
            let level = if p.is_error() { "error" } else { "warning" };
            let _ = writeln!(out, "  {level}: {p}");
        }
    }
    out
}

/// Output of `swarmgate check`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
}

/// The table for scripts: every route as the admin API shows it (secrets redacted) with its
/// resolved endpoints, effective policy and HTTP/HTTPS behaviour, then every problem.
pub fn render_json(table: &RouteTable) -> String {
    let routes: Vec<serde_json::Value> = table
        .routes
        .iter()
        .map(|r| {
            let endpoints: Vec<String> = match &r.action {
                CompiledAction::Proxy(g) => g.endpoints.iter().map(|e| e.addr.to_string()).collect(),
                _ => Vec::new(),
            };
            let policy = match &r.action {
                CompiledAction::Proxy(g) => Some(g.policy.to_string()),
                _ => None,
            };
            serde_json::json!({
                "id": r.id.to_string(),
                "spec": r.spec.redacted(),
                "endpoints": endpoints,
                "lb": policy,
                "redirect_https": format!("{:?}", r.redirect_https),
            })
        })
        .collect();
    let doc = serde_json::json!({ "routes": routes, "problems": table.problems });
    serde_json::to_string_pretty(&doc).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}
