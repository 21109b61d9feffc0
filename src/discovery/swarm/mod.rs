//! The Swarm provider: reads services, tasks and networks from a manager's Engine API, turns
//! the service labels into routes and the running tasks into endpoints, and publishes a
//! [`ProviderSnapshot`] whenever that changes.
//!
//! Shape of the loop (facts in reference/docker-api-acme-rustls-facts.md, sections A and B):
//! - Service and network events trigger a full resync (one `/services`, one `/tasks`, one
//!   `/networks` call), coalesced over [`COALESCE`] so a `docker stack deploy` burst costs one.
//! - Task state changes are not events, so `/tasks` is re-listed every `poll_interval`, and every
//!   `poll_interval_updating` while a service is rolling out.
//! - When Docker fails, the last snapshot stays published (never an empty one), the outage is
//!   logged once, requests back off, and the first success after it is a full resync.
//! - Every published snapshot is saved to `<storage>/swarm-snapshot.json`, so a restart while
//!   the engine is away still serves the last known routes.

mod client;
mod own;
mod persist;
mod reconcile;
pub mod types;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

pub use client::{DockerClient, DockerHost, EventStream, DEFAULT_HOST};
pub use persist::{load_persisted, persist, SNAPSHOT_FILE};
pub use reconcile::{diff_summary, reconcile, resolve, service_input, snapshot_from_json, NetworkSelection};

use crate::config::DockerConfig;
use crate::discovery::ProviderSnapshot;
use crate::labels::LabelsConfig;
use types::{Info, Network, Service, Task};

/// Events arriving within this window after the first one share one resync.
pub const COALESCE: Duration = Duration::from_millis(75);
/// A full resync at least this often, in case an event was lost.
pub const FULL_RESYNC_EVERY: Duration = Duration::from_secs(30);
const BACKOFF_MIN: Duration = Duration::from_millis(250);
/// Retrying a dead local socket every 10 s costs nothing and bounds recovery time.
const BACKOFF_MAX: Duration = Duration::from_secs(10);

/// Why Swarm discovery cannot run (or could not read the engine just now).
#[derive(Debug, thiserror::Error)]
pub enum SwarmError {
    #[error("docker.host {host:?}: {message}")]
    BadHost { host: String, message: String },
    #[error("cannot reach Docker at {host}: {message}")]
    Unreachable { host: String, message: String },
    #[error(
        "this Docker node cannot serve Swarm discovery ({detail}); run swarmgate on a swarm manager \
         (placement constraint `node.role == manager`), or set [docker] enabled = false and use the file config"
    )]
    NotManager { detail: String },
    #[error("Docker answered {status} to GET {path}: {message}")]
    Api { path: String, status: u16, message: String },
    #[error("cannot parse {what}: {source}")]
    Json { what: String, source: serde_json::Error },
}

/// True when an engine answers at `[docker] host` / `DOCKER_HOST` / the default socket.
pub async fn docker_reachable(cfg: &DockerConfig) -> bool {
    let Ok(host) = DockerHost::from_config(cfg.host.as_deref()) else {
        return false;
    };
    if let DockerHost::Unix(p) = &host {
        if !p.exists() {
            return false;
        }
    }
    DockerClient::new(host).ping(Duration::from_secs(1)).await.is_ok()
}

/// `/info` says this node can list services and tasks: an active swarm member with the
/// control plane (a manager). Anything else is an error that says what to do.
pub fn check_manager_info(info: &Info) -> Result<(), SwarmError> {
    let s = &info.swarm;
    if s.local_node_state == "active" && s.control_available {
        return Ok(());
    }
    let detail = match s.local_node_state.as_str() {
        "active" => format!("node {} is a swarm worker; /services and /tasks answer only on managers", info.name),
        "" | "inactive" => {
            "this engine is not part of a swarm (`docker swarm init` or `docker swarm join` first)".to_owned()
        }
        "locked" => "the swarm is locked; unlock it with `docker swarm unlock`".to_owned(),
        other => format!(
            "swarm state is {other:?}{}",
            if s.error.is_empty() { String::new() } else { format!(": {}", s.error) }
        ),
    };
    Err(SwarmError::NotManager { detail })
}

