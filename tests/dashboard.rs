//! The operator dashboard on the admin listener: served embedded at `/` and `/dashboard/` with
//! its security headers, behind the admin auth, and, in a real headless Chromium driven over
//! the DevTools protocol, showing the routes (file and label made) and the label problems,
//! rendering hostile label text as text, following a config reload without a page reload,
//! filtering, fitting a phone screen, and saying so when the API stops answering.

#[path = "support/browser.rs"]
mod browser;
#[path = "support/fake_docker.rs"]
mod fake_docker;
mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine;
use browser::Browser;
use fake_docker::{service, task, FakeDocker};
use http::StatusCode;
use serde_json::json;
use support::client::{get, send};
use support::gateway::Gateway;
use support::origin::Origin;

/// A label key an attacker could deploy: it must show up as text, never as an element.
const XSS: &str = "<img src=x onerror=alert(1)>";
const WAIT: Duration = Duration::from_secs(15);

/// Services in the fake engine: a native route with two tasks, a Caddy and a Traefik route, a
/// typo (`swarmgate.prot`) and a label key carrying markup.
fn engine(fake: &FakeDocker) {
    let on_proxy = |id: &str, svc: &str, ip: &str| task(id, svc, "running", "running", &[("proxynetid", "proxy", ip)]);
    let hostile_key = format!("swarmgate.{XSS}");
    fake.update(|s| {
        s.services = vec![
            service("s1", "shop_web", &[("swarmgate.host", "shop.example.com"), ("swarmgate.port", "8080")]),
            service("s2", "shop_api", &[("swarmgate.host", "api.example.com"), ("swarmgate.prot", "8080")]),
            service("s3", "evil", &[("swarmgate.host", "evil.example.com"), (hostile_key.as_str(), "1")]),
            service("s4", "blog", &[("caddy", "blog.example.com"), ("caddy.reverse_proxy", "{{upstreams 2368}}")]),
            service(
                "s5",
                "docs",
                &[
                    ("traefik.enable", "true"),
                    ("traefik.http.routers.docs.rule", "Host(`docs.example.com`) && PathPrefix(`/v2`)"),
                    ("traefik.http.services.docs.loadbalancer.server.port", "80"),
                ],
            ),
        ];
        s.tasks = vec![
            on_proxy("t1shopweb000000000000001", "s1", "127.0.0.21/24"),
            on_proxy("t2shopweb000000000000002", "s1", "127.0.0.22/24"),
            on_proxy("t3blog000000000000000003", "s4", "127.0.0.23/24"),
            on_proxy("t4docs000000000000000004", "s5", "127.0.0.24/24"),
        ];
    });
}

/// The gateway's config: a static certificate `cert`, discovery from `docker`, a proxied route
/// to `origin`, a fixed response under a stripped prefix, a route answering 503 (for the error
/// rate), and `extra`.
fn config(cert: &(PathBuf, PathBuf), docker: &str, origin: SocketAddr, extra: &str) -> String {
    format!(
        "[listen]\nhttp = \"127.0.0.1:0\"\nhttps = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\n\
         [[tls.certificates]]\ncert = {:?}\nkey = {:?}\n\
         [docker]\nenabled = true\nhost = {docker:?}\nnetworks = [\"proxy\"]\npoll_interval = \"1s\"\n\
         [[routes]]\nhosts = [\"app.example.com\"]\nupstreams = [\"{origin}\"]\nretries = 1\n\
         [[routes]]\nhosts = [\"static.example.com\"]\npath = \"/assets\"\nstrip_prefix = true\nrespond = {{ body = \"ok\" }}\n\
         [[routes]]\nhosts = [\"flaky.example.com\"]\nrespond = {{ status = 503 }}\n{extra}",
        cert.0, cert.1
    )
}

