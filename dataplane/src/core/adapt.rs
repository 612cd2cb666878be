//! Layer choice and bandwidth adaptation: what each subscription of a simulcast
//! publication may receive, the bandwidth estimate shared among a peer's subscriptions,
//! and what the estimator is told the peer would like to receive.
//!
//! A peer with bandwidth adaptation runs str0m's estimator (transport-wide congestion
//! control feedback from the client; the client's REMB where that is all it sends). Each
//! estimate is split among the peer's video subscriptions: audio is set aside first
//! ([`AUDIO_RESERVE_BPS`] each), the rest shared equally; each subscription's
//! [`LayerSelector`] fits its layer to its share. Every [`BWE_UPDATE_EVERY`] the estimator
//! is told the peer's desired rate (every subscription's highest allowed layer, with room
//! for the selector's headroom), so that it probes for the capacity to go up, and the rate
//! to pad the path up to (every subscription's next layer up): an estimate only grows
//! past what the path carried when the path was loaded, so an idle narrow path does not
//! look wide. A path whose estimate stalls below that rate rests from padding for a
//! growing while ([`crate::padding`]): kept full, it queued every keyframe.

use super::*;
use crate::padding::Change;
use str0m::bwe::Bitrate;

/// What each audio subscription is assumed to take of an estimate (opus at its usual
/// conference rate, with headers).
pub const AUDIO_RESERVE_BPS: u64 = 40_000;

/// How often the estimator is told what a peer would like to receive.
pub const BWE_UPDATE_EVERY: Duration = Duration::from_secs(1);

/// How often the estimator of a peer that wants more than its estimate is asked to probe
/// (every other round).
pub const PROBE_EVERY: Duration = Duration::from_secs(3);

/// Where a peer's estimate starts. Low on purpose: a new subscriber starts on a cheap
/// layer and the estimator probes up from here, so a narrow path never gets a burst of
/// the top layer before its first estimate.
pub const INITIAL_ESTIMATE_BPS: u64 = 300_000;

/// Work found while forwarding that needs the whole core, done after the fan-out.
#[derive(Debug)]
pub(super) enum Deferred {
    /// A subscription waits for a keyframe of this layer of a publication.
    Keyframe(Arc<str>, u8),
    /// Tell the estimator of this peer what it would like to receive.
    Desired(PeerKey),
}

impl SubBinding {
    /// The simulcast layer its video is on, if it picked one.
    pub(super) fn video_layer(&self) -> Option<u8> {
        self.outs
            .iter()
            .find(|o| o.kind == MediaKind::Video)
            .and_then(|o| o.selector.current())
    }
}

/// A subscriber's limits in the selector's terms: a `rid` becomes its layer index among
/// the publication's `rids` (an unknown one limits nothing).
pub(super) fn cap_of(cap: &SubscriptionCap, rids: &[Rid]) -> Cap {
    Cap {
        layer: cap
            .rid
            .as_deref()
            .and_then(|r| rids.iter().position(|x| x.to_string() == r))
            .map(|i| i as u8),
        max_bps: cap.max_bitrate_bps,
        max_size: match (cap.max_width, cap.max_height) {
            (None, None) => None,
            (w, h) => Some((w.unwrap_or(u16::MAX), h.unwrap_or(u16::MAX))),
        },
    }
}

impl Core {
    /// Does what forwarding deferred. The list keeps its capacity (no allocation).
    pub(super) fn run_deferred(&mut self, now: Instant) {
        while let Some(d) = self.deferred.pop() {
            match d {
                Deferred::Keyframe(publication, layer) => {
                    self.keyframe_wanted(&publication, Some(layer), now)
                }
                Deferred::Desired(key) => self.update_desired(key, now),
            }
        }
    }

    /// The estimator of peer `key` has a new estimate.
    pub(super) fn on_estimate(&mut self, key: PeerKey, bps: u64, now: Instant) {
        let Some(peer) = self.peers.get_mut(&key).filter(|p| p.bwe) else {
            return;
        };
        peer.estimate = Some(bps);
        self.metrics.bandwidth_estimate.record(bps);
        self.share_estimate(key, bps, now);
    }

