//! The RPC between `switchyard-control` and `switchyard-mixer`, owned by the mixer side
//! (as the dataplane owns `switchyard-dataplane-api`), framed as all of control's worker
//! RPCs are ([`switchyard_rpc`]: length-prefixed JSON over one TCP connection from
//! control to `mixer.rpc_address`).
//!
//! **What a mixer does.** For each *view* of a room (OWT's mixed stream: an audio mix and
//! a video composite) the mixer runs WebRTC clients towards the dataplane, like any
//! participant: one publishes the mixed stream, one receives the view's inputs as
//! subscriptions ([`Client`]). The mixer offers, control carries the offer to the dataplane
//! (`PEER_CREATE`, `PEER_OFFER` with the bindings the mixer's sections carry) and the
//! dataplane's answer back (`VIEW_ANSWER`). So the mixer is just another peer to the
//! dataplane; nothing in the dataplane knows about mixing.
//!
//! **Requests** are named entity-verb: `MIXER_INFO` (the handshake), `VIEW_CREATE`,
//! `VIEW_ANSWER`, `VIEW_INPUT_ADD`, `VIEW_INPUT_REMOVE`, `VIEW_LISTENER_ADD`,
//! `VIEW_LISTENER_UPDATE`, `VIEW_LISTENER_REMOVE`, `VIEW_UPDATE`, `VIEW_CLOSE`, `PING`. Each is answered with exactly one [`Response`]. **Events**: a view failed
//! (`VIEW_CLOSED`), its layout changed (`VIEW_LAYOUT`: which input is in which region),
//! its loudest input changed (`VIEW_ACTIVE_INPUT`).
//!
//! **Liveness** as with the dataplane: control pings every second; the mixer closes
//! every view when control's connection drops (views belong to control).

use serde::{Deserialize, Serialize};

/// The protocol version; control refuses a mixer that speaks another.
pub const PROTOCOL_VERSION: u32 = 1;

/// What travels on the connection.
pub type Frame = switchyard_rpc::Frame<Request, Response, Event>;

pub use switchyard_rpc::{encode, Decoder, FrameError, MAX_FRAME};

/// A request from control.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Request {
    /// Describe the mixer: version, views.
    MixerInfo,
    /// Start a view; answered with an [`Offer`] for its output (the mixed stream).
    ViewCreate {
        /// The view.
        view: ViewSpec,
    },
    /// The dataplane's answer to one of the view's offers.
    ViewAnswer {
        /// The view's id.
        view: String,
        /// Which of its clients the answer is for.
        client: Client,
        /// The SDP answer.
        sdp: String,
    },
    /// Mix a stream into a view; answered with an [`Offer`] that adds its sections.
    ViewInputAdd {
        /// The view's id.
        view: String,
        /// The input.
        input: Input,
    },
    /// Publish the audio one listener hears: the view's mix without the inputs in
    /// `excluded` (the listener's own, so that no one hears themselves); answered with
    /// an [`Offer`] of the output client that adds the section carrying it.
    ViewListenerAdd {
        /// The view's id.
        view: String,
        /// Who listens (control's key: a participant, or a user).
        listener: String,
        /// The input streams left out of what it hears.
        excluded: Vec<String>,
    },
    /// A listener's own inputs changed (it published or stopped).
    ViewListenerUpdate {
        /// The view's id.
        view: String,
        /// The listener.
        listener: String,
        /// The input streams left out of what it hears.
        excluded: Vec<String>,
    },
    /// Stop a listener's audio (its section stays in the SDP, silent).
    ViewListenerRemove {
        /// The view's id.
        view: String,
        /// The listener.
        listener: String,
    },
    /// Stop mixing a stream (control ends its subscription on the dataplane).
    ViewInputRemove {
        /// The view's id.
        view: String,
        /// The input's stream id.
        stream: String,
    },
    /// New settings for a view (layout, regions, colours); its output format stays.
    ViewUpdate {
        /// The view as it is now.
        view: ViewSpec,
    },
    /// End a view.
    ViewClose {
        /// The view's id.
        view: String,
    },
    /// Liveness check.
    Ping,
}

/// A view: one mixed stream of a room.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ViewSpec {
    /// The view's id (control uses the mixed stream's id).
    pub id: String,
    /// The room.
    pub room: String,
    /// The view's label in the room's configuration.
    pub label: String,
    /// The audio mix, if the view has audio.
    pub audio: Option<AudioSpec>,
    /// The video composite, if the view has video.
    pub video: Option<VideoSpec>,
}

/// A view's audio mix.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AudioSpec {
    /// The codec of the mix (`opus`).
    pub codec: String,
    /// Voice activity detection: report the loudest input, and with
    /// `keep_active_input_primary` show it in the primary region.
    pub vad: bool,
}

