//! Automatic HTTPS: ACME issuance and renewal (instant-acme) for the names the route table wants,
//! answering HTTP-01 and TLS-ALPN-01 through `tls::Challenges`.
//!
//! Policy, and why:
//! - **One order per name.** A name whose DNS does not point here fails alone instead of failing
//!   a batch, and each name renews and backs off on its own schedule.
//! - **Batching.** When the wanted set changes, the manager waits [`DEBOUNCE`] after the first
//!   change (a stack deploy publishes its hosts over a few table updates), then starts the orders,
//!   at most [`MAX_CONCURRENT_ORDERS`] at once so a stack with fifty hosts does not open fifty
//!   orders against the CA's rate limits. Never more than one order per name is in flight.
//! - **Startup.** Stored certificates are loaded and put in the live map in [`AcmeManager::new`],
//!   before any network call; a stored certificate not yet due for renewal is never re-ordered.
//! - **Renewal** once `renew_fraction` of the lifetime has passed. ARI (RFC 9773) is not used:
//!   Pebble 2.4 (our test CA) has no `renewalInfo`, so it could not be tested here.
//! - **Failures** back off per name exponentially with ±20 % jitter between `backoff_min` and
//!   `backoff_max`, never shorter than a `Retry-After` the CA sent, and the backoff is persisted.
//!   An order interrupted by a crash counts as a failure at the next start, so a crash loop cannot
//!   hammer the CA. The old certificate keeps serving meanwhile.
//! - **Challenge choice** follows `challenges` (preference order); after a failure the next
//!   attempt prefers the next type, so a blocked port 80 falls over to TLS-ALPN-01 on its own.
//! - Static certificates win: names they cover are never ordered.

mod client;
mod order;
mod store;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use instant_acme::{Account, NewAccount};
use serde::Serialize;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::admin::metrics::{escape, MetricSource};
use crate::config::{AcmeConfig, ChallengeKind};
use crate::model::table::covered_by;
use crate::tls::{CertMap, CertSource, Challenges, LiveCert};

pub use order::tls_alpn01_cert;
pub use store::{NameState, Store};

/// Wait after the first change of the wanted names before ordering (see the module doc).
pub const DEBOUNCE: Duration = Duration::from_secs(1);
/// Orders running at once across all names.
pub const MAX_CONCURRENT_ORDERS: usize = 4;
/// Upper bound for one whole order (account, challenges, finalize, download).
pub const ORDER_TIMEOUT: Duration = Duration::from_secs(300);
/// Longest `Retry-After` honoured (a bogus date must not silence a name for years).
const MAX_RETRY_AFTER: Duration = Duration::from_secs(7 * 24 * 3600);

/// Errors setting up the ACME manager or touching its storage.
#[derive(Debug, thiserror::Error)]
pub enum AcmeError {
    #[error("ACME storage {path}: {source}")]
    Storage { path: PathBuf, source: std::io::Error },
    #[error("ACME storage {path} is corrupt: {detail}")]
    Corrupt { path: PathBuf, detail: String },
    #[error("encoding ACME state: {0}")]
    Encode(String),
    #[error("{0}")]
    Config(String),
    #[error("ACME account: {0}")]
    Account(String),
    #[error("self-signed certificate for {name}: {detail}")]
    Internal { name: String, detail: String },
}

/// What the admin API (`/api/certificates`) shows per managed name.
#[derive(Debug, Clone, Serialize)]
pub struct CertStatus {
    /// The managed name.
    pub name: String,
    /// Names the current certificate covers (empty without one).
    pub names: Vec<String>,
    pub issuer: Option<String>,
    /// RFC 3339 times (UTC).
    pub not_after: Option<String>,
    pub next_renewal: Option<String>,
    pub last_error: Option<String>,
    pub backoff_until: Option<String>,
    pub consecutive_failures: u32,
    /// Orders started for this name by this process.
    pub orders: u64,
    pub order_in_flight: bool,
    /// Whether the route table currently asks for this name.
    pub wanted: bool,
    pub source: CertSource,
}

#[derive(Debug, Default)]
struct Entry {
    state: NameState,
    cert: Option<LiveCert>,
    wanted: bool,
    in_flight: bool,
    orders: u64,
}

