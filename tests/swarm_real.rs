//! End-to-end tests on a real Docker Swarm: swarmgate deployed as a Swarm service, routing to
//! real tasks discovered from service labels in all three dialects.
//!
//! Requirements: a Docker Engine the current user may drive (`docker info` works). A swarm is
//! initialised (`docker swarm init --advertise-addr 127.0.0.1`) when none is active. Nothing is
//! pulled: the images are built FROM scratch around static binaries compiled by the tests
//! (`cargo build --release --target <arch>-unknown-linux-gnu` with `+crt-static`, into
//! `$E2E_STATIC_TARGET_DIR`, default `<target>/tmp/e2e-static`; the first build takes minutes).
//! All traffic goes to 127.0.0.1 or to containers on networks the tests create, and every test
//! removes what it created (see `tests/support/swarm.rs`).
//!
//! What the engine on the development machine (Docker 20.10.24, API 1.41, kernel 6.18 without
//! IPVS, single-node swarm on 127.0.0.1) does, and why the tests are shaped this way:
//! - `docker network create -d overlay --attachable NET` works (vxlan is available); tasks on it
//!   get IPs like 10.0.1.3/24 in `NetworksAttachments`, and a peer (another service's
//!   container, or `docker run --network NET`) reaches every task IP directly.
//! - Service VIPs do **not** work: the daemon logs "Could not get ipvs family information from
//!   the kernel … Native loadbalancing will not work", and connecting to the service name (its
//!   VIP, e.g. 10.0.1.2) fails with `No route to host (os error 113)`. `tasks.<service>` DNS and
//!   `--endpoint-mode dnsrr` services resolve to task IPs and work. So the proxy must route to
//!   task IPs, which is what swarmgate does.
//! - `docker service create` of a local image by ID (`sha256:…`) with `--no-resolve-image` runs
//!   without any registry contact (no "could not be accessed on a registry" warning); 3
//!   replicas reach `running` in about 3 s.
//! - `--publish mode=host,target=80,published=P` is served by docker-proxy on 0.0.0.0:P, so the
//!   tests reach the proxy at 127.0.0.1:P.
//! - Rolling updates (`--update-order start-first` and `stop-first`, parallelism 1, delay 1 s)
//!   of 3 replicas complete in about 10 s (start-first) and 29 s (stop-first; each old task
//!   first finishes the origin's 3 s lame duck). An updated-away task's desired state turns
//!   `shutdown` (a scaled-away one's turns `remove`) about 3 s before its container gets
//!   SIGTERM; the origin then keeps serving for `SHUTDOWN_DELAY_MS` before it stops accepting.
//!   That window is what lets a proxy that drains on desired state lose nothing.

#[path = "support/swarm.rs"]
mod swarm;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use swarm::{block_on, docker_ok, http_get, replicas_seen, serial, wait_converged, wait_for, Gate, Scope};

/// Origin service flags shared by the tests: port 8080, task name in every answer, SIGTERM →
/// 3 s lame duck then drain, and time for that before Swarm kills it.
fn origin_args<'a>(network: &'a str, replicas: &'a str, labels: &'a [String], image: &'a str) -> Vec<&'a str> {
    let mut args = vec![
        "--no-resolve-image",
        "--network",
        network,
        "--replicas",
        replicas,
        "--env",
        "TASK_NAME={{.Task.Name}}",
        "--env",
        "SHUTDOWN_DELAY_MS=3000",
        "--stop-grace-period",
        "20s",
    ];
    for l in labels {
        args.push("--label");
        args.push(l);
    }
    args.push(image);
    args
}

fn labels(pairs: &[(&str, &str)]) -> Vec<String> {
    pairs.iter().map(|(k, v)| format!("{k}={v}")).collect()
}

/// Polls through the gate until `host` answers 200 from exactly `want` distinct replicas.
#[track_caller]
fn wait_pool(gate: &Gate, host: &str, want: &BTreeSet<String>, timeout: Duration) {
    let started = Instant::now();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        wait_for(&format!("{host} to be served by exactly {want:?}"), timeout, Duration::from_millis(500), || {
            let seen = block_on(replicas_seen(gate.port, host, want.len() * 6))?;
            if &seen == want {
                Ok(())
            } else {
                Err(format!("saw {seen:?}"))
            }
        })
    }));
    if let Err(p) = result {
        eprintln!("{}", gate.logs());
        std::panic::resume_unwind(p);
    }
    eprintln!("[e2e] {host}: pool of {} replica(s) after {:.1?}", want.len(), started.elapsed());
}

