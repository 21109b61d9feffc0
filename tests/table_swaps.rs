//! State that must survive a route-table swap. A table is rebuilt whenever any task anywhere
//! changes (every second during a rolling update); a rate limit that reset with it could be
//! bypassed by waiting for a deploy, and round robin would restart at a random endpoint.

mod support;

use std::sync::Arc;

use http::StatusCode;
use support::client::get;
use support::gateway::Gateway;
use support::origin::Origin;
use swarmgate::discovery::ProviderSnapshot;

/// Republishes the table as a Swarm resync does (a change elsewhere in the cluster).
fn republish(gw: &Gateway) {
    let publisher = gw.running.as_ref().unwrap().publisher.clone();
    publisher.set_swarm(Arc::new(ProviderSnapshot::default()));
}

fn generation(gw: &Gateway) -> u64 {
    gw.running.as_ref().unwrap().state.table.load().generation
}

#[tokio::test]
async fn a_rate_limit_is_not_reset_by_a_table_swap() {
    let o = Origin::start("o").await;
    let gw = Gateway::start(&format!(
        "[[routes]]\nhosts = [\"rl.example.com\"]\nupstreams = [\"{}\"]\nrate_limit = {{ average = 1, period = \"1h\", burst = 2 }}\n",
        o.addr
    ))
    .await;
    assert_eq!(get(gw.http, "rl.example.com", "/").await.status, StatusCode::OK);
    assert_eq!(get(gw.http, "rl.example.com", "/").await.status, StatusCode::OK);
    assert_eq!(get(gw.http, "rl.example.com", "/").await.status, StatusCode::TOO_MANY_REQUESTS);
    for _ in 0..3 {
        let before = generation(&gw);
        republish(&gw);
        assert!(generation(&gw) > before, "the table was not rebuilt");
        assert_eq!(
            get(gw.http, "rl.example.com", "/").await.status,
            StatusCode::TOO_MANY_REQUESTS,
            "the bucket was reset by the table swap"
        );
    }
}

#[tokio::test]
async fn round_robin_carries_on_across_table_swaps() {
    let (a, b) = (Origin::start("a").await, Origin::start("b").await);
    let gw = Gateway::start(&format!(
        "[[routes]]\nhosts = [\"rr.example.com\"]\nupstreams = [\"{}\", \"{}\"]\nlb = \"round_robin\"\n",
        a.addr, b.addr
    ))
    .await;
    let mut seen = Vec::new();
    for _ in 0..12 {
        let r = get(gw.http, "rr.example.com", "/").await;
        seen.push(r.header("x-origin").unwrap_or("?").to_owned());
        republish(&gw);
    }
    // A fresh random start per table would repeat an origin about every other swap.
    assert!(seen.windows(2).all(|w| w[0] != w[1]), "round robin restarted on a swap: {seen:?}");
}
