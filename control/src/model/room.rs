//! OWT's room configuration model, with OWT's defaults.
//!
//! A key left out of a request takes OWT's default (`roomModel.js` and `defaults.js` in
//! owt-server); an unknown key is refused, so a typo is reported rather than silently
//! dropped. [`validate`](super::validate) checks the values.

use super::media::{
    default_audio_in, default_audio_out, default_video_in, default_video_out, AudioCodec,
    AudioFormat, Resolution, VideoFormat,
};
use super::or_false::OrFalse;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A room as the API returns it: its id and its configuration.
#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
pub struct Room {
    /// The room id.
    #[serde(rename = "_id")]
    pub id: String,
    /// Everything else.
    #[serde(flatten)]
    pub config: RoomConfig,
}

/// OWT's `object(Room)` without its id.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct RoomConfig {
    /// The room's name (required).
    pub name: String,
    /// The most streams published at once; -1 means no limit.
    pub input_limit: i64,
    /// The most participants at once; -1 means no limit.
    pub participant_limit: i64,
    /// Forward only the loudest audio streams to each subscriber.
    pub select_active_audio: bool,
    /// Adapt each subscription to the subscriber's bandwidth.
    pub enable_bandwidth_adaptation: bool,
    /// The roles a token may carry, with their permissions.
    pub roles: Vec<Role>,
    /// Mixed streams; an empty list means no mixing.
    pub views: Vec<View>,
    /// The input formats accepted.
    pub media_in: MediaIn,
    /// The output formats offered.
    pub media_out: MediaOut,
    /// What may be transcoded for a subscriber.
    pub transcoding: Transcoding,
    /// Which notifications clients get.
    pub notifying: Notifying,
    /// SIP settings; absent when the room takes no SIP calls.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sip: Option<Sip>,
}

impl Default for RoomConfig {
    fn default() -> Self {
        RoomConfig {
            name: String::new(),
            input_limit: -1,
            participant_limit: -1,
            select_active_audio: false,
            enable_bandwidth_adaptation: false,
            roles: default_roles(),
            views: vec![View::default()],
            media_in: MediaIn::default(),
            media_out: MediaOut::default(),
            transcoding: Transcoding::default(),
            notifying: Notifying::default(),
            sip: None,
        }
    }
}

impl RoomConfig {
    /// The role named `name`.
    pub fn role(&self, name: &str) -> Option<&Role> {
        self.roles.iter().find(|r| r.role == name)
    }

    /// The view labelled `label`.
    pub fn view(&self, label: &str) -> Option<&View> {
        self.views.iter().find(|v| v.label == label)
    }
}

/// Audio and video flags.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema, Default)]
#[serde(default, deny_unknown_fields)]
pub struct AudioVideo {
    /// Audio allowed.
    pub audio: bool,
    /// Video allowed.
    pub video: bool,
}

impl AudioVideo {
    /// Both flags set to `b`.
    pub const fn both(b: bool) -> Self {
        AudioVideo { audio: b, video: b }
    }
}

/// OWT's `object(Role)`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Role {
    /// The role's name, as tokens carry it.
    pub role: String,
    /// What this role may publish.
    #[serde(default)]
    pub publish: AudioVideo,
    /// What this role may subscribe to.
    #[serde(default)]
    pub subscribe: AudioVideo,
}

/// OWT's default roles, plus `guest`.
///
/// OWT's `defaults.js` has presenter, viewer, audio_only_presenter, video_only_viewer and
/// sip. Earlier OWT releases also had `guest`; here it may subscribe to everything and
/// publish nothing, the safe choice for an unauthenticated visitor (give it more by
/// editing the room's roles).
pub fn default_roles() -> Vec<Role> {
    let r = |role: &str, pa, pv, sa, sv| Role {
        role: role.into(),
        publish: AudioVideo {
            audio: pa,
            video: pv,
        },
        subscribe: AudioVideo {
            audio: sa,
            video: sv,
        },
    };
    vec![
        r("presenter", true, true, true, true),
        r("viewer", false, false, true, true),
        r("audio_only_presenter", true, false, true, false),
        r("video_only_viewer", false, false, false, true),
        r("guest", false, false, true, true),
        r("sip", true, true, true, true),
    ]
}

