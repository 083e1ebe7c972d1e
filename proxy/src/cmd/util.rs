//! Argument parsing and reply helpers shared by the command modules, with Redis 7's error
//! strings.

use bytes::Bytes;
use net::RpcError;
use net::message::kv::OpResult;

use crate::resp::Reply;
use crate::route::ExecError;

/// `ERR syntax error`.
pub fn syntax() -> Reply {
    Reply::err("syntax error")
}

/// `ERR value is not an integer or out of range`.
pub fn not_int() -> Reply {
    Reply::err("value is not an integer or out of range")
}

/// `ERR wrong number of arguments for '<name>' command`.
pub fn arity(name: &str) -> Reply {
    Reply::err(format_args!(
        "wrong number of arguments for '{name}' command"
    ))
}

pub use net::redis_num::parse_i64;

/// An integer argument, or the Redis error reply.
pub fn int(s: &[u8]) -> Result<i64, Reply> {
    parse_i64(s).ok_or_else(not_int)
}

/// A float argument as `string2ld` takes it (`strtold` over the whole string: a sign, `inf`,
/// no leading or trailing space, no NaN), or `ERR value is not a valid float`.
pub fn float(s: &[u8]) -> Result<f64, Reply> {
    let bad = || Reply::err("value is not a valid float");
    let text = std::str::from_utf8(s).map_err(|_| bad())?;
    if text.is_empty()
        || text.starts_with(char::is_whitespace)
        || text.ends_with(char::is_whitespace)
    {
        return Err(bad());
    }
    let v: f64 = text.parse().map_err(|_| bad())?;
    if v.is_nan() {
        return Err(bad());
    }
    Ok(v)
}

/// Case-insensitive comparison of an argument with an ASCII keyword.
pub fn is(arg: &[u8], kw: &str) -> bool {
    arg.eq_ignore_ascii_case(kw.as_bytes())
}

/// The reply for a failed operation.
pub fn exec_error(e: &ExecError) -> Reply {
    match e {
        ExecError::Rpc(e) => rpc_error(e),
        other => Reply::err(other),
    }
}

/// Redis's text for the errors a shard returns.
pub fn rpc_error(e: &RpcError) -> Reply {
    match e {
        RpcError::WrongType {} => {
            Reply::Error("WRONGTYPE Operation against a key holding the wrong kind of value".into())
        }
        RpcError::NotAnInteger {} => not_int(),
        RpcError::NotAFloat {} => Reply::err("value is not a valid float"),
        RpcError::Overflow {} => Reply::err("increment or decrement would overflow"),
        // Redis Cluster's error code, as the range words it.
        RpcError::BadRequest { message } if message.starts_with("CROSSSLOT ") => {
            Reply::Error(message.clone())
        }
        RpcError::BadRequest { message } => Reply::err(message),
        RpcError::Redis { message } => Reply::Error(message.clone()),
        RpcError::ValueTooLarge { .. } => {
            Reply::err("string exceeds maximum allowed size (proto-max-bulk-len)")
        }
        RpcError::KeyTooLarge { len, max } => Reply::err(format_args!(
            "key too large: {len} bytes with its element (tierkv stores a key plus one field or member up to {max} bytes)"
        )),
        RpcError::ServerBusy {} => Reply::Error("BUSY the cluster is busy, retry later".into()),
        RpcError::DiskFull {} => {
            Reply::Error("OOM command not allowed when used disk > 'maxdisksize'.".into())
        }
        other => Reply::err(other),
    }
}

/// The single result of a one-operation command, or its error reply.
pub fn one(mut results: Vec<Result<OpResult, ExecError>>) -> Result<OpResult, Reply> {
    match results.pop() {
        Some(Ok(r)) => Ok(r),
        Some(Err(e)) => Err(exec_error(&e)),
        None => Err(Reply::err("internal error: no result")),
    }
}

/// An unexpected result shape (a shard/proxy version mismatch).
pub fn unexpected(r: &OpResult) -> Reply {
    Reply::err(format_args!("internal error: unexpected result {r:?}"))
}

/// A bulk reply of an optional value.
pub fn opt_bulk(v: Option<Bytes>) -> Reply {
    v.map_or(Reply::Nil, Reply::Bulk)
}

/// Redis's glob matching (`stringmatchlen`): `*`, `?`, `[...]` with `^` and ranges, `\`.
/// Linear-time; see [`crate::glob`] (compile a [`crate::glob::Pattern`] once to match many).
pub fn glob_match(pattern: &[u8], s: &[u8]) -> bool {
    crate::glob::matches(pattern, s)
}

/// Redis's full name of a command: `container|sub` for the commands with subcommands
/// (`client|id`), as its error texts name them.
pub fn full_name(name: &str, args: &[Bytes]) -> String {
    const CONTAINERS: &[&str] = &[
        "acl", "client", "command", "config", "function", "memory", "object", "pubsub",
    ];
    match args.get(1) {
        Some(sub) if CONTAINERS.contains(&name) => {
            format!(
                "{name}|{}",
                String::from_utf8_lossy(sub).to_ascii_lowercase()
            )
        }
        _ => name.to_string(),
    }
}

