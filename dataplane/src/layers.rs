//! Simulcast layers (sans-IO): measuring a publication's layers, and choosing one for
//! each subscription.
//!
//! A simulcast publication arrives as up to [`MAX_LAYERS`] encodings of one video, each a
//! `rid` of the publisher's offer; a layer's index is its rid's position there. The
//! publisher's core measures every layer once ([`LayerMeter`]: bitrate over
//! [`RATE_WINDOW`], whether it still flows, the picture size its keyframes announce) and
//! every packet carries that snapshot ([`Layers`]) to the subscriptions, on any core. A
//! publisher's encoder changes its bitrates as it likes, and Chromium stops its top layers
//! when its own uplink is short, so a layer that has sent nothing for [`INACTIVE_AFTER`]
//! counts as absent.
//!
//! A subscription forwards exactly one layer, and its [`LayerSelector`] decides which from
//! the snapshot, the subscriber's bandwidth estimate ([`LayerSelector::set_estimate`]; none
//! means bandwidth adaptation is off, and the highest layer allowed is chosen) and what the
//! subscriber asked for ([`LayerSelector::set_cap`]: a highest layer, bitrate or picture
//! size). Layers are ranked by their measured bitrate, not by their index, so a client that
//! lists its encodings highest first is served as well as one that lists them lowest first.
//!
//! A switch takes effect only at a keyframe of the new layer: until one arrives the old
//! layer keeps flowing, so the subscriber's picture never freezes for a switch. The
//! selector asks for that keyframe ([`LayerSelector::poll_keyframe_request`], at most once
//! per [`KEYFRAME_RETRY`]). Going down is decided at once when the estimate is well
//! below the layer's bitrate, after [`DOWN_HOLD`] when just below (an estimate dips for
//! a moment when the receiver is busy); going up needs the estimate to carry the higher layer with
//! [`UP_HEADROOM`] to spare for [`UP_HOLD`], and not sooner than [`UP_BACKOFF`] after a
//! down switch, so that an estimate wobbling around a layer's bitrate does not flap.
//!
//! Nothing here allocates: the selector runs for every forwarded video packet.

use crate::packet::Picture;
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

/// Going down waits this long while the estimate is just below the current layer …
pub const DOWN_HOLD: Duration = Duration::from_millis(800);

/// … and not at all when the layer costs more than the estimate by this factor
/// (the path is clearly short).
pub const DOWN_AT_ONCE: f64 = 0.7;

/// No up switch sooner than this after a down switch.
pub const UP_BACKOFF: Duration = Duration::from_secs(4);

/// The least time between two keyframe requests for a pending switch.
pub const KEYFRAME_RETRY: Duration = Duration::from_millis(500);

/// How long a new subscription waits for every offered layer to show before it picks
/// its first (packets of the layers arrive in any order at the start).
pub const SETTLE: Duration = Duration::from_millis(300);

/// How often a selector re-decides when nothing it depends on changed (up switches wait
/// for time to pass).
pub const RECHOOSE_EVERY: Duration = Duration::from_millis(100);

/// A publication's layers as measured at its publisher's core; every packet carries one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Layers {
    /// Each layer's bitrate, bits per second (0: its first window is still open).
    pub bps: [u32; MAX_LAYERS],
    /// The picture size each layer's keyframes announce, once one has.
    pub size: [Option<(u16, u16)>; MAX_LAYERS],
    /// Bit *i* set: layer *i* sent something within [`INACTIVE_AFTER`].
    pub active: u8,
    /// How many layers the publisher offered.
    pub offered: u8,
}

impl Layers {
    /// Whether layer `l` flows.
    pub fn is_active(&self, l: u8) -> bool {
        usize::from(l) < MAX_LAYERS && self.active & (1 << l) != 0
    }

    /// How many layers flow.
    pub fn count(&self) -> u32 {
        self.active.count_ones()
    }

    /// Layer `l`'s bitrate (0 when unknown).
    pub fn bps_of(&self, l: u8) -> u64 {
        self.bps.get(usize::from(l)).map_or(0, |b| u64::from(*b))
    }
}

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

/// Measures a publication's layers, at its publisher's core.
#[derive(Debug, Clone, Default)]
pub struct LayerMeter {
    rates: [Rate; MAX_LAYERS],
    size: [Option<(u16, u16)>; MAX_LAYERS],
    offered: u8,
}

