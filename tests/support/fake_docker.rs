//! A fake Docker Engine for discovery tests: a small hyper server on 127.0.0.1 (or a Unix
//! socket) serving Engine API JSON for `/_ping`, `/info`, `/services`, `/tasks`, `/networks`,
//! `/containers/{id}/json`, and a held-open `/events` stream the test pushes lines into.
//! Both `/x` and `/v1.NN/x` paths are accepted. The test mutates the state, can make the
//! swarm endpoints answer 503 like a worker, and can stop and restart the engine on the same
//! address.

#![allow(dead_code)]

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

/// What the fake engine answers.
#[derive(Debug, Clone)]
pub struct EngineState {
    pub info: Value,
    pub services: Vec<Value>,
    pub tasks: Vec<Value>,
    pub networks: Vec<Value>,
    /// id or name → `GET /containers/{id}/json` body.
    pub containers: HashMap<String, Value>,
    /// When set, `/services` and `/tasks` answer this status and message (503 = worker).
    pub swarm_failure: Option<(u16, String)>,
}

impl Default for EngineState {
    fn default() -> Self {
        EngineState {
            info: manager_info(),
            services: Vec::new(),
            tasks: Vec::new(),
            networks: vec![
                json!({"Name": "ingress", "Id": "ingressid", "Scope": "swarm", "Driver": "overlay", "Ingress": true}),
                json!({"Name": "proxy", "Id": "proxynetid", "Scope": "swarm", "Driver": "overlay"}),
                json!({"Name": "bridge", "Id": "bridgeid", "Scope": "local", "Driver": "bridge"}),
            ],
            containers: HashMap::new(),
            swarm_failure: None,
        }
    }
}

pub fn manager_info() -> Value {
    json!({"ID": "engine1", "Name": "manager-1", "ServerVersion": "29.0.0",
           "Swarm": {"NodeID": "node1", "NodeAddr": "10.0.0.2", "LocalNodeState": "active", "ControlAvailable": true,
                     "Error": "", "RemoteManagers": [{"NodeID": "node1", "Addr": "10.0.0.2:2377"}], "Nodes": 1, "Managers": 1}})
}

pub fn worker_info() -> Value {
    json!({"ID": "engine2", "Name": "worker-1",
           "Swarm": {"NodeID": "node2", "LocalNodeState": "active", "ControlAvailable": false, "Error": ""}})
}

/// The engine's message for swarm calls on a worker.
pub const WORKER_503: &str = "This node is not a swarm manager. Worker nodes can't be used to view or modify cluster state. Please run this command on a manager node or promote the current node to a manager.";

/// A service as `GET /services` lists it.
pub fn service(id: &str, name: &str, labels: &[(&str, &str)]) -> Value {
    let labels: serde_json::Map<String, Value> = labels.iter().map(|(k, v)| (k.to_string(), json!(v))).collect();
    json!({
        "ID": id, "Version": {"Index": 10},
        "CreatedAt": "2026-11-20T09:59:00Z", "UpdatedAt": "2026-11-20T10:00:00Z",
        "Spec": {"Name": name, "Labels": labels,
                 "TaskTemplate": {"ContainerSpec": {"Image": "traefik/whoami:latest"}, "Networks": [{"Target": "proxynetid"}]},
                 "Mode": {"Replicated": {"Replicas": 1}}, "EndpointSpec": {"Mode": "vip"}},
        "Endpoint": {"Spec": {"Mode": "vip"}, "VirtualIPs": [{"NetworkID": "proxynetid", "Addr": "10.0.1.2/24"}]}
    })
}

/// A task on `networks` = `[(network id, network name, "ip/prefix")]`.
pub fn task(id: &str, service_id: &str, desired: &str, state: &str, networks: &[(&str, &str, &str)]) -> Value {
    let atts: Vec<Value> = networks
        .iter()
        .map(|(nid, name, addr)| {
            json!({"Network": {"ID": nid, "Version": {"Index": 6},
                               "Spec": {"Name": name, "Ingress": *name == "ingress", "Scope": "swarm", "Labels": {}},
                               "DriverState": {"Name": "overlay"}},
                   "Addresses": [addr]})
        })
        .collect();
    json!({
        "ID": id, "Version": {"Index": 20}, "ServiceID": service_id, "Slot": 1, "NodeID": "node1",
        "Status": {"Timestamp": "2026-11-20T10:00:12Z", "State": state, "Message": state,
                   "ContainerStatus": {"ContainerID": format!("c-{id}"), "PID": 100, "ExitCode": 0}},
        "DesiredState": desired,
        "NetworksAttachments": atts
    })
}

