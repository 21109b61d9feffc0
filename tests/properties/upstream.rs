//! The HTTP/1.1 response parser and chunked decoder of swarmgate's upstream client, fed
//! hostile bytes cut at arbitrary points, as a socket delivers them.

use bytes::BytesMut;
use http::Method;
use proptest::prelude::*;
use proptest::sample::select;
use swarmgate::proxy::upstream::codec::{
    chunk_header, parse_response_head, response_body_length, BodyLength, ChunkedDecoder, Decoded, FramingError,
    MAX_RESPONSE_HEAD,
};

/// Most bytes a decoder may leave unconsumed while asking for more: its longest trailer
/// section (the size-line limit is smaller). Past this it must have answered or failed, or a
/// hostile upstream could make the proxy buffer without end.
const MAX_DECODER_HOLD: usize = 16 * 1024;

/// Cuts `wire` into pieces at the given offsets (any order, any duplicates).
fn pieces(wire: &[u8], cuts: &[usize]) -> Vec<Vec<u8>> {
    let mut at: Vec<usize> = cuts.iter().map(|c| c % (wire.len() + 1)).collect();
    at.sort_unstable();
    at.dedup();
    let mut out = Vec::new();
    let mut from = 0;
    for c in at.into_iter().chain([wire.len()]) {
        out.push(wire[from..c].to_vec());
        from = c;
    }
    out
}

/// What a parse came to, in a form two parses can be compared by.
#[derive(Debug, PartialEq)]
enum HeadOutcome {
    Head { status: u16, headers: Vec<(String, Vec<u8>)>, close: bool, rest: Vec<u8> },
    Error,
    Incomplete,
}

/// Feeds `parts` one at a time, parsing after each, as the client does.
fn parse_in_parts(parts: &[Vec<u8>]) -> HeadOutcome {
    let mut buf = BytesMut::new();
    for (i, p) in parts.iter().enumerate() {
        buf.extend_from_slice(p);
        match parse_response_head(&mut buf) {
            Ok(Some(h)) => {
                for later in &parts[i + 1..] {
                    buf.extend_from_slice(later);
                }
                let headers = h.headers.iter().map(|(n, v)| (n.to_string(), v.as_bytes().to_vec())).collect();
                return HeadOutcome::Head { status: h.status.as_u16(), headers, close: h.close, rest: buf.to_vec() };
            }
            Ok(None) => assert!(buf.len() < MAX_RESPONSE_HEAD, "an incomplete head is never held past the limit"),
            Err(_) => return HeadOutcome::Error,
        }
    }
    HeadOutcome::Incomplete
}

/// A response head as upstreams write them, right or wrong: status lines, framing fields with
/// hostile numbers, bare LF, obs-fold, odd names.
fn response_head() -> impl Strategy<Value = Vec<u8>> {
    let status = select(vec![
        "HTTP/1.1 200 OK",
        "HTTP/1.1 204 No Content",
        "HTTP/1.1 304 Not Modified",
        "HTTP/1.1 100 Continue",
        "HTTP/1.1 101 Switching Protocols",
        "HTTP/1.0 200 OK",
        "HTTP/1.1 099 Low",
        "HTTP/1.1 999 High",
        "HTTP/1.1 2000 Long",
        "HTTP/1.1 200",
        "HTTP/2.0 200 OK",
        "HTTP/1.1  200 OK",
        "http/1.1 200 ok",
        "HTTP/1.1 200 \u{7f}bad",
        "ICY 200 OK",
        "",
    ]);
    let name = select(vec![
        "Content-Length",
        "content-length",
        "Transfer-Encoding",
        "Connection",
        "Keep-Alive",
        "Upgrade",
        "Trailer",
        "X-A",
        "Content-Length ",
        " Content-Length",
        "Bad Name",
        "",
        "\u{e9}t\u{e9}",
    ]);
    let value = select(vec![
        "0",
        "5",
        "-1",
        "18446744073709551615",
        "18446744073709551616",
        "99999999999999999999999",
        "1e308",
        "5, 5",
        "5, 6",
        "+5",
        "0x10",
        "chunked",
        "gzip, chunked",
        "chunked, gzip",
        "identity",
        "close",
        "keep-alive, X-A",
        "",
        " \t ",
        "caf\u{e9}",
        "a\u{0}b",
    ]);
    let eol = select(vec!["\r\n", "\n", "\r", "\r\n "]);
    let field = (name, value, eol.clone()).prop_map(|(n, v, e)| format!("{n}: {v}{e}"));
    (status, eol.clone(), prop::collection::vec(field, 0..12), eol, prop::collection::vec(any::<u8>(), 0..64)).prop_map(
        |(s, e1, fields, e2, body)| {
            let mut out = format!("{s}{e1}{}{e2}", fields.concat()).into_bytes();
            out.extend_from_slice(&body);
            out
        },
    )
}