/// Swarm discovery against one engine.
pub struct SwarmProvider {
    client: DockerClient,
    cfg: DockerConfig,
}

impl SwarmProvider {
    /// Parse the host setting; no I/O.
    pub fn new(cfg: &DockerConfig) -> Result<Self, SwarmError> {
        let host = DockerHost::from_config(cfg.host.as_deref())?;
        Ok(SwarmProvider { client: DockerClient::new(host), cfg: cfg.clone() })
    }

    /// Parse the host setting and check with `/info` that the node is an active manager.
    pub async fn connect(cfg: &DockerConfig) -> Result<Self, SwarmError> {
        let p = Self::new(cfg)?;
        p.check_manager().await?;
        Ok(p)
    }

    pub async fn check_manager(&self) -> Result<Info, SwarmError> {
        let info = self.client.info().await?;
        check_manager_info(&info)?;
        Ok(info)
    }

    pub fn client(&self) -> &DockerClient {
        &self.client
    }

    /// Follow the engine until `shutdown` is cancelled, publishing on `tx` whenever the
    /// snapshot changes. Never returns an error: Docker failures keep the last snapshot.
    ///
    /// If the very first read fails and `tx` still holds an empty snapshot, the one saved in
    /// `storage` by a previous run is published instead.
    pub async fn run(
        self,
        labels: LabelsConfig,
        storage: PathBuf,
        tx: watch::Sender<Arc<ProviderSnapshot>>,
        shutdown: CancellationToken,
    ) {
        let (sig_tx, mut sig_rx) = mpsc::channel::<Signal>(256);
        let events_stop = shutdown.child_token();
        let events = tokio::spawn(events_loop(self.client.clone(), sig_tx, events_stop.clone()));
        let mut st = LoopState::new(&self.cfg);
        let mut due = tokio::time::Instant::now();
        let mut pending_full = true;

        loop {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                Some(sig) = sig_rx.recv() => {
                    tracing::debug!(?sig, "swarm event");
                    // The first signal of a burst sets the deadline; later ones never push it
                    // back. During an outage this also cuts the backoff short: the events
                    // stream reconnecting means the engine is back.
                    pending_full = true;
                    due = due.min(tokio::time::Instant::now() + COALESCE);
                    continue;
                }
                _ = tokio::time::sleep_until(due) => {}
            }
            let full = pending_full || !st.healthy || st.last_full.is_none_or(|t| t.elapsed() >= FULL_RESYNC_EVERY);
            let result = tokio::select! {
                _ = shutdown.cancelled() => break,
                r = self.sync(&mut st, full, &labels) => r,
            };
            match result {
                Ok(snapshot) => {
                    if !st.healthy {
                        match st.outage_since.take() {
                            Some(since) => {
                                tracing::info!(after = ?since.elapsed(), "Docker discovery recovered; full resync done")
                            }
                            None => {
                                tracing::info!(host = %self.client.host(), "Swarm discovery connected")
                            }
                        }
                    }
                    st.healthy = true;
                    st.ever_synced = true;
                    st.backoff = BACKOFF_MIN;
                    pending_full = false;
                    publish(&tx, snapshot, &storage, &mut st).await;
                    let interval =
                        if st.updating { self.cfg.poll_interval_updating.0 } else { self.cfg.poll_interval.0 };
                    due = tokio::time::Instant::now() + interval.max(Duration::from_millis(10));
                }
                Err(e) => {
                    if st.healthy || st.outage_since.is_none() {
                        tracing::warn!(error = %e, routes = tx.borrow().routes.len(), "Docker discovery failing; keeping the last snapshot and retrying");
                        st.outage_since = Some(Instant::now());
                    } else {
                        tracing::debug!(error = %e, "Docker discovery still failing");
                    }
                    st.healthy = false;
                    if !st.ever_synced && !st.tried_persisted {
                        st.tried_persisted = true;
                        let empty = {
                            let cur = tx.borrow();
                            cur.routes.is_empty() && cur.problems.is_empty()
                        };
                        if empty {
                            if let Some(saved) = load_persisted(&storage) {
                                tracing::warn!(routes = saved.routes.len(), file = %storage.join(SNAPSHOT_FILE).display(), "Docker unreachable at start; serving the last saved Swarm snapshot");
                                st.known_problems = saved.problems.iter().cloned().collect();
                                tx.send_replace(Arc::new(saved));
                            }
                        }
                    }
                    due = tokio::time::Instant::now() + st.backoff;
                    st.backoff = (st.backoff * 2).min(BACKOFF_MAX);
                }
            }
        }
        events_stop.cancel();
        let _ = events.await;
    }

    /// Read what is needed and reconcile. A full sync re-reads services and networks (and, after
    /// an outage, which networks the proxy is on); otherwise only tasks (plus services while an
    /// update runs, to see it finish).
    async fn sync(
        &self,
        st: &mut LoopState,
        full: bool,
        labels: &LabelsConfig,
    ) -> Result<ProviderSnapshot, SwarmError> {
        if full && !st.healthy {
            st.selection = self.select_networks().await?;
        }
        if full || st.updating {
            let (services, tasks, networks) = if full {
                let (s, t, n) = tokio::try_join!(self.client.services(), self.client.tasks(), self.client.networks())?;
                (s, t, Some(n))
            } else {
                let (s, t) = tokio::try_join!(self.client.services(), self.client.tasks())?;
                (s, t, None)
            };
            st.set_services(services);
            if let Some(n) = networks {
                st.networks = n;
            }
            st.tasks = tasks;
        } else {
            st.tasks = self.client.tasks().await?;
            // A task of a service we have not listed: a create event was missed or is racing.
            if st.tasks.iter().any(|t| !st.service_ids.contains(t.service_id.as_str())) {
                let services = self.client.services().await?;
                st.set_services(services);
            }
        }
        if full {
            st.last_full = Some(Instant::now());
        }
        Ok(reconcile(&st.services, &st.tasks, &st.networks, &st.selection, labels))
    }

    /// `[docker] networks` when set; else the networks of our own container; else any.
    async fn select_networks(&self) -> Result<NetworkSelection, SwarmError> {
        if !self.cfg.networks.is_empty() {
            return Ok(NetworkSelection::Configured(self.cfg.networks.clone()));
        }
        Ok(match own::own_networks(&self.client).await? {
            Some(nets) if !nets.is_empty() => NetworkSelection::Proxy(nets),
            Some(_) => {
                tracing::warn!("the proxy's container is on no overlay network; using any non-ingress network of each task (set [docker] networks to choose)");
                NetworkSelection::Any
            }
            None => NetworkSelection::Any,
        })
    }
}

