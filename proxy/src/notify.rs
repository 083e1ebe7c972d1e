//! Keyspace notifications (`notify-keyspace-events`, Redis's `notify.c`): after a write
//! command succeeds, the proxy that ran it publishes `__keyspace@<db>__:<key> <event>` and
//! `__keyevent@<db>__:<event> <key>` on its pub/sub hub, for the classes the setting
//! enables (`docs/guides/proxy.md`, "Keyspace notifications").
//!
//! What is published: the events of Redis 7's generic, string, list, set, hash and sorted-set
//! commands (classes `g $ l s h z`), named as Redis names them, decided from the command and
//! its reply, and `x` (`expired`: the keys the DS nodes' sweeps delete, polled from each
//! range's expiry log by [`crate::expired`]). What is not: `e` (evicted) — tierkv never
//! evicts a key (cold values move to disk); `n` (new key) and `m` (key
//! miss), which need the DS to say whether a key existed; `t` and `d` (no streams or
//! modules). Where the reply does not say what happened, nothing is published rather than a
//! guess: a multi-key `DEL`/`UNLINK` that removed only some of its keys, a `ZADD` that only
//! updated scores without `CH`, the `del` Redis adds when a pop or removal empties a
//! collection, and the `del` of a `*STORE` whose empty result deleted an existing key. Like
//! `PUBLISH`, an event reaches the subscribers of every proxy of the cluster: this proxy's at
//! once, the others' through the mesh (queued in order, not awaited).
//!
//! Cost when the setting is empty (the default): one atomic load per command.
// perf-critical: `capture` runs for every command.

use bytes::Bytes;
use net::keyspace::Db;

use crate::pubsub::Hub;
use crate::resp::Reply;

/// `K`: publish on `__keyspace@<db>__:<key>`.
pub const KEYSPACE: u32 = 1 << 0;
/// `E`: publish on `__keyevent@<db>__:<event>`.
pub const KEYEVENT: u32 = 1 << 1;
/// `g`: generic commands (DEL, EXPIRE, RENAME, ...).
pub const GENERIC: u32 = 1 << 2;
/// `$`: string commands.
pub const STRING: u32 = 1 << 3;
/// `l`: list commands.
pub const LIST: u32 = 1 << 4;
/// `s`: set commands.
pub const SET: u32 = 1 << 5;
/// `h`: hash commands.
pub const HASH: u32 = 1 << 6;
/// `z`: sorted-set commands.
pub const ZSET: u32 = 1 << 7;
/// `x`: expired keys.
pub const EXPIRED: u32 = 1 << 8;
/// `e`: evicted keys.
pub const EVICTED: u32 = 1 << 9;
/// `t`: stream commands.
pub const STREAM: u32 = 1 << 10;
/// `m`: key misses (not part of `A`).
pub const KEY_MISS: u32 = 1 << 11;
/// `d`: module events.
pub const MODULE: u32 = 1 << 13;
/// `n`: new keys (not part of `A`).
pub const NEW: u32 = 1 << 14;
/// `A`: every class but `m` and `n`.
pub const ALL: u32 =
    GENERIC | STRING | LIST | SET | HASH | ZSET | EXPIRED | EVICTED | STREAM | MODULE;

/// Parses a `notify-keyspace-events` value (`keyspaceEventsStringToFlags`); `None` for a
/// character that names no class.
pub fn parse(classes: &[u8]) -> Option<u32> {
    classes.iter().try_fold(0, |flags, c| {
        Some(
            flags
                | match c {
                    b'A' => ALL,
                    b'g' => GENERIC,
                    b'$' => STRING,
                    b'l' => LIST,
                    b's' => SET,
                    b'h' => HASH,
                    b'z' => ZSET,
                    b'x' => EXPIRED,
                    b'e' => EVICTED,
                    b'K' => KEYSPACE,
                    b'E' => KEYEVENT,
                    b't' => STREAM,
                    b'm' => KEY_MISS,
                    b'd' => MODULE,
                    b'n' => NEW,
                    _ => return None,
                },
        )
    })
}

