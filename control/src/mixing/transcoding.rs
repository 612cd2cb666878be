//! Transcodings: a stream's video or audio as a player asks, made by the mixer as a
//! view of one input, shared by every player asking the same.

use super::*;

/// The transcoding a player needs of a stream's video `v`: when it asks for what the
/// stream is not (`t`), or its offer (`offer_sdp`) lacks the stream's codec. `None` when
/// the stream will do, or no codec the mixer encodes (VP8, H.264) is in the offer.
pub(super) fn variant_for(
    v: &crate::model::conference::VideoInfo,
    t: &crate::caps::Transcode,
    offer_sdp: &str,
) -> Option<Variant> {
    let offered = sdp_codecs(offer_sdp, "video");
    let own = match v.format.codec {
        VideoCodec::H264 => "h264",
        VideoCodec::H265 => "h265",
        VideoCodec::Vp8 => "vp8",
        VideoCodec::Vp9 => "vp9",
        VideoCodec::Av1 => "av1",
    };
    let codec_ok = offered.is_empty() || offered.iter().any(|c| c == own);
    if codec_ok && !t.needed(!v.rids.is_empty()) {
        return None;
    }
    let takes = |c: &str| offered.is_empty() || offered.iter().any(|o| o == c);
    let codec = [own, "vp8", "h264"]
        .into_iter()
        .find(|c| matches!(*c, "vp8" | "h264") && takes(c))?;
    let (width, height) = (t.width.unwrap_or(0), t.height.unwrap_or(0));
    let framerate = t
        .framerate
        .or_else(|| v.parameters.as_ref().and_then(|p| p.framerate))
        .unwrap_or(30);
    let bitrate_kbps = t.bitrate_kbps.unwrap_or(if width > 0 && height > 0 {
        default_bitrate_kbps(
            crate::model::media::Resolution {
                width: u32::from(width),
                height: u32::from(height),
            },
            framerate,
            0.8,
        )
    } else {
        1000
    });
    Some(Variant {
        codec: codec.to_string(),
        width,
        height,
        framerate,
        bitrate_kbps,
        key_frame_interval: t.key_frame_interval.unwrap_or(5),
    })
}

/// What a transcoding makes of a stream: its audio in another codec, or its video as a
/// player asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transcoding {
    /// The audio in this codec (`opus`, `pcmu`, `pcma`, `g722`).
    Audio(String),
    /// The video.
    Video(Variant),
}

impl Transcoding {
    /// The id of `stream`'s transcoding (shared by every player asking the same).
    pub fn id(&self, stream: &str) -> String {
        match self {
            Transcoding::Audio(codec) => format!("{stream}@audio-{codec}"),
            Transcoding::Video(v) => v.id(stream),
        }
    }
}

/// The codec a player's audio needs to be transcoded to: `None` when its offer takes the
/// stream's `codec` (or names none), or takes nothing the mixer encodes.
pub(super) fn audio_codec_for(codec: AudioCodec, offer_sdp: &str) -> Option<String> {
    let offered = sdp_codecs(offer_sdp, "audio");
    let own = match codec {
        AudioCodec::Opus => "opus",
        AudioCodec::Pcmu => "pcmu",
        AudioCodec::Pcma => "pcma",
        AudioCodec::G722 => "g722",
        _ => "",
    };
    if offered.is_empty() || offered.iter().any(|c| c == own) {
        return None;
    }
    ["opus", "g722", "pcmu", "pcma"]
        .into_iter()
        .find(|c| offered.iter().any(|o| o == c))
        .map(str::to_string)
}

/// What a player asks a stream's video to become.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Variant {
    /// `vp8` or `h264`.
    pub codec: String,
    /// Width and height in pixels; 0 × 0 keeps the stream's.
    pub width: u16,
    /// Height.
    pub height: u16,
    /// Frames per second.
    pub framerate: u32,
    /// kbit/s.
    pub bitrate_kbps: u32,
    /// Seconds between keyframes.
    pub key_frame_interval: u32,
}

impl Variant {
    /// The id of `stream`'s transcoding to this variant (shared by every player asking
    /// for the same).
    pub fn id(&self, stream: &str) -> String {
        format!(
            "{stream}@{}-{}x{}-{}fps-{}k-{}s",
            self.codec,
            self.width,
            self.height,
            self.framerate,
            self.bitrate_kbps,
            self.key_frame_interval
        )
    }
}

