//! The label dialects against the numbered cases of design/LABELS.md, plus the native dialect.
//!
//! Labels only say *which* service, port and network a route goes to; turning that into task IPs
//! (running tasks only, the right network) is discovery's job and is tested there. Where a case
//! is about task state or IP choice, these tests assert what the labels produce.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Duration;

use swarmgate::admin::metrics::Metrics;
use swarmgate::labels::{translate, LabelsConfig, ServiceInput, Translation};
use swarmgate::model::table::{normalize_host, CompiledAction, Lookup, RequestFacts};
use swarmgate::model::{
    compile, Action, CompileOptions, Endpoint, Entrypoints, HealthCheck, LbPolicy, Middleware,
    PathMatch, Predicate, RouteSpec, RouteTable, TaskTarget, TlsPolicy, UpstreamScheme,
    UpstreamTarget, ValueMatch,
};
use swarmgate::proxy::balancer::EndpointRegistry;

// ---------------------------------------------------------------------------------------------
// helpers

fn svc(name: &str, labels: &[(&str, &str)]) -> ServiceInput {
    ServiceInput {
        id: format!("id-{name}"),
        name: name.into(),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ports: vec![],
    }
}

fn run(services: &[ServiceInput]) -> Translation {
    translate(services, &LabelsConfig::default())
}

fn routes_of<'a>(t: &'a Translation, service: &str) -> Vec<&'a RouteSpec> {
    t.routes
        .iter()
        .filter(|r| r.id.starts_with(&format!("svc/{service}/")))
        .collect()
}

fn only_route<'a>(t: &'a Translation, service: &str) -> &'a RouteSpec {
    let rs = routes_of(t, service);
    assert_eq!(
        rs.len(),
        1,
        "expected one route for {service}: {:#?}\nproblems: {:#?}",
        t.routes,
        t.problems
    );
    rs[0]
}

fn targets(r: &RouteSpec) -> Vec<TaskTarget> {
    match &r.upstream().expect("a proxy route").target {
        UpstreamTarget::Tasks(t) => t.clone(),
        other => panic!("labels must produce task targets, got {other:?}"),
    }
}

fn task(service: &str, network: Option<&str>, port: u16) -> TaskTarget {
    TaskTarget {
        service: service.into(),
        network: network.map(Into::into),
        port,
    }
}

fn hosts(r: &RouteSpec) -> Vec<&str> {
    r.hosts.iter().map(String::as_str).collect()
}

fn has_problem(t: &Translation, source: &str, key: &str, needle: &str) -> bool {
    t.problems
        .iter()
        .any(|p| p.source == source && p.key == key && p.message.contains(needle))
}

fn assert_problem(t: &Translation, source: &str, key: &str, needle: &str) {
    assert!(
        has_problem(t, source, key, needle),
        "no problem {source} / {key} / ~{needle:?} in {:#?}",
        t.problems
    );
}

fn no_problems_for(t: &Translation, source: &str) {
    let p: Vec<_> = t.problems.iter().filter(|p| p.source == source).collect();
    assert!(p.is_empty(), "unexpected problems for {source}: {p:#?}");
}

/// Resolves task targets the way discovery would (one fake task per service, 10.0.0.N) and
/// compiles the table, so host/path behaviour can be checked end to end.
fn table(t: &Translation) -> RouteTable {
    let mut ips: BTreeMap<String, u8> = BTreeMap::new();
    let specs: Vec<RouteSpec> = t
        .routes
        .iter()
        .cloned()
        .map(|mut r| {
            if let Some(up) = r.upstream_mut() {
                if let UpstreamTarget::Tasks(ts) = &up.target {
                    let eps = ts
                        .iter()
                        .map(|tt| {
                            let n = ips.len() as u8 + 1;
                            let last = *ips.entry(tt.service.clone()).or_insert(n);
                            Endpoint {
                                addr: SocketAddr::from(([10, 0, 0, last], tt.port)),
                                task: format!("{}.1", tt.service),
                            }
                        })
                        .collect();
                    up.target = UpstreamTarget::Static(eps);
                }
            }
            r
        })
        .collect();
    let reg = EndpointRegistry::new();
    let m = Metrics::new();
    compile(
        &specs,
        t.problems.clone(),
        &CompileOptions {
            registry: &reg,
            metrics: &m,
            static_cert_names: &BTreeSet::new(),
            generation: 1,
        },
    )
}

