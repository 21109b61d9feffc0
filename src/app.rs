//! Wires the pieces: loads certificates, binds listeners, publishes route tables from the
//! providers, reloads the config file, and shuts down gracefully. Everything `main` does is
//! here so tests can start a whole swarmgate in-process on ephemeral ports.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::admin::metrics::Metrics;
use crate::admin::{AdminState, JsonSourceBox};
use crate::config::{Config, LoadError};
use crate::discovery::dns::DnsCache;
use crate::discovery::ProviderSnapshot;
use crate::model::{compile_guarded, CompileOptions, Problem, RouteSpec, RouteTable};
use crate::proxy::balancer::EndpointRegistry;
use crate::proxy::forward::Forwarder;
use crate::proxy::health::HealthChecker;
use crate::proxy::route_state::RouteStates;
use crate::proxy::server::{serve, ListenerSettings};
use crate::proxy::spread::{Spreader, ThreadShare};
use crate::proxy::upstream::PoolSettings;
use crate::proxy::ProxyState;
use crate::tls::{server_config, CertMap, Challenges, LiveCert, StaticCerts};

/// Errors that stop swarmgate from starting.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("listen.{which}: cannot bind {addr}: {source}")]
    Bind { which: &'static str, addr: SocketAddr, source: std::io::Error },
    #[error("tls.certificates[{index}]: {source}")]
    Certificate { index: usize, source: crate::tls::TlsError },
    #[error(transparent)]
    Config(#[from] LoadError),
    #[error("docker: {0}")]
    Swarm(#[from] crate::discovery::swarm::SwarmError),
    #[error("acme: {0}")]
    Acme(#[from] crate::acme::AcmeError),
    #[error("{0}")]
    Admin(crate::config::ConfigError),
}

/// Loads every static certificate, naming the failing entry.
pub fn load_static_certs(cfg: &Config) -> Result<(StaticCerts, Vec<(String, usize)>), StartError> {
    let mut certs = Vec::new();
    let mut named = Vec::new();
    for (index, c) in cfg.tls.certificates.iter().enumerate() {
        let cert = LiveCert::load_files(&c.cert, &c.key).map_err(|source| StartError::Certificate { index, source })?;
        if let Some(n) = &c.name {
            named.push((n.clone(), index));
        }
        certs.push(cert);
    }
    Ok((StaticCerts::new(certs), named))
}

/// The inputs of the route table; any change recompiles and swaps.
#[derive(Default)]
struct Sources {
    /// File routes as written: DNS names not yet replaced by addresses.
    file: Vec<RouteSpec>,
    /// What the names among the file routes' upstreams resolved to.
    dns: DnsCache,
    swarm: Arc<ProviderSnapshot>,
    generation: u64,
    /// Compile problems already logged, so each is logged once per change rather than on
    /// every Swarm resync that republishes the table.
    logged: BTreeSet<Problem>,
}

/// Compiles and publishes route tables.
pub struct Publisher {
    state: Arc<ProxyState>,
    sources: Mutex<Sources>,
    health: HealthChecker,
    acme_names: watch::Sender<BTreeSet<String>>,
    ready: Arc<AtomicBool>,
    /// Per-route state that survives table swaps (see `RouteStates`).
    route_states: RouteStates,
    /// Wakes the DNS refresher when the file routes change or the labels name a new address.
    dns_wake: tokio::sync::Notify,
}

impl Publisher {
    /// Replaces the file routes and publishes.
    pub fn set_file_routes(&self, specs: Vec<RouteSpec>) {
        self.sources.lock().unwrap_or_else(|e| e.into_inner()).file = specs;
        self.publish();
        self.dns_wake.notify_one();
    }

    /// Replaces the Swarm snapshot and publishes.
    pub fn set_swarm(&self, snapshot: Arc<ProviderSnapshot>) {
        let new_names = {
            let mut s = self.sources.lock().unwrap_or_else(|e| e.into_inner());
            let covered = s.dns.covers(&crate::discovery::dns::names_in(&snapshot.routes));
            s.swarm = snapshot;
            !covered
        };
        self.publish();
        if new_names {
            self.dns_wake.notify_one();
        }
    }

    /// Looks up every DNS name among the upstreams of file and label routes (concurrently, each bounded by
    /// `timeout`) and publishes if any answer changed. The lock is not held while waiting.
    pub async fn refresh_dns(&self, timeout: Duration) {
        let (names, cache) = {
            let s = self.sources.lock().unwrap_or_else(|e| e.into_inner());
            let mut names = crate::discovery::dns::names_in(&s.file);
            names.extend(crate::discovery::dns::names_in(&s.swarm.routes));
            (names, s.dns.clone())
        };
        if names.is_empty() && cache == DnsCache::default() {
            return;
        }
        let next = cache.refreshed(&names, timeout).await;
        let changed = {
            let mut s = self.sources.lock().unwrap_or_else(|e| e.into_inner());
            let changed = s.dns != next;
            s.dns = next;
            changed
        };
        if changed {
            self.publish();
        }
    }

    /// Wanted ACME names, updated on every publish.
    pub fn acme_names(&self) -> watch::Receiver<BTreeSet<String>> {
        self.acme_names.subscribe()
    }

    fn publish(&self) {
        let mut sources = self.sources.lock().unwrap_or_else(|e| e.into_inner());
        sources.generation += 1;
        let (file, dns_problems) = sources.dns.apply(&sources.file);
        let (swarm, swarm_dns_problems) = sources.dns.apply(&sources.swarm.routes);
        let specs: Vec<RouteSpec> = file.into_iter().chain(swarm).collect();
        let problems: Vec<Problem> =
            sources.swarm.problems.iter().cloned().chain(dns_problems).chain(swarm_dns_problems).collect();
        let statics = self.state.certs.statics();
        let static_names = statics.names();
        let opts = CompileOptions {
            registry: &self.state.registry,
            states: &self.route_states,
            metrics: &self.state.metrics,
            static_cert_names: &static_names,
            generation: sources.generation,
        };
        let table = compile_guarded(&specs, problems, &opts);
        // Provider problems are logged by their provider; log compile problems when they appear.
        let compile_problems: BTreeSet<Problem> =
            table.problems.iter().filter(|p| !sources.swarm.problems.contains(p)).cloned().collect();
        for p in compile_problems.difference(&sources.logged) {
            tracing::warn!(source = %p.source, key = %p.key, "{}", p.message);
        }
        sources.logged = compile_problems;
        let m = &self.state.metrics;
        m.problems.store(table.problems.len() as u64, Ordering::Relaxed);
        m.route_table_generation.store(table.generation, Ordering::Relaxed);
        m.config_reloads.fetch_add(1, Ordering::Relaxed);
        let names = table.acme_names(&static_names);
        // `tls internal` (Caddy): a self-signed certificate per name, made once, in memory.
        for name in table.internal_tls_names() {
            if !self.state.certs.has(&name) {
                match crate::acme::self_signed(&name) {
                    Ok(cert) => self.state.certs.insert(cert),
                    Err(e) => tracing::warn!(name, error = %e, "cannot make an internal certificate"),
                }
            }
        }
        self.health.sync(&table);
        let live: BTreeSet<&str> = table.routes.iter().map(|r| &*r.id).collect();
        self.state.metrics.retain_routes(|id| live.contains(id));
        self.route_states.retain(|id| live.contains(id));
        drop(live);
        let table = Arc::new(table);
        self.state.table.store(table);
        self.state.registry.retain_used();
        self.acme_names.send_if_modified(|old| {
            if *old != names {
                *old = names;
                true
            } else {
                false
            }
        });
        self.ready.store(true, Ordering::Relaxed);
    }
}

/// A started swarmgate.
pub struct Running {
    pub http_addr: Option<SocketAddr>,
    pub https_addr: Option<SocketAddr>,
    pub admin_addr: Option<SocketAddr>,
    pub state: Arc<ProxyState>,
    pub publisher: Arc<Publisher>,
    pub admin: Arc<AdminState>,
    shutdown: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    config_path: Option<PathBuf>,
    config: Arc<Mutex<Config>>,
}

impl Running {
    /// Token that stops everything when cancelled.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Stops accepting, lets in-flight requests finish (up to the grace period), then returns.
    pub async fn shutdown(self) {
        self.shutdown.cancel();
        self.wait().await
    }

    /// Waits until every listener has finished (after the shutdown token was cancelled).
    pub async fn wait(self) {
        for t in self.tasks {
            let _ = t.await;
        }
    }

    /// Re-reads the config file; an invalid file is refused and the old table keeps serving.
    pub fn reload(&self) -> Result<(), StartError> {
        let Some(path) = &self.config_path else {
            return Ok(());
        };
        reload_from(path, &self.config, &self.state, &self.publisher)
    }

    /// Publishes a new admin JSON source for `/api/certificates`.
    pub fn set_certificates_source(&self, src: crate::admin::JsonSource) {
        self.admin.certificates.store(Some(Arc::new(JsonSourceBox(src))));
    }
}

fn reload_from(
    path: &std::path::Path,
    current: &Mutex<Config>,
    state: &ProxyState,
    publisher: &Publisher,
) -> Result<(), StartError> {
    let running = current.lock().unwrap_or_else(|e| e.into_inner()).routes.len();
    let result = Config::load_for_reload(path, running)
        .map_err(StartError::from)
        .and_then(|cfg| load_static_certs(&cfg).map(|(certs, _)| (cfg, certs)));
    let (cfg, certs) = match result {
        Ok(x) => x,
        Err(e) => {
            state.metrics.config_reload_failures.fetch_add(1, Ordering::Relaxed);
            tracing::error!(error = %e, "config reload refused; the previous configuration keeps serving");
            return Err(e);
        }
    };
    {
        let old = current.lock().unwrap_or_else(|e| e.into_inner());
        if old.listen.http != cfg.listen.http
            || old.listen.https != cfg.listen.https
            || old.listen.admin != cfg.listen.admin
        {
            tracing::warn!("listen addresses changed in the config file; they take effect only after a restart");
        }
    }
    state.certs.set_static(certs);
    state.access_log.store(cfg.log.access, Ordering::Relaxed);
    state.metrics.config_reload_successes.fetch_add(1, Ordering::Relaxed);
    state.metrics.config_last_success_unix.store(unix_now(), Ordering::Relaxed);
    publisher.set_file_routes(cfg.route_specs());
    tracing::info!(path = %path.display(), routes = cfg.routes.len(), "config reloaded");
    *current.lock().unwrap_or_else(|e| e.into_inner()) = cfg;
    Ok(())
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Binds a listening socket (non-blocking, `SO_REUSEADDR`, and `SO_REUSEPORT` so serving
/// threads can each have their own listener on the same address).
fn bind_std(which: &'static str, addr: SocketAddr) -> Result<std::net::TcpListener, StartError> {
    use socket2::{Domain, Protocol, Socket, Type};
    let map = |source| StartError::Bind { which, addr, source };
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP)).map_err(map)?;
    socket.set_reuse_address(true).map_err(map)?;
    socket.set_reuse_port(true).map_err(map)?;
    socket.set_nonblocking(true).map_err(map)?;
    socket.bind(&addr.into()).map_err(map)?;
    socket.listen(4096).map_err(map)?;
    Ok(socket.into())
}

/// One listener per serving thread on the same address (the first resolves port 0).
fn bind_group(which: &'static str, addr: SocketAddr, count: usize) -> Result<Vec<std::net::TcpListener>, StartError> {
    let first = bind_std(which, addr)?;
    let actual = first.local_addr().map_err(|source| StartError::Bind { which, addr, source })?;
    let mut all = vec![first];
    for _ in 1..count {
        all.push(bind_std(which, actual)?);
    }
    Ok(all)
}

async fn bind(which: &'static str, addr: SocketAddr) -> Result<TcpListener, StartError> {
    let l = bind_std(which, addr)?;
    TcpListener::from_std(l).map_err(|source| StartError::Bind { which, addr, source })
}

/// Starts swarmgate from `cfg`. `config_path` enables reloads (SIGHUP and file changes).
pub async fn start(cfg: Config, config_path: Option<PathBuf>) -> Result<Running, StartError> {
    let shutdown = CancellationToken::new();
    let (statics, _) = load_static_certs(&cfg)?;
    let admin_auth = crate::admin::auth::AdminAuth::load(&cfg.admin).map_err(StartError::Admin)?.map(Arc::new);
    // Bind first: the HTTPS redirect needs the real port when the config asks for port 0.
    let workers = match cfg.listen.workers {
        0 => std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        n => n,
    };
    let http_listener = match cfg.listen.http {
        Some(addr) => bind_group("http", addr, workers)?,
        None => Vec::new(),
    };
    let https_listener = match cfg.listen.https {
        Some(addr) => bind_group("https", addr, workers)?,
        None => Vec::new(),
    };
    let admin_listener = match cfg.listen.admin {
        Some(addr) => Some(bind("admin", addr).await?),
        None => None,
    };
    let http_addr = http_listener.first().and_then(|l| l.local_addr().ok());
    let https_addr = https_listener.first().and_then(|l| l.local_addr().ok());
    let admin_addr = admin_listener.as_ref().and_then(|l| l.local_addr().ok());
    let certs = Arc::new(CertMap::new());
    certs.set_static(statics);
    let challenges = Arc::new(Challenges::default());
    let metrics = Arc::new(Metrics::new());
    let state = Arc::new(ProxyState {
        table: ArcSwap::from_pointee(RouteTable::default()),
        registry: EndpointRegistry::with_pool(PoolSettings {
            idle_timeout: cfg.limits.upstream_idle_timeout.0,
            threads: workers,
            connect_timeout: cfg.limits.upstream_connect_timeout.0,
        }),
        metrics,
        certs: certs.clone(),
        challenges: challenges.clone(),
        forwarder: Forwarder::new(&cfg.limits, &cfg.forwarding),
        access_log: AtomicBool::new(cfg.log.access),
        max_body_bytes: cfg.limits.max_body_bytes,
        https_redirect_port: https_addr.map(|a| a.port()).filter(|p| *p != 443),
        max_header_bytes: cfg.limits.max_header_bytes,
        paths: (&cfg.server).into(),
        log_format: cfg.log.format,
    });
    state.metrics.config_last_success_unix.store(unix_now(), Ordering::Relaxed);
    let ready = Arc::new(AtomicBool::new(false));
    let publisher = Arc::new(Publisher {
        state: state.clone(),
        sources: Mutex::new(Sources::default()),
        health: HealthChecker::new(shutdown.clone()),
        acme_names: watch::channel(BTreeSet::new()).0,
        ready: ready.clone(),
        route_states: RouteStates::new(),
        dns_wake: tokio::sync::Notify::new(),
    });
    publisher.set_file_routes(cfg.route_specs());
    // Names among the file upstreams: resolved once before serving (bounded by the lookup
    // timeout), then again every `[dns] refresh` and after each reload.
    publisher.refresh_dns(cfg.dns.timeout.0).await;
    tokio::spawn(refresh_dns_loop(publisher.clone(), cfg.dns.clone(), shutdown.clone()));
    // Before the listeners serve: stored ACME certificates are loaded synchronously here.
    let acme = match cfg.acme.enabled {
        true => Some(crate::acme::start(
            &cfg.acme,
            cfg.storage_dir().join("acme"),
            certs.clone(),
            challenges.clone(),
            &state.metrics,
            publisher.acme_names(),
            shutdown.clone(),
        )?),
        false => None,
    };
    start_swarm(&cfg, &publisher, &shutdown).await?;

    let settings = ListenerSettings {
        limits: cfg.limits.clone(),
        connections: Arc::new(Semaphore::new(crate::proxy::fdlimit::size_max_connections(cfg.limits.max_connections))),
    };
    let mut tasks = Vec::new();
    let acceptor = tokio_rustls::TlsAcceptor::from(server_config(certs.clone(), challenges.clone()));
    let mut https_listener = https_listener.into_iter();
    let mut http_listener = http_listener.into_iter();
    // One spreader per listener group, when there is more than one serving thread.
    let shares = || -> Box<dyn Iterator<Item = Option<ThreadShare>> + Send> {
        match workers {
            1 => Box::new(std::iter::repeat_with(|| None)),
            n => Box::new(Spreader::shares(n).into_iter().map(Some)),
        }
    };
    let (mut http_shares, mut https_shares) = (shares(), shares());
    for index in 0..workers {
        let pair = (http_listener.next(), https_listener.next());
        let share_pair = (http_shares.next().flatten(), https_shares.next().flatten());
        let serve_pair = {
            let (state, settings, shutdown, acceptor) =
                (state.clone(), settings.clone(), shutdown.clone(), acceptor.clone());
            move || async move {
                let mut parts = Vec::new();
                if let Some(l) = pair.0.and_then(|l| TcpListener::from_std(l).ok()) {
                    let (state, settings, shutdown) = (state.clone(), settings.clone(), shutdown.clone());
                    parts.push(tokio::spawn(serve(l, None, state, settings, shutdown, share_pair.0)));
                }
                if let Some(l) = pair.1.and_then(|l| TcpListener::from_std(l).ok()) {
                    parts.push(tokio::spawn(serve(l, Some(acceptor), state, settings, shutdown, share_pair.1)));
                }
                for p in parts {
                    let _ = p.await;
                }
            }
        };
        if workers == 1 {
            tasks.push(tokio::spawn(serve_pair()));
            continue;
        }
        // A serving thread with its own single-threaded runtime: no work stealing, no
        // cross-thread wake-ups on the request path.
        let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
        std::thread::Builder::new()
            .name(format!("swarmgate-serve-{index}"))
            .spawn(move || {
                crate::proxy::upstream::set_worker_index(index);
                match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                    Ok(rt) => rt.block_on(serve_pair()),
                    Err(e) => tracing::error!(error = %e, "cannot start a serving thread"),
                }
                let _ = done_tx.send(());
            })
            .map_err(|source| StartError::Bind {
                which: "workers",
                addr: http_addr.or(https_addr).unwrap_or(([0, 0, 0, 0], 0).into()),
                source,
            })?;
        tasks.push(tokio::spawn(async move {
            let _ = done_rx.await;
        }));
    }
    let admin = Arc::new(AdminState { proxy: state.clone(), ready, certificates: Default::default() });
    if let Some((manager, task)) = acme {
        admin.certificates.store(Some(Arc::new(JsonSourceBox(manager.json_source()))));
        tasks.push(task);
    }
    if let Some(l) = admin_listener {
        tasks.push(tokio::spawn(crate::admin::serve(
            l,
            admin.clone(),
            admin_auth,
            cfg.limits.clone(),
            shutdown.clone(),
        )));
    }
    let config = Arc::new(Mutex::new(cfg));
    if let Some(path) = config_path.clone() {
        // Register for SIGHUP before returning, so a signal sent right after start is not fatal.
        let hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        // The stamp of the file as loaded, taken now: a change made right after start counts.
        let stamp = file_stamp(&path);
        tokio::spawn(watch_config(
            path,
            stamp,
            hup,
            config.clone(),
            state.clone(),
            publisher.clone(),
            shutdown.clone(),
        ));
    }
    tracing::info!(http = ?http_addr, https = ?https_addr, admin = ?admin_addr, "swarmgate listening");
    Ok(Running { http_addr, https_addr, admin_addr, state, publisher, admin, shutdown, tasks, config_path, config })
}

/// Starts Swarm discovery unless `[docker] enabled = false`.
///
/// An engine that does not answer yet is never a reason to turn discovery off: a
/// docker-socket-proxy service, a restarting daemon or a `tcp://` host may answer a moment
/// later. The provider then serves the snapshot saved by the last run, retries with backoff and
/// switches on when the engine answers; this is logged once, here. What differs between `true`
/// and `"auto"` is an engine that answers but is not a swarm manager: an error that stops the
/// start with `true`, a warning with `"auto"` (the file routes keep serving).
async fn start_swarm(cfg: &Config, publisher: &Arc<Publisher>, shutdown: &CancellationToken) -> Result<(), StartError> {
    use crate::config::DockerMode;
    use crate::discovery::swarm::{SwarmError, SwarmProvider};
    if cfg.docker.enabled == DockerMode::Off {
        return Ok(());
    }
    let provider = SwarmProvider::new(&cfg.docker)?;
    let mode = if cfg.docker.enabled == DockerMode::On { "true" } else { "auto" };
    match provider.check_manager().await {
        Ok(info) => tracing::info!(node = ?info.swarm.node_id, "swarm discovery on"),
        Err(e @ SwarmError::Unreachable { .. }) => tracing::warn!(
            error = %e,
            enabled = mode,
            "Docker is not reachable yet; serving the file routes and the last saved Swarm snapshot, retrying with backoff; discovery switches on when the engine answers"
        ),
        Err(e) if cfg.docker.enabled == DockerMode::On => return Err(e.into()),
        Err(e) => {
            tracing::warn!(error = %e, "swarm discovery off ([docker] enabled = \"auto\"); serving the file routes only");
            return Ok(());
        }
    }
    let (tx, mut rx) = watch::channel(Arc::new(ProviderSnapshot::default()));
    tokio::spawn(provider.run(cfg.labels.clone(), cfg.storage_dir(), tx, shutdown.clone()));
    let publisher = publisher.clone();
    tokio::spawn(async move {
        while rx.changed().await.is_ok() {
            let snapshot = rx.borrow_and_update().clone();
            publisher.set_swarm(snapshot);
        }
    });
    Ok(())
}

/// Re-resolves the file upstreams' DNS names every `refresh`, and at once when the file routes
/// change.
async fn refresh_dns_loop(publisher: Arc<Publisher>, cfg: crate::config::DnsConfig, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(cfg.refresh.0.max(Duration::from_secs(1))) => {}
            _ = publisher.dns_wake.notified() => {}
        }
        publisher.refresh_dns(cfg.timeout.0).await;
    }
}

