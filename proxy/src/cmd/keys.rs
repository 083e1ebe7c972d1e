//! Key commands (`db.c`, `expire.c`): DEL, UNLINK, EXISTS, the EXPIRE family, TTL family,
//! PERSIST, TYPE, RENAME, RENAMENX, COPY, and the parsing of SCAN, KEYS and DBSIZE (run by
//! [`super::scan`]).

use bytes::Bytes;
use net::message::kv::{ExpireCond, KvOp, OpResult, TtlState};

use super::action::{Action, keyed, single};
use super::opts::{database, scan_opts, type_name};
use super::scan::Keyspace;
use super::util::{exec_error, int, is, syntax, unexpected};
use crate::keyspace::SLOTS;
use crate::resp::Reply;

/// Dispatches a key command (arity already checked).
pub fn dispatch(name: &'static str, args: &[Bytes], now_ms: u64) -> Action {
    match build(name, args, now_ms) {
        Ok(a) => a,
        Err(r) => Action::Reply(r),
    }
}

fn build(name: &'static str, args: &[Bytes], now_ms: u64) -> Result<Action, Reply> {
    Ok(match name {
        // TOUCH counts the keys that exist, as EXISTS does (the read marks them used).
        "del" | "unlink" | "exists" | "touch" => {
            let exists = matches!(name, "exists" | "touch");
            let ops = args[1..]
                .iter()
                .map(|k| {
                    let op = if exists {
                        KvOp::KeyExists { key: k.clone() }
                    } else {
                        KvOp::KeyDel { key: k.clone() }
                    };
                    keyed(k, op)
                })
                .collect();
            Action::Data {
                ops,
                finish: Box::new(|res| {
                    let mut n = 0;
                    for r in res {
                        match r {
                            Ok(OpResult::Bool { value }) => n += i64::from(value),
                            Ok(other) => return unexpected(&other),
                            Err(e) => return exec_error(&e),
                        }
                    }
                    Reply::Int(n)
                }),
            }
        }
        "expire" | "pexpire" | "expireat" | "pexpireat" => {
            let cond = expire_cond(&args[3..])?;
            let when = int(&args[2])?;
            let invalid = || Reply::err(format_args!("invalid expire time in '{name}' command"));
            let ms = if matches!(name, "expire" | "expireat") {
                when.checked_mul(1000).ok_or_else(invalid)?
            } else {
                when
            };
            let abs = if matches!(name, "expire" | "pexpire") {
                ms.checked_add(i64::try_from(now_ms).unwrap_or(i64::MAX))
                    .ok_or_else(invalid)?
            } else {
                ms
            };
            let key = &args[1];
            let op = KvOp::KeyExpire {
                key: key.clone(),
                // A time in the past (even negative) deletes the key.
                at_ms: u64::try_from(abs).unwrap_or(0),
                cond,
            };
            single(key, op, bool_int)
        }
        "ttl" | "pttl" | "expiretime" | "pexpiretime" => {
            let key = &args[1];
            single(key, KvOp::KeyTtl { key: key.clone() }, move |r| match r {
                OpResult::Ttl { ttl } => Reply::Int(ttl_reply(name, ttl, now_ms)),
                other => unexpected(&other),
            })
        }
        "persist" => {
            let key = &args[1];
            single(key, KvOp::KeyPersist { key: key.clone() }, bool_int)
        }
        "rename" | "renamenx" => {
            let nx = name == "renamenx";
            let op = KvOp::KeyRename {
                key: args[1].clone(),
                dst: args[2].clone(),
                nx,
            };
            single(&args[1], op, move |r| match r {
                OpResult::Unit {} if !nx => Reply::OK,
                OpResult::Bool { value } if nx => Reply::Int(i64::from(value)),
                other => unexpected(&other),
            })
        }
        "copy" => {
            let (replace, db) = copy_opts(&args[3..])?;
            let (key, dst) = (args[1].clone(), args[2].clone());
            let op = match db {
                // Into another database (or the connection's, named): `range::rename`.
                Some(dst_db) => KvOp::KeyCopyDb {
                    key,
                    dst,
                    dst_db,
                    replace,
                    remove: false,
                },
                None => KvOp::KeyCopy { key, dst, replace },
            };
            single(&args[1], op, bool_int)
        }
        "type" => {
            let key = &args[1];
            single(key, KvOp::KeyType { key: key.clone() }, |r| match r {
                OpResult::Type { key_type } => Reply::Simple(type_name(key_type)),
                other => unexpected(&other),
            })
        }
        "scan" => scan_args(args)?,
        "keys" => Action::rounds(Keyspace::Keys {
            pattern: args[1].clone(),
        }),
        "dbsize" => Action::rounds(Keyspace::DbSize),
        "randomkey" => Action::rounds(Keyspace::RandomKey),
        _ => return Err(Reply::err("internal error: not a key command")),
    })
}

