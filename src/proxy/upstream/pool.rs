//! Keep-alive connections to one upstream endpoint.
//!
//! One small pool per endpoint (held by its `EndpointState`), with an idle list per serving
//! thread: a thread reuses the connections registered with its own runtime, and threads do
//! not contend. A connection goes back the moment its response body ends. The lock is held
//! only for a `Vec` push or pop.

use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::conn::{ConnectError, UpstreamConn};

/// Idle connections kept per endpoint and serving thread.
const MAX_IDLE: usize = 256;

/// Idle lists per endpoint: one per serving thread (modulo).
const BUCKETS: usize = 8;

thread_local! {
    static WORKER: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Marks the current thread as serving thread `index` (picks its pool bucket).
pub fn set_worker_index(index: usize) {
    WORKER.with(|w| w.set(index % BUCKETS));
}

/// One thread's idle connections, newest last, with the time each went idle.
type IdleList = Mutex<Vec<(UpstreamConn, Instant)>>;

/// Idle keep-alive connections to one endpoint.
#[derive(Default)]
pub struct Http1Pool {
    idle: [IdleList; BUCKETS],
}

impl std::fmt::Debug for Http1Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Http1Pool").field("idle", &self.idle_len()).finish()
    }
}

impl Http1Pool {
    fn bucket(&self) -> &IdleList {
        &self.idle[WORKER.with(|w| w.get())]
    }

    /// An open idle connection younger than `max_idle` (unless `fresh`), or a new one.
    pub async fn checkout(
        &self,
        addr: SocketAddr,
        connect_timeout: Duration,
        max_idle: Duration,
        fresh: bool,
    ) -> Result<UpstreamConn, ConnectError> {
        if !fresh {
            while let Some((conn, since)) = self.pop_idle() {
                if since.elapsed() <= max_idle && conn.is_open() {
                    return Ok(conn);
                }
            }
        }
        // Boxed: connecting is the rare path, and its future would size every request's state.
        Box::pin(UpstreamConn::connect(addr, connect_timeout)).await
    }

    fn pop_idle(&self) -> Option<(UpstreamConn, Instant)> {
        self.bucket().lock().unwrap_or_else(|e| e.into_inner()).pop()
    }

    /// Returns a connection whose exchange completed.
    pub fn checkin(&self, mut conn: UpstreamConn) {
        conn.reused = true;
        let mut idle = self.bucket().lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < MAX_IDLE {
            idle.push((conn, Instant::now()));
        }
    }

    pub fn idle_len(&self) -> usize {
        self.idle.iter().map(|b| b.lock().map(|v| v.len()).unwrap_or(0)).sum()
    }
}
