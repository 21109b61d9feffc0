//! Helpers for tests that drive a real Docker Swarm (`tests/swarm_real.rs`).
//!
//! What they guarantee, and why:
//! - **A swarm exists.** CI may start with Swarm inactive; we `docker swarm init
//!   --advertise-addr 127.0.0.1` then (a single-node swarm is a manager, which discovery needs).
//! - **No registry is touched.** Images are built `FROM scratch` around static binaries that
//!   cargo compiles once per test run, and services reference them by image ID (`sha256:…`), so
//!   the engine skips its pull attempt (and the DNS timeout it costs offline).
//! - **Names never collide.** Everything a test creates is named `sgtest-<pid>-<test>-…`; leftovers
//!   of a killed earlier run (dead pid) are swept on first use.
//! - **The machine is left clean.** [`Scope`] records what a test created and removes it in its
//!   `Drop` (so also on panic): services, then their containers, configs, networks, images.
//! - **Waits are bounded polls**, and a timeout names what was being waited for and the last
//!   state seen (task errors included).
//! - **Tests run one at a time** ([`serial`]): two rolling updates sharing two CPUs would measure
//!   the machine, not the proxy.
#![allow(dead_code)] // each test binary uses a different subset

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

/// Runs `docker <args>`; Ok(stdout, trimmed) on exit 0, else Err naming the command and stderr.
pub fn docker(args: &[&str]) -> Result<String, String> {
    let out = Command::new("docker")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run `docker {}`: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(format!(
            "`docker {}` failed ({}): {}{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim(),
            String::from_utf8_lossy(&out.stdout).trim()
        ))
    }
}

/// [`docker`] for steps whose failure means the test cannot go on.
#[track_caller]
pub fn docker_ok(args: &[&str]) -> String {
    docker(args).unwrap_or_else(|e| panic!("{e}"))
}

/// Polls `check` every `every` until it returns `Some`, or panics after `timeout` with `what`
/// and the last observation `check` reported through its `Err`.
#[track_caller]
pub fn wait_for<T>(what: &str, timeout: Duration, every: Duration, mut check: impl FnMut() -> Result<T, String>) -> T {
    let start = Instant::now();
    loop {
        match check() {
            Ok(v) => return v,
            Err(last) => {
                if start.elapsed() >= timeout {
                    panic!("timed out after {timeout:?} waiting for {what}; last seen: {last}");
                }
            }
        }
        std::thread::sleep(every);
    }
}

/// Serialises the tests of one binary (see module docs). A panicking test poisons nothing.
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

/// Makes sure Docker answers and this node is a Swarm manager; sweeps leftovers of dead runs.
/// Panics with the reason when Docker is unusable: these tests exist to run on a real engine.
pub fn ensure_swarm() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        let state = docker(&["info", "--format", "{{.Swarm.LocalNodeState}}"])
            .unwrap_or_else(|e| panic!("Docker is not usable for the real-Swarm tests: {e}"));
        match state.as_str() {
            "active" => {}
            "inactive" => {
                docker_ok(&["swarm", "init", "--advertise-addr", "127.0.0.1"]);
            }
            other => panic!("Swarm is in state {other:?}; expected active or inactive"),
        }
        let manager = docker_ok(&["info", "--format", "{{.Swarm.ControlAvailable}}"]);
        assert_eq!(manager, "true", "this node must be a Swarm manager");
        sweep_dead_runs();
    });
}

/// Removes `sgtest-<pid>-…` objects whose pid no longer runs (a run killed before its Drop).
fn sweep_dead_runs() {
    let dead = |name: &str| -> bool {
        let Some(rest) = name.strip_prefix("sgtest-") else { return false };
        let pid = rest.split('-').next().unwrap_or("");
        pid.parse::<u32>().is_ok_and(|pid| !Path::new(&format!("/proc/{pid}")).exists())
    };
    let list = |args: &[&str]| -> Vec<String> {
        docker(args).unwrap_or_default().lines().map(str::to_string).filter(|n| dead(n)).collect()
    };
    let services = list(&["service", "ls", "--filter", "name=sgtest-", "--format", "{{.Name}}"]);
    for s in &services {
        let _ = docker(&["service", "rm", s]);
    }
    for s in &services {
        wait_containers_gone(s, Duration::from_secs(60));
    }
    for c in list(&["config", "ls", "--filter", "name=sgtest-", "--format", "{{.Name}}"]) {
        let _ = docker(&["config", "rm", &c]);
    }
    for n in list(&["network", "ls", "--filter", "name=sgtest-", "--format", "{{.Name}}"]) {
        let _ = docker(&["network", "rm", &n]);
    }
    for img in list(&["images", "--filter", "reference=sgtest-*", "--format", "{{.Repository}}:{{.Tag}}"]) {
        let _ = docker(&["rmi", "-f", &img]);
    }
}

