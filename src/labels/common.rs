//! Small parsers shared by the three dialects. All pure; errors are messages the caller turns
//! into a `Problem` naming the label key.

use crate::password::is_bcrypt;
use std::time::Duration;

/// Checks and normalises one host name from a label: lower-case, no trailing dot, ASCII only,
/// `*.` as the only wildcard. A bare `*` is refused: labels may never create a catch-all
/// route, because anyone who can deploy a service would otherwise own every unknown host name
/// (an open proxy).
pub(crate) fn label_host(raw: &str) -> Result<String, String> {
    let h = raw.trim();
    let h = h.strip_suffix('.').unwrap_or(h).to_ascii_lowercase();
    if h.is_empty() {
        return Err("empty host name".into());
    }
    if h == "*" {
        return Err("\"*\" would route every host name; labels may not create a catch-all route (no open proxy)".into());
    }
    if !h.is_ascii() {
        return Err(format!("{raw:?} is not ASCII; write the name in punycode (xn--…)"));
    }
    let body = h.strip_prefix("*.").unwrap_or(&h);
    if body.contains('*') {
        return Err(format!("{raw:?}: a leading \"*.\" is the only wildcard"));
    }
    let valid = |b: u8| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_';
    if !body.bytes().all(valid) || body.split('.').any(str::is_empty) {
        return Err(format!("{raw:?} is not a host name"));
    }
    Ok(h)
}

/// `true`/`false` (any case), `1`/`0`.
pub(crate) fn parse_bool(v: &str) -> Result<bool, String> {
    match v.trim().to_ascii_lowercase().as_str() {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(format!("{v:?} is not true or false")),
    }
}

/// A duration label, in the grammar the config file uses too (`crate::duration`).
pub(crate) fn parse_duration(v: &str) -> Result<Duration, String> {
    crate::duration::parse(v).map_err(|e| e.to_string())
}

/// A valid HTTP header name (checked here so the problem names the label, not the table).
pub(crate) fn header_name(name: &str) -> Result<(), String> {
    http::HeaderName::from_bytes(name.as_bytes())
        .map(|_| ())
        .map_err(|_| format!("{name:?} is not a valid header name"))
}

/// A valid HTTP header value.
pub(crate) fn header_value(value: &str) -> Result<(), String> {
    http::HeaderValue::from_str(value).map(|_| ()).map_err(|_| format!("{value:?} is not a valid header value"))
}

/// A bcrypt hash as Caddy's `basic_auth` takes it (Caddy verifies bcrypt only). Caddy also
/// accepts the hash base64-encoded; that form is decoded here. Anything else is refused: a
/// route is never served without the authentication its labels ask for.
pub(crate) fn bcrypt_hash(hash: &str) -> Result<String, String> {
    let h = decode_base64_hash(hash);
    if is_bcrypt(&h) {
        return Ok(h);
    }
    Err("not a bcrypt hash (Caddy's basic_auth takes bcrypt only: $2a$/$2b$/$2y$…; make one with `caddy hash-password`)"
        .into())
}

/// A hash in any form [`crate::password`] verifies (bcrypt, Apache MD5 `$apr1$`, `{SHA}`), as
/// Traefik's `basicauth.users` and the native labels take it.
pub(crate) fn password_hash(hash: &str) -> Result<String, String> {
    let h = decode_base64_hash(hash);
    crate::password::scheme(&h).map(|_| h)
}

/// The hash trimmed, or base64-decoded when it is a base64-encoded bcrypt hash.
fn decode_base64_hash(hash: &str) -> String {
    use base64::Engine;
    let hash = hash.trim();
    if !is_bcrypt(hash) {
        if let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(hash) {
            if let Ok(s) = String::from_utf8(decoded) {
                // `caddy hash-password | base64` encodes the trailing newline too: a hash that
                // keeps it is accepted but never matches any password.
                if is_bcrypt(s.trim()) {
                    return s.trim().to_owned();
                }
            }
        }
    }
    hash.to_owned()
}

/// Loopback, link-local (cloud metadata at 169.254.169.254) or unspecified: addresses a label
/// may not send traffic to, whether written as such or resolved from a name.
pub(crate) fn is_host_local(ip: std::net::IpAddr) -> bool {
    match ip.to_canonical() {
        std::net::IpAddr::V4(v4) => v4.is_link_local() || v4.is_loopback() || v4.is_unspecified(),
        std::net::IpAddr::V6(v6) => v6.is_loopback() || v6.is_unspecified() || v6.is_unicast_link_local(),
    }
}

