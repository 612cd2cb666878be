//! What a publisher sends: real encoder output (FFmpeg's libvpx, libx264 and libopus),
//! encoded once into a cache directory, split into RTP payloads once, and looped.
//!
//! Every payload a publisher sends carries an 8-byte trailer with its send time (see
//! [`TRAILER`]), so a subscriber of the same process measures each packet's trip through
//! the server exactly. Servers under test forward payloads untouched, so this costs them
//! nothing; a real decoder would see 8 stray bytes per packet.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::packetize;

/// Bytes appended to every payload: the send time in microseconds since the run's epoch.
pub const TRAILER: usize = 8;

/// The video codec publishers send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VideoCodec {
    /// VP8 (libvpx, realtime, CBR).
    Vp8,
    /// H.264 constrained baseline (libx264 veryfast, zerolatency, CBR-ish).
    H264,
}

impl std::str::FromStr for VideoCodec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "vp8" => Ok(VideoCodec::Vp8),
            "h264" => Ok(VideoCodec::H264),
            other => Err(format!("unknown video codec {other:?}: use vp8 or h264")),
        }
    }
}

/// One video frame, already split into RTP payloads (without the trailer).
#[derive(Debug)]
pub struct Frame {
    /// An intra frame: a decoder can start here.
    pub keyframe: bool,
    /// The RTP payloads; the last one carries the marker bit.
    pub payloads: Vec<Vec<u8>>,
}

/// A looped clip: video frames at `fps` and 20 ms opus packets.
#[derive(Debug)]
pub struct Media {
    /// The video codec.
    pub codec: VideoCodec,
    /// Video frames per second.
    pub fps: u32,
    /// The video frames, the first one a keyframe.
    pub video: Vec<Frame>,
    /// Opus packets of 20 ms each.
    pub audio: Vec<Vec<u8>>,
    /// The mean video bitrate of the clip, bits per second.
    pub video_bps: u64,
}

/// What a publisher sends: one clip, or one per simulcast layer (lowest first). Audio is
/// the first clip's.
#[derive(Debug)]
pub struct Source {
    /// The clips; several: a simulcast publication, the `rid`s [`RIDS`] in this order.
    pub layers: Vec<Media>,
}

/// The `rid`s of a simulcast publisher's layers, lowest first.
pub const RIDS: [&str; 3] = ["q", "h", "f"];

impl Source {
    /// The clip of the top layer (the only one without simulcast).
    pub fn top(&self) -> Option<&Media> {
        self.layers.last()
    }

    /// Whether it sends simulcast layers.
    pub fn simulcast(&self) -> bool {
        self.layers.len() > 1
    }

    /// Encodes (once, cached) and loads the clips: `kbps` at the top, and with
    /// `simulcast` two lower layers at a third and an eighth of it (each at the
    /// resolution its bitrate gets, see [`load`]).
    pub fn load(
        dir: &Path,
        codec: VideoCodec,
        kbps: u32,
        fps: u32,
        mtu: usize,
        simulcast: bool,
    ) -> Result<Source, MediaError> {
        let rates = if simulcast {
            vec![(kbps / 8).max(60), (kbps / 3).max(120), kbps]
        } else {
            vec![kbps]
        };
        let layers = rates
            .into_iter()
            .map(|r| load(dir, codec, r, fps, mtu))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Source { layers })
    }
}

/// Why the media could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    /// FFmpeg is missing or failed.
    #[error("encoding the clip with ffmpeg failed ({0}); install Debian's ffmpeg (scripts/setup.sh does)")]
    Ffmpeg(String),
    /// Reading or writing the cache failed.
    #[error("media cache {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The encoded file is not what was expected.
    #[error("the encoded clip {0} is malformed: {1}")]
    Malformed(PathBuf, &'static str),
}

/// How long the looped clip is.
const CLIP_SECONDS: u32 = 10;

