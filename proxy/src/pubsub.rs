//! Pub/sub: the channels, patterns and shard channels the clients of this proxy subscribe
//! to, and delivery of published messages to their mailboxes.
//!
//! A subscribed connection owns a [`Subscriber`]: its subscriptions and the receiving end of
//! its mailbox. Publishing looks the channel up (and matches it against every pattern, as
//! Redis does) under one short lock, then queues the message in each receiver's mailbox; the
//! connection task writes it out between batches. A mailbox is bounded by bytes
//! (`client-output-buffer-limit pubsub`, 32 MiB hard, as Redis's default): a subscriber that
//! does not read is disconnected instead of growing the proxy's memory. Dropping the
//! `Subscriber` (the connection ends) removes every subscription.
//!
//! Scope: this hub delivers to the subscribers connected to this proxy; the mesh
//! ([`crate::mesh`]) carries `PUBLISH` to the hubs of the other proxies, as Redis Cluster's
//! bus carries it to every node (`docs/compat.md`, "Pub/sub").

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::resp::Reply;

/// Redis's default hard limit of a pub/sub client's output buffer.
pub const MAILBOX_BYTES: usize = 32 << 20;
/// What a queued message costs beyond its bytes (bookkeeping, frame headers).
const MESSAGE_OVERHEAD: usize = 64;

/// The three namespaces of subscriptions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// `SUBSCRIBE`: an exact channel.
    Channel,
    /// `PSUBSCRIBE`: a glob pattern over channels.
    Pattern,
    /// `SSUBSCRIBE`: a shard channel (its own namespace, `SPUBLISH`).
    Shard,
}

impl Kind {
    /// The reply kind of a subscription (`subscribe`, `psubscribe`, `ssubscribe`).
    pub fn subscribe_word(self) -> &'static str {
        match self {
            Kind::Channel => "subscribe",
            Kind::Pattern => "psubscribe",
            Kind::Shard => "ssubscribe",
        }
    }

    /// The reply kind of an unsubscription.
    pub fn unsubscribe_word(self) -> &'static str {
        match self {
            Kind::Channel => "unsubscribe",
            Kind::Pattern => "punsubscribe",
            Kind::Shard => "sunsubscribe",
        }
    }
}

/// A published message as one subscriber receives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The pattern that matched (`pmessage`), if any.
    pub pattern: Option<Bytes>,
    /// The channel it was published to.
    pub channel: Bytes,
    /// The payload.
    pub payload: Bytes,
    /// Published with `SPUBLISH`.
    pub shard: bool,
    /// A `MONITOR` line (`payload`), not a published message.
    pub monitor: bool,
    /// A client-side caching push ([`crate::tracking`]), not a published message.
    pub tracking: Option<crate::tracking::push::Push>,
}

impl Message {
    /// A client-side caching push for one client.
    pub fn tracking(push: crate::tracking::push::Push) -> Self {
        Self {
            pattern: None,
            channel: Bytes::new(),
            payload: Bytes::new(),
            shard: false,
            monitor: false,
            tracking: Some(push),
        }
    }

    /// The frame a connection in protocol `proto` writes (`subscribed`: it is in pub/sub
    /// mode), or none: a tracking push a RESP2 connection cannot receive
    /// ([`crate::tracking::push::Push::frame`]).
    pub fn frame(&self, proto: crate::resp::Protocol, subscribed: bool) -> Option<Reply> {
        match &self.tracking {
            Some(push) => push.frame(proto, subscribed),
            None => Some(self.reply()),
        }
    }

    /// The frame Redis sends: `message`, `pmessage` or `smessage` (a push in RESP3).
    pub fn reply(&self) -> Reply {
        if self.monitor {
            return Reply::Status(String::from_utf8_lossy(&self.payload).into_owned());
        }
        let mut items = Vec::with_capacity(4);
        match (&self.pattern, self.shard) {
            (Some(p), _) => {
                items.push(Reply::Bulk(Bytes::from_static(b"pmessage")));
                items.push(Reply::Bulk(p.clone()));
            }
            (None, true) => items.push(Reply::Bulk(Bytes::from_static(b"smessage"))),
            (None, false) => items.push(Reply::Bulk(Bytes::from_static(b"message"))),
        }
        items.push(Reply::Bulk(self.channel.clone()));
        items.push(Reply::Bulk(self.payload.clone()));
        Reply::Push(items)
    }