/// The replica names Swarm runs for `service` (the origin answers with its task name).
fn task_names(service: &str, replicas: usize) -> BTreeSet<String> {
    wait_converged(service, replicas, Duration::from_secs(60)).into_iter().map(|t| t.name).collect()
}

/// The premise of task-IP routing on this engine: a peer on the overlay reaches every task of a
/// 3-replica service by its IP, and each answers as itself.
#[test]
fn origin_tasks_are_reachable_by_task_ip_from_a_peer_on_the_overlay() {
    let _serial = serial();
    let mut scope = Scope::new("reach");
    let net = scope.overlay_network("net");
    let image = scope.origin_image("v1");
    let l = labels(&[]);
    let web = scope.service("web", &origin_args(&net, "3", &l, &image));
    let tasks = wait_converged(&web, 3, Duration::from_secs(60));
    let mut urls = Vec::new();
    for t in &tasks {
        let ips = t.ips.get(&net).unwrap_or_else(|| panic!("task {} has no address on {net}: {t:?}", t.id));
        urls.push(format!("http://{}:8080/hello", ips[0]));
    }
    let out = scope.probe(&net, &urls).unwrap_or_else(|e| panic!("probe on {net} failed: {e}"));
    for t in &tasks {
        let me = format!("origin={}", t.name);
        assert!(out.contains(&me), "no answer from {me} in:\n{out}");
    }
    assert_eq!(out.matches("status=200").count(), 3, "{out}");
}

/// One swarmgate service routes three services, one per label dialect, each to all its
/// replicas; forwarding headers reach the origin; an unknown host gets 404.
///
/// Each service asks for round robin in its own dialect, so "every replica answers" is a
/// deterministic check of pool membership: the default p2c/peak-EWMA policy may legitimately
/// keep sequential requests on the fastest replica.
#[test]
fn gate_routes_native_caddy_and_traefik_labels_to_every_replica() {
    let _serial = serial();
    let mut scope = Scope::new("dialects");
    let net = scope.overlay_network("net");
    let image = scope.origin_image("v1");
    let native_host = format!("{}native.test", scope.name(""));
    let caddy_host = format!("{}caddy.test", scope.name(""));
    let traefik_host = format!("{}traefik.test", scope.name(""));
    let router = format!("r{}", std::process::id());

    let native = scope.service(
        "native",
        &origin_args(
            &net,
            "3",
            &labels(&[("swarmgate.host", &native_host), ("swarmgate.port", "8080"), ("swarmgate.lb", "round_robin")]),
            &image,
        ),
    );
    let caddy_addr = format!("http://{caddy_host}");
    let caddy = scope.service(
        "caddy",
        &origin_args(
            &net,
            "2",
            &labels(&[
                ("caddy", &caddy_addr),
                ("caddy.reverse_proxy", "{{upstreams 8080}}"),
                ("caddy.reverse_proxy.lb_policy", "round_robin"),
            ]),
            &image,
        ),
    );
    let rule = format!("Host(`{traefik_host}`)");
    let traefik = scope.service(
        "traefik",
        &origin_args(
            &net,
            "2",
            &labels(&[
                ("traefik.enable", "true"),
                (&format!("traefik.http.routers.{router}.rule"), &rule),
                (&format!("traefik.http.services.{router}.loadbalancer.server.port"), "8080"),
                (&format!("traefik.http.services.{router}.loadbalancer.strategy"), "wrr"),
            ]),
            &image,
        ),
    );
    let gate = scope.swarmgate(&net);

    wait_pool(&gate, &native_host, &task_names(&native, 3), Duration::from_secs(30));
    wait_pool(&gate, &caddy_host, &task_names(&caddy, 2), Duration::from_secs(30));
    wait_pool(&gate, &traefik_host, &task_names(&traefik, 2), Duration::from_secs(30));

    // What the origin saw: the original Host, path and query, and forwarding headers.
    let r = block_on(http_get(gate.port, &native_host, "/some/path?q=1")).expect("request through the gate");
    assert_eq!(r.status, 200, "{r:?}");
    assert!(r.body.contains(&format!("host={native_host}\n")), "origin did not see the original Host:\n{}", r.body);
    assert!(r.body.contains("path=/some/path?q=1\n"), "{}", r.body);
    assert!(r.body.contains("x-forwarded-for="), "no X-Forwarded-For reached the origin:\n{}", r.body);
    assert!(r.body.contains(&format!("x-forwarded-host={native_host}\n")), "{}", r.body);
    assert!(r.body.contains("x-forwarded-proto=http\n"), "{}", r.body);

    let r = block_on(http_get(gate.port, &format!("{}nobody.test", scope.name("")), "/")).expect("request");
    assert_eq!(r.status, 404, "an unrouted host must get 404: {r:?}");
}