/// OWT's `object(View)`: one mixed stream.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct View {
    /// The view's label; the mixed stream's id is derived from it.
    pub label: String,
    /// The mixed audio.
    pub audio: ViewAudio,
    /// The composited video, or `false` for an audio-only view.
    #[schema(value_type = Object, example = json!(false))]
    pub video: OrFalse<ViewVideo>,
}

impl Default for View {
    fn default() -> Self {
        View {
            label: "common".into(),
            audio: ViewAudio::default(),
            video: OrFalse::Some(ViewVideo::default()),
        }
    }
}

/// OWT's `object(ViewAudio)`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ViewAudio {
    /// The mixed audio's format.
    pub format: AudioFormat,
    /// Voice activity detection (active speaker).
    pub vad: bool,
}

impl Default for ViewAudio {
    fn default() -> Self {
        ViewAudio {
            format: AudioFormat::new(AudioCodec::Opus, Some(48000), Some(2)),
            vad: true,
        }
    }
}

/// OWT's `object(ViewVideo)`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct ViewVideo {
    /// The composited video's format.
    pub format: VideoFormat,
    /// Resolution, frame rate, bitrate, key frame interval.
    pub parameters: ViewVideoParameters,
    /// The most inputs composited, 1 to 256.
    pub max_input: i64,
    /// Background colour.
    pub bg_color: Rgb,
    /// Scales the default bitrate.
    pub motion_factor: f64,
    /// Keep the active speaker's video in the primary region.
    pub keep_active_input_primary: bool,
    /// The layout.
    pub layout: Layout,
}

impl Default for ViewVideo {
    fn default() -> Self {
        ViewVideo {
            format: default_video_out()[0].clone(),
            parameters: ViewVideoParameters::default(),
            max_input: 16,
            bg_color: Rgb::default(),
            motion_factor: 0.8,
            keep_active_input_primary: false,
            layout: Layout::default(),
        }
    }
}

/// `parameters` of a view's video.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct ViewVideoParameters {
    /// Output resolution.
    pub resolution: Resolution,
    /// Frames per second: 6, 12, 15, 24, 30, 48 or 60.
    pub framerate: u32,
    /// kbit/s; absent means OWT's default for the resolution and frame rate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bitrate: Option<u32>,
    /// Seconds between key frames: 100, 30, 5, 2 or 1.
    pub key_frame_interval: u32,
}

impl Default for ViewVideoParameters {
    fn default() -> Self {
        ViewVideoParameters {
            resolution: Resolution::default(),
            framerate: 24,
            bitrate: None,
            key_frame_interval: 100,
        }
    }
}

/// An RGB colour, each component 0 to 255.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema, Default)]
#[serde(default, deny_unknown_fields)]
pub struct Rgb {
    /// Red.
    pub r: i64,
    /// Green.
    pub g: i64,
    /// Blue.
    pub b: i64,
}

/// How a view's inputs are placed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct Layout {
    /// How an input fills its region.
    pub fit_policy: FitPolicy,
    /// OWT's region effect hook, kept as given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub set_region_effect: Option<String>,
    /// The base template and custom layouts.
    pub templates: Templates,
}

impl Default for Layout {
    fn default() -> Self {
        Layout {
            fit_policy: FitPolicy::Letterbox,
            set_region_effect: None,
            templates: Templates::default(),
        }
    }
}

/// How an input fills its region.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum FitPolicy {
    /// Scale to fit, pad with the background colour.
    Letterbox,
    /// Scale to fill, crop the overflow.
    Crop,
}

/// `templates` of a layout.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Templates {
    /// The base template.
    pub base: BaseTemplate,
    /// Custom layouts applied on the base, one per input count.
    pub custom: Vec<CustomLayout>,
}

impl Default for Templates {
    fn default() -> Self {
        Templates {
            base: BaseTemplate::Fluid,
            custom: Vec::new(),
        }
    }
}

/// OWT's base layout templates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum BaseTemplate {
    /// Equal tiles.
    Fluid,
    /// One large region and small ones.
    Lecture,
    /// No template: custom layouts only.
    Void,
}

/// A custom layout: a list of regions.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CustomLayout {
    /// The id of the primary region, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary: Option<String>,
    /// The regions.
    pub region: Vec<Region>,
}

/// OWT's `object(Region)`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Region {
    /// The region's id.
    pub id: String,
    /// Only `rectangle`.
    #[serde(default)]
    pub shape: Shape,
    /// Position and size as fractions of the view.
    pub area: Area,
}

