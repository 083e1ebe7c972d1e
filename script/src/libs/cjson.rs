//! lua-cjson 2.1 as Redis ships it (`cjson.encode`, `cjson.decode`, `cjson.null`) and its
//! configuration functions (`cjson_config`; defaults: numbers as `%.14g`, sparse arrays
//! refused, depth 1000 each way, NaN/Inf refused when encoding, accepted — as `strtod` reads
//! them — when decoding).

use mlua::{LightUserData, Lua, MultiValue, Table, Value as Lv};

use super::cjson_config::{self, Config, InvalidNumbers};
use super::{LibResult, lib_fn};
use crate::numfmt::fmt_g;

/// The `cjson` table.
pub(crate) fn table(lua: &Lua) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.set("encode", lib_fn(lua, encode_fn)?)?;
    t.set("decode", lib_fn(lua, decode_fn)?)?;
    t.set("null", null())?;
    cjson_config::register(lua, &t)?;
    Ok(t)
}

fn null() -> Lv {
    Lv::LightUserData(LightUserData(std::ptr::null_mut()))
}

fn encode_fn(lua: &Lua, args: MultiValue) -> mlua::Result<LibResult> {
    if args.len() != 1 {
        return Ok(Err(
            "bad argument #1 to 'encode' (expected 1 argument)".into()
        ));
    }
    let mut out = Vec::new();
    let cfg = cjson_config::get(lua);
    Ok(match encode(&cfg, &mut out, &args[0], 0) {
        Ok(()) => Ok(vec![Lv::String(lua.create_string(&out)?)]),
        Err(e) => Err(e),
    })
}

fn decode_fn(lua: &Lua, args: MultiValue) -> mlua::Result<LibResult> {
    if args.len() != 1 {
        return Ok(Err(
            "bad argument #1 to 'decode' (expected 1 argument)".into()
        ));
    }
    let text = match &args[0] {
        Lv::String(s) => s.as_bytes().to_vec(),
        Lv::Integer(i) => i.to_string().into_bytes(),
        Lv::Number(n) => fmt_g(*n, 14).into_bytes(),
        other => {
            return Ok(Err(format!(
                "bad argument #1 to 'decode' (string expected, got {})",
                other.type_name()
            )));
        }
    };
    if text.len() >= 2 && (text[0] == 0 || text[1] == 0) {
        return Ok(Err("JSON parser does not support UTF-16 or UTF-32".into()));
    }
    let mut p = Parser {
        lua,
        cfg: cjson_config::get(lua),
        data: &text,
        pos: 0,
        depth: 0,
    };
    p.decode()
}

fn type_name(v: &Lv) -> &'static str {
    match v {
        Lv::LightUserData(_) => "userdata",
        other => other.type_name(),
    }
}

fn cannot(v: &Lv, why: &str) -> String {
    format!("Cannot serialise {}: {why}", type_name(v))
}

