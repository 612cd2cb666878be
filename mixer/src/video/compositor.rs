//! A view's video composite (sans-IO): each input's frames decoded as they arrive (its
//! latest picture kept), and at the view's frame rate the pictures drawn into their
//! regions and the canvas encoded. Time comes in as `now`.

use super::compose::{Canvas, PLACEHOLDER};
use super::frame::Yuv;
use super::layout::{self, Rect};
use super::{CodecError, Encoded, VideoDecoder, VideoEncoder};
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchyard_mixer_api::{Region, VideoSpec};

struct Input {
    stream: Arc<str>,
    /// Whether it has video (else a placeholder shows it).
    video: bool,
    /// The decoder and the codec it decodes.
    decoder: Option<(String, VideoDecoder)>,
    latest: Option<super::frame::I420>,
    /// A keyframe is needed before its frames decode (new, or after an error or a gap).
    wants_keyframe: bool,
}

/// A view's compositor.
pub struct Compositor {
    spec: VideoSpec,
    /// The canvas and its encoder; made when the size is known (a spec of 0 × 0 takes
    /// its first input's size: a transcoding that keeps the size).
    output: Option<(Canvas, VideoEncoder)>,
    inputs: Vec<Input>,
    interval: Duration,
    next_frame: Option<Instant>,
    keyframe_asked: bool,
    /// The active speaker's input (for `keep_active_input_primary`).
    primary: Option<Arc<str>>,
    /// The layout in force: (input, region) for every input shown.
    placed: Vec<(Arc<str>, Region)>,
    layout_changed: bool,
    /// Frames that failed to decode.
    pub decode_errors: u64,
}

impl Compositor {
    /// A compositor for `spec` (0 × 0: the size of its first input's pictures).
    pub fn new(spec: VideoSpec) -> Result<Self, CodecError> {
        let fps = spec.framerate.clamp(1, 60);
        if !matches!(spec.codec.as_str(), "vp8" | "h264") {
            return Err(CodecError::Unsupported(spec.codec.clone()));
        }
        let mut c = Compositor {
            output: None,
            inputs: Vec::new(),
            interval: Duration::from_secs(1) / fps,
            next_frame: None,
            keyframe_asked: true,
            primary: None,
            placed: Vec::new(),
            layout_changed: true,
            decode_errors: 0,
            spec,
        };
        if c.spec.width > 0 && c.spec.height > 0 {
            c.make_output(c.spec.width, c.spec.height)?;
        }
        Ok(c)
    }

    fn make_output(&mut self, width: u32, height: u32) -> Result<(), CodecError> {
        let (w, h) = (width.max(2) & !1, height.max(2) & !1);
        let fps = self.spec.framerate.clamp(1, 60);
        let encoder = VideoEncoder::new(
            &self.spec.codec,
            w,
            h,
            fps,
            self.spec.bitrate_kbps,
            self.spec.key_frame_interval.max(1) * fps,
        )?;
        let [r, g, b] = self.spec.bg_color;
        self.output = Some((Canvas::new(w, h, Yuv::from_rgb(r, g, b)), encoder));
        self.keyframe_asked = true;
        Ok(())
    }

    /// The output's size: the spec's, or its first input's once one has a picture.
    fn output_size(&self) -> Option<(u32, u32)> {
        if self.spec.width > 0 && self.spec.height > 0 {
            return Some((self.spec.width, self.spec.height));
        }
        self.inputs
            .iter()
            .find_map(|i| i.latest.as_ref())
            .map(|p| (p.width, p.height))
    }

    /// Adds an input, with video or audio only.
    pub fn add_input(&mut self, stream: Arc<str>, video: bool) {
        self.inputs.retain(|i| i.stream != stream);
        self.inputs.push(Input {
            stream,
            video,
            decoder: None,
            latest: None,
            wants_keyframe: video,
        });
        self.relayout();
    }

    /// Removes an input.
    pub fn remove_input(&mut self, stream: &str) {
        self.inputs.retain(|i| &*i.stream != stream);
        self.relayout();
    }

    /// New settings (layout, background, fit); the output format stays.
    pub fn update(&mut self, spec: &VideoSpec) {
        let [r, g, b] = spec.bg_color;
        if let Some((canvas, _)) = self.output.as_mut() {
            let (w, h) = (canvas.picture.width, canvas.picture.height);
            *canvas = Canvas::new(w, h, Yuv::from_rgb(r, g, b));
        }
        self.spec.bg_color = spec.bg_color;
        self.spec.fit = spec.fit;
        self.spec.layout = spec.layout.clone();
        self.spec.max_input = spec.max_input;
        self.spec.keep_active_input_primary = spec.keep_active_input_primary;
        self.relayout();
    }

