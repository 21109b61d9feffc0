//! swarmgate's HTTP/1.1 client to upstream endpoints.
//!
//! Why not hyper's client here: hyper runs every upstream connection as a task of its own and
//! passes each request, response and body chunk across channels between that task and the
//! request's task. On the proxy's hot path that machinery cost about a third of the
//! user-space instructions of a proxied request (callgrind; see BENCHMARKS.md). Here the
//! request's own task drives the socket: the request head is encoded straight from the `http`
//! types into one write, the response head is parsed with httparse (as hyper does), the body
//! streams from the same socket, and the connection goes back to its endpoint's pool the
//! moment the body ends. h2c and HTTPS upstreams still go through hyper's client.

mod body;
pub mod codec;
mod conn;
mod pool;

pub use body::{response_body, UpstreamBody};
pub use conn::{ConnectError, ExchangeError, OutgoingBody, UpstreamConn};
pub use pool::{set_worker_index, Http1Pool, PoolSettings};
