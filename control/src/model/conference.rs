//! What is live in each room: participants and streams, held in memory by control.
//!
//! Rooms and their configuration live in the store; who is connected and what is being
//! published do not survive a restart (the sessions do not either), so they live here.
//! The portal and WHIP/WHEP add participants and streams; the REST API lists, patches and
//! drops them. Every change that a connected client must hear of is sent on the
//! [`ConferenceEvent`] channel, which the signaling side listens to.

use super::media::{AudioFormat, Resolution, VideoFormat};
use super::or_false::OrFalse;
use super::room::{AudioVideo, Region, Role, RoomConfig};
use super::validate::{from_value, FieldError};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::RwLock;
use tokio::sync::broadcast;
use utoipa::ToSchema;

/// OWT's `object(Permission)`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Permission {
    /// What the participant may publish, or `false`.
    #[schema(value_type = Object)]
    pub publish: OrFalse<AudioVideo>,
    /// What the participant may subscribe to, or `false`.
    #[schema(value_type = Object)]
    pub subscribe: OrFalse<AudioVideo>,
}

impl Permission {
    /// The permissions a role grants.
    pub fn of_role(role: &Role) -> Self {
        let f = |av: AudioVideo| {
            if av.audio || av.video {
                OrFalse::Some(av)
            } else {
                OrFalse::False
            }
        };
        Permission {
            publish: f(role.publish),
            subscribe: f(role.subscribe),
        }
    }

    /// What may be published now.
    pub fn can_publish(&self) -> AudioVideo {
        self.publish.as_ref().copied().unwrap_or_default()
    }

    /// What may be subscribed to now.
    pub fn can_subscribe(&self) -> AudioVideo {
        self.subscribe.as_ref().copied().unwrap_or_default()
    }
}

/// OWT's `object(ParticipantDetail)`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Participant {
    /// The participant id.
    pub id: String,
    /// The role from the token.
    pub role: String,
    /// The user id from the token.
    pub user: String,
    /// What the participant may do now.
    pub permission: Permission,
}

/// `forward` (a publication) or `mixed` (a view).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum StreamKind {
    /// Published by a participant and forwarded.
    Forward,
    /// Composited from a room's view.
    Mixed,
}

/// `active` or `inactive` (paused by its publisher or by the API).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum TrackStatus {
    /// Flowing.
    Active,
    /// Paused.
    Inactive,
}

/// OWT's `object(AudioInfo)`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AudioInfo {
    /// For forward streams.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<TrackStatus>,
    /// `mic`, `screen-cast`, … for forward streams.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// The format published.
    pub format: AudioFormat,
    /// Other formats a subscriber may ask for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub optional: Option<Value>,
}

/// OWT's `object(VideoParameters)`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct VideoParameters {
    /// Resolution.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolution: Option<Resolution>,
    /// Frames per second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub framerate: Option<u32>,
    /// kbit/s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bitrate: Option<u32>,
    /// Seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_frame_interval: Option<u32>,
}

/// OWT's `object(VideoInfo)`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct VideoInfo {
    /// For forward streams.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<TrackStatus>,
    /// `camera`, `screen-cast`, … for forward streams.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// The format published.
    pub format: VideoFormat,
    /// The parameters published.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<VideoParameters>,
    /// Other formats and parameters a subscriber may ask for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub optional: Option<Value>,
    /// The simulcast layers' `rid`s, as the publisher offered them (absent: one
    /// encoding). A subscriber gets one layer, fitted to its bandwidth and what it asks for.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rids: Vec<String>,
}

/// OWT's `object(MediaInfo)`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct StreamMedia {
    /// The audio track, or `false`.
    #[schema(value_type = Object)]
    pub audio: OrFalse<AudioInfo>,
    /// The video track, or `false`.
    #[schema(value_type = Object)]
    pub video: OrFalse<VideoInfo>,
}

