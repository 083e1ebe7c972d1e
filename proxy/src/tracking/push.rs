//! The pushes client-side caching sends a client (a leaf: the pub/sub mailbox carries them
//! without knowing the tracking table).

use std::sync::Arc;

use bytes::Bytes;

use crate::resp::{Protocol, Reply};

/// Redis's channel for invalidations redirected to a RESP2 connection.
pub const CHANNEL: &[u8] = b"__redis__:invalidate";

/// A push for one tracking client (in its mailbox, [`crate::pubsub::Message::tracking`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Push {
    /// These keys changed (`None`: every key, after a flush).
    Invalidate {
        /// The keys.
        keys: Option<Arc<[Bytes]>>,
        /// Sent to a `REDIRECT` target (a RESP2 target in pub/sub mode then gets it as a
        /// message of [`CHANNEL`]).
        redirected: bool,
    },
    /// The `REDIRECT` target is gone (`tracking-redir-broken`, RESP3 only).
    RedirBroken(u64),
}

impl Push {
    /// The frame a connection in `proto` writes for this push (`subscribed`: it is in
    /// pub/sub mode), or none: Redis sends a RESP2 connection nothing unless it is a
    /// redirection target in pub/sub mode.
    pub fn frame(&self, proto: Protocol, subscribed: bool) -> Option<Reply> {
        let resp3 = proto == Protocol::Resp3;
        match self {
            Push::Invalidate { keys, redirected } => {
                let keys = match keys {
                    Some(k) => Reply::Array(k.iter().cloned().map(Reply::Bulk).collect()),
                    None => Reply::Nil,
                };
                if resp3 {
                    Some(Reply::Push(vec![bulk(b"invalidate"), keys]))
                } else if *redirected && subscribed {
                    Some(Reply::Push(vec![bulk(b"message"), bulk(CHANNEL), keys]))
                } else {
                    None
                }
            }
            Push::RedirBroken(id) => resp3.then(|| {
                Reply::Push(vec![
                    bulk(b"tracking-redir-broken"),
                    Reply::Int(i64::try_from(*id).unwrap_or(i64::MAX)),
                ])
            }),
        }
    }

    /// Bytes it holds (mailbox accounting).
    pub fn cost(&self) -> usize {
        match self {
            Push::Invalidate { keys: Some(k), .. } => k.iter().map(|k| k.len() + 16).sum(),
            _ => 0,
        }
    }
}

fn bulk(b: &'static [u8]) -> Reply {
    Reply::Bulk(Bytes::from_static(b))
}