/// The value `CONFIG GET notify-keyspace-events` shows (`keyspaceEventsFlagsToString`).
pub fn format(flags: u32) -> String {
    let mut s = String::new();
    if flags & ALL == ALL {
        s.push('A');
    } else {
        for (bit, c) in [
            (GENERIC, 'g'),
            (STRING, '$'),
            (LIST, 'l'),
            (SET, 's'),
            (HASH, 'h'),
            (ZSET, 'z'),
            (EXPIRED, 'x'),
            (EVICTED, 'e'),
            (STREAM, 't'),
            (MODULE, 'd'),
            (NEW, 'n'),
        ] {
            if flags & bit != 0 {
                s.push(c);
            }
        }
    }
    for (bit, c) in [(KEYSPACE, 'K'), (KEYEVENT, 'E'), (KEY_MISS, 'm')] {
        if flags & bit != 0 {
            s.push(c);
        }
    }
    s
}

/// A command that may publish events, kept until its reply is known.
#[derive(Debug, Clone)]
pub struct Notice {
    flags: u32,
    db: Db,
    args: Vec<Bytes>,
}

/// The notice of a command about to run in database `db`, when `flags` publish anything
/// (one branch when they do not).
pub fn capture(flags: u32, db: Db, args: &[Bytes]) -> Option<Box<Notice>> {
    if flags & (KEYSPACE | KEYEVENT) == 0 || flags & !(KEYSPACE | KEYEVENT) == 0 {
        return None;
    }
    Some(Box::new(Notice {
        flags,
        db,
        args: args.to_vec(),
    }))
}

/// One event: its class, name, key and database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The class bit (`GENERIC`, `STRING`, ...).
    pub class: u32,
    /// Redis's event name (`set`, `lpush`, `rename_from`, ...).
    pub name: &'static str,
    /// The key.
    pub key: Bytes,
    /// Its database.
    pub db: Db,
}

/// Publishes the events of `notice`'s command, which answered `reply`: on this proxy's
/// `hub`, and through `fanout` to the other proxies of the cluster.
pub fn emit(hub: &Hub, fanout: impl Fn(&Bytes, &Bytes), notice: &Notice, reply: &Reply) {
    let publish = |channel: &Bytes, payload: &Bytes| {
        hub.publish(channel, payload, false);
        fanout(channel, payload);
    };
    for e in events(notice, reply) {
        publish_event(hub, publish, notice.flags, &e);
    }
}

/// Publishes event `e` if `flags` enable its class: on `__keyspace@<db>__:<key>` and/or
/// `__keyevent@<db>__:<name>` through `publish`.
pub fn publish_event(hub: &Hub, publish: impl Fn(&Bytes, &Bytes), flags: u32, e: &Event) {
    if flags & e.class == 0 {
        return;
    }
    let db = e.db.get();
    hub.stats
        .keyspace_events
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    if flags & KEYSPACE != 0 {
        let mut ch = format!("__keyspace@{db}__:").into_bytes();
        ch.extend_from_slice(&e.key);
        publish(&Bytes::from(ch), &Bytes::from_static(e.name.as_bytes()));
    }
    if flags & KEYEVENT != 0 {
        let ch = Bytes::from(format!("__keyevent@{db}__:{}", e.name));
        publish(&ch, &e.key);
    }
}

/// The events a command that answered `reply` caused, in Redis's order.
pub fn events(notice: &Notice, reply: &Reply) -> Vec<Event> {
    let mut out = Events {
        db: notice.db,
        out: Vec::new(),
    };
    if !matches!(reply, Reply::Error(_) | Reply::Simple("QUEUED")) {
        let args = &notice.args;
        let name = String::from_utf8_lossy(&args[0]).to_ascii_lowercase();
        out.command(&name, args, reply);
    }
    out.out
}

struct Events {
    db: Db,
    out: Vec<Event>,
}

fn int(r: &Reply) -> i64 {
    match r {
        Reply::Int(n) => *n,
        _ => 0,
    }
}

/// Whether a reply carries something (not nil, not an empty array, not zero).
fn some(r: &Reply) -> bool {
    match r {
        Reply::Nil | Reply::NilArray => false,
        Reply::Array(a) | Reply::Set(a) => !a.is_empty(),
        Reply::Map(m) => !m.is_empty(),
        Reply::Int(n) => *n != 0,
        _ => true,
    }
}

fn has(args: &[Bytes], word: &str) -> bool {
    args.iter().any(|a| a.eq_ignore_ascii_case(word.as_bytes()))
}

/// The key a blocking or multi-key pop answered from (the first element of its reply).
fn reply_key(r: &Reply) -> Option<Bytes> {
    match r {
        Reply::Array(a) => match a.first() {
            Some(Reply::Bulk(k)) => Some(k.clone()),
            _ => None,
        },
        _ => None,
    }
}

