//! An in-memory network for driving [`Core`]s with str0m clients and a virtual clock:
//! no sockets, no sleeping, deterministic.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::{Arc, Once};
use std::time::{Duration, Instant};
use str0m::change::{SdpAnswer, SdpPendingOffer};
use str0m::format::Codec;
use str0m::media::{Direction, MediaKind, Mid, Pt, Rid};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc};
use switchyard_dataplane::core::{Command, Core, CoreEvent, CoreSettings, Outbox, PublicationSpec};
use switchyard_dataplane::metrics::CoreMetrics;
use switchyard_dataplane_api::{Binding, PeerCreate, PeerCreated, PeerOffer, RpcError};

static INIT: Once = Once::new();

pub fn init() {
    INIT.call_once(|| {
        str0m::crypto::from_feature_flags().install_process_default();
    });
}

/// A browser stand-in.
pub struct Client {
    pub name: String,
    pub rtc: Rtc,
    pub addr: SocketAddr,
    pub events: Vec<(Instant, Event)>,
    pub pending: Option<SdpPendingOffer>,
    pub mids: Vec<(Mid, MediaKind)>,
}

/// Sees a datagram from a client (by index) to a core; `false` drops it.
pub type Intercept = Box<dyn FnMut(usize, &[u8]) -> bool>;

/// Cores and clients on one virtual network.
pub struct Net {
    pub now: Instant,
    pub cores: Vec<Core>,
    pub core_addrs: Vec<SocketAddr>,
    pub metrics: Vec<Arc<CoreMetrics>>,
    pub clients: Vec<Client>,
    pub created: Vec<Result<(PeerCreated, Vec<PublicationSpec>), RpcError>>,
    pub core_events: Vec<CoreEvent>,
    /// Drop every datagram from a client to a core whose index is in this list.
    pub blackhole: Vec<usize>,
    /// Sees every datagram from a client (by index) to a core; `false` drops it.
    pub intercept: Option<Intercept>,
    /// Called with `true` just before a core handles a client's datagram and with `false`
    /// once its outbox is taken (the allocation test counts in between).
    pub around_core_input: Option<fn(bool)>,
    /// Called with `true` before every call into a core (commands, datagrams, timeouts,
    /// load) and with `false` after it and its outbox (the memory test charges what is
    /// allocated in between to the server).
    pub around_core: Option<fn(bool)>,
    /// Clients whose incoming video is lossy: every 10th datagram of more than 500 bytes
    /// from a core to them is dropped (counted in `downstream_dropped`).
    pub lossy_clients: Vec<usize>,
    pub downstream_dropped: u64,
    downstream_big: u64,
    /// Peers created from now on estimate their bandwidth (`PeerCreate`'s
    /// `bandwidth_adaptation`).
    pub bandwidth_adaptation: bool,
    /// Bottleneck links from the cores to some clients (by client index).
    pub links: Vec<(usize, Link)>,
    /// The cores of the active-speaker selections publications may compete in.
    pub selections: Vec<(String, u16)>,
    token: u64,
    queue: std::collections::VecDeque<switchyard_dataplane::core::Datagram>,
    delivering: bool,
}

impl Net {
    pub fn new(cores: usize, loss_percent: f64) -> Net {
        Net::with_settings(
            cores,
            CoreSettings {
                test_loss_percent: loss_percent,
                ..CoreSettings::default()
            },
        )
    }

    /// Cores built with `settings`.
    pub fn with_settings(cores: usize, settings: CoreSettings) -> Net {
        init();
        let now = Instant::now();
        let provider = str0m::crypto::from_feature_flags();
        let mut v = Vec::new();
        let mut addrs = Vec::new();
        let mut metrics = Vec::new();
        for i in 0..cores {
            let addr: SocketAddr = format!("10.0.0.1:{}", 40000 + i).parse().unwrap();
            let cert = provider.dtls_provider.generate_certificate().unwrap();
            let m = Arc::new(CoreMetrics::default());
            v.push(Core::new(
                i as u16,
                &[(addr, addr)],
                cert,
                settings,
                m.clone(),
            ));
            addrs.push(addr);
            metrics.push(m);
        }
        Net {
            now,
            cores: v,
            core_addrs: addrs,
            metrics,
            clients: Vec::new(),
            created: Vec::new(),
            core_events: Vec::new(),
            blackhole: Vec::new(),
            intercept: None,
            around_core_input: None,
            around_core: None,
            lossy_clients: Vec::new(),
            downstream_dropped: 0,
            downstream_big: 0,
            bandwidth_adaptation: false,
            links: Vec::new(),
            selections: Vec::new(),
            token: 0,
            queue: Default::default(),
            delivering: false,
        }
    }

