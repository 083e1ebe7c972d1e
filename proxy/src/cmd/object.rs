//! `OBJECT` and `MEMORY`: what a key holds, as Redis names it. tierkv keeps one layout per type
//! (DESIGN §2), so `OBJECT ENCODING` answers the encoding Redis 7.0 would use for the same
//! contents under the same `*-max-*` thresholds (`crate::encodings`), and `MEMORY USAGE`
//! estimates the engine bytes of the key's entries from a sample of its elements.

use bytes::Bytes;
use net::message::kv::{KeyType, KvOp, ObjectInfo, OpResult};

use super::action::{Action, single};
use super::util::{arity, help, int, is, syntax, unexpected, unknown_sub};
use crate::encodings::{Encodings, Threshold};
use crate::resp::Reply;
use crate::shared::Shared;

const OBJECT_HELP: &[&str] = &[
    "OBJECT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "ENCODING <key>",
    "    Return the kind of internal representation used in order to store the value",
    "    associated with a <key>.",
    "FREQ <key>",
    "    Return the access frequency index of the <key>. The returned integer is",
    "    proportional to the logarithm of the recent access frequency of the key.",
    "REFCOUNT <key>",
    "    Return the number of references of the value associated with the specified",
    "    <key>.",
    "HELP",
    "    Prints this help.",
];

const MEMORY_HELP: &[&str] = &[
    "MEMORY <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "USAGE <key> [SAMPLES <count>]",
    "    Return memory in bytes used by <key> and its value. Nested values are",
    "    sampled up to <count> times (default: 5, 0 means sample all).",
    "HELP",
    "    Prints this help.",
];

/// Elements sampled by default by `MEMORY USAGE`, as Redis.
const DEFAULT_SAMPLES: u32 = 5;

/// `OBJECT subcommand [key]`.
pub fn object(shared: &Shared, args: &[Bytes]) -> Action {
    let sub = &args[1];
    let lower = String::from_utf8_lossy(sub).to_ascii_lowercase();
    match lower.as_str() {
        "help" if args.len() == 2 => Action::Reply(help(OBJECT_HELP)),
        "encoding" | "freq" | "refcount" if args.len() != 3 => {
            Action::Reply(arity(&format!("object|{lower}")))
        }
        "encoding" => {
            let thresholds = Thresholds::read(&shared.settings.encodings);
            let sample = thresholds.sample();
            key_object(&args[2], sample, move |info| {
                encoding(&info, &thresholds).map_or(Reply::Nil, |e| Reply::bulk(e.as_bytes()))
            })
        }
        "refcount" => key_object(&args[2], 1, |info| match info.key_type {
            KeyType::None {} => Reply::Nil,
            _ => Reply::Int(1),
        }),
        "freq" => key_object(&args[2], 1, |info| match info.key_type {
            KeyType::None {} => Reply::Nil,
            _ => Reply::err(
                "An LFU maxmemory policy is not selected, access frequency not tracked. Please \
                 note that when switching between policies at runtime LRU and LFU data will \
                 take some time to adjust.",
            ),
        }),
        _ => Action::Reply(unknown_sub("object", sub)),
    }
}

/// `MEMORY subcommand [key [SAMPLES n]]`.
pub fn memory(args: &[Bytes]) -> Action {
    let sub = &args[1];
    if is(sub, "help") && args.len() == 2 {
        return Action::Reply(help(MEMORY_HELP));
    }
    if !is(sub, "usage") {
        return Action::Reply(unknown_sub("memory", sub));
    }
    if args.len() < 3 {
        return Action::Reply(arity("memory|usage"));
    }
    let sample = match &args[3..] {
        [] => DEFAULT_SAMPLES,
        [kw, n] if is(kw, "samples") => match int(n) {
            Ok(n) if n >= 0 => u32::try_from(n).unwrap_or(u32::MAX),
            Ok(_) => return Action::Reply(syntax()),
            Err(e) => return Action::Reply(e),
        },
        _ => return Action::Reply(syntax()),
    };
    key_object(&args[2], sample, |info| match info.key_type {
        KeyType::None {} => Reply::Nil,
        _ => Reply::Int(i64::try_from(info.bytes).unwrap_or(i64::MAX)),
    })
}

fn key_object(
    key: &Bytes,
    sample: u32,
    finish: impl FnOnce(ObjectInfo) -> Reply + Send + 'static,
) -> Action {
    let op = KvOp::KeyObject {
        key: key.clone(),
        sample,
    };
    single(key, op, move |r| match r {
        OpResult::Object { object } => finish(object),
        other => unexpected(&other),
    })
}

/// The thresholds `OBJECT ENCODING` decides with, read once per command.
#[derive(Debug, Clone, Copy)]
struct Thresholds {
    hash_entries: u64,
    hash_value: u64,
    set_intset_entries: u64,
    zset_entries: u64,
    zset_value: u64,
}