    fn cost(&self) -> usize {
        MESSAGE_OVERHEAD
            + self.channel.len()
            + self.payload.len()
            + self.pattern.as_ref().map_or(0, Bytes::len)
            + self
                .tracking
                .as_ref()
                .map_or(0, crate::tracking::push::Push::cost)
    }
}

/// The sending side of a subscriber's mailbox, held by the hub.
#[derive(Debug, Clone)]
struct Mailbox {
    /// Messages; `None` marks the overflow (the connection wakes up to close).
    tx: mpsc::UnboundedSender<Option<Message>>,
    state: Arc<MailboxState>,
}

#[derive(Debug, Default)]
struct MailboxState {
    /// Bytes queued and not yet taken by the connection.
    queued: AtomicUsize,
    /// The limit was reached: the connection is to be closed.
    overflow: AtomicBool,
}

/// What posting to a mailbox did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Posted {
    /// Queued.
    Queued,
    /// Not queued: the subscriber is gone or already overflowing.
    Dropped,
    /// Not queued: this message crossed the limit (the subscriber is to be disconnected).
    Overflowed,
}

impl Mailbox {
    /// Queues `m`, unless that would take the mailbox past [`MAILBOX_BYTES`].
    fn post(&self, m: Message) -> Posted {
        if self.state.overflow.load(Ordering::Relaxed) {
            return Posted::Dropped;
        }
        let cost = m.cost();
        let before = self.state.queued.fetch_add(cost, Ordering::Relaxed);
        if before + cost > MAILBOX_BYTES {
            self.state.queued.fetch_sub(cost, Ordering::Relaxed);
            if self.state.overflow.swap(true, Ordering::Relaxed) {
                return Posted::Dropped;
            }
            let _ = self.tx.send(None);
            return Posted::Overflowed;
        }
        match self.tx.send(Some(m)) {
            Ok(()) => Posted::Queued,
            Err(_) => Posted::Dropped,
        }
    }
}

type Subscribers = HashMap<Bytes, HashMap<u64, Mailbox>>;

#[derive(Debug, Default)]
struct Registry {
    channels: Subscribers,
    patterns: Subscribers,
    shard: Subscribers,
    /// `MONITOR` clients.
    monitors: HashMap<u64, Mailbox>,
    /// Every mailbox by client id (tracking pushes and redirections, [`Hub::post_to`]).
    mailboxes: HashMap<u64, Mailbox>,
}

impl Registry {
    fn of(&mut self, kind: Kind) -> &mut Subscribers {
        match kind {
            Kind::Channel => &mut self.channels,
            Kind::Pattern => &mut self.patterns,
            Kind::Shard => &mut self.shard,
        }
    }
}

/// Counters of the hub (`INFO stats`).
#[derive(Debug, Default)]
pub struct HubStats {
    /// Messages queued to subscribers.
    pub delivered: AtomicUsize,
    /// Subscribers disconnected because their mailbox was full.
    pub overflows: AtomicUsize,
    /// Keyspace notification events published ([`crate::notify`]).
    pub keyspace_events: AtomicUsize,
}

/// Every subscription of this proxy.
#[derive(Debug, Default)]
pub struct Hub {
    registry: Mutex<Registry>,
    /// `MONITOR` clients now (read without the lock on every command).
    monitoring: AtomicUsize,
    /// Counters.
    pub stats: HubStats,
}

