//! `DUMP key` and `RESTORE key ttl payload [REPLACE] [ABSTTL] [IDLETIME s] [FREQ f]`
//! (`cluster.c`), with Redis's payload format ([`crate::rdb`]), so values move between tierkv
//! and Redis in both directions.
//!
//! `DUMP` reads the key's type and whole value in one atomic `Multi` (one operation per type;
//! all but the key's own answer `WRONGTYPE` or empty). `RESTORE` writes the key in one atomic
//! `Multi`: without `REPLACE` it watches the key as absent, so a key that exists (or appears)
//! aborts it with `BUSYKEY`; with `REPLACE` it deletes the old key first. `IDLETIME` and
//! `FREQ` are checked and then ignored: tierkv keeps no per-key LRU or LFU clock.

use bytes::Bytes;
use net::message::kv::{Cond, ExpireCond, Expiry, KvOp, KvResponse, OpResult, Watch};
use net::message::list::ListOp;
use net::message::set::SetOp;
use net::message::zset::ZSetOp;

pub mod migrate;
pub(super) mod read;

use super::action::{Action, keyed, single};
use super::spec::{RS, Spec, WD, spec};
use super::util::{exec_error, int, is, syntax, unexpected};
use crate::rdb::{self, Object};
use crate::resp::Reply;
use crate::route::ExecError;

/// `MIGRATE`'s flags (key positions are movable with `KEYS`).
const MIGRATE: &[&str] = &["write", "movablekeys"];

/// The commands of this module, sorted by name.
pub static SPECS: &[Spec] = &[
    spec!("dump", 2, RS, 1, 1, 1),
    spec!("migrate", -6, MIGRATE, 3, 3, 1),
    spec!("restore", -4, WD, 1, 1, 1),
];

/// Dispatches `DUMP` / `RESTORE` (arity already checked).
pub fn dispatch(name: &str, args: &[Bytes], now_ms: u64) -> Action {
    let built = if name == "dump" {
        Ok(dump(&args[1]))
    } else {
        restore(args, now_ms)
    };
    built.unwrap_or_else(Action::Reply)
}

fn dump(key: &Bytes) -> Action {
    let multi = KvOp::Multi {
        watches: Vec::new(),
        ops: read::value_ops(key),
    };
    single(key, multi, |r| match r {
        OpResult::Multi { results } => match read::value_of(results) {
            Ok(Some(obj)) => Reply::Bulk(Bytes::from(rdb::encode(&obj))),
            Ok(None) => Reply::Nil,
            Err(r) => r,
        },
        other => unexpected(&other),
    })
}

/// `RESTORE`'s options.
#[derive(Debug, Default)]
struct Opts {
    replace: bool,
    absttl: bool,
}

fn options(args: &[Bytes]) -> Result<Opts, Reply> {
    let mut o = Opts::default();
    let (mut idle, mut freq) = (false, false);
    let mut j = 0;
    while j < args.len() {
        let (a, more) = (&args[j], j + 1 < args.len());
        if is(a, "replace") {
            o.replace = true;
        } else if is(a, "absttl") {
            o.absttl = true;
        } else if is(a, "idletime") && more && !freq {
            if int(&args[j + 1])? < 0 {
                return Err(Reply::err("Invalid IDLETIME value, must be >= 0"));
            }
            idle = true;
            j += 1;
        } else if is(a, "freq") && more && !idle {
            if !(0..=255).contains(&int(&args[j + 1])?) {
                return Err(Reply::err("Invalid FREQ value, must be >= 0 and <= 255"));
            }
            freq = true;
            j += 1;
        } else {
            return Err(syntax());
        }
        j += 1;
    }
    Ok(o)
}

