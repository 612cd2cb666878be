//! H.264 through OpenH264 (Cisco's, built from source by the `openh264` crate): a decoder
//! of Annex B access units and a real-time constrained-baseline encoder.

use super::frame::I420;
use super::vpx::Encoded;
use super::CodecError;
use openh264::encoder::{
    BitRate, EncoderConfig, FrameRate, FrameType, IntraFramePeriod, RateControlMode, UsageType,
};
use openh264::formats::YUVSource;
use openh264::OpenH264API;

/// An H.264 decoder.
pub struct H264Decoder {
    inner: openh264::decoder::Decoder,
}

impl H264Decoder {
    /// A new decoder.
    pub fn new() -> Result<Self, CodecError> {
        Ok(H264Decoder {
            inner: openh264::decoder::Decoder::new()
                .map_err(|e| CodecError::H264(e.to_string()))?,
        })
    }

    /// Decodes one access unit (Annex B); the picture it shows, if any.
    pub fn decode(&mut self, data: &[u8]) -> Result<Option<I420>, CodecError> {
        match self.inner.decode(data) {
            Ok(Some(yuv)) => {
                let (w, h) = yuv.dimensions();
                let (sy, su, sv) = yuv.strides();
                Ok(I420::from_planes(
                    w as u32,
                    h as u32,
                    [(yuv.y(), sy), (yuv.u(), su), (yuv.v(), sv)],
                ))
            }
            Ok(None) => Ok(None),
            Err(e) => Err(CodecError::H264(e.to_string())),
        }
    }
}

/// A picture as OpenH264 reads it.
struct Source<'a>(&'a I420);

impl YUVSource for Source<'_> {
    fn dimensions(&self) -> (usize, usize) {
        (self.0.width as usize, self.0.height as usize)
    }

    fn strides(&self) -> (usize, usize, usize) {
        let c = super::frame::chroma(self.0.width) as usize;
        (self.0.width as usize, c, c)
    }

    fn y(&self) -> &[u8] {
        &self.0.y
    }

    fn u(&self) -> &[u8] {
        &self.0.u
    }

    fn v(&self) -> &[u8] {
        &self.0.v
    }
}

/// A real-time H.264 encoder for one picture size.
pub struct H264Encoder {
    inner: openh264::encoder::Encoder,
    width: u32,
    height: u32,
}

impl H264Encoder {
    /// An encoder of `width × height` at `fps`, `kbps`, a keyframe at least every
    /// `keyframe_every` frames.
    pub fn new(
        width: u32,
        height: u32,
        fps: u32,
        kbps: u32,
        keyframe_every: u32,
    ) -> Result<Self, CodecError> {
        let config = EncoderConfig::new()
            .bitrate(BitRate::from_bps(kbps.max(30) * 1000))
            .max_frame_rate(FrameRate::from_hz(fps.max(1) as f32))
            .usage_type(UsageType::CameraVideoRealTime)
            .rate_control_mode(RateControlMode::Bitrate)
            .skip_frames(true)
            .intra_frame_period(IntraFramePeriod::from_num_frames(keyframe_every.max(1)))
            .num_threads(1);
        let inner = openh264::encoder::Encoder::with_api_config(OpenH264API::from_source(), config)
            .map_err(|e| CodecError::H264(e.to_string()))?;
        Ok(H264Encoder {
            inner,
            width,
            height,
        })
    }

    /// Encodes a picture of the encoder's size (Annex B); `keyframe` forces an IDR.
    pub fn encode(&mut self, pic: &I420, keyframe: bool) -> Result<Vec<Encoded>, CodecError> {
        if pic.width != self.width || pic.height != self.height {
            return Err(CodecError::Size);
        }
        if keyframe {
            self.inner.force_intra_frame();
        }
        let bs = self
            .inner
            .encode(&Source(pic))
            .map_err(|e| CodecError::H264(e.to_string()))?;
        let key = matches!(bs.frame_type(), FrameType::IDR | FrameType::I);
        let data = bs.to_vec();
        Ok(if data.is_empty() {
            Vec::new()
        } else {
            vec![Encoded {
                data,
                keyframe: key,
            }]
        })
    }
}
