//! `PUBLISH`, `SPUBLISH` and the `PUBSUB` counts across the proxy mesh ([`crate::mesh`]):
//! this proxy's part is computed at once, in command order (so a publisher's messages reach
//! every peer's queue in the order sent), then the peers' answers are awaited up to the
//! mesh's deadline and added (a peer that did not answer counts 0). With no peer, the reply
//! is this proxy's alone and nothing waits.

use std::collections::BTreeSet;
use std::fmt;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use net::message::{Message, PeerPublish, PeerPubsubQuery, PubsubQuery};

use super::action::{Action, AsyncCommand};
use crate::db::DbRouter;
use crate::mesh::Pending;
use crate::pubsub::Kind;
use crate::resp::Reply;
use crate::shared::Shared;

fn count(n: u64) -> Reply {
    Reply::Int(i64::try_from(n).unwrap_or(i64::MAX))
}

/// `PUBLISH` (`shard`: `SPUBLISH`): delivered here and queued to every peer; the reply is
/// the cluster-wide receiver count.
pub fn publish(shared: &Shared, channel: &Bytes, payload: &Bytes, shard: bool) -> Action {
    let local = shared.pubsub.publish(channel, payload, shard) as u64;
    if !shared.mesh.has_peers() {
        return Action::Reply(count(local));
    }
    let msg = Message::PeerPublish(PeerPublish {
        channel: channel.clone(),
        payload: payload.clone(),
        shard,
    });
    let pending = shared.mesh.send_all(&msg);
    Action::rounds(Gather {
        local: Local::Receivers(local),
        pending,
    })
}

/// Queues a message published here to every peer, without waiting for their answers
/// (keyspace notifications: the command's reply does not count receivers).
pub fn forward(shared: &Shared, channel: &Bytes, payload: &Bytes) {
    if shared.mesh.has_peers() {
        let msg = Message::PeerPublish(PeerPublish {
            channel: channel.clone(),
            payload: payload.clone(),
            shard: false,
        });
        drop(shared.mesh.send_all(&msg));
    }
}

/// `PUBSUB CHANNELS|SHARDCHANNELS [pattern]` over the cluster: the union of every proxy's.
pub fn channels(shared: &Shared, kind: Kind, pattern: Option<&Bytes>) -> Action {
    let local = shared.pubsub.channels(kind, pattern.map(|p| &p[..]));
    let query = PubsubQuery::Channels {
        shard: kind == Kind::Shard,
        pattern: pattern.cloned(),
    };
    ask(shared, query, Local::Channels(local))
}

/// `PUBSUB NUMSUB|SHARDNUMSUB channel...` over the cluster: each count summed.
pub fn numsub(shared: &Shared, kind: Kind, channels: &[Bytes]) -> Action {
    let local = channels
        .iter()
        .map(|c| (c.clone(), shared.pubsub.numsub(kind, c) as u64))
        .collect();
    let query = PubsubQuery::NumSub {
        shard: kind == Kind::Shard,
        channels: channels.to_vec(),
    };
    ask(shared, query, Local::NumSub(local))
}

/// `PUBSUB NUMPAT` over the cluster: the sum of each proxy's distinct patterns.
pub fn numpat(shared: &Shared) -> Action {
    ask(
        shared,
        PubsubQuery::NumPat {},
        Local::Receivers(shared.pubsub.numpat() as u64),
    )
}

/// Asks every peer `query`; this proxy's answer alone when there is no peer, or when it
/// names more channels than a peer accepts in one query (`MESH_ITEMS_MAX`).
fn ask(shared: &Shared, query: PubsubQuery, local: Local) -> Action {
    let too_many = matches!(&query, PubsubQuery::NumSub { channels, .. }
        if channels.len() > net::message::MESH_ITEMS_MAX);
    if !shared.mesh.has_peers() || too_many {
        return Action::Reply(local.reply());
    }
    let pending = shared
        .mesh
        .send_all(&Message::PeerPubsubQuery(PeerPubsubQuery { query }));
    Action::rounds(Gather { local, pending })
}

/// This proxy's part of an answer, to which the peers' are added.
#[derive(Debug)]
enum Local {
    /// A count (`PUBLISH` receivers, `NUMPAT`).
    Receivers(u64),
    /// Channel names.
    Channels(Vec<Bytes>),
    /// A count per channel.
    NumSub(Vec<(Bytes, u64)>),
}

impl Local {
    /// Adds one peer's answer.
    fn add(&mut self, answer: Message) {
        match (self, answer) {
            (Local::Receivers(n), Message::PeerReceivers(r)) => *n += r.receivers,
            (Local::Receivers(n), Message::PeerPubsubAnswer(a)) => {
                *n += a.counts.first().copied().unwrap_or(0);
            }
            (Local::Channels(names), Message::PeerPubsubAnswer(a)) => names.extend(a.channels),
            (Local::NumSub(counts), Message::PeerPubsubAnswer(a)) => {
                for ((_, n), m) in counts.iter_mut().zip(a.counts) {
                    *n += m;
                }
            }
            (_, other) => tracing::debug!("mesh peer answered {}", other.name()),
        }
    }

    fn reply(self) -> Reply {
        match self {
            Local::Receivers(n) => count(n),
            Local::Channels(names) => {
                let unique: BTreeSet<Bytes> = names.into_iter().collect();
                Reply::Array(unique.into_iter().map(Reply::Bulk).collect())
            }
            Local::NumSub(counts) => Reply::Array(
                counts
                    .into_iter()
                    .flat_map(|(c, n)| [Reply::Bulk(c), count(n)])
                    .collect(),
            ),
        }
    }
}

/// Waits for the peers' answers and adds them to this proxy's part.
struct Gather {
    local: Local,
    pending: Pending,
}

impl fmt::Debug for Gather {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Gather")
            .field("local", &self.local)
            .finish()
    }
}

impl AsyncCommand for Gather {
    fn run<'a>(self: Box<Self>, _router: &'a DbRouter<'_>) -> BoxFuture<'a, Reply> {
        Box::pin(async move {
            let Gather { mut local, pending } = *self;
            for answer in pending.answers().await {
                local.add(answer);
            }
            local.reply()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use net::message::{PeerPubsubAnswer, PeerReceivers};

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    #[test]
    fn peers_answers_add_up_to_the_cluster_wide_reply() {
        let mut r = Local::Receivers(2);
        r.add(Message::PeerReceivers(PeerReceivers { receivers: 3 }));
        assert_eq!(r.reply(), Reply::Int(5));
        let mut c = Local::Channels(vec![b("a"), b("b")]);
        c.add(Message::PeerPubsubAnswer(PeerPubsubAnswer {
            channels: vec![b("b"), b("c")],
            counts: vec![],
        }));
        let names = |r: Reply| match r {
            Reply::Array(v) => v.len(),
            _ => 0,
        };
        assert_eq!(names(c.reply()), 3);
        let mut n = Local::NumSub(vec![(b("a"), 1), (b("b"), 0)]);
        n.add(Message::PeerPubsubAnswer(PeerPubsubAnswer {
            channels: vec![],
            counts: vec![2, 4],
        }));
        let expected = vec![
            Reply::Bulk(b("a")),
            Reply::Int(3),
            Reply::Bulk(b("b")),
            Reply::Int(4),
        ];
        assert_eq!(n.reply(), Reply::Array(expected));
    }
}
