//! Byte-level fixtures: one frame per message kind, committed under `tests/fixtures/v1/` (the
//! messages of protocol version 1, whose layouts version 2 keeps) and `tests/fixtures/v2/`
//! (what version 2 added: the authenticated handshake) and `tests/fixtures/v3/` (what version 3
//! added: the shard heartbeat and probe reports) and `tests/fixtures/v4/` (the route-table
//! watch) and `tests/fixtures/v5/` (the proxy directory and mesh) and `tests/fixtures/v6/`
//! (the cluster-wide `maxmemory` and memory reports). A change that alters the bytes of an
//! existing message breaks this test — which is the point: a layout change needs a new
//! protocol version (`docs/format/wire.md` §6). New messages add new fixtures with
//! `TIERKV_BLESS=1`.
#![allow(clippy::unwrap_used)] // a test fails by panicking

use std::path::PathBuf;

use bytes::{Bytes, BytesMut};
use net::auth::{Nonce, Proof};
use net::message::handshake::{Auth, AuthAck, Challenge, Hello, HelloAck, Magic, Role};
use net::message::kv::{
    Cond, ExpireCond, ExpiredKey, Expiry, KvOp, KvRequest, KvResponse, KvWrite, OpResult, WriteOp,
};
use net::message::*;
use net::{ClusterId, Epoch, FrameDecoder, NodeId, RangeId, ReplicaId, RequestId, RpcError};
use net::{ProxyId, ShardId, StoreId, Timestamp};

fn b(s: &'static [u8]) -> Bytes {
    Bytes::from_static(s)
}

fn range() -> RangeDescriptor {
    RangeDescriptor {
        id: RangeId(3),
        start: b(b"r\x00\x01"),
        end: b(b"r\x3f\xff"),
        epoch: Epoch {
            conf_ver: 2,
            version: 5,
        },
        replicas: vec![Replica {
            replica_id: ReplicaId(11),
            store_id: StoreId(1),
            shard_id: ShardId(0),
            role: ReplicaRole::Voter {},
        }],
        leader: Some(ReplicaId(11)),
    }
}

