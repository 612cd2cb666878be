//! Media formats, named resolutions and OWT's default bitrate table.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// An audio codec name as OWT's API spells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum AudioCodec {
    /// Opus.
    Opus,
    /// G.711 µ-law.
    Pcmu,
    /// G.711 A-law.
    Pcma,
    /// G.722.
    G722,
    /// iSAC.
    #[serde(alias = "iSAC")]
    Isac,
    /// iLBC.
    #[serde(alias = "iLBC")]
    Ilbc,
    /// AAC.
    Aac,
    /// AC-3.
    Ac3,
    /// Nellymoser.
    Nellymoser,
}

/// A video codec name as OWT's API spells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum VideoCodec {
    /// H.264.
    H264,
    /// H.265.
    H265,
    /// VP8.
    Vp8,
    /// VP9.
    Vp9,
    /// AV1.
    Av1,
}

/// An H.264 profile: constrained baseline, baseline, main, high.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
pub enum H264Profile {
    /// Constrained baseline.
    #[serde(rename = "CB")]
    ConstrainedBaseline,
    /// Baseline.
    #[serde(rename = "B")]
    Baseline,
    /// Main.
    #[serde(rename = "M")]
    Main,
    /// High.
    #[serde(rename = "H")]
    High,
}

/// OWT's `object(AudioFormat)`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AudioFormat {
    /// The codec.
    pub codec: AudioCodec,
    /// Samples per second, where the codec has a choice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample_rate: Option<u32>,
    /// Channels, where the codec has a choice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel_num: Option<u32>,
}

impl AudioFormat {
    /// A format with codec, sample rate and channels.
    pub const fn new(
        codec: AudioCodec,
        sample_rate: Option<u32>,
        channel_num: Option<u32>,
    ) -> Self {
        AudioFormat {
            codec,
            sample_rate,
            channel_num,
        }
    }
}

/// OWT's `object(VideoFormat)`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VideoFormat {
    /// The codec.
    pub codec: VideoCodec,
    /// For H.264 only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<H264Profile>,
}

impl VideoFormat {
    /// A format with codec and optional H.264 profile.
    pub const fn new(codec: VideoCodec, profile: Option<H264Profile>) -> Self {
        VideoFormat { codec, profile }
    }
}

/// `object(Resolution)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Resolution {
    /// Pixels.
    pub width: u32,
    /// Pixels.
    pub height: u32,
}

impl Default for Resolution {
    fn default() -> Self {
        Resolution {
            width: 640,
            height: 480,
        }
    }
}

/// A named resolution with OWT's default bitrate for it (kbit/s at 30 fps), from the
/// table in the OWT service description; `qvga` and the portrait/square sizes are OWT's
/// extra names.
pub struct NamedResolution {
    /// OWT's name, e.g. `hd720p`.
    pub name: &'static str,
    /// Pixels.
    pub width: u32,
    /// Pixels.
    pub height: u32,
    /// Default bitrate in kbit/s, where OWT's table gives one.
    pub default_kbps: Option<u32>,
}

/// OWT's named resolutions and default bitrates.
pub const NAMED_RESOLUTIONS: &[NamedResolution] = &[
    NamedResolution {
        name: "cif",
        width: 352,
        height: 288,
        default_kbps: Some(442),
    },
    NamedResolution {
        name: "qcif",
        width: 176,
        height: 144,
        default_kbps: Some(132),
    },
    NamedResolution {
        name: "sif",
        width: 320,
        height: 240,
        default_kbps: Some(400),
    },
    NamedResolution {
        name: "qvga",
        width: 320,
        height: 240,
        default_kbps: Some(400),
    },
    NamedResolution {
        name: "vga",
        width: 640,
        height: 480,
        default_kbps: Some(800),
    },
    NamedResolution {
        name: "svga",
        width: 800,
        height: 600,
        default_kbps: Some(1137),
    },
    NamedResolution {
        name: "xga",
        width: 1024,
        height: 768,
        default_kbps: Some(1736),
    },
    NamedResolution {
        name: "hvga",
        width: 480,
        height: 320,
        default_kbps: Some(533),
    },
    NamedResolution {
        name: "hd720p",
        width: 1280,
        height: 720,
        default_kbps: Some(2000),
    },
    NamedResolution {
        name: "hd1080p",
        width: 1920,
        height: 1080,
        default_kbps: Some(4000),
    },
    NamedResolution {
        name: "uhd_4k",
        width: 3840,
        height: 2160,
        default_kbps: Some(16000),
    },
    NamedResolution {
        name: "r720x720",
        width: 720,
        height: 720,
        default_kbps: None,
    },
    NamedResolution {
        name: "r720x1080",
        width: 720,
        height: 1080,
        default_kbps: None,
    },
    NamedResolution {
        name: "r1080x1920",
        width: 1080,
        height: 1920,
        default_kbps: None,
    },
];

