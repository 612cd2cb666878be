//! VP8 through Debian's libvpx (the `env-libvpx-sys` bindings): a decoder and a real-time
//! CBR encoder, behind a safe interface. The only `unsafe` code of the mixer lives here:
//! each call passes libvpx a context this module owns (boxed, so it never moves) and
//! pictures whose planes outlive the call.
#![allow(unsafe_code)]

use super::frame::{chroma, I420};
use super::CodecError;
use std::os::raw::{c_int, c_uint, c_ulong};
use std::ptr;
use vpx_sys as ffi;

fn check(err: ffi::vpx_codec_err_t, what: &'static str) -> Result<(), CodecError> {
    if err == ffi::vpx_codec_err_t::VPX_CODEC_OK {
        Ok(())
    } else {
        Err(CodecError::Vpx(what, err as u32))
    }
}

/// A VP8 decoder.
pub struct Vp8Decoder {
    ctx: Box<ffi::vpx_codec_ctx_t>,
}

// The context is used from one thread at a time (the view's); libvpx keeps no thread
// affinity.
unsafe impl Send for Vp8Decoder {}

impl Vp8Decoder {
    /// A new decoder.
    pub fn new() -> Result<Self, CodecError> {
        // SAFETY: a zeroed context is what libvpx expects before init.
        let mut ctx: Box<ffi::vpx_codec_ctx_t> = Box::new(unsafe { std::mem::zeroed() });
        let cfg = ffi::vpx_codec_dec_cfg_t {
            threads: 1,
            w: 0,
            h: 0,
        };
        // SAFETY: ctx and cfg are valid for the call; the interface is static.
        let err = unsafe {
            ffi::vpx_codec_dec_init_ver(
                &mut *ctx,
                ffi::vpx_codec_vp8_dx(),
                &cfg,
                0,
                ffi::VPX_DECODER_ABI_VERSION as c_int,
            )
        };
        check(err, "vp8 decoder init")?;
        Ok(Vp8Decoder { ctx })
    }

    /// Decodes one frame; the picture it shows, if any.
    pub fn decode(&mut self, data: &[u8]) -> Result<Option<I420>, CodecError> {
        let len = c_uint::try_from(data.len()).map_err(|_| CodecError::TooLarge)?;
        // SAFETY: data is valid for len bytes during the call.
        let err = unsafe {
            ffi::vpx_codec_decode(&mut *self.ctx, data.as_ptr(), len, ptr::null_mut(), 0)
        };
        check(err, "vp8 decode")?;
        let mut iter: ffi::vpx_codec_iter_t = ptr::null();
        let mut last = None;
        loop {
            // SAFETY: the iterator belongs to this context; the image stays valid until the
            // next decode call.
            let img = unsafe { ffi::vpx_codec_get_frame(&mut *self.ctx, &mut iter) };
            if img.is_null() {
                break;
            }
            // SAFETY: non-null image from libvpx.
            let img = unsafe { &*img };
            if img.fmt != ffi::vpx_img_fmt::VPX_IMG_FMT_I420 {
                continue;
            }
            let (w, h) = (img.d_w, img.d_h);
            let dims = [(w, h), (chroma(w), chroma(h)), (chroma(w), chroma(h))];
            let mut planes: [(&[u8], usize); 3] = [(&[], 0); 3];
            let mut ok = true;
            for (i, (pw, ph)) in dims.into_iter().enumerate() {
                let stride = usize::try_from(img.stride[i]).unwrap_or(0);
                if img.planes[i].is_null() || stride < pw as usize || ph == 0 {
                    ok = false;
                    break;
                }
                let len = stride * (ph as usize - 1) + pw as usize;
                // SAFETY: libvpx's plane holds `ph` rows of `stride` bytes.
                planes[i] = (
                    unsafe { std::slice::from_raw_parts(img.planes[i], len) },
                    stride,
                );
            }
            if ok {
                last = I420::from_planes(w, h, planes);
            }
        }
        Ok(last)
    }
}

impl Drop for Vp8Decoder {
    fn drop(&mut self) {
        // SAFETY: the context was initialised in `new`.
        unsafe {
            ffi::vpx_codec_destroy(&mut *self.ctx);
        }
    }
}

/// An encoded frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    /// The bitstream.
    pub data: Vec<u8>,
    /// Whether it is a keyframe.
    pub keyframe: bool,
}

/// A real-time CBR VP8 encoder for one picture size.
pub struct Vp8Encoder {
    ctx: Box<ffi::vpx_codec_ctx_t>,
    width: u32,
    height: u32,
    pts: i64,
}

// As for the decoder.
unsafe impl Send for Vp8Encoder {}

