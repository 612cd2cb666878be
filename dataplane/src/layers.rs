//! Simulcast layer selection for one subscription (sans-IO).
//!
//! A simulcast publication arrives as up to [`MAX_LAYERS`] encodings of one video, layer 0
//! the lowest. A subscription forwards exactly one of them, and the [`LayerSelector`]
//! decides which from three things:
//!
//! - what each layer costs: its bitrate, measured from the packets that arrive
//!   ([`LayerSelector::on_packet`]) — a publisher's encoder changes them as it likes, and
//!   Chromium stops its top layers when its own uplink is short, so a layer that has sent
//!   nothing for [`INACTIVE_AFTER`] counts as absent;
//! - what the subscriber's path carries: the bandwidth estimate
//!   ([`LayerSelector::set_estimate`]; none means bandwidth adaptation is off, and the
//!   highest layer allowed is chosen);
//! - what the subscriber asked for ([`LayerSelector::set_cap`]: a highest layer, a highest
//!   bitrate).
//!
//! A switch takes effect only at a keyframe of the new layer: until one arrives the old
//! layer keeps flowing, so the subscriber's picture never freezes for a switch. The
//! selector asks for that keyframe ([`LayerSelector::poll_keyframe_request`], at most once
//! per [`KEYFRAME_RETRY`]). Going down is decided at once (the path is already
//! overloaded); going up needs the estimate to carry the higher layer with
//! [`UP_HEADROOM`] to spare for [`UP_HOLD`], and not sooner than [`UP_BACKOFF`] after a
//! down switch, so that an estimate wobbling around a layer's bitrate does not flap.

use std::time::{Duration, Instant};

/// The most layers a publication has (Chromium sends up to three).
pub const MAX_LAYERS: usize = 3;

/// A layer that sent nothing for this long is treated as absent.
pub const INACTIVE_AFTER: Duration = Duration::from_secs(1);

/// The bitrate window over which each layer is measured.
pub const RATE_WINDOW: Duration = Duration::from_millis(500);

/// Going up needs the higher layer's bitrate to be at most this share of the estimate.
pub const UP_HEADROOM: f64 = 0.85;

/// … continuously for this long.
pub const UP_HOLD: Duration = Duration::from_secs(2);

/// No up switch sooner than this after a down switch.
pub const UP_BACKOFF: Duration = Duration::from_secs(4);

/// The least time between two keyframe requests for a pending switch.
pub const KEYFRAME_RETRY: Duration = Duration::from_millis(500);

/// One layer's measured bitrate.
#[derive(Debug, Clone, Copy, Default)]
struct Rate {
    window_start: Option<Instant>,
    bytes: u64,
    /// Smoothed bits per second (0 until a window completes).
    bps: u64,
    last_seen: Option<Instant>,
}

impl Rate {
    fn add(&mut self, now: Instant, bytes: usize) {
        let start = *self.window_start.get_or_insert(now);
        let elapsed = now.saturating_duration_since(start);
        if elapsed >= RATE_WINDOW {
            let bps = (self.bytes * 8) as f64 / elapsed.as_secs_f64();
            // The first window counts in full; later ones are smoothed by half.
            self.bps = if self.bps == 0 {
                bps as u64
            } else {
                ((self.bps as f64 + bps) / 2.0) as u64
            };
            self.window_start = Some(now);
            self.bytes = 0;
        }
        self.bytes += bytes as u64;
        self.last_seen = Some(now);
    }

    fn active(&self, now: Instant) -> bool {
        self.last_seen
            .is_some_and(|t| now.saturating_duration_since(t) < INACTIVE_AFTER)
    }
}

/// The layer choice of one subscription.
#[derive(Debug, Clone)]
pub struct LayerSelector {
    rates: [Rate; MAX_LAYERS],
    /// The layer being forwarded (`None` before the first keyframe).
    current: Option<u8>,
    /// The layer wanted; a switch happens at its next keyframe.
    target: Option<u8>,
    estimate: Option<u64>,
    cap_layer: u8,
    cap_bps: Option<u64>,
    /// Since when the estimate has carried the layer above the current one.
    up_ok_since: Option<Instant>,
    last_down: Option<Instant>,
    last_request: Option<Instant>,
    switches: u64,
}

impl Default for LayerSelector {
    fn default() -> Self {
        LayerSelector {
            rates: [Rate::default(); MAX_LAYERS],
            current: None,
            target: None,
            estimate: None,
            cap_layer: (MAX_LAYERS - 1) as u8,
            cap_bps: None,
            up_ok_since: None,
            last_down: None,
            last_request: None,
            switches: 0,
        }
    }
}

