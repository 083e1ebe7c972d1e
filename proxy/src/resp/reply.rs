//! Reply encoding for RESP2 and RESP3. A [`Reply`] is written in the protocol the connection
//! chose with `HELLO`: RESP3 types (null, map, set, double, boolean) fall back to their RESP2
//! forms as Redis does (`$-1`/`*-1`, flat arrays, bulk strings, integers).
// perf-critical: every reply passes through here.

use bytes::{BufMut, Bytes, BytesMut};

/// The protocol version of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Protocol {
    /// RESP2, the default until `HELLO 3`.
    #[default]
    Resp2,
    /// RESP3.
    Resp3,
}

/// A reply to a command.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// `+OK`-style status.
    Simple(&'static str),
    /// A status whose text is made at run time (a script's `{ok = ...}`).
    Status(String),
    /// A RESP3 big number, in decimal (a bulk string in RESP2).
    BigNumber(String),
    /// An error; the text includes its prefix (`ERR …`, `WRONGTYPE …`).
    Error(String),
    /// An integer.
    Int(i64),
    /// A bulk string.
    Bulk(Bytes),
    /// The null reply (`$-1` in RESP2, `_` in RESP3).
    Nil,
    /// The null array (`*-1` in RESP2, `_` in RESP3).
    NilArray,
    /// An array.
    Array(Vec<Reply>),
    /// A map (a flat array of key, value in RESP2).
    Map(Vec<(Reply, Reply)>),
    /// A set (an array in RESP2).
    Set(Vec<Reply>),
    /// A double (a bulk string in RESP2).
    Double(f64),
    /// A double as Redis's `addReplyHumanLongDouble` writes it ([`format_human_double`]; a
    /// bulk string in RESP2): the coordinates of the GEO commands.
    HumanDouble(f64),
    /// A boolean (the integer 1 or 0 in RESP2).
    Bool(bool),
    /// Pairs in order (`WITHSCORES`, `HRANDFIELD … WITHVALUES`): a flat array in RESP2, an
    /// array of two-element arrays in RESP3.
    Pairs(Vec<(Reply, Reply)>),
    /// A verbatim text string (`=len\r\ntxt:…`; a bulk string in RESP2), as `INFO` replies.
    Verbatim(Bytes),
    /// An out-of-band push (`>n` in RESP3, an array in RESP2): pub/sub messages and
    /// (un)subscribe confirmations.
    Push(Vec<Reply>),
    /// Several replies to one command, one after the other (`SUBSCRIBE a b` answers one
    /// confirmation per channel).
    Seq(Vec<Reply>),
}

impl Reply {
    /// `+OK`.
    pub const OK: Reply = Reply::Simple("OK");

    /// An error reply with the `ERR ` prefix.
    pub fn err(msg: impl std::fmt::Display) -> Reply {
        Reply::Error(format!("ERR {msg}"))
    }

    /// Whether this is a push (or a sequence of them): sent even under `CLIENT REPLY OFF`
    /// in RESP3, as Redis does.
    pub fn is_push(&self) -> bool {
        match self {
            Reply::Push(_) => true,
            Reply::Seq(all) => !all.is_empty() && all.iter().all(Reply::is_push),
            _ => false,
        }
    }

    /// A bulk string copied from a slice.
    pub fn bulk(b: &[u8]) -> Reply {
        Reply::Bulk(Bytes::copy_from_slice(b))
    }

