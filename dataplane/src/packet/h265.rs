//! H.265 payloads (RFC 7798): keyframes (a parameter set or an IRAP picture) in single
//! NAL units, aggregation packets and fragmentation units. The size is not read.

use super::Picture;

const AP: u8 = 48;
const FU: u8 = 49;

fn is_key(nal_type: u8) -> bool {
    // IRAP pictures (BLA, IDR, CRA: 16–21), VPS (32), SPS (33).
    (16..=21).contains(&nal_type) || nal_type == 32 || nal_type == 33
}

/// Reads one H.265 packet.
pub fn inspect(p: &[u8]) -> Picture {
    let Some(&b0) = p.first() else {
        return Picture::default();
    };
    let keyframe = match (b0 >> 1) & 0x3f {
        AP => {
            let mut i = 2;
            let mut key = false;
            while let (Some(&a), Some(&b)) = (p.get(i), p.get(i + 1)) {
                let len = usize::from(u16::from_be_bytes([a, b]));
                match p.get(i + 2) {
                    Some(h) if len > 0 && i + 2 + len <= p.len() => key |= is_key((h >> 1) & 0x3f),
                    _ => break,
                }
                i += 2 + len;
            }
            key
        }
        FU => p
            .get(2)
            .is_some_and(|fu| fu & 0x80 != 0 && is_key(fu & 0x3f)),
        t => p.len() >= 2 && is_key(t),
    };
    Picture {
        keyframe,
        size: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_keyframes() {
        // VPS alone, an IDR_W_RADL (19), a trailing picture (1).
        assert!(inspect(&[0x40, 0x01, 0x0c]).keyframe);
        assert!(inspect(&[0x26, 0x01, 0xaf]).keyframe);
        assert!(!inspect(&[0x02, 0x01, 0xd0]).keyframe);
        // AP with a VPS inside.
        assert!(inspect(&[0x60, 0x01, 0x00, 0x03, 0x40, 0x01, 0x0c]).keyframe);
        // FU: start of an IDR (type 19), then its middle.
        assert!(inspect(&[0x62, 0x01, 0x93, 0x00]).keyframe);
        assert!(!inspect(&[0x62, 0x01, 0x13, 0x00]).keyframe);
    }
}
