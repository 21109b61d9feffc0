//! The three label dialects and their merge, fed hostile label maps: huge numbers, empty
//! values, deep nesting, unicode, thousands of keys, broken templates. Anyone who can deploy a
//! service writes these, so: no panic; every problem names a service that exists (and, where a
//! label is at fault, a key of that service); a hostile service never changes the routes of a
//! well-formed one.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use proptest::sample::select;
use swarmgate::admin::metrics::Metrics;
use swarmgate::labels::{translate, LabelsConfig, ServiceInput, Translation};
use swarmgate::model::{compile, CompileOptions, RouteSpec};
use swarmgate::proxy::balancer::EndpointRegistry;

fn service(name: &str, labels: &[(&str, &str)]) -> ServiceInput {
    ServiceInput {
        id: format!("id-{name}"),
        name: name.into(),
        labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        ports: vec![8080],
    }
}

/// Well-formed services, one per dialect, whose names, hosts and Traefik/Caddy names the
/// hostile generator never produces (those may legitimately be shared across services).
fn good_services() -> Vec<ServiceInput> {
    vec![
        service(
            "good-native",
            &[
                ("swarmgate.host", "native.good.test"),
                ("swarmgate.port", "8080"),
                ("swarmgate.path", "/api"),
                ("swarmgate.strip_prefix", "true"),
                ("swarmgate.health.path", "/healthz"),
                ("swarmgate.health.interval", "5s"),
                ("swarmgate.routes.admin.path", "/admin"),
                ("swarmgate.routes.admin.port", "9090"),
            ],
        ),
        service(
            "good-caddy",
            &[
                ("caddy", "caddy.good.test"),
                ("caddy.0_handle_path", "/static/*"),
                ("caddy.0_handle_path.0_reverse_proxy", "{{upstreams 8081}}"),
                ("caddy.1_reverse_proxy", "{{upstreams 8080}}"),
                ("caddy.1_reverse_proxy.health_uri", "/health"),
            ],
        ),
        service(
            "good-traefik",
            &[
                ("traefik.enable", "true"),
                ("traefik.http.routers.goodrouter.rule", "Host(`traefik.good.test`) && PathPrefix(`/t`)"),
                ("traefik.http.routers.goodrouter.middlewares", "goodstrip"),
                ("traefik.http.middlewares.goodstrip.stripprefix.prefixes", "/t"),
                ("traefik.http.services.goodservice.loadbalancer.server.port", "9000"),
            ],
        ),
    ]
}

fn routes_of<'a>(t: &'a Translation, service: &str) -> Vec<&'a RouteSpec> {
    t.routes.iter().filter(|r| r.id.starts_with(&format!("svc/{service}/"))).collect()
}

/// Numbers and durations as a Go or Rust parser sees trouble: overflow, sign, exponent, NaN.
const HOSTILE_NUMBERS: &[&str] = &[
    "99999999999999999999999s",
    "1e308",
    "-1",
    "18446744073709551616",
    "18446744073709551615",
    "9223372036854775808",
    "4294967296",
    "65536",
    "65535",
    "0",
    "-0",
    "0.0000001",
    "1e-400",
    "NaN",
    "inf",
    "0x50",
    "1_000",
    "10s",
    "1m30s",
    "999999h",
    "5000000000000d",
    "1.5.5s",
    "s",
];