impl Events {
    fn push(&mut self, class: u32, name: &'static str, key: &Bytes) {
        self.out.push(Event {
            class,
            name,
            key: key.clone(),
            db: self.db,
        });
    }

    fn push_in(&mut self, db: Db, class: u32, name: &'static str, key: &Bytes) {
        self.out.push(Event {
            class,
            name,
            key: key.clone(),
            db,
        });
    }

    fn command(&mut self, name: &str, args: &[Bytes], reply: &Reply) {
        let Some(key) = args.get(1) else { return };
        if self.generic(name, args, key, reply)
            || self.string(name, args, key, reply)
            || self.list(name, args, key, reply)
            || self.set(name, args, key, reply)
            || self.hash(name, args, key, reply)
        {
            return;
        }
        self.zset(name, args, key, reply);
    }

    /// A `*STORE` destination: its event when the result was not empty (an empty result
    /// deletes the destination, and Redis publishes `del` only if it existed, which the
    /// reply does not say: nothing is published).
    fn store(&mut self, class: u32, name: &'static str, dst: &Bytes, reply: &Reply) {
        if int(reply) > 0 {
            self.push(class, name, dst);
        }
    }

    fn generic(&mut self, name: &str, args: &[Bytes], key: &Bytes, reply: &Reply) -> bool {
        match name {
            "del" | "unlink" => {
                if usize::try_from(int(reply)).ok() == Some(args.len() - 1) {
                    for k in &args[1..] {
                        self.push(GENERIC, "del", k);
                    }
                }
            }
            "expire" | "pexpire" | "expireat" | "pexpireat" if int(reply) == 1 => {
                let past = expire_in_past(name, args.get(2));
                self.push(GENERIC, if past { "del" } else { "expire" }, key);
            }
            "persist" if int(reply) == 1 => self.push(GENERIC, "persist", key),
            "rename" | "renamenx" if some(reply) => {
                if let Some(dst) = args.get(2) {
                    self.push(GENERIC, "rename_from", key);
                    self.push(GENERIC, "rename_to", dst);
                }
            }
            "copy" if int(reply) == 1 => {
                let db = db_option(args).unwrap_or(self.db);
                if let Some(dst) = args.get(2) {
                    self.push_in(db, GENERIC, "copy_to", dst);
                }
            }
            "move" if int(reply) == 1 => {
                let to = args.get(2).and_then(|d| parse_db(d));
                self.push(GENERIC, "move_from", key);
                if let Some(to) = to {
                    self.push_in(to, GENERIC, "move_to", key);
                }
            }
            "restore" => self.push(GENERIC, "restore", key),
            "sort" => {
                let store = args
                    .iter()
                    .position(|a| a.eq_ignore_ascii_case(b"store"))
                    .and_then(|i| args.get(i + 1));
                if let Some(dst) = store {
                    self.store(LIST, "sortstore", dst, reply);
                }
            }
            "expire" | "pexpire" | "expireat" | "pexpireat" | "persist" | "rename" | "renamenx"
            | "copy" | "move" => {}
            _ => return false,
        }
        true
    }

