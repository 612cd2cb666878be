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
//!
//! Simulcast: a publication's video may arrive as several layers (`rid`s). The publisher's
//! core measures them ([`crate::layers::LayerMeter`]) and marks each packet with its layer,
//! whether it starts a keyframe ([`crate::packet`]) and the layers' snapshot; every video
//! subscription forwards one layer, chosen by its [`crate::layers::LayerSelector`] from its
//! cap and, with bandwidth adaptation, its share of the peer's bandwidth estimate (str0m's
//! transport-wide congestion control, or the client's REMB), switching at keyframes.

mod adapt;
mod bindings;
mod forward;

use adapt::{cap_of, Deferred};
pub use adapt::{AUDIO_RESERVE_BPS, BWE_UPDATE_EVERY, INITIAL_ESTIMATE_BPS};

use crate::demux::{classify, stun_server_ufrag, PacketClass};
use crate::keyframe::{Decision, KeyframeLimiter};
use crate::layers::{Cap, LayerMeter, LayerSelector, Layers, KEYFRAME_RETRY, MAX_LAYERS};
use crate::metrics::{CoreMetrics, DropReason};
use crate::overload::Shedder;
use crate::peer::{self, Setup};
use crate::rewrite::Rewriter;
use crate::sdp;
use crate::svc::{Structure, SvcFilter, SvcPacket};
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use str0m::config::DtlsCert;
use str0m::format::PayloadParams;
use str0m::media::{KeyframeRequestKind, Mid, Pt, Rid};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{ExtensionValues, Payload, Recycler, RtpPacket, RtpWrite, Ssrc};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc, WriteNow};
use switchyard_dataplane_api::{
    Binding, ErrorCode, LayerState, MediaKind, PeerCreate, PeerCreated, PeerOffer, RpcError,
    SubscriptionCap, SubscriptionState,
};

/// The largest RTP payload forwarded. Browsers send at most about 1,200 bytes; a
/// subscriber's copy is built by str0m in a 2,000-byte buffer with its own header, header
/// extensions, the RTX sequence number and the SRTP tag, and a payload that does not fit
/// would stop the core's thread.
pub const MAX_PAYLOAD: usize = 1_800;

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
    /// The `rid`s of its simulcast video layers, in the offer's order (empty: one layer).
    pub rids: Vec<Rid>,
}

