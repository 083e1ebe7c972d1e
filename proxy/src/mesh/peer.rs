//! The mesh listener: what a peer's message does on this proxy. Publishes go to this
//! proxy's own subscribers (never forwarded again), queries read its own subscriptions,
//! key-ready signals wake its own waiters as a local write does. Everything is answered at
//! once on the connection's task, in arrival order (no future, so one peer's messages are
//! applied in the order it sent them).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use net::message::handshake::Acceptor;
use net::message::{
    MESH_ITEMS_MAX, Message, PeerKeysReadyAck, PeerPubsubAnswer, PeerReceivers, Pong, PubsubQuery,
    Role,
};
use net::transport::Handled;
use net::{ClusterId, NodeId, RpcError};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::keyspace::Db;
use crate::pubsub::{Hub, Kind};
use crate::shared::Shared;
use crate::waiters::Registry;

/// Connections the mesh listener serves at once.
const CONNECTIONS_MAX: usize = 1024;

type Ready = std::future::Ready<Option<Message>>;

/// Serves peers on `listener` until `stop` turns true.
pub(crate) async fn serve(
    shared: Arc<Shared>,
    listener: TcpListener,
    cluster: ClusterId,
    mut stop: watch::Receiver<bool>,
) {
    let acceptor = Acceptor {
        role: Role::Proxy {},
        cluster_id: cluster,
        node_id: NodeId(shared.mesh.id().0),
    };
    let cfg = shared.cfg.router.transport.clone();
    let s = shared.clone();
    let handler = Arc::new(move |m: Message| {
        s.mesh.stats.received.fetch_add(1, Ordering::Relaxed);
        Handled::<Ready>::Now(Some(handle(
            &s.pubsub,
            &s.router.blocking,
            m,
            &s.mesh.stats,
        )))
    });
    let stopped = async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    net::tokio_transport::serve_handled(listener, acceptor, cfg, CONNECTIONS_MAX, handler, stopped)
        .await;
}

fn bad(message: &str) -> Message {
    Message::Error(RpcError::BadRequest {
        message: message.into(),
    })
}

/// This proxy's answer to a peer's `msg`.
pub fn handle(hub: &Hub, waiters: &Registry, msg: Message, stats: &super::MeshStats) -> Message {
    match msg {
        Message::PeerPublish(p) => {
            let n = hub.publish(&p.channel, &p.payload, p.shard);
            Message::PeerReceivers(PeerReceivers {
                receivers: n as u64,
            })
        }
        Message::PeerPubsubQuery(q) => match answer(hub, q.query) {
            Some(a) => Message::PeerPubsubAnswer(a),
            None => bad("too many channels in one pubsub query"),
        },
        Message::PeerKeysReady(k) if k.keys.len() <= MESH_ITEMS_MAX => {
            let mut woken = 0u32;
            for r in k.keys {
                let Some(db) = u8::try_from(r.db).ok().and_then(Db::new) else {
                    continue;
                };
                if waiters.wake(&(db, r.key)).is_some() {
                    woken += 1;
                }
            }
            stats
                .woken_by_peers
                .fetch_add(u64::from(woken), Ordering::Relaxed);
            Message::PeerKeysReadyAck(PeerKeysReadyAck { woken })
        }
        Message::PeerKeysReady(_) => bad("too many keys in one key-ready signal"),
        Message::Ping(p) => Message::Pong(Pong { nonce: p.nonce }),
        other => bad(&format!(
            "a proxy's mesh listener does not serve {}",
            other.name()
        )),
    }
}

/// The answer to `q` from this proxy's own subscriptions; `None` when it asks too much.
fn answer(hub: &Hub, q: PubsubQuery) -> Option<PeerPubsubAnswer> {
    let kind = |shard: bool| if shard { Kind::Shard } else { Kind::Channel };
    Some(match q {
        PubsubQuery::Channels { shard, pattern } => PeerPubsubAnswer {
            channels: hub.channels(kind(shard), pattern.as_deref()),
            counts: Vec::new(),
        },
        PubsubQuery::NumSub { shard, channels } => {
            if channels.len() > MESH_ITEMS_MAX {
                return None;
            }
            let counts = channels
                .iter()
                .map(|c: &Bytes| hub.numsub(kind(shard), c) as u64)
                .collect();
            PeerPubsubAnswer {
                channels: Vec::new(),
                counts,
            }
        }
        PubsubQuery::NumPat {} => PeerPubsubAnswer {
            channels: Vec::new(),
            counts: vec![hub.numpat() as u64],
        },
    })
}
