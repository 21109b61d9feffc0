//! The `swarmgate` binary as an operator uses it: check, version, run + SIGTERM.

mod support;

use std::process::{Command, Stdio};
use std::time::Duration;

use http::StatusCode;
use support::client::get;
use support::origin::Origin;

const BIN: &str = env!("CARGO_BIN_EXE_swarmgate");

#[test]
fn version_prints_the_crate_version() {
    let out = Command::new(BIN).arg("--version").output().unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), format!("swarmgate {}", env!("CARGO_PKG_VERSION")));
}

#[test]
fn check_prints_the_table_for_the_embedded_default() {
    let out = Command::new(BIN).arg("check").output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("hello.localhost"), "{stdout}");
    assert!(stdout.contains("127.0.0.1:2019"), "{stdout}");
    assert!(stdout.contains("no problems"), "{stdout}");
}

#[test]
fn check_fails_with_every_error_and_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "[[routes]]\nhosts = [\"a.example.com\"]\nupstreams = [\"no-port\"]\npath = \"api\"\n")
        .unwrap();
    let out = Command::new(BIN).args(["check", "--config"]).arg(&path).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("routes[0].upstreams"), "{stderr}");
    assert!(stderr.contains("routes[0].path"), "{stderr}");
}

#[tokio::test]
async fn sigterm_lets_in_flight_requests_finish_and_exits_zero() {
    let origin = Origin::start("o").await;
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let path = dir.path().join("sg.toml");
    std::fs::write(
        &path,
        format!("[listen]\nhttp = \"127.0.0.1:{port}\"\n[log]\naccess = false\n[docker]\nenabled = false\n[[routes]]\nhosts = [\"app.example.com\"]\nupstreams = [\"{}\"]\n", origin.addr),
    )
    .unwrap();
    let mut child = Command::new(BIN)
        .args(["run", "--config"])
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut up = false;
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(up, "swarmgate did not start listening");
    let inflight: Vec<_> =
        (0..8).map(|_| tokio::spawn(async move { get(addr, "app.example.com", "/delay/800").await })).collect();
    tokio::time::sleep(Duration::from_millis(250)).await;
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    for r in inflight {
        assert_eq!(r.await.unwrap().status, StatusCode::OK);
    }
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap()).await.unwrap();
    assert_eq!(status.code(), Some(0));
}

/// `tests/fixtures/service-inspect.json` is real `docker service inspect` output (Docker
/// 20.10.24) of a service labelled in all three dialects, and `tasks.json` the engine's
/// `/tasks` for it (both tasks rejected: the image does not exist).
#[test]
fn check_reads_real_docker_service_inspect_output() {
    let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");
    let out = Command::new(BIN)
        .args([
            "check",
            "--services",
            &format!("{fixtures}/service-inspect.json"),
            "--tasks",
            &format!("{fixtures}/tasks.json"),
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    // The caddy and native labels become routes; no task is running, so they would answer 503.
    let caddy = stdout.lines().find(|l| l.contains("hosts=shop.example.com")).expect(&stdout);
    assert!(caddy.contains("no endpoints: 503"), "{caddy}");
    assert!(stdout.lines().any(|l| l.contains("hosts=shop.example.net") && l.contains("label swarmgate")), "{stdout}");
    // The Traefik router has a typo'd field: a problem naming the label, exit code 1.
    assert!(stdout.contains("sgfixture-shop: traefik.http.routers.shop.entrypoint"), "{stdout}");
    assert_eq!(out.status.code(), Some(1));
}

/// `swarmgate check --services` on a service whose health interval no clock can hold: the
/// label is reported by name and the command ends normally (it used to panic).
#[test]
fn check_reports_a_huge_duration_label_instead_of_panicking() {
    let dir = tempfile::tempdir().unwrap();
    let services = dir.path().join("services.json");
    std::fs::write(
        &services,
        r#"[{"ID": "x1", "Spec": {"Name": "huge", "Labels": {
            "swarmgate.host": "huge.example.org",
            "swarmgate.health.path": "/health",
            "swarmgate.health.interval": "99999999999999999999999s"}}}]"#,
    )
    .unwrap();
    let out = Command::new(BIN).args(["check", "--services"]).arg(&services).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(stdout.contains("huge: swarmgate.health.interval"), "{stdout}\n{stderr}");
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
}

