//! Overload: what a core does when it is asked to forward more than it can (sans-IO).
//!
//! A saturated core that keeps trying to serve everyone serves everyone badly: its input
//! queue grows, every subscriber's latency climbs together, and then the kernel drops
//! publishers' packets at random, which every subscriber sees as loss and answers with
//! NACKs and keyframe requests — more work for a core that has none to spare.
//!
//! So past saturation the core sheds on purpose. The driver measures how busy the core
//! was (the share of wall time spent handling inputs) and reports it every
//! [`LOAD_WINDOW`]; the [`Shedder`] turns that into how many video subscriptions to stop
//! serving. The core stops the lowest-priority ones first — the most recently started,
//! so that people already watching keep watching — and keeps their audio (a few percent
//! of the packets, and what a conversation needs). Each shed packet is counted
//! (`drops_total{reason="overload"}`), the number of shed subscriptions is a gauge, and
//! every session stays up. When the load falls, video comes back one group at a time,
//! with a keyframe and numbering that continues where it stopped.

use std::time::{Duration, Instant};

/// How often the driver reports the core's load.
pub const LOAD_WINDOW: Duration = Duration::from_millis(100);

/// Busier than this (share of wall time) and the core sheds more.
pub const SHED_ABOVE: f64 = 0.90;

/// Less busy than this and the core restores some of what it shed.
pub const RESTORE_BELOW: f64 = 0.70;

/// The least time between two changes, so each change can show in the load first.
pub const STEP: Duration = Duration::from_millis(300);

/// Decides how many video subscriptions a core sheds.
#[derive(Debug, Default)]
pub struct Shedder {
    shed: usize,
    last_change: Option<Instant>,
}

impl Shedder {
    /// Takes the core's load over the last window (`busy`, 0–1) and how many video
    /// subscriptions it has; returns how many of them to shed now.
    ///
    /// It sheds a tenth of them (at least one) per step while the core is saturated, and
    /// restores a twentieth (at least one) per step once it is well below: slower back
    /// than down, so that it settles instead of oscillating around the knee.
    pub fn observe(&mut self, now: Instant, busy: f64, video_subscriptions: usize) -> usize {
        let due = self.last_change.is_none_or(|t| now >= t + STEP);
        if due {
            if busy > SHED_ABOVE && self.shed < video_subscriptions {
                self.shed += (video_subscriptions / 10).max(1);
                self.last_change = Some(now);
            } else if busy < RESTORE_BELOW && self.shed > 0 {
                self.shed = self.shed.saturating_sub((video_subscriptions / 20).max(1));
                self.last_change = Some(now);
            }
        }
        self.shed = self.shed.min(video_subscriptions);
        self.shed
    }

    /// How many video subscriptions are shed now.
    pub fn shed(&self) -> usize {
        self.shed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sheds_while_saturated_and_restores_slower() {
        let t0 = Instant::now();
        let mut s = Shedder::default();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        assert_eq!(s.observe(at(0), 0.5, 100), 0, "not saturated: nothing shed");
        assert_eq!(s.observe(at(100), 0.95, 100), 10, "a tenth at once");
        assert_eq!(s.observe(at(200), 0.99, 100), 10, "then waits a step");
        assert_eq!(s.observe(at(400), 0.99, 100), 20);
        assert_eq!(s.observe(at(700), 0.8, 100), 20, "between the marks: holds");
        assert_eq!(
            s.observe(at(1000), 0.5, 100),
            15,
            "back a twentieth per step"
        );
        assert_eq!(s.observe(at(1300), 0.5, 100), 10);
        assert_eq!(s.observe(at(1600), 0.5, 100), 5);
        assert_eq!(s.observe(at(1900), 0.5, 100), 0);
        assert_eq!(s.observe(at(2200), 0.5, 100), 0);
    }

    #[test]
    fn never_sheds_more_than_there_is() {
        let t0 = Instant::now();
        let mut s = Shedder::default();
        for i in 0..20 {
            s.observe(t0 + STEP * i, 1.0, 3);
        }
        assert_eq!(s.shed(), 3);
        // Subscriptions leave: the count follows.
        assert_eq!(s.observe(t0 + STEP * 21, 1.0, 1), 1);
        assert_eq!(s.observe(t0 + STEP * 22, 0.1, 1), 0);
    }
}
