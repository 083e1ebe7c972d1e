//! Behaviour of the Masstree hot tier that the model test does not pin down: key limits, layer
//! creation and collapse, node counts after splits and removals, entry bits, demotion and
//! promotion with exact memory accounting, and scans across layers.

#![allow(clippy::unwrap_used, reason = "test code: a panic is a test failure")]

use std::ops::{Bound, ControlFlow};

use engines::masstree::{
    Direction, Error, LogPointer, MAX_KEY_LEN, Masstree, OwnedEntry, SegmentId, Value,
};

fn keys_in_order(t: &Masstree, from: Bound<&[u8]>, dir: Direction) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    t.scan(from, dir, usize::MAX, |k, _| {
        out.push(k.to_vec());
        ControlFlow::Continue(())
    });
    out
}

/// Keys of exactly 64 KiB (all zero bytes) are stored; one byte more is refused with a typed
/// error and changes nothing.
#[test]
fn rejects_keys_longer_than_64_kib() {
    let mut t = Masstree::new();
    let max = vec![0u8; MAX_KEY_LEN];
    assert_eq!(t.insert(&max, Value::inline(b"v")).unwrap(), None);
    let too_long = vec![0u8; MAX_KEY_LEN + 1];
    assert_eq!(
        t.insert(&too_long, Value::inline(b"v")),
        Err(Error::KeyTooLong {
            len: too_long.len()
        })
    );
    assert!(t.get(&too_long).is_none());
    assert_eq!(t.get(&max).unwrap().value(), Some(&b"v"[..]));
    assert_eq!(t.len(), 1);
    t.verify().unwrap();
}

/// A value needs inline bytes or a log pointer.
#[test]
fn rejects_values_with_neither_bytes_nor_pointer() {
    let mut t = Masstree::new();
    let v = Value {
        inline: None,
        pointer: None,
        expire_at_ms: None,
        dirty: true,
    };
    assert_eq!(t.insert(b"k", v), Err(Error::NoValue));
    assert!(t.is_empty());
}

/// The empty key, keys made of zero bytes of every length, and keys that differ only in
/// trailing zero bytes are all distinct and sort as bytes do.
#[test]
fn keys_differing_only_in_trailing_zeros_are_distinct() {
    let mut t = Masstree::new();
    let keys: Vec<Vec<u8>> = (0..20).map(|n| vec![0u8; n]).collect();
    for (i, k) in keys.iter().enumerate().rev() {
        t.insert(k, Value::inline(&[i as u8])).unwrap();
        t.verify().unwrap();
    }
    for (i, k) in keys.iter().enumerate() {
        assert_eq!(t.get(k).unwrap().value(), Some(&[i as u8][..]));
    }
    assert_eq!(
        keys_in_order(&t, Bound::Unbounded, Direction::Forward),
        keys
    );
    let mut rev = keys.clone();
    rev.reverse();
    assert_eq!(keys_in_order(&t, Bound::Unbounded, Direction::Reverse), rev);
}

/// Two keys sharing a whole 8-byte slice open a layer; removing one of them folds the other
/// back into its parent slot, and the node count returns to what it was.
#[test]
fn shared_slices_open_a_layer_that_collapses_on_remove() {
    let mut t = Masstree::new();
    t.insert(b"abcdefgh-one", Value::inline(b"1")).unwrap();
    let one_key = t.memory_stats();
    assert_eq!(one_key.border_nodes, 1);
    t.insert(b"abcdefgh-two", Value::inline(b"2")).unwrap();
    t.verify().unwrap();
    assert_eq!(t.memory_stats().border_nodes, 2, "a second layer exists");
    assert_eq!(t.remove(b"abcdefgh-two").unwrap().inline.unwrap(), b"2");
    t.verify().unwrap();
    let after = t.memory_stats();
    assert_eq!(after.border_nodes, 1, "the layer folded back");
    assert_eq!(after.suffix_bytes, one_key.suffix_bytes);
    assert_eq!(t.get(b"abcdefgh-one").unwrap().value(), Some(&b"1"[..]));
}