enum Bind {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

/// A running fake engine.
pub struct FakeDocker {
    bind: Bind,
    pub state: Arc<Mutex<EngineState>>,
    events: broadcast::Sender<String>,
    requests: Arc<Mutex<Vec<String>>>,
    generation: Mutex<CancellationToken>,
}

impl FakeDocker {
    /// On 127.0.0.1, a free port.
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let fake = Self::new(Bind::Tcp(addr));
        fake.serve_tcp(listener);
        fake
    }

    /// On a Unix socket at `path`.
    pub async fn start_unix(path: PathBuf) -> Self {
        let listener = tokio::net::UnixListener::bind(&path).unwrap();
        let fake = Self::new(Bind::Unix(path));
        fake.serve_unix(listener);
        fake
    }

    fn new(bind: Bind) -> Self {
        let (events, _) = broadcast::channel(256);
        FakeDocker {
            bind,
            state: Arc::new(Mutex::new(EngineState::default())),
            events,
            requests: Arc::new(Mutex::new(Vec::new())),
            generation: Mutex::new(CancellationToken::new()),
        }
    }

    /// The `[docker] host` value that reaches this engine.
    pub fn host(&self) -> String {
        match &self.bind {
            Bind::Tcp(a) => format!("tcp://{a}"),
            Bind::Unix(p) => format!("unix://{}", p.display()),
        }
    }

    pub fn update(&self, f: impl FnOnce(&mut EngineState)) {
        f(&mut self.state.lock().unwrap());
    }

    /// Push one event line to every open `/events` stream.
    pub fn push_event(&self, typ: &str, action: &str, id: &str, name: &str) {
        let line = json!({"Type": typ, "Action": action, "Actor": {"ID": id, "Attributes": {"name": name}},
                          "scope": "swarm", "time": 1_763_632_800, "timeNano": 1_763_632_800_000_000_000u64})
        .to_string();
        let _ = self.events.send(line);
    }

    /// Open `/events` streams.
    pub fn event_subscribers(&self) -> usize {
        self.events.receiver_count()
    }

    /// Every request path (version prefix removed, query kept), in order.
    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }

    /// Close the listener and every open connection (the engine went away).
    pub fn stop(&self) {
        self.generation.lock().unwrap().cancel();
    }

    /// Listen again on the same address.
    pub async fn restart(&self) {
        *self.generation.lock().unwrap() = CancellationToken::new();
        match &self.bind {
            Bind::Tcp(a) => {
                let mut tries = 0;
                let listener = loop {
                    match tokio::net::TcpListener::bind(a).await {
                        Ok(l) => break l,
                        Err(e) if tries < 50 => {
                            tries += 1;
                            let _ = e;
                            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                        }
                        Err(e) => panic!("rebinding {a}: {e}"),
                    }
                };
                self.serve_tcp(listener);
            }
            Bind::Unix(p) => {
                let _ = std::fs::remove_file(p);
                let listener = tokio::net::UnixListener::bind(p).unwrap();
                self.serve_unix(listener);
            }
        }
    }

    fn handler(&self) -> Handler {
        Handler {
            state: self.state.clone(),
            events: self.events.clone(),
            requests: self.requests.clone(),
            stop: self.generation.lock().unwrap().clone(),
        }
    }

    fn serve_tcp(&self, listener: tokio::net::TcpListener) {
        let h = self.handler();
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    _ = h.stop.cancelled() => return,
                    a = listener.accept() => a,
                };
                if let Ok((io, _)) = accepted {
                    tokio::spawn(h.clone().serve(io));
                }
            }
        });
    }

    fn serve_unix(&self, listener: tokio::net::UnixListener) {
        let h = self.handler();
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    _ = h.stop.cancelled() => return,
                    a = listener.accept() => a,
                };
                if let Ok((io, _)) = accepted {
                    tokio::spawn(h.clone().serve(io));
                }
            }
        });
    }
}

