// perf-critical: every pipelined batch of writes is planned here.
//! Write packing: the writes of one wave (`server::waves`) that go to one range travel as one
//! [`KvOp::Multi`] — one message, one Raft entry, one dedup record — instead of one of each
//! per write.
//!
//! A pipeline's writes cost the shard a proposal, a log record, an apply step, a dedup record
//! and an answer each, and the proxy a message and a waiter each. Packed, 16 pipelined
//! `LPUSH`es of one list cost those once. A `Multi` applies its operations in order, each
//! failure its own result and the next ones still run (as `EXEC` does), so packing changes no
//! reply: a wave's writes to one range apply in pipeline order, as they did, only now with
//! nothing of the range in between (a stronger guarantee than a pipeline has).
//!
//! What keeps it safe:
//! - **Every write of a key in one pack.** A wave may hold several writes of one key
//!   (`server::waves`, fenced writes): they go in one pack, in order. Two packs holding one
//!   key could apply out of order (one refused for a retry, the other not).
//! - **By memory class.** A range's writes that only free ([`KvOp::only_frees`]: DEL, pops,
//!   removes, EXPIRE) and those that may add data go in two packs, so that a delete is never
//!   held behind a push by a shard over its memory line; when a key is written in both
//!   classes, none of the range's writes is packed.
//! - **All or nothing per range.** Packs are made only when every write of the wave to that
//!   range is packable: single-key Redis writes of the kinds below. A pack holds at most
//!   [`MAX_PACK_BYTES`]. Otherwise the range's writes go one by one, as before.
//! - **A refused pack is unpacked.** A `Multi` that the shard refuses as a whole (its keys no
//!   longer in one range after a split, memory or disk full, too large) applied nothing, not
//!   even an earlier copy: a copy that applied left a dedup record under the pack's first key,
//!   and a resent copy finds it wherever that key's range now is, before any key is checked
//!   (`ds_node::range::dedup`). Its writes are then sent again one by one (`Router::exec`).
//!   A pack whose outcome is unknown is resent as a pack, under its write id, like any write.

use std::collections::{HashMap, HashSet};

use bytes::Bytes;
use net::RpcError;
use net::message::kv::KvOp;
use net::message::list::ListOp;
use net::message::set::SetOp;
use net::message::zset::ZSetOp;

/// Largest sum of the packed writes' key and value bytes in one pack: a pack is one Raft
/// entry, and entries this size still commit in one group commit without delaying others.
pub const MAX_PACK_BYTES: usize = 1 << 20;

/// The operations to send for a wave, and where each original operation's result comes from.
#[derive(Debug)]
pub struct Plan {
    /// What to send: the wave's reads and unpacked writes, and one `Multi` per pack at its
    /// first write's place, each with the internal key it routes by.
    pub ops: Vec<(Bytes, KvOp)>,
    /// For each element of `ops`, the original operations it stands for.
    pub slots: Vec<Slot>,
}

/// What one sent operation stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Slot {
    /// Original operation `i`, sent as is.
    One(usize),
    /// Original operations `idx`, in order, packed into one `Multi`.
    Pack(Vec<usize>),
}

/// The writes of one memory class ([`KvOp::only_frees`]) of one range in a wave.
#[derive(Debug, Default)]
struct Group {
    idx: Vec<usize>,
    bytes: usize,
}

/// A range's writes of a wave, while it is planned.
#[derive(Debug, Default)]
struct RangeWrites {
    /// Writes that may add data, and writes that only free.
    grow: Group,
    free: Group,
    /// False once a write cannot be packed: then none of the range's writes is.
    packable: bool,
}

impl RangeWrites {
    /// The groups to pack: each of two or more writes, within the byte bound; none when a
    /// key is written in both classes (two packs of one key could apply out of order).
    fn packs(self, ops: &[(Bytes, KvOp)]) -> Vec<Vec<usize>> {
        if !self.packable {
            return Vec::new();
        }
        if !self.grow.idx.is_empty() && !self.free.idx.is_empty() {
            let grown: HashSet<&Bytes> = self.grow.idx.iter().map(|&i| &ops[i].0).collect();
            if self.free.idx.iter().any(|&i| grown.contains(&ops[i].0)) {
                return Vec::new();
            }
        }
        [self.grow, self.free]
            .into_iter()
            .filter(|g| g.idx.len() >= 2 && g.bytes <= MAX_PACK_BYTES)
            .map(|g| g.idx)
            .collect()
    }
}

