//! Messages between proxies of one cluster: the mesh (`docs/format/wire.md` §4.6, protocol
//! version 5). A proxy publishes to its peers' subscribers, asks their pub/sub counts and
//! tells them which keys a write may have fed (so their blocked pops wake at once); since
//! version 6 it also carries `CLIENT PAUSE` / `UNPAUSE` to their clients, and since version 7
//! the invalidations of client-side caching (`CLIENT TRACKING`).

use bytes::{Bytes, BytesMut};

use crate::codec::{DecodeError, Reader, Wire, wire_enum, wire_struct};

/// Items of a list in one mesh message at most (channels asked, keys signalled): a receiver
/// refuses more with `BadRequest`.
pub const MESH_ITEMS_MAX: usize = 1_024;

/// A message published through the sender, for the receiver's own subscribers.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct PeerPublish {
    /// The channel (a shard channel with `shard`).
    #[cfg_attr(test, proptest(strategy = "crate::arb::bytes()"))]
    pub channel: Bytes,
    /// The payload.
    #[cfg_attr(test, proptest(strategy = "crate::arb::bytes()"))]
    pub payload: Bytes,
    /// Published with `SPUBLISH`.
    pub shard: bool,
}
wire_struct!(PeerPublish {
    channel,
    payload,
    shard
});

/// The answer to [`PeerPublish`]: the receiver's subscribers that got the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct PeerReceivers {
    /// Receivers (a pattern subscriber once per matching pattern, as in Redis).
    pub receivers: u64,
}
wire_struct!(PeerReceivers { receivers });

/// A `PUBSUB` question about the receiver's own subscriptions.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum PubsubQuery {
    /// Active channels (shard channels with `shard`) matching `pattern` (all when absent).
    Channels {
        /// Shard channels instead of channels.
        shard: bool,
        /// A glob pattern.
        #[cfg_attr(test, proptest(strategy = "crate::arb::opt_bytes()"))]
        pattern: Option<Bytes>,
    },
    /// Subscribers of each channel (shard channels with `shard`).
    NumSub {
        /// Shard channels instead of channels.
        shard: bool,
        /// The channels (at most [`MESH_ITEMS_MAX`]).
        #[cfg_attr(test, proptest(strategy = "crate::arb::bytes_vec()"))]
        channels: Vec<Bytes>,
    },
    /// Distinct patterns subscribed to.
    NumPat {},
}
wire_enum!(PubsubQuery: u8, "pubsub query" {
    1 => Channels { shard, pattern },
    2 => NumSub { shard, channels },
    3 => NumPat {},
});

/// Asks a peer one [`PubsubQuery`]; the answer is [`PeerPubsubAnswer`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct PeerPubsubQuery {
    /// The question.
    pub query: PubsubQuery,
}
wire_struct!(PeerPubsubQuery { query });

/// The answer to [`PeerPubsubQuery`]: channel names for `Channels`, counts for `NumSub` (one
/// per channel asked, in order) and `NumPat` (one).
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct PeerPubsubAnswer {
    /// Channel names.
    #[cfg_attr(test, proptest(strategy = "crate::arb::bytes_vec()"))]
    pub channels: Vec<Bytes>,
    /// Counts.
    #[cfg_attr(test, proptest(strategy = "crate::arb::small_vec()"))]
    pub counts: Vec<u64>,
}
wire_struct!(PeerPubsubAnswer { channels, counts });

/// A key a write may have fed, in its database.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct ReadyKey {
    /// The database (0..=15 in Redis terms; the receiver ignores any it does not have).
    pub db: u32,
    /// The user key.
    #[cfg_attr(test, proptest(strategy = "crate::arb::bytes()"))]
    pub key: Bytes,
}
wire_struct!(ReadyKey { db, key });

/// Keys a write through the sender may have fed (a push, a move, a sorted-set add): the
/// receiver wakes its first blocked waiter of each. The answer is [`PeerKeysReadyAck`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct PeerKeysReady {
    /// The keys (at most [`MESH_ITEMS_MAX`]).
    #[cfg_attr(test, proptest(strategy = "crate::arb::small_vec()"))]
    pub keys: Vec<ReadyKey>,
}
wire_struct!(PeerKeysReady { keys });

/// The answer to [`PeerKeysReady`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct PeerKeysReadyAck {
    /// Waiters woken.
    pub woken: u32,
}
wire_struct!(PeerKeysReadyAck { woken });

