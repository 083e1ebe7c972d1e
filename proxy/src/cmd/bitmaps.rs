//! Bitmap commands on strings (`bitops.c`): SETBIT, GETBIT, BITCOUNT, BITPOS, BITFIELD,
//! BITFIELD_RO run in the state machine as one operation on one key; BITOP reads its sources
//! and writes its destination from the proxy ([`bitop`]).

use bytes::Bytes;
use futures_util::future::BoxFuture;
use net::message::bits::{BitOp, BitRange, FieldOp, Overflow};
use net::message::kv::{Cond, Expiry, KvOp, OpResult};

use super::action::{Action, AsyncCommand, keyed, single};
use super::spec::{R, RS, Spec, WD, spec};
use super::util::{exec_error, int, is, syntax, unexpected};
use crate::db::DbRouter;
use crate::resp::Reply;

/// The commands of this module, sorted by name.
pub static SPECS: &[Spec] = &[
    spec!("bitcount", -2, RS, 1, 1, 1),
    spec!("bitfield", -2, WD, 1, 1, 1),
    spec!("bitfield_ro", -2, R, 1, 1, 1),
    spec!("bitop", -4, WD, 2, -1, 1),
    spec!("bitpos", -3, RS, 1, 1, 1),
    spec!("getbit", 3, R, 1, 1, 1),
    spec!("setbit", 4, WD, 1, 1, 1),
];

/// Dispatches a command of [`SPECS`] (arity already checked). `max_bulk`:
/// `proto-max-bulk-len`, the longest string a bit offset may reach.
pub fn dispatch(name: &'static str, args: &[Bytes], max_bulk: u64) -> Action {
    match build(name, args, max_bulk) {
        Ok(a) => a,
        Err(r) => Action::Reply(r),
    }
}

fn bits_op(op: BitOp, finish: impl FnOnce(OpResult) -> Reply + Send + 'static) -> Action {
    let key = op.key().clone();
    single(&key, KvOp::Bits { op }, finish)
}

fn int_reply(r: OpResult) -> Reply {
    match r {
        OpResult::Int { value } => Reply::Int(value),
        other => unexpected(&other),
    }
}

fn build(name: &'static str, args: &[Bytes], max_bulk: u64) -> Result<Action, Reply> {
    let key = args[1].clone();
    Ok(match name {
        "setbit" => {
            let offset = bit_offset(&args[2], None, max_bulk)?;
            let bad = || Reply::err("bit is not an integer or out of range");
            let value = match super::util::parse_i64(&args[3]) {
                Some(0) => false,
                Some(1) => true,
                _ => return Err(bad()),
            };
            bits_op(BitOp::SetBit { key, offset, value }, int_reply)
        }
        "getbit" => {
            let offset = bit_offset(&args[2], None, max_bulk)?;
            bits_op(BitOp::GetBit { key, offset }, int_reply)
        }
        "bitcount" => {
            let range = match &args[2..] {
                [] => None,
                [s, e] => Some(range(s, Some(e), None)?),
                [s, e, unit] => Some(range(s, Some(e), Some(unit))?),
                _ => return Err(syntax()),
            };
            bits_op(BitOp::Count { key, range }, int_reply)
        }
        "bitpos" => {
            let bit = match int(&args[2])? {
                0 => false,
                1 => true,
                _ => return Err(Reply::err("The bit argument must be 1 or 0.")),
            };
            let range = match &args[3..] {
                [] => None,
                [s] => Some(range(s, None, None)?),
                [s, e] => Some(range(s, Some(e), None)?),
                [s, e, unit] => Some(range(s, Some(e), Some(unit))?),
                _ => return Err(syntax()),
            };
            bits_op(BitOp::Pos { key, bit, range }, int_reply)
        }
        "bitfield" | "bitfield_ro" => {
            let ops = field_ops(&args[2..], max_bulk)?;
            if name == "bitfield_ro" && ops.iter().any(|o| !matches!(o, FieldOp::Get { .. })) {
                return Err(Reply::err("BITFIELD_RO only supports the GET subcommand"));
            }
            bits_op(BitOp::Field { key, ops }, |r| match r {
                OpResult::OptInts { values } => Reply::Array(
                    values
                        .into_iter()
                        .map(|v| v.map_or(Reply::Nil, Reply::Int))
                        .collect(),
                ),
                other => unexpected(&other),
            })
        }
        "bitop" => {
            let op = match String::from_utf8_lossy(&args[1])
                .to_ascii_lowercase()
                .as_str()
            {
                "and" => Logic::And,
                "or" => Logic::Or,
                "xor" => Logic::Xor,
                "not" => Logic::Not,
                _ => return Err(syntax()),
            };
            if op == Logic::Not && args.len() != 4 {
                return Err(Reply::err(
                    "BITOP NOT must be called with a single source key.",
                ));
            }
            Action::rounds(BitOpCmd {
                op,
                dest: args[2].clone(),
                sources: args[3..].to_vec(),
            })
        }
        _ => return Err(Reply::err("internal error: not a bitmap command")),
    })
}

