//! Overload: what a core does when it is asked to forward more than it can (sans-IO).
//!
//! A saturated core that keeps trying to serve everyone serves everyone badly: its input
//! queue grows, every subscriber's latency climbs together, and then the kernel drops
//! publishers' packets at random, which every subscriber sees as loss and answers with
//! NACKs and keyframe requests — more work for a core that has none to spare.
//!
//! So past saturation the core sheds on purpose. The driver measures how busy the core
//! was ([`crate::load`]) and reports it every [`LOAD_WINDOW`]; the [`Shedder`] turns that into how many video subscriptions to stop
//! serving. The core stops the lowest-priority ones first — the most recently started,
//! so that people already watching keep watching — and keeps their audio (a few percent
//! of the packets, and what a conversation needs). Each shed packet is counted
//! (`drops_total{reason="overload"}`), the number of shed subscriptions is a gauge, and
//! every session stays up. When the load falls, video comes back one group at a time,
//! with a keyframe and numbering that continues where it stopped.

use std::time::{Duration, Instant};

/// How often the driver reports the core's load.
pub const LOAD_WINDOW: Duration = Duration::from_millis(100);

/// Busier than this (see [`crate::load`]; smoothed) and the core sheds more. Not 1:
/// the CPU's time comes in 10 ms ticks and the smoothing lags, and at this share the
/// input queue already grows.
pub const SHED_ABOVE: f64 = 0.90;

/// Less busy than this (smoothed) and the core restores some of what it shed.
pub const RESTORE_BELOW: f64 = 0.70;

/// The weight of the newest window in the smoothed load: a keyframe fanned out to a few
/// hundred subscribers fills one 100 ms window on its own, and must not shed anyone.
pub const SMOOTHING: f64 = 0.3;

/// The least time between two changes, so each change can show in the load first.
pub const STEP: Duration = Duration::from_millis(300);

/// Decides how many video subscriptions a core sheds.
#[derive(Debug, Default)]
pub struct Shedder {
    shed: usize,
    last_change: Option<Instant>,
    load: f64,
}

impl Shedder {
    /// Takes the core's load over the last window (`busy`, 0–1) and how many video
    /// subscriptions it has; returns how many of them to shed now.
    ///
    /// The load is smoothed ([`SMOOTHING`]). It sheds a tenth of the subscriptions (at
    /// least one) per step while the core is saturated, and restores a twentieth (at least
    /// one) per step once it is well below: slower back than down, so that it settles
    /// instead of oscillating around the knee.
    pub fn observe(&mut self, now: Instant, busy: f64, video_subscriptions: usize) -> usize {
        self.load = SMOOTHING * busy.clamp(0.0, 1.0) + (1.0 - SMOOTHING) * self.load;
        let due = self.last_change.is_none_or(|t| now >= t + STEP);
        if due {
            if self.load > SHED_ABOVE && self.shed < video_subscriptions {
                self.shed += (video_subscriptions / 10).max(1);
                self.last_change = Some(now);
            } else if self.load < RESTORE_BELOW && self.shed > 0 {
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

    /// The smoothed load (0–1).
    pub fn load(&self) -> f64 {
        self.load
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `busy` every 100 ms for `ms`, starting at `*t`; returns the last answer.
    fn feed(s: &mut Shedder, t: &mut Instant, ms: u64, busy: f64, subs: usize) -> usize {
        let mut shed = s.shed();
        for _ in 0..ms / 100 {
            *t += LOAD_WINDOW;
            shed = s.observe(*t, busy, subs);
        }
        shed
    }

    #[test]
    fn sheds_while_saturated_and_restores_slower() {
        let mut t = Instant::now();
        let mut s = Shedder::default();
        assert_eq!(
            feed(&mut s, &mut t, 2000, 0.85, 100),
            0,
            "busy, not saturated"
        );
        // Saturated: once the smoothed load passes the mark, a tenth per 300 ms step.
        assert_eq!(feed(&mut s, &mut t, 200, 1.0, 100), 10);
        assert_eq!(feed(&mut s, &mut t, 300, 1.0, 100), 20);
        assert_eq!(feed(&mut s, &mut t, 300, 1.0, 100), 30);
        // Between the marks: holds.
        assert_eq!(feed(&mut s, &mut t, 2000, 0.85, 100), 30);
        // Well below: back a twentieth per step.
        assert_eq!(feed(&mut s, &mut t, 200, 0.5, 100), 25);
        assert_eq!(feed(&mut s, &mut t, 300, 0.5, 100), 20);
        assert_eq!(feed(&mut s, &mut t, 3000, 0.5, 100), 0);
    }

    #[test]
    fn one_busy_window_sheds_nothing() {
        let mut t = Instant::now();
        let mut s = Shedder::default();
        feed(&mut s, &mut t, 2000, 0.6, 100);
        // A keyframe to every subscriber fills a window or two.
        assert_eq!(feed(&mut s, &mut t, 200, 1.0, 100), 0);
        assert_eq!(feed(&mut s, &mut t, 1000, 0.6, 100), 0);
    }

    #[test]
    fn never_sheds_more_than_there_is() {
        let mut t = Instant::now();
        let mut s = Shedder::default();
        assert_eq!(feed(&mut s, &mut t, 6000, 1.0, 3), 3);
        // Subscriptions leave: the count follows.
        assert_eq!(feed(&mut s, &mut t, 100, 1.0, 1), 1);
        assert_eq!(feed(&mut s, &mut t, 3000, 0.1, 1), 0);
    }
}
