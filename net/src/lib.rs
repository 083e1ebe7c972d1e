//! `net`: the one protocol for proxy ↔ DS, DS ↔ DS and anything ↔ master
//! (`docs/format/wire.md`).
//!
//! Modules, bottom up:
//! - [`codec`]: the payload encoding (fixed little-endian layouts) and a bounds-checked reader.
//! - [`ids`]: newtypes for every identifier; [`keyspace`]: hash slots and the internal key a
//!   Redis key is routed by; [`limits`]: key, element and value size limits.
//! - [`frame`]: `len | kind | flags | request id | payload | crc32c` frames; a sans-IO decoder.
//! - [`message`]: the typed messages and their frame kinds; [`error`]: errors with stable codes.
//! - [`auth`]: the cluster secret and the handshake's proofs of it.
//! - [`conn`]: the sans-IO connection state (handshake, frames in, messages out) that both
//!   transports drive.
//! - `tokio_transport` (feature `tokio`) and `glommio_transport` (feature `glommio`): TCP
//!   transports with many requests in flight per connection, pools, timeouts and backpressure.
//!
//! Dependencies: no workspace crate. This crate must not depend on `engines` or `nvme`.
//! Threading: the codec is plain data; the tokio transport is `Send`, the glommio transport
//! lives on one executor (shard) and is `!Send`.
#![deny(missing_docs)]
#![deny(unsafe_code)]

pub mod auth;
pub mod codec;
pub mod conn;
pub mod error;
pub mod frame;
pub mod ids;
pub mod keyspace;
pub mod limits;
pub mod message;
pub mod redis_num;
pub mod route_cache;
pub mod transport;

#[cfg(feature = "glommio")]
pub mod glommio_transport;
#[cfg(feature = "tokio")]
pub mod tokio_transport;

pub use error::RpcError;
pub use frame::{DEFAULT_MAX_FRAME_BYTES, Frame, FrameDecoder, FrameError};
pub use ids::*;
pub use message::Message;

/// Strategies for property tests of messages.
#[cfg(test)]
mod arb {
    use bytes::Bytes;
    use proptest::prelude::*;

    pub fn bytes() -> impl Strategy<Value = Bytes> {
        prop::collection::vec(any::<u8>(), 0..48).prop_map(Bytes::from)
    }
    pub fn opt_bytes() -> impl Strategy<Value = Option<Bytes>> {
        prop::option::of(bytes())
    }
    pub fn bytes_vec() -> impl Strategy<Value = Vec<Bytes>> {
        prop::collection::vec(bytes(), 0..6)
    }
    pub fn opt_bytes_vec() -> impl Strategy<Value = Vec<Option<Bytes>>> {
        prop::collection::vec(opt_bytes(), 0..6)
    }
    pub fn pairs() -> impl Strategy<Value = Vec<(Bytes, Bytes)>> {
        prop::collection::vec((bytes(), bytes()), 0..6)
    }
    pub fn scored() -> impl Strategy<Value = Vec<(Bytes, f64)>> {
        prop::collection::vec(
            (
                bytes(),
                any::<f64>().prop_filter("not NaN", |f| !f.is_nan()),
            ),
            0..6,
        )
    }
    pub fn floats() -> impl Strategy<Value = Vec<Option<f64>>> {
        prop::collection::vec(
            prop::option::of(any::<f64>().prop_filter("not NaN", |f| !f.is_nan())),
            0..6,
        )
    }
    pub fn opt_ints() -> impl Strategy<Value = Vec<Option<i64>>> {
        prop::collection::vec(prop::option::of(any::<i64>()), 0..6)
    }
    pub fn ints() -> impl Strategy<Value = Vec<i64>> {
        prop::collection::vec(any::<i64>(), 0..6)
    }
    pub fn small_vec<T: Arbitrary>() -> impl Strategy<Value = Vec<T>> {
        prop::collection::vec(any::<T>(), 0..4)
    }
    pub fn watches() -> impl Strategy<Value = Vec<crate::message::kv::Watch>> {
        prop::collection::vec(
            (bytes(), any::<u64>())
                .prop_map(|(key, digest)| crate::message::kv::Watch { key, digest }),
            0..3,
        )
    }
    /// The operation of an `InDb` (no `InDb` inside).
    pub fn boxed_leaf_op() -> impl Strategy<Value = Box<crate::message::kv::KvOp>> {
        use crate::message::kv::KvOp;
        prop_oneof![
            bytes().prop_map(|key| KvOp::StrGet { key }),
            Just(KvOp::DbFlush {}),
            leaf_ops().prop_map(|ops| KvOp::Multi {
                watches: vec![],
                ops
            }),
        ]
        .prop_map(Box::new)
    }
    /// Operations of a `Multi` (no nested `Multi`).
    pub fn leaf_ops() -> impl Strategy<Value = Vec<crate::message::kv::KvOp>> {
        use crate::message::kv::KvOp;
        let op = prop_oneof![
            bytes().prop_map(|key| KvOp::StrGet { key }),
            (bytes(), any::<i64>()).prop_map(|(key, delta)| KvOp::StrIncrBy { key, delta }),
            bytes().prop_map(|key| KvOp::KeyDigest { key }),
            Just(KvOp::RangeFlush {}),
            (any::<crate::keyspace::Db>(), bytes()).prop_map(|(db, key)| KvOp::InDb {
                db,
                op: Box::new(KvOp::KeyDel { key })
            }),
        ];
        prop::collection::vec(op, 0..4)
    }
    /// Results of a `Multi` (no nested `Multi`).
    pub fn leaf_responses() -> impl Strategy<Value = Vec<crate::message::kv::KvResponse>> {
        use crate::message::kv::{KvResponse, OpResult};
        let r = prop_oneof![
            any::<i64>().prop_map(|value| KvResponse::Ok {
                result: OpResult::Int { value }
            }),
            opt_bytes().prop_map(|value| KvResponse::Ok {
                result: OpResult::Value { value }
            }),
            any::<crate::RpcError>().prop_map(|error| KvResponse::Err { error }),
        ];
        prop::collection::vec(r, 0..4)
    }
}
