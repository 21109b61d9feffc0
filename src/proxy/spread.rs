//! Spreads client connections evenly over the serving threads.
//!
//! Each serving thread has its own `SO_REUSEPORT` listener, and the kernel picks the listener
//! for a new connection by a hash of its addresses. For a few dozen long-lived keep-alive
//! connections (a load balancer, an HTTP/2 client pool, a benchmark) that split is often
//! lopsided, 38 to 26 is common, and it stays so for the life of the connections: the busier
//! thread then limits the whole proxy while the other has time to spare. So after `accept`, a
//! thread that holds more connections than the least loaded one hands the new connection
//! over to it (the socket moves to that thread's runtime; a TLS handshake then runs there).
//! A connection counts against the thread it is placed on from the moment it is placed, so a
//! burst of accepts does not send every one of them to the same thread before that thread
//! has picked any up. Connections are never moved once served.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::net::TcpStream;
use tokio::sync::mpsc;

/// A connection on its way to another serving thread, already counted as that thread's.
pub type Handoff = (std::net::TcpStream, SocketAddr, OpenGuard);

/// A connection placed on this thread, counted as its own until the guard drops.
pub type Placed = (TcpStream, SocketAddr, OpenGuard);

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
    pub fn place(&self, stream: TcpStream, peer: SocketAddr) -> Option<Placed> {
        let Some(to) = self.spreader.destination(self.index) else {
            return Some((stream, peer, self.spreader.count(self.index)));
        };
        let std_stream = match stream.into_std() {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(client = %peer, error = %e, "could not hand a connection to another thread; dropped");
                return None;
            }
        };
        match self.spreader.inboxes[to].send((std_stream, peer, self.spreader.count(to))) {
            Ok(()) => None,
            // That thread has stopped (its count drops with the returned guard): keep it.
            Err(mpsc::error::SendError((std_stream, peer, _))) => {
                TcpStream::from_std(std_stream).ok().map(|s| (s, peer, self.spreader.count(self.index)))
            }
        }
    }

    /// The next connection another thread handed over.
    pub async fn handed_over(&mut self) -> Option<Placed> {
        loop {
            let (std_stream, peer, guard) = self.inbox.recv().await?;
            if let Ok(stream) = TcpStream::from_std(std_stream) {
                return Some((stream, peer, guard));
            }
        }
    }

    /// Counts a connection as this thread's until the guard drops.
    #[cfg(test)]
    fn opened(&self) -> OpenGuard {
        self.spreader.count(self.index)
    }
}

impl Spreader {
    fn count(self: &Arc<Self>, index: usize) -> OpenGuard {
        self.open[index].fetch_add(1, Ordering::Relaxed);
        OpenGuard { spreader: self.clone(), index }
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
    async fn a_burst_of_accepts_is_split_before_the_other_thread_picks_any_up() {
        let shares = Spreader::shares(2);
        let spreader = shares[0].spreader.clone();
        let _busy: Vec<_> = (0..2).map(|_| shares[0].opened()).collect();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut clients = Vec::new();
        let mut kept = Vec::new();
        for _ in 0..4 {
            clients.push(TcpStream::connect(listener.local_addr().unwrap()).await.unwrap());
            let (stream, peer) = listener.accept().await.unwrap();
            kept.extend(shares[0].place(stream, peer));
        }
        // 2 open here, 0 there: two go over, then they alternate.
        assert_eq!(kept.len(), 1, "one of four stays");
        let open: Vec<_> = spreader.open.iter().map(|n| n.load(Ordering::Relaxed)).collect();
        assert_eq!(open, [3, 3]);
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
        let (mut moved, moved_peer, _counted) = shares[1].handed_over().await.unwrap();
        assert_eq!(moved_peer, peer);
        client.write_all(b"ping").await.unwrap();
        let mut got = [0u8; 4];
        moved.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"ping");
    }
}
