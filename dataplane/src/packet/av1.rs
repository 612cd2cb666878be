//! AV1 payloads (the AOM "RTP Payload Format for AV1"): the aggregation header's N bit
//! marks the first packet of a coded video sequence, where decoding can start; that
//! packet carries the sequence header OBU, whose maximum frame size is the picture size
//! (of the top spatial layer, for a scalable stream).

use super::bits::BitReader;
use super::Picture;

/// OBU type of a sequence header.
const OBU_SEQUENCE_HEADER: u8 = 1;

/// Reads one AV1 packet.
pub fn inspect(p: &[u8]) -> Picture {
    match p.first() {
        // Z = 0 (the first OBU starts here) and N = 1.
        Some(h) if p.len() > 1 => {
            let keyframe = h & 0x80 == 0 && h & 0x08 != 0;
            Picture {
                keyframe,
                size: if keyframe { sequence_size(p) } else { None },
            }
        }
        _ => Picture::default(),
    }
}

/// An unsigned LEB128 number (at most 8 bytes) and its length.
fn leb128(p: &[u8]) -> Option<(usize, usize)> {
    let mut v: u64 = 0;
    for (i, b) in p.iter().take(8).enumerate() {
        v |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some((usize::try_from(v).ok()?, i + 1));
        }
    }
    None
}

/// The maximum frame size of the sequence header among the packet's OBU elements.
fn sequence_size(p: &[u8]) -> Option<(u16, u16)> {
    let header = *p.first()?;
    let count = usize::from((header >> 4) & 0x03);
    let mut rest = p.get(1..)?;
    let mut index = 0;
    while !rest.is_empty() {
        index += 1;
        // W = 0: every element has its length; W = n: all but the n-th.
        let (len, at) = if count != 0 && index == count {
            (rest.len(), 0)
        } else {
            leb128(rest)?
        };
        let element = rest.get(at..at + len)?;
        rest = &rest[at + len..];
        // The first element may continue an OBU of the previous packet (Z).
        if index == 1 && header & 0x80 != 0 {
            continue;
        }
        if let Some(size) = obu_sequence_size(element) {
            return Some(size);
        }
        if count != 0 && index == count {
            break;
        }
    }
    None
}

/// The maximum frame size of a sequence header OBU (`None` for other OBUs).
fn obu_sequence_size(obu: &[u8]) -> Option<(u16, u16)> {
    let h = *obu.first()?;
    if (h >> 3) & 0x0f != OBU_SEQUENCE_HEADER {
        return None;
    }
    let mut at = 1 + usize::from(h & 0x04 != 0);
    if h & 0x02 != 0 {
        at += leb128(obu.get(at..)?)?.1;
    }
    let mut r = BitReader::new(obu.get(at..)?);
    r.skip(4)?; // seq_profile, still_picture
    if r.bit()? {
        // reduced_still_picture_header: one level, nothing else.
        r.skip(5)?;
    } else {
        let mut decoder_model = false;
        let mut buffer_delay_bits = 0;
        if r.bit()? {
            // timing_info
            r.skip(64)?;
            if r.bit()? {
                // num_ticks_per_picture_minus_1, uvlc()
                let mut zeros = 0;
                while !r.bit()? {
                    zeros += 1;
                    if zeros > 32 {
                        return None;
                    }
                }
                r.skip(zeros)?;
            }
            decoder_model = r.bit()?;
            if decoder_model {
                buffer_delay_bits = r.bits(5)? as usize + 1;
                r.skip(32 + 5 + 5)?;
            }
        }
        let initial_display_delay = r.bit()?;
        let points = r.bits(5)? + 1;
        for _ in 0..points {
            r.skip(12)?; // operating_point_idc
            if r.bits(5)? > 7 {
                r.skip(1)?; // seq_tier
            }
            if decoder_model && r.bit()? {
                r.skip(2 * buffer_delay_bits + 1)?;
            }
            if initial_display_delay && r.bit()? {
                r.skip(4)?;
            }
        }
    }
    let width_bits = r.bits(4)? + 1;
    let height_bits = r.bits(4)? + 1;
    let w = r.bits(width_bits)? + 1;
    let h = r.bits(height_bits)? + 1;
    Some((u16::try_from(w).ok()?, u16::try_from(h).ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::bits::BitWriter;

    /// A sequence header OBU for `w`×`h` with `points` operating points.
    fn sequence_header(w: u32, h: u32, points: u32) -> Vec<u8> {
        let mut b = BitWriter::default();
        // profile 0, not still, not reduced, no timing info, no initial display delay
        b.put(3, 0).put(1, 0).put(1, 0).put(1, 0).put(1, 0);
        b.put(5, points - 1);
        for i in 0..points {
            // idc, level 8 (a tier bit follows)
            b.put(12, 0x100 + i).put(5, 8).put(1, 0);
        }
        b.put(4, 15).put(4, 15).put(16, w - 1).put(16, h - 1);
        // Some of the rest of the header.
        b.put(8, 0xa5);
        let mut obu = vec![OBU_SEQUENCE_HEADER << 3];
        obu.extend_from_slice(b.bytes());
        obu
    }

    #[test]
    fn the_n_bit_marks_keyframes() {
        assert!(inspect(&[0x18, 0x0a]).keyframe);
        assert!(!inspect(&[0x10, 0x0a]).keyframe);
        // A continuation of an OBU from the previous packet cannot start decoding.
        assert!(!inspect(&[0x88, 0x0a]).keyframe);
    }

    #[test]
    fn a_keyframe_announces_the_sequence_headers_size() {
        let seq = sequence_header(1280, 720, 6);
        // W = 2: the sequence header with its length, then a frame OBU to the end.
        let mut p = vec![0x28, seq.len() as u8];
        p.extend_from_slice(&seq);
        p.extend_from_slice(&[0x30, 0x10, 0x00]);
        assert_eq!(
            inspect(&p),
            Picture {
                keyframe: true,
                size: Some((1280, 720))
            }
        );
        // W = 0: every element with its length; the header second, with an extension
        // byte and its own size field.
        let mut ext = seq.clone();
        ext[0] |= 0x04 | 0x02;
        ext.insert(1, 0x00);
        ext.insert(2, (seq.len() - 1) as u8);
        let mut p = vec![0x08, 2, 0x30, 0x10, ext.len() as u8];
        p.extend_from_slice(&ext);
        assert_eq!(inspect(&p).size, Some((1280, 720)));
        // Not a keyframe: the size is not looked for; cut short: unknown.
        p[0] = 0x00;
        assert_eq!(inspect(&p).size, None);
        let mut p = vec![0x18];
        p.extend_from_slice(&seq[..6]);
        assert_eq!(
            inspect(&p),
            Picture {
                keyframe: true,
                size: None
            }
        );
    }
}
