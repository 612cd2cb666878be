//! The RPC between `switchyard-control` and `switchyard-dataplane`, owned by the
//! dataplane side (as mediasoup's worker owns its channel messages).
//!
//! **Transport.** One TCP connection from control to the dataplane's
//! `dataplane.rpc_address`, carrying length-prefixed JSON [`Frame`]s (the framing all of
//! control's worker RPCs share: [`switchyard_rpc`]).
//!
//! **Messages.** Control sends [`Request`]s, each with an id; the dataplane answers each
//! with exactly one [`Response`] carrying the same id, in any order. The dataplane also
//! sends [`Event`]s on its own (a peer connected, a peer went away). Requests are named
//! after their entity and verb (`PEER_CREATE`, `PEER_CLOSE`, `DATAPLANE_INFO`).
//!
//! **Liveness.** Control sends `PING` every second and declares the dataplane gone when
//! nothing arrives for three. The dataplane closes every peer when control's connection
//! drops: sessions belong to control, and a restarted control knows none of them.

use serde::{Deserialize, Serialize};
use std::net::SocketAddr;

/// The protocol version; control refuses a dataplane that speaks another.
pub const PROTOCOL_VERSION: u32 = 1;

/// A request from control.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Request {
    /// Describe the dataplane: version, cores, their ports and loads.
    DataplaneInfo,
    /// Create a WebRTC peer (a transport: one client connection) from a client's SDP offer,
    /// with what its media sections carry, and answer it.
    PeerCreate(PeerCreate),
    /// A new offer on an existing peer (the client added or stopped media), with the
    /// bindings it adds; answered like `PEER_CREATE`.
    PeerOffer(PeerOffer),
    /// Stop a publication or subscription of a peer (the peer stays).
    PeerUnbind {
        /// The peer.
        peer: String,
        /// The publication or subscription id.
        id: String,
    },
    /// Close a peer (its publications end, and every subscription to them).
    PeerClose {
        /// The peer.
        peer: String,
    },
    /// Pause or resume a publication's audio or video at the source (every subscriber).
    PublicationControl {
        /// The publication.
        publication: String,
        /// New audio state (`true`: flowing), if it changes.
        audio: Option<bool>,
        /// New video state, if it changes.
        video: Option<bool>,
    },
    /// Change what one subscription may receive of a simulcast publication (a layer, a
    /// highest bitrate or picture size); its layer follows from the next keyframe.
    SubscriptionUpdate {
        /// The subscription.
        subscription: String,
        /// The new limits (all `None`: none).
        cap: SubscriptionCap,
    },
    /// How a subscription is doing: its bandwidth estimate and the layer it receives;
    /// answered with `SUBSCRIPTION_STATE`.
    SubscriptionQuery {
        /// The subscription.
        subscription: String,
    },
    /// Pause or resume one subscription's audio or video.
    SubscriptionControl {
        /// The subscription.
        subscription: String,
        /// New audio state, if it changes.
        audio: Option<bool>,
        /// New video state, if it changes.
        video: Option<bool>,
    },
    /// Start a room's active-speaker selection (`selectActiveAudio`): audio-only streams
    /// `slots` (K of them) on `core`, each carrying the audio of one of the loudest
    /// publications bound to `selection`. Idempotent.
    SelectionCreate {
        /// The selection's id (control uses the room's).
        selection: String,
        /// The slot streams' ids, subscribable like publications.
        slots: Vec<String>,
        /// The core that ranks the speakers.
        core: u16,
    },
    /// End a selection; its slot streams' subscriptions end.
    SelectionClose {
        /// The selection.
        selection: String,
    },
    /// Liveness check.
    Ping,
}

