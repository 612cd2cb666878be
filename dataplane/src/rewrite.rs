//! Per-subscription rewriting of RTP sequence numbers and timestamps (sans-IO).
//!
//! A subscription sends one continuous stream to its subscriber whatever happens
//! upstream: it starts at a random sequence number, and when the source changes (the
//! publisher restarts its encoder, a new SSRC, later a simulcast layer switch) the
//! outgoing numbering carries on from where it was instead of jumping, so the
//! subscriber's jitter buffer and decoder see no discontinuity.
//!
//! Within one source the offset is constant, so upstream loss stays visible as the same
//! gap downstream (the subscriber NACKs it, and the repaired packet, forwarded late,
//! lands in its slot). Packets older than the subscription's first packet are dropped:
//! the subscriber never had their neighbours.
//!
//! A subscription may also leave packets out on purpose (SVC layers it does not get):
//! [`Rewriter::skip`] records each, and later packets move down by the number skipped
//! before them, so the subscriber sees no gap to NACK. The skipped numbers of the last
//! [`SKIP_WINDOW`] packets are kept exactly (a late packet is placed right); older ones
//! only as a count.
//!
//! It may also add packets of its own (FEC packets protecting the subscriber's stream):
//! [`Rewriter::insert_after`] gives one the number after the newest packet, and later
//! packets move up by one; a late packet still lands in its own slot.

use std::collections::VecDeque;
use std::time::Instant;

/// How far back (in input sequence numbers) skipped packets are remembered one by one.
pub const SKIP_WINDOW: u64 = 2048;

/// What a rewritten packet carries downstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rewritten {
    /// Extended (64-bit, rollover-free) outgoing sequence number.
    pub seq: u64,
    /// Outgoing RTP timestamp.
    pub ts: u32,
}

#[derive(Debug, Clone, Copy)]
struct Source {
    ssrc: u32,
    first_in_seq: u64,
    seq_offset: u64,
    ts_offset: u32,
}

/// The rewriting state of one outgoing stream.
#[derive(Debug, Clone)]
pub struct Rewriter {
    clock_rate: u32,
    initial_seq: u64,
    source: Option<Source>,
    /// Highest outgoing sequence number sent, its timestamp and when.
    last: Option<(u64, u32, Instant)>,
    /// Input sequence numbers of the current source left out on purpose, ascending,
    /// within [`SKIP_WINDOW`] of the newest …
    skipped: VecDeque<u64>,
    /// … and how many older ones there were.
    skipped_before: u64,
    /// Input sequence numbers of the current source after which a packet of the
    /// subscription's own went out, ascending, within [`SKIP_WINDOW`] of the newest …
    inserted: VecDeque<u64>,
    /// … and how many older ones there were.
    inserted_before: u64,
}

impl Rewriter {
    /// A rewriter for a stream with `clock_rate` Hz that starts at `initial_seq`
    /// (callers pick it at random, below 2^15 so that the first rollover is far off).
    pub fn new(clock_rate: u32, initial_seq: u16) -> Self {
        Rewriter {
            clock_rate,
            initial_seq: u64::from(initial_seq),
            source: None,
            last: None,
            skipped: VecDeque::new(),
            skipped_before: 0,
            inserted: VecDeque::new(),
            inserted_before: 0,
        }
    }

    /// Packet `seq` of `ssrc` is left out on purpose: later ones close the gap. Before the
    /// first forwarded packet of a source there is nothing to close.
    pub fn skip(&mut self, ssrc: u32, seq: u64) {
        let Some(src) = self.source.filter(|s| s.ssrc == ssrc) else {
            return;
        };
        if seq < src.first_in_seq {
            return;
        }
        let at = self.skipped.partition_point(|s| *s < seq);
        if self.skipped.get(at) != Some(&seq) {
            self.skipped.insert(at, seq);
        }
        while self.skipped.front().is_some_and(|f| f + SKIP_WINDOW < seq) {
            self.skipped.pop_front();
            self.skipped_before += 1;
        }
    }

    /// How many packets before `seq` were skipped.
    fn skipped_below(&self, seq: u64) -> u64 {
        self.skipped_before + self.skipped.partition_point(|s| *s < seq) as u64
    }

    /// How many packets of the subscription's own went out before `seq`.
    fn inserted_below(&self, seq: u64) -> u64 {
        self.inserted_before + self.inserted.partition_point(|s| *s < seq) as u64
    }

