//! Drawing a view: the background, then each input's latest picture scaled into its
//! region (SIMD scaling by `fast_image_resize`, plane by plane), letterboxed or cropped,
//! or a placeholder where an input has no picture.

use super::frame::{chroma, Yuv, I420};
use super::layout::Rect;
use fast_image_resize::images::{CroppedImageMut, Image, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use switchyard_mixer_api::Fit;

/// What fills a region whose input has no video (yet): dark grey.
pub const PLACEHOLDER: Yuv = Yuv {
    y: 49,
    u: 128,
    v: 128,
};

/// A view's canvas and what draws on it.
pub struct Canvas {
    /// The picture drawn.
    pub picture: I420,
    background: Yuv,
    resizer: Resizer,
    options: ResizeOptions,
}

impl Canvas {
    /// A `width × height` canvas (even sizes) with `background`.
    pub fn new(width: u32, height: u32, background: Yuv) -> Canvas {
        Canvas {
            picture: I420::filled(width & !1, height & !1, background),
            background,
            resizer: Resizer::new(),
            options: ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Bilinear)),
        }
    }

    /// Starts a new picture: all background.
    pub fn clear(&mut self) {
        self.picture.fill(self.background);
    }

    /// Fills `rect` with `colour`.
    pub fn fill(&mut self, rect: Rect, colour: Yuv) {
        let w = self.picture.width;
        fill_plane(&mut self.picture.y, w, rect, colour.y);
        let half = half(rect);
        let cw = chroma(w);
        fill_plane(&mut self.picture.u, cw, half, colour.u);
        fill_plane(&mut self.picture.v, cw, half, colour.v);
    }

    /// Draws `src` into `rect` as `fit` says. Nothing is drawn for an empty picture or
    /// region.
    pub fn draw(&mut self, src: &I420, rect: Rect, fit: Fit) {
        if src.width < 2 || src.height < 2 || rect.w < 2 || rect.h < 2 {
            return;
        }
        let (sw, sh) = (f64::from(src.width), f64::from(src.height));
        let (rw, rh) = (f64::from(rect.w), f64::from(rect.h));
        // The part of the source shown and where it goes.
        let (crop, dst) = match fit {
            Fit::Letterbox => {
                let s = (rw / sw).min(rh / sh);
                let w = ((sw * s).round() as u32 & !1).clamp(2, rect.w);
                let h = ((sh * s).round() as u32 & !1).clamp(2, rect.h);
                let x = rect.x + (((rect.w - w) / 2) & !1);
                let y = rect.y + (((rect.h - h) / 2) & !1);
                ((0.0, 0.0, sw, sh), Rect { x, y, w, h })
            }
            Fit::Crop => {
                let s = (rw / sw).max(rh / sh);
                let (cw, ch) = (rw / s, rh / s);
                (((sw - cw) / 2.0, (sh - ch) / 2.0, cw, ch), rect)
            }
        };
        let (w, h) = (self.picture.width, self.picture.height);
        let (cw, chh) = (chroma(w), chroma(h));
        let half_crop = (crop.0 / 2.0, crop.1 / 2.0, crop.2 / 2.0, crop.3 / 2.0);
        let (scw, sch) = (chroma(src.width), chroma(src.height));
        let Canvas {
            picture,
            resizer,
            options,
            ..
        } = self;
        let luma = Plane {
            data: &src.y,
            width: src.width,
            height: src.height,
        };
        let mut to = PlaneMut {
            data: &mut picture.y,
            width: w,
            height: h,
        };
        scale(resizer, options, luma, crop, &mut to, dst);
        for (data, out) in [(&src.u, &mut picture.u), (&src.v, &mut picture.v)] {
            let from = Plane {
                data,
                width: scw,
                height: sch,
            };
            let mut to = PlaneMut {
                data: out,
                width: cw,
                height: chh,
            };
            scale(resizer, options, from, half_crop, &mut to, half(dst));
        }
    }
}

