//! Typed messages and their frame kinds (`docs/format/wire.md` §4).

pub mod bits;
pub mod handshake;
pub mod hll;
pub mod kv;
pub mod list;
pub mod master;
pub mod memory;
pub mod mesh;
pub mod raft;
pub mod script;
pub mod set;
pub mod zset;

use bytes::{Bytes, BytesMut};

use crate::codec::{DecodeError, Wire, decode_exact};
use crate::error::RpcError;
use crate::frame::{Frame, FrameError, encode_frame, encode_frame_within};
use crate::ids::RequestId;

pub use handshake::{Hello, HelloAck, Ping, Pong, Role};
pub use kv::{KvOp, KvRequest, KvResponse, KvWrite, OpResult};
pub use master::*;
pub use memory::*;
pub use mesh::*;
pub use raft::{RaftBatch, RaftEnvelope, SnapshotAck, SnapshotChunk};

/// The routing structures, named here too as every message that routes carries them.
pub use crate::route::{LeaderHint, RangeDescriptor, Replica, ReplicaRole, RouteCtx};

/// Why a frame did not become a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MessageError {
    /// The kind is not defined in this protocol version.
    #[error("unknown message kind {0:#06x}")]
    UnknownKind(u16),
    /// The payload does not decode as the kind's message.
    #[error("bad {kind} payload: {source}")]
    Payload {
        /// The message kind's name.
        kind: &'static str,
        /// What was wrong.
        source: DecodeError,
    },
}

macro_rules! messages {
    ($($code:literal => $variant:ident($ty:ty)),* $(,)?) => {
        /// Every message of the protocol.
        #[derive(Debug, Clone, PartialEq)]
        #[cfg_attr(test, derive(proptest_derive::Arbitrary))]
        #[allow(missing_docs)] // each variant is the message of the same name
        pub enum Message {
            $( $variant($ty), )*
        }

        /// Frame kind codes.
        pub mod kind {
            $(
                #[doc = concat!("Kind of [`", stringify!($variant), "`](super::Message::", stringify!($variant), ").")]
                #[allow(non_upper_case_globals)]
                pub const $variant: u16 = $code;
            )*
        }

        impl Message {
            /// The frame kind of this message.
            pub fn kind(&self) -> u16 {
                match self { $( Self::$variant(_) => $code, )* }
            }

            /// The message's name, for logs.
            pub fn name(&self) -> &'static str {
                match self { $( Self::$variant(_) => stringify!($variant), )* }
            }

            /// Appends the payload encoding.
            pub fn encode_payload(&self, buf: &mut BytesMut) {
                match self { $( Self::$variant(m) => m.encode(buf), )* }
            }

            /// Decodes a payload of the given kind; the payload must be consumed exactly.
            pub fn decode(kind: u16, payload: Bytes) -> Result<Self, MessageError> {
                match kind {
                    $( $code => decode_exact::<$ty>(payload)
                        .map(Self::$variant)
                        .map_err(|source| MessageError::Payload { kind: stringify!($variant), source }), )*
                    other => Err(MessageError::UnknownKind(other)),
                }
            }
        }

        $(
            impl From<$ty> for Message {
                fn from(m: $ty) -> Self { Self::$variant(m) }
            }
        )*
    };
}

