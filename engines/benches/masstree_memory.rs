//! Bytes per entry of the Masstree and of `BTreeMap<Vec<u8>, Vec<u8>>` holding the same keys
//! with 16-byte values. Each measurement runs in a fresh child process, which reports the growth
//! of its resident set size (`/proc/self/statm`) while it builds the structure: that includes
//! allocator overhead and free space, for both. The Masstree's own `memory_bytes()` (exact
//! bytes held, no allocator overhead) is printed too.
//!
//! ```text
//! cargo bench -p engines --bench masstree_memory            # 1M entries per key set
//! MASSTREE_MEMORY_N=10000000 cargo bench -p engines --bench masstree_memory
//! ```

use std::collections::BTreeMap;
use std::process::Command;

use engines::masstree::{Masstree, Value};

fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Makes key `i` of key set `set` (the same sets as the `masstree` benchmark).
fn make(set: &str, i: u64, out: &mut Vec<u8>) {
    out.clear();
    match set {
        "random16" => {
            out.extend_from_slice(&mix(i).to_be_bytes());
            out.extend_from_slice(&mix(i ^ 0xabcd_ef01_2345_6789).to_be_bytes());
        }
        "prefix40" => {
            out.extend_from_slice(b"https://www.example.com/");
            let h = mix(i);
            for shift in (0..64).step_by(4).rev() {
                out.push(b"0123456789abcdef"[((h >> shift) & 15) as usize]);
            }
        }
        _ => out.extend_from_slice(&i.to_be_bytes()),
    }
}

/// Returns the resident set size in bytes.
fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("read /proc/self/statm");
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("statm has a resident field");
    pages * 4096
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

const VALUE: [u8; 16] = *b"0123456789abcdef";

/// Builds one structure and prints `bytes_per_entry_rss [memory_bytes_per_entry]`.
fn child(structure: &str, set: &str, n: u64) {
    let mut k = Vec::new();
    // Insert in a scrambled order (a bijection on 0..n), so integer keys arrive randomly too.
    let stride = (n / 2 + 1..).find(|s| gcd(*s, n) == 1).unwrap_or(1);
    let index = |j: u64| j * stride % n;
    let before = rss_bytes();
    if structure == "masstree" {
        let mut t = Masstree::new();
        for i in 0..n {
            make(set, index(i), &mut k);
            t.insert(&k, Value::inline(&VALUE))
                .expect("key within limit");
        }
        let grown = rss_bytes() - before;
        let per = t.memory_bytes() as f64 / t.len() as f64;
        println!("{:.1} {per:.1} {}", grown as f64 / t.len() as f64, t.len());
    } else {
        let mut m = BTreeMap::new();
        for i in 0..n {
            make(set, index(i), &mut k);
            m.insert(k.clone(), VALUE.to_vec());
        }
        let grown = rss_bytes() - before;
        println!("{:.1} - {}", grown as f64 / m.len() as f64, m.len());
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(pos) = args.iter().position(|a| a == "--child") {
        let n = args[pos + 3].parse().expect("entry count");
        child(&args[pos + 1], &args[pos + 2], n);
        return;
    }
    if args.iter().any(|a| a == "--list") {
        return;
    }
    let n: u64 = std::env::var("MASSTREE_MEMORY_N")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let exe = std::env::current_exe().expect("own path");
    println!("bytes per entry, {n} entries, 16-byte values (RSS growth; memory_bytes)");
    println!(
        "{:<10} {:>14} {:>14} {:>22} {:>8}",
        "keys", "btreemap rss", "masstree rss", "masstree memory_bytes", "ratio"
    );
    for set in ["random16", "prefix40", "int8"] {
        let run = |structure: &str| -> Vec<String> {
            let out = Command::new(&exe)
                .args(["--child", structure, set, &n.to_string()])
                .output()
                .expect("run child");
            String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .map(str::to_owned)
                .collect()
        };
        let b = run("btreemap");
        let m = run("masstree");
        let ratio =
            b[0].parse::<f64>().unwrap_or(f64::NAN) / m[0].parse::<f64>().unwrap_or(f64::NAN);
        println!(
            "{set:<10} {:>14} {:>14} {:>22} {ratio:>7.2}x",
            b[0], m[0], m[1]
        );
    }
}
