//! `net`: the one protocol for proxy ↔ DS, DS ↔ DS and anything ↔ master
//! (`docs/format/wire.md`).
//!
//! Modules, bottom up:
//! - [`codec`]: the payload encoding (fixed little-endian layouts) and a bounds-checked reader.
//! - [`ids`]: newtypes for every identifier; [`keyspace`]: hash slots and the internal key a
//!   Redis key is routed by; [`limits`]: key, element and value size limits (sizes only);
//!   [`route`]: range descriptors, replicas and leader hints.
//! - [`frame`]: `len | kind | flags | request id | payload | crc32c` frames; a sans-IO decoder.
//! - [`error`]: errors with stable codes; [`message`]: the typed messages and their frame kinds,
//!   each checking its own keys and values against [`limits`].
//! - [`auth`]: the cluster secret and the handshake's proofs of it; [`tls`]: optional mutual
//!   TLS (rustls) under the handshake.
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
pub mod redis_args;
pub mod redis_num;
pub mod route;
pub mod route_cache;
pub mod tls;
pub mod transport;

#[cfg(feature = "glommio")]
pub mod glommio_transport;
#[cfg(feature = "tokio")]
pub mod tokio_transport;

pub use error::RpcError;
pub use frame::{DEFAULT_MAX_FRAME_BYTES, Frame, FrameDecoder, FrameError};
pub use ids::*;
pub use message::Message;

/// Strategies for property tests of messages (generic ones; each message module keeps its own).
#[cfg(test)]
mod arb;
