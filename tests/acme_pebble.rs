//! Automatic HTTPS against a real Pebble (Debian `pebble` package), never a mock, through
//! swarmgate's real listeners (`swarmgate::app`).
//!
//! Each test starts its own upstream, swarmgate (HTTP + HTTPS on ephemeral loopback ports) and
//! Pebble + challtestsrv validating against those listeners. The ACME manager is wired the way the
//! app wires it: the live `CertMap`/`Challenges` of the proxy and the wanted names published by the
//! route table.

#[path = "support/pebble.rs"]
mod pebble;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use pebble::{dns_names, eventually, http_get, serial, served_leaf, tls_connect, Pebble, Upstream};
use rustls::pki_types::CertificateDer;
use swarmgate::acme::{AcmeManager, CertStatus};
use swarmgate::config::{AcmeConfig, ChallengeKind, Config, Dur};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

const ISSUE_TIMEOUT: Duration = Duration::from_secs(60);

/// swarmgate config routing `hosts` (tls auto) to `upstream`, listening on ephemeral ports.
fn proxy_config(hosts: &[&str], upstream: SocketAddr) -> Config {
    let hosts = hosts.iter().map(|h| format!("{h:?}")).collect::<Vec<_>>().join(", ");
    let text = format!(
        "[listen]\nhttp = \"127.0.0.1:0\"\nhttps = \"127.0.0.1:0\"\n\n[docker]\nenabled = false\n\n[[routes]]\nhosts = [{hosts}]\nupstreams = [\"{upstream}\"]\npass_host = true\ntls = \"auto\"\n"
    );
    Config::parse(&text, Path::new("test.toml")).unwrap()
}

struct Env {
    pebble: Pebble,
    upstream: Upstream,
    proxy: swarmgate::app::Running,
    storage: tempfile::TempDir,
}

impl Env {
    async fn start(hosts: &[&str], validity: Option<u64>) -> Env {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let upstream = Upstream::start().await;
        let proxy = swarmgate::app::start(proxy_config(hosts, upstream.addr), None).await.unwrap();
        let (http, https) = (proxy.http_addr.unwrap(), proxy.https_addr.unwrap());
        let pebble = Pebble::start(http.port(), https.port(), validity).await;
        Env { pebble, upstream, proxy, storage: tempfile::tempdir().unwrap() }
    }

    /// Routes `hosts` from now on (as a config reload or a label change would).
    fn set_hosts(&self, hosts: &[&str]) {
        self.proxy.publisher.set_file_routes(proxy_config(hosts, self.upstream.addr).route_specs());
    }

    fn config(&self, kinds: Vec<ChallengeKind>) -> AcmeConfig {
        AcmeConfig {
            enabled: true,
            directory: self.pebble.directory_url(),
            ca_root: Some(self.pebble.listener_ca()),
            challenges: kinds,
            backoff_min: Dur(Duration::from_secs(1)),
            backoff_max: Dur(Duration::from_secs(3)),
            ..AcmeConfig::default()
        }
    }

    fn manager(&self, cfg: AcmeConfig) -> AcmeManager {
        let state = &self.proxy.state;
        AcmeManager::new(cfg, self.storage.path().join("acme"), state.certs.clone(), state.challenges.clone()).unwrap()
    }

    /// Starts `manager` on the names the proxy's route table wants.
    fn run(&self, manager: AcmeManager) -> Acme {
        run_on(manager, self.proxy.publisher.acme_names())
    }

    fn tls_addr(&self) -> SocketAddr {
        self.proxy.https_addr.unwrap()
    }
}

/// A running manager; stopped (and awaited) by `stop`.
struct Acme {
    manager: AcmeManager,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

fn run_on(manager: AcmeManager, rx: watch::Receiver<BTreeSet<String>>) -> Acme {
    let shutdown = CancellationToken::new();
    let m = manager.clone();
    let token = shutdown.clone();
    let task = tokio::spawn(async move { m.run(rx, token).await });
    Acme { manager, shutdown, task }
}

impl Acme {
    async fn stop(self) -> AcmeManager {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(10), self.task).await.expect("manager stops promptly").unwrap();
        self.manager
    }

    fn status(&self, name: &str) -> Option<CertStatus> {
        self.manager.status().into_iter().find(|s| s.name == name)
    }

