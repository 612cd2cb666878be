//! Pictures in I420 (planar YUV 4:2:0, BT.601 limited range), the form every decoder
//! gives and every encoder takes.

/// A picture: a luma plane and two chroma planes of half the width and height (rounded
/// up), each stored without padding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct I420 {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Luma, `width × height` bytes.
    pub y: Vec<u8>,
    /// Blue-difference chroma, `chroma_width × chroma_height` bytes.
    pub u: Vec<u8>,
    /// Red-difference chroma.
    pub v: Vec<u8>,
}

/// A colour in limited-range BT.601 YUV.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Yuv {
    /// Luma (16–235).
    pub y: u8,
    /// Blue difference (16–240, 128 grey).
    pub u: u8,
    /// Red difference.
    pub v: u8,
}

impl Yuv {
    /// The YUV of an RGB colour (components 0–255).
    pub fn from_rgb(r: u8, g: u8, b: u8) -> Yuv {
        let (r, g, b) = (f64::from(r), f64::from(g), f64::from(b));
        let y = 16.0 + 0.257 * r + 0.504 * g + 0.098 * b;
        let u = 128.0 - 0.148 * r - 0.291 * g + 0.439 * b;
        let v = 128.0 + 0.439 * r - 0.368 * g - 0.071 * b;
        let c = |x: f64| x.round().clamp(0.0, 255.0) as u8;
        Yuv {
            y: c(y),
            u: c(u),
            v: c(v),
        }
    }

    /// The RGB of this colour (components 0–255).
    pub fn to_rgb(self) -> (u8, u8, u8) {
        let y = 1.164 * (f64::from(self.y) - 16.0);
        let u = f64::from(self.u) - 128.0;
        let v = f64::from(self.v) - 128.0;
        let c = |x: f64| x.round().clamp(0.0, 255.0) as u8;
        (
            c(y + 1.596 * v),
            c(y - 0.392 * u - 0.813 * v),
            c(y + 2.017 * u),
        )
    }
}

/// Width or height of a chroma plane for a luma dimension.
pub fn chroma(n: u32) -> u32 {
    n.div_ceil(2)
}

impl I420 {
    /// A picture of `width × height` filled with `colour`.
    pub fn filled(width: u32, height: u32, colour: Yuv) -> I420 {
        let luma = (width * height) as usize;
        let chr = (chroma(width) * chroma(height)) as usize;
        I420 {
            width,
            height,
            y: vec![colour.y; luma],
            u: vec![colour.u; chr],
            v: vec![colour.v; chr],
        }
    }

    /// Copies a picture given as three planes with their strides (what decoders give).
    /// `None` when a plane is shorter than its stride and size say.
    pub fn from_planes(width: u32, height: u32, planes: [(&[u8], usize); 3]) -> Option<I420> {
        let mut out = I420 {
            width,
            height,
            y: Vec::new(),
            u: Vec::new(),
            v: Vec::new(),
        };
        let dims = [
            (width, height),
            (chroma(width), chroma(height)),
            (chroma(width), chroma(height)),
        ];
        for (i, ((data, stride), (w, h))) in planes.into_iter().zip(dims).enumerate() {
            let (w, h) = (w as usize, h as usize);
            if stride < w || (h > 0 && data.len() < stride * (h - 1) + w) {
                return None;
            }
            let mut plane = Vec::with_capacity(w * h);
            for row in 0..h {
                plane.extend_from_slice(&data[row * stride..row * stride + w]);
            }
            match i {
                0 => out.y = plane,
                1 => out.u = plane,
                _ => out.v = plane,
            }
        }
        Some(out)
    }

    /// Fills every plane with `colour`.
    pub fn fill(&mut self, colour: Yuv) {
        self.y.fill(colour.y);
        self.u.fill(colour.u);
        self.v.fill(colour.v);
    }

    /// The colour at pixel (`x`, `y`) (`None` outside).
    pub fn at(&self, x: u32, y: u32) -> Option<Yuv> {
        if x >= self.width || y >= self.height {
            return None;
        }
        let cw = chroma(self.width);
        Some(Yuv {
            y: *self.y.get((y * self.width + x) as usize)?,
            u: *self.u.get(((y / 2) * cw + x / 2) as usize)?,
            v: *self.v.get(((y / 2) * cw + x / 2) as usize)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colours_go_to_yuv_and_back() {
        for rgb in [
            (255, 0, 0),
            (0, 255, 0),
            (0, 0, 255),
            (255, 255, 0),
            (0, 0, 0),
        ] {
            let (r, g, b) = Yuv::from_rgb(rgb.0, rgb.1, rgb.2).to_rgb();
            assert!(
                (i32::from(r) - i32::from(rgb.0)).abs() <= 3
                    && (i32::from(g) - i32::from(rgb.1)).abs() <= 3
                    && (i32::from(b) - i32::from(rgb.2)).abs() <= 3,
                "{rgb:?} → {:?}",
                (r, g, b)
            );
        }
        assert_eq!(
            Yuv::from_rgb(0, 0, 0),
            Yuv {
                y: 16,
                u: 128,
                v: 128
            }
        );
    }

    #[test]
    fn planes_with_strides_are_copied_tight() {
        let y: Vec<u8> = (0..8 * 3).map(|i| i as u8).collect();
        let uv = vec![7u8; 8 * 2];
        let p = I420::from_planes(5, 3, [(&y, 8), (&uv, 8), (&uv, 8)]).unwrap();
        assert_eq!(p.y.len(), 15);
        assert_eq!(&p.y[5..10], &[8, 9, 10, 11, 12]);
        assert_eq!(p.u.len(), 6);
        assert!(I420::from_planes(5, 3, [(&y[..10], 8), (&uv, 8), (&uv, 8)]).is_none());
        assert_eq!(p.at(1, 1).map(|c| c.y), Some(9));
        assert_eq!(p.at(5, 0), None);
    }
}