    /// Appends the encoding of this reply in `proto`.
    pub fn encode(&self, proto: Protocol, out: &mut BytesMut) {
        match self {
            Reply::Simple(s) => line(out, b'+', s.as_bytes()),
            Reply::Status(s) => {
                // A status line cannot hold CR or LF (Redis replaces them with spaces).
                let clean: Vec<u8> = s
                    .bytes()
                    .map(|b| if b == b'\r' || b == b'\n' { b' ' } else { b })
                    .collect();
                line(out, b'+', &clean);
            }
            Reply::BigNumber(n) => match proto {
                Protocol::Resp2 => Reply::Bulk(Bytes::from(n.clone())).encode(proto, out),
                Protocol::Resp3 => line(out, b'(', n.as_bytes()),
            },
            Reply::Error(e) => {
                // An error line cannot hold CR or LF: Redis replaces them with spaces.
                out.put_u8(b'-');
                out.extend(
                    e.bytes()
                        .map(|b| if b == b'\r' || b == b'\n' { b' ' } else { b }),
                );
                out.put_slice(b"\r\n");
            }
            Reply::Int(i) => int_line(out, b':', *i),
            Reply::Bulk(b) => {
                int_line(out, b'$', len_i64(b.len()));
                out.put_slice(b);
                out.put_slice(b"\r\n");
            }
            Reply::Nil => match proto {
                Protocol::Resp2 => out.put_slice(b"$-1\r\n"),
                Protocol::Resp3 => out.put_slice(b"_\r\n"),
            },
            Reply::NilArray => match proto {
                Protocol::Resp2 => out.put_slice(b"*-1\r\n"),
                Protocol::Resp3 => out.put_slice(b"_\r\n"),
            },
            Reply::Array(items) => {
                int_line(out, b'*', len_i64(items.len()));
                items.iter().for_each(|r| r.encode(proto, out));
            }
            Reply::Set(items) => {
                let tag = if proto == Protocol::Resp3 { b'~' } else { b'*' };
                int_line(out, tag, len_i64(items.len()));
                items.iter().for_each(|r| r.encode(proto, out));
            }
            Reply::Map(pairs) => {
                match proto {
                    Protocol::Resp2 => int_line(out, b'*', len_i64(pairs.len() * 2)),
                    Protocol::Resp3 => int_line(out, b'%', len_i64(pairs.len())),
                }
                for (k, v) in pairs {
                    k.encode(proto, out);
                    v.encode(proto, out);
                }
            }
            Reply::Pairs(pairs) => {
                match proto {
                    Protocol::Resp2 => int_line(out, b'*', len_i64(pairs.len() * 2)),
                    Protocol::Resp3 => int_line(out, b'*', len_i64(pairs.len())),
                }
                for (k, v) in pairs {
                    if proto == Protocol::Resp3 {
                        out.put_slice(b"*2\r\n");
                    }
                    k.encode(proto, out);
                    v.encode(proto, out);
                }
            }
            Reply::Double(d) => {
                let text = format_double(*d);
                match proto {
                    Protocol::Resp2 => Reply::Bulk(Bytes::from(text)).encode(proto, out),
                    Protocol::Resp3 => line(out, b',', text.as_bytes()),
                }
            }
            Reply::HumanDouble(d) => {
                let text = format_human_double(*d);
                match proto {
                    Protocol::Resp2 => Reply::Bulk(Bytes::from(text)).encode(proto, out),
                    Protocol::Resp3 => line(out, b',', text.as_bytes()),
                }
            }
            Reply::Verbatim(text) => match proto {
                Protocol::Resp2 => Reply::Bulk(text.clone()).encode(proto, out),
                Protocol::Resp3 => {
                    int_line(out, b'=', len_i64(text.len() + 4));
                    out.put_slice(b"txt:");
                    out.put_slice(text);
                    out.put_slice(b"\r\n");
                }
            },
            Reply::Bool(b) => match proto {
                Protocol::Resp2 => int_line(out, b':', i64::from(*b)),
                Protocol::Resp3 => out.put_slice(if *b { b"#t\r\n" } else { b"#f\r\n" }),
            },
            Reply::Push(items) => {
                let tag = if proto == Protocol::Resp3 { b'>' } else { b'*' };
                int_line(out, tag, len_i64(items.len()));
                items.iter().for_each(|r| r.encode(proto, out));
            }
            Reply::Seq(replies) => replies.iter().for_each(|r| r.encode(proto, out)),
        }
    }
}

fn len_i64(n: usize) -> i64 {
    i64::try_from(n).expect("a reply length fits in i64")
}

fn line(out: &mut BytesMut, tag: u8, body: &[u8]) {
    out.put_u8(tag);
    out.put_slice(body);
    out.put_slice(b"\r\n");
}

fn int_line(out: &mut BytesMut, tag: u8, v: i64) {
    out.put_u8(tag);
    let mut digits = itoa_buf(v);
    out.put_slice(digits.as_bytes_mut());
    out.put_slice(b"\r\n");
}

/// Formats an integer without allocating.
struct Digits {
    buf: [u8; 20],
    start: usize,
}

impl Digits {
    fn as_bytes_mut(&mut self) -> &[u8] {
        &self.buf[self.start..]
    }
}

fn itoa_buf(v: i64) -> Digits {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    let mut n = v.unsigned_abs();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    if v < 0 {
        i -= 1;
        buf[i] = b'-';
    }
    Digits { buf, start: i }
}

/// Formats a double as Redis 7.0's `addReplyHumanLongDouble` does (`ld2string` in
/// `LD_STR_HUMAN` mode): `printf("%.17Lf")` without trailing zeros or a trailing dot, `-0` as
/// `0`. The long double holds the double exactly, so Rust's exact `{:.17}` prints the same.
pub fn format_human_double(d: f64) -> String {
    if d.is_nan() {
        return "nan".into();
    }
    if d.is_infinite() {
        return if d > 0.0 { "inf".into() } else { "-inf".into() };
    }
    let mut s = format!("{d:.17}");
    if s.contains('.') {
        let kept = s.trim_end_matches('0').trim_end_matches('.').len();
        s.truncate(kept);
    }
    if s == "-0" { "0".into() } else { s }
}