/// A bit offset (`#n`: n fields of `hash_bits` bits), Redis's `getBitOffsetFromArgument`.
fn bit_offset(arg: &[u8], hash_bits: Option<u8>, max_bulk: u64) -> Result<u64, Reply> {
    let bad = || Reply::err("bit offset is not an integer or out of range");
    let (digits, mul) = match (arg.strip_prefix(b"#"), hash_bits) {
        (Some(rest), Some(bits)) => (rest, i64::from(bits)),
        _ => (arg, 1),
    };
    let n = super::util::parse_i64(digits)
        .and_then(|n| n.checked_mul(mul))
        .ok_or_else(bad)?;
    let n = u64::try_from(n).map_err(|_| bad())?;
    if n >> 3 >= max_bulk {
        return Err(bad());
    }
    Ok(n)
}

fn range(start: &[u8], end: Option<&Bytes>, unit: Option<&Bytes>) -> Result<BitRange, Reply> {
    let bits = match unit {
        None => false,
        Some(u) if is(u, "bit") => true,
        Some(u) if is(u, "byte") => false,
        Some(_) => return Err(syntax()),
    };
    Ok(BitRange {
        start: int(start)?,
        end: end.map(|e| int(e)).transpose()?,
        bits,
    })
}

/// `i8`, `u16`, …: `(signed, bits)`.
fn field_type(arg: &[u8]) -> Result<(bool, u8), Reply> {
    let bad = || {
        Reply::err(
            "Invalid bitfield type. Use something like i16 u8. Note that u64 is not supported but i64 is.",
        )
    };
    let (signed, digits) = match arg.split_first() {
        Some((b'i', rest)) => (true, rest),
        Some((b'u', rest)) => (false, rest),
        _ => return Err(bad()),
    };
    let bits = super::util::parse_i64(digits).ok_or_else(bad)?;
    let max = if signed { 64 } else { 63 };
    match u8::try_from(bits) {
        Ok(b) if (1..=max).contains(&b) => Ok((signed, b)),
        _ => Err(bad()),
    }
}

/// BITFIELD's sub-operations, in order, each with the OVERFLOW mode in force at its place.
fn field_ops(args: &[Bytes], max_bulk: u64) -> Result<Vec<FieldOp>, Reply> {
    let mut ops = Vec::new();
    let mut overflow = Overflow::Wrap {};
    let mut i = 0;
    while i < args.len() {
        let rest = args.len() - i - 1;
        let sub = &args[i];
        if is(sub, "overflow") && rest >= 1 {
            overflow = match String::from_utf8_lossy(&args[i + 1])
                .to_ascii_lowercase()
                .as_str()
            {
                "wrap" => Overflow::Wrap {},
                "sat" => Overflow::Sat {},
                "fail" => Overflow::Fail {},
                _ => return Err(Reply::err("Invalid OVERFLOW type specified")),
            };
            i += 2;
            continue;
        }
        let get = is(sub, "get") && rest >= 2;
        if !get && !((is(sub, "set") || is(sub, "incrby")) && rest >= 3) {
            return Err(syntax());
        }
        let (signed, bits) = field_type(&args[i + 1])?;
        let offset = bit_offset(&args[i + 2], Some(bits), max_bulk)?;
        ops.push(if get {
            FieldOp::Get {
                signed,
                bits,
                offset,
            }
        } else {
            let v = int(&args[i + 3])?;
            if is(sub, "set") {
                FieldOp::Set {
                    signed,
                    bits,
                    offset,
                    value: v,
                    overflow,
                }
            } else {
                FieldOp::IncrBy {
                    signed,
                    bits,
                    offset,
                    incr: v,
                    overflow,
                }
            }
        });
        i += if get { 3 } else { 4 };
    }
    Ok(ops)
}

