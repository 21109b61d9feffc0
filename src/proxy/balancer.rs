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
use super::upstream_h2c::{H2cClients, H2cEndpoint};
use super::upstream_tls::{TlsClientSettings, TlsClients, TlsEndpoint};
use crate::model::{Endpoint, HealthCheck, LbPolicy, UpstreamScheme};

/// Consecutive connect failures before an endpoint is ejected.
pub const EJECT_AFTER_FAILURES: u32 = 3;
/// First ejection; doubles per repeated ejection up to [`EJECT_MAX`].
pub const EJECT_BASE: Duration = Duration::from_secs(1);
pub const EJECT_MAX: Duration = Duration::from_secs(30);
/// Peak-EWMA decay time constant (how fast old samples, and idleness, fade).
const EWMA_TAU_NS: f64 = 2_000_000_000.0;
/// Latency reported for an endpoint with no sample yet (1 ms), for the admin API. The balancer
/// does not use it: a new endpoint is seeded with its group's median (see
/// [`UpstreamGroup::new`]) and, against a measured one, counts as equally fast.
const EWMA_INITIAL_NS: u64 = 1_000_000;
/// p2c treats two costs within this factor of each other as equal and picks between them at
/// random. Without it, sequential traffic (in-flight always 0) always went to whichever endpoint
/// had the lower estimate, and estimates of equal replicas differ by noise alone: one replica got
/// everything. A real difference (a replica several times slower) is still avoided.
const P2C_TOLERANCE: u64 = 2;
/// An endpoint that has started no request for this long is given the next request p2c
/// considers it for (one request: the claim is atomic), so its estimate is measured again
/// instead of being trusted forever. At high request rates this costs one request per second.
const PROBE_IDLE_NS: u64 = 1_000_000_000;

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
    /// When the last request to this endpoint started (0 = never), for p2c's idle probe.
    last_start_ns: AtomicU64,
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
            last_start_ns: AtomicU64::new(0),
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
        self.estimate_ns(now_ns()).unwrap_or(EWMA_INITIAL_NS)
    }

    /// The decayed estimate at `now`; `None` before the first sample.
    #[inline]
    fn estimate_ns(&self, now: u64) -> Option<u64> {
        match self.ewma_ns.load(Ordering::Relaxed) {
            0 => None,
            v => {
                let idle = now.saturating_sub(self.ewma_stamp_ns.load(Ordering::Relaxed)) as f64;
                Some(((v as f64) * (-idle / EWMA_TAU_NS).exp()).max(1.0) as u64)
            }
        }
    }

    /// Cost used by p2c and least-time: latency × (in-flight + 1); an endpoint without a
    /// sample costs `unknown` per request.
    #[inline]
    fn cost(&self, now: u64, unknown: u64) -> u64 {
        self.estimate_ns(now).unwrap_or(unknown).saturating_mul(u64::from(self.in_flight()) + 1)
    }

    /// True (once) when no request started here for [`PROBE_IDLE_NS`]: the caller sends this
    /// request to probe it. The stamp moves to `now` so concurrent pickers do not all probe.
    #[inline]
    fn claim_probe(&self, now: u64) -> bool {
        let last = self.last_start_ns.load(Ordering::Relaxed);
        now.saturating_sub(last) > PROBE_IDLE_NS
            && self.last_start_ns.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_ok()
    }

    /// Marks a request as started; the guard ends it (and must be given the outcome).
    #[inline]
    pub fn start(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        let now = now_ns();
        self.last_start_ns.store(now, Ordering::Relaxed);
        InFlight { endpoint: self.clone(), started_ns: now, done: false }
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

/// 16 bytes for any IP (v4 as v4-mapped v6), so both families hash alike.
fn ip_bytes(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

/// The splitmix64 finaliser: FxHash alone mixes the last bytes it sees poorly, and rendezvous
/// scores need every bit to matter or some endpoints win more often than their share.
#[inline]
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
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
    /// Clients for `h2c` upstreams, one per endpoint, kept across swaps likewise.
    pub h2c: H2cClients,
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
            h2c: H2cClients::new(TlsClientSettings {
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
        self.h2c.retain_used();
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
    /// The request's key for a hash policy, from [`UpstreamGroup::request_hash`]; `None` = the
    /// request has none (the fallback decides; `ip_hash` then uses `client_ip`).
    pub hash: Option<u64>,
}

/// A route's backends with the policy chosen at table-build time.
#[derive(Debug)]
pub struct UpstreamGroup {
    pub endpoints: Box<[Arc<EndpointState>]>,
    pub tasks: Box<[String]>,
    /// The Swarm node of each endpoint's task (same order; empty for fixed addresses).
    pub nodes: Box<[String]>,
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
    /// An `h2c` group's client per endpoint (same order), chosen at table-build time.
    pub h2c: Box<[Arc<H2cEndpoint>]>,
    /// Header hashed by `LbPolicy::Header`, parsed at table-build time.
    lb_header: Option<http::HeaderName>,
    /// Query parameter hashed by `LbPolicy::Query`.
    lb_query: Option<Box<str>>,
    /// How a request without a sticky value is placed (never a policy that needs one).
    pub fallback: LbPolicy,
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
        let endpoints: Box<[Arc<EndpointState>]> = sorted.iter().map(|e| registry.get(e.addr)).collect();
        seed_new_endpoints(&endpoints);
        UpstreamGroup {
            health_flags,
            endpoints,
            tasks: sorted.iter().map(|e| e.task.clone()).collect(),
            nodes: sorted.iter().map(|e| e.node.clone()).collect(),
            policy,
            scheme,
            pass_host,
            sticky_cookie,
            health,
            rr: Arc::new(AtomicUsize::new(fastrand::usize(..usize::MAX / 2))),
            tls: Box::default(),
            h2c: Box::default(),
            lb_header: None,
            lb_query: None,
            fallback: LbPolicy::P2c,
        }
    }

    /// Sets the key of a `Header` / `Query` policy and the fallback of the sticky policies.
    /// A header name that does not parse, or a fallback that would itself need a sticky value,
    /// cannot come from a validated spec; they leave the request to the fallback / p2c.
    pub fn with_lb_options(mut self, key: Option<&str>, fallback: Option<LbPolicy>) -> Self {
        match self.policy {
            LbPolicy::Header => self.lb_header = key.and_then(|k| http::HeaderName::try_from(k).ok()),
            LbPolicy::Query => self.lb_query = key.map(Into::into),
            _ => {}
        }
        self.fallback = fallback.filter(|f| f.can_fall_back_to()).unwrap_or(LbPolicy::P2c);
        self
    }

    /// The request's key for this group's hash policy, worked out once per request before the
    /// headers move on (`None` for other policies and for requests without the value).
    /// `trusted`: the peer is a trusted proxy, so `client_ip_hash` believes its
    /// `X-Forwarded-For`.
    pub fn request_hash(&self, uri: &http::Uri, headers: &http::HeaderMap, peer: IpAddr, trusted: bool) -> Option<u64> {
        let bytes_hash = |b: &[u8]| Some(fxhash(b));
        match self.policy {
            LbPolicy::IpHash => bytes_hash(&ip_bytes(peer)),
            LbPolicy::ClientIpHash => {
                let forwarded = trusted
                    .then(|| headers.get(http::header::HeaderName::from_static("x-forwarded-for")))
                    .flatten()
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.split(',').next())
                    .and_then(|v| v.trim().parse::<IpAddr>().ok());
                bytes_hash(&ip_bytes(forwarded.unwrap_or(peer)))
            }
            LbPolicy::UriHash => bytes_hash(uri.path_and_query().map_or(uri.path(), |pq| pq.as_str()).as_bytes()),
            LbPolicy::Header => {
                let v = headers.get(self.lb_header.as_ref()?)?.as_bytes();
                (!v.is_empty()).then(|| fxhash(v))
            }
            LbPolicy::Query => {
                let name = self.lb_query.as_deref()?;
                let value = uri.query()?.split('&').find_map(|kv| {
                    let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                    (k == name).then_some(v)
                })?;
                (!value.is_empty()).then(|| fxhash(value.as_bytes()))
            }
            _ => None,
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
        self.pick_by(self.policy, ctx, n, &ok)
    }

    fn pick_by(&self, policy: LbPolicy, ctx: &PickContext<'_>, n: usize, ok: &dyn Fn(usize) -> bool) -> Option<usize> {
        // The route's fallback places a request without a sticky value (it keeps the client
        // IP for `ip_hash`); a fallback that finds no value either ends in p2c, never loops.
        let fallback = |me: &Self| {
            if policy == me.policy && me.fallback != me.policy {
                me.pick_by(me.fallback, &PickContext { client_ip: ctx.client_ip, ..Default::default() }, n, ok)
            } else {
                me.pick_p2c(n, ok)
            }
        };
        match policy {
            LbPolicy::RoundRobin => self.pick_rr(n, ok),
            LbPolicy::LeastConn => self.pick_least(n, ok, |e| u64::from(e.in_flight())),
            LbPolicy::LeastTime => self.pick_least_time(n, ok),
            LbPolicy::P2c => self.pick_p2c(n, ok),
            LbPolicy::Random => pick_random(n, ok),
            LbPolicy::RandomChoose(k) => self.pick_random_choose(n, ok, usize::from(k.max(1))),
            LbPolicy::First => (0..n).find(|&i| ok(i)),
            LbPolicy::IpHash | LbPolicy::ClientIpHash => {
                match ctx.hash.or_else(|| ctx.client_ip.map(|ip| fxhash(&ip_bytes(ip)))) {
                    Some(h) => self.pick_hash(n, ok, h),
                    None => fallback(self),
                }
            }
            LbPolicy::UriHash | LbPolicy::Header | LbPolicy::Query => match ctx.hash {
                Some(h) => self.pick_hash(n, ok, h),
                None => fallback(self),
            },
            LbPolicy::Cookie => ctx
                .sticky
                .and_then(|token| (0..n).find(|&i| ok(i) && self.endpoints[i].sticky_token == token))
                .or_else(|| fallback(self)),
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
            (true, true) => Some(self.choose_of_two(a, b)),
            (true, false) => Some(a),
            (false, true) => Some(b),
            (false, false) => {
                let now = now_ns();
                self.pick_least(n, ok, |e| e.cost(now, EWMA_INITIAL_NS))
            }
        }
    }

    /// The p2c decision between two live endpoints: one unused for a while is probed;
    /// otherwise the cheaper, unless both are idle and their estimates are within
    /// [`P2C_TOLERANCE`] (then either, at random). An endpoint without a sample is taken to be
    /// as fast as the other candidate.
    fn choose_of_two(&self, a: usize, b: usize) -> usize {
        let (ea, eb) = (&self.endpoints[a], &self.endpoints[b]);
        let now = now_ns();
        if ea.claim_probe(now) {
            return a;
        }
        if eb.claim_probe(now) {
            return b;
        }
        let (la, lb) = (ea.estimate_ns(now), eb.estimate_ns(now));
        let (ca, cb) = (ea.cost(now, lb.unwrap_or(1)), eb.cost(now, la.unwrap_or(1)));
        let (lo, hi) = (ca.min(cb), ca.max(cb));
        // Only between two idle endpoints: with requests in flight the cost already differs by
        // load, and a coin toss there would give a 2x slower replica half the traffic.
        let idle = ea.in_flight() == 0 && eb.in_flight() == 0;
        if idle && hi <= lo.saturating_mul(P2C_TOLERANCE) {
            if fastrand::bool() {
                a
            } else {
                b
            }
        } else if ca < cb {
            a
        } else {
            b
        }
    }

    /// The cheapest endpoint by latency × in-flight, rotating among those within
    /// [`P2C_TOLERANCE`] of the cheapest: strictly the cheapest would, like p2c before, send all
    /// sequential traffic to whichever replica noise made look fastest.
    fn pick_least_time(&self, n: usize, ok: &dyn Fn(usize) -> bool) -> Option<usize> {
        let now = now_ns();
        let cost = |i: usize| self.endpoints[i].cost(now, EWMA_INITIAL_NS);
        let min = (0..n).filter(|&i| ok(i)).map(cost).min()?;
        let start = self.rr.fetch_add(1, Ordering::Relaxed);
        (0..n).map(|k| (start + k) % n).find(|&i| ok(i) && cost(i) <= min.saturating_mul(P2C_TOLERANCE))
    }

    /// `k` distinct live endpoints uniformly at random (selection sampling, no allocation),
    /// then the one with fewest requests in flight; ties at random.
    fn pick_random_choose(&self, n: usize, ok: &dyn Fn(usize) -> bool, k: usize) -> Option<usize> {
        let live = (0..n).filter(|&i| ok(i)).count();
        let (mut need, mut left) = (k.min(live), live);
        let (mut best, mut best_load, mut ties) = (None, u32::MAX, 0u32);
        for i in (0..n).filter(|&i| ok(i)) {
            // Take this one with probability need / left: every k-subset is equally likely.
            if need > 0 && fastrand::usize(..left) < need {
                need -= 1;
                let load = self.endpoints[i].in_flight();
                if load < best_load {
                    (best, best_load, ties) = (Some(i), load, 1);
                } else if load == best_load {
                    ties += 1;
                    if fastrand::u32(..ties) == 0 {
                        best = Some(i);
                    }
                }
            }
            left -= 1;
        }
        best
    }

    /// Rendezvous hashing: the same key keeps its endpoint while the set changes around it.
    fn pick_hash(&self, n: usize, ok: &dyn Fn(usize) -> bool, key: u64) -> Option<usize> {
        (0..n).filter(|&i| ok(i)).max_by_key(|&i| {
            let addr = self.endpoints[i].addr;
            let mut buf = [0u8; 26];
            buf[..8].copy_from_slice(&key.to_le_bytes());
            buf[8..24].copy_from_slice(&ip_bytes(addr.ip()));
            buf[24..].copy_from_slice(&addr.port().to_be_bytes());
            mix(fxhash(&buf))
        })
    }
}

/// Uniform over the live endpoints: one draw, and a second over the live ones only when the
/// first hit a dead endpoint.
fn pick_random(n: usize, ok: &dyn Fn(usize) -> bool) -> Option<usize> {
    let first = fastrand::usize(..n);
    if ok(first) {
        return Some(first);
    }
    let live = (0..n).filter(|&i| ok(i)).count();
    if live == 0 {
        return None;
    }
    let k = fastrand::usize(..live);
    (0..n).filter(|&i| ok(i)).nth(k)
}

/// A new endpoint (no latency sample yet) starts from the median of its group's estimates:
/// a fixed guess is either too low (a new task takes everything until measured) or too high (it
/// takes nothing). Done at table-build time; an endpoint already measured keeps its estimate.
fn seed_new_endpoints(endpoints: &[Arc<EndpointState>]) {
    let now = now_ns();
    let mut known: Vec<u64> = endpoints.iter().filter_map(|e| e.estimate_ns(now)).collect();
    if known.is_empty() || known.len() == endpoints.len() {
        return;
    }
    known.sort_unstable();
    let median = known[known.len() / 2].max(1);
    for e in endpoints {
        // Stamp first: while the estimate is 0 the stamp is not read, and a reader that sees
        // the seed must not see it decayed from an old stamp.
        if e.ewma_ns.load(Ordering::Relaxed) == 0 {
            e.ewma_stamp_ns.store(now, Ordering::Relaxed);
            let _ = e.ewma_ns.compare_exchange(0, median, Ordering::Relaxed, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(policy: LbPolicy, n: u16) -> (EndpointRegistry, UpstreamGroup) {
        let reg = EndpointRegistry::new();
        let eps: Vec<Endpoint> =
            (0..n).map(|i| Endpoint::fixed(SocketAddr::from(([127, 0, 0, 1], 10000 + i)))).collect();
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

    /// One finished request of `rtt_ns` on endpoint `i` (started and measured now).
    fn serve(g: &UpstreamGroup, i: usize, rtt_ns: u64) {
        let _f = g.endpoints[i].start();
        g.endpoints[i].observe_success(rtt_ns, now_ns());
    }

    #[test]
    fn p2c_prefers_fast_endpoint() {
        let (_r, g) = group(LbPolicy::P2c, 2);
        serve(&g, 0, 0);
        serve(&g, 1, 0);
        g.endpoints[0].observe_success(50_000_000, now_ns());
        g.endpoints[1].observe_success(1_000_000, now_ns());
        let fast = (0..100).filter(|_| g.pick(&PickContext::default(), 0) == Some(1)).count();
        assert_eq!(fast, 100);
    }

    #[test]
    fn ip_hash_is_stable_per_client() {
        let (_r, g) = group(LbPolicy::IpHash, 5);
        let ctx = PickContext { client_ip: Some("192.0.2.7".parse().unwrap()), ..Default::default() };
        let first = g.pick(&ctx, 0);
        assert!((0..20).all(|_| g.pick(&ctx, 0) == first));
    }

    #[test]
    fn cookie_selects_its_endpoint() {
        let (_r, g) = group(LbPolicy::Cookie, 4);
        let token = g.endpoints[2].sticky_token.clone();
        let ctx = PickContext { sticky: Some(&token), ..Default::default() };
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
        serve(&g, 0, 40_000_000);
        serve(&g, 1, 2_000_000);
        assert_eq!(g.pick(&PickContext::default(), 0), Some(1));
        // Pretend the slow sample is 10 s old while the fast endpoint keeps being measured.
        g.endpoints[0].ewma_stamp_ns.store(now_ns().saturating_sub(10_000_000_000), Ordering::Relaxed);
        g.endpoints[1].observe_success(2_000_000, now_ns());
        assert_eq!(g.pick(&PickContext::default(), 0), Some(0), "the idle endpoint's estimate decayed");
    }

    #[test]
    fn state_survives_a_new_group() {
        let reg = EndpointRegistry::new();
        let eps = vec![Endpoint::fixed("127.0.0.1:1".parse().unwrap())];
        let g1 = UpstreamGroup::new(&reg, &eps, LbPolicy::P2c, UpstreamScheme::Http, true, None, None);
        let _f = g1.endpoints[0].start();
        let g2 = UpstreamGroup::new(&reg, &eps, LbPolicy::P2c, UpstreamScheme::Http, true, None, None);
        assert_eq!(g2.endpoints[0].in_flight(), 1);
    }

    /// Policies that promise a spread (not the hash and cookie ones, nor `first`, which is
    /// failover by definition).
    const SPREADING: [LbPolicy; 7] = [
        LbPolicy::P2c,
        LbPolicy::RoundRobin,
        LbPolicy::Random,
        LbPolicy::LeastConn,
        LbPolicy::LeastTime,
        LbPolicy::RandomChoose(2),
        LbPolicy::RandomChoose(3),
    ];

    /// Sequential requests (nothing in flight at any pick) on warmed-up endpoints whose
    /// latencies differ by noise only (0.8–1.2 ms): how many requests until every endpoint had
    /// one. The endpoints were all used just before, so p2c's idle probe does not help here;
    /// before the tolerance, p2c sent every request to the endpoint with the lowest estimate.
    fn requests_to_reach_all(policy: LbPolicy, n: u16) -> usize {
        let (_r, g) = group(policy, n);
        for i in 0..usize::from(n) {
            serve(&g, i, 1_000_000);
        }
        let mut seen = vec![false; usize::from(n)];
        for k in 1..=1000 {
            let i = g.pick(&PickContext::default(), 0).unwrap();
            serve(&g, i, 800_000 + fastrand::u64(..400_000));
            seen[i] = true;
            if seen.iter().all(|s| *s) {
                return k;
            }
        }
        usize::MAX
    }

    /// Every spreading policy reaches every one of 2 and 3 endpoints within 30 sequential
    /// requests. The random ones are run under 200 fixed seeds each (fastrand's generator is
    /// per thread), so the test is deterministic; unseeded, a uniform choice misses one of 3
    /// endpoints in 30 draws with probability 3·(2/3)^30 ≈ 1.6e-5, and one of 2 with 2^-29.
    #[test]
    fn sequential_requests_reach_every_endpoint_within_30() {
        for policy in SPREADING {
            for n in [2u16, 3] {
                let worst = (0..200u64)
                    .map(|seed| {
                        fastrand::seed(seed);
                        requests_to_reach_all(policy, n)
                    })
                    .max()
                    .unwrap();
                eprintln!("{policy}: {n} endpoints reached within {worst} sequential requests (worst of 200 seeds)");
                assert!(worst <= 30, "{policy} with {n} endpoints: {worst} requests");
            }
        }
    }

    #[test]
    fn round_robin_is_exact_for_two_and_three() {
        for n in [2u16, 3] {
            let (_r, g) = group(LbPolicy::RoundRobin, n);
            let mut counts = vec![0; usize::from(n)];
            for _ in 0..30 {
                let i = g.pick(&PickContext::default(), 0).unwrap();
                serve(&g, i, 1_000_000 * (i as u64 + 1));
                counts[i] += 1;
            }
            assert!(counts.iter().all(|c| *c == 30 / usize::from(n)), "{counts:?}");
        }
    }

    /// Unseeded: `random` picks each of n endpoints with probability 1/n, so a count over N
    /// draws is Binomial(N, 1/n). Hoeffding's bound gives P(|count − N/n| ≥ t) ≤ 2·exp(−2t²/N);
    /// with N = 30 000 and t = 600 that is 2·e^−24 ≈ 7.6e-11 per count, ≈ 2.3e-10 for all three
    /// counts together: a false failure is far below one in a million. (σ is ≈ 82–87, so the
    /// bound is ~7σ wide; a real bias, an endpoint never or twice as often chosen, fails.)
    #[test]
    fn random_is_uniform_within_a_bound_that_cannot_flake() {
        for n in [2u16, 3] {
            let (_r, g) = group(LbPolicy::Random, n);
            let draws = 30_000usize;
            let mut counts = vec![0usize; usize::from(n)];
            for _ in 0..draws {
                counts[g.pick(&PickContext::default(), 0).unwrap()] += 1;
            }
            let mean = draws / usize::from(n);
            eprintln!("random, {n} endpoints, {draws} draws: {counts:?}");
            assert!(counts.iter().all(|c| c.abs_diff(mean) <= 600), "{counts:?}");
        }
    }

    #[test]
    fn p2c_is_random_between_close_costs_and_avoids_a_clearly_slower_one() {
        fastrand::seed(7);
        let (_r, g) = group(LbPolicy::P2c, 2);
        serve(&g, 0, 1_000_000);
        serve(&g, 1, 1_500_000);
        let first = (0..200).filter(|_| g.pick(&PickContext::default(), 0) == Some(0)).count();
        assert!((50..=150).contains(&first), "1 ms vs 1.5 ms are treated alike: {first}/200");
        serve(&g, 1, 10_000_000);
        assert!((0..200).all(|_| g.pick(&PickContext::default(), 0) == Some(0)), "10× slower is avoided");
    }

    /// Under load the coin toss is off: with requests in flight on both, a 1.5× slower
    /// replica gets nothing p2c can avoid giving it (the toss would give it half).
    #[test]
    fn p2c_under_load_picks_the_cheaper_of_two_close_endpoints() {
        fastrand::seed(11);
        let (_r, g) = group(LbPolicy::P2c, 2);
        serve(&g, 0, 1_000_000);
        serve(&g, 1, 1_500_000);
        let _busy = (g.endpoints[0].start(), g.endpoints[1].start());
        let to_fast = (0..200).filter(|_| g.pick(&PickContext::default(), 0) == Some(0)).count();
        assert_eq!(to_fast, 200, "both busy, 2 ms vs 3 ms of cost: the cheaper one every time");
    }

    #[test]
    fn p2c_probes_an_endpoint_idle_for_a_while_with_one_real_request() {
        let (_r, g) = group(LbPolicy::P2c, 2);
        serve(&g, 0, 1_000_000);
        serve(&g, 1, 50_000_000);
        assert!((0..50).all(|_| g.pick(&PickContext::default(), 0) == Some(0)));
        // The slow endpoint started nothing for longer than the probe interval.
        g.endpoints[1].last_start_ns.store(now_ns() - PROBE_IDLE_NS - 1, Ordering::Relaxed);
        let picks: Vec<_> = (0..50).map(|_| g.pick(&PickContext::default(), 0).unwrap()).collect();
        assert_eq!(picks.iter().filter(|i| **i == 1).count(), 1, "exactly one probe: {picks:?}");
    }

    #[test]
    fn a_new_endpoint_starts_from_the_median_of_its_group() {
        let reg = EndpointRegistry::new();
        let eps: Vec<Endpoint> =
            (0..4u16).map(|i| Endpoint::fixed(SocketAddr::from(([127, 0, 0, 1], 10000 + i)))).collect();
        let g = UpstreamGroup::new(&reg, &eps[..3], LbPolicy::P2c, UpstreamScheme::Http, true, None, None);
        for (i, ms) in [2u64, 4, 40].into_iter().enumerate() {
            serve(&g, i, ms * 1_000_000);
        }
        // A task joins: the next table has four endpoints.
        let g2 = UpstreamGroup::new(&reg, &eps, LbPolicy::P2c, UpstreamScheme::Http, true, None, None);
        let seeded = g2.endpoints[3].latency_ns();
        assert!((3_900_000..=4_000_000).contains(&seeded), "median of 2, 4, 40 ms: {seeded}");
        assert!(g2.endpoints[0].latency_ns() < 2_000_001, "a measured endpoint keeps its estimate");
    }

    #[test]
    fn random_choose_takes_the_least_loaded_of_its_choices() {
        let (_r, g) = group(LbPolicy::RandomChoose(3), 3);
        let _busy = g.endpoints[1].start();
        assert!((0..100).all(|_| g.pick(&PickContext::default(), 0) != Some(1)));
        let (_r, g) = group(LbPolicy::RandomChoose(2), 3);
        let _busy = [g.endpoints[0].start(), g.endpoints[1].start()];
        // Of any two of three, one is idle unless the pair is {0, 1}: endpoint 2 wins 2/3 of picks.
        fastrand::seed(3);
        let idle = (0..300).filter(|_| g.pick(&PickContext::default(), 0) == Some(2)).count();
        assert!((150..=250).contains(&idle), "{idle}");
    }

    #[test]
    fn least_time_rotates_among_close_costs_and_avoids_a_slow_one() {
        let (_r, g) = group(LbPolicy::LeastTime, 3);
        for (i, ms) in [1u64, 1, 20].into_iter().enumerate() {
            serve(&g, i, ms * 1_000_000);
        }
        let picks: Vec<_> = (0..20).map(|_| g.pick(&PickContext::default(), 0).unwrap()).collect();
        assert!(picks.contains(&0) && picks.contains(&1) && !picks.contains(&2), "{picks:?}");
    }

    #[test]
    fn first_takes_the_first_live_endpoint() {
        let (_r, g) = group(LbPolicy::First, 3);
        assert!((0..10).all(|_| g.pick(&PickContext::default(), 0) == Some(0)));
        assert_eq!(g.pick(&PickContext::default(), 0b1), Some(1));
    }

    fn hash_ctx(g: &UpstreamGroup, uri: &str, headers: &[(&str, &str)], trusted: bool) -> Option<u64> {
        let mut h = http::HeaderMap::new();
        for (k, v) in headers {
            h.append(http::HeaderName::from_bytes(k.as_bytes()).unwrap(), v.parse().unwrap());
        }
        g.request_hash(&uri.parse().unwrap(), &h, "10.0.0.9".parse().unwrap(), trusted)
    }

    fn pick_hashed(g: &UpstreamGroup, hash: Option<u64>) -> Option<usize> {
        g.pick(&PickContext { hash, ..Default::default() }, 0)
    }

    #[test]
    fn hash_policies_pin_the_same_key_and_spread_different_keys() {
        let (_r, g) = group(LbPolicy::UriHash, 3);
        let spread: std::collections::BTreeSet<_> =
            (0..60).map(|k| pick_hashed(&g, hash_ctx(&g, &format!("/p/{k}?x=1"), &[], false))).collect();
        assert_eq!(spread.len(), 3, "60 URIs reach all 3 endpoints");
        let one = pick_hashed(&g, hash_ctx(&g, "/a?b=c", &[], false));
        assert!((0..20).all(|_| pick_hashed(&g, hash_ctx(&g, "/a?b=c", &[], false)) == one));

        let (_r, g) = group(LbPolicy::Header, 3);
        let g = g.with_lb_options(Some("X-User"), Some(LbPolicy::First));
        let alice = pick_hashed(&g, hash_ctx(&g, "/", &[("x-user", "alice")], false));
        assert!((0..20).all(|_| pick_hashed(&g, hash_ctx(&g, "/other", &[("x-user", "alice")], false)) == alice));
        assert_eq!(hash_ctx(&g, "/", &[], false), None);
        assert_eq!(pick_hashed(&g, None), Some(0), "no header: the fallback (first) decides");

        let (_r, g) = group(LbPolicy::Query, 3);
        let g = g.with_lb_options(Some("room"), None);
        assert_eq!(hash_ctx(&g, "/?a=1&room=7", &[], false), hash_ctx(&g, "/x?room=7", &[], false));
        assert_eq!(hash_ctx(&g, "/?a=1", &[], false), None);
    }

    #[test]
    fn client_ip_hash_believes_forwarded_for_only_from_a_trusted_peer() {
        let (_r, g) = group(LbPolicy::ClientIpHash, 3);
        let xff = [("x-forwarded-for", "192.0.2.1, 10.0.0.9")];
        let peer_only = hash_ctx(&g, "/", &[], false);
        assert_eq!(hash_ctx(&g, "/", &xff, false), peer_only, "an untrusted client cannot choose");
        assert_ne!(hash_ctx(&g, "/", &xff, true), peer_only);
        let (_r, ip) = group(LbPolicy::IpHash, 3);
        assert_eq!(hash_ctx(&ip, "/", &xff, true), hash_ctx(&ip, "/", &[], true), "ip_hash is the peer");
    }

    #[test]
    fn cookie_without_a_cookie_uses_the_fallback() {
        let (_r, g) = group(LbPolicy::Cookie, 3);
        let g = g.with_lb_options(None, Some(LbPolicy::RoundRobin));
        let picks: Vec<_> = (0..6).map(|_| g.pick(&PickContext::default(), 0).unwrap()).collect();
        assert_eq!(picks[..3].iter().collect::<std::collections::BTreeSet<_>>().len(), 3, "{picks:?}");
    }
}
