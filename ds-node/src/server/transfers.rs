//! Snapshot transfers a shard is receiving or sending: the state [`super::snapshot`] works
//! on, kept in the shard state (a leaf: imports no other `server` module).
//!
//! Bounds: at most [`MAX_INCOMING`] transfers in per shard (including complete ones not yet
//! used); unfinished or unused transfers are dropped after [`TRANSFER_TTL`].

use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use net::message::SnapshotChunk;
use raft::eraftpb::Message as RaftMsg;

use crate::range::checkpoint::{self, CheckpointMeta};

/// Most snapshot transfers a shard receives at once (including complete ones not yet used).
pub const MAX_INCOMING: usize = 4;
/// How long an unfinished or unused transfer is kept.
pub const TRANSFER_TTL: Duration = Duration::from_secs(60);

/// A transfer being received.
#[derive(Debug)]
struct Incoming {
    range: net::RangeId,
    next_seq: u32,
    data: Vec<u8>,
    started: Instant,
}

/// A complete, checked transfer waiting for its `MsgSnapshot`.
#[derive(Debug, Clone)]
pub struct Received {
    /// The checkpoint bytes (checksum verified).
    pub data: Rc<Vec<u8>>,
    /// Its identity.
    pub meta: CheckpointMeta,
    at: Instant,
}

/// What one accepted chunk did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accepted {
    /// More chunks to come.
    Partial,
    /// The last chunk: the transfer is complete and checked.
    Complete,
}

/// Snapshot transfers of one shard.
#[derive(Debug, Default)]
pub struct Transfers {
    incoming: HashMap<u64, Incoming>,
    received: HashMap<u64, Received>,
    /// Transfers being sent.
    pub sending: usize,
    next_id: u64,
}

impl Transfers {
    fn expire(&mut self, now: Instant) {
        self.incoming
            .retain(|_, t| now.duration_since(t.started) < TRANSFER_TTL);
        self.received
            .retain(|_, t| now.duration_since(t.at) < TRANSFER_TTL);
    }

    /// Takes the complete transfer `id` of `range`.
    pub fn take(&mut self, id: u64, range: net::RangeId) -> Option<Received> {
        match self.received.get(&id) {
            Some(r) if r.meta.desc.id == range => self.received.remove(&id),
            _ => None,
        }
    }

    /// The next number for a transfer this shard sends (callers mix in store and shard).
    pub fn next_send_number(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// Takes one chunk of an incoming transfer: checks order, bounds (`max_bytes`, at most
    /// [`MAX_INCOMING`] transfers) and, on the last chunk, the checkpoint it completes. A
    /// refused chunk drops its transfer; the error says why. `now` is the shard's clock.
    pub fn accept(
        &mut self,
        c: &SnapshotChunk,
        max_bytes: u64,
        now: Instant,
    ) -> Result<Accepted, String> {
        self.expire(now);
        let id = c.snapshot_id;
        let refused = self.accept_chunk(c, max_bytes, now);
        if refused.is_err() {
            self.incoming.remove(&id);
        }
        refused
    }

    fn accept_chunk(
        &mut self,
        c: &SnapshotChunk,
        max_bytes: u64,
        now: Instant,
    ) -> Result<Accepted, String> {
        let id = c.snapshot_id;
        if c.seq == 0 {
            if self.incoming.len() + self.received.len() >= MAX_INCOMING
                || self.incoming.contains_key(&id)
            {
                return Err("too many transfers".into());
            }
            self.incoming.insert(
                id,
                Incoming {
                    range: c.range_id,
                    next_seq: 0,
                    data: Vec::new(),
                    started: now,
                },
            );
        }
        let Some(inc) = self.incoming.get_mut(&id) else {
            return Err("unknown transfer".into());
        };
        if inc.next_seq != c.seq || inc.range != c.range_id {
            return Err("out of order".into());
        }
        if (inc.data.len() + c.data.len()) as u64 > max_bytes {
            return Err("larger than max-snapshot-bytes".into());
        }
        inc.data.extend_from_slice(&c.data);
        inc.next_seq += 1;
        if !c.last {
            return Ok(Accepted::Partial);
        }
        let Some(inc) = self.incoming.remove(&id) else {
            return Err("unknown transfer".into());
        };
        if checkpoint::has_cold(&inc.data) {
            // Pointers name the sender's shard log: a snapshot must carry values.
            return Err("snapshot with cold entries".into());
        }
        match checkpoint::decode_meta(&inc.data) {
            Ok(meta) if meta.desc.id == inc.range => {
                self.received.insert(
                    id,
                    Received {
                        data: Rc::new(inc.data),
                        meta,
                        at: now,
                    },
                );
                Ok(Accepted::Complete)
            }
            Ok(_) => Err("snapshot of another range".into()),
            Err(e) => Err(e.to_string()),
        }
    }
}

/// The transfer id a `MsgSnapshot`'s data names.
pub fn transfer_id(m: &RaftMsg) -> Option<u64> {
    let d = &m.get_snapshot().data;
    (d.len() == 8).then(|| {
        let mut a = [0u8; 8];
        a.copy_from_slice(d);
        u64::from_le_bytes(a)
    })
}
