//! A small Engine API client: GET requests over the Unix socket or plain TCP, JSON bodies, and
//! the `/events` line stream.
//!
//! One client for every call, rather than bollard plus a side channel for `/tasks`: bollard's
//! `Task` drops `NetworksAttachments` (so task IPs need a raw request anyway), its strict enums
//! fail a whole list on a state a newer daemon adds, and a single transport keeps timeouts and
//! error messages in one place. Paths are unversioned, so the daemon answers in its own API
//! version (every version since 1.24 has the fields we read).

use std::path::PathBuf;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper::Response;
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;

use super::types::{ContainerInspect, Event, Info, Network, Service, Task};
use super::SwarmError;

/// The engine socket when neither `[docker] host` nor `DOCKER_HOST` says otherwise.
pub const DEFAULT_HOST: &str = "unix:///var/run/docker.sock";

/// Where the engine listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DockerHost {
    Unix(PathBuf),
    /// `host:port` of a plain-HTTP engine (`tcp://` or `http://`).
    Tcp(String),
}

impl DockerHost {
    /// `unix:///path`, `tcp://host[:port]` or `http://host[:port]` (port 2375 by default).
    pub fn parse(s: &str) -> Result<Self, SwarmError> {
        let bad = |message: &str| SwarmError::BadHost { host: s.to_owned(), message: message.to_owned() };
        if let Some(path) = s.strip_prefix("unix://") {
            if path.is_empty() {
                return Err(bad("unix:// needs a socket path, e.g. unix:///var/run/docker.sock"));
            }
            return Ok(DockerHost::Unix(PathBuf::from(path)));
        }
        let rest = s.strip_prefix("tcp://").or_else(|| s.strip_prefix("http://"));
        match rest {
            Some(rest) => {
                let authority = rest.trim_end_matches('/');
                if authority.is_empty() || authority.contains('/') {
                    return Err(bad("expected tcp://host:port"));
                }
                let has_port = match authority.strip_prefix('[') {
                    Some(v6) => v6.split_once(']').is_some_and(|(_, after)| after.starts_with(':')),
                    None => authority.contains(':'),
                };
                Ok(DockerHost::Tcp(if has_port { authority.to_owned() } else { format!("{authority}:2375") }))
            }
            None if s.starts_with("https://") || s.starts_with("ssh://") || s.starts_with("npipe://") => Err(bad(
                "only unix://, tcp:// and http:// are supported; mount the socket or reach the engine over plain HTTP on a trusted network",
            )),
            None => Err(bad("expected unix:///path/to/docker.sock, tcp://host:port or http://host:port")),
        }
    }

    /// `[docker] host`, else `DOCKER_HOST`, else the default socket.
    pub fn from_config(configured: Option<&str>) -> Result<Self, SwarmError> {
        Self::choose(configured, std::env::var("DOCKER_HOST").ok().as_deref())
    }

    /// The precedence of [`from_config`](Self::from_config), with the environment passed in.
    pub fn choose(configured: Option<&str>, docker_host_env: Option<&str>) -> Result<Self, SwarmError> {
        let env = docker_host_env.filter(|v| !v.trim().is_empty());
        Self::parse(configured.or(env).unwrap_or(DEFAULT_HOST))
    }
}

impl std::fmt::Display for DockerHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DockerHost::Unix(p) => write!(f, "unix://{}", p.display()),
            DockerHost::Tcp(a) => write!(f, "tcp://{a}"),
        }
    }
}

/// GETs against one engine. Cheap to clone; each request opens its own connection (a Unix
/// socket connect costs microseconds, and a fresh connection never hits a half-closed one).
#[derive(Debug, Clone)]
pub struct DockerClient {
    host: DockerHost,
    timeout: Duration,
}

/// Time for one list call, connect to last byte.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

impl DockerClient {
    pub fn new(host: DockerHost) -> Self {
        DockerClient { host, timeout: REQUEST_TIMEOUT }
    }

    pub fn host(&self) -> &DockerHost {
        &self.host
    }

    fn unreachable(&self, message: impl std::fmt::Display) -> SwarmError {
        SwarmError::Unreachable { host: self.host.to_string(), message: message.to_string() }
    }