fn wait_containers_gone(service: &str, timeout: Duration) -> bool {
    let filter = format!("label=com.docker.swarm.service.name={service}");
    let start = Instant::now();
    while start.elapsed() < timeout {
        match docker(&["ps", "-aq", "--filter", &filter]) {
            Ok(ids) if ids.is_empty() => return true,
            _ => std::thread::sleep(Duration::from_millis(250)),
        }
    }
    false
}

/// Statically linked binaries for the test images, compiled once per test run.
pub struct Binaries {
    pub origin: PathBuf,
    pub swarmgate: PathBuf,
}

/// Compiles `swarmgate` and the `test_origin` example as static release binaries.
///
/// They go to their own target dir (`E2E_STATIC_TARGET_DIR`, default `<target>/tmp/e2e-static`)
/// because the `+crt-static` RUSTFLAGS would otherwise invalidate the normal build, and because
/// the cargo running this test holds the lock on the normal one.
pub fn binaries() -> &'static Binaries {
    static BINS: OnceLock<Binaries> = OnceLock::new();
    BINS.get_or_init(|| {
        let target_dir = std::env::var_os("E2E_STATIC_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_TARGET_TMPDIR")).join("e2e-static"));
        let triple = format!("{}-unknown-linux-gnu", std::env::consts::ARCH);
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let started = Instant::now();
        let status = Command::new(cargo)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .args(["build", "--release", "--target", &triple, "--bin", "swarmgate", "--example", "test_origin"])
            .env("CARGO_TARGET_DIR", &target_dir)
            .env("RUSTFLAGS", "-C target-feature=+crt-static")
            .env_remove("CARGO_ENCODED_RUSTFLAGS")
            .status()
            .expect("run cargo build for the static test binaries");
        assert!(status.success(), "static build of swarmgate + test_origin failed");
        eprintln!("[swarm] static binaries ready in {:.1?}", started.elapsed());
        let release = target_dir.join(&triple).join("release");
        Binaries { origin: release.join("examples").join("test_origin"), swarmgate: release.join("swarmgate") }
    })
}

/// A task as `docker inspect --type task` reports it (the fields the tests need).
#[derive(Debug, Clone)]
pub struct Task {
    pub id: String,
    /// `<service>.<slot>.<id>`, what `{{.Task.Name}}` gives the origin as `TASK_NAME`.
    pub name: String,
    pub slot: Option<u64>,
    pub desired: String,
    pub state: String,
    pub err: String,
    /// Network name → IP addresses (without the prefix length).
    pub ips: BTreeMap<String, Vec<String>>,
}

/// All tasks Swarm still records for `service` (running and historic).
pub fn tasks(service: &str) -> Result<Vec<Task>, String> {
    let ids = docker(&["service", "ps", "-q", "--no-trunc", service])?;
    let ids: Vec<&str> = ids.lines().filter(|l| !l.is_empty()).collect();
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut args = vec!["inspect", "--type", "task"];
    args.extend(ids);
    let json = docker(&args)?;
    let v: serde_json::Value = serde_json::from_str(&json).map_err(|e| format!("task json: {e}"))?;
    let s = |v: &serde_json::Value| v.as_str().unwrap_or("").to_string();
    Ok(v.as_array()
        .into_iter()
        .flatten()
        .map(|t| {
            let mut ips: BTreeMap<String, Vec<String>> = BTreeMap::new();
            for att in t["NetworksAttachments"].as_array().into_iter().flatten() {
                let net = s(&att["Network"]["Spec"]["Name"]);
                for a in att["Addresses"].as_array().into_iter().flatten() {
                    let a = s(a);
                    let ip = a.split('/').next().unwrap_or("").to_string();
                    ips.entry(net.clone()).or_default().push(ip);
                }
            }
            Task {
                id: s(&t["ID"]),
                name: format!("{service}.{}.{}", t["Slot"].as_u64().unwrap_or_default(), s(&t["ID"])),
                slot: t["Slot"].as_u64(),
                desired: s(&t["DesiredState"]),
                state: s(&t["Status"]["State"]),
                err: s(&t["Status"]["Err"]),
                ips,
            }
        })
        .collect())
}

