//! What the mixer is told of a room's view, and how its mixed stream is described.

use super::*;

fn ratio(r: &Ratio) -> f64 {
    r.value().unwrap_or(0.0)
}

fn region(r: &room::Region) -> api::Region {
    api::Region {
        id: r.id.clone(),
        left: ratio(&r.area.left),
        top: ratio(&r.area.top),
        width: ratio(&r.area.width),
        height: ratio(&r.area.height),
    }
}

fn video_codec(c: VideoCodec) -> &'static str {
    match c {
        VideoCodec::H264 => "h264",
        _ => "vp8",
    }
}

/// What the mixer needs of a room's view.
pub fn view_spec(room: &str, view: &room::View, pinned: &[(String, String)]) -> api::ViewSpec {
    let video = view.video.as_ref().map(|v| {
        let p = &v.parameters;
        let bitrate = p
            .bitrate
            .unwrap_or_else(|| default_bitrate_kbps(p.resolution, p.framerate, v.motion_factor));
        let byte = |c: i64| c.clamp(0, 255) as u8;
        api::VideoSpec {
            codec: video_codec(v.format.codec).into(),
            width: p.resolution.width,
            height: p.resolution.height,
            framerate: p.framerate,
            bitrate_kbps: bitrate,
            key_frame_interval: p.key_frame_interval,
            max_input: u32::try_from(v.max_input).unwrap_or(16),
            bg_color: [byte(v.bg_color.r), byte(v.bg_color.g), byte(v.bg_color.b)],
            fit: match v.layout.fit_policy {
                FitPolicy::Letterbox => api::Fit::Letterbox,
                FitPolicy::Crop => api::Fit::Crop,
            },
            keep_active_input_primary: v.keep_active_input_primary,
            layout: api::LayoutSpec {
                base: match v.layout.templates.base {
                    BaseTemplate::Fluid => api::BaseTemplate::Fluid,
                    BaseTemplate::Lecture => api::BaseTemplate::Lecture,
                    BaseTemplate::Void => api::BaseTemplate::Void,
                },
                custom: v
                    .layout
                    .templates
                    .custom
                    .iter()
                    .map(|c| api::CustomLayout {
                        primary: c.primary.clone(),
                        regions: c.region.iter().map(region).collect(),
                    })
                    .collect(),
                pinned: pinned.to_vec(),
            },
        }
    });
    api::ViewSpec {
        id: view_id(room, &view.label),
        room: room.to_string(),
        label: view.label.clone(),
        audio: Some(api::AudioSpec {
            codec: "opus".into(),
            vad: view.audio.vad,
        }),
        video,
    }
}

/// OWT's description of a view's mixed stream.
pub(super) fn mixed_stream(id: &str, view: &room::View) -> StreamInfo {
    StreamInfo {
        id: id.to_string(),
        kind: StreamKind::Mixed,
        media: StreamMedia {
            audio: OrFalse::Some(AudioInfo {
                status: None,
                source: None,
                format: AudioFormat::new(AudioCodec::Opus, Some(48_000), Some(2)),
                optional: None,
            }),
            video: match view.video.as_ref() {
                Some(v) => OrFalse::Some(VideoInfo {
                    status: None,
                    source: None,
                    format: v.format.clone(),
                    parameters: Some(VideoParameters {
                        resolution: Some(v.parameters.resolution),
                        framerate: Some(v.parameters.framerate),
                        bitrate: v.parameters.bitrate,
                        key_frame_interval: Some(v.parameters.key_frame_interval),
                    }),
                    optional: None,
                    rids: Vec::new(),
                }),
                None => OrFalse::False,
            },
        },
        info: StreamDetails::Mixed(MixedInfo {
            label: view.label.clone(),
            layout: Vec::new(),
        }),
    }
}
