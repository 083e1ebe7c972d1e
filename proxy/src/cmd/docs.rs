//! `COMMAND DOCS [name …]`: Redis 7.0.15's documentation of each supported command (summary,
//! since, group, complexity, history, arguments, subcommands — what `redis-cli` shows as
//! hints), from the table `scripts/gen-command-docs` wrote (`command_docs.rs`), parsed when
//! asked for.

use bytes::Bytes;

use super::command_docs::DOCS;
use crate::resp::Reply;

/// `COMMAND DOCS`: every supported command's docs, or those of `names` (unknown names are
/// left out, as Redis does).
pub fn docs(names: &[Bytes]) -> Reply {
    let entries: Vec<(Reply, Reply)> = if names.is_empty() {
        DOCS.iter().filter_map(|(n, d)| entry(n, d)).collect()
    } else {
        names
            .iter()
            .filter_map(|n| {
                let lower = String::from_utf8_lossy(n).to_ascii_lowercase();
                let i = DOCS
                    .binary_search_by(|(c, _)| (*c).cmp(lower.as_str()))
                    .ok()?;
                entry(DOCS[i].0, DOCS[i].1)
            })
            .collect()
    };
    Reply::Map(entries)
}

fn entry(name: &str, doc: &str) -> Option<(Reply, Reply)> {
    let (value, rest) = parse(doc.as_bytes())?;
    rest.is_empty()
        .then(|| (Reply::Bulk(Bytes::copy_from_slice(name.as_bytes())), value))
}

/// One value of the compact form and what follows it; `None` if the text is malformed.
fn parse(s: &[u8]) -> Option<(Reply, &[u8])> {
    let (&tag, rest) = s.split_first()?;
    match tag {
        b'$' => {
            let (len, rest) = number(rest, b':')?;
            let len = usize::try_from(len).ok()?;
            let bytes = rest.get(..len)?;
            Some((Reply::Bulk(Bytes::copy_from_slice(bytes)), &rest[len..]))
        }
        b'+' => {
            let (len, rest) = number(rest, b':')?;
            let len = usize::try_from(len).ok()?;
            let text = std::str::from_utf8(rest.get(..len)?).ok()?;
            Some((Reply::Status(text.to_owned()), &rest[len..]))
        }
        b':' => {
            let (n, rest) = number(rest, b';')?;
            Some((Reply::Int(n), rest))
        }
        b'*' | b'~' | b'%' => {
            let (n, mut rest) = count(rest)?;
            let items = if tag == b'%' { 2 * n } else { n };
            let mut out = Vec::with_capacity(items);
            for _ in 0..items {
                let (v, r) = parse(rest)?;
                out.push(v);
                rest = r;
            }
            let reply = match tag {
                b'*' => Reply::Array(out),
                b'~' => Reply::Set(out),
                _ => {
                    let mut pairs = Vec::with_capacity(n);
                    let mut it = out.into_iter();
                    while let (Some(k), Some(v)) = (it.next(), it.next()) {
                        pairs.push((k, v));
                    }
                    Reply::Map(pairs)
                }
            };
            Some((reply, rest))
        }
        _ => None,
    }
}

/// A decimal number ended by `end`.
fn number(s: &[u8], end: u8) -> Option<(i64, &[u8])> {
    let at = s.iter().position(|&b| b == end)?;
    let n = std::str::from_utf8(&s[..at]).ok()?.parse().ok()?;
    Some((n, &s[at + 1..]))
}

/// The element count of an aggregate: digits up to the next tag.
fn count(s: &[u8]) -> Option<(usize, &[u8])> {
    let at = s
        .iter()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(s.len());
    let n = std::str::from_utf8(&s[..at]).ok()?.parse().ok()?;
    Some((n, &s[at..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_stored_doc_parses_whole_and_commands_are_sorted() {
        for (name, doc) in DOCS {
            assert!(entry(name, doc).is_some(), "{name}");
        }
        assert!(DOCS.windows(2).all(|w| w[0].0 < w[1].0));
    }

    #[test]
    fn the_compact_form_keeps_maps_sets_arrays_and_integers() {
        let (v, rest) = parse(b"%2$1:a~1:7;$1:b*1$2:xy").unwrap();
        assert!(rest.is_empty());
        assert_eq!(
            v,
            Reply::Map(vec![
                (Reply::Bulk("a".into()), Reply::Set(vec![Reply::Int(7)])),
                (
                    Reply::Bulk("b".into()),
                    Reply::Array(vec![Reply::Bulk("xy".into())])
                ),
            ])
        );
        assert!(parse(b"$5:ab").is_none());
    }

    #[test]
    fn unknown_names_are_left_out_and_names_ignore_case() {
        let Reply::Map(m) = docs(&[Bytes::from_static(b"GET"), Bytes::from_static(b"nosuch")])
        else {
            panic!("a map");
        };
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].0, Reply::Bulk("get".into()));
    }
}
