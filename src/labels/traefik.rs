//! Traefik dialect (in progress).
use super::{LabelsConfig, ServiceInput, Translation};

pub(super) fn translate(_services: &[&ServiceInput], _cfg: &LabelsConfig, _out: &mut Translation) {}
