//! ULPFEC (RFC 5109) generation, level 0, one group at a time.
//!
//! The sender feeds each media packet it protects as it goes on the wire (after its
//! header is written: the first two header bytes with the media payload type, the
//! timestamp, and everything after the fixed 12 bytes); the packets' XOR is kept as they
//! come, so nothing is stored per packet. [`UlpfecEncoder::finish`] writes the FEC payload
//! (without a RED header) protecting every packet fed since the last one.

/// The most packets one FEC packet protects (a 48-bit mask), counted in sequence numbers
/// from the first.
pub const ULPFEC_MAX_SPAN: u16 = 48;

/// The FEC header (10 bytes) and a level 0 header with a 48-bit mask (6 bytes).
pub const ULPFEC_MAX_OVERHEAD: usize = 16;

/// The running XOR of one group of media packets.
#[derive(Debug, Default, Clone)]
pub struct UlpfecEncoder {
    /// The first packet's sequence number, once there is one.
    base: Option<u16>,
    /// Bit 47 is `base`, bit 47 - i is `base + i`.
    mask: u64,
    b0: u8,
    b1: u8,
    ts: u32,
    len: u16,
    /// The XOR of the packets' bytes after the fixed header; as long as the longest.
    body: Vec<u8>,
}

impl UlpfecEncoder {
    /// An encoder with an empty group.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many packets the group holds.
    pub fn len(&self) -> usize {
        self.mask.count_ones() as usize
    }

    /// Whether the group holds no packet.
    pub fn is_empty(&self) -> bool {
        self.mask == 0
    }

    /// Adds a packet to the group: sequence number `seq`, first header bytes `b0` (version,
    /// padding, extension, CSRC count) and `b1` (marker, media payload type), timestamp
    /// `ts`, and `parts` that together are everything after its fixed 12-byte header
    /// (CSRCs, header extensions, payload). A packet out of reach of the group's mask (more
    /// than [`ULPFEC_MAX_SPAN`] after its first, or before it) starts a new group: the old
    /// one goes unprotected.
    pub fn add(&mut self, seq: u16, b0: u8, b1: u8, ts: u32, parts: &[&[u8]]) {
        let at = match self.base {
            Some(base) if seq.wrapping_sub(base) < ULPFEC_MAX_SPAN => seq.wrapping_sub(base),
            _ => {
                self.reset();
                self.base = Some(seq);
                0
            }
        };
        let bit = 1u64 << (47 - at);
        if self.mask & bit != 0 {
            // The same packet twice would cancel itself out.
            return;
        }
        self.mask |= bit;
        let size: usize = parts.iter().map(|p| p.len()).sum();
        self.b0 ^= b0;
        self.b1 ^= b1;
        self.ts ^= ts;
        self.len ^= size as u16;
        if self.body.len() < size {
            self.body.resize(size, 0);
        }
        let mut i = 0;
        for part in parts {
            xor_into(&mut self.body[i..i + part.len()], part);
            i += part.len();
        }
    }

    /// The FEC payload's length for the group as it is now (0 when empty).
    pub fn encoded_len(&self) -> usize {
        if self.is_empty() {
            return 0;
        }
        let short = self.mask.trailing_zeros() >= 32;
        10 + if short { 4 } else { 8 } + self.body.len()
    }

    /// Writes the FEC payload protecting the group into `out` and empties the group.
    /// Returns the length written: 0 when the group is empty or `out` is shorter than
    /// [`UlpfecEncoder::encoded_len`] (the group is then dropped).
    pub fn finish(&mut self, out: &mut [u8]) -> usize {
        let n = self.encoded_len();
        let Some(base) = self.base.filter(|_| n > 0 && out.len() >= n) else {
            self.reset();
            return 0;
        };
        // Within the first 16 packets: the short mask.
        let short = self.mask.trailing_zeros() >= 32;
        // E = 0; L says which mask; P, X and CC recovered from the XOR.
        out[0] = (self.b0 & 0x3f) | if short { 0 } else { 0x40 };
        out[1] = self.b1;
        out[2..4].copy_from_slice(&base.to_be_bytes());
        out[4..8].copy_from_slice(&self.ts.to_be_bytes());
        out[8..10].copy_from_slice(&self.len.to_be_bytes());
        out[10..12].copy_from_slice(&(self.body.len() as u16).to_be_bytes());
        out[12..14].copy_from_slice(&((self.mask >> 32) as u16).to_be_bytes());
        let body_at = if short {
            14
        } else {
            out[14..18].copy_from_slice(&(self.mask as u32).to_be_bytes());
            18
        };
        out[body_at..n].copy_from_slice(&self.body);
        self.reset();
        n
    }

    /// The FEC payload protecting the group, emptying it (`None` when it is empty).
    pub fn finish_to_vec(&mut self) -> Option<Vec<u8>> {
        let mut v = vec![0; self.encoded_len()];
        let n = self.finish(&mut v);
        (n > 0).then_some(v)
    }

    fn reset(&mut self) {
        self.base = None;
        self.mask = 0;
        self.b0 = 0;
        self.b1 = 0;
        self.ts = 0;
        self.len = 0;
        // The allocation is kept for the next group.
        self.body.clear();
    }
}

/// `dst ^= src`, eight bytes at a time.
fn xor_into(dst: &mut [u8], src: &[u8]) {
    let mut d = dst.chunks_exact_mut(8);
    let mut s = src.chunks_exact(8);
    for (d, s) in (&mut d).zip(&mut s) {
        let x = u64::from_ne_bytes(d.try_into().unwrap_or([0; 8]))
            ^ u64::from_ne_bytes(s.try_into().unwrap_or([0; 8]));
        d.copy_from_slice(&x.to_ne_bytes());
    }
    for (d, s) in d.into_remainder().iter_mut().zip(s.remainder()) {
        *d ^= s;
    }
}