impl Vp8Encoder {
    /// An encoder of `width × height` at `fps`, `kbps`, a keyframe at least every
    /// `keyframe_every` frames.
    pub fn new(
        width: u32,
        height: u32,
        fps: u32,
        kbps: u32,
        keyframe_every: u32,
    ) -> Result<Self, CodecError> {
        let mut cfg = std::mem::MaybeUninit::<ffi::vpx_codec_enc_cfg_t>::uninit();
        // SAFETY: libvpx fills the whole struct.
        let err = unsafe {
            ffi::vpx_codec_enc_config_default(ffi::vpx_codec_vp8_cx(), cfg.as_mut_ptr(), 0)
        };
        check(err, "vp8 encoder defaults")?;
        // SAFETY: filled by the call above, which succeeded.
        let mut cfg = unsafe { cfg.assume_init() };
        cfg.g_w = width;
        cfg.g_h = height;
        cfg.g_threads = 1;
        cfg.g_timebase = ffi::vpx_rational {
            num: 1,
            den: fps.max(1) as c_int,
        };
        cfg.g_error_resilient = ffi::VPX_ERROR_RESILIENT_DEFAULT;
        cfg.g_lag_in_frames = 0;
        cfg.g_pass = ffi::vpx_enc_pass::VPX_RC_ONE_PASS;
        cfg.rc_end_usage = ffi::vpx_rc_mode::VPX_CBR;
        cfg.rc_target_bitrate = kbps.max(30);
        cfg.rc_min_quantizer = 2;
        cfg.rc_max_quantizer = 56;
        cfg.rc_undershoot_pct = 100;
        cfg.rc_overshoot_pct = 15;
        cfg.rc_buf_initial_sz = 500;
        cfg.rc_buf_optimal_sz = 600;
        cfg.rc_buf_sz = 1000;
        cfg.rc_dropframe_thresh = 0;
        cfg.kf_mode = ffi::vpx_kf_mode::VPX_KF_AUTO;
        cfg.kf_min_dist = 0;
        cfg.kf_max_dist = keyframe_every.max(1);
        // SAFETY: as in the decoder.
        let mut ctx: Box<ffi::vpx_codec_ctx_t> = Box::new(unsafe { std::mem::zeroed() });
        // SAFETY: ctx and cfg are valid for the call.
        let err = unsafe {
            ffi::vpx_codec_enc_init_ver(
                &mut *ctx,
                ffi::vpx_codec_vp8_cx(),
                &cfg,
                0,
                ffi::VPX_ENCODER_ABI_VERSION as c_int,
            )
        };
        check(err, "vp8 encoder init")?;
        let enc = Vp8Encoder {
            ctx,
            width,
            height,
            pts: 0,
        };
        // Real-time speed (what WebRTC uses for VP8 on desktops).
        // SAFETY: VP8E_SET_CPUUSED takes an int.
        let err = unsafe {
            ffi::vpx_codec_control_(
                &*enc.ctx as *const _ as *mut _,
                ffi::vp8e_enc_control_id::VP8E_SET_CPUUSED as c_int,
                -8 as c_int,
            )
        };
        check(err, "vp8 speed")?;
        Ok(enc)
    }

    /// Encodes a picture of the encoder's size; `keyframe` forces one.
    pub fn encode(&mut self, pic: &I420, keyframe: bool) -> Result<Vec<Encoded>, CodecError> {
        if pic.width != self.width || pic.height != self.height {
            return Err(CodecError::Size);
        }
        // SAFETY: zeroed, then every field libvpx reads is set.
        let mut img: ffi::vpx_image_t = unsafe { std::mem::zeroed() };
        img.fmt = ffi::vpx_img_fmt::VPX_IMG_FMT_I420;
        img.cs = ffi::vpx_color_space::VPX_CS_BT_601;
        img.range = ffi::vpx_color_range::VPX_CR_STUDIO_RANGE;
        img.w = pic.width;
        img.h = pic.height;
        img.d_w = pic.width;
        img.d_h = pic.height;
        img.bit_depth = 8;
        img.bps = 12;
        img.x_chroma_shift = 1;
        img.y_chroma_shift = 1;
        // libvpx only reads the planes.
        img.planes[0] = pic.y.as_ptr() as *mut u8;
        img.planes[1] = pic.u.as_ptr() as *mut u8;
        img.planes[2] = pic.v.as_ptr() as *mut u8;
        img.stride[0] = pic.width as c_int;
        img.stride[1] = chroma(pic.width) as c_int;
        img.stride[2] = chroma(pic.width) as c_int;
        let flags = if keyframe {
            ffi::VPX_EFLAG_FORCE_KF as ffi::vpx_enc_frame_flags_t
        } else {
            0
        };
        // SAFETY: img's planes are valid for the call (pic is borrowed).
        let err = unsafe {
            ffi::vpx_codec_encode(
                &mut *self.ctx,
                &img,
                self.pts,
                1,
                flags,
                ffi::VPX_DL_REALTIME as c_ulong,
            )
        };
        check(err, "vp8 encode")?;
        self.pts += 1;
        let mut out = Vec::new();
        let mut iter: ffi::vpx_codec_iter_t = ptr::null();
        loop {
            // SAFETY: packets stay valid until the next encode call.
            let pkt = unsafe { ffi::vpx_codec_get_cx_data(&mut *self.ctx, &mut iter) };
            if pkt.is_null() {
                break;
            }
            // SAFETY: non-null packet from libvpx.
            let pkt = unsafe { &*pkt };
            if pkt.kind != ffi::vpx_codec_cx_pkt_kind::VPX_CODEC_CX_FRAME_PKT {
                continue;
            }
            // SAFETY: a frame packet's union member is `frame`.
            let frame = unsafe { pkt.data.frame };
            if frame.buf.is_null() {
                continue;
            }
            // SAFETY: libvpx's buffer holds `sz` bytes.
            let data =
                unsafe { std::slice::from_raw_parts(frame.buf as *const u8, frame.sz as usize) };
            out.push(Encoded {
                data: data.to_vec(),
                keyframe: frame.flags & ffi::VPX_FRAME_IS_KEY != 0,
            });
        }
        Ok(out)
    }
}

impl Drop for Vp8Encoder {
    fn drop(&mut self) {
        // SAFETY: the context was initialised in `new`.
        unsafe {
            ffi::vpx_codec_destroy(&mut *self.ctx);
        }
    }
}
