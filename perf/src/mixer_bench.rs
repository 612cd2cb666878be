//! `mixer-bench`: the mixer's engine on one core, and FFmpeg composing the same inputs,
//! side by side.
//!
//! - **Audio**: a view of N participants with K speakers for a stretch of simulated time:
//!   every participant's 20 ms opus packet with its audio level goes through the
//!   mixer's audio path (ranking every input, decoding the K speakers, mixing, K + 1
//!   encodes); the CPU time it took over the time simulated is the share of a core a
//!   view of N takes, and N over that share the participants one core can mix.
//! - **Video**: a 1280×720 view at 30 fps of 4 inputs (640×360) and of 16 (320×180, the
//!   size of a region of a 4×4 grid: what the mixer would subscribe to of a simulcast
//!   publisher), VP8 at 30 fps, each decoded, composed into the fluid layout and encoded
//!   (VP8 and H.264); video-seconds over CPU-seconds is the views one core composes in
//!   real time. FFmpeg (one thread) decodes the same files, stacks them with `xstack` and
//!   encodes with libx264 `ultrafast`, timed the same way.
//!
//! Only the engine is timed: the packets' way in and out (SRTP, str0m) is the dataplane's
//! kind of work and is measured with it. Figures are compared with `perf/baseline.json`
//! (`mixer`), failing beyond its noise margin.

use anyhow::{bail, Context};
use clap::Parser;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchyard_mixer::audio::codec::MixEncoder;
use switchyard_mixer::audio::mixer::AudioMixer;
use switchyard_mixer::video::compositor::Compositor;
use switchyard_mixer::video::frame::I420;
use switchyard_mixer::video::VideoEncoder;
use switchyard_mixer_api::{Fit, LayoutSpec, VideoSpec};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(about = "The mixer's engine on one core, and FFmpeg composing the same inputs")]
struct Args {
    /// The short run of the test command.
    #[arg(long)]
    quick: bool,
    /// The committed baseline.
    #[arg(long, default_value = "perf/baseline.json")]
    baseline: PathBuf,
    /// Where the figures go (JSON).
    #[arg(long, default_value = "perf/results/mixer.json")]
    out: PathBuf,
    /// FFmpeg.
    #[arg(long, default_value = "ffmpeg")]
    ffmpeg: String,
}

/// CPU seconds (user + system) of `who`, to the microsecond.
fn rusage(who: nix::sys::resource::UsageWho) -> f64 {
    nix::sys::resource::getrusage(who)
        .map(|u| {
            let t = |tv: nix::sys::time::TimeVal| tv.tv_sec() as f64 + tv.tv_usec() as f64 / 1e6;
            t(u.user_time()) + t(u.system_time())
        })
        .unwrap_or(0.0)
}

/// CPU seconds this process has used.
fn cpu() -> f64 {
    rusage(nix::sys::resource::UsageWho::RUSAGE_SELF)
}

/// CPU seconds of this process's waited-for children.
fn children_cpu() -> f64 {
    rusage(nix::sys::resource::UsageWho::RUSAGE_CHILDREN)
}

/// 20 ms of a sine at `hz`, frame `n`.
fn tone(hz: f64, n: usize) -> Vec<i16> {
    (0..960)
        .map(|i| {
            let t = (n * 960 + i) as f64 / 48_000.0;
            ((t * hz * 2.0 * std::f64::consts::PI).sin() * 6000.0) as i16
        })
        .collect()
}

/// The audio path for `n` participants of which `k` speak, over `secs` simulated
/// seconds: the share of one core it took.
fn audio(n: usize, k: usize, secs: u64) -> anyhow::Result<f64> {
    // A second of packets per speaker (each its own tone) and of near-silence.
    let mut speech: Vec<Vec<Vec<u8>>> = Vec::new();
    for s in 0..k {
        let mut enc = MixEncoder::new(32_000)?;
        speech.push(
            (0..50)
                .map(|f| Ok(enc.encode(&tone(300.0 + 150.0 * s as f64, f))?.to_vec()))
                .collect::<anyhow::Result<_>>()?,
        );
    }
    let mut enc = MixEncoder::new(32_000)?;
    let quiet: Vec<Vec<u8>> = (0..50)
        .map(|f| {
            let q: Vec<i16> = tone(200.0, f).iter().map(|x| x / 200).collect();
            Ok(enc.encode(&q)?.to_vec())
        })
        .collect::<anyhow::Result<_>>()?;
    let mut mixer = AudioMixer::new(k)?;
    let ids: Vec<Arc<str>> = (0..n).map(|i| Arc::from(format!("p{i}"))).collect();
    for id in &ids {
        mixer.add_input(id.clone());
    }
    let t0 = Instant::now();
    let start = cpu();
    let mut out_bytes = 0usize;
    for f in 0..(secs * 50) as usize {
        let now = t0 + Duration::from_millis(20 * f as u64);
        for (i, id) in ids.iter().enumerate() {
            let (packet, level) = if i < k {
                (&speech[i][f % 50], -20)
            } else {
                (&quiet[f % 50], -70)
            };
            mixer.on_packet(now, id, "opus", Some(level), packet)?;
        }
        if let Some(m) = mixer.tick()? {
            out_bytes += m.main.len() + m.minus.iter().map(|(_, p)| p.len()).sum::<usize>();
        }
    }
    let used = cpu() - start;
    if out_bytes == 0 {
        bail!("the audio mixer produced nothing");
    }
    Ok(used / secs as f64)
}

