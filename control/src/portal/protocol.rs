//! The messages of OWT's client–portal protocol (owt-server `doc/Client-Portal
//! Protocol.md`, version 1.2) as the OWT JavaScript SDK 5.x sends and expects them.
//!
//! Requests are parsed leniently where SDK versions differ (unknown keys are ignored), and
//! strictly where a value matters (a wrong type or a missing field is an error answer).
//! Answers go through the client's callback as `("ok", data)` or `("error", {code,
//! description})`.

use crate::model::conference::{Participant, StreamDetails, StreamInfo, StreamKind};
use crate::model::or_false::OrFalse;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// OWT's `object(ErrorDescription)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ErrorDescription {
    /// An error code (OWT's management API codes where one fits, 2xxx otherwise).
    pub code: u32,
    /// What went wrong.
    pub description: String,
}

/// A refused request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{description}")]
pub struct PortalError {
    /// The code.
    pub code: u32,
    /// The description.
    pub description: String,
}

impl PortalError {
    /// An error with a code.
    pub fn new(code: u32, description: impl Into<String>) -> Self {
        PortalError {
            code,
            description: description.into(),
        }
    }
    /// A malformed request (1301).
    pub fn bad(description: impl Into<String>) -> Self {
        Self::new(1301, description)
    }
    /// Not permitted (1102).
    pub fn denied(description: impl Into<String>) -> Self {
        Self::new(1102, description)
    }
    /// Not logged in (1101).
    pub fn not_logged_in() -> Self {
        Self::new(1101, "not logged in: send login first")
    }
    /// The body of the error answer.
    pub fn body(&self) -> ErrorDescription {
        ErrorDescription {
            code: self.code,
            description: self.description.clone(),
        }
    }
}

/// Parses request data into `T`, naming what is wrong.
pub fn parse<T: serde::de::DeserializeOwned>(data: Value, what: &str) -> Result<T, PortalError> {
    serde_path_to_error::deserialize(data).map_err(|e| {
        let path = e.path().to_string();
        PortalError::bad(format!("malformed {what} request at {path}: {}", e.inner()))
    })
}

/// `login`.
#[derive(Debug, Deserialize)]
pub struct LoginInfo {
    /// The base64 token from the app server.
    pub token: String,
    /// `{keepTime}`, `false`, or absent (the SDK 5.x sends none and expects reconnection).
    #[serde(default)]
    pub reconnection: Option<Value>,
    /// The protocol version ("1.2"); informational.
    #[serde(default)]
    pub protocol: Option<String>,
}

/// `relogin`: the ticket string itself (SDK 5.x) or `{ticket, messages}`.
pub fn relogin_ticket(data: &Value) -> Option<&str> {
    data.as_str()
        .or_else(|| data.get("ticket").and_then(Value::as_str))
}

/// One track of a publication or subscription request.
#[derive(Debug, Clone, Deserialize)]
pub struct TrackRequest {
    /// `audio` or `video`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The section's mid in the client's offer.
    #[serde(default)]
    pub mid: Option<String>,
    /// For publications: `mic`, `camera`, `screen-cast`, …
    #[serde(default)]
    pub source: Option<String>,
    /// For subscriptions: the stream (or track) id.
    #[serde(default)]
    pub from: Option<String>,
    /// For subscriptions: wanted video parameters.
    #[serde(default)]
    pub parameters: Option<Value>,
}

/// `media` of a request.
#[derive(Debug, Deserialize)]
pub struct MediaRequest {
    /// The tracks.
    pub tracks: Vec<TrackRequest>,
}

/// `transport` of a request.
#[derive(Debug, Deserialize)]
pub struct TransportOptions {
    /// `webrtc` (or `quic`, not offered).
    #[serde(rename = "type")]
    pub kind: String,
    /// An existing transport to add to, or null for a new one.
    #[serde(default)]
    pub id: Option<String>,
}