impl Mixing {
    /// The publication carrying `stream`'s video as `variant` asks (started on first use,
    /// shared by every player that asks for the same).
    pub(super) async fn transcode(
        &self,
        room: &str,
        stream: &str,
        variant: Transcoding,
        views: &mut HashMap<String, ViewState>,
    ) -> Result<String, MixError> {
        let id = variant.id(stream);
        if views.contains_key(&id) {
            return Ok(id);
        }
        let info = self
            .media
            .conference
            .stream(room, stream)
            .map_err(|_| MixError::Other(format!("no stream {stream} in the room")))?;
        let (audio, video) = match &variant {
            Transcoding::Audio(codec) => (
                Some(api::AudioSpec {
                    codec: codec.clone(),
                    vad: false,
                }),
                None,
            ),
            Transcoding::Video(v) => (
                None,
                Some(api::VideoSpec {
                    codec: v.codec.clone(),
                    width: u32::from(v.width),
                    height: u32::from(v.height),
                    framerate: v.framerate,
                    bitrate_kbps: v.bitrate_kbps,
                    key_frame_interval: v.key_frame_interval,
                    max_input: 1,
                    bg_color: [0, 0, 0],
                    fit: api::Fit::Letterbox,
                    keep_active_input_primary: false,
                    layout: api::LayoutSpec::default(),
                }),
            ),
        };
        let spec = api::ViewSpec {
            id: id.clone(),
            room: room.to_string(),
            label: id.clone(),
            audio,
            video,
        };
        let state = self.start(room, spec, Some(stream.to_string())).await?;
        views.insert(id.clone(), state);
        // The one input: the track transcoded.
        let media = match &variant {
            Transcoding::Audio(_) => StreamMedia {
                audio: info.media.audio.clone(),
                video: OrFalse::False,
            },
            Transcoding::Video(_) => StreamMedia {
                audio: OrFalse::False,
                video: info.media.video.clone(),
            },
        };
        let input = StreamInfo { media, ..info };
        self.add_input(&id, &input, views).await;
        if !views
            .get(&id)
            .is_some_and(|v| v.inputs.iter().any(|s| s == stream))
        {
            if let Some(v) = views.remove(&id) {
                self.teardown(&id, &v, true).await;
            }
            return Err(MixError::Other(format!("{stream} could not be transcoded")));
        }
        tracing::info!(stream, variant = %id, "transcoding started");
        Ok(id)
    }

    /// Transcodings nobody has played for [`LISTENER_IDLE`] end.
    pub(super) async fn end_idle_variants(&self, views: &mut HashMap<String, ViewState>) {
        let now = std::time::Instant::now();
        let mut idle = Vec::new();
        for (id, v) in views.iter_mut().filter(|(_, v)| v.variant_of.is_some()) {
            let played = !self
                .media
                .sessions
                .find(|s| s.stream == *id && s.subscription.is_some())
                .is_empty();
            if played {
                v.idle_since = None;
            } else if now.saturating_duration_since(*v.idle_since.get_or_insert(now))
                >= LISTENER_IDLE
            {
                idle.push(id.clone());
            }
        }
        for id in idle {
            if let Some(v) = views.remove(&id) {
                tracing::info!(variant = %id, "transcoding ended: nobody plays it");
                self.teardown(&id, &v, true).await;
            }
        }
    }

    /// The publication carrying `stream`'s video transcoded as `variant` asks, started
    /// on first use and shared; `None` when the mixer cannot now.
    pub async fn transcoding(
        &self,
        room: &str,
        stream: &str,
        variant: Transcoding,
    ) -> Option<String> {
        let (reply, rx) = tokio::sync::oneshot::channel();
        self.jobs
            .send(Job::Transcode {
                room: room.to_string(),
                stream: stream.to_string(),
                variant,
                reply,
            })
            .ok()?;
        match tokio::time::timeout(Duration::from_secs(15), rx).await {
            Ok(Ok(Ok(p))) => Some(p),
            Ok(Ok(Err(e))) => {
                tracing::warn!(stream, error = %e, "no transcoding for a player");
                None
            }
            _ => None,
        }
    }
}
