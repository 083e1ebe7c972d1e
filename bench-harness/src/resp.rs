//! A small RESP client: writes a batch of commands in one write, reads one reply per command.
//! Enough of RESP2 to check every reply (errors are counted, never ignored).

use anyhow::{Context, bail};
use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One reply, reduced to what the benchmark checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `+…`, `:…`, a bulk string or an array: success.
    Ok,
    /// A nil bulk or array (a read of a missing key).
    Nil,
    /// `-…`.
    Error(String),
}

/// A connection to a RESP server.
#[derive(Debug)]
pub struct RespConn {
    stream: TcpStream,
    out: BytesMut,
    inbuf: BytesMut,
}

impl RespConn {
    /// Connects (`host:port`) and disables Nagle.
    pub async fn connect(addr: &str) -> anyhow::Result<Self> {
        let stream = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connect to {addr}"))?;
        stream.set_nodelay(true)?;
        Ok(RespConn {
            stream,
            out: BytesMut::with_capacity(64 * 1024),
            inbuf: BytesMut::with_capacity(64 * 1024),
        })
    }

    /// Queues one command (written by [`RespConn::flush`]).
    pub fn push(&mut self, args: &[&[u8]]) {
        self.out
            .extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
        for a in args {
            self.out
                .extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            self.out.extend_from_slice(a);
            self.out.extend_from_slice(b"\r\n");
        }
    }

    /// Writes every queued command.
    pub async fn flush(&mut self) -> anyhow::Result<()> {
        self.stream.write_all(&self.out).await?;
        self.out.clear();
        Ok(())
    }

    /// Reads the next reply.
    pub async fn read_reply(&mut self) -> anyhow::Result<Reply> {
        loop {
            if let Some((reply, used)) = parse_reply(&self.inbuf)? {
                self.inbuf.advance(used);
                return Ok(reply);
            }
            if self.stream.read_buf(&mut self.inbuf).await? == 0 {
                bail!("server closed the connection");
            }
        }
    }

    /// Sends one command and reads its reply.
    pub async fn call(&mut self, args: &[&[u8]]) -> anyhow::Result<Reply> {
        self.push(args);
        self.flush().await?;
        self.read_reply().await
    }
}

fn line(buf: &[u8]) -> Option<(&[u8], usize)> {
    let end = buf.windows(2).position(|w| w == b"\r\n")?;
    Some((&buf[..end], end + 2))
}

fn int(s: &[u8]) -> anyhow::Result<i64> {
    std::str::from_utf8(s)?
        .parse()
        .with_context(|| format!("bad length {:?}", String::from_utf8_lossy(s)))
}

/// Parses one reply from the front of `buf`: `Ok(None)` if incomplete.
pub fn parse_reply(buf: &[u8]) -> anyhow::Result<Option<(Reply, usize)>> {
    let Some(&tag) = buf.first() else {
        return Ok(None);
    };
    let Some((body, mut used)) = line(&buf[1..]) else {
        return Ok(None);
    };
    used += 1;
    Ok(Some(match tag {
        b'+' | b':' | b',' | b'#' => (Reply::Ok, used),
        b'_' => (Reply::Nil, used),
        b'-' => (
            Reply::Error(String::from_utf8_lossy(body).into_owned()),
            used,
        ),
        b'$' => {
            let n = int(body)?;
            if n < 0 {
                return Ok(Some((Reply::Nil, used)));
            }
            let total = used + n as usize + 2;
            if buf.len() < total {
                return Ok(None);
            }
            (Reply::Ok, total)
        }
        b'*' | b'%' | b'~' => {
            let n = int(body)?;
            if n < 0 {
                return Ok(Some((Reply::Nil, used)));
            }
            let items = if tag == b'%' { n * 2 } else { n };
            for _ in 0..items {
                match parse_reply(&buf[used..])? {
                    Some((_, u)) => used += u,
                    None => return Ok(None),
                }
            }
            (Reply::Ok, used)
        }
        other => bail!("unexpected reply type byte {other:#04x}"),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_parse_whole_or_not_at_all() {
        let wire = b"*2\r\n$3\r\nabc\r\n$-1\r\n";
        assert_eq!(parse_reply(wire).unwrap(), Some((Reply::Ok, wire.len())));
        for cut in 0..wire.len() {
            assert_eq!(parse_reply(&wire[..cut]).unwrap(), None, "cut {cut}");
        }
        assert_eq!(parse_reply(b"$-1\r\n").unwrap(), Some((Reply::Nil, 5)));
        assert_eq!(
            parse_reply(b"-ERR x\r\n").unwrap(),
            Some((Reply::Error("ERR x".into()), 8))
        );
        assert!(parse_reply(b"?\r\n").is_err());
    }
}
