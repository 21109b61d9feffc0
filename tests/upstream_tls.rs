//! TLS to `https` upstreams, over real sockets against real TLS origins: verification (CA file,
//! server name, skip-verify, system roots), ALPN, keep-alive reuse, health checks over TLS, and
//! the label dialects that ask for it.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use http::StatusCode;
use support::client::get;
use support::gateway::Gateway;
use support::origin::Origin;
use support::pki::Ca;
use tokio::io::AsyncReadExt;

/// Certificates for one test: a CA the gateway is told about, the origin's leaf for
/// `app.internal` (no IP address in it), and a CA nobody trusts.
struct Pki {
    dir: tempfile::TempDir,
    ca_pem: PathBuf,
    other_ca_pem: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

/// The "system roots" of this test process: one unrelated CA, so that verifying against the
/// system roots is deterministic (and fails for the test CAs) whatever the machine trusts.
/// Set before any test can load the roots; every test sets the same value.
fn pin_system_roots() {
    static ONCE: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    ONCE.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("swarmgate-upstream-tls-roots-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("system-roots.pem");
        std::fs::write(&path, Ca::new().pem).unwrap();
        // SAFETY-free in practice: set once, before any thread of this binary reads it.
        std::env::set_var("SSL_CERT_FILE", &path);
        std::env::remove_var("SSL_CERT_DIR");
        path
    });
}

fn pki() -> Pki {
    pin_system_roots();
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new();
    let (cert, key) = ca.leaf(dir.path(), "origin", &["app.internal"], false);
    let ca_pem = dir.path().join("ca.pem");
    std::fs::write(&ca_pem, &ca.pem).unwrap();
    let other_ca_pem = dir.path().join("other-ca.pem");
    std::fs::write(&other_ca_pem, Ca::new().pem).unwrap();
    Pki { dir, ca_pem, other_ca_pem, cert, key }
}

async fn tls_origin(p: &Pki, alpn: &[&[u8]]) -> Origin {
    Origin::start_tls("tls-origin", &p.cert, &p.key, alpn).await
}

fn route(host: &str, origin: &Origin, upstream_tls: &str) -> String {
    format!("[[routes]]\nhosts = [\"{host}\"]\nupstreams = [\"{}\"]\nscheme = \"https\"\n{upstream_tls}\n", origin.addr)
}

fn toml_path(p: &Path) -> String {
    p.display().to_string().replace('\\', "\\\\")
}

#[tokio::test]
async fn https_upstream_with_a_ca_file_is_reached_over_verified_tls() {
    let p = pki();
    let origin = tls_origin(&p, &[b"http/1.1"]).await;
    let tls = format!("upstream_tls = {{ ca = \"{}\", server_name = \"app.internal\" }}", toml_path(&p.ca_pem));
    let gw = Gateway::start(&route("a.test", &origin, &tls)).await;
    let r = get(gw.http, "a.test", "/hello").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.text(), "tls-origin GET /hello");
    assert_eq!(origin.tls_stats.handshakes(), 1, "the origin saw a TLS connection");
    assert_eq!(origin.tls_stats.last_sni().as_deref(), Some("app.internal"), "SNI carries the server name");
    // The client's Host still reaches the upstream (pass_host defaults to true).
    assert_eq!(r.header("x-echo-host"), Some("a.test"));
}

#[tokio::test]
async fn an_untrusted_certificate_is_refused_unless_verification_is_skipped() {
    let p = pki();
    let origin = tls_origin(&p, &[b"http/1.1"]).await;
    let cfg = [
        // The system roots (pinned to an unrelated CA here) do not know the origin's CA.
        route("system.test", &origin, "upstream_tls = { server_name = \"app.internal\" }"),
        route(
            "other-ca.test",
            &origin,
            &format!("upstream_tls = {{ ca = \"{}\", server_name = \"app.internal\" }}", toml_path(&p.other_ca_pem)),
        ),
        // Portainer-style: self-signed, addressed by IP, no name to check.
        route("skip.test", &origin, "upstream_tls = { insecure_skip_verify = true }"),
    ]
    .concat();
    let gw = Gateway::start(&cfg).await;
    for host in ["system.test", "other-ca.test"] {
        let r = get(gw.http, host, "/").await;
        assert_eq!(r.status, StatusCode::BAD_GATEWAY, "{host}: {}", r.text());
    }
    assert_eq!(origin.hits(), 0, "no request reached an upstream that was not verified");
    let r = get(gw.http, "skip.test", "/").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(origin.hits(), 1);
}