impl Thresholds {
    fn read(e: &Encodings) -> Self {
        let u = |t| u64::try_from(e.get(t)).unwrap_or(0);
        Self {
            hash_entries: u(Threshold::HashEntries),
            hash_value: u(Threshold::HashValue),
            set_intset_entries: u(Threshold::SetIntsetEntries),
            zset_entries: u(Threshold::ZsetEntries),
            zset_value: u(Threshold::ZsetValue),
        }
    }

    /// Elements to examine: one more than the largest entry threshold, so that a collection
    /// within every threshold is examined whole.
    fn sample(&self) -> u32 {
        let most = self
            .hash_entries
            .max(self.set_intset_entries)
            .max(self.zset_entries);
        u32::try_from(most.saturating_add(1)).unwrap_or(u32::MAX)
    }
}

/// `OBJECT ENCODING`'s rule under the thresholds in force when a command was read (for
/// `DEBUG OBJECT`).
#[derive(Debug, Clone, Copy)]
pub(super) struct EncodingRule(Thresholds);

impl EncodingRule {
    /// The rule under the current thresholds.
    pub(super) fn now(shared: &Shared) -> Self {
        Self(Thresholds::read(&shared.settings.encodings))
    }

    /// The elements `KvOp::KeyObject` is to examine.
    pub(super) fn sample(&self) -> u32 {
        self.0.sample()
    }

    /// The encoding Redis would report for `info` (`None`: no such key).
    pub(super) fn name(&self, info: &ObjectInfo) -> Option<&'static str> {
        encoding(info, &self.0)
    }
}

/// Longest string Redis embeds in its object header (`OBJ_ENCODING_EMBSTR_SIZE_LIMIT`).
const EMBSTR_MAX: u64 = 44;

/// Redis 7.0's encoding for these contents (`None`: no such key).
fn encoding(info: &ObjectInfo, t: &Thresholds) -> Option<&'static str> {
    let whole = info.sampled == info.count;
    Some(match info.key_type {
        KeyType::None {} => return None,
        KeyType::String {} if info.all_integers => "int",
        KeyType::String {} if info.max_element_bytes <= EMBSTR_MAX => "embstr",
        KeyType::String {} => "raw",
        KeyType::List {} => "quicklist",
        KeyType::Hash {}
            if whole && info.count <= t.hash_entries && info.max_element_bytes <= t.hash_value =>
        {
            "listpack"
        }
        KeyType::Hash {} => "hashtable",
        KeyType::Set {} if whole && info.all_integers && info.count <= t.set_intset_entries => {
            "intset"
        }
        KeyType::Set {} => "hashtable",
        KeyType::ZSet {}
            if whole && info.count <= t.zset_entries && info.max_element_bytes <= t.zset_value =>
        {
            "listpack"
        }
        KeyType::ZSet {} => "skiplist",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(key_type: KeyType, count: u64, max: u64, ints: bool) -> ObjectInfo {
        ObjectInfo {
            key_type,
            count,
            sampled: count,
            max_element_bytes: max,
            all_integers: ints,
            bytes: 0,
        }
    }

    #[test]
    fn encodings_follow_redis_thresholds() {
        let t = Thresholds::read(&Encodings::default());
        let e = |i| encoding(&i, &t);
        assert_eq!(e(info(KeyType::String {}, 1, 5, true)), Some("int"));
        assert_eq!(e(info(KeyType::String {}, 1, 44, false)), Some("embstr"));
        assert_eq!(e(info(KeyType::String {}, 1, 45, false)), Some("raw"));
        assert_eq!(e(info(KeyType::Hash {}, 512, 64, false)), Some("listpack"));
        assert_eq!(e(info(KeyType::Hash {}, 513, 1, false)), Some("hashtable"));
        assert_eq!(e(info(KeyType::Hash {}, 1, 65, false)), Some("hashtable"));
        assert_eq!(e(info(KeyType::Set {}, 512, 3, true)), Some("intset"));
        assert_eq!(e(info(KeyType::Set {}, 3, 3, false)), Some("hashtable"));
        assert_eq!(e(info(KeyType::ZSet {}, 128, 64, false)), Some("listpack"));
        assert_eq!(e(info(KeyType::ZSet {}, 129, 1, false)), Some("skiplist"));
        assert_eq!(e(info(KeyType::List {}, 1, 1, false)), Some("quicklist"));
        assert_eq!(e(info(KeyType::None {}, 0, 0, false)), None);
        let mut partial = info(KeyType::Set {}, 600, 3, true);
        partial.sampled = 513;
        assert_eq!(e(partial), Some("hashtable"));
    }
}
