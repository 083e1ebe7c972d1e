//! A minimal blocking RESP2 client for tests: one command at a time, every read bounded by
//! a timeout, every length checked (a bad reply is an `InvalidData` error, never a panic).

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

/// Largest bulk string or array accepted.
const MAX_LEN: usize = 64 << 20;
/// Deepest nesting of arrays accepted.
const MAX_DEPTH: usize = 8;

/// One RESP2 reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `+text`
    Status(String),
    /// `-text`
    Error(String),
    /// `:n`
    Int(i64),
    /// `$n` (`None`: `$-1`).
    Bulk(Option<Vec<u8>>),
    /// `*n` (`None`: `*-1`).
    Array(Option<Vec<Reply>>),
}

impl Reply {
    /// Whether it is `+OK`.
    pub fn is_ok(&self) -> bool {
        matches!(self, Reply::Status(s) if s == "OK")
    }

    /// A bulk reply as text (`None` for anything else or nil).
    pub fn text(&self) -> Option<String> {
        match self {
            Reply::Bulk(Some(b)) => Some(String::from_utf8_lossy(b).into_owned()),
            _ => None,
        }
    }
}

/// A connection to a RESP server.
#[derive(Debug)]
pub struct Conn {
    stream: BufReader<TcpStream>,
}

impl Conn {
    /// Connects to `addr` within `timeout`; every later read and write times out after
    /// `timeout` too.
    pub fn connect(addr: impl ToSocketAddrs, timeout: Duration) -> io::Result<Conn> {
        let addr: SocketAddr = addr
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no address"))?;
        let s = TcpStream::connect_timeout(&addr, timeout)?;
        s.set_read_timeout(Some(timeout))?;
        s.set_write_timeout(Some(timeout))?;
        s.set_nodelay(true)?;
        Ok(Conn {
            stream: BufReader::new(s),
        })
    }

    /// Sends one command and reads its reply.
    pub fn call<A: AsRef<[u8]>>(&mut self, args: &[A]) -> io::Result<Reply> {
        let mut cmd = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            let a = a.as_ref();
            cmd.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            cmd.extend_from_slice(a);
            cmd.extend_from_slice(b"\r\n");
        }
        self.stream.get_mut().write_all(&cmd)?;
        read_reply(&mut self.stream, 0)
    }
}

fn bad(what: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.into())
}

fn read_line(r: &mut impl BufRead) -> io::Result<String> {
    let mut line = Vec::new();
    r.by_ref()
        .take(MAX_LEN as u64)
        .read_until(b'\n', &mut line)?;
    if !line.ends_with(b"\r\n") {
        return Err(if line.is_empty() {
            io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed")
        } else {
            bad("a reply line without CRLF")
        });
    }
    line.truncate(line.len() - 2);
    String::from_utf8(line).map_err(|_| bad("a reply line that is not UTF-8"))
}

fn length(text: &str) -> io::Result<Option<usize>> {
    if text == "-1" {
        return Ok(None);
    }
    let n: usize = text
        .parse()
        .map_err(|_| bad(format!("bad length {text:?}")))?;
    if n > MAX_LEN {
        return Err(bad(format!("length {n} over {MAX_LEN}")));
    }
    Ok(Some(n))
}