#[tokio::test]
async fn the_certificate_must_name_the_server_name() {
    let p = pki();
    let origin = tls_origin(&p, &[b"http/1.1"]).await;
    let ca = toml_path(&p.ca_pem);
    let cfg = [
        route("wrong.test", &origin, &format!("upstream_tls = {{ ca = \"{ca}\", server_name = \"other.internal\" }}")),
        // No server name: the upstream's address, which the certificate does not carry.
        route("ip.test", &origin, &format!("upstream_tls = {{ ca = \"{ca}\" }}")),
        route("right.test", &origin, &format!("upstream_tls = {{ ca = \"{ca}\", server_name = \"app.internal\" }}")),
    ]
    .concat();
    let gw = Gateway::start(&cfg).await;
    assert_eq!(get(gw.http, "wrong.test", "/").await.status, StatusCode::BAD_GATEWAY);
    assert_eq!(get(gw.http, "ip.test", "/").await.status, StatusCode::BAD_GATEWAY);
    assert_eq!(get(gw.http, "right.test", "/").await.status, StatusCode::OK);
}

#[tokio::test]
async fn http2_is_used_when_the_upstream_offers_it_by_alpn() {
    let p = pki();
    let h2 = tls_origin(&p, &[b"h2", b"http/1.1"]).await;
    let h1 = tls_origin(&p, &[b"http/1.1"]).await;
    let skip = "upstream_tls = { insecure_skip_verify = true }";
    let gw = Gateway::start(&[route("h2.test", &h2, skip), route("h1.test", &h1, skip)].concat()).await;
    let r = get(gw.http, "h2.test", "/x").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let seen = &h2.seen()[0];
    assert_eq!(seen.version, http::Version::HTTP_2);
    // The client's host travels as `:authority` (what HTTP/2 servers read), not as the
    // endpoint's IP with a second, different `Host` header.
    assert_eq!(seen.authority.as_deref(), Some("h2.test"));
    assert_eq!(seen.headers.get("host"), None);
    assert_eq!(get(gw.http, "h1.test", "/x").await.status, StatusCode::OK);
    assert_eq!(h1.seen()[0].headers.get("host").unwrap(), "h1.test");
    assert_eq!(h1.seen()[0].version, http::Version::HTTP_11);
}

#[tokio::test]
async fn tls_connections_are_kept_alive_and_reused() {
    let p = pki();
    let h1 = tls_origin(&p, &[b"http/1.1"]).await;
    let h2 = tls_origin(&p, &[b"h2"]).await;
    let skip = "upstream_tls = { insecure_skip_verify = true }";
    let gw = Gateway::start(&[route("h1.test", &h1, skip), route("h2.test", &h2, skip)].concat()).await;
    for i in 0..5 {
        for host in ["h1.test", "h2.test"] {
            let r = get(gw.http, host, &format!("/{i}")).await;
            assert_eq!(r.status, StatusCode::OK, "{host}: {}", r.text());
        }
    }
    assert_eq!(h1.hits(), 5);
    assert_eq!(h1.tls_stats.handshakes(), 1, "five requests, one TLS connection (HTTP/1.1 keep-alive)");
    assert_eq!(h2.tls_stats.handshakes(), 1, "five requests, one TLS connection (HTTP/2)");
}

