//! AV1 payloads (the AOM "RTP Payload Format for AV1"): the aggregation header's N bit
//! marks the first packet of a coded video sequence, where decoding can start. The size
//! (in the sequence header OBU) is not read.

use super::Picture;

/// Reads one AV1 packet.
pub fn inspect(p: &[u8]) -> Picture {
    match p.first() {
        // Z = 0 (the first OBU starts here) and N = 1.
        Some(h) if p.len() > 1 => Picture {
            keyframe: h & 0x80 == 0 && h & 0x08 != 0,
            size: None,
        },
        _ => Picture::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_n_bit_marks_keyframes() {
        assert!(inspect(&[0x18, 0x0a]).keyframe);
        assert!(!inspect(&[0x10, 0x0a]).keyframe);
        // A continuation of an OBU from the previous packet cannot start decoding.
        assert!(!inspect(&[0x88, 0x0a]).keyframe);
    }
}
