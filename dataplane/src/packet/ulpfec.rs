//! ULPFEC (RFC 5109) recovery at the publisher's core (sans-IO).
//!
//! A browser that negotiated video RED and ULPFEC wraps each video packet in RED and
//! sends, now and then, an FEC packet (inside RED too) whose payload is the XOR of a group
//! of earlier media packets: of their headers' first two bytes, timestamps and lengths,
//! and of everything after their 12-byte fixed headers (CSRCs, header extensions,
//! payload). When exactly one packet of a group is missing, XOR-ing the FEC packet with
//! the others gives it back, without waiting for a retransmission.
//!
//! ULPFEC protects the publisher's own sequence numbers and timestamps, which each
//! subscription rewrites, so it is not passed on: the publisher's core recovers what it
//! can and forwards the recovered packets like any other. A subscriber that negotiated
//! RED and ULPFEC gets FEC of its own, over its own stream as sent, when its path loses
//! packets ([`crate::protection`]; str0m builds it).
//!
//! A [`Receiver`] is kept per publisher video stream (SSRC). It is fed every media packet
//! with the bytes FEC protects ([`Protected`]), or with `None` for a packet whose bytes
//! are not known as sent (a retransmission carries its own header extensions), and every
//! FEC packet's payload; each call returns the packets it recovered. Level 0 only (what
//! browsers send); masks of 16 or 48 packets.

use std::collections::{BTreeMap, VecDeque};

/// How far back (in sequence numbers) media packets are kept for recovery: four times
/// the most one FEC packet protects (48).
pub const WINDOW: u64 = 192;

/// A stream that has sent no FEC packet for this many packets (or never) is not sent
/// FEC: its packets' bytes are not kept (browsers wrap every packet in RED once ULPFEC is
/// negotiated, and add FEC only when loss and round trip call for it).
pub const DORMANT: u64 = 2048;

/// At most this many FEC packets wait for their groups (a flood of them is cut).
pub const MAX_PENDING_FEC: usize = 64;

/// The largest protected body recovered (a larger FEC packet is malformed).
pub const MAX_BODY: usize = 1500;

/// What ULPFEC protects of one RTP packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Protected {
    /// The first header byte (version, padding, extension, CSRC count).
    pub b0: u8,
    /// The second header byte (marker, payload type).
    pub b1: u8,
    /// The RTP timestamp.
    pub ts: u32,
    /// Everything after the 12-byte fixed header: CSRCs, header extensions, payload and
    /// padding.
    pub body: Box<[u8]>,
}

impl Protected {
    /// The packet as it went on the wire, with `seq` and `ssrc` (which FEC does not
    /// protect).
    pub fn to_packet(&self, seq: u16, ssrc: u32) -> Vec<u8> {
        let mut v = Vec::with_capacity(12 + self.body.len());
        v.push(self.b0);
        v.push(self.b1);
        v.extend_from_slice(&seq.to_be_bytes());
        v.extend_from_slice(&self.ts.to_be_bytes());
        v.extend_from_slice(&ssrc.to_be_bytes());
        v.extend_from_slice(&self.body);
        v
    }
}

/// Why an FEC payload was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FecError {
    /// Shorter than its headers say.
    #[error("ULPFEC payload shorter than its headers")]
    Truncated,
    /// A level-0 protection length beyond what a packet can carry.
    #[error("ULPFEC protection length too large")]
    TooLong,
    /// Protects no packet.
    #[error("ULPFEC mask is empty")]
    EmptyMask,
}

#[derive(Debug)]
struct Fec {
    /// Extended sequence number of the first protected packet.
    base: u64,
    /// Bit i (from the least significant) set: packet `base + i` is protected.
    mask: u64,
    b0: u8,
    b1: u8,
    ts: u32,
    len: u16,
    payload: Box<[u8]>,
}