/// What some media sections of a peer carry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Binding {
    /// The client publishes a stream into the room.
    Publish {
        /// The publication's stream id.
        publication: String,
        /// The sections (by mid) carrying it; `None`: every audio and video section.
        mids: Option<Vec<String>>,
        /// Whether audio may be published.
        audio: bool,
        /// Whether video may be published.
        video: bool,
        /// The active-speaker selection its audio competes in (`SELECTION_CREATE`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        selection: Option<String>,
    },
    /// The client plays a publication.
    Subscribe {
        /// The subscription's id.
        subscription: String,
        /// The publication's stream id.
        publication: String,
        /// The sections (by mid) to send it on; `None`: every audio and video section.
        mids: Option<Vec<String>>,
        /// Whether audio is wanted (and permitted).
        audio: bool,
        /// Whether video is wanted (and permitted).
        video: bool,
        /// What the subscriber asked for of a simulcast publication.
        #[serde(default, skip_serializing_if = "SubscriptionCap::is_none")]
        cap: SubscriptionCap,
    },
}

/// Limits a subscriber puts on the layer of a simulcast publication it receives. The
/// lowest layer is always allowed, so that no limit leaves it without video.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscriptionCap {
    /// No layer costlier than this `rid`'s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rid: Option<String>,
    /// No layer above this bitrate, bits per second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_bitrate_bps: Option<u64>,
    /// No layer wider than this, in pixels (where the layer's size is known).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_width: Option<u16>,
    /// No layer taller than this, in pixels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_height: Option<u16>,
}

impl SubscriptionCap {
    /// Whether it limits nothing.
    pub fn is_none(&self) -> bool {
        *self == SubscriptionCap::default()
    }
}

/// One layer of a simulcast publication, as a subscription sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerState {
    /// Its `rid`.
    pub rid: String,
    /// Its measured bitrate, bits per second (0 until measured).
    pub bitrate_bps: u64,
    /// The picture size its keyframes announce, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<(u16, u16)>,
    /// Whether it flows now.
    pub active: bool,
}

/// `SUBSCRIPTION_STATE`: the answer to `SUBSCRIPTION_QUERY`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscriptionState {
    /// The subscription.
    pub subscription: String,
    /// The bandwidth estimate of its transport, bits per second (`None`: bandwidth
    /// adaptation is off or no estimate yet).
    pub estimated_bitrate_bps: Option<u64>,
    /// The `rid` of the layer it receives (`None`: not simulcast, or no picture yet).
    pub layer: Option<String>,
    /// The publication's layers (empty when not simulcast).
    pub layers: Vec<LayerState>,
    /// Layer switches so far.
    pub layer_switches: u64,
}

impl Binding {
    /// The publication or subscription id.
    pub fn id(&self) -> &str {
        match self {
            Binding::Publish { publication, .. } => publication,
            Binding::Subscribe { subscription, .. } => subscription,
        }
    }
}

/// `PEER_CREATE`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeerCreate {
    /// The id control gives the peer.
    pub peer: String,
    /// The core to place it on (control keeps a room's peers together while the cores stay
    /// near balance).
    pub core: u16,
    /// The client's SDP offer.
    pub offer_sdp: String,
    /// What its sections carry.
    pub bindings: Vec<Binding>,
    /// Close the peer when its last binding ends (WHIP and WHEP sessions), rather than
    /// keeping the connection for later ones (a conference client's transport).
    pub close_when_empty: bool,
    /// Estimate the bandwidth towards the client (transport-wide congestion control, or
    /// the client's REMB) and fit simulcast layers to it: the room's
    /// `enableBandwidthAdaptation`.
    #[serde(default)]
    pub bandwidth_adaptation: bool,
}

/// `PEER_OFFER`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeerOffer {
    /// The peer.
    pub peer: String,
    /// The client's new SDP offer.
    pub offer_sdp: String,
    /// Bindings added with this offer (existing ones stay).
    pub bindings: Vec<Binding>,
}