/// OWT's `object(ForwardInfo)`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ForwardInfo {
    /// The publishing participant's id.
    pub owner: String,
    /// `webrtc`, `streaming`, `sip` or `analytics`; `selecting` for an active-speaker
    /// slot (`selectActiveAudio`), whose owner is its current speaker's (or `unknown`).
    #[serde(rename = "type")]
    pub origin: String,
    /// Labels of the views this stream is mixed into.
    pub in_views: Vec<String>,
    /// Attributes the publisher attached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attributes: Option<Value>,
    /// A selecting stream's current input (the stream whose audio it carries).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_input: Option<String>,
}

/// The `type` of an active-speaker slot's [`ForwardInfo`].
pub const SELECTING: &str = "selecting";

impl StreamInfo {
    /// Whether it is a room input (a participant's forward stream), the kind `inputLimit`
    /// counts: not a mixed stream, not an active-speaker slot.
    pub fn is_input(&self) -> bool {
        match &self.info {
            StreamDetails::Forward(f) => f.origin != SELECTING,
            StreamDetails::Mixed(_) => false,
        }
    }
}

/// One region of a mixed stream's layout.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StreamRegion {
    /// The stream shown in the region, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<String>,
    /// The region.
    pub region: Region,
}

/// OWT's `object(MixedInfo)`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct MixedInfo {
    /// The view's label.
    pub label: String,
    /// Which stream is in which region.
    pub layout: Vec<StreamRegion>,
}

/// `info` of a stream: forward or mixed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum StreamDetails {
    /// A forward stream's info.
    Forward(ForwardInfo),
    /// A mixed stream's info.
    Mixed(MixedInfo),
}

/// OWT's `object(StreamInfo)`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct StreamInfo {
    /// The stream id.
    pub id: String,
    /// `forward` or `mixed`.
    #[serde(rename = "type")]
    pub kind: StreamKind,
    /// The tracks.
    pub media: StreamMedia,
    /// Forward or mixed details.
    pub info: StreamDetails,
}

/// A change that connected clients must be told of.
#[derive(Clone, Debug, PartialEq)]
pub enum ConferenceEvent {
    /// A participant joined (through the portal, WHIP or WHEP).
    ParticipantJoined {
        /// Room id.
        room: String,
        /// The participant.
        participant: Box<Participant>,
    },
    /// A stream started.
    StreamAdded {
        /// Room id.
        room: String,
        /// The stream.
        stream: Box<StreamInfo>,
    },
    /// A participant left or was dropped (through the API, or its session ended).
    ParticipantDropped {
        /// Room id.
        room: String,
        /// Participant id.
        participant: String,
    },
    /// A participant's permissions changed.
    ParticipantUpdated {
        /// Room id.
        room: String,
        /// The participant as it is now.
        participant: Box<Participant>,
    },
    /// A stream's status, views or layout changed.
    StreamUpdated {
        /// Room id.
        room: String,
        /// The stream as it is now.
        stream: Box<StreamInfo>,
        /// What changed that clients are told of, as OWT's `field` and `value`:
        /// `audio.status`, `video.status` (`active`/`inactive`), `video.layout`.
        changes: Vec<(String, Value)>,
    },
    /// A stream was dropped through the API.
    StreamDropped {
        /// Room id.
        room: String,
        /// Stream id.
        stream: String,
    },
    /// The room was deleted; everyone in it must leave.
    RoomDeleted {
        /// Room id.
        room: String,
    },
}

/// A room limit that refused a join or a publication.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LimitReached {
    /// `participantLimit`.
    #[error("the room is full: its participantLimit is {0}")]
    Participants(i64),
    /// `inputLimit`.
    #[error("the room publishes as many streams as it may: its inputLimit is {0}")]
    Inputs(i64),
}

/// Why a conference operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConferenceError {
    /// No participant has that id in the room.
    #[error("participant not found")]
    ParticipantNotFound,
    /// No stream has that id in the room.
    #[error("stream not found")]
    StreamNotFound,
    /// A patch was malformed or not applicable.
    #[error(transparent)]
    BadPatch(#[from] FieldError),
}

#[derive(Default, Debug)]
struct LiveRoom {
    participants: Vec<Participant>,
    streams: Vec<StreamInfo>,
}