    /// A client that sends (`send`) or receives audio and video, in frame mode or RTP mode.
    pub fn client(&mut self, name: &str, send: bool, rtp_mode: bool) -> (usize, String) {
        self.client_with(name, send, Rtc::builder().set_rtp_mode(rtp_mode))
    }

    /// A client built from `config` (e.g. restricted to some codecs).
    pub fn client_with(
        &mut self,
        name: &str,
        send: bool,
        config: str0m::RtcConfig,
    ) -> (usize, String) {
        self.client_offering(name, send, config, None)
    }

    /// An RTP-mode client that publishes audio and video, the video as simulcast layers
    /// `rids` (in that order in its offer).
    pub fn simulcast_client(&mut self, name: &str, rids: &[&str]) -> (usize, String) {
        use str0m::media::{Simulcast, SimulcastLayer};
        let mut sc = Simulcast::new();
        for rid in rids {
            sc.add_send_layer(SimulcastLayer::new(rid));
        }
        self.client_offering(name, true, Rtc::builder().set_rtp_mode(true), Some(sc))
    }

    /// A client offering an audio and a video section (sending or receiving), the video
    /// with `simulcast` layers if given.
    fn client_offering(
        &mut self,
        name: &str,
        send: bool,
        config: str0m::RtcConfig,
        simulcast: Option<str0m::media::Simulcast>,
    ) -> (usize, String) {
        let idx = self.clients.len();
        let addr: SocketAddr = format!("10.0.1.{}:5000", idx + 1).parse().unwrap();
        let mut rtc = config.build(self.now);
        rtc.add_local_candidate(Candidate::host(addr, "udp").unwrap());
        let dir = if send {
            Direction::SendOnly
        } else {
            Direction::RecvOnly
        };
        let mut change = rtc.sdp_api();
        let a = change.add_media(MediaKind::Audio, dir, None, None, None);
        let v = change.add_media(MediaKind::Video, dir, None, None, simulcast);
        let (offer, pending) = change.apply().unwrap();
        self.clients.push(Client {
            name: name.into(),
            rtc,
            addr,
            events: Vec::new(),
            pending: Some(pending),
            mids: vec![(a, MediaKind::Audio), (v, MediaKind::Video)],
        });
        (idx, offer.to_sdp_string())
    }

    /// Connected RTP-mode subscribers on core 0, one per `(id, cap)`, playing "s1"
    /// (described by `specs`), started in that order.
    pub fn subscribers(
        &mut self,
        specs: &[PublicationSpec],
        subs: Vec<(&str, switchyard_dataplane_api::SubscriptionCap)>,
    ) -> Vec<usize> {
        let mut out = Vec::new();
        for (id, cap) in subs {
            let (s, offer) = self.client(id, false, true);
            self.connect(0, s, offer, id, subscribe_with(id, cap), specs.to_vec())
                .unwrap();
            assert!(self.run_until(Duration::from_secs(5), |n| n.connected(s)));
            out.push(s);
        }
        out
    }

    /// A connected publisher of "s1" (audio and video) on core 0, in frame mode or RTP
    /// mode; returns it and its publication's specs.
    pub fn publisher(&mut self, rtp_mode: bool) -> (usize, Vec<PublicationSpec>) {
        let (p, offer) = self.client("publisher", true, rtp_mode);
        let (_, specs) = self
            .connect(0, p, offer, "pub", publish(true, true), vec![])
            .unwrap();
        assert!(self.run_until(Duration::from_secs(5), |n| n.connected(p)));
        (p, specs)
    }

