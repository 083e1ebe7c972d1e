//! Newtypes for every identifier that crosses a module or process boundary.

use bytes::BytesMut;

use crate::codec::{DecodeError, Reader, Wire};

macro_rules! id_newtype {
    ($(#[$doc:meta])* $name:ident($t:ty)) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
        #[cfg_attr(test, derive(proptest_derive::Arbitrary))]
        pub struct $name(pub $t);

        impl Wire for $name {
            fn encode(&self, buf: &mut BytesMut) {
                self.0.encode(buf);
            }
            fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
                Ok(Self(<$t>::decode(r)?))
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

id_newtype!(
    /// A range (one Raft group), unique in the cluster.
    RangeId(u64)
);
id_newtype!(
    /// A storage node (DS process), unique in the cluster.
    StoreId(u64)
);
id_newtype!(
    /// A shard (core) of a storage node: 0-based index.
    ShardId(u32)
);
id_newtype!(
    /// A replica of a range; the Raft peer id.
    ReplicaId(u64)
);
id_newtype!(
    /// The cluster, chosen at bootstrap; 0 means "not bootstrapped yet".
    ClusterId(u64)
);
id_newtype!(
    /// Any process that takes part in a handshake (store, proxy, master).
    NodeId(u64)
);
id_newtype!(
    /// A TSO timestamp: physical milliseconds << 18 | logical.
    Timestamp(u64)
);
id_newtype!(
    /// Pairs a response with its request on one connection.
    RequestId(u64)
);

/// The version of a range's descriptor: `conf_ver` grows with membership changes, `version`
/// with splits and merges. A request routed with an older epoch is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct Epoch {
    /// Membership change counter.
    pub conf_ver: u64,
    /// Split/merge counter.
    pub version: u64,
}
crate::codec::wire_struct!(Epoch { conf_ver, version });
