//! Capacity pre-allocation: the `Provisioning` records of the master's durable state
//! (`docs/format/master-log.md` §4, tags 10 and 11) and the arithmetic that keeps two
//! expansions started at once from over-committing. Pure: no clock, no I/O.
//!
//! A record is created `Requested` by [`crate::state::Command::RequestCapacity`] together
//! with the limit it was checked against, so the check is part of the replicated state
//! machine: requests are applied one at a time, and the second of two concurrent requests
//! already sees the first one's nodes as "coming".

use std::fmt;

use bytes::BytesMut;
use net::StoreId;
use net::codec::{DecodeError, Reader, Wire};

use crate::codec::disk_struct;

/// Identifies a provisioning request (allocated from the master's id space).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ProvisionId(pub u64);

impl fmt::Display for ProvisionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl Wire for ProvisionId {
    fn encode(&self, buf: &mut BytesMut) {
        self.0.encode(buf);
    }
    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        u64::decode(r).map(Self)
    }
}

/// What a request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProvisionKind {
    /// More nodes.
    Expand,
    /// One node fewer: drain it, then stop it.
    Shrink,
}

/// Where a request is in its life.
///
/// Expand: `Requested` (the provisioner was asked; capacity pre-allocated) → `Online` (every
/// node registered) → `Done` (ranges moved onto them). Shrink: `Requested` (the store is
/// offline and draining) → `Online` (drained; the provisioner was asked to stop it) → `Done`
/// (the store is a tombstone). Either may end `Failed` (provisioner error, deadline passed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProvisionState {
    /// Asked for, not there yet.
    Requested,
    /// Expand: the nodes are up. Shrink: drained, stop requested.
    Online,
    /// Finished.
    Done,
    /// Gave up.
    Failed,
}

macro_rules! tag_enum {
    ($name:ident, $what:literal { $($tag:literal => $variant:ident),* $(,)? }) => {
        impl Wire for $name {
            fn encode(&self, buf: &mut BytesMut) {
                let tag: u8 = match self { $( Self::$variant => $tag, )* };
                tag.encode(buf);
            }
            fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
                match r.u8($what)? {
                    $( $tag => Ok(Self::$variant), )*
                    tag => Err(DecodeError::UnknownTag { what: $what, tag: tag.into() }),
                }
            }
        }
    };
}

tag_enum!(ProvisionKind, "provision kind" { 0 => Expand, 1 => Shrink });
tag_enum!(ProvisionState, "provision state" { 0 => Requested, 1 => Online, 2 => Done, 3 => Failed });

impl ProvisionKind {
    /// `expand` / `shrink`.
    pub fn label(self) -> &'static str {
        match self {
            Self::Expand => "expand",
            Self::Shrink => "shrink",
        }
    }
}

impl ProvisionState {
    /// `requested` / `online` / `done` / `failed`.
    pub fn label(self) -> &'static str {
        match self {
            Self::Requested => "requested",
            Self::Online => "online",
            Self::Done => "done",
            Self::Failed => "failed",
        }
    }

    /// Whether the request is over (its capacity is no longer pre-allocated).
    pub fn is_final(self) -> bool {
        matches!(self, Self::Done | Self::Failed)
    }

    /// Whether `self → to` is a legal step.
    pub fn may_become(self, to: Self) -> bool {
        use ProvisionState::*;
        matches!(
            (self, to),
            (Requested, Requested | Online | Failed) | (Online, Online | Done | Failed)
        )
    }
}

/// A capacity request in the master's books.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provisioning {
    /// Request id; never 0.
    pub id: ProvisionId,
    /// Expand or shrink.
    pub kind: ProvisionKind,
    /// Expand: nodes requested (1 ..= [`MAX_NODES_PER_REQUEST`]). Shrink: 1.
    pub nodes: u32,
    /// Expand: the stores that came online for it (at most `nodes`). Shrink: the store
    /// being removed (exactly one).
    pub stores: Vec<StoreId>,
    /// Where it is.
    pub state: ProvisionState,
    /// When it was requested (master clock, unix ms).
    pub requested_ms: u64,
    /// It fails if not `Online` by then (master clock, unix ms).
    pub deadline_ms: u64,
    /// Why (the figures that triggered it, or "ctl"); at most [`MAX_REASON_BYTES`].
    pub reason: String,
}
disk_struct!(Provisioning {
    id,
    kind,
    nodes,
    stores,
    state,
    requested_ms,
    deadline_ms,
    reason
});

/// Most nodes one expand request asks for.
pub const MAX_NODES_PER_REQUEST: u32 = 64;
/// Longest `reason`.
pub const MAX_REASON_BYTES: usize = 512;
/// Requests not yet final, at most (a bound on the books, not a cluster size).
pub const MAX_ACTIVE: usize = 16;
/// Final requests kept for the admin pages (the oldest are dropped on apply).
pub const FINISHED_KEPT: usize = 32;

impl Provisioning {
    /// Nodes requested but not online yet (pre-allocated capacity); 0 once final.
    pub fn coming(&self) -> u32 {
        if self.kind != ProvisionKind::Expand || self.state.is_final() {
            return 0;
        }
        self.nodes.saturating_sub(self.stores.len() as u32)
    }

