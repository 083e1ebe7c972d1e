//! Errors a peer can see, each with a stable numeric code (`docs/format/wire.md` §4.3).
//!
//! The code is the wire tag of [`RpcError`]; a code is never reused for another meaning. The
//! test `error_codes_are_stable` pins every code.

use crate::codec::wire_enum;
use crate::ids::{ClusterId, RangeId};
use crate::limits::LimitError;
use crate::route::{LeaderHint, RangeDescriptor};

/// An error returned by a shard or the master in place of a result.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[non_exhaustive]
pub enum RpcError {
    /// This replica is not the range's leader.
    #[error("not leader (hint: {hint:?})")]
    NotLeader {
        /// Where the leader is believed to be.
        hint: Option<LeaderHint>,
    },
    /// The request was routed with a stale epoch or the wrong range id.
    #[error("epoch mismatch ({} current ranges)", ranges.len())]
    EpochMismatch {
        /// The shard's current descriptors of the ranges overlapping the request.
        #[cfg_attr(test, proptest(strategy = "crate::arb::small_vec()"))]
        ranges: Vec<RangeDescriptor>,
    },
    /// The range is not on this shard, or the key is outside it.
    #[error("range {range_id} not found")]
    RangeNotFound {
        /// The range the request named.
        range_id: RangeId,
    },
    /// A key above the limit.
    #[error("key of {len} bytes exceeds {max}")]
    KeyTooLarge {
        /// The key's length.
        len: u32,
        /// The limit.
        max: u32,
    },
    /// A value above the limit.
    #[error("value of {len} bytes exceeds {max}")]
    ValueTooLarge {
        /// The value's length.
        len: u64,
        /// The limit.
        max: u64,
    },
    /// The store has no room (`maxdisksize` reached after garbage collection).
    #[error("disk full")]
    DiskFull {},
    /// The server is overloaded; back off and retry.
    #[error("server busy")]
    ServerBusy {},
    /// The operation timed out; its outcome is unknown.
    #[error("timeout")]
    Timeout {},
    /// A bug or an I/O failure on the server.
    #[error("internal error {code}: {message}")]
    Internal {
        /// A server-specific code.
        code: u32,
        /// What went wrong.
        message: String,
    },
    /// The key holds a value of another Redis type.
    #[error("WRONGTYPE Operation against a key holding the wrong kind of value")]
    WrongType {},
    /// The value is not an integer, or out of range.
    #[error("value is not an integer or out of range")]
    NotAnInteger {},
    /// The value is not a valid float.
    #[error("value is not a valid float")]
    NotAFloat {},
    /// An increment would overflow.
    #[error("increment or decrement would overflow")]
    Overflow {},
    /// No protocol version in common (handshake).
    #[error("no common protocol version (acceptor speaks {min}..={max})")]
    ProtocolVersion {
        /// Lowest version the acceptor speaks.
        min: u16,
        /// Highest version the acceptor speaks.
        max: u16,
    },
    /// The peer belongs to another cluster (handshake).
    #[error("cluster id mismatch (acceptor is in cluster {cluster_id})")]
    ClusterMismatch {
        /// The acceptor's cluster.
        cluster_id: ClusterId,
    },
    /// The request decoded but makes no sense.
    #[error("bad request: {message}")]
    BadRequest {
        /// What is wrong with it.
        message: String,
    },
    /// The peer did not prove knowledge of the cluster secret (handshake).
    #[error("cluster secret proof failed: the peer does not hold this cluster's secret")]
    AuthFailed {},
    /// A Redis error reply with its own prefix (`INVALIDOBJ …`, or a `WRONGTYPE` text other
    /// than the standard one), answered to the client as it is.
    #[error("{message}")]
    Redis {
        /// The whole error text, prefix included.
        message: String,
    },
}

wire_enum!(RpcError: u16, "error code" {
    1 => NotLeader { hint },
    2 => EpochMismatch { ranges },
    3 => RangeNotFound { range_id },
    4 => KeyTooLarge { len, max },
    5 => ValueTooLarge { len, max },
    6 => DiskFull {},
    7 => ServerBusy {},
    8 => Timeout {},
    9 => Internal { code, message },
    10 => WrongType {},
    11 => NotAnInteger {},
    12 => NotAFloat {},
    13 => Overflow {},
    14 => ProtocolVersion { min, max },
    15 => ClusterMismatch { cluster_id },
    16 => BadRequest { message },
    17 => AuthFailed {},
    20 => Redis { message },
});

impl RpcError {
    /// The stable numeric code (the wire tag).
    pub fn code(&self) -> u16 {
        self.tag()
    }

    /// Whether a client may retry the same request after refreshing its route.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::NotLeader { .. }
                | Self::EpochMismatch { .. }
                | Self::RangeNotFound { .. }
                | Self::ServerBusy {}
        )
    }
}

impl From<LimitError> for RpcError {
    fn from(e: LimitError) -> Self {
        let u32_of = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        match e {
            LimitError::KeyTooLarge { len, max } | LimitError::RawKeyTooLarge { len, max } => {
                RpcError::KeyTooLarge {
                    len: u32_of(len),
                    max: u32_of(max),
                }
            }
            LimitError::ValueTooLarge { len, max } => RpcError::ValueTooLarge {
                len: len as u64,
                max: max as u64,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn limit_errors_keep_their_figures_on_the_wire() {
        let e: RpcError = LimitError::ValueTooLarge { len: 2, max: 1 }.into();
        assert_eq!(e, RpcError::ValueTooLarge { len: 2, max: 1 });
        let e: RpcError = LimitError::KeyTooLarge { len: 9, max: 8 }.into();
        assert_eq!(e, RpcError::KeyTooLarge { len: 9, max: 8 });
    }

    #[test]
    fn error_codes_are_stable() {
        let cases: [(RpcError, u16); 17] = [
            (RpcError::NotLeader { hint: None }, 1),
            (RpcError::EpochMismatch { ranges: vec![] }, 2),
            (
                RpcError::RangeNotFound {
                    range_id: RangeId(1),
                },
                3,
            ),
            (RpcError::KeyTooLarge { len: 1, max: 0 }, 4),
            (RpcError::ValueTooLarge { len: 1, max: 0 }, 5),
            (RpcError::DiskFull {}, 6),
            (RpcError::ServerBusy {}, 7),
            (RpcError::Timeout {}, 8),
            (
                RpcError::Internal {
                    code: 0,
                    message: String::new(),
                },
                9,
            ),
            (RpcError::WrongType {}, 10),
            (RpcError::NotAnInteger {}, 11),
            (RpcError::NotAFloat {}, 12),
            (RpcError::Overflow {}, 13),
            (RpcError::ProtocolVersion { min: 1, max: 1 }, 14),
            (
                RpcError::ClusterMismatch {
                    cluster_id: ClusterId(1),
                },
                15,
            ),
            (
                RpcError::BadRequest {
                    message: String::new(),
                },
                16,
            ),
            (RpcError::AuthFailed {}, 17),
        ];
        for (e, code) in cases {
            assert_eq!(e.code(), code, "{e:?}");
        }
    }
}
