//! When to pad a subscriber's path up to its next layer (sans-IO).
//!
//! A subscriber's estimate only grows past what its path carried while the path was
//! loaded, so the estimator is asked to pad the path up to the rate of the subscriber's
//! next layer (str0m fills it with padding, never above the estimate). On a path that
//! cannot carry that layer, the padding keeps the path full at its estimate: every
//! keyframe then waits in the bottleneck's queue and the subscriber's picture freezes
//! (seen in the simulcast end-to-end test: freezes of 0.5–0.8 s on a 300 kbit/s path
//! padded towards a 370 kbit/s layer).
//!
//! So padding is a trial: while the estimate climbs ([`PROGRESS`] within [`TRIAL`]) it goes
//! on; once the estimate has stalled below the target for [`TRIAL`] the path rests (no
//! padding, media only) for a back-off that starts at [`FIRST_REST`] and doubles to
//! [`LONGEST_REST`]. After a rest the path is tried again for only [`RETRIAL`], which a
//! climb turns into a whole trial: a path already found narrow is not kept full for
//! another ten seconds on the chance it widened. Reaching the target ends the back-off
//! (the subscriber goes up); a target that rises by more than [`RETRY_ON_RISE`] (a cap
//! raised, a subscription added) starts a new trial at once. Probes — short bursts above
//! the estimate — go on while the path rests, so a path that widens is still found.
//!
//! A trial also ends at once when the padding has built a queue: the round trip the
//! subscriber reports ([`Padding::on_round_trip`]) has risen [`QUEUE_LIMIT`] above the
//! path's shortest of late ([`BASE_WINDOW`]). And the first trial waits for the first
//! report (at most [`WAIT_FOR_ROUND_TRIP`]), so that the shortest is measured on a path
//! padding has not filled. The estimator cannot see a standing queue: it reads the
//! *growth* of delay, and a queue that filled in the first second, while the estimate was
//! still at its starting value (or at a start-up probe's result), stays full at a steady
//! delay. Seen in the simulcast end-to-end test (in one run of two with some builds, twice
//! in a row in CI): a 300 kbit/s path padded from its first second kept its shaper's
//! 400 ms queue full for the whole run, every report read ~400 ms, so no rise showed; a
//! packet or two a second were dropped, each resend waited 400 ms behind the queue and
//! was asked for again, and the resends kept the queue full after the padding stopped —
//! the player froze for seconds.

use std::time::{Duration, Instant};

/// How long padding may go on without the estimate climbing by [`PROGRESS`].
pub const TRIAL: Duration = Duration::from_secs(10);

/// How long padding goes on after a rest unless the estimate climbs …
pub const RETRIAL: Duration = Duration::from_secs(3);

/// … where this share above where the estimate stalled in the failed trial (or above the
/// estimate the short trial started from, when higher) counts as climbing too, when less
/// than [`climbed`]'s step: an estimator with room climbs 8 % a second, so a path that
/// widened shows it within [`RETRIAL`] even when the target is far above. Measured from
/// the stall, not from the start: a narrow path's estimate, sunk while it rested, regains
/// 15 % in no time (the dataplane's simulcast test failed in CI on that, once).
pub const RETRIAL_CLIMB: f64 = 0.15;

/// What counts as climbing: the estimate above its best of the trial by this share …
pub const PROGRESS: f64 = 0.05;

/// … and by this share of what was left to the target: an estimate creeping towards the
/// path's capacity (a few per cent, ever slower) is not on its way to a layer far above it.
/// A quarter of the gap per trial is a pace that reaches the target within a few trials;
/// a tenth let a 300 kbit/s path's estimate, creeping from 227 to 275 kbit/s in 10 s
/// towards a 635 kbit/s target, keep its padding for good (the dataplane's simulcast test,
/// one run in twelve). An estimator with real room climbs 8 % a second, far faster.
pub const PROGRESS_OF_GAP: f64 = 0.25;

/// The first rest after a trial that failed …
pub const FIRST_REST: Duration = Duration::from_secs(4);