/// The id of the route a request reaches, `None` for 404 (unknown host or no route).
fn reach(
    table: &RouteTable,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
    https: bool,
) -> Option<String> {
    let mut hm = http::HeaderMap::new();
    for (k, v) in headers {
        hm.append(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            http::HeaderValue::from_str(v).unwrap(),
        );
    }
    let h = normalize_host(host);
    let facts = RequestFacts {
        method: &http::Method::GET,
        host: &h,
        path,
        query: None,
        headers: &hm,
        client_ip: None,
    };
    match table.lookup(&h, &facts, https) {
        Lookup::Route(r) => Some(r.id.to_string()),
        _ => None,
    }
}

fn get(table: &RouteTable, host: &str, path: &str) -> Option<String> {
    reach(table, host, path, &[], false)
}

fn upstream_path(table: &RouteTable, host: &str, path: &str) -> String {
    let h = normalize_host(host);
    let hm = http::HeaderMap::new();
    let facts = RequestFacts {
        method: &http::Method::GET,
        host: &h,
        path,
        query: None,
        headers: &hm,
        client_ip: None,
    };
    match table.lookup(&h, &facts, false) {
        Lookup::Route(r) => r.rewrite_path(path).into_owned(),
        _ => panic!("{host}{path} is not routed"),
    }
}

// ---------------------------------------------------------------------------------------------
// native dialect

#[test]
fn native_default_route_maps_every_key() {
    let hash = "$2y$05$abcdefghijklmnopqrstuu8Gq6.1Cj8mQbH5g6b9F0ElHzsoHxJtW";
    let t = run(&[svc(
        "shop_web",
        &[
            ("swarmgate.host", "Shop.Example.com, www.example.com"),
            ("swarmgate.port", "8080"),
            ("swarmgate.path", "/api"),
            ("swarmgate.strip_prefix", "true"),
            ("swarmgate.scheme", "h2c"),
            ("swarmgate.tls", "off"),
            ("swarmgate.lb", "least_conn"),
            ("swarmgate.health.path", "/healthz"),
            ("swarmgate.health.interval", "5s"),
            ("swarmgate.network", "public"),
            ("swarmgate.headers.request.X-From", "edge"),
            ("swarmgate.headers.response.Server", ""),
            ("swarmgate.auth.basic", &format!("alice:{hash}")),
            ("swarmgate.priority", "7"),
        ],
    )]);
    no_problems_for(&t, "shop_web");
    let r = only_route(&t, "shop_web");
    assert_eq!(r.id, "svc/shop_web/native");
    assert_eq!(hosts(r), ["shop.example.com", "www.example.com"]);
    assert_eq!(r.path, PathMatch::Prefix("/api".into()));
    assert_eq!(targets(r), [task("shop_web", Some("public"), 8080)]);
    let up = r.upstream().unwrap();
    assert_eq!(up.scheme, UpstreamScheme::H2c);
    assert_eq!(up.lb, LbPolicy::LeastConn);
    assert_eq!(
        up.health,
        Some(HealthCheck {
            path: "/healthz".into(),
            interval: Duration::from_secs(5)
        })
    );
    assert_eq!(r.tls, TlsPolicy::Off);
    assert_eq!(
        r.entrypoints,
        Entrypoints {
            http: true,
            https: false
        }
    );
    assert_eq!(r.priority, 7);
    assert!(r
        .middlewares
        .contains(&Middleware::StripPrefix("/api".into())));
    assert!(r.middlewares.iter().any(|m| matches!(m, Middleware::BasicAuth { users, .. } if users.get("alice").map(String::as_str) == Some(hash))));
    assert!(r.middlewares.iter().any(|m| matches!(m, Middleware::RequestHeaders(e) if e.set.get("X-From").map(String::as_str) == Some("edge"))));
    assert!(r.middlewares.iter().any(|m| matches!(m, Middleware::ResponseHeaders(e) if e.set.get("Server").map(String::as_str) == Some(""))));
}

