//! Request ids and the Common/Combined Log Format lines of the access log.
//!
//! An id is `<prefix>-<counter>`: a random prefix per process (so two replicas or a restart
//! never repeat an id) and a counter that each serving thread takes in blocks from one atomic,
//! so the request path does no shared write per request and no random draw.

use std::cell::Cell;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::LazyLock;
use std::time::SystemTime;

use http::header::{HeaderName, HeaderValue};
use http::HeaderMap;

pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Longest incoming id kept; longer (or with spaces, quotes, backslashes, controls) is replaced.
const MAX_ID: usize = 128;
/// Ids a thread takes at once.
const BLOCK: u64 = 1024;

static PREFIX: LazyLock<String> = LazyLock::new(|| {
    let mut b = [0u8; 6];
    if getrandom::fill(&mut b).is_err() {
        b.iter_mut().for_each(|x| *x = fastrand::u8(..));
    }
    b.iter().fold(String::with_capacity(12), |mut s, x| {
        let _ = write!(s, "{x:02x}");
        s
    })
});
static NEXT_BLOCK: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// Next id and end of this thread's block.
    static RANGE: Cell<(u64, u64)> = const { Cell::new((0, 0)) };
}

/// A new id, unique within the process and across processes by its prefix.
pub fn generate() -> HeaderValue {
    let n = RANGE.with(|r| {
        let (mut next, mut end) = r.get();
        if next == end {
            next = NEXT_BLOCK.fetch_add(BLOCK, Ordering::Relaxed);
            end = next + BLOCK;
        }
        r.set((next + 1, end));
        next
    });
    HeaderValue::try_from(format!("{}-{n:x}", *PREFIX)).unwrap_or_else(|_| HeaderValue::from_static("-"))
}

/// The request's id: the incoming `X-Request-Id` when the peer is a trusted proxy
/// (`[forwarding] trusted_proxies`) and the value is a sane token, else a new one. A client
/// must not choose the id an operator correlates logs by (it could make two requests look
/// like one, or inject text into log lines).
pub fn for_request(headers: &HeaderMap, trusted: bool) -> HeaderValue {
    if trusted {
        let mut given = headers.get_all(&X_REQUEST_ID).iter();
        if let (Some(v), None) = (given.next(), given.next()) {
            let ok = !v.is_empty()
                && v.len() <= MAX_ID
                && v.as_bytes().iter().all(|b| b.is_ascii_graphic() && *b != b'"' && *b != b'\\');
            if ok {
                return v.clone();
            }
        }
    }
    generate()
}

/// What a CLF/Combined line holds.
pub struct ClfFields<'a> {
    pub client: std::net::IpAddr,
    pub method: &'a str,
    pub target: &'a str,
    pub version: http::Version,
    pub status: u16,
    /// Response body bytes when known at the head (`-` otherwise, as CLF writes "no body").
    pub bytes: Option<u64>,
    /// `Some((referer, user_agent))` for the Combined format.
    pub combined: Option<(Option<&'a HeaderValue>, Option<&'a HeaderValue>)>,
    pub request_id: &'a HeaderValue,
}

/// `client - - [03/Dec/2026:13:55:36 +0000] "GET /p HTTP/1.1" 200 12` (CLF), then for
/// Combined ` "referer" "user-agent"`, then the request id. Quoted fields escape `"`, `\` and
/// non-printable bytes as `\xHH`, so a client cannot forge a line or a field.
pub fn clf_line(f: &ClfFields<'_>, now: SystemTime) -> String {
    let mut out = String::with_capacity(160);
    let _ = write!(out, "{} - - [{}] \"", f.client, clf_time(now));
    escape(&mut out, f.method.as_bytes());
    out.push(' ');
    escape(&mut out, f.target.as_bytes());
    let _ = write!(out, " {:?}\" {}", f.version, f.status);
    match f.bytes {
        Some(n) => {
            let _ = write!(out, " {n}");
        }
        None => out.push_str(" -"),
    }
    if let Some((referer, agent)) = f.combined {
        for v in [referer, agent] {
            out.push_str(" \"");
            escape(&mut out, v.map_or(b"-".as_slice(), |v| v.as_bytes()));
            out.push('"');
        }
    }
    out.push(' ');
    escape(&mut out, f.request_id.as_bytes());
    out
}

fn escape(out: &mut String, bytes: &[u8]) {
    for &b in bytes {
        match b {
            b'"' | b'\\' => {
                out.push('\\');
                out.push(b as char);
            }
            0x20..=0x7e => out.push(b as char),
            _ => {
                let _ = write!(out, "\\x{b:02X}");
            }
        }
    }
}

/// `03/Dec/2026:13:55:36 +0000` (UTC).
fn clf_time(t: SystemTime) -> String {
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let secs = t.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{day:02}/{}/{year}:{:02}:{:02}:{:02} +0000",
        MONTHS[(month - 1) as usize],
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn clf_time_matches_known_dates() {
        let at = |s| SystemTime::UNIX_EPOCH + Duration::from_secs(s);
        assert_eq!(clf_time(at(0)), "01/Jan/1970:00:00:00 +0000");
        assert_eq!(clf_time(at(971_186_136)), "10/Oct/2000:13:55:36 +0000");
        assert_eq!(clf_time(at(1_709_210_096)), "29/Feb/2024:12:34:56 +0000");
    }

    #[test]
    fn combined_line_escapes_what_a_client_sent() {
        let (ua, id) = (HeaderValue::from_static("curl/8 \"x\""), HeaderValue::from_static("abc-1"));
        let f = ClfFields {
            client: "10.0.0.1".parse().unwrap(),
            method: "GET",
            target: "/a\"b",
            version: http::Version::HTTP_11,
            status: 200,
            bytes: Some(5),
            combined: Some((None, Some(&ua))),
            request_id: &id,
        };
        let line = clf_line(&f, SystemTime::UNIX_EPOCH);
        assert_eq!(
            line,
            r#"10.0.0.1 - - [01/Jan/1970:00:00:00 +0000] "GET /a\"b HTTP/1.1" 200 5 "-" "curl/8 \"x\"" abc-1"#
        );
        let clf = ClfFields { combined: None, bytes: None, target: "/\n", ..f };
        assert_eq!(
            clf_line(&clf, SystemTime::UNIX_EPOCH),
            r#"10.0.0.1 - - [01/Jan/1970:00:00:00 +0000] "GET /\x0A HTTP/1.1" 200 - abc-1"#
        );
    }

    #[test]
    fn only_a_trusted_peer_chooses_the_id() {
        let mut h = HeaderMap::new();
        h.insert(&X_REQUEST_ID, HeaderValue::from_static("from-proxy-7"));
        assert_eq!(for_request(&h, true), "from-proxy-7");
        assert_ne!(for_request(&h, false), "from-proxy-7");
        h.insert(&X_REQUEST_ID, HeaderValue::from_static("has space"));
        assert_ne!(for_request(&h, true), "has space");
        let (a, b) = (generate(), generate());
        assert_ne!(a, b);
        assert!(a.to_str().unwrap().starts_with(&*PREFIX));
    }
}
