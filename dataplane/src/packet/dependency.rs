//! The dependency descriptor RTP header extension (the AOM AV1 RTP payload format,
//! appendix A): what an SFU needs of a scalable stream whose payload does not say its
//! layers (AV1 with L1T3, L3T3, …; browsers send it with any codec when negotiated).
//!
//! Every packet carries the mandatory fields (start and end of frame, a template id, a
//! frame number). The first packet of a coded video sequence also carries the template
//! dependency structure: for each template its spatial and temporal layer and its
//! decode target indications (DTIs). A frame's layers are its template's, so a packet
//! can only be read with the structure in force, which the reader of a stream keeps
//! ([`parse`] takes it and returns a new one when the packet carries one).
//!
//! Only what forwarding needs is kept: layers, DTIs (whether a frame is a switching point
//! of a decode target), the decode targets' layers, the spatial layers' sizes. Frame
//! differences and chains are read past, not kept. Untrusted bytes: a short or
//! inconsistent descriptor gives `None`, never a panic.

use super::bits::BitReader;

/// The extension's URI in SDP (`a=extmap`).
pub const URI: &str =
    "https://aomediacodec.github.io/av1-rtp-spec/#dependency-descriptor-rtp-header-extension";

/// Template ids are 6 bits: at most this many templates.
const MAX_TEMPLATES: usize = 64;

/// At most this many decode targets (`dtis_cnt_minus_one` is 5 bits).
pub const MAX_DECODE_TARGETS: usize = 32;

/// Spatial ids are at most 3.
const MAX_SPATIAL: usize = 4;

/// Decode target indication: the frame is not in the decode target.
pub const DTI_NOT_PRESENT: u8 = 0;
/// Decode target indication: the frame is in the decode target and nothing after it
/// needs it.
pub const DTI_DISCARDABLE: u8 = 1;
/// Decode target indication: from this frame on the decode target can be decoded.
pub const DTI_SWITCH: u8 = 2;
/// Decode target indication: the frame is in the decode target and needed.
pub const DTI_REQUIRED: u8 = 3;

/// One frame dependency template.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Template {
    /// Spatial layer.
    pub spatial: u8,
    /// Temporal layer.
    pub temporal: u8,
    /// The DTI for decode target `i` in bits `2i..2i+2`.
    pub dtis: u64,
}

/// The template dependency structure of a coded video sequence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Structure {
    /// The template id of the first template.
    pub template_id_offset: u8,
    /// How many decode targets there are.
    pub decode_targets: u8,
    /// How many chains there are (their differences are read past in each frame).
    pub chains: u8,
    /// The templates, by index.
    pub templates: Vec<Template>,
    /// The maximum render size of each spatial layer, when the structure gives them.
    pub sizes: [Option<(u16, u16)>; MAX_SPATIAL],
    /// The highest spatial and temporal layer of each decode target: the layers of the
    /// templates it includes.
    pub target_layers: [(u8, u8); MAX_DECODE_TARGETS],
}

impl Structure {
    /// The picture size of each spatial layer: the structure's, or, when it gives none
    /// (browsers leave them out), halved from `top`, the top layer's size (what the
    /// sequence header says), layer by layer down, as the common scalability modes
    /// (L2T3, L3T3, their `_KEY` forms) scale.
    pub fn layer_sizes(&self, top: Option<(u16, u16)>) -> [Option<(u16, u16)>; 8] {
        let mut out = [None; 8];
        if self.sizes.iter().any(Option::is_some) {
            out[..MAX_SPATIAL].copy_from_slice(&self.sizes);
        } else if let Some((w, h)) = top {
            let max = self.templates.iter().map(|t| t.spatial).max().unwrap_or(0);
            for s in 0..=max {
                let shift = u32::from(max - s);
                out[usize::from(s)] = Some((w >> shift, h >> shift));
            }
        }
        out
    }