/// Scales the `crop` (left, top, width, height) of `src` into `rect` of `dst`.
fn scale(
    resizer: &mut Resizer,
    options: &ResizeOptions,
    src: Plane<'_>,
    crop: (f64, f64, f64, f64),
    dst: &mut PlaneMut<'_>,
    rect: Rect,
) {
    {
        let Ok(src_img) = ImageRef::new(src.width, src.height, src.data, PixelType::U8) else {
            return;
        };
        let Ok(mut dst_img) = Image::from_slice_u8(dst.width, dst.height, dst.data, PixelType::U8)
        else {
            return;
        };
        let Ok(mut part) = CroppedImageMut::new(&mut dst_img, rect.x, rect.y, rect.w, rect.h)
        else {
            return;
        };
        let options = options.clone().crop(crop.0, crop.1, crop.2, crop.3);
        let _ = resizer.resize(&src_img, &mut part, &options);
    }
}

/// One plane of a picture, read.
struct Plane<'a> {
    data: &'a [u8],
    width: u32,
    height: u32,
}

/// One plane of the canvas, written.
struct PlaneMut<'a> {
    data: &'a mut [u8],
    width: u32,
    height: u32,
}

/// The chroma rectangle of a luma one.
fn half(r: Rect) -> Rect {
    Rect {
        x: r.x / 2,
        y: r.y / 2,
        w: r.w / 2,
        h: r.h / 2,
    }
}

fn fill_plane(plane: &mut [u8], stride: u32, r: Rect, value: u8) {
    for row in r.y..r.y + r.h {
        let start = (row * stride + r.x) as usize;
        if let Some(line) = plane.get_mut(start..start + r.w as usize) {
            line.fill(value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rect(x: u32, y: u32, w: u32, h: u32) -> Rect {
        Rect { x, y, w, h }
    }

    #[test]
    fn a_picture_lands_in_its_region_letterboxed_or_cropped() {
        let bg = Yuv::from_rgb(0, 0, 0);
        let red = Yuv::from_rgb(255, 0, 0);
        let mut c = Canvas::new(640, 360, bg);
        // A 4:3 red picture into a 16:9 region: letterboxed, bars left and right.
        let src = I420::filled(320, 240, red);
        c.draw(&src, rect(0, 0, 320, 180), Fit::Letterbox);
        assert_eq!(c.picture.at(160, 90), Some(red));
        assert_eq!(c.picture.at(10, 90), Some(bg), "a bar at the left");
        assert_eq!(
            c.picture.at(160, 200),
            Some(bg),
            "nothing outside the region"
        );
        // Cropped: fills the region.
        c.clear();
        c.draw(&src, rect(320, 180, 320, 180), Fit::Crop);
        assert_eq!(c.picture.at(322, 182), Some(red));
        assert_eq!(c.picture.at(637, 357), Some(red));
        assert_eq!(c.picture.at(300, 182), Some(bg));
        // A placeholder.
        c.fill(rect(0, 180, 320, 180), PLACEHOLDER);
        assert_eq!(c.picture.at(100, 300), Some(PLACEHOLDER));
    }

    #[test]
    fn the_picture_is_scaled_not_just_copied() {
        // Left half green, right half blue, scaled down by 4: still half and half.
        let mut src = I420::filled(400, 200, Yuv::from_rgb(0, 255, 0));
        let blue = Yuv::from_rgb(0, 0, 255);
        for y in 0..200 {
            for x in 200..400 {
                src.y[(y * 400 + x) as usize] = blue.y;
            }
        }
        for y in 0..100 {
            for x in 100..200 {
                src.u[(y * 200 + x) as usize] = blue.u;
                src.v[(y * 200 + x) as usize] = blue.v;
            }
        }
        let mut c = Canvas::new(200, 100, Yuv::from_rgb(0, 0, 0));
        c.draw(&src, rect(0, 0, 100, 50), Fit::Letterbox);
        assert_eq!(c.picture.at(10, 20), Some(Yuv::from_rgb(0, 255, 0)));
        assert_eq!(c.picture.at(90, 20), Some(blue));
    }
}