    /// A packet of the subscription's own goes out right after packet `seq` of `ssrc`,
    /// which must be the newest one sent: returns its extended outgoing sequence number
    /// (later packets move up by one), or `None` when `seq` is not the newest.
    pub fn insert_after(&mut self, ssrc: u32, seq: u64) -> Option<u64> {
        let src = self.source.filter(|s| s.ssrc == ssrc)?;
        if seq < src.first_in_seq || self.inserted.back().is_some_and(|b| *b >= seq) {
            return None;
        }
        let out = self.outgoing(&src, seq);
        let (last, ts, at) = self.last?;
        if last != out {
            return None;
        }
        self.inserted.push_back(seq);
        while self.inserted.front().is_some_and(|f| f + SKIP_WINDOW < seq) {
            self.inserted.pop_front();
            self.inserted_before += 1;
        }
        self.last = Some((out + 1, ts, at));
        Some(out + 1)
    }

    fn outgoing(&self, src: &Source, seq: u64) -> u64 {
        seq.wrapping_add(src.seq_offset)
            .wrapping_sub(self.skipped_below(seq))
            .wrapping_add(self.inserted_below(seq))
    }

    /// Rewrites one packet from `ssrc` with extended sequence number `seq` and timestamp
    /// `ts`, arriving at `now`. `None` means drop it (older than the subscription).
    pub fn rewrite(&mut self, ssrc: u32, seq: u64, ts: u32, now: Instant) -> Option<Rewritten> {
        let src = match self.source {
            Some(s) if s.ssrc == ssrc => s,
            _ => self.switch_to(ssrc, seq, ts, now),
        };
        if seq < src.first_in_seq {
            return None;
        }
        let late = |v: &VecDeque<u64>| v.back().is_some_and(|b| seq + SKIP_WINDOW < *b);
        if late(&self.skipped) || late(&self.inserted) {
            // Too late to be placed among the skipped or added ones.
            return None;
        }
        let out = Rewritten {
            seq: self.outgoing(&src, seq),
            ts: ts.wrapping_add(src.ts_offset),
        };
        match self.last {
            Some((s, _, _)) if s >= out.seq => {}
            _ => self.last = Some((out.seq, out.ts, now)),
        }
        Some(out)
    }

    /// Re-anchors at the next packet, as if its source were new: after a pause the
    /// outgoing numbering continues without a gap (the subscriber would otherwise ask for
    /// every packet it did not get) and the timestamps advance by the time paused.
    pub fn resume(&mut self) {
        self.source = None;
    }