/// … doubling with each failed trial up to this.
pub const LONGEST_REST: Duration = Duration::from_secs(32);

/// A target higher than the one of the last decision by this share starts a new trial.
pub const RETRY_ON_RISE: f64 = 0.25;

/// A round trip this far above the path's shortest means the padding keeps a queue at the
/// bottleneck: the trial ends. Well below the 400–500 ms at which a keyframe waiting in
/// that queue shows as a freeze, well above what a loaded receiver adds to a report.
pub const QUEUE_LIMIT: Duration = Duration::from_millis(100);

/// The path's shortest round trip is the least reported within about this long (the
/// lesser of two half windows), so a path that became longer for good is learnt anew.
pub const BASE_WINDOW: Duration = Duration::from_secs(30);

/// The least round trip of recent reports, over two half windows of [`BASE_WINDOW`].
#[derive(Debug, Clone, Copy, Default)]
struct BaseRtt {
    /// When the current half window began, and its least so far.
    current: Option<(Instant, Duration)>,
    /// The least of the half window before.
    previous: Option<Duration>,
}

impl BaseRtt {
    /// Takes a report; returns the path's shortest round trip of late.
    fn observe(&mut self, now: Instant, rtt: Duration) -> Duration {
        match self.current {
            Some((start, least)) if now.saturating_duration_since(start) < BASE_WINDOW / 2 => {
                self.current = Some((start, least.min(rtt)));
            }
            Some((_, least)) => {
                self.previous = Some(least);
                self.current = Some((now, rtt));
            }
            None => self.current = Some((now, rtt)),
        }
        let current = self.current.map_or(rtt, |(_, least)| least);
        self.previous.map_or(current, |p| p.min(current))
    }
}

/// How long a new subscriber's path waits for its first round trip before padding starts
/// anyway (a client that sends no receiver reports).
pub const WAIT_FOR_ROUND_TRIP: Duration = Duration::from_secs(5);

/// What a round trip report changed (see [`Padding::on_round_trip`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// The path's shortest round trip is known: the first trial starts.
    Starts,
    /// The padding has built a queue: the trial ends, the path rests.
    Stops,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Not padding yet: the path's shortest round trip is not known (until `until` at most).
    Waiting { until: Instant },
    /// Padding towards the target until `since + length`; the estimate last climbed at
    /// `since`, to `best`.
    Trying {
        since: Instant,
        best: u64,
        length: Duration,
    },
    /// Not padding until `until`; the failed trial's estimate stalled at `stalled` (its
    /// best or later, if higher).
    Resting { until: Instant, stalled: u64 },
}

impl State {
    /// A trial of `length` starting now from `estimate`.
    fn trying(now: Instant, estimate: u64, length: Duration) -> Self {
        State::Trying {
            since: now,
            best: estimate,
            length,
        }
    }
}

/// One peer's padding schedule.
#[derive(Debug, Clone)]
pub struct Padding {
    state: State,
    rest: Duration,
    /// The target last decided on: when a trial or a rest began, or the estimate reached it.
    target: u64,
    base: BaseRtt,
}

impl Padding {
    /// A schedule whose first trial starts with the path's first round trip report (or
    /// after [`WAIT_FOR_ROUND_TRIP`]).
    pub fn new(now: Instant) -> Self {
        Self {
            state: State::Waiting {
                until: now + WAIT_FOR_ROUND_TRIP,
            },
            rest: FIRST_REST,
            target: 0,
            base: BaseRtt::default(),
        }
    }

    /// The subscriber reported a round trip of `rtt`. The first report gives the path's
    /// shortest round trip, measured before any padding, and starts the first trial. A
    /// report [`QUEUE_LIMIT`] or more above the shortest of late during a trial means the
    /// padding has filled a queue: the path rests as after a failed trial (the rest
    /// doubling). Either way the caller asks [`Padding::minimum`] again at once.
    pub fn on_round_trip(&mut self, now: Instant, rtt: Duration) -> Option<Change> {
        let base = self.base.observe(now, rtt);
        match self.state {
            State::Waiting { .. } => {
                self.state = State::Waiting { until: now };
                Some(Change::Starts)
            }
            State::Trying { best, .. } if rtt.saturating_sub(base) >= QUEUE_LIMIT => {
                self.rest_after_failure(now, best);
                Some(Change::Stops)
            }
            _ => None,
        }
    }

