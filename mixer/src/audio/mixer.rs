//! A view's audio mix (sans-IO): of its inputs, the K loudest (the dataplane's
//! active-speaker ranking, from the RFC 6464 level every packet carries, with its
//! hysteresis) are decoded and mixed every 20 ms; the others cost a level reading per
//! packet and nothing else, so a room of a thousand listeners costs K decodes and K + 1
//! encodes: the mix, and one mix-minus per speaker (the mix without its own voice).

use super::codec::{AudioDecoder, AudioError, MixEncoder};
use super::mix::{mix_minus, FRAME};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;
use switchyard_dataplane::speakers::{ActiveSpeakers, SlotChange};

/// Decoded frames kept per speaker at most (a 100 ms jitter allowance); older ones go.
const MAX_QUEUED: usize = 5;

/// The mix's bitrate.
pub const MIX_BPS: i32 = 32_000;

struct Input {
    /// The decoder and the codec it decodes.
    decoder: Option<(String, AudioDecoder)>,
    frames: VecDeque<Vec<i16>>,
}

/// One 20 ms frame of a view's audio, encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mixed {
    /// The mix of every speaker.
    pub main: Vec<u8>,
    /// For each speaker in this frame, the mix without it.
    pub minus: Vec<(Arc<str>, Vec<u8>)>,
}

/// A view's audio mixer.
pub struct AudioMixer {
    speakers: ActiveSpeakers,
    inputs: HashMap<Arc<str>, Input>,
    main: MixEncoder,
    minus_encoders: Vec<MixEncoder>,
    acc: Vec<i32>,
    mix: Vec<i16>,
    minus: Vec<Vec<i16>>,
    decoded: Vec<i16>,
}

impl AudioMixer {
    /// A mixer of at most `k` speakers, encoding in opus.
    pub fn new(k: usize) -> Result<Self, AudioError> {
        Self::with_codec(k, "opus")
    }

    /// A mixer of at most `k` speakers, encoding in `codec` (opus, pcmu, pcma, g722).
    pub fn with_codec(k: usize, codec: &str) -> Result<Self, AudioError> {
        let k = k.max(1);
        Ok(AudioMixer {
            speakers: ActiveSpeakers::new(k),
            inputs: HashMap::new(),
            main: MixEncoder::for_codec(codec, MIX_BPS)?,
            minus_encoders: (0..k)
                .map(|_| MixEncoder::for_codec(codec, MIX_BPS))
                .collect::<Result<_, _>>()?,
            acc: vec![0; FRAME],
            mix: vec![0; FRAME],
            minus: vec![vec![0; FRAME]; k],
            decoded: vec![0; FRAME * 6],
        })
    }

    /// Mixes a stream.
    pub fn add_input(&mut self, stream: Arc<str>) {
        self.inputs.insert(
            stream,
            Input {
                decoder: None,
                frames: VecDeque::new(),
            },
        );
    }

    /// Stops mixing a stream.
    pub fn remove_input(&mut self, now: Instant, stream: &str) {
        self.inputs.remove(stream);
        self.speakers.remove(now, stream);
    }

    /// The RTP clock rate of what it encodes.
    pub fn clock_rate(&self) -> u32 {
        self.main.clock_rate()
    }

    /// How many inputs there are.
    pub fn inputs(&self) -> usize {
        self.inputs.len()
    }

    /// The streams being mixed now, by slot.
    pub fn speaking(&self) -> &[Option<Arc<str>>] {
        self.speakers.slots()
    }

    /// An audio packet of `stream` in `codec` with its RFC 6464 `level`. A speaker's
    /// packet is decoded; another's only ranks it. Undecodable packets are dropped (the
    /// error is returned for counting; the mix goes on).
    pub fn on_packet(
        &mut self,
        now: Instant,
        stream: &Arc<str>,
        codec: &str,
        level: Option<i8>,
        payload: &[u8],
    ) -> Result<(), AudioError> {
        let Some(input) = self.inputs.get_mut(stream) else {
            return Ok(());
        };
        let seated = self.speakers.on_packet(now, stream, level).is_some();
        if !seated {
            // Not mixed: its decoder state is not kept.
            input.decoder = None;
            input.frames.clear();
            return Ok(());
        }
        if input.decoder.as_ref().is_none_or(|(c, _)| c != codec) {
            input.decoder = Some((codec.to_string(), AudioDecoder::new(codec)?));
        }
        let Some((_, decoder)) = input.decoder.as_mut() else {
            return Ok(());
        };
        let n = decoder.decode(payload, &mut self.decoded)?;
        // 20 ms frames (a 10 ms or 60 ms packet is cut or padded to frames).
        for chunk in self.decoded[..n].chunks(FRAME) {
            let mut frame = chunk.to_vec();
            frame.resize(FRAME, 0);
            input.frames.push_back(frame);
        }
        while input.frames.len() > MAX_QUEUED {
            input.frames.pop_front();
        }
        Ok(())
    }

    /// A slot's speaker changed (for the active-speaker notifications).
    pub fn poll_change(&mut self) -> Option<SlotChange> {
        self.speakers.poll_change()
    }

