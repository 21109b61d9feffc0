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
use swarmgate::model::table::{normalize_host, Lookup, RequestFacts};
use swarmgate::model::{
    compile, Action, CompileOptions, Endpoint, Entrypoints, HealthCheck, LbPolicy, Middleware, PathMatch, Predicate,
    RouteSpec, RouteTable, TaskTarget, TlsPolicy, UpstreamScheme, UpstreamTarget, ValueMatch,
};
use swarmgate::proxy::balancer::EndpointRegistry;

// ---------------------------------------------------------------------------------------------
// helpers

fn svc(name: &str, labels: &[(&str, &str)]) -> ServiceInput {
    ServiceInput {
        id: format!("id-{name}"),
        name: name.into(),
        labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        ports: vec![],
    }
}

fn run(services: &[ServiceInput]) -> Translation {
    translate(services, &LabelsConfig::default())
}

fn routes_of<'a>(t: &'a Translation, service: &str) -> Vec<&'a RouteSpec> {
    t.routes.iter().filter(|r| r.id.starts_with(&format!("svc/{service}/"))).collect()
}

fn only_route<'a>(t: &'a Translation, service: &str) -> &'a RouteSpec {
    let rs = routes_of(t, service);
    assert_eq!(rs.len(), 1, "expected one route for {service}: {:#?}\nproblems: {:#?}", t.routes, t.problems);
    rs[0]
}

fn targets(r: &RouteSpec) -> Vec<TaskTarget> {
    match &r.upstream().expect("a proxy route").target {
        UpstreamTarget::Tasks(t) => t.clone(),
        other => panic!("labels must produce task targets, got {other:?}"),
    }
}

fn task(service: &str, network: Option<&str>, port: u16) -> TaskTarget {
    TaskTarget { service: service.into(), network: network.map(Into::into), port }
}

fn hosts(r: &RouteSpec) -> Vec<&str> {
    r.hosts.iter().map(String::as_str).collect()
}

fn has_problem(t: &Translation, source: &str, key: &str, needle: &str) -> bool {
    t.problems.iter().any(|p| p.source == source && p.key == key && p.message.contains(needle))
}

fn assert_problem(t: &Translation, source: &str, key: &str, needle: &str) {
    assert!(has_problem(t, source, key, needle), "no problem {source} / {key} / ~{needle:?} in {:#?}", t.problems);
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
                                node: String::new(),
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
            states: &swarmgate::proxy::route_state::RouteStates::new(),
            metrics: &m,
            static_cert_names: &BTreeSet::new(),
            generation: 1,
        },
    )
}

/// The id of the route a request reaches, `None` for 404 (unknown host or no route).
fn reach(table: &RouteTable, host: &str, path: &str, headers: &[(&str, &str)], https: bool) -> Option<String> {
    let mut hm = http::HeaderMap::new();
    for (k, v) in headers {
        hm.append(http::HeaderName::from_bytes(k.as_bytes()).unwrap(), http::HeaderValue::from_str(v).unwrap());
    }
    let h = normalize_host(host);
    let facts = RequestFacts { method: &http::Method::GET, host: &h, path, query: None, headers: &hm, client_ip: None };
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
    let facts = RequestFacts { method: &http::Method::GET, host: &h, path, query: None, headers: &hm, client_ip: None };
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
    assert_eq!(up.health, Some(HealthCheck { path: "/healthz".into(), interval: Duration::from_secs(5) }));
    assert_eq!(r.tls, TlsPolicy::Off);
    assert_eq!(r.entrypoints, Entrypoints { http: true, https: false });
    assert_eq!(r.priority, 7);
    assert!(r.middlewares.contains(&Middleware::StripPrefix("/api".into())));
    assert!(r.middlewares.iter().any(
        |m| matches!(m, Middleware::BasicAuth { users, .. } if users.get("alice").map(String::as_str) == Some(hash))
    ));
    assert!(r.middlewares.iter().any(
        |m| matches!(m, Middleware::RequestHeaders(e) if e.set.get("X-From").map(String::as_str) == Some("edge"))
    ));
    assert!(r
        .middlewares
        .iter()
        .any(|m| matches!(m, Middleware::ResponseHeaders(e) if e.set.get("Server").map(String::as_str) == Some(""))));
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
            ("swarmgate.lb", "bogus"),
            ("swarmgate.hots", "typo.example.com"),
        ],
    )]);
    assert!(routes_of(&t, "bad").is_empty(), "{:#?}", t.routes);
    assert_problem(&t, "bad", "swarmgate.port", "not a port");
    assert_problem(&t, "bad", "swarmgate.lb", "bogus");
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
fn native_refuses_catch_all_host_and_plain_text_passwords() {
    let t = run(&[
        svc("open", &[("swarmgate.host", "*")]),
        svc("plain", &[("swarmgate.host", "plain.example.com"), ("swarmgate.auth.basic", "bob:hunter2")]),
    ]);
    assert!(t.routes.is_empty(), "{:#?}", t.routes);
    assert_problem(&t, "open", "swarmgate.host", "catch-all");
    assert_problem(&t, "plain", "swarmgate.auth.basic", "not a supported hash");
}

/// `htpasswd -m`/`-s` hashes (Traefik's own documentation uses `$apr1$`) are taken by the
/// native and Traefik dialects; Caddy verifies bcrypt only, so its labels still refuse them.
#[test]
fn apache_md5_and_sha_hashes_are_taken_by_native_and_traefik_refused_by_caddy() {
    const DOCS: &str = "$apr1$H6uskkkW$IgXLP6ewTrSuBkTrqE8wj/"; // "test", from Traefik's docs
    const SHA: &str = "{SHA}qUqP5cyxm6YcTAhz05Hph5gvu9M="; // "test"
    let t = run(&[
        svc("n", &[("swarmgate.host", "n.example.com"), ("swarmgate.auth.basic", &format!("a:{DOCS},b:{SHA}"))]),
        svc(
            "t",
            &[
                ("traefik.enable", "true"),
                ("traefik.http.routers.t.rule", "Host(`t.example.com`)"),
                ("traefik.http.routers.t.middlewares", "auth"),
                ("traefik.http.middlewares.auth.basicauth.users", &format!("test:{DOCS}")),
                ("traefik.http.services.t.loadbalancer.server.port", "80"),
            ],
        ),
        svc(
            "c",
            &[("caddy", "c.example.com"), ("caddy.reverse_proxy", "{{upstreams 80}}"), ("caddy.basic_auth.test", DOCS)],
        ),
    ]);
    for (service, users) in [("n", vec![("a", DOCS), ("b", SHA)]), ("t", vec![("test", DOCS)])] {
        let r = only_route(&t, service);
        let found = r.middlewares.iter().find_map(|m| match m {
            Middleware::BasicAuth { users, .. } => Some(users.clone()),
            _ => None,
        });
        let found = found.unwrap_or_else(|| panic!("{service}: no basic auth in {:#?}", r.middlewares));
        for (u, h) in users {
            assert_eq!(found.get(u).map(String::as_str), Some(h), "{service}");
            assert!(swarmgate::password::verify("test", h), "{service}: {h} must verify \"test\"");
        }
    }
    assert!(t.routes.iter().all(|r| !r.hosts.iter().any(|h| h == "c.example.com")), "{:#?}", t.routes);
    assert_problem(&t, "c", "caddy.basic_auth", "bcrypt only");
}

#[test]
fn native_custom_prefix_is_used() {
    let cfg = LabelsConfig { native_prefix: "gate".into(), ..LabelsConfig::default() };
    let t = translate(&[svc("a", &[("gate.host", "a.example.com"), ("swarmgate.host", "ignored.example.com")])], &cfg);
    assert_eq!(hosts(only_route(&t, "a")), ["a.example.com"]);
}

// ---------------------------------------------------------------------------------------------
// caddy-docker-proxy dialect (LABELS.md §2)

#[test]
fn caddy_case_01_site_reverse_proxy_all_paths_https_with_redirect() {
    let t = run(&[svc("web", &[("caddy", "service.example.com"), ("caddy.reverse_proxy", "{{upstreams}}")])]);
    no_problems_for(&t, "web");
    let r = only_route(&t, "web");
    assert_eq!(hosts(r), ["service.example.com"]);
    assert_eq!(r.path, PathMatch::any());
    assert_eq!(r.predicate, None);
    assert_eq!(targets(r), [task("web", None, 80)]);
    assert_eq!(r.tls, TlsPolicy::Auto);
    assert_eq!(r.redirect_https, None, "default: redirect once the certificate is live");
    assert_eq!(r.entrypoints, Entrypoints::default());
    let tb = table(&t);
    assert_eq!(get(&tb, "service.example.com", "/any/path").as_deref(), Some(r.id.as_str()));
    assert!(tb.acme_names(&BTreeSet::new()).contains("service.example.com"));
}

#[test]
fn caddy_case_02_upstreams_port_targets_every_task_on_that_port() {
    // Which tasks (10.0.0.1, 10.0.0.2 on the ingress network) is discovery's part; the labels
    // must ask for all tasks of the service on port 5000.
    let t = run(&[svc("api", &[("caddy", "api.example.com"), ("caddy.reverse_proxy", "{{upstreams 5000}}")])]);
    let r = only_route(&t, "api");
    assert_eq!(targets(r), [task("api", None, 5000)]);
    assert_eq!(r.upstream().unwrap().lb, LbPolicy::Random, "Caddy's default");
}

#[test]
fn caddy_case_03_site_is_kept_whatever_the_task_states() {
    // Task filtering (desired shutdown / starting excluded) and "503 not 404" are discovery and
    // proxy behaviour; labels must still produce the site so the host is known (→ 503, not 404).
    let t = run(&[svc("slow", &[("caddy", "slow.example.com"), ("caddy.reverse_proxy", "{{upstreams}}")])]);
    let mut specs = t.clone();
    for r in &mut specs.routes {
        r.upstream_mut().unwrap().target = UpstreamTarget::Tasks(vec![]);
    }
    assert_eq!(targets(only_route(&t, "slow")), [task("slow", None, 80)]);
    let tb = table(&specs);
    assert!(tb.knows_host("slow.example.com"), "the host stays known with zero tasks");
}

#[test]
fn caddy_case_04_ingress_network_label_selects_the_network() {
    let t = run(&[svc(
        "app",
        &[
            ("caddy", "app.example.com"),
            ("caddy.reverse_proxy", "{{upstreams 8080}}"),
            ("caddy_ingress_network", "another-network"),
        ],
    )]);
    no_problems_for(&t, "app");
    assert_eq!(targets(only_route(&t, "app")), [task("app", Some("another-network"), 8080)]);
}

#[test]
fn caddy_case_05_several_addresses_space_or_comma() {
    for value in ["a.example.com b.example.com", "a.example.com, b.example.com"] {
        let t = run(&[svc("ab", &[("caddy", value), ("caddy.reverse_proxy", "{{upstreams}}")])]);
        no_problems_for(&t, "ab");
        let r = only_route(&t, "ab");
        assert_eq!(hosts(r), ["a.example.com", "b.example.com"], "{value}");
        let tb = table(&t);
        assert_eq!(get(&tb, "a.example.com", "/"), get(&tb, "b.example.com", "/"));
        let names = tb.acme_names(&BTreeSet::new());
        assert!(names.contains("a.example.com") && names.contains("b.example.com"), "{names:?}");
    }
}

#[test]
fn caddy_case_06_two_sites_two_ports() {
    let t = run(&[svc(
        "multi",
        &[
            ("caddy_0", "one.example.com"),
            ("caddy_0.reverse_proxy", "{{upstreams 5000}}"),
            ("caddy_1", "two.example.com"),
            ("caddy_1.reverse_proxy", "{{upstreams 5001}}"),
        ],
    )]);
    no_problems_for(&t, "multi");
    let rs = routes_of(&t, "multi");
    assert_eq!(rs.len(), 2);
    let one = rs.iter().find(|r| hosts(r) == ["one.example.com"]).unwrap();
    let two = rs.iter().find(|r| hosts(r) == ["two.example.com"]).unwrap();
    assert_eq!(targets(one), [task("multi", None, 5000)]);
    assert_eq!(targets(two), [task("multi", None, 5001)]);
}

