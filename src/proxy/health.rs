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

use crate::model::table::CompiledAction;
use crate::model::{RouteTable, UpstreamScheme};

type Key = (SocketAddr, String, Duration, UpstreamScheme);

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
        let mut wanted: HashMap<Key, Arc<AtomicBool>> = HashMap::new();
        for route in &table.routes {
            if let CompiledAction::Proxy(group) = &route.action {
                if let Some(hc) = &group.health {
                    for (ep, flag) in group.endpoints.iter().zip(group.health_flags.iter()) {
                        wanted.insert((ep.addr, hc.path.clone(), hc.interval, group.scheme), flag.clone());
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
        for (key, endpoint) in wanted {
            if loops.contains_key(&key) {
                continue;
            }
            let token = self.shutdown.child_token();
            loops.insert(key.clone(), token.clone());
            tokio::spawn(probe_loop(key, endpoint, token));
        }
    }
}

async fn probe_loop(key: Key, flag: Arc<AtomicBool>, token: CancellationToken) {
    let (addr, path, interval, scheme) = key;
    let mut builder = Client::builder(TokioExecutor::new());
    if scheme == UpstreamScheme::H2c {
        builder.http2_only(true);
    }
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(Duration::from_secs(2)));
    connector.set_nodelay(true);
    let client: Client<_, Empty<Bytes>> = builder.build(connector);
    let uri: http::Uri = match format!("http://{addr}{path}").parse() {
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
        let result = tokio::time::timeout(Duration::from_secs(2), client.get(uri.clone())).await;
        let healthy = matches!(&result, Ok(Ok(resp)) if resp.status().is_success() || resp.status().is_redirection());
        if healthy != flag.load(Ordering::Relaxed) {
            if healthy {
                tracing::info!(upstream = %addr, path, "health check passes again; endpoint back in rotation");
            } else {
                let why = match &result {
                    Ok(Ok(resp)) => format!("status {}", resp.status()),
                    Ok(Err(e)) => e.to_string(),
                    Err(_) => "timeout".into(),
                };
                tracing::warn!(upstream = %addr, path, reason = %why, "health check failed; endpoint taken out of rotation");
            }
            flag.store(healthy, Ordering::Relaxed);
        }
    }
}