    /// The active speaker changed.
    pub fn set_primary(&mut self, stream: Option<Arc<str>>) {
        if self.spec.keep_active_input_primary && self.primary != stream {
            self.primary = stream;
            self.relayout();
        }
    }

    fn relayout(&mut self) {
        let shown: Vec<&str> = self
            .inputs
            .iter()
            .take(self.spec.max_input.max(1) as usize)
            .map(|i| &*i.stream)
            .collect();
        let (regions, primary_region) = layout::regions(&self.spec.layout, shown.len());
        let placed = layout::assign(
            &shown,
            &regions,
            primary_region,
            &self.spec.layout.pinned,
            self.primary.as_deref(),
        );
        let placed: Vec<(Arc<str>, Region)> = placed
            .into_iter()
            .filter_map(|(i, r)| {
                Some((self.inputs.get(i)?.stream.clone(), regions.get(r)?.clone()))
            })
            .collect();
        if placed != self.placed {
            self.placed = placed;
            self.layout_changed = true;
        }
    }

    /// Which input is in which region, when that changed since the last call.
    pub fn poll_layout(&mut self) -> Option<Vec<(String, Region)>> {
        if !std::mem::take(&mut self.layout_changed) {
            return None;
        }
        Some(
            self.placed
                .iter()
                .map(|(s, r)| (s.to_string(), r.clone()))
                .collect(),
        )
    }

    /// A frame of an input's video in `codec`. A frame that cannot be decoded is dropped
    /// and counted, and the input waits for a keyframe.
    pub fn on_frame(
        &mut self,
        stream: &str,
        codec: &str,
        data: &[u8],
        keyframe: bool,
        contiguous: bool,
    ) {
        let Some(input) = self.inputs.iter_mut().find(|i| &*i.stream == stream) else {
            return;
        };
        if !input.video {
            return;
        }
        if input.decoder.as_ref().is_some_and(|(c, _)| c != codec) {
            // The publisher changed codec: start again at a keyframe.
            input.decoder = None;
            input.wants_keyframe = true;
        }
        if !contiguous && !keyframe {
            input.wants_keyframe = true;
        }
        if input.wants_keyframe && !keyframe {
            return;
        }
        if input.decoder.is_none() {
            match VideoDecoder::new(codec) {
                Ok(d) => input.decoder = Some((codec.to_string(), d)),
                Err(_) => {
                    self.decode_errors += 1;
                    return;
                }
            }
        }
        let Some((_, decoder)) = input.decoder.as_mut() else {
            return;
        };
        match decoder.decode(data) {
            Ok(Some(p)) => {
                input.latest = Some(p);
                input.wants_keyframe = false;
            }
            Ok(None) => input.wants_keyframe = false,
            Err(_) => {
                self.decode_errors += 1;
                input.wants_keyframe = true;
                input.decoder = None;
            }
        }
    }

    /// The inputs whose frames wait for a keyframe (to ask their publishers).
    pub fn waiting_for_keyframes(&self) -> impl Iterator<Item = &Arc<str>> {
        self.inputs
            .iter()
            .filter(|i| i.wants_keyframe && i.video)
            .map(|i| &i.stream)
    }

    /// A subscriber of the composite wants a keyframe.
    pub fn request_keyframe(&mut self) {
        self.keyframe_asked = true;
    }

    /// When the next frame is due.
    pub fn next_due(&self) -> Option<Instant> {
        self.next_frame
    }

    /// The composite's next frame, encoded, if one is due at `now`.
    pub fn tick(&mut self, now: Instant) -> Result<Vec<Encoded>, CodecError> {
        if self.next_frame.is_some_and(|t| now < t) {
            return Ok(Vec::new());
        }
        // On schedule, or from now after a stall (no burst to catch up).
        self.next_frame = Some(match self.next_frame {
            Some(t) if now < t + self.interval => t + self.interval,
            _ => now + self.interval,
        });
        if self.output.is_none() {
            // No size yet: wait for the first input's picture.
            match self.output_size() {
                Some((w, h)) => self.make_output(w, h)?,
                None => return Ok(Vec::new()),
            }
        }
        let Some((canvas, encoder)) = self.output.as_mut() else {
            return Ok(Vec::new());
        };
        canvas.clear();
        let (w, h) = (canvas.picture.width, canvas.picture.height);
        for (stream, region) in &self.placed {
            let rect = Rect::of(region, w, h);
            match self
                .inputs
                .iter()
                .find(|i| i.stream == *stream)
                .and_then(|i| i.latest.as_ref())
            {
                Some(p) => canvas.draw(p, rect, self.spec.fit),
                None => canvas.fill(rect, PLACEHOLDER),
            }
        }
        let key = std::mem::take(&mut self.keyframe_asked);
        encoder.encode(&canvas.picture, key)
    }