#[test]
fn caddy_case_07_route_strip_prefix_health() {
    let t = run(&[svc(
        "p",
        &[
            ("caddy", "p.example.com"),
            ("caddy.route", "/path/*"),
            ("caddy.route.0_uri", "strip_prefix /path"),
            ("caddy.route.1_reverse_proxy", "{{upstreams}}"),
            ("caddy.route.1_reverse_proxy.health_uri", "/health"),
        ],
    )]);
    no_problems_for(&t, "p");
    let r = only_route(&t, "p");
    assert_eq!(r.path, PathMatch::RawPrefix("/path/".into()));
    assert_eq!(r.middlewares, [Middleware::StripPrefix("/path".into())]);
    let health = r.upstream().unwrap().health.clone().expect("active health check");
    assert_eq!(health.path, "/health");
    let tb = table(&t);
    assert_eq!(upstream_path(&tb, "p.example.com", "/path/x"), "/x");
    assert_eq!(get(&tb, "p.example.com", "/other"), None);
}

#[test]
fn caddy_case_08_h2c_upstream() {
    let t = run(&[svc("grpc", &[("caddy", "grpc.example.com"), ("caddy.reverse_proxy", "{{upstreams h2c 5000}}")])]);
    no_problems_for(&t, "grpc");
    let r = only_route(&t, "grpc");
    assert_eq!(r.upstream().unwrap().scheme, UpstreamScheme::H2c);
    assert_eq!(targets(r), [task("grpc", None, 5000)]);
}

#[test]
fn caddy_case_09_handle_path_strips_and_limits() {
    let t = run(&[svc(
        "src",
        &[
            ("caddy", "src.example.com"),
            ("caddy.handle_path", "/source/*"),
            ("caddy.handle_path.0_reverse_proxy", "{{upstreams}}"),
        ],
    )]);
    no_problems_for(&t, "src");
    let r = only_route(&t, "src");
    assert_eq!(r.path, PathMatch::RawPrefix("/source/".into()));
    assert_eq!(r.middlewares, [Middleware::StripPrefix("/source".into())]);
    let tb = table(&t);
    assert_eq!(upstream_path(&tb, "src.example.com", "/source/a"), "/a");
    assert_eq!(get(&tb, "src.example.com", "/a"), None, "other paths are not proxied");
}

#[test]
fn caddy_case_10_named_matcher_websocket_and_api_prefix() {
    let t = run(&[svc(
        "ws",
        &[
            ("caddy", "ws.example.com"),
            ("caddy.@ws.0_header", "Connection *Upgrade*"),
            ("caddy.@ws.1_header", "Upgrade websocket"),
            ("caddy.0_reverse_proxy", "@ws {{upstreams}}"),
            ("caddy.1_reverse_proxy", "/api* {{upstreams}}"),
        ],
    )]);
    no_problems_for(&t, "ws");
    let rs = routes_of(&t, "ws");
    assert_eq!(rs.len(), 2);
    let ws = rs.iter().find(|r| r.predicate.is_some()).unwrap();
    assert_eq!(
        ws.predicate,
        Some(Predicate::And(vec![
            Predicate::Header { name: "Connection".into(), value: ValueMatch::Contains("Upgrade".into()) },
            Predicate::Header { name: "Upgrade".into(), value: ValueMatch::Exact("websocket".into()) },
        ]))
    );
    assert_eq!(ws.path, PathMatch::any());
    let api = rs.iter().find(|r| r.predicate.is_none()).unwrap();
    assert_eq!(api.path, PathMatch::RawPrefix("/api".into()));
    let tb = table(&t);
    let upgrade = [("connection", "keep-alive, Upgrade"), ("upgrade", "websocket")];
    assert_eq!(reach(&tb, "ws.example.com", "/socket", &upgrade, false).as_deref(), Some(ws.id.as_str()));
    assert_eq!(get(&tb, "ws.example.com", "/api/users").as_deref(), Some(api.id.as_str()));
    assert_eq!(get(&tb, "ws.example.com", "/apix").as_deref(), Some(api.id.as_str()), "Caddy /api* is a plain prefix");
    assert_eq!(get(&tb, "ws.example.com", "/"), None, "other requests are not proxied");
}

#[test]
fn caddy_case_11_snippet_import_across_services() {
    // Same service …
    let t = run(&[svc(
        "s",
        &[
            ("caddy_0", "(snippet)"),
            ("caddy_0.tls", "internal"),
            ("caddy_1", "site-a.example.com"),
            ("caddy_1.import", "snippet"),
            ("caddy_1.reverse_proxy", "{{upstreams}}"),
        ],
    )]);
    no_problems_for(&t, "s");
    assert_eq!(only_route(&t, "s").tls, TlsPolicy::Internal);
    // … and a snippet defined by another service.
    let t = run(&[
        svc("common", &[("caddy", "(snippet)"), ("caddy.tls", "internal")]),
        svc(
            "site",
            &[("caddy", "site-a.example.com"), ("caddy.import", "snippet"), ("caddy.reverse_proxy", "{{upstreams}}")],
        ),
    ]);
    assert!(t.problems.is_empty(), "{:#?}", t.problems);
    let r = only_route(&t, "site");
    assert_eq!(r.tls, TlsPolicy::Internal);
    assert_eq!(targets(r), [task("site", None, 80)]);
}

#[test]
fn caddy_case_12_two_independent_redirects() {
    let t = run(&[svc(
        "r",
        &[
            ("caddy", "r.example.com"),
            ("caddy.redir_0", "/favicon.ico /alternative/icon.ico 302"),
            ("caddy.redir_1", "/photo.png /updated-photo.png 302"),
        ],
    )]);
    no_problems_for(&t, "r");
    let rs = routes_of(&t, "r");
    assert_eq!(rs.len(), 2);
    let mut got: Vec<(PathMatch, Action)> = rs.iter().map(|r| (r.path.clone(), r.action.clone())).collect();
    got.sort_by(|a, b| a.0.literal().cmp(b.0.literal()));
    assert_eq!(
        got,
        [
            (
                PathMatch::Exact("/favicon.ico".into()),
                Action::Redirect { location: "/alternative/icon.ico".into(), status: 302 }
            ),
            (
                PathMatch::Exact("/photo.png".into()),
                Action::Redirect { location: "/updated-photo.png".into(), status: 302 }
            ),
        ]
    );
    let tb = table(&t);
    assert!(get(&tb, "r.example.com", "/favicon.ico").is_some());
    assert_eq!(get(&tb, "r.example.com", "/favicon.ico.bak"), None);
}

#[test]
fn caddy_case_13_invalid_tls_is_reported_and_never_half_applied() {
    let t = run(&[
        svc(
            "bad",
            &[("caddy", "bad.example.com"), ("caddy.tls", "invalid_value"), ("caddy.reverse_proxy", "{{upstreams}}")],
        ),
        svc("good", &[("caddy", "good.example.com"), ("caddy.reverse_proxy", "{{upstreams}}")]),
    ]);
    assert!(routes_of(&t, "bad").is_empty(), "{:#?}", t.routes);
    assert_problem(&t, "bad", "caddy.tls", "invalid_value");
    let good = only_route(&t, "good");
    assert_eq!(good.tls, TlsPolicy::Auto);
    assert!(good.entrypoints.https);
    no_problems_for(&t, "good");
}

#[test]
fn caddy_case_14_quoted_values_and_escaped_dots() {
    let services = [svc(
        "q",
        &[
            ("caddy", "q.example.com"),
            ("caddy.0_with_spaces", "\"a b c d\""),
            ("caddy.1_reverse_proxy", "{{upstreams}}"),
            ("caddy_1.x.domains.mydomain\\.fr", ""),
        ],
    )];
    let text = swarmgate::labels::render_caddyfile(&services, &LabelsConfig::default());
    assert!(text.contains("with_spaces \"a b c d\""), "one argument with spaces:\n{text}");
    assert!(text.contains("domains {\n\t\t\tmydomain.fr\n"), "literal dot kept:\n{text}");
    let t = run(&services);
    // with_spaces is no directive we serve: skipped by name, the rest of the site still works.
    assert_problem(&t, "q", "caddy.0_with_spaces", "with_spaces");
    assert_eq!(targets(only_route(&t, "q")), [task("q", None, 80)]);
}

#[test]
fn caddy_sites_merge_across_services_and_concatenate_upstreams() {
    let t = run(&[
        svc("blue", &[("caddy", "shop.example.com"), ("caddy.reverse_proxy", "{{upstreams 8080}}")]),
        svc(
            "green",
            &[
                ("caddy", "shop.example.com"),
                ("caddy.reverse_proxy", "{{upstreams 9090}}"),
                ("caddy_ingress_network", "green-net"),
            ],
        ),
    ]);
    assert!(t.problems.is_empty(), "{:#?}", t.problems);
    assert_eq!(t.routes.len(), 1, "{:#?}", t.routes);
    assert_eq!(targets(&t.routes[0]), [task("blue", None, 8080), task("green", Some("green-net"), 9090)]);
}

#[test]
fn caddy_invalid_contribution_to_a_shared_site_does_not_touch_the_other_service() {
    let alone = run(&[svc("good", &[("caddy", "shared.example.com"), ("caddy.reverse_proxy", "{{upstreams}}")])]);
    let t = run(&[
        svc(
            "bad",
            &[("caddy", "shared.example.com"), ("caddy.tls", "nonsense"), ("caddy.reverse_proxy", "{{upstreams}}")],
        ),
        svc("good", &[("caddy", "shared.example.com"), ("caddy.reverse_proxy", "{{upstreams}}")]),
    ]);
    assert_problem(&t, "bad", "caddy.tls", "nonsense");
    assert_eq!(t.routes, alone.routes);
    // A bad directive of one service is removed before merging, too.
    let t = run(&[
        svc(
            "bad",
            &[
                ("caddy", "shared.example.com"),
                ("caddy.reverse_proxy", "{{upstreams}}"),
                ("caddy.reverse_proxy.lb_policy", "bogus"),
            ],
        ),
        svc("good", &[("caddy", "shared.example.com"), ("caddy.reverse_proxy", "{{upstreams}}")]),
    ]);
    assert_problem(&t, "bad", "caddy.reverse_proxy.lb_policy", "bogus");
    assert_eq!(t.routes, alone.routes);
}

#[test]
fn caddy_http_site_is_plain_http_only_and_tls_off() {
    let t =
        run(&[svc("plain", &[("caddy", "http://plain.example.com"), ("caddy.reverse_proxy", "{{upstreams 3000}}")])]);
    no_problems_for(&t, "plain");
    let r = only_route(&t, "plain");
    assert_eq!(r.tls, TlsPolicy::Off);
    assert_eq!(r.entrypoints, Entrypoints { http: true, https: false });
    assert!(table(&t).acme_names(&BTreeSet::new()).is_empty());
}

#[test]
fn caddy_global_options_and_templates() {
    let t = run(&[
        svc("proxy", &[("caddy.email", "ops@example.com"), ("caddy.acme_ca", "https://acme.test/dir")]),
        svc(
            "tpl",
            &[
                ("caddy", "{{.Spec.Name}}.example.com {{index .Spec.Labels \"alias\"}}"),
                ("alias", "alias.example.com"),
                ("caddy.reverse_proxy", "{{upstreams https 8443}}"),
            ],
        ),
    ]);
    // Read, but the operator's [acme] decides: each says so (a warning, not silence).
    assert_problem(&t, "proxy", "caddy.email", "[acme] email");
    assert_problem(&t, "proxy", "caddy.acme_ca", "[acme] directory");
    assert!(t.problems.iter().all(|p| !p.is_error() && p.source == "proxy"), "{:#?}", t.problems);
    assert_eq!(t.global.acme_email.as_deref(), Some("ops@example.com"));
    assert_eq!(t.global.acme_ca.as_deref(), Some("https://acme.test/dir"));
    let r = only_route(&t, "tpl");
    assert_eq!(hosts(r), ["tpl.example.com", "alias.example.com"]);
    assert_eq!(r.upstream().unwrap().scheme, UpstreamScheme::Https);
    assert_eq!(targets(r), [task("tpl", None, 8443)]);
}

