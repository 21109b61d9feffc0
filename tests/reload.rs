//! Config file reloads: new routes apply without dropping in-flight requests; invalid files are
//! refused and the old table keeps serving.

mod support;

use std::time::Duration;

use http::StatusCode;
use support::client::get;
use support::gateway::Gateway;
use support::origin::Origin;

fn cfg(routes: &str) -> String {
    format!("[listen]\nhttp = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\n{routes}")
}

async fn wait_for(mut f: impl AsyncFnMut() -> bool) -> bool {
    for _ in 0..100 {
        if f().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

#[tokio::test]
async fn edited_file_applies_without_dropping_in_flight_requests_and_bad_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("swarmgate.toml");
    let a = Origin::start("a").await;
    let b = Origin::start("b").await;
    let gw = Gateway::start_with_path(
        &cfg(&format!("[[routes]]\nhosts = [\"app.example.com\"]\nupstreams = [\"{}\"]\n", a.addr)),
        Some(path.clone()),
    )
    .await;
    let addr = gw.http;
    // Slow requests in flight across the reload.
    let inflight: Vec<_> =
        (0..4).map(|_| tokio::spawn(async move { get(addr, "app.example.com", "/delay/1500").await })).collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    // New file: app moves to b, and a new host appears.
    std::fs::write(
        &path,
        cfg(&format!(
            "[[routes]]\nhosts = [\"app.example.com\"]\nupstreams = [\"{}\"]\n[[routes]]\nhosts = [\"new.example.com\"]\nrespond = {{ body = \"new\" }}\n",
            b.addr
        )),
    )
    .unwrap();
    assert!(
        wait_for(async || get(addr, "new.example.com", "/").await.status == StatusCode::OK).await,
        "new route never appeared"
    );
    assert_eq!(get(addr, "app.example.com", "/").await.header("x-origin"), Some("b"));
    for r in inflight {
        let r = r.await.unwrap();
        assert_eq!(r.status, StatusCode::OK, "in-flight request survived the reload");
        assert_eq!(r.header("x-origin"), Some("a"));
    }

    // An invalid file (unknown key) is refused; the last good table keeps serving.
    std::fs::write(&path, cfg("[[routes]]\nhosts = [\"new.example.com\"]\nrespnd = { body = \"typo\" }\n")).unwrap();
    let admin = gw.admin.unwrap();
    assert!(
        wait_for(async || get(admin, "admin", "/metrics")
            .await
            .text()
            .contains("swarmgate_config_reload_failures_total 1"))
        .await,
        "the bad file was not refused"
    );
    let m = get(admin, "admin", "/metrics").await.text();
    assert!(m.contains("swarmgate_config_reloads_total{result=\"success\"} 1\n"), "{m}");
    assert!(m.contains("swarmgate_config_reloads_total{result=\"failure\"} 1\n"), "{m}");
    assert_eq!(get(addr, "new.example.com", "/").await.text(), "new");
    assert_eq!(get(addr, "app.example.com", "/").await.header("x-origin"), Some("b"));
}

#[tokio::test]
async fn sighup_reloads() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("swarmgate.toml");
    let gw = Gateway::start_with_path(
        &cfg("[[routes]]\nhosts = [\"one.example.com\"]\nrespond = { body = \"1\" }\n"),
        Some(path.clone()),
    )
    .await;
    // Same mtime granularity trap avoided: the signal forces a re-read regardless.
    std::fs::write(&path, cfg("[[routes]]\nhosts = [\"two.example.com\"]\nrespond = { body = \"2\" }\n")).unwrap();
    unsafe { libc::kill(std::process::id() as i32, libc::SIGHUP) };
    let addr = gw.http;
    assert!(wait_for(async || get(addr, "two.example.com", "/").await.status == StatusCode::OK).await);
    assert_eq!(get(addr, "one.example.com", "/").await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn metrics_of_a_removed_route_disappear() {
    use std::sync::Arc;
    use swarmgate::discovery::ProviderSnapshot;
    use swarmgate::model::{Action, Provenance, RouteSpec, UpstreamSpec, UpstreamTarget};
    let gw = Gateway::start("[[routes]]\nhosts = [\"kept.example.com\"]\nrespond = { body = \"k\" }\n").await;
    let mut spec = RouteSpec::proxy(
        "svc/gone/native",
        Provenance::Service { service: "gone".into(), key: "swarmgate".into() },
        vec!["gone.example.com".into()],
        UpstreamSpec::new(UpstreamTarget::Static(vec![])),
    );
    spec.action = Action::Respond { status: 200, body: "g".into() };
    let publisher = gw.running.as_ref().unwrap().publisher.clone();
    publisher.set_swarm(Arc::new(ProviderSnapshot { routes: vec![spec], ..Default::default() }));
    assert_eq!(get(gw.http, "gone.example.com", "/").await.status, StatusCode::OK);
    get(gw.http, "kept.example.com", "/").await;
    let admin = gw.admin.unwrap();
    assert!(get(admin, "admin", "/metrics").await.text().contains("route=\"svc/gone/native\""));
    // The service is removed from the swarm: its series go, the other route's stay.
    publisher.set_swarm(Arc::new(ProviderSnapshot::default()));
    let m = get(admin, "admin", "/metrics").await.text();
    assert!(!m.contains("svc/gone/native"), "{m}");
    assert!(m.contains("swarmgate_requests_total{route=\"file/0\",code=\"2xx\"} 1"), "{m}");
}

async fn reload_failures(admin: std::net::SocketAddr) -> u64 {
    let m = get(admin, "admin", "/metrics").await.text();
    m.lines()
        .find_map(|l| l.strip_prefix("swarmgate_config_reload_failures_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// `: > swarmgate.toml` (or an editor truncating before it writes) used to be applied as
/// "routes=0": every host answered 404 within a second. An empty file and a file that would
/// remove every route are refused; `routes = []` says it on purpose and is applied.
#[tokio::test]
async fn an_empty_or_routeless_file_does_not_wipe_the_routes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("swarmgate.toml");
    let gw = Gateway::start_with_path(
        &cfg("[[routes]]\nhosts = [\"one.example.com\"]\nrespond = { body = \"1\" }\n"),
        Some(path.clone()),
    )
    .await;
    let (addr, admin) = (gw.http, gw.admin.unwrap());
    std::fs::File::create(&path).unwrap();
    assert!(
        wait_for(async || reload_failures(admin).await == 1).await,
        "the empty file was not refused: {}",
        get(admin, "admin", "/metrics").await.text()
    );
    assert_eq!(get(addr, "one.example.com", "/").await.text(), "1");

    std::fs::write(&path, cfg("# all routes gone\n")).unwrap();
    assert!(wait_for(async || reload_failures(admin).await == 2).await, "the route-less file was not refused");
    assert_eq!(get(addr, "one.example.com", "/").await.text(), "1");

    std::fs::write(&path, format!("routes = []\n{}", cfg(""))).unwrap();
    assert!(
        wait_for(async || get(addr, "one.example.com", "/").await.status == StatusCode::NOT_FOUND).await,
        "an explicit `routes = []` was not applied"
    );
    assert_eq!(reload_failures(admin).await, 2);
}

/// A file written in several pieces over more than a second is read only once it has settled:
/// a reader that caught it half-way would apply a valid prefix without the second route.
#[tokio::test]
async fn a_file_being_written_is_read_only_when_it_settles() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("swarmgate.toml");
    let one = "[[routes]]\nhosts = [\"one.example.com\"]\nrespond = { body = \"1\" }\n";
    let two = "[[routes]]\nhosts = [\"two.example.com\"]\nrespond = { body = \"2\" }\n";
    let gw = Gateway::start_with_path(&cfg(&format!("{one}{two}")), Some(path.clone())).await;
    let addr = gw.http;
    let writer = tokio::spawn({
        let path = path.clone();
        async move {
            use std::io::Write;
            let mut f = std::fs::File::create(&path).unwrap();
            f.write_all(cfg(one).as_bytes()).unwrap();
            for i in 0..14 {
                tokio::time::sleep(Duration::from_millis(100)).await;
                writeln!(f, "# piece {i}").unwrap();
            }
            f.write_all(two.replace("\"2\"", "\"2b\"").as_bytes()).unwrap();
        }
    });
    while !writer.is_finished() {
        let r = get(addr, "two.example.com", "/").await;
        assert_eq!(r.status, StatusCode::OK, "a half-written file was applied");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(wait_for(async || get(addr, "two.example.com", "/").await.text() == "2b").await, "final file not applied");
    assert_eq!(get(addr, "one.example.com", "/").await.text(), "1");
}

/// A DNS name among the upstreams that does not resolve is a problem naming the route, not a
/// refused file and not a silent empty route; the other upstreams (and names) keep serving.
/// Names are looked up off the runtime, before serving.
#[tokio::test]
async fn upstream_names_resolve_and_a_failing_name_is_a_problem() {
    let a = Origin::start("a").await;
    let gw = Gateway::start(&cfg(&format!(
        "[[routes]]\nhosts = [\"app.example.com\"]\nupstreams = [\"localhost:{}\", \"no-such-host.invalid:80\"]\nlb = \"round_robin\"\n",
        a.addr.port()
    )))
    .await;
    let admin = gw.admin.unwrap();
    for _ in 0..4 {
        let r = get(gw.http, "app.example.com", "/").await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.header("x-origin"), Some("a"));
    }
    let problems = get(admin, "admin", "/api/problems").await.text();
    assert!(problems.contains("no-such-host.invalid:80 does not resolve"), "{problems}");
    assert!(problems.contains("routes[0].upstreams"), "{problems}");
}