/// `check` can gate a deploy: a label that changes nothing served (a warning) prints but exits
/// 0, `--strict` makes it fatal, an error exits 1; `--format json` is one document a script
/// can read, with each problem's severity.
#[test]
fn check_exits_1_on_errors_only_unless_strict_and_speaks_json() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, labels: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, format!(r#"[{{"ID": "x1", "Spec": {{"Name": "app", "Labels": {{{labels}}}}}}}]"#))
            .unwrap();
        path
    };
    let good = r#""traefik.enable": "true", "traefik.http.routers.app.rule": "Host(`app.example.org`)",
        "traefik.http.services.app.loadbalancer.server.port": "80""#;
    let warned = write("warned.json", &format!(r#"{good}, "traefik.swarm.lbswarm": "true""#));
    let broken = write("broken.json", &format!(r#"{good}, "traefik.http.routers.app.entrypoints": "nowhere""#));
    let run = |args: &[&str], services: &std::path::Path| {
        let out = Command::new(BIN).arg("check").args(args).arg("--services").arg(services).output().unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let (code, stdout) = run(&[], &warned);
    assert!(stdout.contains("warning: app: traefik.swarm.lbswarm"), "{stdout}");
    assert!(stdout.contains("hosts=app.example.org"), "{stdout}");
    assert_eq!(code, Some(0), "{stdout}");
    assert_eq!(run(&["--strict"], &warned).0, Some(1));
    let (code, stdout) = run(&[], &broken);
    assert!(stdout.contains("error: app: traefik.http.routers.app.entrypoints"), "{stdout}");
    assert_eq!(code, Some(1), "{stdout}");

    let (code, stdout) = run(&["--format", "json"], &warned);
    assert_eq!(code, Some(0));
    let doc: serde_json::Value = serde_json::from_str(&stdout).expect(&stdout);
    let routes = doc["routes"].as_array().expect("routes");
    assert!(routes.iter().any(|r| r["spec"]["hosts"][0] == "app.example.org"), "{doc:#}");
    let p = &doc["problems"][0];
    assert_eq!(
        (p["key"].as_str(), p["severity"].as_str()),
        (Some("traefik.swarm.lbswarm"), Some("warning")),
        "{doc:#}"
    );
}

/// No bcrypt hash, credential header value, Authorization or Cookie reaches `/api/*` or any
/// log line, even at `trace`. Runs the binary so every log line (ours and the libraries') is
/// captured.
#[tokio::test]
async fn secrets_stay_out_of_the_admin_api_and_the_logs() {
    use base64::Engine;
    let origin = Origin::start("o").await;
    let dir = tempfile::tempdir().unwrap();
    let hash = bcrypt::hash("s3cret", 4).unwrap();
    let port = |_: ()| std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let (http, admin) = (port(()), port(()));
    let path = dir.path().join("sg.toml");
    std::fs::write(
        &path,
        format!(
            "storage = {storage:?}\n[listen]\nhttp = \"127.0.0.1:{http}\"\nadmin = \"127.0.0.1:{admin}\"\n[log]\naccess = true\nlevel = \"trace\"\n[docker]\nenabled = false\n\
             [[routes]]\nhosts = [\"app.example.com\"]\nupstreams = [\"{o}\"]\nauth.basic = [\"alice:{hash}\"]\nheaders.request = {{ Authorization = \"Bearer upstream-token-123\", X-Api-Key = \"key-456\" }}\n",
            storage = dir.path().join("state"),
            o = origin.addr,
        ),
    )
    .unwrap();
    let log = dir.path().join("log.txt");
    let mut child = Command::new(BIN)
        .args(["run", "--config"])
        .arg(&path)
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(std::fs::File::create(dir.path().join("err.txt")).unwrap())
        .spawn()
        .unwrap();
    let (http, admin): (std::net::SocketAddr, std::net::SocketAddr) =
        (format!("127.0.0.1:{http}").parse().unwrap(), format!("127.0.0.1:{admin}").parse().unwrap());
    let creds = base64::engine::general_purpose::STANDARD.encode("alice:s3cret");
    let mut ok = false;
    for _ in 0..100 {
        if std::net::TcpStream::connect(http).is_err() {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        }
        let req = http::Request::get("/")
            .header("host", "app.example.com")
            .header("authorization", format!("Basic {creds}"))
            .header("cookie", "session=cookie-789")
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .unwrap();
        if support::client::send(http, req).await.status == StatusCode::OK {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ok, "the authenticated request never succeeded");
    let mut api = String::new();
    for p in ["/api/routes", "/api/problems", "/api/endpoints", "/api/certificates"] {
        api.push_str(&get(admin, "admin", p).await.text());
    }
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    child.wait().unwrap();
    let logs = std::fs::read_to_string(&log).unwrap() + &std::fs::read_to_string(dir.path().join("err.txt")).unwrap();
    assert!(logs.contains("app.example.com"), "the logs were not captured: {logs}");
    assert!(api.contains("<redacted>"), "{api}");
    for secret in [hash.as_str(), &hash[7..], "upstream-token-123", "key-456", creds.as_str(), "s3cret", "cookie-789"] {
        assert!(!api.contains(secret), "{secret:?} in the admin API");
        assert!(!logs.contains(secret), "{secret:?} in the logs");
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Runs `swarmgate run --config <dir>/sg.toml` with `toml`, waiting until `wait_for` accepts.
fn spawn_binary(dir: &std::path::Path, toml: &str, wait_for: u16) -> std::process::Child {
    let path = dir.join("sg.toml");
    std::fs::write(&path, toml).unwrap();
    let mut child = Command::new(BIN)
        .args(["run", "--config"])
        .arg(&path)
        .stdout(std::fs::File::create(dir.join("out.txt")).unwrap())
        .stderr(std::fs::File::create(dir.join("err.txt")).unwrap())
        .spawn()
        .unwrap();
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", wait_for)).is_ok() {
            return child;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("swarmgate did not listen on {wait_for}: {}", std::fs::read_to_string(dir.join("err.txt")).unwrap());
}

fn healthcheck(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(BIN).arg("healthcheck").args(args).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert_eq!(text.trim().lines().count(), 1, "one line: {text}");
    (out.status.code(), text)
}

/// The image has no curl: `swarmgate healthcheck` is its Docker health check. Ready instance
/// (found through the config's admin address, or --url), an admin port answering 503, and
/// nothing listening.
#[test]
fn healthcheck_tells_ready_from_not_ready_and_not_running() {
    let dir = tempfile::tempdir().unwrap();
    let (http, admin) = (free_port(), free_port());
    let toml = format!(
        "storage = {:?}\n[listen]\nhttp = \"127.0.0.1:{http}\"\nadmin = \"127.0.0.1:{admin}\"\n[docker]\nenabled = false\n",
        dir.path().join("state")
    );
    let mut child = spawn_binary(dir.path(), &toml, admin);
    let config = dir.path().join("sg.toml");
    let (code, text) = healthcheck(&["--config", config.to_str().unwrap()]);
    let (by_url, by_url_text) = healthcheck(&["--url", &format!("http://127.0.0.1:{admin}/readyz")]);
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    child.wait().unwrap();
    assert_eq!(code, Some(0), "{text}");
    assert!(text.starts_with("healthy: 200") && text.contains("ready"), "{text}");
    assert_eq!(by_url, Some(0), "{by_url_text}");

    // Not running: the same config, nothing listening any more.
    let (code, text) = healthcheck(&["--config", config.to_str().unwrap()]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.starts_with("unhealthy: not running?"), "{text}");

    // Not ready: whatever answers 503 (as /readyz does before the first route table).
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        use std::io::{Read, Write};
        let (mut s, _) = listener.accept().unwrap();
        let mut buf = [0u8; 1024];
        let _ = s.read(&mut buf);
        let body = "not ready: no route table loaded yet\n";
        let _ = write!(s, "HTTP/1.1 503 Service Unavailable\r\ncontent-length: {}\r\n\r\n{body}", body.len());
    });
    let (code, text) = healthcheck(&["--url", &format!("http://127.0.0.1:{port}/readyz")]);
    server.join().unwrap();
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("503") && text.contains("no route table loaded yet"), "{text}");

    // A config without an admin listener names the key to set.
    std::fs::write(&config, format!("[listen]\nhttp = \"127.0.0.1:{http}\"\n")).unwrap();
    let (code, text) = healthcheck(&["--config", config.to_str().unwrap()]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("listen.admin"), "{text}");
}

/// `[log] format = "combined"` at `trace`: each access line is a Combined Log Format line with
/// the request id (a trusted proxy's, or swarmgate's own, as sent upstream), and no credential
/// header (Authorization, Proxy-Authorization, Cookie, Set-Cookie) appears in any line.
#[tokio::test]
async fn combined_access_log_carries_the_request_id_and_no_credentials() {
    let origin = Origin::start("o").await;
    let dir = tempfile::tempdir().unwrap();
    let http = free_port();
    let toml = format!(
        "storage = {:?}\n[listen]\nhttp = \"127.0.0.1:{http}\"\n[log]\nformat = \"combined\"\nlevel = \"trace\"\n\
         [forwarding]\ntrusted_proxies = [\"127.0.0.1\"]\n[docker]\nenabled = false\n\
         [[routes]]\nhosts = [\"app.example.com\"]\nupstreams = [\"{}\"]\nheaders.response = {{ Set-Cookie = \"sid=set-cookie-secret\" }}\n",
        dir.path().join("state"),
        origin.addr
    );
    let mut child = spawn_binary(dir.path(), &toml, http);
    let addr: std::net::SocketAddr = format!("127.0.0.1:{http}").parse().unwrap();
    let request = |id: Option<&str>| {
        let mut r = http::Request::get("/page?q=1")
            .header("host", "app.example.com")
            .header("authorization", "Bearer authz-secret")
            .header("proxy-authorization", "Basic cHJveHktc2VjcmV0")
            .header("cookie", "session=cookie-secret")
            .header("referer", "https://ref.example/")
            .header("user-agent", "agent/1.0");
        if let Some(id) = id {
            r = r.header("x-request-id", id);
        }
        r.body(http_body_util::Full::new(bytes::Bytes::new())).unwrap()
    };
    let trusted = support::client::send(addr, request(Some("edge-id-42"))).await;
    let generated = support::client::send(addr, request(None)).await;
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    child.wait().unwrap();
    assert_eq!(trusted.header("set-cookie"), Some("sid=set-cookie-secret"));
    assert_eq!(trusted.header("x-echo-x-request-id"), Some("edge-id-42"));
    let own_id = generated.header("x-echo-x-request-id").expect("an id upstream").to_owned();
    let logs = std::fs::read_to_string(dir.path().join("out.txt")).unwrap()
        + &std::fs::read_to_string(dir.path().join("err.txt")).unwrap();
    let access: Vec<&str> = logs.lines().filter(|l| l.contains("\"GET /page?q=1 HTTP/1.1\"")).collect();
    assert_eq!(access.len(), 2, "{logs}");
    let shape = "\"GET /page?q=1 HTTP/1.1\" 200 ";
    for (line, id) in access.iter().zip(["edge-id-42", own_id.as_str()]) {
        assert!(line.starts_with("127.0.0.1 - - ["), "{line}");
        assert!(
            line.contains(shape) && line.ends_with(&format!(" \"https://ref.example/\" \"agent/1.0\" {id}")),
            "{line}"
        );
    }
    for secret in ["authz-secret", "cHJveHktc2VjcmV0", "cookie-secret", "set-cookie-secret"] {
        assert!(!logs.contains(secret), "{secret:?} in the logs");
    }
    assert!(logs.contains("swarmgate listening"), "the other lines keep the text format: {logs}");
}