/// One sample of every message kind, with names used as fixture file names.
fn samples() -> Vec<(&'static str, Message)> {
    let ctx = RouteCtx {
        range_id: RangeId(3),
        epoch: Epoch {
            conf_ver: 2,
            version: 5,
        },
    };
    vec![
        (
            "hello",
            Message::Hello(Hello {
                min_version: 1,
                max_version: 1,
                ..Hello::new(Role::Proxy {}, ClusterId(42), NodeId(7))
            }),
        ),
        (
            "hello_ack",
            Message::HelloAck(HelloAck {
                magic: Magic,
                version: 1,
                role: Role::DsNode {},
                cluster_id: ClusterId(42),
                node_id: NodeId(1),
            }),
        ),
        ("ping", Message::Ping(Ping { nonce: 99 })),
        ("pong", Message::Pong(Pong { nonce: 99 })),
        (
            "error_not_leader",
            Message::Error(RpcError::NotLeader { hint: None }),
        ),
        (
            "kv_set",
            Message::KvRequest(KvRequest {
                ctx,
                op: KvOp::StrSet {
                    key: b(b"user:1"),
                    value: b(b"alice"),
                    expiry: Expiry::At {
                        at_ms: 1_800_000_000_000,
                    },
                    cond: Cond::IfAbsent {},
                    get_old: true,
                },
            }),
        ),
        (
            "kv_write",
            Message::KvWrite(KvWrite {
                client: 0x1122_3344_5566_7788,
                seq: 42,
                request: KvRequest {
                    ctx,
                    op: KvOp::StrIncrBy {
                        key: b(b"counter"),
                        delta: 7,
                    },
                },
            }),
        ),
        (
            "kv_batch_write",
            Message::KvRequest(KvRequest {
                ctx,
                op: KvOp::BatchWrite {
                    ops: vec![
                        WriteOp::Put {
                            key: b(b"a"),
                            value: b(b"1"),
                            expiry: Expiry::Keep {},
                        },
                        WriteOp::Delete { key: b(b"b") },
                    ],
                },
            }),
        ),
        (
            "kv_expire",
            Message::KvRequest(KvRequest {
                ctx,
                op: KvOp::KeyExpire {
                    key: b(b"k"),
                    at_ms: 5,
                    cond: ExpireCond::IfGreater {},
                },
            }),
        ),
        (
            "kv_hset",
            Message::KvRequest(KvRequest {
                ctx,
                op: KvOp::HSet {
                    key: b(b"h"),
                    pairs: vec![(b(b"f"), b(b"v"))],
                    only_new: false,
                },
            }),
        ),
        (
            "kv_response_values",
            Message::KvResponse(KvResponse::Ok {
                result: OpResult::Values {
                    values: vec![Some(b(b"x")), None],
                },
            }),
        ),
        (
            "kv_response_epoch_mismatch",
            Message::KvResponse(KvResponse::Err {
                error: RpcError::EpochMismatch {
                    ranges: vec![range()],
                },
            }),
        ),
        (
            "raft_batch",
            Message::RaftBatch(RaftBatch {
                from_store: StoreId(1),
                from_shard: ShardId(2),
                messages: vec![RaftEnvelope {
                    range_id: RangeId(3),
                    from_replica: ReplicaId(11),
                    to_replica: ReplicaId(12),
                    message: b(b"\x08\x03\x10\x01"),
                }],
            }),
        ),
        (
            "snapshot_chunk",
            Message::SnapshotChunk(SnapshotChunk {
                range_id: RangeId(3),
                to_replica: ReplicaId(12),
                snapshot_id: 4,
                seq: 0,
                last: true,
                data: b(b"snap"),
            }),
        ),
        (
            "snapshot_ack",
            Message::SnapshotAck(SnapshotAck {
                range_id: RangeId(3),
                snapshot_id: 4,
                seq: 0,
                accepted: true,
            }),
        ),
        (
            "store_heartbeat",
            Message::StoreHeartbeat(StoreHeartbeat {
                store: StoreInfo {
                    store_id: StoreId(1),
                    addr: "127.0.0.1:7000".into(),
                    shard_addrs: vec!["127.0.0.1:7001".into()],
                    labels: vec![("zone".into(), "a".into())],
                },
                stats: StoreStats {
                    ops_per_sec: 10,
                    shards: vec![ShardStats::default()],
                    ..Default::default()
                },
            }),
        ),
        (
            "store_heartbeat_resp",
            Message::StoreHeartbeatResp(StoreHeartbeatResp {
                cluster_id: ClusterId(42),
                route_version: 8,
            }),
        ),
        (
            "range_heartbeat",
            Message::RangeHeartbeat(RangeHeartbeat {
                range: range(),
                leader: ReplicaId(11),
                stats: RangeStats::default(),
                pending: vec![],
                down: vec![ReplicaId(13)],
            }),
        ),
        (
            "range_heartbeat_resp",
            Message::RangeHeartbeatResp(RangeHeartbeatResp {
                operator: Some(Operator::Split {
                    split_key: b(b"r\x10\x00"),
                    new_range_id: RangeId(4),
                    new_replica_ids: vec![ReplicaId(14)],
                }),
            }),
        ),
        (
            "route_by_key",
            Message::RouteByKey(RouteByKey {
                key: b(b"r\x00\x05"),
            }),
        ),
        (
            "route_by_id",
            Message::RouteById(RouteById {
                range_id: RangeId(3),
            }),
        ),
        (
            "route",
            Message::Route(Route {
                route_version: 8,
                range: Some(range()),
                leader_addr: Some("127.0.0.1:7001".into()),
            }),
        ),
        ("alloc_ids", Message::AllocIds(AllocIds { count: 16 })),
        (
            "id_block",
            Message::IdBlock(IdBlock {
                first: 100,
                count: 16,
            }),
        ),
        ("tso_request", Message::TsoRequest(TsoRequest { count: 64 })),
        (
            "tso_batch",
            Message::TsoBatch(TsoBatch {
                first: Timestamp(1 << 40),
                count: 64,
            }),
        ),
        (
            "store_register",
            Message::StoreRegister(StoreRegister {
                store: store_info(),
                mem_capacity: 1 << 30,
                disk_capacity: 1 << 40,
            }),
        ),
        (
            "store_register_resp",
            Message::StoreRegisterResp(StoreRegisterResp {
                cluster_id: ClusterId(42),
                store_id: StoreId(1),
                bootstrapped: true,
            }),
        ),
        (
            "bootstrap",
            Message::Bootstrap(Bootstrap {
                store_id: StoreId(1),
                shard_id: ShardId(0),
            }),
        ),
        (
            "bootstrap_resp",
            Message::BootstrapResp(BootstrapResp {
                cluster_id: ClusterId(42),
                ranges: vec![range()],
                created: true,
            }),
        ),
        (
            "get_route_table",
            Message::GetRouteTable(GetRouteTable { known_version: 7 }),
        ),
        (
            "route_table",
            Message::RouteTable(RouteTable {
                route_version: 8,
                unchanged: false,
                ranges: vec![range()],
                stores: vec![store_info()],
            }),
        ),
        (
            "split_request",
            Message::SplitRequest(SplitRequest {
                range_id: RangeId(3),
                epoch: Epoch {
                    conf_ver: 2,
                    version: 5,
                },
                split_key: b(b"r\x10\x00"),
            }),
        ),
        (
            "split_ids",
            Message::SplitIds(SplitIds {
                new_range_id: RangeId(4),
                new_replica_ids: vec![ReplicaId(14)],
            }),
        ),
        (
            "split_report",
            Message::SplitReport(SplitReport {
                left: range(),
                right: range(),
            }),
        ),
        (
            "split_report_resp",
            Message::SplitReportResp(SplitReportResp { route_version: 9 }),
        ),
    ]
}