/// One negotiated media track.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Track {
    /// `audio` or `video`.
    pub kind: MediaKind,
    /// The SDP mid.
    pub mid: String,
    /// The codec's name in OWT's spelling (`opus`, `vp8`, `h264`, …).
    pub codec: String,
    /// Clock rate in Hz.
    pub clock_rate: u32,
    /// Audio channels, where it applies.
    pub channels: Option<u8>,
    /// The simulcast layers' `rid`s of a published video track, in the offer's order
    /// (empty: one encoding).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rids: Vec<String>,
}

/// `audio` or `video`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MediaKind {
    /// Audio.
    Audio,
    /// Video.
    Video,
}

/// One core of the dataplane.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CoreInfo {
    /// Index of the core within the dataplane (0-based).
    pub core: u16,
    /// The CPU it is pinned to.
    pub cpu: usize,
    /// The addresses its media socket(s) listen on.
    pub ports: Vec<SocketAddr>,
    /// Peers placed on it now.
    pub peers: u32,
}

/// `DATAPLANE_INFO`'s answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataplaneInfo {
    /// [`PROTOCOL_VERSION`] of the dataplane.
    pub protocol: u32,
    /// The dataplane's version.
    pub version: String,
    /// Process id, to tell a restarted dataplane from the same one.
    pub pid: u32,
    /// The cores.
    pub cores: Vec<CoreInfo>,
    /// The most peers one core takes.
    pub max_peers_per_core: u32,
}

/// The tracks negotiated for one binding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BoundTracks {
    /// The publication or subscription id.
    pub id: String,
    /// Its tracks.
    pub tracks: Vec<Track>,
}

/// The answer to `PEER_CREATE` and `PEER_OFFER`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerCreated {
    /// The peer.
    pub peer: String,
    /// The core it is on.
    pub core: u16,
    /// The SDP answer for the client.
    pub answer_sdp: String,
    /// The tracks negotiated for each binding of the request.
    pub bound: Vec<BoundTracks>,
}

impl PeerCreated {
    /// The tracks of one binding.
    pub fn tracks(&self, id: &str) -> &[Track] {
        self.bound
            .iter()
            .find(|b| b.id == id)
            .map(|b| b.tracks.as_slice())
            .unwrap_or(&[])
    }
}

/// Why a request failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The SDP offer could not be parsed or accepted.
    BadSdp,
    /// The offer has nothing the role may send or receive.
    NoUsableMedia,
    /// The publication does not exist (or has no track of a kind asked for).
    UnknownPublication,
    /// The peer id is taken.
    PeerExists,
    /// The peer does not exist.
    UnknownPeer,
    /// The core is out of range or full.
    CoreUnavailable,
    /// The request is malformed.
    BadRequest,
    /// A bug or resource failure in the dataplane.
    Internal,
}

/// An error answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{code:?}: {message}")]
pub struct RpcError {
    /// The kind of failure.
    pub code: ErrorCode,
    /// What went wrong, fit for the client when `code` is `BadSdp` or `NoUsableMedia`.
    pub message: String,
}

impl RpcError {
    /// An error.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        RpcError {
            code,
            message: message.into(),
        }
    }
}

/// An answer to a request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Response {
    /// To `DATAPLANE_INFO`.
    DataplaneInfo(DataplaneInfo),
    /// To `PEER_CREATE` and `PEER_OFFER`.
    PeerCreated(PeerCreated),
    /// To `PEER_CLOSE`.
    PeerClosed,
    /// To `PEER_UNBIND`, `PUBLICATION_CONTROL`, `SUBSCRIPTION_CONTROL` and
    /// `SUBSCRIPTION_UPDATE`.
    Done,
    /// To `SUBSCRIPTION_QUERY`.
    SubscriptionState(SubscriptionState),
    /// To `PING`.
    Pong,
    /// Any request can fail.
    Error(RpcError),
}