/// A region's shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema, Default)]
#[serde(rename_all = "lowercase")]
pub enum Shape {
    /// A rectangle.
    #[default]
    Rectangle,
}

/// A region's area as fractions of the view, each a number or a fraction string like
/// `"1/3"`, as OWT accepts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Area {
    /// Left edge.
    pub left: Ratio,
    /// Top edge.
    pub top: Ratio,
    /// Width.
    pub width: Ratio,
    /// Height.
    pub height: Ratio,
}

/// A number in [0, 1], written as a number or as a fraction string.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum Ratio {
    /// A number such as `0.5`.
    Number(f64),
    /// A fraction such as `"1/3"` or a decimal string such as `"0.25"`.
    Text(String),
}

impl Ratio {
    /// The value, if the text parses.
    pub fn value(&self) -> Option<f64> {
        match self {
            Ratio::Number(n) => Some(*n),
            Ratio::Text(t) => {
                let t = t.trim();
                if let Some((n, d)) = t.split_once('/') {
                    let n: f64 = n.trim().parse().ok()?;
                    let d: f64 = d.trim().parse().ok()?;
                    (d != 0.0).then_some(n / d)
                } else {
                    t.parse().ok()
                }
            }
        }
        .filter(|v: &f64| v.is_finite())
    }
}

/// OWT's `object(MediaIn)`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct MediaIn {
    /// Audio formats accepted from publishers.
    pub audio: Vec<AudioFormat>,
    /// Video formats accepted from publishers.
    pub video: Vec<VideoFormat>,
}

impl Default for MediaIn {
    fn default() -> Self {
        MediaIn {
            audio: default_audio_in(),
            video: default_video_in(),
        }
    }
}

/// OWT's `object(MediaOut)`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct MediaOut {
    /// Audio formats offered to subscribers.
    pub audio: Vec<AudioFormat>,
    /// Video formats and parameters offered to subscribers.
    pub video: MediaOutVideo,
}

impl Default for MediaOut {
    fn default() -> Self {
        MediaOut {
            audio: default_audio_out(),
            video: MediaOutVideo::default(),
        }
    }
}

/// `mediaOut.video`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct MediaOutVideo {
    /// Video formats offered.
    pub format: Vec<VideoFormat>,
    /// Parameters a subscriber may ask for.
    pub parameters: MediaOutParameters,
}

impl Default for MediaOutVideo {
    fn default() -> Self {
        MediaOutVideo {
            format: default_video_out(),
            parameters: MediaOutParameters::default(),
        }
    }
}

/// `mediaOut.video.parameters`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct MediaOutParameters {
    /// Resolutions: multiples of the source such as `"x1/2"`, or names such as `"vga"`.
    pub resolution: Vec<String>,
    /// Frame rates.
    pub framerate: Vec<u32>,
    /// Multiples of the source bitrate such as `"x0.8"`.
    pub bitrate: Vec<String>,
    /// Key frame intervals in seconds.
    pub key_frame_interval: Vec<u32>,
}

impl Default for MediaOutParameters {
    fn default() -> Self {
        MediaOutParameters {
            resolution: [
                "x3/4", "x2/3", "x1/2", "x1/3", "x1/4", "hd1080p", "hd720p", "svga", "vga", "qvga",
                "cif",
            ]
            .map(String::from)
            .to_vec(),
            framerate: vec![6, 12, 15, 24, 30, 48, 60],
            bitrate: ["x0.8", "x0.6", "x0.4", "x0.2"].map(String::from).to_vec(),
            key_frame_interval: vec![100, 30, 5, 2, 1],
        }
    }
}

/// OWT's `object(Transcoding)`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Transcoding {
    /// Audio codec changes allowed.
    pub audio: bool,
    /// Video changes allowed.
    pub video: TranscodingVideo,
}

impl Default for Transcoding {
    fn default() -> Self {
        Transcoding {
            audio: true,
            video: TranscodingVideo::default(),
        }
    }
}

/// `transcoding.video`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct TranscodingVideo {
    /// Codec changes allowed.
    pub format: bool,
    /// Parameter changes allowed.
    pub parameters: TranscodingParameters,
}

