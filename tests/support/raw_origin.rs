//! A scripted HTTP/1.1 origin on 127.0.0.1:0 that writes exactly the bytes a test gives it:
//! for the framing cases a well-behaved server never produces (close-delimited bodies, 1xx
//! before the answer, early answers to uploads, connections closed at awkward moments).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A request as the origin read it.
#[derive(Debug, Clone)]
pub struct RawRequest {
    /// Index of the connection it came on (0 = first accepted).
    pub conn: usize,
    /// Index of the request on its connection.
    pub nth: usize,
    /// The head as text, lower-cased.
    pub head: String,
    /// The body, de-chunked (empty when `Reply::Early` did not read it). The script is called
    /// with the head only, before the body is read.
    pub body: Vec<u8>,
}

impl RawRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(": ")))
    }
}

/// What the origin does with a request.
pub enum Reply {
    /// Writes these bytes and keeps the connection for the next request.
    Send(Vec<u8>),
    /// Writes these bytes, then closes.
    SendAndClose(Vec<u8>),
    /// Closes without a word.
    Close,
    /// Writes these bytes right after the head, without reading the body, then closes.
    Early(Vec<u8>),
    /// Writes this chunked response head right after the request head, then reads the whole
    /// body, then sends one chunk `<n> bytes` and the last chunk (an upstream that answers
    /// early and keeps reading, as echo and transcoding services do).
    HeadFirst(Vec<u8>),
    /// After reading the whole request, plays these steps in order (a misbehaving upstream:
    /// pauses mid-response, resets, never answers). The connection is closed after the last
    /// step unless that step is `Hang`.
    Steps(Vec<Step>),
}

/// One move of a [`Reply::Steps`] script.
pub enum Step {
    Write(Vec<u8>),
    Sleep(std::time::Duration),
    /// Aborts the connection with a TCP reset (linger 0), as a crashing process does.
    Reset,
    /// Holds the connection open and says nothing more, for ever.
    Hang,
}

type Script = dyn Fn(&RawRequest) -> Reply + Send + Sync;

pub struct RawOrigin {
    pub addr: SocketAddr,
    pub connections: Arc<AtomicUsize>,
    pub requests: Arc<Mutex<Vec<RawRequest>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for RawOrigin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl RawOrigin {
    pub async fn start(script: impl Fn(&RawRequest) -> Reply + Send + Sync + 'static) -> RawOrigin {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let script: Arc<Script> = Arc::new(script);
        let (conns, reqs) = (connections.clone(), requests.clone());
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let conn = conns.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(serve(stream, conn, script.clone(), reqs.clone()));
            }
        });
        RawOrigin { addr, connections, requests, task }
    }

    pub fn requests(&self) -> Vec<RawRequest> {
        self.requests.lock().unwrap().clone()
    }

    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

async fn serve(mut stream: TcpStream, conn: usize, script: Arc<Script>, seen: Arc<Mutex<Vec<RawRequest>>>) {
    let mut buf = Vec::new();
    for nth in 0.. {
        let Some(head_end) = read_until(&mut stream, &mut buf, b"\r\n\r\n").await else { return };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_lowercase();
        buf.drain(..head_end + 4);
        let mut req = RawRequest { conn, nth, head, body: Vec::new() };
        let reply = script(&req);
        if let Reply::HeadFirst(head) = &reply {
            if stream.write_all(head).await.is_err() {
                return;
            }
            let Some(body) = read_body(&mut stream, &mut buf, &req).await else { return };
            let text = format!("{} bytes", body.len());
            req.body = body;
            seen.lock().unwrap().push(req);
            let end = format!("{:x}\r\n{text}\r\n0\r\n\r\n", text.len());
            if stream.write_all(end.as_bytes()).await.is_err() {
                return;
            }
            continue;
        }
        if let Reply::Early(bytes) = &reply {
            seen.lock().unwrap().push(req);
            let _ = stream.write_all(bytes).await;
            // Lingering close, as real servers do: drain what the client still sends so the
            // kernel does not answer it with a reset that could destroy the reply in flight.
            let _ = stream.shutdown().await;
            let mut sink = [0u8; 64 * 1024];
            let drain = async { while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {} };
            let _ = tokio::time::timeout(std::time::Duration::from_secs(5), drain).await;
            return;
        }
        req.body = match read_body(&mut stream, &mut buf, &req).await {
            Some(b) => b,
            None => return,
        };
        seen.lock().unwrap().push(req);
        match reply {
            Reply::Send(bytes) => {
                if stream.write_all(&bytes).await.is_err() {
                    return;
                }
            }
            Reply::SendAndClose(bytes) => {
                let _ = stream.write_all(&bytes).await;
                return;
            }
            Reply::Steps(steps) => return play(stream, steps).await,
            Reply::Close | Reply::Early(_) | Reply::HeadFirst(_) => return,
        }
    }
}

/// Reads until `pat` is in `buf`; returns its offset (None on end of stream).
async fn read_until(stream: &mut TcpStream, buf: &mut Vec<u8>, pat: &[u8]) -> Option<usize> {
    loop {
        if let Some(i) = buf.windows(pat.len()).position(|w| w == pat) {
            return Some(i);
        }
        let mut chunk = [0u8; 16 * 1024];
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

async fn read_exact_into(stream: &mut TcpStream, buf: &mut Vec<u8>, n: usize) -> Option<Vec<u8>> {
    while buf.len() < n {
        let mut chunk = [0u8; 16 * 1024];
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(k) => buf.extend_from_slice(&chunk[..k]),
        }
    }
    Some(buf.drain(..n).collect())
}

async fn read_body(stream: &mut TcpStream, buf: &mut Vec<u8>, req: &RawRequest) -> Option<Vec<u8>> {
    if let Some(len) = req.header("content-length") {
        return read_exact_into(stream, buf, len.trim().parse().ok()?).await;
    }
    if req.header("transfer-encoding").is_some_and(|te| te.contains("chunked")) {
        let mut body = Vec::new();
        loop {
            let line_end = read_until(stream, buf, b"\r\n").await?;
            let line = String::from_utf8_lossy(&buf[..line_end]).into_owned();
            buf.drain(..line_end + 2);
            let size = usize::from_str_radix(line.split(';').next()?.trim(), 16).ok()?;
            if size == 0 {
                // Trailers, then the empty line.
                loop {
                    let end = read_until(stream, buf, b"\r\n").await?;
                    buf.drain(..end + 2);
                    if end == 0 {
                        return Some(body);
                    }
                }
            }
            body.extend(read_exact_into(stream, buf, size).await?);
            read_exact_into(stream, buf, 2).await?;
        }
    }
    Some(Vec::new())
}

async fn play(mut stream: TcpStream, steps: Vec<Step>) {
    for step in steps {
        match step {
            Step::Write(bytes) => {
                if stream.write_all(&bytes).await.is_err() {
                    return;
                }
            }
            Step::Sleep(d) => tokio::time::sleep(d).await,
            Step::Reset => {
                let _ = socket2::SockRef::from(&stream).set_linger(Some(std::time::Duration::ZERO));
                return;
            }
            Step::Hang => {
                // Keeps reading (so the peer is not reset) and never answers.
                let mut sink = [0u8; 1024];
                while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
                std::future::pending::<()>().await;
            }
        }
    }
}
