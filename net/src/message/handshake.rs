//! The connection handshake (`docs/format/wire.md` §2) as a sans-IO state check.

use crate::auth::{Nonce, Proof};
use crate::codec::{DecodeError, Reader, Wire, wire_enum, wire_struct};
use crate::error::RpcError;
use crate::ids::{ClusterId, NodeId};

/// `TKV1` read as a little-endian `u32`.
pub const MAGIC: u32 = u32::from_le_bytes(*b"TKV1");
/// The protocol version this build speaks: 8 (version 7 plus range merges, `Operator::Merge`
/// and `MergeReport`, `docs/format/wire.md` §4.5).
pub const PROTOCOL_VERSION: u16 = 8;
/// The first protocol version with [`ShardHeartbeat`](crate::message::ShardHeartbeat) and
/// [`ProbeReport`](crate::message::ProbeReport): a sender checks the connection's negotiated
/// version against it before sending either.
pub const LOAD_AND_PROBES_VERSION: u16 = 3;
/// The first protocol version with [`WatchRouteTable`](crate::message::WatchRouteTable): a
/// proxy on an older connection to the master polls [`GetRouteTable`](crate::message::GetRouteTable)
/// instead.
pub const ROUTE_WATCH_VERSION: u16 = 4;
/// The first protocol version with the proxy directory and mesh
/// ([`ProxyRegister`](crate::message::ProxyRegister) and the `Peer*` messages): a proxy sends
/// them only over a connection that negotiated it.
pub const MESH_VERSION: u16 = 5;
/// The first protocol version with the memory messages ([`SetMaxMemory`](crate::message::SetMaxMemory),
/// [`GetClusterMemory`](crate::message::GetClusterMemory), [`ShardMemory`](crate::message::ShardMemory)):
/// a proxy or DS shard sends them only over a connection that negotiated it.
pub const MEMORY_VERSION: u16 = 6;
/// The first version with `PeerPause` (`CLIENT PAUSE` across the proxy mesh).
pub const MESH_PAUSE_VERSION: u16 = 6;
/// The first version with `PeerInvalidate` (`CLIENT TRACKING` across the proxy mesh).
pub const MESH_TRACKING_VERSION: u16 = 7;
/// The first version with range merges (`Operator::Merge`, `MergeReport`).
pub const MERGE_VERSION: u16 = 8;
/// The oldest protocol version this build still speaks. Version 1 had no authentication, so
/// it is no longer spoken.
pub const MIN_PROTOCOL_VERSION: u16 = 2;

/// What the connecting process is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[allow(missing_docs)]
pub enum Role {
    Client {},
    Proxy {},
    DsNode {},
    Master {},
    Probe {},
}
wire_enum!(Role: u8, "role" { 1 => Client {}, 2 => Proxy {}, 3 => DsNode {}, 4 => Master {}, 5 => Probe {} });

/// A 4-byte magic that must equal [`MAGIC`]; anything else fails to decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct Magic;

impl Wire for Magic {
    fn encode(&self, buf: &mut bytes::BytesMut) {
        MAGIC.encode(buf);
    }
    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        match r.u32("magic")? {
            MAGIC => Ok(Magic),
            _ => Err(DecodeError::InvalidValue("magic")),
        }
    }
}

/// The first frame of every connection, from the connecting side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct Hello {
    /// Always [`MAGIC`].
    pub magic: Magic,
    /// Lowest version spoken.
    pub min_version: u16,
    /// Highest version spoken.
    pub max_version: u16,
    /// Who is connecting.
    pub role: Role,
    /// The cluster the connector belongs to.
    pub cluster_id: ClusterId,
    /// The connector's id (0 for anonymous clients).
    pub node_id: NodeId,
}
wire_struct!(Hello {
    magic,
    min_version,
    max_version,
    role,
    cluster_id,
    node_id
});

/// The acceptor's answer to [`Hello`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct HelloAck {
    /// Always [`MAGIC`].
    pub magic: Magic,
    /// The version both sides will speak.
    pub version: u16,
    /// Who accepted.
    pub role: Role,
    /// The acceptor's cluster.
    pub cluster_id: ClusterId,
    /// The acceptor's id.
    pub node_id: NodeId,
}
wire_struct!(HelloAck {
    magic,
    version,
    role,
    cluster_id,
    node_id
});

/// The acceptor's answer to a [`Hello`] it can serve (version 2): the negotiated version and
/// the acceptor's fresh nonce, which the connector must prove the secret over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct Challenge {
    /// The version both sides will speak.
    pub version: u16,
    /// The acceptor's nonce.
    pub nonce: Nonce,
}
wire_struct!(Challenge { version, nonce });

/// The connector's proof of the cluster secret (version 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct Auth {
    /// The connector's nonce.
    pub nonce: Nonce,
    /// MAC of the transcript so far under the connector label.
    pub proof: Proof,
}
wire_struct!(Auth { nonce, proof });

/// The acceptor's identity and its own proof of the secret: the last handshake message
/// (version 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct AuthAck {
    /// Who accepted, and the version.
    pub ack: HelloAck,
    /// MAC of the whole transcript under the acceptor label.
    pub proof: Proof,
}
wire_struct!(AuthAck { ack, proof });

impl Hello {
    /// A hello for this build's protocol versions.
    pub fn new(role: Role, cluster_id: ClusterId, node_id: NodeId) -> Self {
        Self {
            magic: Magic,
            min_version: MIN_PROTOCOL_VERSION,
            max_version: PROTOCOL_VERSION,
            role,
            cluster_id,
            node_id,
        }
    }
}

