//! Admin listener: `/healthz`, `/readyz`, `/metrics` (Prometheus text), a JSON API:
//! `/api/routes`, `/api/problems`, `/api/endpoints`, `/api/certificates`, and the read-only
//! dashboard that shows it (`/`, `/dashboard/`).

pub mod auth;
pub mod dashboard;
pub mod metrics;

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::{header, HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::Limits;
use crate::model::table::{CompiledAction, CompiledRoute};
use crate::proxy::body::ProxyBody;
use crate::proxy::server::{serve_plain, Builders, Conn, ConnSignals};
use crate::proxy::watchdog::{Activity, BusyBody};
use crate::proxy::ProxyState;

/// Extra JSON the admin API can show (ACME status), provided by subsystems.
pub type JsonSource = Arc<dyn Fn() -> serde_json::Value + Send + Sync>;

/// What the admin listener reads.
pub struct AdminState {
    pub proxy: Arc<ProxyState>,
    /// True once a route table has been loaded.
    pub ready: Arc<std::sync::atomic::AtomicBool>,
    pub certificates: arc_swap::ArcSwapOption<JsonSourceBox>,
}

/// Boxed source (ArcSwapOption needs a sized type).
pub struct JsonSourceBox(pub JsonSource);

fn json(value: &serde_json::Value) -> Response<ProxyBody> {
    let mut resp = Response::new(ProxyBody::text(serde_json::to_vec_pretty(value).unwrap_or_default()));
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<ProxyBody> {
    let mut resp = Response::new(ProxyBody::text(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    resp
}

/// One route of `/api/routes`: its redacted spec, where it came from (`origin`), its
/// balancing policy, its endpoints, and the request counters `/metrics` exports for it
/// (`counters`: responses, 5xx responses, failed upstream attempts), so the dashboard can
/// show rates by differencing two polls without parsing the Prometheus text.
fn route_json(r: &CompiledRoute) -> serde_json::Value {
    use std::sync::atomic::Ordering::Relaxed;
    let endpoints: Vec<serde_json::Value> = match &r.action {
        CompiledAction::Proxy(g) => g
            .endpoints
            .iter()
            .zip(g.tasks.iter().zip(g.nodes.iter()))
            .enumerate()
            .map(|(i, (e, (t, node)))| {
                serde_json::json!({
                    "addr": e.addr.to_string(), "task": t, "node": node, "in_flight": e.in_flight(),
                    "ejected": e.is_ejected(), "healthy": g.is_healthy(i), "latency_ms": e.latency_ns() as f64 / 1e6,
                    "requests": e.requests.load(Relaxed),
                })
            })
            .collect(),
        _ => Vec::new(),
    };
    // The effective balancing policy and where it came from (label, dialect default, config).
    let lb =
        r.spec.upstream().map(|u| serde_json::json!({ "policy": u.lb.to_string(), "source": u.lb_source.to_string() }));
    let m = &r.metrics;
    let counters = serde_json::json!({
        "requests": m.total(), "server_errors": m.status[4].load(Relaxed), "upstream_errors": m.upstream_errors.load(Relaxed),
    });
    serde_json::json!({
        "id": &*r.id, "spec": r.spec.redacted(), "origin": dashboard::origin(&r.spec), "lb": lb,
        "endpoints": endpoints, "counters": counters,
    })
}

/// Answers one admin request.
pub fn answer(state: &AdminState, req: &Request<Incoming>) -> Response<ProxyBody> {
    let table = state.proxy.table.load();
    match req.uri().path() {
        "/healthz" => text(StatusCode::OK, "ok\n"),
        "/readyz" => {
            if state.ready.load(std::sync::atomic::Ordering::Relaxed) {
                text(StatusCode::OK, format!("ready: {} routes, generation {}\n", table.len(), table.generation))
            } else {
                text(StatusCode::SERVICE_UNAVAILABLE, "not ready: no route table loaded yet\n")
            }
        }
        "/metrics" => {
            let mut body = state.proxy.metrics.render();
            metrics::render_endpoints(&table, &mut body);
            let mut resp = text(StatusCode::OK, body);
            resp.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"));
            resp
        }
        "/api/routes" => json(&serde_json::json!({
            "generation": table.generation,
            "routes": table.routes.iter().map(|r| route_json(r)).collect::<Vec<_>>(),
        })),
        "/api/problems" => json(&serde_json::json!({ "problems": table.problems })),
        "/api/endpoints" => json(&serde_json::json!({
            "endpoints": state.proxy.registry.snapshot().iter().map(|e| serde_json::json!({
                "addr": e.addr.to_string(), "in_flight": e.in_flight(), "ejected": e.is_ejected(),
                "latency_ms": e.latency_ns() as f64 / 1e6,
                "requests": e.requests.load(std::sync::atomic::Ordering::Relaxed),
                "failures": e.failures.load(std::sync::atomic::Ordering::Relaxed),
            })).collect::<Vec<_>>(),
        })),
        "/api/certificates" => match state.certificates.load_full() {
            Some(src) => json(&(src.0)()),
            None => {
                let statics = state.proxy.certs.statics();
                json(&serde_json::json!({ "certificates": statics.certs.iter().map(|c| serde_json::json!({
                    "names": c.names, "issuer": c.issuer, "source": c.source,
                    "not_after": httpdate::fmt_http_date(c.not_after),
                })).collect::<Vec<_>>() }))
            }
        },
        "/dashboard" => dashboard::redirect_to_page(),
        path => match dashboard::asset(path) {
            Some(asset) => dashboard::respond(asset),
            None => text(
                StatusCode::NOT_FOUND,
                "not found: try / (the dashboard) /healthz /readyz /metrics /api/routes /api/problems /api/endpoints /api/certificates\n",
            ),
        },
    }
}

/// 401 for a request `auth` does not allow (every path but [`auth::OPEN_PATHS`]).
async fn refused(auth: Option<&auth::AdminAuth>, req: &Request<Incoming>) -> Option<Response<ProxyBody>> {
    let auth = auth?;
    if auth::OPEN_PATHS.contains(&req.uri().path()) || auth.allows(req.headers()).await {
        return None;
    }
    let mut resp = text(StatusCode::UNAUTHORIZED, "authentication required (see [admin] in the config)\n");
    resp.headers_mut().insert(header::WWW_AUTHENTICATE, auth.challenge().clone());
    Some(resp)
}

/// Serves the admin listener until `shutdown`, with the proxy listeners' connection handling:
/// the same request-head deadline (408), idle deadline and h2c detection, so a slow or idle
/// client cannot hold admin connections open forever. With `auth`, every request but the
/// health checks needs credentials.
pub async fn serve(
    listener: TcpListener,
    state: Arc<AdminState>,
    auth: Option<Arc<auth::AdminAuth>>,
    limits: Limits,
    shutdown: CancellationToken,
) {
    let builders = Arc::new(Builders::new(&limits));
    let signals = Arc::new(ConnSignals::default());
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = listener.accept() => match r { Ok(x) => x, Err(_) => continue },
        };
        let _ = stream.set_nodelay(true);
        let activity = Arc::new(Activity::default());
        let svc = {
            let (state, activity, auth) = (state.clone(), activity.clone(), auth.clone());
            service_fn(move |req: Request<Incoming>| {
                let (state, auth) = (state.clone(), auth.clone());
                let busy = activity.begin(!http_body::Body::is_end_stream(req.body()));
                async move {
                    let resp = match refused(auth.as_deref(), &req).await {
                        Some(resp) => resp,
                        None => answer(&state, &req),
                    };
                    Ok::<_, Infallible>(resp.map(|body| BusyBody::new(body, busy)))
                }
            })
        };
        let c = Conn {
            peer,
            activity,
            signal: signals.register(),
            header: limits.header_read_timeout.0,
            idle: limits.idle_timeout.0,
        };
        let builders = builders.clone();
        tokio::spawn(async move { serve_plain(&builders, c, stream, svc.clone(), svc).await });
    }
    signals.fire();
}
