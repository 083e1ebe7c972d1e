//! A real master log (written by `DurableState::propose`) with arbitrary damage — bytes
//! changed at fuzzer-chosen offsets, then cut at a fuzzer-chosen length — and, from the same
//! input, arbitrary bytes as a snapshot file beside it. Opening the directory never panics,
//! and when it succeeds on the log alone the recovered state is exactly the state after some
//! prefix of the history: damage is reported or cut as a torn tail, never applied.
#![no_main]

mod common;

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use master::log::DurableState;

/// The bytes of the undamaged log file and its name.
fn pristine() -> &'static (String, Vec<u8>) {
    static LOG: OnceLock<(String, Vec<u8>)> = OnceLock::new();
    LOG.get_or_init(|| {
        let dir = scratch("template");
        let (mut d, _) = DurableState::open(&dir).expect("open an empty dir");
        for c in common::history() {
            d.propose(&c).expect("propose");
        }
        drop(d);
        let mut logs: Vec<_> = std::fs::read_dir(&dir)
            .expect("list")
            .map(|e| e.expect("entry").file_name().into_string().expect("utf-8"))
            .filter(|n| n.starts_with("log-"))
            .collect();
        logs.sort();
        assert_eq!(logs.len(), 1, "{logs:?}");
        let bytes = std::fs::read(dir.join(&logs[0])).expect("read log");
        let _ = std::fs::remove_dir_all(&dir);
        (logs[0].clone(), bytes)
    })
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("master-fuzz-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("fuzz dir");
    dir
}

fuzz_target!(|data: &[u8]| {
    let (name, log) = pristine();
    // Input: [cut u16][n_edits u8] n × [offset u16, xor u8] [snapshot bytes...]
    if data.len() < 3 {
        return;
    }
    let cut = usize::from(u16::from_le_bytes([data[0], data[1]])) % (log.len() + 1);
    let edits = usize::from(data[2] % 8);
    let mut rest = &data[3..];
    let mut damaged = log.clone();
    for _ in 0..edits {
        let [a, b, x, ..] = rest else { break };
        let at = usize::from(u16::from_le_bytes([*a, *b])) % damaged.len();
        damaged[at] ^= *x;
        rest = &rest[3..];
    }
    damaged.truncate(cut);
    let dir = scratch("case");
    std::fs::write(dir.join(name), &damaged).expect("write log");
    if !rest.is_empty() {
        std::fs::write(dir.join("snapshot"), rest).expect("write snapshot");
    }
    let opened = DurableState::open(&dir);
    // (A snapshot the fuzzer made valid would be a legitimate other state: only the log alone
    // has a known answer.)
    if let (Ok((d, _)), true) = (opened, rest.is_empty()) {
        let n = d.state().applied_index() as usize;
        assert!(n <= common::history().len());
        assert_eq!(
            d.state(),
            &common::state_after(n),
            "recovered state is not a prefix"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
});