/// A view's video composite.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VideoSpec {
    /// The codec of the composite (`vp8` or `h264`).
    pub codec: String,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Frames per second.
    pub framerate: u32,
    /// Target bitrate, kbit/s.
    pub bitrate_kbps: u32,
    /// Seconds between keyframes.
    pub key_frame_interval: u32,
    /// The most inputs shown.
    pub max_input: u32,
    /// The background colour (r, g, b).
    pub bg_color: [u8; 3],
    /// How an input fills its region.
    pub fit: Fit,
    /// The active speaker's video takes the primary region.
    pub keep_active_input_primary: bool,
    /// Where inputs go.
    pub layout: LayoutSpec,
}

/// How an input fills its region.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Fit {
    /// Scale to fit, the rest in the background colour.
    #[default]
    Letterbox,
    /// Scale to fill, cut what overflows.
    Crop,
}

/// A view's layout: a base template, custom layouts, and regions pinned to inputs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct LayoutSpec {
    /// The base template.
    pub base: BaseTemplate,
    /// Custom layouts, each a list of regions (the one with the fewest regions that holds
    /// every input is used, before the base template's).
    pub custom: Vec<CustomLayout>,
    /// Inputs placed in given regions by id (`PATCH /info/layout`), the others after.
    pub pinned: Vec<(String, String)>,
}

/// OWT's base layout templates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum BaseTemplate {
    /// Equal tiles in the smallest square grid that holds every input.
    #[default]
    Fluid,
    /// One large primary region, small ones on its right and below.
    Lecture,
    /// Custom layouts only.
    Void,
}

/// A custom layout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CustomLayout {
    /// The primary region's id.
    pub primary: Option<String>,
    /// The regions, in the order inputs fill them.
    pub regions: Vec<Region>,
}

/// A rectangle of a view, in fractions of its width and height.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Region {
    /// The region's id.
    pub id: String,
    /// Left edge.
    pub left: f64,
    /// Top edge.
    pub top: f64,
    /// Width.
    pub width: f64,
    /// Height.
    pub height: f64,
}

/// A stream mixed into a view.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Input {
    /// Its stream id.
    pub stream: String,
    /// Whether its audio is mixed.
    pub audio: bool,
    /// Whether its video is composited.
    pub video: bool,
}

/// An answer to a request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Response {
    /// To `MIXER_INFO`.
    MixerInfo(MixerInfo),
    /// An SDP offer for the dataplane, and the sections it adds.
    Offer(Offer),
    /// Done.
    Ok,
    /// It failed.
    Error(RpcError),
}

/// The mixer's description.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MixerInfo {
    /// [`PROTOCOL_VERSION`] of the mixer.
    pub protocol: u32,
    /// Its process id.
    pub pid: u32,
    /// The views it runs.
    pub views: usize,
}

/// A view's two WebRTC clients towards the dataplane (two peers there: the output's
/// codec list must be the composite's alone, the inputs' every codec the mixer decodes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Client {
    /// Publishes the mixed stream.
    Output,
    /// Receives the inputs.
    Input,
}

/// An offer from a view's WebRTC client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Offer {
    /// The client offering.
    pub client: Client,
    /// Its first offer (control creates its peer on the dataplane), or a renegotiation.
    pub first: bool,
    /// The SDP.
    pub sdp: String,
    /// The media sections (mids) it adds, and what they carry.
    pub sections: Vec<Section>,
}

/// A media section of a view's client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Section {
    /// Its mid.
    pub mid: String,
    /// `audio` or `video`.
    pub kind: String,
    /// The input stream it receives (input client), or the listener whose audio it
    /// carries (output client); `None` for the view's mixed stream.
    pub input: Option<String>,
}

/// Why a request failed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct RpcError {
    /// What went wrong, for a person.
    pub message: String,
}

impl RpcError {
    /// An error with `message`.
    pub fn new(message: impl Into<String>) -> Self {
        RpcError {
            message: message.into(),
        }
    }
}

/// Something the mixer reports on its own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Event {
    /// A view ended on its own (its connection to the dataplane failed).
    ViewClosed {
        /// The view.
        view: String,
        /// Why.
        reason: String,
    },
    /// Which input is in which region now.
    ViewLayout {
        /// The view.
        view: String,
        /// (input stream, its region) for every input shown.
        regions: Vec<(String, Region)>,
    },
    /// The loudest input of a view with `vad` changed.
    ViewActiveInput {
        /// The view.
        view: String,
        /// The input's stream.
        stream: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_named_entity_verb_and_round_trip() {
        let f = Frame::Request {
            id: 3,
            body: Request::ViewInputAdd {
                view: "r-common".into(),
                input: Input {
                    stream: "s1".into(),
                    audio: true,
                    video: false,
                },
            },
        };
        let bytes = encode(&f).unwrap();
        let json: serde_json::Value = serde_json::from_slice(&bytes[4..]).unwrap();
        assert_eq!(json["request"]["body"]["type"], "VIEW_INPUT_ADD");
        let mut d = Decoder::new();
        d.push(&bytes);
        assert_eq!(d.next_frame::<Frame>().unwrap(), Some(f));
    }
}
