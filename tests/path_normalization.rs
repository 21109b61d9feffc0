//! Request path normalisation over real sockets (issue 9, item 9): a path-scoped policy
//! cannot be walked past by spelling the path another way, and the upstream sees the path
//! the route table saw.

mod support;

use std::time::Duration;

use support::client::raw;
use support::gateway::Gateway;
use support::origin::Origin;

/// Status code and body of one raw HTTP/1.1 request for `target`.
async fn status_of(gw: &Gateway, host: &str, target: &str) -> (u16, String) {
    let req = format!("GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    let out = raw(gw.http, req.as_bytes(), Duration::from_secs(5)).await;
    let code = out.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    (code, out)
}

/// An open origin on `/`, a basic-auth one on `/admin`, `/api` stripped to the open one.
async fn setup(server: &str) -> (Origin, Origin, Gateway) {
    let open = Origin::start("open").await;
    let admin = Origin::start("admin").await;
    let gw = Gateway::start(&config(&open, &admin, server)).await;
    (open, admin, gw)
}

fn config(origin: &Origin, admin: &Origin, server: &str) -> String {
    let hash = bcrypt::hash("s3cret", 4).unwrap();
    format!(
        "{server}[[routes]]\nhosts = [\"app.example.com\"]\nupstreams = [\"{}\"]\n\
         [[routes]]\nhosts = [\"app.example.com\"]\npath = \"/admin\"\nupstreams = [\"{}\"]\nauth.basic = [\"alice:{hash}\"]\n\
         [[routes]]\nhosts = [\"app.example.com\"]\npath = \"/api\"\nstrip_prefix = true\nupstreams = [\"{}\"]\n",
        origin.addr, admin.addr, origin.addr
    )
}

#[tokio::test]
async fn path_tricks_hit_the_path_scoped_auth() {
    let (open, admin, gw) = setup("").await;
    for target in [
        "/admin/users",
        "/x/../admin/users",
        "/%2e%2e/admin/users",
        "/%2E%2E/admin/users",
        "//admin/users",
        "/%61dmin/users",
        "/./admin/users",
        "/admin/./users",
        "/static/../../admin/users?x=1",
    ] {
        let (code, out) = status_of(&gw, "app.example.com", target).await;
        assert_eq!(code, 401, "{target}: {out}");
    }
    // An encoded slash is refused: an upstream that decodes it would read /admin/users.
    for target in ["/admin%2Fusers", "/x/..%2Fadmin/users", "/admin%5cusers"] {
        let (code, out) = status_of(&gw, "app.example.com", target).await;
        assert_eq!(code, 400, "{target}: {out}");
    }
    assert_eq!(open.hits(), 0, "nothing reached the open route's upstream");
    assert_eq!(admin.hits(), 0, "nothing reached the protected upstream unauthenticated");
}

#[tokio::test]
async fn the_upstream_receives_the_normalised_path_and_the_query_untouched() {
    let (open, admin, gw) = setup("").await;
    let (code, _) = status_of(&gw, "app.example.com", "/a/./b//c/../d?q=%2e%2e/../x&y=//z").await;
    assert_eq!(code, 200);
    // strip_prefix: /api/../admin is /admin (auth), never forwarded as /../admin.
    let (code, _) = status_of(&gw, "app.example.com", "/api/../admin").await;
    assert_eq!(code, 401);
    let (code, _) = status_of(&gw, "app.example.com", "/api/v1/../v2/%7Euser").await;
    assert_eq!(code, 200);
    let seen: Vec<String> = open.seen().iter().map(|s| s.uri.clone()).collect();
    assert_eq!(seen, ["/a/b/d?q=%2e%2e/../x&y=//z", "/v2/~user"]);
    assert_eq!(admin.hits(), 0);
}

#[tokio::test]
async fn reject_mode_answers_400_to_paths_not_in_normal_form() {
    let (_open, admin, gw) = setup("[server]\npath_normalization = \"reject\"\n").await;
    for target in ["/x/../admin/users", "//admin/users", "/%61dmin/users", "/admin%2Fusers"] {
        let (code, out) = status_of(&gw, "app.example.com", target).await;
        assert_eq!(code, 400, "{target}: {out}");
    }
    assert_eq!(status_of(&gw, "app.example.com", "/plain/path?q=/../").await.0, 200);
    assert_eq!(status_of(&gw, "app.example.com", "/admin/users").await.0, 401);
    assert_eq!(admin.hits(), 0);
}

#[tokio::test]
async fn encoded_slashes_can_be_kept_for_apps_that_need_them() {
    let (open, _admin, gw) = setup("[server]\nencoded_slashes = \"keep\"\n").await;
    let (code, _) = status_of(&gw, "app.example.com", "/projects/group%2Fproject").await;
    assert_eq!(code, 200);
    assert_eq!(open.seen()[0].uri, "/projects/group%2Fproject");
}