impl LayerMeter {
    /// A meter for a publication offering `layers` layers.
    pub fn new(layers: usize) -> Self {
        LayerMeter {
            offered: layers.min(MAX_LAYERS) as u8,
            ..Default::default()
        }
    }

    /// A packet of `layer` with `bytes` of payload arrived; returns the snapshot to send
    /// with it. Layers beyond [`MAX_LAYERS`] are not measured.
    pub fn on_packet(&mut self, now: Instant, layer: u8, bytes: usize, pic: Picture) -> Layers {
        let i = usize::from(layer);
        if let Some(rate) = self.rates.get_mut(i) {
            rate.add(now, bytes);
            if let Some(s) = pic.size {
                self.size[i] = Some(s);
            }
        }
        self.snapshot(now)
    }

    /// The layers as they are at `now`.
    pub fn snapshot(&self, now: Instant) -> Layers {
        let mut out = Layers {
            size: self.size,
            offered: self.offered,
            ..Layers::default()
        };
        for (i, r) in self.rates.iter().enumerate() {
            out.bps[i] = u32::try_from(r.bps).unwrap_or(u32::MAX);
            if r.active(now) {
                out.active |= 1 << i;
            }
        }
        out
    }
}

/// What a subscriber asked for; the lowest flowing layer is always allowed, so that a cap
/// never leaves a subscriber without video.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cap {
    /// No layer costlier than this one (a `rid` the subscriber named).
    pub layer: Option<u8>,
    /// No layer above this bitrate, bits per second.
    pub max_bps: Option<u64>,
    /// No layer larger than this (width, height), where its size is known.
    pub max_size: Option<(u16, u16)>,
}

/// What a layer costs for ranking and fitting: its bitrate, or more than any estimate
/// while it is not measured yet.
fn cost(layers: &Layers, l: u8) -> u64 {
    match layers.bps_of(l) {
        0 => u64::MAX,
        b => b,
    }
}

/// The layer choice of one subscription.
#[derive(Debug, Clone, Default)]
pub struct LayerSelector {
    layers: Layers,
    /// The layer being forwarded (`None` before the first keyframe).
    current: Option<u8>,
    /// The layer wanted; a switch happens at its next keyframe.
    target: Option<u8>,
    estimate: Option<u64>,
    cap: Cap,
    /// Since when the estimate has carried the layer above the current one.
    up_ok_since: Option<Instant>,
    last_down: Option<Instant>,
    last_request: Option<Instant>,
    last_choice: Option<Instant>,
    first_seen: Option<Instant>,
    /// Since when the estimate has been below the current layer's bitrate.
    over_since: Option<Instant>,
    switches: u64,
}

/// The flowing layers allowed by a cap, cheapest first (fixed size: no allocation).
#[derive(Debug, Clone, Copy)]
struct Ranked {
    layers: [u8; MAX_LAYERS],
    len: usize,
}

impl Ranked {
    fn as_slice(&self) -> &[u8] {
        &self.layers[..self.len]
    }
}

impl LayerSelector {
    /// A packet of `layer` arrived with the publication's `layers` (`keyframe` when it is
    /// the first packet of a keyframe). Returns whether this subscription forwards it.
    pub fn on_packet(&mut self, now: Instant, layer: u8, keyframe: bool, layers: &Layers) -> bool {
        if usize::from(layer) >= MAX_LAYERS {
            return false;
        }
        self.observe(now, layers);
        if keyframe && self.target == Some(layer) && self.current != Some(layer) {
            self.switch_to(now, layer);
        }
        self.current == Some(layer)
    }

    /// For layers that switch on their own terms (SVC operating points, see
    /// [`crate::svc`]): the layer wanted now, taken as switched to at once (the caller
    /// waits for the picture it may switch at). Call at each picture's start.
    pub fn choose_now(&mut self, now: Instant, layers: &Layers) -> Option<u8> {
        self.observe(now, layers);
        if let Some(t) = self.target.filter(|t| self.current != Some(*t)) {
            self.switch_to(now, t);
        }
        self.current
    }

    /// Takes in the layers' latest figures, re-deciding when they changed or a while
    /// passed.
    fn observe(&mut self, now: Instant, layers: &Layers) {
        self.first_seen.get_or_insert(now);
        let stale = self
            .last_choice
            .is_none_or(|t| now.saturating_duration_since(t) >= RECHOOSE_EVERY);
        if *layers != self.layers || stale {
            self.layers = *layers;
            self.rechoose(now);
        }
    }

