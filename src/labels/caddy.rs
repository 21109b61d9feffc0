//! caddy-docker-proxy dialect (in progress).
use super::{LabelsConfig, ServiceInput, Translation};

/// The Caddyfile the caddy labels spell.
pub fn render_caddyfile(_services: &[ServiceInput], _cfg: &LabelsConfig) -> String {
    String::new()
}

pub(super) fn translate(_services: &[&ServiceInput], _cfg: &LabelsConfig, _out: &mut Translation) {}
