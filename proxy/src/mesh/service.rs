//! The mesh as a running service: binds the listener, registers this proxy with the master
//! and renews, follows the peers the directory lists and serves theirs. Above
//! [`crate::shared`], which holds the [`Mesh`] this drives.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use net::message::handshake::{Acceptor, MESH_VERSION};
use net::message::{Hello, Message, ProxyPeers, ProxyRegister, Role};
use net::transport::Handled;
use net::{ClusterId, NodeId};
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::peer::{Local, handle};
use crate::shared::Shared;

/// Runs the mesh of `shared` until `stop` turns true: binds the listener, registers with
/// the master and renews, follows the peers it lists and serves theirs. Returns at once
/// when no mesh listener is configured.
pub async fn run(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let mesh = shared.mesh.clone();
    let Some(listen) = mesh.cfg.listen.clone() else {
        return;
    };
    let listener = match tokio::net::TcpListener::bind(&listen).await {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("mesh listener {listen}: {e}; this proxy works alone");
            return;
        }
    };
    let advertise = match (&mesh.cfg.advertise, listener.local_addr()) {
        (Some(a), _) => a.clone(),
        (None, Ok(a)) => a.to_string(),
        (None, Err(e)) => {
            tracing::error!("mesh listener address: {e}; this proxy works alone");
            return;
        }
    };
    let mut listener = Some(listener);
    let mut server = None;
    let mut renew = mesh.cfg.ttl / 3;
    let mut failing = false;
    loop {
        let registered = tokio::select! {
            _ = stop.changed() => break,
            r = register(&shared, &advertise) => r,
        };
        match registered {
            Ok((peers, cluster)) => {
                if failing {
                    tracing::info!("mesh registration with the master works again");
                }
                failing = false;
                if let Some(l) = listener.take() {
                    let s = shared.clone();
                    server = Some(tokio::spawn(serve(s, l, cluster, stop.clone())));
                }
                let transport = &shared.cfg.router.transport;
                let hello = Hello::new(Role::Proxy {}, cluster, NodeId(mesh.id.0));
                mesh.follow(&peers, hello, transport);
                renew = Duration::from_millis(u64::from(peers.ttl_ms) / 3);
            }
            Err(e) => {
                if !failing {
                    tracing::warn!("mesh registration failed: {e}");
                }
                failing = true;
                mesh.stats.register_failures.fetch_add(1, Ordering::Relaxed);
            }
        }
        tokio::select! {
            _ = stop.changed() => break,
            () = tokio::time::sleep(renew.max(Duration::from_millis(100))) => {}
        }
    }
    mesh.clear();
    if let Some(s) = server {
        let _ = s.await;
    }
}

/// Registers (renews) this proxy with the first master that speaks the mesh.
async fn register(shared: &Shared, advertise: &str) -> Result<(ProxyPeers, ClusterId), String> {
    let mesh = &shared.mesh;
    let ttl_ms = u32::try_from(mesh.cfg.ttl.as_millis()).unwrap_or(u32::MAX);
    let msg = Message::ProxyRegister(ProxyRegister {
        proxy_id: mesh.id,
        peer_addr: advertise.to_string(),
        ttl_ms,
    });
    match shared.router.call_master(msg, MESH_VERSION).await? {
        (Message::ProxyPeers(p), cluster) => Ok((p, cluster)),
        (other, _) => Err(format!("unexpected {}", other.name())),
    }
}

/// Connections the mesh listener serves at once.
const CONNECTIONS_MAX: usize = 1024;

type Ready = std::future::Ready<Option<Message>>;

/// Serves peers on `listener` until `stop` turns true.
pub(crate) async fn serve(
    shared: Arc<Shared>,
    listener: TcpListener,
    cluster: ClusterId,
    mut stop: watch::Receiver<bool>,
) {
    let acceptor = Acceptor {
        role: Role::Proxy {},
        cluster_id: cluster,
        node_id: NodeId(shared.mesh.id().0),
    };
    let cfg = shared.cfg.router.transport.clone();
    let s = shared.clone();
    let handler = Arc::new(move |m: Message| {
        s.mesh.stats.received.fetch_add(1, Ordering::Relaxed);
        let local = Local {
            hub: &s.pubsub,
            waiters: &s.router.blocking,
            pause: &s.pause,
            tracker: &s.tracker,
            clients: &s.client_table,
        };
        Handled::<Ready>::Now(Some(handle(local, m, &s.mesh.stats)))
    });
    let stopped = async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    net::tokio_transport::serve_handled(listener, acceptor, cfg, CONNECTIONS_MAX, handler, stopped)
        .await;
}