messages! {
    0x0001 => Hello(Hello),
    0x0002 => HelloAck(HelloAck),
    0x0003 => Ping(Ping),
    0x0004 => Pong(Pong),
    0x0005 => Challenge(handshake::Challenge),
    0x0006 => Auth(handshake::Auth),
    0x0007 => AuthAck(handshake::AuthAck),
    0x000F => Error(RpcError),
    0x0100 => KvRequest(KvRequest),
    0x0101 => KvResponse(KvResponse),
    0x0102 => KvWrite(KvWrite),
    0x0200 => RaftBatch(RaftBatch),
    0x0201 => SnapshotChunk(SnapshotChunk),
    0x0202 => SnapshotAck(SnapshotAck),
    0x0300 => StoreHeartbeat(StoreHeartbeat),
    0x0301 => StoreHeartbeatResp(StoreHeartbeatResp),
    0x0302 => RangeHeartbeat(RangeHeartbeat),
    0x0303 => RangeHeartbeatResp(RangeHeartbeatResp),
    0x0304 => RouteByKey(RouteByKey),
    0x0305 => RouteById(RouteById),
    0x0306 => Route(Route),
    0x0307 => AllocIds(AllocIds),
    0x0308 => IdBlock(IdBlock),
    0x0309 => TsoRequest(TsoRequest),
    0x030A => TsoBatch(TsoBatch),
    0x030B => StoreRegister(StoreRegister),
    0x030C => StoreRegisterResp(StoreRegisterResp),
    0x030D => Bootstrap(Bootstrap),
    0x030E => BootstrapResp(BootstrapResp),
    0x030F => GetRouteTable(GetRouteTable),
    0x0310 => RouteTable(RouteTable),
    0x0311 => SplitRequest(SplitRequest),
    0x0312 => SplitIds(SplitIds),
    0x0313 => SplitReport(SplitReport),
    0x0314 => SplitReportResp(SplitReportResp),
    0x0315 => ShardHeartbeat(ShardHeartbeat),
    0x0316 => ProbeReport(ProbeReport),
    0x0317 => ProbeReportResp(ProbeReportResp),
    0x0318 => WatchRouteTable(WatchRouteTable),
    0x0319 => ProxyRegister(ProxyRegister),
    0x031A => ProxyPeers(ProxyPeers),
    0x031B => SetMaxMemory(SetMaxMemory),
    0x031C => GetClusterMemory(GetClusterMemory),
    0x031D => ClusterMemory(ClusterMemory),
    0x031E => ShardMemory(ShardMemory),
    0x031F => MemorySetting(MemorySetting),
    0x0320 => MergeReport(MergeReport),
    0x0321 => MergeReportResp(MergeReportResp),
    0x0400 => PeerPublish(PeerPublish),
    0x0401 => PeerReceivers(PeerReceivers),
    0x0402 => PeerPubsubQuery(PeerPubsubQuery),
    0x0403 => PeerPubsubAnswer(PeerPubsubAnswer),
    0x0404 => PeerKeysReady(PeerKeysReady),
    0x0405 => PeerKeysReadyAck(PeerKeysReadyAck),
    0x0406 => PeerPause(PeerPause),
    0x0407 => PeerPauseAck(PeerPauseAck),
    0x0408 => PeerInvalidate(PeerInvalidate),
    0x0409 => PeerInvalidateAck(PeerInvalidateAck),
}

impl Message {
    /// Appends this message as one frame.
    pub fn encode_frame(&self, request_id: RequestId, buf: &mut BytesMut) {
        encode_frame(buf, self.kind(), request_id, |b| self.encode_payload(b));
    }

    /// Appends this message as one frame if its payload fits the peer's limit of `max`
    /// bytes; otherwise appends nothing and returns [`FrameError::Oversized`].
    pub fn encode_frame_within(
        &self,
        request_id: RequestId,
        max: usize,
        buf: &mut BytesMut,
    ) -> Result<(), FrameError> {
        encode_frame_within(buf, self.kind(), request_id, max, |b| {
            self.encode_payload(b)
        })
    }