/// Reads one reply (arrays nested at most [`MAX_DEPTH`] deep).
pub fn read_reply(r: &mut impl BufRead, depth: usize) -> io::Result<Reply> {
    if depth > MAX_DEPTH {
        return Err(bad("arrays nested too deep"));
    }
    let line = read_line(r)?;
    let (kind, rest) = line
        .split_at_checked(1)
        .ok_or_else(|| bad("an empty reply line"))?;
    Ok(match kind {
        "+" => Reply::Status(rest.to_string()),
        "-" => Reply::Error(rest.to_string()),
        ":" => Reply::Int(
            rest.parse()
                .map_err(|_| bad(format!("bad integer {rest:?}")))?,
        ),
        "$" => match length(rest)? {
            None => Reply::Bulk(None),
            Some(n) => {
                let mut b = vec![0; n + 2];
                r.read_exact(&mut b)?;
                if !b.ends_with(b"\r\n") {
                    return Err(bad("a bulk string without CRLF"));
                }
                b.truncate(n);
                Reply::Bulk(Some(b))
            }
        },
        "*" => match length(rest)? {
            None => Reply::Array(None),
            Some(n) => {
                let mut items = Vec::with_capacity(n.min(1024));
                for _ in 0..n {
                    items.push(read_reply(r, depth + 1)?);
                }
                Reply::Array(Some(items))
            }
        },
        _ => return Err(bad(format!("unknown reply type {kind:?}"))),
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn encode(r: &Reply, out: &mut Vec<u8>) {
        match r {
            Reply::Status(s) => out.extend_from_slice(format!("+{s}\r\n").as_bytes()),
            Reply::Error(s) => out.extend_from_slice(format!("-{s}\r\n").as_bytes()),
            Reply::Int(n) => out.extend_from_slice(format!(":{n}\r\n").as_bytes()),
            Reply::Bulk(None) => out.extend_from_slice(b"$-1\r\n"),
            Reply::Bulk(Some(b)) => {
                out.extend_from_slice(format!("${}\r\n", b.len()).as_bytes());
                out.extend_from_slice(b);
                out.extend_from_slice(b"\r\n");
            }
            Reply::Array(None) => out.extend_from_slice(b"*-1\r\n"),
            Reply::Array(Some(items)) => {
                out.extend_from_slice(format!("*{}\r\n", items.len()).as_bytes());
                items.iter().for_each(|i| encode(i, out));
            }
        }
    }

    fn reply() -> impl Strategy<Value = Reply> {
        let line = "[a-zA-Z0-9 ]{0,20}";
        let leaf = prop_oneof![
            line.prop_map(Reply::Status),
            line.prop_map(Reply::Error),
            any::<i64>().prop_map(Reply::Int),
            prop::option::of(prop::collection::vec(any::<u8>(), 0..40)).prop_map(Reply::Bulk),
        ];
        leaf.prop_recursive(3, 20, 4, |inner| {
            prop::option::of(prop::collection::vec(inner, 0..4)).prop_map(Reply::Array)
        })
    }

    proptest! {
        #[test]
        fn an_encoded_reply_reads_back_the_same(r in reply()) {
            let mut bytes = Vec::new();
            encode(&r, &mut bytes);
            prop_assert_eq!(parse(&bytes).unwrap(), r);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
            let _ = parse(&bytes);
        }
    }

    fn parse(bytes: &[u8]) -> io::Result<Reply> {
        read_reply(&mut io::Cursor::new(bytes), 0)
    }

    #[test]
    fn replies_of_every_kind_are_read() {
        assert_eq!(parse(b"+OK\r\n").unwrap(), Reply::Status("OK".into()));
        assert!(parse(b"+OK\r\n").unwrap().is_ok());
        assert_eq!(parse(b"-ERR x\r\n").unwrap(), Reply::Error("ERR x".into()));
        assert_eq!(parse(b":-7\r\n").unwrap(), Reply::Int(-7));
        assert_eq!(parse(b"$3\r\nabc\r\n").unwrap().text().unwrap(), "abc");
        assert_eq!(parse(b"$-1\r\n").unwrap(), Reply::Bulk(None));
        assert_eq!(
            parse(b"*2\r\n:1\r\n$-1\r\n").unwrap(),
            Reply::Array(Some(vec![Reply::Int(1), Reply::Bulk(None)]))
        );
    }

    #[test]
    fn malformed_replies_are_errors_not_panics() {
        for b in [
            &b""[..],
            b"+OK",
            b"?\r\n",
            b"\r\n",
            b":x\r\n",
            b"$5\r\nab\r\n",
            b"$99999999999\r\n",
            b"$2\r\nabcd",
            b"*1\r\n",
        ] {
            assert!(parse(b).is_err(), "{b:?}");
        }
        let deep = b"*1\r\n".repeat(20);
        assert!(parse(&deep).is_err());
    }
}
