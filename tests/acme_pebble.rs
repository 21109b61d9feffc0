//! Automatic HTTPS against a real Pebble (Debian `pebble` package), never a mock.
//!
//! Each test starts its own Pebble + challtestsrv on free loopback ports. Pebble validates
//! against the listeners that serve swarmgate's `tls::Challenges` and `tls::server_config`.

#[path = "support/pebble.rs"]
mod pebble;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pebble::{
    dns_names, eventually, http_get, serial, served_leaf, tls_connect, Pebble, Responder,
};
use rustls::pki_types::CertificateDer;
use swarmgate::acme::{AcmeManager, CertStatus};
use swarmgate::config::{AcmeConfig, ChallengeKind, Dur};
use swarmgate::tls::{CertMap, Challenges};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

const ISSUE_TIMEOUT: Duration = Duration::from_secs(60);

struct Env {
    pebble: Pebble,
    responder: Responder,
    certs: Arc<CertMap>,
    challenges: Arc<Challenges>,
    storage: tempfile::TempDir,
}

impl Env {
    async fn start(validity: Option<u64>) -> Env {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let certs = Arc::new(CertMap::new());
        let challenges = Arc::new(Challenges::default());
        let responder = Responder::start(certs.clone(), challenges.clone()).await;
        let pebble = Pebble::start(
            responder.http_addr.port(),
            responder.tls_addr.port(),
            validity,
        )
        .await;
        Env {
            pebble,
            responder,
            certs,
            challenges,
            storage: tempfile::tempdir().unwrap(),
        }
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
        AcmeManager::new(
            cfg,
            self.storage.path().join("acme"),
            self.certs.clone(),
            self.challenges.clone(),
        )
        .unwrap()
    }

    fn tls_addr(&self) -> SocketAddr {
        self.responder.tls_addr
    }
}

