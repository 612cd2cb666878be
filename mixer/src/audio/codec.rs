//! Audio decoders to the mixer's sample format (48 kHz mono, 20 ms frames) — opus, PCMU,
//! PCMA, G.722 — and the opus encoder of the mix.

use super::mix::FRAME;

/// An audio codec failed.
#[derive(Debug, thiserror::Error)]
pub enum AudioError {
    /// libopus refused.
    #[error("opus: {0}")]
    Opus(#[from] opus::Error),
    /// A codec the mixer does not decode.
    #[error("audio codec {0} is not supported by the mixer (opus, PCMU, PCMA and G.722 are)")]
    Unsupported(String),
}

/// A decoder for one input's audio.
pub enum AudioDecoder {
    /// Opus (any rate the sender uses; decoded at 48 kHz).
    Opus(opus::Decoder),
    /// G.711 µ-law, 8 kHz.
    Pcmu,
    /// G.711 A-law, 8 kHz.
    Pcma,
    /// G.722 at 64 kbit/s (16 kHz audio).
    G722(Box<ezk_g722::libg722::decoder::Decoder>),
}

impl AudioDecoder {
    /// A decoder for `codec` (`opus`, `pcmu`, `pcma`, `g722`).
    pub fn new(codec: &str) -> Result<Self, AudioError> {
        match codec {
            "opus" => Ok(AudioDecoder::Opus(opus::Decoder::new(
                48_000,
                opus::Channels::Mono,
            )?)),
            "pcmu" => Ok(AudioDecoder::Pcmu),
            "pcma" => Ok(AudioDecoder::Pcma),
            "g722" => Ok(AudioDecoder::G722(Box::new(
                ezk_g722::libg722::decoder::Decoder::new(
                    ezk_g722::libg722::Bitrate::Mode1_64000,
                    false,
                    false,
                ),
            ))),
            other => Err(AudioError::Unsupported(other.to_string())),
        }
    }

    /// Decodes one packet into `out` (48 kHz mono); the samples written.
    pub fn decode(&mut self, payload: &[u8], out: &mut [i16]) -> Result<usize, AudioError> {
        match self {
            AudioDecoder::Opus(d) => Ok(d.decode(payload, out, false)?),
            AudioDecoder::Pcmu => Ok(upsample_g711(payload, out, ulaw)),
            AudioDecoder::Pcma => Ok(upsample_g711(payload, out, alaw)),
            AudioDecoder::G722(d) => {
                // 16 kHz to 48 kHz: each sample held for three.
                let pcm = d.decode(payload);
                let n = pcm.len().min(out.len() / 3);
                for (i, s) in pcm[..n].iter().enumerate() {
                    out[i * 3..i * 3 + 3].fill(*s);
                }
                Ok(n * 3)
            }
        }
    }
}

/// 8 kHz G.711 to 48 kHz: each sample held for six (a cheap, adequate resampler for
/// narrowband speech).
fn upsample_g711(payload: &[u8], out: &mut [i16], law: fn(u8) -> i16) -> usize {
    let n = payload.len().min(out.len() / 6);
    for (i, b) in payload[..n].iter().enumerate() {
        out[i * 6..i * 6 + 6].fill(law(*b));
    }
    n * 6
}

/// G.711 µ-law to linear.
pub fn ulaw(b: u8) -> i16 {
    let b = !b;
    let t = ((i32::from(b & 0x0f) << 3) + 0x84) << ((b & 0x70) >> 4);
    (if b & 0x80 != 0 { 0x84 - t } else { t - 0x84 }) as i16
}

/// G.711 A-law to linear.
pub fn alaw(b: u8) -> i16 {
    let b = b ^ 0x55;
    let seg = (b & 0x70) >> 4;
    let mut t = i32::from(b & 0x0f) << 4;
    t = match seg {
        0 => t + 8,
        1 => t + 0x108,
        s => (t + 0x108) << (s - 1),
    };
    (if b & 0x80 != 0 { t } else { -t }) as i16
}

/// The opus encoder of a view's mix (48 kHz mono, 20 ms frames, VoIP tuning).
pub struct MixEncoder {
    inner: opus::Encoder,
    out: Vec<u8>,
}

impl MixEncoder {
    /// An encoder at `bps`.
    pub fn new(bps: i32) -> Result<Self, AudioError> {
        let mut inner = opus::Encoder::new(48_000, opus::Channels::Mono, opus::Application::Voip)?;
        inner.set_bitrate(opus::Bitrate::Bits(bps))?;
        inner.set_inband_fec(true)?;
        Ok(MixEncoder {
            inner,
            out: vec![0; 1500],
        })
    }