#[tokio::test]
async fn the_pool_survives_a_config_reload() {
    let p = pki();
    let origin = tls_origin(&p, &[b"http/1.1"]).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("swarmgate.toml");
    let skip = "upstream_tls = { insecure_skip_verify = true }";
    let gw = Gateway::start_with_path(&route("a.test", &origin, skip), Some(path.clone())).await;
    assert_eq!(get(gw.http, "a.test", "/").await.status, StatusCode::OK);
    // Another route appears: the table is rebuilt, the TLS profile of a.test is unchanged.
    let text =
        std::fs::read_to_string(&path).unwrap() + "[[routes]]\nhosts = [\"b.test\"]\nrespond = { body = \"b\" }\n";
    std::fs::write(&path, text).unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while get(gw.http, "b.test", "/").await.status != StatusCode::OK {
        assert!(tokio::time::Instant::now() < deadline, "the reload was not applied");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(get(gw.http, "a.test", "/").await.status, StatusCode::OK);
    assert_eq!(origin.tls_stats.handshakes(), 1, "the new table reused the pooled TLS connection");
}

#[tokio::test]
async fn health_checks_of_an_https_route_speak_tls() {
    let p = pki();
    let origin = tls_origin(&p, &[b"http/1.1"]).await;
    let cfg = format!(
        "{}[routes.health]\npath = \"/healthz\"\ninterval = \"100ms\"\n",
        route("a.test", &origin, "upstream_tls = { insecure_skip_verify = true }")
    );
    let gw = Gateway::start(&cfg).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while origin.seen().iter().filter(|s| s.uri == "/healthz").count() < 3 {
        assert!(tokio::time::Instant::now() < deadline, "no health probe reached the TLS origin");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(origin.tls_stats.failed(), 0, "no probe was sent in cleartext");
    // Probes passed, so the endpoint is in rotation (a failed probe would answer 503).
    let r = get(gw.http, "a.test", "/").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
}

#[tokio::test]
async fn an_https_upstream_gets_a_tls_handshake_never_cleartext() {
    // Like `openssl s_server`: look at the first bytes of what arrives.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let first = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut buf = [0u8; 3];
        s.read_exact(&mut buf).await.unwrap();
        buf
    });
    let cfg = format!("[[routes]]\nhosts = [\"a.test\"]\nupstreams = [\"{addr}\"]\nscheme = \"https\"\n");
    let gw = Gateway::start(&cfg).await;
    let r = get(gw.http, "a.test", "/").await;
    assert_eq!(r.status, StatusCode::BAD_GATEWAY);
    let bytes = tokio::time::timeout(Duration::from_secs(5), first).await.unwrap().unwrap();
    assert_ne!(&bytes, b"GET", "the request went out in cleartext");
    assert_eq!(bytes[0], 0x16, "a TLS handshake record");
    assert_eq!(bytes[1], 0x03, "TLS record version");
}

#[tokio::test]
async fn https_without_upstream_tls_is_verified_against_the_system_roots() {
    // The pre-existing spelling (`scheme = "https"` alone) must now verify, not send cleartext.
    let p = pki();
    let origin = tls_origin(&p, &[b"http/1.1"]).await;
    let gw = Gateway::start(&route("a.test", &origin, "")).await;
    assert_eq!(get(gw.http, "a.test", "/").await.status, StatusCode::BAD_GATEWAY);
    assert_eq!(origin.tls_stats.failed(), 1);
    // swarmgate spoke TLS and rejected the certificate (its alert), rather than sending bytes
    // that are no TLS at all.
    let why = origin.tls_stats.last_error().unwrap_or_default();
    assert!(why.contains("alert"), "{why}");
    assert_eq!(origin.hits(), 0);
}

