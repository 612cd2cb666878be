//! VP9 payloads (RFC 9628): the payload descriptor — keyframes, layer indices for SVC,
//! and the scalability structure that carries each spatial layer's size.

use super::Picture;

/// The VP9 payload descriptor's fields the dataplane uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Descriptor {
    /// P: the picture is inter-predicted (not a keyframe).
    pub inter: bool,
    /// B: the packet starts a layer frame.
    pub begin: bool,
    /// E: the packet ends a layer frame.
    pub end: bool,
    /// TID (0 without layer indices).
    pub temporal: u8,
    /// U: a switching-up point (no later frame of this temporal layer depends on an
    /// earlier one of the same or a higher layer).
    pub switch_up: bool,
    /// SID (0 without layer indices).
    pub spatial: u8,
    /// D: the layer frame depends on the spatial layer below it.
    pub inter_layer: bool,
    /// Whether layer indices were present (L).
    pub has_layers: bool,
    /// The scalability structure's widest layer size, when present (V with Y).
    pub size: Option<(u16, u16)>,
    /// The scalability structure's size of each spatial layer (V with Y).
    pub sizes: [Option<(u16, u16)>; 8],
    /// Length of the descriptor in bytes.
    pub len: usize,
}

/// Parses the payload descriptor; `None` when it is cut short or inconsistent.
pub fn descriptor(p: &[u8]) -> Option<Descriptor> {
    let b0 = *p.first()?;
    let flexible = b0 & 0x10 != 0;
    let mut d = Descriptor {
        inter: b0 & 0x40 != 0,
        begin: b0 & 0x08 != 0,
        end: b0 & 0x04 != 0,
        has_layers: b0 & 0x20 != 0,
        ..Default::default()
    };
    let mut i = 1;
    if b0 & 0x80 != 0 {
        let m = *p.get(i)?;
        i += if m & 0x80 != 0 { 2 } else { 1 };
    }
    if d.has_layers {
        let l = *p.get(i)?;
        d.temporal = l >> 5;
        d.switch_up = l & 0x10 != 0;
        d.spatial = (l >> 1) & 0x07;
        d.inter_layer = l & 0x01 != 0;
        i += 1;
        if !flexible {
            // TL0PICIDX.
            i += 1;
        }
    }
    if flexible && d.inter {
        // Up to three reference indices, each with N saying another follows.
        for _ in 0..3 {
            let r = *p.get(i)?;
            i += 1;
            if r & 0x01 == 0 {
                break;
            }
        }
    }
    if b0 & 0x02 != 0 {
        // V: the scalability structure.
        let ss = *p.get(i)?;
        i += 1;
        let layers = usize::from(ss >> 5) + 1;
        if ss & 0x10 != 0 {
            for layer in 0..layers {
                let w = u16::from_be_bytes([*p.get(i)?, *p.get(i + 1)?]);
                let h = u16::from_be_bytes([*p.get(i + 2)?, *p.get(i + 3)?]);
                i += 4;
                d.sizes[layer] = Some((w, h));
                if d.size.is_none_or(|(bw, _)| w >= bw) {
                    d.size = Some((w, h));
                }
            }
        }
        if ss & 0x08 != 0 {
            let groups = *p.get(i)?;
            i += 1;
            for _ in 0..groups {
                let g = *p.get(i)?;
                i += 1 + usize::from((g >> 2) & 0x03);
            }
        }
    }
    if i > p.len() {
        return None;
    }
    d.len = i;
    Some(d)
}

/// Reads one VP9 packet: a keyframe starts at the beginning of a non-inter-predicted
/// frame of the base spatial layer.
pub fn inspect(p: &[u8]) -> Picture {
    match descriptor(p) {
        Some(d) => Picture {
            keyframe: !d.inter && d.begin && d.spatial == 0,
            size: d.size,
        },
        None => Picture::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_keyframes_layers_and_the_scalability_structure() {
        // I (7-bit id), L, B, E, V; layer byte TID 0 U 0 SID 0 D 0; TL0PICIDX; SS with
        // two spatial layers 320×180 and 640×360 (Y), no groups.
        let p = [
            0xae, 0x05, 0x00, 0x07, 0x30, 0x01, 0x40, 0x00, 0xb4, 0x02, 0x80, 0x01, 0x68, 0xaa,
        ];
        let d = descriptor(&p).unwrap();
        assert!(!d.inter && d.begin && d.end && d.has_layers);
        assert_eq!(d.size, Some((640, 360)));
        assert_eq!(d.sizes[..3], [Some((320, 180)), Some((640, 360)), None]);
        assert_eq!(d.len, 13);
        assert_eq!(
            inspect(&p),
            Picture {
                keyframe: true,
                size: Some((640, 360))
            }
        );
        // Spatial layer 1 of the same picture, inter-layer predicted: not a keyframe start.
        let upper = [0xa8, 0x05, 0x03, 0x07, 0xaa];
        let d = descriptor(&upper).unwrap();
        assert_eq!((d.spatial, d.inter_layer), (1, true));
        assert!(!inspect(&upper).keyframe);
        // Flexible mode, inter frame with two references: TID 2, U.
        let flex = [0xf8, 0x05, 0x50, 0x03, 0x04, 0xaa];
        let d = descriptor(&flex).unwrap();
        assert_eq!((d.temporal, d.switch_up, d.len), (2, true, 5));
        // Cut short.
        assert_eq!(descriptor(&p[..9]), None);
    }
}
