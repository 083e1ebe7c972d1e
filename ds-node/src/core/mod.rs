//! glommio glue — the only module that names glommio types, so the runtime can be swapped
//! (see `../shared/NOTES.md` on glommio 0.9): executor threads, timers, task spawning and
//! listeners.
//!
//! NOTES.md traps handled here or below: (1) the polled-I/O probe — every shard opens its
//! device through `nvme::uring::UringDevice`, which opens the 4 KiB seed file with `DmaFile`
//! first on each executor; (2) `RLIMIT_MEMLOCK` — [`spawn_shard`] sizes `io_memory` with
//! `nvme::uring::fit_io_memory` (raising the limit when it can) and logs the outcome; (3)
//! shared channels — shards exchange nothing through glommio channels (each talks to the
//! master and peers over TCP), so there is no connect ordering to get wrong.

use std::future::Future;
use std::time::Duration;

use glommio::{LocalExecutorBuilder, Placement};

/// A shard's executor thread.
#[derive(Debug)]
pub struct ShardThread(glommio::ExecutorJoinHandle<anyhow::Result<()>>);

impl ShardThread {
    /// Waits for the shard's main future to finish.
    pub fn join(self) -> anyhow::Result<()> {
        self.0
            .join()
            .map_err(|e| anyhow::anyhow!("shard executor failed: {e}"))?
    }
}

/// Starts shard `index` on its own executor thread, pinned to CPU `index` when `pin` and the
/// machine has that CPU, running `main()`.
pub fn spawn_shard<G, F>(
    index: usize,
    pin: bool,
    io_memory: usize,
    main: G,
) -> anyhow::Result<ShardThread>
where
    G: FnOnce() -> F + Send + 'static,
    F: Future<Output = anyhow::Result<()>> + 'static,
{
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    let placement = if pin && index < cpus {
        Placement::Fixed(index)
    } else {
        Placement::Unbound
    };
    let before = nvme::uring::memlock_limit().unwrap_or(0);
    let io = nvme::uring::fit_io_memory(io_memory);
    let after = nvme::uring::memlock_limit().unwrap_or(0);
    tracing::info!(
        shard = index,
        io_memory = io,
        memlock_before = before,
        memlock_after = after,
        "starting shard executor"
    );
    let h = LocalExecutorBuilder::new(placement)
        .name(&format!("ds-shard-{index}"))
        .io_memory(io)
        .spawn(main)
        .map_err(|e| anyhow::anyhow!("start shard {index}: {e}"))?;
    Ok(ShardThread(h))
}

/// Sleeps on the current executor.
pub async fn sleep(d: Duration) {
    glommio::timer::sleep(d).await;
}

/// Runs `fut` as a detached task on the current executor.
pub fn spawn<F: Future<Output = ()> + 'static>(fut: F) {
    glommio::spawn_local(fut).detach();
}

/// A task of the current executor, cancelled (never polled again, its future dropped) when
/// this handle is dropped.
#[derive(Debug)]
#[must_use = "dropping the handle cancels the task"]
pub struct OwnedTask(#[allow(dead_code)] glommio::Task<()>);

/// Runs `fut` as its own task on the current executor until the returned handle is dropped.
/// Its own task, so that only its own wake-ups poll it: glommio 0.9 stores one waker clone
/// per poll of a pending socket or file operation (`Source::collect_rw`) in a task whose
/// reference count is an `i16`, so a pending `accept` polled by a neighbour's timer 50 times
/// a second overflowed it after ~11 minutes (issue 21, item 7).
pub fn spawn_owned<F: Future<Output = ()> + 'static>(fut: F) -> OwnedTask {
    OwnedTask(glommio::spawn_local(fut))
}

/// Yields to other tasks of the executor if this one ran long.
pub async fn yield_if_needed() {
    glommio::yield_if_needed().await;
}

/// Yields to the other tasks of the executor that are ready (one turn), whatever the time.
pub async fn yield_now() {
    futures_lite::future::yield_now().await;
}

/// A bound TCP listener of the current executor.
#[derive(Debug)]
pub struct Listener(glommio::net::TcpListener);

impl Listener {
    /// Binds `addr` (`host:port`; port 0 picks one).
    pub fn bind(addr: &str) -> anyhow::Result<Self> {
        let l = glommio::net::TcpListener::bind(addr)
            .map_err(|e| anyhow::anyhow!("bind {addr}: {e}"))?;
        Ok(Self(l))
    }

    /// The bound address.
    pub fn local_addr(&self) -> anyhow::Result<std::net::SocketAddr> {
        self.0
            .local_addr()
            .map_err(|e| anyhow::anyhow!("listener address: {e}"))
    }

    /// Serves connections with `handler` until the listener fails.
    pub async fn serve<H, F>(
        self,
        acceptor: net::message::handshake::Acceptor,
        cfg: net::transport::TransportConfig,
        max_connections: usize,
        handler: std::rc::Rc<H>,
    ) -> std::io::Result<()>
    where
        H: Fn(net::Message) -> net::transport::Handled<F> + 'static,
        F: Future<Output = Option<net::Message>> + 'static,
    {
        net::glommio_transport::serve_handled(self.0, acceptor, cfg, max_connections, handler).await
    }
}

/// Runs `fut` to completion on a temporary executor on this thread (start-up work such as
/// registering with the master before the shards start).
pub fn block_on<T: Send + 'static>(
    fut_gen: impl FnOnce() -> std::pin::Pin<Box<dyn Future<Output = T>>> + Send + 'static,
) -> anyhow::Result<T> {
    let h = LocalExecutorBuilder::new(Placement::Unbound)
        .name("ds-start")
        .io_memory(512 << 10)
        .spawn(fut_gen)
        .map_err(|e| anyhow::anyhow!("start executor: {e}"))?;
    h.join().map_err(|e| anyhow::anyhow!("start executor: {e}"))
}

/// Runs blocking work (file system calls that io_uring does not cover: `rename`, directory
/// `fsync`) on the executor's blocking thread pool, so the shard keeps serving meanwhile.
pub async fn blocking<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> R {
    glommio::executor().spawn_blocking(f).await
}