    /// Encodes one frame of [`FRAME`] samples.
    pub fn encode(&mut self, frame: &[i16]) -> Result<&[u8], AudioError> {
        let n = self
            .inner
            .encode(&frame[..FRAME.min(frame.len())], &mut self.out)?;
        Ok(&self.out[..n])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn g711_decodes_the_known_values() {
        assert_eq!(ulaw(0xff), 0);
        assert_eq!(ulaw(0x80), 32_124);
        assert_eq!(ulaw(0x00), -32_124);
        assert_eq!(alaw(0xd5), 8);
        assert_eq!(alaw(0x55), -8);
        assert_eq!(alaw(0xaa), 32_256);
        let mut out = [0i16; 960];
        assert_eq!(
            AudioDecoder::new("pcmu")
                .unwrap()
                .decode(&[0x80; 160], &mut out)
                .unwrap(),
            960
        );
        assert_eq!(out[959], 32_124);
    }

    #[test]
    fn g722_decodes_a_tone() {
        let tone: Vec<i16> = (0..320 * 10)
            .map(|i| {
                ((i as f64 * 1000.0 * 2.0 * std::f64::consts::PI / 16_000.0).sin() * 8000.0) as i16
            })
            .collect();
        let mut enc = ezk_g722::libg722::encoder::Encoder::new(
            ezk_g722::libg722::Bitrate::Mode1_64000,
            false,
            false,
        );
        let mut dec = AudioDecoder::new("g722").unwrap();
        let mut out = vec![0i16; FRAME];
        let mut got = Vec::new();
        for f in tone.chunks(320) {
            let packet = enc.encode(f);
            assert_eq!(packet.len(), 160, "20 ms of G.722 at 64 kbit/s");
            assert_eq!(dec.decode(&packet, &mut out).unwrap(), FRAME);
            got.extend_from_slice(&out);
        }
        let tail = &got[got.len() - FRAME * 4..];
        let share = crate::audio::mixer::tests::share_of(tail, 1000.0);
        assert!(
            share > 0.8,
            "the 1 kHz tone is {share} of what G.722 decodes"
        );
        // Garbage decodes to noise, not a crash.
        let _ = dec.decode(&[0xff; 7], &mut out);
    }

    #[test]
    fn opus_encodes_what_it_decodes() {
        let tone: Vec<i16> = (0..FRAME * 10)
            .map(|i| {
                ((i as f64 * 440.0 * 2.0 * std::f64::consts::PI / 48_000.0).sin() * 8000.0) as i16
            })
            .collect();
        let mut enc = MixEncoder::new(32_000).unwrap();
        let mut dec = AudioDecoder::new("opus").unwrap();
        let mut out = vec![0i16; FRAME];
        let mut energy = 0.0;
        for f in tone.chunks(FRAME) {
            let packet = enc.encode(f).unwrap().to_vec();
            assert_eq!(dec.decode(&packet, &mut out).unwrap(), FRAME);
            energy = out.iter().map(|s| f64::from(*s).powi(2)).sum::<f64>() / FRAME as f64;
        }
        assert!(energy.sqrt() > 4000.0, "rms {}", energy.sqrt());
        assert!(AudioDecoder::new("g729").is_err());
        // Garbage is an error, not a crash.
        let _ = dec.decode(&[0xff; 3], &mut out);
    }
}