    /// Asks `core` to create a peer for `client` with `bindings`, and completes the
    /// client's negotiation with the answer. Returns the result.
    pub fn connect(
        &mut self,
        core: usize,
        client: usize,
        offer_sdp: String,
        peer: &str,
        bindings: Vec<Binding>,
        specs: Vec<PublicationSpec>,
    ) -> Result<(PeerCreated, Vec<PublicationSpec>), RpcError> {
        self.token += 1;
        let req = PeerCreate {
            peer: peer.into(),
            core: core as u16,
            offer_sdp,
            bindings,
            close_when_empty: true,
            bandwidth_adaptation: self.bandwidth_adaptation,
        };
        self.core_side(true);
        self.cores[core].handle_command(
            self.now,
            Command::CreatePeer {
                token: self.token,
                req,
                specs,
                selections: self.selections.clone(),
            },
        );
        self.finish(core, client)
    }

    /// Sends a client's new offer on its existing peer, with bindings to add.
    pub fn renegotiate(
        &mut self,
        core: usize,
        client: usize,
        offer_sdp: String,
        peer: &str,
        bindings: Vec<Binding>,
        specs: Vec<PublicationSpec>,
    ) -> Result<(PeerCreated, Vec<PublicationSpec>), RpcError> {
        self.token += 1;
        let req = PeerOffer {
            peer: peer.into(),
            offer_sdp,
            bindings,
        };
        self.core_side(true);
        self.cores[core].handle_command(
            self.now,
            Command::Offer {
                token: self.token,
                req,
                specs,
                selections: self.selections.clone(),
            },
        );
        self.finish(core, client)
    }

    fn finish(
        &mut self,
        core: usize,
        client: usize,
    ) -> Result<(PeerCreated, Vec<PublicationSpec>), RpcError> {
        let mut outbox = self.cores[core].take_outbox();
        self.core_side(false);
        let result = outbox.events.drain(..).find_map(|e| match e {
            CoreEvent::Created { result, .. } => Some(result),
            other => {
                self.core_events.push(other);
                None
            }
        });
        let result = result.expect("a Created event");
        self.route(core, outbox);
        if let Ok((created, _)) = &result {
            let c = &mut self.clients[client];
            let answer = SdpAnswer::from_sdp_string(&created.answer_sdp).unwrap();
            c.rtc
                .sdp_api()
                .accept_answer(c.pending.take().unwrap(), answer)
                .unwrap();
        }
        result
    }

    fn route(&mut self, from_core: usize, outbox: Outbox) {
        for d in outbox.transmits {
            self.queue.push_back(d);
        }
        for (to, msg) in outbox.to_cores {
            let now = self.now;
            self.core_side(true);
            self.cores[to as usize].handle_core_msg(now, msg);
            let ob = self.cores[to as usize].take_outbox();
            self.core_side(false);
            self.route(to as usize, ob);
        }
        self.core_events.extend(outbox.events);
        let _ = from_core;
        // Deliver queued datagrams one at a time, draining each client after its input.
        if self.delivering {
            return;
        }
        self.delivering = true;
        while let Some(d) = self.queue.pop_front() {
            let Some(ci) = self.clients.iter().position(|c| c.addr == d.to) else {
                continue;
            };
            if self.lossy_clients.contains(&ci) && d.data.len() > 500 {
                self.downstream_big += 1;
                if self.downstream_big.is_multiple_of(10) {
                    self.downstream_dropped += 1;
                    continue;
                }
            }
            let now = self.now;
            if let Some((_, link)) = self.links.iter_mut().find(|(c, _)| *c == ci) {
                link.enqueue(now, d);
                continue;
            }
            self.deliver(ci, d);
        }
        self.delivering = false;
    }

