//! The admin listener with `[admin] token_file` / `basic_auth_file`: everything but the health
//! checks needs credentials, read from files (as a Docker secret provides them).

mod support;

use base64::Engine;
use http::StatusCode;
use support::client::{send, Reply};
use support::gateway::Gateway;

async fn admin_get(admin: std::net::SocketAddr, path: &str, authorization: Option<&str>) -> Reply {
    let mut req = http::Request::get(path).header("host", "admin");
    if let Some(a) = authorization {
        req = req.header("authorization", a);
    }
    send(admin, req.body(http_body_util::Full::new(bytes::Bytes::new())).unwrap()).await
}

fn basic(user: &str, password: &str) -> String {
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")))
}

/// Bound to every interface with a token from a file: the API and metrics need the token,
/// the health checks do not.
#[tokio::test]
async fn a_token_file_guards_everything_but_the_health_checks() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("token"), "s3cret-token\n").unwrap();
    let gw = Gateway::start(&format!(
        "[listen]\nhttp = \"127.0.0.1:0\"\nadmin = \"0.0.0.0:0\"\n[admin]\ntoken_file = {:?}\n[[routes]]\nhosts = [\"a.example.com\"]\nrespond = {{ body = \"a\" }}\n",
        dir.path().join("token")
    ))
    .await;
    let admin = std::net::SocketAddr::from(([127, 0, 0, 1], gw.admin.unwrap().port()));
    for open in ["/healthz", "/readyz"] {
        assert_eq!(admin_get(admin, open, None).await.status, StatusCode::OK, "{open}");
    }
    // The dashboard too: a browser sends no bearer token, so a token-only admin shows it to
    // nobody (basic_auth_file, or a loopback admin reached through an SSH tunnel, does).
    for guarded in ["/metrics", "/api/routes", "/api/certificates", "/nope", "/", "/dashboard/", "/dashboard/app.js"] {
        let r = admin_get(admin, guarded, None).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{guarded}");
        assert!(r.header("www-authenticate").is_some_and(|v| v.starts_with("Bearer")), "{guarded}");
        assert_eq!(admin_get(admin, guarded, Some("Bearer s3cret-tokeN")).await.status, StatusCode::UNAUTHORIZED);
        assert_eq!(admin_get(admin, guarded, Some("Bearer s3cret")).await.status, StatusCode::UNAUTHORIZED);
        assert_eq!(admin_get(admin, guarded, Some(&basic("x", "s3cret-token"))).await.status, StatusCode::UNAUTHORIZED);
    }
    let r = admin_get(admin, "/api/routes", Some("Bearer s3cret-token")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.text().contains("a.example.com"));
}

/// htpasswd users from a file; a wrong password or an unknown user gets 401.
#[tokio::test]
async fn a_basic_auth_file_guards_the_api() {
    let dir = tempfile::tempdir().unwrap();
    let hash = bcrypt::hash("pw-alice", 4).unwrap();
    std::fs::write(dir.path().join("htpasswd"), format!("# operators\nalice:{hash}\n\n")).unwrap();
    let gw = Gateway::start(&format!("[admin]\nbasic_auth_file = {:?}\n", dir.path().join("htpasswd"))).await;
    let admin = gw.admin.unwrap();
    assert_eq!(admin_get(admin, "/api/problems", None).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(admin_get(admin, "/api/problems", Some(&basic("alice", "nope"))).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        admin_get(admin, "/api/problems", Some(&basic("bob", "pw-alice"))).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(admin_get(admin, "/api/problems", Some(&basic("alice", "pw-alice"))).await.status, StatusCode::OK);
    assert_eq!(admin_get(admin, "/readyz", None).await.status, StatusCode::OK);
}

/// A secret file that cannot be used stops the start with an error naming the key, and
/// never echoes the file's content.
#[tokio::test]
async fn an_unusable_secret_file_stops_the_start_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("htpasswd"), "alice:plain-password\n").unwrap();
    for (toml, key) in [
        (format!("[admin]\ntoken_file = {:?}\n", dir.path().join("missing")), "admin.token_file"),
        (format!("[admin]\nbasic_auth_file = {:?}\n", dir.path().join("htpasswd")), "admin.basic_auth_file"),
    ] {
        let text =
            format!("[listen]\nhttp = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\n[docker]\nenabled = false\n{toml}");
        let cfg = swarmgate::config::Config::parse(&text, std::path::Path::new("t.toml")).unwrap();
        let err = swarmgate::app::start(cfg, None).await.err().expect("refused").to_string();
        assert!(err.contains(key), "{err}");
        assert!(!err.contains("plain-password"), "{err}");
    }
}
