//! RTP payloads from encoded frames: VP8 (RFC 7741) and H.264 packetization mode 1
//! (RFC 6184: single NAL unit packets and FU-A), and keyframe detection on the way back.

/// Splits one VP8 frame into payloads of at most `max` bytes, each with a one-byte
/// descriptor (S set on the first, partition 0).
pub fn vp8(frame: &[u8], max: usize) -> Vec<Vec<u8>> {
    let chunk = max.saturating_sub(1).max(1);
    frame
        .chunks(chunk)
        .enumerate()
        .map(|(i, part)| {
            let mut p = Vec::with_capacity(part.len() + 1);
            p.push(if i == 0 { 0x10 } else { 0x00 });
            p.extend_from_slice(part);
            p
        })
        .collect()
}

/// Packs the NAL units of one access unit into payloads of at most `max` bytes.
pub fn h264(nals: &[&[u8]], max: usize) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for nal in nals {
        if nal.is_empty() {
            continue;
        }
        if nal.len() <= max {
            out.push(nal.to_vec());
            continue;
        }
        let indicator = (nal[0] & 0xe0) | 28;
        let kind = nal[0] & 0x1f;
        let body = &nal[1..];
        let chunk = max.saturating_sub(2).max(1);
        let n = body.len().div_ceil(chunk);
        for (i, part) in body.chunks(chunk).enumerate() {
            let mut header = kind;
            if i == 0 {
                header |= 0x80;
            }
            if i + 1 == n {
                header |= 0x40;
            }
            let mut p = Vec::with_capacity(part.len() + 2);
            p.push(indicator);
            p.push(header);
            p.extend_from_slice(part);
            out.push(p);
        }
    }
    out
}

/// Whether a received video payload starts a keyframe.
pub fn starts_keyframe(h264: bool, payload: &[u8]) -> bool {
    if h264 {
        let Some(&first) = payload.first() else {
            return false;
        };
        match first & 0x1f {
            5 | 7 => true,
            // STAP-A: the first aggregated NAL unit's type.
            24 => payload.get(3).is_some_and(|b| matches!(b & 0x1f, 5 | 7)),
            // FU-A: the start fragment of an IDR slice.
            28 => payload
                .get(1)
                .is_some_and(|b| b & 0x80 != 0 && b & 0x1f == 5),
            _ => false,
        }
    } else {
        vp8_keyframe(payload)
    }
}

/// A VP8 payload that starts partition 0 of an intra frame.
fn vp8_keyframe(p: &[u8]) -> bool {
    let Some(&d) = p.first() else {
        return false;
    };
    if d & 0x10 == 0 || d & 0x07 != 0 {
        return false;
    }
    let mut at = 1;
    if d & 0x80 != 0 {
        let Some(&x) = p.get(at) else {
            return false;
        };
        at += 1;
        if x & 0x80 != 0 {
            // PictureID: 7 or 15 bits.
            let Some(&pid) = p.get(at) else {
                return false;
            };
            at += if pid & 0x80 != 0 { 2 } else { 1 };
        }
        if x & 0x40 != 0 {
            at += 1;
        }
        if x & 0x30 != 0 {
            at += 1;
        }
    }
    p.get(at).is_some_and(|b| b & 1 == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vp8_splits_and_marks_the_start() {
        let frame = vec![0u8; 2500];
        let p = vp8(&frame, 1000);
        assert_eq!(p.len(), 3);
        assert!(p.iter().all(|x| x.len() <= 1000));
        assert_eq!(p[0][0], 0x10);
        assert_eq!(p[1][0], 0x00);
        assert!(starts_keyframe(false, &p[0]));
        assert!(!starts_keyframe(false, &p[1]));
        // An inter frame (bit 0 set) is not a keyframe.
        assert!(!starts_keyframe(false, &vp8(&[1, 2, 3], 1000)[0]));
        // With an extended descriptor carrying a 15-bit picture id.
        assert!(starts_keyframe(false, &[0x90, 0x80, 0x81, 0x02, 0x00]));
    }

    #[test]
    fn h264_fragments_large_nal_units() {
        let idr: Vec<u8> = std::iter::once(0x65)
            .chain(std::iter::repeat_n(9, 3000))
            .collect();
        let sps = [0x67u8, 1, 2, 3];
        let p = h264(&[&sps, &idr], 1200);
        assert_eq!(p[0], sps);
        assert!(p.iter().all(|x| x.len() <= 1200));
        let fu: Vec<_> = p[1..].iter().collect();
        assert_eq!(fu.len(), 3);
        assert_eq!(fu[0][0] & 0x1f, 28);
        assert_eq!(fu[0][1], 0x85);
        assert_eq!(fu[2][1], 0x45);
        let body: usize = fu.iter().map(|x| x.len() - 2).sum();
        assert_eq!(body, 3000);
        assert!(starts_keyframe(true, &p[0]));
        assert!(starts_keyframe(true, fu[0]));
        assert!(!starts_keyframe(true, fu[1]));
    }
}