    fn deliver(&mut self, ci: usize, d: switchyard_dataplane::core::Datagram) {
        let input = Input::Receive(
            self.now,
            Receive {
                proto: Protocol::Udp,
                source: d.from,
                destination: d.to,
                contents: d.data.as_slice().try_into().unwrap(),
            },
        );
        if self.clients[ci].rtc.accepts(&input) {
            self.clients[ci].rtc.handle_input(input).unwrap();
            self.pump_client(ci);
        }
        // Sent: the buffer goes back to str0m's pool, as the driver does.
        str0m::recycle_datagram(d.data);
    }

    /// Delivers what the bottleneck links let through by now.
    fn deliver_links(&mut self) {
        let now = self.now;
        let mut due = Vec::new();
        for (ci, link) in &mut self.links {
            while link.queue.front().is_some_and(|(t, _)| *t <= now) {
                if let Some((_, d)) = link.queue.pop_front() {
                    link.queued_bytes -= d.data.len();
                    due.push((*ci, d));
                }
            }
        }
        self.delivering = true;
        for (ci, d) in due {
            self.deliver(ci, d);
        }
        self.delivering = false;
        // What those deliveries made the clients send.
        let queued: Vec<_> = self.queue.drain(..).collect();
        if !queued.is_empty() {
            self.route(
                0,
                Outbox {
                    transmits: queued,
                    ..Outbox::default()
                },
            );
        }
    }

    /// Puts a bottleneck of `rate_bps` with a `queue_bytes` drop-tail queue on the path from
    /// the cores to `client` (replacing any other).
    pub fn throttle(&mut self, client: usize, rate_bps: u64, queue_bytes: usize) {
        self.links.retain(|(c, _)| *c != client);
        self.links.push((
            client,
            Link {
                rate_bps,
                queue_limit: queue_bytes,
                busy_until: self.now,
                queue: Default::default(),
                queued_bytes: 0,
                dropped: 0,
            },
        ));
    }

    /// Runs a command on `core`, routes what it sends, returns its events.
    pub fn command(&mut self, core: usize, cmd: Command) -> Vec<CoreEvent> {
        let now = self.now;
        self.core_side(true);
        self.cores[core].handle_command(now, cmd);
        let mut ob = self.cores[core].take_outbox();
        self.core_side(false);
        let events = std::mem::take(&mut ob.events);
        self.route(core, ob);
        events
    }

    /// Drains one client (str0m's rule: every mutation is followed by a full drain),
    /// delivering what it sends; returns its next deadline.
    fn pump_client(&mut self, ci: usize) -> std::time::Instant {
        loop {
            let out = self.clients[ci].rtc.poll_output().unwrap();
            match out {
                Output::Timeout(t) => return t,
                Output::Transmit(t) => {
                    if let Some(k) = self.core_addrs.iter().position(|a| *a == t.destination) {
                        if self.blackhole.contains(&k) {
                            continue;
                        }
                        let data: Vec<u8> = t.contents.into();
                        if let Some(see) = self.intercept.as_mut() {
                            if !see(ci, &data) {
                                continue;
                            }
                        }
                        if let Some(hook) = self.around_core_input {
                            hook(true);
                        }
                        self.core_side(true);
                        self.cores[k].handle_datagram(self.now, t.destination, t.source, &data);
                        if let Some(hook) = self.around_core_input {
                            hook(false);
                        }
                        // The client's buffer goes back to the pool it came from (this
                        // thread's), as the driver recycles what the core sent.
                        str0m::recycle_datagram(data);
                        let ob = self.cores[k].take_outbox();
                        self.core_side(false);
                        self.route(k, ob);
                    }
                }
                Output::Event(mut e) => {
                    let now = self.now;
                    // Kept for the test to read: a payload of str0m's per-thread ring,
                    // which the core shares with these clients here, goes back to it
                    // (a client that never lets go would make the core's ring grow).
                    if let Event::RtpPacket(p) = &mut e {
                        p.payload = p.payload.to_arc().into();
                    }
                    self.clients[ci].events.push((now, e));
                }
            }
        }
    }

