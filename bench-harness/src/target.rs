//! What a benchmark talks to, behind one interface: a RESP server (`host:port`, or
//! `resp://host:port`) or the DS shards of a cluster over the native protocol
//! (`native://MASTER_HOST:PORT`, routed by the master's route table). The runner builds a
//! batch of [`Op`]s and gets one [`Reply`] per operation, with the time it arrived, from either.

use std::sync::Arc;
use std::time::Instant;

use anyhow::bail;

use crate::keys::record_key;
use crate::native::{NativeConn, Routes};
use crate::resp::{Reply, RespConn};

/// The prefix of a native target.
pub const NATIVE_SCHEME: &str = "native://";
/// The optional prefix of a RESP target.
pub const RESP_SCHEME: &str = "resp://";

pub use crate::op::Op;

/// A target, resolved once per phase and shared by its connection tasks.
#[derive(Debug, Clone)]
pub enum Target {
    /// A RESP server at `host:port`.
    Resp(String),
    /// DS shards, routed by the route table of the master given in the target.
    Native(Arc<Routes>),
}

impl Target {
    /// Resolves a target string: `native://MASTER:PORT` fetches the master's route table
    /// (`shard_conns`: see [`Routes::open`]); `resp://HOST:PORT` or a bare `HOST:PORT` is a
    /// RESP server.
    pub async fn open(
        spec: &str,
        shard_conns: usize,
        secret: net::auth::ClusterSecret,
        tls: Option<net::tls::TlsConfig>,
    ) -> anyhow::Result<Self> {
        if let Some(master) = spec.strip_prefix(NATIVE_SCHEME) {
            if master.is_empty() {
                bail!("target {spec:?} names no master address (native://HOST:PORT)");
            }
            return Ok(Target::Native(
                Routes::open(master, shard_conns, secret, tls).await?,
            ));
        }
        let addr = spec.strip_prefix(RESP_SCHEME).unwrap_or(spec);
        if addr.contains("://") {
            bail!(
                "unknown target scheme in {spec:?} (HOST:PORT, resp://HOST:PORT, native://MASTER:PORT)"
            );
        }
        Ok(Target::Resp(addr.to_string()))
    }

    /// Opens one connection task's connection.
    pub async fn connect(&self) -> anyhow::Result<Conn> {
        Ok(match self {
            Target::Resp(addr) => Conn::Resp(RespConn::connect(addr).await?),
            Target::Native(routes) => Conn::Native(NativeConn::new(routes.clone())),
        })
    }
}

/// One connection task's connection to a target.
#[derive(Debug)]
pub enum Conn {
    /// One RESP connection.
    Resp(RespConn),
    /// One client per shard address, opened on first use.
    Native(NativeConn),
}

impl Conn {
    /// Sends `ops` together (one write for RESP; one batch per destination shard, all shards
    /// at once, for native) and returns each operation's reply and the instant it arrived.
    /// An `Err` means the connection failed; an operation that failed is a [`Reply::Error`].
    pub async fn exec(&mut self, ops: &[Op]) -> anyhow::Result<Vec<(Reply, Instant)>> {
        match self {
            Conn::Resp(conn) => exec_resp(conn, ops).await,
            Conn::Native(conn) => Ok(conn.exec(ops).await),
        }
    }
}

async fn exec_resp(conn: &mut RespConn, ops: &[Op]) -> anyhow::Result<Vec<(Reply, Instant)>> {
    for op in ops {
        match op {
            Op::Get(k) => conn.push(&[b"GET", k.as_bytes()]),
            Op::Set(k, v) => conn.push(&[b"SET", k.as_bytes(), v]),
            Op::Scan { first, len } => {
                // RESP has no range scan over YCSB's hashed keys: read a run of consecutive
                // records with one MGET (documented in docs/benchmarks.md).
                let keys: Vec<String> = (*first..first + len).map(record_key).collect();
                let mut args: Vec<&[u8]> = vec![b"MGET"];
                args.extend(keys.iter().map(|k| k.as_bytes()));
                conn.push(&args);
            }
        }
    }
    conn.flush().await?;
    let mut replies = Vec::with_capacity(ops.len());
    for _ in ops {
        let reply = conn.read_reply().await?;
        replies.push((reply, Instant::now()));
    }
    Ok(replies)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn targets_parse_by_scheme() {
        match Target::open("127.0.0.1:6379", 0, Default::default(), None)
            .await
            .unwrap()
        {
            Target::Resp(a) => assert_eq!(a, "127.0.0.1:6379"),
            other => panic!("{other:?}"),
        }
        match Target::open("resp://h:1", 0, Default::default(), None)
            .await
            .unwrap()
        {
            Target::Resp(a) => assert_eq!(a, "h:1"),
            other => panic!("{other:?}"),
        }
        assert!(
            Target::open("native://", 0, Default::default(), None)
                .await
                .is_err()
        );
        assert!(
            Target::open("http://h:1", 0, Default::default(), None)
                .await
                .is_err()
        );
    }
}
