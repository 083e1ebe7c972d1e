// The generated rust-protobuf structs are built field by field, as raft-rs builds them.
#![allow(clippy::field_reassign_with_default)]

use bytes::Bytes;
use proptest::prelude::*;
use protobuf::Message as _;
use raft::eraftpb::{
    ConfChange, ConfChangeSingle, ConfChangeTransition, ConfChangeType, ConfChangeV2, ConfState,
    Entry, EntryType, Message, MessageType, Snapshot, SnapshotMetadata,
};

use super::*;

fn bytes_of(max: usize) -> impl Strategy<Value = Bytes> {
    proptest::collection::vec(any::<u8>(), 0..max).prop_map(Bytes::from)
}

fn entry_strategy() -> impl Strategy<Value = Entry> {
    (
        0..3u64,
        any::<u64>(),
        any::<u64>(),
        bytes_of(40),
        bytes_of(8),
        any::<bool>(),
    )
        .prop_map(|(t, term, index, data, context, sync_log)| {
            let mut e = Entry::default();
            e.entry_type = entry_type(t).unwrap();
            e.term = term;
            e.index = index;
            e.data = data;
            e.context = context;
            e.sync_log = sync_log;
            e
        })
}

fn ids() -> impl Strategy<Value = Vec<u64>> {
    proptest::collection::vec(any::<u64>(), 0..5)
}

fn snapshot_strategy() -> impl Strategy<Value = Option<Snapshot>> {
    let conf = (ids(), ids(), ids(), ids(), any::<bool>()).prop_map(|(v, l, vo, ln, al)| {
        let mut c = ConfState::default();
        c.voters = v;
        c.learners = l;
        c.voters_outgoing = vo;
        c.learners_next = ln;
        c.auto_leave = al;
        c
    });
    let meta = (proptest::option::of(conf), any::<u64>(), any::<u64>()).prop_map(|(c, i, t)| {
        let mut m = SnapshotMetadata::default();
        if let Some(c) = c {
            m.set_conf_state(c);
        }
        m.index = i;
        m.term = t;
        m
    });
    proptest::option::of(
        (bytes_of(64), proptest::option::of(meta)).prop_map(|(d, m)| {
            let mut s = Snapshot::default();
            s.data = d;
            if let Some(m) = m {
                s.set_metadata(m);
            }
            s
        }),
    )
}

prop_compose! {
    fn message_strategy()(
        t in 0..19u64,
        head in any::<[u64; 5]>(),
        entries in proptest::collection::vec(entry_strategy(), 0..4),
        tail in any::<[u64; 5]>(),
        snapshot in snapshot_strategy(),
        reject in any::<bool>(),
        context in bytes_of(16),
        priority in any::<i64>(),
    ) -> Message {
        let mut m = Message::default();
        m.msg_type = message_type(t).unwrap();
        [m.to, m.from, m.term, m.log_term, m.index] = head;
        m.entries = entries.into();
        [m.commit, m.commit_term, m.request_snapshot, m.reject_hint, m.deprecated_priority] = tail;
        if let Some(s) = snapshot {
            m.set_snapshot(s);
        }
        m.reject = reject;
        m.context = context;
        m.priority = priority;
        m
    }
}

fn encoded(m: &Message) -> Bytes {
    Bytes::from(m.write_to_bytes().expect("encodes"))
}

/// Where this decoder accepts bytes, rust-protobuf accepts them too and reads the same
/// message (this decoder may refuse more: groups, unknown enum values, overlong varints).
fn agrees_with_rust_protobuf(b: &Bytes) {
    if let Ok(ours) = decode_message(b) {
        let mut theirs = Message::parse_from_bytes(b).expect("rust-protobuf accepts it too");
        without_unknown_fields(&mut theirs);
        assert_eq!(ours, theirs);
    }
}

/// rust-protobuf keeps unknown fields (and compares them); this decoder skips them.
fn without_unknown_fields(m: &mut Message) {
    m.unknown_fields = Default::default();
    for e in m.entries.iter_mut() {
        e.unknown_fields = Default::default();
    }
    if let Some(s) = m.snapshot.as_mut() {
        s.unknown_fields = Default::default();
        if let Some(md) = s.metadata.as_mut() {
            md.unknown_fields = Default::default();
            if let Some(c) = md.conf_state.as_mut() {
                c.unknown_fields = Default::default();
            }
        }
    }
}

#[test]
fn unknown_fields_are_skipped_where_rust_protobuf_keeps_them() {
    // Field 31, varint 0: the input proptest found.
    agrees_with_rust_protobuf(&Bytes::from_static(&[248, 1, 0]));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn reads_back_every_message_rust_protobuf_writes(m in message_strategy()) {
        prop_assert_eq!(decode_message(&encoded(&m)).unwrap(), m);
    }

    #[test]
    fn agrees_with_rust_protobuf_on_mutated_messages(
        m in message_strategy(),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut b = encoded(&m).to_vec();
        if !b.is_empty() {
            for (i, x) in flips {
                let i = i.index(b.len());
                b[i] ^= x;
            }
            b.truncate(cut.index(b.len() + 1));
        }
        agrees_with_rust_protobuf(&Bytes::from(b));
    }

    #[test]
    fn random_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..256)) {
        let b = Bytes::from(b);
        agrees_with_rust_protobuf(&b);
        for t in [EntryType::EntryConfChange, EntryType::EntryConfChangeV2] {
            let _ = decode_conf_change(t, &b);
        }
    }

    #[test]
    fn reads_back_every_conf_change_rust_protobuf_writes(
        changes in proptest::collection::vec((0..3u64, any::<u64>()), 0..5),
        transition_no in 0..3u64,
        context in bytes_of(16),
        id in any::<u64>(),
    ) {
        let mut v2 = ConfChangeV2::default();
        v2.transition = transition(transition_no).unwrap();
        for (t, node) in &changes {
            let mut s = ConfChangeSingle::default();
            s.change_type = change_type(*t).unwrap();
            s.node_id = *node;
            v2.changes.push(s);
        }
        v2.context = context.clone();
        let b = Bytes::from(v2.write_to_bytes().unwrap());
        prop_assert_eq!(decode_conf_change_v2(&b).unwrap(), v2.clone());
        prop_assert_eq!(ConfChangeV2::parse_from_bytes(&b).unwrap(), v2);

        let mut v1 = ConfChange::default();
        v1.id = id;
        v1.change_type = change_type(changes.first().map_or(0, |c| c.0)).unwrap();
        v1.node_id = changes.first().map_or(0, |c| c.1);
        v1.context = context;
        let b = Bytes::from(v1.write_to_bytes().unwrap());
        prop_assert_eq!(decode_conf_change_v1(&b).unwrap(), v1.clone());
        let expected = raft_proto::ConfChangeI::into_v2(v1);
        prop_assert_eq!(decode_conf_change(EntryType::EntryConfChange, &b).unwrap(), Some(expected));
    }
}

