//! Per-connection state the commands read and change: the [`Session`], its `CLIENT REPLY`
//! mode and its transaction state ([`Tx`]: MULTI's queue and WATCH's digests).
//!
//! A leaf of `cmd`: it imports no command module.

use bytes::Bytes;
use net::message::kv::Watch;

use crate::keyspace::Db;
use crate::resp::Protocol;

/// Per-connection state the commands read and change.
#[derive(Debug)]
pub struct Session {
    /// `CLIENT ID`.
    pub id: u64,
    /// `CLIENT SETNAME`.
    pub name: Option<Bytes>,
    /// `CLIENT SETINFO LIB-NAME` / `LIB-VER`.
    pub lib_name: Option<Bytes>,
    /// `CLIENT SETINFO LIB-VER`.
    pub lib_ver: Option<Bytes>,
    /// RESP2 or RESP3 (`HELLO`).
    pub protocol: Protocol,
    /// Authenticated (always, when no password is set).
    pub authenticated: bool,
    /// The user (`AUTH`; `default` until then): its rules are checked before each command.
    pub user: Option<crate::acl::SessionUser>,
    /// The peer address.
    pub peer: String,
    /// When the connection was accepted.
    pub since: std::time::Instant,
    /// MULTI / WATCH state.
    pub tx: Tx,
    /// The database (`SELECT`): every command's operations are moved to it ([`crate::db`]).
    pub db: Db,
    /// Pub/sub subscriptions and mailbox, from the first `(P|S)SUBSCRIBE` on.
    pub pubsub: Option<crate::pubsub::Subscriber>,
    /// `CLIENT REPLY`.
    pub reply_mode: ReplyMode,
    /// `CLIENT TRACKING` ([`crate::tracking`]).
    pub tracking: crate::tracking::SessionTracking,
}

/// `CLIENT REPLY ON|OFF|SKIP`: whether the replies of the next commands are sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ReplyMode {
    /// Replies are sent.
    #[default]
    On,
    /// No reply is sent until `CLIENT REPLY ON`.
    Off,
    /// `CLIENT REPLY SKIP` itself ran (no reply); the next command's reply is dropped too.
    SkipNext,
    /// This command's reply is dropped, then replies are sent again.
    Skip,
}

impl ReplyMode {
    /// Called once after each command: whether its reply is dropped.
    pub fn next_silent(&mut self) -> bool {
        match *self {
            ReplyMode::On => false,
            ReplyMode::Off => true,
            ReplyMode::SkipNext => {
                *self = ReplyMode::Skip;
                true
            }
            ReplyMode::Skip => {
                *self = ReplyMode::On;
                true
            }
        }
    }
}

/// Transaction state of a connection (`cmd::tx` changes it, `crate::exec` runs it).
#[derive(Debug, Default)]
pub struct Tx {
    /// Commands queued since `MULTI` (`None`: not in a transaction).
    queued: Option<Vec<Vec<Bytes>>>,
    /// A command was refused while queuing: `EXEC` aborts.
    dirty: bool,
    /// Watched keys (with their database) and their digests.
    watched: Vec<(Db, Watch)>,
}

impl Tx {
    /// Commands queued since `MULTI`, or `None` outside a transaction.
    pub fn queued_len(&self) -> Option<usize> {
        self.queued.as_ref().map(Vec::len)
    }

    /// The commands queued since `MULTI` (empty outside a transaction).
    pub fn queued(&self) -> &[Vec<Bytes>] {
        self.queued.as_deref().unwrap_or_default()
    }

    /// Whether the connection is between `MULTI` and `EXEC`/`DISCARD`.
    pub fn active(&self) -> bool {
        self.queued.is_some()
    }

    /// Whether a command was refused while queuing (`EXEC` aborts).
    pub fn dirty(&self) -> bool {
        self.dirty
    }

    /// Records a command refused while queuing (unknown, arity, auth).
    pub fn flag(&mut self) {
        if self.active() {
            self.dirty = true;
        }
    }

    /// `MULTI`: an empty queue (the watches stay).
    pub fn begin(&mut self) {
        self.queued = Some(Vec::new());
        self.dirty = false;
    }

    /// Queues a command inside `MULTI`; `false` outside a transaction (nothing queued).
    pub fn queue(&mut self, args: Vec<Bytes>) -> bool {
        match self.queued.as_mut() {
            Some(q) => {
                q.push(args);
                true
            }
            None => false,
        }
    }

    /// Whether `key` of `db` is watched already.
    pub fn watches(&self, db: Db, key: &[u8]) -> bool {
        self.watched.iter().any(|(d, w)| *d == db && w.key == key)
    }

    /// Adds watched keys with their digests.
    pub fn watch(&mut self, watches: impl IntoIterator<Item = (Db, Watch)>) {
        self.watched.extend(watches);
    }

    /// `UNWATCH`.
    pub fn unwatch(&mut self) {
        self.watched.clear();
    }

    /// The queued commands and the watches, for `EXEC`.
    pub fn into_parts(self) -> (Vec<Vec<Bytes>>, Vec<(Db, Watch)>) {
        (self.queued.unwrap_or_default(), self.watched)
    }
}
