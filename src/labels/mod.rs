//! Label dialects → `RouteSpec`s + `Problem`s.
//!
//! Three spellings of the same intent: the native `swarmgate.*` labels, caddy-docker-proxy's
//! `caddy*` labels and Traefik's `traefik.*` labels. Each translator is a pure function of the
//! service list, so `swarmgate check --services FILE` shows exactly what a deploy would do.
//! Upstreams are `UpstreamTarget::Tasks`; discovery resolves them to task IPs.

use std::collections::{BTreeMap, BTreeSet};

use crate::model::{LbPolicy, LbSource, Problem, RouteSpec};

pub mod caddy;
pub(crate) mod common;
mod native;
pub mod traefik;

pub use caddy::render_caddyfile;

/// A Swarm service as the label dialects see it. (De)serialisable so `swarmgate check` can read
/// a list of services from a file.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServiceInput {
    /// `ID`.
    pub id: String,
    /// `Spec.Name`, e.g. `mystack_whoami`.
    pub name: String,
    /// `Spec.Labels` (service labels, i.e. `deploy.labels`).
    pub labels: BTreeMap<String, String>,
    /// Container ports the service publishes (`Endpoint.Ports[].TargetPort`), for Traefik's
    /// "single port" fallback when no port label is given.
    pub ports: Vec<u16>,
}

/// Which dialects are on and how they are spelled.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct LabelsConfig {
    /// Native dialect on/off.
    pub native: bool,
    /// Native prefix without the trailing dot.
    pub native_prefix: String,
    /// caddy-docker-proxy dialect on/off.
    pub caddy: bool,
    /// caddy-docker-proxy label prefix (its `CADDY_DOCKER_LABEL_PREFIX`).
    pub caddy_prefix: String,
    /// Traefik dialect on/off.
    pub traefik: bool,
    /// Traefik: route services without `traefik.enable=true`.
    pub exposed_by_default: bool,
    /// Traefik: rule for routers without one; `{{ normalize .Name }}` is the service name with
    /// non-alphanumerics turned into `-`.
    pub traefik_default_rule: String,
    /// Traefik entry point name of the plain HTTP listener.
    pub entrypoint_http: String,
    /// Traefik entry point name of the HTTPS listener.
    pub entrypoint_https: String,
    /// Traefik `serversTransports` (which live in Traefik's file provider, out of reach of
    /// labels), by name: what `loadbalancer.serverstransport=<name>[@provider]` refers to. The
    /// entry `default` stands for Traefik's default transport (`--serverstransport.*`) and
    /// applies to `https` services that name none.
    pub traefik_servers_transports: BTreeMap<String, crate::model::UpstreamTls>,
    /// One balancing policy for every label route that names none, replacing each dialect's
    /// own default (Caddy `random`, Traefik round robin, native p2c). Labels still win.
    pub default_lb: Option<LbPolicy>,
    /// Traefik: route only services whose `traefik.constraint-label` equals this (Traefik's
    /// `constraints=Label(`traefik.constraint-label`, `…`)`). None: the label changes nothing.
    pub traefik_constraint: Option<String>,
    /// Traefik: rules without `Host` and match-everything `HostRegexp`s become a default route
    /// for hosts no other route claims. Off by default: anyone who deploys a service writes
    /// labels, and such a route captures every unclaimed name pointed at the cluster.
    pub allow_catch_all: bool,
}

impl Default for LabelsConfig {
    fn default() -> Self {
        LabelsConfig {
            native: true,
            native_prefix: "swarmgate".into(),
            caddy: true,
            caddy_prefix: "caddy".into(),
            traefik: true,
            exposed_by_default: false,
            traefik_default_rule: "Host(`{{ normalize .Name }}`)".into(),
            entrypoint_http: "web".into(),
            entrypoint_https: "websecure".into(),
            traefik_servers_transports: BTreeMap::new(),
            default_lb: None,
            traefik_constraint: None,
            allow_catch_all: false,
        }
    }
}

/// Cluster-wide settings some dialects carry (Caddy's global options block).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GlobalOptions {
    pub acme_email: Option<String>,
    pub acme_ca: Option<String>,
}

/// Everything the labels of a cluster say.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Translation {
    pub routes: Vec<RouteSpec>,
    pub problems: Vec<Problem>,
    pub global: GlobalOptions,
}

/// Translate every service's labels in every enabled dialect.
///
/// A service's problems never change another service's routes: a translator that cannot
/// understand a service reports a problem and drops only what it could not understand.
///
/// Services are processed in name order so route ids, merge order (Caddy sites shared by several
/// services) and problem order do not depend on the order Docker lists them in.
pub fn translate(services: &[ServiceInput], cfg: &LabelsConfig) -> Translation {
    let mut ordered: Vec<&ServiceInput> = services.iter().collect();
    ordered.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.id.cmp(&b.id)));
    let mut out = Translation::default();
    if cfg.native {
        let start = out.routes.len();
        guarded("native", &cfg.native_prefix, &ordered, &mut out, |svcs, out| {
            for svc in svcs {
                native::translate(svc, &cfg.native_prefix, out);
            }
        });
        apply_lb_default(&mut out.routes[start..], "native", LbPolicy::P2c, cfg.default_lb);
    }
    if cfg.caddy {
        let start = out.routes.len();
        guarded("caddy", &cfg.caddy_prefix, &ordered, &mut out, |svcs, out| caddy::translate(svcs, cfg, out));
        apply_lb_default(&mut out.routes[start..], "caddy", LbPolicy::Random, cfg.default_lb);
    }
    if cfg.traefik {
        let start = out.routes.len();
        guarded("traefik", "traefik", &ordered, &mut out, |svcs, out| traefik::translate(svcs, cfg, out));
        apply_lb_default(&mut out.routes[start..], "traefik", LbPolicy::RoundRobin, cfg.default_lb);
    }
    // One problem per (service, key, message): the same label can be met on several paths.
    let mut seen = BTreeSet::new();
    out.problems.retain(|p| seen.insert(p.clone()));
    crate::model::split_side_services(&mut out.routes);
    out
}