    fn string(&mut self, name: &str, args: &[Bytes], key: &Bytes, reply: &Reply) -> bool {
        match name {
            "set" => {
                let get = has(&args[3..], "get");
                let done = if get {
                    !(has(&args[3..], "nx") && some(reply) || has(&args[3..], "xx") && !some(reply))
                } else {
                    some(reply)
                };
                if done {
                    self.push(STRING, "set", key);
                    if ["ex", "px", "exat", "pxat"]
                        .iter()
                        .any(|w| has(&args[3..], w))
                    {
                        self.push(GENERIC, "expire", key);
                    }
                }
            }
            "setnx" if int(reply) == 1 => self.push(STRING, "set", key),
            "setex" | "psetex" => {
                self.push(STRING, "set", key);
                self.push(GENERIC, "expire", key);
            }
            "getset" => self.push(STRING, "set", key),
            "mset" => args[1..]
                .iter()
                .step_by(2)
                .for_each(|k| self.push(STRING, "set", k)),
            "msetnx" if int(reply) == 1 => {
                args[1..]
                    .iter()
                    .step_by(2)
                    .for_each(|k| self.push(STRING, "set", k));
            }
            "getdel" if some(reply) => self.push(GENERIC, "del", key),
            "getex" if some(reply) => {
                if has(&args[2..], "persist") {
                    self.push(GENERIC, "persist", key);
                } else if ["ex", "px", "exat", "pxat"]
                    .iter()
                    .any(|w| has(&args[2..], w))
                {
                    self.push(GENERIC, "expire", key);
                }
            }
            "append" => self.push(STRING, "append", key),
            "incr" | "decr" | "incrby" | "decrby" => self.push(STRING, "incrby", key),
            "incrbyfloat" => self.push(STRING, "incrbyfloat", key),
            "setrange" if args.get(3).is_some_and(|v| !v.is_empty()) => {
                self.push(STRING, "setrange", key);
            }
            "setbit" => self.push(STRING, "setbit", key),
            "bitfield" if has(&args[2..], "set") || has(&args[2..], "incrby") => {
                self.push(STRING, "setbit", key);
            }
            "bitop" => {
                if let Some(dst) = args.get(2) {
                    self.store(STRING, "set", dst, reply);
                }
            }
            "pfadd" if int(reply) == 1 => self.push(STRING, "pfadd", key),
            "pfmerge" => self.push(STRING, "pfadd", key),
            "setnx" | "msetnx" | "getdel" | "getex" | "setrange" | "bitfield" | "pfadd" => {}
            _ => return false,
        }
        true
    }

    fn list(&mut self, name: &str, args: &[Bytes], key: &Bytes, reply: &Reply) -> bool {
        let side = |a: Option<&Bytes>, left: &'static str, right: &'static str| {
            if a.is_some_and(|w| w.eq_ignore_ascii_case(b"left")) {
                left
            } else {
                right
            }
        };
        match name {
            "lpush" => self.push(LIST, "lpush", key),
            "rpush" => self.push(LIST, "rpush", key),
            "lpushx" if some(reply) => self.push(LIST, "lpush", key),
            "rpushx" if some(reply) => self.push(LIST, "rpush", key),
            "lpop" if some(reply) => self.push(LIST, "lpop", key),
            "rpop" if some(reply) => self.push(LIST, "rpop", key),
            "blpop" | "brpop" if some(reply) => {
                if let Some(k) = reply_key(reply) {
                    self.push(LIST, if name == "blpop" { "lpop" } else { "rpop" }, &k);
                }
            }
            "lmpop" | "blmpop" if some(reply) => {
                let at = if name == "lmpop" { 1 } else { 2 };
                let n = args
                    .get(at)
                    .and_then(|n| std::str::from_utf8(n).ok()?.parse().ok());
                let dir = n.and_then(|n: usize| args.get(at + 1 + n));
                if let Some(k) = reply_key(reply) {
                    self.push(LIST, side(dir, "lpop", "rpop"), &k);
                }
            }
            "linsert" if int(reply) > 0 => self.push(LIST, "linsert", key),
            "lset" => self.push(LIST, "lset", key),
            "lrem" if int(reply) > 0 => self.push(LIST, "lrem", key),
            "ltrim" => self.push(LIST, "ltrim", key),
            "rpoplpush" | "brpoplpush" | "lmove" | "blmove" if some(reply) => {
                let Some(dst) = args.get(2) else { return true };
                let (pop, push) = if name.ends_with("move") {
                    (
                        side(args.get(3), "lpop", "rpop"),
                        side(args.get(4), "lpush", "rpush"),
                    )
                } else {
                    ("rpop", "lpush")
                };
                // Redis publishes the push onto the destination first.
                self.push(LIST, push, dst);
                self.push(LIST, pop, key);
            }
            "lpushx" | "rpushx" | "lpop" | "rpop" | "blpop" | "brpop" | "lmpop" | "blmpop"
            | "linsert" | "lrem" | "rpoplpush" | "brpoplpush" | "lmove" | "blmove" => {}
            _ => return false,
        }
        true
    }

    fn set(&mut self, name: &str, args: &[Bytes], key: &Bytes, reply: &Reply) -> bool {
        match name {
            "sadd" if some(reply) => self.push(SET, "sadd", key),
            "srem" if some(reply) => self.push(SET, "srem", key),
            "spop" if some(reply) => self.push(SET, "spop", key),
            "smove" if int(reply) == 1 => {
                if let Some(dst) = args.get(2) {
                    self.push(SET, "srem", key);
                    self.push(SET, "sadd", dst);
                }
            }
            "sinterstore" => self.store(SET, "sinterstore", key, reply),
            "sunionstore" => self.store(SET, "sunionstore", key, reply),
            "sdiffstore" => self.store(SET, "sdiffstore", key, reply),
            "sadd" | "srem" | "spop" | "smove" => {}
            _ => return false,
        }
        true
    }