/// The subcommands of Redis 7.0's container commands as its statistics name them
/// (`config|resetstat`), sorted.
const SUBCOMMANDS: &[&str] = &[
    "acl|cat",
    "acl|deluser",
    "acl|dryrun",
    "acl|genpass",
    "acl|getuser",
    "acl|help",
    "acl|list",
    "acl|load",
    "acl|log",
    "acl|save",
    "acl|setuser",
    "acl|users",
    "acl|whoami",
    "client|caching",
    "client|getname",
    "client|getredir",
    "client|help",
    "client|id",
    "client|info",
    "client|kill",
    "client|list",
    "client|no-evict",
    "client|pause",
    "client|reply",
    "client|setname",
    "client|tracking",
    "client|trackinginfo",
    "client|unblock",
    "client|unpause",
    "cluster|addslots",
    "cluster|addslotsrange",
    "cluster|bumpepoch",
    "cluster|count-failure-reports",
    "cluster|countkeysinslot",
    "cluster|delslots",
    "cluster|delslotsrange",
    "cluster|failover",
    "cluster|flushslots",
    "cluster|forget",
    "cluster|getkeysinslot",
    "cluster|help",
    "cluster|info",
    "cluster|keyslot",
    "cluster|links",
    "cluster|meet",
    "cluster|myid",
    "cluster|nodes",
    "cluster|replicas",
    "cluster|replicate",
    "cluster|reset",
    "cluster|saveconfig",
    "cluster|set-config-epoch",
    "cluster|setslot",
    "cluster|shards",
    "cluster|slaves",
    "cluster|slots",
    "command|count",
    "command|docs",
    "command|getkeys",
    "command|getkeysandflags",
    "command|help",
    "command|info",
    "command|list",
    "config|get",
    "config|help",
    "config|resetstat",
    "config|rewrite",
    "config|set",
    "function|delete",
    "function|dump",
    "function|flush",
    "function|help",
    "function|kill",
    "function|list",
    "function|load",
    "function|restore",
    "function|stats",
    "latency|doctor",
    "latency|graph",
    "latency|help",
    "latency|histogram",
    "latency|history",
    "latency|latest",
    "latency|reset",
    "memory|doctor",
    "memory|help",
    "memory|malloc-stats",
    "memory|purge",
    "memory|stats",
    "memory|usage",
    "object|encoding",
    "object|freq",
    "object|help",
    "object|idletime",
    "object|refcount",
    "pubsub|channels",
    "pubsub|help",
    "pubsub|numpat",
    "pubsub|numsub",
    "pubsub|shardchannels",
    "pubsub|shardnumsub",
    "script|debug",
    "script|exists",
    "script|flush",
    "script|help",
    "script|kill",
    "script|load",
    "slowlog|get",
    "slowlog|help",
    "slowlog|len",
    "slowlog|reset",
];

/// The name a command's figures are kept under (`INFO commandstats`, `LATENCY HISTOGRAM`,
/// `CLIENT LIST`'s `cmd=`): `container|sub` for a known subcommand of a container command,
/// else the command's own name. No allocation: the names are static.
pub fn stat_name(name: &'static str, args: &[Bytes]) -> &'static str {
    const CONTAINERS: &[&str] = &[
        "client", "cluster", "command", "config", "function", "latency", "memory", "object",
        "pubsub", "script", "slowlog",
    ];
    if !CONTAINERS.contains(&name) {
        return name;
    }
    let Some(sub) = args.get(1).filter(|s| s.len() <= 32) else {
        return name;
    };
    let mut buf = [0u8; 64];
    let full = name.len() + 1 + sub.len();
    if full > buf.len() {
        return name;
    }
    buf[..name.len()].copy_from_slice(name.as_bytes());
    buf[name.len()] = b'|';
    buf[name.len() + 1..full].copy_from_slice(sub);
    buf[name.len() + 1..full].make_ascii_lowercase();
    SUBCOMMANDS
        .binary_search_by(|s| s.as_bytes().cmp(&buf[..full]))
        .map_or(name, |i| SUBCOMMANDS[i])
}

/// A `HELP` reply: one status line per line of text.
pub fn help(lines: &[&'static str]) -> Reply {
    Reply::Array(lines.iter().map(|l| Reply::Simple(l)).collect())
}

/// Redis's error for an unknown subcommand of `cmd`.
pub fn unknown_sub(cmd: &str, sub: &[u8]) -> Reply {
    Reply::err(format_args!(
        "unknown subcommand '{}'. Try {} HELP.",
        String::from_utf8_lossy(sub),
        cmd.to_ascii_uppercase()
    ))
}

/// Redis's `addReplySubcommandSyntaxError`: too many arguments for a subcommand.
pub fn syntax_error(cmd: &str, sub: &[u8]) -> Reply {
    Reply::err(format_args!(
        "unknown subcommand or wrong number of arguments for '{}'. Try {} HELP.",
        String::from_utf8_lossy(sub),
        cmd.to_ascii_uppercase()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subcommands_are_counted_under_their_full_name_and_others_under_the_command() {
        let args = |a: &[&str]| {
            a.iter()
                .map(|s| Bytes::copy_from_slice(s.as_bytes()))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            stat_name("config", &args(&["CONFIG", "ResetStat"])),
            "config|resetstat"
        );
        assert_eq!(stat_name("client", &args(&["client", "id"])), "client|id");
        assert_eq!(stat_name("client", &args(&["client", "nope"])), "client");
        assert_eq!(stat_name("client", &args(&["client"])), "client");
        assert_eq!(stat_name("get", &args(&["get", "id"])), "get");
        assert!(SUBCOMMANDS.windows(2).all(|w| w[0] < w[1]), "sorted");
    }

    #[test]
    fn integers_parse_like_string2ll() {
        assert_eq!(parse_i64(b"-9223372036854775808"), Some(i64::MIN));
        assert_eq!(parse_i64(b"9223372036854775808"), None);
        for bad in [&b"+1"[..], b" 1", b"01", b"", b"-", b"-0", b"1.0"] {
            assert_eq!(parse_i64(bad), None, "{bad:?}");
        }
    }
}
