//! Ten million keys inserted in random order and removed in another random order leave the
//! tree at its empty size: every node, entry, suffix and value byte is given back (the arena's
//! live bytes return to one empty border node), and no node leaks.
//!
//! Keys are 16 bytes (an 8-byte big-endian integer, then its bitwise complement) so that every
//! entry carries an 8-byte key suffix; values are 8 bytes. Needs an optimised build
//! (`cargo test -p engines --profile ci`); about 40 s on the 2-core test machine.

#![allow(clippy::unwrap_used, reason = "test code: a panic is a test failure")]

use engines::masstree::{Masstree, Value};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

const N: u64 = 10_000_000;

fn key(i: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&i.to_be_bytes());
    k[8..].copy_from_slice(&(!i).to_be_bytes());
    k
}

#[test]
fn ten_million_keys_inserted_then_removed_return_memory_to_empty() {
    let mut rng = StdRng::seed_from_u64(0x5eed_0003);
    // Spread the integers over the whole u64 range so the first slices are random.
    let mut ids: Vec<u64> = (0..N)
        .map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15))
        .collect();
    ids.shuffle(&mut rng);
    let mut t = Masstree::new();
    assert_eq!(t.memory_bytes(), Masstree::EMPTY_BYTES);
    for &i in &ids {
        assert!(
            t.insert(&key(i), Value::inline(&i.to_le_bytes()))
                .unwrap()
                .is_none()
        );
    }
    assert_eq!(t.len(), N as usize);
    let full = t.memory_stats();
    assert_eq!(full.suffix_bytes, 8 * N as usize);
    assert_eq!(full.value_bytes, 8 * N as usize);
    println!(
        "10M keys: {full:?}, {} B/entry",
        t.memory_bytes() as u64 / N
    );
    ids.shuffle(&mut rng);
    for &i in &ids {
        assert_eq!(t.remove(&key(i)).unwrap().inline.unwrap(), i.to_le_bytes());
    }
    assert!(t.is_empty());
    t.verify().unwrap();
    let empty = t.memory_stats();
    assert_eq!(t.memory_bytes(), Masstree::EMPTY_BYTES);
    assert_eq!(
        (empty.border_nodes, empty.interior_nodes, empty.entries),
        (1, 0, 0)
    );
}