    /// Connect, send `GET path`, return the response head (the body streams).
    async fn send(&self, path: &str) -> Result<Response<Incoming>, SwarmError> {
        let host_header = match &self.host {
            DockerHost::Unix(_) => "docker".to_owned(),
            DockerHost::Tcp(a) => a.clone(),
        };
        let req = hyper::Request::get(path)
            .header(hyper::header::HOST, host_header)
            .header(hyper::header::USER_AGENT, concat!("swarmgate/", env!("CARGO_PKG_VERSION")))
            .body(Empty::<Bytes>::new())
            .map_err(|e| self.unreachable(format!("bad request path {path:?}: {e}")))?;
        match &self.host {
            DockerHost::Unix(p) => {
                let io = tokio::net::UnixStream::connect(p).await.map_err(|e| self.unreachable(e))?;
                self.send_on(io, req).await
            }
            DockerHost::Tcp(a) => {
                let io = tokio::net::TcpStream::connect(a.as_str()).await.map_err(|e| self.unreachable(e))?;
                let _ = io.set_nodelay(true);
                self.send_on(io, req).await
            }
        }
    }

    async fn send_on<T>(&self, io: T, req: hyper::Request<Empty<Bytes>>) -> Result<Response<Incoming>, SwarmError>
    where
        T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let (mut tx, conn) =
            hyper::client::conn::http1::handshake(TokioIo::new(io)).await.map_err(|e| self.unreachable(e))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        tx.send_request(req).await.map_err(|e| self.unreachable(e))
    }

    /// `GET path` → the whole body, with non-2xx answers turned into errors.
    pub async fn get_bytes(&self, path: &str) -> Result<Bytes, SwarmError> {
        let fut = async {
            let resp = self.send(path).await?;
            let status = resp.status();
            let body = resp.into_body().collect().await.map_err(|e| self.unreachable(e))?.to_bytes();
            if status.is_success() {
                Ok(body)
            } else {
                Err(status_error(path, status.as_u16(), &body))
            }
        };
        tokio::time::timeout(self.timeout, fut)
            .await
            .map_err(|_| self.unreachable(format!("GET {path} timed out after {:?}", self.timeout)))?
    }

    pub async fn get_json<T: DeserializeOwned>(&self, path: &str) -> Result<T, SwarmError> {
        let body = self.get_bytes(path).await?;
        serde_json::from_slice(&body).map_err(|source| SwarmError::Json { what: format!("GET {path}"), source })
    }

    /// `GET /_ping` within `within`: is anything answering at all?
    pub async fn ping(&self, within: Duration) -> Result<(), SwarmError> {
        tokio::time::timeout(within, self.get_bytes("/_ping"))
            .await
            .map_err(|_| self.unreachable(format!("no answer to /_ping within {within:?}")))?
            .map(drop)
    }

    pub async fn info(&self) -> Result<Info, SwarmError> {
        self.get_json("/info").await
    }

    pub async fn services(&self) -> Result<Vec<Service>, SwarmError> {
        self.get_json("/services").await
    }

    /// Every task whose desired state is `running` (older tasks kept as history are skipped
    /// by the engine; a task told to stop drops out of this list at once).
    pub async fn tasks(&self) -> Result<Vec<Task>, SwarmError> {
        self.get_json(&format!("/tasks?filters={}", percent_encode(r#"{"desired-state":["running"]}"#))).await
    }

    pub async fn networks(&self) -> Result<Vec<Network>, SwarmError> {
        self.get_json("/networks").await
    }

    /// `None` when no container has that id or name.
    pub async fn container(&self, id: &str) -> Result<Option<ContainerInspect>, SwarmError> {
        match self.get_json(&format!("/containers/{}/json", percent_encode(id))).await {
            Ok(c) => Ok(Some(c)),
            Err(SwarmError::Api { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Subscribe to service and network events (swarm scope). The request timeout does not
    /// apply to the stream; it ends when the engine closes it.
    pub async fn events(&self) -> Result<EventStream, SwarmError> {
        let path = format!("/events?filters={}", percent_encode(r#"{"type":["service","network"]}"#));
        let resp = tokio::time::timeout(self.timeout, self.send(&path))
            .await
            .map_err(|_| self.unreachable(format!("GET /events timed out after {:?}", self.timeout)))??;
        let status = resp.status();
        if !status.is_success() {
            let body = resp.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
            return Err(status_error("/events", status.as_u16(), &body));
        }
        Ok(EventStream { body: resp.into_body(), buf: BytesMut::new(), host: self.host.to_string() })
    }
}

/// A non-2xx answer. 503 from the swarm endpoints means "not a manager" (worker node, swarm
/// not initialised, manager still starting, or a locked swarm): say what to do about it.
fn status_error(path: &str, status: u16, body: &[u8]) -> SwarmError {
    #[derive(serde::Deserialize)]
    struct Msg {
        message: String,
    }
    let message = serde_json::from_slice::<Msg>(body)
        .map(|m| m.message)
        .unwrap_or_else(|_| String::from_utf8_lossy(&body[..body.len().min(512)]).trim().to_owned());
    if status == 503 {
        SwarmError::NotManager { detail: format!("GET {path} answered 503: {message}") }
    } else {
        SwarmError::Api { path: path.to_owned(), status, message }
    }
}

/// The `/events` body, one JSON object per line.
pub struct EventStream {
    body: Incoming,
    buf: BytesMut,
    host: String,
}

impl EventStream {
    /// The next event; `None` when the engine closed the stream. Lines that are not events
    /// (keep-alive blanks, fields we do not know) are skipped.
    pub async fn next(&mut self) -> Option<Result<Event, SwarmError>> {
        loop {
            if let Some(nl) = self.buf.iter().position(|b| *b == b'\n') {
                let line = self.buf.split_to(nl + 1);
                let line = line.trim_ascii();
                if line.is_empty() {
                    continue;
                }
                match serde_json::from_slice::<Event>(line) {
                    Ok(ev) => return Some(Ok(ev)),
                    Err(e) => {
                        tracing::debug!(error = %e, "skipping an /events line that is not an event");
                        continue;
                    }
                }
            }
            match self.body.frame().await {
                None => return None,
                Some(Err(e)) => {
                    return Some(Err(SwarmError::Unreachable {
                        host: self.host.clone(),
                        message: format!("events stream: {e}"),
                    }))
                }
                Some(Ok(frame)) => {
                    if let Ok(mut data) = frame.into_data() {
                        while data.has_remaining() {
                            let chunk = data.chunk();
                            self.buf.extend_from_slice(chunk);
                            let n = chunk.len();
                            data.advance(n);
                        }
                    }
                }
            }
        }
    }
}

/// Percent-encode everything but unreserved characters (for query values and path segments).
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_parse() {
        assert_eq!(
            DockerHost::parse("unix:///var/run/docker.sock").unwrap(),
            DockerHost::Unix("/var/run/docker.sock".into())
        );
        assert_eq!(DockerHost::parse("tcp://10.0.0.1:2375").unwrap(), DockerHost::Tcp("10.0.0.1:2375".into()));
        assert_eq!(DockerHost::parse("http://127.0.0.1:23750/").unwrap(), DockerHost::Tcp("127.0.0.1:23750".into()));
        assert_eq!(DockerHost::parse("tcp://docker").unwrap(), DockerHost::Tcp("docker:2375".into()));
        assert_eq!(DockerHost::parse("tcp://[::1]:2375").unwrap(), DockerHost::Tcp("[::1]:2375".into()));
        assert_eq!(DockerHost::parse("tcp://[::1]").unwrap(), DockerHost::Tcp("[::1]:2375".into()));
        let e = DockerHost::parse("https://x:2376").unwrap_err().to_string();
        assert!(e.contains("only unix://, tcp:// and http://"), "{e}");
        assert!(DockerHost::parse("/var/run/docker.sock").is_err());
        assert!(DockerHost::parse("unix://").is_err());
    }

    #[test]
    fn config_beats_docker_host_which_beats_the_default() {
        let tcp = DockerHost::Tcp("10.0.0.1:2375".into());
        assert_eq!(DockerHost::choose(Some("tcp://10.0.0.1:2375"), Some("unix:///x.sock")).unwrap(), tcp);
        assert_eq!(DockerHost::choose(None, Some("tcp://10.0.0.1:2375")).unwrap(), tcp);
        assert_eq!(DockerHost::choose(None, Some("")).unwrap(), DockerHost::Unix("/var/run/docker.sock".into()));
        assert_eq!(DockerHost::choose(None, None).unwrap(), DockerHost::Unix("/var/run/docker.sock".into()));
    }

    #[test]
    fn encoding() {
        assert_eq!(percent_encode(r#"{"a":["b"]}"#), "%7B%22a%22%3A%5B%22b%22%5D%7D");
    }
}