/// A BITOP operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Logic {
    /// AND of every source.
    And,
    /// OR.
    Or,
    /// XOR.
    Xor,
    /// NOT of the one source.
    Not,
}

/// `BITOP op dest src…`.
#[derive(Debug, Clone)]
pub struct BitOpCmd {
    /// The operation.
    pub op: Logic,
    /// The destination key.
    pub dest: Bytes,
    /// The source keys.
    pub sources: Vec<Bytes>,
}

impl AsyncCommand for BitOpCmd {
    fn run<'a>(self: Box<Self>, router: &'a DbRouter<'_>) -> BoxFuture<'a, Reply> {
        let BitOpCmd { op, dest, sources } = *self;
        Box::pin(bitop(router, op, dest, sources))
    }
}

/// Runs BITOP: reads every source (a missing one is an empty string), computes, and writes
/// the destination (deleted when the result is empty); answers the result's length. The
/// sources are read together, then the destination written: across ranges this is not one
/// atomic step (a write to a source between them is not seen).
async fn bitop(router: &DbRouter<'_>, op: Logic, dest: Bytes, sources: Vec<Bytes>) -> Reply {
    let reads = sources
        .iter()
        .map(|k| keyed(k, KvOp::StrGet { key: k.clone() }))
        .collect();
    let mut values = Vec::with_capacity(sources.len());
    for r in router.exec(reads).await {
        match r {
            Ok(OpResult::Value { value }) => values.push(value.unwrap_or_default()),
            Ok(other) => return unexpected(&other),
            Err(e) => return exec_error(&e),
        }
    }
    let result = combine(op, &values);
    let len = i64::try_from(result.len()).unwrap_or(i64::MAX);
    let write = if result.is_empty() {
        KvOp::KeyDel { key: dest.clone() }
    } else {
        KvOp::StrSet {
            key: dest.clone(),
            value: Bytes::from(result),
            expiry: Expiry::Persist {},
            cond: Cond::Always {},
            get_old: false,
        }
    };
    match router.exec(vec![keyed(&dest, write)]).await.pop() {
        Some(Ok(_)) => Reply::Int(len),
        Some(Err(e)) => exec_error(&e),
        None => Reply::err("internal error: no result"),
    }
}

/// The bytes of `op` over `values` (shorter ones zero-padded), as Redis's `bitopCommand`.
fn combine(op: Logic, values: &[Bytes]) -> Vec<u8> {
    let len = values.iter().map(Bytes::len).max().unwrap_or(0);
    (0..len)
        .map(|i| {
            let mut it = values.iter().map(|v| v.get(i).copied().unwrap_or(0));
            let first = it.next().unwrap_or(0);
            match op {
                Logic::And => it.fold(first, |a, b| a & b),
                Logic::Or => it.fold(first, |a, b| a | b),
                Logic::Xor => it.fold(first, |a, b| a ^ b),
                Logic::Not => !first,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bitop_pads_shorter_sources_with_zeros() {
        let v = |s: &[u8]| Bytes::copy_from_slice(s);
        assert_eq!(
            combine(Logic::And, &[v(b"\xff\x0f"), v(b"\xf0")]),
            b"\xf0\x00"
        );
        assert_eq!(
            combine(Logic::Or, &[v(b"\x01"), v(b"\x02\x04")]),
            b"\x03\x04"
        );
        assert_eq!(combine(Logic::Xor, &[v(b"\xff"), v(b"\x0f")]), b"\xf0");
        assert_eq!(combine(Logic::Not, &[v(b"\x0f")]), b"\xf0");
        assert!(combine(Logic::Or, &[v(b""), v(b"")]).is_empty());
    }

    #[test]
    fn bit_offsets_and_field_types_parse_as_redis() {
        assert_eq!(bit_offset(b"#3", Some(8), 1 << 29), Ok(24));
        assert!(bit_offset(b"#3", None, 1 << 29).is_err());
        assert!(bit_offset(b"-1", None, 1 << 29).is_err());
        assert!(bit_offset(b"4294967296", None, 1 << 29).is_err());
        assert_eq!(bit_offset(b"4294967295", None, 1 << 29), Ok(4_294_967_295));
        assert_eq!(field_type(b"i64"), Ok((true, 64)));
        assert!(field_type(b"u64").is_err());
        assert!(field_type(b"i0").is_err());
        assert!(field_type(b"x8").is_err());
    }
}