#[derive(Debug)]
enum Signal {
    /// The events stream (re)connected: events may have been missed.
    Connected,
    /// A service or network changed.
    Changed,
}

struct LoopState {
    services: Vec<Service>,
    service_ids: rustc_hash::FxHashSet<String>,
    tasks: Vec<Task>,
    networks: Vec<Network>,
    selection: NetworkSelection,
    updating: bool,
    healthy: bool,
    ever_synced: bool,
    tried_persisted: bool,
    outage_since: Option<Instant>,
    last_full: Option<Instant>,
    backoff: Duration,
    known_problems: std::collections::BTreeSet<crate::model::Problem>,
    persist_failing: bool,
}

impl LoopState {
    fn new(cfg: &DockerConfig) -> Self {
        LoopState {
            services: Vec::new(),
            service_ids: Default::default(),
            tasks: Vec::new(),
            networks: Vec::new(),
            selection: NetworkSelection::from_config(&cfg.networks),
            updating: false,
            healthy: false,
            ever_synced: false,
            tried_persisted: false,
            outage_since: None,
            last_full: None,
            backoff: BACKOFF_MIN,
            known_problems: Default::default(),
            persist_failing: false,
        }
    }

    fn set_services(&mut self, mut services: Vec<Service>) {
        // The engine's list order is not guaranteed; a stable order keeps equal snapshots equal.
        services.sort_by(|a, b| a.spec.name.cmp(&b.spec.name).then_with(|| a.id.cmp(&b.id)));
        self.updating = services.iter().any(Service::is_updating);
        self.service_ids = services.iter().map(|s| s.id.clone()).collect();
        self.services = services;
    }
}

