//! The video side of a view: decoding inputs, composing them into the view's layout,
//! encoding the composite.

pub mod compose;
pub mod compositor;
pub mod frame;
pub mod h264;
pub mod layout;
pub mod vpx;

use frame::I420;
pub use vpx::Encoded;

/// A codec failed.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// libvpx refused (its error code).
    #[error("libvpx: {0} failed with error {1}")]
    Vpx(&'static str, u32),
    /// OpenH264 refused.
    #[error("openh264: {0}")]
    H264(String),
    /// A frame too large to hand to a codec.
    #[error("frame too large")]
    TooLarge,
    /// A picture of another size than the encoder's.
    #[error("picture size differs from the encoder's")]
    Size,
    /// A codec the mixer does not decode or encode.
    #[error("codec {0} is not supported by the mixer (VP8 and H.264 are)")]
    Unsupported(String),
}

/// A decoder for one input's video.
pub enum VideoDecoder {
    /// VP8.
    Vp8(vpx::Vp8Decoder),
    /// H.264.
    H264(h264::H264Decoder),
}

impl VideoDecoder {
    /// A decoder for `codec` (`vp8`, `h264`).
    pub fn new(codec: &str) -> Result<Self, CodecError> {
        match codec {
            "vp8" => Ok(VideoDecoder::Vp8(vpx::Vp8Decoder::new()?)),
            "h264" => Ok(VideoDecoder::H264(h264::H264Decoder::new()?)),
            other => Err(CodecError::Unsupported(other.to_string())),
        }
    }

    /// Decodes one frame.
    pub fn decode(&mut self, data: &[u8]) -> Result<Option<I420>, CodecError> {
        match self {
            VideoDecoder::Vp8(d) => d.decode(data),
            VideoDecoder::H264(d) => d.decode(data),
        }
    }
}

/// The encoder of a view's composite.
pub enum VideoEncoder {
    /// VP8.
    Vp8(vpx::Vp8Encoder),
    /// H.264.
    H264(Box<h264::H264Encoder>),
}

impl VideoEncoder {
    /// An encoder for `codec` (`vp8`, `h264`).
    pub fn new(
        codec: &str,
        width: u32,
        height: u32,
        fps: u32,
        kbps: u32,
        keyframe_every: u32,
    ) -> Result<Self, CodecError> {
        match codec {
            "vp8" => Ok(VideoEncoder::Vp8(vpx::Vp8Encoder::new(
                width,
                height,
                fps,
                kbps,
                keyframe_every,
            )?)),
            "h264" => Ok(VideoEncoder::H264(Box::new(h264::H264Encoder::new(
                width,
                height,
                fps,
                kbps,
                keyframe_every,
            )?))),
            other => Err(CodecError::Unsupported(other.to_string())),
        }
    }

    /// Encodes a picture; `keyframe` forces one.
    pub fn encode(&mut self, pic: &I420, keyframe: bool) -> Result<Vec<Encoded>, CodecError> {
        match self {
            VideoEncoder::Vp8(e) => e.encode(pic, keyframe),
            VideoEncoder::H264(e) => e.encode(pic, keyframe),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::frame::Yuv;
    use super::*;

    /// Encodes a few pictures of `colour` and decodes them again.
    fn round_trip(codec: &str, colour: Yuv) -> I420 {
        let mut enc = VideoEncoder::new(codec, 320, 240, 30, 500, 30).unwrap();
        let mut dec = VideoDecoder::new(codec).unwrap();
        let pic = I420::filled(320, 240, colour);
        let mut last = None;
        for i in 0..5 {
            for f in enc.encode(&pic, i == 0).unwrap() {
                assert_eq!(f.keyframe, i == 0, "frame {i}");
                if let Some(p) = dec.decode(&f.data).unwrap() {
                    last = Some(p);
                }
            }
        }
        last.expect("a decoded picture")
    }

    #[test]
    fn vp8_and_h264_encode_what_they_decode() {
        let colour = Yuv::from_rgb(200, 40, 40);
        for codec in ["vp8", "h264"] {
            let p = round_trip(codec, colour);
            assert_eq!((p.width, p.height), (320, 240), "{codec}");
            let got = p.at(160, 120).unwrap();
            assert!(
                (i32::from(got.y) - i32::from(colour.y)).abs() <= 3
                    && (i32::from(got.v) - i32::from(colour.v)).abs() <= 3,
                "{codec}: {got:?} for {colour:?}"
            );
        }
    }

    #[test]
    fn garbage_is_an_error_not_a_crash() {
        for codec in ["vp8", "h264"] {
            let mut dec = VideoDecoder::new(codec).unwrap();
            for junk in [
                &[][..],
                &[0u8; 3],
                &[0xff; 64],
                &[0, 0, 0, 1, 0x65, 0xff, 0xff],
            ] {
                let _ = dec.decode(junk);
            }
        }
        assert!(VideoDecoder::new("av1").is_err());
    }
}
