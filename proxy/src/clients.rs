//! The connected clients of this proxy, for `CLIENT LIST`, `CLIENT INFO` and `CLIENT KILL`.
//!
//! Each connection registers a [`ClientInfo`] when it is accepted and publishes its state into
//! it once per batch (a few relaxed stores and one uncontended lock: never per command); the
//! guard it holds unregisters it when the connection ends. `CLIENT KILL` marks the client and
//! wakes its connection, which closes at once.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use bytes::Bytes;
use tokio::sync::Notify;

/// What `CLIENT LIST` shows of a connection that only the connection knows.
#[derive(Debug, Default, Clone)]
pub struct Names {
    /// `CLIENT SETNAME`.
    pub name: Option<Bytes>,
    /// `CLIENT SETINFO LIB-NAME`.
    pub lib_name: Option<Bytes>,
    /// `CLIENT SETINFO LIB-VER`.
    pub lib_ver: Option<Bytes>,
    /// The last command run (`client|list` style).
    pub cmd: String,
    /// The user it authenticated as (empty: `default`).
    pub user: Bytes,
}

/// One connected client, as its connection last published it.
#[derive(Debug)]
pub struct ClientInfo {
    /// `CLIENT ID`.
    pub id: u64,
    /// The peer address.
    pub addr: String,
    /// The proxy's address of the connection.
    pub laddr: String,
    since: Instant,
    /// Milliseconds after `since` of the last command.
    last_ms: AtomicU64,
    names: Mutex<Names>,
    db: AtomicU8,
    resp: AtomicU8,
    qbuf: AtomicUsize,
    qbuf_free: AtomicUsize,
    obl: AtomicUsize,
    subs: [AtomicUsize; 3],
    /// Commands queued in `MULTI`, or -1 outside one.
    multi: AtomicI64,
    killed: AtomicBool,
    /// Wakes the connection when it is killed.
    pub kill: Notify,
}

/// What a connection publishes after a batch.
#[derive(Debug, Clone, Copy, Default)]
pub struct State {
    /// The selected database.
    pub db: u8,
    /// 2 or 3.
    pub resp: u8,
    /// Bytes of the receive buffer holding unparsed input.
    pub qbuf: usize,
    /// Free bytes of the receive buffer.
    pub qbuf_free: usize,
    /// Bytes of pending output.
    pub obl: usize,
    /// Channel, pattern and shard-channel subscriptions.
    pub subs: [usize; 3],
    /// Commands queued in `MULTI`, or -1.
    pub multi: i64,
}

