//! Hop-by-hop header fields (RFC 9110 §7.6.1): they describe one connection, so a proxy
//! removes them before passing a message on, together with any field the `Connection`
//! header names.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// What a field name is, to a proxy.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum FieldKind {
    EndToEnd,
    Connection,
    /// `TE`: removed unless it is `trailers` (gRPC needs that one).
    Te,
    Upgrade,
    TransferEncoding,
    /// keep-alive, proxy-connection, proxy-authenticate, proxy-authorization. (`Trailer`
    /// is end-to-end: it names the trailer fields, and an HTTP/1.1 server sends only those.)
    OtherHopByHop,
}

impl FieldKind {
    /// Classifies by cheap enum and byte comparisons, no hashing.
    #[inline]
    pub fn of(name: &HeaderName) -> Self {
        if name == header::CONNECTION {
            FieldKind::Connection
        } else if name == header::TE {
            FieldKind::Te
        } else if name == header::UPGRADE {
            FieldKind::Upgrade
        } else if name == header::TRANSFER_ENCODING {
            FieldKind::TransferEncoding
        } else if name == header::PROXY_AUTHORIZATION
            || name == header::PROXY_AUTHENTICATE
            || name == KEEP_ALIVE
            || name == PROXY_CONNECTION
        {
            FieldKind::OtherHopByHop
        } else {
            FieldKind::EndToEnd
        }
    }

    fn bit(self) -> u8 {
        match self {
            FieldKind::EndToEnd => 0,
            FieldKind::Connection => 1,
            FieldKind::Te => 1 << 1,
            FieldKind::Upgrade => 1 << 2,
            FieldKind::TransferEncoding | FieldKind::OtherHopByHop => 1 << 3,
        }
    }
}

/// True when a comma-separated header value lists `token` (case-insensitively).
pub fn has_token(value: &HeaderValue, token: &str) -> bool {
    value.as_bytes().split(|&b| b == b',').any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}

/// The field names a `Connection` value lists: its tokens other than `close`, `keep-alive`
/// and `upgrade`, which name connection options rather than fields. Framing fields are left
/// out: a message's length is decided from them, whatever `Connection` claims.
fn connection_named(connection: &HeaderValue) -> impl Iterator<Item = &[u8]> {
    connection.as_bytes().split(|&b| b == b',').map(<[u8]>::trim_ascii).filter(|token| {
        !(token.is_empty()
            || token.eq_ignore_ascii_case(b"upgrade")
            || token.eq_ignore_ascii_case(b"close")
            || token.eq_ignore_ascii_case(b"keep-alive")
            || token.eq_ignore_ascii_case(b"content-length"))
    })
}

/// True when a `Connection` value names fields to remove (`keep-alive` or `close` alone, the
/// usual values, do not).
pub fn names_fields(connection: &HeaderValue) -> bool {
    connection_named(connection).next().is_some()
}

/// Removes the fields a `Connection` value names.
pub fn remove_connection_named(headers: &mut HeaderMap, connection: &HeaderValue) {
    for token in connection_named(connection) {
        if let Ok(name) = HeaderName::from_bytes(token) {
            headers.remove(name);
        }
    }
}

