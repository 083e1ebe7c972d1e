//! The real master service (`master::service::Master`) in the test process.

use std::path::PathBuf;
use std::sync::Arc;

use master::core::MasterConfig;
use master::service::{Master, SystemClock};
use net::transport::TransportConfig;
use tokio::sync::oneshot;

/// A master started by [`start`]; stopped (and its thread joined) by [`RunningMaster::stop`]
/// or on drop.
#[derive(Debug)]
pub struct RunningMaster {
    addr: String,
    master: Arc<Master>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RunningMaster {
    /// The master's RPC address (`127.0.0.1:PORT`).
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The scheduler's recent decisions, oldest first, as `checker: operator (reason)`.
    pub fn decisions(&self) -> Vec<String> {
        self.master.with_core(|c| {
            c.decisions()
                .iter()
                .map(|d| format!("{}: {} ({})", d.checker, d.operator, d.reason))
                .collect()
        })
    }

    /// The answer of the admin endpoint to `POST path?query` (`/move-range`, `/split`, …):
    /// (HTTP status, JSON body), without going through HTTP.
    pub fn admin_post(&self, path: &str, query: &str) -> (u16, String) {
        let q = master::admin_ops::Query::parse(query);
        master::admin_ops::respond_post(&self.master, path, &q)
    }

    /// Stops the master and waits for its thread (open connections are dropped).
    ///
    /// # Panics
    /// With the master thread's panic, if it panicked (dropping instead ignores it).
    pub fn stop(mut self) {
        if let Err(panic) = self.shut_down() {
            if !std::thread::panicking() {
                std::panic::resume_unwind(panic);
            }
        }
    }

    fn shut_down(&mut self) -> std::thread::Result<()> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        match self.thread.take() {
            Some(t) => t.join(),
            None => Ok(()),
        }
    }
}

impl Drop for RunningMaster {
    fn drop(&mut self) {
        let _ = self.shut_down();
    }
}

/// Starts a master whose data dir is `dir` (`MasterConfig::new(dir)`, then `tune`) on a
/// thread of its own with a one-worker tokio runtime, serving on a free port of 127.0.0.1
/// (64 connections at most); returns once it listens.
///
/// # Panics
/// When the master cannot open `dir` or bind a port.
pub fn start(dir: PathBuf, tune: impl FnOnce(&mut MasterConfig) + Send + 'static) -> RunningMaster {
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("master test runtime");
        rt.block_on(async move {
            let mut cfg = MasterConfig::new(&dir);
            tune(&mut cfg);
            let (m, _) = Master::open(cfg, Arc::new(SystemClock)).expect("open the master");
            let l = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind the master's port");
            let addr = l.local_addr().expect("the master's address").to_string();
            let _ = addr_tx.send((addr, m.clone()));
            m.serve(l, TransportConfig::default(), 64, async move {
                let _ = stop_rx.await;
            })
            .await;
        });
    });
    let (addr, master) = addr_rx.recv().expect("the master did not start");
    RunningMaster {
        addr,
        master,
        stop: Some(stop_tx),
        thread: Some(thread),
    }
}

/// The scheduling of the multi-node tests (pass it as `tune`, or call it from one): the
/// scheduler runs every 100 ms, an operator may take 20 s, and a store is down after 1.5 s
/// without a heartbeat.
pub fn fast_scheduling(cfg: &mut MasterConfig) {
    cfg.schedule_interval_ms = 100;
    cfg.operator_timeout_ms = 20_000;
    cfg.schedule.store_down_after_ms = 1500;
}