/// `publish`.
#[derive(Debug, Deserialize)]
pub struct PublicationRequest {
    /// The tracks, or null for a data-only publication.
    pub media: Option<MediaRequest>,
    /// Data channel publication.
    #[serde(default)]
    pub data: bool,
    /// Where.
    pub transport: TransportOptions,
    /// The app's attributes, kept and shown to others.
    #[serde(default)]
    pub attributes: Option<Value>,
}

/// `subscribe`.
#[derive(Debug, Deserialize)]
pub struct SubscriptionRequest {
    /// The tracks.
    pub media: MediaRequest,
    /// Where.
    pub transport: TransportOptions,
}

/// `soac`.
#[derive(Debug, Deserialize)]
pub struct SoacMessage {
    /// The transport.
    pub id: String,
    /// `{type: offer|answer, sdp}`, `{type: candidate, candidate}`, `{type: removed-candidates}`.
    pub signaling: Value,
}

/// `unpublish`, `unsubscribe`.
#[derive(Debug, Deserialize)]
pub struct IdRequest {
    /// The publication or subscription.
    pub id: String,
}

/// `stream-control` and `subscription-control`.
#[derive(Debug, Deserialize)]
pub struct ControlRequest {
    /// The publication or subscription.
    pub id: String,
    /// `pause`, `play`, `update`, `querybwe`.
    pub operation: String,
    /// `audio`, `video`, `av`, or an update object.
    #[serde(default)]
    pub data: Value,
}

/// `subscription-control` `update`'s data: OWT's `SubscriptionUpdate`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionUpdate {
    /// Audio: only `from` (another stream), which is refused.
    #[serde(default)]
    pub audio: Option<TrackUpdate>,
    /// Video: `from` (refused) and `parameters`.
    #[serde(default)]
    pub video: Option<TrackUpdate>,
}

/// One kind's part of a [`SubscriptionUpdate`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrackUpdate {
    /// Another stream to switch to.
    #[serde(default)]
    pub from: Option<String>,
    /// Wanted video parameters.
    #[serde(default)]
    pub parameters: Option<Value>,
}

/// `text`.
#[derive(Debug, Deserialize)]
pub struct TextRequest {
    /// A participant id or `all`.
    pub to: String,
    /// At most 2048 characters.
    pub message: String,
}

/// Which of audio and video a `pause`/`play` names.
pub fn av(data: &Value) -> Result<(bool, bool), PortalError> {
    match data.as_str() {
        Some("audio") => Ok((true, false)),
        Some("video") => Ok((false, true)),
        Some("av") => Ok((true, true)),
        _ => Err(PortalError::bad(
            "data must be \"audio\", \"video\" or \"av\"",
        )),
    }
}

/// OWT's `object(ParticipantInfo)`.
pub fn participant_info(p: &Participant) -> Value {
    json!({"id": p.id, "role": p.role, "user": p.user})
}

/// The id of a stream's track: `{stream}-audio` or `{stream}-video`. Subscriptions may
/// name either the stream or a track.
pub fn track_id(stream: &str, kind: &str) -> String {
    format!("{stream}-{kind}")
}

/// The stream a subscription's `from` names: a stream id, or a track id (`{stream}-audio`,
/// `{stream}-video`, or a simulcast layer's `{stream}-video-{rid}`).
pub fn stream_of(from: &str) -> &str {
    if let Some((stream, _)) = from
        .rsplit_once("-video-")
        .filter(|(s, r)| !s.is_empty() && !r.is_empty())
    {
        return stream;
    }
    from.strip_suffix("-audio")
        .or_else(|| from.strip_suffix("-video"))
        .unwrap_or(from)
}

/// The simulcast layer a track id names (`{stream}-video-{rid}`), if it names one.
pub fn rid_of(from: &str) -> Option<&str> {
    from.rsplit_once("-video-")
        .filter(|(s, r)| !s.is_empty() && !r.is_empty())
        .map(|(_, rid)| rid)
}

