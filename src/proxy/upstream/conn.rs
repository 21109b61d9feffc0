//! One keep-alive HTTP/1.1 connection to an upstream endpoint, driven by the task of the
//! request that uses it: no task of its own, no channels.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use crate::proxy::request_body::{RequestBody, RequestBodyError};
use bytes::{Buf, Bytes, BytesMut};
use http::StatusCode;
use http_body::Body;
use tokio::io::AsyncWrite;
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

use super::codec::{self, FramingError, ResponseHead};

/// Room asked of the read buffer before each read while a head is expected.
pub(super) const HEAD_READ_CHUNK: usize = 8 * 1024;

/// Why no connection could be had.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("connect timed out after {0:?}")]
    Timeout(Duration),
    #[error("connect: {0}")]
    Io(#[from] io::Error),
}

/// How an exchange failed. The variants say how much the upstream may have seen, which is
/// what decides whether sending the request again is safe.
#[derive(Debug, thiserror::Error)]
pub enum ExchangeError {
    /// The request head did not get out whole and nothing of the body was read: the upstream
    /// cannot have acted on it, so it may be sent again anywhere.
    #[error("writing the request head failed: {0}")]
    NotSent(io::Error),
    /// The connection ended before any byte of a response arrived. The upstream may or may
    /// not have seen the request.
    #[error("connection closed before any response: {0}")]
    NoResponse(io::Error),
    /// The connection broke after part of a response arrived.
    #[error("reading the response failed: {0}")]
    Read(io::Error),
    #[error("{0}")]
    Framing(#[from] FramingError),
    /// The client's request body failed (the client went away, or sent a malformed body).
    #[error("client request body: {0}")]
    ClientBody(RequestBodyError),
    #[error("upstream switched protocols for a request that did not ask to")]
    UnexpectedUpgrade,
    /// No complete response head within the response timeout.
    #[error("no response head within {0:?}")]
    Timeout(Duration),
    /// The response timeout passed while the upstream was waiting for more of the client's
    /// request body: the client's stall, not the upstream's.
    #[error("the client's request body stalled for {0:?}")]
    ClientStalled(Duration),
}

/// A request body on its way upstream.
pub struct OutgoingBody {
    body: RequestBody,
    /// Length unknown: frame it as chunks.
    chunked: bool,
    /// Bytes of the current frame not written yet.
    pending: Bytes,
    state: Upload,
    /// Bytes went out since the caller last asked (see `take_progress`).
    progressed: bool,
    /// The last send stopped because the client had sent nothing more (not because the
    /// upstream's socket was full).
    waiting_on_client: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Upload {
    Streaming,
    /// The client body ended; `pending` may still hold the last chunk.
    Ended,
    /// The upstream stopped taking the body (it may have answered already), or the client's
    /// body failed.
    Stopped,
}

impl OutgoingBody {
    pub fn new(body: RequestBody, chunked: bool) -> Self {
        OutgoingBody {
            body,
            chunked,
            pending: Bytes::new(),
            state: Upload::Streaming,
            progressed: false,
            waiting_on_client: false,
        }
    }

    pub fn is_chunked(&self) -> bool {
        self.chunked
    }

    /// All of it went out.
    pub fn is_sent(&self) -> bool {
        self.state == Upload::Ended && self.pending.is_empty()
    }

    /// Still going: neither sent nor stopped.
    pub fn is_active(&self) -> bool {
        self.state != Upload::Stopped && !self.is_sent()
    }

    /// Still going, and held up by the client rather than by the upstream.
    pub fn is_waiting_on_client(&self) -> bool {
        self.is_active() && self.waiting_on_client
    }

    fn take_progress(&mut self) -> bool {
        std::mem::take(&mut self.progressed)
    }

    /// Writes the body to `io` until it is all sent (`Ready(Ok)`), a write or the client
    /// blocks (`Pending`), or something fails (the upload is then stopped).
    pub(super) fn poll_send(&mut self, io: &mut TcpStream, cx: &mut Context<'_>) -> Poll<Result<(), SendBodyError>> {
        let result = self.poll_send_inner(io, cx);
        if matches!(result, Poll::Ready(Err(_))) {
            self.state = Upload::Stopped;
        }
        result
    }