/// Encodes (once, cached in `dir`) and loads a clip at `kbps` and `fps`.
pub fn load(
    dir: &Path,
    codec: VideoCodec,
    kbps: u32,
    fps: u32,
    mtu: usize,
) -> Result<Media, MediaError> {
    std::fs::create_dir_all(dir).map_err(|source| MediaError::Io {
        path: dir.into(),
        source,
    })?;
    let (w, h) = match kbps {
        0..=350 => (320, 240),
        351..=1200 => (640, 360),
        1201..=2200 => (960, 540),
        _ => (1280, 720),
    };
    let gop = fps * 2;
    let input = format!("-f lavfi -i testsrc2=size={w}x{h}:rate={fps} -t {CLIP_SECONDS}");
    let max_payload = mtu.saturating_sub(TRAILER + 40).max(200);
    let (file, encoder) = match codec {
        VideoCodec::Vp8 => (
            dir.join(format!("vp8-{kbps}k-{fps}fps.ivf")),
            format!(
                "-c:v libvpx -b:v {kbps}k -minrate {kbps}k -maxrate {kbps}k -g {gop} \
                 -deadline realtime -cpu-used 8 -f ivf"
            ),
        ),
        VideoCodec::H264 => (
            dir.join(format!("h264-{kbps}k-{fps}fps.h264")),
            format!(
                "-c:v libx264 -preset veryfast -tune zerolatency -profile:v baseline \
                 -pix_fmt yuv420p -b:v {kbps}k -maxrate {kbps}k -bufsize {}k -g {gop} \
                 -x264-params aud=1:repeat-headers=1 -bsf:v h264_mp4toannexb -f h264",
                kbps / 2
            ),
        ),
    };
    encode(&file, &format!("{input} {encoder}"))?;
    let data = read(&file)?;
    let video = match codec {
        VideoCodec::Vp8 => parse_ivf(&file, &data, max_payload)?,
        VideoCodec::H264 => parse_annexb(&data, max_payload),
    };
    if video.is_empty() || !video[0].keyframe {
        return Err(MediaError::Malformed(
            file,
            "no video frames, or the first is not a keyframe",
        ));
    }
    let audio_file = dir.join("opus-32k.ogg");
    encode(
        &audio_file,
        &format!(
            "-f lavfi -i sine=frequency=440:sample_rate=48000 -t {CLIP_SECONDS} -c:a libopus \
             -b:a 32k -frame_duration 20 -application voip -f ogg"
        ),
    )?;
    let audio = parse_ogg(&read(&audio_file)?);
    if audio.is_empty() {
        return Err(MediaError::Malformed(audio_file, "no opus packets"));
    }
    let bytes: usize = video
        .iter()
        .flat_map(|f| f.payloads.iter())
        .map(|p| p.len())
        .sum();
    let video_bps = (bytes as u64 * 8 * fps as u64) / video.len().max(1) as u64;
    Ok(Media {
        codec,
        fps,
        video,
        audio,
        video_bps,
    })
}

fn read(path: &Path) -> Result<Vec<u8>, MediaError> {
    std::fs::read(path).map_err(|source| MediaError::Io {
        path: path.into(),
        source,
    })
}

/// Runs ffmpeg with `args` (separated by white space; no argument holds any) into a
/// temporary file and renames it, unless `out` already exists.
fn encode(out: &Path, args: &str) -> Result<(), MediaError> {
    if out.exists() {
        return Ok(());
    }
    let tmp = out.with_extension(format!("tmp{}", std::process::id()));
    let result = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y"])
        .args(args.split_whitespace())
        .arg(&tmp)
        .output()
        .map_err(|e| MediaError::Ffmpeg(e.to_string()))?;
    if !result.status.success() {
        let _ = std::fs::remove_file(&tmp);
        return Err(MediaError::Ffmpeg(
            String::from_utf8_lossy(&result.stderr).trim().to_string(),
        ));
    }
    std::fs::rename(&tmp, out).map_err(|source| MediaError::Io {
        path: out.into(),
        source,
    })
}

/// Frames of an IVF file, each split into VP8 RTP payloads.
fn parse_ivf(path: &Path, data: &[u8], max_payload: usize) -> Result<Vec<Frame>, MediaError> {
    if data.len() < 32 || &data[..4] != b"DKIF" {
        return Err(MediaError::Malformed(path.into(), "not an IVF file"));
    }
    let header_len = u16::from_le_bytes([data[6], data[7]]) as usize;
    let mut at = header_len.max(32);
    let mut frames = Vec::new();
    while at + 12 <= data.len() {
        let size =
            u32::from_le_bytes([data[at], data[at + 1], data[at + 2], data[at + 3]]) as usize;
        at += 12;
        let Some(frame) = data.get(at..at + size) else {
            break;
        };
        at += size;
        if frame.is_empty() {
            continue;
        }
        frames.push(Frame {
            keyframe: frame[0] & 1 == 0,
            payloads: packetize::vp8(frame, max_payload),
        });
    }
    Ok(frames)
}