impl Fec {
    /// Parses an FEC payload (RED header removed) that came with sequence number `seq`.
    fn parse(seq: u64, p: &[u8]) -> Result<Fec, FecError> {
        let h = p.get(..10).ok_or(FecError::Truncated)?;
        let long = h[0] & 0x40 != 0;
        let sn_base = u16::from_be_bytes([h[2], h[3]]);
        let ts = u32::from_be_bytes([h[4], h[5], h[6], h[7]]);
        let len = u16::from_be_bytes([h[8], h[9]]);
        let level = if long { 8 } else { 4 };
        let l = p.get(10..10 + level).ok_or(FecError::Truncated)?;
        let protection = usize::from(u16::from_be_bytes([l[0], l[1]]));
        // Mask bit 0 (most significant) is the base packet.
        let first = u64::from(u16::from_be_bytes([l[2], l[3]]));
        let (mask, bits) = if long {
            let rest = u64::from(u32::from_be_bytes([l[4], l[5], l[6], l[7]]));
            ((first << 32) | rest, 48)
        } else {
            (first, 16)
        };
        if mask == 0 {
            return Err(FecError::EmptyMask);
        }
        if protection > MAX_BODY {
            return Err(FecError::TooLong);
        }
        let payload = p
            .get(10 + level..10 + level + protection)
            .ok_or(FecError::Truncated)?;
        let reversed = (0..bits).fold(0u64, |m, i| {
            if mask & (1 << (bits - 1 - i)) != 0 {
                m | (1 << i)
            } else {
                m
            }
        });
        // The base lies at or before the FEC packet, within half the sequence space.
        let behind = u64::from((seq as u16).wrapping_sub(sn_base));
        Ok(Fec {
            base: seq.saturating_sub(behind),
            mask: reversed,
            b0: h[0],
            b1: h[1],
            ts,
            len,
            payload: payload.into(),
        })
    }

    fn protected(&self) -> impl Iterator<Item = u64> + '_ {
        (0..48u64)
            .filter(|i| self.mask & (1 << i) != 0)
            .map(|i| self.base + i)
    }

    fn newest(&self) -> u64 {
        self.base + 63 - u64::from(self.mask.leading_zeros())
    }
}

/// What a group of packets looks like to one FEC packet.
enum Group {
    /// Every packet is here: the FEC packet has done its work.
    Complete,
    /// Exactly one is missing and every other is known byte for byte.
    Recoverable(u64),
    /// More than one missing, or one missing beside one whose bytes are not known.
    Waiting,
}

/// FEC recovery for one publisher video stream.
#[derive(Debug, Default)]
pub struct Receiver {
    /// Media packets seen, by extended sequence number: their bytes, or `None` when not
    /// known as sent.
    media: BTreeMap<u64, Option<Protected>>,
    fec: VecDeque<Fec>,
    newest: u64,
    /// The first sequence number seen: nothing before it is known to be missing.
    first: Option<u64>,
    /// The sequence number of the last FEC packet.
    last_fec: Option<u64>,
}

impl Receiver {
    /// Whether media packet `seq`'s bytes are worth keeping: the stream has sent FEC
    /// lately. Otherwise [`Receiver::on_media`] is told `None` (saving the copy).
    pub fn wants_bytes(&self, seq: u64) -> bool {
        self.last_fec.is_some_and(|f| seq <= f + DORMANT)
    }

    /// A media packet arrived (its protected bytes, or `None` when they are not known as
    /// sent). Returns the packets it let FEC recover.
    pub fn on_media(&mut self, seq: u64, p: Option<Protected>) -> Vec<(u64, Protected)> {
        self.see(seq);
        if seq + WINDOW <= self.newest {
            return Vec::new();
        }
        self.media.insert(seq, p);
        self.prune();
        if self.fec.is_empty() {
            return Vec::new();
        }
        self.recover()
    }

    /// An FEC packet arrived with sequence number `seq` (its payload without the RED
    /// header). Returns the packets it recovered.
    pub fn on_fec(&mut self, seq: u64, payload: &[u8]) -> Result<Vec<(u64, Protected)>, FecError> {
        let fec = Fec::parse(seq, payload)?;
        self.see(seq);
        self.last_fec = Some(self.last_fec.map_or(seq, |f| f.max(seq)));
        if fec.newest() + WINDOW <= self.newest {
            return Ok(Vec::new());
        }
        if self.fec.len() >= MAX_PENDING_FEC {
            self.fec.pop_front();
        }
        self.fec.push_back(fec);
        self.prune();
        Ok(self.recover())
    }

    fn see(&mut self, seq: u64) {
        self.newest = self.newest.max(seq);
        self.first = Some(self.first.map_or(seq, |f| f.min(seq)));
    }

