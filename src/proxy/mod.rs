//! The data plane: listeners, routing, middlewares, balancing, upstream pools, forwarding.

pub mod balancer;
