//! The probe loop: one round per interval until shutdown.

use std::future::Future;
use std::sync::Arc;

use net::tokio_transport::Pool;

use crate::config::ProbeConfig;
use crate::pinger::Pinger;
use crate::round::{ProbeStats, RoundState, round};

/// Runs rounds every `cfg.interval` until `shutdown` completes. A failed round is logged
/// (at warn when the probe goes from reporting to failing, then at debug) and retried next
/// interval.
pub async fn run<P: Pinger>(
    cfg: ProbeConfig,
    pool: Arc<Pool>,
    pinger: Arc<P>,
    stats: Arc<ProbeStats>,
    shutdown: impl Future<Output = ()>,
) {
    let mut shutdown = std::pin::pin!(shutdown);
    let mut state = RoundState::default();
    let mut failing = false;
    tracing::info!(probe = %cfg.name, zone = %cfg.zone, master = %cfg.master, "probe started");
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            () = tokio::time::sleep(cfg.interval) => {}
        }
        match round(&cfg, &pool, &pinger, &mut state, &stats).await {
            Ok(r) => {
                if failing {
                    tracing::info!(probe = %cfg.name, "probe reporting again");
                }
                failing = false;
                let down = r.results.iter().filter(|x| !x.reachable).count();
                tracing::debug!(probe = %cfg.name, shards = r.results.len(), down, "round reported");
            }
            Err(e) => {
                stats
                    .round_errors_total
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if failing {
                    tracing::debug!(probe = %cfg.name, "probe round failed: {e}");
                } else {
                    tracing::warn!(probe = %cfg.name, "probe round failed: {e}");
                }
                failing = true;
            }
        }
    }
    tracing::info!(probe = %cfg.name, "probe stopped");
}
