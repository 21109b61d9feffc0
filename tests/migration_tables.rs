//! The label tables of the README's migration guides ("Coming from caddy-docker-proxy",
//! "Coming from Traefik") run against the translator, so they cannot drift from the code.
//!
//! Each table row names labels (code spans, `key=value`) and what swarmgate does with them:
//! `served` (a route, no problem), `served, noted` (a route, warnings only), `left out` (an
//! error problem names the label; the rest of the service is served) or `refused` (an error
//! problem and no route: access control that cannot be applied fails closed). A row's labels are
//! added to the table's base labels (a working site or router), replacing a base label of the
//! same key.

use std::collections::BTreeMap;

use swarmgate::labels::{translate, LabelsConfig, ServiceInput};
use swarmgate::model::Severity;

const README: &str = include_str!("../README.md");

/// Code spans of a Markdown table cell (any backtick run length, one padding space trimmed).
fn code_spans(cell: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = cell;
    while let Some(start) = rest.find('`') {
        let run = rest[start..].bytes().take_while(|b| *b == b'`').count();
        let fence = &rest[start..start + run];
        let body_start = start + run;
        let Some(len) = rest[body_start..].find(fence) else { break };
        let body = &rest[body_start..body_start + len];
        let body = if body.starts_with(' ') && body.ends_with(' ') && body.len() > 1 {
            &body[1..body.len() - 1]
        } else {
            body
        };
        out.push(body.to_owned());
        rest = &rest[body_start + len + run..];
    }
    out
}

/// The rows between `<!-- labels-table:NAME -->` and `<!-- /labels-table -->`: (labels, status).
fn table(name: &str) -> Vec<(Vec<(String, String)>, String)> {
    let start = README.find(&format!("<!-- labels-table:{name} -->")).unwrap_or_else(|| panic!("no table {name}"));
    let body = &README[start..];
    let body = &body[..body.find("<!-- /labels-table -->").expect("table end")];
    let rows: Vec<_> = body
        .lines()
        .filter(|l| l.starts_with('|') && !l.starts_with("|---") && !l.starts_with("| labels"))
        .map(|l| {
            let cells: Vec<&str> = l.trim_matches('|').split(" | ").collect();
            let labels = code_spans(cells[0])
                .into_iter()
                .map(|kv| match kv.split_once('=') {
                    Some((k, v)) => (k.to_owned(), v.to_owned()),
                    None => panic!("{name}: `{kv}` is not key=value in {l}"),
                })
                .collect();
            (labels, cells.get(1).map(|s| s.trim().to_owned()).unwrap_or_default())
        })
        .collect();
    assert!(rows.len() >= 10, "{name}: only {} rows", rows.len());
    rows
}

fn check(name: &str, base: &[(&str, &str)]) {
    let mut wrong = Vec::new();
    for (labels, status) in table(name) {
        let mut all: BTreeMap<String, String> = base.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        all.extend(labels.iter().cloned());
        let input =
            ServiceInput { id: "id-app".into(), name: "app".into(), labels: all.into_iter().collect(), ports: vec![] };
        let t = translate(&[input], &LabelsConfig::default());
        let routed = t.routes.iter().any(|r| r.id.starts_with("svc/app/"));
        let errors = t.problems.iter().filter(|p| p.severity == Severity::Error).count();
        let warnings = t.problems.len() - errors;
        let named = labels
            .iter()
            .any(|(k, _)| t.problems.iter().any(|p| p.key.starts_with(k.as_str()) || k.starts_with(&p.key)));
        let ok = match status.as_str() {
            "served" => routed && t.problems.is_empty(),
            "served, noted" => routed && errors == 0 && warnings > 0,
            "left out" => routed && errors > 0 && named,
            "refused" => !routed && errors > 0 && named,
            other => panic!("{name}: unknown status {other:?}"),
        };
        if !ok {
            wrong.push(format!("{labels:?} is documented {status:?}: routed={routed} problems={:#?}", t.problems));
        }
    }
    assert!(wrong.is_empty(), "README table {name} disagrees with the code:\n{}", wrong.join("\n"));
}

#[test]
fn the_caddy_docker_proxy_table_matches_the_translator() {
    check("caddy", &[("caddy", "a.example.com"), ("caddy.reverse_proxy", "{{upstreams 80}}")]);
}

#[test]
fn the_traefik_table_matches_the_translator() {
    check(
        "traefik",
        &[
            ("traefik.enable", "true"),
            ("traefik.http.routers.r.rule", "Host(`a.example.com`)"),
            ("traefik.http.services.s.loadbalancer.server.port", "80"),
        ],
    );
}
