//! lua-cmsgpack 0.4.0 as Redis ships it (`cmsgpack.pack`, `unpack`, `unpack_one`,
//! `unpack_limit`), with Lua 5.1's numbers: integral doubles pack as integers, others as
//! float32 when exact, else float64; tables nested 16 deep pack as nil.

use mlua::{Lua, MultiValue, Table, Value as Lv};

use super::{LibResult, check_number, lib_fn};

const MAX_NESTING: usize = 16;
/// Nesting the decoder accepts (Redis's limit is its Lua stack, about 4000; ours is lower so
/// that deep input cannot exhaust the native stack).
const MAX_DECODE_DEPTH: usize = 1000;
/// Values one call may return (Redis's Lua stack limit).
const MAX_RESULTS: usize = 7990;
const UNPOSITIONED_NIL_KEY: &str = "\u{1}table index is nil";
const UNPOSITIONED_NAN_KEY: &str = "\u{1}table index is NaN";
const TOO_MANY: &str =
    "stack overflow (too many return values at once; use unpack_one or unpack_limit instead.)";

/// The table `cmsgpack`.
pub(crate) fn table(lua: &Lua) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.set("pack", lib_fn(lua, |lua, a| pack(lua, &a))?)?;
    t.set("unpack", lib_fn(lua, |lua, a| Ok(unpack(lua, &a, 0, 0)))?)?;
    t.set("unpack_one", lib_fn(lua, unpack_one)?)?;
    t.set("unpack_limit", lib_fn(lua, unpack_limit)?)?;
    Ok(t)
}

fn pack(lua: &Lua, args: &MultiValue) -> mlua::Result<LibResult> {
    if args.is_empty() {
        return Ok(Err(
            "bad argument #0 to 'pack' (MessagePack pack needs input.)".into(),
        ));
    }
    let mut out = Vec::new();
    for v in args.iter() {
        encode(&mut out, v, 0)?;
    }
    Ok(Ok(vec![Lv::String(lua.create_string(&out)?)]))
}

fn encode(out: &mut Vec<u8>, v: &Lv, level: usize) -> mlua::Result<()> {
    match v {
        Lv::String(s) => encode_bytes(out, &s.as_bytes()),
        Lv::Boolean(b) => out.push(if *b { 0xc3 } else { 0xc2 }),
        Lv::Integer(i) => encode_int(out, *i),
        Lv::Number(n) => encode_number(out, *n),
        Lv::Table(t) if level < MAX_NESTING => encode_table(out, t, level)?,
        _ => out.push(0xc0),
    }
    Ok(())
}

fn encode_bytes(out: &mut Vec<u8>, s: &[u8]) {
    let len = s.len();
    if len < 32 {
        out.push(0xa0 | len as u8);
    } else if len <= 0xff {
        out.extend_from_slice(&[0xd9, len as u8]);
    } else if len <= 0xffff {
        out.push(0xda);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(0xdb);
        out.extend_from_slice(&(len as u32).to_be_bytes());
    }
    out.extend_from_slice(s);
}

fn encode_number(out: &mut Vec<u8>, n: f64) {
    // IS_INT64_EQUIVALENT, with x86-64's conversion (out of range gives i64::MIN).
    const TWO_63: f64 = 9_223_372_036_854_775_808.0;
    let as_int = if (-TWO_63..TWO_63).contains(&n) {
        n as i64
    } else {
        i64::MIN
    };
    if n.is_finite() && as_int as f64 == n {
        encode_int(out, as_int);
    } else if f64::from(n as f32) == n {
        out.push(0xca);
        out.extend_from_slice(&(n as f32).to_be_bytes());
    } else {
        out.push(0xcb);
        out.extend_from_slice(&n.to_be_bytes());
    }
}