fn store_info() -> StoreInfo {
    StoreInfo {
        store_id: StoreId(1),
        addr: "127.0.0.1:7000".into(),
        shard_addrs: vec!["127.0.0.1:7001".into()],
        labels: vec![("zone".into(), "a".into())],
    }
}

/// What version 2 added: the hello it sends, the challenge, the proofs, the refusal.
fn samples_v2() -> Vec<(&'static str, Message)> {
    let ack = HelloAck {
        magic: Magic,
        version: 2,
        role: Role::DsNode {},
        cluster_id: ClusterId(42),
        node_id: NodeId(1),
    };
    vec![
        (
            "hello",
            Message::Hello(Hello {
                max_version: 2,
                ..Hello::new(Role::Proxy {}, ClusterId(42), NodeId(7))
            }),
        ),
        (
            "challenge",
            Message::Challenge(Challenge {
                version: 2,
                nonce: Nonce([0xa1; 32]),
            }),
        ),
        (
            "auth",
            Message::Auth(Auth {
                nonce: Nonce([0xc2; 32]),
                proof: Proof([0x5e; 32]),
            }),
        ),
        (
            "auth_ack",
            Message::AuthAck(AuthAck {
                ack,
                proof: Proof([0x7a; 32]),
            }),
        ),
        ("error_auth_failed", Message::Error(RpcError::AuthFailed {})),
    ]
}

/// What version 3 added: the hello that offers 2..=3, the shard heartbeat and probe reports.
fn samples_v3() -> Vec<(&'static str, Message)> {
    vec![
        (
            "hello",
            Message::Hello(Hello {
                min_version: 2,
                max_version: 3,
                ..Hello::new(Role::Probe {}, ClusterId(42), NodeId(0))
            }),
        ),
        (
            "shard_heartbeat",
            Message::ShardHeartbeat(ShardHeartbeat {
                store_id: StoreId(1),
                shard_id: ShardId(1),
                load: ShardLoad {
                    ranges: 3,
                    leaders: 2,
                    read_ops_per_sec: 1000,
                    write_ops_per_sec: 500,
                    read_bytes_per_sec: 16_000,
                    write_bytes_per_sec: 64_000,
                    keys: 12_345,
                    size_bytes: 1 << 20,
                    mem_used: 2 << 20,
                    disk_used: 8 << 20,
                },
            }),
        ),
        (
            "probe_report",
            Message::ProbeReport(ProbeReport {
                probe: "probe-a".into(),
                zone: "a".into(),
                master_rtt_us: 120,
                results: vec![
                    ProbeResult {
                        store_id: StoreId(1),
                        shard_id: ShardId(0),
                        reachable: true,
                        rtt_us: 80,
                    },
                    ProbeResult {
                        store_id: StoreId(2),
                        shard_id: ShardId(1),
                        reachable: false,
                        rtt_us: 0,
                    },
                ],
            }),
        ),
        (
            "probe_report_resp",
            Message::ProbeReportResp(ProbeReportResp { route_version: 9 }),
        ),
    ]
}