fn encode(cfg: &Config, out: &mut Vec<u8>, v: &Lv, depth: usize) -> Result<(), String> {
    match v {
        Lv::String(s) => encode_string(out, &s.as_bytes()),
        Lv::Integer(i) => encode_number(cfg, out, v, *i as f64)?,
        Lv::Number(n) => encode_number(cfg, out, v, *n)?,
        Lv::Boolean(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Lv::Nil => out.extend_from_slice(b"null"),
        Lv::LightUserData(p) if p.0.is_null() => out.extend_from_slice(b"null"),
        Lv::Table(t) => encode_table(cfg, out, v, t, depth + 1)?,
        other => return Err(cannot(other, "type not supported")),
    }
    Ok(())
}

/// `json_append_number`: `%.<precision>g`; NaN and Inf as `encode_invalid_numbers` says
/// (printed: `nan`, and `inf`/`-inf` as `%g` prints them).
fn encode_number(cfg: &Config, out: &mut Vec<u8>, v: &Lv, n: f64) -> Result<(), String> {
    if !n.is_finite() {
        match cfg.encode_invalid {
            InvalidNumbers::Refuse => return Err(cannot(v, "must not be NaN or Inf")),
            InvalidNumbers::Null => {
                out.extend_from_slice(b"null");
                return Ok(());
            }
            InvalidNumbers::Print => {
                let text: &[u8] = if n.is_nan() {
                    b"nan"
                } else if n > 0.0 {
                    b"inf"
                } else {
                    b"-inf"
                };
                out.extend_from_slice(text);
                return Ok(());
            }
        }
    }
    let precision = usize::try_from(cfg.precision).unwrap_or(14);
    out.extend_from_slice(fmt_g(n, precision).as_bytes());
    Ok(())
}

fn encode_string(out: &mut Vec<u8>, s: &[u8]) {
    out.push(b'"');
    for &b in s {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'/' => out.extend_from_slice(b"\\/"),
            b'\x08' => out.extend_from_slice(b"\\b"),
            b'\t' => out.extend_from_slice(b"\\t"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\x0c' => out.extend_from_slice(b"\\f"),
            b'\r' => out.extend_from_slice(b"\\r"),
            0..=0x1f | 0x7f => out.extend_from_slice(format!("\\u{b:04x}").as_bytes()),
            _ => out.push(b),
        }
    }
    out.push(b'"');
}

/// `lua_array_length`: the array's length, `None` for an object (or an excessively sparse
/// array when `encode_sparse_array` converts those).
fn array_length(cfg: &Config, v: &Lv, t: &Table) -> Result<Option<usize>, String> {
    let (mut max, mut items) = (0usize, 0usize);
    for pair in t.pairs::<Lv, Lv>() {
        let (k, _) = pair.map_err(|e| e.to_string())?;
        let k = match k {
            Lv::Integer(i) => i as f64,
            Lv::Number(n) => n,
            _ => return Ok(None),
        };
        if k < 1.0 || k.floor() != k {
            return Ok(None);
        }
        max = max.max(k.min(usize::MAX as f64) as usize);
        items += 1;
    }
    let ratio = usize::try_from(cfg.sparse_ratio).unwrap_or(0);
    let safe = usize::try_from(cfg.sparse_safe).unwrap_or(0);
    if ratio > 0 && max > items.saturating_mul(ratio) && max > safe {
        if !cfg.sparse_convert {
            return Err(cannot(v, "excessively sparse array"));
        }
        return Ok(None);
    }
    Ok((max > 0).then_some(max))
}

fn encode_table(
    cfg: &Config,
    out: &mut Vec<u8>,
    v: &Lv,
    t: &Table,
    depth: usize,
) -> Result<(), String> {
    if i64::try_from(depth).unwrap_or(i64::MAX) > cfg.encode_max_depth {
        return Err(format!("Cannot serialise, excessive nesting ({depth})"));
    }
    if let Some(len) = array_length(cfg, v, t)? {
        out.push(b'[');
        for i in 1..=len {
            if i > 1 {
                out.push(b',');
            }
            let item: Lv = t.raw_get(i).map_err(|e| e.to_string())?;
            encode(cfg, out, &item, depth)?;
        }
        out.push(b']');
        return Ok(());
    }
    out.push(b'{');
    for (n, pair) in t.pairs::<Lv, Lv>().enumerate() {
        let (k, item) = pair.map_err(|e| e.to_string())?;
        if n > 0 {
            out.push(b',');
        }
        match &k {
            Lv::String(s) => encode_string(out, &s.as_bytes()),
            Lv::Integer(_) | Lv::Number(_) => {
                out.push(b'"');
                encode(cfg, out, &k, depth)?;
                out.push(b'"');
            }
            other => return Err(cannot(other, "table key must be a number or string")),
        }
        out.push(b':');
        encode(cfg, out, &item, depth)?;
    }
    out.push(b'}');
    Ok(())
}

/// `json_is_invalid_number`: text JSON does not allow as a number but `strtod` reads (a `+`,
/// hex, a leading zero, `inf`, `nan`).
fn is_invalid_number(p: &[u8]) -> bool {
    let at = |i: usize| p.get(i).copied().unwrap_or(0);
    if at(0) == b'+' {
        return true;
    }
    let i = usize::from(at(0) == b'-');
    if at(i) == b'0' {
        let next = at(i + 1);
        return (next | 0x20) == b'x' || next.is_ascii_digit();
    }
    // A signed `char` in C: bytes from 0x80 compare below '9' too.
    if at(i) <= b'9' || at(i) >= 0x80 {
        return false;
    }
    let word = p.get(i..i + 3).unwrap_or_default();
    word.eq_ignore_ascii_case(b"inf") || word.eq_ignore_ascii_case(b"nan")
}

/// A token of lua-cjson's scanner.
#[derive(Debug)]
enum Tok {
    ObjBegin,
    ObjEnd,
    ArrBegin,
    ArrEnd,
    Comma,
    Colon,
    End,
    Str(Vec<u8>),
    Num(f64),
    Bool(bool),
    Null,
    /// An error, with lua-cjson's description.
    Error(&'static str),
}

impl Tok {
    fn name(&self) -> &'static str {
        match self {
            Tok::ObjBegin => "T_OBJ_BEGIN",
            Tok::ObjEnd => "T_OBJ_END",
            Tok::ArrBegin => "T_ARR_BEGIN",
            Tok::ArrEnd => "T_ARR_END",
            Tok::Comma => "T_COMMA",
            Tok::Colon => "T_COLON",
            Tok::End => "T_END",
            Tok::Str(_) => "T_STRING",
            Tok::Num(_) => "T_NUMBER",
            Tok::Bool(_) => "T_BOOLEAN",
            Tok::Null => "T_NULL",
            Tok::Error(e) => e,
        }
    }
}

struct Parser<'a> {
    lua: &'a Lua,
    cfg: Config,
    data: &'a [u8],
    pos: usize,
    depth: usize,
}