    /// Decodes a frame's payload.
    pub fn from_frame(frame: Frame) -> Result<(RequestId, Self), MessageError> {
        Ok((frame.request_id, Self::decode(frame.kind, frame.payload)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::FrameDecoder;
    use proptest::prelude::*;

    /// Runs a property over many generated cases on a thread with a large stack: the derived
    /// strategy for the whole `Message` enum nests deeply and overflows a default test
    /// thread's stack in unoptimised builds.
    fn check<S: Strategy + 'static>(
        cases: u32,
        strategy: fn() -> S,
        test: impl Fn(S::Value) -> Result<(), TestCaseError> + Send + 'static,
    ) {
        std::thread::Builder::new()
            .stack_size(64 << 20)
            .spawn(move || {
                let config = ProptestConfig::with_cases(cases);
                let mut runner = proptest::test_runner::TestRunner::new(config);
                if let Err(e) = runner.run(&strategy(), test) {
                    panic!("{e}");
                }
            })
            .unwrap()
            .join()
            .unwrap();
    }

    /// Every message type survives encode → frame → decode unchanged (compared by `Debug` so
    /// that NaN floats compare equal), and re-encodes to the same bytes.
    #[test]
    fn every_message_round_trips_through_a_frame() {
        check(
            3000,
            || (any::<Message>(), any::<u64>()),
            |(msg, id)| {
                let mut buf = BytesMut::new();
                msg.encode_frame(RequestId(id), &mut buf);
                let wire = buf.clone();
                let frame = FrameDecoder::default().decode(&mut buf).unwrap().unwrap();
                prop_assert!(buf.is_empty());
                let (rid, back) = Message::from_frame(frame).unwrap();
                prop_assert_eq!(rid, RequestId(id));
                prop_assert_eq!(format!("{back:?}"), format!("{msg:?}"));
                let mut again = BytesMut::new();
                back.encode_frame(RequestId(id), &mut again);
                prop_assert_eq!(again, wire);
                Ok(())
            },
        );
    }

    /// A payload cut short anywhere never decodes and never panics.
    #[test]
    fn truncated_payloads_are_errors() {
        check(
            2000,
            || (any::<Message>(), any::<prop::sample::Index>()),
            |(msg, cut)| {
                let mut payload = BytesMut::new();
                msg.encode_payload(&mut payload);
                if !payload.is_empty() {
                    let cut = cut.index(payload.len());
                    let short = payload.split_to(cut).freeze();
                    prop_assert!(Message::decode(msg.kind(), short).is_err());
                }
                Ok(())
            },
        );
    }

    /// Random bytes of a valid kind never panic the decoder.
    #[test]
    fn random_payloads_never_panic() {
        let strategy = || {
            (
                prop::sample::select(ALL_KINDS.to_vec()),
                prop::collection::vec(any::<u8>(), 0..256),
            )
        };
        check(5000, strategy, |(kind, bytes)| {
            let _ = Message::decode(kind, Bytes::from(bytes));
            Ok(())
        });
    }

    /// A valid payload with bytes flipped either decodes or errors, never panics.
    #[test]
    fn mutated_payloads_never_panic() {
        let strategy = || {
            let flips = prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8);
            (any::<Message>(), flips)
        };
        check(3000, strategy, |(msg, flips)| {
            let mut payload = BytesMut::new();
            msg.encode_payload(&mut payload);
            if !payload.is_empty() {
                for (at, x) in flips {
                    let i = at.index(payload.len());
                    payload[i] ^= x;
                }
                let _ = Message::decode(msg.kind(), payload.freeze());
            }
            Ok(())
        });
    }

    /// A random byte stream fed to a connection reader yields errors or nothing, never a
    /// panic, and never buffers more than one frame's limit.
    #[test]
    fn random_streams_never_panic_the_reader() {
        check(
            2000,
            || prop::collection::vec(any::<u8>(), 0..2048),
            |bytes| {
                let mut r = crate::conn::ConnReader::new(512);
                let mut rest = &bytes[..];
                while !rest.is_empty() {
                    let Ok(space) = r.read_space() else { break };
                    prop_assert!(space.len() <= 16 * 1024 + 532);
                    let n = space.len().min(rest.len()).min(97);
                    space[..n].copy_from_slice(&rest[..n]);
                    r.filled(n).unwrap();
                    rest = &rest[n..];
                    loop {
                        match r.next_message() {
                            Ok(Some(_)) => continue,
                            Ok(None) => break,
                            Err(_) => return Ok(()),
                        }
                    }
                }
                Ok(())
            },
        );
    }

    const ALL_KINDS: &[u16] = &[
        kind::Hello,
        kind::HelloAck,
        kind::Ping,
        kind::Pong,
        kind::Error,
        kind::KvRequest,
        kind::KvResponse,
        kind::KvWrite,
        kind::RaftBatch,
        kind::SnapshotChunk,
        kind::SnapshotAck,
        kind::StoreHeartbeat,
        kind::StoreHeartbeatResp,
        kind::RangeHeartbeat,
        kind::RangeHeartbeatResp,
        kind::RouteByKey,
        kind::RouteById,
        kind::Route,
        kind::AllocIds,
        kind::IdBlock,
        kind::TsoRequest,
        kind::TsoBatch,
        kind::StoreRegister,
        kind::StoreRegisterResp,
        kind::Bootstrap,
        kind::BootstrapResp,
        kind::GetRouteTable,
        kind::RouteTable,
        kind::SplitRequest,
        kind::SplitIds,
        kind::SplitReport,
        kind::SplitReportResp,
        kind::ShardHeartbeat,
        kind::ProbeReport,
        kind::ProbeReportResp,
        kind::WatchRouteTable,
        kind::ProxyRegister,
        kind::ProxyPeers,
        kind::SetMaxMemory,
        kind::GetClusterMemory,
        kind::ClusterMemory,
        kind::ShardMemory,
        kind::MemorySetting,
        kind::MergeReport,
        kind::MergeReportResp,
        kind::PeerPublish,
        kind::PeerReceivers,
        kind::PeerPubsubQuery,
        kind::PeerPubsubAnswer,
        kind::PeerKeysReady,
        kind::PeerKeysReadyAck,
        kind::PeerPause,
        kind::PeerPauseAck,
        kind::PeerInvalidate,
        kind::PeerInvalidateAck,
    ];

    #[test]
    fn unknown_kind_is_refused() {
        assert_eq!(
            Message::decode(0x7777, Bytes::new()),
            Err(MessageError::UnknownKind(0x7777))
        );
    }
}
