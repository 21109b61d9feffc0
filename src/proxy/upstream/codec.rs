//! HTTP/1.1 framing for the upstream side (RFC 9112): request heads out, response heads in,
//! how long a response body is, and chunked decoding. Pure functions over buffers, so every
//! framing rule is unit-tested without a socket.

use std::mem::MaybeUninit;

use bytes::{Buf, Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode};

use crate::proxy::hop_by_hop::{has_token, names_fields, remove_connection_named, FieldKind};

/// Largest response head taken from an upstream; a bigger one is a 502, not a memory sink.
pub const MAX_RESPONSE_HEAD: usize = 64 * 1024;
/// Most header fields taken in one response head (hyper's default is 100).
pub const MAX_RESPONSE_HEADERS: usize = 128;
/// Most interim (1xx) responses taken before the final one. Real servers send one or two
/// (`100 Continue`, `103 Early Hints`); an upstream that keeps sending them is answered 502
/// instead of keeping the request busy until the response timeout.
pub const MAX_INTERIM_RESPONSES: usize = 32;
/// Longest chunk-size line (size plus extensions) taken before the body is called malformed.
const MAX_CHUNK_LINE: usize = 4 * 1024;
/// Largest trailer section taken after the last chunk.
const MAX_TRAILERS: usize = 16 * 1024;

/// Why a response could not be framed. Every variant means the connection cannot be reused.
#[derive(Debug, thiserror::Error)]
pub enum FramingError {
    #[error("response head larger than {MAX_RESPONSE_HEAD} bytes")]
    HeadTooLarge,
    #[error("malformed response head: {0}")]
    MalformedHead(httparse::Error),
    #[error("response header {0:?} is not valid")]
    InvalidHeader(String),
    #[error("invalid status code {0}")]
    InvalidStatus(u16),
    #[error("Content-Length is missing digits or disagrees with itself")]
    InvalidContentLength,
    #[error("malformed chunked body")]
    MalformedChunk,
    #[error("more than {MAX_INTERIM_RESPONSES} interim (1xx) responses")]
    TooManyInterim,
}

/// Appends an HTTP/1.1 request head to `dst`. `chunked` adds `Transfer-Encoding: chunked`
/// for a body of unknown length. `HeaderValue` refuses CR and LF, so no value can split the
/// message.
pub fn encode_request_head(dst: &mut Vec<u8>, method: &Method, target: &str, headers: &HeaderMap, chunked: bool) {
    dst.reserve(64 + target.len() + headers.len() * 48);
    dst.extend_from_slice(method.as_str().as_bytes());
    dst.push(b' ');
    dst.extend_from_slice(target.as_bytes());
    dst.extend_from_slice(b" HTTP/1.1\r\n");
    write_fields(dst, headers);
    if chunked {
        dst.extend_from_slice(b"transfer-encoding: chunked\r\n");
    }
    dst.extend_from_slice(b"\r\n");
}

/// Appends `name: value` lines, one per value.
fn write_fields(dst: &mut Vec<u8>, fields: &HeaderMap) {
    for (name, value) in fields {
        dst.extend_from_slice(name.as_str().as_bytes());
        dst.extend_from_slice(b": ");
        dst.extend_from_slice(value.as_bytes());
        dst.extend_from_slice(b"\r\n");
    }
}

/// A parsed response head.
#[derive(Debug)]
pub struct ResponseHead {
    pub status: StatusCode,
    /// The end-to-end fields. Hop-by-hop ones are dropped while parsing (they describe the
    /// connection to the upstream, not the response), except on a 101, whose `Upgrade` and
    /// `Connection` the client needs.
    pub headers: HeaderMap,
    /// The reason phrase when it differs from the canonical one, so the client sees what the
    /// upstream sent.
    pub reason: Option<hyper::ext::ReasonPhrase>,
    /// The upstream will close the connection after this response (`Connection: close`, or
    /// HTTP/1.0 without `keep-alive`).
    pub close: bool,
    transfer_encoding: TransferEncoding,
}

/// What the `Transfer-Encoding` field said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TransferEncoding {
    Absent,
    /// The final coding is chunked.
    Chunked,
    /// Present, final coding not chunked: the body runs to the close.
    Other,
}