struct Inner {
    cfg: AcmeConfig,
    store: Store,
    certs: Arc<CertMap>,
    challenges: Arc<Challenges>,
    names: Mutex<BTreeMap<String, Entry>>,
    account: tokio::sync::Mutex<Option<Account>>,
    retry_after: client::RetryAfterSlot,
    orders_total: AtomicU64,
    order_failures_total: AtomicU64,
    certificates_issued_total: AtomicU64,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AcmeManager")
            .field("directory", &self.cfg.directory)
            .field("storage", &self.store.root())
            .finish_non_exhaustive()
    }
}

/// Keeps certificates for the wanted names issued, stored and renewed. Cheap to clone; clones
/// share state, so the app can keep one for `status()` while another runs.
#[derive(Debug, Clone)]
pub struct AcmeManager {
    inner: Arc<Inner>,
}

/// The manager's Prometheus families (register with `Metrics::register("acme", ..)`).
#[derive(Debug)]
pub struct AcmeMetrics(Arc<Inner>);

fn unix(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

fn from_unix(s: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(s)
}

/// Exponential backoff after `failures` consecutive failures: `min · 2^(failures-1)`, capped at
/// `max`, times a jitter factor in [0.8, 1.2) (`jitter` in [0, 1)), and never above `max`.
pub fn backoff_delay(failures: u32, min: Duration, max: Duration, jitter: f64) -> Duration {
    let exp = failures.saturating_sub(1).min(40) as i32;
    let base = (min.as_secs_f64() * 2f64.powi(exp)).min(max.as_secs_f64());
    Duration::from_secs_f64((base * (0.8 + 0.4 * jitter.clamp(0.0, 1.0))).min(max.as_secs_f64()))
}

/// When a certificate is due for renewal: `fraction` of its lifetime after `not_before`.
pub fn renewal_time(cert: &LiveCert, fraction: f64) -> SystemTime {
    let life = cert.not_after.duration_since(cert.not_before).unwrap_or_default();
    cert.not_before + life.mul_f64(fraction.clamp(0.0, 1.0))
}

/// Civil UTC date (year, month, day) of `t` (Howard Hinnant's days-from-civil inverse).
fn civil(t: SystemTime) -> (i64, u8, u8) {
    let days = (unix(t) / 86400) as i64;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m as u8, d as u8)
}

