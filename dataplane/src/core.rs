//! One core's state machine: its peers, its routing tables, its forwarding (sans-IO).
//!
//! A [`Core`] is driven by four inputs, each taking `now`: a datagram arrived on one of
//! the core's sockets ([`Core::handle_datagram`]), time passed ([`Core::handle_timeout`]),
//! control asked for something ([`Core::handle_command`]), another core handed over a
//! packet or a request ([`Core::handle_core_msg`]). Everything it wants done — datagrams to
//! send, messages for other cores, events for control — collects in its [`Outbox`], which
//! the driver empties after each input. No sockets, no clocks, no threads: tests drive it
//! with a virtual clock and in-memory clients.
//!
//! Forwarding: a publisher's RTP packet is taken out of str0m once (decrypted, payload in
//! an `Arc`), written to every local subscription (each rewrites sequence numbers and
//! timestamps and maps the payload type; str0m encrypts per subscriber and keeps the
//! payload `Arc` in its send cache to answer NACKs with RTX), and handed once to each other
//! core that has subscribers of the publication.

use crate::demux::{classify, stun_server_ufrag, PacketClass};
use crate::keyframe::{Decision, KeyframeLimiter};
use crate::metrics::{CoreMetrics, DropReason};
use crate::peer::{self, Built, Setup};
use crate::rewrite::Rewriter;
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use str0m::config::DtlsCert;
use str0m::format::PayloadParams;
use str0m::media::{KeyframeRequestKind, Mid, Pt};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{ExtensionValues, RtpPacket, RtpWrite, Ssrc};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc};
use switchyard_dataplane_api::{ErrorCode, MediaKind, PeerCreate, PeerCreated, PeerRole, RpcError};

/// The most remote addresses remembered for one peer.
pub const MAX_ADDRS_PER_PEER: usize = 8;

/// How long a peer may take to connect (ICE and DTLS) before it is closed.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// A publication as the rest of the dataplane knows it.
#[derive(Debug, Clone)]
pub struct PublicationSpec {
    /// The stream id.
    pub id: Arc<str>,
    /// The core its publisher is on.
    pub home: u16,
    /// Its codecs.
    pub params: Vec<PayloadParams>,
    /// Whether it has audio.
    pub audio: bool,
    /// Whether it has video.
    pub video: bool,
}

/// A request from the management side to a core.
#[derive(Debug)]
pub enum Command {
    /// Create a peer; the answer comes back as [`CoreEvent::Created`] with `token`.
    CreatePeer {
        /// Echoed in the answer.
        token: u64,
        /// What control asked for.
        req: PeerCreate,
        /// For a subscriber, the publication it plays.
        publication: Option<PublicationSpec>,
    },
    /// Close a peer; answered with [`CoreEvent::Closed`] carrying `token`.
    ClosePeer {
        /// Echoed in the answer.
        token: Option<u64>,
        /// The peer.
        peer: String,
        /// Why, for the event.
        reason: String,
    },
    /// Close every peer (control went away).
    CloseAll,
}

/// What a core tells the management side.
#[derive(Debug)]
pub enum CoreEvent {
    /// The answer to [`Command::CreatePeer`].
    Created {
        /// The command's token.
        token: u64,
        /// The peer, its answer, and for a publisher its publication.
        result: Result<(PeerCreated, Option<PublicationSpec>), RpcError>,
    },
    /// A peer's ICE and DTLS are up.
    Connected {
        /// The peer.
        peer: String,
    },
    /// A peer is gone (asked for, or on its own).
    Closed {
        /// The [`Command::ClosePeer`] token, when asked for.
        token: Option<u64>,
        /// The peer.
        peer: String,
        /// For a publisher, its publication.
        publication: Option<Arc<str>>,
        /// Why.
        reason: String,
    },
}

/// One RTP packet of a publication, as handed between cores.
#[derive(Debug)]
pub struct MediaPacket {
    /// The publication.
    pub publication: Arc<str>,
    /// Audio or video.
    pub kind: MediaKind,
    /// The codec the payload is in.
    pub params: PayloadParams,
    /// The publisher's SSRC.
    pub ssrc: u32,
    /// Extended sequence number.
    pub seq: u64,
    /// RTP timestamp.
    pub ts: u32,
    /// The marker bit.
    pub marker: bool,
    /// Header extension values to carry on (audio level, orientation).
    pub ext: ExtensionValues,
    /// The payload, shared by every subscription.
    pub payload: Arc<[u8]>,
    /// When it arrived.
    pub arrival: Instant,
}