    /// Moves all traffic once, then advances the clock to the next deadline (at most `max`).
    pub fn step(&mut self, max: Duration) {
        self.deliver_links();
        let mut next = self.now + max;
        for (_, link) in &self.links {
            if let Some((t, _)) = link.queue.front() {
                next = next.min(*t);
            }
        }
        for ci in 0..self.clients.len() {
            next = next.min(self.pump_client(ci));
        }
        for k in 0..self.cores.len() {
            if let Some(t) = self.cores[k].next_timeout() {
                if t <= self.now {
                    self.core_side(true);
                    self.cores[k].handle_timeout(self.now);
                    let ob = self.cores[k].take_outbox();
                    self.core_side(false);
                    self.route(k, ob);
                }
                next = next.min(t.max(self.now + Duration::from_micros(100)));
            }
        }
        self.now = next.max(self.now + Duration::from_micros(100));
        for ci in 0..self.clients.len() {
            self.clients[ci]
                .rtc
                .handle_input(Input::Timeout(self.now))
                .unwrap();
            self.pump_client(ci);
        }
    }

    /// Tells a core how busy it was over the last load window, and routes what it does.
    pub fn load(&mut self, core: usize, busy: f64) {
        let now = self.now;
        self.core_side(true);
        self.cores[core].handle_load(now, busy);
        let ob = self.cores[core].take_outbox();
        self.core_side(false);
        self.route(core, ob);
    }

    fn core_side(&self, inside: bool) {
        if let Some(hook) = self.around_core {
            hook(inside);
        }
    }

    /// Steps until `cond` holds or `limit` of virtual time passes.
    pub fn run_until(&mut self, limit: Duration, mut cond: impl FnMut(&Net) -> bool) -> bool {
        let end = self.now + limit;
        while self.now < end {
            if cond(self) {
                return true;
            }
            self.step(Duration::from_millis(5));
        }
        cond(self)
    }

    pub fn connected(&self, client: usize) -> bool {
        self.clients[client]
            .events
            .iter()
            .any(|(_, e)| matches!(e, Event::Connected))
    }

    /// Writes one frame of `kind` from a frame-mode client.
    pub fn write(&mut self, client: usize, kind: MediaKind, media_time: u64, data: &[u8]) {
        let c = &mut self.clients[client];
        let mid = c.mids.iter().find(|(_, k)| *k == kind).unwrap().0;
        let w = c.rtc.writer(mid).unwrap();
        let pt = w.payload_params().next().unwrap().pt();
        let time = match kind {
            MediaKind::Audio => str0m::media::MediaTime::new(
                media_time,
                str0m::media::Frequency::new(48_000).unwrap(),
            ),
            MediaKind::Video => str0m::media::MediaTime::from_90khz(media_time),
        };
        w.write(pt, self.now, time, data.to_vec()).unwrap();
        self.pump_client(client);
    }

    /// Frame `i` of a frame-mode publisher's media, then 20 ms of network time: 80 bytes
    /// of audio (48 kHz, 20 ms frames) every frame, a video frame of `video` (two packets
    /// at 1,800 bytes; 90 kHz, 40 ms apart) every other frame.
    pub fn frame(&mut self, publisher: usize, i: u64, video: &[u8]) {
        self.write(publisher, MediaKind::Audio, 960 * i, &[0xA0; 80]);
        if i.is_multiple_of(2) {
            self.write(publisher, MediaKind::Video, 3000 * i, video);
        }
        let until = self.now + Duration::from_millis(20);
        while self.now < until {
            self.step(Duration::from_millis(5));
        }
    }

    /// Adds receive-only audio and video sections to a client's connection; returns the
    /// new offer and the new sections' mids.
    pub fn add_receivers(&mut self, client: usize) -> (String, Vec<String>) {
        let c = &mut self.clients[client];
        let mut change = c.rtc.sdp_api();
        let a = change.add_media(MediaKind::Audio, Direction::RecvOnly, None, None, None);
        let v = change.add_media(MediaKind::Video, Direction::RecvOnly, None, None, None);
        let (offer, pending) = change.apply().unwrap();
        c.pending = Some(pending);
        (offer.to_sdp_string(), vec![a.to_string(), v.to_string()])
    }