    fn poll_send_inner(&mut self, io: &mut TcpStream, cx: &mut Context<'_>) -> Poll<Result<(), SendBodyError>> {
        loop {
            while !self.pending.is_empty() {
                match Pin::new(&mut *io).poll_write(cx, &self.pending) {
                    Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => return Poll::Ready(Err(SendBodyError::Write)),
                    Poll::Ready(Ok(n)) => {
                        self.pending.advance(n);
                        self.progressed = true;
                    }
                    Poll::Pending => {
                        self.waiting_on_client = false;
                        return Poll::Pending;
                    }
                }
            }
            if self.state == Upload::Ended {
                return Poll::Ready(Ok(()));
            }
            match Pin::new(&mut self.body).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) if data.is_empty() => {}
                    Ok(data) if self.chunked => {
                        let mut framed = BytesMut::with_capacity(data.len() + 20);
                        framed.extend_from_slice(&codec::chunk_header(data.len()));
                        framed.extend_from_slice(&data);
                        framed.extend_from_slice(b"\r\n");
                        self.pending = framed.freeze();
                    }
                    Ok(data) => self.pending = data,
                    // Trailers: HTTP/1.1 can carry them only after chunks.
                    Err(frame) => {
                        self.state = Upload::Ended;
                        if self.chunked {
                            self.pending = match frame.into_trailers() {
                                Ok(trailers) => codec::last_chunk_with_trailers(&trailers),
                                Err(_) => Bytes::from_static(b"0\r\n\r\n"),
                            };
                        }
                    }
                },
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(SendBodyError::Client(e))),
                Poll::Ready(None) => {
                    self.state = Upload::Ended;
                    if self.chunked {
                        self.pending = Bytes::from_static(b"0\r\n\r\n");
                    }
                }
                Poll::Pending => {
                    self.waiting_on_client = true;
                    return Poll::Pending;
                }
            }
        }
    }
}

pub(super) enum SendBodyError {
    /// The upstream stopped taking the body (it may have answered already).
    Write,
    Client(RequestBodyError),
}

/// A keep-alive connection with its read buffer.
pub struct UpstreamConn {
    io: TcpStream,
    /// Bytes read and not consumed yet. Empty between exchanges on a healthy connection.
    pub(super) buf: BytesMut,
    /// The connection completed an exchange before (it came from the pool).
    pub reused: bool,
    /// The response deadline, armed per exchange. One timer per connection, moved forward
    /// for each request: while requests come within the timeout of each other, extending the
    /// registered tokio timer is one atomic store, where a fresh timeout per request meant a
    /// timer-wheel insert and removal every time. (After an idle spell longer than the
    /// timeout it fires once, waking nobody who cares, and is registered again.)
    deadline: Pin<Box<Sleep>>,
}

impl UpstreamConn {
    pub async fn connect(addr: SocketAddr, timeout: Duration) -> Result<Self, ConnectError> {
        let io = tokio::time::timeout(timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| ConnectError::Timeout(timeout))??;
        let _ = io.set_nodelay(true);
        // An endpoint whose node vanished without a reset is found out by keep-alive probes
        // instead of holding a client's response open for ever.
        let keepalive =
            socket2::TcpKeepalive::new().with_time(Duration::from_secs(60)).with_interval(Duration::from_secs(10));
        let _ = socket2::SockRef::from(&io).set_tcp_keepalive(&keepalive);
        Ok(UpstreamConn {
            io,
            buf: BytesMut::with_capacity(HEAD_READ_CHUNK),
            reused: false,
            deadline: Box::pin(tokio::time::sleep(timeout)),
        })
    }