#[test]
fn caddy_unknown_template_fails_only_that_service() {
    let t = run(&[
        svc("broken", &[("caddy", "broken.example.com"), ("caddy.reverse_proxy", "{{upstreamz 80}}")]),
        svc("fine", &[("caddy", "fine.example.com"), ("caddy.reverse_proxy", "{{upstreams}}")]),
    ]);
    assert!(routes_of(&t, "broken").is_empty());
    assert_problem(&t, "broken", "caddy.reverse_proxy", "upstreamz");
    only_route(&t, "fine");
}

#[test]
fn caddy_unsupported_directive_is_named_and_the_rest_served_and_encode_compresses() {
    let t = run(&[svc(
        "x",
        &[
            ("caddy", "x.example.com"),
            ("caddy.file_server", ""),
            ("caddy.encode", "gzip"),
            ("caddy.header.X-Frame-Options", "DENY"),
            ("caddy.reverse_proxy", "{{upstreams}}"),
        ],
    )]);
    assert_problem(&t, "x", "caddy.file_server", "file_server is not supported");
    assert!(!t.problems.iter().any(|p| p.key.starts_with("caddy.encode")), "{:#?}", t.problems);
    let r = only_route(&t, "x");
    assert!(r.middlewares.iter().any(|m| matches!(m, Middleware::Compress { min_bytes: 512, .. })));
    assert!(r.middlewares.iter().any(|m| matches!(m, Middleware::ResponseHeaders(e) if e.set.get("X-Frame-Options").map(String::as_str) == Some("DENY"))));
}

#[test]
fn caddy_basic_auth_applies_and_broken_auth_is_not_served_open() {
    let hash = "$2y$05$abcdefghijklmnopqrstuu8Gq6.1Cj8mQbH5g6b9F0ElHzsoHxJtW";
    let t = run(&[
        svc(
            "locked",
            &[
                ("caddy", "locked.example.com"),
                ("caddy.basic_auth.alice", hash),
                ("caddy.reverse_proxy", "{{upstreams}}"),
            ],
        ),
        svc(
            "broken",
            &[
                ("caddy", "broken.example.com"),
                ("caddy.basic_auth.bob", "plaintext"),
                ("caddy.reverse_proxy", "{{upstreams}}"),
            ],
        ),
    ]);
    let r = only_route(&t, "locked");
    assert!(matches!(&r.middlewares[..], [Middleware::BasicAuth { users, .. }] if users["alice"] == hash));
    assert!(routes_of(&t, "broken").is_empty(), "never serve without the requested auth");
    assert_problem(&t, "broken", "caddy.basic_auth", "bcrypt");
}

#[test]
fn caddy_site_without_address_label_is_explained() {
    let t = run(&[svc("nosite", &[("caddy.reverse_proxy", "{{upstreams}}")])]);
    assert!(t.routes.is_empty());
    assert_problem(&t, "nosite", "caddy.reverse_proxy", "no site address");
}

// ---------------------------------------------------------------------------------------------
// Traefik dialect (LABELS.md §3)

#[test]
fn traefik_case_01_router_and_service_port() {
    let t = run(&[svc(
        "my",
        &[
            ("traefik.enable", "true"),
            ("traefik.http.routers.my.rule", "Host(`example.com`)"),
            ("traefik.http.services.my-svc.loadbalancer.server.port", "8080"),
        ],
    )]);
    no_problems_for(&t, "my");
    let r = only_route(&t, "my");
    assert_eq!(r.id, "svc/my/traefik/my");
    assert_eq!(hosts(r), ["example.com"]);
    assert_eq!(r.path, PathMatch::any());
    assert_eq!(targets(r), [task("my", None, 8080)]);
    assert_eq!(r.priority, "Host(`example.com`)".len() as i64, "default priority = rule length");
    let tb = table(&t);
    assert_eq!(get(&tb, "example.com", "/").as_deref(), Some("svc/my/traefik/my"));
    assert_eq!(get(&tb, "other.com", "/"), None, "other hosts 404");
}

#[test]
fn traefik_case_02_missing_port_is_a_problem_and_no_route() {
    let mut multi =
        svc("multi", &[("traefik.enable", "true"), ("traefik.http.routers.m.rule", "Host(`m.example.com`)")]);
    multi.ports = vec![80, 443];
    let mut single =
        svc("single", &[("traefik.enable", "true"), ("traefik.http.routers.s.rule", "Host(`s.example.com`)")]);
    single.ports = vec![3000];
    let t = run(&[multi, single]);
    assert!(routes_of(&t, "multi").is_empty());
    assert!(
        t.problems.iter().any(|p| p.source == "multi" && p.message.contains("port is missing")),
        "{:#?}",
        t.problems
    );
    // The single published port is used when unambiguous; other services are unaffected.
    assert_eq!(targets(only_route(&t, "single")), [task("single", None, 3000)]);
    no_problems_for(&t, "single");
}

#[test]
fn traefik_case_03_default_rule_from_normalized_service_name() {
    let t = run(&[svc(
        "mystack_whoami",
        &[("traefik.enable", "true"), ("traefik.http.services.whoami.loadbalancer.server.port", "80")],
    )]);
    no_problems_for(&t, "mystack_whoami");
    let r = only_route(&t, "mystack_whoami");
    assert_eq!(hosts(r), ["mystack-whoami"]);
    assert_eq!(targets(r), [task("mystack_whoami", None, 80)]);
    assert_eq!(r.priority, "Host(`mystack-whoami`)".len() as i64);
}

#[test]
fn traefik_case_04_two_routers_two_services_on_one_swarm_service() {
    let t = run(&[svc(
        "site",
        &[
            ("traefik.enable", "true"),
            ("traefik.http.routers.www-router.rule", "Host(`a.example.com`)"),
            ("traefik.http.routers.www-router.service", "www-service"),
            ("traefik.http.services.www-service.loadbalancer.server.port", "8000"),
            ("traefik.http.routers.admin-router.rule", "Host(`b.example.com`)"),
            ("traefik.http.routers.admin-router.service", "admin-service"),
            ("traefik.http.services.admin-service.loadbalancer.server.port", "9000"),
        ],
    )]);
    no_problems_for(&t, "site");
    let rs = routes_of(&t, "site");
    assert_eq!(rs.len(), 2);
    let a = rs.iter().find(|r| hosts(r) == ["a.example.com"]).unwrap();
    let b = rs.iter().find(|r| hosts(r) == ["b.example.com"]).unwrap();
    assert_eq!(targets(a), [task("site", None, 8000)]);
    assert_eq!(targets(b), [task("site", None, 9000)]);
}

#[test]
fn traefik_case_05_undefined_service_is_a_problem_and_host_not_served() {
    let t = run(&[svc(
        "x",
        &[
            ("traefik.enable", "true"),
            ("traefik.http.routers.r.rule", "Host(`x.example.com`)"),
            ("traefik.http.routers.r.service", "nope"),
            ("traefik.http.services.real.loadbalancer.server.port", "80"),
        ],
    )]);
    assert!(routes_of(&t, "x").is_empty(), "{:#?}", t.routes);
    assert_problem(&t, "x", "traefik.http.routers.r.service", "nope");
    assert_eq!(get(&table(&t), "x.example.com", "/"), None);
}

#[test]
fn traefik_case_06_h2c_scheme_with_mixed_case_keys() {
    let t = run(&[svc(
        "grpc",
        &[
            ("traefik.enable", "true"),
            ("traefik.http.routers.g.rule", "Host(`grpc.example.com`)"),
            ("traefik.http.services.s.LoadBalancer.server.scheme", "h2c"),
            ("traefik.http.services.s.loadbalancer.server.port", "8080"),
        ],
    )]);
    no_problems_for(&t, "grpc");
    let r = only_route(&t, "grpc");
    assert_eq!(r.upstream().unwrap().scheme, UpstreamScheme::H2c);
    assert_eq!(targets(r), [task("grpc", None, 8080)]);
}

#[test]
fn traefik_case_07_host_path_and_pathprefix_matching() {
    let host_only = run(&[svc(
        "h",
        &[
            ("traefik.enable", "true"),
            ("traefik.http.routers.h.rule", "Host(`example.com`)"),
            ("traefik.http.services.h.loadbalancer.server.port", "80"),
        ],
    )]);
    let tb = table(&host_only);
    for h in ["example.com", "example.com:8080", "EXAMPLE.COM", "example.com."] {
        assert!(get(&tb, h, "/").is_some(), "{h}");
    }
    let path = run(&[svc(
        "p",
        &[
            ("traefik.enable", "true"),
            ("traefik.http.routers.p.rule", "Host(`example.com`) && Path(`/css`)"),
            ("traefik.http.services.p.loadbalancer.server.port", "80"),
        ],
    )]);
    assert_eq!(only_route(&path, "p").path, PathMatch::Exact("/css".into()));
    let tb = table(&path);
    assert!(get(&tb, "example.com", "/css").is_some());
    for miss in ["/css/", "/css/main.css", "/CSS"] {
        assert_eq!(get(&tb, "example.com", miss), None, "{miss}");
    }
    let prefix = run(&[svc(
        "pp",
        &[
            ("traefik.enable", "true"),
            ("traefik.http.routers.pp.rule", "Host(`example.com`) && PathPrefix(`/css`)"),
            ("traefik.http.services.pp.loadbalancer.server.port", "80"),
        ],
    )]);
    assert_eq!(only_route(&prefix, "pp").path, PathMatch::RawPrefix("/css".into()));
    let tb = table(&prefix);
    for hit in ["/css", "/css/", "/css/main.css"] {
        assert!(get(&tb, "example.com", hit).is_some(), "{hit}");
    }
    assert_eq!(get(&tb, "example.com", "/CSS"), None);
}

#[test]
fn traefik_case_08_certresolver_router_is_https_only() {
    let t = run(&[svc(
        "blog",
        &[
            ("traefik.enable", "true"),
            ("traefik.http.routers.blog.rule", "Host(`example.com`) && Path(`/blog`)"),
            ("traefik.http.routers.blog.tls.certresolver", "le"),
            ("traefik.http.services.blog.loadbalancer.server.port", "80"),
        ],
    )]);
    no_problems_for(&t, "blog");
    let r = only_route(&t, "blog");
    assert_eq!(r.entrypoints, Entrypoints { http: false, https: true });
    assert_eq!(r.tls, TlsPolicy::Auto);
    let tb = table(&t);
    assert!(tb.acme_names(&BTreeSet::new()).contains("example.com"));
    assert_eq!(reach(&tb, "example.com", "/blog", &[], false), None, "plain HTTP is not served by this router");
    assert!(reach(&tb, "example.com", "/blog", &[], true).is_some());
}

#[test]
fn traefik_case_09_labels_target_the_service_tasks() {
    // Which slots are servers (running only) is discovery's part; the labels target every task
    // of the service on the given port.
    let t = run(&[svc(
        "slots",
        &[
            ("traefik.enable", "true"),
            ("traefik.http.routers.s.rule", "Host(`slots.example.com`)"),
            ("traefik.http.services.s.loadbalancer.server.port", "80"),
        ],
    )]);
    assert_eq!(targets(only_route(&t, "slots")), [task("slots", None, 80)]);
}