impl Hub {
    fn lock(&self) -> MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Delivers `payload` published to `channel` (`shard`: with `SPUBLISH`); the number of
    /// subscribers that received it (a pattern subscriber counts once per matching pattern,
    /// as in Redis).
    pub fn publish(&self, channel: &Bytes, payload: &Bytes, shard: bool) -> usize {
        let mut sent = 0;
        let reg = self.lock();
        let exact = if shard { &reg.shard } else { &reg.channels };
        for mailbox in exact.get(channel).into_iter().flat_map(HashMap::values) {
            let m = Message {
                pattern: None,
                channel: channel.clone(),
                payload: payload.clone(),
                shard,
                monitor: false,
                tracking: None,
            };
            sent += usize::from(self.post(mailbox, m));
        }
        if !shard {
            for (pattern, subs) in &reg.patterns {
                if !crate::glob::matches(pattern, channel) {
                    continue;
                }
                for mailbox in subs.values() {
                    let m = Message {
                        pattern: Some(pattern.clone()),
                        channel: channel.clone(),
                        payload: payload.clone(),
                        shard,
                        monitor: false,
                        tracking: None,
                    };
                    sent += usize::from(self.post(mailbox, m));
                }
            }
        }
        sent
    }

    /// Whether any client is in `MONITOR` mode.
    pub fn monitoring(&self) -> bool {
        self.monitoring.load(Ordering::Relaxed) > 0
    }

    /// Sends `line` to every `MONITOR` client.
    pub fn feed_monitors(&self, line: &Bytes) {
        let reg = self.lock();
        for mailbox in reg.monitors.values() {
            let m = Message {
                pattern: None,
                channel: Bytes::new(),
                payload: line.clone(),
                shard: false,
                monitor: true,
                tracking: None,
            };
            self.post(mailbox, m);
        }
    }

    /// Queues `m` to client `id`'s mailbox; false when it has none (it never subscribed,
    /// tracked or spoke RESP3, or it is gone) or the message was not queued.
    pub fn post_to(&self, id: u64, m: Message) -> bool {
        let reg = self.lock();
        match reg.mailboxes.get(&id) {
            Some(mailbox) => self.post(mailbox, m),
            None => false,
        }
    }

    fn post(&self, mailbox: &Mailbox, m: Message) -> bool {
        match mailbox.post(m) {
            Posted::Queued => {
                self.stats.delivered.fetch_add(1, Ordering::Relaxed);
                true
            }
            Posted::Overflowed => {
                self.stats.overflows.fetch_add(1, Ordering::Relaxed);
                false
            }
            Posted::Dropped => false,
        }
    }

    /// `PUBSUB CHANNELS` / `SHARDCHANNELS`: channels with at least one subscriber, matching
    /// `pattern` when given.
    pub fn channels(&self, kind: Kind, pattern: Option<&[u8]>) -> Vec<Bytes> {
        let mut reg = self.lock();
        reg.of(kind)
            .keys()
            .filter(|c| pattern.is_none_or(|p| crate::glob::matches(p, c)))
            .cloned()
            .collect()
    }

    /// `PUBSUB NUMSUB` / `SHARDNUMSUB`: subscribers of `channel`.
    pub fn numsub(&self, kind: Kind, channel: &[u8]) -> usize {
        self.lock().of(kind).get(channel).map_or(0, HashMap::len)
    }

    /// Channels of `kind` with at least one subscriber (`INFO stats`).
    pub fn channel_count(&self, kind: Kind) -> usize {
        self.lock().of(kind).len()
    }

    /// `PUBSUB NUMPAT`: distinct patterns subscribed to.
    pub fn numpat(&self) -> usize {
        self.lock().patterns.len()
    }

    /// A subscriber for client `id` (no subscriptions yet).
    pub fn subscriber(self: &Arc<Self>, id: u64) -> Subscriber {
        let (tx, rx) = mpsc::unbounded_channel();
        let mailbox = Mailbox {
            tx,
            state: Arc::default(),
        };
        self.lock().mailboxes.insert(id, mailbox.clone());
        Subscriber {
            hub: Arc::clone(self),
            id,
            mailbox,
            rx,
            subs: [BTreeSet::new(), BTreeSet::new(), BTreeSet::new()],
        }
    }
}