/// What version 4 added: the route-table watch.
fn samples_v4() -> Vec<(&'static str, Message)> {
    vec![
        (
            "hello",
            Message::Hello(Hello {
                min_version: 2,
                max_version: 4,
                ..Hello::new(Role::Proxy {}, ClusterId(42), NodeId(0))
            }),
        ),
        (
            "watch_route_table",
            Message::WatchRouteTable(WatchRouteTable {
                known_version: 17,
                wait_ms: 4_000,
            }),
        ),
    ]
}

/// What version 5 added: the proxy directory and the mesh between proxies.
fn samples_v5() -> Vec<(&'static str, Message)> {
    vec![
        (
            "hello",
            Message::Hello(Hello {
                min_version: 2,
                max_version: 5,
                ..Hello::new(Role::Proxy {}, ClusterId(42), NodeId(0))
            }),
        ),
        (
            "proxy_register",
            Message::ProxyRegister(ProxyRegister {
                proxy_id: ProxyId(0x1234_5678),
                peer_addr: "10.0.0.7:7380".into(),
                ttl_ms: 6_000,
            }),
        ),
        (
            "proxy_peers",
            Message::ProxyPeers(ProxyPeers {
                ttl_ms: 6_000,
                peers: vec![ProxyPeer {
                    proxy_id: ProxyId(9),
                    peer_addr: "10.0.0.8:7380".into(),
                }],
            }),
        ),
        (
            "peer_publish",
            Message::PeerPublish(PeerPublish {
                channel: b(b"news"),
                payload: b(b"hello"),
                shard: false,
            }),
        ),
        (
            "peer_receivers",
            Message::PeerReceivers(PeerReceivers { receivers: 3 }),
        ),
        (
            "peer_pubsub_query",
            Message::PeerPubsubQuery(PeerPubsubQuery {
                query: PubsubQuery::NumSub {
                    shard: false,
                    channels: vec![b(b"a"), b(b"b")],
                },
            }),
        ),
        (
            "peer_pubsub_answer",
            Message::PeerPubsubAnswer(PeerPubsubAnswer {
                channels: vec![b(b"a")],
                counts: vec![1, 2],
            }),
        ),
        (
            "peer_keys_ready",
            Message::PeerKeysReady(PeerKeysReady {
                keys: vec![ReadyKey {
                    db: 0,
                    key: b(b"queue"),
                }],
            }),
        ),
        (
            "peer_keys_ready_ack",
            Message::PeerKeysReadyAck(PeerKeysReadyAck { woken: 1 }),
        ),
    ]
}

/// What version 6 added: the cluster-wide `maxmemory`, the shards' memory reports, and
/// `CLIENT PAUSE` across the proxy mesh.
fn samples_v6() -> Vec<(&'static str, Message)> {
    vec![
        (
            "hello",
            Message::Hello(Hello {
                max_version: 6,
                ..Hello::new(Role::Proxy {}, ClusterId(42), NodeId(0))
            }),
        ),
        (
            "set_max_memory",
            Message::SetMaxMemory(SetMaxMemory {
                maxmemory_bytes: 1 << 20,
            }),
        ),
        (
            "get_cluster_memory",
            Message::GetClusterMemory(GetClusterMemory {}),
        ),
        (
            "cluster_memory",
            Message::ClusterMemory(ClusterMemory {
                maxmemory_override: Some(1 << 20),
                node_maxmemory: 1 << 20,
                maxmemory_total: 3 << 20,
                used_bytes: 900_000,
                hot_value_bytes: 600_000,
                cold_value_bytes: 4_000_000,
                keys: 1_234,
                stores: 3,
                shards: 6,
            }),
        ),
        (
            "shard_memory",
            Message::ShardMemory(ShardMemory {
                store_id: StoreId(2),
                shard_id: ShardId(1),
                budget_bytes: 512 << 10,
                used_bytes: 400_000,
                hot_value_bytes: 300_000,
                cold_value_bytes: 2_000_000,
                keys: 617,
            }),
        ),
        (
            "memory_setting",
            Message::MemorySetting(MemorySetting { maxmemory: None }),
        ),
        (
            "peer_pause",
            Message::PeerPause(PeerPause {
                order: PauseOrder::Write { for_ms: 60_000 },
            }),
        ),
        (
            "peer_unpause",
            Message::PeerPause(PeerPause {
                order: PauseOrder::Unpause {},
            }),
        ),
        ("peer_pause_ack", Message::PeerPauseAck(PeerPauseAck {})),
    ]
}