    /// The rate to pad the path up to now, bits per second: `target` (what the next
    /// layers need) while trying, 0 while resting. `estimate` is the peer's latest.
    pub fn minimum(&mut self, now: Instant, target: u64, estimate: Option<u64>) -> u64 {
        if let State::Waiting { until } = self.state {
            self.target = target;
            if now < until {
                return 0;
            }
            self.state = State::trying(now, estimate.unwrap_or(0), TRIAL);
            return target;
        }
        let reached = estimate.is_some_and(|e| e >= target);
        let estimate = estimate.unwrap_or(0);
        let risen = target as f64 > self.target as f64 * (1.0 + RETRY_ON_RISE);
        if reached || risen {
            if reached {
                self.rest = FIRST_REST;
            }
            if risen || matches!(self.state, State::Resting { .. }) {
                self.state = State::trying(now, estimate, TRIAL);
            }
            self.target = target;
            return target;
        }
        match self.state {
            State::Trying { best, length, .. }
                if climbed(best, estimate, target)
                    || (length == RETRIAL
                        && estimate as f64 > best as f64 * (1.0 + RETRIAL_CLIMB)) =>
            {
                self.state = State::trying(now, estimate, TRIAL);
                target
            }
            State::Trying {
                since,
                length,
                best,
                ..
            } if now.saturating_duration_since(since) >= length => {
                self.rest_after_failure(now, best.max(estimate));
                self.target = target;
                0
            }
            State::Trying { .. } => target,
            State::Resting { until, stalled } if now >= until => {
                self.state = State::trying(now, estimate.max(stalled), RETRIAL);
                self.target = target;
                target
            }
            State::Resting { .. } | State::Waiting { .. } => 0,
        }
    }

    /// A trial failed (its estimate stalled at `stalled`, or it built a queue): the path
    /// rests for the current back-off, which doubles for next time.
    fn rest_after_failure(&mut self, now: Instant, stalled: u64) {
        self.state = State::Resting {
            until: now + self.rest,
            stalled,
        };
        self.rest = (self.rest * 2).min(LONGEST_REST);
    }

    /// Whether the path rests (no padding) now.
    pub fn resting(&self) -> bool {
        matches!(self.state, State::Resting { .. })
    }
}

