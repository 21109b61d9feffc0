//! Shared helpers for integration tests: in-process origins, an in-process swarmgate, clients.
#![allow(dead_code)]

pub mod client;
pub mod gateway;
pub mod h2raw;
pub mod origin;
pub mod pki;
pub mod raw_origin;
pub mod tls_client;
