//! Swarm discovery against a fake Docker engine over real sockets: events, polling, drains,
//! outages, reconnects, worker nodes, the saved snapshot and network selection.

#[path = "support/fake_docker.rs"]
mod fake_docker;
#[allow(dead_code)]
#[path = "support/gateway.rs"]
mod gateway;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fake_docker::{service, task, worker_info, FakeDocker, WORKER_503};
use serde_json::json;
use swarmgate::config::{DockerConfig, DockerMode, Dur};
use swarmgate::discovery::swarm::{self, SwarmError, SwarmProvider};
use swarmgate::discovery::ProviderSnapshot;
use swarmgate::labels::LabelsConfig;
use swarmgate::model::UpstreamTarget;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(5);

fn cfg(host: &str, poll: Duration, networks: &[&str]) -> DockerConfig {
    DockerConfig {
        enabled: DockerMode::On,
        host: Some(host.to_owned()),
        networks: networks.iter().map(|s| s.to_string()).collect(),
        poll_interval: Dur(poll),
        poll_interval_updating: Dur(poll / 2),
    }
}

struct Running {
    rx: watch::Receiver<Arc<ProviderSnapshot>>,
    stop: CancellationToken,
    handle: tokio::task::JoinHandle<()>,
}

impl Running {
    async fn shutdown(self) {
        self.stop.cancel();
        tokio::time::timeout(Duration::from_secs(2), self.handle)
            .await
            .expect("provider stops promptly on cancel")
            .unwrap();
    }
}

fn start(cfg: &DockerConfig, storage: &Path) -> Running {
    start_with(cfg, storage, ProviderSnapshot::default())
}

fn start_with(cfg: &DockerConfig, storage: &Path, initial: ProviderSnapshot) -> Running {
    let provider = SwarmProvider::new(cfg).expect("host parses");
    let (tx, rx) = watch::channel(Arc::new(initial));
    let stop = CancellationToken::new();
    let handle = tokio::spawn(provider.run(LabelsConfig::default(), storage.to_owned(), tx, stop.clone()));
    Running { rx, stop, handle }
}

/// Wait (bounded) until the published snapshot satisfies `pred`.
async fn wait_for(
    rx: &mut watch::Receiver<Arc<ProviderSnapshot>>,
    what: &str,
    pred: impl Fn(&ProviderSnapshot) -> bool,
) -> Arc<ProviderSnapshot> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let cur = rx.borrow_and_update().clone();
        if pred(&cur) {
            return cur;
        }
        if tokio::time::timeout_at(deadline, rx.changed()).await.is_err() {
            panic!("timed out waiting for {what}; last snapshot: {cur:#?}");
        }
    }
}

