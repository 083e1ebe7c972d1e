//! The command table: every command's [`Spec`] (arity, flags, key positions — also what
//! `COMMAND` answers), and [`lookup`] by name.
//!
//! The core commands (strings, keys, hashes, server, transactions), the scripting and the
//! function commands have their table here; the collection types keep theirs next to their
//! code (`lists::SPECS`...). EVAL's and FCALL's are here, not in `scripting` and `functions`,
//! because those stand above this table: a script may call any command.
//!
//! Above the families whose tables it gathers; below `data`, `script_table`, `scripting`,
//! `functions`, `server` (COMMAND) and the dispatcher in `mod.rs`.

use bytes::Bytes;

use super::spec::{C, CL, EVAL, EVAL_RO, F, NONE, R, RS, Spec, W, WD, WF, WS, spec};
use super::{bitmaps, dump, geo, hll, lcs, lists, pubsub, sets, sort, zsets};
use crate::resp::Reply;

// Flag sets of the connection and transaction commands.
const TXF: &[&str] = &["noscript", "loading", "stale", "fast", "allow_busy"];
const TXS: &[&str] = &["noscript", "loading", "stale", "skip_slowlog"];
const SHUTDOWN: &[&str] = &[
    "admin",
    "noscript",
    "loading",
    "stale",
    "no_multi",
    "allow_busy",
];
const SAVE: &[&str] = &["admin", "noscript", "no_async_loading", "no_multi"];
const BGSAVE: &[&str] = &["admin", "noscript", "no_async_loading"];
const ROLE: &[&str] = &["noscript", "loading", "stale", "fast"];
const WAIT: &[&str] = &["noscript"];
const DEBUG: &[&str] = &["admin", "noscript", "loading", "stale"];
const CN: &[&str] = &[
    "noscript",
    "loading",
    "stale",
    "fast",
    "no_auth",
    "allow_busy",
];

/// Every command table: the core one here and one per collection type, each sorted by name.
pub static TABLES: &[&[Spec]] = &[
    TABLE,
    lists::SPECS,
    sets::SPECS,
    zsets::SPECS,
    geo::SPECS,
    bitmaps::SPECS,
    lcs::SPECS,
    dump::SPECS,
    hll::SPECS,
    sort::SPECS,
    pubsub::SPECS,
    SCRIPTING,
    FUNCTIONS,
];

/// Every supported command, in table order.
pub fn all_specs() -> impl Iterator<Item = &'static Spec> {
    TABLES.iter().flat_map(|t| t.iter())
}

/// The scripting commands (`cmd::scripting`), sorted by name.
pub static SCRIPTING: &[Spec] = &[
    spec!("eval", -3, EVAL, 0, 0, 0),
    spec!("eval_ro", -3, EVAL_RO, 0, 0, 0),
    spec!("evalsha", -3, EVAL, 0, 0, 0),
    spec!("evalsha_ro", -3, EVAL_RO, 0, 0, 0),
    spec!("script", -2, &[], 0, 0, 0),
];

/// The function calls (`cmd::functions`; `FUNCTION` itself is in [`TABLE`]), sorted by name.
pub static FUNCTIONS: &[Spec] = &[
    spec!("fcall", -3, EVAL, 0, 0, 0),
    spec!("fcall_ro", -3, EVAL_RO, 0, 0, 0),
];

