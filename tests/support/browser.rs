//! Headless Chromium driven over the DevTools protocol (CDP), for tests of the dashboard.
//!
//! Launches Debian's `chromium` (or `$CHROMIUM`) with `--remote-debugging-port=0` and a fresh
//! profile in a temp dir, reads the port from the profile's `DevToolsActivePort`, and talks to
//! the first page target over a WebSocket. Every console error, uncaught exception, log entry
//! of level error (failed loads, CSP violations) and JavaScript dialog is recorded, so a test
//! can assert the page produced none. A missing chromium fails the test: CI installs it.
//! The browser runs in its own process group, killed whole on drop (pass or panic).

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{json, Value};
use std::os::unix::process::CommandExt;
use tungstenite::{Message, WebSocket};

/// A headless browser with one page.
pub struct Browser {
    ws: WebSocket<TcpStream>,
    next_id: u64,
    /// What went wrong in the page: console errors, exceptions, error log entries, dialogs.
    pub errors: Vec<String>,
    // Dropped after the socket, before the profile: the browser dies before its files go.
    _process: Process,
    _profile: tempfile::TempDir,
}

/// The browser's process group, killed whole on drop: the renderer, GPU and zygote processes
/// outlive a killed parent. Held from the spawn on, so a launch that fails kills it too.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        // SAFETY: a plain kill(2) of the group this test spawned (process_group(0) made the
        // child its leader).
        unsafe {
            libc::kill(-(self.0.id() as i32), libc::SIGKILL);
        }
        let _ = self.0.wait();
    }
}

impl Browser {
    /// Starts chromium and attaches to its blank page, with the page, runtime and log domains
    /// enabled so nothing the page reports is missed.
    pub fn launch() -> Browser {
        let bin = std::env::var("CHROMIUM").unwrap_or_else(|_| "chromium".into());
        let profile = tempfile::tempdir().unwrap();
        let child = Command::new(&bin)
            .args(["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run"])
            .args(["--disable-crash-reporter", "--disable-breakpad"])
            .args(["--disable-extensions", "--disable-background-networking", "--hide-scrollbars", "--mute-audio"])
            .arg("--remote-debugging-port=0")
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {bin:?} ({e}): install Debian's chromium package (CI does)"));
        let process = Process(child);
        let ws = connect(profile.path());
        let mut browser = Browser { ws, next_id: 0, errors: Vec::new(), _process: process, _profile: profile };
        for domain in ["Page.enable", "Runtime.enable", "Log.enable"] {
            browser.call(domain, json!({}));
        }
        browser
    }