#[tokio::test]
async fn an_unreadable_ca_file_costs_only_its_route() {
    let p = pki();
    let origin = tls_origin(&p, &[b"http/1.1"]).await;
    let missing = p.dir.path().join("missing.pem");
    let garbage = p.dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a certificate").unwrap();
    let cfg = [
        route("missing.test", &origin, &format!("upstream_tls = {{ ca = \"{}\" }}", toml_path(&missing))),
        route("garbage.test", &origin, &format!("upstream_tls = {{ ca = \"{}\" }}", toml_path(&garbage))),
        route("good.test", &origin, "upstream_tls = { insecure_skip_verify = true }"),
    ]
    .concat();
    let gw = Gateway::start(&cfg).await;
    assert_eq!(get(gw.http, "good.test", "/").await.status, StatusCode::OK);
    assert_eq!(get(gw.http, "missing.test", "/").await.status, StatusCode::NOT_FOUND);
    assert_eq!(get(gw.http, "garbage.test", "/").await.status, StatusCode::NOT_FOUND);
    let problems = get(gw.admin.unwrap(), "admin", "/api/problems").await.text();
    assert!(problems.contains("routes[0]") && problems.contains("missing.pem"), "{problems}");
    assert!(problems.contains("routes[1]") && problems.contains("no PEM certificate"), "{problems}");
}

#[test]
fn upstream_tls_errors_name_their_key() {
    let parse = |extra: &str| {
        let text = format!("[[routes]]\nhosts = [\"a.test\"]\nupstreams = [\"127.0.0.1:1\"]\n{extra}\n");
        swarmgate::config::Config::parse(&text, Path::new("t.toml")).map(|_| ()).unwrap_err().to_string()
    };
    let e = parse("upstream_tls = { insecure_skip_verify = true }");
    assert!(e.contains("routes[0].upstream_tls") && e.contains("scheme"), "{e}");
    let e = parse("scheme = \"https\"\nupstream_tls = { server_name = \"not a name\" }");
    assert!(e.contains("routes[0].upstream_tls.server_name"), "{e}");
    let e = parse("scheme = \"https\"\nupstream_tls = { ca = \"ca.pem\", insecure_skip_verify = true }");
    assert!(e.contains("routes[0].upstream_tls.insecure_skip_verify"), "{e}");
    let e = parse("scheme = \"https\"\nupstream_tls = { verify = false }");
    assert!(e.contains("verify"), "{e}");
}

#[tokio::test]
async fn without_pass_host_the_upstream_sees_its_own_address_once() {
    let p = pki();
    let h1 = tls_origin(&p, &[b"http/1.1"]).await;
    let h2 = tls_origin(&p, &[b"h2"]).await;
    let tls = "upstream_tls = { insecure_skip_verify = true }\npass_host = false";
    let gw = Gateway::start(&[route("h1.test", &h1, tls), route("h2.test", &h2, tls)].concat()).await;
    assert_eq!(get(gw.http, "h1.test", "/").await.status, StatusCode::OK);
    assert_eq!(get(gw.http, "h2.test", "/").await.status, StatusCode::OK);
    assert_eq!(h1.seen()[0].headers.get("host").unwrap(), &h1.addr.to_string());
    assert_eq!(h2.seen()[0].authority.as_deref(), Some(h2.addr.to_string().as_str()));
    assert_eq!(h2.seen()[0].headers.get("host"), None);
}

// ---------------------------------------------------------------------------------------------
// Labels: the three dialects map onto the same `upstream_tls` fields.

mod labels {
    use std::collections::BTreeMap;
    use std::path::PathBuf;

    use swarmgate::labels::{translate, LabelsConfig, ServiceInput, Translation};
    use swarmgate::model::{RouteSpec, UpstreamScheme, UpstreamTls};

    fn svc(name: &str, labels: &[(&str, &str)]) -> ServiceInput {
        ServiceInput {
            id: format!("id-{name}"),
            name: name.into(),
            labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            ports: vec![],
        }
    }

