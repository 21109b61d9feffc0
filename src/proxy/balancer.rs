//! Load balancing across a route's endpoints.
//!
//! Per-endpoint state (in-flight requests, peak-EWMA latency, passive-health ejection) lives in
//! [`EndpointRegistry`], keyed by address, outside the route table: a config reload or a Swarm
//! resync builds new [`UpstreamGroup`]s that point at the same `EndpointState`s, so nothing the
//! balancer learned is reset. Picking is lock-free (atomics only).

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dashmap::DashMap;

use super::upstream::PoolSettings;
use super::upstream_tls::{TlsClientSettings, TlsClients, TlsEndpoint};
use crate::model::{Endpoint, HealthCheck, LbPolicy, UpstreamScheme};

/// Consecutive connect failures before an endpoint is ejected.
pub const EJECT_AFTER_FAILURES: u32 = 3;
/// First ejection; doubles per repeated ejection up to [`EJECT_MAX`].
pub const EJECT_BASE: Duration = Duration::from_secs(1);
pub const EJECT_MAX: Duration = Duration::from_secs(30);
/// Peak-EWMA decay time constant (how fast old samples, and idleness, fade).
const EWMA_TAU_NS: f64 = 2_000_000_000.0;
/// Cost given to an endpoint with no latency sample yet (1 ms): new tasks get traffic at once.
const EWMA_INITIAL_NS: u64 = 1_000_000;

fn clock() -> &'static Instant {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    // Start the clock an hour back so "long ago" is representable from the first call on
    // (0 still means "never" for the stamps that use this clock).
    START.get_or_init(|| {
        let now = Instant::now();
        now.checked_sub(Duration::from_secs(3600)).unwrap_or(now)
    })
}

/// Nanoseconds since process start; monotonic and cheap.
#[inline]
pub fn now_ns() -> u64 {
    clock().elapsed().as_nanos() as u64
}

/// What swarmgate knows about one backend address, shared by every route that uses it.
#[derive(Debug)]
pub struct EndpointState {
    pub addr: SocketAddr,
    /// `ip:port`, precomputed for the upstream URI.
    pub authority: http::uri::Authority,
    /// `ip:port` as a `Host` value, for routes that do not pass the client's host on.
    pub host_header: http::HeaderValue,
    /// Value of the sticky cookie that selects this endpoint.
    pub sticky_token: String,
    in_flight: AtomicU32,
    ewma_ns: AtomicU64,
    ewma_stamp_ns: AtomicU64,
    consecutive_failures: AtomicU32,
    ejections: AtomicU32,
    ejected_until_ns: AtomicU64,
    /// Requests completed (for the admin API and metrics).
    pub requests: AtomicU64,
    /// Failed attempts (connect errors, timeouts).
    pub failures: AtomicU64,
    /// Keep-alive HTTP/1.1 connections to this endpoint.
    pub pool: super::upstream::Http1Pool,
}

impl EndpointState {
    pub fn new(addr: SocketAddr, pool: PoolSettings) -> Self {
        let authority: http::uri::Authority = addr.to_string().parse().expect("socket address is a valid authority");
        EndpointState {
            addr,
            host_header: http::HeaderValue::from_str(authority.as_str()).expect("an authority is a valid header value"),
            authority,
            sticky_token: sticky_token(addr),
            in_flight: AtomicU32::new(0),
            ewma_ns: AtomicU64::new(0),
            ewma_stamp_ns: AtomicU64::new(0),
            consecutive_failures: AtomicU32::new(0),
            ejections: AtomicU32::new(0),
            ejected_until_ns: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            pool: super::upstream::Http1Pool::new(pool),
        }
    }

