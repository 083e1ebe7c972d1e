//! Request parsing as Redis 7 does it (`networking.c`: `processInlineBuffer`,
//! `processMultibulkBuffer`): multibulk (`*N\r\n$len\r\n…`) and inline commands, the same
//! limits and the same protocol error strings. A protocol error is answered with
//! `-ERR Protocol error: …` and the connection is closed after the reply; the error never
//! affects another connection.
//!
//! The parser is incremental: bytes that do not yet form a whole command stay in the buffer
//! and `Ok(None)` asks for more. Arguments are zero-copy slices of the receive buffer.
//!
//! Memory follows what arrived, never what a header announces: a partial bulk makes the
//! buffer grow at most by as many bytes as it already holds (so `$536870912` followed by one
//! byte keeps the connection's usual 16 KiB buffer), and a request whose bytes so far — arguments
//! already parsed plus the unparsed rest — exceed the query buffer limit
//! (`client-query-buffer-limit`) is [`ParseError::QueryBufferLimit`]: the connection is
//! closed without a reply, as Redis does.
// perf-critical: every command passes through here.

use std::borrow::Cow;

use bytes::{Buf, Bytes, BytesMut};

/// Longest inline command, and longest `*N` / `$N` header line: 64 KiB (`PROTO_INLINE_MAX_SIZE`).
pub const INLINE_MAX_BYTES: usize = 64 * 1024;
/// At most this many argument slots are allocated up front, whatever `*N` claims.
pub const PREALLOC_ARGS_MAX: usize = 1024;
/// Before authentication: at most this many arguments …
pub const UNAUTH_ARGS_MAX: i64 = 10;
/// … and bulk strings of at most this many bytes.
pub const UNAUTH_BULK_MAX: i64 = 16 * 1024;

/// Limits of one connection's parser.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest bulk string (`proto-max-bulk-len`). Default 512 MiB, as Redis.
    pub max_bulk_bytes: i64,
    /// Largest query buffer: a command that needs more is a protocol error
    /// (`client-query-buffer-limit`). Default 1 GiB, as Redis.
    pub max_query_buffer_bytes: usize,
    /// Query buffer limit before authentication (when a password is set). 1 MiB.
    pub unauth_query_buffer_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_bulk_bytes: 512 * 1024 * 1024,
            max_query_buffer_bytes: 1024 * 1024 * 1024,
            unauth_query_buffer_bytes: 1024 * 1024,
        }
    }
}

/// A request the connection must refuse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// Answered with this text after `-ERR `, then the connection is closed.
    #[error("Protocol error: {0}")]
    Protocol(Cow<'static, str>),
    /// The request outgrew the query buffer limit: the connection is closed without a reply.
    #[error("query buffer limit exceeded")]
    QueryBufferLimit,
}

fn perr(msg: &'static str) -> ParseError {
    ParseError::Protocol(Cow::Borrowed(msg))
}

/// Largest step by which a partial bulk grows the buffer ahead of what has arrived.
const BULK_RESERVE_MAX: usize = 1 << 20;

/// Where a multibulk command is in its parse, so a command split across reads is not
/// re-scanned from its start.
#[derive(Debug, Default)]
struct Multibulk {
    /// Arguments still to read.
    remaining: usize,
    args: Vec<Bytes>,
    /// Bytes of `args`.
    arg_bytes: usize,
}

/// An incremental request parser for one connection.
#[derive(Debug)]
pub struct RequestParser {
    limits: Limits,
    partial: Option<Multibulk>,
}