/// The tasks of `service` that are desired running and running.
pub fn running_tasks(service: &str) -> Result<Vec<Task>, String> {
    Ok(tasks(service)?.into_iter().filter(|t| t.desired == "running" && t.state == "running").collect())
}

/// Waits until exactly `replicas` tasks of `service` run and none is still on its way
/// (desired running but not yet running), so a scale-down has finished too.
#[track_caller]
pub fn wait_converged(service: &str, replicas: usize, timeout: Duration) -> Vec<Task> {
    wait_for(&format!("service {service} to run {replicas} task(s)"), timeout, Duration::from_millis(300), || {
        let all = tasks(service)?;
        let running: Vec<Task> =
            all.iter().filter(|t| t.desired == "running" && t.state == "running").cloned().collect();
        let pending = all.iter().any(|t| t.desired == "running" && t.state != "running");
        // Scale-down marks tasks `remove`, updates mark them `shutdown`; both still run a while.
        let stopping = all
            .iter()
            .any(|t| t.desired != "running" && matches!(t.state.as_str(), "running" | "starting" | "preparing"));
        if running.len() == replicas && !pending && !stopping {
            Ok(running)
        } else {
            Err(format!("{all:?}"))
        }
    })
}

/// `docker service inspect` → `.UpdateStatus.State` ("" before any update).
pub fn update_state(service: &str) -> Result<String, String> {
    docker(&["service", "inspect", service, "--format", "{{if .UpdateStatus}}{{.UpdateStatus.State}}{{end}}"])
}

/// Everything one test created in Docker, removed again on drop.
pub struct Scope {
    prefix: String,
    services: Vec<String>,
    configs: Vec<String>,
    networks: Vec<String>,
    images: Vec<String>,
    origin_images: BTreeMap<String, String>,
}

impl Scope {
    /// A scope for test `test` (short, `[a-z0-9-]`): names start with `sgtest-<pid>-<test>-`.
    pub fn new(test: &str) -> Scope {
        ensure_swarm();
        Scope {
            prefix: format!("sgtest-{}-{test}-", std::process::id()),
            services: Vec::new(),
            configs: Vec::new(),
            networks: Vec::new(),
            images: Vec::new(),
            origin_images: BTreeMap::new(),
        }
    }

    /// The full name for `suffix` inside this scope.
    pub fn name(&self, suffix: &str) -> String {
        format!("{}{suffix}", self.prefix)
    }

    /// Builds `dockerfile` (a file in tests/support/images) with `files` copied into a fresh
    /// context; returns the image ID. The image is also tagged `sgtest-…` so a sweep finds it.
    pub fn build_image(&mut self, dockerfile: &str, files: &[(&str, &Path)], build_args: &[&str]) -> String {
        let ctx = tempfile::tempdir().expect("temp build context");
        for (name, src) in files {
            let dst = ctx.path().join(name);
            if std::fs::hard_link(src, &dst).is_err() {
                std::fs::copy(src, &dst).unwrap_or_else(|e| panic!("copy {} into build context: {e}", src.display()));
            }
        }
        let df = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/images").join(dockerfile);
        let tag = format!("{}img{}", self.prefix, self.images.len()).to_lowercase();
        let mut args: Vec<String> =
            vec!["build".into(), "-q".into(), "-t".into(), tag.clone(), "-f".into(), df.display().to_string()];
        for a in build_args {
            args.push("--build-arg".into());
            args.push((*a).to_string());
        }
        args.push(ctx.path().display().to_string());
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let id = docker_ok(&argv);
        let id = id.lines().last().unwrap_or("").trim().to_string();
        assert!(id.starts_with("sha256:"), "docker build printed no image id: {id:?}");
        self.images.push(tag);
        id
    }