    /// Peer `key` reported a round trip: the first starts the padding, one showing a queue
    /// stops it (see [`crate::padding`]).
    pub(super) fn on_round_trip(&mut self, key: PeerKey, rtt: Duration, now: Instant) {
        let Some(peer) = self.peers.get_mut(&key).filter(|p| p.bwe) else {
            return;
        };
        let Some(change) = peer.padding.on_round_trip(now, rtt) else {
            return;
        };
        if change == Change::Stops {
            tracing::debug!(peer = %peer.id, rtt_ms = rtt.as_millis() as u64, "padding stopped: its path queues");
            CoreMetrics::add(&self.metrics.padding_queue_stops, 1);
        }
        self.update_desired(key, now);
    }

    /// Shares `bps` towards peer `key` among its video subscriptions.
    pub(super) fn share_estimate(&mut self, key: PeerKey, bps: u64, now: Instant) {
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        let outs = |kind: MediaKind| {
            peer.subs
                .iter()
                .filter(move |b| match kind {
                    MediaKind::Audio => b.audio_on,
                    MediaKind::Video => b.video_on && !b.shed,
                })
                .flat_map(|b| b.outs.iter())
                .filter(move |o| o.kind == kind)
                .count() as u64
        };
        let (audio, video) = (outs(MediaKind::Audio), outs(MediaKind::Video));
        let share = bps.saturating_sub(audio * AUDIO_RESERVE_BPS) / video.max(1);
        for o in peer
            .subs
            .iter_mut()
            .flat_map(|b| b.outs.iter_mut())
            .filter(|o| o.kind == MediaKind::Video)
        {
            o.selector.set_estimate(now, share);
        }
    }

    /// Tells peer `key`'s estimator what it would like to receive (every subscription's
    /// highest allowed layer) and what it should pad the path up to (the rate of each
    /// subscription's next layer up), when that changed.
    pub(super) fn update_desired(&mut self, key: PeerKey, now: Instant) {
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        let (mut desired, mut minimum, mut audio) = (0u64, 0u64, 0u64);
        for b in &peer.subs {
            for o in &b.outs {
                match o.kind {
                    MediaKind::Video if b.video_on && !b.shed => {
                        desired += o.selector.desired_bps();
                        minimum += o.selector.next_up_bps();
                    }
                    MediaKind::Audio if b.audio_on => audio += AUDIO_RESERVE_BPS,
                    _ => {}
                }
            }
        }
        // Room for the selector's headroom above each layer.
        let headroom = |bps: u64| (bps as f64 / crate::layers::UP_HEADROOM) as u64 + audio;
        let (mut desired, minimum) = (headroom(desired) * 21 / 20, headroom(minimum));
        // Padding towards the next layers, unless the path has shown it cannot carry them.
        let minimum = peer.padding.minimum(now, minimum, peer.estimate);
        // Below what it wants for a while: ask for a probe. str0m probes when the desired
        // rate rises above the estimate, so every other round raises it a little, and
        // the estimate can climb faster than additive increase after an early dip.
        // Short is anything below what the last up switch needs (`desired` less its 5 %):
        // an estimate just under it would otherwise wait on additive increase alone.
        let short = peer.estimate.is_some_and(|e| e * 21 < desired * 20);
        if short && now >= peer.next_probe {
            peer.next_probe = now + PROBE_EVERY;
            peer.probe_round = !peer.probe_round;
            if peer.probe_round {
                desired = desired * 11 / 10;
            }
        }
        let changed = |new: u64, old: u64| new.abs_diff(old) * 20 > old.max(1);
        let lifted = short && desired != peer.desired;
        if desired == 0
            || !(lifted || changed(desired, peer.desired) || changed(minimum, peer.minimum))
        {
            return;
        }
        peer.desired = desired;
        peer.minimum = minimum;
        peer.rtc
            .bwe()
            .set_bitrate(Bitrate::bps(minimum), Bitrate::bps(desired));
        self.drain(key, now);
    }

    /// A subscriber's new limits.
    pub(super) fn update_subscription(
        &mut self,
        now: Instant,
        subscription: &str,
        cap: &SubscriptionCap,
    ) -> Result<(), RpcError> {
        let b = self.sub_binding_mut(subscription)?;
        let cap = cap_of(cap, &b.rids);
        for o in b.outs.iter_mut().filter(|o| o.kind == MediaKind::Video) {
            o.selector.set_cap(now, cap);
        }
        Ok(())
    }