/// Values aimed at the parsers behind each key: templates with junk, rules, hosts, paths,
/// tokens with quotes, credentials, unicode and control characters.
const HOSTILE_VALUES: &[&str] = &[
    "",
    " ",
    "{{upstreams}}",
    "{{upstreams 8080}}",
    "{{upstreams https 5000}}",
    "{{upstreams h2c 99999999999999999999}}",
    "{{upstreams junk junk junk junk}}",
    "{{upstreams -1}}",
    "{{upstreams",
    "{{",
    "}}",
    "{{}}",
    "{{.Spec.Name}}",
    "{{index .Spec.Labels \"x\"}}",
    "{{index .Spec.Labels}}",
    "{{ printf \"%s\" 1 }}",
    "a{{upstreams}}b",
    "@m {{upstreams}}",
    "/api* {{upstreams 80}}",
    "Host(`hostile.test`)",
    "Host(`hostile.test`) && (Path(`/a`) || !Header(`X`, `y`))",
    "HostRegexp(`^(.*)+$`)",
    "Host(`",
    "((((((((((",
    "Host(`a`) || Host(`b`) || Host(`c`) || Host(`d`) || Host(`e`) || Host(`f`)",
    "hostile.test",
    "http://hostile.test",
    "*.hostile.test",
    "*",
    "h\u{f6}stile.test",
    "a..b",
    "/",
    "/path",
    "path",
    "true",
    "false",
    "TRUE",
    "web,websecure",
    "round_robin",
    "cookie",
    "h2c",
    "https",
    "internal",
    "off",
    "le",
    "user:$2y$05$Yl4aPBQZ6kTZ5Ktu.QYz3.1PUZsQ9EzIyrEhjjxjvOrMsw9uK2Yx2",
    "user:JDJ5JDA1JFlsNGFQQlFaNmtUWjVLdHUuUVl6My4xUFVac1E5RXpJeXJFaGpqeGp2T3JNc3c5dUsyWXgyCg==",
    "user:plain",
    ":",
    "\"unterminated",
    "`unterminated",
    "\"a b\" c `d e`",
    "# comment {{upstreams}}",
    "\u{0}",
    "a\r\nb",
    "\u{202e}\u{200b}\u{fffd}",
    "\u{1f600}",
    "X-Forwarded-For",
    "Bad Header",
    "strip_prefix /path",
    "/from /to 302",
    "/from /to 999",
    "(snippet)",
    "()",
    "(",
    "snippet",
    "tasks.other",
];

/// Key segments of the three dialects and the grammar's edge cases (ordering prefixes with
/// huge numbers, escaped dots, matchers, empty segments).
const SEGMENTS: &[&str] = &[
    "host",
    "port",
    "path",
    "path_match",
    "strip_prefix",
    "scheme",
    "tls",
    "redirect_https",
    "lb",
    "health",
    "interval",
    "network",
    "headers",
    "request",
    "response",
    "auth",
    "basic",
    "realm",
    "priority",
    "retries",
    "sticky_cookie",
    "pass_host",
    "routes",
    "r1",
    "reverse_proxy",
    "handle",
    "handle_path",
    "route",
    "uri",
    "rewrite",
    "redir",
    "respond",
    "header",
    "basic_auth",
    "basicauth",
    "encode",
    "import",
    "lb_policy",
    "health_uri",
    "health_interval",
    "header_up",
    "header_down",
    "transport",
    "email",
    "acme_ca",
    "0_reverse_proxy",
    "1_route",
    "0_uri",
    "99999999999999999999_x",
    "x_99999999999999999999",
    "4294967296_a",
    "@m",
    "@ws",
    "0_header",
    "a\\.b",
    "",
    "enable",
    "http",
    "routers",
    "services",
    "middlewares",
    "rt",
    "sv",
    "mw",
    "rule",
    "entrypoints",
    "middlewares",
    "service",
    "certresolver",
    "domains[0]",
    "main",
    "sans",
    "loadbalancer",
    "server",
    "sticky",
    "cookie",
    "name",
    "healthcheck",
    "passhostheader",
    "ratelimit",
    "average",
    "period",
    "burst",
    "retry",
    "attempts",
    "redirectscheme",
    "permanent",
    "stripprefix",
    "prefixes",
    "customrequestheaders",
    "customresponseheaders",
    "users",
    "swarm",
    "docker",
    "lbswarm",
    "LoadBalancer",
    "Server",
    "PORT",
    "\u{e9}t\u{e9}",
    "a b",
];

const ROOTS: &[&str] = &[
    "swarmgate",
    "SwarmGate",
    "caddy",
    "caddy_0",
    "caddy_1",
    "caddy_99999999999999999999",
    "caddy_ingress_network",
    "traefik",
    "Traefik",
    "treafik",
    "traefik.http.routers.rt",
    "traefik.http.services.sv",
    "traefik.http.middlewares.mw",
    "swarmgate.routes.r1",
];