    /// Not ejected by passive health. Reads the clock only for an endpoint that was ejected
    /// since its last success.
    #[inline]
    pub fn is_available(&self) -> bool {
        match self.ejected_until_ns.load(Ordering::Relaxed) {
            0 => true,
            until => until <= now_ns(),
        }
    }

    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Relaxed)
    }

    pub fn is_ejected(&self) -> bool {
        self.ejected_until_ns.load(Ordering::Relaxed) > now_ns()
    }

    /// Current latency estimate in nanoseconds (peak EWMA), decayed by the time since the last
    /// sample: an endpoint that stopped getting traffic after one slow answer looks cheaper as
    /// time passes and is tried again, instead of being starved by p2c for good.
    pub fn latency_ns(&self) -> u64 {
        match self.ewma_ns.load(Ordering::Relaxed) {
            0 => EWMA_INITIAL_NS,
            v => {
                let idle = now_ns().saturating_sub(self.ewma_stamp_ns.load(Ordering::Relaxed)) as f64;
                ((v as f64) * (-idle / EWMA_TAU_NS).exp()).max(1.0) as u64
            }
        }
    }

    /// Cost used by p2c: latency × (in-flight + 1).
    #[inline]
    fn cost(&self) -> u64 {
        self.latency_ns().saturating_mul(u64::from(self.in_flight()) + 1)
    }

    /// Marks a request as started; the guard ends it (and must be given the outcome).
    #[inline]
    pub fn start(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight { endpoint: self.clone(), started_ns: now_ns(), done: false }
    }

    /// A response head arrived at `now` after `rtt_ns`: fold into the peak EWMA and clear
    /// failures.
    fn observe_success(&self, rtt_ns: u64, now: u64) {
        self.consecutive_failures.store(0, Ordering::Relaxed);
        self.ejections.store(0, Ordering::Relaxed);
        if self.ejected_until_ns.load(Ordering::Relaxed) != 0 {
            self.ejected_until_ns.store(0, Ordering::Relaxed);
        }
        let prev = self.ewma_ns.load(Ordering::Relaxed);
        let next = if prev == 0 || rtt_ns > prev {
            // Peak: jump straight up so a slow endpoint is avoided at once.
            rtt_ns
        } else {
            let elapsed = now.saturating_sub(self.ewma_stamp_ns.load(Ordering::Relaxed)) as f64;
            let w = (-elapsed / EWMA_TAU_NS).exp();
            (prev as f64 * w + rtt_ns as f64 * (1.0 - w)) as u64
        };
        self.ewma_ns.store(next.max(1), Ordering::Relaxed);
        self.ewma_stamp_ns.store(now, Ordering::Relaxed);
    }

    /// A connect failure (or timeout): counts toward passive-health ejection.
    /// Returns true when this failure ejected the endpoint.
    pub fn observe_failure(&self) -> bool {
        self.failures.fetch_add(1, Ordering::Relaxed);
        let fails = self.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1;
        if fails >= EJECT_AFTER_FAILURES {
            let n = self.ejections.fetch_add(1, Ordering::Relaxed).min(5);
            let backoff = (EJECT_BASE * 2u32.pow(n)).min(EJECT_MAX);
            self.ejected_until_ns.store(now_ns() + backoff.as_nanos() as u64, Ordering::Relaxed);
            // After the backoff the endpoint is tried again; one more failure re-ejects it.
            self.consecutive_failures.store(EJECT_AFTER_FAILURES - 1, Ordering::Relaxed);
            return true;
        }
        false
    }
}

/// Tracks one request on one endpoint; decrements in-flight on drop.
#[derive(Debug)]
pub struct InFlight {
    endpoint: Arc<EndpointState>,
    started_ns: u64,
    done: bool,
}

impl InFlight {
    /// Restarts the latency clock, e.g. once a connection is ready, so that connection set-up
    /// (a one-off cost) does not count as the endpoint's response time.
    pub fn restart_clock(&mut self) {
        self.started_ns = now_ns();
    }

    /// The upstream answered (any status): record the time to the response head.
    pub fn success(&mut self) {
        if !self.done {
            self.done = true;
            self.endpoint.requests.fetch_add(1, Ordering::Relaxed);
            let now = now_ns();
            self.endpoint.observe_success(now.saturating_sub(self.started_ns), now);
        }
    }

    /// The attempt failed before a response (connect error, timeout).
    pub fn failure(&mut self) -> bool {
        if self.done {
            return false;
        }
        self.done = true;
        self.endpoint.observe_failure()
    }