/// Byte ranges of one header field inside the head buffer.
#[derive(Clone, Copy, Default)]
struct FieldRange {
    name: (u32, u32),
    value: (u32, u32),
}

/// Parses one response head from the front of `buf` and removes it from `buf`. `Ok(None)`
/// means the head is not complete yet.
pub fn parse_response_head(buf: &mut BytesMut) -> Result<Option<ResponseHead>, FramingError> {
    let mut fields = [FieldRange::default(); MAX_RESPONSE_HEADERS];
    let (len, code, version, reason, count) = {
        let mut raw: [MaybeUninit<httparse::Header<'_>>; MAX_RESPONSE_HEADERS] =
            [const { MaybeUninit::uninit() }; MAX_RESPONSE_HEADERS];
        let mut parsed = httparse::Response::new(&mut []);
        let bytes: &[u8] = buf;
        let len = match httparse::ParserConfig::default()
            .allow_spaces_after_header_name_in_responses(true)
            .parse_response_with_uninit_headers(&mut parsed, bytes, &mut raw)
        {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) if bytes.len() >= MAX_RESPONSE_HEAD => {
                return Err(FramingError::HeadTooLarge)
            }
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(httparse::Error::TooManyHeaders) | Err(httparse::Error::HeaderName)
                if bytes.len() >= MAX_RESPONSE_HEAD =>
            {
                return Err(FramingError::HeadTooLarge)
            }
            Err(e) => return Err(FramingError::MalformedHead(e)),
        };
        if len > MAX_RESPONSE_HEAD {
            return Err(FramingError::HeadTooLarge);
        }
        let base = bytes.as_ptr() as usize;
        let offset = |s: &[u8]| (s.as_ptr() as usize - base) as u32;
        for (field, h) in fields.iter_mut().zip(parsed.headers.iter()) {
            let name = offset(h.name.as_bytes());
            let value = offset(h.value);
            *field =
                FieldRange { name: (name, name + h.name.len() as u32), value: (value, value + h.value.len() as u32) };
        }
        let code = parsed.code.unwrap_or(0);
        let reason = parsed.reason.filter(|r| !r.is_empty()).map(|r| (offset(r.as_bytes()), r.len() as u32));
        (len, code, parsed.version.unwrap_or(1), reason, parsed.headers.len())
    };
    let head = buf.split_to(len).freeze();
    let status = StatusCode::from_u16(code).map_err(|_| FramingError::InvalidStatus(code))?;
    let reason = reason
        .map(|(start, len)| head.slice(start as usize..(start + len) as usize))
        .filter(|r| Some(&r[..]) != status.canonical_reason().map(str::as_bytes))
        .and_then(|r| hyper::ext::ReasonPhrase::try_from(r).ok());
    let mut headers = HeaderMap::with_capacity(count);
    let mut keep_alive = version == 1;
    let mut close = false;
    let mut transfer_encoding = TransferEncoding::Absent;
    let mut connection_named = None;
    let upgrade = status == StatusCode::SWITCHING_PROTOCOLS;
    for field in &fields[..count] {
        let raw_name = &head[field.name.0 as usize..field.name.1 as usize];
        let name = HeaderName::from_bytes(raw_name)
            .map_err(|_| FramingError::InvalidHeader(String::from_utf8_lossy(raw_name).into_owned()))?;
        let value = HeaderValue::from_maybe_shared(head.slice(field.value.0 as usize..field.value.1 as usize))
            .map_err(|_| FramingError::InvalidHeader(name.to_string()))?;
        match FieldKind::of(&name) {
            FieldKind::EndToEnd => {}
            FieldKind::Connection => {
                close |= has_token(&value, "close");
                keep_alive |= has_token(&value, "keep-alive");
                if upgrade {
                    headers.append(name, value);
                } else if names_fields(&value) {
                    connection_named.get_or_insert_with(Vec::new).push(value);
                }
                continue;
            }
            FieldKind::TransferEncoding => {
                // The last coding of the last field decides.
                let last = value.as_bytes().rsplit(|&b| b == b',').next().unwrap_or_default();
                transfer_encoding = if last.trim_ascii().eq_ignore_ascii_case(b"chunked") {
                    TransferEncoding::Chunked
                } else {
                    TransferEncoding::Other
                };
                continue;
            }
            FieldKind::Upgrade if upgrade => {}
            FieldKind::Te | FieldKind::Upgrade | FieldKind::OtherHopByHop => continue,
        }
        headers.append(name, value);
    }
    for connection in connection_named.iter().flatten() {
        remove_connection_named(&mut headers, connection);
    }
    // RFC 9112 §6.1: a Transfer-Encoding in an HTTP/1.0 message is a framing fault; read the
    // body as told, but never reuse the connection.
    let close = close || !keep_alive || (version == 0 && transfer_encoding != TransferEncoding::Absent);
    Ok(Some(ResponseHead { status, headers, reason, close, transfer_encoding }))
}