    /// Writes one RTP packet from an RTP-mode client (for codecs str0m cannot packetize).
    pub fn write_rtp(&mut self, client: usize, kind: MediaKind, seq: u64, ts: u32, payload: &[u8]) {
        let c = &self.clients[client];
        let mid = c.mids.iter().find(|(_, k)| *k == kind).unwrap().0;
        let pt = c.rtc.media(mid).unwrap().remote_pts()[0];
        self.write_rtp_as(client, kind, pt, seq, ts, payload, true);
    }

    /// Writes one RTP packet of payload type `pt` from an RTP-mode client.
    #[allow(clippy::too_many_arguments)]
    pub fn write_rtp_as(
        &mut self,
        client: usize,
        kind: MediaKind,
        pt: Pt,
        seq: u64,
        ts: u32,
        payload: &[u8],
        marker: bool,
    ) {
        let c = &mut self.clients[client];
        let mid = c.mids.iter().find(|(_, k)| *k == kind).unwrap().0;
        let mut api = c.rtc.direct_api();
        if api.stream_tx_by_mid(mid, None).is_none() {
            let ssrc = api.new_ssrc();
            api.declare_stream_tx(ssrc, None, mid, None);
        }
        let tx = api.stream_tx_by_mid(mid, None).unwrap();
        tx.write_rtp(
            str0m::rtp::RtpWrite::new(pt, seq.into(), ts, self.now, payload.to_vec())
                .marker(marker),
        );
        self.pump_client(client);
    }

    pub fn rtp_packets(&self, client: usize) -> Vec<&str0m::rtp::RtpPacket> {
        self.clients[client]
            .events
            .iter()
            .filter_map(|(_, e)| {
                if let Event::RtpPacket(p) = e {
                    Some(p)
                } else {
                    None
                }
            })
            .collect()
    }
}

pub const RIDS: [&str; 3] = ["q", "h", "f"];
/// The simulcast layers' sizes: what their keyframes announce.
pub const SIZES: [(u16, u16); 3] = [(160, 90), (320, 180), (640, 360)];
pub const FPS: u64 = 30;

/// The payload type a client's section uses for `codec`.
pub fn pt_of(net: &Net, client: usize, mid: Mid, codec: Codec) -> Pt {
    let rtc = &net.clients[client].rtc;
    let remote = rtc.media(mid).unwrap().remote_pts().to_vec();
    rtc.codec_config()
        .params()
        .iter()
        .find(|p| p.spec().codec == codec && remote.contains(&p.pt()))
        .map(|p| p.pt())
        .expect("a negotiated payload type")
}

/// A simulcast publisher's media: three VP8 layers at `bps`, `FPS` frames a second, a
/// keyframe every 3 s or when asked for that layer; opus every frame. Each layer numbers
/// its pictures on its own (PictureID, TL0PICIDX in the payload descriptor, far apart
/// between layers, as separate encoders do). Each video payload's last byte says its
/// layer, so subscribers can tell what they get.
pub struct SimulcastPublisher {
    pub client: usize,
    pub bps: [u64; 3],
    frame: u64,
    seq: [u64; 3],
    audio_seq: u64,
    video: (Mid, Pt),
    audio: (Mid, Pt),
    keyframe_due: [bool; 3],
    /// Keyframe requests received per layer.
    pub keyframes_asked: [u32; 3],
    events_seen: usize,
}

impl SimulcastPublisher {
    pub fn new(net: &mut Net, client: usize, bps: [u64; 3]) -> SimulcastPublisher {
        let vmid = net.clients[client].mids[1].0;
        let amid = net.clients[client].mids[0].0;
        let video = (vmid, pt_of(net, client, vmid, Codec::Vp8));
        let audio = (amid, pt_of(net, client, amid, Codec::Opus));
        let mut api = net.clients[client].rtc.direct_api();
        for rid in RIDS {
            let ssrc = api.new_ssrc();
            api.declare_stream_tx(ssrc, None, vmid, Some(Rid::from(rid)));
        }
        let ssrc = api.new_ssrc();
        api.declare_stream_tx(ssrc, None, amid, None);
        SimulcastPublisher {
            client,
            bps,
            frame: 0,
            seq: [1000, 5000, 9000],
            audio_seq: 100,
            video,
            audio,
            keyframe_due: [true; 3],
            keyframes_asked: [0; 3],
            events_seen: 0,
        }
    }