impl Default for TranscodingVideo {
    fn default() -> Self {
        TranscodingVideo {
            format: true,
            parameters: TranscodingParameters::default(),
        }
    }
}

/// `transcoding.video.parameters`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct TranscodingParameters {
    /// Resolution changes allowed.
    pub resolution: bool,
    /// Frame rate changes allowed.
    pub framerate: bool,
    /// Bitrate changes allowed.
    pub bitrate: bool,
    /// Key frame interval changes allowed.
    pub key_frame_interval: bool,
}

impl Default for TranscodingParameters {
    fn default() -> Self {
        TranscodingParameters {
            resolution: true,
            framerate: true,
            bitrate: true,
            key_frame_interval: true,
        }
    }
}

/// OWT's `object(Notifying)`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct Notifying {
    /// Join and leave notifications.
    pub participant_activities: bool,
    /// Stream add, update and remove notifications.
    pub stream_change: bool,
}

impl Default for Notifying {
    fn default() -> Self {
        Notifying {
            participant_activities: true,
            stream_change: true,
        }
    }
}

/// OWT's `object(Sip)`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Sip {
    /// Host or IP address of the SIP server.
    pub sip_server: String,
    /// SIP account user name.
    #[serde(default)]
    pub username: String,
    /// SIP account password.
    #[serde(default)]
    pub password: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::media::{H264Profile, VideoCodec};

    #[test]
    fn empty_options_take_owt_defaults() {
        let c: RoomConfig = serde_json::from_str(r#"{"name":"r"}"#).unwrap();
        assert_eq!(c.input_limit, -1);
        assert_eq!(c.participant_limit, -1);
        assert_eq!(c.roles.len(), 6);
        assert_eq!(c.views.len(), 1);
        let v = &c.views[0];
        assert_eq!(v.label, "common");
        assert!(v.audio.vad);
        let vv = v.video.as_ref().unwrap();
        assert_eq!(vv.format.codec, VideoCodec::Vp8);
        assert_eq!(
            vv.parameters.resolution,
            Resolution {
                width: 640,
                height: 480
            }
        );
        assert_eq!(vv.parameters.framerate, 24);
        assert_eq!(vv.parameters.key_frame_interval, 100);
        assert_eq!(vv.max_input, 16);
        assert_eq!(vv.motion_factor, 0.8);
        assert_eq!(vv.layout.fit_policy, FitPolicy::Letterbox);
        assert_eq!(vv.layout.templates.base, BaseTemplate::Fluid);
        assert!(c.transcoding.video.parameters.key_frame_interval);
        assert!(c.notifying.stream_change);
        assert_eq!(
            c.media_out.video.format[1].profile,
            Some(H264Profile::ConstrainedBaseline)
        );
    }

    #[test]
    fn partial_view_fills_the_rest() {
        let c: RoomConfig = serde_json::from_str(
            r#"{"name":"r","views":[{"label":"hd","video":{"parameters":{"resolution":{"width":1280,"height":720}}}},{"label":"audio","video":false}]}"#,
        )
        .unwrap();
        assert_eq!(c.views[0].video.as_ref().unwrap().parameters.framerate, 24);
        assert_eq!(c.views[1].video, OrFalse::False);
        let json = serde_json::to_value(&c).unwrap();
        assert_eq!(json["views"][1]["video"], serde_json::json!(false));
        assert_eq!(json["views"][0]["video"]["maxInput"], 16);
    }

    #[test]
    fn ratio_accepts_numbers_and_fractions() {
        assert_eq!(Ratio::Number(0.5).value(), Some(0.5));
        assert_eq!(Ratio::Text("1/4".into()).value(), Some(0.25));
        assert_eq!(Ratio::Text("0.75".into()).value(), Some(0.75));
        assert_eq!(Ratio::Text("1/0".into()).value(), None);
        assert_eq!(Ratio::Text("half".into()).value(), None);
    }

    #[test]
    fn room_serializes_with_owt_id() {
        let room = Room {
            id: "abc".into(),
            config: RoomConfig {
                name: "n".into(),
                ..RoomConfig::default()
            },
        };
        let v = serde_json::to_value(&room).unwrap();
        assert_eq!(v["_id"], "abc");
        assert_eq!(v["name"], "n");
        assert_eq!(v["participantLimit"], -1);
        assert!(v.get("sip").is_none());
    }
}
