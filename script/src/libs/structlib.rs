//! Roberto Ierusalimschy's `struct` library as Redis ships it (`struct.pack`, `struct.unpack`,
//! `struct.size`), for x86-64: native little-endian, `long` and `size_t` of 8 bytes, maximum
//! alignment 8, integers up to 32 bytes wide.

use mlua::{Lua, MultiValue, Table, Value as Lv};

use super::{LibResult, check_number, lib_fn};

const MAXINTSIZE: usize = 32;
const MAXALIGN: usize = 8;

#[derive(Clone, Copy, PartialEq)]
enum Endian {
    Big,
    Little,
}

struct Header {
    endian: Endian,
    align: usize,
}

impl Default for Header {
    fn default() -> Self {
        Self {
            endian: Endian::Little,
            align: 1,
        }
    }
}

/// The table `struct`.
pub(crate) fn table(lua: &Lua) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.set("pack", lib_fn(lua, |lua, a| Ok(pack(lua, &a)))?)?;
    t.set("unpack", lib_fn(lua, |lua, a| Ok(unpack(lua, &a)))?)?;
    t.set("size", lib_fn(lua, |_, a| Ok(size(&a)))?)?;
    Ok(t)
}

/// `luaL_checkstring`/`luaL_checklstring` (numbers read as Lua prints them).
fn check_bytes(args: &MultiValue, i: usize, fname: &str) -> Result<Vec<u8>, String> {
    crate::api::lua_to_arg_str(args.get(i).unwrap_or(&Lv::Nil)).ok_or_else(|| {
        let got = args.get(i).map_or("no value", Lv::type_name);
        format!(
            "bad argument #{} to '{fname}' (string expected, got {got})",
            i + 1
        )
    })
}

/// The format up to its first NUL, as the C library reads it.
fn format(args: &MultiValue, fname: &str) -> Result<Vec<u8>, String> {
    let mut f = check_bytes(args, 0, fname)?;
    if let Some(nul) = f.iter().position(|&b| b == 0) {
        f.truncate(nul);
    }
    Ok(f)
}

/// `getnum`: a decimal count after an option, or `default`.
fn getnum(fmt: &[u8], at: &mut usize, default: usize) -> Result<usize, String> {
    if !fmt.get(*at).is_some_and(u8::is_ascii_digit) {
        return Ok(default);
    }
    let mut a: usize = 0;
    while let Some(d) = fmt.get(*at).filter(|c| c.is_ascii_digit()) {
        let d = usize::from(d - b'0');
        if a > (i32::MAX as usize) / 10 || a * 10 > i32::MAX as usize - d {
            return Err("integral size overflow".into());
        }
        a = a * 10 + d;
        *at += 1;
    }
    Ok(a)
}

fn optsize(opt: u8, fmt: &[u8], at: &mut usize) -> Result<usize, String> {
    Ok(match opt {
        b'B' | b'b' => 1,
        b'H' | b'h' => 2,
        b'L' | b'l' | b'T' | b'd' => 8,
        b'f' => 4,
        b'x' => 1,
        b'c' => getnum(fmt, at, 1)?,
        b'i' | b'I' => {
            let sz = getnum(fmt, at, 4)?;
            if sz > MAXINTSIZE {
                return Err(format!(
                    "integral size {sz} is larger than limit of {MAXINTSIZE}"
                ));
            }
            sz
        }
        _ => 0,
    })
}

fn gettoalign(len: usize, h: &Header, opt: u8, size: usize) -> usize {
    if size == 0 || opt == b'c' {
        return 0;
    }
    let size = size.min(h.align);
    (size - (len & (size - 1))) & (size - 1)
}

fn controloptions(
    opt: u8,
    fmt: &[u8],
    at: &mut usize,
    h: &mut Header,
    fname: &str,
) -> Result<(), String> {
    match opt {
        b' ' => {}
        b'>' => h.endian = Endian::Big,
        b'<' => h.endian = Endian::Little,
        b'!' => {
            let a = getnum(fmt, at, MAXALIGN)?;
            if !a.is_power_of_two() {
                return Err(format!("alignment {a} is not a power of 2"));
            }
            h.align = a;
        }
        _ => {
            return Err(format!(
                "bad argument #1 to '{fname}' (invalid format option '{}')",
                opt as char
            ));
        }
    }
    Ok(())
}

fn put_integer(out: &mut Vec<u8>, n: f64, endian: Endian, size: usize) {
    let mut value = if n < 0.0 { n as i64 as u64 } else { n as u64 };
    let mut buf = vec![0u8; size];
    for i in 0..size {
        let idx = if endian == Endian::Little {
            i
        } else {
            size - 1 - i
        };
        buf[idx] = (value & 0xff) as u8;
        value >>= 8;
    }
    out.extend_from_slice(&buf);
}

fn ordered(bytes: &[u8], endian: Endian) -> Vec<u8> {
    let mut b = bytes.to_vec();
    if endian == Endian::Big {
        b.reverse();
    }
    b
}