/// Plans the packs of one wave: `None` when nothing would be packed (send `ops` as they are).
/// `range_of` maps an internal key to its range in the cached route table.
pub fn plan(ops: &[(Bytes, KvOp)], range_of: impl Fn(&[u8]) -> Option<u64>) -> Option<Plan> {
    let mut ranges: HashMap<u64, RangeWrites> = HashMap::new();
    for (i, (key, op)) in ops.iter().enumerate() {
        if !op.is_write() {
            continue;
        }
        let Some(range) = range_of(key) else {
            continue;
        };
        let r = ranges.entry(range).or_insert_with(|| RangeWrites {
            packable: true,
            ..RangeWrites::default()
        });
        let Some(bytes) = packed_bytes(op) else {
            r.packable = false;
            continue;
        };
        let g = if op.only_frees() {
            &mut r.free
        } else {
            &mut r.grow
        };
        g.idx.push(i);
        g.bytes += bytes;
    }
    // Each pack, by its first operation.
    let mut first_of: HashMap<usize, Vec<usize>> = HashMap::new();
    let mut packed = vec![false; ops.len()];
    for pack in ranges.into_values().flat_map(|r| r.packs(ops)) {
        for &i in &pack {
            packed[i] = true;
        }
        first_of.insert(pack[0], pack);
    }
    if first_of.is_empty() {
        return None;
    }
    let mut plan = Plan {
        ops: Vec::with_capacity(ops.len()),
        slots: Vec::with_capacity(ops.len()),
    };
    for (i, (key, op)) in ops.iter().enumerate() {
        if let Some(idx) = first_of.remove(&i) {
            let multi = KvOp::Multi {
                watches: Vec::new(),
                ops: idx.iter().map(|&j| ops[j].1.clone()).collect(),
            };
            plan.ops.push((key.clone(), multi));
            plan.slots.push(Slot::Pack(idx));
        } else if !packed[i] {
            plan.ops.push((key.clone(), op.clone()));
            plan.slots.push(Slot::One(i));
        }
    }
    Some(plan)
}

/// Whether a pack answered `e` as a whole was refused before anything of it applied, now or
/// by an earlier copy (then its writes may go again one by one): its keys no longer in one
/// range (`CROSSSLOT`), a limit, a full disk, the memory line (`-OOM`). Any other error (a
/// timeout: the entry may still commit) is every packed write's answer.
pub fn refused_whole(e: &RpcError) -> bool {
    match e {
        RpcError::BadRequest { .. }
        | RpcError::KeyTooLarge { .. }
        | RpcError::ValueTooLarge { .. }
        | RpcError::DiskFull {} => true,
        RpcError::Redis { message } => message.starts_with("OOM "),
        _ => false,
    }
}

