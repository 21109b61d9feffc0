//! Admin listener: health, readiness, Prometheus metrics, JSON API.

pub mod metrics;