#[test]
fn native_defaults_are_port_80_every_path_acme() {
    let t = run(&[svc("whoami", &[("swarmgate.host", "who.example.com")])]);
    let r = only_route(&t, "whoami");
    assert_eq!(targets(r), [task("whoami", None, 80)]);
    assert_eq!(r.path, PathMatch::any());
    assert_eq!(r.tls, TlsPolicy::Auto);
    assert_eq!(r.entrypoints, Entrypoints::default());
    assert_eq!(r.upstream().unwrap().scheme, UpstreamScheme::Http);
}

#[test]
fn native_named_routes_inherit_from_default() {
    let t = run(&[svc(
        "app",
        &[
            ("swarmgate.host", "app.example.com"),
            ("swarmgate.port", "3000"),
            ("swarmgate.network", "front"),
            ("swarmgate.routes.admin.path", "/admin"),
            ("swarmgate.routes.admin.port", "9000"),
            ("swarmgate.routes.metrics.host", "metrics.example.com"),
        ],
    )]);
    no_problems_for(&t, "app");
    let by_id: BTreeMap<_, _> = t.routes.iter().map(|r| (r.id.as_str(), r)).collect();
    let admin = by_id["svc/app/native/admin"];
    assert_eq!(hosts(admin), ["app.example.com"]);
    assert_eq!(admin.path, PathMatch::Prefix("/admin".into()));
    assert_eq!(targets(admin), [task("app", Some("front"), 9000)]);
    let metrics = by_id["svc/app/native/metrics"];
    assert_eq!(hosts(metrics), ["metrics.example.com"]);
    assert_eq!(targets(metrics), [task("app", Some("front"), 3000)]);
    assert!(by_id.contains_key("svc/app/native"));
}

#[test]
fn native_unknown_key_and_bad_values_are_problems_and_no_half_route() {
    let t = run(&[svc(
        "bad",
        &[
            ("swarmgate.host", "bad.example.com"),
            ("swarmgate.port", "eighty"),
            ("swarmgate.lb", "random"),
            ("swarmgate.hots", "typo.example.com"),
        ],
    )]);
    assert!(routes_of(&t, "bad").is_empty(), "{:#?}", t.routes);
    assert_problem(&t, "bad", "swarmgate.port", "not a port");
    assert_problem(&t, "bad", "swarmgate.lb", "random");
    assert_problem(&t, "bad", "swarmgate.hots", "unknown key");
}

#[test]
fn native_bad_named_route_leaves_default_and_other_routes() {
    let t = run(&[svc(
        "app",
        &[
            ("swarmgate.host", "app.example.com"),
            ("swarmgate.routes.broken.scheme", "gopher"),
            ("swarmgate.routes.ok.path", "/ok"),
        ],
    )]);
    let ids: Vec<_> = t.routes.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["svc/app/native", "svc/app/native/ok"]);
    assert_problem(&t, "app", "swarmgate.routes.broken.scheme", "gopher");
}

#[test]
fn native_refuses_catch_all_host_and_non_bcrypt_auth() {
    let t = run(&[
        svc("open", &[("swarmgate.host", "*")]),
        svc(
            "md5",
            &[
                ("swarmgate.host", "md5.example.com"),
                (
                    "swarmgate.auth.basic",
                    "bob:$apr1$H6uskkkW$IgXLP6ewTrSuBkTrqE8wj/",
                ),
            ],
        ),
    ]);
    assert!(t.routes.is_empty(), "{:#?}", t.routes);
    assert_problem(&t, "open", "swarmgate.host", "catch-all");
    assert_problem(&t, "md5", "swarmgate.auth.basic", "bcrypt");
}

#[test]
fn native_custom_prefix_is_used() {
    let cfg = LabelsConfig {
        native_prefix: "gate".into(),
        ..LabelsConfig::default()
    };
    let t = translate(
        &[svc(
            "a",
            &[
                ("gate.host", "a.example.com"),
                ("swarmgate.host", "ignored.example.com"),
            ],
        )],
        &cfg,
    );
    assert_eq!(hosts(only_route(&t, "a")), ["a.example.com"]);
}
