//! Forwarding: a publisher's packet to every subscription of its publication, on this
//! core and (handed over once per core) on others; keyframe requests upstream; and load
//! shedding past saturation (see [`crate::overload`]).

use super::*;
use crate::packet::ulpfec;
use str0m::format::Codec;
use str0m::rtp::{RtpHeader, RtpHeaderTail, SeqNo};

impl Core {
    /// The driver reports how busy the core was over the last load window (0–1, see
    /// [`crate::load`]). Past saturation the most recently started video subscriptions
    /// stop getting video (audio goes on); when the load falls their video comes back with
    /// a keyframe (see [`crate::overload`]).
    pub fn handle_load(&mut self, now: Instant, busy: f64) {
        // Video subscriptions, latest first: (created, peer, index among its bindings).
        let mut video: Vec<(u64, PeerKey, usize)> = Vec::new();
        for (key, peer) in &self.peers {
            for (i, b) in peer.subs.iter().enumerate() {
                if b.outs.iter().any(|o| o.kind == MediaKind::Video) {
                    video.push((b.created, *key, i));
                }
            }
        }
        let before = self.shedder.shed();
        let shed = self.shedder.observe(now, busy, video.len());
        self.metrics.load_percent.store(
            (self.shedder.load() * 100.0).round() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
        if shed == before && before == 0 {
            return;
        }
        video.sort_unstable_by_key(|v| std::cmp::Reverse(v.0));
        let mut restored: Vec<Arc<str>> = Vec::new();
        for (rank, (_, key, i)) in video.iter().enumerate() {
            let Some(b) = self.peers.get_mut(key).and_then(|p| p.subs.get_mut(*i)) else {
                continue;
            };
            let shed_now = rank < shed;
            if b.shed && !shed_now {
                for o in b.outs.iter_mut().filter(|o| o.kind == MediaKind::Video) {
                    o.rewriter.resume();
                }
                if !restored.contains(&b.publication) {
                    restored.push(b.publication.clone());
                }
            }
            b.shed = shed_now;
        }
        self.metrics
            .shed_subscriptions
            .store(shed as u64, std::sync::atomic::Ordering::Relaxed);
        if shed != before {
            tracing::info!(core = self.index, busy, shed, "load shedding changed");
        }
        for publication in restored {
            self.keyframe_wanted(&publication, None, now);
        }
        self.run_pending(now);
    }

    pub(super) fn forward(&mut self, key: PeerKey, pkt: RtpPacket) {
        let RtpPacket {
            header,
            seq_no,
            payload,
            timestamp,
            ..
        } = pkt;
        let pkt = Received {
            header,
            seq: seq_no,
            payload,
            arrival: timestamp,
        };
        self.pass_on(key, pkt, false);
    }

    /// A video RED packet (from [`Core::pass_on`]): a media packet's payload, unwrapped,
    /// or an FEC packet, used here and left out by every subscription (see [`ulpfec`]).
    /// The packets it let FEC recover go on first (they are older).
    fn receive_video_red(&mut self, key: PeerKey, mut pkt: Received) {
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        let ssrc = pkt.header.ssrc;
        let Some((mid, binding)) = section_of(&mut peer.rtc, &mut peer.pubs, ssrc) else {
            self.metrics.dropped(DropReason::NotRoutable);
            return;
        };
        let inner = crate::packet::red::primary_with_pt(&pkt.payload).and_then(|(pt, b)| {
            let p = peer
                .rtc
                .codec_config()
                .params()
                .iter()
                .find(|p| *p.pt() == pt)?;
            Some((*p, b))
        });
        let Some((inner, block)) = inner else {
            self.metrics.dropped(DropReason::Malformed);
            return;
        };
        let receiver = match binding.fec.iter().position(|(s, _)| *s == ssrc) {
            Some(i) => &mut binding.fec[i].1,
            None => {
                // A stream per simulcast layer; one that a renegotiation replaced goes.
                if binding.fec.len() >= MAX_LAYERS {
                    binding.fec.remove(0);
                }
                binding.fec.push((ssrc, ulpfec::Receiver::default()));
                let last = binding.fec.len() - 1;
                &mut binding.fec[last].1
            }
        };
        let fec = inner.spec().codec == Codec::Ulpfec;
        let recovered = if fec {
            CoreMetrics::add(&self.metrics.fec_received, 1);
            match receiver.on_fec(*pkt.seq, block) {
                Ok(r) => r,
                Err(e) => {
                    tracing::debug!(%ssrc, error = %e, "ULPFEC packet not taken");
                    self.metrics.dropped(DropReason::Malformed);
                    Vec::new()
                }
            }
        } else if inner.spec().codec.is_video() {
            let protected = if receiver.wants_bytes(*pkt.seq) {
                protected(&pkt.header, *inner.pt(), block)
            } else {
                None
            };
            let r = receiver.on_media(*pkt.seq, protected);
            pkt.payload = Payload::reused(block);
            pkt.header.payload_type = inner.pt();
            r
        } else {
            self.metrics.dropped(DropReason::CodecMismatch);
            return;
        };
        // Recovered packets: read with the section's header extensions, and never asked
        // for again (str0m does not NACK them).
        let mut again = Vec::with_capacity(recovered.len());
        if !recovered.is_empty() {
            let exts = peer.rtc.media(mid).map(|m| m.remote_extmap().clone());
            for (seq, p) in recovered {
                let wire = p.to_packet(seq as u16, *ssrc);
                let header = exts.as_ref().and_then(|e| RtpHeader::parse(&wire, e));
                let Some(header) = header.filter(|h| h.header_len <= wire.len()) else {
                    self.metrics.dropped(DropReason::Malformed);
                    continue;
                };
                let mut end = wire.len();
                if header.has_padding {
                    let pad = wire.last().map_or(0, |n| usize::from(*n));
                    end = end.saturating_sub(pad).max(header.header_len);
                }
                if let Some(rx) = peer.rtc.direct_api().stream_rx(&ssrc) {
                    rx.mark_recovered(seq.into());
                }
                CoreMetrics::add(&self.metrics.fec_recovered, 1);
                again.push(Received {
                    payload: Payload::reused(&wire[header.header_len..end]),
                    header,
                    seq: seq.into(),
                    arrival: pkt.arrival,
                });
            }
        }
        for r in again {
            self.pass_on(key, r, false);
        }
        self.pass_on(key, pkt, fec);
    }

    /// A publisher's packet (an FEC packet when `fec`: only its sequence number counts),
    /// measured and handed to the publication's subscriptions.
    fn pass_on(&mut self, key: PeerKey, pkt: Received, fec: bool) {
        // A dependency descriptor goes on with the payload (in the same buffer).
        let dependency = pkt
            .header
            .ext_vals
            .user_values
            .get_arc::<peer::DependencyBytes>();
        let carried = dependency.as_ref().map_or(0, |d| d.0.len());
        if pkt.payload.len() + carried > MAX_PAYLOAD {
            self.metrics.dropped(DropReason::Oversized);
            return;
        }
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        let ssrc = pkt.header.ssrc;
        let Some((mid, binding)) = section_of(&mut peer.rtc, &mut peer.pubs, ssrc) else {
            self.metrics.dropped(DropReason::NotRoutable);
            return;
        };
        let Some(kind) = binding
            .media
            .iter()
            .find(|(m, _)| *m == mid)
            .map(|(_, k)| *k)
        else {
            return;
        };
        let pt = pkt.header.payload_type;
        // The codec, or the codec a RED payload type wraps.
        let Some((params, red)) = peer.rtc.codec_config().params().iter().find_map(|p| {
            if p.pt() == pt {
                Some((*p, false))
            } else if p.red() == Some(pt) {
                Some((*p, true))
            } else {
                None
            }
        }) else {
            self.metrics.dropped(DropReason::CodecMismatch);
            return;
        };
        // Video RED is unwrapped first (an FEC packet comes back with `fec`, its payload
        // type still RED's).
        if params.spec().codec == Codec::Red && !fec {
            self.receive_video_red(key, pkt);
            return;
        }
        // RED: its primary block, for subscribers that did not negotiate RED.
        let primary = if red {
            match crate::packet::red::primary(&pkt.payload) {
                Some(p) => Some(Arc::<[u8]>::from(p)),
                None => {
                    self.metrics.dropped(DropReason::Malformed);
                    return;
                }
            }
        } else {
            None
        };
        if kind == MediaKind::Video && !binding.video_ssrcs.contains(&ssrc) {
            binding.video_ssrcs.push(ssrc);
        }
        // Video: its layer (by the stream's rid), whether it starts a keyframe, and the
        // layers' measure, for the subscriptions' layer choice.
        let simulcast = kind == MediaKind::Video && !binding.rids.is_empty();
        let mut vp8 = None;
        let mut svc = None;
        let mut svc_sizes = [None; 8];
        let (layer, keyframe, layers) = if kind == MediaKind::Video && !fec {
            let layer = match binding.layer_of.iter().find(|(s, _)| *s == ssrc) {
                Some((_, l)) => *l,
                None => {
                    let rid =
                        pkt.header.ext_vals.rid.or_else(|| {
                            peer.rtc.direct_api().stream_rx(&ssrc).and_then(|s| s.rid())
                        });
                    match rid.and_then(|r| binding.rids.iter().position(|x| *x == r)) {
                        Some(l) => {
                            binding.layer_of.push((ssrc, l as u8));
                            l as u8
                        }
                        // A simulcast stream whose rid is not known yet cannot be placed.
                        None if simulcast => {
                            self.metrics.dropped(DropReason::NotRoutable);
                            return;
                        }
                        None => 0,
                    }
                }
            };
            let pic = crate::packet::inspect(params.spec().codec, &pkt.payload);

            match params.spec().codec {
                str0m::format::Codec::Vp8 => {
                    vp8 = str0m::rtp::Vp8Descriptor::parse(&pkt.payload).ok();
                }
                str0m::format::Codec::Vp9 if !simulcast => {
                    if let Some(d) = crate::packet::vp9::descriptor(&pkt.payload) {
                        svc = SvcPacket::from_vp9(&d);
                        svc_sizes = d.sizes;
                    }
                }
                // AV1 says its layers in the dependency descriptor, read with the
                // structure its keyframes carry.
                str0m::format::Codec::Av1 if !simulcast => {
                    let read = dependency.as_ref().and_then(|d| {
                        crate::packet::dependency::parse(&d.0, binding.dependency.as_ref())
                    });
                    if let Some((frame, new)) = read {
                        if new.is_some() {
                            binding.dependency = new;
                        }
                        if let Some(s) = &binding.dependency {
                            svc = Some(SvcPacket::from_dependency(&frame, s, pic.keyframe));
                            svc_sizes = s.layer_sizes(pic.size);
                        }
                    }
                }
                _ => {}
            }
            let (at, len) = (pkt.arrival, pkt.payload.len());
            let layers = match &svc {
                // A scalable stream: each operating point measured with the layers it
                // includes.
                Some(p) => {
                    binding.structure.see(p);
                    let s = binding.structure;
                    let mut snap = binding.meter.snapshot(at);
                    for i in (0..s.points()).filter(|i| s.in_point(p, *i)) {
                        // Each point's size is its top spatial layer's.
                        let size = crate::svc::point_size(&s, &svc_sizes, i);
                        let pic = crate::packet::Picture { size, ..pic };
                        snap = binding.meter.on_packet(at, i as u8, len, pic);
                    }
                    snap
                }
                None => binding.meter.on_packet(at, layer, len, pic),
            };
            (layer, pic.keyframe, layers)
        } else {
            (0, false, Layers::default())
        };
        let publication = binding.publication.clone();
        let binding_structure = binding.structure;
        let Some(p) = self.publications.get(&publication) else {
            return;
        };
        if (kind == MediaKind::Audio && !p.audio_on) || (kind == MediaKind::Video && !p.video_on) {
            // Paused at the source: nobody gets it.
            return;
        }
        let selection = p.selection.clone().filter(|_| kind == MediaKind::Audio);
        let ext = ExtensionValues {
            audio_level: pkt.header.ext_vals.audio_level,
            voice_activity: pkt.header.ext_vals.voice_activity,
            video_orientation: pkt.header.ext_vals.video_orientation,
            ..Default::default()
        };
        let packet = self.packets.make(MediaPacket {
            publication: publication.clone(),
            kind,
            params,
            ssrc: *ssrc,
            seq: *pkt.seq,
            ts: pkt.header.timestamp,
            marker: pkt.header.marker,
            ext,
            payload: pkt.payload,
            arrival: pkt.arrival,
            simulcast,
            layer,
            keyframe,
            layers,
            vp8,
            selection: selection.as_ref().map(|(s, _)| s.clone()),
            svc,
            structure: binding_structure,
            red: primary,
            dependency: dependency.filter(|_| !simulcast),
            fec,
        });
        for core in &p.remote_cores {
            self.out
                .to_cores
                .push((*core, CoreMsg::Media(packet.clone())));
            CoreMetrics::add(&self.metrics.handed_off, 1);
        }
        // Audio competing for a selection's slots goes to the selection's core (once,
        // with the hand-off above when that core also has subscribers).
        let selection_core = selection.map(|(_, c)| c);
        if let Some(c) = selection_core.filter(|c| *c != self.index && !p.remote_cores.contains(c))
        {
            self.out.to_cores.push((c, CoreMsg::Media(packet.clone())));
            CoreMetrics::add(&self.metrics.handed_off, 1);
        }
        let now = packet.arrival;
        self.fan_out(&packet, now);
        if selection_core == Some(self.index) {
            self.select_audio(&packet, now);
        }
    }

    /// Writes a packet to every local subscription of its publication.
    pub(super) fn fan_out(&mut self, pkt: &MediaPacket, now: Instant) {
        // The list is lent out of the map while it is walked (writing to a subscriber
        // never changes who subscribes: closes wait in `pending`), instead of cloned.
        let Some(subs) = self
            .subscribers
            .get_mut(&pkt.publication)
            .map(std::mem::take)
        else {
            return;
        };
        for (key, sub) in &subs {
            self.write_to_subscriber(*key, sub, pkt, now);
        }
        if let Some(slot) = self.subscribers.get_mut(&pkt.publication) {
            *slot = subs;
        }
        self.run_deferred(now);
    }

    pub(super) fn write_to_subscriber(
        &mut self,
        key: PeerKey,
        subscription: &Arc<str>,
        pkt: &MediaPacket,
        now: Instant,
    ) {
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        if !peer.connected {
            return;
        }
        let Some(binding) = peer
            .subs
            .iter_mut()
            .find(|b| b.subscription == *subscription)
        else {
            return;
        };
        if (pkt.kind == MediaKind::Audio && !binding.audio_on)
            || (pkt.kind == MediaKind::Video && !binding.video_on)
        {
            return;
        }
        if pkt.kind == MediaKind::Video && binding.shed {
            self.metrics.dropped(DropReason::Overload);
            return;
        }
        let Some(out) = binding.outs.iter_mut().find(|o| o.kind == pkt.kind) else {
            self.metrics.dropped(DropReason::NotRoutable);
            return;
        };
        // The publisher's FEC packet: no subscriber gets it, none sees a gap.
        if pkt.fec {
            out.rewriter.skip(pkt.ssrc, pkt.seq);
            return;
        }
        if pkt.simulcast {
            let switches = out.selector.switches();
            let forward = out
                .selector
                .on_packet(now, pkt.layer, pkt.keyframe, &pkt.layers);
            if out.selector.switches() != switches {
                CoreMetrics::add(&self.metrics.layer_switches, 1);
                tracing::debug!(
                    subscription = %subscription,
                    layer = pkt.layer,
                    estimate = ?out.selector.estimate(),
                    layers_bps = ?pkt.layers.bps,
                    "layer switched"
                );
            }
            if let Some(layer) = out.selector.poll_keyframe_request(now) {
                self.deferred
                    .push(Deferred::Keyframe(binding.publication.clone(), layer));
            }
            if !forward {
                return;
            }
        }
        // A scalable stream: the operating point's packets only, the marker moved to
        // the end of what is forwarded of each picture, no gap left by the others.
        let mut marker = pkt.marker;
        if let Some(p) = pkt.svc.filter(|_| pkt.structure.points() > 1) {
            let switches = out.selector.switches();
            let point = if p.starts_picture() {
                out.selector.choose_now(now, &pkt.layers)
            } else {
                out.selector.current()
            };
            if out.selector.switches() != switches {
                CoreMetrics::add(&self.metrics.layer_switches, 1);
            }
            let mut want = pkt.structure.point(usize::from(point.unwrap_or(0)));
            // AV1's spatial layers decode only with their dependency descriptor (a
            // browser without it waits for a keyframe forever): the others get the base
            // spatial layer, its temporal layers still adapting.
            if !out.dependency && pkt.params.spec().codec == str0m::format::Codec::Av1 {
                want.0 = 0;
            }
            let forwarded = out.svc.on_packet(want, &p, pkt.marker);
            // Waiting for a keyframe (the first picture, or a spatial layer up).
            if out.svc.current().is_none_or(|c| c.0 < want.0)
                && out
                    .svc_keyframe_asked
                    .is_none_or(|t| now.saturating_duration_since(t) >= KEYFRAME_RETRY)
            {
                out.svc_keyframe_asked = Some(now);
                self.deferred
                    .push(Deferred::Keyframe(binding.publication.clone(), 0));
            }
            match forwarded {
                Some(m) => marker = m,
                None => {
                    out.rewriter.skip(pkt.ssrc, pkt.seq);
                    return;
                }
            }
        }
        if pkt.kind == MediaKind::Video && peer.bwe && now >= peer.next_bwe_update {
            peer.next_bwe_update = now + BWE_UPDATE_EVERY;
            self.deferred.push(Deferred::Desired(key));
        }
        // The subscriber's payload type: the matching codec's, or for a RED packet its
        // RED payload type when it negotiated RED (else the primary block goes alone).
        let in_pt = (pkt.params.pt(), pkt.red.is_some());
        let out_pt = match out.pt_map.iter().find(|(i, _)| *i == in_pt) {
            Some((_, o)) => *o,
            None => {
                let allowed = peer
                    .rtc
                    .media(out.mid)
                    .map(|m| m.remote_pts().to_vec())
                    .unwrap_or_default();
                let matched = peer.rtc.codec_config().match_params(pkt.params).copied();
                let o = matched.and_then(|m| {
                    let main = Some(m.pt()).filter(|pt| allowed.contains(pt))?;
                    let red = m.red().filter(|_| pkt.red.is_some() && out.red);
                    match red {
                        Some(red) => Some((red, true)),
                        None => Some((main, false)),
                    }
                });
                out.pt_map.push((in_pt, o));
                o
            }
        };
        let Some((pt, as_red)) = out_pt else {
            self.metrics.dropped(DropReason::CodecMismatch);
            return;
        };
        let payload = match (&pkt.red, as_red) {
            (Some(primary), false) => Payload::from(primary.clone()),
            _ => pkt.payload.clone(),
        };
        let Some(rw) = out.rewriter.rewrite(pkt.ssrc, pkt.seq, pkt.ts, now) else {
            self.metrics.dropped(DropReason::NotRoutable);
            return;
        };
        let ssrc = out.ssrc;
        let nackable = pkt.kind == MediaKind::Video;
        let mut ext = pkt.ext.clone();
        if let Some(d) = pkt.dependency.as_ref().filter(|_| out.dependency) {
            ext.user_values.set_arc(d.clone());
        }
        // VP8 and VP9 to a subscriber that negotiated RED and ULPFEC go inside RED (as a
        // browser sends them), protected while its path loses packets. Not codecs without
        // picture numbers (H.264, AV1 without Chromium's trials): their receiver cannot
        // tell a lost FEC packet from lost media, so browsers send them no ULPFEC either.
        let fec_codec = matches!(pkt.params.spec().codec, Codec::Vp8 | Codec::Vp9);
        let fec = match out.fec.as_deref_mut() {
            Some(f) if pkt.kind == MediaKind::Video && fec_codec => {
                let protected = protect(&mut peer.rtc, ssrc, f, rw.seq, now);
                Some((f, protected))
            }
            _ => None,
        };
        let mut write = match &fec {
            Some((f, protected)) => {
                RtpWrite::new(f.red, rw.seq.into(), rw.ts, pkt.arrival, payload).red(pt, *protected)
            }
            None => RtpWrite::new(pt, rw.seq.into(), rw.ts, pkt.arrival, payload),
        }
        .marker(marker)
        .ext_vals(ext)
        .nackable(nackable);
        // VP8's picture numbers continue across sources as the sequence numbers do.
        if let Some(patch) = pkt.vp8.and_then(|d| out.picture_ids.rewrite(pkt.ssrc, &d)) {
            write = write.vp8_patch(patch);
        }
        // Encrypted at once where str0m can (no pacer in the way); else queued, and the
        // peer drained as after any write.
        let Some(mut queued) = send_now(
            &mut peer.rtc,
            peer.bwe,
            &mut self.out.transmits,
            ssrc,
            write,
            now,
        ) else {
            self.metrics.dropped(DropReason::NotRoutable);
            return;
        };
        CoreMetrics::add(&self.metrics.rtp_forwarded, 1);
        // After every few protected packets, an FEC packet over them, numbered next.
        let fec = fec
            .and_then(|(f, protected)| (protected && f.protection.on_media(marker)).then_some(f));
        if let Some(f) = fec {
            if let Some(seq) = out.rewriter.insert_after(pkt.ssrc, pkt.seq) {
                f.newest = Some(seq);
                let write = RtpWrite::new(f.red, seq.into(), rw.ts, pkt.arrival, f.empty.clone())
                    .ulpfec(f.ulpfec);
                let sent = send_now(
                    &mut peer.rtc,
                    peer.bwe,
                    &mut self.out.transmits,
                    ssrc,
                    write,
                    now,
                );
                queued |= sent == Some(true);
                CoreMetrics::add(&self.metrics.fec_sent, 1);
            }
        }
        if queued {
            CoreMetrics::add(&self.metrics.rtp_queued, 1);
            self.drain(key, now);
        }
    }

    /// A subscriber of `publication` (here or on another core) wants a keyframe: of one
    /// simulcast layer, or of every layer (`None`, and always without simulcast).
    pub(super) fn keyframe_wanted(
        &mut self,
        publication: &Arc<str>,
        layer: Option<u8>,
        now: Instant,
    ) {
        if let Some(p) = self.publications.get_mut(publication) {
            let mut send = [false; MAX_LAYERS];
            let single = p.limiters.len() == 1;
            for (i, limiter) in p.limiters.iter_mut().enumerate() {
                let asked = single || layer.is_none_or(|l| usize::from(l) == i);
                if asked && limiter.request(now) == Decision::Send {
                    send[i] = true;
                }
            }
            for (i, go) in send.iter().enumerate() {
                if *go {
                    self.send_keyframe_request(publication, i as u8, now);
                }
            }
        } else if let Some(home) = self.homes.get(publication) {
            self.out.to_cores.push((
                *home,
                CoreMsg::KeyframeRequest {
                    publication: publication.clone(),
                    layer,
                },
            ));
        }
    }

    /// Asks the publisher for a keyframe of `layer` (of its one video stream without
    /// simulcast).
    pub(super) fn send_keyframe_request(
        &mut self,
        publication: &Arc<str>,
        layer: u8,
        now: Instant,
    ) {
        let Some(key) = self.publications.get(publication).map(|p| p.peer) else {
            return;
        };
        let mut ssrcs = [None; MAX_LAYERS * 2];
        let Some(peer) = self.peers.get(&key) else {
            return;
        };
        let mut n = 0;
        for b in peer.pubs.iter().filter(|b| b.publication == *publication) {
            let of_layer = |s: &Ssrc| {
                b.rids.is_empty() || b.layer_of.iter().any(|(x, l)| x == s && *l == layer)
            };
            for s in b.video_ssrcs.iter().filter(|s| of_layer(s)) {
                if let Some(slot) = ssrcs.get_mut(n) {
                    *slot = Some(*s);
                    n += 1;
                }
            }
        }
        for ssrc in ssrcs.iter().flatten() {
            let Some(peer) = self.peers.get_mut(&key) else {
                return;
            };
            if let Some(rx) = peer.rtc.direct_api().stream_rx(ssrc) {
                rx.request_keyframe(KeyframeRequestKind::Pli);
                CoreMetrics::add(&self.metrics.keyframe_requests_sent, 1);
            }
            // One mutation, then a full drain, as str0m requires.
            self.drain(key, now);
        }
    }
}

/// Writes `write` to send stream `ssrc` and encrypts it at once where str0m can (then it
/// joins `transmits`). `Some(true)` when it was queued instead (the peer must be drained),
/// `None` when there is no such stream.
fn send_now(
    rtc: &mut Rtc,
    paced: bool,
    transmits: &mut Vec<Datagram>,
    ssrc: Ssrc,
    write: RtpWrite,
    now: Instant,
) -> Option<bool> {
    match rtc.write_rtp_now(ssrc, write, now) {
        WriteNow::Sent(t) => {
            transmits.push(Datagram {
                from: t.source,
                to: t.destination,
                data: t.contents.into(),
                paced,
            });
            Some(false)
        }
        WriteNow::Queued => Some(true),
        WriteNow::NoStream => None,
    }
}

/// Whether a subscription's video packet numbered `seq` goes protected: its path has
/// lately lost packets (the receiver reports on send stream `ssrc`, read every
/// [`REPORT_CHECK`]) and it is the newest packet (a late one goes unprotected).
fn protect(rtc: &mut Rtc, ssrc: Ssrc, f: &mut OutFec, seq: u64, now: Instant) -> bool {
    if now >= f.next_check {
        f.next_check = now + REPORT_CHECK;
        let report = rtc
            .direct_api()
            .stream_tx(&ssrc)
            .and_then(|s| s.last_report());
        if let Some((at, lost, rtt)) = report.filter(|r| f.report != Some(*r.0)) {
            f.report = Some(*at);
            f.protection.on_report(lost, rtt);
        }
    }
    let newest = f.newest.is_none_or(|n| seq > n);
    if newest {
        f.newest = Some(seq);
    }
    newest && f.protection.active()
}

/// The publishing section a received stream belongs to: its mid and its binding.
fn section_of<'a>(
    rtc: &mut Rtc,
    pubs: &'a mut [PubBinding],
    ssrc: Ssrc,
) -> Option<(Mid, &'a mut PubBinding)> {
    let mid = rtc.direct_api().stream_rx(&ssrc).map(|s| s.mid())?;
    let binding = pubs
        .iter_mut()
        .find(|b| b.media.iter().any(|(m, _)| *m == mid))?;
    Some((mid, binding))
}