    /// The test origin image with `VERSION=<version>` baked in (built once per scope+version).
    pub fn origin_image(&mut self, version: &str) -> String {
        if let Some(id) = self.origin_images.get(version) {
            return id.clone();
        }
        let bin = binaries().origin.clone();
        let id = self.build_image("origin.Dockerfile", &[("test_origin", &bin)], &[&format!("VERSION={version}")]);
        self.origin_images.insert(version.to_string(), id.clone());
        id
    }

    /// The swarmgate image (static binary + the host's CA bundle when there is one).
    pub fn swarmgate_image(&mut self) -> String {
        let bin = binaries().swarmgate.clone();
        let ca_host = Path::new("/etc/ssl/certs/ca-certificates.crt");
        let empty = tempfile::NamedTempFile::new().expect("temp file");
        let ca = if ca_host.exists() { ca_host } else { empty.path() };
        self.build_image("swarmgate.Dockerfile", &[("swarmgate", &bin), ("ca-certificates.crt", ca)], &[])
    }

    /// Creates an attachable overlay network (attachable so probe containers can join it).
    pub fn overlay_network(&mut self, suffix: &str) -> String {
        let name = self.name(suffix);
        docker_ok(&["network", "create", "-d", "overlay", "--attachable", &name]);
        self.networks.push(name.clone());
        name
    }

    /// Creates a Swarm config holding `contents`.
    pub fn config(&mut self, suffix: &str, contents: &str) -> String {
        let name = self.name(suffix);
        let mut file = tempfile::NamedTempFile::new().expect("temp file");
        std::io::Write::write_all(&mut file, contents.as_bytes()).expect("write config");
        docker_ok(&["config", "create", &name, &file.path().display().to_string()]);
        self.configs.push(name.clone());
        name
    }

    /// `docker service create --detach --name <scope>-<suffix> <args…>` (args end with the image).
    pub fn service(&mut self, suffix: &str, args: &[&str]) -> String {
        let name = self.name(suffix);
        let mut argv = vec!["service", "create", "--detach", "--quiet", "--name", &name];
        argv.extend_from_slice(args);
        // Registered before creation succeeds: a half-created service is removed too.
        self.services.push(name.clone());
        docker_ok(&argv);
        name
    }

    /// Removes one service now (and waits until its containers are gone).
    pub fn remove_service(&mut self, name: &str) {
        docker_ok(&["service", "rm", name]);
        self.services.retain(|s| s != name);
        assert!(wait_containers_gone(name, Duration::from_secs(60)), "containers of {name} still exist after 60s");
    }

    /// Runs the origin image's client (`test_origin get URL…`) in a throw-away container on
    /// `network`: the view from a peer on the overlay, which the host does not have.
    pub fn probe(&mut self, network: &str, urls: &[String]) -> Result<String, String> {
        let image = self.origin_image("v1");
        let mut argv = vec!["run", "--rm", "--network", network, &image, "get"];
        argv.extend(urls.iter().map(String::as_str));
        docker(&argv)
    }
}

impl Drop for Scope {
    fn drop(&mut self) {
        let mut left = Vec::new();
        for s in &self.services {
            if let Err(e) = docker(&["service", "rm", s]) {
                if !e.contains("not found") {
                    left.push(e);
                }
            }
        }
        for s in &self.services {
            if !wait_containers_gone(s, Duration::from_secs(60)) {
                left.push(format!("containers of service {s} still exist"));
            }
        }
        for c in &self.configs {
            if let Err(e) = docker(&["config", "rm", c]) {
                left.push(e);
            }
        }
        for n in &self.networks {
            // The network can be busy for a moment after its last container went away.
            let start = Instant::now();
            loop {
                match docker(&["network", "rm", n]) {
                    Ok(_) => break,
                    Err(e) if start.elapsed() > Duration::from_secs(30) => {
                        left.push(e);
                        break;
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(500)),
                }
            }
        }
        for i in &self.images {
            if let Err(e) = docker(&["rmi", "-f", i]) {
                left.push(e);
            }
        }
        if !left.is_empty() {
            eprintln!("[swarm] cleanup of {} left things behind:\n  {}", self.prefix, left.join("\n  "));
        }
    }
}