/// Wait (bounded) for a condition on the fake engine.
async fn until(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Endpoint addresses of the route serving `host`, `None` when there is no such route.
fn endpoints(s: &ProviderSnapshot, host: &str) -> Option<Vec<String>> {
    let r = s.routes.iter().find(|r| r.hosts.iter().any(|h| h == host))?;
    match &r.upstream()?.target {
        UpstreamTarget::Static(e) => Some(e.iter().map(|e| e.addr.to_string()).collect()),
        other => panic!("discovery left a target unresolved: {other:?}"),
    }
}

const PROXY: (&str, &str) = ("proxynetid", "proxy");

fn on_proxy(ip: &str) -> Vec<(&'static str, &'static str, String)> {
    vec![("ingressid", "ingress", "10.0.0.99/24".to_owned()), (PROXY.0, PROXY.1, format!("{ip}/24"))]
}

fn t(
    id: &str,
    svc: &str,
    desired: &str,
    state: &str,
    nets: Vec<(&'static str, &'static str, String)>,
) -> serde_json::Value {
    let nets: Vec<(&str, &str, &str)> = nets.iter().map(|(a, b, c)| (*a, *b, c.as_str())).collect();
    task(id, svc, desired, state, &nets)
}

#[tokio::test]
async fn service_event_publishes_route_fast_with_one_list_call_per_resync() {
    let fake = FakeDocker::start().await;
    let dir = tempfile::tempdir().unwrap();
    // A long poll interval: only the event can explain a fast update.
    let mut p = start(&cfg(&fake.host(), Duration::from_secs(60), &["proxy"]), dir.path());
    until("the initial resync and an events subscription", || {
        fake.event_subscribers() > 0 && fake.requests().iter().any(|r| r.starts_with("/tasks"))
    })
    .await;

    fake.update(|s| {
        s.services.push(service(
            "svc1",
            "shop_web",
            &[("swarmgate.host", "shop.example.com"), ("swarmgate.port", "8080")],
        ));
        s.tasks.push(t("task1", "svc1", "running", "running", on_proxy("10.0.1.3")));
    });
    let t0 = Instant::now();
    fake.push_event("service", "create", "svc1", "shop_web");
    let snap =
        wait_for(&mut p.rx, "the new route", |s| endpoints(s, "shop.example.com").is_some_and(|e| !e.is_empty())).await;
    let latency = t0.elapsed();
    println!("event-to-snapshot latency: {latency:?}");
    assert!(latency < Duration::from_secs(1), "event took {latency:?} to reach the snapshot");
    assert_eq!(endpoints(&snap, "shop.example.com").unwrap(), vec!["10.0.1.3:8080"]);

    // A burst of events costs about one resync, and no request is ever per service or per task.
    let before = fake.requests().iter().filter(|r| r.starts_with("/services")).count();
    for _ in 0..20 {
        fake.push_event("service", "update", "svc1", "shop_web");
    }
    until("the burst's resync", || fake.requests().iter().filter(|r| r.starts_with("/services")).count() > before)
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = fake.requests().iter().filter(|r| r.starts_with("/services")).count();
    assert!(after - before <= 2, "20 events caused {} /services calls", after - before);
    for r in fake.requests() {
        let per_service_tasks = r.starts_with("/tasks") && r.contains("%22service%22");
        assert!(
            !r.starts_with("/services/") && !r.starts_with("/tasks/") && !per_service_tasks,
            "per-object request {r}"
        );
    }
    assert!(fake.requests().iter().any(|r| r.starts_with("/tasks?filters=") && r.contains("desired-state")));
    p.shutdown().await;
}

#[tokio::test]
async fn starting_tasks_are_excluded_and_shutdown_tasks_drain_without_events() {
    let fake = FakeDocker::start().await;
    fake.update(|s| {
        s.services.push(service("svc1", "web", &[("swarmgate.host", "web.example.com")]));
        s.tasks = vec![
            t("t1", "svc1", "running", "running", on_proxy("10.0.1.1")),
            t("t2", "svc1", "running", "starting", on_proxy("10.0.1.2")),
            t("t3", "svc1", "running", "running", on_proxy("10.0.1.3")),
        ];
    });
    let dir = tempfile::tempdir().unwrap();
    let mut p = start(&cfg(&fake.host(), Duration::from_millis(100), &["proxy"]), dir.path());
    let snap =
        wait_for(&mut p.rx, "two endpoints", |s| endpoints(s, "web.example.com").is_some_and(|e| e.len() == 2)).await;
    assert_eq!(
        endpoints(&snap, "web.example.com").unwrap(),
        vec!["10.0.1.1:80", "10.0.1.3:80"],
        "the starting task must not get traffic"
    );

    // Swarm tells t3 to stop (rolling update): it leaves the pool while its container still runs.
    fake.update(|s| s.tasks[2] = t("t3", "svc1", "shutdown", "running", on_proxy("10.0.1.3")));
    wait_for(&mut p.rx, "t3 drained", |s| endpoints(s, "web.example.com") == Some(vec!["10.0.1.1:80".into()])).await;

    // t2 becomes running; t1 disappears from the list.
    fake.update(|s| {
        s.tasks = vec![t("t2", "svc1", "running", "running", on_proxy("10.0.1.2"))];
    });
    wait_for(&mut p.rx, "t1 gone, t2 in", |s| endpoints(s, "web.example.com") == Some(vec!["10.0.1.2:80".into()]))
        .await;

    // No task at all: the route stays, with no endpoints (the proxy answers 503, not 404).
    fake.update(|s| s.tasks.clear());
    wait_for(&mut p.rx, "empty endpoint list", |s| endpoints(s, "web.example.com") == Some(vec![])).await;
    p.shutdown().await;
}

#[tokio::test]
async fn engine_down_keeps_the_last_snapshot_and_reconnect_resyncs() {
    let fake = FakeDocker::start().await;
    fake.update(|s| {
        s.services.push(service("svc1", "web", &[("swarmgate.host", "web.example.com")]));
        s.tasks.push(t("t1", "svc1", "running", "running", on_proxy("10.0.1.1")));
    });
    let dir = tempfile::tempdir().unwrap();
    let mut p = start(&cfg(&fake.host(), Duration::from_millis(50), &["proxy"]), dir.path());
    let good =
        wait_for(&mut p.rx, "first snapshot", |s| endpoints(s, "web.example.com").is_some_and(|e| e.len() == 1)).await;
    until("events subscription", || fake.event_subscribers() > 0).await;

    fake.stop();
    until("events stream closed", || fake.event_subscribers() == 0).await;
    // Several poll intervals and backoff rounds pass with the engine away: nothing is published.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(!p.rx.has_changed().unwrap(), "a snapshot was published while Docker was down");
    assert_eq!(*p.rx.borrow(), good);

    // While it was away, a task was added and a new service created (its event was missed).
    fake.update(|s| {
        s.tasks.push(t("t2", "svc1", "running", "running", on_proxy("10.0.1.2")));
        s.services.push(service("svc2", "api", &[("swarmgate.host", "api.example.com")]));
        s.tasks.push(t("t3", "svc2", "running", "running", on_proxy("10.0.1.9")));
    });
    let t0 = Instant::now();
    fake.restart().await;
    let snap = wait_for(&mut p.rx, "full resync after reconnect", |s| {
        endpoints(s, "web.example.com").is_some_and(|e| e.len() == 2)
            && endpoints(s, "api.example.com").is_some_and(|e| e.len() == 1)
    })
    .await;
    println!("reconnect-to-resync: {:?}", t0.elapsed());
    assert_eq!(endpoints(&snap, "api.example.com").unwrap(), vec!["10.0.1.9:80"]);

    // Events flow again after the reconnect.
    until("events re-subscribed", || fake.event_subscribers() > 0).await;
    fake.update(|s| s.services.retain(|v| v["ID"] != "svc2"));
    fake.push_event("service", "remove", "svc2", "api");
    wait_for(&mut p.rx, "api removed", |s| endpoints(s, "api.example.com").is_none()).await;
    p.shutdown().await;
}

#[tokio::test]
async fn worker_node_is_a_clear_error() {
    let fake = FakeDocker::start().await;
    fake.update(|s| {
        s.info = worker_info();
        s.swarm_failure = Some((503, WORKER_503.into()));
    });
    let c = cfg(&fake.host(), Duration::from_secs(1), &[]);
    let err = SwarmProvider::connect(&c).await.err().expect("a worker is refused");
    let msg = err.to_string();
    assert!(matches!(err, SwarmError::NotManager { .. }), "{err:?}");
    assert!(msg.contains("worker") && msg.contains("node.role == manager") && msg.contains("file config"), "{msg}");

    // A node demoted while running: the 503 from /services says what to do.
    let p = SwarmProvider::new(&c).unwrap();
    let err = p.client().services().await.unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("503") && msg.contains("not a swarm manager") && msg.contains("node.role == manager"),
        "{msg}"
    );

    // And the loop keeps the (empty) state instead of publishing anything.
    let dir = tempfile::tempdir().unwrap();
    let mut p = start(&c, dir.path());
    until("a failed /services call", || fake.requests().iter().any(|r| r.starts_with("/services"))).await;
    assert!(!p.rx.has_changed().unwrap());
    let _ = p.rx.borrow_and_update();
    p.shutdown().await;
}

