//! A big-endian bit reader over untrusted bytes, with the Exp-Golomb codes of H.264's
//! parameter sets. Every read past the end gives `None`.

/// Reads bits most significant first.
#[derive(Debug, Clone)]
pub struct BitReader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> BitReader<'a> {
    /// A reader at the first bit of `data`.
    pub fn new(data: &'a [u8]) -> Self {
        BitReader { data, pos: 0 }
    }

    /// One bit.
    pub fn bit(&mut self) -> Option<bool> {
        let byte = *self.data.get(self.pos / 8)?;
        let b = (byte >> (7 - (self.pos % 8))) & 1;
        self.pos += 1;
        Some(b == 1)
    }

    /// `n` bits (at most 32) as a number.
    pub fn bits(&mut self, n: u32) -> Option<u32> {
        if n > 32 {
            return None;
        }
        let mut v: u32 = 0;
        for _ in 0..n {
            v = (v << 1) | u32::from(self.bit()?);
        }
        Some(v)
    }

    /// Skips `n` bits.
    pub fn skip(&mut self, n: usize) -> Option<()> {
        if self.pos + n > self.data.len() * 8 {
            return None;
        }
        self.pos += n;
        Some(())
    }

    /// An unsigned Exp-Golomb code, `ue(v)`.
    pub fn ue(&mut self) -> Option<u32> {
        let mut zeros = 0;
        while !self.bit()? {
            zeros += 1;
            if zeros > 31 {
                return None;
            }
        }
        let rest = self.bits(zeros)?;
        Some(((1u64 << zeros) - 1 + u64::from(rest)).min(u64::from(u32::MAX)) as u32)
    }

    /// A signed Exp-Golomb code, `se(v)`.
    pub fn se(&mut self) -> Option<i32> {
        let k = i64::from(self.ue()?);
        let v = if k % 2 == 1 { (k + 1) / 2 } else { -(k / 2) };
        Some(v as i32)
    }
}

/// Writes bits most significant first (for building test streams: the dataplane
/// forwards descriptors as they came).
#[derive(Debug, Default, Clone)]
pub struct BitWriter {
    bytes: Vec<u8>,
    bits: usize,
}

impl BitWriter {
    /// The `n` low bits of `v`.
    pub fn put(&mut self, n: u32, v: u32) -> &mut Self {
        for i in (0..n.min(32)).rev() {
            if self.bits.is_multiple_of(8) {
                self.bytes.push(0);
            }
            let bit = ((v >> i) & 1) as u8;
            if let Some(last) = self.bytes.last_mut() {
                *last |= bit << (7 - self.bits % 8);
            }
            self.bits += 1;
        }
        self
    }

    /// The bytes written, the last one padded with zeros.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }
}

/// A NAL unit's payload with its emulation-prevention bytes (`00 00 03`) removed, at most
/// `limit` bytes of it (parameter sets are short; nothing needs more).
pub fn unescape(nal: &[u8], limit: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(nal.len().min(limit));
    let mut zeros = 0;
    for &b in nal {
        if out.len() >= limit {
            break;
        }
        if zeros >= 2 && b == 3 {
            zeros = 0;
            continue;
        }
        zeros = if b == 0 { zeros + 1 } else { 0 };
        out.push(b);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_bits_and_exp_golomb() {
        // 1 | 010 | 011 | 00100 | 00101 → ue 0, 1, 2, 3, 4
        let mut r = BitReader::new(&[0b1010_0110, 0b0100_0010, 0b1000_0000]);
        assert_eq!(r.ue(), Some(0));
        assert_eq!(r.ue(), Some(1));
        assert_eq!(r.ue(), Some(2));
        assert_eq!(r.ue(), Some(3));
        assert_eq!(r.ue(), Some(4));
        // se: 1 → 0, 010 → 1, 011 → -1
        let mut r = BitReader::new(&[0b1010_0110]);
        assert_eq!(r.se(), Some(0));
        assert_eq!(r.se(), Some(1));
        assert_eq!(r.se(), Some(-1));
        let mut r = BitReader::new(&[0xff]);
        assert_eq!(r.bits(4), Some(15));
        assert_eq!(r.bits(5), None);
        assert_eq!(BitReader::new(&[0, 0, 0, 0, 0]).ue(), None);
    }

    #[test]
    fn writes_what_the_reader_reads() {
        let mut w = BitWriter::default();
        w.put(1, 1).put(6, 0b10_1010).put(16, 0xbeef).put(3, 0b101);
        assert_eq!(w.bytes().len(), 4);
        let mut r = BitReader::new(w.bytes());
        assert_eq!(r.bits(1), Some(1));
        assert_eq!(r.bits(6), Some(0b10_1010));
        assert_eq!(r.bits(16), Some(0xbeef));
        assert_eq!(r.bits(3), Some(0b101));
        assert_eq!(r.bits(6), Some(0));
    }

    #[test]
    fn removes_emulation_prevention() {
        assert_eq!(
            unescape(&[0, 0, 3, 1, 0, 0, 3, 0], 64),
            vec![0, 0, 1, 0, 0, 0]
        );
        assert_eq!(unescape(&[1, 2, 3, 4], 2), vec![1, 2]);
    }
}
