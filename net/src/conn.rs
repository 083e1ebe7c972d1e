//! The sans-IO side of a connection: a receive buffer that yields typed messages, and the
//! handshake rules. Both transports drive these; nothing here touches a socket.

use bytes::BytesMut;

use crate::auth::{ACCEPTOR_LABEL, CONNECTOR_LABEL, ClusterSecret, Nonce};
use crate::codec::Wire;
use crate::error::RpcError;
use crate::frame::{FrameDecoder, FrameError};
use crate::ids::{ClusterId, RequestId};
use crate::message::handshake::{
    Acceptor, Auth, AuthAck, Challenge, Hello, HelloAck, MIN_PROTOCOL_VERSION, PROTOCOL_VERSION,
};
use crate::message::{Message, MessageError};

/// How much a read asks for when no frame is partially buffered; also the least a read into
/// a partial frame asks for.
pub const READ_CHUNK_BYTES: usize = 16 * 1024;
/// Frame payload limit until the handshake is done: every handshake message is under 100
/// bytes, so a peer that has not proven membership cannot announce a large frame.
pub const HANDSHAKE_MAX_FRAME_BYTES: usize = 1024;

/// Why a connection was closed. Each variant is logged with the peer's address.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnError {
    /// The byte stream is not valid framing.
    #[error("framing: {0}")]
    Frame(#[from] FrameError),
    /// A frame did not decode as its message.
    #[error("message: {0}")]
    Message(#[from] MessageError),
    /// The peer broke the handshake rules.
    #[error("handshake: {0}")]
    Handshake(String),
    /// The peer refused the handshake.
    #[error("handshake refused: {0}")]
    Refused(RpcError),
    /// The socket failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// The peer closed the connection.
    #[error("closed by peer")]
    Closed,
    /// The TLS handshake failed (no or a foreign certificate, a plain-TCP peer, a TLS
    /// endpoint reached without TLS configured).
    #[error("tls handshake: {0}")]
    Tls(String),
    /// The handshake did not complete within the handshake timeout.
    #[error("handshake timed out")]
    HandshakeTimeout,
    /// Nothing arrived for the idle timeout while no request was in flight.
    #[error("idle timeout")]
    IdleTimeout,
}

/// A receive buffer that turns bytes into messages, bounded by the frame limit.
#[derive(Debug)]
pub struct ConnReader {
    decoder: FrameDecoder,
    buf: BytesMut,
    /// Where the tail handed out by `read_space` starts, until `filled` says how much of it
    /// holds data. A read that was cancelled leaves it set; the zeroed tail is then discarded.
    tail: Option<usize>,
}

impl ConnReader {
    /// A reader refusing frames above `max_frame_bytes`.
    pub fn new(max_frame_bytes: usize) -> Self {
        Self {
            decoder: FrameDecoder::new(max_frame_bytes),
            buf: BytesMut::with_capacity(READ_CHUNK_BYTES),
            tail: None,
        }
    }

    /// Changes the frame limit (raised once the handshake is done).
    pub fn set_max_frame_bytes(&mut self, max_frame_bytes: usize) {
        self.decoder = FrameDecoder::new(max_frame_bytes);
    }

    /// Grows the buffer by a zeroed tail to read into, and returns that tail. The tail grows
    /// with the bytes that arrived, never with the length a frame announces: at most what
    /// the frame at the front still needs, at most as much as is already buffered, and at
    /// least [`READ_CHUNK_BYTES`]. A peer that announces 64 MiB and sends nothing more costs
    /// one chunk. Call [`ConnReader::filled`] with the count read; if the read is abandoned
    /// (a cancelled future), the tail is discarded by the next call.
    pub fn read_space(&mut self) -> Result<&mut [u8], ConnError> {
        self.discard_tail();
        let want = match self.decoder.needed(&self.buf)? {
            Some(total) if total > self.buf.len() => (total - self.buf.len())
                .min(self.buf.len())
                .max(READ_CHUNK_BYTES),
            _ => READ_CHUNK_BYTES,
        };
        let start = self.buf.len();
        self.buf.resize(start + want, 0);
        self.tail = Some(start);
        Ok(&mut self.buf[start..])
    }

    fn discard_tail(&mut self) {
        if let Some(start) = self.tail.take() {
            self.buf.truncate(start);
        }
    }

    /// Keeps `n` bytes of the tail handed out by [`ConnReader::read_space`]; `n == 0` means the
    /// peer closed the stream, which is an error if it stopped inside a frame.
    pub fn filled(&mut self, n: usize) -> Result<(), ConnError> {
        let start = self.tail.take().expect("filled() follows read_space()");
        assert!(
            start + n <= self.buf.len(),
            "read more than the space given"
        );
        self.buf.truncate(start + n);
        if n == 0 {
            self.decoder.finish(&self.buf)?;
            return Err(ConnError::Closed);
        }
        Ok(())
    }

    /// The next complete message, `Ok(None)` if more bytes are needed.
    pub fn next_message(&mut self) -> Result<Option<(RequestId, Message)>, ConnError> {
        self.discard_tail();
        match self.decoder.decode(&mut self.buf)? {
            None => Ok(None),
            Some(frame) => Ok(Some(Message::from_frame(frame)?)),
        }
    }

    /// Bytes buffered but not yet decoded.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Bytes allocated for the receive buffer.
    pub fn capacity(&self) -> usize {
        self.buf.capacity()
    }
}

/// The connector's side of the handshake (`docs/format/wire.md` §2), sans-IO: `Hello` out,
/// `Challenge` in, `Auth` out, `AuthAck` in.
#[derive(Debug)]
pub struct ConnectorHandshake {
    hello: Hello,
    secret: ClusterSecret,
    transcript: BytesMut,
}

impl ConnectorHandshake {
    /// Starts a handshake: appends the `Hello` frame to `out`.
    pub fn start(hello: Hello, secret: ClusterSecret, out: &mut BytesMut) -> Self {
        Message::Hello(hello).encode_frame(RequestId(0), out);
        let mut transcript = BytesMut::with_capacity(256);
        hello.encode(&mut transcript);
        Self {
            hello,
            secret,
            transcript,
        }
    }

    /// Takes the acceptor's answer to `Hello`: a `Challenge` (appends `Auth` to `out`), or an
    /// `Error` refusal.
    pub fn on_challenge(&mut self, msg: Message, out: &mut BytesMut) -> Result<(), ConnError> {
        let challenge = match msg {
            Message::Challenge(c) => c,
            Message::Error(e) => return Err(ConnError::Refused(e)),
            other => return Err(unexpected("Challenge", &other)),
        };
        if !(MIN_PROTOCOL_VERSION..=PROTOCOL_VERSION).contains(&challenge.version) {
            return Err(ConnError::Handshake(format!(
                "acceptor chose version {}, we speak {MIN_PROTOCOL_VERSION}..={PROTOCOL_VERSION}",
                challenge.version
            )));
        }
        challenge.encode(&mut self.transcript);
        let nonce = Nonce::random().map_err(|e| ConnError::Handshake(e.to_string()))?;
        nonce.encode(&mut self.transcript);
        let proof = self.secret.mac(CONNECTOR_LABEL, &[&self.transcript]);
        Message::Auth(Auth { nonce, proof }).encode_frame(RequestId(0), out);
        Ok(())
    }

    /// Takes the last handshake message: the acceptor's `AuthAck`, whose proof and cluster id
    /// are checked, or an `Error` refusal.
    pub fn on_auth_ack(self, msg: Message) -> Result<HelloAck, ConnError> {
        let ack = match msg {
            Message::AuthAck(a) => a,
            Message::Error(e) => return Err(ConnError::Refused(e)),
            other => return Err(unexpected("AuthAck", &other)),
        };
        let mut ack_bytes = BytesMut::new();
        ack.ack.encode(&mut ack_bytes);
        if !self
            .secret
            .verify(&ack.proof, ACCEPTOR_LABEL, &[&self.transcript, &ack_bytes])
        {
            return Err(ConnError::Handshake(
                "the acceptor did not prove this cluster's secret".into(),
            ));
        }
        let (ours, theirs) = (self.hello.cluster_id, ack.ack.cluster_id);
        if ours != ClusterId(0) && theirs != ours {
            return Err(ConnError::Handshake(format!(
                "the acceptor is in cluster {theirs}, this node in cluster {ours}"
            )));
        }
        Ok(ack.ack)
    }
}

/// The acceptor's side of the handshake, sans-IO: `Hello` in, `Challenge` out, `Auth` in,
/// `AuthAck` out. A refusal appends an `Error` frame to `out` (send it, then close) and
/// returns [`ConnError::Refused`].
#[derive(Debug)]
pub struct AcceptorHandshake {
    ack: HelloAck,
    secret: ClusterSecret,
    transcript: BytesMut,
    /// The connector sent cluster id 0 and this acceptor serves only members that know it:
    /// refused once its proof is checked.
    refuse_unknown_cluster: bool,
}

impl AcceptorHandshake {
    /// Takes the first message of a connection, which must be a `Hello`.
    pub fn on_hello(
        acceptor: &Acceptor,
        secret: ClusterSecret,
        msg: Message,
        out: &mut BytesMut,
    ) -> Result<Self, ConnError> {
        let hello = match msg {
            Message::Hello(h) => h,
            other => return Err(unexpected("Hello", &other)),
        };
        let ack = acceptor.accept(&hello).map_err(|e| refuse(e, out))?;
        let nonce = Nonce::random().map_err(|e| ConnError::Handshake(e.to_string()))?;
        let challenge = Challenge {
            version: ack.version,
            nonce,
        };
        let mut transcript = BytesMut::with_capacity(256);
        hello.encode(&mut transcript);
        challenge.encode(&mut transcript);
        Message::Challenge(challenge).encode_frame(RequestId(0), out);
        Ok(Self {
            ack,
            secret,
            transcript,
            refuse_unknown_cluster: acceptor.refuses_unknown_cluster(&hello),
        })
    }

    /// Takes the connector's `Auth`; on a valid proof appends `AuthAck` to `out` and returns
    /// the connector's identity (what it claimed in `Hello`, now proven to be a member).
    pub fn on_auth(mut self, msg: Message, out: &mut BytesMut) -> Result<HelloAck, ConnError> {
        let auth = match msg {
            Message::Auth(a) => a,
            other => return Err(unexpected("Auth", &other)),
        };
        auth.nonce.encode(&mut self.transcript);
        if !self
            .secret
            .verify(&auth.proof, CONNECTOR_LABEL, &[&self.transcript])
        {
            return Err(refuse(RpcError::AuthFailed {}, out));
        }
        if self.refuse_unknown_cluster {
            let cluster_id = self.ack.cluster_id;
            return Err(refuse(RpcError::ClusterMismatch { cluster_id }, out));
        }
        let mut ack_bytes = BytesMut::new();
        self.ack.encode(&mut ack_bytes);
        let proof = self
            .secret
            .mac(ACCEPTOR_LABEL, &[&self.transcript, &ack_bytes]);
        Message::AuthAck(AuthAck {
            ack: self.ack,
            proof,
        })
        .encode_frame(RequestId(0), out);
        Ok(self.ack)
    }
}

fn refuse(e: RpcError, out: &mut BytesMut) -> ConnError {
    Message::Error(e.clone()).encode_frame(RequestId(0), out);
    ConnError::Refused(e)
}

fn unexpected(wanted: &str, got: &Message) -> ConnError {
    ConnError::Handshake(format!("expected {wanted}, got {}", got.name()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::NodeId;
    use crate::message::handshake::Role;
    use crate::message::{Ping, Pong};

    fn feed(r: &mut ConnReader, mut bytes: &[u8]) -> Result<(), ConnError> {
        while !bytes.is_empty() {
            let space = r.read_space()?;
            let n = space.len().min(bytes.len()).min(7); // dribble in small pieces
            space[..n].copy_from_slice(&bytes[..n]);
            r.filled(n)?;
            bytes = &bytes[n..];
        }
        Ok(())
    }

    #[test]
    fn messages_split_across_reads_are_reassembled() {
        let mut wire = BytesMut::new();
        for i in 0..10u64 {
            Message::Ping(Ping { nonce: i }).encode_frame(RequestId(i), &mut wire);
        }
        let mut r = ConnReader::new(1024);
        feed(&mut r, &wire).unwrap();
        for i in 0..10u64 {
            let (id, m) = r.next_message().unwrap().unwrap();
            assert_eq!((id, m), (RequestId(i), Message::Ping(Ping { nonce: i })));
        }
        assert!(r.next_message().unwrap().is_none());
        assert_eq!(r.buffered(), 0);
    }

    #[test]
    fn abandoned_read_leaves_no_zeroed_bytes_behind() {
        let mut wire = BytesMut::new();
        Message::Ping(Ping { nonce: 5 }).encode_frame(RequestId(5), &mut wire);
        let mut r = ConnReader::new(1024);
        r.read_space().unwrap(); // a read that is then cancelled
        feed(&mut r, &wire).unwrap();
        assert_eq!(
            r.next_message().unwrap(),
            Some((RequestId(5), Message::Ping(Ping { nonce: 5 })))
        );
    }

    #[test]
    fn close_inside_a_frame_is_a_truncation_error() {
        let mut wire = BytesMut::new();
        Message::Pong(Pong { nonce: 1 }).encode_frame(RequestId(1), &mut wire);
        let mut r = ConnReader::new(1024);
        feed(&mut r, &wire[..wire.len() - 1]).unwrap();
        r.read_space().unwrap();
        assert!(matches!(
            r.filled(0),
            Err(ConnError::Frame(FrameError::TruncatedStream(_)))
        ));
    }

    #[test]
    fn read_space_never_exceeds_the_frame_limit() {
        let mut r = ConnReader::new(100);
        let mut wire = BytesMut::new();
        wire.extend_from_slice(&200u32.to_le_bytes());
        assert!(feed(&mut r, &wire).is_ok());
        assert!(matches!(
            r.read_space(),
            Err(ConnError::Frame(FrameError::Oversized { .. }))
        ));
    }

    #[test]
    fn an_announced_length_does_not_reserve_the_frame() {
        // `ff ff ff 03`: a 64 MiB - 1 payload announced, then nothing.
        let mut r = ConnReader::new(crate::frame::DEFAULT_MAX_FRAME_BYTES);
        feed(&mut r, &[0xff, 0xff, 0xff, 0x03]).unwrap();
        let space = r.read_space().unwrap().len();
        assert!(space <= READ_CHUNK_BYTES, "read space {space}");
        assert!(
            r.capacity() <= 4 * READ_CHUNK_BYTES,
            "capacity {}",
            r.capacity()
        );
    }

    #[test]
    fn a_large_frame_still_arrives_and_the_buffer_grows_with_it() {
        // A 1 MiB frame (a Ping kind with a payload that is not a Ping) is framed whole.
        let mut wire = BytesMut::new();
        crate::frame::encode_frame(&mut wire, 0x0003, RequestId(3), |b| {
            b.extend_from_slice(&vec![0u8; 1 << 20]);
        });
        let mut r = ConnReader::new(2 << 20);
        let mut off = 0;
        let mut max_capacity = 0;
        while off < wire.len() {
            let space = r.read_space().unwrap();
            let n = space.len().min(wire.len() - off);
            space[..n].copy_from_slice(&wire[off..off + n]);
            r.filled(n).unwrap();
            off += n;
            max_capacity = max_capacity.max(r.capacity());
        }
        assert!(max_capacity <= 4 * wire.len(), "capacity {max_capacity}");
        // The payload is not a valid Ping, but it was framed: the message decoder says so.
        assert!(matches!(r.next_message(), Err(ConnError::Message(_))));
    }

    #[test]
    fn the_handshake_frame_limit_refuses_a_large_announcement() {
        let mut r = ConnReader::new(HANDSHAKE_MAX_FRAME_BYTES);
        feed(&mut r, &[0xff, 0xff, 0xff, 0x03]).unwrap();
        assert!(matches!(
            r.read_space(),
            Err(ConnError::Frame(FrameError::Oversized { .. }))
        ));
    }

    fn acceptor(cluster: u64) -> Acceptor {
        Acceptor {
            role: Role::DsNode {},
            cluster_id: ClusterId(cluster),
            node_id: NodeId(1),
        }
    }

    fn secret(s: &str) -> ClusterSecret {
        ClusterSecret::from_text(s.as_bytes()).unwrap()
    }

    /// Decodes the single frame in `out` (and clears it).
    fn take(out: &mut BytesMut) -> Message {
        let f = FrameDecoder::default().decode(out).unwrap().unwrap();
        assert!(out.is_empty());
        Message::from_frame(f).unwrap().1
    }

    /// Runs a whole handshake in memory: the connector's result and the acceptor's.
    fn handshake(
        hello: Hello,
        connector_secret: ClusterSecret,
        acceptor: &Acceptor,
        acceptor_secret: ClusterSecret,
    ) -> (Result<HelloAck, ConnError>, Result<HelloAck, ConnError>) {
        let mut to_a = BytesMut::new();
        let mut to_c = BytesMut::new();
        let mut c = ConnectorHandshake::start(hello, connector_secret, &mut to_a);
        let a = AcceptorHandshake::on_hello(acceptor, acceptor_secret, take(&mut to_a), &mut to_c);
        let a = match a {
            Ok(a) => a,
            Err(e) => {
                let c_result = c
                    .on_challenge(take(&mut to_c), &mut to_a)
                    .map(|_| unreachable!());
                return (c_result, Err(e));
            }
        };
        if let Err(e) = c.on_challenge(take(&mut to_c), &mut to_a) {
            return (Err(e), Err(ConnError::Closed));
        }
        let a_result = a.on_auth(take(&mut to_a), &mut to_c);
        (c.on_auth_ack(take(&mut to_c)), a_result)
    }

    #[test]
    fn both_sides_holding_the_secret_complete_the_handshake() {
        let hello = Hello::new(Role::Proxy {}, ClusterId(7), NodeId(2));
        let (c, a) = handshake(
            hello,
            secret("s3cret-s3cret-s3cret"),
            &acceptor(7),
            secret("s3cret-s3cret-s3cret"),
        );
        let ack = c.unwrap();
        assert_eq!(
            (ack.cluster_id, ack.version),
            (ClusterId(7), PROTOCOL_VERSION)
        );
        assert_eq!(a.unwrap().node_id, NodeId(1));
    }

    #[test]
    fn a_connector_with_the_wrong_secret_is_refused() {
        let hello = Hello::new(Role::Proxy {}, ClusterId(7), NodeId(2));
        let (c, a) = handshake(
            hello,
            secret("wrong-wrong-wrong-wrong"),
            &acceptor(7),
            secret("s3cret-s3cret-s3cret"),
        );
        assert!(matches!(
            a,
            Err(ConnError::Refused(RpcError::AuthFailed {}))
        ));
        assert!(matches!(
            c,
            Err(ConnError::Refused(RpcError::AuthFailed {}))
        ));
    }

    #[test]
    fn a_connector_without_a_secret_is_refused() {
        let hello = Hello::new(Role::Proxy {}, ClusterId(7), NodeId(2));
        let (c, a) = handshake(
            hello,
            ClusterSecret::insecure(),
            &acceptor(7),
            secret("s3cret-s3cret-s3cret"),
        );
        assert!(matches!(
            a,
            Err(ConnError::Refused(RpcError::AuthFailed {}))
        ));
        assert!(c.is_err());
    }

    #[test]
    fn a_forged_acceptor_proof_is_refused_by_the_connector() {
        let hello = Hello::new(Role::Proxy {}, ClusterId(7), NodeId(2));
        let mut to_a = BytesMut::new();
        let mut to_c = BytesMut::new();
        let good = secret("s3cret-s3cret-s3cret");
        let mut c = ConnectorHandshake::start(hello, good.clone(), &mut to_a);
        let a =
            AcceptorHandshake::on_hello(&acceptor(7), good, take(&mut to_a), &mut to_c).unwrap();
        c.on_challenge(take(&mut to_c), &mut to_a).unwrap();
        a.on_auth(take(&mut to_a), &mut to_c).unwrap();
        // A forged AuthAck: the right shape, a proof made with another key.
        let Message::AuthAck(mut ack) = take(&mut to_c) else {
            panic!("not an AuthAck")
        };
        ack.proof = crate::auth::Proof([0u8; 32]);
        let err = c.on_auth_ack(Message::AuthAck(ack)).unwrap_err();
        assert!(matches!(err, ConnError::Handshake(_)), "{err}");
    }

    #[test]
    fn wrong_cluster_ids_are_refused_on_both_sides() {
        let s = || secret("s3cret-s3cret-s3cret");
        // The acceptor refuses a connector from another cluster.
        let hello = Hello::new(Role::Proxy {}, ClusterId(8), NodeId(2));
        let (c, a) = handshake(hello, s(), &acceptor(7), s());
        assert!(matches!(
            a,
            Err(ConnError::Refused(RpcError::ClusterMismatch { .. }))
        ));
        assert!(matches!(
            c,
            Err(ConnError::Refused(RpcError::ClusterMismatch { .. }))
        ));
        // The connector refuses an acceptor with no cluster id when it has one.
        let hello = Hello::new(Role::Proxy {}, ClusterId(8), NodeId(2));
        let (c, _) = handshake(hello, s(), &acceptor(0), s());
        assert!(matches!(c, Err(ConnError::Handshake(_))), "{c:?}");
        // A connector that has not learned the id yet learns it from the master.
        let hello = Hello::new(Role::DsNode {}, ClusterId(0), NodeId(2));
        let master = Acceptor {
            role: Role::Master {},
            ..acceptor(7)
        };
        let (c, _) = handshake(hello, s(), &master, s());
        assert_eq!(c.unwrap().cluster_id, ClusterId(7));
        // Another member of the cluster refuses it once it proved the secret...
        let (c, a) = handshake(hello, s(), &acceptor(7), s());
        assert!(matches!(
            a,
            Err(ConnError::Refused(RpcError::ClusterMismatch { .. }))
        ));
        assert!(matches!(
            c,
            Err(ConnError::Refused(RpcError::ClusterMismatch { .. }))
        ));
        // ... and a stranger without the secret learns only that its proof failed.
        let other = secret("another secret, not this cluster's");
        let (_, a) = handshake(hello, other, &acceptor(7), s());
        assert!(matches!(
            a,
            Err(ConnError::Refused(RpcError::AuthFailed {}))
        ));
    }

    #[test]
    fn the_first_message_must_be_hello() {
        let mut out = BytesMut::new();
        let r = AcceptorHandshake::on_hello(
            &acceptor(1),
            ClusterSecret::insecure(),
            Message::Ping(Ping { nonce: 0 }),
            &mut out,
        );
        assert!(matches!(r, Err(ConnError::Handshake(_))));
    }

    #[test]
    fn a_replayed_auth_does_not_pass_a_new_challenge() {
        let s = || secret("s3cret-s3cret-s3cret");
        let hello = Hello::new(Role::Proxy {}, ClusterId(7), NodeId(2));
        let mut to_a = BytesMut::new();
        let mut to_c = BytesMut::new();
        let mut c = ConnectorHandshake::start(hello, s(), &mut to_a);
        let first = take(&mut to_a);
        let a1 = AcceptorHandshake::on_hello(&acceptor(7), s(), first.clone(), &mut to_c).unwrap();
        c.on_challenge(take(&mut to_c), &mut to_a).unwrap();
        let recorded = take(&mut to_a);
        a1.on_auth(recorded.clone(), &mut to_c).unwrap();
        to_c.clear();
        // An eavesdropper replays the Hello and the recorded Auth on a new connection.
        let a2 = AcceptorHandshake::on_hello(&acceptor(7), s(), first, &mut to_c).unwrap();
        to_c.clear();
        assert!(matches!(
            a2.on_auth(recorded, &mut to_c),
            Err(ConnError::Refused(RpcError::AuthFailed {}))
        ));
    }
}