    /// One frame of every layer and of audio, then a frame's time of network.
    pub fn frame(&mut self, net: &mut Net) {
        let events = &net.clients[self.client].events;
        for (_, e) in &events[self.events_seen..] {
            if let Event::KeyframeRequest(r) = e {
                let layer = r
                    .rid
                    .and_then(|rid| RIDS.iter().position(|x| Rid::from(*x) == rid));
                if let Some(l) = layer {
                    self.keyframe_due[l] = true;
                    self.keyframes_asked[l] += 1;
                }
            }
        }
        self.events_seen = events.len();
        let ts = (self.frame * 90_000 / FPS) as u32;
        let now = net.now;
        for l in 0..3 {
            let key = self.keyframe_due[l] || self.frame.is_multiple_of(3 * FPS);
            self.keyframe_due[l] = false;
            let mut bytes = (self.bps[l] / 8 / FPS) as usize;
            if key {
                bytes *= 3;
            }
            let packets = bytes.div_ceil(1100).max(1);
            // Layer l's encoder: pictures numbered from 10,000·l, TL0 from 90·l.
            let pid = ((10_000 * l as u64 + self.frame) % 0x8000) as u16;
            let tl0 = (90 * l as u64 + self.frame) as u8;
            for i in 0..packets {
                let mut payload = vec![0u8; (bytes / packets).max(24)];
                // X, S (first packet), partition 0; I, L, T; 15-bit PictureID; TL0PICIDX;
                // TID 0.
                let descriptor = [
                    if i == 0 { 0x90 } else { 0x80 },
                    0xe0,
                    0x80 | (pid >> 8) as u8,
                    pid as u8,
                    tl0,
                    0x00,
                ];
                payload[..6].copy_from_slice(&descriptor);
                if i == 0 {
                    let (w, h) = SIZES[l];
                    let mut header = vec![if key { 0x50 } else { 0x51 }, 0x2a, 0x01];
                    header.extend_from_slice(&[0x9d, 0x01, 0x2a]);
                    header.extend_from_slice(&w.to_le_bytes());
                    header.extend_from_slice(&h.to_le_bytes());
                    payload[6..6 + header.len()].copy_from_slice(&header);
                }
                let last = payload.len() - 1;
                payload[last] = l as u8;
                let mut api = net.clients[self.client].rtc.direct_api();
                let tx = api
                    .stream_tx_by_mid(self.video.0, Some(Rid::from(RIDS[l])))
                    .unwrap();
                tx.write_rtp(
                    str0m::rtp::RtpWrite::new(self.video.1, self.seq[l].into(), ts, now, payload)
                        .marker(i + 1 == packets),
                );
                self.seq[l] += 1;
            }
        }
        let mut api = net.clients[self.client].rtc.direct_api();
        let tx = api.stream_tx_by_mid(self.audio.0, None).unwrap();
        let ats = (self.frame * 48_000 / FPS) as u32;
        tx.write_rtp(str0m::rtp::RtpWrite::new(
            self.audio.1,
            self.audio_seq.into(),
            ats,
            now,
            vec![0xA0; 80],
        ));
        self.audio_seq += 1;
        self.frame += 1;
        let until = net.now + Duration::from_millis(1000 / FPS);
        while net.now < until {
            net.step(Duration::from_millis(5));
        }
    }

    pub fn run(&mut self, net: &mut Net, secs: u64) {
        for _ in 0..secs * FPS {
            self.frame(net);
        }
    }
}