/// The key and value bytes of a write that may be packed; `None` for any other operation.
/// Packable: single-key Redis writes of strings, keys, hashes, lists, sets and sorted sets,
/// and scripts that may write (not transactions, renames or copies, multi-key pops or moves,
/// raw operations).
fn packed_bytes(op: &KvOp) -> Option<usize> {
    let key = |k: &Bytes| k.len() + 16;
    let all = |v: &[Bytes]| v.iter().map(|b| b.len() + 8).sum::<usize>();
    Some(match op {
        KvOp::InDb { op, .. } => return packed_bytes(op),
        KvOp::StrSet { key: k, value, .. } | KvOp::StrAppend { key: k, value } => {
            key(k) + value.len()
        }
        KvOp::StrIncrBy { key: k, .. }
        | KvOp::StrIncrByFloat { key: k, .. }
        | KvOp::StrGetDel { key: k }
        | KvOp::StrGetEx { key: k, .. }
        | KvOp::KeyDel { key: k }
        | KvOp::KeyExpire { key: k, .. }
        | KvOp::KeyPersist { key: k } => key(k),
        KvOp::HSet { key: k, pairs, .. } => {
            key(k)
                + pairs
                    .iter()
                    .map(|(f, v)| f.len() + v.len() + 16)
                    .sum::<usize>()
        }
        KvOp::HDel { key: k, fields } => key(k) + all(fields),
        KvOp::HIncrBy { key: k, field, .. } | KvOp::HIncrByFloat { key: k, field, .. } => {
            key(k) + field.len()
        }
        KvOp::List { op } => match op {
            ListOp::Push {
                key: k, elements, ..
            } => key(k) + all(elements),
            ListOp::Pop { key: k, .. } => key(k),
            _ => return None,
        },
        KvOp::Set { op } => match op {
            SetOp::Add { key: k, members } | SetOp::Rem { key: k, members } => {
                key(k) + all(members)
            }
            SetOp::Pop { key: k, .. } => key(k),
            _ => return None,
        },
        KvOp::ZSet { op } => match op {
            ZSetOp::Add {
                key: k, members, ..
            }
            | ZSetOp::Rem { key: k, members } => key(k) + all(members) + 8 * members.len(),
            ZSetOp::Pop { key: k, keys, .. } if keys.is_empty() => key(k),
            _ => return None,
        },
        // A script that may write (one that only reads is no write): its keys are checked
        // in the range like any packed write's.
        KvOp::Eval {
            anchor,
            body,
            keys,
            args,
            read_only: false,
            ..
        } => key(anchor) + body.len() + all(keys) + all(args),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use net::message::kv::{Cond, Expiry};

    use super::*;

    fn set(key: &'static str) -> (Bytes, KvOp) {
        let key = Bytes::from_static(key.as_bytes());
        let op = KvOp::StrSet {
            key: key.clone(),
            value: Bytes::from_static(b"v"),
            expiry: Expiry::Persist {},
            cond: Cond::Always {},
            get_old: false,
        };
        (key, op)
    }

    fn del(key: &'static str) -> (Bytes, KvOp) {
        let key = Bytes::from_static(key.as_bytes());
        (key.clone(), KvOp::KeyDel { key })
    }

    fn get(key: &'static str) -> (Bytes, KvOp) {
        let key = Bytes::from_static(key.as_bytes());
        (key.clone(), KvOp::StrGet { key })
    }

    /// Keys starting with `a` are in range 1, the others in range 2.
    fn range_of(key: &[u8]) -> Option<u64> {
        Some(if key.first() == Some(&b'a') { 1 } else { 2 })
    }

    #[test]
    fn writes_of_one_range_become_one_multi_at_the_first_ones_place() {
        let ops = vec![set("a1"), get("b1"), set("a2"), set("b2"), set("a1")];
        let plan = plan(&ops, range_of).expect("a pack");
        assert_eq!(
            plan.slots,
            vec![Slot::Pack(vec![0, 2, 4]), Slot::One(1), Slot::One(3)]
        );
        let KvOp::Multi {
            watches,
            ops: inner,
        } = &plan.ops[0].1
        else {
            panic!("not a multi: {:?}", plan.ops[0]);
        };
        assert!(watches.is_empty());
        assert_eq!(
            inner,
            &vec![ops[0].1.clone(), ops[2].1.clone(), ops[4].1.clone()]
        );
        assert_eq!(plan.ops[0].0, ops[0].0, "routed by its first write's key");
    }

    #[test]
    fn a_lone_write_or_reads_only_pack_nothing() {
        assert!(plan(&[set("a1"), set("b1"), get("a2")], range_of).is_none());
        assert!(plan(&[get("a1"), get("a2")], range_of).is_none());
    }

    #[test]
    fn a_range_with_an_unpackable_write_sends_all_its_writes_one_by_one() {
        let rename = (
            Bytes::from_static(b"a3"),
            KvOp::KeyRename {
                key: Bytes::from_static(b"a3"),
                dst: Bytes::from_static(b"a4"),
                nx: false,
            },
        );
        let ops = vec![set("a1"), rename, set("a2"), set("b1"), set("b2")];
        let plan = plan(&ops, range_of).expect("range 2 packs");
        assert_eq!(
            plan.slots,
            vec![
                Slot::One(0),
                Slot::One(1),
                Slot::One(2),
                Slot::Pack(vec![3, 4])
            ]
        );
    }

    #[test]
    fn writes_that_free_and_writes_that_add_go_in_two_packs() {
        let ops = [set("a1"), del("a2"), set("a3"), del("a4")];
        let plan = plan(&ops, range_of).expect("two packs");
        assert_eq!(
            plan.slots,
            vec![Slot::Pack(vec![0, 2]), Slot::Pack(vec![1, 3])]
        );
    }

    #[test]
    fn a_key_written_in_both_classes_leaves_its_range_unpacked() {
        let ops = [
            set("a1"),
            del("a1"),
            set("a3"),
            del("a4"),
            set("b1"),
            set("b2"),
        ];
        let plan = plan(&ops, range_of).expect("range 2 packs");
        assert_eq!(
            plan.slots,
            vec![
                Slot::One(0),
                Slot::One(1),
                Slot::One(2),
                Slot::One(3),
                Slot::Pack(vec![4, 5])
            ]
        );
    }

    #[test]
    fn writes_over_the_byte_bound_are_not_packed() {
        let big = |key: &'static str| {
            let (k, _) = set(key);
            let op = KvOp::StrSet {
                key: k.clone(),
                value: Bytes::from(vec![0u8; MAX_PACK_BYTES / 2]),
                expiry: Expiry::Persist {},
                cond: Cond::Always {},
                get_old: false,
            };
            (k, op)
        };
        assert!(plan(&[big("a1"), big("a2")], range_of).is_none());
        assert!(plan(&[big("a1"), set("a2")], range_of).is_some());
    }

    #[test]
    fn a_write_without_a_route_is_sent_alone() {
        let none = |key: &[u8]| (key != b"a2").then_some(1);
        let plan = plan(&[set("a1"), set("a2"), set("a3")], none).expect("a pack");
        assert_eq!(plan.slots, vec![Slot::Pack(vec![0, 2]), Slot::One(1)]);
    }
}