    /// The oldest packet whose absence means it is missing (older ones may have been
    /// received and let go).
    fn floor(&self) -> u64 {
        let window = self.newest.saturating_sub(WINDOW - 1);
        self.first.map_or(window, |f| f.max(window))
    }

    fn prune(&mut self) {
        let oldest = self.newest.saturating_sub(WINDOW - 1);
        while self
            .media
            .first_key_value()
            .is_some_and(|(s, _)| *s < oldest)
        {
            self.media.pop_first();
        }
        self.fec.retain(|f| f.newest() >= oldest);
    }

    fn group(&self, f: &Fec) -> Group {
        let (mut missing, mut unknown) = (None, 0);
        let floor = self.floor();
        for s in f.protected() {
            if s < floor {
                // Let go of (or before the first packet): the group cannot be summed.
                unknown += 1;
                continue;
            }
            match self.media.get(&s) {
                None if missing.is_some() => return Group::Waiting,
                None => missing = Some(s),
                Some(None) => unknown += 1,
                Some(Some(_)) => {}
            }
        }
        match missing {
            None => Group::Complete,
            Some(s) if unknown == 0 => Group::Recoverable(s),
            Some(_) => Group::Waiting,
        }
    }

    /// Recovers what the FEC packets held can; a recovered packet may complete another
    /// group, so this goes on until nothing changes.
    fn recover(&mut self) -> Vec<(u64, Protected)> {
        let mut out = Vec::new();
        loop {
            let mut progress = false;
            let mut i = 0;
            while i < self.fec.len() {
                match self.group(&self.fec[i]) {
                    Group::Complete => {
                        self.fec.remove(i);
                        continue;
                    }
                    Group::Waiting => {}
                    Group::Recoverable(seq) => {
                        let f = self.fec.remove(i);
                        if let Some(f) = f {
                            if let Some(p) = self.xor(&f, seq) {
                                self.media.insert(seq, Some(p.clone()));
                                out.push((seq, p));
                                progress = true;
                            }
                        }
                        continue;
                    }
                }
                i += 1;
            }
            if !progress {
                return out;
            }
        }
    }

    /// The packet `missing` from FEC packet `f` and the rest of its group, or `None` when
    /// they do not add up (a group member longer than the protection, or a recovered
    /// length beyond it).
    fn xor(&self, f: &Fec, missing: u64) -> Option<Protected> {
        let (mut b0, mut b1, mut ts, mut len) = (f.b0, f.b1, f.ts, f.len);
        let mut body = f.payload.to_vec();
        for s in f.protected().filter(|s| *s != missing) {
            let p = self.media.get(&s)?.as_ref()?;
            if p.body.len() > body.len() {
                return None;
            }
            b0 ^= p.b0;
            b1 ^= p.b1;
            ts ^= p.ts;
            len ^= u16::try_from(p.body.len()).ok()?;
            for (d, s) in body.iter_mut().zip(p.body.iter()) {
                *d ^= s;
            }
        }
        let len = usize::from(len);
        if len > body.len() {
            return None;
        }
        body.truncate(len);
        Some(Protected {
            b0: 0x80 | (b0 & 0x3f),
            b1,
            ts,
            body: body.into(),
        })
    }
}