#[test]
fn traefik_case_10_swarm_network_label_selects_the_network() {
    let t = run(&[svc(
        "net",
        &[
            ("traefik.enable", "true"),
            ("traefik.swarm.network", "barnet"),
            ("traefik.http.routers.n.rule", "Host(`net.example.com`)"),
            ("traefik.http.services.n.loadbalancer.server.port", "80"),
        ],
    )]);
    no_problems_for(&t, "net");
    assert_eq!(targets(only_route(&t, "net")), [task("net", Some("barnet"), 80)]);
    // The v2 spelling works too.
    let t = run(&[svc(
        "old",
        &[
            ("traefik.enable", "true"),
            ("traefik.docker.network", "barnet"),
            ("traefik.http.routers.o.rule", "Host(`old.example.com`)"),
            ("traefik.http.services.o.loadbalancer.server.port", "80"),
        ],
    )]);
    assert_eq!(targets(only_route(&t, "old")), [task("old", Some("barnet"), 80)]);
}

#[test]
fn traefik_case_11_unknown_label_warns_and_unknown_field_names_the_key() {
    let t = run(&[svc(
        "w",
        &[
            ("traefik.enable", "true"),
            ("traefik.wrong.label", "42"),
            ("traefik.http.routers.r.rule", "Host(`r.example.com`)"),
            ("traefik.http.routers.r.entrypoint", "web"),
            ("traefik.http.routers.ok.rule", "Host(`ok.example.com`)"),
            ("traefik.http.services.w.loadbalancer.server.port", "80"),
        ],
    )]);
    assert_problem(&t, "w", "traefik.wrong.label", "ignored");
    assert_problem(&t, "w", "traefik.http.routers.r.entrypoint", "unknown router field entrypoint");
    let rs = routes_of(&t, "w");
    assert_eq!(rs.len(), 1, "only the router with the bad field is left out, not the service: {rs:#?}");
    assert_eq!(hosts(rs[0]), ["ok.example.com"]);
}

#[test]
fn traefik_typo_root_is_reported() {
    let t =
        run(&[svc("typo", &[("treafik.http.routers.r.rule", "Host(`t.example.com`)"), ("traefik.enable", "true")])]);
    assert_problem(&t, "typo", "treafik.http.routers.r.rule", "misspelt");
}

#[test]
fn traefik_name_collision_is_a_problem_on_both_and_nobody_steals() {
    let t = run(&[
        svc(
            "one",
            &[
                ("traefik.enable", "true"),
                ("traefik.http.routers.web.rule", "Host(`one.example.com`)"),
                ("traefik.http.services.app.loadbalancer.server.port", "8001"),
            ],
        ),
        svc(
            "two",
            &[
                ("traefik.enable", "true"),
                ("traefik.http.routers.web.rule", "Host(`two.example.com`)"),
                ("traefik.http.services.app.loadbalancer.server.port", "8002"),
            ],
        ),
    ]);
    for s in ["one", "two"] {
        assert_problem(&t, s, "traefik.http.routers.web", "also defined");
        assert_problem(&t, s, "traefik.http.services.app", "also defined");
    }
    assert_eq!(targets(only_route(&t, "one")), [task("one", None, 8001)]);
    assert_eq!(targets(only_route(&t, "two")), [task("two", None, 8002)]);
}

#[test]
fn traefik_identical_service_definitions_merge_like_traefik() {
    let labels = |host: &'static str| {
        vec![
            ("traefik.enable", "true"),
            ("traefik.http.routers.r.rule", host),
            ("traefik.http.routers.r.service", "shared"),
            ("traefik.http.services.shared.loadbalancer.server.port", "80"),
        ]
    };
    let t = run(&[svc("blue", &labels("Host(`app.example.com`)")), svc("green", &labels("Host(`app.example.com`)"))]);
    assert!(t.problems.is_empty(), "{:#?}", t.problems);
    assert_eq!(targets(only_route(&t, "blue")), [task("blue", None, 80), task("green", None, 80)]);
}

#[test]
fn traefik_middlewares_map_onto_the_model() {
    let hash = "$2y$05$abcdefghijklmnopqrstuu8Gq6.1Cj8mQbH5g6b9F0ElHzsoHxJtW";
    let t = run(&[svc(
        "mw",
        &[
            ("traefik.enable", "true"),
            ("traefik.http.routers.api.rule", "Host(`mw.example.com`) && PathPrefix(`/api`)"),
            ("traefik.http.routers.api.middlewares", "strip,hdr,auth,limit,again@swarm"),
            ("traefik.http.middlewares.strip.stripprefix.prefixes", "/api"),
            ("traefik.http.middlewares.hdr.headers.customrequestheaders.X-Script-Name", "test"),
            ("traefik.http.middlewares.hdr.headers.customresponseheaders.X-Custom", "v"),
            ("traefik.http.middlewares.auth.basicauth.users", &format!("test:{hash}")),
            ("traefik.http.middlewares.limit.ratelimit.average", "100"),
            ("traefik.http.middlewares.limit.ratelimit.burst", "50"),
            ("traefik.http.middlewares.again.retry.attempts", "3"),
            ("traefik.http.services.mw.loadbalancer.server.port", "80"),
            ("traefik.http.services.mw.loadbalancer.sticky.cookie.name", "pin"),
            ("traefik.http.services.mw.loadbalancer.healthcheck.path", "/health"),
            ("traefik.http.services.mw.loadbalancer.healthcheck.interval", "5s"),
            ("traefik.http.services.mw.loadbalancer.passhostheader", "false"),
        ],
    )]);
    let r = only_route(&t, "mw");
    assert_eq!(r.middlewares[0], Middleware::StripPrefix("/api".into()));
    assert!(matches!(&r.middlewares[1], Middleware::RequestHeaders(e) if e.set["X-Script-Name"] == "test"));
    assert!(matches!(&r.middlewares[2], Middleware::ResponseHeaders(e) if e.set["X-Custom"] == "v"));
    assert!(
        matches!(&r.middlewares[3], Middleware::BasicAuth { users, realm } if users["test"] == hash && realm == "traefik")
    );
    assert_eq!(r.middlewares[4], Middleware::RateLimit { average: 100, period: Duration::from_secs(1), burst: 50 });
    assert_eq!(r.middlewares[5], Middleware::Retry { attempts: 3 });
    let up = r.upstream().unwrap();
    assert_eq!(up.lb, LbPolicy::Cookie);
    assert_eq!(up.sticky_cookie.as_deref(), Some("pin"));
    assert_eq!(up.health, Some(HealthCheck { path: "/health".into(), interval: Duration::from_secs(5) }));
    assert!(!up.pass_host);
    assert_eq!(upstream_path(&table(&t), "mw.example.com", "/api/users"), "/users");
}

#[test]
fn traefik_redirectscheme_redirects_plain_http_and_serves_https() {
    let t = run(&[svc(
        "red",
        &[
            ("traefik.enable", "true"),
            ("traefik.http.routers.r.rule", "Host(`red.example.com`)"),
            ("traefik.http.routers.r.middlewares", "to-https"),
            ("traefik.http.middlewares.to-https.redirectscheme.scheme", "https"),
            ("traefik.http.middlewares.to-https.redirectscheme.permanent", "true"),
            ("traefik.http.services.red.loadbalancer.server.port", "80"),
        ],
    )]);
    no_problems_for(&t, "red");
    let rs = routes_of(&t, "red");
    let redirect = rs.iter().find(|r| matches!(r.action, Action::Redirect { .. })).unwrap();
    assert_eq!(redirect.action, Action::Redirect { location: "https://red.example.com{uri}".into(), status: 308 });
    assert_eq!(redirect.entrypoints, Entrypoints { http: true, https: false });
    let proxy = rs.iter().find(|r| r.upstream().is_some()).unwrap();
    assert_eq!(proxy.entrypoints, Entrypoints { http: false, https: true });
}

#[test]
fn traefik_needs_enable_unless_exposed_by_default() {
    let labels = [
        ("traefik.http.routers.r.rule", "Host(`e.example.com`)"),
        ("traefik.http.services.e.loadbalancer.server.port", "80"),
    ];
    let t = run(&[svc("e", &labels)]);
    assert!(t.routes.is_empty());
    assert_problem(&t, "e", "traefik.enable", "exposed_by_default");
    let cfg = LabelsConfig { exposed_by_default: true, ..LabelsConfig::default() };
    let t = translate(&[svc("e", &labels), svc("plain", &[("com.example.x", "1")])], &cfg);
    assert_eq!(hosts(only_route(&t, "e")), ["e.example.com"]);
    assert!(routes_of(&t, "plain").is_empty(), "services without traefik labels are never routed");
    let t = run(&[svc("off", &[("traefik.enable", "false"), labels[0], labels[1]])]);
    assert!(t.routes.is_empty() && t.problems.is_empty());
}

#[test]
fn traefik_rule_without_host_is_refused() {
    let t = run(&[svc(
        "open",
        &[
            ("traefik.enable", "true"),
            ("traefik.http.routers.r.rule", "PathPrefix(`/`)"),
            ("traefik.http.services.o.loadbalancer.server.port", "80"),
        ],
    )]);
    assert!(t.routes.is_empty());
    assert_problem(&t, "open", "traefik.http.routers.r.rule", "Host");
}

// ---------------------------------------------------------------------------------------------
// isolation across services and dialects

#[test]
fn broken_labels_of_one_service_never_change_another_services_routes() {
    let good = svc(
        "good",
        &[
            ("swarmgate.host", "native.example.com"),
            ("caddy", "caddy.example.com"),
            ("caddy.reverse_proxy", "{{upstreams 8080}}"),
            ("traefik.enable", "true"),
            ("traefik.http.routers.g.rule", "Host(`traefik.example.com`)"),
            ("traefik.http.services.g.loadbalancer.server.port", "9000"),
        ],
    );
    let broken = svc(
        "broken",
        &[
            ("swarmgate.host", "*"),
            ("swarmgate.port", "-1"),
            ("caddy", "caddy.example.com"),
            ("caddy.tls", "what"),
            ("caddy.reverse_proxy", "{{nope}}"),
            ("caddy_1", "(x"),
            ("caddy_1.reverse_proxy", "@missing {{upstreams}}"),
            ("traefik.enable", "yes please"),
            ("traefik.http.routers.g.rule", "Host(`traefik.example.com`"),
            ("traefik.http.services.g.loadbalancer.server.port", "zero"),
            ("traefik.http.middlewares.g.nosuchtype.x", "1"),
            ("treafik.http.routers.g.rule", "x"),
        ],
    );
    let alone = run(std::slice::from_ref(&good));
    assert_eq!(alone.routes.len(), 3, "{:#?}", alone.routes);
    for order in [vec![good.clone(), broken.clone()], vec![broken.clone(), good.clone()]] {
        let t = run(&order);
        assert_eq!(
            t.routes.iter().filter(|r| r.id.starts_with("svc/good/")).cloned().collect::<Vec<_>>(),
            alone.routes
        );
        assert!(t.problems.iter().any(|p| p.source == "broken"));
        no_problems_for(&t, "good");
    }
}

#[test]
fn translating_a_thousand_services_is_fast() {
    let services: Vec<ServiceInput> = (0..1000)
        .map(|i| {
            let name = format!("stack_svc{i}");
            let host = format!("s{i}.example.com");
            let mut s = svc(&name, &[]);
            match i % 3 {
                0 => {
                    s.labels.insert("swarmgate.host".into(), host);
                    s.labels.insert("swarmgate.port".into(), "8080".into());
                }
                1 => {
                    s.labels.insert("caddy".into(), host);
                    s.labels.insert("caddy.reverse_proxy".into(), "{{upstreams 8080}}".into());
                    s.labels.insert("caddy.header.X-Frame-Options".into(), "DENY".into());
                }
                _ => {
                    s.labels.insert("traefik.enable".into(), "true".into());
                    s.labels.insert(
                        format!("traefik.http.routers.r{i}.rule"),
                        format!("Host(`{host}`) && PathPrefix(`/api`)"),
                    );
                    s.labels.insert(format!("traefik.http.services.s{i}.loadbalancer.server.port"), "8080".into());
                }
            }
            s
        })
        .collect();
    let cfg = LabelsConfig::default();
    let _ = translate(&services, &cfg);
    let start = std::time::Instant::now();
    let t = translate(&services, &cfg);
    let took = start.elapsed();
    eprintln!("translate(1000 services) took {took:?}");
    assert_eq!(t.routes.len(), 1000);
    assert!(t.problems.is_empty(), "{:#?}", &t.problems[..t.problems.len().min(5)]);
    // Generous for unoptimised test builds on a shared machine; release is a few ms.
    assert!(took < Duration::from_millis(500), "took {took:?}");
}