/// The live participants and streams of every room.
#[derive(Debug)]
pub struct Conference {
    rooms: RwLock<HashMap<String, LiveRoom>>,
    events: broadcast::Sender<ConferenceEvent>,
}

impl Default for Conference {
    fn default() -> Self {
        Self::new()
    }
}

/// One JSON-patch style operation as OWT's API sends them.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PatchOp {
    op: String,
    path: String,
    #[serde(default)]
    value: Value,
}

fn parse_ops(body: Value) -> Result<Vec<PatchOp>, FieldError> {
    if !body.is_array() {
        return Err(FieldError::new(
            "",
            "must be a JSON array of {op, path, value} operations",
        ));
    }
    from_value(body, "")
}

impl Conference {
    /// An empty conference.
    pub fn new() -> Self {
        Conference {
            rooms: RwLock::new(HashMap::new()),
            events: broadcast::channel(1024).0,
        }
    }

    /// Listens to the changes clients must be told of.
    pub fn subscribe(&self) -> broadcast::Receiver<ConferenceEvent> {
        self.events.subscribe()
    }

    fn emit(&self, e: ConferenceEvent) {
        // No listener is not an error: nobody is connected to be told.
        let _ = self.events.send(e);
    }

    fn read<R>(&self, f: impl FnOnce(&HashMap<String, LiveRoom>) -> R) -> R {
        let guard = self.rooms.read().unwrap_or_else(|p| p.into_inner());
        f(&guard)
    }

    fn write<R>(&self, f: impl FnOnce(&mut HashMap<String, LiveRoom>) -> R) -> R {
        let mut guard = self.rooms.write().unwrap_or_else(|p| p.into_inner());
        f(&mut guard)
    }

    /// Adds a participant unconditionally (tests, and callers that checked already).
    pub fn add_participant(&self, room: &str, p: Participant) {
        let _ = self.admit_participant(room, p, -1);
    }

    /// Adds a stream unconditionally.
    pub fn add_stream(&self, room: &str, s: StreamInfo) {
        let _ = self.admit_stream(room, s, -1);
    }

    /// Admits a participant unless the room has `limit` already (-1: no limit). The check
    /// and the insertion are one step, so concurrent joins cannot overshoot.
    pub fn admit_participant(
        &self,
        room: &str,
        p: Participant,
        limit: i64,
    ) -> Result<(), LimitReached> {
        self.write(|m| {
            let r = m.entry(room.to_string()).or_default();
            if limit >= 0 && r.participants.len() as i64 >= limit {
                return Err(LimitReached::Participants(limit));
            }
            r.participants.push(p.clone());
            Ok(())
        })?;
        self.emit(ConferenceEvent::ParticipantJoined {
            room: room.to_string(),
            participant: Box::new(p),
        });
        Ok(())
    }

    /// Adds a forward stream unless the room has `limit` of them already (-1: no limit).
    pub fn admit_stream(&self, room: &str, s: StreamInfo, limit: i64) -> Result<(), LimitReached> {
        self.write(|m| {
            let r = m.entry(room.to_string()).or_default();
            let forwards = r.streams.iter().filter(|x| x.is_input()).count() as i64;
            if limit >= 0 && s.is_input() && forwards >= limit {
                return Err(LimitReached::Inputs(limit));
            }
            r.streams.push(s.clone());
            Ok(())
        })?;
        self.emit(ConferenceEvent::StreamAdded {
            room: room.to_string(),
            stream: Box::new(s),
        });
        Ok(())
    }

    /// How many forward streams a room has.
    pub fn forward_count(&self, room: &str) -> usize {
        self.read(|m| {
            m.get(room)
                .map(|r| r.streams.iter().filter(|s| s.is_input()).count())
                .unwrap_or(0)
        })
    }

    /// The participants in a room, in the order they joined.
    pub fn participants(&self, room: &str) -> Vec<Participant> {
        self.read(|m| {
            m.get(room)
                .map(|r| r.participants.clone())
                .unwrap_or_default()
        })
    }

