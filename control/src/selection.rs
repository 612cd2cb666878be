//! Active-speaker selections: a room with `selectActiveAudio` gets [`SLOTS`] audio-only
//! streams (OWT's "selecting" streams, info `type: selecting`), each carrying the audio of
//! one of the room's loudest speakers; clients play those instead of every participant's
//! audio. The dataplane ranks the speakers (`SELECTION_CREATE`, publications bound with
//! their room's selection) and reports each change, which becomes the slot's
//! `activeInput` and an OWT `stream` update `{field: "activeInput", value: {id, volume}}`.
//!
//! A room's selection is made on first use — a publication, a WHEP player, a portal
//! login — and again after a dataplane restart; its streams leave with the room or the
//! dataplane.

use crate::dataplane::DataplaneError;
use crate::media::Media;
use crate::model::conference::{
    AudioInfo, ForwardInfo, StreamDetails, StreamInfo, StreamKind, StreamMedia, TrackStatus,
    SELECTING,
};
use crate::model::media::{AudioCodec, AudioFormat};
use crate::model::or_false::OrFalse;
use switchyard_dataplane_api::{Request, Response};

/// The slots of a selection (OWT's K).
pub const SLOTS: usize = 3;

/// The id of a room's `i`th slot stream.
pub fn slot_id(room: &str, i: usize) -> String {
    format!("{room}-active-audio-{i}")
}

fn slot_stream(room: &str, i: usize) -> StreamInfo {
    StreamInfo {
        id: slot_id(room, i),
        kind: StreamKind::Forward,
        media: StreamMedia {
            audio: OrFalse::Some(AudioInfo {
                status: Some(TrackStatus::Active),
                source: Some("mic".into()),
                format: AudioFormat::new(AudioCodec::Opus, Some(48_000), Some(2)),
                optional: None,
            }),
            video: OrFalse::False,
        },
        info: StreamDetails::Forward(ForwardInfo {
            owner: "unknown".into(),
            origin: SELECTING.into(),
            in_views: Vec::new(),
            attributes: None,
            active_input: None,
        }),
    }
}

impl Media {
    /// The selection publications in `room` compete in, made on the dataplane (and its
    /// slot streams added to the room) if this is its first use since the dataplane came
    /// up; `None` when the room does not select active audio.
    pub async fn selection_for(
        &self,
        room: &str,
        select_active_audio: bool,
    ) -> Result<Option<String>, DataplaneError> {
        if !select_active_audio {
            return Ok(None);
        }
        let up = self.link.times_up();
        if self.selections().get(room) == Some(&up) {
            return Ok(Some(room.to_string()));
        }
        let peer = format!("{room}#selection");
        let core = self.link.place(room, &peer)?;
        let slots: Vec<String> = (0..SLOTS).map(|i| slot_id(room, i)).collect();
        let answer = self
            .link
            .call(Request::SelectionCreate {
                selection: room.to_string(),
                slots,
                core,
            })
            .await;
        match answer {
            Ok(Response::Done) => {}
            Ok(other) => {
                self.link.release(&peer);
                return Err(DataplaneError::Protocol(format!("{other:?}")));
            }
            Err(e) => {
                self.link.release(&peer);
                return Err(e);
            }
        }
        self.selections().insert(room.to_string(), up);
        for i in 0..SLOTS {
            if self.conference.stream(room, &slot_id(room, i)).is_err() {
                self.conference.add_stream(room, slot_stream(room, i));
            }
        }
        tracing::info!(room, core, slots = SLOTS, "active-speaker selection made");
        Ok(Some(room.to_string()))
    }

    /// The dataplane says a slot changed.
    pub(crate) fn selection_changed(
        &self,
        room: &str,
        slot: &str,
        input: Option<&str>,
        major: bool,
    ) {
        if let Err(e) = self.conference.set_active_input(room, slot, input, major) {
            tracing::debug!(room, slot, error = %e, "active-speaker change for a slot not listed");
        }
    }

    /// The room is gone: its selection ends on the dataplane.
    pub(crate) async fn end_selection(&self, room: &str) {
        if self.selections().remove(room).is_some() {
            let _ = self
                .link
                .call(Request::SelectionClose {
                    selection: room.to_string(),
                })
                .await;
        }
    }

    /// The dataplane went away: the selections and their streams with it.
    pub(crate) fn forget_selections(&self) {
        let rooms: Vec<String> = self.selections().drain().map(|(r, _)| r).collect();
        for room in rooms {
            for i in 0..SLOTS {
                let _ = self.conference.drop_stream(&room, &slot_id(&room, i));
            }
        }
    }
}