fn pack(lua: &Lua, args: &MultiValue) -> LibResult {
    let fmt = format(args, "pack")?;
    let mut h = Header::default();
    let mut out = Vec::new();
    let (mut at, mut arg, mut total) = (0usize, 1usize, 0usize);
    while let Some(&opt) = fmt.get(at) {
        at += 1;
        let mut size = optsize(opt, &fmt, &mut at)?;
        let pad = gettoalign(total, &h, opt, size);
        total += pad;
        out.resize(out.len() + pad, 0);
        match opt {
            b'b' | b'B' | b'h' | b'H' | b'l' | b'L' | b'T' | b'i' | b'I' => {
                let n = check_number(args, arg, "pack")?;
                arg += 1;
                put_integer(&mut out, n, h.endian, size);
            }
            b'x' => out.push(0),
            b'f' => {
                let f = check_number(args, arg, "pack")? as f32;
                arg += 1;
                out.extend(ordered(&f.to_le_bytes(), h.endian));
            }
            b'd' => {
                let d = check_number(args, arg, "pack")?;
                arg += 1;
                out.extend(ordered(&d.to_le_bytes(), h.endian));
            }
            b'c' | b's' => {
                let s = check_bytes(args, arg, "pack")?;
                arg += 1;
                if size == 0 {
                    size = s.len();
                }
                if s.len() < size {
                    return Err(format!(
                        "bad argument #{} to 'pack' (string too short)",
                        arg + 1
                    ));
                }
                out.extend_from_slice(&s[..size]);
                if opt == b's' {
                    out.push(0);
                    size += 1;
                }
            }
            _ => controloptions(opt, &fmt, &mut at, &mut h, "pack")?,
        }
        total += size;
    }
    Ok(vec![Lv::String(
        lua.create_string(&out).map_err(|e| e.to_string())?,
    )])
}

fn get_integer(buf: &[u8], endian: Endian, signed: bool) -> f64 {
    let size = buf.len();
    let mut l: u64 = 0;
    for i in 0..size {
        let b = if endian == Endian::Big {
            buf[i]
        } else {
            buf[size - 1 - i]
        };
        l = (l << 8) | u64::from(b);
    }
    if !signed {
        return l as f64;
    }
    // As the C code on x86-64: the shift count is taken modulo 64.
    let mask = u64::MAX.wrapping_shl(((size * 8).wrapping_sub(1) % 64) as u32);
    if l & mask != 0 {
        l |= mask;
    }
    l as i64 as f64
}

fn unpack(lua: &Lua, args: &MultiValue) -> LibResult {
    let fmt = format(args, "unpack")?;
    let data = check_bytes(args, 1, "unpack")?;
    let ld = data.len();
    let pos = match args.get(2) {
        None | Some(Lv::Nil) => 1,
        Some(_) => check_number(args, 2, "unpack")? as i64,
    };
    if pos == 0 {
        return Err("bad argument #3 to 'unpack' (offset must be 1 or greater)".into());
    }
    let mut pos = (pos as u64).wrapping_sub(1) as usize;
    let mut h = Header::default();
    let mut out: Vec<Lv> = Vec::new();
    let short = || Err("bad argument #2 to 'unpack' (data string too short)".to_string());
    let mut at = 0;
    while let Some(&opt) = fmt.get(at) {
        at += 1;
        let mut size = optsize(opt, &fmt, &mut at)?;
        pos = pos.wrapping_add(gettoalign(pos, &h, opt, size));
        if size > ld || pos > ld - size {
            return short();
        }
        match opt {
            b'b' | b'B' | b'h' | b'H' | b'l' | b'L' | b'T' | b'i' | b'I' => {
                let signed = opt.is_ascii_lowercase();
                out.push(Lv::Number(get_integer(
                    &data[pos..pos + size],
                    h.endian,
                    signed,
                )));
            }
            b'x' => {}
            b'f' => {
                let b = ordered(&data[pos..pos + 4], h.endian);
                out.push(Lv::Number(f64::from(f32::from_le_bytes([
                    b[0], b[1], b[2], b[3],
                ]))));
            }
            b'd' => {
                let b = ordered(&data[pos..pos + 8], h.endian);
                let mut a = [0u8; 8];
                a.copy_from_slice(&b);
                out.push(Lv::Number(f64::from_le_bytes(a)));
            }
            b'c' => {
                if size == 0 {
                    let prev = match out.last() {
                        Some(Lv::Number(n)) => Some(*n),
                        Some(Lv::Integer(i)) => Some(*i as f64),
                        _ => None,
                    };
                    let Some(n) = prev else {
                        return Err("format 'c0' needs a previous size".into());
                    };
                    out.pop();
                    size = n as usize;
                    if size > ld || pos > ld - size {
                        return short();
                    }
                }
                out.push(Lv::String(
                    lua.create_string(&data[pos..pos + size])
                        .map_err(|e| e.to_string())?,
                ));
            }
            b's' => {
                let Some(len) = data[pos..].iter().position(|&b| b == 0) else {
                    return Err("unfinished string in data".into());
                };
                size = len + 1;
                out.push(Lv::String(
                    lua.create_string(&data[pos..pos + len])
                        .map_err(|e| e.to_string())?,
                ));
            }
            _ => controloptions(opt, &fmt, &mut at, &mut h, "unpack")?,
        }
        pos = pos.wrapping_add(size);
    }
    out.push(Lv::Number(pos.wrapping_add(1) as f64));
    Ok(out)
}

fn size(args: &MultiValue) -> LibResult {
    let fmt = format(args, "size")?;
    let mut h = Header::default();
    let (mut at, mut pos) = (0usize, 0usize);
    while let Some(&opt) = fmt.get(at) {
        at += 1;
        let size = optsize(opt, &fmt, &mut at)?;
        pos += gettoalign(pos, &h, opt, size);
        if opt == b's' {
            return Err("bad argument #1 to 'size' (option 's' has no fixed size)".into());
        } else if opt == b'c' && size == 0 {
            return Err("bad argument #1 to 'size' (option 'c0' has no fixed size)".into());
        }
        if !opt.is_ascii_alphanumeric() {
            controloptions(opt, &fmt, &mut at, &mut h, "size")?;
        }
        pos += size;
    }
    Ok(vec![Lv::Number(pos as f64)])
}