    /// One participant.
    pub fn participant(&self, room: &str, id: &str) -> Result<Participant, ConferenceError> {
        self.read(|m| {
            m.get(room)
                .and_then(|r| r.participants.iter().find(|p| p.id == id).cloned())
                .ok_or(ConferenceError::ParticipantNotFound)
        })
    }

    /// The streams in a room.
    pub fn streams(&self, room: &str) -> Vec<StreamInfo> {
        self.read(|m| m.get(room).map(|r| r.streams.clone()).unwrap_or_default())
    }

    /// One stream.
    pub fn stream(&self, room: &str, id: &str) -> Result<StreamInfo, ConferenceError> {
        self.read(|m| {
            m.get(room)
                .and_then(|r| r.streams.iter().find(|s| s.id == id).cloned())
                .ok_or(ConferenceError::StreamNotFound)
        })
    }

    /// Totals across rooms: (participants, streams).
    pub fn totals(&self) -> (usize, usize) {
        self.read(|m| {
            m.values().fold((0, 0), |(p, s), r| {
                (p + r.participants.len(), s + r.streams.len())
            })
        })
    }

    /// Applies OWT's permission patch: `[{op: "replace", path: "/permission/publish[/audio|/video]", value}]`.
    /// All operations apply or none does.
    pub fn patch_participant(
        &self,
        room: &str,
        id: &str,
        body: Value,
    ) -> Result<Participant, ConferenceError> {
        let ops = parse_ops(body)?;
        let updated = self.write(|m| {
            let p = m
                .get_mut(room)
                .and_then(|r| r.participants.iter_mut().find(|p| p.id == id))
                .ok_or(ConferenceError::ParticipantNotFound)?;
            let mut perm = p.permission.clone();
            for (i, op) in ops.iter().enumerate() {
                apply_permission_op(&mut perm, op)
                    .map_err(|m| FieldError::new(format!("[{i}]"), m))?;
            }
            p.permission = perm;
            Ok::<_, ConferenceError>(p.clone())
        })?;
        self.emit(ConferenceEvent::ParticipantUpdated {
            room: room.to_string(),
            participant: Box::new(updated.clone()),
        });
        Ok(updated)
    }

    /// Removes a participant and tells its connection to go.
    pub fn drop_participant(&self, room: &str, id: &str) -> Result<(), ConferenceError> {
        self.write(|m| {
            let r = m
                .get_mut(room)
                .ok_or(ConferenceError::ParticipantNotFound)?;
            let before = r.participants.len();
            r.participants.retain(|p| p.id != id);
            if r.participants.len() == before {
                return Err(ConferenceError::ParticipantNotFound);
            }
            Ok(())
        })?;
        self.emit(ConferenceEvent::ParticipantDropped {
            room: room.to_string(),
            participant: id.to_string(),
        });
        Ok(())
    }

    /// Applies OWT's stream patches: mix/unmix (`/info/inViews`), status
    /// (`/media/{audio,video}/status`) on forward streams; region and layout
    /// (`/info/layout…`) on mixed streams. All operations apply or none does.
    pub fn patch_stream(
        &self,
        room: &str,
        config: &RoomConfig,
        id: &str,
        body: Value,
    ) -> Result<StreamInfo, ConferenceError> {
        let ops = parse_ops(body)?;
        let updated = self.write(|m| {
            let r = m.get_mut(room).ok_or(ConferenceError::StreamNotFound)?;
            let ids: Vec<String> = r.streams.iter().map(|s| s.id.clone()).collect();
            let s = r
                .streams
                .iter_mut()
                .find(|s| s.id == id)
                .ok_or(ConferenceError::StreamNotFound)?;
            let mut next = s.clone();
            for (i, op) in ops.iter().enumerate() {
                apply_stream_op(&mut next, config, &ids, op)
                    .map_err(|m| FieldError::new(format!("[{i}]"), m))?;
            }
            let changes = stream_changes(s, &next);
            *s = next;
            Ok::<_, ConferenceError>((s.clone(), changes))
        })?;
        let (updated, changes) = updated;
        self.emit(ConferenceEvent::StreamUpdated {
            room: room.to_string(),
            stream: Box::new(updated.clone()),
            changes,
        });
        Ok(updated)
    }

