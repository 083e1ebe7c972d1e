//! Runs a master process: open the data dir, bind the RPC and admin ports, serve until the
//! shutdown future completes (SIGTERM or Ctrl-C in the binary: [`shutdown_signal`]), then
//! stop accepting and wait for every connection and the timer to finish.

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;

use std::time::Duration;

use crate::admin::serve_admin;
use crate::autoscale::ProvisionerKind;
use crate::config::ServerConfig;
use crate::log::LogError;
use crate::provision::Provisioner;
use crate::provision::hook::CommandHook;
use crate::provision::local::{LocalConfig, LocalSpawner};
use crate::service::{Clock, Master};

/// Why the master could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    /// The data dir could not be opened or recovered.
    #[error("open master data dir: {0}")]
    Open(#[from] LogError),
    /// The cluster secret could not be read or created.
    #[error("cluster secret: {0}")]
    Secret(#[from] crate::config::ConfigError),
    /// The TLS files could not be read or do not make a TLS config.
    #[error("tls: {0}")]
    Tls(crate::config::ConfigError),
    /// The provisioner cannot be set up as configured.
    #[error("provisioner: {0}")]
    Provisioner(String),
    /// A port could not be bound.
    #[error("bind {addr}: {source}")]
    Bind {
        /// The address.
        addr: String,
        /// The OS error.
        source: std::io::Error,
    },
}

async fn bind(addr: &str) -> Result<TcpListener, RunError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| RunError::Bind {
            addr: addr.to_string(),
            source,
        })
}

/// Completes on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(e) => {
                tracing::warn!("cannot listen for SIGTERM: {e}");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Runs the master described by `cfg` until `shutdown` completes. `ready` is called with the
/// bound RPC and admin addresses once both listen (useful with port 0).
pub async fn run(
    cfg: ServerConfig,
    clock: Arc<dyn Clock>,
    shutdown: impl Future<Output = ()>,
    ready: impl FnOnce(std::net::SocketAddr, Option<std::net::SocketAddr>),
) -> Result<(), RunError> {
    let secret = cfg.secret()?;
    let tls = cfg.tls().map_err(RunError::Tls)?;
    let (master, report) = Master::open(cfg.master.clone(), clock)?;
    let rpc = bind(&cfg.listen).await?;
    let admin = match &cfg.admin_listen {
        Some(a) => Some(bind(a).await?),
        None => None,
    };
    let rpc_addr = rpc.local_addr().map_err(|source| RunError::Bind {
        addr: cfg.listen.clone(),
        source,
    })?;
    let admin_addr = admin.as_ref().and_then(|l| l.local_addr().ok());
    tracing::info!(
        %rpc_addr,
        ?admin_addr,
        cluster = %master.cluster_id(),
        replayed = report.replayed,
        "master listening"
    );
    let provisioner = provisioner(&cfg, rpc_addr)?;
    master.set_provisioner(provisioner.clone());
    ready(rpc_addr, admin_addr);
    let (stop_tx, stop_rx) = watch::channel(false);
    let wait = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let admin_task = admin.map(|l| {
        let token = cfg.admin_token.clone().map(|t| Arc::from(t.0));
        tokio::spawn(serve_admin(master.clone(), l, token, wait(stop_rx.clone())))
    });
    let serve = master.clone().serve(
        rpc,
        cfg.transport(secret, tls),
        cfg.max_connections,
        wait(stop_rx),
    );
    let mut serve = std::pin::pin!(serve);
    tokio::select! {
        () = &mut serve => {}
        () = shutdown => {
            tracing::info!("master shutting down");
            let _ = stop_tx.send(true);
            serve.await;
        }
    }
    let _ = stop_tx.send(true);
    if let Some(t) = admin_task {
        let _ = t.await;
    }
    if let Some(p) = provisioner {
        // A local spawner stops the nodes it started.
        let _ = tokio::task::spawn_blocking(move || p.shutdown()).await;
    }
    tracing::info!("master stopped");
    Ok(())
}

/// The provisioner `[scale] provisioner` names, for a master listening on `rpc_addr`.
fn provisioner(
    cfg: &ServerConfig,
    rpc_addr: std::net::SocketAddr,
) -> Result<Option<Arc<dyn Provisioner>>, RunError> {
    let sc = &cfg.master.scale;
    Ok(match sc.provisioner {
        ProvisionerKind::None => None,
        ProvisionerKind::Command => Some(Arc::new(CommandHook {
            expand: sc.expand_command.clone(),
            shrink: sc.shrink_command.clone(),
            timeout: Duration::from_millis(sc.command_timeout_ms),
        })),
        ProvisionerKind::Local => {
            if cfg.cluster_secret.is_some() || cfg.insecure_no_auth {
                return Err(RunError::Provisioner(
                    "the local provisioner hands nodes a secret file: set cluster-secret-file (or none)".into(),
                ));
            }
            let exe = match &sc.local_exe {
                Some(e) => e.clone(),
                None => std::env::current_exe()
                    .map_err(|e| RunError::Provisioner(format!("find the tierkv binary: {e}")))?,
            };
            let secret = cfg
                .cluster_secret_file
                .clone()
                .unwrap_or_else(|| cfg.default_secret_file());
            let master_addr = if rpc_addr.ip().is_unspecified() {
                format!("127.0.0.1:{}", rpc_addr.port())
            } else {
                rpc_addr.to_string()
            };
            let spawner = LocalSpawner::new(LocalConfig {
                exe,
                master_addr,
                cluster_secret_file: secret,
                tls: cfg.tls.clone(),
                data_root: sc
                    .local_data_dir
                    .clone()
                    .unwrap_or_else(|| cfg.master.data_dir.join("elastic")),
                shards: sc.local_shards,
                maxmemory: sc.local_maxmemory,
                max_nodes: sc.max_stores as usize,
                stop_timeout: Duration::from_secs(10),
            });
            let resumed = spawner
                .resume()
                .map_err(|e| RunError::Provisioner(e.to_string()))?;
            if resumed > 0 {
                tracing::info!(
                    resumed,
                    "local provisioner restarted the nodes it had started"
                );
            }
            Some(Arc::new(spawner))
        }
    })
}
