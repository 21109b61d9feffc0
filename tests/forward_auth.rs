//! Forward authentication against a small real auth service (a scripted HTTP server that
//! answers 200 / 401 / 302 by rules, as Authelia and Authentik do).

mod support;

use http::{Request, StatusCode};
use support::client::{get, send};
use support::gateway::Gateway;
use support::origin::Origin;
use support::raw_origin::{RawOrigin, RawRequest, Reply};

/// 200 with an identity for `Bearer good`, 401 for any other token, and a redirect to a login
/// page (carrying where the client was going) without credentials.
fn auth_service(req: &RawRequest) -> Reply {
    let answer = match req.header("authorization") {
        Some("bearer good") => {
            "HTTP/1.1 200 OK\r\nRemote-User: alice\r\nRemote-Groups: admins\r\nContent-Length: 0\r\n\r\n".to_owned()
        }
        Some(_) => {
            "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer\r\nContent-Length: 6\r\n\r\ndenied".to_owned()
        }
        None => {
            let rd = format!(
                "{}://{}{}",
                req.header("x-forwarded-proto").unwrap_or("?"),
                req.header("x-forwarded-host").unwrap_or("?"),
                req.header("x-forwarded-uri").unwrap_or("?")
            );
            format!(
                "HTTP/1.1 302 Found\r\nLocation: https://auth.example.com/login?rd={rd}\r\nContent-Length: 0\r\n\r\n"
            )
        }
    };
    Reply::Send(answer.into_bytes())
}

fn config(app: &Origin, auth: std::net::SocketAddr, extra: &str) -> String {
    format!(
        "[[routes]]\nhosts = [\"app.example.com\"]\nupstreams = [\"{}\"]\n\
         forward_auth = {{ address = \"http://{auth}/api/verify?rd=x\", copy_headers = [\"Remote-User\", \"Remote-Groups>X-Groups\"]{extra} }}\n",
        app.addr
    )
}

fn with_token(token: Option<&str>, path: &str) -> Request<http_body_util::Full<bytes::Bytes>> {
    let mut b = Request::get(path).header("host", "app.example.com").header("remote-user", "mallory");
    if let Some(t) = token {
        b = b.header("authorization", format!("Bearer {t}"));
    }
    b.body(Default::default()).unwrap()
}

#[tokio::test]
async fn a_2xx_lets_the_request_through_with_the_services_headers_and_nothing_the_client_claimed() {
    let app = Origin::start("app").await;
    let auth = RawOrigin::start(auth_service).await;
    let gw = Gateway::start(&config(&app, auth.addr, "")).await;

    let r = send(gw.http, with_token(Some("good"), "/docs?page=2")).await;
    assert_eq!(r.status, StatusCode::OK);
    let seen = &app.seen()[0];
    let users: Vec<_> = seen.headers.get_all("remote-user").iter().collect();
    assert_eq!(users, ["alice"], "the client's forged Remote-User must not survive");
    assert_eq!(seen.headers.get("x-groups").unwrap(), "admins");
    assert_eq!(seen.uri, "/docs?page=2");

    let asked = &auth.requests()[0];
    assert!(asked.head.starts_with("get /api/verify?rd=x http/1.1"), "{}", asked.head);
    assert_eq!(asked.header("x-forwarded-method"), Some("get"));
    assert_eq!(asked.header("x-forwarded-uri"), Some("/docs?page=2"));
    assert_eq!(asked.header("x-forwarded-host"), Some("app.example.com"));
    assert_eq!(asked.header("authorization"), Some("bearer good"));
}

#[tokio::test]
async fn any_other_answer_goes_back_to_the_client_and_the_upstream_is_never_asked() {
    let app = Origin::start("app").await;
    let auth = RawOrigin::start(auth_service).await;
    let gw = Gateway::start(&config(&app, auth.addr, "")).await;

    let r = send(gw.http, with_token(Some("bad"), "/")).await;
    assert_eq!((r.status, r.text().as_str()), (StatusCode::UNAUTHORIZED, "denied"));
    assert_eq!(r.headers.get("www-authenticate").unwrap(), "Bearer");

    let r = send(gw.http, with_token(None, "/private?x=1")).await;
    assert_eq!(r.status, StatusCode::FOUND);
    assert_eq!(
        r.headers.get("location").unwrap(),
        "https://auth.example.com/login?rd=http://app.example.com/private?x=1"
    );
    assert_eq!(app.hits(), 0);
}

#[tokio::test]
async fn an_unreachable_auth_service_fails_closed() {
    let app = Origin::start("app").await;
    let gone = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let gw = Gateway::start(&config(&app, gone, "")).await;
    let r = send(gw.http, with_token(Some("good"), "/")).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(app.hits(), 0);
}

#[tokio::test]
async fn request_headers_limits_what_the_service_sees() {
    let app = Origin::start("app").await;
    let auth = RawOrigin::start(auth_service).await;
    let gw = Gateway::start(&config(&app, auth.addr, ", request_headers = [\"Authorization\"]")).await;
    let mut req = with_token(Some("good"), "/");
    req.headers_mut().insert("cookie", "session=secret".parse().unwrap());
    assert_eq!(send(gw.http, req).await.status, StatusCode::OK);
    let asked = &auth.requests()[0];
    assert_eq!(asked.header("authorization"), Some("bearer good"));
    assert_eq!(asked.header("cookie"), None, "{}", asked.head);
    assert_eq!(get(gw.http, "app.example.com", "/").await.status, StatusCode::FOUND);
}
