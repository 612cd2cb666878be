//! What the dataplane reads inside RTP payloads (sans-IO): where keyframes start and how
//! large their pictures are, per codec.
//!
//! A forwarding SFU never decodes, but it must know two things of a video packet to
//! switch a subscription between simulcast layers without a broken picture: whether the
//! packet starts a keyframe (a switch may only happen there), and, for resolution caps and
//! stream descriptions, the picture size a keyframe announces. Each codec's payload format
//! has its own file: [`vp8`] (RFC 7741), [`vp9`] (RFC 9628), [`h264`] (RFC 6184, with an
//! SPS reader), [`h265`] (RFC 7798), [`av1`] (the AOM RTP payload format, with the
//! sequence header's size); [`red`] (RFC 2198) for audio and video; [`ulpfec`] (RFC 5109),
//! the forward error correction a browser sends inside video RED; and [`dependency`], the
//! dependency descriptor header extension that says an AV1 packet's layers.
//!
//! Every reader takes untrusted bytes: a short or malformed payload gives "not a keyframe,
//! size unknown", never a panic.

pub mod av1;
pub mod bits;
pub mod dependency;
pub mod h264;
pub mod h265;
pub mod red;
pub mod ulpfec;
pub mod vp8;
pub mod vp9;

use str0m::format::Codec;

/// What one video packet tells of its picture.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Picture {
    /// The packet is the first of a keyframe (decoding can start here).
    pub keyframe: bool,
    /// The picture size (width, height) the packet announces, when it carries one
    /// (keyframes of VP8, VP9 with a scalability structure, H.264 with its SPS, AV1 with
    /// its sequence header).
    pub size: Option<(u16, u16)>,
}

/// Reads a video packet's payload of `codec`. Audio and unknown codecs give the default
/// (no keyframe, no size).
pub fn inspect(codec: Codec, payload: &[u8]) -> Picture {
    match codec {
        Codec::Vp8 => vp8::inspect(payload),
        Codec::Vp9 => vp9::inspect(payload),
        Codec::H264 => h264::inspect(payload),
        Codec::H265 => h265::inspect(payload),
        Codec::Av1 => av1::inspect(payload),
        _ => Picture::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_never_panics_and_is_not_a_keyframe() {
        // Every prefix of some noise, through every reader.
        let mut state = 0x1234_5678_u32;
        let noise: Vec<u8> = (0..256)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                state as u8
            })
            .collect();
        for codec in [
            Codec::Vp8,
            Codec::Vp9,
            Codec::H264,
            Codec::H265,
            Codec::Av1,
            Codec::Opus,
        ] {
            for n in 0..noise.len() {
                let _ = inspect(codec, &noise[..n]);
            }
            assert_eq!(inspect(codec, &[]), Picture::default());
        }
    }
}
