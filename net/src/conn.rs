//! The sans-IO side of a connection: a receive buffer that yields typed messages, and the
//! handshake rules. Both transports drive these; nothing here touches a socket.

use bytes::BytesMut;

use crate::error::RpcError;
use crate::frame::{FrameDecoder, FrameError};
use crate::ids::RequestId;
use crate::message::handshake::{Acceptor, Hello, HelloAck};
use crate::message::{Message, MessageError};

/// How much a read asks for when no frame is partially buffered.
pub const READ_CHUNK_BYTES: usize = 16 * 1024;

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

    /// Grows the buffer by a zeroed tail to read into, and returns that tail. The tail is as
    /// large as the frame at the front still needs (never more than the frame limit), or
    /// [`READ_CHUNK_BYTES`]. Call [`ConnReader::filled`] with the count read; if the read is
    /// abandoned (a cancelled future), the tail is discarded by the next call.
    pub fn read_space(&mut self) -> Result<&mut [u8], ConnError> {
        self.discard_tail();
        let want = match self.decoder.needed(&self.buf)? {
            Some(total) if total > self.buf.len() => (total - self.buf.len()).max(READ_CHUNK_BYTES),
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
}

/// Checks the first message a connector receives: a `HelloAck`, or an `Error` refusal.
pub fn check_hello_ack(msg: Message) -> Result<HelloAck, ConnError> {
    match msg {
        Message::HelloAck(ack) => Ok(ack),
        Message::Error(e) => Err(ConnError::Refused(e)),
        other => Err(ConnError::Handshake(format!(
            "expected HelloAck, got {}",
            other.name()
        ))),
    }
}

/// Checks the first message an acceptor receives. `Ok(Ok(ack))`: send the ack and go on;
/// `Ok(Err(refusal))`: send the refusal and close; `Err`: close without answering.
pub fn check_hello(
    acceptor: &Acceptor,
    msg: Message,
) -> Result<Result<HelloAck, RpcError>, ConnError> {
    match msg {
        Message::Hello(hello) => Ok(acceptor.accept(&hello)),
        other => Err(ConnError::Handshake(format!(
            "expected Hello, got {}",
            other.name()
        ))),
    }
}

/// Encodes a hello frame.
pub fn encode_hello(hello: Hello, out: &mut BytesMut) {
    Message::Hello(hello).encode_frame(RequestId(0), out);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{ClusterId, NodeId};
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
    fn first_message_must_be_hello() {
        let acceptor = Acceptor {
            role: Role::DsNode {},
            cluster_id: ClusterId(1),
            node_id: NodeId(1),
        };
        assert!(check_hello(&acceptor, Message::Ping(Ping { nonce: 0 })).is_err());
        let hello = Hello::new(Role::Proxy {}, ClusterId(1), NodeId(2));
        assert!(matches!(
            check_hello(&acceptor, Message::Hello(hello)),
            Ok(Ok(_))
        ));
    }
}
