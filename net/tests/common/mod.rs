//! Helpers shared by the transport tests: a handler that answers out of order, and a raw
//! socket that speaks garbage.
#![allow(clippy::unwrap_used)] // a test fails by panicking
#![allow(dead_code)]

pub mod pki;

use bytes::Bytes;
use net::ids::{ClusterId, NodeId};
use net::message::handshake::{Acceptor, Hello, Role};
use net::message::kv::{KvOp, KvRequest, KvResponse, OpResult};
use net::message::{Message, Ping, Pong};

pub const CLUSTER: ClusterId = ClusterId(42);

/// The cluster secret of the authentication tests.
pub fn secret() -> net::auth::ClusterSecret {
    net::auth::ClusterSecret::from_text(b"net tests: the cluster secret").unwrap()
}

/// A transport config holding [`secret`], with short server timeouts and a small per-peer
/// connection limit.
pub fn secure_cfg() -> net::transport::TransportConfig {
    net::transport::TransportConfig {
        secret: secret(),
        handshake_timeout: std::time::Duration::from_millis(300),
        max_connections_per_peer: 3,
        ..Default::default()
    }
}

/// A transport config with another secret.
pub fn wrong_secret_cfg() -> net::transport::TransportConfig {
    net::transport::TransportConfig {
        secret: net::auth::ClusterSecret::from_text(b"not the cluster secret at all").unwrap(),
        ..Default::default()
    }
}

pub fn acceptor() -> Acceptor {
    Acceptor {
        role: Role::DsNode {},
        cluster_id: CLUSTER,
        node_id: NodeId(1),
    }
}

pub fn hello() -> Hello {
    Hello::new(Role::Proxy {}, CLUSTER, NodeId(2))
}

pub fn get(i: u32) -> Message {
    Message::KvRequest(KvRequest {
        ctx: Default::default(),
        op: KvOp::Get {
            key: Bytes::from(i.to_be_bytes().to_vec()),
        },
    })
}

/// The key of a `get(i)` request, if `msg` is one.
pub fn key_of(msg: &Message) -> Option<u32> {
    match msg {
        Message::KvRequest(KvRequest {
            op: KvOp::Get { key },
            ..
        }) => Some(u32::from_be_bytes(key[..].try_into().ok()?)),
        _ => None,
    }
}

/// The answer the test handler gives to `get(i)`: the key's bytes repeated `i % 7 + 1` times.
pub fn answer(i: u32) -> Message {
    let value: Vec<u8> = (0..i % 7 + 1).flat_map(|_| i.to_be_bytes()).collect();
    Message::KvResponse(KvResponse::Ok {
        result: OpResult::Value {
            value: Some(Bytes::from(value)),
        },
    })
}

/// How long the handler holds request `i`: a pseudo-random 0..=3 ms so replies overtake
/// each other.
pub fn delay_us(i: u32) -> u64 {
    (u64::from(i).wrapping_mul(2_654_435_761) >> 7) % 4000
}

pub fn pong(msg: &Message) -> Option<Message> {
    match msg {
        Message::Ping(Ping { nonce }) => Some(Message::Pong(Pong { nonce: *nonce })),
        _ => None,
    }
}
