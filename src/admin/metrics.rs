//! Prometheus metrics with lock-free recording.
//!
//! Hand-written on purpose: the request path only does relaxed atomic adds on counters that
//! each compiled route already holds (resolved at table-build time), whereas general-purpose
//! clients look labels up in a locked map or lock a histogram per observation. Encoding to the
//! Prometheus text format happens only when `/metrics` is scraped.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;

/// Latency buckets in seconds (upper bounds).
pub const LATENCY_BUCKETS: [f64; 12] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0];

/// Counters for one route; survives reloads (looked up by route id).
#[derive(Debug, Default)]
pub struct RouteMetrics {
    /// Responses by status class: 1xx..5xx at index 0..4.
    pub status: [AtomicU64; 5],
    pub upstream_errors: AtomicU64,
    /// Request bytes received: the head as `max_header_bytes` counts it plus the declared
    /// `Content-Length` (a chunked upload counts its head only).
    pub request_bytes: AtomicU64,
    /// Response body bytes sent to clients (counted as they stream).
    pub response_bytes: AtomicU64,
    buckets: [AtomicU64; LATENCY_BUCKETS.len()],
    latency_count: AtomicU64,
    latency_sum_us: AtomicU64,
}

impl RouteMetrics {
    #[inline]
    pub fn record(&self, status: u16, elapsed: Duration) {
        let class = (status / 100).clamp(1, 5) as usize - 1;
        self.status[class].fetch_add(1, Ordering::Relaxed);
        let secs = elapsed.as_secs_f64();
        if let Some(i) = LATENCY_BUCKETS.iter().position(|b| secs <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.latency_count.fetch_add(1, Ordering::Relaxed);
        self.latency_sum_us.fetch_add(elapsed.as_micros() as u64, Ordering::Relaxed);
    }

    pub fn total(&self) -> u64 {
        self.status.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }
}

/// Process-wide metrics.
#[derive(Debug, Default)]
pub struct Metrics {
    routes: DashMap<String, Arc<RouteMetrics>>,
    /// Requests answered by the proxy itself without a route (unknown host, no route).
    pub unrouted: AtomicU64,
    pub open_connections: AtomicI64,
    pub connections_total: AtomicU64,
    pub connections_refused: AtomicU64,
    /// Route tables published (file reloads, Swarm and DNS changes).
    pub config_reloads: AtomicU64,
    /// Config files read and applied after a change or SIGHUP.
    pub config_reload_successes: AtomicU64,
    pub config_reload_failures: AtomicU64,
    /// Unix time of the last config applied (at start, then each successful reload).
    pub config_last_success_unix: AtomicU64,
    pub tls_handshake_failures: AtomicU64,
    /// Problems currently reported by providers.
    pub problems: AtomicU64,
    pub route_table_generation: AtomicU64,
    /// Extra families rendered by other subsystems (ACME, discovery).
    extra: DashMap<&'static str, Arc<dyn MetricSource>>,
}

/// A subsystem that contributes text-format metrics.
pub trait MetricSource: Send + Sync + std::fmt::Debug {
    fn render(&self, out: &mut String);
}

impl Metrics {
    pub fn new() -> Self {
        Self::default()
    }

    /// Counters for route `id`, created on first use and kept across table swaps.
    pub fn route(&self, id: &str) -> Arc<RouteMetrics> {
        if let Some(m) = self.routes.get(id) {
            return m.clone();
        }
        self.routes.entry(id.to_owned()).or_default().clone()
    }

    /// Drops the series of routes that no longer exist (a removed Swarm service), so
    /// `/metrics` neither grows without bound nor reports routes that are gone. A route that
    /// comes back starts its counters from zero, which Prometheus reads as a counter reset.
    pub fn retain_routes(&self, keep: impl Fn(&str) -> bool) {
        self.routes.retain(|id, _| keep(id));
    }

    /// Registers a subsystem's metrics (replacing one with the same name).
    pub fn register(&self, name: &'static str, source: Arc<dyn MetricSource>) {
        self.extra.insert(name, source);
    }

