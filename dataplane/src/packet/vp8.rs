//! VP8 payloads (RFC 7741): the payload descriptor, and the frame header that says
//! whether a frame is a keyframe and, for keyframes, its size.

use super::Picture;

/// The VP8 payload descriptor's fields the dataplane uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Descriptor {
    /// S: the packet starts a partition.
    pub start: bool,
    /// PID: the partition index.
    pub partition: u8,
    /// TID: the temporal layer, when the descriptor carries one.
    pub temporal: Option<u8>,
    /// Y: the frame depends only on the base temporal layer (a switching point).
    pub layer_sync: bool,
    /// Length of the descriptor in bytes (where the VP8 payload starts).
    pub len: usize,
}

/// Parses the payload descriptor; `None` when it is cut short.
pub fn descriptor(p: &[u8]) -> Option<Descriptor> {
    let b0 = *p.first()?;
    let mut d = Descriptor {
        start: b0 & 0x10 != 0,
        partition: b0 & 0x07,
        ..Default::default()
    };
    let mut i = 1;
    if b0 & 0x80 != 0 {
        let x = *p.get(i)?;
        i += 1;
        if x & 0x80 != 0 {
            // I: PictureID, 7 or 15 bits (M).
            let m = *p.get(i)?;
            i += if m & 0x80 != 0 { 2 } else { 1 };
        }
        if x & 0x40 != 0 {
            // L: TL0PICIDX.
            i += 1;
        }
        if x & 0x30 != 0 {
            // T or K: TID | Y | KEYIDX.
            let t = *p.get(i)?;
            if x & 0x20 != 0 {
                d.temporal = Some(t >> 6);
                d.layer_sync = t & 0x20 != 0;
            }
            i += 1;
        }
    }
    if i > p.len() {
        return None;
    }
    d.len = i;
    Some(d)
}