#[tokio::test]
async fn saved_snapshot_is_served_when_the_engine_is_unreachable_at_start() {
    let fake = FakeDocker::start().await;
    fake.update(|s| {
        s.services.push(service("svc1", "web", &[("swarmgate.host", "web.example.com"), ("swarmgate.port", "8080")]));
        s.tasks.push(t("t1", "svc1", "running", "running", on_proxy("10.0.1.1")));
    });
    let dir = tempfile::tempdir().unwrap();
    let c = cfg(&fake.host(), Duration::from_millis(100), &["proxy"]);
    let mut p = start(&c, dir.path());
    let good = wait_for(&mut p.rx, "snapshot", |s| endpoints(s, "web.example.com").is_some_and(|e| e.len() == 1)).await;
    p.shutdown().await;
    assert_eq!(swarm::load_persisted(dir.path()).as_ref(), Some(&*good), "the published snapshot is on disk");

    // Restart with the engine gone: the saved routes are served.
    fake.stop();
    let mut p = start(&c, dir.path());
    let loaded = wait_for(&mut p.rx, "the saved snapshot", |s| !s.routes.is_empty()).await;
    assert_eq!(*loaded, *good);
    p.shutdown().await;

    // No saved file and no engine: nothing (not even an empty snapshot) is published.
    let empty_dir = tempfile::tempdir().unwrap();
    let p = start(&c, empty_dir.path());
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(!p.rx.has_changed().unwrap());
    p.shutdown().await;
}

