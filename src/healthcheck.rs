//! `swarmgate healthcheck`: asks a running instance's admin listener whether it is ready.
//!
//! The image is `FROM scratch` (no curl, no shell), so the binary checks itself: one plain
//! HTTP/1.1 GET over a `TcpStream` with a short timeout. Only `http://` URLs: the admin
//! listener never speaks TLS, and a health check has no use for redirects or bodies.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

/// Longest answer read: a `/readyz` answer is one line; more is not a swarmgate admin listener.
const MAX_ANSWER: u64 = 16 * 1024;

/// Where to ask: the admin listener of a config, with an unspecified address (`0.0.0.0`,
/// `[::]`) replaced by the loopback address of its family, since that is where a check run
/// inside the container reaches it.
pub fn default_url(admin: SocketAddr) -> String {
    let ip = match admin.ip() {
        std::net::IpAddr::V4(v4) if v4.is_unspecified() => std::net::Ipv4Addr::LOCALHOST.into(),
        std::net::IpAddr::V6(v6) if v6.is_unspecified() => std::net::Ipv6Addr::LOCALHOST.into(),
        ip => ip,
    };
    format!("http://{}/readyz", SocketAddr::new(ip, admin.port()))
}

/// `Ok(one-line reason)` when the instance answers 2xx; `Err(one-line reason)` otherwise
/// (not listening, timeout, another status, not HTTP).
pub fn probe(url: &str, timeout: Duration) -> Result<String, String> {
    let (authority, path) = split_url(url)?;
    let addr = authority
        .to_socket_addrs()
        .map_err(|e| format!("{authority}: {e}"))?
        .next()
        .ok_or_else(|| format!("{authority}: no address"))?;
    let mut stream = TcpStream::connect_timeout(&addr, timeout).map_err(|e| format!("not running? {addr}: {e}"))?;
    let _ = stream.set_read_timeout(Some(timeout));
    let _ = stream.set_write_timeout(Some(timeout));
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\nUser-Agent: swarmgate-healthcheck\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).map_err(|e| format!("{addr}: {e}"))?;
    let mut answer = Vec::new();
    // A timeout after some bytes still leaves a status line to judge.
    let read = stream.take(MAX_ANSWER).read_to_end(&mut answer);
    if answer.is_empty() {
        return Err(match read {
            Err(e) => format!("{addr}: no answer: {e}"),
            Ok(_) => format!("{addr}: closed without an answer"),
        });
    }
    let text = String::from_utf8_lossy(&answer);
    let status_line = text.lines().next().unwrap_or_default();
    let status: u16 = match status_line.split(' ').collect::<Vec<_>>().as_slice() {
        [version, code, ..] if version.starts_with("HTTP/1.") => code.parse().unwrap_or(0),
        _ => 0,
    };
    if status == 0 {
        return Err(format!("{addr}: not an HTTP answer"));
    }
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.trim()).unwrap_or_default();
    let first = body.lines().next().unwrap_or_default();
    let reason = format!("{status} from {url}{}{first}", if first.is_empty() { "" } else { ": " });
    if (200..300).contains(&status) {
        Ok(reason)
    } else {
        Err(reason)
    }
}

/// `http://host:port/path` → (`host:port`, `/path`).
fn split_url(url: &str) -> Result<(&str, &str), String> {
    let rest = url.strip_prefix("http://").ok_or_else(|| format!("{url:?}: only http:// URLs are supported"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.is_empty() || !authority.contains(':') {
        return Err(format!("{url:?}: give host:port"));
    }
    if path.bytes().any(|b| b.is_ascii_control() || b == b' ') {
        return Err(format!("{url:?}: the path has spaces or control characters"));
    }
    Ok((authority, path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unspecified_admin_addresses_are_asked_on_loopback() {
        assert_eq!(default_url("0.0.0.0:2019".parse().unwrap()), "http://127.0.0.1:2019/readyz");
        assert_eq!(default_url("[::]:2019".parse().unwrap()), "http://[::1]:2019/readyz");
        assert_eq!(default_url("10.0.0.5:9".parse().unwrap()), "http://10.0.0.5:9/readyz");
    }

    #[test]
    fn urls_are_checked() {
        assert_eq!(split_url("http://127.0.0.1:1/readyz").unwrap(), ("127.0.0.1:1", "/readyz"));
        assert_eq!(split_url("http://[::1]:1").unwrap(), ("[::1]:1", "/"));
        assert!(split_url("https://127.0.0.1:1/").is_err());
        assert!(split_url("http://localhost/").is_err());
    }
}
