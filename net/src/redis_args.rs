//! Redis's argument splitting (`sdssplitargs`): inline commands (the proxy's parser) and the
//! shebang lines of scripts and function libraries (`script`) split words the same way.

use bytes::Bytes;

/// `sdssplitargs`: whitespace-separated words; `"…"` with `\n \r \t \b \a \\ \" \xHH`
/// escapes; `'…'` with `\'`; a closing quote must be followed by a space or the end.
/// `None` on unbalanced quotes.
pub fn split_args(line: &[u8]) -> Option<Vec<Bytes>> {
    let mut args = Vec::new();
    let mut i = 0;
    loop {
        while i < line.len() && line[i].is_ascii_whitespace() {
            i += 1;
        }
        if i == line.len() {
            return Some(args);
        }
        let mut cur = Vec::new();
        let (mut in_dq, mut in_sq) = (false, false); // inside "…" / '…'
        loop {
            let Some(&c) = line.get(i) else {
                if in_dq || in_sq {
                    return None;
                }
                break;
            };
            if in_dq {
                if c == b'\\' && line.get(i + 1) == Some(&b'x') && hex_pair(line, i + 2).is_some() {
                    cur.push(hex_pair(line, i + 2)?);
                    i += 3;
                } else if c == b'\\' && i + 1 < line.len() {
                    i += 1;
                    cur.push(match line[i] {
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        b'b' => 0x08,
                        b'a' => 0x07,
                        other => other,
                    });
                } else if c == b'"' {
                    if line.get(i + 1).is_some_and(|b| !b.is_ascii_whitespace()) {
                        return None;
                    }
                    i += 1;
                    break;
                } else {
                    cur.push(c);
                }
            } else if in_sq {
                if c == b'\\' && line.get(i + 1) == Some(&b'\'') {
                    i += 1;
                    cur.push(b'\'');
                } else if c == b'\'' {
                    if line.get(i + 1).is_some_and(|b| !b.is_ascii_whitespace()) {
                        return None;
                    }
                    i += 1;
                    break;
                } else {
                    cur.push(c);
                }
            } else if c.is_ascii_whitespace() {
                break;
            } else if c == b'"' {
                in_dq = true;
            } else if c == b'\'' {
                in_sq = true;
            } else {
                cur.push(c);
            }
            i += 1;
        }
        args.push(Bytes::from(cur));
    }
}

fn hex_pair(line: &[u8], at: usize) -> Option<u8> {
    let hi = (*line.get(at)? as char).to_digit(16)?;
    let lo = (*line.get(at + 1)? as char).to_digit(16)?;
    u8::try_from(hi * 16 + lo).ok()
}