/// A well-formed chunked body: its chunks (some empty-extension, some upper-case hex, some with
/// leading zeros), optional trailers, and bytes of a next response after it.
#[derive(Debug, Clone)]
struct ChunkedWire {
    wire: Vec<u8>,
    data: Vec<u8>,
    after: Vec<u8>,
}

fn chunked_body() -> impl Strategy<Value = ChunkedWire> {
    let chunk = (prop::collection::vec(any::<u8>(), 1..300), 0u8..4);
    (
        prop::collection::vec(chunk, 0..8),
        prop::collection::vec(("[a-z][a-z0-9-]{0,8}", "[ -~]{0,16}"), 0..3),
        prop::collection::vec(any::<u8>(), 0..32),
    )
        .prop_map(|(chunks, trailers, after)| {
            let mut wire = Vec::new();
            let mut data = Vec::new();
            for (bytes, style) in chunks {
                let size = match style {
                    0 => chunk_header(bytes.len()).to_vec(),
                    1 => format!("{:X}\r\n", bytes.len()).into_bytes(),
                    2 => format!("000{:x};name=\"v\";x\r\n", bytes.len()).into_bytes(),
                    _ => format!("{:x} ; ext\r\n", bytes.len()).into_bytes(),
                };
                wire.extend_from_slice(&size);
                wire.extend_from_slice(&bytes);
                wire.extend_from_slice(b"\r\n");
                data.extend_from_slice(&bytes);
            }
            wire.extend_from_slice(b"0\r\n");
            for (n, v) in trailers {
                wire.extend_from_slice(format!("{n}: {}\r\n", v.trim()).as_bytes());
            }
            wire.extend_from_slice(b"\r\n");
            ChunkedWire { wire, data, after }
        })
}

/// Runs a decoder over `parts` fed one at a time. Returns the data and whether it ended
/// (`Ok(true)`), ran out of input (`Ok(false)`), or failed; `leftover` ends up holding what
/// was fed and not consumed, followed by what was never fed. Checks on the way that it never
/// loops without progress and never holds more than [`MAX_DECODER_HOLD`] unconsumed bytes.
fn decode_parts(parts: &[Vec<u8>], leftover: &mut BytesMut) -> (Vec<u8>, Result<bool, FramingError>) {
    let mut dec = ChunkedDecoder::default();
    let mut data = Vec::new();
    let mut next = 0;
    let total: usize = parts.iter().map(Vec::len).sum();
    // Every step consumes a byte, ends, fails or asks for input: more steps than that is a spin.
    for _ in 0..(2 * total + 2 * parts.len() + 8) {
        match dec.decode(leftover) {
            Ok(Decoded::Data(d)) => {
                assert!(!d.is_empty(), "a data step hands out at least one byte");
                data.extend_from_slice(&d);
            }
            Ok(Decoded::Trailers(_)) | Ok(Decoded::End) => {
                assert!(dec.is_done());
                for p in &parts[next..] {
                    leftover.extend_from_slice(p);
                }
                return (data, Ok(true));
            }
            Ok(Decoded::NeedMore) => {
                assert!(leftover.len() <= MAX_DECODER_HOLD, "decoder holds {} bytes", leftover.len());
                let Some(p) = parts.get(next) else { return (data, Ok(false)) };
                leftover.extend_from_slice(p);
                next += 1;
            }
            Err(e) => return (data, Err(e)),
        }
    }
    panic!("decoder made no progress");
}