/// A moving test picture (a gradient drifting and a noisy band), frame `i`.
fn picture(w: u32, h: u32, i: u32, seed: u32) -> I420 {
    let mut p = I420::filled(w, h, switchyard_mixer::video::frame::Yuv::from_rgb(0, 0, 0));
    let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(i);
    for row in 0..h {
        for col in 0..w {
            let v = (col + row + 3 * i + seed * 40) & 0xff;
            let noise = if row % 40 < 4 {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x & 0x1f
            } else {
                0
            };
            p.y[(row * w + col) as usize] = (16 + (v * 219 / 255) + noise).min(235) as u8;
        }
    }
    for (j, c) in p.u.iter_mut().enumerate() {
        *c = (96 + ((j as u32 + i) & 63)) as u8;
    }
    p
}

/// `frames` frames of the test picture at `w × h`, VP8 at 30 fps and `kbps`.
fn clip(w: u32, h: u32, frames: u32, kbps: u32, seed: u32) -> anyhow::Result<Vec<Vec<u8>>> {
    let mut enc = VideoEncoder::new("vp8", w, h, 30, kbps, 300)?;
    let mut out = Vec::new();
    for i in 0..frames {
        for f in enc.encode(&picture(w, h, i, seed), i == 0)? {
            out.push(f.data);
        }
    }
    Ok(out)
}

/// Writes VP8 frames as an IVF file (for FFmpeg).
fn write_ivf(path: &Path, w: u32, h: u32, frames: &[Vec<u8>]) -> anyhow::Result<()> {
    let mut b = Vec::new();
    b.extend_from_slice(b"DKIF");
    b.extend_from_slice(&0u16.to_le_bytes());
    b.extend_from_slice(&32u16.to_le_bytes());
    b.extend_from_slice(b"VP80");
    b.extend_from_slice(&(w as u16).to_le_bytes());
    b.extend_from_slice(&(h as u16).to_le_bytes());
    b.extend_from_slice(&30u32.to_le_bytes());
    b.extend_from_slice(&1u32.to_le_bytes());
    b.extend_from_slice(&(frames.len() as u32).to_le_bytes());
    b.extend_from_slice(&0u32.to_le_bytes());
    for (i, f) in frames.iter().enumerate() {
        b.extend_from_slice(&(f.len() as u32).to_le_bytes());
        b.extend_from_slice(&(i as u64).to_le_bytes());
        b.extend_from_slice(f);
    }
    std::fs::write(path, b).with_context(|| format!("writing {}", path.display()))
}

/// The mixer composing `inputs` clips into a 1280×720 30 fps view in `codec`: video
/// seconds per CPU second.
fn compose(inputs: &[Vec<Vec<u8>>], codec: &str) -> anyhow::Result<f64> {
    let spec = VideoSpec {
        codec: codec.into(),
        width: 1280,
        height: 720,
        framerate: 30,
        bitrate_kbps: 2000,
        key_frame_interval: 10,
        max_input: 16,
        bg_color: [0, 0, 0],
        fit: Fit::Letterbox,
        keep_active_input_primary: false,
        layout: LayoutSpec::default(),
    };
    let mut c = Compositor::new(spec)?;
    for i in 0..inputs.len() {
        c.add_input(Arc::from(format!("in{i}")), true);
    }
    let frames = inputs.iter().map(Vec::len).min().unwrap_or(0);
    let t0 = Instant::now();
    let start = cpu();
    let mut encoded = 0usize;
    for f in 0..frames {
        for (i, clip) in inputs.iter().enumerate() {
            c.on_frame(&format!("in{i}"), "vp8", &clip[f], f == 0, true);
        }
        let now = t0 + Duration::from_micros(33_334 * f as u64);
        encoded += c.tick(now)?.iter().map(|e| e.data.len()).sum::<usize>();
    }
    let used = cpu() - start;
    if encoded == 0 || c.decode_errors > 0 {
        bail!("the compositor produced nothing or failed to decode");
    }
    Ok(frames as f64 / 30.0 / used)
}