    /// An active-speaker slot carries `input` now (or nobody), as the major (loudest)
    /// speaker or not: its info follows, and clients are told (OWT's `activeInput`
    /// update, `{id, volume: "major" | "minor"}`).
    pub fn set_active_input(
        &self,
        room: &str,
        slot: &str,
        input: Option<&str>,
        major: bool,
    ) -> Result<(), ConferenceError> {
        let updated = self.write(|m| {
            let r = m.get_mut(room).ok_or(ConferenceError::StreamNotFound)?;
            let owner = input
                .and_then(|i| r.streams.iter().find(|s| s.id == i))
                .and_then(|s| match &s.info {
                    StreamDetails::Forward(f) => Some(f.owner.clone()),
                    StreamDetails::Mixed(_) => None,
                })
                .unwrap_or_else(|| "unknown".into());
            let s = r
                .streams
                .iter_mut()
                .find(|s| s.id == slot)
                .ok_or(ConferenceError::StreamNotFound)?;
            if let StreamDetails::Forward(f) = &mut s.info {
                f.owner = owner;
                f.active_input = input.map(str::to_string);
            }
            Ok::<_, ConferenceError>(s.clone())
        })?;
        let value = match input {
            Some(id) => {
                serde_json::json!({"id": id, "volume": if major { "major" } else { "minor" }})
            }
            None => serde_json::json!({"id": "unknown", "volume": "minor"}),
        };
        self.emit(ConferenceEvent::StreamUpdated {
            room: room.to_string(),
            stream: Box::new(updated),
            changes: vec![("activeInput".into(), value)],
        });
        Ok(())
    }

    /// The rooms with someone in them.
    pub fn active_rooms(&self) -> Vec<String> {
        self.read(|m| {
            m.iter()
                .filter(|(_, r)| !r.participants.is_empty())
                .map(|(id, _)| id.clone())
                .collect()
        })
    }

    /// A mixed stream's layout is now `layout` (which stream is in which region): its
    /// info follows, and clients are told (OWT's `video.layout` update).
    pub fn set_mixed_layout(
        &self,
        room: &str,
        id: &str,
        layout: Vec<StreamRegion>,
    ) -> Result<(), ConferenceError> {
        let updated = self.write(|m| {
            let r = m.get_mut(room).ok_or(ConferenceError::StreamNotFound)?;
            let s = r
                .streams
                .iter_mut()
                .find(|s| s.id == id)
                .ok_or(ConferenceError::StreamNotFound)?;
            match &mut s.info {
                StreamDetails::Mixed(mixed) => mixed.layout = layout,
                StreamDetails::Forward(_) => return Err(ConferenceError::StreamNotFound),
            }
            Ok::<_, ConferenceError>(s.clone())
        })?;
        let value = match &updated.info {
            StreamDetails::Mixed(m) => serde_json::to_value(&m.layout).unwrap_or(Value::Null),
            StreamDetails::Forward(_) => Value::Null,
        };
        self.emit(ConferenceEvent::StreamUpdated {
            room: room.to_string(),
            stream: Box::new(updated),
            changes: vec![("video.layout".into(), value)],
        });
        Ok(())
    }

    /// The loudest input of a mixed stream changed (OWT's `activeInput` update).
    pub fn set_mixed_active_input(
        &self,
        room: &str,
        id: &str,
        input: &str,
    ) -> Result<(), ConferenceError> {
        let stream = self.stream(room, id)?;
        self.emit(ConferenceEvent::StreamUpdated {
            room: room.to_string(),
            stream: Box::new(stream),
            changes: vec![("activeInput".into(), Value::String(input.to_string()))],
        });
        Ok(())
    }