/// RFC 3339 (UTC, seconds) for the admin API.
pub fn rfc3339(t: SystemTime) -> String {
    let rem = unix(t) % 86400;
    let (y, m, d) = civil(t);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// A self-signed certificate for `tls internal` routes: valid from yesterday for one year,
/// CA:FALSE, P-256. Clients must trust it explicitly; it exists so such hosts still speak TLS
/// without an ACME order.
pub fn self_signed(name: &str) -> Result<LiveCert, AcmeError> {
    let err = |e: &dyn std::fmt::Display| AcmeError::Internal { name: name.to_owned(), detail: e.to_string() };
    let mut params = rcgen::CertificateParams::new(vec![name.to_owned()]).map_err(|e| err(&e))?;
    params.distinguished_name.push(rcgen::DnType::CommonName, name);
    params.is_ca = rcgen::IsCa::ExplicitNoCa;
    let (y, m, d) = civil(SystemTime::now() - Duration::from_secs(86400));
    let y = i32::try_from(y).map_err(|e| err(&e))?;
    params.not_before = rcgen::date_time_ymd(y, m, d);
    params.not_after = rcgen::date_time_ymd(y + 1, m, d.min(28));
    let key = rcgen::KeyPair::generate().map_err(|e| err(&e))?;
    let cert = params.self_signed(&key).map_err(|e| err(&e))?;
    LiveCert::from_pem(cert.pem().as_bytes(), key.serialize_pem().as_bytes(), CertSource::Internal).map_err(|e| err(&e))
}

/// True for names the manager may order: public-looking DNS names, never wildcards, IPs or
/// localhost (the route table filters already; this is the second line).
pub fn orderable(name: &str) -> bool {
    store::valid_file_name(name) && crate::model::is_public_dns_name(name) && !name.contains('*')
}

impl AcmeManager {
    /// Opens the storage and loads every stored certificate into `certs` (no network), so they
    /// serve at once. A process that died mid-order gets that attempt counted as a failure.
    pub fn new(
        cfg: AcmeConfig,
        storage_dir: PathBuf,
        certs: Arc<CertMap>,
        challenges: Arc<Challenges>,
    ) -> Result<Self, AcmeError> {
        let dir = cfg.storage.clone().unwrap_or(storage_dir);
        let store = Store::open(dir)?;
        let now = SystemTime::now();
        let mut names = BTreeMap::new();
        for name in store.cert_names() {
            let Some(bundle) = store.read_cert(&name)? else {
                continue;
            };
            match LiveCert::from_pem(&bundle, &bundle, CertSource::Acme) {
                Ok(cert) => {
                    if cert.not_after > now {
                        certs.insert(cert.clone());
                    } else {
                        tracing::warn!(name, "stored ACME certificate has expired; not serving it");
                    }
                    let e: &mut Entry = names.entry(name.clone()).or_default();
                    e.cert = Some(cert);
                }
                Err(e) => {
                    tracing::warn!(name, error = %e, "ignoring unreadable stored ACME certificate")
                }
            }
        }
        for name in store.state_names() {
            let mut st = store.read_state(&name);
            if let Some(started) = st.attempt_started.take() {
                st.failures += 1;
                st.last_error = Some("order interrupted: the process stopped during an order".into());
                let delay = backoff_delay(st.failures, cfg.backoff_min.0, cfg.backoff_max.0, fastrand::f64());
                let until = unix(from_unix(started) + delay).max(st.backoff_until.unwrap_or(0));
                st.backoff_until = Some(until);
                tracing::warn!(name, failures = st.failures, "previous ACME order was interrupted; backing off");
                store.write_state(&name, &st)?;
            }
            names.entry(name).or_default().state = st;
        }
        let loaded = names.values().filter(|e| e.cert.is_some()).count();
        tracing::info!(storage = %store.root().display(), certificates = loaded, "ACME storage loaded");
        Ok(AcmeManager {
            inner: Arc::new(Inner {
                cfg,
                store,
                certs,
                challenges,
                names: Mutex::new(names),
                account: tokio::sync::Mutex::new(None),
                retry_after: Arc::new(Mutex::new(None)),
                orders_total: AtomicU64::new(0),
                order_failures_total: AtomicU64::new(0),
                certificates_issued_total: AtomicU64::new(0),
            }),
        })
    }

    /// The metric source to register with the admin metrics.
    pub fn metrics(&self) -> Arc<AcmeMetrics> {
        Arc::new(AcmeMetrics(self.inner.clone()))
    }

    /// Serves a self-signed certificate (see [`self_signed`]) for each `tls internal` name that
    /// has no certificate yet. Kept in memory only: it is regenerated at each start.
    pub fn ensure_internal(&self, names: &BTreeSet<String>) {
        for name in names {
            let name = name.to_ascii_lowercase();
            if self.inner.certs.has(&name) || !store::valid_file_name(&name) {
                continue;
            }
            match self_signed(&name) {
                Ok(cert) => self.inner.certs.insert(cert),
                Err(e) => tracing::warn!(name, error = %e, "cannot make an internal certificate"),
            }
        }
    }

    /// `{"certificates": [...]}` for `/api/certificates`: static certificates, then one entry per
    /// ACME-managed name (see [`CertStatus`]).
    pub fn certificates_json(&self) -> serde_json::Value {
        let statics = self.inner.certs.statics();
        let mut list: Vec<serde_json::Value> = statics
            .certs
            .iter()
            .map(|c| {
                serde_json::json!({
                    "names": c.names, "issuer": c.issuer, "source": c.source,
                    "not_after": rfc3339(c.not_after),
                })
            })
            .collect();
        list.extend(self.status().into_iter().filter_map(|s| serde_json::to_value(s).ok()));
        serde_json::json!({ "certificates": list })
    }

    /// [`Self::certificates_json`] as the admin's JSON source
    /// (`app::Running::set_certificates_source`).
    pub fn json_source(&self) -> crate::admin::JsonSource {
        let m = self.clone();
        Arc::new(move || m.certificates_json())
    }

    /// Orders started by this process (all names).
    pub fn orders_started(&self) -> u64 {
        self.inner.orders_total.load(Ordering::Relaxed)
    }

    /// One entry per managed name (wanted, stored or with a recorded failure), sorted by name.
    pub fn status(&self) -> Vec<CertStatus> {
        let fraction = self.inner.cfg.renew_fraction;
        let names = self.inner.lock();
        names
            .iter()
            .map(|(name, e)| CertStatus {
                name: name.clone(),
                names: e.cert.as_ref().map(|c| c.names.clone()).unwrap_or_default(),
                issuer: e.cert.as_ref().map(|c| c.issuer.clone()),
                not_after: e.cert.as_ref().map(|c| rfc3339(c.not_after)),
                next_renewal: e.cert.as_ref().map(|c| rfc3339(renewal_time(c, fraction))),
                last_error: e.state.last_error.clone(),
                backoff_until: e
                    .state
                    .backoff_until
                    .filter(|t| *t > unix(SystemTime::now()))
                    .map(|t| rfc3339(from_unix(t))),
                consecutive_failures: e.state.failures,
                orders: e.orders,
                order_in_flight: e.in_flight,
                wanted: e.wanted,
                source: CertSource::Acme,
            })
            .collect()
    }

    /// Runs until `shutdown`: follows the wanted names, orders missing certificates, renews due
    /// ones and retries failures after their backoff.
    pub async fn run(&self, mut names: watch::Receiver<BTreeSet<String>>, shutdown: CancellationToken) {
        let inner = &self.inner;
        let mut tasks: JoinSet<()> = JoinSet::new();
        inner.set_wanted(&names.borrow_and_update().clone());
        let mut names_open = true;
        let mut pending_change: Option<Instant> = None;
        loop {
            if pending_change.is_some_and(|at| at <= Instant::now()) {
                inner.set_wanted(&names.borrow_and_update().clone());
                pending_change = None;
            }
            inner.start_due(&mut tasks);
            let mut wait = inner.next_wake().min(inner.cfg.check_interval.0.max(Duration::from_millis(100)));
            if let Some(at) = pending_change {
                wait = wait.min(at.saturating_duration_since(Instant::now()));
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                r = names.changed(), if names_open => match r {
                    Ok(()) => {
                        pending_change.get_or_insert_with(|| Instant::now() + DEBOUNCE);
                    }
                    Err(_) => names_open = false,
                },
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
        // A clean shutdown is not a crash: clear the markers of orders we cut short.
        let mut names = inner.lock();
        for (name, e) in names.iter_mut().filter(|(_, e)| e.in_flight) {
            e.in_flight = false;
            e.state.attempt_started = None;
            if let Err(err) = inner.store.write_state(name, &e.state) {
                tracing::warn!(name, error = %err, "writing ACME state at shutdown");
            }
        }
    }
}

/// What the app does to enable ACME, in one call: opens the storage and loads the stored
/// certificates into `certs` (call it before the listeners serve), registers the metric families
/// and spawns [`AcmeManager::run`] on the route table's wanted names.
pub fn start(
    cfg: &AcmeConfig,
    storage_dir: PathBuf,
    certs: Arc<CertMap>,
    challenges: Arc<Challenges>,
    metrics: &crate::admin::metrics::Metrics,
    names: watch::Receiver<BTreeSet<String>>,
    shutdown: CancellationToken,
) -> Result<(AcmeManager, tokio::task::JoinHandle<()>), AcmeError> {
    let manager = AcmeManager::new(cfg.clone(), storage_dir, certs, challenges)?;
    metrics.register("acme", manager.metrics());
    let m = manager.clone();
    let task = tokio::spawn(async move { m.run(names, shutdown).await });
    Ok((manager, task))
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Entry>> {
        self.names.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn set_wanted(&self, wanted: &BTreeSet<String>) {
        let mut names = self.lock();
        for e in names.values_mut() {
            e.wanted = false;
        }
        for n in wanted {
            let n = n.to_ascii_lowercase();
            if !orderable(&n) {
                tracing::debug!(name = n, "not ordering a certificate for this name (wildcard, IP or local name)");
                continue;
            }
            names.entry(n).or_default().wanted = true;
        }
        // Expired certificates for names nobody wants any more leave the live map.
        let now = SystemTime::now();
        for (n, e) in names.iter() {
            if !e.wanted && e.cert.as_ref().is_some_and(|c| c.not_after <= now) {
                self.certs.remove(n);
            }
        }
        tracing::debug!(wanted = wanted.len(), "ACME wanted names updated");
    }

    /// When `e` next needs an order (None: never, e.g. not wanted).
    fn due_at(&self, e: &Entry) -> Option<SystemTime> {
        if !e.wanted || e.in_flight {
            return None;
        }
        let renew = e.cert.as_ref().map(|c| renewal_time(c, self.cfg.renew_fraction)).unwrap_or(SystemTime::UNIX_EPOCH);
        let backoff = e.state.backoff_until.map(from_unix).unwrap_or(SystemTime::UNIX_EPOCH);
        Some(renew.max(backoff))
    }

    /// Time until the next order can start. Names a static certificate covers never count, and
    /// while all order slots are busy only a finishing order (which wakes the loop) matters.
    fn next_wake(&self) -> Duration {
        let now = SystemTime::now();
        let statics = self.certs.statics().names();
        let names = self.lock();
        if names.values().filter(|e| e.in_flight).count() >= MAX_CONCURRENT_ORDERS {
            return Duration::MAX;
        }
        names
            .iter()
            .filter(|(n, _)| !covered_by(&statics, n))
            .filter_map(|(_, e)| self.due_at(e))
            .map(|t| t.duration_since(now).unwrap_or_default())
            .min()
            .unwrap_or(Duration::MAX)
            .max(Duration::from_millis(50))
    }

    fn start_due(self: &Arc<Self>, tasks: &mut JoinSet<()>) {
        let now = SystemTime::now();
        let statics = self.certs.statics().names();
        let mut names = self.lock();
        let mut running = names.values().filter(|e| e.in_flight).count();
        for (name, e) in names.iter_mut() {
            if running >= MAX_CONCURRENT_ORDERS {
                break;
            }
            if self.due_at(e).is_none_or(|t| t > now) || covered_by(&statics, name) {
                continue;
            }
            e.in_flight = true;
            e.orders += 1;
            running += 1;
            let inner = self.clone();
            let name = name.clone();
            tasks.spawn(async move { inner.order_one(name).await });
        }
    }

    /// Challenge types for the next attempt: the configured order, rotated by the failure count
    /// so that each retry leads with a different type.
    fn kinds_for(&self, failures: u32) -> Vec<ChallengeKind> {
        let mut kinds = self.cfg.challenges.clone();
        if kinds.is_empty() {
            kinds = vec![ChallengeKind::Http01, ChallengeKind::TlsAlpn01];
        }
        let len = kinds.len();
        kinds.rotate_left(failures as usize % len);
        kinds
    }

    async fn order_one(self: Arc<Self>, name: String) {
        let started = SystemTime::now();
        let started_instant = Instant::now();
        // Disk writes happen outside the lock; `in_flight` (set by start_due, cleared last)
        // keeps every other writer away from this name's state meanwhile.
        let state = {
            let mut names = self.lock();
            let e = names.entry(name.clone()).or_default();
            e.state.attempt_started = Some(unix(started));
            e.state.clone()
        };
        self.persist(&name, &state).await;
        let failures = state.failures;
        self.orders_total.fetch_add(1, Ordering::Relaxed);
        let kinds = self.kinds_for(failures);
        tracing::info!(name, challenges = ?kinds, "ordering certificate");
        let result = match tokio::time::timeout(ORDER_TIMEOUT, self.order_with_account(&name, &kinds)).await {
            Ok(r) => r,
            Err(_) => Err(format!("order timed out after {}s", ORDER_TIMEOUT.as_secs())),
        };
        let result = match result {
            Ok((key, chain)) => self.install(&name, key, chain).await,
            Err(e) => Err(e),
        };
        let state = {
            let mut names = self.lock();
            let e = names.entry(name.clone()).or_default();
            e.state.attempt_started = None;
            match result {
                Ok(cert) => {
                    self.certificates_issued_total.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(name, not_after = %rfc3339(cert.not_after), elapsed_ms = started_instant.elapsed().as_millis() as u64, "certificate issued");
                    e.cert = Some(cert);
                    e.state.failures = 0;
                    e.state.last_error = None;
                    e.state.backoff_until = None;
                    e.state.last_success = Some(unix(SystemTime::now()));
                }
                Err(msg) => {
                    self.order_failures_total.fetch_add(1, Ordering::Relaxed);
                    e.state.failures += 1;
                    let mut until = SystemTime::now()
                        + backoff_delay(
                            e.state.failures,
                            self.cfg.backoff_min.0,
                            self.cfg.backoff_max.0,
                            fastrand::f64(),
                        );
                    let retry_after = self
                        .retry_after
                        .lock()
                        .ok()
                        .and_then(|s| *s)
                        .filter(|(seen, _)| *seen >= started_instant)
                        .map(|(_, t)| t.min(SystemTime::now() + MAX_RETRY_AFTER));
                    if let Some(ra) = retry_after {
                        until = until.max(ra);
                    }
                    // Round up so a stored whole second never shortens the wait.
                    let until_s = unix(until) + 1;
                    e.state.backoff_until = Some(until_s);
                    e.state.last_error = Some(msg.clone());
                    tracing::warn!(name, failures = e.state.failures, retry_at = %rfc3339(from_unix(until_s)), error = %msg, "certificate order failed; the current certificate (if any) keeps serving");
                }
            }
            e.state.clone()
        };
        self.persist(&name, &state).await;
        if let Some(e) = self.lock().get_mut(&name) {
            e.in_flight = false;
        }
    }

    /// Writes `state` off the async threads (fsync can take a while on a busy disk).
    async fn persist(&self, name: &str, state: &NameState) {
        let (store, n, st) = (self.store.clone(), name.to_owned(), state.clone());
        let result = tokio::task::spawn_blocking(move || store.write_state(&n, &st)).await;
        match result {
            Ok(Ok(())) => {}
            Ok(Err(err)) => tracing::warn!(name, error = %err, "writing ACME state"),
            Err(err) => tracing::warn!(name, error = %err, "writing ACME state"),
        }
    }

    /// Parses, stores and publishes a new certificate.
    async fn install(&self, name: &str, key_pem: String, chain_pem: String) -> Result<LiveCert, String> {
        let cert = LiveCert::from_pem(chain_pem.as_bytes(), key_pem.as_bytes(), CertSource::Acme)
            .map_err(|e| format!("issued certificate unusable: {e}"))?;
        if !cert.names.iter().any(|n| n == name) {
            return Err(format!("issued certificate does not cover {name} (covers {:?})", cert.names));
        }
        let (store, n) = (self.store.clone(), name.to_owned());
        tokio::task::spawn_blocking(move || store.write_cert(&n, &key_pem, &chain_pem))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        // Replacing the map entry leaves open connections on the old key: nothing is dropped.
        self.certs.insert(cert.clone());
        Ok(cert)
    }

    async fn order_with_account(&self, name: &str, kinds: &[ChallengeKind]) -> Result<(String, String), String> {
        let account = self.account(false).await.map_err(|e| e.to_string())?;
        match order::issue(&account, name, kinds, &self.challenges, order::poll_policy()).await {
            Ok(r) => Ok(r),
            Err(e) if e.account_gone() => {
                tracing::warn!(name, error = %e, "the CA does not know the stored account; creating a new one");
                let account = self.account(true).await.map_err(|e| e.to_string())?;
                order::issue(&account, name, kinds, &self.challenges, order::poll_policy())
                    .await
                    .map_err(|e| e.to_string())
            }
            Err(e) => Err(e.to_string()),
        }
    }

    /// The ACME account: cached, else restored from storage, else created (and stored).
    async fn account(&self, recreate: bool) -> Result<Account, AcmeError> {
        let mut slot = self.account.lock().await;
        if recreate {
            *slot = None;
        }
        if let Some(a) = slot.as_ref() {
            return Ok(a.clone());
        }
        let http = || {
            client::AcmeHttp::new(self.cfg.ca_root.as_deref(), self.retry_after.clone())
                .map(|c| Account::builder_with_http(Box::new(c)))
        };
        if !recreate {
            if let Some(stored) = self.store.read_account()?.filter(|s| s.directory == self.cfg.directory) {
                let account = http()?
                    .from_credentials(stored.credentials)
                    .await
                    .map_err(|e| AcmeError::Account(e.to_string()))?;
                *slot = Some(account.clone());
                return Ok(account);
            }
        }
        let contact = self.cfg.email.as_ref().map(|m| format!("mailto:{m}"));
        let contacts: Vec<&str> = contact.iter().map(|s| s.as_str()).collect();
        let new = NewAccount { contact: &contacts, terms_of_service_agreed: true, only_return_existing: false };
        let (account, credentials) = http()?
            .create(&new, self.cfg.directory.clone(), None)
            .await
            .map_err(|e| AcmeError::Account(e.to_string()))?;
        self.store.write_account(&store::StoredAccount { directory: self.cfg.directory.clone(), credentials })?;
        tracing::info!(directory = self.cfg.directory, id = account.id(), "ACME account created");
        *slot = Some(account.clone());
        Ok(account)
    }
}

impl MetricSource for AcmeMetrics {
    fn render(&self, out: &mut String) {
        let inner = &self.0;
        let names = inner.lock();
        out.push_str("# HELP swarmgate_acme_certificate_expiry_timestamp_seconds Expiry (notAfter) of the ACME certificate per name.\n# TYPE swarmgate_acme_certificate_expiry_timestamp_seconds gauge\n");
        for (n, e) in names.iter() {
            if let Some(c) = &e.cert {
                let _ = writeln!(
                    out,
                    "swarmgate_acme_certificate_expiry_timestamp_seconds{{name=\"{}\"}} {}",
                    escape(n),
                    unix(c.not_after)
                );
            }
        }
        out.push_str("# HELP swarmgate_acme_consecutive_failures Failed orders in a row per name (0 after a success).\n# TYPE swarmgate_acme_consecutive_failures gauge\n");
        for (n, e) in names.iter() {
            let _ = writeln!(out, "swarmgate_acme_consecutive_failures{{name=\"{}\"}} {}", escape(n), e.state.failures);
        }
        let in_flight = names.values().filter(|e| e.in_flight).count();
        drop(names);
        crate::admin::metrics::counter(
            out,
            "swarmgate_acme_orders_total",
            "ACME orders started.",
            inner.orders_total.load(Ordering::Relaxed),
        );
        crate::admin::metrics::counter(
            out,
            "swarmgate_acme_order_failures_total",
            "ACME orders that failed.",
            inner.order_failures_total.load(Ordering::Relaxed),
        );
        crate::admin::metrics::counter(
            out,
            "swarmgate_acme_certificates_issued_total",
            "Certificates obtained over ACME.",
            inner.certificates_issued_total.load(Ordering::Relaxed),
        );
        crate::admin::metrics::gauge(out, "swarmgate_acme_orders_in_flight", "ACME orders running now.", in_flight);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_is_capped_and_jittered() {
        let min = Duration::from_secs(300);
        let max = Duration::from_secs(3600);
        assert_eq!(backoff_delay(1, min, max, 0.5), Duration::from_secs(300));
        assert_eq!(backoff_delay(2, min, max, 0.5), Duration::from_secs(600));
        assert_eq!(backoff_delay(3, min, max, 0.5), Duration::from_secs(1200));
        assert_eq!(backoff_delay(30, min, max, 0.5), max);
        assert_eq!(backoff_delay(u32::MAX, min, max, 0.99), max);
        let lo = backoff_delay(2, min, max, 0.0);
        let hi = backoff_delay(2, min, max, 0.999);
        assert!(lo < Duration::from_secs(600) && hi > Duration::from_secs(600));
    }

    #[test]
    fn rfc3339_formats_utc() {
        assert_eq!(rfc3339(SystemTime::UNIX_EPOCH), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(from_unix(1_445_412_480)), "2015-10-21T07:28:00Z");
        assert_eq!(rfc3339(from_unix(1_709_208_000)), "2024-02-29T12:00:00Z");
    }

    #[test]
    fn internal_certificates_are_self_signed_leaves_for_the_name() {
        let c = self_signed("intranet.example.com").unwrap();
        assert_eq!(c.names, vec!["intranet.example.com".to_string()]);
        assert_eq!(c.source, CertSource::Internal);
        let now = SystemTime::now();
        assert!(c.not_before < now && c.not_after > now + Duration::from_secs(300 * 86400));
        let dir = tempfile::tempdir().unwrap();
        let m = manager(dir.path(), vec![ChallengeKind::Http01]);
        m.ensure_internal(&BTreeSet::from(["intranet.example.com".to_string()]));
        assert_eq!(m.inner.certs.get("intranet.example.com").unwrap().source, CertSource::Internal);
    }

    #[test]
    fn certificates_json_lists_managed_names() {
        let dir = tempfile::tempdir().unwrap();
        let m = manager(dir.path(), vec![ChallengeKind::Http01]);
        m.inner.set_wanted(&BTreeSet::from(["a.example.com".to_string()]));
        let v = m.certificates_json();
        assert_eq!(v["certificates"][0]["name"], "a.example.com");
        assert_eq!(v["certificates"][0]["wanted"], true);
        assert_eq!(v["certificates"][0]["source"], "Acme");
    }

    #[test]
    fn only_public_names_are_orderable() {
        assert!(orderable("shop.example.com"));
        for n in ["*.example.com", "127.0.0.1", "localhost", "x.localhost", "::1", "intranet", "Shop.Example.com"] {
            assert!(!orderable(n), "{n}");
        }
    }

    fn manager(dir: &std::path::Path, kinds: Vec<ChallengeKind>) -> AcmeManager {
        let cfg = AcmeConfig { challenges: kinds, ..AcmeConfig::default() };
        AcmeManager::new(cfg, dir.to_path_buf(), Arc::new(CertMap::new()), Arc::new(Challenges::default())).unwrap()
    }

    #[test]
    fn retries_lead_with_the_next_challenge_type() {
        let dir = tempfile::tempdir().unwrap();
        let m = manager(dir.path(), vec![ChallengeKind::Http01, ChallengeKind::TlsAlpn01]);
        assert_eq!(m.inner.kinds_for(0), vec![ChallengeKind::Http01, ChallengeKind::TlsAlpn01]);
        assert_eq!(m.inner.kinds_for(1), vec![ChallengeKind::TlsAlpn01, ChallengeKind::Http01]);
        assert_eq!(m.inner.kinds_for(2), vec![ChallengeKind::Http01, ChallengeKind::TlsAlpn01]);
    }

    #[test]
    fn interrupted_order_counts_as_failure_after_restart() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().to_path_buf()).unwrap();
        let now = unix(SystemTime::now());
        store.write_state("a.example.com", &NameState { attempt_started: Some(now), ..Default::default() }).unwrap();
        let m = manager(dir.path(), vec![ChallengeKind::Http01]);
        let st = m.status();
        assert_eq!(st.len(), 1);
        assert_eq!(st[0].consecutive_failures, 1);
        assert!(st[0].backoff_until.is_some(), "{st:?}");
        assert!(st[0].last_error.as_deref().unwrap().contains("interrupted"));
        // And it is persisted: a second restart does not forget it nor count it twice.
        let m2 = manager(dir.path(), vec![ChallengeKind::Http01]);
        assert_eq!(m2.status()[0].consecutive_failures, 1);
        // Not due while backing off, even when wanted.
        m2.inner.set_wanted(&BTreeSet::from(["a.example.com".to_string()]));
        let e = m2.inner.lock();
        let due = m2.inner.due_at(&e["a.example.com"]).unwrap();
        assert!(due > SystemTime::now());
    }

    #[test]
    fn a_name_covered_by_a_static_certificate_does_not_wake_the_loop() {
        let dir = tempfile::tempdir().unwrap();
        let m = manager(dir.path(), vec![ChallengeKind::Http01]);
        let ck = rcgen::generate_simple_self_signed(vec!["s.example.com".to_string()]).unwrap();
        let stat = LiveCert::from_pem(
            ck.cert.pem().as_bytes(),
            ck.signing_key.serialize_pem().as_bytes(),
            CertSource::Static("s.pem".into()),
        )
        .unwrap();
        m.inner.certs.set_static(crate::tls::StaticCerts::new(vec![stat]));
        m.inner.set_wanted(&BTreeSet::from(["s.example.com".to_string()]));
        assert_eq!(m.inner.next_wake(), Duration::MAX);
        m.inner.set_wanted(&BTreeSet::from(["s.example.com".to_string(), "n.example.com".to_string()]));
        assert!(m.inner.next_wake() < Duration::from_secs(1), "a name without a certificate is due now");
    }

    #[test]
    fn wanted_names_are_filtered() {
        let dir = tempfile::tempdir().unwrap();
        let m = manager(dir.path(), vec![ChallengeKind::Http01]);
        m.inner.set_wanted(&BTreeSet::from([
            "*.example.com".to_string(),
            "10.0.0.1".to_string(),
            "ok.example.com".to_string(),
        ]));
        let names: Vec<String> = m.status().into_iter().filter(|s| s.wanted).map(|s| s.name).collect();
        assert_eq!(names, vec!["ok.example.com".to_string()]);
    }
}