    /// The decode target whose layers are exactly `spatial` and `temporal`, if any.
    pub fn target_of(&self, spatial: u8, temporal: u8) -> Option<usize> {
        self.target_layers[..usize::from(self.decode_targets)]
            .iter()
            .position(|l| *l == (spatial, temporal))
    }
}

/// The DTI of decode target `target` in a packed set.
fn dti(dtis: u64, target: usize) -> u8 {
    if target >= MAX_DECODE_TARGETS {
        return DTI_NOT_PRESENT;
    }
    ((dtis >> (2 * target)) & 0b11) as u8
}

/// What one packet's descriptor says of its frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Frame {
    /// The packet starts a frame.
    pub start: bool,
    /// The packet ends a frame.
    pub end: bool,
    /// The frame number (16 bits, increasing in decode order).
    pub frame_number: u16,
    /// Spatial layer.
    pub spatial: u8,
    /// Temporal layer.
    pub temporal: u8,
    /// The frame's DTIs, packed as in [`Template::dtis`].
    pub dtis: u64,
    /// The packet carries a new template dependency structure (the first packet of a
    /// coded video sequence: a keyframe).
    pub new_structure: bool,
}

impl Frame {
    /// The frame's indication for decode target `target`.
    pub fn dti(&self, target: usize) -> u8 {
        dti(self.dtis, target)
    }
}

/// `ns(n)`: a non-symmetric unsigned integer in `0..n`.
fn ns(r: &mut BitReader<'_>, n: u32) -> Option<u32> {
    if n <= 1 {
        return Some(0);
    }
    let w = 32 - n.leading_zeros();
    let m = (1u32 << w) - n;
    let v = r.bits(w - 1)?;
    if v < m {
        return Some(v);
    }
    let extra = r.bits(1)?;
    Some((v << 1) - m + extra)
}

fn template_structure(r: &mut BitReader<'_>) -> Option<Structure> {
    let template_id_offset = r.bits(6)? as u8;
    let decode_targets = r.bits(5)? as u8 + 1;
    let dts = usize::from(decode_targets);
    // Layers: each template's ids follow from the one before.
    let mut templates = Vec::with_capacity(8);
    let (mut spatial, mut temporal) = (0u8, 0u8);
    loop {
        if templates.len() == MAX_TEMPLATES {
            return None;
        }
        templates.push(Template {
            spatial,
            temporal,
            dtis: 0,
        });
        match r.bits(2)? {
            0 => {}
            1 => temporal += 1,
            2 => {
                temporal = 0;
                spatial += 1;
            }
            _ => break,
        }
        if usize::from(spatial) >= MAX_SPATIAL || temporal > 7 {
            return None;
        }
    }
    for t in &mut templates {
        for d in 0..dts {
            t.dtis |= u64::from(r.bits(2)?) << (2 * d);
        }
    }
    // Frame differences: read past.
    for _ in 0..templates.len() {
        while r.bit()? {
            r.skip(4)?;
        }
    }
    // Chains: read past, keeping their count for the frames' own chain fields.
    let chains = ns(r, u32::from(decode_targets) + 1)?;
    if chains > 0 {
        for _ in 0..dts {
            ns(r, chains + 1)?;
        }
        r.skip(templates.len() * chains as usize * 4)?;
    }
    let mut sizes = [None; MAX_SPATIAL];
    if r.bit()? {
        for size in sizes.iter_mut().take(usize::from(spatial) + 1) {
            let w = r.bits(16)? + 1;
            let h = r.bits(16)? + 1;
            *size = Some((
                w.min(u32::from(u16::MAX)) as u16,
                h.min(u32::from(u16::MAX)) as u16,
            ));
        }
    }
    let mut target_layers = [(0, 0); MAX_DECODE_TARGETS];
    for (d, layers) in target_layers.iter_mut().enumerate().take(dts) {
        *layers = templates
            .iter()
            .filter(|t| dti(t.dtis, d) != DTI_NOT_PRESENT)
            .fold((0, 0), |(s, tl), t| (s.max(t.spatial), tl.max(t.temporal)));
    }
    Some(Structure {
        template_id_offset,
        decode_targets,
        chains: chains as u8,
        templates,
        sizes,
        target_layers,
    })
}