/// A bottleneck: datagrams leave one after another at `rate_bps`; when `queue_limit`
/// bytes wait, newer ones are dropped (a drop-tail router queue).
pub struct Link {
    pub rate_bps: u64,
    pub queue_limit: usize,
    busy_until: Instant,
    queue: std::collections::VecDeque<(Instant, switchyard_dataplane::core::Datagram)>,
    queued_bytes: usize,
    /// Datagrams the full queue dropped.
    pub dropped: u64,
}

impl Link {
    /// How long a datagram arriving now waits in the queue before it leaves.
    pub fn queue_delay(&self) -> Duration {
        Duration::from_nanos(
            (self.queued_bytes as u64 * 8).saturating_mul(1_000_000_000) / self.rate_bps.max(1),
        )
    }

    fn enqueue(&mut self, now: Instant, d: switchyard_dataplane::core::Datagram) {
        if self.queued_bytes + d.data.len() > self.queue_limit {
            self.dropped += 1;
            return;
        }
        // 28 bytes of IP and UDP headers on the wire.
        let bits = ((d.data.len() + 28) * 8) as u64;
        let serialize = Duration::from_nanos(bits * 1_000_000_000 / self.rate_bps.max(1));
        let done = self.busy_until.max(now) + serialize;
        self.busy_until = done;
        self.queued_bytes += d.data.len();
        self.queue.push_back((done, d));
    }
}

/// Publishing "s1" with audio and/or video.
pub fn publish(audio: bool, video: bool) -> Vec<Binding> {
    vec![Binding::Publish {
        publication: "s1".into(),
        mids: None,
        audio,
        video,
        selection: None,
    }]
}

/// Subscription `id`, playing "s1" (audio and video).
pub fn subscribe(id: &str) -> Vec<Binding> {
    vec![Binding::Subscribe {
        subscription: id.into(),
        publication: "s1".into(),
        mids: None,
        audio: true,
        video: true,
        cap: Default::default(),
    }]
}

/// One core with a connected frame-mode publisher of "s1" (audio and video) and
/// `subscribers` connected RTP-mode subscribers "sub0", "sub1", … playing it, started in
/// that order. Returns the network, the publisher and the subscribers.
pub fn one_publisher_room(subscribers: usize) -> (Net, usize, Vec<usize>) {
    one_publisher_room_on(Net::new(1, 0.0), subscribers)
}

/// [`one_publisher_room`] on core 0 of `net` (built with the settings a test needs).
pub fn one_publisher_room_on(mut net: Net, subscribers: usize) -> (Net, usize, Vec<usize>) {
    let (p, specs) = net.publisher(false);
    let ids: Vec<String> = (0..subscribers).map(|i| format!("sub{i}")).collect();
    let subs = ids
        .iter()
        .map(|id| (id.as_str(), Default::default()))
        .collect();
    let subs = net.subscribers(&specs, subs);
    (net, p, subs)
}

/// Subscription `id` to "s1" with a cap.
pub fn subscribe_with(id: &str, cap: switchyard_dataplane_api::SubscriptionCap) -> Vec<Binding> {
    vec![Binding::Subscribe {
        subscription: id.into(),
        publication: "s1".into(),
        mids: None,
        audio: true,
        video: true,
        cap,
    }]
}

/// A room with a simulcast publisher ("s1") and subscribers with these caps.
pub fn simulcast_room(
    net: &mut Net,
    caps: Vec<(&str, switchyard_dataplane_api::SubscriptionCap)>,
) -> (usize, Vec<usize>) {
    let (p, offer) = net.simulcast_client("publisher", &RIDS);
    let (created, specs) = net
        .connect(0, p, offer, "pub", publish(true, true), vec![])
        .unwrap();
    assert!(
        created.answer_sdp.contains("a=simulcast:recv q;h;f"),
        "the answer takes the layers: {}",
        created.answer_sdp
    );
    let video = created
        .tracks("s1")
        .iter()
        .find(|t| t.kind == switchyard_dataplane_api::MediaKind::Video)
        .unwrap();
    assert_eq!(video.rids, RIDS);
    assert_eq!(specs[0].rids.len(), 3);
    assert!(net.run_until(Duration::from_secs(5), |n| n.connected(p)));
    (p, net.subscribers(&specs, caps))
}