/// A stream in the portal's shape: `media.tracks` instead of the REST API's
/// `media.audio`/`media.video`.
pub fn stream_info(s: &StreamInfo) -> Value {
    let mut tracks = Vec::new();
    if let OrFalse::Some(a) = &s.media.audio {
        tracks.push(json!({
            "id": track_id(&s.id, "audio"),
            "type": "audio",
            "format": a.format,
            "status": a.status,
            "source": a.source,
            "optional": a.optional,
        }));
    }
    if let OrFalse::Some(v) = &s.media.video {
        tracks.push(json!({
            "id": track_id(&s.id, "video"),
            "type": "video",
            "format": v.format,
            "parameters": v.parameters,
            "status": v.status,
            "source": v.source,
            "optional": v.optional,
        }));
        // A simulcast publication: one more track per layer, as OWT lists them; a
        // subscription from one gets that layer (or a cheaper one its bandwidth needs),
        // from the plain video track any layer its bandwidth allows.
        for rid in &v.rids {
            tracks.push(json!({
                "id": format!("{}-{rid}", track_id(&s.id, "video")),
                "type": "video",
                "format": v.format,
                "status": v.status,
                "source": v.source,
                "rid": rid,
            }));
        }
    }
    let info = match &s.info {
        StreamDetails::Forward(f) => {
            let mut info = json!({"owner": f.owner, "type": f.origin, "inViews": f.in_views, "attributes": f.attributes});
            if f.origin == crate::model::conference::SELECTING {
                info["activeInput"] = json!(f.active_input.as_deref().unwrap_or("unknown"));
            }
            info
        }
        StreamDetails::Mixed(m) => {
            json!({"label": m.label, "activeInput": "unknown", "layout": m.layout})
        }
    };
    json!({
        "id": s.id,
        "type": match s.kind { StreamKind::Forward => "forward", StreamKind::Mixed => "mixed" },
        "media": {"tracks": tracks},
        "data": false,
        "info": info,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::conference::{AudioInfo, ForwardInfo, StreamMedia, TrackStatus};
    use crate::model::media::{AudioCodec, AudioFormat};

    #[test]
    fn stream_has_tracks_as_the_sdk_reads_them() {
        let s = StreamInfo {
            id: "s1".into(),
            kind: StreamKind::Forward,
            media: StreamMedia {
                audio: OrFalse::Some(AudioInfo {
                    status: Some(TrackStatus::Active),
                    source: Some("mic".into()),
                    format: AudioFormat::new(AudioCodec::Opus, Some(48000), Some(2)),
                    optional: None,
                }),
                video: OrFalse::False,
            },
            info: StreamDetails::Forward(ForwardInfo {
                owner: "p1".into(),
                origin: "webrtc".into(),
                in_views: vec![],
                attributes: Some(json!({"name": "cam"})),
                active_input: None,
            }),
        };
        let v = stream_info(&s);
        assert_eq!(v["media"]["tracks"][0]["type"], "audio");
        assert_eq!(v["media"]["tracks"][0]["source"], "mic");
        assert_eq!(v["media"]["tracks"][0]["id"], "s1-audio");
        assert_eq!(v["info"]["owner"], "p1");
        assert_eq!(v["info"]["attributes"]["name"], "cam");
        assert_eq!(stream_of("s1-video"), "s1");
        assert_eq!(stream_of("s1"), "s1");
    }

    #[test]
    fn requests_parse_and_name_errors() {
        let r: PublicationRequest = parse(json!({"media": {"tracks": [{"type": "audio", "mid": "0", "source": "mic"}]}, "transport": {"type": "webrtc", "id": null}, "attributes": {}}), "publish").unwrap();
        assert_eq!(r.media.unwrap().tracks[0].mid.as_deref(), Some("0"));
        let e = parse::<PublicationRequest>(
            json!({"media": {"tracks": "all"}, "transport": {"type": "webrtc"}}),
            "publish",
        )
        .unwrap_err();
        assert!(e.description.contains("media.tracks"), "{e}");
        assert_eq!(relogin_ticket(&json!("abc")), Some("abc"));
        assert_eq!(
            relogin_ticket(&json!({"ticket": "abc", "messages": []})),
            Some("abc")
        );
        assert_eq!(av(&json!("av")).unwrap(), (true, true));
        assert!(av(&json!("both")).is_err());
    }
}