impl RequestParser {
    /// A parser with these limits.
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            partial: None,
        }
    }

    /// Changes the query buffer limit (`CONFIG SET client-query-buffer-limit`).
    pub fn set_query_buffer_limit(&mut self, bytes: usize) {
        self.limits.max_query_buffer_bytes = bytes;
    }

    /// Whether part of a request has been read (in the parser or still in `buf`).
    pub fn has_partial(&self, buf: &BytesMut) -> bool {
        self.partial.is_some() || !buf.is_empty()
    }

    /// Takes the next whole command off the front of `buf`. `Ok(None)`: more bytes are needed.
    /// An empty command (`*0`, a blank inline line) is skipped. `authenticated` is false while
    /// a password is set and the connection has not authenticated: the stricter limits apply.
    pub fn next(
        &mut self,
        buf: &mut BytesMut,
        authenticated: bool,
    ) -> Result<Option<Vec<Bytes>>, ParseError> {
        loop {
            let limit = if authenticated {
                self.limits.max_query_buffer_bytes
            } else {
                self.limits.unauth_query_buffer_bytes
            };
            let result = if self.partial.is_some() || buf.first() == Some(&b'*') {
                self.multibulk(buf, authenticated)?
            } else if buf.is_empty() {
                None
            } else {
                inline(buf)?
            };
            match result {
                Some(args) if args.is_empty() => continue,
                Some(args) => return Ok(Some(args)),
                None if self.pending_bytes(buf) > limit => {
                    return Err(ParseError::QueryBufferLimit);
                }
                None => return Ok(None),
            }
        }
    }

    /// Bytes of the request being read: arguments already parsed plus what is unparsed.
    fn pending_bytes(&self, buf: &BytesMut) -> usize {
        buf.len() + self.partial.as_ref().map_or(0, |p| p.arg_bytes)
    }

    fn multibulk(
        &mut self,
        buf: &mut BytesMut,
        authenticated: bool,
    ) -> Result<Option<Vec<Bytes>>, ParseError> {
        if self.partial.is_none() {
            let Some(line_end) = find_crlf(buf, INLINE_MAX_BYTES, "too big mbulk count string")?
            else {
                return Ok(None);
            };
            let n = parse_int(&buf[1..line_end]).ok_or(perr("invalid multibulk length"))?;
            if n > i64::from(i32::MAX) {
                return Err(perr("invalid multibulk length"));
            }
            if !authenticated && n > UNAUTH_ARGS_MAX {
                return Err(perr("unauthenticated multibulk length"));
            }
            buf.advance(line_end + 2);
            if n <= 0 {
                return Ok(Some(Vec::new()));
            }
            let n = usize::try_from(n).map_err(|_| perr("invalid multibulk length"))?;
            self.partial = Some(Multibulk {
                remaining: n,
                args: Vec::with_capacity(n.min(PREALLOC_ARGS_MAX)),
                arg_bytes: 0,
            });
        }
        let state = self.partial.as_mut().expect("set above");
        while state.remaining > 0 {
            let Some(&first) = buf.first() else {
                return Ok(None);
            };
            if first != b'$' {
                let got = char::from(first);
                return Err(ParseError::Protocol(Cow::Owned(format!(
                    "expected '$', got '{got}'"
                ))));
            }
            let Some(line_end) = find_crlf(buf, INLINE_MAX_BYTES, "too big bulk count string")?
            else {
                return Ok(None);
            };
            let len = parse_int(&buf[1..line_end]).ok_or(perr("invalid bulk length"))?;
            if !authenticated && len > UNAUTH_BULK_MAX {
                return Err(perr("unauthenticated bulk length"));
            }
            if len < 0 || len > self.limits.max_bulk_bytes {
                return Err(perr("invalid bulk length"));
            }
            let len = usize::try_from(len).map_err(|_| perr("invalid bulk length"))?;
            let total = line_end + 2 + len + 2;
            if buf.len() < total {
                // Make room for the bulk in large steps instead of read by read, but never
                // more than what has arrived (nor 1 MiB) ahead of it: a claimed length alone
                // must not make us allocate.
                let ahead = buf.len().min(BULK_RESERVE_MAX);
                buf.reserve((total - buf.len()).min(ahead));
                return Ok(None);
            }
            if &buf[total - 2..total] != b"\r\n" {
                return Err(perr("bulk string not terminated by CRLF"));
            }
            buf.advance(line_end + 2);
            let arg = buf.split_to(len).freeze();
            buf.advance(2);
            state.arg_bytes += arg.len();
            state.args.push(arg);
            state.remaining -= 1;
        }
        Ok(self.partial.take().map(|s| s.args))
    }
}

/// Position of the `\r` of the first `\r\n`, or `None` if there is none yet; a line longer
/// than `max` is the error `what`.
fn find_crlf(buf: &[u8], max: usize, what: &'static str) -> Result<Option<usize>, ParseError> {
    let window = &buf[..buf.len().min(max + 2)];
    match window.windows(2).position(|w| w == b"\r\n") {
        Some(i) => Ok(Some(i)),
        None if buf.len() > max => Err(perr(what)),
        None => Ok(None),
    }
}

/// Parses a decimal `i64` the way Redis's `string2ll` does (the one copy in `net`).
fn parse_int(s: &[u8]) -> Option<i64> {
    net::redis_num::parse_i64(s)
}

