//! Traefik and Caddy middlewares from labels, through a running gateway fed by a fake engine:
//! the label set, and a request that proves what it does.

#[path = "support/fake_docker.rs"]
mod fake_docker;
mod support;

use std::time::Duration;

use fake_docker::{service, task, FakeDocker};
use http::StatusCode;
use support::client::{get, raw, send};
use support::gateway::Gateway;
use support::origin::Origin;

/// Traefik routers on one service, one per middleware under test, and a Caddy site.
fn labels(port: u16) -> Vec<(String, String)> {
    let port = port.to_string();
    let mut l: Vec<(String, String)> = vec![("traefik.enable".into(), "true".into())];
    let mut router = |name: &str, host: &str, mws: &str| {
        l.push((format!("traefik.http.routers.{name}.rule"), format!("Host(`{host}`)")));
        l.push((format!("traefik.http.routers.{name}.entrypoints"), "web".into()));
        l.push((format!("traefik.http.routers.{name}.service"), "app".into()));
        l.push((format!("traefik.http.routers.{name}.middlewares"), mws.into()));
    };
    router("www", "www.example.com", "to-bare");
    router("strip", "strip.example.com", "strip-two");
    router("replace", "replace.example.com", "old-to-new");
    router("allow", "allow.example.com", "only-ten");
    router("local", "local.example.com", "only-loopback");
    router("depth", "depth.example.com", "ten-by-xff");
    router("chained", "chain.example.com", "both");
    router("small", "small.example.com", "small-bodies");
    router("zip", "zip.example.com", "as-text,zipper");
    router("png", "png.example.com", "as-png,zipper");
    router("cors", "cors.example.com", "cors");
    router("one", "one.example.com", "one-at-a-time");
    router("oops", "oops.example.com", "pretty");
    let mw = [
        ("to-bare.redirectregex.regex", r"^https?://www\.([^/]+)(.*)"),
        ("to-bare.redirectregex.replacement", "https://${1}${2}"),
        ("to-bare.redirectregex.permanent", "true"),
        ("strip-two.stripprefix.prefixes", "/api,/v1"),
        ("old-to-new.replacepathregex.regex", "^/old/(.*)"),
        ("old-to-new.replacepathregex.replacement", "/new/$1"),
        ("only-ten.ipallowlist.sourcerange", "10.0.0.0/8"),
        ("only-loopback.ipallowlist.sourcerange", "127.0.0.0/8, ::1/128"),
        ("ten-by-xff.ipallowlist.sourcerange", "10.0.0.0/8"),
        ("ten-by-xff.ipallowlist.ipstrategy.depth", "1"),
        ("both.chain.middlewares", "strip-two,tag"),
        ("tag.headers.customrequestheaders.X-Chained", "yes"),
        ("small-bodies.buffering.maxRequestBodyBytes", "100"),
        ("as-text.headers.customresponseheaders.Content-Type", "text/plain; charset=utf-8"),
        ("as-png.headers.customresponseheaders.Content-Type", "image/png"),
        ("zipper.compress", "true"),
        ("cors.headers.accessControlAllowOriginList", "https://app.example.com"),
        ("cors.headers.accessControlAllowMethods", "GET,POST"),
        ("cors.headers.accessControlAllowHeaders", "Content-Type"),
        ("cors.headers.accessControlExposeHeaders", "X-Origin"),
        ("cors.headers.accessControlAllowCredentials", "true"),
        ("cors.headers.accessControlMaxAge", "600"),
        ("cors.headers.addVaryHeader", "true"),
        ("one-at-a-time.inflightreq.amount", "1"),
        ("pretty.errors.status", "500-599,404"),
        ("pretty.errors.service", "pages@docker"),
        ("pretty.errors.query", "/{status}.html"),
    ];
    l.extend(mw.iter().map(|(k, v)| (format!("traefik.http.middlewares.{k}"), v.to_string())));
    l.push(("traefik.http.services.app.loadbalancer.server.port".into(), port));
    l
}