/// Whether `estimate` is a climb from `best` on the way to `target` ([`PROGRESS`] and
/// [`PROGRESS_OF_GAP`]).
fn climbed(best: u64, estimate: u64, target: u64) -> bool {
    let (best, estimate, target) = (best as f64, estimate as f64, target as f64);
    let step = (best * PROGRESS).max((target - best) * PROGRESS_OF_GAP);
    estimate > best + step
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);
    const T: u32 = TRIAL.as_secs() as u32;
    const R: u32 = FIRST_REST.as_secs() as u32;

    /// A schedule whose path reported its first round trip at `t0`: the first trial is on.
    fn started(t0: Instant) -> Padding {
        let mut p = Padding::new(t0);
        assert_eq!(
            p.on_round_trip(t0, Duration::from_millis(2)),
            Some(Change::Starts)
        );
        p
    }

    /// Steps a schedule every second from `from` for `secs` seconds with a fixed target
    /// and estimate, returning the minimum asked at each step.
    fn run(p: &mut Padding, from: Instant, secs: u32, target: u64, est: u64) -> Vec<u64> {
        (0..secs)
            .map(|i| p.minimum(from + S * i, target, Some(est)))
            .collect()
    }

    /// A schedule whose first trial (`target` against a steady `est`) failed, and when
    /// its rest began.
    fn failed_trial(target: u64, est: u64) -> (Padding, Instant) {
        let t0 = Instant::now();
        let mut p = started(t0);
        run(&mut p, t0, T + 1, target, est);
        assert!(p.resting());
        (p, t0 + S * T)
    }

    #[test]
    fn a_path_that_cannot_carry_the_next_layer_rests_longer_each_time() {
        let t0 = Instant::now();
        let mut p = started(t0);
        // 475 kbit/s wanted, the path holds 300: a trial of padding, then rest.
        let asked = run(&mut p, t0, T, 475_000, 300_000);
        assert!(asked.iter().all(|m| *m == 475_000), "{asked:?}");
        assert_eq!(p.minimum(t0 + S * T, 475_000, Some(300_000)), 0);
        assert!(p.resting());
        // The first rest, then a short trial.
        let rest = run(&mut p, t0 + S * (T + 1), R - 1, 475_000, 300_000);
        assert!(rest.iter().all(|m| *m == 0), "{rest:?}");
        let second = t0 + S * (T + R);
        assert_eq!(p.minimum(second, 475_000, Some(300_000)), 475_000);
        assert_eq!(
            p.minimum(second + RETRIAL - S, 475_000, Some(300_000)),
            475_000
        );
        assert_eq!(p.minimum(second + RETRIAL, 475_000, Some(300_000)), 0);
        // The second rest is twice as long.
        let third = second + RETRIAL + S * (2 * R);
        assert_eq!(p.minimum(third - S, 475_000, Some(300_000)), 0);
        assert_eq!(p.minimum(third, 475_000, Some(300_000)), 475_000);
    }

    #[test]
    fn a_climb_after_a_rest_earns_a_whole_trial() {
        let (mut p, rested) = failed_trial(1_000_000, 300_000);
        let again = rested + S * R;
        assert_eq!(p.minimum(again, 1_000_000, Some(300_000)), 1_000_000);
        // The path widened: 8 % a second lifts the estimate past a quarter of the gap
        // (475 kbit/s) within the short trial, and padding goes on past it.
        let mut est = 300_000.0;
        for i in 1..=T {
            est *= 1.08;
            let at = again + S * i;
            assert_eq!(
                p.minimum(at, 1_000_000, Some(est as u64)),
                1_000_000,
                "{i} s"
            );
        }
        assert!(!p.resting());
    }

    #[test]
    fn an_estimate_still_climbing_keeps_padding() {
        let t0 = Instant::now();
        let mut p = started(t0);
        // 8 % a second from 300 kbit/s: 16 s to a 1 Mbit/s target, padding all the way.
        let mut est = 300_000.0;
        for i in 0..16 {
            assert_eq!(
                p.minimum(t0 + S * i, 1_000_000, Some(est as u64)),
                1_000_000
            );
            est *= 1.08;
        }
        assert!(!p.resting());
    }

    #[test]
    fn an_estimate_wobbling_below_the_target_is_not_climbing() {
        let t0 = Instant::now();
        let mut p = started(t0);
        // Within 5 % of its first figure, up and down.
        let wobble = [
            300_000, 290_000, 312_000, 285_000, 310_000, 295_000, 314_000,
        ];
        let mut rested_at = None;
        for i in 0..3 * T {
            let e = wobble[i as usize % wobble.len()];
            if p.minimum(t0 + S * i, 475_000, Some(e)) == 0 {
                rested_at = Some(i);
                break;
            }
        }
        assert_eq!(rested_at, Some(T));
    }

    #[test]
    fn an_estimate_creeping_towards_the_paths_capacity_is_not_climbing() {
        let t0 = Instant::now();
        let mut p = started(t0);
        // 640 kbit/s wanted; the estimate nears a 300 kbit/s path's capacity, 6 % in 8 s
        // (seen in the dataplane's simulcast test): padding rests after one trial.
        let mut est: f64 = 256_000.0;
        let mut rested_at = None;
        for i in 0..3 * T {
            if p.minimum(t0 + S * i, 640_000, Some(est as u64)) == 0 {
                rested_at = Some(i);
                break;
            }
            est = (est * 1.0075).min(300_000.0);
        }
        assert_eq!(rested_at, Some(T));
    }

    #[test]
    fn an_estimate_creeping_a_little_faster_is_not_climbing_either() {
        let t0 = Instant::now();
        let mut p = started(t0);
        // 635 kbit/s wanted; on a 300 kbit/s path the estimate went from 227 to 275 kbit/s
        // in 10 s (seen in the dataplane's simulcast test), then kept near it.
        assert_eq!(p.minimum(t0, 635_000, Some(227_000)), 635_000);
        for i in 1..T {
            let est = 227_000 + 4_800 * u64::from(i);
            assert_eq!(p.minimum(t0 + S * i, 635_000, Some(est)), 635_000);
        }
        assert_eq!(p.minimum(t0 + S * T, 635_000, Some(275_000)), 0);
        assert!(p.resting());
    }

    #[test]
    fn a_narrow_paths_estimate_regaining_what_it_lost_while_resting_is_not_a_climb() {
        // 640 kbit/s wanted; the path holds 300 and the trial stalled at 270 kbit/s.
        let (mut p, rested) = failed_trial(640_000, 270_000);
        // While resting the estimate sank to 240; the short trial finds it back at 290
        // (21 % up from 240, 7 % above the stall): not a climb, the path rests again.
        let again = rested + S * R;
        assert_eq!(p.minimum(again, 640_000, Some(240_000)), 640_000);
        assert_eq!(p.minimum(again + S, 640_000, Some(290_000)), 640_000);
        assert_eq!(p.minimum(again + RETRIAL, 640_000, Some(290_000)), 0);
        assert!(p.resting());
    }

    #[test]
    fn rests_never_exceed_the_longest() {
        let t0 = Instant::now();
        let mut p = started(t0);
        p.minimum(t0, 475_000, Some(300_000));
        let mut now = t0;
        let mut rests = Vec::new();
        for _ in 0..8 {
            // Fail a trial.
            now += TRIAL;
            assert_eq!(p.minimum(now, 475_000, Some(300_000)), 0);
            let started = now;
            while p.minimum(now, 475_000, Some(300_000)) == 0 {
                now += S;
            }
            rests.push(now - started);
        }
        let mut want = FIRST_REST;
        for r in rests {
            assert_eq!(r, want);
            want = (want * 2).min(LONGEST_REST);
        }
        assert_eq!(want, LONGEST_REST, "eight failures reach the longest rest");
    }

    #[test]
    fn reaching_the_target_keeps_padding_and_ends_the_back_off() {
        let (mut p, rested) = failed_trial(475_000, 300_000);
        // The path widened and a probe lifted the estimate: padding goes on at once.
        let t1 = rested + S * 2;
        assert_eq!(p.minimum(t1, 475_000, Some(500_000)), 475_000);
        assert!(!p.resting());
        // And stays on while the estimate carries it, however long.
        let asked = run(&mut p, t1 + S, 30, 475_000, 480_000);
        assert!(asked.iter().all(|m| *m == 475_000), "{asked:?}");
        // A later failure rests for the first back-off again, not a doubled one.
        let t2 = t1 + S * 40;
        run(&mut p, t2, T + 1, 1_000_000, 480_000);
        assert!(p.resting());
        assert_eq!(p.minimum(t2 + S * (T + R - 1), 1_000_000, Some(480_000)), 0);
        assert_eq!(
            p.minimum(t2 + S * (T + R), 1_000_000, Some(480_000)),
            1_000_000
        );
    }

    #[test]
    fn a_target_that_rises_starts_a_new_trial_at_once() {
        let (mut p, rested) = failed_trial(200_000, 150_000);
        let t1 = rested + S;
        // Layer rates wobble: 10 % more is not a new target.
        assert_eq!(p.minimum(t1, 220_000, Some(150_000)), 0);
        // A cap raised to a layer twice as costly is.
        assert_eq!(p.minimum(t1 + S, 480_000, Some(150_000)), 480_000);
        assert_eq!(p.minimum(t1 + S * T, 480_000, Some(150_000)), 480_000);
        assert_eq!(p.minimum(t1 + S * (T + 1), 480_000, Some(150_000)), 0);
    }

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_queue_built_by_padding_ends_the_trial_at_once() {
        let t0 = Instant::now();
        let mut p = started(t0);
        assert_eq!(p.minimum(t0, 475_000, Some(300_000)), 475_000);
        // Round trips of a few milliseconds, some jitter: the trial goes on.
        for (i, rtt) in [2, 5, 3, 60].into_iter().enumerate() {
            assert_eq!(
                p.on_round_trip(t0 + S * i as u32, MS * rtt),
                None,
                "{rtt} ms"
            );
        }
        assert_eq!(p.minimum(t0 + S * 4, 475_000, Some(300_000)), 475_000);
        // The shaper's queue fills: 380 ms. The trial ends there, long before its ten
        // seconds, and the path rests as after a failed trial.
        let full = t0 + S * 5;
        assert_eq!(p.on_round_trip(full, MS * 380), Some(Change::Stops));
        assert!(p.resting());
        assert_eq!(p.minimum(full, 475_000, Some(300_000)), 0);
        // Resting, reports change nothing.
        assert_eq!(p.on_round_trip(full + S, MS * 400), None);
        assert_eq!(p.minimum(full + S * (R - 1), 475_000, Some(300_000)), 0);
        // After the rest, a short trial; the queue again ends it, and the next rest is
        // twice as long.
        let again = full + S * R;
        assert_eq!(p.minimum(again, 475_000, Some(300_000)), 475_000);
        assert_eq!(p.on_round_trip(again, MS * 4), None);
        assert_eq!(p.on_round_trip(again + S, MS * 200), Some(Change::Stops));
        assert_eq!(p.minimum(again + S * (2 * R), 475_000, Some(300_000)), 0);
        assert_eq!(
            p.minimum(again + S * (2 * R + 1), 475_000, Some(300_000)),
            475_000
        );
    }

    #[test]
    fn padding_waits_for_the_paths_first_round_trip() {
        let t0 = Instant::now();
        let mut p = Padding::new(t0);
        // No report yet: no padding, however far the target.
        assert_eq!(p.minimum(t0, 475_000, Some(300_000)), 0);
        assert_eq!(p.minimum(t0 + S, 475_000, Some(300_000)), 0);
        // The first report starts a whole trial.
        let first = t0 + S * 2;
        assert_eq!(p.on_round_trip(first, MS * 3), Some(Change::Starts));
        assert_eq!(p.minimum(first, 475_000, Some(300_000)), 475_000);
        assert_eq!(
            p.minimum(first + TRIAL - S, 475_000, Some(300_000)),
            475_000
        );
        assert_eq!(p.minimum(first + TRIAL, 475_000, Some(300_000)), 0);
        // A client that never reports gets its trial after the wait.
        let mut silent = Padding::new(t0);
        assert_eq!(
            silent.minimum(t0 + WAIT_FOR_ROUND_TRIP - S, 475_000, None),
            0
        );
        assert_eq!(
            silent.minimum(t0 + WAIT_FOR_ROUND_TRIP, 475_000, None),
            475_000
        );
    }

    #[test]
    fn a_path_that_became_longer_for_good_is_learnt_anew() {
        let t0 = Instant::now();
        let mut base = BaseRtt::default();
        assert_eq!(base.observe(t0, MS * 2), MS * 2);
        // A new route: 200 ms from now on. The old shortest counts for a window at most.
        let mut learnt = None;
        for i in 1..2 * BASE_WINDOW.as_secs() as u32 {
            if base.observe(t0 + S * i, MS * 200) == MS * 200 {
                learnt = Some(S * i);
                break;
            }
        }
        let learnt = learnt.unwrap_or(Duration::MAX);
        assert!(learnt <= BASE_WINDOW + S, "{learnt:?}");
        assert!(learnt >= BASE_WINDOW / 2, "{learnt:?}");
    }

    #[test]
    fn no_estimate_yet_counts_as_not_reached() {
        let t0 = Instant::now();
        let mut p = started(t0);
        assert_eq!(p.minimum(t0, 300_000, None), 300_000);
        assert_eq!(p.minimum(t0 + TRIAL, 300_000, None), 0);
    }
}