/// An inline command: one line (`\n` or `\r\n` terminated) split like `sdssplitargs`.
fn inline(buf: &mut BytesMut) -> Result<Option<Vec<Bytes>>, ParseError> {
    let window = &buf[..buf.len().min(INLINE_MAX_BYTES + 1)];
    let Some(nl) = window.iter().position(|&b| b == b'\n') else {
        if buf.len() > INLINE_MAX_BYTES {
            return Err(perr("too big inline request"));
        }
        return Ok(None);
    };
    let line_end = if nl > 0 && buf[nl - 1] == b'\r' {
        nl - 1
    } else {
        nl
    };
    let args = split_args(&buf[..line_end]).ok_or(perr("unbalanced quotes in request"))?;
    buf.advance(nl + 1);
    Ok(Some(args))
}

pub use net::redis_args::split_args;

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse_all(input: &[u8], authenticated: bool) -> Result<Vec<Vec<Bytes>>, ParseError> {
        let mut p = RequestParser::new(Limits::default());
        let mut buf = BytesMut::from(input);
        let mut out = Vec::new();
        while let Some(cmd) = p.next(&mut buf, authenticated)? {
            out.push(cmd);
        }
        Ok(out)
    }

    fn multibulk(args: &[&[u8]]) -> Vec<u8> {
        let mut v = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            v.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            v.extend_from_slice(a);
            v.extend_from_slice(b"\r\n");
        }
        v
    }

    #[test]
    fn multibulk_and_inline_commands_parse_in_sequence() {
        let mut input = multibulk(&[b"SET", b"k", b"v\r\nwith crlf"]);
        input.extend_from_slice(b"PING\r\n");
        input.extend_from_slice(b"get \"a b\" 'c\\'d'\n");
        let cmds = parse_all(&input, true).unwrap();
        assert_eq!(cmds.len(), 3);
        assert_eq!(cmds[0][2], Bytes::from_static(b"v\r\nwith crlf"));
        assert_eq!(cmds[1], vec![Bytes::from_static(b"PING")]);
        assert_eq!(
            cmds[2],
            vec![
                Bytes::from_static(b"get"),
                Bytes::from_static(b"a b"),
                Bytes::from_static(b"c'd")
            ]
        );
    }

    #[test]
    fn inline_escapes_follow_sdssplitargs() {
        let args = split_args(b"set \"\\x41\\n\\t\" x").unwrap();
        assert_eq!(args[1], Bytes::from_static(b"A\n\t"));
        assert!(split_args(b"set \"abc").is_none());
        assert!(split_args(b"set \"abc\"def").is_none());
        assert!(split_args(b"   ").unwrap().is_empty());
    }

    #[test]
    fn empty_commands_are_skipped() {
        let cmds = parse_all(b"*0\r\n\r\n*-1\r\nPING\r\n", true).unwrap();
        assert_eq!(cmds, vec![vec![Bytes::from_static(b"PING")]]);
    }

    #[test]
    fn protocol_errors_carry_redis_messages() {
        // Lengths are parsed as Redis's string2ll: no "-0", no leading zeros (checked against
        // redis-server 7.0.15: the same replies).
        let cases: [(&[u8], &str); 10] = [
            (b"*abc\r\n", "invalid multibulk length"),
            (b"*-0\r\n", "invalid multibulk length"),
            (b"*1\r\n$-0\r\n", "invalid bulk length"),
            (b"*1\r\n$04\r\nPING\r\n", "invalid bulk length"),
            (b"*3000000000\r\n", "invalid multibulk length"),
            (b"*1\r\n+x\r\n", "expected '$', got '+'"),
            (b"*1\r\n$-5\r\n", "invalid bulk length"),
            (b"*1\r\n$600000000\r\n", "invalid bulk length"),
            (b"*1\r\n$1\r\nabc\r\n", "bulk string not terminated by CRLF"),
            (b"set \"unbalanced\r\n", "unbalanced quotes in request"),
        ];
        for (input, msg) in cases {
            assert_eq!(parse_all(input, true), Err(perr(msg)), "{input:?}");
            assert_eq!(
                parse_all(input, true).unwrap_err().to_string(),
                format!("Protocol error: {msg}")
            );
        }
    }

    #[test]
    fn unauthenticated_clients_get_tight_limits() {
        let many: Vec<&[u8]> = vec![b"x"; 11];
        assert_eq!(
            parse_all(&multibulk(&many), false),
            Err(perr("unauthenticated multibulk length"))
        );
        assert_eq!(
            parse_all(b"*1\r\n$16385\r\n", false),
            Err(perr("unauthenticated bulk length"))
        );
        let big = vec![b'a'; 2 * 1024 * 1024];
        assert_eq!(parse_all(&big, false), Err(perr("too big inline request")));
    }

    #[test]
    fn oversized_header_lines_are_refused_without_waiting_for_crlf() {
        let mut line = b"*".to_vec();
        line.extend(std::iter::repeat_n(b'1', INLINE_MAX_BYTES + 10));
        assert_eq!(
            parse_all(&line, true),
            Err(perr("too big mbulk count string"))
        );
    }

    #[test]
    fn huge_claimed_argument_count_allocates_a_bounded_vector() {
        let mut p = RequestParser::new(Limits::default());
        let mut buf = BytesMut::from(&b"*2000000000\r\n$1\r\na\r\n"[..]);
        assert_eq!(p.next(&mut buf, true), Ok(None));
        let state = p.partial.as_ref().unwrap();
        assert!(state.args.capacity() <= PREALLOC_ARGS_MAX);
    }

    #[test]
    fn an_announced_huge_bulk_grows_the_buffer_only_with_what_arrived() {
        let mut p = RequestParser::new(Limits::default());
        let mut buf = BytesMut::with_capacity(16 * 1024);
        buf.extend_from_slice(b"*1\r\n$536870912\r\nx");
        assert_eq!(p.next(&mut buf, true), Ok(None));
        assert!(buf.capacity() <= 16 * 1024, "{}", buf.capacity());
        // As bytes arrive the buffer stays within a small factor of them (the reserve ahead and
        // the Vec doubling).
        for _ in 0..64 {
            buf.extend_from_slice(&[b'x'; 32 * 1024]);
            assert_eq!(p.next(&mut buf, true), Ok(None));
            assert!(
                buf.capacity() <= 4 * buf.len() + 64 * 1024,
                "{} for {}",
                buf.capacity(),
                buf.len()
            );
        }
    }

    #[test]
    fn a_request_past_the_query_buffer_limit_is_refused_counting_parsed_arguments() {
        let limits = Limits {
            max_query_buffer_bytes: 1 << 20,
            ..Limits::default()
        };
        let mut p = RequestParser::new(limits);
        let mut buf = BytesMut::new();
        buf.extend_from_slice(b"*3\r\n$600000\r\n");
        buf.extend_from_slice(&[b'a'; 600_000]);
        buf.extend_from_slice(b"\r\n$600000\r\n");
        assert_eq!(p.next(&mut buf, true), Ok(None));
        buf.extend_from_slice(&[b'b'; 500_000]);
        assert_eq!(p.next(&mut buf, true), Err(ParseError::QueryBufferLimit));
        // The same request fits a larger limit.
        let mut p = RequestParser::new(Limits::default());
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&multibulk(&[&[b'a'; 600_000], &[b'b'; 600_000], b"c"]));
        assert_eq!(
            p.next(&mut buf, true).map(|a| a.map(|a| a.len())),
            Ok(Some(3))
        );
        // A lowered limit applies from the next call.
        let mut p = RequestParser::new(Limits::default());
        let mut buf = BytesMut::from(&b"*1\r\n$2000000\r\n"[..]);
        buf.extend_from_slice(&[b'x'; 1_100_000]);
        assert_eq!(p.next(&mut buf, true), Ok(None));
        p.set_query_buffer_limit(1 << 20);
        assert_eq!(p.next(&mut buf, true), Err(ParseError::QueryBufferLimit));
    }

    proptest! {
        /// Any command, split at any points across reads, parses to the same arguments.
        #[test]
        fn commands_split_anywhere_reassemble(
            cmds in prop::collection::vec(prop::collection::vec(prop::collection::vec(any::<u8>(), 0..40), 1..6), 1..6),
            cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..8),
        ) {
            let mut wire = Vec::new();
            for c in &cmds {
                let refs: Vec<&[u8]> = c.iter().map(|a| &a[..]).collect();
                wire.extend(multibulk(&refs));
            }
            let mut cuts: Vec<usize> = cuts.iter().map(|i| i.index(wire.len() + 1)).collect();
            cuts.push(wire.len());
            cuts.sort_unstable();
            let mut p = RequestParser::new(Limits::default());
            let mut buf = BytesMut::new();
            let mut got = Vec::new();
            let mut at = 0;
            for cut in cuts {
                buf.extend_from_slice(&wire[at..cut]);
                at = cut;
                while let Some(cmd) = p.next(&mut buf, true).unwrap() {
                    got.push(cmd.iter().map(|b| b.to_vec()).collect::<Vec<_>>());
                }
            }
            prop_assert_eq!(got, cmds);
        }

        /// Random bytes never panic the parser, authenticated or not.
        #[test]
        fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512), auth in any::<bool>()) {
            let _ = parse_all(&bytes, auth);
        }
    }
}