/// Requests in the background so the page has rates to show: 10/s to the origin, 2/s of 503s.
fn traffic(http: SocketAddr) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        for i in 0u32.. {
            get(http, "app.example.com", "/").await;
            if i % 5 == 0 {
                get(http, "flaky.example.com", "/").await;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
}

async fn wait_until(what: &str, mut f: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !f().await {
        assert!(Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn screenshot_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
}

/// Plain HTTP: the page at both paths, the assets' types, the security headers, the budget.
#[tokio::test]
async fn the_page_and_its_assets_are_embedded_with_security_headers() {
    let gw = Gateway::start("[[routes]]\nhosts = [\"a.example.com\"]\nrespond = { body = \"a\" }\n").await;
    let admin = gw.admin.unwrap();
    let mut fetched = 0;
    for (path, ty) in [
        ("/", "text/html"),
        ("/dashboard/", "text/html"),
        ("/dashboard/app.js", "text/javascript"),
        ("/dashboard/app.css", "text/css"),
        ("/dashboard/icon.svg", "image/svg+xml"),
    ] {
        let r = get(admin, "admin", path).await;
        assert_eq!(r.status, StatusCode::OK, "{path}");
        assert!(r.header("content-type").is_some_and(|v| v.starts_with(ty)), "{path}: {:?}", r.header("content-type"));
        let csp = r.header("content-security-policy").unwrap_or_default();
        assert!(csp.starts_with("default-src 'self'") && csp.contains("script-src 'self';"), "{path}: {csp}");
        assert_eq!(r.header("x-content-type-options"), Some("nosniff"), "{path}");
        assert_eq!(r.header("cache-control"), Some("no-store"), "{path}");
        if path != "/" {
            fetched += r.body.len();
        }
    }
    let total = swarmgate::admin::dashboard::total_size();
    assert_eq!(fetched, total, "every embedded asset is served");
    assert!(total < 150_000, "the dashboard's assets weigh {total} bytes, over the 150 KB budget");
    let r = get(admin, "admin", "/dashboard").await;
    assert_eq!(r.status, StatusCode::PERMANENT_REDIRECT);
    assert_eq!(r.header("location"), Some("/dashboard/"));
    assert_eq!(get(admin, "admin", "/dashboard/nope.js").await.status, StatusCode::NOT_FOUND);
    // The dashboard lives on the admin listener only, never on the proxy's.
    assert_ne!(
        get(gw.http, "a.example.com", "/dashboard/app.js").await.header("content-type"),
        Some("text/javascript")
    );
}

/// Everything the browser test checks, in one page session (one chromium start).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_in_a_real_browser() {
    let fake = FakeDocker::start().await;
    engine(&fake);
    let origin = Origin::start("app").await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("swarmgate.toml");
    let cert = support::pki::Ca::new().leaf(dir.path(), "shop", &["shop.example.com"], false);
    let gw = Gateway::start_with_path(&config(&cert, &fake.host(), origin.addr, ""), Some(path.clone())).await;
    let admin = gw.admin.unwrap();
    wait_until("discovery never published the label routes", async || {
        get(admin, "admin", "/api/routes").await.text().contains("shop.example.com")
    })
    .await;
    let routes: serde_json::Value = serde_json::from_str(&get(admin, "admin", "/api/routes").await.text()).unwrap();
    let shop =
        routes["routes"].as_array().unwrap().iter().find(|r| r["spec"]["hosts"][0] == "shop.example.com").unwrap();
    assert_eq!(shop["origin"], json!({ "service": "shop_web", "dialect": "native", "label": "swarmgate" }));
    assert!(shop["counters"]["requests"].is_u64(), "{shop}");
    let load = traffic(gw.http);
    let (fake_host, origin_addr) = (fake.host(), origin.addr);
    let started = Instant::now();
    let mut b = tokio::task::spawn_blocking(move || {
        let mut b = Browser::launch();
        shows_routes_and_problems(&mut b, &format!("http://{admin}/"));
        follows_a_reload_without_a_page_reload(&mut b, &path, &config(&cert, &fake_host, origin_addr, NEW_ROUTE));
        filters_by_host_or_service(&mut b);
        fits_a_phone(&mut b);
        assert!(b.errors.is_empty(), "the page reported errors: {:#?}", b.errors);
        b
    })
    .await
    .unwrap();
    // Last: the API goes away; the page says so instead of going blank or stale in silence.
    load.abort();
    gw.stop().await;
    tokio::task::spawn_blocking(move || {
        let banner = "(() => { const b = document.getElementById('banner'); return !b.hidden && b.textContent.includes('API unreachable on /api/routes'); })()";
        assert!(b.wait_for(banner, WAIT), "no banner once the API stopped answering");
        assert!(text_of(&mut b, "routes-body").contains("shop.example.com"), "the last data stays on screen");
    })
    .await
    .unwrap();
    eprintln!("browser session took {:.1} s", started.elapsed().as_secs_f64());
    load.abort();
    fake.stop();
}

const NEW_ROUTE: &str = "[[routes]]\nhosts = [\"new.example.com\"]\nrespond = { body = \"new\" }\n";

fn text_of(b: &mut Browser, id: &str) -> String {
    b.eval(&format!("document.getElementById({id:?}).textContent")).as_str().unwrap_or_default().to_owned()
}

/// The desktop view: file and label routes with their origin, the problems (typo and markup,
/// the markup as text), live rates; saves the desktop screenshot.
fn shows_routes_and_problems(b: &mut Browser, url: &str) {
    b.viewport(1280, 900, false);
    b.navigate(url);
    let loaded = "(() => { const r = document.getElementById('routes-body').textContent, p = document.getElementById('problems-body').textContent; \
                  return ['app.example.com', 'shop.example.com', 'blog.example.com', 'docs.example.com'].every(h => r.includes(h)) && p.includes('swarmgate.prot'); })()";
    assert!(b.wait_for(loaded, WAIT), "routes or problems never shown:\n{}", text_of(b, "routes-body"));
    let routes = text_of(b, "routes-body");
    for shown in
        ["shop_web", "native", "caddy", "traefik", "config", "routes[0]", "strip_prefix", "retries 1", "2 / 2 up"]
    {
        assert!(routes.contains(shown), "{shown:?} missing from the routes view:\n{routes}");
    }
    let problems = text_of(b, "problems-body");
    assert!(problems.contains("shop_api") && problems.contains("unknown key \"prot\""), "{problems}");
    // The hostile label key is text in the cell, and no element was made of it.
    assert!(problems.contains(&format!("swarmgate.{XSS}")), "{problems}");
    assert_eq!(b.eval("document.querySelectorAll('main img, main [onerror]').length"), 0);
    assert_eq!(b.eval("document.querySelectorAll('img').length"), 1, "only the brand icon is an image");
    let certs = text_of(b, "certificates-body");
    assert!(
        certs.contains("shop.example.com") && certs.contains("swarmgate test CA") && certs.contains("static"),
        "{certs}"
    );
    let endpoints = text_of(b, "endpoints-body");
    assert!(endpoints.contains("127.0.0.21:8080") && endpoints.contains("t1shopweb000"), "{endpoints}");
    assert!(endpoints.contains("node1"), "the node each task runs on: {endpoints}");
    // Two polls make a rate: the origin route gets ~10 requests a second, flaky ~2 503s.
    let rates = "parseFloat([...document.querySelectorAll('#stats li')].find(li => li.textContent.endsWith(' req/s')).firstChild.textContent) > 0";
    assert!(b.wait_for(rates, WAIT), "no request rate shown: {}", text_of(b, "stats"));
    let flaky = "[...document.querySelectorAll('#routes-body tr')].some(tr => tr.textContent.includes('flaky.example.com') && tr.querySelector('.err'))";
    assert!(b.wait_for(flaky, WAIT), "no 5xx rate on the 503 route");
    let shot = screenshot_dir().join("dashboard-desktop.png");
    b.screenshot(&shot);
    eprintln!("desktop screenshot: {}", shot.display());
    update_docs_screenshot(&shot);
    b.eval("window.scrollTo(0, document.body.scrollHeight)");
    let lower = screenshot_dir().join("dashboard-desktop-lower.png");
    b.screenshot(&lower);
    eprintln!("desktop screenshot, scrolled to the end: {}", lower.display());
    b.eval("window.scrollTo(0, 0)");
}

/// `SWARMGATE_UPDATE_SCREENSHOT=1` copies the desktop screenshot to `docs/dashboard.png` (the
/// README's picture); a normal run never writes into the checkout.
fn update_docs_screenshot(shot: &Path) {
    if std::env::var_os("SWARMGATE_UPDATE_SCREENSHOT").is_some() {
        std::fs::copy(shot, Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/dashboard.png")).unwrap();
    }
}

/// A route added to the config file appears by polling: the page is the same document.
fn follows_a_reload_without_a_page_reload(b: &mut Browser, path: &Path, new_config: &str) {
    b.eval("window.__sameDocument = true");
    std::fs::write(path, new_config).unwrap();
    let appeared = "document.getElementById('routes-body').textContent.includes('new.example.com')";
    assert!(b.wait_for(appeared, WAIT), "the added route never appeared:\n{}", text_of(b, "routes-body"));
    assert_eq!(b.eval("window.__sameDocument"), true, "the page reloaded");
}

fn filters_by_host_or_service(b: &mut Browser) {
    let filter = |b: &mut Browser, text: &str| {
        b.eval(&format!("(() => {{ const f = document.getElementById('filter'); f.value = {text:?}; f.dispatchEvent(new Event('input')); }})()"));
    };
    filter(b, "shop_");
    let (routes, problems) = (text_of(b, "routes-body"), text_of(b, "problems-body"));
    assert!(routes.contains("shop.example.com") && !routes.contains("app.example.com"), "{routes}");
    assert!(problems.contains("shop_api") && !problems.contains("evil"), "{problems}");
    filter(b, "BLOG.example");
    assert!(text_of(b, "routes-body").contains("blog.example.com"));
    assert!(text_of(b, "routes-count").contains("1 of"));
    filter(b, "");
}

/// At 390 px the tables become cards: nothing is wider than the screen.
fn fits_a_phone(b: &mut Browser) {
    b.viewport(390, 844, true);
    b.eval("window.scrollTo(0, 0)");
    let fits = "document.documentElement.scrollWidth <= 390 && getComputedStyle(document.querySelector('#routes thead')).display === 'none'";
    assert!(b.wait_for(fits, WAIT), "wider than a phone: {}", b.eval("document.documentElement.scrollWidth"));
    b.eval("document.getElementById('routes').scrollIntoView()");
    let shot = screenshot_dir().join("dashboard-phone.png");
    b.screenshot(&shot);
    eprintln!("phone screenshot: {}", shot.display());
}

/// With `basic_auth_file`, the page and its assets need credentials like the API; with them
/// the page works, and once they stop working the page shows "API answered 401".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_basic_auth_the_page_needs_credentials_and_shows_a_401() {
    let dir = tempfile::tempdir().unwrap();
    let hash = bcrypt::hash("pw-alice", 4).unwrap();
    std::fs::write(dir.path().join("htpasswd"), format!("alice:{hash}\n")).unwrap();
    let gw = Gateway::start(&format!(
        "[admin]\nbasic_auth_file = {:?}\n[[routes]]\nhosts = [\"a.example.com\"]\nrespond = {{ body = \"a\" }}\n",
        dir.path().join("htpasswd")
    ))
    .await;
    let admin = gw.admin.unwrap();
    let basic = |pw: &str| format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("alice:{pw}")));
    for path in ["/", "/dashboard/", "/dashboard/app.js", "/dashboard/app.css", "/dashboard/icon.svg"] {
        let req = |auth: Option<&str>| {
            let mut r = http::Request::get(path).header("host", "admin");
            if let Some(a) = auth {
                r = r.header("authorization", a);
            }
            r.body(http_body_util::Full::new(bytes::Bytes::new())).unwrap()
        };
        let r = send(admin, req(None)).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{path}");
        assert!(r.header("www-authenticate").is_some_and(|v| v.starts_with("Basic")), "{path}");
        assert_eq!(send(admin, req(Some(&basic("pw-alice")))).await.status, StatusCode::OK, "{path}");
    }
    let (good, bad) = (basic("pw-alice"), basic("changed"));
    tokio::task::spawn_blocking(move || {
        let mut b = Browser::launch();
        b.cancel_auth_prompts();
        b.call("Network.enable", json!({}));
        b.call("Network.setExtraHTTPHeaders", json!({ "headers": { "Authorization": good } }));
        b.navigate(&format!("http://{admin}/"));
        let shown = "document.getElementById('routes-body').textContent.includes('a.example.com')";
        assert!(b.wait_for(shown, WAIT), "the page never showed the route with credentials");
        assert!(b.errors.is_empty(), "{:#?}", b.errors);
        // The password changed under an open page: its polls now get 401.
        b.call("Network.setExtraHTTPHeaders", json!({ "headers": { "Authorization": bad } }));
        let banner = "(() => { const b = document.getElementById('banner'); return !b.hidden && b.textContent.includes('API answered 401 on /api/routes'); })()";
        assert!(b.wait_for(banner, WAIT), "no 401 banner: {}", text_of(&mut b, "banner"));
        assert!(text_of(&mut b, "routes-body").contains("a.example.com"), "the last data stays on screen");
    })
    .await
    .unwrap();
}
