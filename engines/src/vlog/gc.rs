//! The value garbage collector's policy: which segments a pass collects, and how relocated
//! records are tagged (`docs/format/shard-log.md` §3, "Relocated values").
//!
//! The log frees segments from its oldest end only (recovery needs a contiguous chain of
//! segments, §5–6), so collection is FIFO: the victims of a pass are the oldest segments, in
//! log order, up to the first one a range still needs for Raft (or the head). Freeing a
//! younger segment first would gain no space until every older one is free too, so the
//! cost-benefit choice of LFS (which assumes any segment can be freed) does not apply; a pass
//! runs only when the log holds enough garbage (the space ratio below), which bounds the
//! share of live bytes a pass copies.
//!
//! Pure functions, no I/O: the shard's collector (`ds-node::server::gc`) applies them.

use crate::pointer::SegmentId;

/// The high bit of a relocated record's tag marks a copy made by the garbage collector; the
/// low 32 bits name the segment the value was copied from. Tag 0 is a demoted value.
pub const RELOCATED_BY_GC: u64 = 1 << 63;

/// The tag of a value the collector copies out of segment `from`.
pub fn relocation_tag(from: SegmentId) -> u64 {
    RELOCATED_BY_GC | u64::from(from.0)
}

/// The segment a relocated record's value was copied from, if the collector wrote it.
pub fn relocated_from(tag: u64) -> Option<SegmentId> {
    (tag >> 32 == RELOCATED_BY_GC >> 32).then_some(SegmentId(tag as u32))
}

/// What the collector knows of one segment of the chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentView {
    /// The segment.
    pub id: SegmentId,
    /// Its position in the log.
    pub seq: u64,
    /// Bytes live pointers (of the engine) name in it.
    pub live_bytes: u64,
    /// A range still needs it for Raft (retained entries).
    pub raft_needed: bool,
    /// It is the head (being appended to).
    pub head: bool,
}

/// Settings of a collection.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GcPolicy {
    /// Size of a segment, bytes.
    pub segment_bytes: u64,
    /// Collect when the log's segments take more than this many times the live bytes.
    pub space_ratio: f64,
    /// Most segments one pass collects.
    pub max_victims: usize,
    /// No pass while the segments take less than this (the log may use this much space
    /// freely: collecting a small log early would copy values that are about to die).
    pub min_used_bytes: u64,
    /// Most live bytes one pass's victims may hold: what the pass may have to write again
    /// before it frees anything (`u64::MAX`: no bound). A log short of room bounds it by the
    /// room left, so a pass never writes the log full on its way to freeing space.
    pub max_live_bytes: u64,
}

/// What one pass collects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GcPlan {
    /// The victims, oldest first.
    pub victims: Vec<SegmentId>,
    /// Live bytes in them (what the pass copies at most).
    pub live_bytes: u64,
}

/// Bytes the log's segments take on the device.
pub fn used_bytes(segments: &[SegmentView], policy: &GcPolicy) -> u64 {
    segments.len() as u64 * policy.segment_bytes
}

/// Whether the log holds enough garbage for a pass: its segments take at least
/// `min_used_bytes`, more than `space_ratio` × the live bytes, and at least one segment more
/// than the live bytes. The live bytes are `keep_bytes`, what a pass must keep in the log:
/// the cold values (the caller's figure). The segments' `live_bytes` count every pointer,
/// also those of hot values backed by their Raft entries, which a pass frees without a copy
/// (it drops the pointer): counting them would take a log full of backed hot values for a
/// full log that no pass can shrink.
pub fn wants_collection(segments: &[SegmentView], policy: &GcPolicy, keep_bytes: u64) -> bool {
    let used = used_bytes(segments, policy);
    let live = keep_bytes;
    used >= policy.min_used_bytes
        && used as f64 > policy.space_ratio * live as f64
        && used.saturating_sub(live) >= policy.segment_bytes
}

