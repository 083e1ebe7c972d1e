//! Pinging a node: the capability a round needs, and its implementation over `net`.
//!
//! Tests wrap a [`Pinger`] to cut a probe off from chosen addresses (a partition seen from
//! one probe), the way cluster tests filter a transport.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use net::message::handshake::{Hello, Role};
use net::message::{Message, Ping};
use net::tokio_transport::Pool;
use net::transport::{CallError, TransportConfig};
use net::{ClusterId, NodeId};

/// Why a ping got no `Pong`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PingError {
    /// No answer within the deadline (connecting included).
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The call failed (refused, closed, handshake refused).
    #[error("{0}")]
    Call(CallError),
    /// The peer answered something else than the matching `Pong`.
    #[error("unexpected answer {0}")]
    Unexpected(&'static str),
}

/// Something that can ping an address.
pub trait Pinger: Send + Sync + 'static {
    /// Pings `addr`; the round-trip time, or why there was none within `deadline`.
    fn ping(
        &self,
        addr: &str,
        deadline: Duration,
    ) -> impl Future<Output = Result<Duration, PingError>> + Send;
}

/// Pings with `net` `Ping` frames over pooled, authenticated connections (one per address).
/// The pool learns the cluster id from the master on the first call (DS shards refuse a
/// connector without one).
#[derive(Debug)]
pub struct NetPinger {
    pool: Arc<Pool>,
    nonce: AtomicU64,
}

impl NetPinger {
    /// A pinger with its own connection pool.
    pub fn new(transport: TransportConfig) -> Self {
        let hello = Hello::new(Role::Probe {}, ClusterId(0), NodeId(0));
        Self {
            pool: Arc::new(Pool::new(hello, transport, 1)),
            nonce: AtomicU64::new(1),
        }
    }

    /// The pool (the probe also calls the master through it).
    pub fn pool(&self) -> &Arc<Pool> {
        &self.pool
    }
}

impl Pinger for NetPinger {
    async fn ping(&self, addr: &str, deadline: Duration) -> Result<Duration, PingError> {
        let nonce = self.nonce.fetch_add(1, Ordering::Relaxed);
        let start = Instant::now();
        let call = self.pool.call(addr, Message::Ping(Ping { nonce }));
        match tokio::time::timeout(deadline, call).await {
            Err(_) => Err(PingError::Timeout(deadline)),
            Ok(Err(e)) => Err(PingError::Call(e)),
            Ok(Ok(Message::Pong(p))) if p.nonce == nonce => Ok(start.elapsed()),
            Ok(Ok(other)) => Err(PingError::Unexpected(other.name())),
        }
    }
}