/// A publisher's packet as forwarding reads it: from str0m, or recovered from FEC.
pub(super) struct Received {
    header: RtpHeader,
    seq: SeqNo,
    payload: Payload,
    arrival: Instant,
}

/// What ULPFEC protects of a received video RED packet: its header as sent (the bytes
/// after the fixed 12 come with video RED packets, see [`RtpHeaderTail`]) with the
/// media payload type, and the RED packet's primary block. `None` when those bytes are
/// not known (a retransmission), or the packet was padded.
fn protected(h: &RtpHeader, media_pt: u8, block: &[u8]) -> Option<ulpfec::Protected> {
    let tail = h.ext_vals.user_values.get::<RtpHeaderTail>()?;
    if h.has_padding {
        return None;
    }
    let cc = u8::try_from(h.csrc_count).ok()?.min(15);
    let b0 = 0x80 | if h.has_extension { 0x10 } else { 0 } | cc;
    let b1 = if h.marker { 0x80 } else { 0 } | (media_pt & 0x7f);
    let mut body = Vec::with_capacity(tail.0.len() + block.len());
    body.extend_from_slice(&tail.0);
    body.extend_from_slice(block);
    Some(ulpfec::Protected {
        b0,
        b1,
        ts: h.timestamp,
        body: body.into(),
    })
}