/// A free TCP port on the host right now (for host-mode publishing; the tiny race with other
/// processes is acceptable for a test).
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind(("0.0.0.0", 0)).expect("bind an ephemeral port");
    l.local_addr().expect("local addr").port()
}

/// swarmgate running as a Swarm service, published in host mode on `127.0.0.1:port`.
pub struct Gate {
    pub service: String,
    pub port: u16,
}

impl Scope {
    /// Deploys swarmgate as the product runs it: one task on a manager, the Docker socket
    /// mounted read-only, attached to `network`, port 80 published in host mode on a free host
    /// port, configuration from a Swarm config naming `network` as the one whose task IPs to
    /// use. Returns once it answers HTTP on 127.0.0.1.
    pub fn swarmgate(&mut self, network: &str) -> Gate {
        self.deploy_gate(network, true)
    }

    /// [`Scope::swarmgate`] without `[docker] networks`: swarmgate must find the networks of
    /// its own container (the default, and only testable inside a real Swarm task).
    pub fn swarmgate_own_networks(&mut self, network: &str) -> Gate {
        self.deploy_gate(network, false)
    }

    fn deploy_gate(&mut self, network: &str, pin_network: bool) -> Gate {
        let networks = if pin_network { format!("networks = [\"{network}\"]\n") } else { String::new() };
        let config = format!(
            "# written by tests/support/swarm.rs\n\
             [listen]\nhttp = \"0.0.0.0:80\"\n\n\
             [log]\naccess = false\n\n\
             [docker]\nenabled = true\n{networks}"
        );
        let config = self.config("gate-toml", &config);
        let image = self.swarmgate_image();
        let port = free_port();
        let publish = format!("mode=host,target=80,published={port}");
        let config_mount = format!("source={config},target=/etc/swarmgate/swarmgate.toml");
        let service = self.service(
            "gate",
            &[
                "--network",
                network,
                "--constraint",
                "node.role==manager",
                "--mount",
                "type=bind,source=/var/run/docker.sock,target=/var/run/docker.sock,readonly",
                "--publish",
                &publish,
                "--config",
                &config_mount,
                "--env",
                "RUST_LOG=info",
                "--env",
                "NO_COLOR=1",
                &image,
            ],
        );
        wait_converged(&service, 1, Duration::from_secs(60));
        let gate = Gate { service, port };
        wait_for("swarmgate to answer HTTP on 127.0.0.1", Duration::from_secs(30), Duration::from_millis(200), || {
            block_on(http_get(gate.port, "sgtest.invalid", "/")).map(|_| ())
        });
        gate
    }
}

impl Gate {
    /// The last lines of the gate's log, for failure messages.
    pub fn logs(&self) -> String {
        let out = Command::new("docker")
            .args(["service", "logs", "--raw", "--tail", "60", &self.service])
            .output()
            .map(|o| format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr)))
            .unwrap_or_else(|e| e.to_string());
        format!("--- last log lines of {} ---\n{out}", self.service)
    }
}

/// Runs a future to completion from synchronous code (outside any runtime).
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime").block_on(f)
}

/// One HTTP answer.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: String,
}

impl Reply {
    /// The replica that answered (the origin's `x-origin-name`), if an origin did.
    pub fn origin(&self) -> Option<&str> {
        self.headers.get("x-origin-name").and_then(|v| v.to_str().ok())
    }

    /// A response header as text ("" when absent).
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
    }
}

/// A keep-alive HTTP/1.1 client connection to `127.0.0.1:port`.
pub struct Conn {
    sender: hyper::client::conn::http1::SendRequest<http_body_util::Empty<bytes::Bytes>>,
}