/// Composing four 640×360 pictures into a 1280×720 canvas (each scaled to 600×338 inside
/// its region): microseconds per composite with the mixer's SIMD scaler, and with the
/// plain scalar bilinear one.
fn scaling(iters: u32) -> (f64, f64) {
    use switchyard_mixer::video::compose::Canvas;
    use switchyard_mixer::video::layout::Rect;
    let src = picture(640, 360, 7, 3);
    let regions: Vec<Rect> = (0..4)
        .map(|i| Rect {
            x: (i % 2) * 640 + 20,
            y: (i / 2) * 360 + 10,
            w: 600,
            h: 338,
        })
        .collect();
    let mut canvas = Canvas::new(
        1280,
        720,
        switchyard_mixer::video::frame::Yuv::from_rgb(0, 0, 0),
    );
    let t = Instant::now();
    for _ in 0..iters {
        for r in &regions {
            canvas.draw(&src, *r, Fit::Crop);
        }
    }
    let simd = t.elapsed().as_secs_f64() * 1e6 / f64::from(iters);
    let mut plain = I420::filled(
        1280,
        720,
        switchyard_mixer::video::frame::Yuv::from_rgb(0, 0, 0),
    );
    let t = Instant::now();
    for _ in 0..iters {
        for r in &regions {
            let (x, y, w, h) = (r.x as usize, r.y as usize, r.w as usize, r.h as usize);
            switchyard_perf::scalar_bilinear(&src.y, 640, 360, &mut plain.y, 1280, x, y, w, h);
            switchyard_perf::scalar_bilinear(
                &src.u,
                320,
                180,
                &mut plain.u,
                640,
                x / 2,
                y / 2,
                w / 2,
                h / 2,
            );
            switchyard_perf::scalar_bilinear(
                &src.v,
                320,
                180,
                &mut plain.v,
                640,
                x / 2,
                y / 2,
                w / 2,
                h / 2,
            );
        }
    }
    let scalar = t.elapsed().as_secs_f64() * 1e6 / f64::from(iters);
    (simd, scalar)
}