impl ClientInfo {
    /// Publishes the connection's state after a batch (and marks it active now).
    pub fn publish(&self, s: State) {
        let ms = u64::try_from(self.since.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
        self.db.store(s.db, Ordering::Relaxed);
        self.resp.store(s.resp, Ordering::Relaxed);
        self.qbuf.store(s.qbuf, Ordering::Relaxed);
        self.qbuf_free.store(s.qbuf_free, Ordering::Relaxed);
        self.obl.store(s.obl, Ordering::Relaxed);
        for (a, v) in self.subs.iter().zip(s.subs) {
            a.store(v, Ordering::Relaxed);
        }
        self.multi.store(s.multi, Ordering::Relaxed);
    }

    /// Updates the names and the last command.
    pub fn names(&self) -> MutexGuard<'_, Names> {
        self.names.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Publishes the pending output alone (0 once a batch's replies are written).
    pub fn publish_obl(&self, obl: usize) {
        self.obl.store(obl, Ordering::Relaxed);
    }

    /// Publishes the receive buffer's size alone (given back while idle).
    pub fn publish_qbuf(&self, qbuf: usize, qbuf_free: usize) {
        self.qbuf.store(qbuf, Ordering::Relaxed);
        self.qbuf_free.store(qbuf_free, Ordering::Relaxed);
    }

    /// Marks the command running now as `request_len` bytes of the receive buffer (what
    /// `qbuf` shows while a command runs: its own request).
    pub fn running(&self, request_len: usize) {
        let total = self.qbuf.load(Ordering::Relaxed) + self.qbuf_free.load(Ordering::Relaxed);
        self.qbuf.store(request_len, Ordering::Relaxed);
        self.qbuf_free
            .store(total.saturating_sub(request_len), Ordering::Relaxed);
    }

    /// Killed by `CLIENT KILL`.
    pub fn is_killed(&self) -> bool {
        self.killed.load(Ordering::Relaxed)
    }

    fn kill(&self) {
        self.killed.store(true, Ordering::Relaxed);
        self.kill.notify_one();
    }

    /// Subscribed to anything (`CLIENT LIST TYPE pubsub`).
    pub fn is_pubsub(&self) -> bool {
        self.subs.iter().any(|s| s.load(Ordering::Relaxed) > 0)
    }

    /// Its `CLIENT LIST` line (Redis 7's fields; memory figures are the proxy's buffers).
    pub fn line(&self, cmd_override: Option<&str>) -> String {
        let names = self.names().clone();
        let s = |b: &Option<Bytes>| {
            b.as_deref()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default()
        };
        let now = u64::try_from(self.since.elapsed().as_millis()).unwrap_or(u64::MAX);
        let idle = now.saturating_sub(self.last_ms.load(Ordering::Relaxed)) / 1000;
        let [sub, psub, ssub] = [0, 1, 2].map(|i| self.subs[i].load(Ordering::Relaxed));
        let flags = match (self.is_pubsub(), self.multi.load(Ordering::Relaxed) >= 0) {
            (true, _) => "P",
            (false, true) => "x",
            (false, false) => "N",
        };
        let qbuf = self.qbuf.load(Ordering::Relaxed);
        let qbuf_free = self.qbuf_free.load(Ordering::Relaxed);
        let obl = self.obl.load(Ordering::Relaxed);
        format!(
            "id={} addr={} laddr={} fd=0 name={} age={} idle={idle} flags={flags} db={} \
             sub={sub} psub={psub} ssub={ssub} multi={} qbuf={qbuf} qbuf-free={qbuf_free} \
             argv-mem=0 multi-mem=0 rbs={} rbp=0 obl={obl} oll=0 omem={obl} tot-mem={} \
             events=r cmd={} user={} redir=-1 resp={} lib-name={} lib-ver={}",
            self.id,
            self.addr,
            self.laddr,
            s(&names.name),
            self.since.elapsed().as_secs(),
            self.db.load(Ordering::Relaxed),
            self.multi.load(Ordering::Relaxed),
            qbuf + qbuf_free,
            qbuf + qbuf_free + obl,
            cmd_override.unwrap_or(if names.cmd.is_empty() {
                "NULL"
            } else {
                &names.cmd
            }),
            if names.user.is_empty() {
                "default".into()
            } else {
                String::from_utf8_lossy(&names.user)
            },
            self.resp.load(Ordering::Relaxed),
            s(&names.lib_name),
            s(&names.lib_ver),
        )
    }
}

/// Which clients a `CLIENT LIST` or `CLIENT KILL` names.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Filter {
    /// `ID id…`.
    pub ids: Option<Vec<u64>>,
    /// `TYPE pubsub` (`Some(true)`) or `TYPE normal` (`Some(false)`); replicas and masters
    /// never connect to a proxy, so `TYPE replica|master` matches no one (`ids = []`).
    pub pubsub: Option<bool>,
    /// `ADDR ip:port`.
    pub addr: Option<String>,
    /// `LADDR ip:port`.
    pub laddr: Option<String>,
    /// `USER name` (every client is `default`).
    pub user: Option<String>,
    /// The client running the command, left alone by `SKIPME yes` (the default).
    pub skip: Option<u64>,
}

impl Filter {
    fn matches(&self, c: &ClientInfo) -> bool {
        self.ids.as_ref().is_none_or(|ids| ids.contains(&c.id))
            && self.pubsub.is_none_or(|p| p == c.is_pubsub())
            && self.addr.as_ref().is_none_or(|a| *a == c.addr)
            && self.laddr.as_ref().is_none_or(|a| *a == c.laddr)
            && self.user.as_ref().is_none_or(|u| u == "default")
            && self.skip != Some(c.id)
    }
}

/// The table of connected clients.
#[derive(Debug, Default)]
pub struct Clients {
    by_id: Mutex<BTreeMap<u64, Arc<ClientInfo>>>,
}

/// A registration; dropping it (the connection ended) unregisters the client.
#[derive(Debug)]
pub struct Registration<'a> {
    table: &'a Clients,
    /// The client's published state.
    pub info: Arc<ClientInfo>,
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        self.table.lock().remove(&self.info.id);
    }
}