type Parsed<T> = mlua::Result<Result<T, String>>;

impl Parser<'_> {
    fn byte(&self, at: usize) -> u8 {
        // The C parser reads a NUL-terminated buffer: a NUL byte ends the text.
        self.data.get(at).copied().unwrap_or(0)
    }

    fn decode(&mut self) -> mlua::Result<LibResult> {
        let (tok, at) = self.next();
        let v = match self.value(tok, at)? {
            Ok(v) => v,
            Err(e) => return Ok(Err(e)),
        };
        let (tok, at) = self.next();
        if !matches!(tok, Tok::End) {
            return Ok(Err(expected("the end", &tok, at)));
        }
        Ok(Ok(vec![v]))
    }

    /// The next token and the index where it starts.
    fn next(&mut self) -> (Tok, usize) {
        while matches!(self.byte(self.pos), b' ' | b'\t' | b'\n' | b'\r') {
            self.pos += 1;
        }
        let at = self.pos;
        let c = self.byte(at);
        let single = match c {
            b'{' => Some(Tok::ObjBegin),
            b'}' => Some(Tok::ObjEnd),
            b'[' => Some(Tok::ArrBegin),
            b']' => Some(Tok::ArrEnd),
            b',' => Some(Tok::Comma),
            b':' => Some(Tok::Colon),
            _ => None,
        };
        if let Some(t) = single {
            self.pos += 1;
            return (t, at);
        }
        let rest = &self.data[at.min(self.data.len())..];
        let tok = match c {
            0 => Tok::End,
            b'"' => self.string(),
            b'-' | b'0'..=b'9' if !self.cfg.decode_invalid && is_invalid_number(rest) => {
                Tok::Error("invalid number")
            }
            b'-' | b'0'..=b'9' => self.number(),
            _ if rest.starts_with(b"true") => self.word(4, Tok::Bool(true)),
            _ if rest.starts_with(b"false") => self.word(5, Tok::Bool(false)),
            _ if rest.starts_with(b"null") => self.word(4, Tok::Null),
            _ if self.cfg.decode_invalid && is_invalid_number(rest) => self.number(),
            _ => Tok::Error("invalid token"),
        };
        // An error is reported where the scanner stopped (inside a string, say).
        let at = if matches!(tok, Tok::Error(_)) {
            self.pos
        } else {
            at
        };
        (tok, at)
    }

    fn word(&mut self, len: usize, tok: Tok) -> Tok {
        self.pos += len;
        tok
    }

    fn number(&mut self) -> Tok {
        match strtod(&self.data[self.pos..]) {
            Some((n, len)) => {
                self.pos += len;
                Tok::Num(n)
            }
            None => Tok::Error("invalid number"),
        }
    }

    fn string(&mut self) -> Tok {
        let mut out = Vec::new();
        self.pos += 1;
        loop {
            let c = self.byte(self.pos);
            match c {
                0 => return Tok::Error("unexpected end of string"),
                b'"' => break,
                b'\\' => {
                    let esc = match self.byte(self.pos + 1) {
                        b'"' => b'"',
                        b'\\' => b'\\',
                        b'/' => b'/',
                        b'b' => 8,
                        b't' => b'\t',
                        b'n' => b'\n',
                        b'f' => 12,
                        b'r' => b'\r',
                        b'u' => match self.unicode(&mut out) {
                            Some(()) => continue,
                            None => return Tok::Error("invalid unicode escape code"),
                        },
                        _ => return Tok::Error("invalid escape code"),
                    };
                    out.push(esc);
                    self.pos += 2;
                }
                _ => {
                    out.push(c);
                    self.pos += 1;
                }
            }
        }
        self.pos += 1;
        Tok::Str(out)
    }

    fn hex4(&self, at: usize) -> Option<u32> {
        let mut v = 0;
        for i in 0..4 {
            v = v * 16 + (self.byte(at + i) as char).to_digit(16)?;
        }
        Some(v)
    }

    /// `json_append_unicode_escape`: `\uXXXX` (and a surrogate pair) as UTF-8.
    fn unicode(&mut self, out: &mut Vec<u8>) -> Option<()> {
        let mut cp = self.hex4(self.pos + 2)?;
        let mut len = 6;
        if cp & 0xF800 == 0xD800 {
            if cp & 0x400 != 0
                || self.byte(self.pos + 6) != b'\\'
                || self.byte(self.pos + 7) != b'u'
            {
                return None;
            }
            let low = self.hex4(self.pos + 8)?;
            if low & 0xFC00 != 0xDC00 {
                return None;
            }
            cp = (((cp & 0x3FF) << 10) | (low & 0x3FF)) + 0x10000;
            len = 12;
        }
        let mut buf = [0u8; 4];
        let s = char::from_u32(cp).map(|c| c.encode_utf8(&mut buf).len())?;
        out.extend_from_slice(&buf[..s]);
        self.pos += len;
        Some(())
    }

    fn value(&mut self, tok: Tok, at: usize) -> Parsed<Lv> {
        Ok(Ok(match tok {
            Tok::Str(s) => Lv::String(self.lua.create_string(&s)?),
            Tok::Num(n) => Lv::Number(n),
            Tok::Bool(b) => Lv::Boolean(b),
            Tok::Null => null(),
            Tok::ObjBegin => return self.object(),
            Tok::ArrBegin => return self.array(),
            other => return Ok(Err(expected("value", &other, at))),
        }))
    }

    fn descend(&mut self) -> Result<(), String> {
        self.depth += 1;
        if i64::try_from(self.depth).unwrap_or(i64::MAX) > self.cfg.decode_max_depth {
            return Err(format!(
                "Found too many nested data structures ({}) at character {}",
                self.depth, self.pos
            ));
        }
        Ok(())
    }

    fn object(&mut self) -> Parsed<Lv> {
        if let Err(e) = self.descend() {
            return Ok(Err(e));
        }
        let t = self.lua.create_table()?;
        let (mut tok, mut at) = self.next();
        if matches!(tok, Tok::ObjEnd) {
            self.depth -= 1;
            return Ok(Ok(Lv::Table(t)));
        }
        loop {
            let Tok::Str(key) = tok else {
                return Ok(Err(expected("object key string", &tok, at)));
            };
            let (colon, cat) = self.next();
            if !matches!(colon, Tok::Colon) {
                return Ok(Err(expected("colon", &colon, cat)));
            }
            let (vt, vat) = self.next();
            let v = match self.value(vt, vat)? {
                Ok(v) => v,
                Err(e) => return Ok(Err(e)),
            };
            t.raw_set(self.lua.create_string(&key)?, v)?;
            let (sep, sat) = self.next();
            match sep {
                Tok::ObjEnd => {
                    self.depth -= 1;
                    return Ok(Ok(Lv::Table(t)));
                }
                Tok::Comma => (tok, at) = self.next(),
                other => return Ok(Err(expected("comma or object end", &other, sat))),
            }
        }
    }

    fn array(&mut self) -> Parsed<Lv> {
        if let Err(e) = self.descend() {
            return Ok(Err(e));
        }
        let t = self.lua.create_table()?;
        let (mut tok, mut at) = self.next();
        if matches!(tok, Tok::ArrEnd) {
            self.depth -= 1;
            return Ok(Ok(Lv::Table(t)));
        }
        for i in 1.. {
            let v = match self.value(tok, at)? {
                Ok(v) => v,
                Err(e) => return Ok(Err(e)),
            };
            t.raw_set(i, v)?;
            let (sep, sat) = self.next();
            match sep {
                Tok::ArrEnd => break,
                Tok::Comma => (tok, at) = self.next(),
                other => return Ok(Err(expected("comma or array end", &other, sat))),
            }
        }
        self.depth -= 1;
        Ok(Ok(Lv::Table(t)))
    }
}

