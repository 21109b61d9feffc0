//! Label dialects → `RouteSpec`s + `Problem`s.
//!
//! Three spellings of the same intent: the native `swarmgate.*` labels, caddy-docker-proxy's
//! `caddy*` labels and Traefik's `traefik.*` labels. Each translator is a pure function of the
//! service list, so `swarmgate check --services FILE` shows exactly what a deploy would do.
//! Upstreams are `UpstreamTarget::Tasks`; discovery resolves them to task IPs.

use std::collections::{BTreeMap, BTreeSet};

use crate::model::{Problem, RouteSpec};

pub mod caddy;
mod common;
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
        for svc in &ordered {
            native::translate(svc, &cfg.native_prefix, &mut out);
        }
    }
    if cfg.caddy {
        caddy::translate(&ordered, cfg, &mut out);
    }
    if cfg.traefik {
        traefik::translate(&ordered, cfg, &mut out);
    }
    // One problem per (service, key, message): the same label can be met on several paths.
    let mut seen = BTreeSet::new();
    out.problems.retain(|p| seen.insert(p.clone()));
    out
}
