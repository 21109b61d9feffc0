//! Spreads client connections evenly over the serving threads.
//!
//! Each serving thread has its own `SO_REUSEPORT` listener, and the kernel picks the listener
//! for a new connection by a hash of its addresses. For a few dozen long-lived keep-alive
//! connections (a load balancer, an HTTP/2 client pool, a benchmark) that split is often
//! lopsided, 38 to 26 is common, and it stays so for the life of the connections: the busier
//! thread then limits the whole proxy while the other has time to spare. So after `accept`, a
//! thread that holds more connections than the least loaded one hands the new connection
//! over to it (the socket moves to that thread's runtime; a TLS handshake then runs there).
//! Connections are never moved once served.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::net::TcpStream;
use tokio::sync::mpsc;

/// A connection on its way to another serving thread.
pub type Handoff = (std::net::TcpStream, SocketAddr);

/// Open connections per serving thread of one listener group, and a way to hand a
/// connection to each.
#[derive(Debug)]
pub struct Spreader {
    open: Box<[AtomicUsize]>,
    inboxes: Box<[mpsc::UnboundedSender<Handoff>]>,
}

/// One serving thread's side of a [`Spreader`].
#[derive(Debug)]
pub struct ThreadShare {
    spreader: Arc<Spreader>,
    index: usize,
    inbox: mpsc::UnboundedReceiver<Handoff>,
}

impl Spreader {
    /// A spreader for `threads` serving threads, and each thread's share of it.
    pub fn shares(threads: usize) -> Vec<ThreadShare> {
        let (senders, receivers): (Vec<_>, Vec<_>) = (0..threads).map(|_| mpsc::unbounded_channel()).unzip();
        let spreader = Arc::new(Spreader {
            open: (0..threads).map(|_| AtomicUsize::new(0)).collect(),
            inboxes: senders.into_boxed_slice(),
        });
        receivers
            .into_iter()
            .enumerate()
            .map(|(index, inbox)| ThreadShare { spreader: spreader.clone(), index, inbox })
            .collect()
    }

    /// The thread a connection accepted by `here` should go to, if not `here`: the least
    /// loaded one, when `here` has more.
    fn destination(&self, here: usize) -> Option<usize> {
        let mine = self.open[here].load(Ordering::Relaxed);
        let (least, fewest) =
            self.open.iter().enumerate().map(|(i, n)| (i, n.load(Ordering::Relaxed))).min_by_key(|&(_, n)| n)?;
        (fewest < mine).then_some(least)
    }
}

impl ThreadShare {
    /// Keeps a connection just accepted here, or hands it to a less loaded thread (then
    /// `None`). A connection that cannot be moved stays.
    pub fn place(&self, stream: TcpStream, peer: SocketAddr) -> Option<(TcpStream, SocketAddr)> {
        let Some(to) = self.spreader.destination(self.index) else { return Some((stream, peer)) };
        match stream.into_std() {
            Ok(std_stream) => {
                if let Err(mpsc::error::SendError((std_stream, peer))) =
                    self.spreader.inboxes[to].send((std_stream, peer))
                {
                    // That thread has stopped: keep the connection.
                    return TcpStream::from_std(std_stream).ok().map(|s| (s, peer));
                }
                None
            }
            Err(_) => None,
        }
    }

    /// The next connection another thread handed over.
    pub async fn handed_over(&mut self) -> Option<(TcpStream, SocketAddr)> {
        loop {
            let (std_stream, peer) = self.inbox.recv().await?;
            if let Ok(stream) = TcpStream::from_std(std_stream) {
                return Some((stream, peer));
            }
        }
    }

    /// Counts a connection as this thread's until the guard drops.
    pub fn opened(&self) -> OpenGuard {
        self.spreader.open[self.index].fetch_add(1, Ordering::Relaxed);
        OpenGuard { spreader: self.spreader.clone(), index: self.index }
    }
}

/// Uncounts a connection when it ends.
#[derive(Debug)]
pub struct OpenGuard {
    spreader: Arc<Spreader>,
    index: usize,
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.spreader.open[self.index].fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_busier_thread_sends_new_connections_to_the_least_loaded() {
        let shares = Spreader::shares(3);
        let spreader = &shares[0].spreader;
        let _a: Vec<_> = (0..3).map(|_| shares[0].opened()).collect();
        let _b: Vec<_> = (0..1).map(|_| shares[1].opened()).collect();
        let _c: Vec<_> = (0..2).map(|_| shares[2].opened()).collect();
        assert_eq!(spreader.destination(0), Some(1));
        assert_eq!(spreader.destination(2), Some(1));
        assert_eq!(spreader.destination(1), None, "the least loaded keeps what it accepts");
        drop(_a);
        assert_eq!(spreader.destination(2), Some(0), "counts fall as connections end");
    }

    #[tokio::test]
    async fn a_handed_over_connection_arrives_whole_at_the_other_thread() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut shares = Spreader::shares(2);
        let _busy = shares[0].opened();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (stream, peer) = listener.accept().await.unwrap();
        assert!(shares[0].place(stream, peer).is_none(), "moved");
        let (mut moved, moved_peer) = shares[1].handed_over().await.unwrap();
        assert_eq!(moved_peer, peer);
        client.write_all(b"ping").await.unwrap();
        let mut got = [0u8; 4];
        moved.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"ping");
    }
}
