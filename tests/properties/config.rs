//! The TOML config file, parsed and validated from arbitrary text, from documents built of the
//! real keys with hostile values, and from a valid file with bytes flipped, cut and repeated
//! (an editor saving half a file, a bad merge). A bad file is an error naming the key, never a
//! panic.

use std::path::Path;

use proptest::prelude::*;
use proptest::sample::select;
use swarmgate::config::{Config, LoadError};

/// A valid file using most sections. Upstreams are IP literals: a mutation can make them
/// invalid, but never a host name to look up (the tests send no DNS queries).
const VALID: &str = r#"[listen]
http = "127.0.0.1:8080"
https = "127.0.0.1:8443"
admin = "127.0.0.1:2019"
workers = 2

[log]
access = true
format = "json"
level = "info"

[limits]
header_read_timeout = "10s"
idle_timeout = 60
max_header_bytes = 65536
max_body_bytes = 10485760
max_connections = 1000
upstream_connect_timeout = "250ms"
upstream_response_timeout = "1m"
upstream_idle_timeout = "50s"
grace_period = "1.5s"

[docker]
enabled = "auto"
networks = ["ingress"]
poll_interval = "30s"

[acme]
enabled = false
email = "ops@example.com"
challenges = ["http-01", "tls-alpn-01"]
renew_fraction = 0.66

[[routes]]
hosts = ["app.example.com", "*.example.org"]
path = "/api"
strip_prefix = true
upstreams = ["127.0.0.1:9000", "[::1]:9001"]
lb = "cookie"
sticky_cookie = "sg"
retries = 2
health = { path = "/healthz", interval = "5s" }
headers = { request = { "X-A" = "1" }, response = { "X-B" = "" } }
auth = { basic = ["user:$2y$05$Yl4aPBQZ6kTZ5Ktu.QYz3.1PUZsQ9EzIyrEhjjxjvOrMsw9uK2Yx2"], realm = "r" }
rate_limit = { average = 10, period = "1s", burst = 20 }

[[routes]]
hosts = ["*"]
respond = { status = 404, body = "nothing here" }

[[routes]]
hosts = ["old.example.com"]
redirect = { to = "https://new.example.com{uri}", status = 308 }
"#;

/// Keys of the schema, in the sections they belong to (and some they do not).
const SECTIONS: &[&str] = &["listen", "log", "limits", "docker", "acme", "labels", "forwarding", "tls", "nope"];
const KEYS: &[&str] = &[
    "http",
    "https",
    "admin",
    "workers",
    "access",
    "format",
    "level",
    "header_read_timeout",
    "idle_timeout",
    "max_header_bytes",
    "max_body_bytes",
    "max_connections",
    "upstream_connect_timeout",
    "upstream_response_timeout",
    "upstream_idle_timeout",
    "grace_period",
    "enabled",
    "host",
    "networks",
    "poll_interval",
    "poll_interval_updating",
    "email",
    "directory",
    "ca_root",
    "storage",
    "challenges",
    "renew_fraction",
    "check_interval",
    "backoff_min",
    "backoff_max",
    "native",
    "native_prefix",
    "caddy",
    "caddy_prefix",
    "traefik",
    "exposed_by_default",
    "via",
    "certificates",
    "hosts",
    "path",
    "path_match",
    "strip_prefix",
    "upstreams",
    "scheme",
    "lb",
    "sticky_cookie",
    "pass_host",
    "redirect_https",
    "tls",
    "health",
    "headers",
    "auth",
    "priority",
    "retries",
    "rate_limit",
    "respond",
    "redirect",
    "\"quoted key\"",
    "a.b",
];

/// TOML values a config key must refuse or survive.
const VALUES: &[&str] = &[
    "\"99999999999999999999999s\"",
    "\"1e308\"",
    "\"-1\"",
    "\"18446744073709551616\"",
    "\"10s\"",
    "\"\"",
    "\"auto\"",
    "\"1.5.5s\"",
    "\"NaN\"",
    "\"inf\"",
    "-1",
    "0",
    "18446744073709551615",
    "9223372036854775807",
    "-9223372036854775808",
    "1e308",
    "-0.0",
    "nan",
    "inf",
    "0.5",
    "true",
    "[]",
    "[\"127.0.0.1:1\", \"noport\", \"1.2.3.4:99999\", \"[::1]:0\", \"http://127.0.0.1:80\"]",
    "[\"*\", \"\", \"a/b\", \"*.*.x\", \"h\u{e9}.test\"]",
    "[1, \"a\", [true]]",
    "[[[[[[[[[[[[]]]]]]]]]]]]",
    "{}",
    "{ path = \"nope\", interval = \"99999999999999999999999s\" }",
    "{ average = 0, period = \"1s\", burst = 18446744073709551615 }",
    "{ status = 99999, body = \"x\" }",
    "{ to = \"\", status = 0 }",
    "{ basic = [\"nocolon\", \"u:\"], realm = \"\" }",
    "\"127.0.0.1:99999\"",
    "\"[::1]:443\"",
    "\"\u{0}\"",
    "\"\u{202e}\"",
    "1979-05-27T07:32:00Z",
];