fn expected(what: &str, found: &Tok, at: usize) -> String {
    format!(
        "Expected {what} but found {} at character {}",
        found.name(),
        at + 1
    )
}

/// C's `strtod` on the start of `s`: the number and how many bytes it took (decimal, hex
/// integers, `inf`/`infinity`/`nan`), or `None` if nothing reads as a number.
pub(crate) fn strtod(s: &[u8]) -> Option<(f64, usize)> {
    let mut i = 0;
    let neg = match s.first() {
        Some(b'-') => {
            i = 1;
            true
        }
        Some(b'+') => {
            i = 1;
            false
        }
        _ => false,
    };
    let sign = if neg { -1.0 } else { 1.0 };
    let rest = &s[i..];
    let lower = |n: usize| rest.get(..n).map(|p| p.to_ascii_lowercase());
    if lower(8).as_deref() == Some(b"infinity") {
        return Some((sign * f64::INFINITY, i + 8));
    }
    if lower(3).as_deref() == Some(b"inf") {
        return Some((sign * f64::INFINITY, i + 3));
    }
    if lower(3).as_deref() == Some(b"nan") {
        return Some((f64::NAN, i + 3));
    }
    if lower(2).as_deref() == Some(b"0x") {
        let digits = rest[2..]
            .iter()
            .take_while(|b| b.is_ascii_hexdigit())
            .count();
        if digits > 0 {
            let text = std::str::from_utf8(&rest[2..2 + digits]).ok()?;
            let v = text.chars().fold(0.0f64, |acc, c| {
                acc * 16.0 + f64::from(c.to_digit(16).unwrap_or(0))
            });
            return Some((sign * v, i + 2 + digits));
        }
        return Some((sign * 0.0, i + 1));
    }
    let int = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    let mut end = int;
    let mut frac = 0;
    if rest.get(end) == Some(&b'.') {
        frac = rest[end + 1..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count();
        end += 1 + frac;
    }
    if int + frac == 0 {
        return None;
    }
    if matches!(rest.get(end), Some(b'e' | b'E')) {
        let mut j = end + 1;
        if matches!(rest.get(j), Some(b'+' | b'-')) {
            j += 1;
        }
        let exp = rest[j.min(rest.len())..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count();
        if exp > 0 {
            end = j + exp;
        }
    }
    let text = std::str::from_utf8(&rest[..end]).ok()?;
    let text = text.strip_suffix('.').unwrap_or(text);
    let text = if text.starts_with('.') {
        format!("0{text}")
    } else {
        text.to_string()
    };
    let v: f64 = text.parse().ok()?;
    Some((sign * v, i + end))
}

#[cfg(test)]
mod tests {
    use super::strtod;

    #[test]
    fn strtod_reads_the_longest_number_prefix() {
        assert_eq!(strtod(b"12abc"), Some((12.0, 2)));
        assert_eq!(strtod(b"-1.5e3,"), Some((-1500.0, 6)));
        assert_eq!(strtod(b"1e"), Some((1.0, 1)));
        assert_eq!(strtod(b"0x1F]"), Some((31.0, 4)));
        assert_eq!(strtod(b".5"), Some((0.5, 2)));
        assert_eq!(strtod(b"5."), Some((5.0, 2)));
        assert_eq!(strtod(b"-inf"), Some((f64::NEG_INFINITY, 4)));
        assert_eq!(strtod(b"-"), None);
        assert_eq!(strtod(b"x"), None);
        assert!(strtod(b"nan").is_some_and(|(n, l)| n.is_nan() && l == 3));
    }
}