    fn one_route<'a>(t: &'a Translation, service: &str) -> &'a RouteSpec {
        let rs: Vec<_> = t.routes.iter().filter(|r| r.id.starts_with(&format!("svc/{service}/"))).collect();
        assert_eq!(rs.len(), 1, "routes {:#?}\nproblems {:#?}", t.routes, t.problems);
        rs[0]
    }

    fn tls_of(r: &RouteSpec) -> (UpstreamScheme, UpstreamTls) {
        let up = r.upstream().unwrap();
        (up.scheme, up.tls.clone())
    }

    fn problem_for<'a>(t: &'a Translation, service: &str, key: &str) -> &'a str {
        match t.problems.iter().find(|p| p.source == service && p.key == key) {
            Some(p) => &p.message,
            None => panic!("no problem for {service} {key}: {:#?}", t.problems),
        }
    }

    fn verified(ca: &str, name: &str) -> UpstreamTls {
        UpstreamTls { ca: Some(PathBuf::from(ca)), server_name: Some(name.into()), insecure_skip_verify: false }
    }

    fn skip() -> UpstreamTls {
        UpstreamTls { insecure_skip_verify: true, ..Default::default() }
    }

    #[test]
    fn native_labels() {
        let t = translate(
            &[
                svc(
                    "app",
                    &[
                        ("swarmgate.host", "app.example.com"),
                        ("swarmgate.port", "8443"),
                        ("swarmgate.scheme", "https"),
                        ("swarmgate.upstream_tls.ca", "/run/secrets/ca.pem"),
                        ("swarmgate.upstream_tls.server_name", "App.Internal"),
                    ],
                ),
                svc(
                    "portainer",
                    &[
                        ("swarmgate.host", "portainer.example.com"),
                        ("swarmgate.port", "9443"),
                        ("swarmgate.scheme", "https"),
                        ("swarmgate.upstream_tls.insecure_skip_verify", "true"),
                    ],
                ),
                svc(
                    "relative",
                    &[
                        ("swarmgate.host", "r.example.com"),
                        ("swarmgate.scheme", "https"),
                        ("swarmgate.upstream_tls.ca", "ca.pem"),
                    ],
                ),
                svc(
                    "cleartext",
                    &[("swarmgate.host", "c.example.com"), ("swarmgate.upstream_tls.insecure_skip_verify", "true")],
                ),
            ],
            &LabelsConfig::default(),
        );
        assert_eq!(
            tls_of(one_route(&t, "app")),
            (UpstreamScheme::Https, verified("/run/secrets/ca.pem", "app.internal"))
        );
        assert_eq!(tls_of(one_route(&t, "portainer")), (UpstreamScheme::Https, skip()));
        assert!(problem_for(&t, "relative", "swarmgate.upstream_tls.ca").contains("absolute path"));
        assert!(problem_for(&t, "cleartext", "swarmgate.upstream_tls.insecure_skip_verify").contains("scheme=https"));
        assert!(!t.routes.iter().any(|r| r.id.starts_with("svc/relative/") || r.id.starts_with("svc/cleartext/")));
    }

    #[test]
    fn caddy_transport_http_tls_options() {
        let t = translate(
            &[
                svc(
                    "app",
                    &[
                        ("caddy", "app.example.com"),
                        ("caddy.reverse_proxy", "{{upstreams 8443}}"),
                        ("caddy.reverse_proxy.transport", "http"),
                        ("caddy.reverse_proxy.transport.tls_server_name", "app.internal"),
                        ("caddy.reverse_proxy.transport.tls_trusted_ca_certs", "/run/secrets/ca.pem"),
                    ],
                ),
                svc(
                    "portainer",
                    &[
                        ("caddy", "portainer.example.com"),
                        ("caddy.reverse_proxy", "{{upstreams https 9443}}"),
                        ("caddy.reverse_proxy.transport", "http"),
                        ("caddy.reverse_proxy.transport.tls_insecure_skip_verify", ""),
                    ],
                ),
                svc(
                    "pool",
                    &[
                        ("caddy", "pool.example.com"),
                        ("caddy.reverse_proxy", "{{upstreams https 443}}"),
                        ("caddy.reverse_proxy.transport", "http"),
                        ("caddy.reverse_proxy.transport.tls_trust_pool", "file /run/secrets/ca.pem"),
                        ("caddy.reverse_proxy.transport.tls_server_name", "pool.internal"),
                    ],
                ),
                svc(
                    "placeholder",
                    &[
                        ("caddy", "p.example.com"),
                        ("caddy.reverse_proxy", "{{upstreams https 443}}"),
                        ("caddy.reverse_proxy.transport", "http"),
                        ("caddy.reverse_proxy.transport.tls_server_name", "{http.request.host}"),
                    ],
                ),
            ],
            &LabelsConfig::default(),
        );
        // Any tls_* option turns TLS on, as in Caddy, even with {{upstreams 8443}}.
        assert_eq!(
            tls_of(one_route(&t, "app")),
            (UpstreamScheme::Https, verified("/run/secrets/ca.pem", "app.internal"))
        );
        assert_eq!(tls_of(one_route(&t, "portainer")), (UpstreamScheme::Https, skip()));
        assert_eq!(
            tls_of(one_route(&t, "pool")),
            (UpstreamScheme::Https, verified("/run/secrets/ca.pem", "pool.internal"))
        );
        assert!(!t.routes.iter().any(|r| r.id.starts_with("svc/placeholder/")), "{:#?}", t.routes);
        let p = problem_for(&t, "placeholder", "caddy.reverse_proxy.transport.tls_server_name");
        assert!(p.contains("placeholders"), "{p}");
    }

    #[test]
    fn traefik_servers_transports_come_from_swarmgate_config() {
        let service = |name: &str, transport: Option<&str>| {
            let mut labels = vec![
                ("traefik.enable".to_owned(), "true".to_owned()),
                (format!("traefik.http.routers.{name}.rule"), format!("Host(`{name}.example.com`)")),
                (format!("traefik.http.services.{name}.loadbalancer.server.port"), "9443".to_owned()),
                (format!("traefik.http.services.{name}.loadbalancer.server.scheme"), "https".to_owned()),
            ];
            if let Some(t) = transport {
                labels.push((format!("traefik.http.services.{name}.loadbalancer.serverstransport"), t.to_owned()));
            }
            ServiceInput { id: name.into(), name: name.into(), labels: labels.into_iter().collect(), ports: vec![] }
        };
        let services = [
            service("portainer", Some("insecure@file")),
            service("plain", None),
            service("missing", Some("nope@file")),
        ];
        let mut cfg = LabelsConfig {
            traefik_servers_transports: BTreeMap::from([("insecure".to_owned(), skip())]),
            ..Default::default()
        };
        let t = translate(&services, &cfg);
        assert_eq!(tls_of(one_route(&t, "portainer")), (UpstreamScheme::Https, skip()));
        assert_eq!(tls_of(one_route(&t, "plain")), (UpstreamScheme::Https, UpstreamTls::default()));
        let p = problem_for(&t, "missing", "traefik.http.services.missing.loadbalancer.serverstransport");
        assert!(p.contains("traefik_servers_transports.nope") && p.contains("not served"), "{p}");
        assert!(!t.routes.iter().any(|r| r.id.starts_with("svc/missing/")));
        // Traefik's `--serverstransport.insecureskipverify=true`: the `default` entry.
        cfg.traefik_servers_transports.insert("default".into(), verified("/ca.pem", "x.internal"));
        let t = translate(&services, &cfg);
        assert_eq!(tls_of(one_route(&t, "plain")), (UpstreamScheme::Https, verified("/ca.pem", "x.internal")));
    }
}

#[tokio::test]
async fn a_named_upstream_is_verified_by_its_name() {
    pin_system_roots();
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new();
    let (cert, key) = ca.leaf(dir.path(), "localhost", &["localhost"], false);
    let ca_pem = dir.path().join("ca.pem");
    std::fs::write(&ca_pem, &ca.pem).unwrap();
    let origin = Origin::start_tls("named", &cert, &key, &[b"http/1.1"]).await;
    let cfg = format!(
        "[[routes]]\nhosts = [\"a.test\"]\nupstreams = [\"localhost:{}\"]\nscheme = \"https\"\n\
         upstream_tls = {{ ca = \"{}\" }}\n",
        origin.addr.port(),
        toml_path(&ca_pem)
    );
    let gw = Gateway::start(&cfg).await;
    let r = get(gw.http, "a.test", "/").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(origin.tls_stats.last_sni().as_deref(), Some("localhost"));
}
