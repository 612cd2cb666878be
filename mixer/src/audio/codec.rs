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

/// G.711 µ-law from linear (ITU-T G.711's segment search on the 14-bit value).
pub fn ulaw_encode(sample: i16) -> u8 {
    const ENDS: [i32; 8] = [0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF];
    let mut v = i32::from(sample) >> 2;
    let mask: i32 = if v < 0 {
        v = -v;
        0x7F
    } else {
        0xFF
    };
    v = v.min(8159) + (0x84 >> 2);
    let seg = ENDS.iter().position(|e| v <= *e).unwrap_or(8) as i32;
    let u = if seg >= 8 {
        0x7F
    } else {
        (seg << 4) | ((v >> (seg + 1)) & 0x0F)
    };
    (u ^ mask) as u8
}

/// G.711 A-law from linear (ITU-T G.711's segment search on the 13-bit value).
pub fn alaw_encode(sample: i16) -> u8 {
    const ENDS: [i32; 8] = [0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF];
    let mut v = i32::from(sample) >> 3;
    let mask: i32 = if v >= 0 {
        0xD5
    } else {
        v = -v - 1;
        0x55
    };
    let seg = ENDS.iter().position(|e| v <= *e).unwrap_or(8) as i32;
    let a = if seg >= 8 {
        0x7F
    } else {
        let m = if seg < 2 {
            (v >> 1) & 0x0F
        } else {
            (v >> seg) & 0x0F
        };
        (seg << 4) | m
    };
    (a ^ mask) as u8
}

/// The mean of every `n` samples (a 48 kHz frame down to 8 or 16 kHz; the averaging is
/// the low-pass).
fn decimate(frame: &[i16], n: usize) -> impl Iterator<Item = i16> + '_ {
    frame
        .chunks(n)
        .map(move |c| (c.iter().map(|s| i32::from(*s)).sum::<i32>() / n as i32) as i16)
}

enum Encoding {
    Opus(opus::Encoder),
    Pcmu,
    Pcma,
    G722(Box<ezk_g722::libg722::encoder::Encoder>),
}

/// The encoder of a view's mix (48 kHz mono, 20 ms frames in): opus (VoIP tuning), or
/// PCMU, PCMA, G.722 for players and transcodings that ask for them.
pub struct MixEncoder {
    inner: Encoding,
    out: Vec<u8>,
}

impl MixEncoder {
    /// An opus encoder at `bps`.
    pub fn new(bps: i32) -> Result<Self, AudioError> {
        Self::for_codec("opus", bps)
    }

    /// An encoder of `codec` (`opus` at `bps`, `pcmu`, `pcma`, `g722`).
    pub fn for_codec(codec: &str, bps: i32) -> Result<Self, AudioError> {
        let inner = match codec {
            "opus" => {
                let mut e =
                    opus::Encoder::new(48_000, opus::Channels::Mono, opus::Application::Voip)?;
                e.set_bitrate(opus::Bitrate::Bits(bps))?;
                e.set_inband_fec(true)?;
                Encoding::Opus(e)
            }
            "pcmu" => Encoding::Pcmu,
            "pcma" => Encoding::Pcma,
            "g722" => Encoding::G722(Box::new(ezk_g722::libg722::encoder::Encoder::new(
                ezk_g722::libg722::Bitrate::Mode1_64000,
                false,
                false,
            ))),
            other => return Err(AudioError::Unsupported(other.to_string())),
        };
        Ok(MixEncoder {
            inner,
            out: vec![0; 1500],
        })
    }

    /// The RTP clock rate of its packets (opus 48 kHz; G.711 and G.722 8 kHz).
    pub fn clock_rate(&self) -> u32 {
        match self.inner {
            Encoding::Opus(_) => 48_000,
            _ => 8_000,
        }
    }

    /// Encodes one frame of [`FRAME`] samples.
    pub fn encode(&mut self, frame: &[i16]) -> Result<&[u8], AudioError> {
        let frame = &frame[..FRAME.min(frame.len())];
        match &mut self.inner {
            Encoding::Opus(e) => {
                let n = e.encode(frame, &mut self.out)?;
                Ok(&self.out[..n])
            }
            Encoding::Pcmu | Encoding::Pcma => {
                let law = if matches!(self.inner, Encoding::Pcmu) {
                    ulaw_encode
                } else {
                    alaw_encode
                };
                self.out.clear();
                self.out.extend(decimate(frame, 6).map(law));
                Ok(&self.out)
            }
            Encoding::G722(e) => {
                let pcm: Vec<i16> = decimate(frame, 3).collect();
                self.out = e.encode(&pcm);
                Ok(&self.out)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn g711_encodes_what_it_decodes() {
        for s in [
            0i16,
            1,
            -1,
            100,
            -100,
            1000,
            -1000,
            12_345,
            -12_345,
            32_000,
            i16::MIN,
            i16::MAX,
        ] {
            for (enc, dec) in [
                (ulaw_encode as fn(i16) -> u8, ulaw as fn(u8) -> i16),
                (alaw_encode, alaw),
            ] {
                let back = i32::from(dec(enc(s)));
                // Within the segment's step: a few percent of the value, or 16 near 0.
                let tolerance = (i32::from(s).abs() / 16).max(16);
                assert!((back - i32::from(s)).abs() <= tolerance, "{s} -> {back}");
            }
        }
        // The codes the decoder table starts from.
        assert_eq!(ulaw_encode(0), 0xff);
        assert_eq!(alaw_encode(0), 0xd5);
        let mut e = MixEncoder::for_codec("pcmu", 0).unwrap();
        assert_eq!(e.clock_rate(), 8000);
        assert_eq!(e.encode(&[0i16; FRAME]).unwrap().len(), 160);
        let mut e = MixEncoder::for_codec("g722", 0).unwrap();
        assert_eq!(e.encode(&[0i16; FRAME]).unwrap().len(), 160);
        assert!(MixEncoder::for_codec("amr", 0).is_err());
    }

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