async fn gateway() -> (FakeDocker, Origin, Origin, Gateway) {
    let origin = Origin::start_on("127.0.0.41:0".parse().unwrap(), "app").await;
    let pages = Origin::start_on("127.0.0.42:0".parse().unwrap(), "pages").await;
    let pages_port = pages.addr.port().to_string();
    let pages_labels =
        [("traefik.enable", "true"), ("traefik.http.services.pages.loadbalancer.server.port", pages_port.as_str())];
    let port = origin.addr.port();
    let fake = FakeDocker::start().await;
    let traefik = labels(port);
    let traefik: Vec<(&str, &str)> = traefik.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let caddy_port = format!("{{{{upstreams {port}}}}}");
    let caddy = [
        ("caddy", "http://upload.example.com"),
        ("caddy.reverse_proxy", caddy_port.as_str()),
        ("caddy.request_body.max_size", "100B"),
    ];
    fake.update(|s| {
        s.services = vec![
            service("s1", "app", &traefik),
            service("s2", "upload", &caddy),
            service("s3", "pages", &pages_labels),
        ];
        s.tasks = [("s1", "127.0.0.41/24"), ("s2", "127.0.0.41/24"), ("s3", "127.0.0.42/24")]
            .iter()
            .map(|(svc, ip)| task(&format!("t-{svc}"), svc, "running", "running", &[("netid", "proxy", ip)]))
            .collect();
    });
    let cfg =
        format!("[docker]\nenabled = true\nhost = {:?}\nnetworks = [\"proxy\"]\npoll_interval = \"1s\"\n", fake.host());
    let gw = Gateway::start(&cfg).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while get(gw.http, "chain.example.com", "/v1/").await.status != StatusCode::OK {
        assert!(std::time::Instant::now() < deadline, "label routes never appeared");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (fake, origin, pages, gw)
}

fn post(host: &str, chunked_len: usize) -> Vec<u8> {
    let body = "b".repeat(chunked_len);
    format!("POST / HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{chunked_len:x}\r\n{body}\r\n0\r\n\r\n")
        .into_bytes()
}

#[tokio::test]
async fn traefik_and_caddy_middlewares_from_labels_do_what_they_say() {
    let (_fake, origin, pages, gw) = gateway().await;
    let seen_path = |i: usize| origin.seen()[i].uri.clone();

    // redirectregex: the standard www → bare-domain redirect, groups filled, permanent.
    let r = get(gw.http, "www.example.com", "/shop?item=3").await;
    assert_eq!(r.status, StatusCode::MOVED_PERMANENTLY);
    assert_eq!(r.headers.get("location").unwrap(), "https://example.com/shop?item=3");

    // stripprefix with several prefixes: the one that matches is removed and reported.
    let before = origin.seen().len();
    assert_eq!(get(gw.http, "strip.example.com", "/v1/users").await.status, StatusCode::OK);
    assert_eq!(seen_path(before), "/users");
    assert_eq!(origin.seen()[before].headers.get("x-forwarded-prefix").unwrap(), "/v1");

    // replacepathregex with a group.
    assert_eq!(get(gw.http, "replace.example.com", "/old/a/b?q=1").await.status, StatusCode::OK);
    assert_eq!(seen_path(before + 1), "/new/a/b?q=1");

    // ipallowlist: a loopback client is outside 10.0.0.0/8, inside 127.0.0.0/8.
    assert_eq!(get(gw.http, "allow.example.com", "/").await.status, StatusCode::FORBIDDEN);
    assert_eq!(get(gw.http, "local.example.com", "/").await.status, StatusCode::OK);
    // ipStrategy.depth reads X-Forwarded-For only from trusted proxies: a client claiming to
    // be 10.1.2.3 is still checked by its own address.
    let forged = http::Request::get("/")
        .header("host", "depth.example.com")
        .header("x-forwarded-for", "10.1.2.3")
        .body(Default::default())
        .unwrap();
    assert_eq!(send(gw.http, forged).await.status, StatusCode::FORBIDDEN);

    // chain: its members in order (the strip, then the header).
    let n = origin.seen().len();
    assert_eq!(get(gw.http, "chain.example.com", "/api/x").await.status, StatusCode::OK);
    assert_eq!(seen_path(n), "/x");
    assert_eq!(origin.seen()[n].headers.get("x-chained").unwrap(), "yes");

    // buffering.maxRequestBodyBytes and Caddy request_body max_size: 413 past 100 bytes,
    // chunked or not; under it the body goes through.
    for host in ["small.example.com", "upload.example.com"] {
        let out = raw(gw.http, &post(host, 200), Duration::from_secs(5)).await;
        assert!(out.starts_with("HTTP/1.1 413"), "{host}: {out}");
        let out = raw(gw.http, &post(host, 50), Duration::from_secs(5)).await;
        assert!(out.starts_with("HTTP/1.1 200"), "{host}: {out}");
    }
    // compress: gzip for a client that takes it, streamed; not for one that does not, not for
    // a small body, not for an image.
    let zipped = |host: &str, path: &str, accept: Option<&str>| {
        let mut b = http::Request::get(path).header("host", host);
        if let Some(a) = accept {
            b = b.header("accept-encoding", a);
        }
        send(gw.http, b.body(Default::default()).unwrap())
    };
    let r = zipped("zip.example.com", "/stream/3", Some("br;q=1.0, gzip;q=0.8")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.headers.get("content-encoding").unwrap(), "gzip");
    assert!(r.headers.get_all("vary").iter().any(|v| v == "Accept-Encoding"));
    assert!(r.body.len() < 3 * 1024 / 4, "3 KiB of one byte should shrink, got {} bytes", r.body.len());
    let mut plain = String::new();
    std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&r.body[..]), &mut plain).unwrap();
    assert_eq!(plain, "x".repeat(3 * 1024));
    let r = zipped("zip.example.com", "/stream/3", None).await;
    assert!(r.headers.get("content-encoding").is_none() && r.body.len() == 3 * 1024);
    let r = zipped("zip.example.com", "/stream/3", Some("gzip;q=0")).await;
    assert!(r.headers.get("content-encoding").is_none(), "q=0 refuses gzip");
    let r = zipped("zip.example.com", "/hello", Some("gzip")).await;
    assert!(r.headers.get("content-encoding").is_none(), "under minResponseBodyBytes");
    let r = zipped("png.example.com", "/stream/3", Some("gzip")).await;
    assert!(r.headers.get("content-encoding").is_none(), "images are already compressed");

    // CORS: a preflight from an allowed origin is answered here; responses to it carry the
    // allow headers; another origin gets none.
    let with_origin = |method: &str, origin: &str| {
        http::Request::builder()
            .method(method)
            .uri("/data")
            .header("host", "cors.example.com")
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .body(Default::default())
            .unwrap()
    };
    let hits = origin.seen().len();
    let r = send(gw.http, with_origin("OPTIONS", "https://app.example.com")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.headers.get("access-control-allow-origin").unwrap(), "https://app.example.com");
    assert_eq!(r.headers.get("access-control-allow-methods").unwrap(), "GET, POST");
    assert_eq!(r.headers.get("access-control-allow-headers").unwrap(), "Content-Type");
    assert_eq!(r.headers.get("access-control-max-age").unwrap(), "600");
    assert_eq!(r.headers.get("access-control-allow-credentials").unwrap(), "true");
    assert_eq!(origin.seen().len(), hits, "a preflight is answered by the proxy");
    let r = send(gw.http, with_origin("GET", "https://app.example.com")).await;
    assert_eq!(r.headers.get("access-control-allow-origin").unwrap(), "https://app.example.com");
    assert_eq!(r.headers.get("access-control-expose-headers").unwrap(), "X-Origin");
    assert!(r.headers.get_all("vary").iter().any(|v| v == "Origin"));
    let r = send(gw.http, with_origin("GET", "https://evil.example.net")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.headers.get("access-control-allow-origin").is_none());

    // inflightreq: one request at a time; the second meanwhile gets 429, and the place is
    // given back when the first response ends.
    let slow = get(gw.http, "one.example.com", "/delay/600");
    let second = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        get(gw.http, "one.example.com", "/").await
    };
    let (first, second) = tokio::join!(slow, second);
    assert_eq!((first.status, second.status), (StatusCode::OK, StatusCode::TOO_MANY_REQUESTS));
    assert_eq!(get(gw.http, "one.example.com", "/").await.status, StatusCode::OK);

    // errors: a listed status gets the page from the pages service, with the status kept;
    // other answers pass.
    let r = get(gw.http, "oops.example.com", "/status/503").await;
    assert_eq!((r.status, r.text().as_str()), (StatusCode::SERVICE_UNAVAILABLE, "pages GET /503.html"));
    let r = get(gw.http, "oops.example.com", "/status/404").await;
    assert_eq!((r.status, r.text().as_str()), (StatusCode::NOT_FOUND, "pages GET /404.html"));
    let r = get(gw.http, "oops.example.com", "/status/403").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(pages.hits(), 2);

    let problems = get(gw.admin.unwrap(), "admin", "/api/problems").await.text();
    assert!(!problems.contains("\"error\""), "{problems}");
}