/// A running manager; stopped (and awaited) by `stop`.
struct Running {
    manager: AcmeManager,
    names: watch::Sender<BTreeSet<String>>,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

fn names(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn run(manager: AcmeManager, wanted: &[&str]) -> Running {
    let (tx, rx) = watch::channel(names(wanted));
    let shutdown = CancellationToken::new();
    let m = manager.clone();
    let token = shutdown.clone();
    let task = tokio::spawn(async move { m.run(rx, token).await });
    Running {
        manager,
        names: tx,
        shutdown,
        task,
    }
}

impl Running {
    async fn stop(self) -> AcmeManager {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("manager stops promptly")
            .unwrap();
        self.manager
    }

    fn status(&self, name: &str) -> Option<CertStatus> {
        self.manager.status().into_iter().find(|s| s.name == name)
    }

    /// Waits until `name` has a certificate with no order running.
    async fn issued(&self, name: &str) -> CertStatus {
        eventually(
            ISSUE_TIMEOUT,
            &format!("certificate for {name}"),
            || async {
                self.status(name).filter(|s| {
                    s.not_after.is_some() && !s.order_in_flight && s.last_error.is_none()
                })
            },
        )
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
    let mut tls = tls_connect(stream, roots, name, &[b"http/1.1"])
        .await
        .unwrap_or_else(|e| panic!("TLS to {name}: {e}"));
    let leaf = tls.get_ref().1.peer_certificates().unwrap()[0]
        .clone()
        .into_owned();
    let (status, body) = http_get(&mut tls, name, "/", true).await.unwrap();
    (leaf, status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http01_issues_a_certificate_that_verifies_against_pebbles_root() {
    let t0 = Instant::now();
    let env = Env::start(None).await;
    let name = "web.example.com";
    let r = run(
        env.manager(env.config(vec![ChallengeKind::Http01])),
        &[name],
    );
    let st = r.issued(name).await;
    assert_eq!(st.names, vec![name.to_string()]);
    assert!(
        st.issuer.as_deref().unwrap_or("").contains("Pebble"),
        "{st:?}"
    );
    assert_eq!(st.orders, 1);

    let root = env.pebble.issuing_root().await;
    let (leaf, status, body) = get_over_tls(env.tls_addr(), &root, name).await;
    assert_eq!(dns_names(&leaf), vec![name.to_string()]);
    assert_eq!(status, 200);
    assert_eq!(body, format!("hello {name}"));

    // Challenge answers are withdrawn once the order is done.
    assert!(env.challenges.http01.is_empty());
    // Storage: key + chain in one private file, account stored.
    let pem = env.storage.path().join(format!("acme/certs/{name}.pem"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&pem).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    assert!(env.storage.path().join("acme/account.json").exists());
    // Metrics show the expiry and the order.
    let mut out = String::new();
    swarmgate::admin::metrics::MetricSource::render(&*r.manager.metrics(), &mut out);
    assert!(
        out.contains(&format!(
            "swarmgate_acme_certificate_expiry_timestamp_seconds{{name=\"{name}\"}}"
        )),
        "{out}"
    );
    assert!(out.contains("swarmgate_acme_orders_total 1"), "{out}");
    r.stop().await;
    eprintln!("TIMING http01_issues: {:?}", t0.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_alpn01_issues_a_certificate_through_the_sni_resolver() {
    let t0 = Instant::now();
    let env = Env::start(None).await;
    let name = "alpn.example.com";
    let r = run(
        env.manager(env.config(vec![ChallengeKind::TlsAlpn01])),
        &[name],
    );
    let st = r.issued(name).await;
    assert_eq!(st.names, vec![name.to_string()]);
    assert!(
        env.challenges.tls_alpn01.is_empty(),
        "challenge certificate withdrawn"
    );
    assert!(env.challenges.http01.is_empty(), "HTTP-01 never used");
    let root = env.pebble.issuing_root().await;
    let (leaf, status, _) = get_over_tls(env.tls_addr(), &root, name).await;
    assert_eq!(dns_names(&leaf), vec![name.to_string()]);
    assert_eq!(status, 200);
    r.stop().await;
    eprintln!("TIMING tls_alpn01_issues: {:?}", t0.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_serves_the_stored_certificate_without_ordering() {
    let t0 = Instant::now();
    let mut env = Env::start(None).await;
    let name = "stored.example.com";
    let cfg = env.config(vec![ChallengeKind::Http01, ChallengeKind::TlsAlpn01]);
    let r = run(env.manager(cfg.clone()), &[name]);
    r.issued(name).await;
    let root = env.pebble.issuing_root().await;
    let first = served_leaf(env.tls_addr(), &root, name).await.unwrap();
    r.stop().await;

    // The CA is gone: anything served now comes from storage, with no network call.
    env.pebble.stop();
    let certs = Arc::new(CertMap::new());
    let challenges = Arc::new(Challenges::default());
    let responder = Responder::start(certs.clone(), challenges.clone()).await;
    let m2 = AcmeManager::new(
        cfg,
        env.storage.path().join("acme"),
        certs.clone(),
        challenges,
    )
    .unwrap();
    assert!(
        certs.has(name),
        "stored certificate is live right after new()"
    );
    let again = served_leaf(responder.tls_addr, &root, name).await.unwrap();
    assert_eq!(serial(&again), serial(&first));

    let r2 = run(m2, &[name]);
    // Give the loop time to act on the wanted set; it must decide that nothing is due.
    eventually(
        Duration::from_secs(5),
        "manager sees the wanted name",
        || async { r2.status(name).filter(|s| s.wanted) },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let st = r2.status(name).unwrap();
    assert_eq!(st.orders, 0, "{st:?}");
    assert_eq!(r2.manager.orders_started(), 0);
    assert!(st.last_error.is_none(), "{st:?}");
    r2.stop().await;
    eprintln!("TIMING restart_serves_stored: {:?}", t0.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewal_swaps_the_certificate_while_a_connection_stays_open() {
    let t0 = Instant::now();
    // 20 s certificates renewed at half their life.
    let env = Env::start(Some(20)).await;
    let name = "renew.example.com";
    let cfg = AcmeConfig {
        renew_fraction: 0.5,
        ..env.config(vec![ChallengeKind::Http01])
    };
    let r = run(env.manager(cfg), &[name]);
    r.issued(name).await;
    let root = env.pebble.issuing_root().await;

    let mut roots = rustls::RootCertStore::empty();
    roots.add(root.clone()).unwrap();
    let stream = tokio::net::TcpStream::connect(env.tls_addr())
        .await
        .unwrap();
    let mut open = tls_connect(stream, roots, name, &[b"http/1.1"])
        .await
        .unwrap();
    let old_serial = serial(&open.get_ref().1.peer_certificates().unwrap()[0]);
    assert_eq!(http_get(&mut open, name, "/", false).await.unwrap().0, 200);

    let new_serial = eventually(Duration::from_secs(45), "a renewed certificate", || async {
        let s = serial(&served_leaf(env.tls_addr(), &root, name).await.ok()?);
        (s != old_serial).then_some(s)
    })
    .await;
    assert_ne!(new_serial, old_serial);
    // The connection opened before the swap still works, on its original certificate.
    let (status, body) = http_get(&mut open, name, "/", false).await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(String::from_utf8_lossy(&body), format!("hello {name}"));
    assert_eq!(
        serial(&open.get_ref().1.peer_certificates().unwrap()[0]),
        old_serial
    );
    let st = r.status(name).unwrap();
    assert!(st.orders >= 2, "{st:?}");
    r.stop().await;
    eprintln!("TIMING renewal_swaps: {:?}", t0.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_keeps_serving_backs_off_and_recovers() {
    let t0 = Instant::now();
    let mut env = Env::start(None).await;
    let (a, b) = ("a.example.com", "b.example.com");
    let r = run(env.manager(env.config(vec![ChallengeKind::Http01])), &[a]);
    r.issued(a).await;
    let root = env.pebble.issuing_root().await;
    let a_serial = serial(&served_leaf(env.tls_addr(), &root, a).await.unwrap());

    env.pebble.stop();
    r.names.send(names(&[a, b])).unwrap();
    let failed = eventually(
        Duration::from_secs(30),
        "a visible failure for b",
        || async {
            r.status(b)
                .filter(|s| s.consecutive_failures >= 1 && s.last_error.is_some())
        },
    )
    .await;
    assert!(failed.not_after.is_none());
    assert!(
        failed.backoff_until.is_some() || failed.order_in_flight,
        "{failed:?}"
    );
    // The existing certificate keeps serving during the outage.
    assert_eq!(
        serial(&served_leaf(env.tls_addr(), &root, a).await.unwrap()),
        a_serial
    );
    let mut out = String::new();
    swarmgate::admin::metrics::MetricSource::render(&*r.manager.metrics(), &mut out);
    assert!(
        out.contains(&format!(
            "swarmgate_acme_consecutive_failures{{name=\"{b}\"}} "
        )),
        "{out}"
    );
    assert!(
        !out.contains("swarmgate_acme_order_failures_total 0"),
        "{out}"
    );
    // Backoff is persisted.
    let state =
        std::fs::read_to_string(env.storage.path().join(format!("acme/state/{b}.json"))).unwrap();
    assert!(state.contains("backoff_until"), "{state}");

    // Pebble returns (a fresh CA: new root, our account unknown to it) and b gets issued.
    env.pebble.restart().await;
    let st = r.issued(b).await;
    assert_eq!(st.consecutive_failures, 0);
    let new_root = env.pebble.issuing_root().await;
    let (leaf, status, _) = get_over_tls(env.tls_addr(), &new_root, b).await;
    assert_eq!(dns_names(&leaf), vec![b.to_string()]);
    assert_eq!(status, 200);
    r.stop().await;
    eprintln!("TIMING outage_recovers: {:?}", t0.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_added_while_running_is_issued_and_static_names_are_skipped() {
    let t0 = Instant::now();
    let env = Env::start(None).await;
    // A static certificate covers static.example.com: ACME must leave it alone.
    let ck = rcgen::generate_simple_self_signed(vec!["static.example.com".to_string()]).unwrap();
    let stat = swarmgate::tls::LiveCert::from_pem(
        ck.cert.pem().as_bytes(),
        ck.signing_key.serialize_pem().as_bytes(),
        swarmgate::tls::CertSource::Static("static.pem".into()),
    )
    .unwrap();
    env.certs
        .set_static(swarmgate::tls::StaticCerts::new(vec![stat]));

    let (first, added) = ("first.example.com", "added.example.com");
    let r = run(
        env.manager(env.config(vec![ChallengeKind::Http01, ChallengeKind::TlsAlpn01])),
        &[first, "static.example.com"],
    );
    r.issued(first).await;
    let t_add = Instant::now();
    r.names
        .send(names(&[
            first,
            added,
            "static.example.com",
            "*.example.com",
            "127.0.0.1",
        ]))
        .unwrap();
    r.issued(added).await;
    eprintln!(
        "TIMING added name issued {:?} after it appeared",
        t_add.elapsed()
    );
    let root = env.pebble.issuing_root().await;
    let (leaf, status, _) = get_over_tls(env.tls_addr(), &root, added).await;
    assert_eq!(dns_names(&leaf), vec![added.to_string()]);
    assert_eq!(status, 200);
    let st = r.status("static.example.com").unwrap();
    assert_eq!(st.orders, 0);
    assert!(r.status("*.example.com").is_none() && r.status("127.0.0.1").is_none());
    assert_eq!(r.manager.orders_started(), 2);
    r.stop().await;
    eprintln!("TIMING name_added: {:?}", t0.elapsed());
}