impl Clients {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<u64, Arc<ClientInfo>>> {
        self.by_id.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a connection.
    pub fn register(&self, id: u64, addr: String, laddr: String) -> Registration<'_> {
        let info = Arc::new(ClientInfo {
            id,
            addr,
            laddr,
            since: Instant::now(),
            last_ms: AtomicU64::new(0),
            names: Mutex::default(),
            db: AtomicU8::new(0),
            resp: AtomicU8::new(2),
            qbuf: AtomicUsize::new(0),
            qbuf_free: AtomicUsize::new(0),
            obl: AtomicUsize::new(0),
            subs: Default::default(),
            multi: AtomicI64::new(-1),
            killed: AtomicBool::new(false),
            kill: Notify::new(),
        });
        self.lock().insert(id, Arc::clone(&info));
        Registration { table: self, info }
    }

    /// The clients `filter` names, in id order.
    pub fn matching(&self, filter: &Filter) -> Vec<Arc<ClientInfo>> {
        self.lock()
            .values()
            .filter(|c| filter.matches(c))
            .cloned()
            .collect()
    }

    /// The client with `id`.
    pub fn get(&self, id: u64) -> Option<Arc<ClientInfo>> {
        self.lock().get(&id).cloned()
    }

    /// Kills the clients `filter` names; how many.
    pub fn kill(&self, filter: &Filter) -> usize {
        let victims = self.matching(filter);
        victims.iter().for_each(|c| c.kill());
        victims.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_select_by_id_type_and_address_and_skip_the_caller() {
        let t = Clients::default();
        let a = t.register(1, "1.1.1.1:1".into(), "l:1".into());
        let b = t.register(2, "2.2.2.2:2".into(), "l:1".into());
        b.info.publish(State {
            subs: [1, 0, 0],
            multi: -1,
            resp: 2,
            ..State::default()
        });
        let ids = |f: &Filter| t.matching(f).iter().map(|c| c.id).collect::<Vec<_>>();
        assert_eq!(ids(&Filter::default()), vec![1, 2]);
        let pubsub = Filter {
            pubsub: Some(true),
            ..Filter::default()
        };
        assert_eq!(ids(&pubsub), vec![2]);
        let by_addr = Filter {
            addr: Some("1.1.1.1:1".into()),
            ..Filter::default()
        };
        assert_eq!(ids(&by_addr), vec![1]);
        let skip = Filter {
            skip: Some(1),
            ..Filter::default()
        };
        assert_eq!(t.kill(&skip), 1);
        assert!(b.info.is_killed() && !a.info.is_killed());
        drop(b);
        assert_eq!(ids(&Filter::default()), vec![1]);
    }

    #[test]
    fn a_line_has_redis_fields_in_redis_order() {
        let t = Clients::default();
        let a = t.register(7, "127.0.0.1:5".into(), "127.0.0.1:6379".into());
        a.info.names().name = Some(Bytes::from_static(b"me"));
        a.info.publish(State {
            db: 3,
            resp: 3,
            qbuf: 26,
            qbuf_free: 100,
            multi: 2,
            ..State::default()
        });
        let line = a.info.line(Some("client|list"));
        assert!(
            line.starts_with("id=7 addr=127.0.0.1:5 laddr=127.0.0.1:6379 fd=0 name=me age=0 idle=0 flags=x db=3 sub=0 psub=0 ssub=0 multi=2 qbuf=26 qbuf-free=100 "),
            "{line}"
        );
        assert!(
            line.contains(" cmd=client|list user=default redir=-1 resp=3"),
            "{line}"
        );
    }
}
