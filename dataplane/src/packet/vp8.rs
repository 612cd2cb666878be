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