/// FFmpeg (one thread) stacking the same inputs into 1280×720 with libx264 ultrafast:
/// video seconds per CPU second (its process's user + system time).
fn ffmpeg(args: &Args, files: &[PathBuf], tile: (u32, u32), frames: usize) -> anyhow::Result<f64> {
    let n = files.len();
    let per_row = (1..).find(|k| k * k >= n).unwrap_or(1);
    let layout: Vec<String> = (0..n)
        .map(|i| {
            format!(
                "{}_{}",
                (i % per_row) as u32 * tile.0,
                (i / per_row) as u32 * tile.1
            )
        })
        .collect();
    let mut cmd = std::process::Command::new(&args.ffmpeg);
    cmd.args([
        "-hide_banner",
        "-loglevel",
        "error",
        "-threads",
        "1",
        "-filter_threads",
        "1",
    ]);
    cmd.args(["-filter_complex_threads", "1"]);
    for f in files {
        cmd.args(["-threads", "1", "-c:v", "vp8", "-i"]).arg(f);
    }
    let inputs: String = (0..n).map(|i| format!("[{i}:v]")).collect();
    cmd.arg("-filter_complex").arg(format!(
        "{inputs}xstack=inputs={n}:layout={}:fill=black,scale=1280:720,format=yuv420p",
        layout.join("|")
    ));
    cmd.args([
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-tune",
        "zerolatency",
        "-b:v",
        "2M",
    ]);
    cmd.args(["-threads", "1", "-frames:v"])
        .arg(frames.to_string());
    cmd.args(["-f", "null", "-"]);
    let before = children_cpu();
    let status = cmd
        .status()
        .with_context(|| format!("running {}", args.ffmpeg))?;
    if !status.success() {
        bail!("ffmpeg failed: {status}");
    }
    let used = children_cpu() - before;
    Ok(frames as f64 / 30.0 / used)
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let secs = if args.quick { 10 } else { 60 };
    let video_frames: u32 = if args.quick { 90 } else { 300 };
    println!(
        "mixer-bench on {} ({} cores), one core each, {}",
        switchyard_perf::cpu_model(),
        switchyard_perf::available_cores(),
        if args.quick { "quick" } else { "full" }
    );

    // Audio.
    println!("\naudio: a view of N participants, K = 3 speakers, {secs} s simulated");
    let mut audio_rows = Vec::new();
    let sizes: &[usize] = if args.quick {
        &[1000]
    } else {
        &[10, 100, 1000, 3000]
    };
    for &n in sizes {
        let share = audio(n, 3, secs)?;
        let per_core = n as f64 / share;
        println!(
            "  N = {n:>5}: {:>6.2} % of a core; {:>9.0} participants per core",
            share * 100.0,
            per_core
        );
        audio_rows.push(json!({"participants": n, "speakers": 3, "core_share": share, "participants_per_core": per_core}));
    }
    let share_1000 = audio_rows
        .iter()
        .find(|r| r["participants"] == 1000)
        .and_then(|r| r["core_share"].as_f64())
        .unwrap_or(f64::NAN);

    // Video.
    let dir = tempfile::tempdir()?;
    let mut video_rows = Vec::new();
    println!("\nvideo: 1280x720 at 30 fps, decode + compose + encode, views per core ({video_frames} frames)");
    println!(
        "  {:<22} {:>10} {:>10} {:>16}",
        "inputs", "mixer vp8", "mixer h264", "ffmpeg x264 uf"
    );
    for (n, (w, h), kbps) in [(4usize, (640u32, 360u32), 800u32), (16, (320, 180), 250)] {
        let clips: Vec<Vec<Vec<u8>>> = (0..n)
            .map(|i| clip(w, h, video_frames, kbps, i as u32))
            .collect::<anyhow::Result<_>>()?;
        let vp8 = compose(&clips, "vp8")?;
        let h264 = compose(&clips, "h264")?;
        let mut files = Vec::new();
        for (i, c) in clips.iter().enumerate() {
            let f = dir.path().join(format!("in-{n}-{i}.ivf"));
            write_ivf(&f, w, h, c)?;
            files.push(f);
        }
        let ff = ffmpeg(&args, &files, (w, h), video_frames as usize)?;
        let label = format!("{n} x {w}x{h}");
        println!("  {label:<22} {vp8:>10.2} {h264:>10.2} {ff:>16.2}");
        video_rows.push(json!({"inputs": n, "input_size": [w, h], "views_per_core_vp8": vp8, "views_per_core_h264": h264, "views_per_core_ffmpeg_x264_ultrafast": ff, "ratio_vp8_vs_ffmpeg": vp8 / ff, "ratio_h264_vs_ffmpeg": h264 / ff}));
    }

    let (simd, scalar) = scaling(if args.quick { 50 } else { 300 });
    println!(
        "\nscaling four 640x360 pictures into a 1280x720 composite: {simd:.0} µs with the SIMD scaler (fast_image_resize, bilinear), {scalar:.0} µs with a plain scalar bilinear one ({:.1}x)",
        scalar / simd
    );

    let doc = json!({
        "machine": {"cpu": switchyard_perf::cpu_model(), "cores": switchyard_perf::available_cores()},
        "quick": args.quick,
        "audio": audio_rows,
        "video": video_rows,
        "scaling_us_per_composite": {"simd_fast_image_resize": simd, "scalar_bilinear": scalar},
    });
    if let Some(parent) = args.out.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(&args.out, serde_json::to_vec_pretty(&doc)?)?;

    // Against the baseline: higher is better for every figure. The figures are CPU-bound
    // on one core, so they are scaled by this machine's speed against the baseline's: the
    // scalar scaling loop above (a fixed reference, not the mixer's code) timed in this
    // run against its time when the baseline was taken (`reference_scalar_us`). A 2-core
    // VM whose host lends it half the CPU speed of another hour then does not read as a
    // regression of the mixer, and a slower mixer still does.
    let speed = switchyard_perf::baseline_value(&args.baseline, "mixer", "reference_scalar_us")
        .filter(|r| *r > 0.0 && scalar > 0.0)
        .map_or(1.0, |r| scalar / r);
    println!(
        "\nthis machine against the baseline's: the reference loop took {scalar:.0} µs, {speed:.2}x the baseline's time; figures below are scaled by it"
    );
    let figures = [
        (
            "audio_1000x3_participants_per_core",
            1000.0 / share_1000 * speed,
        ),
        (
            "video_4in_vp8_views_per_core",
            f(&video_rows, 4, "views_per_core_vp8") * speed,
        ),
        (
            "video_16in_vp8_views_per_core",
            f(&video_rows, 16, "views_per_core_vp8") * speed,
        ),
    ];
    switchyard_perf::check_baseline(&args.baseline, "mixer", &figures)
        .map_err(|e| anyhow::anyhow!("mixer-bench: {e}"))
}

fn f(rows: &[Value], inputs: usize, key: &str) -> f64 {
    rows.iter()
        .find(|r| r["inputs"] == inputs)
        .and_then(|r| r[key].as_f64())
        .unwrap_or(f64::NAN)
}