/// A document of real sections and keys with hostile values, sometimes inside `[[routes]]`.
fn document() -> impl Strategy<Value = String> {
    let value = select(VALUES);
    let pair = (select(KEYS), value).prop_map(|(k, v)| format!("{k} = {v}\n"));
    let section = (
        prop_oneof![select(SECTIONS).prop_map(|s| format!("[{s}]\n")), Just("[[routes]]\n".to_owned())],
        prop::collection::vec(pair, 0..10),
    )
        .prop_map(|(head, pairs)| format!("{head}{}", pairs.concat()));
    prop::collection::vec(section, 0..6).prop_map(|s| s.concat())
}

/// One edit to a file's bytes.
#[derive(Debug, Clone)]
enum Edit {
    Flip(usize, u8),
    Delete(usize, usize),
    Repeat(usize, usize),
    Truncate(usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(a, b)| Edit::Flip(a, b)),
        (any::<usize>(), 1usize..40).prop_map(|(a, n)| Edit::Delete(a, n)),
        (any::<usize>(), 1usize..40).prop_map(|(a, n)| Edit::Repeat(a, n)),
        any::<usize>().prop_map(Edit::Truncate),
    ]
}

/// Applies edits to `text`, never inside an `upstreams = …` line (a mutated IP could become a
/// host name the config would look up in DNS).
fn mutate(text: &str, edits: &[Edit]) -> String {
    let mut bytes = text.as_bytes().to_vec();
    let protected = |b: &[u8], at: usize| {
        let start = b[..at].iter().rposition(|&c| c == b'\n').map_or(0, |i| i + 1);
        b[start..].starts_with(b"upstreams")
    };
    for e in edits {
        if bytes.is_empty() {
            break;
        }
        let at = |i: usize| i % bytes.len();
        match *e {
            Edit::Flip(i, b) if !protected(&bytes, at(i)) && b != b':' => {
                let i = at(i);
                bytes[i] = b;
            }
            Edit::Delete(i, n) if !protected(&bytes, at(i)) => {
                let i = at(i);
                let end = (i + n).min(bytes.len());
                bytes.drain(i..end);
            }
            Edit::Repeat(i, n) => {
                let i = at(i);
                let end = (i + n).min(bytes.len());
                let piece = bytes[i..end].to_vec();
                bytes.splice(i..i, piece);
            }
            Edit::Truncate(i) => bytes.truncate(at(i)),
            _ => {}
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Parses and validates; a refusal names a key (or says where the TOML broke).
fn check(text: &str) -> Result<(), TestCaseError> {
    match Config::parse(text, Path::new("prop.toml")) {
        Ok(cfg) => {
            prop_assert!(cfg.validate().is_empty());
            let _ = cfg.route_specs();
        }
        Err(LoadError::Invalid { errors, .. }) => {
            prop_assert!(!errors.is_empty());
            for e in errors {
                prop_assert!(!e.key.is_empty() && !e.message.is_empty(), "{e:?}");
            }
        }
        Err(LoadError::Parse { message, .. }) => prop_assert!(!message.is_empty()),
        Err(e) => prop_assert!(false, "unexpected error {e}"),
    }
    Ok(())
}

proptest! {
    #![proptest_config(crate::cases(1000))]

    #[test]
    fn arbitrary_text_is_a_config_or_an_error(text in any::<String>()) {
        check(&text)?;
    }

    #[test]
    fn hostile_values_in_real_keys_are_a_config_or_an_error(text in document()) {
        check(&text)?;
    }

    #[test]
    fn a_mutated_valid_file_is_a_config_or_an_error(edits in prop::collection::vec(edit(), 1..6)) {
        let text = mutate(VALID, &edits);
        check(&text)?;
    }
}

#[test]
fn the_template_is_valid() {
    Config::parse(VALID, Path::new("prop.toml")).unwrap();
}