    /// Removes a stream and tells its publisher's connection.
    pub fn drop_stream(&self, room: &str, id: &str) -> Result<(), ConferenceError> {
        self.write(|m| {
            let r = m.get_mut(room).ok_or(ConferenceError::StreamNotFound)?;
            let before = r.streams.len();
            r.streams.retain(|s| s.id != id);
            if r.streams.len() == before {
                return Err(ConferenceError::StreamNotFound);
            }
            Ok(())
        })?;
        self.emit(ConferenceEvent::StreamDropped {
            room: room.to_string(),
            stream: id.to_string(),
        });
        Ok(())
    }

    /// Forgets a deleted room and tells everyone in it to leave.
    pub fn delete_room(&self, room: &str) {
        let existed = self.write(|m| m.remove(room).is_some());
        if existed {
            self.emit(ConferenceEvent::RoomDeleted {
                room: room.to_string(),
            });
        }
    }
}

/// What changed between two versions of a stream, in OWT's notification terms.
fn stream_changes(before: &StreamInfo, after: &StreamInfo) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    let status = |v: Option<TrackStatus>| {
        serde_json::to_value(v.unwrap_or(TrackStatus::Active)).unwrap_or(Value::Null)
    };
    let (a0, a1) = (
        before.media.audio.as_ref().and_then(|a| a.status),
        after.media.audio.as_ref().and_then(|a| a.status),
    );
    if a0 != a1 {
        out.push(("audio.status".to_string(), status(a1)));
    }
    let (v0, v1) = (
        before.media.video.as_ref().and_then(|v| v.status),
        after.media.video.as_ref().and_then(|v| v.status),
    );
    if v0 != v1 {
        out.push(("video.status".to_string(), status(v1)));
    }
    if let (StreamDetails::Mixed(m0), StreamDetails::Mixed(m1)) = (&before.info, &after.info) {
        if m0.layout != m1.layout {
            out.push((
                "video.layout".to_string(),
                serde_json::to_value(&m1.layout).unwrap_or(Value::Null),
            ));
        }
    }
    out
}

fn bool_value(op: &PatchOp) -> Result<bool, String> {
    op.value
        .as_bool()
        .ok_or_else(|| format!("value for {} must be true or false", op.path))
}

fn apply_permission_op(perm: &mut Permission, op: &PatchOp) -> Result<(), String> {
    if op.op != "replace" {
        return Err(format!(
            "op {:?} is not supported here: use \"replace\"",
            op.op
        ));
    }
    let mut parts = op
        .path
        .strip_prefix("/permission/")
        .unwrap_or("")
        .split('/');
    let which = match parts.next() {
        Some("publish") => &mut perm.publish,
        Some("subscribe") => &mut perm.subscribe,
        _ => {
            return Err(format!(
                "path {:?} is not /permission/publish or /permission/subscribe[/audio|/video]",
                op.path
            ))
        }
    };
    let current = which.as_ref().copied().unwrap_or_default();
    let next = match (parts.next(), parts.next()) {
        (None, _) => match &op.value {
            Value::Bool(false) => AudioVideo::both(false),
            Value::Object(_) => {
                serde_json::from_value::<AudioVideo>(op.value.clone()).map_err(|e| {
                    format!(
                        "value for {} must be {{audio: bool, video: bool}}: {e}",
                        op.path
                    )
                })?
            }
            _ => {
                return Err(format!(
                    "value for {} must be {{audio, video}} or false",
                    op.path
                ))
            }
        },
        (Some("audio"), None) => AudioVideo {
            audio: bool_value(op)?,
            ..current
        },
        (Some("video"), None) => AudioVideo {
            video: bool_value(op)?,
            ..current
        },
        _ => {
            return Err(format!(
                "path {:?} is not /permission/publish or /permission/subscribe[/audio|/video]",
                op.path
            ))
        }
    };
    *which = if next.audio || next.video {
        OrFalse::Some(next)
    } else {
        OrFalse::False
    };
    Ok(())
}