#[test]
fn nested_groups_are_refused_without_recursion() {
    // An unknown field 99 opening a group, nested 100,000 deep: rust-protobuf 2 recurses
    // into each one (RUSTSEC-2024-0437); this decoder refuses the first.
    let start_group = [(99 << 3 | 3) as u8 | 0x80, 99 >> 4];
    let b = Bytes::from(start_group.repeat(100_000));
    assert_eq!(decode_message(&b), Err(PbError::WireType(3)));
}

#[test]
fn a_length_past_the_end_is_refused_before_allocating() {
    // Field 7 (entries) announcing 2^62 bytes, then nothing.
    let mut b = vec![7 << 3 | 2];
    b.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x3f]);
    assert_eq!(decode_message(&Bytes::from(b)), Err(PbError::Truncated));
}

#[test]
fn a_known_field_with_the_wrong_wire_type_is_refused() {
    // Field 4 (term, a uint64) sent as a length-delimited field.
    let b = Bytes::from_static(&[4 << 3 | 2, 1, 0]);
    assert_eq!(
        decode_message(&b),
        Err(PbError::FieldType { field: 4, wire: 2 })
    );
}

#[test]
fn an_unknown_message_type_is_refused() {
    let b = Bytes::from_static(&[1 << 3, 19]);
    assert_eq!(decode_message(&b), Err(PbError::Enum(19)));
}

#[test]
fn an_overlong_varint_is_refused() {
    let mut b = vec![2 << 3];
    b.extend_from_slice(&[0xff; 10]);
    b.push(0x01);
    assert_eq!(decode_message(&Bytes::from(b)), Err(PbError::Varint));
}

#[test]
fn entry_data_is_a_slice_of_the_input() {
    let mut m = Message::default();
    m.msg_type = MessageType::MsgAppend;
    let mut e = Entry::default();
    e.data = Bytes::from(vec![7u8; 1000]);
    m.entries.push(e);
    let b = encoded(&m);
    let d = decode_message(&b).unwrap();
    let data = &d.entries[0].data;
    let inside = b.as_ptr() as usize..b.as_ptr() as usize + b.len();
    assert!(inside.contains(&(data.as_ptr() as usize)));
}

#[test]
fn unknown_fields_are_skipped() {
    let mut m = Message::default();
    m.term = 9;
    let mut b = encoded(&m).to_vec();
    // field 40 varint, field 41 fixed64, field 42 length-delimited, field 43 fixed32
    b.extend_from_slice(&[(40 << 3) as u8 | 0x80, 40 >> 4, 5]);
    b.extend_from_slice(&[(41 << 3 | 1) as u8 | 0x80, 41 >> 4, 1, 2, 3, 4, 5, 6, 7, 8]);
    b.extend_from_slice(&[(42 << 3 | 2) as u8 | 0x80, 42 >> 4, 2, 9, 9]);
    b.extend_from_slice(&[(43 << 3 | 5) as u8 | 0x80, 43 >> 4, 1, 2, 3, 4]);
    assert_eq!(decode_message(&Bytes::from(b)).unwrap().term, 9);
}

#[test]
fn conf_state_reads_packed_and_unpacked_ids() {
    // voters: packed [1, 2]; then unpacked 3.
    let cs = [1 << 3 | 2, 2, 1, 2, 1 << 3, 3];
    let meta = [&[1 << 3 | 2, cs.len() as u8][..], &cs].concat();
    let snap = [&[2 << 3 | 2, meta.len() as u8][..], &meta].concat();
    let msg = [&[9 << 3 | 2, snap.len() as u8][..], &snap].concat();
    let m = decode_message(&Bytes::from(msg)).unwrap();
    assert_eq!(
        m.get_snapshot().get_metadata().get_conf_state().voters,
        vec![1, 2, 3]
    );
}

#[test]
fn conf_change_of_a_normal_entry_is_none() {
    assert_eq!(
        decode_conf_change(EntryType::EntryNormal, &Bytes::new()),
        Ok(None)
    );
}

#[test]
fn transition_and_change_type_numbers_match_raft_rs() {
    assert_eq!(transition(2), Ok(ConfChangeTransition::Explicit));
    assert_eq!(change_type(2), Ok(ConfChangeType::AddLearnerNode));
    assert_eq!(
        change_type(u64::from(u32::MAX)),
        Err(PbError::Enum(u64::from(u32::MAX)))
    );
}