/// Reads one VP8 packet.
pub fn inspect(p: &[u8]) -> Picture {
    let Some(d) = descriptor(p) else {
        return Picture::default();
    };
    if !d.start || d.partition != 0 {
        return Picture::default();
    }
    let Some(frame) = p.get(d.len..) else {
        return Picture::default();
    };
    // The frame tag's P bit (bit 0 of the first byte) is 0 for keyframes (RFC 6386 §9.1).
    let Some(tag) = frame.first() else {
        return Picture::default();
    };
    if tag & 0x01 != 0 {
        return Picture::default();
    }
    // Keyframes: 3-byte tag, start code 9d 01 2a, then 14-bit width and height.
    let size = match frame.get(3..10) {
        Some([0x9d, 0x01, 0x2a, w0, w1, h0, h1]) => {
            let w = u16::from_le_bytes([*w0, *w1]) & 0x3fff;
            let h = u16::from_le_bytes([*h0, *h1]) & 0x3fff;
            Some((w, h))
        }
        _ => None,
    };
    Picture {
        keyframe: size.is_some(),
        size,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A keyframe's first packet: descriptor with X, I (15-bit picture id), T, then the
    /// frame header of a 640×360 keyframe.
    pub fn keyframe(w: u16, h: u16) -> Vec<u8> {
        let mut p = vec![0x90, 0xa0, 0x80, 0x01, 0x40];
        p.extend_from_slice(&[0x50, 0x2a, 0x01, 0x9d, 0x01, 0x2a]);
        p.extend_from_slice(&w.to_le_bytes());
        p.extend_from_slice(&h.to_le_bytes());
        p.extend_from_slice(&[0u8; 20]);
        p
    }

    #[test]
    fn finds_keyframes_and_their_size() {
        let k = keyframe(640, 360);
        assert_eq!(
            inspect(&k),
            Picture {
                keyframe: true,
                size: Some((640, 360))
            }
        );
        let d = descriptor(&k).unwrap();
        assert_eq!((d.temporal, d.layer_sync, d.len), (Some(1), false, 5));
        // The same frame's later packet (S = 0) does not start it.
        let mut later = k.clone();
        later[0] = 0x80;
        assert!(!inspect(&later).keyframe);
        // An interframe (P = 1).
        let mut inter = k.clone();
        inter[5] = 0x51;
        assert_eq!(inspect(&inter), Picture::default());
        // Minimal descriptor (no X), keyframe.
        let mut small = vec![
            0x10, 0x50, 0x2a, 0x01, 0x9d, 0x01, 0x2a, 0x40, 0x01, 0xf0, 0x00,
        ];
        assert_eq!(inspect(&small).size, Some((320, 240)));
        small.truncate(6);
        assert!(!inspect(&small).keyframe);
    }
}

/// One subscription's VP8 picture numbering: PictureID, TL0PICIDX and KEYIDX continue
/// across a change of source (a simulcast layer switch, a publisher's new encoder), as
/// its sequence numbers do (see [`crate::rewrite`]). Each encoder numbers its pictures on
/// its own, and a receiver that sees the numbers jump back after a switch takes the new
/// layer's frames for old ones and drops them until the numbers catch up — seconds of
/// frozen picture. The rewrite is a patch str0m applies while it writes the packet
/// (no copy of the shared payload).
#[derive(Debug, Clone, Default)]
pub struct PictureIds {
    source: Option<u32>,
    pid_offset: u16,
    tl0_offset: u8,
    key_offset: u8,
    /// The newest numbers sent: PictureID (15 bits), TL0PICIDX, KEYIDX (5 bits).
    last: Option<(u16, u8, u8)>,
}

const PID_MOD: u16 = 0x8000;

impl PictureIds {
    /// The patch for a packet of `ssrc` with descriptor `d`, or `None` when the
    /// descriptor carries no numbers (or they cannot be rewritten).
    pub fn rewrite(
        &mut self,
        ssrc: u32,
        d: &str0m::rtp::Vp8Descriptor,
    ) -> Option<str0m::rtp::Vp8Patch> {
        let (pid, tl0, key) = (d.picture_id(), d.tl0_pic_idx(), d.key_idx());
        if pid.is_none() && tl0.is_none() && key.is_none() {
            return None;
        }
        let (p, t, k) = self.numbers(ssrc, pid, tl0, key);
        let build = |pid_mask: u16| {
            let mut b = d.patch();
            if pid.is_some() {
                b = b.picture_id(p & pid_mask);
            }
            if tl0.is_some() {
                b = b.tl0_pic_idx(t);
            }
            if key.is_some() {
                b = b.key_idx(k);
            }
            b.build()
        };
        // A 7-bit PictureID keeps the low bits.
        build(0x7fff).or_else(|_| build(0x7f)).ok()
    }

    /// The numbers a packet of `ssrc` carrying (`pid`, `tl0`, `key`) goes out with.
    pub fn numbers(
        &mut self,
        ssrc: u32,
        pid: Option<u16>,
        tl0: Option<u8>,
        key: Option<u8>,
    ) -> (u16, u8, u8) {
        let (pid, tl0, key) = (
            pid.unwrap_or(0) % PID_MOD,
            tl0.unwrap_or(0),
            key.unwrap_or(0),
        );
        if self.source != Some(ssrc) {
            // A new source continues right after the newest numbers sent.
            if let Some((lp, lt, lk)) = self.last {
                self.pid_offset = (lp + 1 + PID_MOD - pid) % PID_MOD;
                self.tl0_offset = lt.wrapping_add(1).wrapping_sub(tl0);
                self.key_offset = lk.wrapping_add(1).wrapping_sub(key) & 0x1f;
            }
            self.source = Some(ssrc);
        }
        let out = (
            (pid + self.pid_offset) % PID_MOD,
            tl0.wrapping_add(self.tl0_offset),
            key.wrapping_add(self.key_offset) & 0x1f,
        );
        let newer = self
            .last
            .is_none_or(|(lp, _, _)| (out.0 + PID_MOD - lp) % PID_MOD < PID_MOD / 2);
        if newer {
            self.last = Some(out);
        }
        out
    }
}

#[cfg(test)]
mod id_tests {
    use super::*;

    #[test]
    fn numbers_continue_across_a_change_of_source() {
        let mut ids = PictureIds::default();
        let mut n = |ssrc, p, t, k| ids.numbers(ssrc, Some(p), Some(t), Some(k));
        // Layer A: pictures 100..=102.
        for (i, pid) in (100..=102).enumerate() {
            assert_eq!(n(1, pid, 7 + i as u8, 3), (pid, 7 + i as u8, 3));
        }
        // Switch to layer B, whose encoder is at picture 30,000, TL0 250, KEYIDX 30.
        assert_eq!(n(2, 30_000, 250, 30), (103, 10, 4));
        assert_eq!(n(2, 30_001, 251, 30), (104, 11, 4));
        // Across the 15-bit wrap of the source.
        assert_eq!(n(2, 32_767, 252, 30), (2870, 12, 4));
        assert_eq!(n(2, 0, 253, 30), (2871, 13, 4));
        // A late packet of an older picture does not move the newest numbers back.
        assert_eq!(n(2, 30_001, 251, 30), (104, 11, 4));
        // Back to layer A (now at 400): right after the newest.
        assert_eq!(n(1, 400, 20, 3), (2872, 14, 5));
    }

    #[test]
    fn patches_only_descriptors_with_numbers() {
        let mut ids = PictureIds::default();
        let bare = [0x10, 0x00, 0xaa];
        let d = str0m::rtp::Vp8Descriptor::parse(&bare).unwrap();
        assert!(ids.rewrite(1, &d).is_none());
        // 15-bit PictureID, TL0PICIDX, TID and KEYIDX present.
        let full = [0x90, 0xf0, 0x80, 0x64, 0x07, 0x03, 0x00, 0xaa];
        let d = str0m::rtp::Vp8Descriptor::parse(&full).unwrap();
        assert!(ids.rewrite(1, &d).is_some());
        // 7-bit PictureID after a switch from a source far ahead: still patched.
        let short = [0x90, 0x80, 0x05, 0x00, 0xaa];
        let d = str0m::rtp::Vp8Descriptor::parse(&short).unwrap();
        assert!(ids.rewrite(2, &d).is_some());
    }
}
