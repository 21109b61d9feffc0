//! Response compression (Traefik `compress`, Caddy `encode`): gzip, streamed frame by frame
//! (each upstream frame is compressed and flushed at once, so a slow stream still trickles),
//! only for text-like types that gain from it, never for bodies already encoded or small.

use std::io::Write;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use flate2::write::GzEncoder;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};

use super::body::{BoxError, ProxyBody};
use crate::model::table::CompiledCompress;

/// The media types compressed when a route names none: text and the text-like application
/// types. Images, video, archives and fonts are already compressed; event streams must not be
/// held back by an encoder.
const COMPRESSIBLE: &[&str] = &[
    "text/",
    "application/json",
    "application/javascript",
    "application/xml",
    "application/xhtml+xml",
    "application/rss+xml",
    "application/atom+xml",
    "application/manifest+json",
    "application/wasm",
    "image/svg+xml",
    "+json",
    "+xml",
];

/// Whether the client takes gzip (`gzip` or `*` without `q=0`).
pub fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers.get_all(header::ACCEPT_ENCODING).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).any(
        |item| {
            let mut parts = item.split(';');
            let name = parts.next().unwrap_or("").trim();
            let refused = parts.any(|p| {
                p.trim().strip_prefix("q=").and_then(|q| q.trim().parse::<f32>().ok()).is_some_and(|q| q <= 0.0)
            });
            (name.eq_ignore_ascii_case("gzip") || name == "*") && !refused
        },
    )
}

/// `resp`, gzip-encoded if it should be.
pub fn apply(cfg: &CompiledCompress, method: &Method, mut resp: Response<ProxyBody>) -> Response<ProxyBody> {
    if !should_compress(cfg, method, &resp) {
        return resp;
    }
    let h = resp.headers_mut();
    h.remove(header::CONTENT_LENGTH);
    h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    h.append(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    // The encoded bytes differ from what a strong validator names.
    if let Some(etag) = h.get(header::ETAG).and_then(|v| v.to_str().ok()).filter(|e| !e.starts_with("W/")) {
        if let Ok(weak) = HeaderValue::from_str(&format!("W/{etag}")) {
            h.insert(header::ETAG, weak);
        }
    }
    resp.map(|body| ProxyBody::Gzip(Box::new(Gzip::new(body))))
}

fn should_compress(cfg: &CompiledCompress, method: &Method, resp: &Response<ProxyBody>) -> bool {
    let h = resp.headers();
    let status = resp.status();
    if method == Method::HEAD
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
        || h.contains_key(header::CONTENT_ENCODING)
        // A range names bytes of the identity body: encoding it would make them wrong.
        || status == StatusCode::PARTIAL_CONTENT
        || h.contains_key(header::CONTENT_RANGE)
        || h.get(header::CACHE_CONTROL).and_then(|v| v.to_str().ok()).is_some_and(|v| v.contains("no-transform"))
    {
        return false;
    }
    let declared = h.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.or_else(|| resp.body().size_hint().exact()).is_some_and(|n| n < cfg.min_bytes) {
        return false;
    }
    let ctype = h.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let ctype = ctype.split(';').next().unwrap_or("").trim();
    let listed = |list: &[String]| list.iter().any(|t| type_matches(ctype, t));
    if listed(&cfg.exclude) || ctype.is_empty() {
        return false;
    }
    if cfg.include.is_empty() {
        !ctype.eq_ignore_ascii_case("text/event-stream") && COMPRESSIBLE.iter().any(|t| type_matches(ctype, t))
    } else {
        listed(&cfg.include)
    }
}

/// `pattern` (lower case: the route's lists are lowered at table-build time) is a full type
/// (`text/html`), a prefix ending in `/` (`text/`), or a suffix starting with `+` (`+json`).
/// Compared without allocating: this runs for every response of a compressing route.
fn type_matches(ctype: &str, pattern: &str) -> bool {
    let ends =
        |s: &str, p: &str| s.len() >= p.len() && s.as_bytes()[s.len() - p.len()..].eq_ignore_ascii_case(p.as_bytes());
    if pattern.ends_with('/') {
        ctype.len() >= pattern.len() && ctype.as_bytes()[..pattern.len()].eq_ignore_ascii_case(pattern.as_bytes())
    } else if pattern.starts_with('+') {
        ends(ctype, pattern)
    } else {
        ctype.eq_ignore_ascii_case(pattern)
    }
}

/// A body gzip-encoded as it streams.
pub struct Gzip {
    inner: ProxyBody,
    /// `None` once the trailer is written.
    enc: Option<GzEncoder<Vec<u8>>>,
}

impl Gzip {
    fn new(inner: ProxyBody) -> Self {
        Gzip { inner, enc: Some(GzEncoder::new(Vec::new(), flate2::Compression::new(5))) }
    }

    fn take(enc: &mut GzEncoder<Vec<u8>>) -> Option<Bytes> {
        let out = std::mem::take(enc.get_mut());
        (!out.is_empty()).then(|| Bytes::from(out))
    }
}

impl Body for Gzip {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        loop {
            let Some(enc) = this.enc.as_mut() else { return Poll::Ready(None) };
            match std::task::ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
                Some(Ok(frame)) => {
                    // Trailers cannot follow a gzip stream in HTTP/1.1 chunks reliably: dropped.
                    let Ok(data) = frame.into_data() else { continue };
                    if let Err(e) = enc.write_all(&data).and_then(|()| enc.flush()) {
                        return Poll::Ready(Some(Err(e.into())));
                    }
                    if let Some(out) = Self::take(enc) {
                        return Poll::Ready(Some(Ok(Frame::data(out))));
                    }
                }
                Some(Err(e)) => return Poll::Ready(Some(Err(e))),
                None => {
                    let Some(mut enc) = this.enc.take() else { return Poll::Ready(None) };
                    if let Err(e) = enc.try_finish() {
                        return Poll::Ready(Some(Err(e.into())));
                    }
                    return Poll::Ready(Self::take(&mut enc).map(|b| Ok(Frame::data(b))));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.enc.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(v: &str) -> bool {
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT_ENCODING, HeaderValue::from_str(v).unwrap());
        accepts_gzip(&h)
    }

    #[test]
    fn gzip_is_taken_unless_refused_with_q_zero() {
        assert!(accept("gzip"));
        assert!(accept("br, GZIP;q=0.5"));
        assert!(accept("*"));
        assert!(!accept("gzip;q=0"));
        assert!(!accept("gzip; q=0.0, br"));
        assert!(!accept("br, zstd"));
        assert!(!accepts_gzip(&HeaderMap::new()));
    }

    #[test]
    fn types_match_by_name_prefix_or_suffix() {
        assert!(type_matches("text/html", "text/"));
        assert!(type_matches("Text/HTML", "text/html"));
        assert!(!type_matches("application/text/", "text/"));
        assert!(type_matches("application/ld+json", "+json"));
        assert!(type_matches("application/json", "application/json"));
        assert!(!type_matches("application/jsonx", "application/json"));
        assert!(!type_matches("image/png", "text/"));
    }
}
