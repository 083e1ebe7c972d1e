//! Lua BitOp 1.0 (`bit.*`), as Redis ships it: 32-bit operations on Lua numbers.

use mlua::{Lua, MultiValue, Table, Value as Lv};

use super::{LibResult, check_number, lib_fn};

/// BitOp's `barg`: a number to an int32, rounding and wrapping as the C library does.
pub(crate) fn tobit(n: f64) -> i32 {
    (n + 6_755_399_441_055_744.0).to_bits() as u32 as i32
}

fn arg(args: &MultiValue, i: usize, name: &str) -> Result<i32, String> {
    check_number(args, i, name).map(tobit)
}

fn num(x: i32) -> LibResult {
    Ok(vec![Lv::Number(f64::from(x))])
}

fn fold(args: &MultiValue, name: &str, f: fn(i32, i32) -> i32) -> LibResult {
    let mut acc = arg(args, 0, name)?;
    for i in 1..args.len() {
        acc = f(acc, arg(args, i, name)?);
    }
    num(acc)
}

fn shift(args: &MultiValue, name: &str, f: fn(i32, u32) -> i32) -> LibResult {
    let x = arg(args, 0, name)?;
    let n = arg(args, 1, name)? as u32 & 31;
    num(f(x, n))
}

fn tohex(lua: &Lua, args: &MultiValue) -> LibResult {
    let x = arg(args, 0, "tohex")? as u32;
    let mut n = if args.get(1).is_none_or(Lv::is_nil) {
        8
    } else {
        arg(args, 1, "tohex")?
    };
    let upper = n < 0;
    n = n.unsigned_abs().min(8) as i32;
    let full = if upper {
        format!("{x:08X}")
    } else {
        format!("{x:08x}")
    };
    let s = &full[8 - n as usize..];
    Ok(vec![Lv::String(
        lua.create_string(s).map_err(|e| e.to_string())?,
    )])
}

/// The `bit` table.
pub(crate) fn table(lua: &Lua) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.set(
        "tobit",
        lib_fn(lua, |_, a| Ok(arg(&a, 0, "tobit").and_then(num)))?,
    )?;
    t.set(
        "bnot",
        lib_fn(lua, |_, a| Ok(arg(&a, 0, "bnot").and_then(|x| num(!x))))?,
    )?;
    t.set(
        "band",
        lib_fn(lua, |_, a| Ok(fold(&a, "band", |x, y| x & y)))?,
    )?;
    t.set(
        "bor",
        lib_fn(lua, |_, a| Ok(fold(&a, "bor", |x, y| x | y)))?,
    )?;
    t.set(
        "bxor",
        lib_fn(lua, |_, a| Ok(fold(&a, "bxor", |x, y| x ^ y)))?,
    )?;
    t.set(
        "lshift",
        lib_fn(lua, |_, a| {
            Ok(shift(&a, "lshift", |x, n| ((x as u32) << n) as i32))
        })?,
    )?;
    t.set(
        "rshift",
        lib_fn(lua, |_, a| {
            Ok(shift(&a, "rshift", |x, n| ((x as u32) >> n) as i32))
        })?,
    )?;
    t.set(
        "arshift",
        lib_fn(lua, |_, a| Ok(shift(&a, "arshift", |x, n| x >> n)))?,
    )?;
    t.set(
        "rol",
        lib_fn(lua, |_, a| {
            Ok(shift(&a, "rol", |x, n| (x as u32).rotate_left(n) as i32))
        })?,
    )?;
    t.set(
        "ror",
        lib_fn(lua, |_, a| {
            Ok(shift(&a, "ror", |x, n| (x as u32).rotate_right(n) as i32))
        })?,
    )?;
    t.set(
        "bswap",
        lib_fn(lua, |_, a| {
            Ok(arg(&a, 0, "bswap").and_then(|x| num(x.swap_bytes())))
        })?,
    )?;
    t.set("tohex", lib_fn(lua, |lua, a| Ok(tohex(lua, &a)))?)?;
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::tobit;

    #[test]
    fn tobit_wraps_and_rounds_like_bitop() {
        assert_eq!(tobit(4294967295.0), -1);
        assert_eq!(tobit(2147483648.0), i32::MIN);
        assert_eq!(tobit(1.5), 2);
        assert_eq!(tobit(2.5), 2);
        assert_eq!(tobit(-1.0), -1);
    }
}
