//! How one player plays a stream: its bindings on the dataplane, split when its audio
//! or video comes from elsewhere (a mix-minus, a transcoding).

use super::transcoding::{audio_codec_for, variant_for};
use super::*;

/// The id of the binding that plays a subscription's mix-minus audio.
pub fn minus_subscription(subscription: &str) -> String {
    format!("{subscription}~audio")
}

/// Splits a subscription so that its audio sections play `audio` and its video sections
/// `video` (a player's mix-minus, a transcoding): the binding keeps the video sections
/// (`video_mids`), a second one plays the audio on `audio_mids`.
pub fn split_bindings(
    binding: Binding,
    audio: &str,
    video: &str,
    audio_mids: Vec<String>,
    video_mids: Vec<String>,
) -> Vec<Binding> {
    match binding {
        Binding::Subscribe {
            subscription,
            audio: wants_audio,
            video: wants_video,
            cap,
            ..
        } => vec![
            Binding::Subscribe {
                subscription: subscription.clone(),
                publication: video.to_string(),
                mids: Some(video_mids),
                audio: false,
                video: wants_video,
                cap,
            },
            Binding::Subscribe {
                subscription: minus_subscription(&subscription),
                publication: audio.to_string(),
                mids: Some(audio_mids),
                audio: wants_audio,
                video: false,
                cap: Default::default(),
            },
        ],
        other => vec![other],
    }
}

/// The codecs an SDP offer lists for `kind` (`audio`, `video`; lower case).
pub fn sdp_codecs(sdp: &str, kind: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut inside = false;
    for line in sdp.lines().map(|l| l.trim_end_matches('\r')) {
        if let Some(m) = line.strip_prefix("m=") {
            inside = m.split_whitespace().next() == Some(kind);
        } else if let Some(map) = line.strip_prefix("a=rtpmap:").filter(|_| inside) {
            if let Some(name) = map
                .split_whitespace()
                .nth(1)
                .and_then(|e| e.split('/').next())
            {
                let name = name.to_ascii_lowercase();
                if !out.contains(&name) {
                    out.push(name);
                }
            }
        }
    }
    out
}

/// How one player plays a stream: what decides its bindings beyond the stream itself.
pub struct Playback<'a> {
    /// The room.
    pub room: &'a str,
    /// The stream played.
    pub stream: &'a str,
    /// The player's offer (the codecs it takes).
    pub offer_sdp: &'a str,
    /// Its audio sections.
    pub audio_mids: Vec<String>,
    /// Its video sections.
    pub video_mids: Vec<String>,
    /// What it asks the video to be.
    pub transcode: &'a crate::caps::Transcode,
    /// Who it is (for a mixed stream's mix-minus), and whether it may publish audio.
    pub listener: Option<(Listener, bool)>,
}

/// The audio and video sections (mids) of an SDP offer, in order.
pub fn sdp_mids(sdp: &str) -> (Vec<String>, Vec<String>) {
    let (mut audio, mut video) = (Vec::new(), Vec::new());
    let mut kind = None;
    for line in sdp.lines().map(|l| l.trim_end_matches('\r')) {
        if let Some(m) = line.strip_prefix("m=") {
            kind = m.split_whitespace().next().map(str::to_string);
        } else if let Some(mid) = line.strip_prefix("a=mid:") {
            match kind.as_deref() {
                Some("audio") => audio.push(mid.trim().to_string()),
                Some("video") => video.push(mid.trim().to_string()),
                _ => {}
            }
        }
    }
    (audio, video)
}

impl Mixing {
    /// The bindings that play a stream to one player (`binding`, a subscription): its
    /// audio from what the player hears of a mixed stream (without itself), its video
    /// from a transcoding when it asks for what the stream is not — another size or frame
    /// rate, or a codec its offer lacks. Without either, `binding` alone.
    pub async fn bindings_for(&self, binding: Binding, p: Playback<'_>) -> Vec<Binding> {
        let Binding::Subscribe { audio, video, .. } = &binding else {
            return vec![binding];
        };
        let (audio, video) = (*audio, *video);
        let Ok(info) = self.media.conference.stream(p.room, p.stream) else {
            return vec![binding];
        };
        let mut audio_from = None;
        if let (true, StreamKind::Mixed, Some((who, may_publish))) = (audio, info.kind, p.listener)
        {
            audio_from = self
                .listener_publication(p.room, p.stream, who, may_publish)
                .await;
        }
        if let (true, None, OrFalse::Some(a)) = (audio, &audio_from, &info.media.audio) {
            if let Some(codec) = audio_codec_for(a.format.codec, p.offer_sdp) {
                audio_from = self
                    .transcoding(p.room, p.stream, Transcoding::Audio(codec))
                    .await;
            }
        }
        let mut video_from = None;
        if let (true, OrFalse::Some(v)) = (video, &info.media.video) {
            if let Some(variant) = variant_for(v, p.transcode, p.offer_sdp) {
                video_from = self
                    .transcoding(p.room, p.stream, Transcoding::Video(variant))
                    .await;
            }
        }
        if audio_from.is_none() && video_from.is_none() {
            return vec![binding];
        }
        split_bindings(
            binding,
            audio_from.as_deref().unwrap_or(p.stream),
            video_from.as_deref().unwrap_or(p.stream),
            p.audio_mids,
            p.video_mids,
        )
    }
}