#[test]
fn caddy_label_value_cannot_forge_another_services_upstream() {
    let t = run(&[
        svc("victim", &[("caddy", "victim.example.com"), ("caddy.reverse_proxy", "{{upstreams 9000}}")]),
        svc("x-attacker", &[("caddy", "evil.example.com"), ("caddy.reverse_proxy", "\u{1}0\u{1}")]),
    ]);
    assert!(routes_of(&t, "x-attacker").is_empty(), "{:#?}", t.routes);
    assert_problem(&t, "x-attacker", "caddy.reverse_proxy", "U+0001");
}

#[test]
fn caddy_reverse_proxy_subdirectives() {
    let t = run(&[svc(
        "sub",
        &[
            ("caddy", "sub.example.com"),
            ("caddy.reverse_proxy", "{{upstreams 8443}}"),
            ("caddy.reverse_proxy.lb_policy", "least_conn"),
            ("caddy.reverse_proxy.health_uri", "/ready"),
            ("caddy.reverse_proxy.health_interval", "2s"),
            ("caddy.reverse_proxy.header_up", "X-Real-Proto https"),
            ("caddy.reverse_proxy.header_down", "-Server"),
            ("caddy.reverse_proxy.transport", "http"),
            ("caddy.reverse_proxy.transport.tls", ""),
        ],
    )]);
    no_problems_for(&t, "sub");
    let r = only_route(&t, "sub");
    let up = r.upstream().unwrap();
    assert_eq!(up.scheme, UpstreamScheme::Https);
    assert_eq!(up.lb, LbPolicy::LeastConn);
    assert_eq!(up.health, Some(HealthCheck { path: "/ready".into(), interval: Duration::from_secs(2) }));
    assert!(r
        .middlewares
        .iter()
        .any(|m| matches!(m, Middleware::RequestHeaders(e) if e.set["X-Real-Proto"] == "https")));
    assert!(r.middlewares.iter().any(|m| matches!(m, Middleware::ResponseHeaders(e) if e.remove == ["Server"])));
}

#[test]
fn caddy_handle_blocks_with_named_matchers_and_respond() {
    let t = run(&[svc(
        "h",
        &[
            ("caddy", "h.example.com"),
            ("caddy.@admin.host", "h.example.com"),
            ("caddy.@admin.method", "GET POST"),
            ("caddy.@admin.path", "/admin/*"),
            ("caddy.handle_0", "@admin"),
            ("caddy.handle_0.reverse_proxy", "{{upstreams 9000}}"),
            ("caddy.handle_1.respond", "\"not here\" 404"),
        ],
    )]);
    no_problems_for(&t, "h");
    let rs = routes_of(&t, "h");
    assert_eq!(rs.len(), 2, "{rs:#?}");
    let admin = rs.iter().find(|r| r.upstream().is_some()).unwrap();
    assert_eq!(admin.path, PathMatch::RawPrefix("/admin/".into()));
    assert_eq!(
        admin.predicate,
        Some(Predicate::And(vec![
            Predicate::Host("h.example.com".into()),
            Predicate::Method(vec!["GET".into(), "POST".into()])
        ]))
    );
    assert_eq!(targets(admin), [task("h", None, 9000)]);
    let fallback = rs.iter().find(|r| r.upstream().is_none()).unwrap();
    assert_eq!(fallback.action, Action::Respond { status: 404, body: "not here".into() });
    let tb = table(&t);
    assert_eq!(get(&tb, "h.example.com", "/admin/users").as_deref(), Some(admin.id.as_str()));
    assert_eq!(get(&tb, "h.example.com", "/elsewhere").as_deref(), Some(fallback.id.as_str()));
}

#[test]
fn traefik_rule_predicates_and_tls_domains() {
    let t = run(&[svc(
        "p",
        &[
            ("traefik.enable", "true"),
            (
                "traefik.http.routers.r.rule",
                "Host(`p.example.com`) && Method(`POST`) && Header(`X-Api`, `1`) && Query(`debug`) && !ClientIP(`10.0.0.0/8`)",
            ),
            ("traefik.http.routers.r.tls", "true"),
            ("traefik.http.routers.r.tls.domains[0].main", "example.com"),
            ("traefik.http.routers.r.tls.domains[0].sans", "p.example.com,www.example.com"),
            ("traefik.http.services.p.loadbalancer.server.port", "80"),
        ],
    )]);
    no_problems_for(&t, "p");
    let r = only_route(&t, "p");
    assert_eq!(
        r.predicate,
        Some(Predicate::And(vec![
            Predicate::Method(vec!["POST".into()]),
            Predicate::Header { name: "X-Api".into(), value: ValueMatch::Exact("1".into()) },
            Predicate::Query { name: "debug".into(), value: ValueMatch::Present },
            Predicate::Not(Box::new(Predicate::ClientIp { net: "10.0.0.0".parse().unwrap(), prefix_len: 8 })),
        ]))
    );
    assert_eq!(r.tls_domains, ["example.com", "p.example.com", "www.example.com"]);
    assert_eq!(r.entrypoints, Entrypoints { http: false, https: true });
}

#[test]
fn traefik_or_of_hosts_and_alternatives() {
    let t = run(&[svc(
        "o",
        &[
            ("traefik.enable", "true"),
            ("traefik.http.routers.r.rule", "Host(`a.example.com`) || Host(`b.example.com`) && PathPrefix(`/b`)"),
            ("traefik.http.routers.r.entrypoints", "websecure"),
            ("traefik.http.services.o.loadbalancer.server.port", "80"),
        ],
    )]);
    no_problems_for(&t, "o");
    let rs = routes_of(&t, "o");
    assert_eq!(rs.len(), 2);
    assert_eq!(hosts(rs[0]), ["a.example.com"]);
    assert_eq!(rs[0].path, PathMatch::any());
    assert_eq!(hosts(rs[1]), ["b.example.com"]);
    assert_eq!(rs[1].path, PathMatch::RawPrefix("/b".into()));
    assert!(rs.iter().all(|r| r.entrypoints == Entrypoints { http: false, https: true }));
}

#[test]
fn caddy_redir_with_host_placeholder_names_each_host() {
    let t = run(&[svc(
        "www",
        &[("caddy", "a.example.com b.example.com"), ("caddy.redir", "https://www.{host}{uri} permanent")],
    )]);
    no_problems_for(&t, "www");
    let mut got: Vec<(Vec<&str>, &Action)> = routes_of(&t, "www").iter().map(|r| (hosts(r), &r.action)).collect();
    got.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        got,
        [
            (
                vec!["a.example.com"],
                &Action::Redirect { location: "https://www.a.example.com{uri}".into(), status: 301 }
            ),
            (
                vec!["b.example.com"],
                &Action::Redirect { location: "https://www.b.example.com{uri}".into(), status: 301 }
            ),
        ]
    );
}