    fn hash(&mut self, name: &str, _args: &[Bytes], key: &Bytes, reply: &Reply) -> bool {
        match name {
            "hset" | "hmset" => self.push(HASH, "hset", key),
            "hsetnx" if int(reply) == 1 => self.push(HASH, "hset", key),
            "hdel" if some(reply) => self.push(HASH, "hdel", key),
            "hincrby" => self.push(HASH, "hincrby", key),
            "hincrbyfloat" => self.push(HASH, "hincrbyfloat", key),
            "hsetnx" | "hdel" => {}
            _ => return false,
        }
        true
    }

    fn zset(&mut self, name: &str, args: &[Bytes], key: &Bytes, reply: &Reply) {
        match name {
            "zadd" if some(reply) => {
                let incr = has(&args[2..], "incr");
                self.push(ZSET, if incr { "zincr" } else { "zadd" }, key);
            }
            "zincrby" => self.push(ZSET, "zincr", key),
            "zrem" if some(reply) => self.push(ZSET, "zrem", key),
            "zremrangebyscore" if some(reply) => self.push(ZSET, "zremrangebyscore", key),
            "zremrangebyrank" if some(reply) => self.push(ZSET, "zremrangebyrank", key),
            "zremrangebylex" if some(reply) => self.push(ZSET, "zremrangebylex", key),
            "zpopmin" if some(reply) => self.push(ZSET, "zpopmin", key),
            "zpopmax" if some(reply) => self.push(ZSET, "zpopmax", key),
            "bzpopmin" | "bzpopmax" if some(reply) => {
                if let Some(k) = reply_key(reply) {
                    let ev = if name == "bzpopmin" {
                        "zpopmin"
                    } else {
                        "zpopmax"
                    };
                    self.push(ZSET, ev, &k);
                }
            }
            "zmpop" | "bzmpop" if some(reply) => {
                if let Some(k) = reply_key(reply) {
                    let ev = if has(args, "min") {
                        "zpopmin"
                    } else {
                        "zpopmax"
                    };
                    self.push(ZSET, ev, &k);
                }
            }
            "zunionstore" => self.store(ZSET, "zunionstore", key, reply),
            "zinterstore" => self.store(ZSET, "zinterstore", key, reply),
            "zdiffstore" => self.store(ZSET, "zdiffstore", key, reply),
            "zrangestore" => self.store(ZSET, "zrangestore", key, reply),
            // GEOADD is a ZADD in Redis; the searches' STORE forms name their own event.
            "geoadd" if some(reply) => self.push(ZSET, "zadd", key),
            "geosearchstore" => self.store(ZSET, "geosearchstore", key, reply),
            "georadius" | "georadiusbymember" => {
                let at = args.iter().rposition(|a| {
                    a.eq_ignore_ascii_case(b"store") || a.eq_ignore_ascii_case(b"storedist")
                });
                if let Some(dst) = at.and_then(|i| args.get(i + 1)) {
                    self.store(ZSET, "georadiusstore", dst, reply);
                }
            }
            _ => {}
        }
    }
}

/// Whether an EXPIRE-family time argument lies in the past (Redis then deletes the key and
/// publishes `del`, not `expire`).
fn expire_in_past(name: &str, arg: Option<&Bytes>) -> bool {
    let Some(n) = arg.and_then(|a| net::redis_num::parse_i64(a)) else {
        return false;
    };
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    match name {
        "expire" | "pexpire" => n <= 0,
        "expireat" => n.saturating_mul(1000) <= now_ms,
        _ => n <= now_ms,
    }
}

fn parse_db(a: &[u8]) -> Option<Db> {
    let n = net::redis_num::parse_i64(a)?;
    Db::new(u8::try_from(n).ok()?)
}