fn restore(args: &[Bytes], now_ms: u64) -> Result<Action, Reply> {
    let key = &args[1];
    let o = options(&args[4..])?;
    // Redis refuses an existing key before it looks at the TTL or the payload.
    let checked = int(&args[2])
        .and_then(|ttl| {
            u64::try_from(ttl).map_err(|_| Reply::err("Invalid TTL value, must be >= 0"))
        })
        .and_then(|ttl| {
            rdb::decode(&args[3])
                .map(|obj| (ttl, obj))
                .map_err(Reply::err)
        });
    let (ttl, obj) = match checked {
        Ok(v) => v,
        Err(e) if o.replace => return Err(e),
        Err(e) => return Ok(busy_or(key, e)),
    };
    let at_ms = match ttl {
        0 => None,
        t if o.absttl => Some(t),
        t => Some(t.saturating_add(now_ms)),
    };
    if at_ms.is_some_and(|at| at <= now_ms) {
        // Already expired: nothing is created (with REPLACE the old key still goes).
        return Ok(if o.replace {
            single(key, KvOp::KeyDel { key: key.clone() }, |_| Reply::OK)
        } else {
            busy_or(key, Reply::OK)
        });
    }
    let mut ops = Vec::new();
    if o.replace {
        ops.push(KvOp::KeyDel { key: key.clone() });
    }
    ops.extend(writes(key, obj, at_ms));
    let watches = if o.replace {
        Vec::new()
    } else {
        vec![Watch {
            key: key.clone(),
            digest: 0,
        }]
    };
    Ok(single(key, KvOp::Multi { watches, ops }, |r| match r {
        OpResult::Aborted {} => busy(),
        OpResult::Multi { results } => results
            .into_iter()
            .find_map(|r| match r {
                KvResponse::Err { error } => Some(exec_error(&ExecError::Rpc(error))),
                KvResponse::Ok { .. } => None,
            })
            .unwrap_or(Reply::OK),
        other => unexpected(&other),
    }))
}

fn busy() -> Reply {
    Reply::Error("BUSYKEY Target key name already exists.".into())
}

/// `BUSYKEY` when the key exists, else `otherwise`.
fn busy_or(key: &Bytes, otherwise: Reply) -> Action {
    let op = KvOp::KeyExists { key: key.clone() };
    Action::Data {
        ops: vec![keyed(key, op)],
        finish: Box::new(move |mut res| match res.pop() {
            Some(Ok(OpResult::Bool { value: true } | OpResult::Int { value: 1.. })) => busy(),
            Some(Ok(_)) => otherwise,
            Some(Err(e)) => exec_error(&e),
            None => Reply::err("internal error: no result"),
        }),
    }
}

/// The operations that create `key` holding `obj`, expiring at `at_ms`.
fn writes(key: &Bytes, obj: Object, at_ms: Option<u64>) -> Vec<KvOp> {
    let key = key.clone();
    let create = match obj {
        Object::String(value) => {
            let expiry = at_ms.map_or(Expiry::Persist {}, |at_ms| Expiry::At { at_ms });
            return vec![KvOp::StrSet {
                key,
                value,
                expiry,
                cond: Cond::Always {},
                get_old: false,
            }];
        }
        Object::List(elements) => KvOp::List {
            op: ListOp::Push {
                key: key.clone(),
                elements,
                left: false,
                only_existing: false,
            },
        },
        Object::Set(members) => KvOp::Set {
            op: SetOp::Add {
                key: key.clone(),
                members,
            },
        },
        Object::ZSet(items) => {
            let (members, scores) = items.into_iter().unzip();
            KvOp::ZSet {
                op: ZSetOp::Add {
                    key: key.clone(),
                    flags: 0,
                    scores,
                    members,
                },
            }
        }
        Object::Hash(pairs) => KvOp::HSet {
            key: key.clone(),
            pairs,
            only_new: false,
        },
    };
    let mut ops = vec![create];
    if let Some(at_ms) = at_ms {
        ops.push(KvOp::KeyExpire {
            key,
            at_ms,
            cond: ExpireCond::Always {},
        });
    }
    ops
}
