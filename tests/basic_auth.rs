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

/// Hashes as `htpasswd -m` / `openssl passwd -apr1` and `htpasswd -s` make them verify through
/// the proxy (the file config takes the same forms as Traefik's `basicauth.users`).
#[tokio::test]
async fn apache_md5_and_sha_hashes_let_the_right_password_in() {
    let apr1 = "$apr1$H6uskkkW$IgXLP6ewTrSuBkTrqE8wj/"; // "test"
    let sha = "{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g="; // "password"
    let gw = Gateway::start(&format!(
        "[listen]\nhttp = \"127.0.0.1:0\"\n\
         [[routes]]\nhosts = [\"locked.example.com\"]\nrespond = {{ body = \"in\" }}\n\
         auth.basic = [\"alice:{apr1}\", \"bob:{sha}\"]\n"
    ))
    .await;
    let host = "locked.example.com";
    assert_eq!(get_auth(gw.http, host, &basic("alice:test")).await, StatusCode::OK);
    assert_eq!(get_auth(gw.http, host, &basic("alice:test")).await, StatusCode::OK, "cached");
    assert_eq!(get_auth(gw.http, host, &basic("bob:password")).await, StatusCode::OK);
    for wrong in ["alice:Test", "alice:password", "bob:test", "carol:test"] {
        assert_eq!(get_auth(gw.http, host, &basic(wrong)).await, StatusCode::UNAUTHORIZED, "{wrong}");
    }
}

#[test]
fn a_plain_text_password_in_the_config_is_an_error_naming_the_key() {
    let err = swarmgate::config::Config::parse(
        "[[routes]]\nhosts = [\"a.example.com\"]\nrespond = { body = \"x\" }\nauth.basic = [\"alice:hunter2\"]\n",
        std::path::Path::new("t.toml"),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("routes[0].auth.basic") && err.contains("not a supported hash"), "{err}");
    assert!(!err.contains("hunter2"), "the error must not echo the password: {err}");
}