#[test]
fn service_input_reads_from_json() {
    let s: ServiceInput = serde_json::from_str(r#"{"name":"web","labels":{"caddy":"web.example.com"},"ports":[8080]}"#)
        .expect("valid JSON");
    assert_eq!(s.name, "web");
    assert_eq!(s.ports, [8080]);
    assert_eq!(s.labels["caddy"], "web.example.com");
}

/// Random label soup (deterministic seed): translation never panics, and a well-formed service
/// with its own names and hosts keeps exactly its routes whatever the others say.
#[test]
fn random_labels_never_panic_and_never_touch_a_good_service() {
    const KEYS: &[&str] = &[
        "caddy",
        "caddy_1",
        "caddy.reverse_proxy",
        "caddy.handle_path",
        "caddy.handle_path.0_reverse_proxy",
        "caddy.@m.header",
        "caddy.@m",
        "caddy.0_reverse_proxy",
        "caddy.tls",
        "caddy.import",
        "caddy_1.tls",
        "caddy.route.1_uri",
        "caddy.redir",
        "caddy.respond",
        "caddy.basic_auth.u",
        "caddy.header.X",
        "caddy.email",
        "caddy.a\\.b.c",
        "caddy.",
        "caddy_ingress_network",
        "swarmgate.host",
        "swarmgate.port",
        "swarmgate.routes.x.path",
        "swarmgate.routes..host",
        "swarmgate.headers.request.",
        "traefik.enable",
        "traefik.http.routers.r.rule",
        "traefik.http.routers.r.service",
        "traefik.http.routers.r.middlewares",
        "traefik.http.routers.r.tls.domains[x].main",
        "traefik.http.routers.r.tls",
        "traefik.http.services.s.loadbalancer.server.port",
        "traefik.http.middlewares.m.stripprefix.prefixes",
        "traefik.http.middlewares.m.headers.customrequestheaders.",
        "traefik.http.middlewares.m.basicauth.users",
        "traefik.http.middlewares.m.redirectscheme.scheme",
        "traefik..http",
        "TRAEFIK.HTTP.ROUTERS.R.RULE",
        "treafik.x",
    ];
    const VALUES: &[&str] = &[
        "",
        "x.test",
        "(snip)",
        "snip",
        "{{upstreams}}",
        "{{upstreams h2c 0}}",
        "{{upstreams 99999}}",
        "{{",
        "}}",
        "{{upstreams 80 81}}",
        "{{index .Spec.Labels \"caddy\"}}",
        "@m {{upstreams}}",
        "/a* {{upstreams}}",
        "/p/*",
        "strip_prefix",
        "internal",
        "off",
        "\"unterminated",
        "`bt`",
        "*",
        "*.x.test",
        "http://x.test",
        "Host(`x.test`)",
        "Host(`x.test`) && (Path(`/a`) || !Header(`a`,`b`))",
        "Host(",
        "Host(`*`)",
        "PathPrefix(`/`)",
        "(((",
        "!!!",
        "Host(`a.test`) || Host(`b.test`) && Query(`q`)",
        "HostRegexp(`^.+\\.x\\.test$`)",
        "true",
        "false",
        "65536",
        "0",
        "80",
        "https",
        "web,websecure",
        "s@file",
        "m,m,m",
        "u:$apr1$x",
        "ü.test",
        "\u{1}0\u{1}",
        "a:b:c",
        "/",
        "-1",
    ];
    let mut rng = fastrand::Rng::with_seed(7);
    let good = svc(
        "zz_good",
        &[
            ("swarmgate.host", "good-native.example.org"),
            ("caddy", "good-caddy.example.org"),
            ("caddy.reverse_proxy", "{{upstreams 8080}}"),
            ("traefik.enable", "true"),
            ("traefik.http.routers.good-router.rule", "Host(`good-traefik.example.org`)"),
            ("traefik.http.services.good-service.loadbalancer.server.port", "9000"),
        ],
    );
    let alone = run(std::slice::from_ref(&good));
    assert_eq!(alone.routes.len(), 3);
    for round in 0..200 {
        let mut services = vec![good.clone()];
        for n in 0..rng.usize(1..6) {
            let mut s = svc(&format!("r{round}_{n}"), &[]);
            for _ in 0..rng.usize(0..12) {
                s.labels.insert(KEYS[rng.usize(..KEYS.len())].into(), VALUES[rng.usize(..VALUES.len())].into());
            }
            s.ports = (0..rng.usize(0..3)).map(|_| rng.u16(1..)).collect();
            services.push(s);
        }
        let t = run(&services);
        let mine: Vec<RouteSpec> = t.routes.iter().filter(|r| r.id.starts_with("svc/zz_good/")).cloned().collect();
        assert_eq!(mine, alone.routes, "round {round}: {services:#?}");
        no_problems_for(&t, "zz_good");
        let _ = table(&t);
    }
}

#[test]
fn traefik_root_spelling_edge_cases() {
    let t = run(&[svc("e", &[("traefik.", "x"), ("Traefik.Enable", "true"), ("traefikk.http.routers.a.rule", "x")])]);
    assert_problem(&t, "e", "traefik.", "empty segment");
    assert_problem(&t, "e", "traefikk.http.routers.a.rule", "misspelt");
    assert!(!t.problems.iter().any(|p| p.key == "Traefik.Enable"), "{:#?}", t.problems);
}

/// A duration no clock can hold, in every dialect that reads one: a problem naming the label,
/// never a panic (which aborted the process, and again on every restart while the service
/// existed), and the other services keep their routes.
#[test]
fn huge_durations_and_numbers_are_problems_not_crashes() {
    const HUGE: &str = "99999999999999999999999s";
    let services = [
        svc(
            "n",
            &[
                ("swarmgate.host", "n.example.org"),
                ("swarmgate.health.path", "/h"),
                ("swarmgate.health.interval", HUGE),
            ],
        ),
        svc(
            "c",
            &[
                ("caddy", "c.example.org"),
                ("caddy.reverse_proxy", "{{upstreams 8080}}"),
                ("caddy.reverse_proxy.health_uri", "/h"),
                ("caddy.reverse_proxy.health_interval", HUGE),
            ],
        ),
        svc(
            "t",
            &[
                ("traefik.enable", "true"),
                ("traefik.http.routers.t.rule", "Host(`t.example.org`)"),
                ("traefik.http.routers.t.middlewares", "lim"),
                ("traefik.http.services.t.loadbalancer.server.port", "80"),
                ("traefik.http.services.t.loadbalancer.healthcheck.path", "/h"),
                ("traefik.http.services.t.loadbalancer.healthcheck.interval", HUGE),
                ("traefik.http.middlewares.lim.ratelimit.average", "18446744073709551615"),
                ("traefik.http.middlewares.lim.ratelimit.burst", "18446744073709551615"),
                ("traefik.http.middlewares.lim.ratelimit.period", "1e400s"),
            ],
        ),
        svc("ok", &[("swarmgate.host", "ok.example.org")]),
    ];
    let t = run(&services);
    assert_problem(&t, "n", "swarmgate.health.interval", "maximum");
    assert_problem(&t, "c", "caddy.reverse_proxy.health_interval", "maximum");
    assert_problem(&t, "t", "traefik.http.services.t.loadbalancer.healthcheck.interval", "maximum");
    assert_problem(&t, "t", "traefik.http.middlewares.lim.ratelimit.period", "invalid duration");
    assert_eq!(hosts(only_route(&t, "ok")), ["ok.example.org"]);
    // The numbers that remain (u64::MAX average and burst) compile into a table without overflow.
    let table = table(&t);
    assert!(table.routes.iter().any(|r| r.spec.hosts.iter().any(|h| h == "ok.example.org")));
}

/// Two services declaring the same Caddy site balance across the tasks of both; two that spell
/// the address differently cannot merge, and the route that would never answer is a problem
/// naming both services instead of vanishing.
#[test]
fn the_same_caddy_site_in_two_services_merges_and_what_cannot_merge_is_a_problem() {
    let same = run(&[
        svc("shop_a", &[("caddy", "http://shop.example.com"), ("caddy.reverse_proxy", "{{upstreams 8080}}")]),
        svc("shop_b", &[("caddy", "http://shop.example.com"), ("caddy.reverse_proxy", "{{upstreams 8080}}")]),
    ]);
    let merged: Vec<&RouteSpec> = same.routes.iter().collect();
    assert_eq!(merged.len(), 1, "{merged:#?}");
    assert_eq!(targets(merged[0]), [task("shop_a", None, 8080), task("shop_b", None, 8080)]);
    assert!(table(&same).problems.is_empty(), "{:#?}", table(&same).problems);

    let spelled = run(&[
        svc("shop_a", &[("caddy", "http://shop.example.com"), ("caddy.reverse_proxy", "{{upstreams 8080}}")]),
        svc("shop_b", &[("caddy", "shop.example.com:80"), ("caddy.reverse_proxy", "{{upstreams 8080}}")]),
    ]);
    let t = table(&spelled);
    let p = t
        .problems
        .iter()
        .find(|p| p.message.contains("never used"))
        .unwrap_or_else(|| panic!("no shadowing problem: {:#?}", t.problems));
    assert_eq!(p.source, "shop_b", "{p:#?}");
    assert!(p.message.contains("shop_a") && p.message.contains("shop.example.com"), "{p:#?}");
}

/// What the route id found for host+path answers, by the spec the table holds.
fn action_at(table: &RouteTable, host: &str, path: &str) -> Option<Action> {
    let id = get(table, host, path)?;
    table.routes.iter().find(|r| *r.id == *id).map(|r| r.spec.action.clone())
}

/// Access control that swarmgate cannot apply (a forward_auth option it does not implement,
/// client certificates, a refusal whose matcher cannot be read) used to be skipped with the site then
/// served to everyone. It fails closed: no route, or 503 on the guarded paths.
#[test]
fn access_control_that_cannot_be_applied_fails_closed() {
    let hash = "$2y$05$abcdefghijklmnopqrstuu8Gq6.1Cj8mQbH5g6b9F0ElHzsoHxJtW";
    let t = run(&[
        svc(
            "fwd",
            &[
                ("caddy", "fwd.example.com"),
                ("caddy.forward_auth", "authelia:9091"),
                ("caddy.forward_auth.uri", "/api/verify?rd=https://auth.example.com"),
                ("caddy.forward_auth.header_up", "X-Original-Host {host}"),
                ("caddy.reverse_proxy", "{{upstreams 80}}"),
            ],
        ),
        svc(
            "scoped",
            &[
                ("caddy", "scoped.example.com"),
                ("caddy.handle_0", "/admin/*"),
                ("caddy.handle_0.forward_auth", "authelia:9091"),
                ("caddy.handle_0.forward_auth.trusted_proxies", "private_ranges"),
                ("caddy.handle_0.reverse_proxy", "{{upstreams 80}}"),
                ("caddy.handle_1.reverse_proxy", "{{upstreams 80}}"),
            ],
        ),
        svc(
            "badauth",
            &[
                ("caddy", "badauth.example.com"),
                ("caddy.handle_0", "/admin/*"),
                ("caddy.handle_0.basic_auth.bob", "plaintext"),
                ("caddy.handle_0.reverse_proxy", "{{upstreams 80}}"),
                ("caddy.handle_1.reverse_proxy", "{{upstreams 80}}"),
            ],
        ),
        svc(
            "mtls",
            &[
                ("caddy", "mtls.example.com"),
                ("caddy.tls.client_auth.mode", "require_and_verify"),
                ("caddy.reverse_proxy", "{{upstreams 80}}"),
            ],
        ),
        svc(
            "deny",
            &[
                ("caddy", "deny.example.com"),
                ("caddy.@outside", "not remote_ip_typo 10.0.0.0/8"),
                ("caddy.respond", "@outside 403"),
                ("caddy.reverse_proxy", "{{upstreams 80}}"),
            ],
        ),
        svc(
            "tr",
            &[
                ("traefik.enable", "true"),
                ("traefik.http.routers.tr.rule", "Host(`tr.example.com`)"),
                ("traefik.http.routers.tr.tls.options", "mtls@file"),
                ("traefik.http.services.tr.loadbalancer.server.port", "80"),
            ],
        ),
        svc(
            "fine",
            &[
                ("caddy", "fine.example.com"),
                ("caddy.basic_auth.alice", hash),
                ("caddy.reverse_proxy", "{{upstreams 80}}"),
            ],
        ),
    ]);
    assert!(routes_of(&t, "fwd").is_empty(), "{:#?}", routes_of(&t, "fwd"));
    assert_problem(&t, "fwd", "caddy.forward_auth", "not served");
    assert!(routes_of(&t, "mtls").is_empty());
    assert_problem(&t, "mtls", "caddy.tls.client_auth", "not served");
    assert!(routes_of(&t, "deny").is_empty(), "{:#?}", routes_of(&t, "deny"));
    assert!(routes_of(&t, "tr").is_empty());
    assert_problem(&t, "tr", "traefik.http.routers.tr.tls.options", "client certificates");
    let table = table(&t);
    for host in ["scoped.example.com", "badauth.example.com"] {
        assert!(
            matches!(action_at(&table, host, "/admin/users"), Some(Action::Respond { status: 503, .. })),
            "{host}: the guarded path must not fall through to the open route: {:?}",
            action_at(&table, host, "/admin/users")
        );
        assert!(matches!(action_at(&table, host, "/"), Some(Action::Proxy(_))), "{host}: the rest is served");
    }
    assert!(get(&table, "fine.example.com", "/").is_some());
}

// ---------------------------------------------------------------------------------------------
// Balancing policy: each dialect's default, `[labels] default_lb`, and every accepted value.

use swarmgate::model::LbSource;

fn lb_of(t: &Translation, service: &str) -> (LbPolicy, LbSource) {
    let up = only_route(t, service).upstream().unwrap().clone();
    (up.lb, up.lb_source)
}

fn caddy_svc(name: &str, policy: Option<&str>) -> ServiceInput {
    let host = format!("{name}.example.com");
    let mut l = vec![("caddy", host.as_str()), ("caddy.reverse_proxy", "{{upstreams 80}}")];
    if let Some(p) = policy {
        l.push(("caddy.reverse_proxy.lb_policy", p));
    }
    svc(name, &l)
}

fn traefik_svc(name: &str, strategy: Option<&str>) -> ServiceInput {
    let rule = format!("Host(`{name}.example.com`)");
    let strategy_key = format!("traefik.http.services.{name}.loadbalancer.strategy");
    let port_key = format!("traefik.http.services.{name}.loadbalancer.server.port");
    let mut l =
        vec![("traefik.enable", "true"), ("traefik.http.routers.r.rule", rule.as_str()), (port_key.as_str(), "80")];
    if let Some(s) = strategy {
        l.push((strategy_key.as_str(), s));
    }
    svc(name, &l)
}

fn native_svc(name: &str, lb: Option<&str>) -> ServiceInput {
    let host = format!("{name}.example.com");
    let mut l = vec![("swarmgate.host", host.as_str())];
    if let Some(p) = lb {
        l.push(("swarmgate.lb", p));
    }
    svc(name, &l)
}

#[test]
fn lb_default_is_each_dialects_own() {
    let t = run(&[caddy_svc("c", None), traefik_svc("t", None), native_svc("n", None)]);
    assert_eq!(lb_of(&t, "c"), (LbPolicy::Random, LbSource::Dialect("caddy".into())));
    assert_eq!(lb_of(&t, "t"), (LbPolicy::RoundRobin, LbSource::Dialect("traefik".into())));
    assert_eq!(lb_of(&t, "n"), (LbPolicy::P2c, LbSource::Dialect("native".into())));
    assert!(t.problems.is_empty(), "{:#?}", t.problems);
}

#[test]
fn lb_labels_default_replaces_every_dialect_default_and_labels_still_win() {
    let cfg = LabelsConfig { default_lb: Some(LbPolicy::LeastConn), ..Default::default() };
    let t = translate(
        &[
            caddy_svc("c", None),
            traefik_svc("t", None),
            native_svc("n", None),
            caddy_svc("c2", Some("first")),
            traefik_svc("t2", Some("p2c")),
            native_svc("n2", Some("round_robin")),
        ],
        &cfg,
    );
    for s in ["c", "t", "n"] {
        assert_eq!(lb_of(&t, s), (LbPolicy::LeastConn, LbSource::LabelsDefault), "{s}");
    }
    assert_eq!(lb_of(&t, "c2"), (LbPolicy::First, LbSource::Label("caddy.reverse_proxy.lb_policy".into())));
    assert_eq!(
        lb_of(&t, "t2"),
        (LbPolicy::P2c, LbSource::Label("traefik.http.services.t2.loadbalancer.strategy".into()))
    );
    assert_eq!(lb_of(&t, "n2"), (LbPolicy::RoundRobin, LbSource::Label("swarmgate.lb".into())));
}

#[test]
fn lb_caddy_every_lb_policy_value() {
    use LbPolicy::*;
    // (value, policy, lb_key, fallback, sticky cookie name)
    type Case<'a> = (&'a str, LbPolicy, Option<&'a str>, Option<LbPolicy>, Option<&'a str>);
    let cases: &[Case] = &[
        ("random", Random, None, None, None),
        ("round_robin", RoundRobin, None, None, None),
        ("least_conn", LeastConn, None, None, None),
        ("first", First, None, None, None),
        ("ip_hash", IpHash, None, None, None),
        ("client_ip_hash", ClientIpHash, None, None, None),
        ("uri_hash", UriHash, None, None, None),
        ("random_choose", RandomChoose(2), None, None, None),
        ("random_choose 3", RandomChoose(3), None, None, None),
        ("header X-Upstream", Header, Some("X-Upstream"), Some(Random), None),
        ("query room", Query, Some("room"), Some(Random), None),
        ("cookie", Cookie, None, Some(Random), Some("lb")),
        ("cookie app_sticky", Cookie, None, Some(Random), Some("app_sticky")),
    ];
    for (i, (value, policy, key, fallback, cookie)) in cases.iter().enumerate() {
        let name = format!("s{i}");
        let t = run(&[caddy_svc(&name, Some(value))]);
        no_problems_for(&t, &name);
        let up = only_route(&t, &name).upstream().unwrap();
        assert_eq!(up.lb, *policy, "{value}");
        assert_eq!(up.lb_key.as_deref(), *key, "{value}");
        assert_eq!(up.lb_fallback, *fallback, "{value}");
        assert_eq!(up.sticky_cookie.as_deref(), *cookie, "{value}");
        assert_eq!(up.lb_source, LbSource::Label("caddy.reverse_proxy.lb_policy".into()));
    }
}

