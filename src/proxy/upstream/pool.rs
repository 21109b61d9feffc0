//! Keep-alive connections to one upstream endpoint.
//!
//! One small pool per endpoint (held by its `EndpointState`), with an idle list per serving
//! thread: a thread reuses the connections registered with its own runtime, and threads do
//! not contend. A connection goes back the moment its response body ends; the newest is
//! handed out first (it is the least likely to have been closed by the upstream), and
//! connections idle for longer than the idle timeout are closed as others come back. The
//! lock is held only for a push or a pop.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::BytesMut;

use super::conn::{ConnectError, UpstreamConn, HEAD_READ_CHUNK};

/// Idle connections kept per endpoint and serving thread.
const MAX_IDLE: usize = 256;

thread_local! {
    static WORKER: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// How the keep-alive pools of a process are shaped.
#[derive(Clone, Copy, Debug)]
pub struct PoolSettings {
    /// Connections idle for longer are closed.
    pub idle_timeout: Duration,
    /// Serving threads: each gets an idle list of its own in every pool, so that no two
    /// threads (and their runtimes) share one.
    pub threads: usize,
    /// Time to connect, TLS handshake included (the TLS clients of `https` upstreams).
    pub connect_timeout: Duration,
}

impl Default for PoolSettings {
    /// For tools and tests: one thread, the default `upstream_idle_timeout`.
    fn default() -> Self {
        PoolSettings { idle_timeout: Duration::from_secs(50), threads: 1, connect_timeout: Duration::from_secs(3) }
    }
}

/// Marks the current thread as serving thread `index` (picks its idle list).
pub fn set_worker_index(index: usize) {
    WORKER.with(|w| w.set(index));
}

/// One thread's idle connections, oldest first, with the time each went idle.
type IdleList = Mutex<VecDeque<(UpstreamConn, Instant)>>;

/// Idle keep-alive connections to one endpoint.
pub struct Http1Pool {
    idle: Box<[IdleList]>,
    max_idle: Duration,
}

impl std::fmt::Debug for Http1Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Http1Pool").field("idle", &self.idle_len()).finish()
    }
}

impl Http1Pool {
    pub fn new(settings: PoolSettings) -> Self {
        let lists = settings.threads.max(1);
        Http1Pool { idle: (0..lists).map(|_| IdleList::default()).collect(), max_idle: settings.idle_timeout }
    }

    fn bucket(&self) -> &IdleList {
        &self.idle[WORKER.with(|w| w.get()) % self.idle.len()]
    }

    /// An open idle connection (unless `fresh`), or a new one.
    pub async fn checkout(
        &self,
        addr: SocketAddr,
        connect_timeout: Duration,
        fresh: bool,
    ) -> Result<UpstreamConn, ConnectError> {
        if !fresh {
            while let Some((conn, since)) = self.pop_newest() {
                if since.elapsed() <= self.max_idle && conn.is_open() {
                    return Ok(conn);
                }
            }
        }
        // Boxed: connecting is the rare path, and its future would size every request's state.
        Box::pin(UpstreamConn::connect(addr, connect_timeout)).await
    }

    fn pop_newest(&self) -> Option<(UpstreamConn, Instant)> {
        self.bucket().lock().unwrap_or_else(|e| e.into_inner()).pop_back()
    }

    /// Returns a connection whose exchange completed, and closes those idle for too long.
    pub fn checkin(&self, mut conn: UpstreamConn) {
        conn.reused = true;
        // A big body grew the read buffer; an idle connection keeps only a head-sized one.
        if conn.buf.capacity() > 2 * HEAD_READ_CHUNK {
            conn.buf = BytesMut::with_capacity(HEAD_READ_CHUNK);
        }
        let now = Instant::now();
        let expired = {
            let mut idle = self.bucket().lock().unwrap_or_else(|e| e.into_inner());
            let stale = idle.iter().take_while(|(_, since)| now.duration_since(*since) > self.max_idle).count();
            let expired: Vec<_> = idle.drain(..stale).collect();
            if idle.len() < MAX_IDLE {
                idle.push_back((conn, now));
            }
            expired
        };
        // Closed outside the lock.
        drop(expired);
    }

    pub fn idle_len(&self) -> usize {
        self.idle.iter().map(|b| b.lock().map(|v| v.len()).unwrap_or(0)).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A listener that accepts and holds connections.
    async fn holding_listener() -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = listener.accept().await {
                held.push(s);
            }
        });
        addr
    }

    #[tokio::test]
    async fn idle_connections_past_the_timeout_are_closed_as_others_come_back() {
        let addr = holding_listener().await;
        let pool = Http1Pool::new(PoolSettings { idle_timeout: Duration::from_millis(100), ..PoolSettings::default() });
        let connect = || UpstreamConn::connect(addr, Duration::from_secs(1));
        pool.checkin(connect().await.unwrap());
        pool.checkin(connect().await.unwrap());
        assert_eq!(pool.idle_len(), 2);
        tokio::time::sleep(Duration::from_millis(150)).await;
        pool.checkin(connect().await.unwrap());
        assert_eq!(pool.idle_len(), 1, "the two stale ones were closed");
    }

    #[tokio::test]
    async fn a_pooled_connection_keeps_only_a_head_sized_buffer() {
        let addr = holding_listener().await;
        let pool = Http1Pool::new(PoolSettings { idle_timeout: Duration::from_secs(10), ..PoolSettings::default() });
        let mut conn = UpstreamConn::connect(addr, Duration::from_secs(1)).await.unwrap();
        conn.buf.reserve(1024 * 1024);
        pool.checkin(conn);
        let conn = pool.checkout(addr, Duration::from_secs(1), false).await.unwrap();
        assert!(conn.reused, "the pooled connection came back");
        assert!(conn.buf.capacity() <= 2 * HEAD_READ_CHUNK, "capacity {}", conn.buf.capacity());
    }
}