fn apply_stream_op(
    s: &mut StreamInfo,
    config: &RoomConfig,
    stream_ids: &[String],
    op: &PatchOp,
) -> Result<(), String> {
    match (&mut s.info, op.path.as_str()) {
        (StreamDetails::Forward(f), "/info/inViews") => {
            let label = op.value.as_str().ok_or("value for /info/inViews must be a view label")?;
            if config.view(label).is_none() {
                return Err(format!("the room has no view labelled {label:?}"));
            }
            match op.op.as_str() {
                "add" => {
                    if !f.in_views.iter().any(|v| v == label) {
                        f.in_views.push(label.to_string());
                    }
                }
                "remove" => f.in_views.retain(|v| v != label),
                other => return Err(format!("op {other:?} is not supported for /info/inViews: use add or remove")),
            }
            Ok(())
        }
        (StreamDetails::Forward(_), path @ ("/media/audio/status" | "/media/video/status")) => {
            if op.op != "replace" {
                return Err(format!("op {:?} is not supported for {path}: use replace", op.op));
            }
            let status: TrackStatus = serde_json::from_value(op.value.clone())
                .map_err(|_| format!("value for {path} must be \"active\" or \"inactive\""))?;
            let slot = if path == "/media/audio/status" {
                s.media.audio.as_mut().map(|a| &mut a.status)
            } else {
                s.media.video.as_mut().map(|v| &mut v.status)
            };
            let slot = slot.ok_or_else(|| format!("the stream has no track for {path}"))?;
            *slot = Some(status);
            Ok(())
        }
        (StreamDetails::Mixed(mixed), "/info/layout") => {
            if op.op != "replace" {
                return Err("op for /info/layout must be replace".into());
            }
            let layout: Vec<StreamRegion> = serde_json::from_value(op.value.clone())
                .map_err(|e| format!("value for /info/layout must be a list of {{stream, region}}: {e}"))?;
            // Empty regions may only come last, as OWT requires.
            if let Some(first_empty) = layout.iter().position(|r| r.stream.is_none()) {
                if layout[first_empty..].iter().any(|r| r.stream.is_some()) {
                    return Err("regions without a stream must come after all regions with one".into());
                }
            }
            for r in &layout {
                if let Some(id) = &r.stream {
                    if !stream_ids.contains(id) {
                        return Err(format!("stream {id:?} is not in the room"));
                    }
                }
            }
            mixed.layout = layout;
            Ok(())
        }
        (StreamDetails::Mixed(mixed), path) if path.starts_with("/info/layout/") => {
            let rest = &path["/info/layout/".len()..];
            let (idx, field) = rest.split_once('/').ok_or("path must be /info/layout/{index}/stream")?;
            let idx: usize = idx.parse().map_err(|_| "region index must be a number".to_string())?;
            if field != "stream" || op.op != "replace" {
                return Err("only replace of /info/layout/{index}/stream is supported".into());
            }
            let id = op.value.as_str().ok_or("value must be a stream id")?;
            if !stream_ids.iter().any(|s| s == id) {
                return Err(format!("stream {id:?} is not in the room"));
            }
            let region = mixed.layout.get_mut(idx).ok_or_else(|| format!("the layout has no region {idx}"))?;
            region.stream = Some(id.to_string());
            Ok(())
        }
        (StreamDetails::Forward(_), p) => Err(format!("path {p:?} does not apply to a forward stream: use /info/inViews or /media/{{audio,video}}/status")),
        (StreamDetails::Mixed(_), p) => Err(format!("path {p:?} does not apply to a mixed stream: use /info/layout")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::media::AudioCodec;
    use crate::model::room::default_roles;
    use serde_json::json;

    fn presenter(id: &str) -> Participant {
        Participant {
            id: id.into(),
            role: "presenter".into(),
            user: "u".into(),
            permission: Permission::of_role(&default_roles()[0]),
        }
    }

    fn forward(id: &str) -> StreamInfo {
        StreamInfo {
            id: id.into(),
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
                attributes: None,
                active_input: None,
            }),
        }
    }

    #[test]
    fn viewer_permission_is_owt_shaped() {
        let viewer = Permission::of_role(&default_roles()[1]);
        let v = serde_json::to_value(&viewer).unwrap();
        assert_eq!(
            v,
            json!({"publish": false, "subscribe": {"audio": true, "video": true}})
        );
    }

    #[test]
    fn permission_patch_applies_all_or_nothing() {
        let c = Conference::new();
        let mut events = c.subscribe();
        c.add_participant("r", presenter("p1"));
        assert!(matches!(
            events.try_recv(),
            Ok(ConferenceEvent::ParticipantJoined { .. })
        ));
        let p = c
            .patch_participant(
                "r",
                "p1",
                json!([{"op": "replace", "path": "/permission/publish/video", "value": false}]),
            )
            .unwrap();
        assert_eq!(
            p.permission.can_publish(),
            AudioVideo {
                audio: true,
                video: false
            }
        );
        assert!(matches!(
            events.try_recv(),
            Ok(ConferenceEvent::ParticipantUpdated { .. })
        ));
        let p = c
            .patch_participant(
                "r",
                "p1",
                json!([{"op": "replace", "path": "/permission/subscribe", "value": false}]),
            )
            .unwrap();
        assert_eq!(p.permission.subscribe, OrFalse::False);
        let e = c
            .patch_participant(
                "r",
                "p1",
                json!([
                    {"op": "replace", "path": "/permission/publish/audio", "value": false},
                    {"op": "replace", "path": "/permission/teleport", "value": true}
                ]),
            )
            .unwrap_err();
        assert!(
            matches!(e, ConferenceError::BadPatch(ref f) if f.field == "[1]"),
            "{e:?}"
        );
        // The first op did not apply.
        assert!(
            c.participant("r", "p1")
                .unwrap()
                .permission
                .can_publish()
                .audio
        );
        assert_eq!(
            c.patch_participant("r", "nobody", json!([])).unwrap_err(),
            ConferenceError::ParticipantNotFound
        );
        assert!(c
            .patch_participant("r", "p1", json!({"op": "replace"}))
            .is_err());
    }

    #[test]
    fn drop_participant_tells_listeners() {
        let c = Conference::new();
        c.add_participant("r", presenter("p1"));
        let mut events = c.subscribe();
        c.drop_participant("r", "p1").unwrap();
        assert_eq!(
            events.try_recv().unwrap(),
            ConferenceEvent::ParticipantDropped {
                room: "r".into(),
                participant: "p1".into()
            }
        );
        assert_eq!(
            c.drop_participant("r", "p1"),
            Err(ConferenceError::ParticipantNotFound)
        );
        assert!(c.participants("r").is_empty());
    }

    #[test]
    fn stream_patches() {
        let c = Conference::new();
        let config = RoomConfig {
            name: "r".into(),
            ..RoomConfig::default()
        };
        c.add_stream("r", forward("s1"));
        let s = c
            .patch_stream(
                "r",
                &config,
                "s1",
                json!([{"op": "add", "path": "/info/inViews", "value": "common"}]),
            )
            .unwrap();
        let StreamDetails::Forward(f) = &s.info else {
            panic!()
        };
        assert_eq!(f.in_views, vec!["common".to_string()]);
        let s = c
            .patch_stream(
                "r",
                &config,
                "s1",
                json!([{"op": "replace", "path": "/media/audio/status", "value": "inactive"}]),
            )
            .unwrap();
        assert_eq!(
            s.media.audio.as_ref().unwrap().status,
            Some(TrackStatus::Inactive)
        );
        for bad in [
            json!([{"op": "add", "path": "/info/inViews", "value": "nope"}]),
            json!([{"op": "replace", "path": "/media/video/status", "value": "active"}]),
            json!([{"op": "replace", "path": "/media/audio/status", "value": "paused"}]),
            json!([{"op": "replace", "path": "/info/layout", "value": []}]),
        ] {
            assert!(
                matches!(
                    c.patch_stream("r", &config, "s1", bad.clone()),
                    Err(ConferenceError::BadPatch(_))
                ),
                "{bad}"
            );
        }
        assert_eq!(
            c.stream("r", "s1").unwrap(),
            s,
            "failed patches change nothing"
        );
        c.drop_stream("r", "s1").unwrap();
        assert_eq!(c.stream("r", "s1"), Err(ConferenceError::StreamNotFound));
    }
}