/// A `CLIENT PAUSE` or `CLIENT UNPAUSE` run on the sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum PauseOrder {
    /// `CLIENT UNPAUSE`.
    Unpause {},
    /// `CLIENT PAUSE … WRITE`, `for_ms` milliseconds left at the sender.
    Write {
        /// Milliseconds the pause has left.
        for_ms: u64,
    },
    /// `CLIENT PAUSE … ALL`, `for_ms` milliseconds left at the sender.
    All {
        /// Milliseconds the pause has left.
        for_ms: u64,
    },
}
wire_enum!(PauseOrder: u8, "pause order" {
    1 => Unpause {},
    2 => Write { for_ms },
    3 => All { for_ms },
});

/// A pause or unpause for the receiver's own clients (version 6); the answer is
/// [`PeerPauseAck`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct PeerPause {
    /// What to do.
    pub order: PauseOrder,
}
wire_struct!(PeerPause { order });

/// The answer to [`PeerPause`]: applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct PeerPauseAck {}
impl Wire for PeerPauseAck {
    fn encode(&self, _buf: &mut BytesMut) {}
    fn decode(_r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(Self {})
    }
}

/// Keys whose copies cached by the receiver's tracking clients (`CLIENT TRACKING`) are stale
/// (version 7); the answer is [`PeerInvalidateAck`]. Also a proxy's announcement that it has
/// tracking clients: only proxies that announced one within the last minute get the
/// invalidations of the others' writes.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct PeerInvalidate {
    /// The keys (at most [`MESH_ITEMS_MAX`]); empty for a flush or an announcement alone.
    #[cfg_attr(test, proptest(strategy = "crate::arb::bytes_vec()"))]
    pub keys: Vec<Bytes>,
    /// Every key (`FLUSHALL`, `FLUSHDB`): cached copies of any key are stale.
    pub flush: bool,
    /// 0: stale now; otherwise the keys expire at this time (milliseconds since the Unix
    /// epoch) and are stale from then on.
    pub at_ms: u64,
    /// The sender has clients in tracking mode.
    pub tracking: bool,
}
wire_struct!(PeerInvalidate {
    keys,
    flush,
    at_ms,
    tracking
});

/// The answer to [`PeerInvalidate`]: applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct PeerInvalidateAck {}
impl Wire for PeerInvalidateAck {
    fn encode(&self, _buf: &mut BytesMut) {}
    fn decode(_r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(Self {})
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{Wire, decode_exact};
    use bytes::BytesMut;

    fn round_trip<T: Wire + PartialEq + std::fmt::Debug>(m: &T) {
        let mut buf = BytesMut::new();
        m.encode(&mut buf);
        let back: T = decode_exact(buf.freeze()).expect("decodes");
        assert_eq!(&back, m);
    }

    #[test]
    fn pause_orders_round_trip_and_an_unknown_order_is_refused() {
        for order in [
            PauseOrder::Unpause {},
            PauseOrder::Write { for_ms: 60_000 },
            PauseOrder::All { for_ms: u64::MAX },
        ] {
            round_trip(&PeerPause { order });
        }
        round_trip(&PeerPauseAck {});
        let bad: Result<PeerPause, _> = decode_exact(bytes::Bytes::from_static(&[9]));
        assert!(bad.is_err());
    }

    #[test]
    fn mesh_messages_round_trip_and_an_unknown_query_tag_is_refused() {
        round_trip(&PeerPublish {
            channel: Bytes::from_static(b"news"),
            payload: Bytes::from_static(b"hi"),
            shard: true,
        });
        round_trip(&PeerPubsubQuery {
            query: PubsubQuery::Channels {
                shard: false,
                pattern: Some(Bytes::from_static(b"n*")),
            },
        });
        round_trip(&PeerPubsubQuery {
            query: PubsubQuery::NumSub {
                shard: true,
                channels: vec![Bytes::from_static(b"a"), Bytes::new()],
            },
        });
        round_trip(&PeerKeysReady {
            keys: vec![ReadyKey {
                db: 3,
                key: Bytes::from_static(b"q"),
            }],
        });
        // Tag 9 is no query.
        let bad = Bytes::from_static(&[9]);
        assert!(decode_exact::<PeerPubsubQuery>(bad).is_err());
    }
}