fn slot(kind: Kind) -> usize {
    match kind {
        Kind::Channel => 0,
        Kind::Pattern => 1,
        Kind::Shard => 2,
    }
}

/// One client's subscriptions and mailbox; dropping it unsubscribes from everything.
#[derive(Debug)]
pub struct Subscriber {
    hub: Arc<Hub>,
    id: u64,
    mailbox: Mailbox,
    rx: mpsc::UnboundedReceiver<Option<Message>>,
    subs: [BTreeSet<Bytes>; 3],
}

impl Subscriber {
    /// Puts the client in `MONITOR` mode: every command this proxy runs from now on is sent
    /// to it ([`Hub::feed_monitors`]).
    pub fn monitor(&mut self) {
        let mut reg = self.hub.lock();
        if reg.monitors.insert(self.id, self.mailbox.clone()).is_none() {
            self.hub.monitoring.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Subscribes to `name`; the client's count afterwards (channels and patterns together;
    /// shard channels counted apart, as Redis does).
    pub fn subscribe(&mut self, kind: Kind, name: &Bytes) -> usize {
        if self.subs[slot(kind)].insert(name.clone()) {
            self.hub
                .lock()
                .of(kind)
                .entry(name.clone())
                .or_default()
                .insert(self.id, self.mailbox.clone());
        }
        self.count(kind)
    }

    /// Unsubscribes from `name` (subscribed or not); the client's count afterwards.
    pub fn unsubscribe(&mut self, kind: Kind, name: &Bytes) -> usize {
        if self.subs[slot(kind)].remove(name) {
            let mut reg = self.hub.lock();
            let subs = reg.of(kind);
            if let Some(m) = subs.get_mut(name) {
                m.remove(&self.id);
                if m.is_empty() {
                    subs.remove(name);
                }
            }
        }
        self.count(kind)
    }

    /// What this client is subscribed to, of `kind`, in name order.
    pub fn names(&self, kind: Kind) -> Vec<Bytes> {
        self.subs[slot(kind)].iter().cloned().collect()
    }

    /// Subscriptions of `kind` alone (`CLIENT LIST` `sub=`, `psub=`, `ssub=`).
    pub fn names_len(&self, kind: Kind) -> usize {
        self.subs[slot(kind)].len()
    }

    /// The count a (un)subscribe reply of `kind` reports.
    pub fn count(&self, kind: Kind) -> usize {
        match kind {
            Kind::Channel | Kind::Pattern => self.subs[0].len() + self.subs[1].len(),
            Kind::Shard => self.subs[2].len(),
        }
    }

    /// Subscribed to anything (RESP2 connections are then in pub/sub mode).
    pub fn active(&self) -> bool {
        self.subs.iter().any(|s| !s.is_empty())
    }

    /// The mailbox overflowed: the connection must close.
    pub fn overflowed(&self) -> bool {
        self.mailbox.state.overflow.load(Ordering::Relaxed)
    }

    /// The next queued message (waits for one); `None` once the mailbox overflowed (the
    /// connection is to be closed).
    pub async fn next(&mut self) -> Option<Message> {
        let m = self.rx.recv().await.flatten()?;
        self.taken(&m);
        Some(m)
    }

    /// A queued message if there is one (`None` also after an overflow).
    pub fn try_next(&mut self) -> Option<Message> {
        let m = self.rx.try_recv().ok().flatten()?;
        self.taken(&m);
        Some(m)
    }

    fn taken(&self, m: &Message) {
        self.mailbox
            .state
            .queued
            .fetch_sub(m.cost(), Ordering::Relaxed);
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        let mut reg = self.hub.lock();
        reg.mailboxes.remove(&self.id);
        if reg.monitors.remove(&self.id).is_some() {
            self.hub.monitoring.fetch_sub(1, Ordering::Relaxed);
        }
        for kind in [Kind::Channel, Kind::Pattern, Kind::Shard] {
            let subs = reg.of(kind);
            for name in &self.subs[slot(kind)] {
                if let Some(m) = subs.get_mut(name) {
                    m.remove(&self.id);
                    if m.is_empty() {
                        subs.remove(name);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    #[test]
    fn a_message_reaches_channel_and_pattern_subscribers_once_each() {
        let hub = Arc::new(Hub::default());
        let mut a = hub.subscriber(1);
        let mut c = hub.subscriber(2);
        assert_eq!(a.subscribe(Kind::Channel, &b("foo.bar")), 1);
        assert_eq!(a.subscribe(Kind::Pattern, &b("foo.*")), 2);
        assert_eq!(c.subscribe(Kind::Pattern, &b("f*")), 1);
        assert_eq!(hub.publish(&b("foo.bar"), &b("hi"), false), 3);
        let m = a.try_next().expect("a message");
        assert_eq!((m.pattern, m.channel), (None, b("foo.bar")));
        let m = a.try_next().expect("a pmessage");
        assert_eq!(m.pattern, Some(b("foo.*")));
        assert!(a.try_next().is_none());
        assert_eq!(c.try_next().and_then(|m| m.pattern), Some(b("f*")));
        assert_eq!(hub.publish(&b("bar"), &b("x"), false), 0);
    }

    #[test]
    fn shard_channels_are_their_own_namespace() {
        let hub = Arc::new(Hub::default());
        let mut a = hub.subscriber(1);
        assert_eq!(a.subscribe(Kind::Shard, &b("ch")), 1);
        assert_eq!(a.subscribe(Kind::Channel, &b("ch")), 1);
        assert_eq!(hub.publish(&b("ch"), &b("x"), true), 1);
        assert!(a.try_next().expect("smessage").shard);
        assert!(a.try_next().is_none());
        assert_eq!(a.unsubscribe(Kind::Shard, &b("ch")), 0);
        assert_eq!(hub.publish(&b("ch"), &b("x"), true), 0);
    }

    #[test]
    fn dropping_a_subscriber_removes_every_subscription() {
        let hub = Arc::new(Hub::default());
        let mut a = hub.subscriber(1);
        let mut c = hub.subscriber(2);
        a.subscribe(Kind::Channel, &b("x"));
        a.subscribe(Kind::Pattern, &b("p*"));
        c.subscribe(Kind::Channel, &b("x"));
        drop(a);
        assert_eq!(hub.numsub(Kind::Channel, b"x"), 1);
        assert_eq!(hub.numpat(), 0);
        drop(c);
        assert!(hub.channels(Kind::Channel, None).is_empty());
    }

    #[test]
    fn a_subscriber_that_does_not_read_overflows_instead_of_growing() {
        let hub = Arc::new(Hub::default());
        let mut a = hub.subscriber(1);
        a.subscribe(Kind::Channel, &b("x"));
        let payload = Bytes::from(vec![0u8; 1 << 20]);
        let mut delivered = 0;
        for _ in 0..64 {
            delivered += hub.publish(&b("x"), &payload, false);
        }
        assert!(delivered < 32, "delivered {delivered} MiB");
        assert!(a.overflowed());
        assert_eq!(hub.stats.overflows.load(Ordering::Relaxed), 1);
        while a.try_next().is_some() {}
        assert_eq!(a.mailbox.state.queued.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn counts_are_per_client_and_unsubscribing_an_unknown_name_is_harmless() {
        let hub = Arc::new(Hub::default());
        let mut a = hub.subscriber(1);
        assert_eq!(a.subscribe(Kind::Channel, &b("c")), 1);
        assert_eq!(a.subscribe(Kind::Channel, &b("c")), 1);
        assert_eq!(a.unsubscribe(Kind::Channel, &b("nope")), 1);
        assert_eq!(a.names(Kind::Channel), vec![b("c")]);
        assert!(a.active());
        assert_eq!(a.unsubscribe(Kind::Channel, &b("c")), 0);
        assert!(!a.active());
    }
}
