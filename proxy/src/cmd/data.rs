//! The data commands: those that are operations on keys alone, with no session and no proxy
//! state ([`data_command`]) — what the connection runs in its pipeline batch and what a
//! script's `redis.call` can run (`script_table`).
//!
//! Above the families it dispatches to (strings, keys, hashes, lists, sets, sorted sets,
//! GEO, bitmaps, HyperLogLog, LCS, SORT, DUMP/RESTORE); below `script_table` and `mod.rs`.
// perf-critical: every GET and SET is translated here.

use bytes::Bytes;

use super::action::Action;
use super::{bitmaps, dump, geo, hashes, hll, keys, lcs, lists, sets, sort, strings, zsets};

/// The commands that are operations on keys alone — no session, no proxy state; what a
/// script's `redis.call` can run ([`super::script_table`]). `None`: not one of them.
pub fn data_command(
    name: &'static str,
    args: &[Bytes],
    now_ms: u64,
    max_bulk: u64,
) -> Option<Action> {
    Some(match name {
        "get" | "set" | "setnx" | "setex" | "psetex" | "getset" | "getdel" | "getex" | "mget"
        | "mset" | "incr" | "decr" | "incrby" | "decrby" | "incrbyfloat" | "append" | "strlen"
        | "getrange" | "setrange" => strings::dispatch(name, args, now_ms),
        // SUBSTR is GETRANGE's old name (Redis 1.0), kept by Redis 7.
        "substr" => strings::dispatch("getrange", args, now_ms),
        "del" | "unlink" | "exists" | "touch" | "expire" | "pexpire" | "expireat" | "pexpireat"
        | "ttl" | "pttl" | "expiretime" | "pexpiretime" | "persist" | "type" | "scan" | "keys"
        | "dbsize" | "randomkey" | "rename" | "renamenx" | "copy" => {
            keys::dispatch(name, args, now_ms)
        }
        "hset" | "hsetnx" | "hget" | "hmget" | "hmset" | "hdel" | "hexists" | "hlen"
        | "hgetall" | "hkeys" | "hvals" | "hincrby" | "hincrbyfloat" | "hstrlen" | "hscan"
        | "hrandfield" => hashes::dispatch(name, args),
        name if bitmaps::SPECS.iter().any(|s| s.name == name) => {
            bitmaps::dispatch(name, args, max_bulk)
        }
        "lcs" => lcs::dispatch(args, max_bulk),
        "sort" | "sort_ro" => sort::dispatch(name, args),
        "pfadd" | "pfcount" | "pfmerge" => hll::dispatch(name, args),
        "dump" | "restore" => dump::dispatch(name, args, now_ms),
        name if lists::SPECS.iter().any(|s| s.name == name) => lists::dispatch(name, args),
        name if sets::SPECS.iter().any(|s| s.name == name) => sets::dispatch(name, args),
        name if zsets::SPECS.iter().any(|s| s.name == name) => zsets::dispatch(name, args),
        name if geo::SPECS.iter().any(|s| s.name == name) => geo::dispatch(name, args),
        _ => return None,
    })
}