proptest! {
    #![proptest_config(crate::cases(2000))]

    /// A head parses to the same thing however the socket cuts it, and never panics.
    #[test]
    fn response_head_is_the_same_at_every_split(
        head in response_head(),
        cuts in prop::collection::vec(any::<usize>(), 0..6),
    ) {
        let whole = parse_in_parts(std::slice::from_ref(&head));
        let split = parse_in_parts(&pieces(&head, &cuts));
        prop_assert_eq!(split, whole);
    }

    /// Whatever the head, deciding the body length answers (or refuses) without a panic, and
    /// a body the client cannot frame is never read as reusable.
    #[test]
    fn body_length_never_panics(head in response_head(), head_method in any::<bool>()) {
        let mut buf = BytesMut::from(&head[..]);
        if let Ok(Some(mut h)) = parse_response_head(&mut buf) {
            let method = if head_method { Method::HEAD } else { Method::GET };
            if let Ok(BodyLength::UntilClose) = response_body_length(&mut h, &method) {
                prop_assert!(h.close, "a close-delimited body ends its connection");
            }
        }
    }

    /// Random bytes as a chunked body: never a panic, a spin or unbounded holding.
    #[test]
    fn chunked_decoder_survives_any_bytes(
        bytes in prop::collection::vec(any::<u8>(), 0..512),
        cuts in prop::collection::vec(any::<usize>(), 0..8),
    ) {
        let _ = decode_parts(&pieces(&bytes, &cuts), &mut BytesMut::new());
    }

    /// Chunk-shaped junk (sizes, extensions, CR/LF mixes) reaches deeper than random bytes.
    #[test]
    fn chunked_decoder_survives_chunk_shaped_junk(
        parts in prop::collection::vec(select(vec![
            "0", "1", "5", "a", "F", "ffffffffffffffff", "10000000000000000", "-1", " ", ";", ";ext=1", "\"q\"",
            "\r\n", "\n", "\r", "hello", "x-t: v", ":", "\u{0}",
        ]), 0..40),
        cuts in prop::collection::vec(any::<usize>(), 0..8),
    ) {
        let bytes = parts.concat().into_bytes();
        let _ = decode_parts(&pieces(&bytes, &cuts), &mut BytesMut::new());
    }

    /// A well-formed chunked body decodes to its data at any cuts, ends exactly at its end,
    /// and leaves the bytes after it (a next response) untouched.
    #[test]
    fn well_formed_chunked_body_decodes_the_same_at_any_cuts(
        body in chunked_body(),
        cuts in prop::collection::vec(any::<usize>(), 0..10),
    ) {
        let mut wire = body.wire.clone();
        wire.extend_from_slice(&body.after);
        let mut leftover = BytesMut::new();
        let parts = pieces(&wire, &cuts);
        let (data, end) = decode_parts(&parts, &mut leftover);
        prop_assert!(matches!(end, Ok(true)), "ended: {:?}", end);
        prop_assert_eq!(data, body.data);
        // What the decoder did not consume plus what was never fed is exactly the tail.
        let rest = leftover.to_vec();
        prop_assert_eq!(rest, body.after);
    }
}

// Regression inputs: none of the runs so far found a crash here. Fixed cases that exercise the
// edges the generators aim at, kept so a change that breaks them fails by name.

#[test]
fn a_head_past_the_limit_without_an_end_is_refused_not_buffered() {
    let mut wire = b"HTTP/1.1 200 OK\r\n".to_vec();
    while wire.len() <= MAX_RESPONSE_HEAD {
        wire.extend_from_slice(b"x-filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
    }
    assert_eq!(parse_in_parts(&pieces(&wire, &[100, 4096, 9000])), HeadOutcome::Error);
}

#[test]
fn a_chunk_size_beyond_64_bits_is_malformed() {
    let parts = vec![b"10000000000000000\r\n".to_vec()];
    let (_, end) = decode_parts(&parts, &mut BytesMut::new());
    assert!(end.is_err());
}