#[test]
fn lb_caddy_fallback_block_and_nearest_mappings_with_a_note() {
    let t = run(&[svc(
        "f",
        &[
            ("caddy", "f.example.com"),
            ("caddy.reverse_proxy", "{{upstreams 80}}"),
            ("caddy.reverse_proxy.lb_policy", "header X-Upstream"),
            ("caddy.reverse_proxy.lb_policy.fallback", "first"),
        ],
    )]);
    no_problems_for(&t, "f");
    let up = only_route(&t, "f").upstream().unwrap();
    assert_eq!((up.lb, up.lb_fallback), (LbPolicy::Header, Some(LbPolicy::First)));

    // Served with the nearest policy, and a problem says what differs.
    let t = run(&[caddy_svc("w", Some("weighted_round_robin 5 1")), caddy_svc("k", Some("cookie lb s3cret"))]);
    assert_eq!(lb_of(&t, "w").0, LbPolicy::RoundRobin);
    assert_problem(&t, "w", "caddy.reverse_proxy.lb_policy", "weights are not supported");
    assert_eq!(lb_of(&t, "k").0, LbPolicy::Cookie);
    assert_problem(&t, "k", "caddy.reverse_proxy.lb_policy", "secret is not used");
}

#[test]
fn lb_caddy_bad_values_are_problems_and_the_reverse_proxy_is_not_served() {
    for (value, needle) in [
        ("bogus", "not a policy"),
        ("random_choose 1", "2 to 255"),
        ("random_choose many", "2 to 255"),
        ("header", "header field"),
        ("header bad(name)", "not a header name"),
        ("query", "query parameter"),
        ("round_robin extra", "unexpected argument"),
        ("cookie a b c", "unexpected argument"),
        ("cookie a;Domain=x", "not a cookie name"),
    ] {
        let t = run(&[caddy_svc("bad", Some(value))]);
        assert!(routes_of(&t, "bad").is_empty(), "{value}: {:#?}", t.routes);
        assert_problem(&t, "bad", "caddy.reverse_proxy.lb_policy", needle);
    }
    let t = run(&[svc(
        "bad",
        &[
            ("caddy", "bad.example.com"),
            ("caddy.reverse_proxy", "{{upstreams 80}}"),
            ("caddy.reverse_proxy.lb_policy", "cookie"),
            ("caddy.reverse_proxy.lb_policy.fallback", "header X"),
        ],
    )]);
    assert!(routes_of(&t, "bad").is_empty());
    assert_problem(&t, "bad", "caddy.reverse_proxy.lb_policy", "fallback");
}

#[test]
fn lb_traefik_every_strategy_value() {
    for (value, policy) in [
        ("wrr", LbPolicy::RoundRobin),
        ("WRR", LbPolicy::RoundRobin),
        ("p2c", LbPolicy::P2c),
        ("hrw", LbPolicy::IpHash),
        ("leasttime", LbPolicy::LeastTime),
    ] {
        let t = run(&[traefik_svc("s", Some(value))]);
        no_problems_for(&t, "s");
        assert_eq!(
            lb_of(&t, "s"),
            (policy, LbSource::Label("traefik.http.services.s.loadbalancer.strategy".into())),
            "{value}"
        );
    }
    let t = run(&[traefik_svc("bad", Some("fastest"))]);
    assert!(routes_of(&t, "bad").is_empty(), "{:#?}", t.routes);
    assert_problem(&t, "bad", "traefik.http.services.bad.loadbalancer.strategy", "fastest");
}

#[test]
fn lb_traefik_sticky_cookie_places_new_clients_by_the_strategy() {
    let sticky = |name: &str, strategy: Option<&str>| {
        let mut s = traefik_svc(name, strategy);
        s.labels.insert(format!("traefik.http.services.{name}.loadbalancer.sticky.cookie"), "true".into());
        s
    };
    let t = run(&[sticky("a", None), sticky("b", Some("p2c"))]);
    let a = only_route(&t, "a").upstream().unwrap();
    assert_eq!((a.lb, a.lb_fallback), (LbPolicy::Cookie, Some(LbPolicy::RoundRobin)));
    let b = only_route(&t, "b").upstream().unwrap();
    assert_eq!((b.lb, b.lb_fallback), (LbPolicy::Cookie, Some(LbPolicy::P2c)));
}

#[test]
fn lb_native_every_value() {
    for p in LbPolicy::NAMED.into_iter().filter(|p| !p.needs_key()) {
        let t = run(&[native_svc("n", Some(&p.to_string()))]);
        no_problems_for(&t, "n");
        assert_eq!(lb_of(&t, "n"), (p, LbSource::Label("swarmgate.lb".into())));
    }
    for bad in ["header", "query", "wrr", "Random"] {
        let t = run(&[native_svc("n", Some(bad))]);
        assert!(routes_of(&t, "n").is_empty());
        assert_problem(&t, "n", "swarmgate.lb", bad);
    }
}

#[test]
fn lb_check_shows_the_effective_policy_and_its_source() {
    let t = run(&[caddy_svc("c", None), traefik_svc("t", Some("p2c"))]);
    let out = swarmgate::check::render_table(&table(&t));
    assert!(out.contains("lb=random (caddy default)"), "{out}");
    assert!(out.contains("lb=p2c (label traefik.http.services.t.loadbalancer.strategy)"), "{out}");
}

// ---------------------------------------------------------------------------------------------
// Traefik details that used to drop whole services.

fn traefik(name: &str, extra: &[(&str, &str)]) -> ServiceInput {
    let rule = format!("traefik.http.routers.{name}.rule");
    let host = format!("Host(`{name}.example.com`)");
    let port = format!("traefik.http.services.{name}.loadbalancer.server.port");
    let mut l: Vec<(&str, &str)> = vec![("traefik.enable", "true"), (&rule, &host), (&port, "80")];
    l.extend_from_slice(extra);
    svc(name, &l)
}

#[test]
fn traefik_sticky_true_is_a_sticky_cookie() {
    let t = run(&[traefik("s", &[("traefik.http.services.s.loadbalancer.sticky", "true")])]);
    no_problems_for(&t, "s");
    assert_eq!(only_route(&t, "s").upstream().unwrap().lb, LbPolicy::Cookie);
}

#[test]
fn traefik_http_and_https_entry_point_names_are_accepted() {
    let t = run(&[
        traefik("plain", &[("traefik.http.routers.plain.entrypoints", "http")]),
        traefik(
            "secure",
            &[("traefik.http.routers.secure.entrypoints", "https"), ("traefik.http.routers.secure.tls", "true")],
        ),
        traefik("odd", &[("traefik.http.routers.odd.entrypoints", "lan")]),
    ]);
    no_problems_for(&t, "plain");
    no_problems_for(&t, "secure");
    assert_eq!(only_route(&t, "plain").entrypoints, Entrypoints { http: true, https: false });
    assert!(only_route(&t, "secure").entrypoints.https);
    assert_problem(&t, "odd", "traefik.http.routers.odd.entrypoints", "entrypoint_http");
    // An operator who named the HTTPS listener `http` (odd, but theirs) is not second-guessed.
    let cfg = LabelsConfig { entrypoint_https: "http".into(), ..Default::default() };
    let t = translate(&[traefik("x", &[("traefik.http.routers.x.entrypoints", "http")])], &cfg);
    assert_eq!(only_route(&t, "x").entrypoints, Entrypoints { http: false, https: true });
}

#[test]
fn traefik_v1_labels_are_named_with_their_v2_form() {
    let t = run(&[svc(
        "old_app",
        &[
            ("traefik.enable", "true"),
            ("traefik.frontend.rule", "Host:old.example.com;PathPrefix:/api"),
            ("traefik.port", "8080"),
        ],
    )]);
    assert_problem(
        &t,
        "old_app",
        "traefik.frontend.rule",
        "traefik.http.routers.old-app.rule=Host(`old.example.com`) && PathPrefix(`/api`)",
    );
    assert_problem(&t, "old_app", "traefik.port", "traefik.http.services.old-app.loadbalancer.server.port=8080");
    assert!(!has_problem(&t, "old_app", "traefik.port", "unknown"));
}

#[test]
fn traefik_constraint_label_is_honoured_when_configured() {
    let services = [
        traefik("public", &[("traefik.constraint-label", "traefik-public")]),
        traefik("internal", &[("traefik.constraint-label", "internal")]),
        traefik("unlabelled", &[]),
    ];
    // Not configured: the label changes nothing and is not "unknown".
    let t = run(&services);
    for s in ["public", "internal", "unlabelled"] {
        no_problems_for(&t, s);
        only_route(&t, s);
    }
    let cfg = LabelsConfig { traefik_constraint: Some("traefik-public".into()), ..Default::default() };
    let t = translate(&services, &cfg);
    only_route(&t, "public");
    no_problems_for(&t, "public");
    assert!(routes_of(&t, "internal").is_empty() && routes_of(&t, "unlabelled").is_empty());
    assert_problem(&t, "internal", "traefik.constraint-label", "traefik_constraint");
    assert_problem(&t, "unlabelled", "traefik.constraint-label", "missing");
}

#[test]
fn traefik_dashboard_routers_point_at_swarmgates_admin_listener() {
    let t = run(&[svc(
        "dash",
        &[
            ("traefik.enable", "true"),
            ("traefik.http.routers.dash.rule", "Host(`traefik.example.com`)"),
            ("traefik.http.routers.dash.service", "api@internal"),
        ],
    )]);
    assert!(routes_of(&t, "dash").is_empty());
    assert_problem(&t, "dash", "traefik.http.routers.dash.service", "admin listener");
}

// ---------------------------------------------------------------------------------------------
// Upstreams named by address: another service, or a fixed host.