/// An upstream a label names by address rather than by `{{upstreams}}`:
/// `[http|https|h2c://]host[:port]` (Caddy's `reverse_proxy other:8080`, Traefik's
/// `loadbalancer.server.url`). The port defaults by scheme. A host that is a Swarm service
/// (or its name inside the same stack) is balanced over that service's tasks by discovery; any
/// other name is looked up off the request path. Loopback, link-local and unspecified
/// addresses are refused: anyone who can deploy a service writes labels, and they must not
/// reach the proxy's own host-local ports (the admin listener, a Docker socket proxy) or cloud
/// metadata endpoints through it.
pub(crate) fn fixed_upstream(s: &str) -> Result<(crate::model::UpstreamScheme, String, u16), String> {
    use crate::model::UpstreamScheme;
    let (scheme, rest) = match s.split_once("://") {
        Some((sch, rest)) => match sch.to_ascii_lowercase().as_str() {
            "http" => (UpstreamScheme::Http, rest),
            "https" => (UpstreamScheme::Https, rest),
            "h2c" => (UpstreamScheme::H2c, rest),
            other => return Err(format!("{s:?}: scheme {other} is not http, https or h2c")),
        },
        None => (UpstreamScheme::Http, s),
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.contains('/') || rest.contains('?') || rest.contains('@') {
        return Err(format!("{s:?}: an upstream is scheme://host:port, without a path, query or user"));
    }
    let default_port = if scheme == UpstreamScheme::Https { 443 } else { 80 };
    let with_port = if rest.parse::<std::net::Ipv6Addr>().is_ok() {
        format!("[{rest}]:{default_port}")
    } else if rest.ends_with(']') || !rest.contains(':') {
        format!("{rest}:{default_port}")
    } else {
        rest.to_owned()
    };
    let (host, port) = match crate::config::parse_upstream(&with_port)? {
        crate::config::UpstreamAddr::Ip(a) => {
            let ip = a.ip().to_canonical();
            if is_host_local(ip) {
                return Err(format!("{s:?}: loopback, link-local and unspecified addresses are refused from labels"));
            }
            (ip.to_string(), a.port())
        }
        crate::config::UpstreamAddr::Name(h, p) => {
            if h == "localhost" || h.ends_with(".localhost") {
                return Err(format!("{s:?}: localhost is refused from labels"));
            }
            (h, p)
        }
    };
    Ok((scheme, host, port))
}

/// A forward-auth service named by a label (`http://authelia:9091/api/verify?rd=…`): the
/// upstream (found as [`fixed_upstream`] finds one, with the same refusals) and the path and
/// query of the subrequest.
pub(crate) fn forward_auth_upstream(address: &str) -> Result<(crate::model::UpstreamSpec, String), String> {
    let (_, authority, path) = crate::config::split_address(address)?;
    let base = address.find(authority).map_or(address, |i| &address[..i + authority.len()]);
    let (scheme, host, port) = fixed_upstream(base)?;
    let mut up = crate::model::UpstreamSpec::new(crate::model::UpstreamTarget::Names(vec![(host, port)]));
    up.scheme = scheme;
    Ok((up, path.to_owned()))
}

/// A byte size as Caddy writes it (`10MB`, `512KiB`, `1GB`, `1048576`): decimal units are
/// powers of 1000, `i` units powers of 1024, as in Caddy's humanize parser. Overflow is an error.
pub(crate) fn parse_byte_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| format!("{s:?} is not a size (e.g. 10MB)"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "m" | "mb" => 1_000_000,
        "g" | "gb" => 1_000_000_000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        other => return Err(format!("{s:?}: unknown unit {other:?} (B, KB, MB, GB, KiB, MiB, GiB)")),
    };
    n.checked_mul(mult).ok_or_else(|| format!("{s:?} is too large"))
}

/// Traefik's `normalize`: runs of characters that are not letters or digits become one `-`,
/// leading and trailing ones are dropped (`mystack_whoami` → `mystack-whoami`).
pub(crate) fn normalize_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for part in name.split(|c: char| !c.is_alphanumeric()).filter(|p| !p.is_empty()) {
        if !out.is_empty() {
            out.push('-');
        }
        out.push_str(part);
    }
    out
}

/// A CA file named by a label: an absolute path inside the proxy's container (a mounted
/// secret or config), since a label has no directory to be relative to.
pub(crate) fn tls_ca_path(v: &str) -> Result<std::path::PathBuf, String> {
    let p = std::path::Path::new(v);
    if v.is_empty() || !p.is_absolute() {
        return Err(format!("{v:?} is not an absolute path (e.g. /run/secrets/upstream-ca.pem)"));
    }
    Ok(p.to_path_buf())
}

/// A TLS server name (SNI and the name checked in the certificate).
pub(crate) fn tls_server_name(v: &str) -> Result<String, String> {
    match rustls::pki_types::ServerName::try_from(v) {
        Ok(_) => Ok(v.to_ascii_lowercase()),
        Err(_) => Err(format!("{v:?} is not a DNS name or an IP address")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `caddy hash-password | base64 -w 0` carries the newline into the encoded hash.
    #[test]
    fn base64_bcrypt_with_a_trailing_newline_still_verifies() {
        use base64::Engine;
        let hash = bcrypt::hash("s3cret", 4).unwrap();
        let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{hash}\n"));
        let decoded = bcrypt_hash(&encoded).unwrap();
        assert!(bcrypt::verify("s3cret", &decoded).unwrap());
    }

    #[test]
    fn hosts_are_normalised_and_catch_all_refused() {
        assert_eq!(label_host("Example.COM.").unwrap(), "example.com");
        assert_eq!(label_host("*.example.com").unwrap(), "*.example.com");
        assert!(label_host("*").is_err());
        assert!(label_host("a.*.com").is_err());
        assert!(label_host("a b").is_err());
        assert!(label_host("exa mple/x").is_err());
    }

    #[test]
    fn normalize_joins_alphanumeric_runs() {
        assert_eq!(normalize_name("mystack_whoami"), "mystack-whoami");
        assert_eq!(normalize_name("__a..b__"), "a-b");
    }
}