impl LayerSelector {
    /// A packet of `layer` arrived (`bytes` of payload; `keyframe_start` when it is the
    /// first packet of a keyframe). Returns whether this subscription forwards it.
    pub fn on_packet(
        &mut self,
        now: Instant,
        layer: u8,
        bytes: usize,
        keyframe_start: bool,
    ) -> bool {
        let Some(rate) = self.rates.get_mut(usize::from(layer)) else {
            return false;
        };
        rate.add(now, bytes);
        self.target = self.choose(now);
        if keyframe_start && self.target == Some(layer) && self.current != Some(layer) {
            if self.current.is_some_and(|c| c > layer) {
                self.last_down = Some(now);
            }
            if self.current.is_some() {
                self.switches += 1;
            }
            self.current = Some(layer);
            self.up_ok_since = None;
            self.last_request = None;
        }
        self.current == Some(layer)
    }

    /// The subscriber's path carries `bps` (the bandwidth estimator's latest figure).
    pub fn set_estimate(&mut self, now: Instant, bps: u64) {
        self.estimate = Some(bps);
        self.target = self.choose(now);
    }

    /// What the subscriber asked for: at most `layer` (`None`: any), at most `bps`
    /// (`None`: any).
    pub fn set_cap(&mut self, now: Instant, layer: Option<u8>, bps: Option<u64>) {
        self.cap_layer = layer.unwrap_or((MAX_LAYERS - 1) as u8);
        self.cap_bps = bps;
        self.target = self.choose(now);
    }

    /// The layer to ask the publisher for a keyframe of, when a switch (or the first
    /// picture) waits for one; at most once per [`KEYFRAME_RETRY`].
    pub fn poll_keyframe_request(&mut self, now: Instant) -> Option<u8> {
        let target = self.target?;
        if self.current == Some(target) {
            return None;
        }
        if self
            .last_request
            .is_some_and(|t| now.saturating_duration_since(t) < KEYFRAME_RETRY)
        {
            return None;
        }
        self.last_request = Some(now);
        Some(target)
    }

    /// The layer forwarded now.
    pub fn current(&self) -> Option<u8> {
        self.current
    }

    /// The layer wanted (equal to [`Self::current`] when no switch is pending).
    pub fn target(&self) -> Option<u8> {
        self.target
    }

    /// Layer switches so far (the first picture is not one).
    pub fn switches(&self) -> u64 {
        self.switches
    }

    /// A layer's measured bitrate, bits per second.
    pub fn layer_bps(&self, layer: u8) -> u64 {
        self.rates.get(usize::from(layer)).map_or(0, |r| r.bps)
    }

