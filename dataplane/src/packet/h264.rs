//! H.264 payloads (RFC 6184): keyframes (an SPS or IDR slice) in single NAL units,
//! STAP-A aggregates and FU-A fragments, and the picture size read from the SPS.

use super::bits::{unescape, BitReader};
use super::Picture;

const IDR: u8 = 5;
const SPS: u8 = 7;
const STAP_A: u8 = 24;
const FU_A: u8 = 28;

/// Reads one H.264 packet.
pub fn inspect(p: &[u8]) -> Picture {
    let Some(&first) = p.first() else {
        return Picture::default();
    };
    let mut pic = Picture::default();
    match first & 0x1f {
        STAP_A => {
            let mut i = 1;
            while let (Some(&a), Some(&b)) = (p.get(i), p.get(i + 1)) {
                let len = usize::from(u16::from_be_bytes([a, b]));
                let Some(nal) = p.get(i + 2..i + 2 + len) else {
                    break;
                };
                nal_unit(nal, &mut pic);
                i += 2 + len;
            }
        }
        FU_A => {
            if let Some(&fu) = p.get(1) {
                let start = fu & 0x80 != 0;
                pic.keyframe = start && matches!(fu & 0x1f, IDR | SPS);
            }
        }
        1..=23 => nal_unit(p, &mut pic),
        _ => {}
    }
    pic
}

fn nal_unit(nal: &[u8], pic: &mut Picture) {
    let Some(&h) = nal.first() else { return };
    match h & 0x1f {
        IDR => pic.keyframe = true,
        SPS => {
            pic.keyframe = true;
            if let Some(size) = sps_size(nal.get(1..).unwrap_or(&[])) {
                pic.size = Some(size);
            }
        }
        _ => {}
    }
}

/// The profiles whose SPS carries chroma format and bit depths (H.264 §7.3.2.1.1).
const HIGH_PROFILES: [u32; 12] = [100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134];

/// The cropped picture size an SPS (without its NAL header byte) describes.
pub fn sps_size(rbsp: &[u8]) -> Option<(u16, u16)> {
    let data = unescape(rbsp, 256);
    let mut r = BitReader::new(&data);
    let profile = r.bits(8)?;
    r.skip(16)?; // constraint flags, level
    r.ue()?; // seq_parameter_set_id
    let mut chroma_format = 1;
    if HIGH_PROFILES.contains(&profile) {
        chroma_format = r.ue()?;
        if chroma_format == 3 {
            r.skip(1)?;
        }
        r.ue()?; // bit_depth_luma_minus8
        r.ue()?; // bit_depth_chroma_minus8
        r.skip(1)?; // qpprime_y_zero_transform_bypass_flag
        if r.bit()? {
            let lists = if chroma_format == 3 { 12 } else { 8 };
            for i in 0..lists {
                if r.bit()? {
                    skip_scaling_list(&mut r, if i < 6 { 16 } else { 64 })?;
                }
            }
        }
    }
    r.ue()?; // log2_max_frame_num_minus4
    match r.ue()? {
        0 => {
            r.ue()?;
        }
        1 => {
            r.skip(1)?;
            r.se()?;
            r.se()?;
            let n = r.ue()?;
            if n > 255 {
                return None;
            }
            for _ in 0..n {
                r.se()?;
            }
        }
        _ => {}
    }
    r.ue()?; // max_num_ref_frames
    r.skip(1)?; // gaps_in_frame_num_value_allowed_flag
    let w_mbs = u64::from(r.ue()?) + 1;
    let h_units = u64::from(r.ue()?) + 1;
    let frame_mbs_only = r.bit()?;
    if !frame_mbs_only {
        r.skip(1)?;
    }
    r.skip(1)?; // direct_8x8_inference_flag
    let (mut cl, mut cr, mut ct, mut cb) = (0u64, 0u64, 0u64, 0u64);
    if r.bit()? {
        cl = u64::from(r.ue()?);
        cr = u64::from(r.ue()?);
        ct = u64::from(r.ue()?);
        cb = u64::from(r.ue()?);
    }
    let field = if frame_mbs_only { 1 } else { 2 };
    let (sub_w, sub_h) = match chroma_format {
        0 | 3 => (1, 1),
        2 => (2, 1),
        _ => (2, 2),
    };
    let (crop_x, crop_y) = if chroma_format == 0 {
        (1, field)
    } else {
        (sub_w, sub_h * field)
    };
    let w = (w_mbs * 16).checked_sub(crop_x * (cl + cr))?;
    let h = (field * h_units * 16).checked_sub(crop_y * (ct + cb))?;
    Some((u16::try_from(w).ok()?, u16::try_from(h).ok()?))
}