/// What version 7 added: client-side caching invalidations across the proxy mesh, and the
/// ranges' expiry logs.
fn samples_v7() -> Vec<(&'static str, Message)> {
    vec![
        (
            "hello",
            Message::Hello(Hello {
                max_version: 7,
                ..Hello::new(Role::Proxy {}, ClusterId(42), NodeId(0))
            }),
        ),
        (
            "peer_invalidate",
            Message::PeerInvalidate(PeerInvalidate {
                keys: vec![b(b"user:1"), b(b"user:2")],
                flush: false,
                at_ms: 0,
                tracking: true,
            }),
        ),
        (
            "peer_invalidate_expiry",
            Message::PeerInvalidate(PeerInvalidate {
                keys: vec![b(b"session:9")],
                flush: false,
                at_ms: 1_780_000_000_000,
                tracking: false,
            }),
        ),
        (
            "peer_invalidate_flush",
            Message::PeerInvalidate(PeerInvalidate {
                keys: vec![],
                flush: true,
                at_ms: 0,
                tracking: false,
            }),
        ),
        (
            "peer_invalidate_ack",
            Message::PeerInvalidateAck(PeerInvalidateAck {}),
        ),
        (
            "kv_expired_since",
            Message::KvRequest(KvRequest {
                ctx: RouteCtx {
                    range_id: RangeId(3),
                    epoch: Epoch {
                        conf_ver: 2,
                        version: 5,
                    },
                },
                op: KvOp::ExpiredSince {
                    after: (812 << 16) | 3,
                    since_ms: 1_780_000_000_000,
                },
            }),
        ),
        (
            "kv_expired",
            Message::KvResponse(KvResponse::Ok {
                result: OpResult::Expired {
                    next: (815 << 16) | 1,
                    keys: vec![
                        ExpiredKey {
                            db: net::keyspace::Db::ZERO,
                            key: b(b"session:9"),
                        },
                        ExpiredKey {
                            db: net::keyspace::Db::new(3).unwrap(),
                            key: b(b"cart:7"),
                        },
                    ],
                },
            }),
        ),
    ]
}

/// What version 8 added: range merges.
fn samples_v8() -> Vec<(&'static str, Message)> {
    let mut right = range();
    right.id = RangeId(4);
    right.start = range().end;
    right.end = b(b"r\x7f\xff");
    let mut merged = range();
    merged.end = right.end.clone();
    merged.epoch.version = 6;
    vec![
        (
            "hello",
            Message::Hello(Hello::new(Role::DsNode {}, ClusterId(42), NodeId(0))),
        ),
        (
            "range_heartbeat_resp_merge",
            Message::RangeHeartbeatResp(RangeHeartbeatResp {
                operator: Some(Operator::Merge {
                    right: right.clone(),
                }),
            }),
        ),
        (
            "merge_report",
            Message::MergeReport(MergeReport {
                left: merged,
                right,
            }),
        ),
        (
            "merge_report_resp",
            Message::MergeReportResp(MergeReportResp { route_version: 12 }),
        ),
    ]
}

fn fixture_dir(version: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(version)
}

#[test]
fn version_1_fixtures_decode_to_the_same_messages_and_bytes() {
    check_fixtures("v1", samples());
}

#[test]
fn version_2_fixtures_decode_to_the_same_messages_and_bytes() {
    check_fixtures("v2", samples_v2());
}

#[test]
fn version_3_fixtures_decode_to_the_same_messages_and_bytes() {
    check_fixtures("v3", samples_v3());
}

#[test]
fn version_4_fixtures_decode_to_the_same_messages_and_bytes() {
    check_fixtures("v4", samples_v4());
}

#[test]
fn version_5_fixtures_decode_to_the_same_messages_and_bytes() {
    check_fixtures("v5", samples_v5());
}