/// Reads a descriptor with `known`, the structure in force. Gives the frame, and the
/// structure the packet carries when it carries one (from then on the one in force).
/// `None`: cut short or inconsistent, or a template that no known structure has.
pub fn parse(buf: &[u8], known: Option<&Structure>) -> Option<(Frame, Option<Structure>)> {
    if buf.len() < 3 {
        return None;
    }
    let mut r = BitReader::new(buf);
    let start = r.bit()?;
    let end = r.bit()?;
    let template_id = r.bits(6)? as usize;
    let frame_number = r.bits(16)? as u16;
    let (mut custom_dtis, mut new) = (false, None);
    if buf.len() > 3 {
        let structure_present = r.bit()?;
        let active_present = r.bit()?;
        custom_dtis = r.bit()?;
        // Custom frame differences and chains come after the DTIs: not read.
        r.skip(2)?;
        if structure_present {
            new = Some(template_structure(&mut r)?);
        }
        if active_present {
            let dts = new.as_ref().or(known)?.decode_targets;
            r.skip(usize::from(dts))?;
        }
    }
    let structure = new.as_ref().or(known)?;
    let index =
        (template_id + MAX_TEMPLATES - usize::from(structure.template_id_offset)) % MAX_TEMPLATES;
    let template = structure.templates.get(index)?;
    let dtis = if custom_dtis {
        let mut dtis = 0u64;
        for d in 0..usize::from(structure.decode_targets) {
            dtis |= u64::from(r.bits(2)?) << (2 * d);
        }
        dtis
    } else {
        template.dtis
    };
    let frame = Frame {
        start,
        end,
        frame_number,
        spatial: template.spatial,
        temporal: template.temporal,
        dtis,
        new_structure: new.is_some(),
    };
    Some((frame, new))
}