/// The core commands (strings, keys, hashes, server, transactions), sorted by name.
pub static TABLE: &[Spec] = &[
    spec!("acl", -2, NONE, 0, 0, 0),
    spec!("append", 3, W, 1, 1, 1),
    // Redis Cluster's redirection handshake: a standalone server's answer.
    spec!("asking", 1, F, 0, 0, 0),
    spec!("auth", -2, CN, 0, 0, 0),
    spec!("bgsave", -1, BGSAVE, 0, 0, 0),
    spec!("client", -2, NONE, 0, 0, 0),
    // Redis Cluster's commands: the proxy presents the cluster as one standalone server.
    spec!("cluster", -2, NONE, 0, 0, 0),
    spec!("command", -1, CL, 0, 0, 0),
    spec!("config", -2, NONE, 0, 0, 0),
    spec!("copy", -3, WD, 1, 2, 1),
    spec!("dbsize", 1, R, 0, 0, 0),
    spec!("debug", -2, DEBUG, 0, 0, 0),
    spec!("decr", 2, W, 1, 1, 1),
    spec!("decrby", 3, W, 1, 1, 1),
    spec!("del", -2, WS, 1, -1, 1),
    spec!("discard", 1, TXF, 0, 0, 0),
    spec!("echo", 2, C, 0, 0, 0),
    spec!("exec", 1, TXS, 0, 0, 0),
    spec!("exists", -2, R, 1, -1, 1),
    spec!("expire", -3, WF, 1, 1, 1),
    spec!("expireat", -3, WF, 1, 1, 1),
    spec!("expiretime", 2, R, 1, 1, 1),
    spec!("flushall", -1, WS, 0, 0, 0),
    spec!("flushdb", -1, WS, 0, 0, 0),
    spec!("function", -2, NONE, 0, 0, 0),
    spec!("get", 2, R, 1, 1, 1),
    spec!("getdel", 2, WF, 1, 1, 1),
    spec!("getex", -2, WF, 1, 1, 1),
    spec!("getrange", 4, RS, 1, 1, 1),
    spec!("getset", 3, W, 1, 1, 1),
    spec!("hdel", -3, WF, 1, 1, 1),
    spec!("hello", -1, CN, 0, 0, 0),
    spec!("hexists", 3, R, 1, 1, 1),
    spec!("hget", 3, R, 1, 1, 1),
    spec!("hgetall", 2, RS, 1, 1, 1),
    spec!("hincrby", 4, W, 1, 1, 1),
    spec!("hincrbyfloat", 4, W, 1, 1, 1),
    spec!("hkeys", 2, RS, 1, 1, 1),
    spec!("hlen", 2, R, 1, 1, 1),
    spec!("hmget", -3, R, 1, 1, 1),
    spec!("hmset", -4, W, 1, 1, 1),
    spec!("hrandfield", -2, RS, 1, 1, 1),
    spec!("hscan", -3, RS, 1, 1, 1),
    spec!("hset", -4, W, 1, 1, 1),
    spec!("hsetnx", 4, W, 1, 1, 1),
    spec!("hstrlen", 3, R, 1, 1, 1),
    spec!("hvals", 2, RS, 1, 1, 1),
    spec!("incr", 2, W, 1, 1, 1),
    spec!("incrby", 3, W, 1, 1, 1),
    spec!("incrbyfloat", 3, W, 1, 1, 1),
    spec!("info", -1, CL, 0, 0, 0),
    spec!("keys", 2, RS, 0, 0, 0),
    spec!("lastsave", 1, C, 0, 0, 0),
    // A container command (as `slowlog`).
    spec!("latency", -2, NONE, 0, 0, 0),
    spec!("memory", -2, NONE, 0, 0, 0),
    spec!("mget", -2, R, 1, -1, 1),
    spec!("move", 3, WF, 1, 1, 1),
    spec!("mset", -3, WD, 1, -1, 2),
    spec!("msetnx", -3, WD, 1, -1, 2),
    spec!("multi", 1, TXF, 0, 0, 0),
    spec!("object", -2, NONE, 0, 0, 0),
    spec!("persist", 2, WF, 1, 1, 1),
    spec!("pexpire", -3, WF, 1, 1, 1),
    spec!("pexpireat", -3, WF, 1, 1, 1),
    spec!("pexpiretime", 2, R, 1, 1, 1),
    spec!("ping", -1, F, 0, 0, 0),
    spec!("psetex", 4, WD, 1, 1, 1),
    spec!("pttl", 2, R, 1, 1, 1),
    spec!("quit", -1, CN, 0, 0, 0),
    spec!("randomkey", 1, RS, 0, 0, 0),
    spec!("readonly", 1, C, 0, 0, 0),
    spec!("readwrite", 1, C, 0, 0, 0),
    spec!("rename", 3, WS, 1, 2, 1),
    spec!("renamenx", 3, WF, 1, 2, 1),
    spec!("reset", 1, CN, 0, 0, 0),
    spec!("role", 1, ROLE, 0, 0, 0),
    spec!("save", 1, SAVE, 0, 0, 0),
    spec!("scan", -2, RS, 0, 0, 0),
    spec!("select", 2, C, 0, 0, 0),
    spec!("set", -3, WD, 1, 1, 1),
    spec!("setex", 4, WD, 1, 1, 1),
    spec!("setnx", 3, W, 1, 1, 1),
    spec!("setrange", 4, WD, 1, 1, 1),
    spec!("shutdown", -1, SHUTDOWN, 0, 0, 0),
    // A container command: its flags are its subcommands' (Redis's COMMAND INFO shows none).
    spec!("slowlog", -2, NONE, 0, 0, 0),
    spec!("strlen", 2, R, 1, 1, 1),
    spec!("substr", 4, RS, 1, 1, 1),
    spec!("swapdb", 3, WF, 0, 0, 0),
    spec!("time", 1, C, 0, 0, 0),
    spec!("touch", -2, R, 1, -1, 1),
    spec!("ttl", 2, R, 1, 1, 1),
    spec!("type", 2, R, 1, 1, 1),
    spec!("unlink", -2, WF, 1, -1, 1),
    spec!("unwatch", 1, TXF, 0, 0, 0),
    spec!("wait", 3, WAIT, 0, 0, 0),
    spec!("watch", -2, TXF, 1, -1, 1),
];

