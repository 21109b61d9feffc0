//! Basic auth verifies bcrypt (deliberately slow) off the serving threads, so wrong passwords
//! cannot stall everyone else's requests.

mod support;

use std::time::{Duration, Instant};

use base64::Engine;
use http::StatusCode;
use support::client::get;
use support::gateway::Gateway;

fn basic(user_pass: &str) -> String {
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(user_pass))
}

async fn get_auth(addr: std::net::SocketAddr, host: &str, auth: &str) -> StatusCode {
    let req = http::Request::get("/")
        .header("host", host)
        .header("authorization", auth)
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    support::client::send(addr, req).await.status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn wrong_passwords_do_not_stall_other_requests() {
    // Cost 11: far slower than any request should take (hundreds of ms per check here).
    let hash = bcrypt::hash("right", 11).unwrap();
    let started = Instant::now();
    assert!(bcrypt::verify("wrong", &hash).is_ok());
    let one_check = started.elapsed();
    let gw = Gateway::start(&format!(
        "[listen]\nhttp = \"127.0.0.1:0\"\nworkers = 2\n\
         [[routes]]\nhosts = [\"locked.example.com\"]\nrespond = {{ body = \"in\" }}\nauth.basic = [\"alice:{hash}\"]\n\
         [[routes]]\nhosts = [\"open.example.com\"]\nrespond = {{ body = \"open\" }}\n"
    ))
    .await;
    let addr = gw.http;
    // Enough wrong-password requests in parallel to hold both serving threads if bcrypt ran on
    // them, each pair for about one check.
    let attackers: Vec<_> = (0..8)
        .map(|i| {
            tokio::spawn(async move { get_auth(addr, "locked.example.com", &basic(&format!("alice:wrong{i}"))).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let probe = Instant::now();
    let r = get(addr, "open.example.com", "/").await;
    let waited = probe.elapsed();
    assert_eq!(r.text(), "open");
    for a in attackers {
        assert_eq!(a.await.unwrap(), StatusCode::UNAUTHORIZED);
    }
    // Behaviour, not speed: the open route must not wait behind the checks (it would wait for
    // several of them if they ran on the serving threads).
    assert!(waited < one_check, "an open request waited {waited:?} behind bcrypt checks of {one_check:?} each");
    assert_eq!(get_auth(addr, "locked.example.com", &basic("alice:right")).await, StatusCode::OK);
}
