//! Clients for `h2c` (cleartext HTTP/2) upstreams, one per endpoint.
//!
//! As for TLS upstreams ([`upstream_tls`](super::upstream_tls)): the connector dials the
//! endpoint whatever the request URI says, so the URI's authority, which HTTP/2 sends as
//! `:authority`, is the client's host. With one client for all endpoints the URI had to name
//! the endpoint's address: the upstream saw the task IP as `:authority` and the client's host
//! in a second, different `Host` header, and HTTP/2 servers (Go's, nginx, gRPC) read the
//! former. Clients are kept in the endpoint registry across table swaps, so their keep-alive
//! connections survive a rolling update's table rebuilds.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use http::uri::Authority;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use super::body::ReclaimableBody;
use super::upstream_tls::{FixedAddr, HostAuthorities, TlsClientSettings};

/// The client of one h2c endpoint.
pub struct H2cEndpoint {
    pub client: Client<FixedAddr, ReclaimableBody>,
    pub authorities: HostAuthorities,
}

impl std::fmt::Debug for H2cEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("H2cEndpoint").field("authorities", &self.authorities).finish()
    }
}

/// The h2c clients of a process, by endpoint; entries no table uses are dropped after a swap.
#[derive(Debug)]
pub struct H2cClients {
    settings: TlsClientSettings,
    clients: DashMap<SocketAddr, Arc<H2cEndpoint>>,
}

impl H2cClients {
    pub fn new(settings: TlsClientSettings) -> Self {
        H2cClients { settings, clients: DashMap::new() }
    }

    /// The clients for `endpoints`, made on first use.
    pub fn get(&self, endpoints: &[SocketAddr]) -> Vec<Arc<H2cEndpoint>> {
        endpoints
            .iter()
            .map(|&addr| {
                if let Some(c) = self.clients.get(&addr) {
                    return c.clone();
                }
                let client = Arc::new(endpoint_client(addr, self.settings));
                self.clients.entry(addr).or_insert(client).clone()
            })
            .collect()
    }

    /// Forget clients no route refers to any more (called after a table swap).
    pub fn retain_used(&self) {
        self.clients.retain(|_, c| Arc::strong_count(c) > 1);
    }

    pub fn len(&self) -> usize {
        self.clients.len()
    }

    pub fn is_empty(&self) -> bool {
        self.clients.is_empty()
    }
}

fn endpoint_client(addr: SocketAddr, settings: TlsClientSettings) -> H2cEndpoint {
    let mut http = HttpConnector::new();
    http.set_nodelay(true);
    http.set_connect_timeout(Some(settings.connect_timeout));
    http.set_keepalive(Some(Duration::from_secs(60)));
    http.enforce_http(false);
    let mut b = Client::builder(TokioExecutor::new());
    b.pool_idle_timeout(settings.idle_timeout)
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        .http2_only(true)
        .http2_keep_alive_interval(Some(Duration::from_secs(30)))
        .http2_adaptive_window(true)
        .retry_canceled_requests(true)
        // HTTP/2 takes the host from the URI (`:authority`); no `Host` header beside it.
        .set_host(false);
    H2cEndpoint {
        client: b.build(FixedAddr::new(http, addr)),
        authorities: HostAuthorities::new(
            Authority::try_from(addr.to_string()).unwrap_or_else(|_| Authority::from_static("0.0.0.0:0")),
        ),
    }
}
