//! Identifiers that both halves of a node name: the shard log and the engines (`engines`)
//! and the wire protocol (`net`). One type each, so that a range id read from the log and one
//! read from a message are the same value of the same type, never two bridged by hand.
//!
//! This crate depends on nothing (`proptest` only behind its feature, for other crates'
//! property tests); `net` gives the ids their wire encoding.

macro_rules! id_newtype {
    ($(#[$doc:meta])* $name:ident($t:ty)) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
        #[cfg_attr(feature = "proptest", derive(proptest_derive::Arbitrary))]
        pub struct $name(pub $t);

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_display_as_their_number() {
        assert_eq!(RangeId(7).to_string(), "7");
        assert_eq!(ShardId(2).to_string(), "2");
    }
}