/// What cores tell each other.
#[derive(Debug, Clone)]
pub enum CoreMsg {
    /// A packet for this core's subscribers of its publication.
    Media(Arc<MediaPacket>),
    /// A subscriber on another core wants a keyframe of a publication homed here.
    KeyframeRequest {
        /// The publication.
        publication: Arc<str>,
    },
    /// The sending core now has (or no longer has) subscribers of a publication homed here.
    Interest {
        /// The publication.
        publication: Arc<str>,
        /// The interested core.
        core: u16,
        /// Whether it has subscribers now.
        on: bool,
    },
}

/// A datagram to send.
#[derive(Debug)]
pub struct Datagram {
    /// The local socket address to send from.
    pub from: SocketAddr,
    /// The destination.
    pub to: SocketAddr,
    /// The bytes.
    pub data: Vec<u8>,
}

/// What a core wants done after an input.
#[derive(Debug, Default)]
pub struct Outbox {
    /// Datagrams to send.
    pub transmits: Vec<Datagram>,
    /// Messages for other cores.
    pub to_cores: Vec<(u16, CoreMsg)>,
    /// Events for the management side.
    pub events: Vec<CoreEvent>,
}

impl Outbox {
    /// Whether there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.transmits.is_empty() && self.to_cores.is_empty() && self.events.is_empty()
    }
}

type PeerKey = u32;

struct OutTrack {
    kind: MediaKind,
    mid: Mid,
    ssrc: Ssrc,
    rewriter: Rewriter,
    pt_map: Vec<(Pt, Option<Pt>)>,
}

enum Role {
    Publisher {
        publication: Arc<str>,
        media: Vec<(Mid, MediaKind)>,
        video_ssrcs: Vec<Ssrc>,
    },
    Subscriber {
        publication: Arc<str>,
        outs: Vec<OutTrack>,
    },
}

struct Peer {
    id: String,
    rtc: Rtc,
    role: Role,
    ufrag: String,
    addrs: Vec<(SocketAddr, SocketAddr)>,
    next_timeout: Instant,
    created: Instant,
    connected: bool,
    /// Cumulative NACK counts per mid, to turn str0m's totals into deltas.
    nacks_seen: HashMap<Mid, (u64, u64)>,
}

struct Publication {
    peer: PeerKey,
    remote_cores: Vec<u16>,
    limiter: KeyframeLimiter,
}

/// A tiny deterministic generator for the test loss hook.
struct LossInjector {
    percent: f64,
    state: u64,
}

impl LossInjector {
    fn drop_next(&mut self) -> bool {
        if self.percent <= 0.0 {
            return false;
        }
        // xorshift64*
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        let r = self.state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11;
        (r as f64 / (1u64 << 53) as f64) * 100.0 < self.percent
    }
}

/// One core's peers and routes.
pub struct Core {
    index: u16,
    candidates: Vec<Candidate>,
    cert: DtlsCert,
    max_peers: usize,
    next_key: PeerKey,
    peers: HashMap<PeerKey, Peer>,
    ids: HashMap<String, PeerKey>,
    by_addr: HashMap<(SocketAddr, SocketAddr), PeerKey>,
    by_ufrag: HashMap<String, PeerKey>,
    publications: HashMap<Arc<str>, Publication>,
    subscribers: HashMap<Arc<str>, Vec<PeerKey>>,
    homes: HashMap<Arc<str>, u16>,
    pending: VecDeque<(PeerKey, Event)>,
    out: Outbox,
    metrics: Arc<CoreMetrics>,
    loss: LossInjector,
}

impl Core {
    /// A core. `sockets` are its local socket addresses with the IP to announce for each
    /// (the `replaced_ip_address` behind NAT, or the address itself).
    pub fn new(
        index: u16,
        sockets: &[(SocketAddr, SocketAddr)],
        cert: DtlsCert,
        max_peers: usize,
        loss_percent: f64,
        metrics: Arc<CoreMetrics>,
    ) -> Self {
        let candidates = sockets
            .iter()
            .filter_map(|(local, announced)| {
                if local == announced {
                    Candidate::host(*local, "udp").ok()
                } else {
                    // Behind NAT: announce the public address, receive on the local one.
                    Candidate::server_reflexive(*announced, *local, "udp").ok()
                }
            })
            .collect();
        Core {
            index,
            candidates,
            cert,
            max_peers,
            next_key: 1,
            peers: HashMap::new(),
            ids: HashMap::new(),
            by_addr: HashMap::new(),
            by_ufrag: HashMap::new(),
            publications: HashMap::new(),
            subscribers: HashMap::new(),
            homes: HashMap::new(),
            pending: VecDeque::new(),
            out: Outbox::default(),
            metrics,
            loss: LossInjector {
                percent: loss_percent,
                state: 0x9E37_79B9_7F4A_7C15 ^ u64::from(index),
            },
        }
    }