/// Gives the routes of one dialect whose labels name no policy that dialect's default, or the
/// operator's `[labels] default_lb` instead, so a stack moved from Caddy or Traefik balances as
/// it did there. A sticky policy without an explicit fallback places new clients the same way
/// (Caddy's fallback is `random`; Traefik's sticky cookie sits on top of the strategy).
fn apply_lb_default(routes: &mut [RouteSpec], dialect: &str, own: LbPolicy, operator: Option<LbPolicy>) {
    for up in routes.iter_mut().filter_map(RouteSpec::upstream_mut) {
        if up.lb_source == LbSource::Builtin {
            (up.lb, up.lb_source) = match operator {
                Some(p) => (p, LbSource::LabelsDefault),
                None => (own, LbSource::Dialect(dialect.to_owned())),
            };
        }
        if up.lb_fallback.is_none() && up.lb.uses_fallback() {
            up.lb_fallback = Some(operator.filter(|p| p.can_fall_back_to()).unwrap_or(own));
        }
    }
}

/// Runs one dialect's translator so that a bug in it (a panic on some label nobody foresaw)
/// costs only the services that trigger it, never the process: anyone who can deploy a
/// service writes labels, and a panic here would otherwise repeat on every restart for as long
/// as the service exists.
///
/// The translator works on a copy of `out`; on a panic the copy is dropped (no half-written
/// state survives, which is why `AssertUnwindSafe` is sound here) and each service is translated
/// alone to find the ones that panic. Those get a `Problem` and no routes; the others are
/// translated again together, so merges between healthy services still happen.
fn guarded<F>(dialect: &str, key: &str, services: &[&ServiceInput], out: &mut Translation, run: F)
where
    F: Fn(&[&ServiceInput], &mut Translation),
{
    let attempt = |svcs: &[&ServiceInput], base: &Translation| {
        let mut copy = base.clone();
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(svcs, &mut copy))).map(|()| copy)
    };
    if let Ok(done) = attempt(services, out) {
        *out = done;
        return;
    }
    let empty = Translation::default();
    let (bad, good): (Vec<&ServiceInput>, Vec<&ServiceInput>) =
        services.iter().copied().partition(|svc| attempt(std::slice::from_ref(svc), &empty).is_err());
    for svc in &bad {
        tracing::error!(service = %svc.name, dialect, "internal error while translating labels; service not routed");
        out.problems.push(Problem::new(
            &svc.name,
            key,
            format!("internal error while translating the {dialect} labels of this service (a swarmgate bug; please report it with the labels); the service is not routed, other services are not affected"),
        ));
    }
    match attempt(&good, out) {
        Ok(done) => *out = done,
        // Only a combination panics: keep each service's own translation, unmerged.
        Err(_) => {
            for svc in &good {
                if let Ok(alone) = attempt(std::slice::from_ref(svc), &empty) {
                    out.routes.extend(alone.routes);
                    out.problems.extend(alone.problems);
                    out.problems.push(Problem::new(
                        &svc.name,
                        key,
                        format!("internal error while merging the {dialect} labels of several services (a swarmgate bug); this service is routed on its own, without merging"),
                    ));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(name: &str) -> ServiceInput {
        ServiceInput { id: name.into(), name: name.into(), ..Default::default() }
    }

    /// A translator that panics on one service must not take the others down with it.
    #[test]
    fn a_panicking_service_becomes_a_problem_and_the_others_are_translated() {
        let (good, evil, other) = (svc("good"), svc("evil"), svc("other"));
        let services = [&evil, &good, &other];
        let mut out = Translation::default();
        guarded("caddy", "caddy", &services, &mut out, |svcs, out| {
            for s in svcs {
                assert_ne!(s.name, "evil", "translator bug");
                out.problems.push(Problem::new(&s.name, "k", "seen"));
            }
        });
        let seen: Vec<&str> = out.problems.iter().filter(|p| p.message == "seen").map(|p| &*p.source).collect();
        assert_eq!(seen, ["good", "other"]);
        let evil_problem = out.problems.iter().find(|p| p.source == "evil").expect("problem for evil");
        assert!(evil_problem.message.contains("not routed"), "{}", evil_problem.message);
    }

    /// When only the combination panics, each service is still served on its own.
    #[test]
    fn a_panicking_merge_falls_back_to_each_service_alone() {
        let (a, b) = (svc("a"), svc("b"));
        let mut out = Translation::default();
        guarded("caddy", "caddy", &[&a, &b], &mut out, |svcs, out| {
            assert!(svcs.len() < 2, "merge bug");
            out.problems.push(Problem::new(&svcs[0].name, "k", "seen"));
        });
        let seen = out.problems.iter().filter(|p| p.message == "seen").count();
        assert_eq!(seen, 2);
        assert!(out.problems.iter().any(|p| p.source == "a" && p.message.contains("without merging")));
    }
}
