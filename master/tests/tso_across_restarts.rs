//! The TSO with an injected clock across restarts: timestamps strictly increase when the
//! clock steps back across a restart, when it stalls, and when a millisecond's logical space
//! overflows; nothing is served at or above the persisted limit.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use ::master::core::MasterConfig;
use ::master::service::{ManualClock, Master};
use ::master::tso::{MAX_BATCH, physical_ms};

#[tokio::test]
async fn timestamps_increase_across_restarts_and_backward_clock_steps() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1_000_000);
    let mut last = 0u64;
    for (round, now) in [1_000_000u64, 400_000, 400_000, 2_000_000, 10]
        .into_iter()
        .enumerate()
    {
        clock.set(now);
        let (m, _) = Master::open(MasterConfig::new(dir.path()), Arc::new(clock.clone())).unwrap();
        for n in [1, 7, MAX_BATCH, 3, MAX_BATCH, 1] {
            let b = m.tso(n).await.unwrap();
            assert!(b.first.0 > last, "round {round}: {} <= {last}", b.first.0);
            last = b.first.0 + u64::from(n) - 1;
            let limit = m.with_core(|c| c.state().tso_limit());
            assert!(last < limit.0, "served at or above the persisted limit");
        }
        if round == 0 {
            assert!(physical_ms(net::Timestamp(last)) >= 1_000_000);
        }
        // Stalled clock: many batches in the same millisecond stay distinct.
        for _ in 0..100 {
            let b = m.tso(100).await.unwrap();
            assert!(b.first.0 > last);
            last = b.first.0 + 99;
        }
        drop(m);
    }
}

#[tokio::test]
async fn the_limit_is_persisted_a_window_ahead_so_batches_do_not_wait_for_fsync() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(5_000);
    let mut cfg = MasterConfig::new(dir.path());
    cfg.tso_window_ms = 3000;
    let (m, _) = Master::open(cfg, Arc::new(clock.clone())).unwrap();
    m.tso(1).await.unwrap();
    let limit = m.with_core(|c| c.state().tso_limit());
    assert!(physical_ms(limit) >= 5_000 + 3_000);
    let applied = m.with_core(|c| c.state().applied_index());
    for t in 5_000..7_000 {
        clock.set(t);
        m.tso(10).await.unwrap();
    }
    assert_eq!(
        m.with_core(|c| c.state().applied_index()),
        applied,
        "no log write within the window"
    );
    // The timer persists the next window before the old one runs out.
    clock.set(7_000);
    m.tick().await;
    assert!(m.with_core(|c| c.state().tso_limit()) > limit);
}