/// The pass to run now (`None`: nothing to collect). `force` skips the space checks (the
/// disk is full, or an operator asked); `keep_bytes` as for [`wants_collection`].
pub fn plan(
    segments: &[SegmentView],
    policy: &GcPolicy,
    keep_bytes: u64,
    force: bool,
) -> Option<GcPlan> {
    if !force && !wants_collection(segments, policy, keep_bytes) {
        return None;
    }
    let mut by_seq: Vec<&SegmentView> = segments.iter().collect();
    by_seq.sort_by_key(|s| s.seq);
    let victims: Vec<&SegmentView> = by_seq
        .into_iter()
        .take_while(|s| !s.head && !s.raft_needed)
        .take(policy.max_victims)
        .scan(0u64, |live, s| {
            *live = live.saturating_add(s.live_bytes);
            (*live <= policy.max_live_bytes).then_some(s)
        })
        .collect();
    if victims.is_empty() {
        return None;
    }
    Some(GcPlan {
        live_bytes: victims.iter().map(|s| s.live_bytes).sum(),
        victims: victims.into_iter().map(|s| s.id).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const POLICY: GcPolicy = GcPolicy {
        segment_bytes: 100,
        space_ratio: 1.5,
        max_victims: 2,
        min_used_bytes: 0,
        max_live_bytes: u64::MAX,
    };

    fn seg(id: u32, seq: u64, live: u64) -> SegmentView {
        SegmentView {
            id: SegmentId(id),
            seq,
            live_bytes: live,
            raft_needed: false,
            head: false,
        }
    }

    #[test]
    fn victims_are_the_oldest_segments_up_to_one_raft_needs() {
        let mut segs = vec![seg(7, 3, 10), seg(4, 1, 90), seg(9, 2, 0), seg(1, 4, 0)];
        segs[0].raft_needed = true;
        segs[3].head = true;
        let p = plan(
            &segs,
            &GcPolicy {
                max_victims: 9,
                ..POLICY
            },
            0,
            false,
        )
        .expect("a plan");
        assert_eq!(p.victims, vec![SegmentId(4), SegmentId(9)]);
        assert_eq!(p.live_bytes, 90);
        let p = plan(
            &segs,
            &GcPolicy {
                max_victims: 1,
                ..POLICY
            },
            0,
            false,
        )
        .expect("a plan");
        assert_eq!(p.victims, vec![SegmentId(4)]);
    }

    #[test]
    fn no_pass_while_the_log_holds_little_garbage_unless_forced() {
        let segs = vec![seg(1, 1, 90), seg(2, 2, 80), seg(3, 3, 60)];
        assert!(!wants_collection(&segs, &POLICY, 230));
        assert_eq!(plan(&segs, &POLICY, 230, false), None);
        assert!(plan(&segs, &POLICY, 230, true).is_some());
        // The same pointers, but only 110 bytes are cold values: the rest are hot values
        // backed by the log, which a pass frees without a copy.
        assert!(wants_collection(&segs, &POLICY, 110));
        let sparse = vec![seg(1, 1, 30), seg(2, 2, 20), seg(3, 3, 60)];
        assert!(wants_collection(&sparse, &POLICY, 110));
        assert!(!wants_collection(&sparse, &POLICY, 200));
        let roomy = GcPolicy {
            min_used_bytes: 400,
            ..POLICY
        };
        assert!(!wants_collection(&sparse, &roomy, 0));
        assert!(plan(&sparse, &roomy, 0, true).is_some());
    }

    #[test]
    fn a_pass_takes_only_the_victims_whose_live_bytes_fit_its_bound() {
        let segs = vec![seg(1, 1, 30), seg(2, 2, 50), seg(3, 3, 0), seg(4, 4, 0)];
        let bounded = |max_live_bytes| GcPolicy {
            max_victims: 9,
            max_live_bytes,
            ..POLICY
        };
        let victims = |max| plan(&segs, &bounded(max), 0, true).map(|p| p.victims);
        assert_eq!(victims(u64::MAX).map(|v| v.len()), Some(4));
        assert_eq!(victims(79), Some(vec![SegmentId(1)]));
        assert_eq!(victims(80).map(|v| v.len()), Some(4));
        // The oldest segment alone is over the bound: no pass (victims are an oldest prefix).
        assert_eq!(victims(29), None);
    }

    #[test]
    fn the_head_is_never_a_victim() {
        let mut segs = vec![seg(1, 1, 0)];
        segs[0].head = true;
        assert_eq!(plan(&segs, &POLICY, 0, true), None);
    }

    #[test]
    fn demoted_and_collected_tags_are_told_apart() {
        assert_eq!(relocated_from(0), None);
        assert_eq!(
            relocated_from(relocation_tag(SegmentId(0))),
            Some(SegmentId(0))
        );
        assert_eq!(
            relocated_from(relocation_tag(SegmentId(u32::MAX))),
            Some(SegmentId(u32::MAX))
        );
        assert_eq!(relocated_from(RELOCATED_BY_GC | 1 << 40), None);
    }

    proptest! {
        #[test]
        fn a_plan_is_always_an_oldest_prefix_of_unneeded_segments(
            segs in proptest::collection::vec((0u64..200, any::<bool>(), any::<bool>()), 0..12),
            force in any::<bool>(),
        ) {
            let views: Vec<SegmentView> = segs
                .iter()
                .enumerate()
                .map(|(i, (live, needed, head))| SegmentView {
                    id: SegmentId(100 - i as u32),
                    seq: i as u64,
                    live_bytes: *live,
                    raft_needed: *needed,
                    head: *head,
                })
                .collect();
            if let Some(p) = plan(&views, &POLICY, 0, force) {
                prop_assert!(!p.victims.is_empty() && p.victims.len() <= POLICY.max_victims);
                for (i, v) in p.victims.iter().enumerate() {
                    prop_assert_eq!(*v, views[i].id);
                    prop_assert!(!views[i].raft_needed && !views[i].head);
                }
            }
        }
    }
}
