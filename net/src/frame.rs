//! Frames (`docs/format/wire.md` §1): `len u32 | kind u16 | flags u16 | request id u64 |
//! payload | crc32c u32`, little-endian, the checksum covering header and payload.
//!
//! [`FrameDecoder`] is sans-IO: the transport appends whatever bytes arrived to a `BytesMut` and
//! asks for frames; a partial frame is `Ok(None)`. The length is checked against the limit
//! before any payload is buffered.
// perf-critical: every message passes through here.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::ids::RequestId;

/// Bytes before the payload.
pub const HEADER_BYTES: usize = 16;
/// Bytes after the payload (the checksum).
pub const TRAILER_BYTES: usize = 4;
/// Default limit on a frame's payload: 520 MiB, so that a request carrying the largest value
/// (`net::limits::DEFAULT_MAX_VALUE_BYTES`, 512 MiB) with its key, and a Raft message carrying
/// the largest entry, fit. A reader's buffer grows with the bytes that arrive, never with the
/// length a header announces.
pub const DEFAULT_MAX_FRAME_BYTES: usize = 520 * 1024 * 1024;

/// Why a byte stream is not a valid sequence of frames. Every variant closes the connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The declared payload length is above the configured limit.
    #[error("frame of {len} bytes exceeds the {max} byte limit")]
    Oversized {
        /// Declared payload length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The checksum does not match the header and payload.
    #[error("frame checksum mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    BadChecksum {
        /// The checksum in the trailer.
        stored: u32,
        /// The checksum of the bytes received.
        computed: u32,
    },
    /// Reserved flags were set.
    #[error("reserved frame flags {0:#06x} are set")]
    BadFlags(u16),
    /// The stream ended inside a frame.
    #[error("connection closed inside a frame ({0} bytes buffered)")]
    TruncatedStream(usize),
}

/// One frame's contents; the payload is a zero-copy slice of the receive buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Message kind (`docs/format/wire.md` §4).
    pub kind: u16,
    /// Request id (0 for one-way messages and the handshake).
    pub request_id: RequestId,
    /// The encoded message.
    pub payload: Bytes,
}

/// Appends one frame whose payload is written by `write_payload`. The header is filled in
/// after the payload is written, so the payload is never copied.
pub fn encode_frame(
    buf: &mut BytesMut,
    kind: u16,
    request_id: RequestId,
    write_payload: impl FnOnce(&mut BytesMut),
) {
    let start = buf.len();
    buf.put_bytes(0, HEADER_BYTES);
    write_payload(buf);
    let payload_len = buf.len() - start - HEADER_BYTES;
    let len =
        u32::try_from(payload_len).expect("payloads are bounded by the frame limit (< 4 GiB)");
    seal(buf, start, len, kind, request_id);
}

/// [`encode_frame`] for a peer that accepts payloads of at most `max` bytes: a larger payload
/// is not appended (`buf` is left as it was) and is reported as [`FrameError::Oversized`].
pub fn encode_frame_within(
    buf: &mut BytesMut,
    kind: u16,
    request_id: RequestId,
    max: usize,
    write_payload: impl FnOnce(&mut BytesMut),
) -> Result<(), FrameError> {
    let start = buf.len();
    buf.put_bytes(0, HEADER_BYTES);
    write_payload(buf);
    let payload_len = buf.len() - start - HEADER_BYTES;
    match u32::try_from(payload_len) {
        Ok(len) if payload_len <= max => {
            seal(buf, start, len, kind, request_id);
            Ok(())
        }
        _ => {
            buf.truncate(start);
            Err(FrameError::Oversized {
                len: payload_len,
                max,
            })
        }
    }
}

/// Fills in the header of the frame starting at `start` and appends its checksum.
fn seal(buf: &mut BytesMut, start: usize, len: u32, kind: u16, request_id: RequestId) {
    let header = &mut buf[start..start + HEADER_BYTES];
    header[0..4].copy_from_slice(&len.to_le_bytes());
    header[4..6].copy_from_slice(&kind.to_le_bytes());
    header[6..8].copy_from_slice(&0u16.to_le_bytes());
    header[8..16].copy_from_slice(&request_id.0.to_le_bytes());
    let crc = crc32c::crc32c(&buf[start..]);
    buf.put_u32_le(crc);
}

/// Splits a byte stream into frames.
#[derive(Debug, Clone)]
pub struct FrameDecoder {
    max_frame_bytes: usize,
}

impl Default for FrameDecoder {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_FRAME_BYTES)
    }
}

impl FrameDecoder {
    /// A decoder that refuses payloads above `max_frame_bytes`.
    pub fn new(max_frame_bytes: usize) -> Self {
        Self { max_frame_bytes }
    }

    /// The payload limit.
    pub fn max_frame_bytes(&self) -> usize {
        self.max_frame_bytes
    }

    /// How many bytes the frame at the front of `buf` needs in all, once its length is there
    /// and within the limit. A reader must not reserve that much up front (the length is the
    /// peer's claim): `ConnReader` grows with the bytes that arrived.
    pub fn needed(&self, buf: &[u8]) -> Result<Option<usize>, FrameError> {
        let Some(len_bytes) = buf.first_chunk::<4>() else {
            return Ok(None);
        };
        let len = u32::from_le_bytes(*len_bytes) as usize;
        if len > self.max_frame_bytes {
            return Err(FrameError::Oversized {
                len,
                max: self.max_frame_bytes,
            });
        }
        Ok(Some(HEADER_BYTES + len + TRAILER_BYTES))
    }

