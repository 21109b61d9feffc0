//! What upstreams learn about the client: forwarding headers a client sends are replaced unless
//! the client is a trusted proxy (`[forwarding] trusted_proxies`), over real sockets.

mod support;

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::Full;
use support::client::send;
use support::gateway::Gateway;
use support::origin::Origin;

/// A request claiming earlier hops: every header a proxy in front would set, forged.
fn forged(host: &str, path: &str) -> Request<Full<Bytes>> {
    Request::get(path)
        .header("host", host)
        .header("forwarded", "for=198.51.100.7;proto=https;host=evil.example")
        .header("x-forwarded-for", "198.51.100.7")
        .header("x-real-ip", "198.51.100.7")
        .header("x-forwarded-proto", "https")
        .header("x-forwarded-host", "evil.example")
        .header("x-forwarded-prefix", "/admin")
        .header("x-forwarded-port", "443")
        .body(Full::new(Bytes::new()))
        .unwrap()
}

fn config(origin: &Origin, forwarding: &str) -> String {
    format!(
        "{forwarding}\n[[routes]]\nhosts = [\"a.test\"]\nupstreams = [\"{0}\"]\n\
         [[routes]]\nhosts = [\"a.test\"]\npath = \"/svc\"\nstrip_prefix = true\nupstreams = [\"{0}\"]\n",
        origin.addr
    )
}

async fn seen_for(forwarding: &str, path: &str) -> HeaderMap {
    let origin = Origin::start("o").await;
    let gw = Gateway::start(&config(&origin, forwarding)).await;
    let r = send(gw.http, forged("a.test", path)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    origin.seen()[0].headers.clone()
}

fn all<'a>(h: &'a HeaderMap, name: &str) -> Vec<&'a str> {
    h.get_all(name).iter().map(|v| v.to_str().unwrap()).collect()
}

fn assert_only_what_swarmgate_knows(seen: &HeaderMap) {
    assert_eq!(all(seen, "x-forwarded-for"), ["127.0.0.1"], "replaced, not appended to");
    assert_eq!(all(seen, "x-real-ip"), ["127.0.0.1"]);
    assert_eq!(all(seen, "x-forwarded-proto"), ["http"]);
    assert_eq!(all(seen, "x-forwarded-host"), ["a.test"]);
    for gone in ["forwarded", "x-forwarded-prefix", "x-forwarded-port"] {
        assert!(seen.get(gone).is_none(), "{gone} from an untrusted client reached the upstream");
    }
}

#[tokio::test]
async fn an_untrusted_client_cannot_claim_earlier_hops() {
    assert_only_what_swarmgate_knows(&seen_for("", "/").await);
}

#[tokio::test]
async fn trusted_proxies_that_do_not_match_the_peer_change_nothing() {
    let seen = seen_for("[forwarding]\ntrusted_proxies = [\"10.0.0.0/8\", \"::1/128\", \"127.0.0.2\"]", "/").await;
    assert_only_what_swarmgate_knows(&seen);
}

#[tokio::test]
async fn a_trusted_proxy_is_believed_and_extended() {
    let seen = seen_for("[forwarding]\ntrusted_proxies = [\"2001:db8::/32\", \"127.0.0.0/8\"]", "/").await;
    assert_eq!(all(&seen, "x-forwarded-for"), ["198.51.100.7, 127.0.0.1"]);
    assert_eq!(all(&seen, "x-real-ip"), ["198.51.100.7"]);
    assert_eq!(all(&seen, "x-forwarded-proto"), ["https"]);
    assert_eq!(all(&seen, "x-forwarded-host"), ["evil.example"]);
    assert_eq!(all(&seen, "forwarded"), ["for=198.51.100.7;proto=https;host=evil.example"]);
    assert_eq!(all(&seen, "x-forwarded-prefix"), ["/admin"]);
    assert_eq!(all(&seen, "x-forwarded-port"), ["443"]);
}

#[test]
fn an_invalid_trusted_proxy_is_a_config_error_naming_it() {
    let text = "[forwarding]\ntrusted_proxies = [\"10.0.0.0/8\", \"10.0.0.0/33\", \"proxy.local\"]\n";
    let err = swarmgate::config::Config::parse(text, std::path::Path::new("t.toml")).unwrap_err().to_string();
    assert!(err.contains("forwarding.trusted_proxies[1]"), "{err}");
    assert!(err.contains("forwarding.trusted_proxies[2]"), "{err}");
    assert!(!err.contains("trusted_proxies[0]"), "{err}");
}

/// `X-Request-Id` from an untrusted client is replaced by swarmgate's own (the one its access
/// log carries); from a trusted proxy it is passed on as sent.
#[tokio::test]
async fn request_ids_are_chosen_by_trusted_proxies_only() {
    let ids = |r: support::client::Reply| r.header("x-echo-x-request-id").map(str::to_owned);
    for (forwarding, kept) in [("", false), ("[forwarding]\ntrusted_proxies = [\"127.0.0.1\"]", true)] {
        let origin = Origin::start("o").await;
        let gw = Gateway::start(&config(&origin, forwarding)).await;
        let mut req = forged("a.test", "/");
        req.headers_mut().insert("x-request-id", "client-chosen-1".parse().unwrap());
        let seen = ids(send(gw.http, req).await).expect("an id upstream");
        assert_eq!(seen == "client-chosen-1", kept, "{forwarding}: {seen}");
        let (a, b) = (ids(send(gw.http, forged("a.test", "/")).await), ids(send(gw.http, forged("a.test", "/")).await));
        assert!(a.is_some() && a != b, "generated ids differ: {a:?} {b:?}");
    }
}