#[test]
fn version_6_fixtures_decode_to_the_same_messages_and_bytes() {
    check_fixtures("v6", samples_v6());
}

#[test]
fn version_7_fixtures_decode_to_the_same_messages_and_bytes() {
    check_fixtures("v7", samples_v7());
}

#[test]
fn version_8_fixtures_decode_to_the_same_messages_and_bytes() {
    check_fixtures("v8", samples_v8());
}

#[test]
fn the_version_8_hello_offers_versions_2_to_8() {
    let Message::Hello(h) = &samples_v8()[0].1 else {
        panic!("first v8 sample is the hello")
    };
    assert_eq!((h.min_version, h.max_version), (2, 8));
}

#[test]
fn the_version_7_hello_offers_versions_2_to_7() {
    let Message::Hello(h) = &samples_v7()[0].1 else {
        panic!("first v7 sample is the hello")
    };
    assert_eq!((h.min_version, h.max_version), (2, 7));
}

#[test]
fn the_version_6_hello_offers_versions_2_to_6() {
    let Message::Hello(h) = &samples_v6()[0].1 else {
        panic!("first v6 sample is the hello")
    };
    assert_eq!((h.min_version, h.max_version), (2, 6));
}

#[test]
fn the_version_5_hello_offers_versions_2_to_5() {
    let Message::Hello(h) = &samples_v5()[0].1 else {
        panic!("first v5 sample is the hello")
    };
    assert_eq!((h.min_version, h.max_version), (2, 5));
}

#[test]
fn the_version_4_hello_offers_versions_2_to_4() {
    let Message::Hello(h) = &samples_v4()[0].1 else {
        panic!("first v4 sample is the hello")
    };
    assert_eq!((h.min_version, h.max_version), (2, 4));
}

#[test]
fn the_version_3_hello_offers_versions_2_and_3() {
    let Message::Hello(h) = &samples_v3()[0].1 else {
        panic!("first v3 sample is the hello")
    };
    assert_eq!((h.min_version, h.max_version), (2, 3));
}

#[test]
fn the_version_2_hello_offers_only_version_2() {
    let Message::Hello(h) = &samples_v2()[0].1 else {
        panic!("first v2 sample is the hello")
    };
    assert_eq!((h.min_version, h.max_version), (2, 2));
}

fn check_fixtures(version: &str, samples: Vec<(&'static str, Message)>) {
    let bless = std::env::var_os("TIERKV_BLESS").is_some();
    let dir = fixture_dir(version);
    for (name, msg) in samples {
        let mut wire = BytesMut::new();
        msg.encode_frame(RequestId(5), &mut wire);
        let path = dir.join(format!("{name}.bin"));
        if bless && !path.exists() {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(&path, &wire).unwrap();
        }
        let stored = std::fs::read(&path)
            .unwrap_or_else(|e| panic!("fixture {path:?} missing ({e}); run with TIERKV_BLESS=1"));
        assert_eq!(&stored[..], &wire[..], "encoding of {name} changed");
        let mut buf = BytesMut::from(&stored[..]);
        let frame = FrameDecoder::default().decode(&mut buf).unwrap().unwrap();
        let (id, back) = Message::from_frame(frame).unwrap();
        assert_eq!((id, back), (RequestId(5), msg), "decoding {name}");
    }
}

#[test]
fn every_message_kind_has_a_fixture() {
    let kinds: std::collections::BTreeSet<u16> = samples()
        .iter()
        .chain(samples_v2().iter())
        .chain(samples_v3().iter())
        .chain(samples_v4().iter())
        .chain(samples_v5().iter())
        .chain(samples_v6().iter())
        .chain(samples_v7().iter())
        .chain(samples_v8().iter())
        .map(|(_, m)| m.kind())
        .collect();
    // 31 kinds in version 1, 4 more in version 2 (the handshake's three and KvWrite), 3 more
    // in version 3 (ShardHeartbeat, ProbeReport, ProbeReportResp; docs/format/wire.md §4), one
    // more in version 4 (WatchRouteTable), eight in version 5 (the proxy directory and mesh),
    // seven in version 6 (memory, mesh pause), two in version 7 (mesh invalidations), two in
    // version 8 (merge reports); a new kind needs a new sample.
    assert_eq!(kinds.len(), 58, "kinds with fixtures: {kinds:x?}");
}