    /// Starts a new source so that its first packet continues the outgoing stream.
    fn switch_to(&mut self, ssrc: u32, seq: u64, ts: u32, now: Instant) -> Source {
        let (next_seq, next_ts) = match self.last {
            None => (self.initial_seq, ts),
            Some((s, t, at)) => {
                // Advance the timestamp by the wall time since the last packet sent, at
                // least one tick, so that the new source's frames play after the old one's.
                let elapsed = now.saturating_duration_since(at);
                let ticks = (elapsed.as_secs_f64() * f64::from(self.clock_rate)).round() as u64;
                (s + 1, t.wrapping_add(ticks.max(1) as u32))
            }
        };
        let src = Source {
            ssrc,
            first_in_seq: seq,
            seq_offset: next_seq.wrapping_sub(seq),
            ts_offset: next_ts.wrapping_sub(ts),
        };
        self.source = Some(src);
        self.skipped.clear();
        self.skipped_before = 0;
        self.inserted.clear();
        self.inserted_before = 0;
        src
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_single_source_keeps_gaps_and_order() {
        let t0 = Instant::now();
        let mut r = Rewriter::new(90_000, 1000);
        let a = r.rewrite(1, 50_000, 3_000_000, t0).unwrap();
        assert_eq!(
            a,
            Rewritten {
                seq: 1000,
                ts: 3_000_000
            }
        );
        // Loss upstream: 50_001 never arrives; the gap stays a gap.
        let c = r.rewrite(1, 50_002, 3_003_000, t0).unwrap();
        assert_eq!(c.seq, 1002);
        // The repair arrives late and fills its slot.
        let b = r.rewrite(1, 50_001, 3_000_000, t0).unwrap();
        assert_eq!(b.seq, 1001);
        // Older than the subscription: dropped.
        assert_eq!(r.rewrite(1, 49_999, 2_997_000, t0), None);
    }

    #[test]
    fn source_switch_is_seamless() {
        let t0 = Instant::now();
        let mut r = Rewriter::new(90_000, 7);
        for i in 0..10u64 {
            r.rewrite(
                0xaaaa,
                100 + i,
                90_000 + 3000 * i as u32,
                t0 + Duration::from_millis(33 * i),
            )
            .unwrap();
        }
        // The publisher restarts: new SSRC, unrelated numbering, 100 ms later.
        let switch_at = t0 + Duration::from_millis(33 * 9 + 100);
        let first = r.rewrite(0xbbbb, 60_000, 4_000_000_000, switch_at).unwrap();
        assert_eq!(first.seq, 7 + 10, "continues right after the last packet");
        assert_eq!(
            first.ts,
            90_000 + 27_000 + 9_000,
            "advanced by the 100 ms gap"
        );
        let next = r.rewrite(0xbbbb, 60_001, 4_000_003_000, switch_at).unwrap();
        assert_eq!(next.seq, first.seq + 1);
        assert_eq!(next.ts, first.ts.wrapping_add(3000));
    }

    #[test]
    fn resuming_after_a_pause_leaves_no_gap() {
        let t0 = Instant::now();
        let mut r = Rewriter::new(90_000, 100);
        let a = r.rewrite(5, 1_000, 90_000, t0).unwrap();
        r.resume();
        // 50 packets (1 s) later, same source.
        let b = r
            .rewrite(5, 1_050, 180_000, t0 + Duration::from_secs(1))
            .unwrap();
        assert_eq!(b.seq, a.seq + 1, "no gap to NACK");
        assert_eq!(b.ts, a.ts.wrapping_add(90_000), "a second later");
        let c = r
            .rewrite(5, 1_051, 183_000, t0 + Duration::from_secs(1))
            .unwrap();
        assert_eq!(c.seq, b.seq + 1);
        // What was sent before the pause is not sent again.
        assert_eq!(r.rewrite(5, 1_020, 150_000, t0), None);
    }

    #[test]
    fn skipped_packets_leave_no_gap_and_late_ones_land_in_their_place() {
        let t0 = Instant::now();
        let mut r = Rewriter::new(90_000, 500);
        assert_eq!(r.rewrite(1, 100, 0, t0).unwrap().seq, 500);
        // 101 and 102 are left out (an upper layer), 103 goes.
        r.skip(1, 101);
        r.skip(1, 102);
        assert_eq!(r.rewrite(1, 103, 0, t0).unwrap().seq, 501);
        // 104 is lost upstream: the gap stays (the subscriber NACKs it) …
        assert_eq!(r.rewrite(1, 105, 0, t0).unwrap().seq, 503);
        // … and its repair lands in it.
        assert_eq!(r.rewrite(1, 104, 0, t0).unwrap().seq, 502);
        // Skipping twice counts once; a new source starts clean.
        r.skip(1, 106);
        r.skip(1, 106);
        assert_eq!(r.rewrite(1, 107, 0, t0).unwrap().seq, 504);
        assert_eq!(r.rewrite(2, 9_000, 0, t0).unwrap().seq, 505);
        assert_eq!(r.rewrite(2, 9_001, 0, t0).unwrap().seq, 506);
        // Long runs of skipping keep counting past the window.
        for i in 0..(2 * SKIP_WINDOW) {
            r.skip(2, 9_002 + i);
        }
        let after = r.rewrite(2, 9_002 + 2 * SKIP_WINDOW, 0, t0).unwrap();
        assert_eq!(after.seq, 507);
    }

    #[test]
    fn added_packets_move_later_ones_up_and_late_ones_keep_their_slot() {
        let t0 = Instant::now();
        let mut r = Rewriter::new(90_000, 100);
        assert_eq!(r.rewrite(1, 10, 0, t0).unwrap().seq, 100);
        assert_eq!(r.insert_after(1, 10), Some(101));
        assert_eq!(r.insert_after(1, 10), None, "one after each packet");
        assert_eq!(r.insert_after(2, 10), None, "not the current source");
        // 11 is lost upstream; 12 comes, a packet of our own after it.
        assert_eq!(r.rewrite(1, 12, 0, t0).unwrap().seq, 103);
        assert_eq!(r.insert_after(1, 11), None, "11 is not the newest");
        assert_eq!(r.insert_after(1, 12), Some(104));
        r.skip(1, 13);
        assert_eq!(r.rewrite(1, 14, 0, t0).unwrap().seq, 105);
        // The repair of 11 lands in its slot, between the two added packets.
        assert_eq!(r.rewrite(1, 11, 0, t0).unwrap().seq, 102);
        assert_eq!(r.insert_after(1, 11), None);
        // A new source continues after the last packet, added ones included.
        assert_eq!(r.insert_after(1, 14), Some(106));
        assert_eq!(r.rewrite(2, 500, 0, t0).unwrap().seq, 107);
        assert_eq!(r.rewrite(2, 501, 0, t0).unwrap().seq, 108);
    }

    #[test]
    fn timestamps_wrap_and_sequence_numbers_are_extended() {
        let t0 = Instant::now();
        let mut r = Rewriter::new(48_000, 65_530);
        let a = r.rewrite(9, 10, u32::MAX - 100, t0).unwrap();
        let b = r.rewrite(9, 20, 859, t0).unwrap(); // the input timestamp wrapped
        assert_eq!(b.seq - a.seq, 10);
        assert_eq!(b.ts.wrapping_sub(a.ts), 960);
        assert!(b.seq > 65_535, "extended past 16 bits: {}", b.seq);
    }
}
