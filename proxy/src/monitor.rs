//! `MONITOR` lines: what Redis's `replicationFeedMonitors` writes for each command —
//! `+<unix seconds>.<µs> [<db> <client address>] "arg" "arg" …`, each argument quoted and
//! escaped as `sdscatrepr` does, passwords redacted.
//!
//! tierkv feeds every command this proxy runs (after its arity and authentication checks,
//! administrative commands excepted, as Redis). Commands a script runs inside its range are not
//! fed (they run on the shards), nor are other proxies' commands: a monitor sees its own proxy.

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use crate::keyspace::Db;

/// The monitor line of `args` from client `peer` in database `db`, now.
pub fn line(db: Db, peer: &str, args: &[Bytes]) -> Bytes {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let mut out = format!(
        "{}.{:06} [{} {}]",
        now.as_secs(),
        now.subsec_micros(),
        db.get(),
        peer
    )
    .into_bytes();
    let redacted = redacted(args);
    for (i, a) in args.iter().enumerate() {
        out.push(b' ');
        if redacted.contains(&i) {
            out.extend_from_slice(b"\"(redacted)\"");
        } else {
            repr(&mut out, a);
        }
    }
    Bytes::from(out)
}

/// The positions of the arguments that are secrets (`AUTH`, `HELLO … AUTH`).
fn redacted(args: &[Bytes]) -> Vec<usize> {
    let name = args.first().map(|n| n.to_ascii_lowercase());
    match name.as_deref() {
        Some(b"auth") => (1..args.len()).collect(),
        Some(b"hello") => args
            .iter()
            .position(|a| a.eq_ignore_ascii_case(b"auth"))
            .map(|at| (at + 1..args.len().min(at + 3)).collect())
            .unwrap_or_default(),
        _ => Vec::new(),
    }
}

/// `arg` quoted and escaped as Redis's `sdscatrepr`.
fn repr(out: &mut Vec<u8>, arg: &[u8]) {
    out.push(b'"');
    for &b in arg {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'"' => out.extend_from_slice(b"\\\""),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x07 => out.extend_from_slice(b"\\a"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x20..=0x7e => out.push(b),
            _ => out.extend_from_slice(format!("\\x{b:02x}").as_bytes()),
        }
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&[u8]]) -> Vec<Bytes> {
        a.iter().map(|x| Bytes::copy_from_slice(x)).collect()
    }

    #[test]
    fn a_line_quotes_and_escapes_like_sdscatrepr() {
        let l = line(
            Db::ZERO,
            "127.0.0.1:5000",
            &args(&[b"set", b"k\"\n\x01", b"v\\"]),
        );
        let l = String::from_utf8(l.to_vec()).unwrap();
        let (stamp, rest) = l.split_once(' ').unwrap();
        assert!(
            stamp.split_once('.').is_some_and(|(_, us)| us.len() == 6),
            "{l}"
        );
        assert_eq!(
            rest,
            "[0 127.0.0.1:5000] \"set\" \"k\\\"\\n\\x01\" \"v\\\\\""
        );
    }

    #[test]
    fn passwords_are_redacted() {
        let l = line(Db::ZERO, "a", &args(&[b"AUTH", b"user", b"pw"]));
        assert!(l.ends_with(b"\"AUTH\" \"(redacted)\" \"(redacted)\""));
        let l = line(
            Db::ZERO,
            "a",
            &args(&[b"hello", b"2", b"AUTH", b"u", b"p", b"SETNAME", b"n"]),
        );
        assert!(l.ends_with(b"\"AUTH\" \"(redacted)\" \"(redacted)\" \"SETNAME\" \"n\""));
    }
}