/// An FEC payload (level 0, without a RED header) protecting `group`: packets by
/// sequence number, the first one the base, spanning at most 48 (a 48-bit mask when more
/// than 16). What a sender builds (RFC 5109 section 7), with str0m's encoder, the one
/// subscriptions are protected with; the tests send it.
pub fn encode(group: &[(u16, &Protected)]) -> Vec<u8> {
    let mut e = str0m::rtp::UlpfecEncoder::new();
    for (seq, p) in group {
        e.add(*seq, p.b0, p.b1, p.ts, &[&p.body]);
    }
    e.finish_to_vec().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `ps` numbered from `first` on (wrapping), as [`encode`] takes a group.
    fn numbered(ps: &[Protected], first: u16) -> Vec<(u16, &Protected)> {
        ps.iter()
            .zip(0u16..)
            .map(|(p, i)| (first.wrapping_add(i), p))
            .collect()
    }

    fn packet(i: u8, len: usize, marker: bool) -> Protected {
        // One-byte header extensions (X set): 0xBEDE, 1 word, then the payload.
        let mut body = vec![0xbe, 0xde, 0x00, 0x01, 0x10, i, 0, 0];
        body.extend((0..len).map(|k| (k as u8).wrapping_mul(31).wrapping_add(i)));
        Protected {
            b0: 0x90,
            b1: if marker { 0x80 | 96 } else { 96 },
            ts: 3000 * u32::from(i / 3),
            body: body.into(),
        }
    }

    #[test]
    fn recovers_the_one_missing_packet_of_a_group() {
        let ps: Vec<Protected> = (0..4)
            .map(|i| packet(i, 100 + 37 * i as usize, i == 3))
            .collect();
        let group = numbered(&ps, 1000);
        let fec = encode(&group);
        let mut r = Receiver::default();
        // Packet 1002 is lost; the FEC packet comes after the group.
        for s in [0usize, 1, 3] {
            assert!(r.on_media(1000 + s as u64, Some(ps[s].clone())).is_empty());
        }
        let got = r.on_fec(1004, &fec).unwrap();
        assert_eq!(got, vec![(1002, ps[2].clone())]);
        // The recovered packet goes back on the wire as it was.
        let wire = got[0].1.to_packet(1002, 0x1234);
        assert_eq!(wire[0], 0x90);
        assert_eq!(&wire[12..], &ps[2].body[..]);
    }

    #[test]
    fn an_fec_packet_that_comes_first_waits_for_its_group() {
        let ps: Vec<Protected> = (0..3)
            .map(|i| packet(i, 50 * (i as usize + 1), false))
            .collect();
        let group = numbered(&ps, 7);
        let fec = encode(&group);
        let mut r = Receiver::default();
        assert!(r.on_media(7, Some(ps[0].clone())).is_empty());
        // Two missing: nothing yet.
        assert!(r.on_fec(10, &fec).unwrap().is_empty());
        // One more arrives: the last is recovered.
        assert_eq!(r.on_media(9, Some(ps[2].clone())), vec![(8, ps[1].clone())]);
    }

    #[test]
    fn a_48_packet_mask_and_a_chain_of_groups() {
        let ps: Vec<Protected> = (0..40)
            .map(|i| packet(i, 20 + i as usize, i % 5 == 4))
            .collect();
        let all = numbered(&ps, 65530);
        // FEC A protects packets 0..20 (long mask), FEC B 0..40.
        let a = encode(&all[..20]);
        let b = encode(&all);
        let mut r = Receiver::default();
        let ext = |i: usize| 65530u64 + i as u64;
        // Lost: 3 and 25.
        for i in (0..40).filter(|i| *i != 3 && *i != 25) {
            r.on_media(ext(i), Some(ps[i].clone()));
        }
        // B alone cannot: two are missing.
        assert!(r.on_fec(ext(41), &b).unwrap().is_empty());
        // A gives 3 back, which lets B give 25 back.
        let got = r.on_fec(ext(42), &a).unwrap();
        assert_eq!(
            got,
            vec![(ext(3), ps[3].clone()), (ext(25), ps[25].clone())]
        );
    }

    #[test]
    fn a_packet_whose_bytes_are_unknown_stops_recovery_instead_of_corrupting_it() {
        let ps: Vec<Protected> = (0..3).map(|i| packet(i, 80, false)).collect();
        let group = numbered(&ps, 100);
        let fec = encode(&group);
        let mut r = Receiver::default();
        r.on_media(100, Some(ps[0].clone()));
        // 101 came as a retransmission: received, but not as FEC saw it.
        r.on_media(101, None);
        assert!(r.on_fec(103, &fec).unwrap().is_empty());
    }

    #[test]
    fn malformed_fec_is_an_error_and_changes_nothing() {
        let mut r = Receiver::default();
        assert_eq!(r.on_fec(5, &[0; 9]).unwrap_err(), FecError::Truncated);
        // Mask empty.
        let mut p = vec![0u8; 14];
        assert_eq!(r.on_fec(5, &p).unwrap_err(), FecError::EmptyMask);
        // Protection length beyond the payload.
        p[10] = 0x00;
        p[11] = 0x20;
        p[12] = 0x80;
        assert_eq!(r.on_fec(5, &p).unwrap_err(), FecError::Truncated);
        p[10] = 0xff;
        assert_eq!(r.on_fec(5, &p).unwrap_err(), FecError::TooLong);
        // A group member longer than the protection length does not add up.
        let ps: Vec<Protected> = (0..2).map(|i| packet(i, 10, false)).collect();
        let group = numbered(&ps, 20);
        let fec = encode(&group);
        let mut long = ps[0].clone();
        long.body = vec![7u8; 200].into();
        r.on_media(20, Some(long));
        assert!(r.on_fec(22, &fec).unwrap().is_empty());
        assert!(r.fec.is_empty());
    }

    #[test]
    fn a_group_reaching_before_what_is_kept_recovers_nothing() {
        let ps: Vec<Protected> = (0..2).map(|i| packet(i, 30, false)).collect();
        let group = numbered(&ps, 50);
        let fec = encode(&group);
        let mut r = Receiver::default();
        // The stream was first seen at 51: 50 is not known to be missing.
        r.on_media(51, Some(ps[1].clone()));
        assert!(r.on_fec(52, &fec).unwrap().is_empty());
        // An FEC packet for one packet let go long ago does not bring it back.
        let one = encode(&group[..1]);
        for s in 52..700 {
            r.on_media(s, Some(packet(3, 10, false)));
        }
        assert!(r.on_fec(700, &one).unwrap().is_empty());
    }

    #[test]
    fn bytes_are_kept_only_while_the_stream_sends_fec() {
        let mut r = Receiver::default();
        assert!(!r.wants_bytes(1));
        let ps: Vec<Protected> = (0..2).map(|i| packet(i, 30, false)).collect();
        let group = numbered(&ps, 1);
        r.on_media(1, None);
        r.on_media(2, None);
        r.on_fec(3, &encode(&group)).unwrap();
        assert!(r.wants_bytes(4));
        assert!(r.wants_bytes(3 + DORMANT));
        assert!(!r.wants_bytes(4 + DORMANT));
    }

    #[test]
    fn old_packets_and_fec_fall_out_of_the_window() {
        let mut r = Receiver::default();
        for s in 0..2000u64 {
            r.on_media(s, Some(packet(1, 10, false)));
        }
        assert!(r.media.len() as u64 <= WINDOW);
        assert_eq!(
            r.media.first_key_value().map(|(s, _)| *s),
            Some(2000 - WINDOW)
        );
    }

    // str0m's encoder, which sends subscriptions their FEC (its own tests are not built).
    #[test]
    fn one_packet_xors_to_itself() {
        let mut e = str0m::rtp::UlpfecEncoder::new();
        e.add(7, 0x90, 0x80 | 96, 3000, &[&[1, 2], &[3, 4, 5]]);
        let v = e.finish_to_vec().unwrap();
        assert_eq!(&v[..2], &[0x10, 0x80 | 96]);
        assert_eq!(&v[2..4], &7u16.to_be_bytes());
        assert_eq!(&v[4..8], &3000u32.to_be_bytes());
        assert_eq!(&v[8..10], &5u16.to_be_bytes());
        assert_eq!(&v[10..12], &5u16.to_be_bytes());
        assert_eq!(&v[12..14], &0x8000u16.to_be_bytes());
        assert_eq!(&v[14..], &[1, 2, 3, 4, 5]);
        assert!(e.is_empty());
    }

    #[test]
    fn a_wide_group_takes_the_long_mask_and_a_far_packet_starts_anew() {
        let mut e = str0m::rtp::UlpfecEncoder::new();
        e.add(65_530, 0x80, 96, 1, &[&[0xff; 9]]);
        e.add(14, 0x80, 96, 2, &[&[0x0f; 20]]);
        assert_eq!(e.len(), 2);
        let v = e.finish_to_vec().unwrap();
        assert_eq!(v[0] & 0x40, 0x40, "L set");
        assert_eq!(&v[14..18], &(1u32 << 27).to_be_bytes()[..]);
        assert_eq!(v.len(), 18 + 20);
        assert_eq!(v[18], 0xf0);
        assert_eq!(v[18 + 19], 0x0f);
        e.add(1, 0x80, 96, 1, &[&[1]]);
        e.add(49, 0x80, 96, 1, &[&[2]]);
        assert_eq!(e.len(), 1, "49 is past the mask: a new group");
        assert_eq!(
            e.finish(&mut [0; 4]),
            0,
            "too short a buffer drops the group"
        );
        assert!(e.is_empty());
    }
}