#[test]
fn caddy_and_traefik_upstreams_by_address_become_names_for_discovery() {
    let t = run(&[
        svc("front", &[("caddy", "f.example.com"), ("caddy.reverse_proxy", "http://whoami:80 core:30160")]),
        svc("ip", &[("caddy", "i.example.com"), ("caddy.reverse_proxy", "h2c://10.0.0.5")]),
        traefik("tr", &[("traefik.http.services.tr.loadbalancer.server.url", "https://portainer:9443")]),
    ]);
    for s in ["front", "ip", "tr"] {
        no_problems_for(&t, s);
    }
    let names = |s: &str| match &only_route(&t, s).upstream().unwrap().target {
        UpstreamTarget::Names(n) => n.clone(),
        other => panic!("{s}: {other:?}"),
    };
    assert_eq!(names("front"), [("whoami".to_string(), 80), ("core".to_string(), 30160)]);
    assert_eq!(names("ip"), [("10.0.0.5".to_string(), 80)]);
    assert_eq!(only_route(&t, "ip").upstream().unwrap().scheme, UpstreamScheme::H2c);
    assert_eq!(names("tr"), [("portainer".to_string(), 9443)]);
    assert_eq!(only_route(&t, "tr").upstream().unwrap().scheme, UpstreamScheme::Https);
}

#[test]
fn labels_may_not_point_at_the_proxys_own_host() {
    let t = run(&[
        svc("a", &[("caddy", "a.example.com"), ("caddy.reverse_proxy", "127.0.0.1:2375")]),
        svc("b", &[("caddy", "b.example.com"), ("caddy.reverse_proxy", "http://169.254.169.254")]),
        svc("c", &[("caddy", "c.example.com"), ("caddy.reverse_proxy", "localhost:9100")]),
        traefik("d", &[("traefik.http.services.d.loadbalancer.server.url", "http://[::1]:8080")]),
        svc("e", &[("caddy", "e.example.com"), ("caddy.reverse_proxy", "http://x:80/path")]),
    ]);
    assert!(t.routes.is_empty(), "{:#?}", t.routes);
    for s in ["a", "b"] {
        assert_problem(&t, s, "caddy.reverse_proxy", "loopback, link-local");
    }
    assert_problem(&t, "c", "caddy.reverse_proxy", "localhost is refused");
    assert_problem(&t, "d", "traefik.http.services.d.loadbalancer.server.url", "loopback");
    assert_problem(&t, "e", "caddy.reverse_proxy", "without a path");
}

/// `HostRegexp(`{host:.+}`)` and host-less rules (a catch-all "default backend") are served
/// only when the operator allows label catch-alls; otherwise the problem names the setting.
#[test]
fn traefik_catch_all_rules_need_allow_catch_all() {
    let services = [
        svc(
            "fallback",
            &[
                ("traefik.enable", "true"),
                ("traefik.http.routers.fallback.rule", "HostRegexp(`{host:.+}`)"),
                ("traefik.http.routers.fallback.priority", "1"),
                ("traefik.http.services.fallback.loadbalancer.server.port", "80"),
            ],
        ),
        svc(
            "api",
            &[
                ("traefik.enable", "true"),
                ("traefik.http.routers.api.rule", "PathPrefix(`/api`)"),
                ("traefik.http.services.api.loadbalancer.server.port", "80"),
            ],
        ),
    ];
    let t = run(&services);
    assert!(t.routes.is_empty(), "{:#?}", t.routes);
    assert_problem(&t, "fallback", "traefik.http.routers.fallback.rule", "allow_catch_all");
    assert_problem(&t, "api", "traefik.http.routers.api.rule", "allow_catch_all");
    let cfg = LabelsConfig { allow_catch_all: true, ..Default::default() };
    let t = translate(&services, &cfg);
    assert_eq!(hosts(only_route(&t, "fallback")), ["*"]);
    assert_eq!(hosts(only_route(&t, "api")), ["*"]);
    no_problems_for(&t, "fallback");
    // A catch-all alone serves whatever host no other route claims.
    let t = translate(&services[..1], &cfg);
    let tbl = table(&t);
    assert!(get(&tbl, "anything.example.net", "/").is_some(), "the catch-all serves an unclaimed host");
}

/// Traefik ranks routers by priority across hosts; swarmgate lets an exact host beat a
/// wildcard. Where that changes who serves a name, the exact router says so.
#[test]
fn traefik_priority_that_would_route_differently_is_reported() {
    let t = run(&[
        svc(
            "wild",
            &[
                ("traefik.enable", "true"),
                ("traefik.http.routers.wild.rule", "HostRegexp(`^[a-z0-9-]+\\.example\\.com$`)"),
                ("traefik.http.services.wild.loadbalancer.server.port", "80"),
            ],
        ),
        traefik("app", &[("traefik.http.routers.app.rule", "Host(`app.example.com`)")]),
        traefik(
            "pinned",
            &[
                ("traefik.http.routers.pinned.rule", "Host(`pinned.example.com`)"),
                ("traefik.http.routers.pinned.priority", "1000"),
            ],
        ),
    ]);
    assert_problem(
        &t,
        "app",
        "traefik.http.routers.app",
        "Traefik would send app.example.com to traefik.http.routers.wild",
    );
    no_problems_for(&t, "pinned");
    no_problems_for(&t, "wild");
    let tbl = table(&t);
    assert_eq!(get(&tbl, "app.example.com", "/").as_deref(), Some(only_route(&t, "app").id.as_str()));
}

/// Caddy `forward_auth` and Traefik `forwardauth` (Authelia's documented labels) become a
/// forward-auth step plus a route of its own for the auth service, found by name like any
/// upstream; an address that names the proxy's own host is refused, and the router with it.
#[test]
fn forward_auth_labels_become_a_step_and_an_auth_service_route() {
    let caddy = svc(
        "app",
        &[
            ("caddy", "app.example.com"),
            ("caddy.reverse_proxy", "{{upstreams 80}}"),
            ("caddy.forward_auth", "authelia:9091"),
            ("caddy.forward_auth.uri", "/api/verify?rd=https://auth.example.com/"),
            ("caddy.forward_auth.copy_headers", "Remote-User Remote-Groups>X-Groups"),
        ],
    );
    let traefik = svc(
        "wiki",
        &[
            ("traefik.enable", "true"),
            ("traefik.http.routers.wiki.rule", "Host(`wiki.example.com`)"),
            ("traefik.http.routers.wiki.middlewares", "authelia"),
            ("traefik.http.services.wiki.loadbalancer.server.port", "3000"),
            (
                "traefik.http.middlewares.authelia.forwardauth.address",
                "http://authelia:9091/api/verify?rd=https://auth.example.com/",
            ),
            ("traefik.http.middlewares.authelia.forwardauth.authResponseHeaders", "Remote-User,Remote-Groups"),
            ("traefik.http.middlewares.authelia.forwardauth.trustForwardHeader", "true"),
        ],
    );
    let t = run(&[caddy, traefik]);
    for (service, copied) in [
        ("app", vec![("Remote-User", "Remote-User"), ("Remote-Groups", "X-Groups")]),
        ("wiki", vec![("Remote-User", "Remote-User"), ("Remote-Groups", "Remote-Groups")]),
    ] {
        let served: Vec<_> = routes_of(&t, service).into_iter().filter(|r| r.auth_of.is_none()).collect();
        assert_eq!(served.len(), 1, "{service}: {:#?}", t.problems);
        let fa = served[0]
            .middlewares
            .iter()
            .find_map(|m| match m {
                Middleware::ForwardAuth(fa) => Some(fa),
                _ => None,
            })
            .unwrap_or_else(|| panic!("{service}: no forward auth"));
        assert_eq!(fa.uri, "/api/verify?rd=https://auth.example.com/");
        let want: Vec<(String, String)> = copied.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect();
        assert_eq!(fa.copy_headers, want, "{service}");
        let auth = t.routes.iter().find(|r| r.auth_of.as_deref() == Some(served[0].id.as_str())).expect("auth route");
        assert!(auth.hosts.is_empty(), "the auth service is never served to clients");
        assert_eq!(auth.upstream().unwrap().target, UpstreamTarget::Names(vec![("authelia".into(), 9091)]));
    }
    assert_problem(&t, "wiki", "traefik.http.middlewares.authelia.forwardauth.trustForwardHeader", "trusted_proxies");

    // The proxy's own host is refused, and the site with it (never served open).
    let own = svc(
        "own",
        &[
            ("caddy", "own.example.com"),
            ("caddy.reverse_proxy", "{{upstreams 80}}"),
            ("caddy.forward_auth", "127.0.0.1:2019"),
        ],
    );
    let t = run(&[own]);
    assert!(routes_of(&t, "own").is_empty(), "{:#?}", t.routes);
    assert_problem(&t, "own", "caddy.forward_auth", "loopback");
}

/// What cannot be applied is refused with the router, never half-applied: a chain that loops,
/// an allow list with a range that does not parse or an option swarmgate lacks, and a regex
/// that does not compile (found when the table is built).
#[test]
fn traefik_middlewares_that_cannot_be_applied_refuse_their_router() {
    let router = |svc_name: &str, mw: &[(&str, &str)]| {
        let mut l: Vec<(String, String)> = vec![
            ("traefik.enable".into(), "true".into()),
            (format!("traefik.http.routers.{svc_name}.rule"), format!("Host(`{svc_name}.example.com`)")),
            (format!("traefik.http.routers.{svc_name}.middlewares"), "m".into()),
            (format!("traefik.http.services.{svc_name}.loadbalancer.server.port"), "80".into()),
        ];
        l.extend(mw.iter().map(|(k, v)| (format!("traefik.http.middlewares.{k}"), v.to_string())));
        l
    };
    let cases = [
        router("loop", &[("m.chain.middlewares", "n"), ("n.chain.middlewares", "m")]),
        router("badrange", &[("m.ipallowlist.sourcerange", "10.0.0.0/33")]),
        router(
            "excluded",
            &[("m.ipallowlist.sourcerange", "10.0.0.0/8"), ("m.ipallowlist.ipstrategy.excludedips", "10.0.0.1")],
        ),
        router("badregex", &[("m.redirectregex.regex", "^(unclosed"), ("m.redirectregex.replacement", "https://x")]),
        // Short to write, huge once compiled: refused by the size bound, not built.
        router(
            "hugeregex",
            &[("m.replacepathregex.regex", "(a{1000}){1000}"), ("m.replacepathregex.replacement", "/")],
        ),
    ];
    let services: Vec<ServiceInput> = cases
        .iter()
        .zip(["loop", "badrange", "excluded", "badregex", "hugeregex"])
        .map(|(l, name)| {
            let labels: Vec<(&str, &str)> = l.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            svc(name, &labels)
        })
        .collect();
    let t = run(&services);
    for name in ["loop", "badrange", "excluded"] {
        assert!(routes_of(&t, name).is_empty(), "{name}: {:#?}", routes_of(&t, name));
    }
    assert_problem(&t, "loop", "traefik.http.routers.loop.middlewares", "more than 16 chains");
    assert_problem(&t, "badrange", "traefik.http.middlewares.m.ipallowlist.sourcerange", "10.0.0.0/33");
    assert_problem(&t, "excluded", "traefik.http.middlewares.m.ipallowlist.ipstrategy.excludedips", "not supported");
    let table = table(&t);
    let facts = RequestFacts {
        method: &http::Method::GET,
        host: "badregex.example.com",
        path: "/",
        query: None,
        headers: &http::HeaderMap::new(),
        client_ip: None,
    };
    assert!(matches!(table.lookup("badregex.example.com", &facts, false), Lookup::UnknownHost));
    assert!(
        table.problems.iter().any(|p| p.source == "badregex" && p.message.contains("regex")),
        "{:#?}",
        table.problems
    );
    let facts = RequestFacts { host: "hugeregex.example.com", ..facts };
    assert!(matches!(table.lookup("hugeregex.example.com", &facts, false), Lookup::UnknownHost));
    assert!(
        table.problems.iter().any(|p| p.source == "hugeregex" && p.message.contains("size limit")),
        "{:#?}",
        table.problems
    );
}