/// What tells a changed file: modification time and size (a rewrite within the same mtime
/// tick usually changes the size).
fn file_stamp(path: &PathBuf) -> Option<(SystemTime, u64)> {
    std::fs::metadata(path).and_then(|m| Ok((m.modified()?, m.len()))).ok()
}

/// How long a changed file must stay unchanged before it is read, so a file being written
/// (an editor saving in several writes, `cat > file` from a slow pipe) is not read half-way.
const RELOAD_SETTLE: Duration = Duration::from_millis(300);

/// Waits until the file's stamp has not changed for `RELOAD_SETTLE` (at most ~5 s: a file that
/// never settles is read anyway, and a bad one is still refused by validation).
async fn settle(path: &PathBuf, mut stamp: Option<(SystemTime, u64)>) -> Option<(SystemTime, u64)> {
    for _ in 0..16 {
        tokio::time::sleep(RELOAD_SETTLE).await;
        let now = file_stamp(path);
        if now == stamp {
            break;
        }
        stamp = now;
    }
    stamp
}

/// Reloads on SIGHUP and when the file's modification time or size changes (checked every
/// second, then debounced; works with editors that replace the file and with mounted Docker
/// configs).
async fn watch_config(
    path: PathBuf,
    mut last: Option<(SystemTime, u64)>,
    mut hup: Option<tokio::signal::unix::Signal>,
    config: Arc<Mutex<Config>>,
    state: Arc<ProxyState>,
    publisher: Arc<Publisher>,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        let by_signal = tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => false,
            Some(_) = async { match hup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => true,
        };
        let now = file_stamp(&path);
        if by_signal || now != last {
            last = if by_signal { now } else { settle(&path, now).await };
            let _ = reload_from(&path, &config, &state, &publisher);
        }
    }
}
