//! The data plane: listeners, routing, middlewares, balancing, upstream pools, forwarding.

pub mod access_log;
pub mod balancer;
pub mod body;
pub mod compress;
pub mod cors;
pub mod error_pages;
pub mod fdlimit;
pub mod forward;
pub mod forward_auth;
pub mod h2stream;
pub mod handler;
pub mod health;
pub mod hop_by_hop;
pub mod path;
pub mod preface;
pub mod request_body;
pub mod route_state;
pub mod server;
pub mod spread;
pub mod upstream;
pub mod upstream_h2c;
pub mod upstream_tls;
pub mod watchdog;

pub use handler::{ConnInfo, ProxyState};