/// Something the dataplane tells control on its own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Event {
    /// ICE and DTLS are up: media can flow.
    PeerConnected {
        /// The peer.
        peer: String,
    },
    /// The peer is gone (ICE timed out, DTLS closed, its publication ended, or it failed).
    PeerClosed {
        /// The peer.
        peer: String,
        /// Why, for logs and clients.
        reason: String,
    },
    /// A slot of an active-speaker selection carries another publication, or its
    /// speaker became the loudest (major) or stopped being it.
    SelectionChanged {
        /// The selection.
        selection: String,
        /// The slot stream.
        slot: String,
        /// The publication it carries now (`None`: nobody).
        input: Option<String>,
        /// Whether it carries the loudest seated speaker.
        major: bool,
    },
    /// A subscription ended without its peer closing (its publication ended).
    Unbound {
        /// The peer.
        peer: String,
        /// The subscription.
        id: String,
        /// Why.
        reason: String,
    },
}

/// What travels on the connection (see [`switchyard_rpc`]).
pub type Frame = switchyard_rpc::Frame<Request, Response, Event>;

pub use switchyard_rpc::{encode, Decoder, FrameError, MAX_FRAME};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_named_entity_verb() {
        let f = Frame::Request {
            id: 1,
            body: Request::PeerClose { peer: "p".into() },
        };
        let json = serde_json::to_value(&f).unwrap();
        assert_eq!(json["request"]["body"]["type"], "PEER_CLOSE");
        let json = serde_json::to_value(Request::DataplaneInfo).unwrap();
        assert_eq!(json["type"], "DATAPLANE_INFO");
        let create = Request::PeerCreate(PeerCreate {
            peer: "p".into(),
            core: 0,
            offer_sdp: "v=0".into(),
            bindings: vec![Binding::Subscribe {
                subscription: "u".into(),
                publication: "s".into(),
                mids: None,
                audio: true,
                video: false,
                cap: SubscriptionCap::default(),
            }],
            close_when_empty: true,
            bandwidth_adaptation: false,
        });
        let json = serde_json::to_value(&create).unwrap();
        assert_eq!(json["type"], "PEER_CREATE");
        assert_eq!(json["bindings"][0]["kind"], "subscribe");
        let json = serde_json::to_value(Request::PublicationControl {
            publication: "s".into(),
            audio: Some(false),
            video: None,
        })
        .unwrap();
        assert_eq!(json["type"], "PUBLICATION_CONTROL");
    }

    #[test]
    fn frames_survive_arbitrary_splits() {
        let frames = vec![
            Frame::Request {
                id: 7,
                body: Request::Ping,
            },
            Frame::Response {
                id: 7,
                body: Response::Pong,
            },
            Frame::Event {
                body: Event::PeerClosed {
                    peer: "x".into(),
                    reason: "ice timeout".into(),
                },
            },
            Frame::Response {
                id: 8,
                body: Response::Error(RpcError::new(ErrorCode::BadSdp, "no m-lines")),
            },
        ];
        let bytes: Vec<u8> = frames.iter().flat_map(|f| encode(f).unwrap()).collect();
        for chunk in [1, 3, 7, 64, bytes.len()] {
            let mut d = Decoder::new();
            let mut out = Vec::new();
            for c in bytes.chunks(chunk) {
                d.push(c);
                while let Some(f) = d.next_frame::<Frame>().unwrap() {
                    out.push(f);
                }
            }
            assert_eq!(out, frames, "chunk {chunk}");
        }
    }

    #[test]
    fn refuses_oversized_and_garbage_frames() {
        let mut d = Decoder::new();
        d.push(&(MAX_FRAME as u32 + 1).to_be_bytes());
        assert!(matches!(
            d.next_frame::<Frame>(),
            Err(FrameError::TooLarge(_))
        ));
        let mut d = Decoder::new();
        d.push(&3u32.to_be_bytes());
        d.push(b"{x}");
        assert!(matches!(d.next_frame::<Frame>(), Err(FrameError::Json(_))));
    }
}