/// `COPY`'s options: `[DB n] [REPLACE]`; whether REPLACE was given, and the database.
fn copy_opts(opts: &[Bytes]) -> Result<(bool, Option<crate::keyspace::Db>), Reply> {
    let mut replace = false;
    let mut db = None;
    let mut i = 0;
    while i < opts.len() {
        if is(&opts[i], "replace") {
            replace = true;
            i += 1;
        } else if is(&opts[i], "db") && i + 1 < opts.len() {
            db = Some(database(&opts[i + 1])?);
            i += 2;
        } else {
            return Err(syntax());
        }
    }
    Ok((replace, db))
}

fn bool_int(r: OpResult) -> Reply {
    match r {
        OpResult::Bool { value } => Reply::Int(i64::from(value)),
        other => unexpected(&other),
    }
}

fn ttl_reply(name: &str, ttl: TtlState, now_ms: u64) -> i64 {
    match ttl {
        TtlState::NoKey {} => -2,
        TtlState::Persistent {} => -1,
        TtlState::ExpiresAt { at_ms } => {
            let at = i64::try_from(at_ms).unwrap_or(i64::MAX);
            let left = at.saturating_sub(i64::try_from(now_ms).unwrap_or(0)).max(0);
            match name {
                // Redis rounds both to the nearest second (`(ms + 500) / 1000`).
                "ttl" => (left + 500) / 1000,
                "pttl" => left,
                "expiretime" => at.saturating_add(500) / 1000,
                _ => at,
            }
        }
    }
}

/// NX/XX/GT/LT with Redis 7's errors.
fn expire_cond(opts: &[Bytes]) -> Result<ExpireCond, Reply> {
    let (mut nx, mut xx, mut gt, mut lt) = (false, false, false, false);
    for o in opts {
        if is(o, "nx") {
            nx = true;
        } else if is(o, "xx") {
            xx = true;
        } else if is(o, "gt") {
            gt = true;
        } else if is(o, "lt") {
            lt = true;
        } else {
            return Err(Reply::err(format_args!(
                "Unsupported option {}",
                String::from_utf8_lossy(o)
            )));
        }
    }
    if nx && (xx || gt || lt) {
        return Err(Reply::err(
            "NX and XX, GT or LT options at the same time are not compatible",
        ));
    }
    if gt && lt {
        return Err(Reply::err(
            "GT and LT options at the same time are not compatible",
        ));
    }
    Ok(if nx {
        ExpireCond::IfNone {}
    } else if gt {
        ExpireCond::IfGreater {}
    } else if lt && xx {
        ExpireCond::IfSomeLess {}
    } else if lt {
        ExpireCond::IfLess {}
    } else if xx {
        ExpireCond::IfSome {}
    } else {
        ExpireCond::Always {}
    })
}

/// `SCAN cursor [MATCH p] [COUNT n] [TYPE t]`. The cursor is the next hash slot to scan
/// (0 starts, and a reply of 0 means done): positions survive range splits and moves, and
/// any proxy can continue a scan another proxy started.
fn scan_args(args: &[Bytes]) -> Result<Action, Reply> {
    let cursor = std::str::from_utf8(&args[1])
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .ok_or_else(|| Reply::err("invalid cursor"))?;
    let (pattern, count, type_filter) = scan_opts(&args[2..], true)?;
    if cursor >= u64::from(SLOTS) {
        return Err(Reply::Array(vec![
            Reply::bulk(b"0"),
            Reply::Array(Vec::new()),
        ]));
    }
    Ok(Action::rounds(Keyspace::Scan {
        slot: u16::try_from(cursor).unwrap_or(0),
        pattern,
        count,
        type_filter,
    }))
}