    /// The next 20 ms: the speakers' frames mixed and encoded (`None`: nobody spoke).
    /// Every seated speaker gets its mix-minus from its slot's encoder, even in a frame
    /// it has nothing in (then the whole mix), so each mix-minus stream comes from one
    /// encoder throughout.
    pub fn tick(&mut self) -> Result<Option<Mixed>, AudioError> {
        let mut seated: Vec<(usize, Arc<str>, Option<Vec<i16>>)> = Vec::new();
        for (slot, s) in self.speakers.slots().iter().enumerate() {
            if let Some(s) = s {
                let frame = self.inputs.get_mut(s).and_then(|i| i.frames.pop_front());
                seated.push((slot, s.clone(), frame));
            }
        }
        if seated.iter().all(|(_, _, f)| f.is_none()) {
            return Ok(None);
        }
        let silence = [0i16; FRAME];
        let refs: Vec<&[i16]> = seated
            .iter()
            .map(|(_, _, f)| f.as_deref().unwrap_or(&silence))
            .collect();
        mix_minus(&refs, &mut self.acc, &mut self.mix, &mut self.minus);
        let main = self.main.encode(&self.mix)?.to_vec();
        let mut minus = Vec::with_capacity(seated.len());
        for (i, (slot, s, _)) in seated.iter().enumerate() {
            if let (Some(enc), Some(m)) = (self.minus_encoders.get_mut(*slot), self.minus.get(i)) {
                minus.push((s.clone(), enc.encode(m)?.to_vec()));
            }
        }
        Ok(Some(Mixed { main, minus }))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::time::Duration;

    /// 20 ms of a sine at `hz`.
    pub(crate) fn tone(hz: f64, frame: usize, amp: f64) -> Vec<i16> {
        (0..FRAME)
            .map(|i| {
                let t = (frame * FRAME + i) as f64 / 48_000.0;
                ((t * hz * 2.0 * std::f64::consts::PI).sin() * amp) as i16
            })
            .collect()
    }

    /// The power of `hz` in `samples` (Goertzel), relative to the signal's.
    pub(crate) fn share_of(samples: &[i16], hz: f64) -> f64 {
        let w = 2.0 * std::f64::consts::PI * hz / 48_000.0;
        let c = 2.0 * w.cos();
        let (mut s1, mut s2) = (0.0, 0.0);
        for x in samples {
            let s0 = f64::from(*x) + c * s1 - s2;
            s2 = s1;
            s1 = s0;
        }
        let p = s1 * s1 + s2 * s2 - c * s1 * s2;
        let total: f64 = samples.iter().map(|x| f64::from(*x).powi(2)).sum();
        if total == 0.0 {
            0.0
        } else {
            2.0 * p / (samples.len() as f64 * total)
        }
    }

    #[test]
    fn speakers_are_mixed_and_each_hears_the_others_only() {
        let mut m = AudioMixer::new(3).unwrap();
        let (a, b): (Arc<str>, Arc<str>) = ("a".into(), "b".into());
        m.add_input(a.clone());
        m.add_input(b.clone());
        let mut enc_a = MixEncoder::new(64_000).unwrap();
        let mut enc_b = MixEncoder::new(64_000).unwrap();
        let mut dec = AudioDecoder::new("opus").unwrap();
        let mut dec_minus_a = AudioDecoder::new("opus").unwrap();
        let t0 = Instant::now();
        let (mut main_pcm, mut minus_a_pcm) = (Vec::new(), Vec::new());
        for f in 0..50 {
            let now = t0 + Duration::from_millis(20 * f as u64);
            let pa = enc_a.encode(&tone(440.0, f, 8000.0)).unwrap().to_vec();
            let pb = enc_b.encode(&tone(1000.0, f, 8000.0)).unwrap().to_vec();
            m.on_packet(now, &a, "opus", Some(-20), &pa).unwrap();
            m.on_packet(now, &b, "opus", Some(-20), &pb).unwrap();
            let mixed = m.tick().unwrap().expect("a mix");
            let mut out = vec![0i16; FRAME];
            dec.decode(&mixed.main, &mut out).unwrap();
            main_pcm.extend_from_slice(&out);
            let (_, minus_a) = mixed
                .minus
                .iter()
                .find(|(s, _)| *s == a)
                .expect("a's mix-minus");
            dec_minus_a.decode(minus_a, &mut out).unwrap();
            minus_a_pcm.extend_from_slice(&out);
        }
        let tail = |v: &[i16]| v[v.len() - FRAME * 20..].to_vec();
        let (main, minus_a) = (tail(&main_pcm), tail(&minus_a_pcm));
        assert!(share_of(&main, 440.0) > 0.2 && share_of(&main, 1000.0) > 0.2);
        assert!(share_of(&minus_a, 1000.0) > 0.6, "a hears b");
        assert!(
            share_of(&minus_a, 440.0) < 0.01,
            "a does not hear itself: {}",
            share_of(&minus_a, 440.0)
        );
    }

    #[test]
    fn only_the_loudest_k_are_decoded() {
        let mut m = AudioMixer::new(1).unwrap();
        let (a, b): (Arc<str>, Arc<str>) = ("a".into(), "b".into());
        m.add_input(a.clone());
        m.add_input(b.clone());
        let t0 = Instant::now();
        for f in 0..100u64 {
            let now = t0 + Duration::from_millis(20 * f);
            // b is far louder.
            m.on_packet(now, &a, "pcmu", Some(-90), &[0xf0; 160])
                .unwrap();
            m.on_packet(now, &b, "pcmu", Some(-10), &[0x80; 160])
                .unwrap();
            let _ = m.tick().unwrap();
        }
        assert_eq!(m.speaking(), &[Some(b.clone())]);
        assert!(m.inputs.get(&a).is_some_and(|i| i.decoder.is_none()));
        let mixed = m.tick().unwrap();
        // b's queued frame, if any, is the only one in the mix.
        if let Some(x) = mixed {
            assert!(x.minus.iter().all(|(s, _)| *s == b));
        }
        // Garbage from a speaker is an error for the caller to count, and the mix goes on.
        let now = t0 + Duration::from_secs(3);
        m.add_input("c".into());
        let c: Arc<str> = "c".into();
        for _ in 0..3 {
            let _ = m.on_packet(now, &c, "opus", Some(0), &[0xff, 0xff, 0xff]);
        }
        let _ = m.tick();
    }
}