    fn switch_to(&mut self, now: Instant, layer: u8) {
        if let Some(c) = self.current {
            self.switches += 1;
            if self.cost(c) > self.cost(layer) {
                self.last_down = Some(now);
            }
        }
        self.current = Some(layer);
        self.up_ok_since = None;
        self.last_request = None;
    }

    /// The subscriber's path carries `bps` (the bandwidth estimator's latest figure, or
    /// this subscription's share of it).
    pub fn set_estimate(&mut self, now: Instant, bps: u64) {
        self.estimate = Some(bps);
        self.rechoose(now);
    }

    /// What the subscriber asked for.
    pub fn set_cap(&mut self, now: Instant, cap: Cap) {
        self.cap = cap;
        self.rechoose(now);
    }

    /// The subscriber's cap.
    pub fn cap(&self) -> Cap {
        self.cap
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

    /// The publication's layers as last seen.
    pub fn layers(&self) -> Layers {
        self.layers
    }

    /// The bandwidth estimate last given, if any.
    pub fn estimate(&self) -> Option<u64> {
        self.estimate
    }

    /// The bitrate this subscription would like to receive: its highest allowed layer's.
    pub fn desired_bps(&self) -> u64 {
        let ranked = self.ranked();
        ranked
            .as_slice()
            .last()
            .map_or(0, |l| self.layers.bps_of(*l))
    }

    /// The bitrate it takes to go up one layer: the next allowed layer's above the one
    /// forwarded (the current one's when it is the top; the cheapest before the first
    /// picture). The estimator pads the path up to this, so that an up switch is decided on
    /// an estimate that carried that rate, not on one that grew while the path was idle.
    pub fn next_up_bps(&self) -> u64 {
        let ranked = self.ranked();
        let allowed = ranked.as_slice();
        let here = self
            .current
            .and_then(|c| allowed.iter().position(|l| *l == c));
        let layer = match here {
            Some(i) => allowed.get(i + 1).or(allowed.get(i)),
            None => allowed.first(),
        };
        layer.map_or(0, |l| self.layers.bps_of(*l))
    }

    /// The bitrate of what is forwarded now.
    pub fn current_bps(&self) -> u64 {
        self.current.map_or(0, |l| self.layers.bps_of(l))
    }

    fn cost(&self, l: u8) -> u64 {
        cost(&self.layers, l)
    }

    /// The flowing layers within the cap, cheapest first (ties by index).
    fn ranked(&self) -> Ranked {
        let mut r = Ranked {
            layers: [0; MAX_LAYERS],
            len: 0,
        };
        for l in 0..MAX_LAYERS as u8 {
            if !self.layers.is_active(l) {
                continue;
            }
            // Insertion by (cost, index).
            let mut at = r.len;
            while at > 0 && self.cost(r.layers[at - 1]) > self.cost(l) {
                r.layers[at] = r.layers[at - 1];
                at -= 1;
            }
            r.layers[at] = l;
            r.len += 1;
        }
        let Some(&lowest) = r.as_slice().first() else {
            return r;
        };
        let limit = self
            .cap
            .layer
            .filter(|l| self.layers.is_active(*l))
            .map(|l| self.cost(l));
        let mut kept = 0;
        for i in 0..r.len {
            let l = r.layers[i];
            let c = self.cost(l);
            let fits_size = match (self.cap.max_size, self.layers.size[usize::from(l)]) {
                (Some((mw, mh)), Some((w, h))) => w <= mw && h <= mh,
                _ => true,
            };
            let ok = l == lowest
                || (limit.is_none_or(|m| c <= m)
                    && self.cap.max_bps.is_none_or(|m| c <= m)
                    && fits_size);
            if ok {
                r.layers[kept] = l;
                kept += 1;
            }
        }
        r.len = kept;
        r
    }

    fn rechoose(&mut self, now: Instant) {
        self.last_choice = Some(now);
        self.target = self.choose(now);
    }

    /// The layer this subscription should be on now.
    fn choose(&mut self, now: Instant) -> Option<u8> {
        // Before the first picture, wait a moment for every offered layer to show.
        let settling = self.current.is_none()
            && self.layers.count() < u32::from(self.layers.offered)
            && self
                .first_seen
                .is_some_and(|t| now.saturating_duration_since(t) < SETTLE);
        if settling {
            return None;
        }
        let ranked = self.ranked();
        let allowed = ranked.as_slice();
        let lowest = *allowed.first()?;
        let highest = *allowed.last()?;
        let Some(estimate) = self.estimate else {
            return Some(highest);
        };
        // The costliest allowed layer, up to `ceiling` (a rank), that the estimate
        // carries now.
        let layers = self.layers;
        let carried = |ceiling: usize| {
            allowed
                .iter()
                .take(ceiling + 1)
                .rev()
                .copied()
                .find(|l| cost(&layers, *l) <= estimate)
                .unwrap_or(lowest)
        };
        // Where the subscription is (or is headed, before its first picture).
        let Some(here) = self
            .current
            .and_then(|c| allowed.iter().position(|l| *l == c))
        else {
            // No usable current layer: the costliest the estimate carries.
            self.up_ok_since = None;
            return Some(carried(allowed.len()));
        };
        // Down when the current layer no longer fits: at once when far over, after
        // DOWN_HOLD when just over (an estimate dips for a moment when the receiver is
        // busy; real congestion stays).
        let cost = self.cost(allowed[here]);
        if cost > estimate && here > 0 {
            self.up_ok_since = None;
            let since = *self.over_since.get_or_insert(now);
            let far = cost as f64 * DOWN_AT_ONCE > estimate as f64;
            if far || now.saturating_duration_since(since) >= DOWN_HOLD {
                return Some(carried(here - 1));
            }
            return Some(allowed[here]);
        }
        self.over_since = None;
        // Up one layer when it has fitted with headroom for long enough.
        let Some(&up) = allowed.get(here + 1) else {
            self.up_ok_since = None;
            return Some(allowed[here]);
        };
        let fits = self.cost(up) as f64 <= estimate as f64 * UP_HEADROOM;
        let backed_off = self
            .last_down
            .is_some_and(|t| now.saturating_duration_since(t) < UP_BACKOFF);
        if !fits || backed_off {
            self.up_ok_since = None;
            return Some(allowed[here]);
        }
        let since = *self.up_ok_since.get_or_insert(now);
        if now.saturating_duration_since(since) >= UP_HOLD {
            Some(up)
        } else {
            Some(allowed[here])
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
        meter: LayerMeter,
    }

    impl Publisher {
        fn new() -> Self {
            Publisher {
                bps: [150_000, 500_000, 1_500_000],
                on: [true; 3],
                frame: 0,
                keyframe_due: [true; 3],
                meter: LayerMeter::default(),
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
                    let first = key && p == 0;
                    let pic = Picture {
                        keyframe: first,
                        size: first.then_some((160 << l, 90 << l)),
                    };
                    let layers = self.meter.on_packet(now, l, size, pic);
                    if sel.on_packet(now, l, first, &layers) && !fwd.contains(&l) {
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
        let top = p.meter.snapshot(t).bps_of(2);
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
        sel.set_cap(
            t,
            Cap {
                layer: Some(1),
                ..Cap::default()
            },
        );
        p.run(&mut sel, &mut t, 2.0);
        assert_eq!(sel.current(), Some(1));
        // A bitrate cap below layer 1 takes it to layer 0; below layer 0 it stays there.
        sel.set_cap(
            t,
            Cap {
                max_bps: Some(200_000),
                ..Cap::default()
            },
        );
        p.run(&mut sel, &mut t, 1.0);
        assert_eq!(sel.current(), Some(0));
        sel.set_cap(
            t,
            Cap {
                max_bps: Some(10_000),
                ..Cap::default()
            },
        );
        p.run(&mut sel, &mut t, 1.0);
        assert_eq!(sel.current(), Some(0));
        // Cap lifted, no estimate: the top.
        sel.set_cap(t, Cap::default());
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
        let mut meter = LayerMeter::default();
        let mut t = Instant::now();
        let none = Picture::default();
        // Packets of layer 0 only, no keyframe yet: the first picture waits for one.
        let layers = meter.on_packet(t, 0, 500, none);
        assert!(!sel.on_packet(t, 0, false, &layers));
        assert_eq!(sel.poll_keyframe_request(t), Some(0));
        assert_eq!(
            sel.poll_keyframe_request(t + Duration::from_millis(100)),
            None
        );
        t += KEYFRAME_RETRY;
        let layers = meter.on_packet(t, 0, 500, none);
        assert!(!sel.on_packet(t, 0, false, &layers));
        assert_eq!(sel.poll_keyframe_request(t), Some(0));
        assert!(sel.on_packet(t, 0, true, &layers));
        assert_eq!(sel.poll_keyframe_request(t + KEYFRAME_RETRY), None);
        // Unknown layers are refused, not a panic.
        assert!(!sel.on_packet(t, 7, true, &layers));
        assert_eq!(meter.on_packet(t, 7, 500, none).count(), 1);
    }

    #[test]
    fn layers_are_ranked_by_bitrate_not_by_their_order_in_the_offer() {
        // A client that lists its encodings highest first.
        let mut sel = LayerSelector::default();
        let mut p = Publisher::new();
        p.bps = [1_500_000, 500_000, 150_000];
        let mut t = Instant::now();
        p.run(&mut sel, &mut t, 2.0);
        assert_eq!(sel.current(), Some(0), "no estimate: the costliest layer");
        sel.set_estimate(t, 300_000);
        p.run(&mut sel, &mut t, 1.0);
        assert_eq!(sel.current(), Some(2), "a narrow path: the cheapest layer");
        assert_eq!(sel.desired_bps(), p.meter.snapshot(t).bps_of(0));
    }

    #[test]
    fn a_size_cap_picks_the_largest_layer_that_fits() {
        let mut sel = LayerSelector::default();
        let mut p = Publisher::new();
        let mut t = Instant::now();
        // Layers are 160×90, 320×180 and 640×360 (see `Publisher::frame`).
        sel.set_cap(
            t,
            Cap {
                max_size: Some((320, 240)),
                ..Cap::default()
            },
        );
        p.run(&mut sel, &mut t, 2.0);
        assert_eq!(sel.current(), Some(1));
        sel.set_cap(
            t,
            Cap {
                max_size: Some((100, 100)),
                ..Cap::default()
            },
        );
        p.run(&mut sel, &mut t, 1.0);
        assert_eq!(
            sel.current(),
            Some(0),
            "the lowest layer even when it is too large"
        );
    }

    #[test]
    fn the_first_layer_waits_for_every_offered_layer_to_show() {
        let mut sel = LayerSelector::default();
        let mut meter = LayerMeter::new(3);
        let t = Instant::now();
        sel.set_estimate(t, 300_000);
        // The top layer's keyframe happens to arrive first.
        let key = Picture {
            keyframe: true,
            size: None,
        };
        let layers = meter.on_packet(t, 2, 3000, key);
        assert!(
            !sel.on_packet(t, 2, true, &layers),
            "not before the others show"
        );
        assert_eq!(sel.poll_keyframe_request(t), None);
        let _ = meter.on_packet(t, 0, 500, key);
        let layers = meter.on_packet(t, 1, 1000, key);
        assert_eq!(layers.count(), 3);
        // All there, none measured: the cheapest by index, from its keyframe.
        assert!(!sel.on_packet(t, 1, true, &layers), "not the middle layer");
        assert!(sel.on_packet(t, 0, true, &layers));
        assert_eq!(sel.current(), Some(0));
        // A layer that never shows does not hold the first picture for long.
        let mut sel = LayerSelector::default();
        let mut meter = LayerMeter::new(3);
        let layers = meter.on_packet(t, 1, 500, key);
        assert!(!sel.on_packet(t, 1, true, &layers));
        let later = t + SETTLE;
        let layers = meter.on_packet(later, 1, 500, key);
        assert!(sel.on_packet(later, 1, true, &layers));
    }

    #[test]
    fn a_short_dip_of_the_estimate_does_not_switch_down_a_long_one_does() {
        let mut sel = LayerSelector::default();
        let mut p = Publisher::new();
        let mut t = Instant::now();
        sel.set_estimate(t, 5_000_000);
        // From the cheapest layer (unmeasured at first), up one hold at a time.
        p.run(&mut sel, &mut t, 6.0);
        assert_eq!(sel.current(), Some(2));
        let top = p.meter.snapshot(t).bps_of(2);
        // Just below the top layer for less than the hold: it stays.
        sel.set_estimate(t, top * 9 / 10);
        p.run(&mut sel, &mut t, (DOWN_HOLD / 2).as_secs_f64());
        sel.set_estimate(t, 5_000_000);
        p.run(&mut sel, &mut t, 1.0);
        assert_eq!(sel.current(), Some(2), "a dip switched");
        // Just below for longer than the hold: down one layer.
        sel.set_estimate(t, top * 9 / 10);
        p.run(&mut sel, &mut t, DOWN_HOLD.as_secs_f64() + 0.5);
        assert_eq!(sel.current(), Some(1));
    }
}
