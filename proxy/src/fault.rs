//! **Test only.** A fault injected on purpose, so that the Jepsen-style harness
//! (`tests/jepsen.rs`) can prove its checker catches a broken build: off by default, and
//! never to be turned on anywhere else.
//!
//! The only way to turn it on is the `tierkv proxy` process's environment:
//! `TIERKV_TEST_ONLY_FAULT=drop-every-8th-acknowledged-set-losing-data`. Then every 8th plain
//! `SET key value` (no options) is answered `+OK` without being sent to the cluster: an
//! acknowledged write lost. Any other value of the variable stops the proxy at start (a typo
//! never half-enables it); when it is on, the proxy says so on stderr and in its log at
//! start. There is no config key and no command for it.

use std::sync::atomic::{AtomicU64, Ordering};

use net::message::kv::{Cond, Expiry, KvOp};

/// The environment variable read by `tierkv proxy`.
pub const ENV: &str = "TIERKV_TEST_ONLY_FAULT";
/// The one value that turns the fault on.
pub const DROP_ACKED_SETS: &str = "drop-every-8th-acknowledged-set-losing-data";
/// One plain SET in this many is dropped.
const DROP_EVERY: u64 = 8;

/// The environment variable has a value that is not [`DROP_ACKED_SETS`].
#[derive(Debug, thiserror::Error)]
#[error("{ENV}={0:?} is not a known test-only fault (unset it)")]
pub struct UnknownFault(pub String);

/// Whether the fault is on: from the value of [`ENV`] (`None`: unset, off).
pub fn from_env_value(value: Option<&str>) -> Result<bool, UnknownFault> {
    match value {
        None => Ok(false),
        Some(DROP_ACKED_SETS) => Ok(true),
        Some(other) => Err(UnknownFault(other.to_string())),
    }
}

/// The dropping side of the fault, in the router.
#[derive(Debug, Default)]
pub struct DropAckedSets {
    seen: AtomicU64,
}

impl DropAckedSets {
    /// Whether to acknowledge `op` without sending it: every 8th plain SET.
    pub fn drops(&self, op: &KvOp) -> bool {
        let plain_set = matches!(
            op,
            KvOp::StrSet {
                expiry: Expiry::Persist {},
                cond: Cond::Always {},
                get_old: false,
                ..
            }
        );
        plain_set && self.seen.fetch_add(1, Ordering::Relaxed) % DROP_EVERY == DROP_EVERY - 1
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    #[test]
    fn only_the_exact_phrase_turns_the_fault_on() {
        assert!(!from_env_value(None).unwrap());
        assert!(from_env_value(Some(DROP_ACKED_SETS)).unwrap());
        for typo in [
            "",
            "1",
            "true",
            "drop-acknowledged-writes",
            " drop-every-8th-acknowledged-set-losing-data",
        ] {
            assert!(from_env_value(Some(typo)).is_err(), "{typo:?}");
        }
    }

    #[test]
    fn every_eighth_plain_set_is_dropped_and_nothing_else() {
        let f = DropAckedSets::default();
        let set = KvOp::StrSet {
            key: Bytes::from_static(b"k"),
            value: Bytes::from_static(b"v"),
            expiry: Expiry::Persist {},
            cond: Cond::Always {},
            get_old: false,
        };
        let dropped: Vec<bool> = (0..16).map(|_| f.drops(&set)).collect();
        assert_eq!(dropped.iter().filter(|d| **d).count(), 2);
        assert!(dropped[7] && dropped[15]);
        let get = KvOp::StrGet {
            key: Bytes::from_static(b"k"),
        };
        assert!((0..16).all(|_| !f.drops(&get)));
    }
}