/// Removes hop-by-hop headers, including any named in `Connection`. Keeps `TE: trailers`
/// (gRPC needs it) and, when `keep_upgrade`, the `Upgrade`/`Connection: upgrade` pair.
pub fn strip_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    // One pass over the names finds what is there: most messages carry none of these, or
    // only `Connection`, so most of the hashed removes below never run.
    let found = headers.keys().fold(0u8, |found, name| found | FieldKind::of(name).bit());
    if found & FieldKind::Connection.bit() != 0 {
        // Every `Connection` line counts (`HeaderMap::remove` returns only the first). Lines
        // that name fields are rare, so the common `keep-alive` costs no copy.
        let naming: Vec<HeaderValue> =
            headers.get_all(header::CONNECTION).iter().filter(|v| names_fields(v)).cloned().collect();
        headers.remove(header::CONNECTION);
        for connection in &naming {
            remove_connection_named(headers, connection);
        }
    }
    if found & FieldKind::OtherHopByHop.bit() != 0 {
        for name in [
            &header::TRANSFER_ENCODING,
            &header::PROXY_AUTHORIZATION,
            &header::PROXY_AUTHENTICATE,
            &KEEP_ALIVE,
            &PROXY_CONNECTION,
        ] {
            headers.remove(name);
        }
    }
    if found & FieldKind::Te.bit() != 0
        && !headers.get(header::TE).is_some_and(|te| te.as_bytes().eq_ignore_ascii_case(b"trailers"))
    {
        headers.remove(header::TE);
    }
    if keep_upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    } else if found & FieldKind::Upgrade.bit() != 0 {
        headers.remove(header::UPGRADE);
    }
}

/// True for requests asking to switch protocols (WebSocket and friends) that swarmgate
/// passes on. `Upgrade: h2c` is not one of them: after the switch the client would speak
/// HTTP/2 straight to the upstream, every later request on the tunnel bypassing routing,
/// authentication and rate limits ("h2c smuggling"); such a request goes on as a plain one.
pub fn is_upgrade_request(headers: &HeaderMap) -> bool {
    headers.get(header::UPGRADE).is_some_and(|u| !has_token(u, "h2c"))
        && headers.get_all(header::CONNECTION).iter().any(|v| has_token(v, "upgrade"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(fields: &[(&str, &str)]) -> HeaderMap {
        fields.iter().map(|(n, v)| (n.parse().unwrap(), v.parse().unwrap())).collect()
    }

    #[test]
    fn strips_hop_by_hop_and_connection_named_fields() {
        let mut h = map(&[
            ("connection", "keep-alive, X-Secret, close"),
            ("x-secret", "1"),
            ("keep-alive", "timeout=5"),
            ("transfer-encoding", "chunked"),
            ("te", "gzip"),
            ("upgrade", "websocket"),
            ("proxy-authorization", "Basic x"),
            ("x-kept", "yes"),
        ]);
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h, map(&[("x-kept", "yes")]));
    }

    #[test]
    fn every_connection_line_counts() {
        let mut h = HeaderMap::new();
        h.append(header::CONNECTION, HeaderValue::from_static("keep-alive"));
        h.append(header::CONNECTION, HeaderValue::from_static("X-Secret"));
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("x-kept", HeaderValue::from_static("yes"));
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h, map(&[("x-kept", "yes")]));
    }

    #[test]
    fn keeps_te_trailers_and_an_asked_for_upgrade() {
        let mut h = map(&[("te", "trailers"), ("upgrade", "websocket"), ("connection", "Upgrade, keep-alive")]);
        strip_hop_by_hop(&mut h, true);
        assert_eq!(h, map(&[("te", "trailers"), ("upgrade", "websocket"), ("connection", "upgrade")]));
        assert!(is_upgrade_request(&map(&[("upgrade", "WebSocket"), ("connection", "keep-alive, Upgrade")])));
        assert!(!is_upgrade_request(&map(&[("upgrade", "websocket")])));
    }

    #[test]
    fn h2c_upgrade_is_refused_and_its_settings_dropped() {
        let mut h = map(&[
            ("upgrade", "h2c"),
            ("connection", "Upgrade, HTTP2-Settings"),
            ("http2-settings", "AAMAAABkAAQAAP__"),
        ]);
        assert!(!is_upgrade_request(&h));
        strip_hop_by_hop(&mut h, false);
        assert!(h.is_empty(), "left: {h:?}");
    }

    #[test]
    fn connection_cannot_take_away_framing_or_end_to_end_trailer_names() {
        let mut h = map(&[("connection", "content-length"), ("content-length", "5"), ("trailer", "x-sum")]);
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h, map(&[("content-length", "5"), ("trailer", "x-sum")]));
    }
}