/// `COPY ... DB n`: the destination database.
fn db_option(args: &[Bytes]) -> Option<Db> {
    let i = args.iter().position(|a| a.eq_ignore_ascii_case(b"db"))?;
    parse_db(args.get(i + 1)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notice(flags: &str, args: &[&str]) -> Notice {
        *capture(
            parse(flags.as_bytes()).unwrap(),
            Db::ZERO,
            &args
                .iter()
                .map(|a| Bytes::copy_from_slice(a.as_bytes()))
                .collect::<Vec<_>>(),
        )
        .unwrap()
    }

    fn names(flags: &str, args: &[&str], reply: Reply) -> Vec<(&'static str, String)> {
        events(&notice(flags, args), &reply)
            .into_iter()
            .map(|e| (e.name, String::from_utf8_lossy(&e.key).into_owned()))
            .collect()
    }

    #[test]
    fn flags_round_trip_as_redis_prints_them() {
        for (set, shown) in [
            ("gKE", "gKE"),
            ("$lshzxeKE", "$lshzxeKE"),
            ("KA", "AK"),
            ("EA", "AE"),
            ("", ""),
            ("Am", "Am"),
            ("En", "nE"),
        ] {
            assert_eq!(format(parse(set.as_bytes()).unwrap()), shown, "{set}");
        }
        assert_eq!(parse(b"KEq"), None);
    }

    #[test]
    fn nothing_is_captured_without_a_channel_kind_or_a_class() {
        assert!(capture(0, Db::ZERO, &[Bytes::from_static(b"set")]).is_none());
        assert!(
            capture(
                parse(b"KE").unwrap(),
                Db::ZERO,
                &[Bytes::from_static(b"set")]
            )
            .is_none()
        );
        assert!(
            capture(
                parse(b"A").unwrap(),
                Db::ZERO,
                &[Bytes::from_static(b"set")]
            )
            .is_none()
        );
        assert!(
            capture(
                parse(b"Kg").unwrap(),
                Db::ZERO,
                &[Bytes::from_static(b"set")]
            )
            .is_some()
        );
    }

    #[test]
    fn a_set_with_an_expiry_publishes_set_then_expire() {
        assert_eq!(
            names("KA", &["SET", "foo", "bar", "EX", "10"], Reply::OK),
            [("set", "foo".into()), ("expire", "foo".into())]
        );
        assert!(names("KA", &["SET", "foo", "bar", "NX"], Reply::Nil).is_empty());
        assert!(names("KA", &["SET", "foo", "bar"], Reply::err("ERR x")).is_empty());
    }

    #[test]
    fn moves_and_renames_publish_both_sides() {
        assert_eq!(
            names(
                "KA",
                &["lmove", "a", "b", "LEFT", "RIGHT"],
                Reply::bulk(b"x")
            ),
            [("rpush", "b".into()), ("lpop", "a".into())]
        );
        assert_eq!(
            names("KA", &["rpoplpush", "a", "b"], Reply::bulk(b"x")),
            [("lpush", "b".into()), ("rpop", "a".into())]
        );
        assert_eq!(
            names("KA", &["rename", "a", "b"], Reply::OK),
            [("rename_from", "a".into()), ("rename_to", "b".into())]
        );
    }

    #[test]
    fn removals_that_removed_nothing_publish_nothing() {
        assert!(names("KA", &["srem", "s", "x"], Reply::Int(0)).is_empty());
        assert!(names("KA", &["del", "a", "b"], Reply::Int(1)).is_empty());
        assert_eq!(
            names("KA", &["del", "a", "b"], Reply::Int(2)),
            [("del", "a".into()), ("del", "b".into())]
        );
        assert_eq!(
            names("KA", &["expire", "a", "-1"], Reply::Int(1)),
            [("del", "a".into())]
        );
    }

    #[test]
    fn stores_publish_their_event_unless_the_result_was_empty() {
        assert_eq!(
            names("KA", &["sinterstore", "d", "a", "b"], Reply::Int(2)),
            [("sinterstore", "d".into())]
        );
        assert!(names("KA", &["zunionstore", "d", "1", "a"], Reply::Int(0)).is_empty());
        let radius = ["georadius", "k", "1", "2", "3", "km", "STOREDIST", "d"];
        assert_eq!(
            names("KA", &radius, Reply::Int(1)),
            [("georadiusstore", "d".into())]
        );
        assert_eq!(
            names("KA", &["geoadd", "k", "1", "2", "m"], Reply::Int(1)),
            [("zadd", "k".into())]
        );
    }

    #[test]
    fn queued_commands_publish_at_exec_not_when_queued() {
        assert!(names("KA", &["set", "a", "b"], Reply::Simple("QUEUED")).is_empty());
    }
}