    /// The layer this subscription should be on now.
    fn choose(&mut self, now: Instant) -> Option<u8> {
        // Active layers within the subscriber's cap, lowest first. The lowest active
        // layer is always allowed: a subscriber is never left without video by its cap.
        let mut allowed: Vec<u8> = (0..MAX_LAYERS as u8)
            .filter(|l| self.rates[usize::from(*l)].active(now))
            .collect();
        let lowest = *allowed.first()?;
        // A layer not measured yet (its first window still open) counts as too costly
        // for any limit, except the lowest.
        let rates = self.rates;
        let bps = |l: u8| match rates[usize::from(l)].bps {
            0 if l != lowest => u64::MAX,
            b => b,
        };
        allowed.retain(|l| {
            *l == lowest || (*l <= self.cap_layer && self.cap_bps.is_none_or(|cap| bps(*l) <= cap))
        });
        let highest = *allowed.last()?;
        let Some(estimate) = self.estimate else {
            return Some(highest);
        };
        // The highest allowed layer up to `ceiling` that the estimate carries now.
        let carried = |ceiling: u8| {
            allowed
                .iter()
                .rev()
                .copied()
                .find(|l| *l <= ceiling && bps(*l) <= estimate)
                .unwrap_or(lowest)
        };
        // Where the subscription is (or is headed, before its first picture).
        let Some(here) = self.current.filter(|c| allowed.contains(c)) else {
            // No usable current layer: the highest the estimate carries.
            self.up_ok_since = None;
            return Some(carried(u8::MAX));
        };
        // Down at once when the current layer no longer fits.
        if bps(here) > estimate && here != lowest {
            self.up_ok_since = None;
            return Some(carried(here.saturating_sub(1)));
        }
        // Up one layer when it has fitted with headroom for long enough.
        let Some(up) = allowed.iter().copied().find(|l| *l > here) else {
            self.up_ok_since = None;
            return Some(here);
        };
        let fits = bps(up) as f64 <= estimate as f64 * UP_HEADROOM;
        let backed_off = self
            .last_down
            .is_some_and(|t| now.saturating_duration_since(t) < UP_BACKOFF);
        if !fits || backed_off {
            self.up_ok_since = None;
            return Some(here);
        }
        let since = *self.up_ok_since.get_or_insert(now);
        if now.saturating_duration_since(since) >= UP_HOLD {
            Some(up)
        } else {
            Some(here)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A simulcast publisher on a virtual clock: three layers at `bps`, 30 frames a
    /// second, keyframes every 3 s or when asked (a keyframe is 5 frames' worth).
    struct Publisher {
        bps: [u64; 3],
        on: [bool; 3],
        frame: u64,
        keyframe_due: [bool; 3],
    }

    impl Publisher {
        fn new() -> Self {
            Publisher {
                bps: [150_000, 500_000, 1_500_000],
                on: [true; 3],
                frame: 0,
                keyframe_due: [true; 3],
            }
        }

        /// Sends one frame of each layer through `sel`; returns the layers forwarded.
        fn frame(&mut self, sel: &mut LayerSelector, now: Instant) -> Vec<u8> {
            if let Some(l) = sel.poll_keyframe_request(now) {
                self.keyframe_due[usize::from(l)] = true;
            }
            let mut fwd = Vec::new();
            for l in 0..3u8 {
                let i = usize::from(l);
                if !self.on[i] {
                    continue;
                }
                let key = self.keyframe_due[i] || self.frame.is_multiple_of(90);
                self.keyframe_due[i] = false;
                let bytes = (self.bps[i] / 8 / 30) as usize;
                // Two packets per frame; the first starts the keyframe.
                for p in 0..2 {
                    let size = if key { bytes * 5 / 2 } else { bytes / 2 };
                    if sel.on_packet(now, l, size, key && p == 0) && !fwd.contains(&l) {
                        fwd.push(l);
                    }
                }
            }
            self.frame += 1;
            fwd
        }

        /// Runs `secs` seconds; returns the layers forwarded per frame.
        fn run(&mut self, sel: &mut LayerSelector, t: &mut Instant, secs: f64) -> Vec<Vec<u8>> {
            let frames = (secs * 30.0) as usize;
            let mut out = Vec::new();
            for _ in 0..frames {
                out.push(self.frame(sel, *t));
                *t += Duration::from_micros(33_333);
            }
            out
        }
    }

    /// Every frame forwarded one layer (no freeze), two only in the frame of a switch
    /// (the old layer's frame, then the new one's keyframe).
    fn one_layer_each(frames: &[Vec<u8>]) -> bool {
        let doubled = frames.iter().filter(|f| f.len() == 2).count();
        frames.iter().all(|f| f.len() == 1 || f.len() == 2) && doubled <= 1
    }

    #[test]
    fn without_an_estimate_the_highest_layer_is_forwarded_from_its_keyframe() {
        let mut sel = LayerSelector::default();
        let mut p = Publisher::new();
        let mut t = Instant::now();
        p.run(&mut sel, &mut t, 1.0);
        assert_eq!(sel.current(), Some(2));
        // Steady: the top layer alone, no more switches.
        let settled = sel.switches();
        let frames = p.run(&mut sel, &mut t, 2.0);
        assert!(frames.iter().all(|f| f == &vec![2]), "{:?}", &frames[..10]);
        assert_eq!(sel.switches(), settled);
        let top = sel.layer_bps(2);
        assert!((1_200_000..2_200_000).contains(&top), "measured {top}");
    }

    #[test]
    fn a_narrow_path_converges_to_the_lowest_layer_without_a_gap() {
        let mut sel = LayerSelector::default();
        let mut p = Publisher::new();
        let mut t = Instant::now();
        p.run(&mut sel, &mut t, 3.0);
        assert_eq!(sel.current(), Some(2));
        let before = sel.switches();
        // The path narrows to 300 kbit/s: layer 0 (150k) fits, layer 1 (500k) does not.
        sel.set_estimate(t, 300_000);
        assert_eq!(sel.target(), Some(0));
        let frames = p.run(&mut sel, &mut t, 2.0);
        assert_eq!(sel.current(), Some(0));
        // Layer 2 flowed until layer 0's keyframe, then layer 0: every frame had one.
        assert!(one_layer_each(&frames), "{frames:?}");
        assert_eq!(sel.switches(), before + 1);
        // The switch waited only for the keyframe it asked for (one frame later).
        let switched_at = frames.iter().position(|f| f == &vec![0]).unwrap_or(99);
        assert!(switched_at <= 2, "switched after {switched_at} frames");
    }

    #[test]
    fn going_up_waits_for_sustained_headroom_and_does_not_flap() {
        let mut sel = LayerSelector::default();
        let mut p = Publisher::new();
        let mut t = Instant::now();
        sel.set_estimate(t, 300_000);
        let frames = p.run(&mut sel, &mut t, 3.0);
        // A narrow path from the start never sees a layer it cannot carry.
        assert!(frames.iter().all(|f| f == &vec![0]), "{:?}", &frames[..20]);
        assert_eq!(sel.current(), Some(0));
        let before = sel.switches();
        // An estimate wobbling around layer 1's bitrate: never 2 s of headroom.
        for i in 0..20 {
            let e = if i % 2 == 0 { 700_000 } else { 450_000 };
            sel.set_estimate(t, e);
            p.run(&mut sel, &mut t, 1.0);
        }
        assert_eq!(sel.switches(), before, "flapped");
        assert_eq!(sel.current(), Some(0));
        // Room for layer 1 for good: up after the hold, one layer at a time.
        sel.set_estimate(t, 800_000);
        p.run(&mut sel, &mut t, UP_HOLD.as_secs_f64() - 0.5);
        assert_eq!(sel.current(), Some(0), "went up before the hold");
        let frames = p.run(&mut sel, &mut t, 1.5);
        assert_eq!(sel.current(), Some(1));
        assert!(one_layer_each(&frames));
        // Plenty of room: on to the top, after another hold.
        sel.set_estimate(t, 5_000_000);
        p.run(&mut sel, &mut t, 3.0);
        assert_eq!(sel.current(), Some(2));
        assert_eq!(sel.switches(), before + 2);
    }

    #[test]
    fn no_up_switch_soon_after_a_down_switch() {
        let mut sel = LayerSelector::default();
        let mut p = Publisher::new();
        let mut t = Instant::now();
        p.run(&mut sel, &mut t, 2.0);
        sel.set_estimate(t, 300_000);
        p.run(&mut sel, &mut t, 0.5);
        assert_eq!(sel.current(), Some(0));
        sel.set_estimate(t, 5_000_000);
        p.run(
            &mut sel,
            &mut t,
            (UP_BACKOFF - Duration::from_millis(600)).as_secs_f64(),
        );
        assert_eq!(sel.current(), Some(0), "up inside the back-off");
        p.run(&mut sel, &mut t, UP_HOLD.as_secs_f64() + 1.0);
        assert_eq!(sel.current(), Some(1));
    }

    #[test]
    fn the_subscribers_cap_bounds_the_layer() {
        let mut sel = LayerSelector::default();
        let mut p = Publisher::new();
        let mut t = Instant::now();
        sel.set_cap(t, Some(1), None);
        p.run(&mut sel, &mut t, 2.0);
        assert_eq!(sel.current(), Some(1));
        // A bitrate cap below layer 1 takes it to layer 0; below layer 0 it stays there.
        sel.set_cap(t, None, Some(200_000));
        p.run(&mut sel, &mut t, 1.0);
        assert_eq!(sel.current(), Some(0));
        sel.set_cap(t, None, Some(10_000));
        p.run(&mut sel, &mut t, 1.0);
        assert_eq!(sel.current(), Some(0));
        // Cap lifted, no estimate: the top.
        sel.set_cap(t, None, None);
        p.run(&mut sel, &mut t, 1.0);
        assert_eq!(sel.current(), Some(2));
    }

    #[test]
    fn a_layer_the_publisher_stops_is_left_for_one_that_flows() {
        let mut sel = LayerSelector::default();
        let mut p = Publisher::new();
        let mut t = Instant::now();
        p.run(&mut sel, &mut t, 2.0);
        assert_eq!(sel.current(), Some(2));
        // The publisher's uplink shrinks and Chromium stops its top layer.
        p.on[2] = false;
        let frames = p.run(&mut sel, &mut t, 2.0);
        assert_eq!(sel.current(), Some(1));
        // Frames went missing only while the stopped layer was still deemed active.
        let empty = frames.iter().filter(|f| f.is_empty()).count();
        assert!(empty <= 32, "{empty} frames without video");
        // It comes back: up again (no estimate, so at once at its keyframe).
        p.on[2] = true;
        p.run(&mut sel, &mut t, 1.0);
        assert_eq!(sel.current(), Some(2));
    }

    #[test]
    fn keyframe_requests_are_rate_limited_and_stop_once_switched() {
        let mut sel = LayerSelector::default();
        let mut t = Instant::now();
        // Packets of layer 0 only, no keyframe yet: the first picture waits for one.
        assert!(!sel.on_packet(t, 0, 500, false));
        assert_eq!(sel.poll_keyframe_request(t), Some(0));
        assert_eq!(
            sel.poll_keyframe_request(t + Duration::from_millis(100)),
            None
        );
        t += KEYFRAME_RETRY;
        assert!(!sel.on_packet(t, 0, 500, false));
        assert_eq!(sel.poll_keyframe_request(t), Some(0));
        assert!(sel.on_packet(t, 0, 500, true));
        assert_eq!(sel.poll_keyframe_request(t + KEYFRAME_RETRY), None);
        // Unknown layers are refused, not a panic.
        assert!(!sel.on_packet(t, 7, 500, true));
    }
}