    /// Takes one complete frame off the front of `buf`, `Ok(None)` if more bytes are needed.
    pub fn decode(&self, buf: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        let Some(total) = self.needed(buf)? else {
            return Ok(None);
        };
        if buf.len() < total {
            return Ok(None);
        }
        let body = &buf[..total - TRAILER_BYTES];
        let stored = u32::from_le_bytes(read_array(&buf[total - TRAILER_BYTES..total]));
        let computed = crc32c::crc32c(body);
        if stored != computed {
            return Err(FrameError::BadChecksum { stored, computed });
        }
        let kind = u16::from_le_bytes(read_array(&buf[4..6]));
        let flags = u16::from_le_bytes(read_array(&buf[6..8]));
        if flags != 0 {
            return Err(FrameError::BadFlags(flags));
        }
        let request_id = RequestId(u64::from_le_bytes(read_array(&buf[8..16])));
        let mut frame = buf.split_to(total);
        frame.advance(HEADER_BYTES);
        frame.truncate(frame.len() - TRAILER_BYTES);
        Ok(Some(Frame {
            kind,
            request_id,
            payload: frame.freeze(),
        }))
    }

    /// Called when the stream ended: leftover bytes mean the peer stopped inside a frame.
    pub fn finish(&self, buf: &BytesMut) -> Result<(), FrameError> {
        if buf.is_empty() {
            Ok(())
        } else {
            Err(FrameError::TruncatedStream(buf.len()))
        }
    }
}

/// Copies a slice whose length the caller has already established into an array.
fn read_array<const N: usize>(s: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(s);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one_frame(payload: &[u8]) -> BytesMut {
        let mut buf = BytesMut::new();
        encode_frame(&mut buf, 0x0100, RequestId(42), |b| b.put_slice(payload));
        buf
    }

    #[test]
    fn frame_round_trips_and_leaves_following_bytes() {
        let mut buf = one_frame(b"hello");
        buf.put_slice(b"next");
        let d = FrameDecoder::default();
        let f = d.decode(&mut buf).unwrap().unwrap();
        assert_eq!(f.kind, 0x0100);
        assert_eq!(f.request_id, RequestId(42));
        assert_eq!(&f.payload[..], b"hello");
        assert_eq!(&buf[..], b"next");
    }

    #[test]
    fn every_prefix_of_a_frame_is_incomplete_not_an_error() {
        let full = one_frame(b"some payload bytes");
        let d = FrameDecoder::default();
        for cut in 0..full.len() {
            let mut part = BytesMut::from(&full[..cut]);
            assert_eq!(d.decode(&mut part), Ok(None), "cut at {cut}");
            assert_eq!(
                d.finish(&part).is_err(),
                cut > 0,
                "finish after cut at {cut}"
            );
        }
    }

    #[test]
    fn a_frame_within_the_limit_is_appended_and_a_larger_one_leaves_the_buffer_unchanged() {
        let mut buf = one_frame(b"before");
        let kept = buf.clone();
        let put = |b: &mut BytesMut| b.put_slice(&[7u8; 1025]);
        assert_eq!(
            encode_frame_within(&mut buf, 0x0100, RequestId(1), 1024, put),
            Err(FrameError::Oversized {
                len: 1025,
                max: 1024
            })
        );
        assert_eq!(buf, kept);
        encode_frame_within(&mut buf, 0x0100, RequestId(1), 1025, put).unwrap();
        let d = FrameDecoder::new(1025);
        d.decode(&mut buf).unwrap().unwrap();
        assert_eq!(d.decode(&mut buf).unwrap().unwrap().payload.len(), 1025);
    }

    #[test]
    fn oversized_length_is_refused_before_buffering() {
        let d = FrameDecoder::new(1024);
        let mut buf = BytesMut::new();
        buf.put_u32_le(1025);
        assert_eq!(
            d.decode(&mut buf),
            Err(FrameError::Oversized {
                len: 1025,
                max: 1024
            })
        );
    }

    #[test]
    fn any_flipped_bit_is_detected() {
        let full = one_frame(b"payload");
        let d = FrameDecoder::default();
        for byte in 0..full.len() {
            for bit in 0..8 {
                let mut bad = full.clone();
                bad[byte] ^= 1 << bit;
                // A flip in the length field may also make the frame look incomplete.
                match d.decode(&mut bad) {
                    Err(_) | Ok(None) => {}
                    Ok(Some(f)) => panic!("flip {byte}:{bit} accepted as {f:?}"),
                }
            }
        }
    }

    #[test]
    fn reserved_flags_are_refused() {
        let mut buf = one_frame(b"x");
        buf[6] = 1;
        // Re-seal so that only the flags are wrong.
        let end = buf.len() - TRAILER_BYTES;
        let crc = crc32c::crc32c(&buf[..end]);
        buf[end..].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(
            FrameDecoder::default().decode(&mut buf),
            Err(FrameError::BadFlags(1))
        );
    }
}