fn skip_scaling_list(r: &mut BitReader<'_>, size: usize) -> Option<()> {
    let (mut last, mut next) = (8i32, 8i32);
    for _ in 0..size {
        if next != 0 {
            let delta = r.se()?;
            next = (last + delta + 256).rem_euclid(256);
        }
        if next != 0 {
            last = next;
        }
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SPSs from libx264 (through FFmpeg): 640×480 constrained baseline, 1920×1080 high
    /// (cropped from 1088 lines), 320×180 main (cropped from 192); NAL header first.
    const SPS_640X480: [u8; 24] = [
        0x67, 0x42, 0xc0, 0x1e, 0xd9, 0x00, 0xa0, 0x3d, 0xb0, 0x11, 0x00, 0x00, 0x03, 0x00, 0x01,
        0x00, 0x00, 0x03, 0x00, 0x3c, 0x0f, 0x16, 0x2e, 0x48,
    ];
    const SPS_1920X1080: [u8; 27] = [
        0x67, 0x64, 0x00, 0x28, 0xac, 0xd9, 0x40, 0x78, 0x02, 0x27, 0xe5, 0xc0, 0x44, 0x00, 0x00,
        0x03, 0x00, 0x04, 0x00, 0x00, 0x03, 0x00, 0xf0, 0x3c, 0x60, 0xc6, 0x58,
    ];
    const SPS_320X180: [u8; 25] = [
        0x67, 0x4d, 0x40, 0x0d, 0xec, 0xa0, 0xa0, 0xcf, 0xcf, 0x80, 0x88, 0x00, 0x00, 0x03, 0x00,
        0x08, 0x00, 0x00, 0x03, 0x01, 0xe0, 0x78, 0xa1, 0x4c, 0xb0,
    ];

    #[test]
    fn reads_sps_sizes() {
        assert_eq!(sps_size(&SPS_640X480[1..]), Some((640, 480)));
        assert_eq!(sps_size(&SPS_1920X1080[1..]), Some((1920, 1080)));
        assert_eq!(sps_size(&SPS_320X180[1..]), Some((320, 180)));
        assert_eq!(sps_size(&[0x42]), None);
    }

    #[test]
    fn finds_keyframes_in_every_packetization() {
        let single = inspect(&SPS_640X480);
        assert_eq!(single.size, Some((640, 480)));
        assert!(single.keyframe);
        // STAP-A: SPS, PPS, then an IDR slice.
        let mut stap = vec![0x78];
        for nal in [
            &SPS_640X480[..],
            &[0x68, 0xce, 0x3c, 0x80],
            &[0x65, 0x88, 0x84],
        ] {
            stap.extend_from_slice(&(nal.len() as u16).to_be_bytes());
            stap.extend_from_slice(nal);
        }
        assert_eq!(
            inspect(&stap),
            Picture {
                keyframe: true,
                size: Some((640, 480))
            }
        );
        // FU-A: the start of an IDR slice, its middle, and a non-IDR slice's start.
        assert!(inspect(&[0x7c, 0x85, 0x00]).keyframe);
        assert!(!inspect(&[0x7c, 0x05, 0x00]).keyframe);
        assert!(!inspect(&[0x7c, 0x81, 0x00]).keyframe);
        assert!(!inspect(&[0x41, 0x9a]).keyframe);
        // A STAP-A whose length runs past the end stops there.
        assert!(!inspect(&[0x78, 0x00, 0x40, 0x65]).keyframe);
    }
}