#[tokio::test]
async fn network_selection_configured_override_and_stranded() {
    let fake = FakeDocker::start().await;
    fake.update(|s| {
        s.networks.push(json!({"Name": "backend", "Id": "backendid", "Scope": "swarm"}));
        s.networks.push(json!({"Name": "other", "Id": "otherid", "Scope": "swarm"}));
        s.services = vec![
            service("s1", "plain", &[("swarmgate.host", "plain.example.com")]),
            service("s2", "pinned", &[("swarmgate.host", "pinned.example.com"), ("swarmgate.network", "backend")]),
            service("s3", "stranded", &[("swarmgate.host", "stranded.example.com")]),
        ];
        s.tasks = vec![
            task(
                "a",
                "s1",
                "running",
                "running",
                &[("otherid", "other", "10.9.0.1/24"), ("proxynetid", "proxy", "10.0.1.1/24")],
            ),
            task(
                "b",
                "s2",
                "running",
                "running",
                &[("proxynetid", "proxy", "10.0.1.2/24"), ("backendid", "backend", "10.5.0.2/24")],
            ),
            task(
                "c",
                "s3",
                "running",
                "running",
                &[("ingressid", "ingress", "10.0.0.3/24"), ("otherid", "other", "10.9.0.3/24")],
            ),
        ];
    });
    let dir = tempfile::tempdir().unwrap();
    let mut p = start(&cfg(&fake.host(), Duration::from_millis(100), &["proxy"]), dir.path());
    let snap = wait_for(&mut p.rx, "three routes", |s| s.routes.len() == 3).await;
    assert_eq!(endpoints(&snap, "plain.example.com").unwrap(), vec!["10.0.1.1:80"], "configured network");
    assert_eq!(endpoints(&snap, "pinned.example.com").unwrap(), vec!["10.5.0.2:80"], "label override wins");
    assert_eq!(
        endpoints(&snap, "stranded.example.com").unwrap(),
        Vec::<String>::new(),
        "no shared network: no upstream"
    );
    let problem = snap.problems.iter().find(|p| p.source == "stranded").expect("a problem for the stranded service");
    assert_eq!(problem.key, "docker.networks");
    assert!(problem.message.contains("other") && problem.message.contains("proxy"), "{problem}");
    p.shutdown().await;
}

#[tokio::test]
async fn proxy_container_networks_are_used_when_none_are_configured() {
    let fake = FakeDocker::start().await;
    // Our "own container": the fake engine knows this process's hostname as a container id.
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap().trim().to_owned();
    fake.update(|s| {
        s.containers.insert(
            hostname.clone(),
            json!({"Id": "e5d62702a1b48d3e1f0a8b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f70",
                   "NetworkSettings": {"Networks": {"ingress": {"NetworkID": "ingressid"}, "front": {"NetworkID": "frontid"}}}}),
        );
        s.services = vec![service("s1", "web", &[("swarmgate.host", "web.example.com")])];
        s.tasks = vec![task("a", "s1", "running", "running", &[("backid", "back", "10.7.0.1/24"), ("frontid", "front", "10.6.0.1/24")])];
    });
    let dir = tempfile::tempdir().unwrap();
    let mut p = start(&cfg(&fake.host(), Duration::from_millis(100), &[]), dir.path());
    let snap = wait_for(&mut p.rx, "route", |s| endpoints(s, "web.example.com").is_some_and(|e| !e.is_empty())).await;
    assert_eq!(endpoints(&snap, "web.example.com").unwrap(), vec!["10.6.0.1:80"], "the network shared with the proxy");
    p.shutdown().await;
}