impl Conn {
    pub async fn open(port: u16) -> Result<Conn, String> {
        let stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.map_err(|e| format!("connect: {e}"))?;
        let _ = stream.set_nodelay(true);
        let (sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        tokio::spawn(conn);
        Ok(Conn { sender })
    }

    /// Whether a request can still be sent (the server did not close the connection while idle).
    pub async fn usable(&mut self) -> bool {
        !self.sender.is_closed() && self.sender.ready().await.is_ok()
    }

    /// Sends `GET path` with `Host: host` and reads the whole answer (10 s budget).
    pub async fn get(&mut self, host: &str, path: &str) -> Result<Reply, String> {
        let req = http::Request::get(path)
            .header(http::header::HOST, host)
            .body(http_body_util::Empty::new())
            .map_err(|e| format!("request: {e}"))?;
        let work = async {
            let resp = self.sender.send_request(req).await.map_err(|e| format!("send: {e}"))?;
            let (parts, body) = resp.into_parts();
            let body = http_body_util::BodyExt::collect(body).await.map_err(|e| format!("body: {e}"))?.to_bytes();
            Ok(Reply {
                status: parts.status.as_u16(),
                headers: parts.headers,
                body: String::from_utf8_lossy(&body).into_owned(),
            })
        };
        tokio::time::timeout(Duration::from_secs(10), work).await.map_err(|_| "no answer within 10s".to_string())?
    }
}

/// One request on a fresh connection.
pub async fn http_get(port: u16, host: &str, path: &str) -> Result<Reply, String> {
    Conn::open(port).await?.get(host, path).await
}

/// The distinct replicas seen in `n` requests for `host` (each on a fresh connection, so a
/// connection-sticky balancer cannot hide replicas); Err on any non-200 answer.
pub async fn replicas_seen(port: u16, host: &str, n: usize) -> Result<std::collections::BTreeSet<String>, String> {
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..n {
        let r = http_get(port, host, "/").await?;
        if r.status != 200 {
            return Err(format!("{host}: status {} body {:?}", r.status, r.body));
        }
        seen.insert(r.origin().ok_or_else(|| format!("{host}: answer without x-origin-name: {r:?}"))?.to_string());
    }
    Ok(seen)
}

/// What a steady load run saw.
#[derive(Debug, Default)]
pub struct LoadReport {
    pub requests: u64,
    pub failures: u64,
    /// The first few failures, verbatim.
    pub first_failures: Vec<String>,
    /// Answers per origin `version`.
    pub versions: BTreeMap<String, u64>,
}

/// Runs `clients` keep-alive clients sending `GET /load` with `Host: host` to 127.0.0.1:port,
/// each pausing `pause` between requests, until `stop` is set. A request counts as failed when
/// it was sent and got no answer, or an answer other than 200 from an origin. A connection the
/// server closed while idle is replaced without counting (every HTTP client does that).
pub async fn steady_load(
    port: u16,
    host: String,
    clients: usize,
    pause: Duration,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> LoadReport {
    use std::sync::atomic::Ordering;
    let mut handles = Vec::new();
    for _ in 0..clients {
        let host = host.clone();
        let stop = stop.clone();
        handles.push(tokio::spawn(async move {
            let mut rep = LoadReport::default();
            let mut conn: Option<Conn> = None;
            let fail = |rep: &mut LoadReport, what: String| {
                rep.failures += 1;
                if rep.first_failures.len() < 10 {
                    rep.first_failures.push(what);
                }
            };
            while !stop.load(Ordering::Relaxed) {
                if let Some(c) = conn.as_mut() {
                    if !c.usable().await {
                        conn = None;
                    }
                }
                if conn.is_none() {
                    match Conn::open(port).await {
                        Ok(c) => conn = Some(c),
                        Err(e) => {
                            rep.requests += 1;
                            fail(&mut rep, format!("{:?}: {e}", Instant::now()));
                            tokio::time::sleep(pause).await;
                            continue;
                        }
                    }
                }
                let c = conn.as_mut().expect("connection just ensured");
                rep.requests += 1;
                match c.get(&host, "/load").await {
                    Ok(r) if r.status == 200 && r.origin().is_some() => {
                        *rep.versions.entry(r.header("x-origin-version").to_string()).or_default() += 1;
                    }
                    Ok(r) => {
                        fail(&mut rep, format!("status {} body {:?}", r.status, r.body.trim()));
                    }
                    Err(e) => {
                        fail(&mut rep, e);
                        conn = None;
                    }
                }
                tokio::time::sleep(pause).await;
            }
            rep
        }));
    }
    let mut total = LoadReport::default();
    for h in handles {
        let rep = h.await.expect("load client task");
        total.requests += rep.requests;
        total.failures += rep.failures;
        for f in rep.first_failures {
            if total.first_failures.len() < 10 {
                total.first_failures.push(f);
            }
        }
        for (v, n) in rep.versions {
            *total.versions.entry(v).or_default() += n;
        }
    }
    total
}