/// Long keys sharing a 60 000-byte prefix build a chain of thousands of layers, handled without
/// recursion; removing all but one key collapses the whole chain.
#[test]
fn long_shared_prefixes_chain_layers_and_collapse() {
    let mut t = Masstree::new();
    let prefix = vec![7u8; 60_000];
    let keys: Vec<Vec<u8>> = (0..4u8)
        .map(|i| {
            let mut k = prefix.clone();
            k.extend_from_slice(&[i; 9]);
            k
        })
        .collect();
    for k in &keys {
        t.insert(k, Value::inline(k.get(60_000..).unwrap()))
            .unwrap();
    }
    t.verify().unwrap();
    assert!(t.memory_stats().border_nodes > 7000);
    assert_eq!(
        keys_in_order(&t, Bound::Unbounded, Direction::Forward),
        keys
    );
    assert_eq!(
        keys_in_order(&t, Bound::Excluded(&keys[1]), Direction::Reverse),
        keys[..1]
    );
    for k in &keys[1..] {
        t.remove(k).unwrap();
    }
    t.verify().unwrap();
    let s = t.memory_stats();
    assert_eq!((s.border_nodes, s.interior_nodes, s.entries), (1, 0, 1));
    assert_eq!(s.suffix_bytes, keys[0].len() - 8);
}

/// Sequential inserts leave border nodes full (the rightmost split keeps the left node full),
/// random removals free empty nodes, and removing everything returns to the empty size.
#[test]
fn sequential_inserts_fill_nodes_and_removal_frees_them() {
    let mut t = Masstree::new();
    let n = 15 * 1000u64;
    for i in 0..n {
        t.insert(&i.to_be_bytes(), Value::inline(b"")).unwrap();
    }
    t.verify().unwrap();
    assert_eq!(t.memory_stats().border_nodes, 1000);
    for i in (0..n).filter(|i| i % 15 != 0) {
        t.remove(&i.to_be_bytes()).unwrap();
    }
    t.verify().unwrap();
    assert_eq!(
        t.memory_stats().border_nodes,
        1000,
        "each border still holds one key"
    );
    for i in (0..n).step_by(15) {
        t.remove(&i.to_be_bytes()).unwrap();
    }
    t.verify().unwrap();
    assert_eq!(t.memory_bytes(), Masstree::EMPTY_BYTES);
    assert_eq!(t.memory_stats().interior_nodes, 0);
}

/// Dirty and access bits, expiry and the log pointer are stored and changed in place.
#[test]
fn entry_bits_expiry_and_pointer_round_trip() {
    let mut t = Masstree::new();
    let ptr = LogPointer {
        segment: SegmentId(3),
        offset: 4096,
        len: 5,
        checksum: 0xdead_beef,
    };
    t.insert(
        b"k",
        Value::inline(b"hello")
            .with_pointer(ptr)
            .with_expiry_ms(1234),
    )
    .unwrap();
    let e = t.get(b"k").unwrap();
    assert!(e.is_dirty() && e.is_accessed(), "a write is an access");
    assert_eq!((e.pointer(), e.expire_at_ms()), (Some(ptr), Some(1234)));
    let mut m = t.get_mut(b"k").unwrap();
    m.set_dirty(false);
    m.set_accessed(true);
    m.set_expire_at_ms(None);
    let e = t.get(b"k").unwrap();
    assert!(!e.is_dirty() && e.is_accessed());
    assert_eq!(e.expire_at_ms(), None);
    let old = t.remove(b"k").unwrap();
    let want = OwnedEntry {
        inline: Some(b"hello".to_vec()),
        pointer: Some(ptr),
        expire_at_ms: None,
        dirty: false,
        accessed: true,
    };
    assert_eq!(old, want);
}

/// Demoting drops the inline value (memory goes down by exactly its length) and keeps the
/// pointer; an entry without a pointer refuses demotion; promotion brings the bytes back.
/// The access state (clock bit, transient bit, cold-read stamp) lives in the entry's spare
/// bits: it is set through a shared reference, survives demotion and promotion, costs no
/// memory, and a rewrite of the key resets it.
#[test]
fn access_state_is_kept_in_spare_entry_bits_without_memory() {
    let mut t = Masstree::new();
    let ptr = LogPointer {
        segment: SegmentId(1),
        offset: 0,
        len: 5,
        checksum: 9,
    };
    t.insert(
        b"key-with-a-suffix",
        Value::inline(b"hello").with_pointer(ptr),
    )
    .unwrap();
    let before = t.memory_bytes();
    let e = t.get(b"key-with-a-suffix").unwrap();
    assert!(e.take_accessed(), "a write sets the access bit");
    assert!(!e.take_accessed(), "the hand cleared it");
    e.touch();
    e.set_cold_read_stamp(Some(65_535));
    assert!(e.is_accessed() && !e.is_transient());
    let mut m = t.get_mut(b"key-with-a-suffix").unwrap();
    m.set_transient(true);
    assert!(m.get().is_transient());
    assert_eq!(m.demote(), Some(5));
    let e = t.get(b"key-with-a-suffix").unwrap();
    assert!(!e.is_transient(), "demotion clears the transient bit");
    assert_eq!(
        e.cold_read_stamp(),
        Some(65_535),
        "the stamp stays while cold"
    );
    t.get_mut(b"key-with-a-suffix").unwrap().promote(b"hello");
    assert_eq!(t.memory_bytes(), before, "the state costs no memory");
    t.insert(b"key-with-a-suffix", Value::inline(b"new"))
        .unwrap();
    let e = t.get(b"key-with-a-suffix").unwrap();
    assert_eq!(e.cold_read_stamp(), None);
    assert!(e.is_accessed());
}