    /// The canvas as last drawn (none before the output's size is known).
    pub fn picture(&self) -> Option<&super::frame::I420> {
        self.output.as_ref().map(|(c, _)| &c.picture)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_mixer_api::{Fit, LayoutSpec};

    pub(crate) fn spec(codec: &str) -> VideoSpec {
        VideoSpec {
            codec: codec.into(),
            width: 320,
            height: 240,
            framerate: 10,
            bitrate_kbps: 300,
            key_frame_interval: 5,
            max_input: 16,
            bg_color: [0, 0, 0],
            fit: Fit::Crop,
            keep_active_input_primary: false,
            layout: LayoutSpec::default(),
        }
    }

    #[test]
    fn four_inputs_land_in_four_regions_and_a_late_one_waits_for_its_keyframe() {
        let mut c = Compositor::new(spec("vp8")).unwrap();
        let colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0)];
        let mut encoders: Vec<VideoEncoder> = Vec::new();
        for (i, _) in colours.iter().enumerate() {
            c.add_input(format!("s{i}").into(), true);
            encoders.push(VideoEncoder::new("vp8", 160, 120, 10, 200, 50).unwrap());
        }
        assert_eq!(c.waiting_for_keyframes().count(), 4);
        let t0 = Instant::now();
        let mut out = Vec::new();
        for f in 0..5u32 {
            for (i, (r, g, b)) in colours.iter().enumerate() {
                // Input 3 sends only delta frames at first: it waits.
                let key = f == 0 && i != 3 || f == 3 && i == 3;
                let pic = super::super::frame::I420::filled(160, 120, Yuv::from_rgb(*r, *g, *b));
                for e in encoders[i].encode(&pic, key).unwrap() {
                    c.on_frame(&format!("s{i}"), "vp8", &e.data, e.keyframe, true);
                }
            }
            out.extend(
                c.tick(t0 + Duration::from_millis(100 * u64::from(f)))
                    .unwrap(),
            );
        }
        assert!(out[0].keyframe, "the first frame is a keyframe");
        assert_eq!(c.waiting_for_keyframes().count(), 0);
        let p = c.picture().unwrap();
        for (i, (r, g, b)) in colours.iter().enumerate() {
            let (x, y) = (80 + 160 * (i as u32 % 2), 60 + 120 * (i as u32 / 2));
            let got = p.at(x, y).unwrap().to_rgb();
            let want = (*r as i32, *g as i32, *b as i32);
            assert!(
                (got.0 as i32 - want.0).abs() < 30
                    && (got.1 as i32 - want.1).abs() < 30
                    && (got.2 as i32 - want.2).abs() < 30,
                "region {i}: {got:?} for {want:?}"
            );
        }
        assert_eq!(
            c.poll_layout().map(|l| l.len()),
            Some(4),
            "the layout is reported"
        );
        assert_eq!(c.poll_layout(), None, "once");
        // Not due again before the interval.
        assert!(c.tick(t0 + Duration::from_millis(450)).unwrap().is_empty());
    }

    #[test]
    fn a_size_of_zero_takes_the_inputs_size() {
        let mut s = spec("vp8");
        (s.width, s.height) = (0, 0);
        let mut c = Compositor::new(s).unwrap();
        c.add_input("v".into(), true);
        let t0 = Instant::now();
        assert!(c.tick(t0).unwrap().is_empty(), "nothing before a picture");
        let mut enc = VideoEncoder::new("vp8", 176, 144, 10, 200, 50).unwrap();
        let pic = super::super::frame::I420::filled(176, 144, Yuv::from_rgb(9, 99, 199));
        for e in enc.encode(&pic, true).unwrap() {
            c.on_frame("v", "vp8", &e.data, e.keyframe, true);
        }
        let out = c.tick(t0 + Duration::from_millis(200)).unwrap();
        assert!(!out.is_empty() && out[0].keyframe);
        let p = c.picture().unwrap();
        assert_eq!((p.width, p.height), (176, 144));
        assert!(Compositor::new(spec("vp9")).is_err());
    }

    #[test]
    fn an_audio_only_input_gets_a_placeholder_and_garbage_is_counted() {
        let mut c = Compositor::new(spec("h264")).unwrap();
        c.add_input("a".into(), false);
        c.add_input("v".into(), true);
        c.on_frame("v", "vp8", &[0xff; 40], true, true);
        assert_eq!(c.decode_errors, 1);
        let out = c.tick(Instant::now()).unwrap();
        assert!(!out.is_empty() && out[0].keyframe);
        // Two inputs in a 2×2 fluid grid: the audio-only one is a grey tile.
        assert_eq!(c.picture().unwrap().at(80, 60), Some(PLACEHOLDER));
    }
}