/// Scaling a service up and down changes the pool the gate balances over; removing the
/// service removes its route. This gate is not told which network to use: it must find the
/// networks of its own container.
#[test]
fn scaling_changes_the_pool_and_removing_a_service_removes_its_route() {
    let _serial = serial();
    let mut scope = Scope::new("scale");
    let net = scope.overlay_network("net");
    let image = scope.origin_image("v1");
    let host = format!("{}app.test", scope.name(""));
    let web = scope.service(
        "web",
        &origin_args(
            &net,
            "2",
            &labels(&[("swarmgate.host", &host), ("swarmgate.port", "8080"), ("swarmgate.lb", "round_robin")]),
            &image,
        ),
    );
    let gate = scope.swarmgate_own_networks(&net);
    wait_pool(&gate, &host, &task_names(&web, 2), Duration::from_secs(30));

    docker_ok(&["service", "scale", "--detach", &format!("{web}=4")]);
    wait_pool(&gate, &host, &task_names(&web, 4), Duration::from_secs(30));

    // Scale down: the removed tasks must leave the pool as soon as Swarm marks them (desired
    // state `remove`; SIGTERM follows about 3 s later, then a 3 s lame duck), not when they exit.
    docker_ok(&["service", "scale", "--detach", &format!("{web}=1")]);
    let keep: BTreeSet<String> =
        wait_for("one task desired running", Duration::from_secs(30), Duration::from_millis(100), || {
            let wanted: BTreeSet<String> =
                swarm::tasks(&web)?.into_iter().filter(|t| t.desired == "running").map(|t| t.name).collect();
            if wanted.len() == 1 {
                Ok(wanted)
            } else {
                Err(format!("{wanted:?}"))
            }
        });
    wait_pool(&gate, &host, &keep, Duration::from_secs(30));
    let draining: Vec<String> = swarm::tasks(&web)
        .expect("tasks")
        .into_iter()
        .filter(|t| t.desired != "running" && t.state == "running")
        .map(|t| t.name)
        .collect();
    assert!(
        !draining.is_empty(),
        "the pool shrank only after the removed tasks had stopped: swarmgate does not drain tasks whose desired state is no longer running"
    );
    eprintln!("[e2e] scale-down drained while {} removed task(s) still ran", draining.len());
    assert_eq!(task_names(&web, 1), keep);

    scope.remove_service(&web);
    wait_for(
        &format!("{host} to answer 404 after its service was removed"),
        Duration::from_secs(30),
        Duration::from_millis(300),
        || {
            let r = block_on(http_get(gate.port, &host, "/"))?;
            if r.status == 404 {
                Ok(())
            } else {
                Err(format!("status {}", r.status))
            }
        },
    );
}