/// Whole keys the dialects read, so generated maps reach every field's parser (router,
/// service and middleware names from a small pool, so references between them resolve).
const KNOWN_KEYS: &[&str] = &[
    "swarmgate.host",
    "swarmgate.port",
    "swarmgate.path",
    "swarmgate.path_match",
    "swarmgate.strip_prefix",
    "swarmgate.scheme",
    "swarmgate.tls",
    "swarmgate.redirect_https",
    "swarmgate.lb",
    "swarmgate.health.path",
    "swarmgate.health.interval",
    "swarmgate.network",
    "swarmgate.headers.request.X-A",
    "swarmgate.headers.response.X-B",
    "swarmgate.auth.basic",
    "swarmgate.auth.realm",
    "swarmgate.priority",
    "swarmgate.retries",
    "swarmgate.sticky_cookie",
    "swarmgate.pass_host",
    "swarmgate.routes.r1.host",
    "swarmgate.routes.r1.path",
    "swarmgate.routes.r1.port",
    "swarmgate.routes.r1.health.interval",
    "caddy",
    "caddy_0",
    "caddy_1",
    "caddy.reverse_proxy",
    "caddy.reverse_proxy.lb_policy",
    "caddy.reverse_proxy.health_uri",
    "caddy.reverse_proxy.health_interval",
    "caddy.reverse_proxy.header_up",
    "caddy.reverse_proxy.header_down",
    "caddy.reverse_proxy.transport",
    "caddy.reverse_proxy.transport.tls",
    "caddy_0.reverse_proxy",
    "caddy_0.reverse_proxy.health_interval",
    "caddy.handle_path",
    "caddy.handle_path.0_reverse_proxy",
    "caddy.handle",
    "caddy.handle.reverse_proxy",
    "caddy.route",
    "caddy.route.0_uri",
    "caddy.route.1_reverse_proxy",
    "caddy.route.1_reverse_proxy.health_interval",
    "caddy.@m.path",
    "caddy.@m.header",
    "caddy.@m.method",
    "caddy.@m.host",
    "caddy.0_reverse_proxy",
    "caddy.1_reverse_proxy",
    "caddy.redir",
    "caddy.redir_1",
    "caddy.respond",
    "caddy.header",
    "caddy.basic_auth",
    "caddy.basic_auth.user",
    "caddy.basicauth",
    "caddy.encode",
    "caddy.tls",
    "caddy.import",
    "caddy_1.import",
    "caddy.rewrite",
    "caddy.uri",
    "caddy.email",
    "caddy.acme_ca",
    "caddy_ingress_network",
    "traefik.enable",
    "traefik.http.routers.rt.rule",
    "traefik.http.routers.rt.entrypoints",
    "traefik.http.routers.rt.priority",
    "traefik.http.routers.rt.tls",
    "traefik.http.routers.rt.tls.certresolver",
    "traefik.http.routers.rt.tls.domains[0].main",
    "traefik.http.routers.rt.tls.domains[0].sans",
    "traefik.http.routers.rt.middlewares",
    "traefik.http.routers.rt.service",
    "traefik.http.routers.a.rule",
    "traefik.http.routers.a.service",
    "traefik.http.services.sv.loadbalancer.server.port",
    "traefik.http.services.sv.loadbalancer.server.scheme",
    "traefik.http.services.sv.loadbalancer.server.url",
    "traefik.http.services.sv.loadbalancer.server.weight",
    "traefik.http.services.sv.loadbalancer.sticky.cookie",
    "traefik.http.services.sv.loadbalancer.sticky.cookie.name",
    "traefik.http.services.sv.loadbalancer.healthcheck.path",
    "traefik.http.services.sv.loadbalancer.healthcheck.interval",
    "traefik.http.services.sv.loadbalancer.passhostheader",
    "traefik.http.services.a.loadbalancer.server.port",
    "traefik.http.middlewares.mw.redirectscheme.scheme",
    "traefik.http.middlewares.mw.redirectscheme.permanent",
    "traefik.http.middlewares.mw.stripprefix.prefixes",
    "traefik.http.middlewares.mw.headers.customrequestheaders.X-A",
    "traefik.http.middlewares.mw.headers.customresponseheaders.X-B",
    "traefik.http.middlewares.mw.basicauth.users",
    "traefik.http.middlewares.mw.ratelimit.average",
    "traefik.http.middlewares.mw.ratelimit.period",
    "traefik.http.middlewares.mw.ratelimit.burst",
    "traefik.http.middlewares.mw.retry.attempts",
    "traefik.http.middlewares.mw.retry.initialinterval",
    "traefik.swarm.network",
    "traefik.docker.network",
    "traefik.swarm.lbswarm",
];

