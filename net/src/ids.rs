//! Newtypes for every identifier that crosses a module or process boundary (those the shard
//! log shares come from the `ids` crate).

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

pub use ids::{RangeId, ReplicaId, ShardId, StoreId};

macro_rules! wire_id {
    ($($name:ident($t:ty)),* $(,)?) => {
        $(
            impl Wire for $name {
                fn encode(&self, buf: &mut BytesMut) {
                    self.0.encode(buf);
                }
                fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
                    Ok(Self(<$t>::decode(r)?))
                }
            }
        )*
    };
}

// The ids the shard log shares (crate `ids`) get their wire encoding here.
wire_id!(RangeId(u64), StoreId(u64), ShardId(u32), ReplicaId(u64));

id_newtype!(
    /// The cluster, chosen at bootstrap; 0 means "not bootstrapped yet".
    ClusterId(u64)
);
id_newtype!(
    /// Any process that takes part in a handshake (store, proxy, master).
    NodeId(u64)
);
id_newtype!(
    /// A proxy of the mesh, chosen at random when it starts (0: none).
    ProxyId(u64)
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