/// The descriptor of the first packet of an AV1 keyframe from Chromium 156 (libaom,
/// "L3T3_KEY" asked for at 640×360, encoded as L2T3_KEY), captured in the end-to-end test.
#[cfg(test)]
pub(crate) const CHROMIUM_L2T3_KEY: [u8; 49] = [
    0xc0, 0x00, 0x01, 0x80, 0x05, 0x14, 0x85, 0x3a, 0xaa, 0xa8, 0x01, 0x80, 0x04, 0x00, 0x40, 0x02,
    0xa0, 0x2a, 0x00, 0x60, 0x01, 0x00, 0x15, 0xd3, 0x45, 0x14, 0x17, 0x4d, 0x14, 0x4c, 0x70, 0x08,
    0x74, 0x32, 0x16, 0x51, 0x11, 0x85, 0x43, 0x27, 0x68, 0x09, 0xf8, 0x05, 0x98, 0x13, 0xf8, 0x0b,
    0x38,
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::bits::BitWriter;

    /// An L1T3 structure like the one browsers send: templates T0 (key), T0, T2, T1, T2 with three
    /// decode targets (T0, T0–T1, T0–T2), one chain, no resolutions. Returns the bytes of
    /// a descriptor carrying it for a keyframe's first packet.
    fn l1t3_keyframe() -> Vec<u8> {
        let mut w = BitWriter::default();
        // start, end, template id 0, frame number 100
        w.put(1, 1).put(1, 1).put(6, 0).put(16, 100);
        // structure present, no active mask, no custom dtis/fdiffs/chains
        w.put(1, 1).put(1, 0).put(1, 0).put(1, 0).put(1, 0);
        // offset 0, 3 decode targets
        w.put(6, 0).put(5, 2);
        // layers: (0,0) same (0,0) next temporal (0,1) next temporal (0,2) end
        w.put(2, 0).put(2, 1).put(2, 1).put(2, 3);
        // DTIs per template for targets 0, 1, 2.
        for dtis in [
            [DTI_SWITCH, DTI_SWITCH, DTI_SWITCH],
            [DTI_SWITCH, DTI_SWITCH, DTI_SWITCH],
            [DTI_NOT_PRESENT, DTI_DISCARDABLE, DTI_SWITCH],
            [DTI_NOT_PRESENT, DTI_NOT_PRESENT, DTI_DISCARDABLE],
        ] {
            for d in dtis {
                w.put(2, u32::from(d));
            }
        }
        // fdiffs: none for the key, 4 for T0, 2 for T1, 1 for T2
        w.put(1, 0);
        w.put(1, 1).put(4, 3).put(1, 0);
        w.put(1, 1).put(4, 1).put(1, 0);
        w.put(1, 1).put(4, 0).put(1, 0);
        // one chain (ns(4): w = 3, m = 4; value 1 < 4 in 2 bits), protecting every target
        // (ns(2): w = 2, m = 2; value 0 in 1 bit)
        w.put(2, 1);
        for _ in 0..3 {
            w.put(1, 0);
        }
        for fdiff in [0, 4, 2, 1] {
            w.put(4, fdiff);
        }
        // resolutions present: 640×360
        w.put(1, 1).put(16, 639).put(16, 359);
        w.bytes().to_vec()
    }

    #[test]
    fn reads_a_structure_and_the_frames_that_use_it() {
        let key = l1t3_keyframe();
        let (frame, structure) = parse(&key, None).unwrap();
        let s = structure.unwrap();
        assert_eq!(s.templates.len(), 4);
        assert_eq!((s.decode_targets, s.chains), (3, 1));
        assert_eq!(s.sizes[0], Some((640, 360)));
        assert_eq!(
            s.templates.iter().map(|t| t.temporal).collect::<Vec<_>>(),
            vec![0, 0, 1, 2]
        );
        assert!(frame.start && frame.end && frame.new_structure);
        assert_eq!(
            (frame.frame_number, frame.spatial, frame.temporal),
            (100, 0, 0)
        );
        // Decode targets: T0 only, T0–T1, T0–T2.
        assert_eq!(
            (s.target_layers[0], s.target_layers[1], s.target_layers[2]),
            ((0, 0), (0, 1), (0, 2))
        );
        assert_eq!(s.target_of(0, 1), Some(1));
        assert_eq!(s.target_of(1, 0), None);
        assert_eq!(s.layer_sizes(None)[..2], [Some((640, 360)), None]);
        // A T1 frame (template 2): three bytes, read with the structure.
        let (t1, none) = parse(&[0x82, 0x00, 0x65], Some(&s)).unwrap();
        assert!(none.is_none());
        assert!(t1.start && !t1.end);
        assert_eq!((t1.frame_number, t1.temporal), (101, 1));
        assert_eq!(t1.dti(1), DTI_DISCARDABLE);
        assert_eq!(t1.dti(2), DTI_SWITCH);
        // Without a structure a template means nothing.
        assert_eq!(parse(&[0x82, 0x00, 0x65], None), None);
    }

    #[test]
    fn reads_the_structure_chromium_sends_for_l2t3_key() {
        let (frame, s) = parse(&CHROMIUM_L2T3_KEY, None).unwrap();
        let s = s.unwrap();
        assert!(frame.new_structure && frame.start && frame.end);
        assert_eq!(
            (frame.spatial, frame.temporal, frame.frame_number),
            (0, 0, 1)
        );
        assert_eq!((s.templates.len(), s.decode_targets, s.chains), (10, 6, 2));
        // Six decode targets: S0T0, S0T1, S0T2, S1T0, S1T1, S1T2.
        let targets: Vec<(u8, u8)> = s.target_layers[..6].to_vec();
        assert_eq!(
            targets,
            vec![(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)]
        );
        // No sizes in it: halved from the sequence header's.
        assert_eq!(
            s.layer_sizes(Some((640, 360)))[..3],
            [Some((320, 180)), Some((640, 360)), None]
        );
        // The next frames: S1T0; S0T2, discardable; S1T2; S0T1, where the decode target
        // S0T2 can be switched to.
        let (f, _) = parse(&[0xc5, 0x00, 0x02], Some(&s)).unwrap();
        assert_eq!((f.spatial, f.temporal), (1, 0));
        let (f, _) = parse(&[0xc3, 0x00, 0x03], Some(&s)).unwrap();
        assert_eq!((f.spatial, f.temporal), (0, 2));
        assert_eq!((f.dti(0), f.dti(2)), (DTI_NOT_PRESENT, DTI_DISCARDABLE));
        let (f, _) = parse(&[0xc8, 0x00, 0x04], Some(&s)).unwrap();
        assert_eq!((f.spatial, f.temporal), (1, 2));
        let (f, _) = parse(&[0xc2, 0x00, 0x05], Some(&s)).unwrap();
        assert_eq!((f.spatial, f.temporal), (0, 1));
        assert_eq!((f.dti(1), f.dti(2)), (DTI_DISCARDABLE, DTI_SWITCH));
    }

    #[test]
    fn custom_dtis_and_an_active_mask_are_read() {
        let (_, s) = parse(&l1t3_keyframe(), None).unwrap();
        let s = s.unwrap();
        let mut w = BitWriter::default();
        // template 3 (T2), frame 7; extended: no structure, active mask, custom dtis
        w.put(1, 1).put(1, 1).put(6, 3).put(16, 7);
        w.put(1, 0).put(1, 1).put(1, 1).put(1, 0).put(1, 0);
        w.put(3, 0b011);
        for d in [DTI_NOT_PRESENT, DTI_NOT_PRESENT, DTI_SWITCH] {
            w.put(2, u32::from(d));
        }
        let (f, _) = parse(w.bytes(), Some(&s)).unwrap();
        assert_eq!(f.temporal, 2);
        assert_eq!(f.dti(2), DTI_SWITCH);
    }

    #[test]
    fn the_template_id_offset_wraps() {
        let (_, s) = parse(&l1t3_keyframe(), None).unwrap();
        let mut s = s.unwrap();
        s.template_id_offset = 62;
        // Template id 0 is index 2 (T1), id 63 index 1 (T0).
        let (f, _) = parse(&[0x80, 0x00, 0x01], Some(&s)).unwrap();
        assert_eq!(f.temporal, 1);
        let (f, _) = parse(&[0xbf, 0x00, 0x01], Some(&s)).unwrap();
        assert_eq!(f.temporal, 0);
        // Id 5 is index 7: no such template.
        assert_eq!(parse(&[0x85, 0x00, 0x01], Some(&s)), None);
    }

    #[test]
    fn ns_reads_non_symmetric_integers() {
        // ns(5): w = 3, m = 3; 0..2 in two bits, 3 and 4 in three.
        let mut r = BitReader::new(&[0b0001_1101, 0b1100_0000]);
        assert_eq!(ns(&mut r, 5), Some(0));
        assert_eq!(ns(&mut r, 5), Some(1));
        assert_eq!(ns(&mut r, 5), Some(3));
        assert_eq!(ns(&mut r, 5), Some(4));
        assert_eq!(ns(&mut BitReader::new(&[]), 1), Some(0));
    }

    #[test]
    fn garbage_never_panics() {
        let key = l1t3_keyframe();
        let (_, s) = parse(&key, None).unwrap();
        let mut state = 0x9e37_79b9_u32;
        for n in 0..300 {
            let bytes: Vec<u8> = (0..(n % 40))
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 17;
                    state ^= state << 5;
                    state as u8
                })
                .collect();
            let _ = parse(&bytes, None);
            let _ = parse(&bytes, s.as_ref());
        }
        for n in 0..key.len() {
            let _ = parse(&key[..n], None);
        }
    }
}