/// Publish when different, with a one-line diff; log problems once per change; save to disk.
async fn publish(
    tx: &watch::Sender<Arc<ProviderSnapshot>>,
    snapshot: ProviderSnapshot,
    storage: &std::path::Path,
    st: &mut LoopState,
) {
    let current = tx.borrow().clone();
    if *current == snapshot {
        return;
    }
    let new_problems: std::collections::BTreeSet<_> = snapshot.problems.iter().cloned().collect();
    for p in new_problems.difference(&st.known_problems) {
        tracing::warn!(source = %p.source, key = %p.key, "label problem: {}", p.message);
    }
    let resolved = st.known_problems.difference(&new_problems).count();
    if resolved > 0 {
        tracing::info!(resolved, "label problems resolved");
    }
    st.known_problems = new_problems;
    if let Some(line) = diff_summary(&current, &snapshot) {
        tracing::info!("swarm: {line}");
    }
    let snapshot = Arc::new(snapshot);
    tx.send_replace(snapshot.clone());
    let dir = storage.to_owned();
    let saved = tokio::task::spawn_blocking(move || persist(&dir, &snapshot)).await;
    match saved {
        Ok(Ok(())) => st.persist_failing = false,
        Ok(Err(e)) if !st.persist_failing => {
            st.persist_failing = true;
            tracing::warn!(error = %e, dir = %storage.display(), "cannot save the Swarm snapshot (serving is unaffected)");
        }
        _ => {}
    }
}

/// Service create/update/remove and network lifecycle events change routes or addresses.
/// Network `connect`/`disconnect` fire for every container start on the node (bridge networks
/// included) and would turn a busy node into a resync storm; task polling covers them.
fn is_resync_event(ev: &types::Event) -> bool {
    match ev.typ.as_str() {
        "service" => true,
        "network" => !matches!(ev.action.as_str(), "connect" | "disconnect"),
        _ => false,
    }
}

/// Keep an `/events` subscription open; signal every service/network event and every
/// (re)connection. Backs off while the engine is away.
async fn events_loop(client: DockerClient, tx: mpsc::Sender<Signal>, stop: CancellationToken) {
    let mut backoff = BACKOFF_MIN;
    loop {
        let attempt = tokio::select! {
            _ = stop.cancelled() => return,
            r = client.events() => r,
        };
        match attempt {
            Ok(mut stream) => {
                backoff = BACKOFF_MIN;
                if tx.send(Signal::Connected).await.is_err() {
                    return;
                }
                loop {
                    let next = tokio::select! {
                        _ = stop.cancelled() => return,
                        n = stream.next() => n,
                    };
                    match next {
                        Some(Ok(ev)) if is_resync_event(&ev) => {
                            tracing::debug!(typ = %ev.typ, action = %ev.action, actor = %ev.actor.id, "engine event");
                            // A full channel already holds a pending resync: dropping is fine.
                            let _ = tx.try_send(Signal::Changed);
                        }
                        Some(Ok(_)) => {}
                        Some(Err(e)) => {
                            tracing::debug!(error = %e, "events stream broke; reconnecting");
                            break;
                        }
                        None => {
                            tracing::debug!("events stream ended; reconnecting");
                            break;
                        }
                    }
                }
            }
            Err(e) => {
                tracing::debug!(error = %e, ?backoff, "cannot subscribe to engine events");
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manager_check_explains_what_to_do() {
        let info = |state: &str, ctl: bool| -> Info {
            serde_json::from_value(
                serde_json::json!({"Name": "node1", "Swarm": {"LocalNodeState": state, "ControlAvailable": ctl}}),
            )
            .unwrap()
        };
        assert!(check_manager_info(&info("active", true)).is_ok());
        let worker = check_manager_info(&info("active", false)).unwrap_err().to_string();
        assert!(
            worker.contains("worker") && worker.contains("node.role == manager") && worker.contains("file config"),
            "{worker}"
        );
        let none = check_manager_info(&info("inactive", false)).unwrap_err().to_string();
        assert!(none.contains("docker swarm init"), "{none}");
        assert!(check_manager_info(&info("locked", false)).unwrap_err().to_string().contains("unlock"));
    }
}