fn key() -> impl Strategy<Value = String> {
    let seg = prop_oneof![4 => select(SEGMENTS).prop_map(str::to_owned), 1 => "\\PC{0,12}"];
    let composed = (select(ROOTS), prop::collection::vec(seg, 0..6))
        .prop_map(|(root, segs)| std::iter::once(root.to_owned()).chain(segs).collect::<Vec<_>>().join("."));
    prop_oneof![
        3 => select(KNOWN_KEYS).prop_map(str::to_owned),
        1 => select(KNOWN_KEYS).prop_map(str::to_uppercase),
        2 => composed,
    ]
}

fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => select(HOSTILE_VALUES).prop_map(str::to_owned),
        2 => select(HOSTILE_NUMBERS).prop_map(str::to_owned),
        1 => (select(HOSTILE_VALUES), select(HOSTILE_NUMBERS)).prop_map(|(a, b)| format!("{a} {b}")),
        1 => "\\PC{0,40}",
        1 => any::<String>(),
    ]
}

fn labels(max: usize) -> impl Strategy<Value = BTreeMap<String, String>> {
    prop::collection::btree_map(key(), value(), 0..max)
}

/// Names of hostile services: never one of the good ones. Duplicates and odd characters are
/// allowed (a `check --services` file can hold anything).
fn hostile_name() -> impl Strategy<Value = String> {
    prop_oneof![
        select(vec!["web", "api", "stack_app", "a", "", "x.y", "caddy", "traefik", "\u{e9}"]).prop_map(str::to_owned),
        "[a-z0-9_.-]{1,20}".prop_filter("not a good service", |n| !n.starts_with("good")),
    ]
}

fn hostile_services(max_services: usize, max_labels: usize) -> impl Strategy<Value = Vec<ServiceInput>> {
    let svc = (hostile_name(), labels(max_labels), prop::collection::vec(any::<u16>(), 0..3))
        .prop_map(|(name, labels, ports)| ServiceInput { id: format!("id-{name}"), name, labels, ports });
    prop::collection::vec(svc, 1..max_services)
}

/// Problems name an existing service and say something. The key a problem names is one of
/// that service's labels, a prefix of one (a router, site or middleware made of several
/// labels), or a key missing from a namespace it uses (`swarmgate.host` when only
/// `swarmgate.port` is set): never a key of some other dialect or service.
fn check_problems(t: &Translation, services: &[ServiceInput]) -> Result<(), TestCaseError> {
    let root = |k: &str| k.split('.').next().unwrap_or_default().to_lowercase();
    for p in &t.problems {
        let owners: Vec<&ServiceInput> = services.iter().filter(|s| s.name == p.source).collect();
        prop_assert!(!owners.is_empty(), "problem names no service: {p:?}");
        prop_assert!(!p.message.is_empty(), "problem without a message: {p:?}");
        prop_assert!(!p.key.is_empty(), "problem without a key: {p:?}");
        let key = p.key.to_lowercase();
        let names_a_key = owners.iter().any(|s| {
            s.labels.keys().any(|k| {
                let k = k.to_lowercase();
                k == key
                    || k.starts_with(&format!("{key}."))
                    || key.starts_with(&format!("{k}."))
                    || root(&k) == root(&key)
            })
        });
        prop_assert!(names_a_key, "problem names no label of {}: {p:?}", p.source);
    }
    Ok(())
}

/// Compiles a translation's routes as discovery would hand them over (no task addresses yet).
fn compile_all(t: &Translation) {
    let registry = EndpointRegistry::new();
    let metrics = Metrics::new();
    let opts = CompileOptions {
        registry: &registry,
        states: &swarmgate::proxy::route_state::RouteStates::new(),
        metrics: &metrics,
        static_cert_names: &BTreeSet::new(),
        generation: 1,
    };
    let _ = compile(&t.routes, t.problems.clone(), &opts);
}

fn all_dialects() -> LabelsConfig {
    LabelsConfig { exposed_by_default: true, ..LabelsConfig::default() }
}

proptest! {
    #![proptest_config(crate::cases(512))]

    /// Hostile label maps: no panic in translating or compiling, and every problem names its
    /// service and a label of it.
    #[test]
    fn hostile_labels_never_panic_and_problems_name_their_label(hostile in hostile_services(5, 24)) {
        for cfg in [LabelsConfig::default(), all_dialects()] {
            let t = translate(&hostile, &cfg);
            check_problems(&t, &hostile)?;
            compile_all(&t);
        }
    }

    /// A hostile service never changes a well-formed service's routes.
    #[test]
    fn a_hostile_service_does_not_change_another_services_routes(hostile in hostile_services(4, 24)) {
        let good = good_services();
        let alone = translate(&good, &LabelsConfig::default());
        let mut all = good.clone();
        all.extend(hostile);
        let together = translate(&all, &LabelsConfig::default());
        for g in &good {
            prop_assert!(!routes_of(&alone, &g.name).is_empty(), "{} has routes on its own", g.name);
            prop_assert_eq!(routes_of(&alone, &g.name), routes_of(&together, &g.name), "routes of {}", g.name);
        }
        check_problems(&together, &all)?;
        compile_all(&together);
    }
}