/// How the body of a response is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyLength {
    /// No body: HEAD, 1xx, 204, 304, or `Content-Length: 0`.
    Empty,
    Exact(u64),
    Chunked,
    /// Until the upstream closes the connection (no usable length).
    UntilClose,
}

/// Decides the body length of a response to `method` (RFC 9112 §6.3) and removes a
/// `Content-Length` that a `Transfer-Encoding` overrides. Responses with both are also read
/// to the end and the connection closed: such a message may be a smuggling attempt.
pub fn response_body_length(head: &mut ResponseHead, method: &Method) -> Result<BodyLength, FramingError> {
    if head.status.is_informational()
        || head.status == StatusCode::NO_CONTENT
        || head.status == StatusCode::NOT_MODIFIED
        || *method == Method::HEAD
    {
        return Ok(BodyLength::Empty);
    }
    if head.transfer_encoding != TransferEncoding::Absent {
        if head.headers.remove(header::CONTENT_LENGTH).is_some() {
            head.close = true;
        }
        if head.transfer_encoding == TransferEncoding::Chunked {
            return Ok(BodyLength::Chunked);
        }
        head.close = true;
        return Ok(BodyLength::UntilClose);
    }
    let mut length = None;
    for v in head.headers.get_all(header::CONTENT_LENGTH) {
        for part in v.as_bytes().split(|&b| b == b',') {
            let n = parse_decimal(part.trim_ascii()).ok_or(FramingError::InvalidContentLength)?;
            if length.is_some_and(|l| l != n) {
                return Err(FramingError::InvalidContentLength);
            }
            length = Some(n);
        }
    }
    match length {
        Some(0) => Ok(BodyLength::Empty),
        Some(n) => Ok(BodyLength::Exact(n)),
        None => {
            head.close = true;
            Ok(BodyLength::UntilClose)
        }
    }
}

fn parse_decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 19 {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &d| d.is_ascii_digit().then(|| n * 10 + u64::from(d - b'0')))
}

/// One step of chunked decoding.
#[derive(Debug)]
pub enum Decoded {
    Data(Bytes),
    /// The trailer section (only when it has fields); the body is complete.
    Trailers(HeaderMap),
    /// The last chunk and an empty trailer section: the body is complete.
    End,
    /// More bytes are needed.
    NeedMore,
}

/// Incremental decoder for `Transfer-Encoding: chunked`. Data is handed out as slices of the
/// read buffer, never copied.
#[derive(Debug, Default)]
pub struct ChunkedDecoder {
    state: ChunkState,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    #[default]
    Size,
    Data(u64),
    DataEnd,
    Trailers,
    Done,
}

impl ChunkedDecoder {
    pub fn is_done(&self) -> bool {
        self.state == ChunkState::Done
    }