/// The acceptor's identity, against which a [`Hello`] is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Acceptor {
    /// The acceptor's role.
    pub role: Role,
    /// The acceptor's cluster (0: not bootstrapped).
    pub cluster_id: ClusterId,
    /// The acceptor's id.
    pub node_id: NodeId,
}

impl Acceptor {
    /// Checks a hello: picks the highest common version and checks the cluster id. Two
    /// different non-zero ids are refused. A connector with cluster id 0 (it has not learned
    /// the id yet) passes this check; it must still prove the cluster secret, and then only a
    /// master serves it ([`Self::refuses_unknown_cluster`]). An acceptor with cluster id 0 (a
    /// stand-alone DS node) accepts any id.
    pub fn accept(&self, hello: &Hello) -> Result<HelloAck, RpcError> {
        let version = hello.max_version.min(PROTOCOL_VERSION);
        if version < hello.min_version.max(MIN_PROTOCOL_VERSION) {
            return Err(RpcError::ProtocolVersion {
                min: MIN_PROTOCOL_VERSION,
                max: PROTOCOL_VERSION,
            });
        }
        let (ours, theirs) = (self.cluster_id, hello.cluster_id);
        if ours != ClusterId(0) && theirs != ClusterId(0) && ours != theirs {
            return Err(RpcError::ClusterMismatch { cluster_id: ours });
        }
        Ok(HelloAck {
            magic: Magic,
            version,
            role: self.role,
            cluster_id: self.cluster_id,
            node_id: self.node_id,
        })
    }

    /// Whether a connector that sent `hello` is refused, once it has proven the cluster
    /// secret, for having no cluster id: only a master, where the id is learned, serves a
    /// connector with id 0; any other acceptor of a cluster (a DS shard) refuses it with
    /// `ClusterMismatch`, as its members, proxies and tools learn the id from the master first.
    /// Checked after the proof, so that a stranger learns nothing but `AuthFailed`.
    pub fn refuses_unknown_cluster(&self, hello: &Hello) -> bool {
        hello.cluster_id == ClusterId(0)
            && self.cluster_id != ClusterId(0)
            && self.role != (Role::Master {})
    }
}

/// A keep-alive probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct Ping {
    /// Echoed in the [`Pong`].
    pub nonce: u64,
}
wire_struct!(Ping { nonce });

/// The answer to a [`Ping`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct Pong {
    /// The ping's nonce.
    pub nonce: u64,
}
wire_struct!(Pong { nonce });

#[cfg(test)]
mod tests {
    use super::*;

    fn acceptor(cluster: u64) -> Acceptor {
        Acceptor {
            role: Role::DsNode {},
            cluster_id: ClusterId(cluster),
            node_id: NodeId(9),
        }
    }

    #[test]
    fn magic_is_the_ascii_bytes_tkv1() {
        assert_eq!(&MAGIC.to_le_bytes(), b"TKV1");
    }

    #[test]
    fn versions_in_common_are_negotiated_to_the_highest() {
        let mut h = Hello::new(Role::Proxy {}, ClusterId(7), NodeId(1));
        h.max_version = 9;
        assert_eq!(acceptor(7).accept(&h).unwrap().version, PROTOCOL_VERSION);
    }

    #[test]
    fn a_version_2_peer_is_served_version_2() {
        let mut h = Hello::new(Role::DsNode {}, ClusterId(7), NodeId(1));
        h.max_version = 2;
        assert_eq!(acceptor(7).accept(&h).unwrap().version, 2);
    }

    #[test]
    fn no_common_version_is_refused() {
        let mut h = Hello::new(Role::Proxy {}, ClusterId(7), NodeId(1));
        h.min_version = PROTOCOL_VERSION + 1;
        h.max_version = PROTOCOL_VERSION + 3;
        assert!(matches!(
            acceptor(7).accept(&h),
            Err(RpcError::ProtocolVersion { .. })
        ));
    }

    #[test]
    fn other_cluster_is_refused_but_unbootstrapped_is_accepted() {
        let h = Hello::new(Role::DsNode {}, ClusterId(8), NodeId(1));
        assert!(matches!(
            acceptor(7).accept(&h),
            Err(RpcError::ClusterMismatch { .. })
        ));
        assert!(acceptor(0).accept(&h).is_ok());
    }

    #[test]
    fn cluster_id_0_is_served_by_a_master_only() {
        let fresh = Hello::new(Role::DsNode {}, ClusterId(0), NodeId(1));
        let mut master = acceptor(7);
        master.role = Role::Master {};
        assert!(
            !master.refuses_unknown_cluster(&fresh),
            "a new node learns the id"
        );
        for role in [Role::DsNode {}, Role::Proxy {}, Role::Probe {}] {
            let mut a = acceptor(7);
            a.role = role;
            assert!(a.accept(&fresh).is_ok(), "passes the hello check");
            assert!(a.refuses_unknown_cluster(&fresh), "{role:?}");
        }
        assert!(!acceptor(0).refuses_unknown_cluster(&fresh), "stand-alone");
        let member = Hello::new(Role::DsNode {}, ClusterId(7), NodeId(1));
        assert!(!acceptor(7).refuses_unknown_cluster(&member));
    }

    #[test]
    fn bad_magic_does_not_decode() {
        let mut buf = bytes::BytesMut::new();
        Hello::new(Role::Client {}, ClusterId(0), NodeId(0)).encode(&mut buf);
        buf[0] = b'R';
        assert_eq!(
            crate::codec::decode_exact::<Hello>(buf.freeze()),
            Err(DecodeError::InvalidValue("magic"))
        );
    }
}
