//! swarmgate: an HTTP(S) ingress for Docker Swarm.
//!
//! Providers (file config, Swarm labels) produce `model::RouteSpec`s; `model::compile` turns them
//! into an immutable `RouteTable` published through `ArcSwap`; the data plane in `proxy` reads it.
//! `tls` and `acme` keep the live certificate map; `admin` exposes health and metrics.

pub mod acme;
pub mod admin;
pub mod app;
pub mod check;
pub mod config;
pub mod discovery;
pub mod duration;
pub mod healthcheck;
pub mod labels;
pub mod model;
pub mod password;
pub mod proxy;
pub mod tls;