    /// Checks the record's own shape (not against the cluster).
    pub fn check_shape(&self) -> Result<(), String> {
        if self.id == ProvisionId(0) {
            return Err("provision id 0".into());
        }
        if self.reason.len() > MAX_REASON_BYTES {
            return Err(format!("reason longer than {MAX_REASON_BYTES} bytes"));
        }
        match self.kind {
            ProvisionKind::Expand => {
                if !(1..=MAX_NODES_PER_REQUEST).contains(&self.nodes) {
                    return Err(format!("expand by {} nodes", self.nodes));
                }
                if self.stores.len() > self.nodes as usize {
                    return Err("more stores than nodes requested".into());
                }
                if self.state == ProvisionState::Online && self.stores.len() != self.nodes as usize
                {
                    return Err("online before every node registered".into());
                }
            }
            ProvisionKind::Shrink => {
                if self.nodes != 1 || self.stores.len() != 1 {
                    return Err("a shrink removes exactly one store".into());
                }
            }
        }
        let mut ids = self.stores.clone();
        ids.sort_unstable();
        if ids.windows(2).any(|w| w[0] == w[1]) {
            return Err("a store listed twice".into());
        }
        Ok(())
    }
}

/// The cluster's node count as the planner sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Capacity {
    /// Stores up (not offline, not tombstones).
    pub up: u32,
    /// Nodes requested by expansions, not online yet.
    pub coming: u32,
    /// Stores being drained by shrinks not yet done.
    pub leaving: u32,
}

impl Capacity {
    /// Nodes the cluster will have once every request in flight completes.
    pub fn committed(&self) -> u32 {
        self.up + self.coming
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expand(nodes: u32, stores: Vec<u64>, state: ProvisionState) -> Provisioning {
        Provisioning {
            id: ProvisionId(5),
            kind: ProvisionKind::Expand,
            nodes,
            stores: stores.into_iter().map(StoreId).collect(),
            state,
            requested_ms: 1,
            deadline_ms: 2,
            reason: "ops/s 900 > 500".into(),
        }
    }

    #[test]
    fn a_record_round_trips_through_its_encoding() {
        let p = expand(2, vec![7], ProvisionState::Requested);
        let bytes = net::codec::encode_to_bytes(&p);
        assert_eq!(net::codec::decode_exact::<Provisioning>(bytes).unwrap(), p);
    }

    #[test]
    fn only_nodes_not_yet_online_count_as_coming() {
        assert_eq!(expand(3, vec![], ProvisionState::Requested).coming(), 3);
        assert_eq!(expand(3, vec![1], ProvisionState::Requested).coming(), 2);
        assert_eq!(expand(1, vec![1], ProvisionState::Online).coming(), 0);
        assert_eq!(expand(3, vec![], ProvisionState::Failed).coming(), 0);
    }

    #[test]
    fn final_states_never_change_and_online_never_goes_back() {
        use ProvisionState::*;
        for to in [Requested, Online, Done, Failed] {
            assert!(!Done.may_become(to));
            assert!(!Failed.may_become(to));
        }
        assert!(!Online.may_become(Requested));
        assert!(!Requested.may_become(Done));
        assert!(Requested.may_become(Online));
        assert!(Online.may_become(Done));
    }

    #[test]
    fn malformed_records_are_refused() {
        let mut p = expand(0, vec![], ProvisionState::Requested);
        assert!(p.check_shape().is_err());
        p.nodes = 1;
        p.stores = vec![StoreId(1), StoreId(2)];
        assert!(p.check_shape().is_err());
        p.nodes = 2;
        p.stores = vec![StoreId(1), StoreId(1)];
        assert!(p.check_shape().is_err());
        p.stores = vec![StoreId(1)];
        p.state = ProvisionState::Online;
        assert!(p.check_shape().is_err(), "online with a node missing");
        p.kind = ProvisionKind::Shrink;
        assert!(p.check_shape().is_err(), "shrink of nodes != 1");
    }

    proptest::proptest! {
        #[test]
        fn any_record_round_trips_and_any_bytes_decode_without_panic(
            id in 1u64..,
            shrink in proptest::bool::ANY,
            nodes in 0u32..100,
            stores in proptest::collection::vec(0u64..50, 0..5),
            state in 0u8..4,
            requested_ms in 0u64..,
            deadline_ms in 0u64..,
            reason in ".{0,40}",
            junk in proptest::collection::vec(proptest::num::u8::ANY, 0..64),
        ) {
            let p = Provisioning {
                id: ProvisionId(id),
                kind: if shrink { ProvisionKind::Shrink } else { ProvisionKind::Expand },
                nodes,
                stores: stores.into_iter().map(StoreId).collect(),
                state: [
                    ProvisionState::Requested,
                    ProvisionState::Online,
                    ProvisionState::Done,
                    ProvisionState::Failed,
                ][usize::from(state)],
                requested_ms,
                deadline_ms,
                reason,
            };
            let bytes = net::codec::encode_to_bytes(&p);
            proptest::prop_assert_eq!(net::codec::decode_exact::<Provisioning>(bytes).unwrap(), p);
            let _ = net::codec::decode_exact::<Provisioning>(bytes::Bytes::from(junk));
        }
    }
}