proptest! {
    #![proptest_config(crate::cases(24))]

    /// Thousands of keys on one service cost time in proportion, not a crash.
    #[test]
    fn thousands_of_labels_on_one_service(labels in labels(3000), name in hostile_name()) {
        let svc = ServiceInput { id: "id".into(), name, labels, ports: vec![] };
        let services = vec![svc];
        let t = translate(&services, &all_dialects());
        check_problems(&t, &services)?;
        compile_all(&t);
    }
}

/// `caddy.0_a.1_b.2_c…`: a site nested `depth` levels deep.
fn deep_caddy_key(depth: usize) -> String {
    let mut key = String::from("caddy");
    for i in 0..depth {
        key.push_str(&format!(".{i}_{}", ["route", "handle", "a", "reverse_proxy"][i % 4]));
    }
    key
}

proptest! {
    #![proptest_config(crate::cases(32))]

    /// Deeply nested keys in every dialect: no stack overflow, no panic.
    #[test]
    fn deep_nesting_never_crashes(
        depth in 1usize..100_000,
        caddy_depth in 1usize..100_000,
        value in value(),
    ) {
        let dots = vec!["a"; depth].join(".");
        let services = vec![service(
            "deep",
            &[
                ("caddy", "deep.test"),
                (&deep_caddy_key(caddy_depth), &value),
                (&format!("swarmgate.{dots}"), &value),
                (&format!("swarmgate.routes.{dots}"), &value),
                (&format!("traefik.http.routers.{dots}"), &value),
                (&format!("traefik.http.middlewares.m.{dots}"), &value),
            ],
        )];
        let t = translate(&services, &all_dialects());
        check_problems(&t, &services)?;
        compile_all(&t);
    }
}

/// A label key 100,000 levels deep in each dialect is a problem for its service, not a crash.
#[test]
fn keys_nested_100000_deep_are_problems_not_crashes() {
    let dots = vec!["a"; 100_000].join(".");
    let mut labels =
        vec![(format!("swarmgate.{dots}"), "x".to_owned()), (format!("traefik.http.routers.{dots}"), "x".to_owned())];
    labels.push(("caddy".to_owned(), "deep.test".to_owned()));
    labels.push((deep_caddy_key(100_000), "{{upstreams}}".to_owned()));
    let labels: Vec<(&str, &str)> = labels.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let services = vec![service("deep", &labels)];
    let t = translate(&services, &all_dialects());
    assert!(t.problems.iter().any(|p| p.source == "deep"), "{:#?}", t.problems);
    check_problems(&t, &services).unwrap();
}

#[test]
fn good_services_alone_have_routes_and_no_problems() {
    let good = good_services();
    let t = translate(&good, &LabelsConfig::default());
    assert!(t.problems.is_empty(), "{:#?}", t.problems);
    for g in &good {
        assert!(!routes_of(&t, &g.name).is_empty(), "{}", g.name);
    }
}

/// Found by `hostile_labels_never_panic_and_problems_name_their_label`.
#[test]
fn a_middleware_collision_names_the_label_of_a_typeless_middleware() {
    let services = vec![
        service("a", &[("traefik.enable", "true"), ("traefik.http.middlewares.mw", "")]),
        service(
            "b",
            &[("traefik.enable", "true"), ("traefik.http.middlewares.mw.headers.customrequestheaders.X-A", "1")],
        ),
    ];
    let t = translate(&services, &LabelsConfig::default());
    let collision: Vec<_> = t.problems.iter().filter(|p| p.message.contains("is also defined, differently")).collect();
    assert_eq!(collision.len(), 2, "a problem on both services: {:#?}", t.problems);
    let on_a = collision.iter().find(|p| p.source == "a").unwrap();
    assert_eq!(on_a.key, "traefik.http.middlewares.mw");
    let on_b = collision.iter().find(|p| p.source == "b").unwrap();
    assert_eq!(on_b.key, "traefik.http.middlewares.mw");
}