    pub fn endpoint(&self) -> &Arc<EndpointState> {
        &self.endpoint
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.endpoint.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

fn sticky_token(addr: SocketAddr) -> String {
    format!("{:016x}", fxhash(addr.to_string().as_bytes()))
}

#[inline]
fn fxhash(bytes: &[u8]) -> u64 {
    use std::hash::Hasher;
    let mut h = rustc_hash::FxHasher::default();
    h.write(bytes);
    h.finish()
}

/// Endpoint states by address. Entries are kept while any route table uses them; `retain`
/// drops the rest after a swap.
#[derive(Debug)]
pub struct EndpointRegistry {
    /// The shape of each endpoint's keep-alive pool.
    pool: PoolSettings,
    map: DashMap<SocketAddr, Arc<EndpointState>>,
    /// Active health results by (endpoint, check path): two routes may check the same
    /// endpoint on different paths, so the result belongs to the check, not the endpoint.
    health: DashMap<(SocketAddr, String), Arc<AtomicBool>>,
    /// Clients for `https` upstreams, one per TLS profile, kept across swaps like the rest.
    pub tls: TlsClients,
}

impl Default for EndpointRegistry {
    fn default() -> Self {
        Self::with_pool(PoolSettings::default())
    }
}

impl EndpointRegistry {
    pub fn new() -> Self {
        Self::default()
    }

    /// A registry whose endpoints' pools are shaped by `pool`.
    pub fn with_pool(pool: PoolSettings) -> Self {
        EndpointRegistry {
            pool,
            map: DashMap::new(),
            health: DashMap::new(),
            tls: TlsClients::new(TlsClientSettings {
                connect_timeout: pool.connect_timeout,
                idle_timeout: pool.idle_timeout,
            }),
        }
    }

    /// The shared state for `addr`, created on first use.
    pub fn get(&self, addr: SocketAddr) -> Arc<EndpointState> {
        self.map.entry(addr).or_insert_with(|| Arc::new(EndpointState::new(addr, self.pool))).clone()
    }

    /// The health flag of `addr` under the check on `path` (true until a check fails).
    pub fn health_flag(&self, addr: SocketAddr, path: &str) -> Arc<AtomicBool> {
        if let Some(f) = self.health.get(&(addr, path.to_owned())) {
            return f.clone();
        }
        self.health.entry((addr, path.to_owned())).or_insert_with(|| Arc::new(AtomicBool::new(true))).clone()
    }

    /// Forget endpoints no table refers to any more (called after a swap).
    pub fn retain_used(&self) {
        self.map.retain(|_, state| Arc::strong_count(state) > 1);
        self.health.retain(|_, flag| Arc::strong_count(flag) > 1);
        self.tls.retain_used();
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn snapshot(&self) -> Vec<Arc<EndpointState>> {
        self.map.iter().map(|e| e.value().clone()).collect()
    }
}

/// What the balancer may use about the request.
#[derive(Debug, Clone, Copy, Default)]
pub struct PickContext<'a> {
    pub client_ip: Option<IpAddr>,
    /// Value of the route's sticky cookie, if the request carried one.
    pub sticky: Option<&'a str>,
}

/// A route's backends with the policy chosen at table-build time.
#[derive(Debug)]
pub struct UpstreamGroup {
    pub endpoints: Box<[Arc<EndpointState>]>,
    pub tasks: Box<[String]>,
    pub policy: LbPolicy,
    pub scheme: UpstreamScheme,
    pub pass_host: bool,
    /// Cookie name for sticky sessions (policy `Cookie`).
    pub sticky_cookie: Option<String>,
    pub health: Option<HealthCheck>,
    /// Per-endpoint results of this group's active health check (empty without one).
    pub health_flags: Box<[Arc<AtomicBool>]>,
    /// Round-robin position; shared with the previous table's group of the same route.
    rr: Arc<AtomicUsize>,
    /// An `https` group's TLS client per endpoint (same order), chosen at table-build time;
    /// empty for other schemes.
    pub tls: Box<[Arc<TlsEndpoint>]>,
}

impl UpstreamGroup {
    pub fn new(
        registry: &EndpointRegistry,
        endpoints: &[Endpoint],
        policy: LbPolicy,
        scheme: UpstreamScheme,
        pass_host: bool,
        sticky_cookie: Option<String>,
        health: Option<HealthCheck>,
    ) -> Self {
        let mut sorted: Vec<&Endpoint> = endpoints.iter().collect();
        sorted.sort();
        sorted.dedup_by(|a, b| a.addr == b.addr);
        let sticky_cookie = match policy {
            LbPolicy::Cookie => Some(sticky_cookie.unwrap_or_else(|| "swarmgate_sticky".into())),
            _ => None,
        };
        let health_flags = match &health {
            Some(h) => sorted.iter().map(|e| registry.health_flag(e.addr, &h.path)).collect(),
            None => Box::default(),
        };
        UpstreamGroup {
            health_flags,
            endpoints: sorted.iter().map(|e| registry.get(e.addr)).collect(),
            tasks: sorted.iter().map(|e| e.task.clone()).collect(),
            policy,
            scheme,
            pass_host,
            sticky_cookie,
            health,
            rr: Arc::new(AtomicUsize::new(fastrand::usize(..usize::MAX / 2))),
            tls: Box::default(),
        }
    }

    /// Carries on from `cursor` (the route's position in the previous table).
    pub fn with_rr_cursor(mut self, cursor: Arc<AtomicUsize>) -> Self {
        self.rr = cursor;
        self
    }

    pub fn is_empty(&self) -> bool {
        self.endpoints.is_empty()
    }

    /// Active health of endpoint `i` (true when the group has no check).
    #[inline]
    pub fn is_healthy(&self, i: usize) -> bool {
        self.health_flags.get(i).is_none_or(|f| f.load(Ordering::Relaxed))
    }

    /// Picks an available endpoint index (not ejected, passing health checks), skipping those
    /// in `tried` (a bitmask of indexes < 64). `None` when no live endpoint is left: the
    /// caller answers 503.
    pub fn pick(&self, ctx: &PickContext<'_>, tried: u64) -> Option<usize> {
        let n = self.endpoints.len();
        if n == 0 {
            return None;
        }
        let untried = |i: usize| i >= 64 || tried & (1u64 << i) == 0;
        let ok = |i: usize| untried(i) && self.endpoints[i].is_available() && self.is_healthy(i);
        if n == 1 {
            return ok(0).then_some(0);
        }
        match self.policy {
            LbPolicy::RoundRobin => self.pick_rr(n, &ok),
            LbPolicy::LeastConn => self.pick_least(n, &ok, |e| u64::from(e.in_flight())),
            LbPolicy::P2c => self.pick_p2c(n, &ok),
            LbPolicy::IpHash => match ctx.client_ip {
                Some(ip) => self.pick_hash(n, &ok, ip),
                None => self.pick_p2c(n, &ok),
            },
            LbPolicy::Cookie => ctx
                .sticky
                .and_then(|token| (0..n).find(|&i| ok(i) && self.endpoints[i].sticky_token == token))
                .or_else(|| self.pick_p2c(n, &ok)),
        }
    }

    fn pick_rr(&self, n: usize, ok: &dyn Fn(usize) -> bool) -> Option<usize> {
        let start = self.rr.fetch_add(1, Ordering::Relaxed);
        (0..n).map(|k| (start + k) % n).find(|&i| ok(i))
    }

    fn pick_least(&self, n: usize, ok: &dyn Fn(usize) -> bool, key: impl Fn(&EndpointState) -> u64) -> Option<usize> {
        // Start at a rotating offset so ties spread instead of piling onto index 0.
        let start = self.rr.fetch_add(1, Ordering::Relaxed);
        (0..n).map(|k| (start + k) % n).filter(|&i| ok(i)).min_by_key(|&i| key(&self.endpoints[i]))
    }

    fn pick_p2c(&self, n: usize, ok: &dyn Fn(usize) -> bool) -> Option<usize> {
        let a = fastrand::usize(..n);
        let mut b = fastrand::usize(..n - 1);
        if b >= a {
            b += 1;
        }
        match (ok(a), ok(b)) {
            (true, true) => Some(if self.endpoints[a].cost() <= self.endpoints[b].cost() { a } else { b }),
            (true, false) => Some(a),
            (false, true) => Some(b),
            (false, false) => self.pick_least(n, ok, |e| e.cost()),
        }
    }

    /// Rendezvous hashing: the same client keeps its endpoint while the set changes around it.
    fn pick_hash(&self, n: usize, ok: &dyn Fn(usize) -> bool, ip: IpAddr) -> Option<usize> {
        let ip_bytes = match ip {
            IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
            IpAddr::V6(v6) => v6.octets(),
        };
        (0..n).filter(|&i| ok(i)).max_by_key(|&i| {
            let mut buf = [0u8; 34];
            buf[..16].copy_from_slice(&ip_bytes);
            buf[16..32].copy_from_slice(&match self.endpoints[i].addr.ip() {
                IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
                IpAddr::V6(v6) => v6.octets(),
            });
            buf[32..].copy_from_slice(&self.endpoints[i].addr.port().to_be_bytes());
            fxhash(&buf)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(policy: LbPolicy, n: u16) -> (EndpointRegistry, UpstreamGroup) {
        let reg = EndpointRegistry::new();
        let eps: Vec<Endpoint> = (0..n)
            .map(|i| Endpoint { addr: SocketAddr::from(([127, 0, 0, 1], 10000 + i)), task: String::new() })
            .collect();
        let g = UpstreamGroup::new(&reg, &eps, policy, UpstreamScheme::Http, true, None, None);
        (reg, g)
    }

    #[test]
    fn round_robin_visits_every_endpoint_evenly() {
        let (_r, g) = group(LbPolicy::RoundRobin, 3);
        let mut counts = [0; 3];
        for _ in 0..300 {
            counts[g.pick(&PickContext::default(), 0).unwrap()] += 1;
        }
        assert_eq!(counts, [100, 100, 100]);
    }

    #[test]
    fn least_conn_avoids_busy_endpoint() {
        let (_r, g) = group(LbPolicy::LeastConn, 2);
        let _busy = g.endpoints[0].start();
        for _ in 0..10 {
            assert_eq!(g.pick(&PickContext::default(), 0), Some(1));
        }
    }

    #[test]
    fn p2c_prefers_fast_endpoint() {
        let (_r, g) = group(LbPolicy::P2c, 2);
        g.endpoints[0].observe_success(50_000_000, now_ns());
        g.endpoints[1].observe_success(1_000_000, now_ns());
        let fast = (0..100).filter(|_| g.pick(&PickContext::default(), 0) == Some(1)).count();
        assert_eq!(fast, 100);
    }

    #[test]
    fn ip_hash_is_stable_per_client() {
        let (_r, g) = group(LbPolicy::IpHash, 5);
        let ctx = PickContext { client_ip: Some("192.0.2.7".parse().unwrap()), sticky: None };
        let first = g.pick(&ctx, 0);
        assert!((0..20).all(|_| g.pick(&ctx, 0) == first));
    }

    #[test]
    fn cookie_selects_its_endpoint() {
        let (_r, g) = group(LbPolicy::Cookie, 4);
        let token = g.endpoints[2].sticky_token.clone();
        let ctx = PickContext { client_ip: None, sticky: Some(&token) };
        assert!((0..20).all(|_| g.pick(&ctx, 0) == Some(2)));
    }

    #[test]
    fn ejected_endpoint_is_skipped_then_readmitted() {
        let (_r, g) = group(LbPolicy::RoundRobin, 2);
        for _ in 0..EJECT_AFTER_FAILURES {
            g.endpoints[0].observe_failure();
        }
        assert!(g.endpoints[0].is_ejected());
        assert!((0..10).all(|_| g.pick(&PickContext::default(), 0) == Some(1)));
        // With the only live endpoint already tried, nothing is left: the proxy answers 503.
        assert_eq!(g.pick(&PickContext::default(), 0b10), None);
        g.endpoints[0].ejected_until_ns.store(0, Ordering::Relaxed);
        assert!((0..10).any(|_| g.pick(&PickContext::default(), 0) == Some(0)));
    }

    #[test]
    fn p2c_tries_a_once_slow_endpoint_again_after_it_idled() {
        let (_r, g) = group(LbPolicy::P2c, 2);
        g.endpoints[0].observe_success(40_000_000, now_ns());
        g.endpoints[1].observe_success(2_000_000, now_ns());
        assert_eq!(g.pick(&PickContext::default(), 0), Some(1));
        // Pretend the slow sample is 10 s old while the fast endpoint keeps being measured.
        g.endpoints[0].ewma_stamp_ns.store(now_ns().saturating_sub(10_000_000_000), Ordering::Relaxed);
        g.endpoints[1].observe_success(2_000_000, now_ns());
        assert_eq!(g.pick(&PickContext::default(), 0), Some(0), "the idle endpoint's estimate decayed");
    }

    #[test]
    fn state_survives_a_new_group() {
        let reg = EndpointRegistry::new();
        let eps = vec![Endpoint { addr: "127.0.0.1:1".parse().unwrap(), task: String::new() }];
        let g1 = UpstreamGroup::new(&reg, &eps, LbPolicy::P2c, UpstreamScheme::Http, true, None, None);
        let _f = g1.endpoints[0].start();
        let g2 = UpstreamGroup::new(&reg, &eps, LbPolicy::P2c, UpstreamScheme::Http, true, None, None);
        assert_eq!(g2.endpoints[0].in_flight(), 1);
    }
}