    /// True when an idle connection can take another request: the upstream has not closed it
    /// and sent nothing unasked. Costs no system call unless the socket was reported readable.
    pub fn is_open(&self) -> bool {
        if !self.buf.is_empty() {
            return false;
        }
        let mut cx = Context::from_waker(std::task::Waker::noop());
        match self.io.poll_read_ready(&mut cx) {
            Poll::Pending => true,
            Poll::Ready(Err(_)) => false,
            // Readable: end of stream, an error, stray bytes, or a stale flag. Look once.
            Poll::Ready(Ok(())) => {
                let mut probe = [0u8; 1];
                matches!(self.io.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
            }
        }
    }

    /// Reads more bytes into the buffer, making room for at least about `chunk` first.
    pub(super) fn poll_read_more(&mut self, cx: &mut Context<'_>, chunk: usize) -> Poll<io::Result<usize>> {
        if self.buf.capacity() - self.buf.len() < chunk / 2 {
            self.buf.reserve(chunk);
        }
        tokio_util::io::poll_read_buf(Pin::new(&mut self.io), cx, &mut self.buf)
    }

    /// Sends a request (its encoded head, then its body if any) and reads the response head,
    /// skipping interim 1xx responses other than 101, all within `timeout`. The body goes out
    /// while the response is awaited, so an upstream that answers before taking the whole
    /// body (413, 401, a redirect) is heard instead of dead-locking on full socket buffers.
    ///
    /// Returns the head and whether the whole request went out (if not, the connection must
    /// not be reused).
    pub async fn exchange(
        &mut self,
        head: &[u8],
        mut body: Option<&mut OutgoingBody>,
        upgrade: bool,
        timeout: Duration,
    ) -> Result<(ResponseHead, bool), ExchangeError> {
        self.deadline.as_mut().reset(Instant::now() + timeout);
        let mut head_written = 0;
        let mut response_started = false;
        let mut interim = 0;
        std::future::poll_fn(|cx| loop {
            while head_written < head.len() {
                match Pin::new(&mut self.io).poll_write(cx, &head[head_written..]) {
                    Poll::Ready(Ok(0)) => {
                        return Poll::Ready(Err(ExchangeError::NotSent(io::ErrorKind::WriteZero.into())));
                    }
                    Poll::Ready(Ok(n)) => head_written += n,
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(ExchangeError::NotSent(e))),
                    Poll::Pending => return self.poll_deadline(cx, timeout, false),
                }
            }
            if !self.buf.is_empty() {
                response_started = true;
                if let Some(head) = codec::parse_response_head(&mut self.buf)? {
                    if head.status == StatusCode::SWITCHING_PROTOCOLS && !upgrade {
                        return Poll::Ready(Err(ExchangeError::UnexpectedUpgrade));
                    }
                    if head.status.is_informational() && head.status != StatusCode::SWITCHING_PROTOCOLS {
                        // 100 Continue, 103 Early Hints: the final response follows.
                        interim += 1;
                        if interim > codec::MAX_INTERIM_RESPONSES {
                            return Poll::Ready(Err(FramingError::TooManyInterim.into()));
                        }
                        continue;
                    }
                    let sent = body.as_ref().is_none_or(|b| b.is_sent());
                    return Poll::Ready(Ok((head, sent)));
                }
            }
            match self.poll_read_more(cx, HEAD_READ_CHUNK) {
                Poll::Ready(Ok(0)) => {
                    let e = io::Error::new(io::ErrorKind::UnexpectedEof, "upstream closed the connection");
                    return Poll::Ready(Err(if response_started {
                        ExchangeError::Read(e)
                    } else {
                        ExchangeError::NoResponse(e)
                    }));
                }
                Poll::Ready(Ok(_)) => continue,
                Poll::Ready(Err(e)) => {
                    return Poll::Ready(Err(if response_started {
                        ExchangeError::Read(e)
                    } else {
                        ExchangeError::NoResponse(e)
                    }));
                }
                Poll::Pending => {}
            }
            if let Some(b) = body.as_deref_mut().filter(|b| b.is_active()) {
                let sent = b.poll_send(&mut self.io, cx);
                // While the body streams the deadline bounds each pause, and the upstream
                // gets the whole timeout to answer once the body is in.
                if b.take_progress() {
                    self.deadline.as_mut().reset(Instant::now() + timeout);
                }
                match sent {
                    Poll::Ready(Ok(())) => continue,
                    // The upstream stopped reading; it may still have answered.
                    Poll::Ready(Err(SendBodyError::Write)) => continue,
                    Poll::Ready(Err(SendBodyError::Client(e))) => {
                        return Poll::Ready(Err(ExchangeError::ClientBody(e)));
                    }
                    Poll::Pending => {}
                }
            }
            let client_stalled = body.as_ref().is_some_and(|b| b.is_waiting_on_client());
            return self.poll_deadline(cx, timeout, client_stalled);
        })
        .await
    }

    /// Pending until the response deadline passes; then whose fault the silence is.
    fn poll_deadline<T>(
        &mut self,
        cx: &mut Context<'_>,
        timeout: Duration,
        client_stalled: bool,
    ) -> Poll<Result<T, ExchangeError>> {
        match self.deadline.as_mut().poll(cx) {
            Poll::Ready(()) if client_stalled => Poll::Ready(Err(ExchangeError::ClientStalled(timeout))),
            Poll::Ready(()) => Poll::Ready(Err(ExchangeError::Timeout(timeout))),
            Poll::Pending => Poll::Pending,
        }
    }

    /// Goes on sending a request body while the response streams.
    pub(super) fn poll_send_body(
        &mut self,
        body: &mut OutgoingBody,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), SendBodyError>> {
        body.poll_send(&mut self.io, cx)
    }

    /// The socket and any bytes already read past the response head, for a protocol switch.
    pub fn into_tunnel(self) -> (TcpStream, BytesMut) {
        (self.io, self.buf)
    }
}