    /// Decodes the next piece from the front of `buf`.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Decoded, FramingError> {
        loop {
            match self.state {
                ChunkState::Size => match httparse::parse_chunk_size(buf) {
                    Ok(httparse::Status::Complete((used, size))) => {
                        // httparse takes an empty size as 0 (the last chunk) and a bare LF
                        // inside extensions; a size line must start with a hex digit and end
                        // at its CRLF.
                        if !buf[0].is_ascii_hexdigit() || buf[..used - 1].contains(&b'\n') {
                            return Err(FramingError::MalformedChunk);
                        }
                        buf.advance(used);
                        self.state = if size == 0 { ChunkState::Trailers } else { ChunkState::Data(size) };
                    }
                    Ok(httparse::Status::Partial) if buf.len() > MAX_CHUNK_LINE => {
                        return Err(FramingError::MalformedChunk)
                    }
                    Ok(httparse::Status::Partial) => return Ok(Decoded::NeedMore),
                    Err(_) => return Err(FramingError::MalformedChunk),
                },
                ChunkState::Data(left) => {
                    if buf.is_empty() {
                        return Ok(Decoded::NeedMore);
                    }
                    let n = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
                    let left = left - n as u64;
                    self.state = if left == 0 { ChunkState::DataEnd } else { ChunkState::Data(left) };
                    return Ok(Decoded::Data(buf.split_to(n).freeze()));
                }
                ChunkState::DataEnd => {
                    if buf.len() < 2 {
                        return Ok(Decoded::NeedMore);
                    }
                    if &buf[..2] != b"\r\n" {
                        return Err(FramingError::MalformedChunk);
                    }
                    buf.advance(2);
                    self.state = ChunkState::Size;
                }
                ChunkState::Trailers => {
                    if buf.starts_with(b"\r\n") {
                        buf.advance(2);
                        self.state = ChunkState::Done;
                        return Ok(Decoded::End);
                    }
                    let mut fields = [httparse::EMPTY_HEADER; 32];
                    match httparse::parse_headers(buf, &mut fields) {
                        Ok(httparse::Status::Complete((used, fields))) => {
                            let mut trailers = HeaderMap::with_capacity(fields.len());
                            for f in fields {
                                let name = HeaderName::from_bytes(f.name.as_bytes())
                                    .map_err(|_| FramingError::InvalidHeader(f.name.to_owned()))?;
                                let value = HeaderValue::from_bytes(f.value)
                                    .map_err(|_| FramingError::InvalidHeader(f.name.to_owned()))?;
                                trailers.append(name, value);
                            }
                            buf.advance(used);
                            self.state = ChunkState::Done;
                            return Ok(Decoded::Trailers(trailers));
                        }
                        Ok(httparse::Status::Partial) if buf.len() > MAX_TRAILERS => {
                            return Err(FramingError::MalformedChunk)
                        }
                        Ok(httparse::Status::Partial) => return Ok(Decoded::NeedMore),
                        Err(_) => return Err(FramingError::MalformedChunk),
                    }
                }
                ChunkState::Done => return Ok(Decoded::End),
            }
        }
    }
}

/// The framing around one chunk of `len` bytes: the size line before it.
pub fn chunk_header(len: usize) -> Bytes {
    Bytes::from(format!("{len:x}\r\n"))
}