    /// The core's index.
    pub fn index(&self) -> u16 {
        self.index
    }

    /// Peers on the core.
    pub fn peer_count(&self) -> usize {
        self.peers.len()
    }

    /// Takes what the core wants done.
    pub fn take_outbox(&mut self) -> Outbox {
        std::mem::take(&mut self.out)
    }

    /// The earliest time the core needs [`Core::handle_timeout`].
    pub fn next_timeout(&self) -> Option<Instant> {
        let peers = self
            .peers
            .values()
            .map(|p| p.next_timeout.min(p.created + CONNECT_TIMEOUT));
        let limiters = self.publications.values().filter_map(|p| p.limiter.due());
        peers.chain(limiters).min()
    }

    // ----- inputs -------------------------------------------------------------------

    /// A datagram arrived on the socket bound to `local` from `remote`.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        data: &[u8],
    ) {
        CoreMetrics::add(&self.metrics.packets_in, 1);
        CoreMetrics::add(&self.metrics.bytes_in, data.len() as u64);
        let class = classify(data);
        if class == PacketClass::Unknown {
            self.metrics.dropped(DropReason::Malformed);
            return;
        }
        let key = match self.by_addr.get(&(local, remote)) {
            Some(k) => *k,
            None => {
                let found = if class == PacketClass::Stun {
                    stun_server_ufrag(data).and_then(|u| self.by_ufrag.get(u).copied())
                } else {
                    None
                };
                match found {
                    Some(k) => k,
                    None => {
                        self.metrics.dropped(DropReason::UnknownSource);
                        return;
                    }
                }
            }
        };
        let Ok(contents) = data.try_into() else {
            self.metrics.dropped(DropReason::Malformed);
            return;
        };
        let input = Input::Receive(
            now,
            Receive {
                proto: Protocol::Udp,
                source: remote,
                destination: local,
                contents,
            },
        );
        let Some(peer) = self.peers.get_mut(&key) else {
            self.metrics.dropped(DropReason::UnknownSource);
            return;
        };
        if !peer.rtc.accepts(&input) {
            self.metrics.dropped(DropReason::NotAccepted);
            return;
        }
        if class == PacketClass::Rtp
            && matches!(peer.role, Role::Publisher { .. })
            && self.loss.drop_next()
        {
            self.metrics.dropped(DropReason::TestLoss);
            return;
        }
        if let Err(e) = peer.rtc.handle_input(input) {
            tracing::debug!(peer = %peer.id, error = %e, "input refused");
            self.metrics.dropped(DropReason::Malformed);
        }
        if class == PacketClass::Stun && !peer.addrs.contains(&(local, remote)) {
            // A peer keeps at most a few addresses (ICE candidates, a NAT rebinding); the
            // oldest goes first, so spoofed requests cannot grow the table.
            if peer.addrs.len() >= MAX_ADDRS_PER_PEER {
                let old = peer.addrs.remove(0);
                self.by_addr.remove(&old);
            }
            peer.addrs.push((local, remote));
            self.by_addr.insert((local, remote), key);
        }
        self.drain(key);
        self.run_pending(now);
    }

    /// Time passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        let due: Vec<PeerKey> = self
            .peers
            .iter()
            .filter(|(_, p)| p.next_timeout <= now)
            .map(|(k, _)| *k)
            .collect();
        for key in due {
            if let Some(p) = self.peers.get_mut(&key) {
                if let Err(e) = p.rtc.handle_input(Input::Timeout(now)) {
                    tracing::debug!(peer = %p.id, error = %e, "timeout input failed");
                }
            }
            self.drain(key);
        }
        let stale: Vec<PeerKey> = self
            .peers
            .iter()
            .filter(|(_, p)| !p.connected && now >= p.created + CONNECT_TIMEOUT)
            .map(|(k, _)| *k)
            .collect();
        for key in stale {
            self.close(key, None, "ICE and DTLS did not connect within 30 s".into());
        }
        let dead: Vec<PeerKey> = self
            .peers
            .iter()
            .filter(|(_, p)| !p.rtc.is_alive())
            .map(|(k, _)| *k)
            .collect();
        for key in dead {
            self.close(key, None, "the connection closed".into());
        }
        let due: Vec<Arc<str>> = self
            .publications
            .iter_mut()
            .filter_map(|(id, p)| p.limiter.poll(now).then(|| id.clone()))
            .collect();
        for id in due {
            self.send_keyframe_request(&id);
        }
        self.run_pending(now);
    }

    /// The management side asks.
    pub fn handle_command(&mut self, now: Instant, cmd: Command) {
        match cmd {
            Command::CreatePeer {
                token,
                req,
                publication,
            } => {
                let result = self.create_peer(now, req, publication);
                self.out.events.push(CoreEvent::Created { token, result });
            }
            Command::ClosePeer {
                token,
                peer,
                reason,
            } => match self.ids.get(&peer).copied() {
                Some(key) => self.close(key, token, reason),
                None => self.out.events.push(CoreEvent::Closed {
                    token,
                    peer,
                    publication: None,
                    reason: "unknown peer".into(),
                }),
            },
            Command::CloseAll => {
                let keys: Vec<PeerKey> = self.peers.keys().copied().collect();
                for key in keys {
                    self.close(key, None, "control disconnected".into());
                }
            }
        }
        self.run_pending(now);
    }

    /// Another core hands something over.
    pub fn handle_core_msg(&mut self, now: Instant, msg: CoreMsg) {
        match msg {
            CoreMsg::Media(pkt) => {
                let subs = self
                    .subscribers
                    .get(&pkt.publication)
                    .cloned()
                    .unwrap_or_default();
                for key in subs {
                    self.write_to_subscriber(key, &pkt, now);
                }
            }
            CoreMsg::KeyframeRequest { publication } => self.keyframe_wanted(&publication, now),
            CoreMsg::Interest {
                publication,
                core,
                on,
            } => {
                if let Some(p) = self.publications.get_mut(&publication) {
                    p.remote_cores.retain(|c| *c != core);
                    if on {
                        p.remote_cores.push(core);
                        self.keyframe_wanted(&publication, now);
                    }
                }
            }
        }
        self.run_pending(now);
    }

    // ----- peers --------------------------------------------------------------------

    fn create_peer(
        &mut self,
        now: Instant,
        req: PeerCreate,
        publication: Option<PublicationSpec>,
    ) -> Result<(PeerCreated, Option<PublicationSpec>), RpcError> {
        if self.ids.contains_key(&req.peer) {
            return Err(RpcError::new(
                ErrorCode::PeerExists,
                format!("peer {} exists", req.peer),
            ));
        }
        if self.peers.len() >= self.max_peers {
            return Err(RpcError::new(
                ErrorCode::CoreUnavailable,
                format!("core {} is full", self.index),
            ));
        }
        let setup = Setup {
            now,
            cert: &self.cert,
            candidates: &self.candidates,
        };
        let (built, role, spec) = match (&req.role, publication) {
            (
                PeerRole::Publisher {
                    publication,
                    audio,
                    video,
                },
                _,
            ) => {
                let built = peer::publisher(&req.offer_sdp, *audio, *video, &setup)?;
                let id: Arc<str> = Arc::from(publication.as_str());
                if self.publications.contains_key(&id) {
                    return Err(RpcError::new(
                        ErrorCode::PeerExists,
                        format!("publication {publication} exists"),
                    ));
                }
                let spec = PublicationSpec {
                    id: id.clone(),
                    home: self.index,
                    params: built.params.clone(),
                    audio: built.media.iter().any(|(_, k)| *k == MediaKind::Audio),
                    video: built.media.iter().any(|(_, k)| *k == MediaKind::Video),
                };
                let role = Role::Publisher {
                    publication: id,
                    media: built.media.clone(),
                    video_ssrcs: Vec::new(),
                };
                (built, role, Some(spec))
            }
            (PeerRole::Subscriber { audio, video, .. }, Some(spec)) => {
                let mut built = peer::subscriber(
                    &req.offer_sdp,
                    *audio && spec.audio,
                    *video && spec.video,
                    &spec.params,
                    &setup,
                )?;
                let outs = subscriber_tracks(&mut built);
                self.homes.insert(spec.id.clone(), spec.home);
                (
                    built,
                    Role::Subscriber {
                        publication: spec.id.clone(),
                        outs,
                    },
                    None,
                )
            }
            (PeerRole::Subscriber { publication, .. }, None) => {
                return Err(RpcError::new(
                    ErrorCode::UnknownPublication,
                    format!("publication {publication} does not exist"),
                ));
            }
        };
        let Built {
            mut rtc,
            answer,
            tracks,
            ..
        } = built;
        let ufrag = rtc.direct_api().local_ice_credentials().ufrag;
        let key = self.next_key;
        self.next_key = self.next_key.wrapping_add(1).max(1);
        match &role {
            Role::Publisher { publication, .. } => {
                self.publications.insert(
                    publication.clone(),
                    Publication {
                        peer: key,
                        remote_cores: Vec::new(),
                        limiter: KeyframeLimiter::default(),
                    },
                );
                CoreMetrics::add(&self.metrics.publishers, 1);
            }
            Role::Subscriber { publication, .. } => {
                let list = self.subscribers.entry(publication.clone()).or_default();
                list.push(key);
                let home = self.homes.get(publication).copied().unwrap_or(self.index);
                if list.len() == 1 && home != self.index {
                    self.out.to_cores.push((
                        home,
                        CoreMsg::Interest {
                            publication: publication.clone(),
                            core: self.index,
                            on: true,
                        },
                    ));
                }
            }
        }
        self.by_ufrag.insert(ufrag.clone(), key);
        self.ids.insert(req.peer.clone(), key);
        self.peers.insert(
            key,
            Peer {
                id: req.peer.clone(),
                rtc,
                role,
                ufrag,
                addrs: Vec::new(),
                next_timeout: now,
                created: now,
                connected: false,
                nacks_seen: HashMap::new(),
            },
        );
        CoreMetrics::add(&self.metrics.peers, 1);
        self.drain(key);
        Ok((
            PeerCreated {
                peer: req.peer,
                core: self.index,
                answer_sdp: answer,
                tracks,
            },
            spec,
        ))
    }

    fn close(&mut self, key: PeerKey, token: Option<u64>, reason: String) {
        let Some(mut peer) = self.peers.remove(&key) else {
            return;
        };
        peer.rtc.disconnect();
        // Flush what disconnecting produced (DTLS close notify).
        while let Ok(out) = peer.rtc.poll_output() {
            match out {
                Output::Transmit(t) => self.out.transmits.push(Datagram {
                    from: t.source,
                    to: t.destination,
                    data: t.contents.into(),
                }),
                Output::Timeout(_) => break,
                Output::Event(_) => {}
            }
        }
        self.ids.remove(&peer.id);
        self.by_ufrag.remove(&peer.ufrag);
        for a in &peer.addrs {
            self.by_addr.remove(a);
        }
        self.metrics
            .peers
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        let publication = match peer.role {
            Role::Publisher { publication, .. } => {
                self.publications.remove(&publication);
                self.metrics
                    .publishers
                    .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
                Some(publication)
            }
            Role::Subscriber { publication, .. } => {
                if let Some(list) = self.subscribers.get_mut(&publication) {
                    list.retain(|k| *k != key);
                    if list.is_empty() {
                        self.subscribers.remove(&publication);
                        if let Some(home) = self.homes.remove(&publication) {
                            if home != self.index {
                                self.out.to_cores.push((
                                    home,
                                    CoreMsg::Interest {
                                        publication,
                                        core: self.index,
                                        on: false,
                                    },
                                ));
                            }
                        }
                    }
                }
                None
            }
        };
        tracing::info!(peer = %peer.id, core = self.index, reason = %reason, "peer closed");
        self.out.events.push(CoreEvent::Closed {
            token,
            peer: peer.id,
            publication,
            reason,
        });
    }

    /// Polls a peer until it has nothing more to say; events are queued for
    /// [`Core::run_pending`], so that handling one never nests inside another's drain.
    fn drain(&mut self, key: PeerKey) {
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        loop {
            match peer.rtc.poll_output() {
                Ok(Output::Transmit(t)) => {
                    self.out.transmits.push(Datagram {
                        from: t.source,
                        to: t.destination,
                        data: t.contents.into(),
                    });
                }
                Ok(Output::Timeout(t)) => {
                    peer.next_timeout = t;
                    break;
                }
                Ok(Output::Event(e)) => self.pending.push_back((key, e)),
                Err(e) => {
                    tracing::info!(peer = %peer.id, error = %e, "peer failed");
                    peer.rtc.disconnect();
                    peer.next_timeout = Instant::now();
                    break;
                }
            }
        }
    }

    fn run_pending(&mut self, now: Instant) {
        while let Some((key, event)) = self.pending.pop_front() {
            self.handle_event(key, event, now);
        }
    }

    fn handle_event(&mut self, key: PeerKey, event: Event, now: Instant) {
        match event {
            Event::Connected => {
                let Some(peer) = self.peers.get_mut(&key) else {
                    return;
                };
                peer.connected = true;
                self.out.events.push(CoreEvent::Connected {
                    peer: peer.id.clone(),
                });
                if let Role::Subscriber { publication, .. } = &peer.role {
                    // A new subscriber needs a keyframe to start decoding.
                    let publication = publication.clone();
                    self.keyframe_wanted(&publication, now);
                }
            }
            Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                self.close(key, None, "ICE disconnected".into());
            }
            Event::RtpPacket(pkt) => self.forward(key, pkt),
            Event::KeyframeRequest(_) => {
                CoreMetrics::add(&self.metrics.keyframe_requests_received, 1);
                let publication = match self.peers.get(&key).map(|p| &p.role) {
                    Some(Role::Subscriber { publication, .. }) => publication.clone(),
                    _ => return,
                };
                self.keyframe_wanted(&publication, now);
            }
            Event::MediaEgressStats(s) => self.count_nacks(key, s.mid, s.nacks, true),
            Event::MediaIngressStats(s) => self.count_nacks(key, s.mid, s.nacks, false),
            _ => {}
        }
    }

    fn count_nacks(&mut self, key: PeerKey, mid: Mid, total: u64, egress: bool) {
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        let seen = peer.nacks_seen.entry(mid).or_default();
        let last = if egress { &mut seen.0 } else { &mut seen.1 };
        let delta = total.saturating_sub(*last);
        *last = total;
        let counter = if egress {
            &self.metrics.nacks_received
        } else {
            &self.metrics.nacks_sent
        };
        CoreMetrics::add(counter, delta);
    }

    // ----- forwarding ---------------------------------------------------------------

    fn forward(&mut self, key: PeerKey, pkt: RtpPacket) {
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        let Role::Publisher {
            publication,
            media,
            video_ssrcs,
        } = &mut peer.role
        else {
            return;
        };
        let ssrc = pkt.header.ssrc;
        let mid = peer.rtc.direct_api().stream_rx(&ssrc).map(|s| s.mid());
        let Some(kind) = mid
            .and_then(|m| media.iter().find(|(x, _)| *x == m))
            .map(|(_, k)| *k)
        else {
            self.metrics.dropped(DropReason::NotRoutable);
            return;
        };
        let pt = pkt.header.payload_type;
        let Some(params) = peer
            .rtc
            .codec_config()
            .params()
            .iter()
            .find(|p| p.pt() == pt)
            .copied()
        else {
            self.metrics.dropped(DropReason::CodecMismatch);
            return;
        };
        if kind == MediaKind::Video && !video_ssrcs.contains(&ssrc) {
            video_ssrcs.push(ssrc);
        }
        let ext = ExtensionValues {
            audio_level: pkt.header.ext_vals.audio_level,
            voice_activity: pkt.header.ext_vals.voice_activity,
            video_orientation: pkt.header.ext_vals.video_orientation,
            ..Default::default()
        };
        let packet = Arc::new(MediaPacket {
            publication: publication.clone(),
            kind,
            params,
            ssrc: *ssrc,
            seq: *pkt.seq_no,
            ts: pkt.header.timestamp,
            marker: pkt.header.marker,
            ext,
            payload: pkt.payload,
            arrival: pkt.timestamp,
        });
        let publication = publication.clone();
        if let Some(p) = self.publications.get(&publication) {
            for core in &p.remote_cores {
                self.out
                    .to_cores
                    .push((*core, CoreMsg::Media(packet.clone())));
                CoreMetrics::add(&self.metrics.handed_off, 1);
            }
        }
        let subs = self
            .subscribers
            .get(&publication)
            .cloned()
            .unwrap_or_default();
        let now = packet.arrival;
        for sub in subs {
            self.write_to_subscriber(sub, &packet, now);
        }
    }

    fn write_to_subscriber(&mut self, key: PeerKey, pkt: &MediaPacket, now: Instant) {
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        if !peer.connected {
            return;
        }
        let Role::Subscriber { outs, .. } = &mut peer.role else {
            return;
        };
        let Some(out) = outs.iter_mut().find(|o| o.kind == pkt.kind) else {
            self.metrics.dropped(DropReason::NotRoutable);
            return;
        };
        let in_pt = pkt.params.pt();
        let out_pt = match out.pt_map.iter().find(|(i, _)| *i == in_pt) {
            Some((_, o)) => *o,
            None => {
                let allowed = peer
                    .rtc
                    .media(out.mid)
                    .map(|m| m.remote_pts().to_vec())
                    .unwrap_or_default();
                let o = peer
                    .rtc
                    .codec_config()
                    .match_params(pkt.params)
                    .map(|p| p.pt())
                    .filter(|pt| allowed.contains(pt));
                out.pt_map.push((in_pt, o));
                o
            }
        };
        let Some(pt) = out_pt else {
            self.metrics.dropped(DropReason::CodecMismatch);
            return;
        };
        let Some(rw) = out.rewriter.rewrite(pkt.ssrc, pkt.seq, pkt.ts, now) else {
            self.metrics.dropped(DropReason::NotRoutable);
            return;
        };
        let ssrc = out.ssrc;
        let nackable = pkt.kind == MediaKind::Video;
        let write = RtpWrite::new(pt, rw.seq.into(), rw.ts, pkt.arrival, pkt.payload.clone())
            .marker(pkt.marker)
            .ext_vals(pkt.ext.clone())
            .nackable(nackable);
        let mut api = peer.rtc.direct_api();
        let Some(tx) = api.stream_tx(&ssrc) else {
            self.metrics.dropped(DropReason::NotRoutable);
            return;
        };
        tx.write_rtp(write);
        CoreMetrics::add(&self.metrics.rtp_forwarded, 1);
        self.drain(key);
    }

    /// A subscriber of `publication` (here or on another core) wants a keyframe.
    fn keyframe_wanted(&mut self, publication: &Arc<str>, now: Instant) {
        if let Some(p) = self.publications.get_mut(publication) {
            if p.limiter.request(now) == Decision::Send {
                self.send_keyframe_request(publication);
            }
        } else if let Some(home) = self.homes.get(publication) {
            self.out.to_cores.push((
                *home,
                CoreMsg::KeyframeRequest {
                    publication: publication.clone(),
                },
            ));
        }
    }

    fn send_keyframe_request(&mut self, publication: &Arc<str>) {
        let Some(key) = self.publications.get(publication).map(|p| p.peer) else {
            return;
        };
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        let Role::Publisher { video_ssrcs, .. } = &peer.role else {
            return;
        };
        let ssrcs = video_ssrcs.clone();
        for ssrc in ssrcs {
            let Some(peer) = self.peers.get_mut(&key) else {
                return;
            };
            if let Some(rx) = peer.rtc.direct_api().stream_rx(&ssrc) {
                rx.request_keyframe(KeyframeRequestKind::Pli);
                CoreMetrics::add(&self.metrics.keyframe_requests_sent, 1);
            }
            // One mutation, then a full drain, as str0m requires.
            self.drain(key);
        }
    }
}

/// The outgoing tracks of a new subscriber: one per answered section, with the send
/// stream's SSRC and a rewriter starting at a random sequence number.
fn subscriber_tracks(built: &mut Built) -> Vec<OutTrack> {
    let mut outs = Vec::new();
    for (mid, kind) in built.media.clone() {
        let Some(ssrc) = built
            .rtc
            .direct_api()
            .stream_tx_by_mid(mid, None)
            .map(|s| s.ssrc())
        else {
            continue;
        };
        let clock_rate = built
            .tracks
            .iter()
            .find(|t| t.mid == mid.to_string())
            .map(|t| t.clock_rate)
            .unwrap_or(if kind == MediaKind::Audio {
                48_000
            } else {
                90_000
            });
        outs.push(OutTrack {
            kind,
            mid,
            ssrc,
            rewriter: Rewriter::new(clock_rate, rand::random::<u16>() & 0x7fff),
            pt_map: Vec::new(),
        });
    }
    outs
}