#[tokio::test]
async fn unix_socket_transport_and_auto_detection() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("docker.sock");
    let fake = FakeDocker::start_unix(sock.clone()).await;
    fake.update(|s| {
        s.services = vec![service("s1", "web", &[("swarmgate.host", "web.example.com")])];
        s.tasks = vec![t("a", "s1", "running", "running", on_proxy("10.0.1.1"))];
    });
    let mut c = cfg(&fake.host(), Duration::from_millis(100), &["proxy"]);
    c.enabled = DockerMode::Auto;
    assert!(swarm::docker_reachable(&c).await, "the socket answers");
    assert!(SwarmProvider::connect(&c).await.is_ok());
    let mut p = start(&c, dir.path());
    wait_for(&mut p.rx, "route over the unix socket", |s| {
        endpoints(s, "web.example.com") == Some(vec!["10.0.1.1:80".into()])
    })
    .await;
    p.shutdown().await;

    fake.stop();
    std::fs::remove_file(&sock).unwrap();
    assert!(!swarm::docker_reachable(&c).await, "no socket, no Docker");
    let closed = cfg("tcp://127.0.0.1:9", Duration::from_secs(1), &[]);
    assert!(!swarm::docker_reachable(&closed).await);
}

#[tokio::test]
async fn rolling_update_switches_to_the_fast_task_poll() {
    let fake = FakeDocker::start().await;
    let mut svc = service("svc1", "web", &[("swarmgate.host", "web.example.com")]);
    svc["UpdateStatus"] =
        json!({"State": "updating", "StartedAt": "2026-11-20T10:00:00Z", "Message": "update in progress"});
    fake.update(|s| {
        s.services = vec![svc];
        s.tasks = vec![t("old", "svc1", "running", "running", on_proxy("10.0.1.1"))];
    });
    let dir = tempfile::tempdir().unwrap();
    // Normal poll 60 s, rolling-update poll 150 ms: only the fast poll can see the new task.
    let mut c = cfg(&fake.host(), Duration::from_secs(60), &["proxy"]);
    c.poll_interval_updating = Dur(Duration::from_millis(150));
    let mut p = start(&c, dir.path());
    wait_for(&mut p.rx, "old task", |s| endpoints(s, "web.example.com") == Some(vec!["10.0.1.1:80".into()])).await;
    // Swarm replaces the task (no event for tasks): old desired shutdown, new one running.
    fake.update(|s| {
        s.tasks = vec![
            t("old", "svc1", "shutdown", "running", on_proxy("10.0.1.1")),
            t("new", "svc1", "running", "running", on_proxy("10.0.1.2")),
        ];
    });
    let t0 = Instant::now();
    wait_for(&mut p.rx, "the replacement task", |s| {
        endpoints(s, "web.example.com") == Some(vec!["10.0.1.2:80".into()])
    })
    .await;
    println!("task change seen during a rolling update after {:?}", t0.elapsed());
    assert!(t0.elapsed() < Duration::from_secs(2));
    p.shutdown().await;
}

/// `[docker] enabled = "auto"` with an engine that answers only after swarmgate started (a
/// docker-socket-proxy service, a restarting daemon): discovery switches on when it appears.
/// It used to ping once at start and stay off forever, without a log line.
#[tokio::test]
async fn auto_discovery_switches_on_when_the_engine_appears_after_start() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("docker.sock");
    let toml = format!(
        "storage = {:?}\n[listen]\nhttp = \"127.0.0.1:0\"\n[docker]\nenabled = \"auto\"\nhost = \"unix://{}\"\n",
        dir.path().join("state"),
        sock.display()
    );
    let gw = gateway::Gateway::start(&toml).await;
    let state = gw.running.as_ref().unwrap().state.clone();
    let has_route = || state.table.load().routes.iter().any(|r| r.spec.hosts.iter().any(|h| h == "late.example.com"));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!has_route());
    let fake = FakeDocker::start_unix(sock.clone()).await;
    fake.update(|s| {
        s.services = vec![service("s1", "late", &[("swarmgate.host", "late.example.com")])];
        s.tasks = vec![t("a", "s1", "running", "running", on_proxy("10.0.1.1"))];
    });
    let deadline = Instant::now() + Duration::from_secs(15);
    while !has_route() {
        assert!(Instant::now() < deadline, "discovery never switched on after the engine appeared");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    gw.stop().await;
    fake.stop();
}