fn encode_int(out: &mut Vec<u8>, n: i64) {
    match n {
        0..=127 => out.push(n as u8),
        128..=0xff => out.extend_from_slice(&[0xcc, n as u8]),
        0x100..=0xffff => {
            out.push(0xcd);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        0x1_0000..=0xffff_ffff => {
            out.push(0xce);
            out.extend_from_slice(&(n as u32).to_be_bytes());
        }
        0x1_0000_0000.. => {
            out.push(0xcf);
            out.extend_from_slice(&n.to_be_bytes());
        }
        -32..=-1 => out.push(n as i8 as u8),
        -128..=-33 => out.extend_from_slice(&[0xd0, n as i8 as u8]),
        -32768..=-129 => {
            out.push(0xd1);
            out.extend_from_slice(&(n as i16).to_be_bytes());
        }
        -2_147_483_648..=-32769 => {
            out.push(0xd2);
            out.extend_from_slice(&(n as i32).to_be_bytes());
        }
        _ => {
            out.push(0xd3);
            out.extend_from_slice(&n.to_be_bytes());
        }
    }
}

fn encode_len(out: &mut Vec<u8>, n: usize, fix: u8, b16: u8, b32: u8) {
    if n <= 15 {
        out.push(fix | n as u8);
    } else if n <= 0xffff {
        out.push(b16);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        out.push(b32);
        out.extend_from_slice(&(n as u32).to_be_bytes());
    }
}

/// `table_is_an_array`: keys exactly 1..N.
fn array_len(t: &Table) -> mlua::Result<Option<usize>> {
    let (mut count, mut max) = (0usize, 0i64);
    for pair in t.pairs::<Lv, Lv>() {
        let (k, _) = pair?;
        let n = match k {
            Lv::Integer(i) => i as f64,
            Lv::Number(n) => n,
            _ => return Ok(None),
        };
        if n <= 0.0 || n > f64::from(i32::MAX) || n.fract() != 0.0 {
            return Ok(None);
        }
        max = max.max(n as i64);
        count += 1;
    }
    Ok((max as usize == count).then_some(count))
}

fn encode_table(out: &mut Vec<u8>, t: &Table, level: usize) -> mlua::Result<()> {
    if let Some(len) = array_len(t)? {
        encode_len(out, len, 0x90, 0xdc, 0xdd);
        for i in 1..=len {
            let v: Lv = t.get(i)?;
            encode(out, &v, level + 1)?;
        }
        return Ok(());
    }
    // Counted first, then encoded pair by pair: every live Lua value holds a slot of mlua's
    // reference stack (at most ~8,000 in Lua 5.1), so a map of 100,000 keys collected at once
    // failed with "out of Lua stack". Two walks of an unchanged table meet the same order.
    let mut len = 0usize;
    for pair in t.pairs::<Lv, Lv>() {
        pair?;
        len += 1;
    }
    encode_len(out, len, 0x80, 0xde, 0xdf);
    for pair in t.pairs::<Lv, Lv>() {
        let (k, v) = pair?;
        encode(out, &k, level + 1)?;
        encode(out, &v, level + 1)?;
    }
    Ok(())
}

/// Why decoding stopped.
enum Stop {
    /// Not enough bytes (`Missing bytes in input.`).
    Eof,
    /// A type lua-cmsgpack does not know (`Bad data format in input.`).
    BadFormat,
    /// Nested deeper than the decoder allows, or a key Lua refuses: the message.
    TooDeep(&'static str),
    Lua(mlua::Error),
}

impl From<mlua::Error> for Stop {
    fn from(e: mlua::Error) -> Self {
        Stop::Lua(e)
    }
}

struct Cursor<'a> {
    lua: &'a Lua,
    data: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn left(&self) -> usize {
        self.data.len() - self.pos
    }

    fn take(&mut self, n: usize) -> Result<&[u8], Stop> {
        if self.left() < n {
            return Err(Stop::Eof);
        }
        let s = &self.data[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn be(&mut self, n: usize) -> Result<u64, Stop> {
        Ok(self
            .take(n)?
            .iter()
            .fold(0u64, |acc, &b| (acc << 8) | u64::from(b)))
    }

    fn string(&mut self, len: usize) -> Result<Lv, Stop> {
        let lua = self.lua;
        let s = self.take(len)?;
        Ok(Lv::String(lua.create_string(s)?))
    }

    fn value(&mut self, depth: usize) -> Result<Lv, Stop> {
        let tag = self.take(1)?[0];
        Ok(match tag {
            0xcc => Lv::Number(self.be(1)? as f64),
            0xd0 => Lv::Number(f64::from(self.be(1)? as u8 as i8)),
            0xcd => Lv::Number(self.be(2)? as f64),
            0xd1 => Lv::Number(f64::from(self.be(2)? as u16 as i16)),
            0xce => Lv::Number(self.be(4)? as f64),
            0xd2 => Lv::Number(f64::from(self.be(4)? as u32 as i32)),
            // lua_pushunsigned is lua_pushinteger in Lua 5.1: past 2^63 it wraps negative.
            0xcf | 0xd3 => Lv::Number(self.be(8)? as i64 as f64),
            0xc0 => Lv::Nil,
            0xc3 => Lv::Boolean(true),
            0xc2 => Lv::Boolean(false),
            0xca => Lv::Number(f64::from(f32::from_bits(self.be(4)? as u32))),
            0xcb => Lv::Number(f64::from_bits(self.be(8)?)),
            0xd9 => {
                let l = self.be(1)? as usize;
                self.string(l)?
            }
            0xda => {
                let l = self.be(2)? as usize;
                self.string(l)?
            }
            0xdb => {
                let l = self.be(4)? as usize;
                self.string(l)?
            }
            0xdc => {
                let l = self.be(2)? as usize;
                self.array(l, depth)?
            }
            0xdd => {
                let l = self.be(4)? as usize;
                self.array(l, depth)?
            }
            0xde => {
                let l = self.be(2)? as usize;
                self.map(l, depth)?
            }
            0xdf => {
                let l = self.be(4)? as usize;
                self.map(l, depth)?
            }
            t if t & 0x80 == 0 => Lv::Number(f64::from(t)),
            t if t & 0xe0 == 0xe0 => Lv::Number(f64::from(t as i8)),
            t if t & 0xe0 == 0xa0 => self.string(usize::from(t & 0x1f))?,
            t if t & 0xf0 == 0x90 => self.array(usize::from(t & 0xf), depth)?,
            t if t & 0xf0 == 0x80 => self.map(usize::from(t & 0xf), depth)?,
            _ => return Err(Stop::BadFormat),
        })
    }

    fn array(&mut self, len: usize, depth: usize) -> Result<Lv, Stop> {
        if depth >= MAX_DECODE_DEPTH {
            return Err(Stop::TooDeep(
                "stack overflow (in function mp_decode_to_lua_array)",
            ));
        }
        let t = self.lua.create_table()?;
        for i in 1..=len {
            let v = self.value(depth + 1)?;
            t.raw_set(i, v)?;
        }
        Ok(Lv::Table(t))
    }

    fn map(&mut self, len: usize, depth: usize) -> Result<Lv, Stop> {
        if depth >= MAX_DECODE_DEPTH {
            return Err(Stop::TooDeep(TOO_MANY));
        }
        let t = self.lua.create_table()?;
        for _ in 0..len {
            let k = self.value(depth + 1)?;
            let v = self.value(depth + 1)?;
            // Lua refuses these keys, and its message has no position.
            match k {
                Lv::Nil => return Err(Stop::TooDeep(UNPOSITIONED_NIL_KEY)),
                Lv::Number(n) if n.is_nan() => return Err(Stop::TooDeep(UNPOSITIONED_NAN_KEY)),
                k => t.raw_set(k, v)?,
            }
        }
        Ok(Lv::Table(t))
    }
}

fn check_string(args: &MultiValue, fname: &str) -> Result<Vec<u8>, String> {
    crate::api::lua_to_arg_str(args.front().unwrap_or(&Lv::Nil)).ok_or_else(|| {
        let got = args.front().map_or("no value", Lv::type_name);
        format!("bad argument #1 to '{fname}' (string expected, got {got})")
    })
}

/// `mp_unpack_full`: decodes up to `limit` values from `offset` (0 and 0: everything).
fn unpack(lua: &Lua, args: &MultiValue, limit: i64, offset: i64) -> LibResult {
    let data = check_string(args, "unpack")?;
    let len = data.len();
    if offset < 0 || limit < 0 {
        return Err(format!(
            "Invalid request to unpack with offset of {} and limit of {}.",
            offset as i32, len as i32
        ));
    }
    if offset as usize > len {
        return Err(format!(
            "Start offset {} greater than input length {}.",
            offset as i32, len as i32
        ));
    }
    let decode_all = limit == 0 && offset == 0;
    let limit = if decode_all {
        i64::from(i32::MAX)
    } else {
        limit
    };
    let mut c = Cursor {
        lua,
        data: &data,
        pos: offset as usize,
    };
    let mut out = Vec::new();
    while c.left() > 0 && (out.len() as i64) < limit {
        if out.len() >= MAX_RESULTS {
            return Err(TOO_MANY.into());
        }
        match c.value(0) {
            Ok(v) => out.push(v),
            Err(Stop::Eof) => return Err("Missing bytes in input.".into()),
            Err(Stop::BadFormat) => return Err("Bad data format in input.".into()),
            Err(Stop::TooDeep(msg)) => return Err(msg.into()),
            Err(Stop::Lua(e)) => return Err(e.to_string()),
        }
    }
    if !decode_all {
        let next = if c.left() == 0 { -1.0 } else { c.pos as f64 };
        out.insert(0, Lv::Number(next));
    }
    Ok(out)
}

fn opt_integer(args: &MultiValue, i: usize, fname: &str) -> Result<i64, String> {
    match args.get(i) {
        None | Some(Lv::Nil) => Ok(0),
        Some(_) => check_number(args, i, fname).map(|n| n as i64),
    }
}

fn unpack_one(lua: &Lua, args: MultiValue) -> mlua::Result<LibResult> {
    Ok(opt_integer(&args, 1, "unpack_one").and_then(|offset| unpack(lua, &args, 1, offset)))
}

fn unpack_limit(lua: &Lua, args: MultiValue) -> mlua::Result<LibResult> {
    let r = check_number(&args, 1, "unpack_limit")
        .map(|n| n as i64)
        .and_then(|limit| {
            let offset = opt_integer(&args, 2, "unpack_limit")?;
            unpack(lua, &args, limit, offset)
        });
    Ok(r)
}