/// Looks up a named resolution.
pub fn named_resolution(name: &str) -> Option<&'static NamedResolution> {
    NAMED_RESOLUTIONS.iter().find(|r| r.name == name)
}

/// OWT's default bitrate for a view: the table's figure for the nearest resolution by
/// pixel count (interpolated by area between table rows), scaled by frame rate relative
/// to 30 fps and by the view's motion factor. kbit/s.
pub fn default_bitrate_kbps(resolution: Resolution, framerate: u32, motion_factor: f64) -> u32 {
    let area = f64::from(resolution.width) * f64::from(resolution.height);
    let mut rows: Vec<(f64, f64)> = NAMED_RESOLUTIONS
        .iter()
        .filter_map(|r| {
            r.default_kbps
                .map(|k| (f64::from(r.width) * f64::from(r.height), f64::from(k)))
        })
        .collect();
    rows.sort_by(|a, b| a.0.total_cmp(&b.0));
    let base = match rows.iter().position(|(a, _)| *a >= area) {
        Some(0) => rows[0].1 * area / rows[0].0,
        Some(i) => {
            let (a0, k0) = rows[i - 1];
            let (a1, k1) = rows[i];
            k0 + (k1 - k0) * (area - a0) / (a1 - a0)
        }
        None => {
            let (a, k) = rows[rows.len() - 1];
            k * area / a
        }
    };
    let kbps = base * (f64::from(framerate) / 30.0) * motion_factor;
    kbps.round().max(1.0) as u32
}

/// Frame rates OWT accepts.
pub const FRAMERATES: &[u32] = &[6, 12, 15, 24, 30, 48, 60];
/// Key frame intervals OWT accepts, in seconds.
pub const KEY_FRAME_INTERVALS: &[u32] = &[100, 30, 5, 2, 1];

/// OWT's default input audio formats.
pub fn default_audio_in() -> Vec<AudioFormat> {
    use AudioCodec::*;
    vec![
        AudioFormat::new(Opus, Some(48000), Some(2)),
        AudioFormat::new(Isac, Some(16000), None),
        AudioFormat::new(Isac, Some(32000), None),
        AudioFormat::new(G722, Some(16000), Some(1)),
        AudioFormat::new(Pcma, None, None),
        AudioFormat::new(Pcmu, None, None),
        AudioFormat::new(Aac, None, None),
        AudioFormat::new(Ac3, None, None),
        AudioFormat::new(Nellymoser, None, None),
        AudioFormat::new(Ilbc, None, None),
    ]
}

/// OWT's default output audio formats.
pub fn default_audio_out() -> Vec<AudioFormat> {
    let mut v = default_audio_in();
    for f in &mut v {
        if f.codec == AudioCodec::Aac {
            f.sample_rate = Some(48000);
            f.channel_num = Some(2);
        }
    }
    v
}

/// OWT's default input video formats.
pub fn default_video_in() -> Vec<VideoFormat> {
    vec![
        VideoFormat::new(VideoCodec::H264, None),
        VideoFormat::new(VideoCodec::Vp8, None),
        VideoFormat::new(VideoCodec::Vp9, None),
    ]
}

/// OWT's default output video formats.
pub fn default_video_out() -> Vec<VideoFormat> {
    vec![
        VideoFormat::new(VideoCodec::Vp8, None),
        VideoFormat::new(VideoCodec::H264, Some(H264Profile::ConstrainedBaseline)),
        VideoFormat::new(VideoCodec::H264, Some(H264Profile::Baseline)),
        VideoFormat::new(VideoCodec::Vp9, None),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bitrate_table_rows_come_back_at_30fps() {
        for r in NAMED_RESOLUTIONS {
            if let Some(k) = r.default_kbps {
                let res = Resolution {
                    width: r.width,
                    height: r.height,
                };
                assert_eq!(default_bitrate_kbps(res, 30, 1.0), k, "{}", r.name);
            }
        }
    }

    #[test]
    fn bitrate_scales_with_framerate_and_motion() {
        let vga = Resolution {
            width: 640,
            height: 480,
        };
        assert_eq!(default_bitrate_kbps(vga, 15, 1.0), 400);
        assert_eq!(default_bitrate_kbps(vga, 24, 0.8), 512);
        let mid = Resolution {
            width: 960,
            height: 540,
        };
        let k = default_bitrate_kbps(mid, 30, 1.0);
        assert!(k > 1137 && k < 1736, "{k}");
    }
}