    /// Sends one command and returns its `result`, recording the events that arrive meanwhile.
    pub fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let msg = json!({ "id": id, "method": method, "params": params }).to_string();
        self.ws.send(Message::text(msg)).unwrap_or_else(|e| panic!("CDP send {method}: {e}"));
        loop {
            let v = self.read();
            if v["id"] == id {
                assert!(v.get("error").is_none(), "CDP {method} failed: {}", v["error"]);
                return v["result"].clone();
            }
            self.event(&v);
        }
    }

    fn read(&mut self) -> Value {
        loop {
            match self.ws.read().unwrap_or_else(|e| panic!("CDP read: {e}")) {
                Message::Text(t) => return serde_json::from_str(t.as_str()).unwrap(),
                Message::Close(_) => panic!("the browser closed the DevTools connection"),
                _ => continue,
            }
        }
    }

    /// Records what the page reports as an error; dismisses dialogs so the page goes on.
    fn event(&mut self, v: &Value) {
        let p = &v["params"];
        match v["method"].as_str().unwrap_or_default() {
            "Runtime.consoleAPICalled" if matches!(p["type"].as_str(), Some("error" | "assert")) => {
                let args: Vec<String> = p["args"].as_array().into_iter().flatten().map(|a| a.to_string()).collect();
                self.errors.push(format!("console.{}: {}", p["type"], args.join(" ")));
            }
            "Runtime.exceptionThrown" => self.errors.push(format!("exception: {}", p["exceptionDetails"])),
            "Log.entryAdded" if p["entry"]["level"] == "error" => {
                self.errors.push(format!("log: {} ({})", p["entry"]["text"], p["entry"]["url"]))
            }
            // With `cancel_auth_prompts`: let every request through, and answer each
            // credentials prompt as a person clicking Cancel would.
            "Fetch.requestPaused" => self.send("Fetch.continueRequest", json!({ "requestId": p["requestId"] })),
            "Fetch.authRequired" => self.send(
                "Fetch.continueWithAuth",
                json!({ "requestId": p["requestId"], "authChallengeResponse": { "response": "CancelAuth" } }),
            ),
            "Page.javascriptDialogOpening" => {
                self.errors.push(format!("dialog: {}", p["message"]));
                self.send("Page.handleJavaScriptDialog", json!({ "accept": true }));
            }
            _ => {}
        }
    }

    /// Sends a command whose answer nobody waits for (id 0, ignored when it arrives).
    fn send(&mut self, method: &str, params: Value) {
        let msg = json!({ "id": 0, "method": method, "params": params });
        let _ = self.ws.send(Message::text(msg.to_string()));
    }

    /// A 401 with a basic-auth challenge makes a browser ask for credentials, and the request
    /// waits for the answer; headless there is nobody to answer, so cancel each prompt (the
    /// page then sees the 401).
    pub fn cancel_auth_prompts(&mut self) {
        self.call("Fetch.enable", json!({ "handleAuthRequests": true }));
    }

    /// Sets the viewport (a phone is `mobile`: touch metrics, no desktop layout).
    pub fn viewport(&mut self, width: u32, height: u32, mobile: bool) {
        let metrics = json!({ "width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile });
        self.call("Emulation.setDeviceMetricsOverride", metrics);
    }

    /// Loads `url` and waits for its load event.
    pub fn navigate(&mut self, url: &str) {
        let r = self.call("Page.navigate", json!({ "url": url }));
        assert!(r.get("errorText").is_none(), "navigating to {url}: {r}");
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.eval("document.readyState") != "complete" {
            assert!(Instant::now() < deadline, "{url} never finished loading");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The value of a JavaScript expression in the page.
    pub fn eval(&mut self, expression: &str) -> Value {
        let r = self.call("Runtime.evaluate", json!({ "expression": expression, "returnByValue": true }));
        assert!(r.get("exceptionDetails").is_none(), "evaluating {expression}: {}", r["exceptionDetails"]);
        r["result"]["value"].clone()
    }

    /// Polls `expression` until it is `true`; false after `timeout`.
    pub fn wait_for(&mut self, expression: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.eval(expression) == true {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Writes a PNG of the viewport to `path`.
    pub fn screenshot(&mut self, path: &Path) {
        let r = self.call("Page.captureScreenshot", json!({ "format": "png" }));
        let png = base64::engine::general_purpose::STANDARD.decode(r["data"].as_str().unwrap_or_default()).unwrap();
        std::fs::write(path, png).unwrap();
    }
}

/// Waits for the DevTools port, finds the page target and opens its WebSocket.
fn connect(profile: &Path) -> WebSocket<TcpStream> {
    let file = profile.join("DevToolsActivePort");
    let deadline = Instant::now() + Duration::from_secs(30);
    let port: u16 = loop {
        if let Some(p) = std::fs::read_to_string(&file).ok().and_then(|t| t.lines().next()?.trim().parse().ok()) {
            break p;
        }
        assert!(Instant::now() < deadline, "chromium wrote no DevToolsActivePort in 30 s");
        std::thread::sleep(Duration::from_millis(50));
    };
    let targets: Value = serde_json::from_str(&http_get(port, "/json/list")).unwrap();
    let url = targets
        .as_array()
        .and_then(|ts| ts.iter().find(|t| t["type"] == "page" && t["url"] == "about:blank"))
        .and_then(|t| t["webSocketDebuggerUrl"].as_str())
        .unwrap_or_else(|| panic!("no blank page among the DevTools targets: {targets}"))
        .to_owned();
    let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    // A page that never answers must fail the test, not hang it.
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let (ws, _) = tungstenite::client(url.as_str(), stream).unwrap_or_else(|e| panic!("DevTools WebSocket {url}: {e}"));
    ws
}

/// The body of a plain `GET` on the DevTools HTTP endpoint (which keeps the connection open:
/// read by `Content-Length`).
fn http_get(port: u16, path: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n").unwrap();
    let mut data = Vec::new();
    let mut buf = [0u8; 16384];
    loop {
        let n = s.read(&mut buf).unwrap_or_else(|e| panic!("DevTools GET {path}: {e}"));
        data.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&data);
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len = head.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length").then(|| v.trim().parse::<usize>().ok())?
            });
            if n == 0 || len.is_some_and(|len| body.len() >= len) {
                return body.to_owned();
            }
        }
        assert!(n > 0, "DevTools GET {path}: connection closed before the body");
    }
}