/// Formats a double as Redis 7.0's `addReplyDouble` does (RESP2 bulk and RESP3 double alike):
/// `printf("%.17g")`, with `inf`/`-inf` (and `nan`).
pub fn format_double(d: f64) -> String {
    if d.is_nan() {
        "nan".into()
    } else if d.is_infinite() {
        if d > 0.0 { "inf".into() } else { "-inf".into() }
    } else {
        format_g17(d)
    }
}

/// `%.17g` of a finite double: 17 significant digits, exponent form below 1e-4 or from 1e17,
/// trailing zeros removed.
fn format_g17(d: f64) -> String {
    let sci = format!("{d:.16e}");
    let Some((mantissa, exp)) = sci.split_once('e') else {
        return sci;
    };
    let exp: i32 = exp.parse().unwrap_or(0);
    if d == 0.0 {
        return if d.is_sign_negative() {
            "-0".into()
        } else {
            "0".into()
        };
    }
    if !(-4..17).contains(&exp) {
        let m = trim_zeros(mantissa);
        let sign = if exp < 0 { '-' } else { '+' };
        return format!("{m}e{sign}{:02}", exp.unsigned_abs());
    }
    let decimals = usize::try_from(16 - exp).unwrap_or(0);
    trim_zeros(&format!("{d:.decimals$}")).to_string()
}

fn trim_zeros(s: &str) -> &str {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(r: &Reply, p: Protocol) -> Vec<u8> {
        let mut out = BytesMut::new();
        r.encode(p, &mut out);
        out.to_vec()
    }

    #[test]
    fn resp2_and_resp3_encodings_match_redis() {
        use Protocol::*;
        let map = Reply::Map(vec![(Reply::bulk(b"f"), Reply::Int(1))]);
        let cases: Vec<(Reply, &[u8], &[u8])> = vec![
            (Reply::OK, b"+OK\r\n", b"+OK\r\n"),
            (Reply::Int(-42), b":-42\r\n", b":-42\r\n"),
            (
                Reply::Int(i64::MIN),
                b":-9223372036854775808\r\n",
                b":-9223372036854775808\r\n",
            ),
            (Reply::bulk(b"hi"), b"$2\r\nhi\r\n", b"$2\r\nhi\r\n"),
            (Reply::Nil, b"$-1\r\n", b"_\r\n"),
            (Reply::NilArray, b"*-1\r\n", b"_\r\n"),
            (map, b"*2\r\n$1\r\nf\r\n:1\r\n", b"%1\r\n$1\r\nf\r\n:1\r\n"),
            (Reply::Double(1.5), b"$3\r\n1.5\r\n", b",1.5\r\n"),
            (
                Reply::Pairs(vec![(Reply::bulk(b"m"), Reply::Double(1.0))]),
                b"*2\r\n$1\r\nm\r\n$1\r\n1\r\n",
                b"*1\r\n*2\r\n$1\r\nm\r\n,1\r\n",
            ),
            (Reply::Bool(true), b":1\r\n", b"#t\r\n"),
            (
                Reply::HumanDouble(13.361389338970184),
                b"$20\r\n13.36138933897018433\r\n",
                b",13.36138933897018433\r\n",
            ),
            (Reply::HumanDouble(-0.0), b"$1\r\n0\r\n", b",0\r\n"),
            (
                Reply::Verbatim(Bytes::from_static(b"a")),
                b"$1\r\na\r\n",
                b"=5\r\ntxt:a\r\n",
            ),
            (
                Reply::Set(vec![Reply::Int(1)]),
                b"*1\r\n:1\r\n",
                b"~1\r\n:1\r\n",
            ),
        ];
        for (r, two, three) in cases {
            assert_eq!(enc(&r, Resp2), two, "{r:?} in RESP2");
            assert_eq!(enc(&r, Resp3), three, "{r:?} in RESP3");
        }
    }

    #[test]
    fn error_lines_never_contain_line_breaks() {
        let r = Reply::err("bad\r\ninput");
        assert_eq!(enc(&r, Protocol::Resp2), b"-ERR bad  input\r\n");
    }

    #[test]
    fn doubles_format_like_redis() {
        // Each as redis-server 7.0.15 answers `ZSCORE` for it.
        let cases = [
            (10.0, "10"),
            (1.5, "1.5"),
            (0.1, "0.10000000000000001"),
            (3.0000000000000004, "3.0000000000000004"),
            (1e-300, "1e-300"),
            (-0.0, "-0"),
            (1e16, "10000000000000000"),
            (1e17, "1e+17"),
            (123456789012345678.0, "1.2345678901234568e+17"),
            (1e300, "1.0000000000000001e+300"),
            (2.5e-5, "2.5000000000000001e-05"),
            (0.30000000000000004, "0.30000000000000004"),
            (0.0001, "0.0001"),
            (f64::INFINITY, "inf"),
            (f64::NEG_INFINITY, "-inf"),
        ];
        for (d, text) in cases {
            assert_eq!(format_double(d), text, "{d:e}");
        }
    }
}