/// The last chunk, then `trailers`, then the empty line that ends a chunked body.
pub fn last_chunk_with_trailers(trailers: &HeaderMap) -> Bytes {
    let mut out = Vec::with_capacity(8 + trailers.len() * 32);
    out.extend_from_slice(b"0\r\n");
    write_fields(&mut out, trailers);
    out.extend_from_slice(b"\r\n");
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(text: &str) -> Result<Option<ResponseHead>, FramingError> {
        parse_response_head(&mut BytesMut::from(text))
    }

    #[test]
    fn request_head_is_one_block_with_all_fields_in_order() {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_static("app.example.com"));
        headers.append("x-multi", HeaderValue::from_static("a"));
        headers.append("x-multi", HeaderValue::from_static("b"));
        let mut out = Vec::new();
        encode_request_head(&mut out, &Method::POST, "/p?q=1", &headers, true);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "POST /p?q=1 HTTP/1.1\r\nhost: app.example.com\r\nx-multi: a\r\nx-multi: b\r\n\
             transfer-encoding: chunked\r\n\r\n"
        );
    }

    #[test]
    fn response_head_parses_headers_reason_and_leaves_the_body() {
        let mut buf = BytesMut::from("HTTP/1.1 200 Fine\r\nContent-Length: 5\r\nX-A: 1\r\nx-a: 2\r\n\r\nhello");
        let h = parse_response_head(&mut buf).unwrap().unwrap();
        assert_eq!(h.status, StatusCode::OK);
        assert_eq!(h.headers.get_all("x-a").iter().count(), 2);
        assert_eq!(h.reason.as_ref().map(|r| r.as_bytes()), Some(&b"Fine"[..]));
        assert!(!h.close);
        assert_eq!(&buf[..], b"hello");
    }

    #[test]
    fn hop_by_hop_fields_are_dropped_while_parsing_except_on_a_switch() {
        let h = head(
            "HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Conn-Only\r\nX-Conn-Only: 1\r\nKeep-Alive: timeout=5\r\n\
             Transfer-Encoding: chunked\r\nTrailer: x-sum\r\nX-Kept: yes\r\n\r\n",
        )
        .unwrap()
        .unwrap();
        assert_eq!(h.headers.keys().map(|n| n.as_str()).collect::<Vec<_>>(), ["x-kept", "trailer"]);
        assert_eq!(h.transfer_encoding, TransferEncoding::Chunked);
        let h = head("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(h.headers["upgrade"], "websocket");
        assert_eq!(h.headers["connection"], "Upgrade");
    }

    #[test]
    fn canonical_reason_is_not_kept() {
        let h = head("HTTP/1.1 404 Not Found\r\n\r\n").unwrap().unwrap();
        assert!(h.reason.is_none());
    }

    #[test]
    fn partial_head_asks_for_more_at_every_split() {
        let text = "HTTP/1.1 204 No Content\r\nServer: t\r\n\r\n";
        for cut in 0..text.len() {
            assert!(head(&text[..cut]).unwrap().is_none(), "cut at {cut}");
        }
        assert!(head(text).unwrap().is_some());
    }

    #[test]
    fn connection_close_and_http10_mean_no_reuse() {
        assert!(head("HTTP/1.1 200 OK\r\nConnection: keep-alive, Close\r\n\r\n").unwrap().unwrap().close);
        assert!(head("HTTP/1.0 200 OK\r\n\r\n").unwrap().unwrap().close);
        assert!(!head("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n\r\n").unwrap().unwrap().close);
        let te10 = "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert!(head(te10).unwrap().unwrap().close, "HTTP/1.0 with Transfer-Encoding");
    }

    #[test]
    fn oversized_and_malformed_heads_are_errors() {
        let big = format!("HTTP/1.1 200 OK\r\nX-Big: {}\r\n", "a".repeat(MAX_RESPONSE_HEAD));
        assert!(matches!(head(&big), Err(FramingError::HeadTooLarge)));
        let many: String = (0..MAX_RESPONSE_HEADERS + 1).map(|i| format!("x-{i}: v\r\n")).collect();
        assert!(head(&format!("HTTP/1.1 200 OK\r\n{many}\r\n")).is_err());
        assert!(matches!(head("HTTP/1.1 2000 OK\r\n\r\n"), Err(FramingError::MalformedHead(_))));
        assert!(matches!(head("SMTP ready\r\n\r\n"), Err(FramingError::MalformedHead(_))));
    }

    fn length(text: &str, method: Method) -> (Result<BodyLength, FramingError>, ResponseHead) {
        let mut h = head(text).unwrap().unwrap();
        (response_body_length(&mut h, &method), h)
    }

    #[test]
    fn body_length_follows_rfc9112() {
        assert_eq!(
            length("HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n", Method::GET).0.unwrap(),
            BodyLength::Exact(12)
        );
        assert_eq!(length("HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n", Method::HEAD).0.unwrap(), BodyLength::Empty);
        assert_eq!(length("HTTP/1.1 204 No Content\r\n\r\n", Method::GET).0.unwrap(), BodyLength::Empty);
        assert_eq!(
            length("HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n", Method::GET).0.unwrap(),
            BodyLength::Empty
        );
        assert_eq!(
            length("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", Method::GET).0.unwrap(),
            BodyLength::Chunked
        );
        let (l, h) = length("HTTP/1.1 200 OK\r\n\r\n", Method::GET);
        assert_eq!(l.unwrap(), BodyLength::UntilClose);
        assert!(h.close, "a body read to the close ends the connection");
        let (l, h) = length("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", Method::GET);
        assert_eq!(l.unwrap(), BodyLength::UntilClose);
        assert!(h.close);
    }

    #[test]
    fn transfer_encoding_overrides_content_length_and_closes() {
        let (l, h) = length("HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", Method::GET);
        assert_eq!(l.unwrap(), BodyLength::Chunked);
        assert!(h.headers.get(header::CONTENT_LENGTH).is_none());
        assert!(h.close);
    }

    #[test]
    fn conflicting_or_bad_content_length_is_an_error() {
        assert!(length("HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n", Method::GET).0.is_err());
        assert!(length("HTTP/1.1 200 OK\r\nContent-Length: 3, 4\r\n\r\n", Method::GET).0.is_err());
        assert!(length("HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", Method::GET).0.is_err());
        assert!(length("HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n", Method::GET).0.is_err());
        assert_eq!(
            length("HTTP/1.1 200 OK\r\nContent-Length: 3, 3\r\n\r\n", Method::GET).0.unwrap(),
            BodyLength::Exact(3)
        );
    }

    /// Feeds `wire` to a decoder `step` bytes at a time; returns the data and trailers.
    fn decode_in_steps(wire: &[u8], step: usize) -> Result<(Vec<u8>, Option<HeaderMap>), FramingError> {
        let mut dec = ChunkedDecoder::default();
        let mut buf = BytesMut::new();
        let mut data = Vec::new();
        let mut fed = 0;
        loop {
            match dec.decode(&mut buf)? {
                Decoded::Data(d) => data.extend_from_slice(&d),
                Decoded::Trailers(t) => return Ok((data, Some(t))),
                Decoded::End => return Ok((data, None)),
                Decoded::NeedMore => {
                    assert!(fed < wire.len(), "decoder wants more than the message holds");
                    let end = (fed + step).min(wire.len());
                    buf.extend_from_slice(&wire[fed..end]);
                    fed = end;
                }
            }
        }
    }

    #[test]
    fn chunked_decodes_at_every_split() {
        let wire = b"5\r\nhello\r\n1;ext=1\r\n \r\nA\r\n0123456789\r\n0\r\n\r\n";
        for step in 1..wire.len() {
            let (data, trailers) = decode_in_steps(wire, step).unwrap();
            assert_eq!(data, b"hello 0123456789", "step {step}");
            assert!(trailers.is_none());
        }
    }

    #[test]
    fn chunked_trailers_are_returned() {
        let wire = b"3\r\nabc\r\n0\r\ngrpc-status: 0\r\ngrpc-message: ok\r\n\r\n";
        for step in [1, 4, wire.len()] {
            let (data, trailers) = decode_in_steps(wire, step).unwrap();
            assert_eq!(data, b"abc");
            assert_eq!(trailers.unwrap()["grpc-status"], "0");
        }
    }

    #[test]
    fn malformed_chunks_are_errors() {
        assert!(decode_in_steps(b"zz\r\nhello\r\n0\r\n\r\n", 64).is_err());
        assert!(decode_in_steps(b"\r\n\r\n", 64).is_err(), "an empty size is not the last chunk");
        assert!(decode_in_steps(b";ext\r\n\r\n", 64).is_err());
        assert!(decode_in_steps(b"3;a\nb\r\nabc\r\n0\r\n\r\n", 64).is_err(), "bare LF in a size line");
        assert!(decode_in_steps(b"5\r\nhelloXX0\r\n\r\n", 64).is_err());
        // A size line that never ends must not be buffered for ever.
        let long_ext = format!("1;{}", "e".repeat(MAX_CHUNK_LINE + 10));
        assert!(decode_in_steps(long_ext.as_bytes(), 512).is_err());
    }

    #[test]
    fn chunk_framing_round_trips_through_the_decoder() {
        assert_eq!(&chunk_header(255)[..], b"ff\r\n");
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", HeaderValue::from_static("0"));
        let mut wire = chunk_header(3).to_vec();
        wire.extend_from_slice(b"abc\r\n");
        wire.extend_from_slice(&last_chunk_with_trailers(&trailers));
        let (data, got) = decode_in_steps(&wire, 2).unwrap();
        assert_eq!(data, b"abc");
        assert_eq!(got.unwrap(), trailers);
    }
}