    /// Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        let mut routes: Vec<_> = self.routes.iter().map(|e| (e.key().clone(), e.value().clone())).collect();
        routes.sort_by(|a, b| a.0.cmp(&b.0));
        out.push_str("# HELP swarmgate_requests_total Requests answered, by route and status class.\n# TYPE swarmgate_requests_total counter\n");
        for (id, m) in &routes {
            for (i, c) in m.status.iter().enumerate() {
                let v = c.load(Ordering::Relaxed);
                if v > 0 {
                    let _ =
                        writeln!(out, "swarmgate_requests_total{{route=\"{}\",code=\"{}xx\"}} {v}", escape(id), i + 1);
                }
            }
        }
        let _ = writeln!(
            out,
            "swarmgate_requests_total{{route=\"\",code=\"4xx\"}} {}",
            self.unrouted.load(Ordering::Relaxed)
        );
        out.push_str("# HELP swarmgate_upstream_errors_total Failed upstream attempts (connect errors, timeouts, resets).\n# TYPE swarmgate_upstream_errors_total counter\n");
        for (id, m) in &routes {
            let _ = writeln!(
                out,
                "swarmgate_upstream_errors_total{{route=\"{}\"}} {}",
                escape(id),
                m.upstream_errors.load(Ordering::Relaxed)
            );
        }
        for (name, help, pick) in [
            ("swarmgate_request_bytes_total", "Request bytes received (head plus declared body length), by route.", 0),
            ("swarmgate_response_bytes_total", "Response body bytes sent, by route.", 1),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for (id, m) in &routes {
                let c = if pick == 0 { &m.request_bytes } else { &m.response_bytes };
                let _ = writeln!(out, "{name}{{route=\"{}\"}} {}", escape(id), c.load(Ordering::Relaxed));
            }
        }
        out.push_str("# HELP swarmgate_request_duration_seconds Time from request head to response head.\n# TYPE swarmgate_request_duration_seconds histogram\n");
        for (id, m) in &routes {
            let id = escape(id);
            let mut cumulative = 0;
            for (i, b) in LATENCY_BUCKETS.iter().enumerate() {
                cumulative += m.buckets[i].load(Ordering::Relaxed);
                let _ = writeln!(
                    out,
                    "swarmgate_request_duration_seconds_bucket{{route=\"{id}\",le=\"{b}\"}} {cumulative}"
                );
            }
            let count = m.latency_count.load(Ordering::Relaxed);
            let _ = writeln!(out, "swarmgate_request_duration_seconds_bucket{{route=\"{id}\",le=\"+Inf\"}} {count}");
            let _ = writeln!(
                out,
                "swarmgate_request_duration_seconds_sum{{route=\"{id}\"}} {}",
                m.latency_sum_us.load(Ordering::Relaxed) as f64 / 1e6
            );
            let _ = writeln!(out, "swarmgate_request_duration_seconds_count{{route=\"{id}\"}} {count}");
        }
        gauge(
            &mut out,
            "swarmgate_open_connections",
            "Client connections open now.",
            self.open_connections.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "swarmgate_connections_total",
            "Client connections accepted.",
            self.connections_total.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "swarmgate_connections_refused_total",
            "Connections refused over max_connections.",
            self.connections_refused.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "swarmgate_route_table_updates_total",
            "Route tables published after a change (config reloads, Swarm and DNS changes).",
            self.config_reloads.load(Ordering::Relaxed),
        );
        let _ = writeln!(
            out,
            "# HELP swarmgate_config_reloads_total Config file reloads, by result.\n# TYPE swarmgate_config_reloads_total counter\n\
             swarmgate_config_reloads_total{{result=\"success\"}} {}\nswarmgate_config_reloads_total{{result=\"failure\"}} {}",
            self.config_reload_successes.load(Ordering::Relaxed),
            self.config_reload_failures.load(Ordering::Relaxed),
        );
        gauge(
            &mut out,
            "swarmgate_config_last_reload_success_timestamp_seconds",
            "Unix time the running config was applied (start or last successful reload).",
            self.config_last_success_unix.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "swarmgate_config_reload_failures_total",
            "Config files refused on reload.",
            self.config_reload_failures.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "swarmgate_tls_handshake_failures_total",
            "TLS handshakes that failed.",
            self.tls_handshake_failures.load(Ordering::Relaxed),
        );
        gauge(
            &mut out,
            "swarmgate_problems",
            "Label and config problems currently reported.",
            self.problems.load(Ordering::Relaxed),
        );
        gauge(
            &mut out,
            "swarmgate_route_table_generation",
            "Generation of the live route table.",
            self.route_table_generation.load(Ordering::Relaxed),
        );
        let mut extra: Vec<_> = self.extra.iter().map(|e| (*e.key(), e.value().clone())).collect();
        extra.sort_by_key(|e| e.0);
        for (_, source) in extra {
            source.render(&mut out);
        }
        out
    }
}

/// `swarmgate_endpoint_up{route,endpoint}`: 1 when the endpoint takes requests (not ejected
/// and passing its health check), 0 otherwise. Read from the live table at scrape time.
pub fn render_endpoints(table: &crate::model::RouteTable, out: &mut String) {
    use crate::model::table::CompiledAction;
    out.push_str("# HELP swarmgate_endpoint_up Endpoint takes requests (1) or is ejected or failing its health check (0).\n# TYPE swarmgate_endpoint_up gauge\n");
    for r in table.routes.iter() {
        if let CompiledAction::Proxy(g) = &r.action {
            let id = escape(&r.id);
            for (i, e) in g.endpoints.iter().enumerate() {
                let up = u8::from(g.is_healthy(i) && !e.is_ejected());
                let _ = writeln!(out, "swarmgate_endpoint_up{{route=\"{id}\",endpoint=\"{}\"}} {up}", e.addr);
            }
        }
    }
}

/// Writes one counter family with a single sample.
pub fn counter(out: &mut String, name: &str, help: &str, value: impl std::fmt::Display) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}");
}

/// Writes one gauge family with a single sample.
pub fn gauge(out: &mut String, name: &str, help: &str, value: impl std::fmt::Display) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}");
}

/// Escapes a label value.
pub fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}