/// Rolls a 3-replica service from v1 to v2 with `order` while 4 keep-alive clients send
/// requests through the gate (default balancing policy), prints how many ran and failed, and
/// asserts that none failed. The harness does see losses: the same load straight at a
/// host-published origin through a stop-first update lost 827 of 6417 requests.
fn rolling_update_under_load(test: &str, order: &str) {
    let _serial = serial();
    let mut scope = Scope::new(test);
    let net = scope.overlay_network("net");
    let v1 = scope.origin_image("v1");
    let v2 = scope.origin_image("v2");
    let host = format!("{}roll.test", scope.name(""));
    let web = scope.service(
        "web",
        &origin_args(&net, "3", &labels(&[("swarmgate.host", &host), ("swarmgate.port", "8080")]), &v1),
    );
    let gate = scope.swarmgate(&net);
    // Only "the route is live": under p2c an exact-pool check could wait on a starved replica.
    wait_converged(&web, 3, Duration::from_secs(60));
    wait_for(&format!("{host} to answer 200"), Duration::from_secs(30), Duration::from_millis(300), || {
        let r = block_on(http_get(gate.port, &host, "/"))?;
        if r.status == 200 {
            Ok(())
        } else {
            Err(format!("status {} body {:?}", r.status, r.body))
        }
    });

    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let stop = Arc::new(AtomicBool::new(false));
    let load = rt.spawn(swarm::steady_load(gate.port, host.clone(), 4, Duration::from_millis(5), stop.clone()));
    std::thread::sleep(Duration::from_secs(1));

    let started = Instant::now();
    docker_ok(&[
        "service",
        "update",
        "--detach",
        "--quiet",
        "--no-resolve-image",
        "--image",
        &v2,
        "--update-order",
        order,
        "--update-parallelism",
        "1",
        "--update-delay",
        "1s",
        &web,
    ]);
    let outcome = std::panic::catch_unwind(|| {
        wait_for(&format!("{order} update of {web}"), Duration::from_secs(120), Duration::from_millis(500), || {
            match swarm::update_state(&web)?.as_str() {
                "completed" => Ok(()),
                s @ ("paused" | "rollback_started" | "rollback_paused" | "rollback_completed") => {
                    panic!("update of {web} ended in state {s}")
                }
                s => Err(s.to_string()),
            }
        })
    });
    let update_took = started.elapsed();
    // A little steady state on the new version, then stop the clients.
    std::thread::sleep(Duration::from_secs(1));
    stop.store(true, Ordering::Relaxed);
    let report = rt.block_on(load).expect("load task");
    eprintln!(
        "[e2e] {order} rolling update took {update_took:.1?}: {} requests, {} failed, by version {:?}",
        report.requests, report.failures, report.versions
    );
    for f in &report.first_failures {
        eprintln!("[e2e]   failure: {f}");
    }
    if let Err(p) = outcome {
        eprintln!("{}", gate.logs());
        std::panic::resume_unwind(p);
    }
    if report.failures > 0 {
        eprintln!("{}", gate.logs());
    }
    assert_eq!(report.failures, 0, "requests failed during the {order} rolling update: {:?}", report.first_failures);
    assert!(report.requests > 100, "the load loop ran too few requests to mean anything: {}", report.requests);
    assert!(report.versions.contains_key("v2"), "no request reached the new version: {:?}", report.versions);
    // After the update only new tasks answer (old ones left the pool).
    let current = task_names(&web, 3);
    for _ in 0..20 {
        let r = block_on(http_get(gate.port, &host, "/")).expect("request after the update");
        assert_eq!(r.header("x-origin-version"), "v2", "{r:?}");
        assert!(current.contains(r.origin().unwrap_or("")), "answer from a task that is not running: {r:?}");
    }
}

#[test]
fn rolling_update_start_first_under_load_loses_no_request() {
    rolling_update_under_load("start", "start-first");
}

#[test]
fn rolling_update_stop_first_under_load_loses_no_request() {
    rolling_update_under_load("stop", "stop-first");
}

/// `caddy.reverse_proxy=http://<other service>:8080` (a stack's front naming its backend) is
/// balanced across the other service's tasks, as `{{upstreams}}` would be for its own: both
/// replicas answer, which a lookup of the name (the VIP) would not show.
#[test]
fn a_label_naming_another_service_balances_across_that_services_tasks() {
    let _serial = serial();
    let mut scope = Scope::new("byname");
    let net = scope.overlay_network("net");
    let image = scope.origin_image("v1");
    let host = format!("{}front.test", scope.name(""));
    let backend = scope.service("backend", &origin_args(&net, "2", &labels(&[]), &image));
    let site = format!("http://{host}");
    let upstream = format!("http://{backend}:8080");
    let front_labels = labels(&[
        ("caddy", &site),
        ("caddy.reverse_proxy", &upstream),
        ("caddy.reverse_proxy.lb_policy", "round_robin"),
    ]);
    // The labelled service itself runs nothing: only its labels matter.
    scope.service("front", &origin_args(&net, "0", &front_labels, &image));
    let gate = scope.swarmgate(&net);
    wait_pool(&gate, &host, &task_names(&backend, 2), Duration::from_secs(30));
}