#[test]
fn demote_drops_inline_value_and_keeps_pointer() {
    let mut t = Masstree::new();
    let key = b"a key longer than eight bytes";
    let ptr = LogPointer {
        segment: SegmentId(1),
        offset: 0,
        len: 100,
        checksum: 7,
    };
    let value = vec![9u8; 100];
    t.insert(key, Value::inline(&value)).unwrap();
    assert_eq!(
        t.get_mut(key).unwrap().demote(),
        None,
        "no pointer: the value would be lost"
    );
    t.get_mut(key).unwrap().set_pointer(ptr);
    let before = t.memory_bytes();
    assert_eq!(t.get_mut(key).unwrap().demote(), Some(100));
    assert_eq!(t.memory_bytes(), before - 100);
    let e = t.get(key).unwrap();
    assert_eq!((e.value(), e.pointer()), (None, Some(ptr)));
    t.verify().unwrap();
    t.get_mut(key).unwrap().promote(&value);
    assert_eq!(t.memory_bytes(), before);
    assert_eq!(t.get(key).unwrap().value(), Some(&value[..]));
    t.verify().unwrap();
}

/// Replacing a value returns the old one and keeps the accounting exact.
#[test]
fn replace_returns_old_value_and_accounts_new_length() {
    let mut t = Masstree::new();
    t.insert(b"0123456789", Value::inline(b"short")).unwrap();
    let before = t.memory_bytes();
    let old = t
        .insert(b"0123456789", Value::inline(b"much longer value"))
        .unwrap();
    assert_eq!(old.unwrap().inline.unwrap(), b"short");
    assert_eq!(t.memory_bytes(), before + 12);
    t.verify().unwrap();
}

/// Scans start at any bound, in both directions, across layers and borders, and stop at the
/// limit or when the callback breaks.
#[test]
fn scans_start_at_any_bound_and_stop_at_limit() {
    let mut t = Masstree::new();
    let mut keys: Vec<Vec<u8>> = Vec::new();
    for i in 0..300u32 {
        let mut k = b"prefix--".to_vec();
        k.extend_from_slice(&(i / 10).to_be_bytes());
        k.extend_from_slice(&[0u8; 4]);
        k.extend_from_slice(&(i % 10).to_be_bytes()[3..]);
        keys.push(k);
    }
    for k in keys.iter().rev() {
        t.insert(k, Value::inline(k)).unwrap();
    }
    t.verify().unwrap();
    keys.sort();
    let mut got = Vec::new();
    t.scan(Bound::Included(&keys[42]), Direction::Forward, 5, |k, e| {
        assert_eq!(e.value(), Some(k));
        got.push(k.to_vec());
        ControlFlow::Continue(())
    });
    assert_eq!(got, keys[42..47]);
    got.clear();
    t.scan(
        Bound::Excluded(&keys[42]),
        Direction::Reverse,
        usize::MAX,
        |k, _| {
            got.push(k.to_vec());
            if got.len() == 3 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        },
    );
    assert_eq!(
        got,
        vec![keys[41].clone(), keys[40].clone(), keys[39].clone()]
    );
    assert_eq!(t.first().unwrap().0, keys[0]);
    assert_eq!(t.last().unwrap().0, keys[299]);
    assert_eq!(
        t.scan(Bound::Included(b"zzz"), Direction::Forward, 10, |_, _| {
            ControlFlow::Continue(())
        }),
        0
    );
    assert_eq!(
        keys_in_order(&t, Bound::Included(b"zzz"), Direction::Reverse).len(),
        300
    );
}