impl Drop for FakeDocker {
    fn drop(&mut self) {
        self.stop();
    }
}

type Body = BoxBody<Bytes, Infallible>;

#[derive(Clone)]
struct Handler {
    state: Arc<Mutex<EngineState>>,
    events: broadcast::Sender<String>,
    requests: Arc<Mutex<Vec<String>>>,
    stop: CancellationToken,
}

impl Handler {
    async fn serve<T>(self, io: T)
    where
        T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let stop = self.stop.clone();
        let svc = hyper::service::service_fn(move |req| {
            let h = self.clone();
            async move { Ok::<_, Infallible>(h.answer(req)) }
        });
        let conn = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(io), svc);
        tokio::select! {
            _ = stop.cancelled() => {}
            _ = conn => {}
        }
    }

    fn answer(&self, req: Request<Incoming>) -> Response<Body> {
        let path = strip_version(req.uri().path()).to_owned();
        let query = req.uri().query().map(|q| format!("?{q}")).unwrap_or_default();
        self.requests.lock().unwrap().push(format!("{path}{query}"));
        let st = self.state.lock().unwrap().clone();
        let swarm_failure = || st.swarm_failure.as_ref().map(|(code, msg)| error(*code, msg));
        match path.as_str() {
            "/_ping" => text(200, "OK"),
            "/info" => ok_json(&st.info),
            "/services" => swarm_failure().unwrap_or_else(|| ok_json(&Value::Array(st.services.clone()))),
            "/tasks" => swarm_failure().unwrap_or_else(|| ok_json(&Value::Array(st.tasks.clone()))),
            "/networks" => ok_json(&Value::Array(st.networks.clone())),
            "/events" => self.event_stream(),
            p if p.starts_with("/containers/") && p.ends_with("/json") => {
                let id = &p["/containers/".len()..p.len() - "/json".len()];
                match st.containers.get(id) {
                    Some(c) => ok_json(c),
                    None => error(404, &format!("No such container: {id}")),
                }
            }
            _ => error(404, "page not found"),
        }
    }

    fn event_stream(&self) -> Response<Body> {
        let rx = self.events.subscribe();
        let stop = self.stop.clone();
        let stream = futures_util::stream::unfold((rx, stop), |(mut rx, stop)| async move {
            loop {
                let next = tokio::select! {
                    _ = stop.cancelled() => return None,
                    n = rx.recv() => n,
                };
                match next {
                    Ok(line) => return Some((Ok::<_, Infallible>(Frame::data(Bytes::from(line + "\n"))), (rx, stop))),
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        });
        Response::builder()
            .status(200)
            .header("content-type", "application/json")
            .body(StreamBody::new(stream).boxed())
            .unwrap()
    }
}

/// `/v1.53/services` → `/services`.
fn strip_version(path: &str) -> &str {
    if let Some(rest) = path.strip_prefix("/v") {
        if let Some(i) = rest.find('/') {
            let ver = &rest[..i];
            if ver.split('.').count() == 2
                && ver.split('.').all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
            {
                return &rest[i..];
            }
        }
    }
    path
}

fn ok_json(v: &Value) -> Response<Body> {
    Response::builder()
        .status(200)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(v.to_string())).boxed())
        .unwrap()
}

fn text(status: u16, body: &str) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "text/plain")
        .body(Full::new(Bytes::from(body.to_owned())).boxed())
        .unwrap()
}

fn error(status: u16, message: &str) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(json!({ "message": message }).to_string())).boxed())
        .unwrap()
}

#[test]
fn version_prefix_is_stripped() {
    assert_eq!(strip_version("/v1.53/services"), "/services");
    assert_eq!(strip_version("/services"), "/services");
    assert_eq!(strip_version("/volumes"), "/volumes");
    assert_eq!(strip_version("/v1.44/containers/x/json"), "/containers/x/json");
}