/// Access units of an Annex B stream written with access unit delimiters.
fn parse_annexb(data: &[u8], max_payload: usize) -> Vec<Frame> {
    let mut frames = Vec::new();
    let mut nals: Vec<&[u8]> = Vec::new();
    let mut flush = |nals: &mut Vec<&[u8]>| {
        if nals.is_empty() {
            return;
        }
        let keyframe = nals.iter().any(|n| n[0] & 0x1f == 5);
        frames.push(Frame {
            keyframe,
            payloads: packetize::h264(nals, max_payload),
        });
        nals.clear();
    };
    for nal in split_annexb(data) {
        if nal.is_empty() {
            continue;
        }
        if nal[0] & 0x1f == 9 {
            flush(&mut nals);
            continue;
        }
        nals.push(nal);
    }
    flush(&mut nals);
    frames
}

/// NAL units between Annex B start codes.
fn split_annexb(data: &[u8]) -> Vec<&[u8]> {
    let mut starts = Vec::new();
    let mut i = 0;
    while i + 3 <= data.len() {
        if data[i] == 0 && data[i + 1] == 0 && data[i + 2] == 1 {
            starts.push((i, i + 3));
            i += 3;
        } else {
            i += 1;
        }
    }
    let mut out = Vec::with_capacity(starts.len());
    for (k, &(_, body)) in starts.iter().enumerate() {
        let mut end = starts.get(k + 1).map(|s| s.0).unwrap_or(data.len());
        // A four-byte start code leaves a zero before the next three-byte one.
        while end > body && data[end - 1] == 0 && k + 1 < starts.len() {
            end -= 1;
        }
        out.push(&data[body..end]);
    }
    out
}

/// Opus packets of an Ogg Opus file (the two header packets skipped).
fn parse_ogg(data: &[u8]) -> Vec<Vec<u8>> {
    let mut packets = Vec::new();
    let mut current = Vec::new();
    let mut at = 0;
    while at + 27 <= data.len() && &data[at..at + 4] == b"OggS" {
        let segments = data[at + 26] as usize;
        let table = at + 27;
        let Some(lacing) = data.get(table..table + segments) else {
            break;
        };
        let mut body = table + segments;
        for &len in lacing {
            let Some(seg) = data.get(body..body + len as usize) else {
                return packets;
            };
            current.extend_from_slice(seg);
            body += len as usize;
            if len < 255 {
                packets.push(std::mem::take(&mut current));
            }
        }
        at = body;
    }
    packets
        .into_iter()
        .filter(|p| !p.starts_with(b"OpusHead") && !p.starts_with(b"OpusTags") && !p.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn annexb_splits_on_three_and_four_byte_start_codes() {
        let data = [
            0, 0, 0, 1, 9, 0x10, 0, 0, 1, 0x67, 1, 2, 0, 0, 0, 1, 0x65, 7, 7,
        ];
        let nals = split_annexb(&data);
        assert_eq!(
            nals,
            vec![&[9u8, 0x10][..], &[0x67, 1, 2][..], &[0x65, 7, 7][..]]
        );
        let frames = parse_annexb(&data, 1000);
        assert_eq!(frames.len(), 1);
        assert!(frames[0].keyframe);
    }

    #[test]
    fn ogg_packets_span_segments() {
        // One page: OpusHead (8 bytes), then a 300-byte packet over two segments.
        let mut page = b"OggS".to_vec();
        page.extend_from_slice(&[0; 22]);
        page.push(3);
        page.extend_from_slice(&[8, 255, 45]);
        page.extend_from_slice(b"OpusHead");
        page.extend_from_slice(&[7u8; 300]);
        let packets = parse_ogg(&page);
        assert_eq!(packets.len(), 1);
        assert_eq!(packets[0].len(), 300);
    }
}
