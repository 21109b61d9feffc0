//! File descriptors: the soft `RLIMIT_NOFILE` is raised to the hard limit at start, and
//! `max_connections` is cut to what the limit allows, so the proxy answers 503 to the
//! connection over the limit instead of running out (then clients hang in the backlog while
//! existing ones get 502 "Too many open files"). Accept errors back off exponentially and are
//! logged at most once per interval.

use std::time::{Duration, Instant};

/// Descriptors one client connection may hold: its socket, the duplicate kept for a
/// lingering close, and a pooled upstream connection.
pub const FDS_PER_CONNECTION: u64 = 3;

/// Descriptors kept back for listeners, the Docker socket, config and certificate files, logs,
/// and the short-lived sockets that carry 503 answers.
fn reserve(limit: u64) -> u64 {
    (limit / 10).max(32)
}

/// Raises the soft descriptor limit to the hard one and returns the resulting soft limit
/// (None when it cannot be read).
pub fn raise_nofile_limit() -> Option<u64> {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit only read/write the struct passed.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return None;
    }
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit { rlim_cur: lim.rlim_max, rlim_max: lim.rlim_max };
        // SAFETY: as above.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            lim.rlim_cur = lim.rlim_max;
        }
    }
    // `rlim_t` is u64 on Linux but not on every target.
    #[allow(clippy::unnecessary_cast)]
    Some(lim.rlim_cur as u64)
}

/// The `max_connections` the descriptor limit allows (`configured` when it allows that).
pub fn connections_allowed(configured: usize, fd_limit: u64) -> usize {
    let usable = fd_limit.saturating_sub(reserve(fd_limit)) / FDS_PER_CONNECTION;
    (configured as u64).min(usable.max(1)) as usize
}

/// Raises the limit and sizes `max_connections` to it; logs once when it had to cut.
pub fn size_max_connections(configured: usize) -> usize {
    let Some(limit) = raise_nofile_limit() else { return configured };
    let allowed = connections_allowed(configured, limit);
    if allowed < configured {
        tracing::warn!(
            fd_limit = limit,
            configured,
            max_connections = allowed,
            "[limits] max_connections lowered to what the open-file limit allows \
             ({FDS_PER_CONNECTION} descriptors per connection); raise `ulimit -n` (or the \
             container's nofile limit) to serve more"
        );
    }
    allowed
}

/// Exponential backoff with a rate-limited log, for accept errors and refusals: the first
/// event is logged, then at most one line per `LOG_EVERY` saying how many were not.
#[derive(Debug)]
pub struct Backoff {
    delay: Duration,
    last_log: Option<Instant>,
    suppressed: u64,
}

const LOG_EVERY: Duration = Duration::from_secs(10);
const MIN_DELAY: Duration = Duration::from_millis(5);
const MAX_DELAY: Duration = Duration::from_secs(1);

impl Default for Backoff {
    fn default() -> Self {
        Backoff { delay: MIN_DELAY, last_log: None, suppressed: 0 }
    }
}

impl Backoff {
    /// Records a failure: how long to wait, and whether to log now (with the number of
    /// failures not logged since the last line).
    pub fn failed(&mut self, now: Instant) -> (Duration, Option<u64>) {
        let wait = self.delay;
        self.delay = (self.delay * 2).min(MAX_DELAY);
        (wait, self.should_log(now))
    }

    /// Whether an event now may be logged; counts it otherwise.
    pub fn should_log(&mut self, now: Instant) -> Option<u64> {
        match self.last_log {
            Some(t) if now.duration_since(t) < LOG_EVERY => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last_log = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }

    /// A success: the next failure waits the shortest time again.
    pub fn succeeded(&mut self) {
        self.delay = MIN_DELAY;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_connections_fits_the_descriptor_limit() {
        assert_eq!(connections_allowed(10_000, 1024), (1024 - 102) / 3);
        assert_eq!(connections_allowed(10_000, 1_048_576), 10_000);
        assert_eq!(connections_allowed(100, 10), 1);
    }

    #[test]
    fn backoff_doubles_to_a_cap_and_logs_at_most_once_per_interval() {
        let mut b = Backoff::default();
        let t0 = Instant::now();
        let (w1, log1) = b.failed(t0);
        let (w2, log2) = b.failed(t0 + Duration::from_millis(1));
        assert_eq!((w1, log1), (MIN_DELAY, Some(0)));
        assert_eq!((w2, log2), (MIN_DELAY * 2, None));
        for _ in 0..20 {
            b.failed(t0 + Duration::from_secs(1));
        }
        let (w, log) = b.failed(t0 + LOG_EVERY + Duration::from_secs(1));
        assert_eq!(w, MAX_DELAY);
        assert_eq!(log, Some(21), "the line says how many were not logged");
        b.succeeded();
        assert_eq!(b.failed(t0 + LOG_EVERY * 3).0, MIN_DELAY);
    }
}