    /// Waits until `name` has a certificate with no order running.
    async fn issued(&self, name: &str) -> CertStatus {
        eventually(ISSUE_TIMEOUT, &format!("certificate for {name}"), || async {
            self.status(name).filter(|s| s.not_after.is_some() && !s.order_in_flight && s.last_error.is_none())
        })
        .await
    }
}

/// Handshake with SNI `name` trusting only `root`, then GET / through the listener.
async fn get_over_tls(
    addr: SocketAddr,
    root: &CertificateDer<'static>,
    name: &str,
) -> (CertificateDer<'static>, u16, String) {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(root.clone()).unwrap();
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut tls =
        tls_connect(stream, roots, name, &[b"http/1.1"]).await.unwrap_or_else(|e| panic!("TLS to {name}: {e}"));
    let leaf = tls.get_ref().1.peer_certificates().unwrap()[0].clone().into_owned();
    let (status, body) = http_get(&mut tls, name, "/", true).await.unwrap();
    (leaf, status, String::from_utf8_lossy(&body).into_owned())
}

fn render_metrics(m: &AcmeManager) -> String {
    let mut out = String::new();
    swarmgate::admin::metrics::MetricSource::render(&*m.metrics(), &mut out);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http01_issues_a_certificate_that_verifies_against_pebbles_root() {
    let t0 = Instant::now();
    let name = "web.example.com";
    let env = Env::start(&[name], None).await;
    let r = env.run(env.manager(env.config(vec![ChallengeKind::Http01])));
    let st = r.issued(name).await;
    eprintln!("TIMING http01: issued {:?} after start", t0.elapsed());
    assert_eq!(st.names, vec![name.to_string()]);
    assert!(st.issuer.as_deref().unwrap_or("").contains("Pebble"), "{st:?}");
    assert_eq!(st.orders, 1);

    let root = env.pebble.issuing_root().await;
    let (leaf, status, body) = get_over_tls(env.tls_addr(), &root, name).await;
    assert_eq!(dns_names(&leaf), vec![name.to_string()]);
    assert_eq!(status, 200);
    assert_eq!(body, format!("hello {name}"), "answered by the upstream through the proxy");

    // Challenge answers are withdrawn once the order is done.
    assert!(env.proxy.state.challenges.http01.is_empty());
    // Storage: key + chain in one private file, account stored.
    let pem = env.storage.path().join(format!("acme/certs/{name}.pem"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&pem).unwrap().permissions().mode() & 0o777, 0o600);
        let acct = env.storage.path().join("acme/account.json");
        assert_eq!(std::fs::metadata(&acct).unwrap().permissions().mode() & 0o777, 0o600);
    }
    // Metrics show the expiry and the order.
    let out = render_metrics(&r.manager);
    assert!(out.contains(&format!("swarmgate_acme_certificate_expiry_timestamp_seconds{{name=\"{name}\"}}")), "{out}");
    assert!(out.contains("swarmgate_acme_orders_total 1"), "{out}");
    assert!(out.contains("swarmgate_acme_order_failures_total 0"), "{out}");
    r.stop().await;
    eprintln!("TIMING http01 total: {:?}", t0.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_alpn01_issues_a_certificate_through_the_sni_resolver() {
    let t0 = Instant::now();
    let name = "alpn.example.com";
    let env = Env::start(&[name], None).await;
    let r = env.run(env.manager(env.config(vec![ChallengeKind::TlsAlpn01])));
    let st = r.issued(name).await;
    eprintln!("TIMING tls-alpn-01: issued {:?} after start", t0.elapsed());
    assert_eq!(st.names, vec![name.to_string()]);
    assert!(env.proxy.state.challenges.tls_alpn01.is_empty(), "challenge certificate withdrawn");
    let root = env.pebble.issuing_root().await;
    let (leaf, status, body) = get_over_tls(env.tls_addr(), &root, name).await;
    assert_eq!(dns_names(&leaf), vec![name.to_string()]);
    assert_eq!(status, 200);
    assert_eq!(body, format!("hello {name}"));
    r.stop().await;
    eprintln!("TIMING tls-alpn-01 total: {:?}", t0.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_serves_the_stored_certificate_without_ordering() {
    let t0 = Instant::now();
    let name = "stored.example.com";
    let mut env = Env::start(&[name], None).await;
    let cfg = env.config(vec![ChallengeKind::Http01, ChallengeKind::TlsAlpn01]);
    let r = env.run(env.manager(cfg.clone()));
    r.issued(name).await;
    let root = env.pebble.issuing_root().await;
    let first = served_leaf(env.tls_addr(), &root, name).await.unwrap();
    r.stop().await;

    // The CA is gone: whatever serves now comes from storage, without any network call.
    env.pebble.stop();
    let t_restart = Instant::now();
    let proxy2 = swarmgate::app::start(proxy_config(&[name], env.upstream.addr), None).await.unwrap();
    let state2 = proxy2.state.clone();
    let m2 = AcmeManager::new(cfg, env.storage.path().join("acme"), state2.certs.clone(), state2.challenges.clone())
        .unwrap();
    assert!(state2.certs.has(name), "stored certificate is live right after new()");
    let (again, status, _) = get_over_tls(proxy2.https_addr.unwrap(), &root, name).await;
    assert_eq!(serial(&again), serial(&first));
    assert_eq!(status, 200);
    eprintln!("TIMING restart: stored cert served {:?} after the new process started", t_restart.elapsed());

    let r2 = run_on(m2, proxy2.publisher.acme_names());
    eventually(Duration::from_secs(5), "manager sees the wanted name", || async {
        r2.status(name).filter(|s| s.wanted)
    })
    .await;
    // Nothing is due: give the loop a moment in which an order would have started.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let st = r2.status(name).unwrap();
    assert_eq!(st.orders, 0, "{st:?}");
    assert_eq!(r2.manager.orders_started(), 0);
    assert!(st.last_error.is_none(), "{st:?}");
    assert!(render_metrics(&r2.manager).contains("swarmgate_acme_orders_total 0"));
    r2.stop().await;
    proxy2.shutdown().await;
    eprintln!("TIMING restart total: {:?}", t0.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewal_swaps_the_certificate_while_a_connection_stays_open() {
    let t0 = Instant::now();
    let name = "renew.example.com";
    // 20 s certificates renewed at half their life.
    let env = Env::start(&[name], Some(20)).await;
    let cfg = AcmeConfig { renew_fraction: 0.5, ..env.config(vec![ChallengeKind::Http01]) };
    let r = env.run(env.manager(cfg));
    r.issued(name).await;
    let root = env.pebble.issuing_root().await;

    let mut roots = rustls::RootCertStore::empty();
    roots.add(root.clone()).unwrap();
    let stream = tokio::net::TcpStream::connect(env.tls_addr()).await.unwrap();
    let mut open = tls_connect(stream, roots, name, &[b"http/1.1"]).await.unwrap();
    let old_serial = serial(&open.get_ref().1.peer_certificates().unwrap()[0]);
    assert_eq!(http_get(&mut open, name, "/", false).await.unwrap().0, 200);

    let t_wait = Instant::now();
    let new_serial = eventually(Duration::from_secs(45), "a renewed certificate", || async {
        let s = serial(&served_leaf(env.tls_addr(), &root, name).await.ok()?);
        (s != old_serial).then_some(s)
    })
    .await;
    eprintln!("TIMING renewal: new certificate served {:?} after the first was checked", t_wait.elapsed());
    assert_ne!(new_serial, old_serial);
    // The connection opened before the swap still works, on its original certificate.
    let (status, body) = http_get(&mut open, name, "/", false).await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(String::from_utf8_lossy(&body), format!("hello {name}"));
    assert_eq!(serial(&open.get_ref().1.peer_certificates().unwrap()[0]), old_serial);
    let st = r.status(name).unwrap();
    assert!(st.orders >= 2, "{st:?}");
    r.stop().await;
    eprintln!("TIMING renewal total: {:?}", t0.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_keeps_serving_backs_off_and_recovers() {
    let t0 = Instant::now();
    let (a, b) = ("a.example.com", "b.example.com");
    let mut env = Env::start(&[a], None).await;
    let r = env.run(env.manager(env.config(vec![ChallengeKind::Http01])));
    r.issued(a).await;
    let root = env.pebble.issuing_root().await;
    let a_serial = serial(&served_leaf(env.tls_addr(), &root, a).await.unwrap());

    env.pebble.stop();
    env.set_hosts(&[a, b]);
    let failed = eventually(Duration::from_secs(30), "a visible failure for b", || async {
        r.status(b).filter(|s| s.consecutive_failures >= 1 && s.last_error.is_some())
    })
    .await;
    eprintln!("TIMING outage: failure visible {:?} after start; error: {:?}", t0.elapsed(), failed.last_error);
    assert!(failed.not_after.is_none());
    assert!(failed.backoff_until.is_some() || failed.order_in_flight, "{failed:?}");
    // The existing certificate keeps serving during the outage, through the proxy.
    let (leaf, status, _) = get_over_tls(env.tls_addr(), &root, a).await;
    assert_eq!(serial(&leaf), a_serial);
    assert_eq!(status, 200);
    let out = render_metrics(&r.manager);
    assert!(out.contains(&format!("swarmgate_acme_consecutive_failures{{name=\"{b}\"}} ")), "{out}");
    assert!(!out.contains("swarmgate_acme_order_failures_total 0"), "{out}");
    // The backoff is persisted (a restart would honour it).
    let state = std::fs::read_to_string(env.storage.path().join(format!("acme/state/{b}.json"))).unwrap();
    assert!(state.contains("\"backoff_until\": 1"), "{state}");

    // Pebble returns (a fresh CA: new root, our account unknown to it) and b gets issued.
    let t_back = Instant::now();
    env.pebble.restart().await;
    let st = r.issued(b).await;
    eprintln!("TIMING outage: b issued {:?} after Pebble came back", t_back.elapsed());
    assert_eq!(st.consecutive_failures, 0);
    let new_root = env.pebble.issuing_root().await;
    let (leaf, status, _) = get_over_tls(env.tls_addr(), &new_root, b).await;
    assert_eq!(dns_names(&leaf), vec![b.to_string()]);
    assert_eq!(status, 200);
    r.stop().await;
    eprintln!("TIMING outage total: {:?}", t0.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_added_to_the_routes_while_running_gets_a_certificate() {
    let t0 = Instant::now();
    let (first, added) = ("first.example.com", "added.example.com");
    let env = Env::start(&[first], None).await;
    let r = env.run(env.manager(env.config(vec![ChallengeKind::Http01, ChallengeKind::TlsAlpn01])));
    r.issued(first).await;
    let t_add = Instant::now();
    env.set_hosts(&[first, added, "*.wild.example.com"]);
    r.issued(added).await;
    eprintln!("TIMING added host issued {:?} after it was routed", t_add.elapsed());
    let root = env.pebble.issuing_root().await;
    let (leaf, status, body) = get_over_tls(env.tls_addr(), &root, added).await;
    assert_eq!(dns_names(&leaf), vec![added.to_string()]);
    assert_eq!((status, body.as_str()), (200, format!("hello {added}").as_str()));
    assert!(r.status("*.wild.example.com").is_none(), "wildcards are never ordered");
    assert_eq!(r.manager.orders_started(), 2);
    r.stop().await;
    eprintln!("TIMING added total: {:?}", t0.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_covered_by_static_certificates_or_not_public_are_never_ordered() {
    let t0 = Instant::now();
    let env = Env::start(&["ok.example.com"], None).await;
    let ck = rcgen::generate_simple_self_signed(vec!["static.example.com".to_string()]).unwrap();
    let stat = swarmgate::tls::LiveCert::from_pem(
        ck.cert.pem().as_bytes(),
        ck.signing_key.serialize_pem().as_bytes(),
        swarmgate::tls::CertSource::Static("static.pem".into()),
    )
    .unwrap();
    env.proxy.state.certs.set_static(swarmgate::tls::StaticCerts::new(vec![stat]));
    // Fed directly (the route table already filters these): the manager's own checks must hold.
    let wanted: BTreeSet<String> = ["ok.example.com", "static.example.com", "*.example.com", "127.0.0.1", "localhost"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let (_tx, rx) = watch::channel(wanted);
    let r = run_on(env.manager(env.config(vec![ChallengeKind::Http01])), rx);
    r.issued("ok.example.com").await;
    assert_eq!(r.status("static.example.com").map(|s| s.orders), Some(0));
    for n in ["*.example.com", "127.0.0.1", "localhost"] {
        assert!(r.status(n).is_none(), "{n}");
    }
    assert_eq!(r.manager.orders_started(), 1);
    r.stop().await;
    eprintln!("TIMING statics total: {:?}", t0.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swarmgate_with_acme_enabled_in_its_config_gets_and_reports_certificates() {
    let t0 = Instant::now();
    let name = "app.example.com";
    let upstream = Upstream::start().await;
    let (http_port, https_port) = (pebble::free_port(), pebble::free_port());
    let pebble = Pebble::start(http_port, https_port, None).await;
    let storage = tempfile::tempdir().unwrap();
    let text = format!(
        r#"
storage = {storage:?}

[listen]
http = "127.0.0.1:{http_port}"
https = "127.0.0.1:{https_port}"
admin = "127.0.0.1:0"

[acme]
enabled = true
directory = "{directory}"
ca_root = {ca_root:?}
challenges = ["tls-alpn-01", "http-01"]
backoff_min = "1s"
backoff_max = "3s"

[docker]
enabled = false

[[routes]]
hosts = ["{name}"]
upstreams = ["{upstream}"]
pass_host = true
"#,
        storage = storage.path(),
        directory = pebble.directory_url(),
        ca_root = pebble.listener_ca(),
        upstream = upstream.addr,
    );
    let cfg = Config::parse(&text, Path::new("acme.toml")).unwrap();
    let proxy = swarmgate::app::start(cfg, None).await.unwrap();
    let https = proxy.https_addr.unwrap();
    let root = pebble.issuing_root().await;
    let leaf = eventually(ISSUE_TIMEOUT, "the certificate on the HTTPS listener", || async {
        served_leaf(https, &root, name).await.ok()
    })
    .await;
    eprintln!("TIMING app: certificate served {:?} after start", t0.elapsed());
    assert_eq!(dns_names(&leaf), vec![name.to_string()]);
    let (_, status, body) = get_over_tls(https, &root, name).await;
    assert_eq!((status, body.as_str()), (200, format!("hello {name}").as_str()));

    let admin = proxy.admin_addr.unwrap();
    let get_admin = |path: &'static str| async move {
        let mut s = tokio::net::TcpStream::connect(admin).await.unwrap();
        let (status, body) = http_get(&mut s, "admin", path, true).await.unwrap();
        assert_eq!(status, 200, "{path}");
        String::from_utf8(body).unwrap()
    };
    let certs: serde_json::Value = serde_json::from_str(&get_admin("/api/certificates").await).unwrap();
    let entry = certs["certificates"].as_array().unwrap().iter().find(|c| c["name"] == name).cloned();
    let entry = entry.unwrap_or_else(|| panic!("{certs}"));
    assert!(entry["not_after"].is_string() && entry["next_renewal"].is_string(), "{entry}");
    assert_eq!(entry["consecutive_failures"], 0);
    let metrics = get_admin("/metrics").await;
    assert!(metrics.contains("swarmgate_acme_orders_total 1"), "{metrics}");
    assert!(metrics.contains(&format!("swarmgate_acme_certificate_expiry_timestamp_seconds{{name=\"{name}\"}}")));
    assert!(storage.path().join(format!("acme/certs/{name}.pem")).exists());
    proxy.shutdown().await;
    eprintln!("TIMING app total: {:?}", t0.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stored_account_is_reused_after_a_restart() {
    let t0 = Instant::now();
    let (one, two) = ("one.example.com", "two.example.com");
    let env = Env::start(&[one], None).await;
    let cfg = env.config(vec![ChallengeKind::Http01]);
    let r = env.run(env.manager(cfg.clone()));
    r.issued(one).await;
    r.stop().await;
    let account_file = env.storage.path().join("acme/account.json");
    let account = std::fs::read(&account_file).unwrap();

    // A new manager on the same storage orders a new name with the same account.
    env.set_hosts(&[one, two]);
    let r2 = env.run(env.manager(cfg));
    r2.issued(two).await;
    assert_eq!(r2.manager.orders_started(), 1, "only the new name is ordered");
    assert_eq!(std::fs::read(&account_file).unwrap(), account, "no new account was created");
    r2.stop().await;
    eprintln!("TIMING account reuse total: {:?}", t0.elapsed());
}