    /// How a subscription is doing.
    pub(super) fn subscription_state(
        &mut self,
        subscription: &str,
    ) -> Result<SubscriptionState, RpcError> {
        let key = self.sub_key(subscription)?;
        let estimate = self.peers.get(&key).and_then(|p| p.estimate);
        let b = self.sub_binding_mut(subscription)?;
        let video = b.outs.iter().find(|o| o.kind == MediaKind::Video);
        let rid = |l: u8| {
            b.rids
                .get(usize::from(l))
                .map(|r| r.to_string())
                .unwrap_or_default()
        };
        let (layer, layers, layer_switches) = match video {
            Some(o) if !b.rids.is_empty() => {
                let snap = o.selector.layers();
                let layers = (0..b.rids.len().min(MAX_LAYERS) as u8)
                    .map(|l| LayerState {
                        rid: rid(l),
                        bitrate_bps: snap.bps_of(l),
                        size: snap.size[usize::from(l)],
                        active: snap.is_active(l),
                    })
                    .collect();
                (o.selector.current().map(rid), layers, o.selector.switches())
            }
            _ => (None, Vec::new(), 0),
        };
        Ok(SubscriptionState {
            subscription: subscription.to_string(),
            estimated_bitrate_bps: estimate,
            layer,
            layers,
            layer_switches,
        })
    }

    fn sub_key(&self, subscription: &str) -> Result<PeerKey, RpcError> {
        self.subscriptions
            .get(subscription)
            .copied()
            .ok_or_else(|| {
                RpcError::new(
                    ErrorCode::UnknownPeer,
                    format!("subscription {subscription} is not on core {}", self.index),
                )
            })
    }

    fn sub_binding_mut(&mut self, subscription: &str) -> Result<&mut SubBinding, RpcError> {
        let key = self.sub_key(subscription)?;
        let index = self.index;
        self.peers
            .get_mut(&key)
            .and_then(|p| p.subs.iter_mut().find(|b| &*b.subscription == subscription))
            .ok_or_else(|| {
                RpcError::new(
                    ErrorCode::UnknownPeer,
                    format!("subscription {subscription} is not on core {index}"),
                )
            })
    }
}

impl Core {
    /// Starts an active-speaker selection here: its slots become publications (with no
    /// publisher peer) that subscriptions on any core can play.
    pub(super) fn create_selection(&mut self, selection: &str, slots: &[String]) {
        if self.selections.contains_key(selection) {
            return;
        }
        let slots: Vec<Arc<str>> = slots.iter().map(|s| Arc::from(s.as_str())).collect();
        for slot in &slots {
            self.publications.insert(
                slot.clone(),
                Publication {
                    peer: 0,
                    selection: None,
                    remote_cores: Vec::new(),
                    limiters: vec![KeyframeLimiter::default()],
                    audio_on: true,
                    video_on: true,
                },
            );
        }
        let k = slots.len();
        self.selections.insert(
            Arc::from(selection),
            Selection {
                slots,
                speakers: crate::speakers::ActiveSpeakers::new(k),
            },
        );
        tracing::info!(
            core = self.index,
            selection,
            k,
            "active-speaker selection started"
        );
    }

    /// An audio packet competing in a selection ranked here: forwarded in its speaker's
    /// slot, if seated, to the slot's subscribers here and on other cores.
    pub(super) fn select_audio(&mut self, pkt: &MediaPacket, now: Instant) {
        let Some(id) = pkt.selection.as_ref() else {
            return;
        };
        let Some(sel) = self.selections.get_mut(id) else {
            return;
        };
        let seat = sel
            .speakers
            .on_packet(now, &pkt.publication, pkt.ext.audio_level);
        while let Some(c) = sel.speakers.poll_change() {
            if let Some(slot) = sel.slots.get(c.slot) {
                self.out.events.push(CoreEvent::SelectionChanged {
                    selection: id.clone(),
                    slot: slot.clone(),
                    input: c.source,
                    major: c.major,
                });
            }
        }
        let Some(slot) = seat.and_then(|i| sel.slots.get(i)).cloned() else {
            return;
        };
        let out = self.packets.make(MediaPacket {
            publication: slot.clone(),
            params: pkt.params,
            ext: pkt.ext.clone(),
            payload: pkt.payload.clone(),
            selection: None,
            vp8: None,
            svc: None,
            red: pkt.red.clone(),
            dependency: None,
            ..*pkt
        });
        if let Some(p) = self.publications.get(&slot) {
            for core in &p.remote_cores {
                self.out.to_cores.push((*core, CoreMsg::Media(out.clone())));
                CoreMetrics::add(&self.metrics.handed_off, 1);
            }
        }
        self.fan_out(&out, now);
    }
}