/// A request from the management side to a core.
#[derive(Debug)]
pub enum Command {
    /// Create a peer; answered with [`CoreEvent::Created`] carrying `token`.
    CreatePeer {
        /// Echoed in the answer.
        token: u64,
        /// What control asked for.
        req: PeerCreate,
        /// The publications its subscribe bindings play.
        specs: Vec<PublicationSpec>,
        /// The core of each selection its publish bindings compete in.
        selections: Vec<(String, u16)>,
    },
    /// A new offer on a peer; answered with [`CoreEvent::Created`].
    Offer {
        /// Echoed in the answer.
        token: u64,
        /// What control asked for.
        req: PeerOffer,
        /// The publications its subscribe bindings play.
        specs: Vec<PublicationSpec>,
        /// The core of each selection its publish bindings compete in.
        selections: Vec<(String, u16)>,
    },
    /// Start an active-speaker selection on this core; answered with [`CoreEvent::Done`].
    SelectionCreate {
        /// Echoed in the answer.
        token: u64,
        /// The selection.
        selection: String,
        /// Its slot streams.
        slots: Vec<String>,
    },
    /// End a selection; answered with [`CoreEvent::Done`].
    SelectionClose {
        /// Echoed in the answer.
        token: u64,
        /// The selection.
        selection: String,
    },
    /// End one binding of a peer; answered with [`CoreEvent::Unbound`] (or
    /// [`CoreEvent::Closed`] when that was the peer's last and it closes when empty).
    Unbind {
        /// Echoed in the answer.
        token: Option<u64>,
        /// The peer.
        peer: String,
        /// The publication or subscription.
        id: String,
        /// Why, for the event.
        reason: String,
    },
    /// Pause or resume a publication homed here; answered with [`CoreEvent::Done`].
    PublicationControl {
        /// Echoed in the answer.
        token: u64,
        /// The publication.
        publication: String,
        /// New audio state.
        audio: Option<bool>,
        /// New video state.
        video: Option<bool>,
    },
    /// Change a subscription's layer limits; answered with [`CoreEvent::Done`].
    SubscriptionUpdate {
        /// Echoed in the answer.
        token: u64,
        /// The subscription.
        subscription: String,
        /// The new limits.
        cap: SubscriptionCap,
    },
    /// How a subscription is doing; answered with [`CoreEvent::State`].
    SubscriptionQuery {
        /// Echoed in the answer.
        token: u64,
        /// The subscription.
        subscription: String,
    },
    /// Pause or resume a subscription on this core; answered with [`CoreEvent::Done`].
    SubscriptionControl {
        /// Echoed in the answer.
        token: u64,
        /// The subscription.
        subscription: String,
        /// New audio state.
        audio: Option<bool>,
        /// New video state.
        video: Option<bool>,
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
    /// The answer to [`Command::CreatePeer`] and [`Command::Offer`]: the answer SDP, and the
    /// publications the offer started.
    Created {
        /// The command's token.
        token: u64,
        /// The answer and the new publications, or why not.
        result: Result<(PeerCreated, Vec<PublicationSpec>), RpcError>,
    },
    /// The answer to a control command.
    Done {
        /// The command's token.
        token: u64,
        /// Whether it worked.
        result: Result<(), RpcError>,
    },
    /// The answer to [`Command::SubscriptionQuery`].
    State {
        /// The command's token.
        token: u64,
        /// The subscription's state, or why not.
        result: Result<SubscriptionState, RpcError>,
    },
    /// A slot of a selection changed.
    SelectionChanged {
        /// The selection.
        selection: Arc<str>,
        /// The slot stream.
        slot: Arc<str>,
        /// The publication it carries now.
        input: Option<Arc<str>>,
        /// Whether that is the loudest seated speaker.
        major: bool,
    },
    /// A peer's ICE and DTLS are up.
    Connected {
        /// The peer.
        peer: String,
    },
    /// A binding ended and its peer stays.
    Unbound {
        /// The [`Command::Unbind`] token, when asked for.
        token: Option<u64>,
        /// The peer.
        peer: String,
        /// The publication or subscription.
        id: Arc<str>,
        /// Whether it was a publication (its subscriptions elsewhere must end too).
        publication: bool,
        /// Why.
        reason: String,
    },
    /// A peer is gone (asked for, or on its own).
    Closed {
        /// The [`Command::ClosePeer`] or [`Command::Unbind`] token, when asked for.
        token: Option<u64>,
        /// The peer.
        peer: String,
        /// The publications that ended with it.
        publications: Vec<Arc<str>>,
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
    pub payload: Payload,
    /// When it arrived.
    pub arrival: Instant,
    /// Whether the publication's video is simulcast (then each subscription picks a layer).
    pub simulcast: bool,
    /// The simulcast layer the packet belongs to (0 without simulcast).
    pub layer: u8,
    /// The packet starts a keyframe (video only).
    pub keyframe: bool,
    /// The publication's video layers as measured at its publisher's core.
    pub layers: Layers,
    /// A VP8 packet's payload descriptor (its picture numbers are rewritten per
    /// subscription).
    pub vp8: Option<str0m::rtp::Vp8Descriptor>,
    /// Audio: the active-speaker selection it competes in.
    pub selection: Option<Arc<str>>,
    /// A scalable (SVC) video packet's layers.
    pub svc: Option<SvcPacket>,
    /// The scalable publication's layers seen so far.
    pub structure: Structure,
    /// A RED packet's primary block (the payload is the whole RED packet), for
    /// subscribers that did not negotiate RED.
    pub red: Option<Arc<[u8]>>,
    /// The dependency descriptor as it came (not for simulcast: each layer has its
    /// own), for subscriptions that negotiated it.
    pub dependency: Option<Arc<peer::DependencyBytes>>,
    /// A publisher's FEC packet: no subscription gets it, each closes the gap it leaves.
    pub fec: bool,
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
        /// Of this simulcast layer only (`None`: every layer).
        layer: Option<u8>,
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
    /// Its peer's packets are paced (bandwidth adaptation: str0m spreads them at the
    /// estimate), so the driver sends it alone rather than in a GSO burst.
    pub paced: bool,
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

/// A payload type, and whether the packet is RED wrapping it.
type PtRed = (Pt, bool);

struct OutTrack {
    kind: MediaKind,
    mid: Mid,
    ssrc: Ssrc,
    rewriter: Rewriter,
    /// (incoming codec's payload type, whether RED) → (the subscriber's payload type,
    /// whether it gets RED), or `None` when it has no such codec.
    pt_map: Vec<(PtRed, Option<PtRed>)>,
    /// The layer choice (used when the publication is simulcast).
    selector: LayerSelector,
    /// VP8 picture numbering continued across sources.
    picture_ids: crate::packet::vp8::PictureIds,
    /// What of a scalable stream it forwards.
    svc: SvcFilter,
    /// When it last asked for the keyframe its scalable stream waits for.
    svc_keyframe_asked: Option<Instant>,
    /// Its section negotiated RED (RED audio goes through as it came).
    red: bool,
    /// Its section negotiated the dependency descriptor (it goes through as it came).
    dependency: bool,
    /// Its video section negotiated RED and ULPFEC: its video goes inside RED, protected
    /// while its path loses packets.
    fec: Option<Box<OutFec>>,
}

/// A subscription's video protection with ULPFEC (see [`crate::protection`]).
struct OutFec {
    /// The subscriber's video RED payload type …
    red: Pt,
    /// … and its ULPFEC one.
    ulpfec: Pt,
    protection: crate::protection::Protection,
    /// The last receiver report read (its extended highest sequence number).
    report: Option<u64>,
    /// When to look for a new receiver report.
    next_check: Instant,
    /// The newest outgoing sequence number written: a late packet (a repair landing in
    /// its slot) goes unprotected, outside the FEC groups.
    newest: Option<u64>,
    /// The FEC writes' payload (str0m builds theirs as they are sent): empty, shared, so
    /// that an FEC packet allocates nothing.
    empty: Arc<[u8]>,
}

/// How often a protected subscription looks for a new receiver report (browsers send
/// one about every second).
const REPORT_CHECK: Duration = Duration::from_millis(250);

/// Sections of a peer on which the client publishes one stream.
struct PubBinding {
    publication: Arc<str>,
    media: Vec<(Mid, MediaKind)>,
    video_ssrcs: Vec<Ssrc>,
    /// The simulcast `rid`s of its video, in the offer's order (empty: one layer).
    rids: Vec<Rid>,
    /// The layer of each video SSRC seen.
    layer_of: Vec<(Ssrc, u8)>,
    /// Its video layers (or scalable operating points), measured.
    meter: LayerMeter,
    /// A scalable video's layers seen so far.
    structure: Structure,
    /// The dependency descriptors' template structure in force (AV1 SVC).
    dependency: Option<crate::packet::dependency::Structure>,
    /// FEC recovery of each video SSRC that came in video RED.
    fec: Vec<(Ssrc, crate::packet::ulpfec::Receiver)>,
}

/// Sections of a peer on which the client plays one stream.
struct SubBinding {
    subscription: Arc<str>,
    publication: Arc<str>,
    outs: Vec<OutTrack>,
    audio_on: bool,
    video_on: bool,
    /// Order of creation on this core (later ones are shed first).
    created: u64,
    /// Video stopped by load shedding (audio still flows).
    shed: bool,
    /// The publication's simulcast `rid`s (empty: one layer), for caps naming a rid.
    rids: Vec<Rid>,
}

/// What a peer's stats last said of one mid (see `Peer::nacks_seen`).
#[derive(Debug, Default, Clone, Copy)]
struct Seen {
    /// NACKs received from the peer for what it receives on the mid, in all.
    nacks_out: u64,
    /// NACKs sent to the peer for what it sends on the mid, in all.
    nacks_in: u64,
    /// The highest sequence number of the newest receiver report.
    report: Option<u64>,
}

struct Peer {
    id: String,
    rtc: Rtc,
    ufrag: String,
    addrs: Vec<(SocketAddr, SocketAddr)>,
    next_timeout: Instant,
    created: Instant,
    connected: bool,
    close_when_empty: bool,
    pubs: Vec<PubBinding>,
    subs: Vec<SubBinding>,
    /// Cumulative NACK counts per mid, to turn str0m's totals into deltas, and the
    /// newest receiver report read (its highest sequence number: the stats repeat a
    /// report until the next one comes).
    nacks_seen: HashMap<Mid, Seen>,
    /// Bandwidth adaptation is on (str0m's estimator runs for this peer).
    bwe: bool,
    /// The latest bandwidth estimate towards the client, bits per second.
    estimate: Option<u64>,
    /// When to tell the estimator again what the peer would like to receive.
    next_bwe_update: Instant,
    /// What it was told last it would like to receive, bits per second.
    desired: u64,
    /// What it was told last to pad the path up to, bits per second.
    minimum: u64,
    /// Whether to pad now, or rest a path that could not carry its next layers.
    padding: crate::padding::Padding,
    /// When it may next be asked to probe, and whether the last round raised the rate.
    next_probe: Instant,
    probe_round: bool,
}

impl Peer {
    fn owns(&self, mid: &str) -> bool {
        self.pubs
            .iter()
            .flat_map(|b| &b.media)
            .any(|(m, _)| m.to_string() == mid)
            || self
                .subs
                .iter()
                .flat_map(|b| &b.outs)
                .any(|o| o.mid.to_string() == mid)
    }
}

struct Publication {
    /// The publisher's peer (0 for a selection's slot, which has none).
    peer: PeerKey,
    /// The active-speaker selection its audio competes in, and that selection's core.
    selection: Option<(Arc<str>, u16)>,
    remote_cores: Vec<u16>,
    /// Keyframe requests, merged per simulcast layer (one without simulcast).
    limiters: Vec<KeyframeLimiter>,
    audio_on: bool,
    video_on: bool,
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

/// A core's settings, from the `[dataplane]` configuration.
#[derive(Debug, Clone, Copy)]
pub struct CoreSettings {
    /// The most peers it takes.
    pub max_peers: usize,
    /// Tests only: the share of incoming media dropped on purpose, in percent.
    pub test_loss_percent: f64,
    /// How long a video subscription keeps what it sent, to answer NACKs with RTX (zero:
    /// NACKs go unanswered; keyframe requests still work).
    pub retransmit_history: Duration,
}

impl Default for CoreSettings {
    fn default() -> Self {
        CoreSettings {
            max_peers: 1000,
            test_loss_percent: 0.0,
            retransmit_history: peer::RTX_HISTORY,
        }
    }
}

/// One core's peers and routes.
pub struct Core {
    index: u16,
    candidates: Vec<Candidate>,
    cert: DtlsCert,
    max_peers: usize,
    retransmit_history: Duration,
    next_key: PeerKey,
    /// Boxed: a `Peer` holds its str0m `Rtc` inline (kilobytes), and a map of them keeps
    /// up to half its slots empty.
    peers: HashMap<PeerKey, Box<Peer>>,
    ids: HashMap<String, PeerKey>,
    by_addr: HashMap<(SocketAddr, SocketAddr), PeerKey>,
    by_ufrag: HashMap<String, PeerKey>,
    /// Publications whose publisher is on this core.
    publications: HashMap<Arc<str>, Publication>,
    /// Local subscriptions by the publication they play (homed here or elsewhere).
    subscribers: HashMap<Arc<str>, Vec<(PeerKey, Arc<str>)>>,
    /// Local subscriptions by id.
    subscriptions: HashMap<Arc<str>, PeerKey>,
    /// The home core of each publication played here.
    homes: HashMap<Arc<str>, u16>,
    pending: VecDeque<(PeerKey, Event)>,
    out: Outbox,
    metrics: Arc<CoreMetrics>,
    loss: LossInjector,
    shedder: Shedder,
    next_binding: u64,
    /// Work forwarding found for the whole core (kept between inputs for its capacity).
    deferred: Vec<Deferred>,
    /// Active-speaker selections ranked on this core.
    selections: HashMap<Arc<str>, Selection>,
    /// The shared packets handed to subscriptions and cores, their allocations reused.
    packets: Recycler<MediaPacket>,
}

/// The most shared packets a core keeps for reuse (a packet is held only while it is
/// fanned out and queued to other cores).
const RECYCLED_PACKETS: usize = 1024;

/// How many of them past its cursor the core looks at for a free one before it allocates.
const RECYCLE_PROBES: usize = 4;

/// An active-speaker selection: its slot streams and who fills them.
struct Selection {
    slots: Vec<Arc<str>>,
    speakers: crate::speakers::ActiveSpeakers,
}

/// A new binding, resolved against the offer.
struct Assigned<'a> {
    binding: &'a Binding,
    mids: Vec<String>,
}

impl Core {
    /// A core. `sockets` are its local socket addresses with the address to announce for
    /// each (the `replaced_ip_address` behind NAT, or the address itself).
    pub fn new(
        index: u16,
        sockets: &[(SocketAddr, SocketAddr)],
        cert: DtlsCert,
        settings: CoreSettings,
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
            max_peers: settings.max_peers,
            retransmit_history: settings.retransmit_history,
            next_key: 1,
            peers: HashMap::new(),
            ids: HashMap::new(),
            by_addr: HashMap::new(),
            by_ufrag: HashMap::new(),
            publications: HashMap::new(),
            subscribers: HashMap::new(),
            subscriptions: HashMap::new(),
            homes: HashMap::new(),
            pending: VecDeque::new(),
            out: Outbox::default(),
            metrics,
            shedder: Shedder::default(),
            next_binding: 0,
            deferred: Vec::new(),
            selections: HashMap::new(),
            packets: Recycler::new(RECYCLED_PACKETS, RECYCLE_PROBES),
            loss: LossInjector {
                percent: settings.test_loss_percent,
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

    /// Takes what the core wants done, as owned copies; the outbox's own buffers stay with
    /// the core and keep their capacity (the driver uses [`Core::outbox_mut`] instead and
    /// copies nothing).
    pub fn take_outbox(&mut self) -> Outbox {
        Outbox {
            transmits: self.out.transmits.drain(..).collect(),
            to_cores: self.out.to_cores.drain(..).collect(),
            events: self.out.events.drain(..).collect(),
        }
    }

    /// What the core wants done, to be emptied in place (the driver does, so that the
    /// outbox's buffers keep their capacity and steady forwarding allocates none).
    pub fn outbox_mut(&mut self) -> &mut Outbox {
        &mut self.out
    }

    /// The earliest time the core needs [`Core::handle_timeout`].
    pub fn next_timeout(&self) -> Option<Instant> {
        let peers = self.peers.values().map(|p| {
            if p.connected {
                p.next_timeout
            } else {
                p.next_timeout.min(p.created + CONNECT_TIMEOUT)
            }
        });
        let limiters = self
            .publications
            .values()
            .flat_map(|p| p.limiters.iter().filter_map(|l| l.due()));
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
        if class == PacketClass::Rtp && !peer.pubs.is_empty() && self.loss.drop_next() {
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
        self.drain(key, now);
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
            self.drain(key, now);
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
        let mut due: Vec<(Arc<str>, u8)> = Vec::new();
        for (id, p) in self.publications.iter_mut() {
            for (layer, l) in p.limiters.iter_mut().enumerate() {
                if l.poll(now) {
                    due.push((id.clone(), layer as u8));
                }
            }
        }
        for (id, layer) in due {
            self.send_keyframe_request(&id, layer, now);
        }
        self.run_pending(now);
    }

    /// The management side asks.
    pub fn handle_command(&mut self, now: Instant, cmd: Command) {
        match cmd {
            Command::CreatePeer {
                token,
                req,
                specs,
                selections,
            } => {
                let result = self.create_peer(now, req, &specs, &selections);
                self.out.events.push(CoreEvent::Created { token, result });
            }
            Command::Offer {
                token,
                req,
                specs,
                selections,
            } => {
                let result = match self.ids.get(&req.peer).copied() {
                    Some(key) => {
                        self.negotiate(now, key, &req.offer_sdp, &req.bindings, &specs, &selections)
                    }
                    None => Err(RpcError::new(
                        ErrorCode::UnknownPeer,
                        format!("peer {} does not exist", req.peer),
                    )),
                };
                self.out.events.push(CoreEvent::Created { token, result });
            }
            Command::Unbind {
                token,
                peer,
                id,
                reason,
            } => match self.ids.get(&peer).copied() {
                Some(key) => self.unbind(key, &id, token, reason),
                None => self.out.events.push(CoreEvent::Closed {
                    token,
                    peer,
                    publications: Vec::new(),
                    reason: "unknown peer".into(),
                }),
            },
            Command::PublicationControl {
                token,
                publication,
                audio,
                video,
            } => {
                let result = match self.publications.get_mut(publication.as_str()) {
                    Some(p) => {
                        let resumed_video = video == Some(true) && !p.video_on;
                        p.audio_on = audio.unwrap_or(p.audio_on);
                        p.video_on = video.unwrap_or(p.video_on);
                        if resumed_video {
                            let id: Arc<str> = Arc::from(publication.as_str());
                            self.keyframe_wanted(&id, None, now);
                        }
                        Ok(())
                    }
                    None => Err(RpcError::new(
                        ErrorCode::UnknownPublication,
                        format!("publication {publication} is not on core {}", self.index),
                    )),
                };
                self.out.events.push(CoreEvent::Done { token, result });
            }
            Command::SubscriptionControl {
                token,
                subscription,
                audio,
                video,
            } => {
                let found = self
                    .subscriptions
                    .get(subscription.as_str())
                    .copied()
                    .and_then(|key| {
                        let peer = self.peers.get_mut(&key)?;
                        let b = peer
                            .subs
                            .iter_mut()
                            .find(|b| &*b.subscription == subscription.as_str())?;
                        let resumed_video = video == Some(true) && !b.video_on;
                        b.audio_on = audio.unwrap_or(b.audio_on);
                        b.video_on = video.unwrap_or(b.video_on);
                        Some((b.publication.clone(), resumed_video, b.video_layer()))
                    });
                let result = match found {
                    Some((publication, resumed_video, layer)) => {
                        if resumed_video {
                            self.keyframe_wanted(&publication, layer, now);
                        }
                        Ok(())
                    }
                    None => Err(RpcError::new(
                        ErrorCode::UnknownPeer,
                        format!("subscription {subscription} is not on core {}", self.index),
                    )),
                };
                self.out.events.push(CoreEvent::Done { token, result });
            }
            Command::SelectionCreate {
                token,
                selection,
                slots,
            } => {
                self.create_selection(&selection, &slots);
                self.out.events.push(CoreEvent::Done {
                    token,
                    result: Ok(()),
                });
            }
            Command::SelectionClose { token, selection } => {
                if let Some(sel) = self.selections.remove(selection.as_str()) {
                    for slot in &sel.slots {
                        self.publications.remove(slot);
                    }
                }
                self.out.events.push(CoreEvent::Done {
                    token,
                    result: Ok(()),
                });
            }
            Command::SubscriptionUpdate {
                token,
                subscription,
                cap,
            } => {
                let result = self.update_subscription(now, &subscription, &cap);
                self.out.events.push(CoreEvent::Done { token, result });
            }
            Command::SubscriptionQuery {
                token,
                subscription,
            } => {
                let result = self.subscription_state(&subscription);
                self.out.events.push(CoreEvent::State { token, result });
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
                    publications: Vec::new(),
                    reason: "unknown peer".into(),
                }),
            },
            Command::CloseAll => {
                let keys: Vec<PeerKey> = self.peers.keys().copied().collect();
                for key in keys {
                    self.close(key, None, "control disconnected".into());
                }
                for (_, sel) in self.selections.drain() {
                    for slot in &sel.slots {
                        self.publications.remove(slot);
                    }
                }
            }
        }
        self.run_pending(now);
    }

    /// Another core hands something over.
    pub fn handle_core_msg(&mut self, now: Instant, msg: CoreMsg) {
        match msg {
            CoreMsg::Media(pkt) => {
                self.fan_out(&pkt, now);
                if pkt.selection.is_some() {
                    self.select_audio(&pkt, now);
                }
            }
            CoreMsg::KeyframeRequest { publication, layer } => {
                self.keyframe_wanted(&publication, layer, now)
            }
            CoreMsg::Interest {
                publication,
                core,
                on,
            } => {
                if let Some(p) = self.publications.get_mut(&publication) {
                    p.remote_cores.retain(|c| *c != core);
                    if on {
                        p.remote_cores.push(core);
                        self.keyframe_wanted(&publication, None, now);
                    }
                }
            }
        }
        self.run_pending(now);
    }

    /// Polls a peer until it has nothing more to say; events are queued for
    /// [`Core::run_pending`], so that handling one never nests inside another's drain.
    fn drain(&mut self, key: PeerKey, now: Instant) {
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        let mut nudged = false;
        loop {
            match peer.rtc.poll_output() {
                Ok(Output::Transmit(t)) => {
                    self.out.transmits.push(Datagram {
                        from: t.source,
                        to: t.destination,
                        data: t.contents.into(),
                        paced: peer.bwe,
                    });
                }
                Ok(Output::Timeout(t)) => {
                    // str0m sends written media only after its pacer takes a fresh look
                    // at the queues, at its next timeout. When that is due already (it is,
                    // right after a write), take it now rather than at the next timer
                    // tick, which could be 20 ms away.
                    if t <= now && !nudged {
                        nudged = true;
                        if peer.rtc.handle_input(Input::Timeout(now)).is_ok() {
                            continue;
                        }
                    }
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
                // A new subscriber needs a keyframe to start decoding (a simulcast one asks
                // for its layer's when its first packets arrive).
                let wanted: Vec<Arc<str>> =
                    peer.subs.iter().map(|b| b.publication.clone()).collect();
                for publication in wanted {
                    self.keyframe_wanted(&publication, None, now);
                }
            }
            Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                self.close(key, None, "ICE disconnected".into());
            }
            Event::RtpPacket(pkt) => self.forward(key, pkt),
            Event::KeyframeRequest(req) => {
                CoreMetrics::add(&self.metrics.keyframe_requests_received, 1);
                let wanted = self
                    .peers
                    .get(&key)
                    .and_then(|p| {
                        p.subs
                            .iter()
                            .find(|b| b.outs.iter().any(|o| o.mid == req.mid))
                    })
                    .map(|b| (b.publication.clone(), b.video_layer()));
                if let Some((publication, layer)) = wanted {
                    self.keyframe_wanted(&publication, layer, now);
                }
            }
            Event::EgressBitrateEstimate(kind) => {
                let bps = match kind {
                    str0m::bwe::BweKind::Twcc { estimate, .. } => estimate.as_u64(),
                    str0m::bwe::BweKind::Remb { estimate, .. } => estimate.as_u64(),
                    _ => return,
                };
                tracing::trace!(core = self.index, peer = key, bps, "bandwidth estimate");
                self.on_estimate(key, bps, now);
            }
            Event::MediaEgressStats(s) => {
                self.count_nacks(key, s.mid, s.nacks, true);
                let report = s.remote.as_ref().map(|r| *r.maximum_sequence_number);
                let fresh = self.peers.get_mut(&key).is_some_and(|p| {
                    let seen = p.nacks_seen.entry(s.mid).or_default();
                    let fresh = report.is_some() && seen.report != report;
                    seen.report = report;
                    fresh
                });
                if let Some(rtt) = s.rtt.filter(|_| fresh) {
                    self.on_round_trip(key, rtt, now);
                }
            }
            Event::MediaIngressStats(s) => self.count_nacks(key, s.mid, s.nacks, false),
            _ => {}
        }
    }

    fn count_nacks(&mut self, key: PeerKey, mid: Mid, total: u64, egress: bool) {
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        let seen = peer.nacks_seen.entry(mid).or_default();
        let last = if egress {
            &mut seen.nacks_out
        } else {
            &mut seen.nacks_in
        };
        let delta = total.saturating_sub(*last);
        *last = total;
        let counter = if egress {
            &self.metrics.nacks_received
        } else {
            &self.metrics.nacks_sent
        };
        CoreMetrics::add(counter, delta);
    }
}