/// Whether command `name` (a stat name: `container|sub` for a subcommand) is flagged `fast`
/// (its latency events are `fast-command`).
pub fn is_fast(name: &str) -> bool {
    let command = name.split('|').next().unwrap_or(name);
    lookup(command.as_bytes()).is_some_and(|s| s.flags.contains(&"fast"))
}

/// The table entry of a command name (any case).
pub fn lookup(name: &[u8]) -> Option<&'static Spec> {
    // The longest name is `georadiusbymember_ro` (20).
    if name.len() > 24 {
        return None;
    }
    let mut buf = [0u8; 24];
    let lower = &mut buf[..name.len()];
    lower.copy_from_slice(name);
    lower.make_ascii_lowercase();
    TABLES.iter().find_map(|t| {
        t.binary_search_by(|s| s.name.as_bytes().cmp(lower))
            .ok()
            .map(|i| &t[i])
    })
}

/// `ERR unknown command '…', with args beginning with: '…' `, as Redis 7 words it.
pub fn unknown_command(args: &[Bytes]) -> Reply {
    let mut rest = String::new();
    for a in args.iter().skip(1) {
        if rest.len() >= 128 {
            break;
        }
        let room = 128 - rest.len();
        let s = String::from_utf8_lossy(a);
        let cut: String = s.chars().take(room).collect();
        rest.push_str(&format!("'{cut}' "));
    }
    let name = String::from_utf8_lossy(&args[0]);
    let name: String = name.chars().take(128).collect();
    Reply::err(format_args!(
        "unknown command '{name}', with args beginning with: {rest}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tables_are_sorted_disjoint_and_lookup_ignores_case() {
        for t in TABLES {
            assert!(t.windows(2).all(|w| w[0].name < w[1].name));
        }
        let mut names: Vec<_> = all_specs().map(|s| s.name).collect();
        names.sort_unstable();
        assert!(
            names.windows(2).all(|w| w[0] != w[1]),
            "a command in two tables"
        );
        for s in all_specs() {
            assert_eq!(lookup(s.name.as_bytes()).map(|l| l.name), Some(s.name));
        }
        assert_eq!(lookup(b"GeT").map(|s| s.name), Some("get"));
        assert!(lookup(b"nosuchcommand").is_none());
    }

    #[test]
    fn unknown_command_error_matches_redis() {
        let args = vec![Bytes::from_static(b"foo"), Bytes::from_static(b"a")];
        assert_eq!(
            unknown_command(&args),
            Reply::Error("ERR unknown command 'foo', with args beginning with: 'a' ".into())
        );
    }
}
