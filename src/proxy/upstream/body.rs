//! Response bodies read from an upstream connection, streamed as they arrive; the connection
//! goes back to its endpoint's pool the moment the body ends.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use super::codec::{BodyLength, ChunkedDecoder, Decoded, FramingError};
use super::conn::{OutgoingBody, UpstreamConn};
use crate::proxy::balancer::EndpointState;
use crate::proxy::body::{BoxError, ProxyBody};

/// Room asked of the read buffer per read while a body streams: large enough that a big
/// body takes few system calls, bounded so a slow client holds little memory per connection.
const BODY_READ_CHUNK: usize = 64 * 1024;

/// What is left of the body.
enum Remaining {
    Exact(u64),
    Chunked(ChunkedDecoder),
    UntilClose,
}

/// A response body streaming from an upstream connection.
pub struct UpstreamBody {
    /// `None` once the body ended (the connection went back to the pool or was closed).
    conn: Option<UpstreamConn>,
    /// A frame decoded before the response was handed on (see `response_body`), served first.
    first: Option<Frame<Bytes>>,
    remaining: Remaining,
    /// The connection may serve another request once this body is read.
    reusable: bool,
    endpoint: Arc<EndpointState>,
    /// The rest of a request body the upstream answered before taking whole: it goes on
    /// being sent while the response streams (an upstream may answer early and keep
    /// reading, as echo or transcoding services do).
    upload: Option<OutgoingBody>,
}

/// The body of a response whose head was just read from `conn`. A body that already sits
/// whole in the read buffer (the usual small response) is split off at once and the
/// connection goes back to the pool before the response is even written to the client.
/// `upload` is what is left of the request body, if the upstream answered before taking it.
///
/// A chunked body's first piece is decoded here when it arrived with the head: a malformed
/// chunk size found now is an error the caller answers with 502, while the client has seen
/// nothing. (Found later, once the head went out, it can only abort the client's response.)
pub fn response_body(
    mut conn: UpstreamConn,
    length: BodyLength,
    reusable: bool,
    endpoint: &Arc<EndpointState>,
    upload: Option<OutgoingBody>,
) -> Result<ProxyBody, FramingError> {
    let mut first = None;
    let remaining = match length {
        BodyLength::Empty => {
            release(conn, reusable, endpoint);
            return Ok(ProxyBody::empty());
        }
        BodyLength::Exact(n) if conn.buf.len() as u64 >= n => {
            let data = conn.buf.split_to(n as usize).freeze();
            release(conn, reusable, endpoint);
            return Ok(ProxyBody::text(data));
        }
        BodyLength::Exact(n) => Remaining::Exact(n),
        BodyLength::Chunked => {
            let mut decoder = ChunkedDecoder::default();
            if !conn.buf.is_empty() {
                first = match decoder.decode(&mut conn.buf)? {
                    Decoded::Data(data) => Some(Frame::data(data)),
                    Decoded::Trailers(trailers) => Some(Frame::trailers(trailers)),
                    Decoded::End => {
                        release(conn, reusable, endpoint);
                        return Ok(ProxyBody::empty());
                    }
                    Decoded::NeedMore => None,
                };
            }
            Remaining::Chunked(decoder)
        }
        BodyLength::UntilClose => Remaining::UntilClose,
    };
    let upload = upload.filter(OutgoingBody::is_active);
    let mut body =
        UpstreamBody { conn: Some(conn), first: None, remaining, reusable, endpoint: endpoint.clone(), upload };
    if let Some(frame) = first {
        if frame.is_trailers() {
            body.finish();
        }
        body.first = Some(frame);
    }
    Ok(ProxyBody::Http1(Box::new(body)))
}

/// Returns a connection whose exchange is complete to its pool, if it can be reused.
fn release(conn: UpstreamConn, reusable: bool, endpoint: &EndpointState) {
    // Bytes past the end of the response mean the upstream is not speaking HTTP/1.1 as
    // framed: do not trust the connection with another request.
    if reusable && conn.buf.is_empty() {
        endpoint.pool.checkin(conn);
    }
}

#[derive(Debug, thiserror::Error)]
#[error("upstream closed the connection before the end of the body")]
struct Truncated;

impl UpstreamBody {
    fn finish(&mut self) {
        if let Some(conn) = self.conn.take() {
            release(conn, self.reusable, &self.endpoint);
        }
    }

    fn fail(&mut self, e: impl Into<BoxError>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.conn = None;
        Poll::Ready(Some(Err(e.into())))
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if let Some(frame) = this.first.take() {
            return Poll::Ready(Some(Ok(frame)));
        }
        loop {
            let Some(conn) = this.conn.as_mut() else { return Poll::Ready(None) };
            if let Some(upload) = this.upload.as_mut() {
                // Pending registers for the socket or the client body; anything else ends
                // the upload (done, or stopped: the connection is not reused either way).
                if conn.poll_send_body(upload, cx).is_ready() {
                    this.upload = None;
                }
            }
            let want = match &mut this.remaining {
                Remaining::Exact(left) => {
                    if !conn.buf.is_empty() {
                        let n = (*left).min(conn.buf.len() as u64);
                        let data = conn.buf.split_to(n as usize).freeze();
                        *left -= n;
                        if *left == 0 {
                            this.finish();
                        }
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                    usize::try_from(*left).unwrap_or(usize::MAX).clamp(super::conn::HEAD_READ_CHUNK, BODY_READ_CHUNK)
                }
                Remaining::Chunked(decoder) => match decoder.decode(&mut conn.buf) {
                    Ok(Decoded::Data(data)) => return Poll::Ready(Some(Ok(Frame::data(data)))),
                    Ok(Decoded::Trailers(trailers)) => {
                        this.finish();
                        return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
                    }
                    Ok(Decoded::End) => {
                        this.finish();
                        return Poll::Ready(None);
                    }
                    Ok(Decoded::NeedMore) => BODY_READ_CHUNK,
                    Err(e) => return this.fail(e),
                },
                Remaining::UntilClose => {
                    if !conn.buf.is_empty() {
                        return Poll::Ready(Some(Ok(Frame::data(conn.buf.split().freeze()))));
                    }
                    BODY_READ_CHUNK
                }
            };
            match ready!(conn.poll_read_more(cx, want)) {
                Ok(0) => {
                    return match this.remaining {
                        Remaining::UntilClose => {
                            this.conn = None;
                            Poll::Ready(None)
                        }
                        Remaining::Exact(_) | Remaining::Chunked(_) => this.fail(Truncated),
                    };
                }
                Ok(_) => {}
                Err(e) => return this.fail(e),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.conn.is_none() && self.first.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        match (&self.conn, &self.remaining) {
            (None, _) if self.first.is_none() => SizeHint::with_exact(0),
            (Some(_), Remaining::Exact(left)) => SizeHint::with_exact(*left),
            _ => SizeHint::default(),
        }
    }
}
