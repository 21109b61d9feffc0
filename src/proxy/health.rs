//! Active health checks: one probe loop per (endpoint, path, interval) that some route asks for.
//! `sync` is called after every table swap and starts or stops loops to match the new table.
//! Results land on the shared `EndpointState`, so the balancer skips failing endpoints.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Empty;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use tokio_util::sync::CancellationToken;

use super::upstream_tls::{ProfileKey, TlsEndpoint};
use crate::model::table::CompiledAction;
use crate::model::{RouteTable, UpstreamScheme};

/// One probe loop per endpoint, path, interval and protocol: an `https` route is probed over
/// TLS with the route's own profile (CA, server name, skip-verify), so "healthy" means what a
/// request would find.
type Key = (SocketAddr, String, Duration, UpstreamScheme, Option<ProfileKey>);

/// Owns the probe loops.
#[derive(Debug)]
pub struct HealthChecker {
    // Only touched on table swaps, never on the request path.
    loops: Mutex<HashMap<Key, CancellationToken>>,
    shutdown: CancellationToken,
}

impl HealthChecker {
    pub fn new(shutdown: CancellationToken) -> Self {
        HealthChecker { loops: Mutex::new(HashMap::new()), shutdown }
    }

    /// Starts loops the table needs and stops the others.
    pub fn sync(&self, table: &RouteTable) {
        let mut wanted: HashMap<Key, Probe> = HashMap::new();
        for route in &table.routes {
            if let CompiledAction::Proxy(group) = &route.action {
                if let Some(hc) = &group.health {
                    for (i, (ep, flag)) in group.endpoints.iter().zip(group.health_flags.iter()).enumerate() {
                        let tls = group.tls.get(i).cloned();
                        let key =
                            (ep.addr, hc.path.clone(), hc.interval, group.scheme, tls.as_ref().map(|t| t.key.clone()));
                        wanted.insert(key, Probe { flag: flag.clone(), tls });
                    }
                }
            }
        }
        let mut loops = self.loops.lock().unwrap_or_else(|e| e.into_inner());
        loops.retain(|k, token| {
            let keep = wanted.contains_key(k);
            if !keep {
                token.cancel();
            }
            keep
        });
        for (key, probe) in wanted {
            if loops.contains_key(&key) {
                continue;
            }
            let token = self.shutdown.child_token();
            loops.insert(key.clone(), token.clone());
            tokio::spawn(probe_loop(key, probe, token));
        }
    }
}

/// What a probe loop writes to and connects with.
struct Probe {
    flag: Arc<AtomicBool>,
    tls: Option<Arc<TlsEndpoint>>,
}

/// A probe's client: `Box<dyn>` over the connector so one loop serves every scheme.
type ProbeClient = Box<dyn Fn(http::Uri) -> hyper_util::client::legacy::ResponseFuture + Send + Sync>;

fn probe_client(scheme: UpstreamScheme, tls: Option<&Arc<TlsEndpoint>>) -> ProbeClient {
    let mut builder = Client::builder(TokioExecutor::new());
    if let Some(tls) = tls {
        // ALPN decides between HTTP/1.1 and h2, as for requests.
        let client: Client<_, Empty<Bytes>> = builder.build(tls.connector.clone());
        return Box::new(move |uri| client.get(uri));
    }
    if scheme == UpstreamScheme::H2c {
        builder.http2_only(true);
    }
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(Duration::from_secs(2)));
    connector.set_nodelay(true);
    let client: Client<_, Empty<Bytes>> = builder.build(connector);
    Box::new(move |uri| client.get(uri))
}

async fn probe_loop(key: Key, probe: Probe, token: CancellationToken) {
    let (addr, path, interval, scheme, _) = key;
    let Probe { flag, tls } = probe;
    let https = scheme == UpstreamScheme::Https;
    if https && tls.is_none() {
        // Never probe an `https` endpoint in cleartext; the table always gives it a client.
        return;
    }
    let get = probe_client(scheme, tls.as_ref());
    let uri: http::Uri = match format!("{}://{addr}{path}", if https { "https" } else { "http" }).parse() {
        Ok(u) => u,
        Err(_) => return,
    };
    let mut ticker = tokio::time::interval(interval.max(Duration::from_millis(100)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = token.cancelled() => {
                return;
            }
            _ = ticker.tick() => {}
        }
        let result = tokio::time::timeout(Duration::from_secs(2), get(uri.clone())).await;
        let healthy = matches!(&result, Ok(Ok(resp)) if resp.status().is_success() || resp.status().is_redirection());
        if healthy != flag.load(Ordering::Relaxed) {
            if healthy {
                tracing::info!(upstream = %addr, path, "health check passes again; endpoint back in rotation");
            } else {
                let why = match &result {
                    Ok(Ok(resp)) => format!("status {}", resp.status()),
                    Ok(Err(e)) => super::upstream_tls::error_chain(e),
                    Err(_) => "timeout".into(),
                };
                tracing::warn!(upstream = %addr, path, reason = %why, "health check failed; endpoint taken out of rotation");
            }
            flag.store(healthy, Ordering::Relaxed);
        }
    }
}
