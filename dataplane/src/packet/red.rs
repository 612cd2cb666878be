//! RED (RFC 2198) payloads: redundant copies of earlier frames ahead of the current one.
//! For audio, a subscriber that negotiated RED gets the packet as it came; one that did
//! not gets the primary (current) block alone. Video RED (what a browser sends with
//! ULPFEC) is always unwrapped at the publisher's core: its primary block is a media
//! packet's payload or an FEC packet (see [`super::ulpfec`]).

/// The primary block of a RED payload, or `None` when the payload is malformed.
pub fn primary(p: &[u8]) -> Option<&[u8]> {
    primary_with_pt(p).map(|(_, b)| b)
}

/// The primary block of a RED payload and the payload type it says, or `None` when the
/// payload is malformed.
pub fn primary_with_pt(p: &[u8]) -> Option<(u8, &[u8])> {
    let mut i = 0;
    let mut redundant = 0usize;
    // Headers of redundant blocks: F = 1, PT (7), timestamp offset (14), length (10).
    loop {
        let h = *p.get(i)?;
        if h & 0x80 == 0 {
            // The primary's header: F = 0, PT.
            i += 1;
            return Some((h & 0x7f, p.get(i + redundant..)?));
        }
        let b = p.get(i + 2..i + 4)?;
        redundant += (usize::from(b[0] & 0x03) << 8) | usize::from(b[1]);
        i += 4;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_primary_block() {
        // Only a primary block (PT 111).
        assert_eq!(primary(&[111, 1, 2, 3]), Some(&[1u8, 2, 3][..]));
        // One redundant block of 2 bytes (offset 960), then the primary.
        let p = [0x80 | 111, 0x0f, 0x00, 0x02, 111, 9, 9, 1, 2, 3];
        assert_eq!(primary(&p), Some(&[1u8, 2, 3][..]));
        // Cut short, or a redundant block longer than the packet.
        assert_eq!(primary(&[0x80 | 111, 0x0f]), None);
        assert_eq!(primary(&[0x80 | 111, 0x0f, 0x03, 0xff, 111, 1]), None);
        assert_eq!(primary(&[]), None);
        // Video RED: one primary block, its payload type said.
        assert_eq!(primary_with_pt(&[118, 5, 6]), Some((118, &[5u8, 6][..])));
    }
}
