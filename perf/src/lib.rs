//! Measurement helpers shared by Switchyard's benchmarks and its load generator: what a
//! process has used, read from `/proc`, and what machine a figure came from.

use std::sync::OnceLock;

/// Clock ticks per second of `/proc` CPU times (`getconf CLK_TCK`, 100 if it cannot say).
fn clock_ticks() -> f64 {
    static TICKS: OnceLock<f64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// CPU seconds (user + system, all threads) of process `pid` (a number or `self`).
pub fn cpu_seconds(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name (which may hold spaces); utime and
    // stime are the 12th and 13th of them.
    let (_, rest) = stat.rsplit_once(')')?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    Some((utime + stime) / clock_ticks())
}

/// Resident memory of process `pid` (a number or `self`), KiB.
pub fn rss_kib(pid: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

/// The CPU model, from /proc/cpuinfo (empty if it does not say).
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_string())
        })
        .unwrap_or_default()
}

/// The cores this process may run on.
pub fn available_cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// A Prometheus histogram read from metrics text: `(upper bound in seconds, cumulative
/// count)` per bucket, summed over every series of that name (e.g. every core), the
/// `+Inf` bucket last as `f64::INFINITY`.
pub fn prometheus_histogram(text: &str, name: &str) -> Vec<(f64, u64)> {
    let prefix = format!("{name}_bucket{{");
    let mut buckets: Vec<(f64, u64)> = Vec::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(&prefix) else {
            continue;
        };
        let Some((labels, value)) = rest.rsplit_once("} ") else {
            continue;
        };
        let Some(le) = labels
            .split(',')
            .find_map(|l| l.strip_prefix("le=\""))
            .and_then(|l| l.strip_suffix('"'))
        else {
            continue;
        };
        let bound = if le == "+Inf" {
            f64::INFINITY
        } else {
            match le.parse::<f64>() {
                Ok(b) => b,
                Err(_) => continue,
            }
        };
        let Ok(count) = value.trim().parse::<f64>() else {
            continue;
        };
        match buckets.iter_mut().find(|(b, _)| *b == bound) {
            Some((_, c)) => *c += count as u64,
            None => buckets.push((bound, count as u64)),
        }
    }
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    buckets
}

/// A Prometheus counter (or gauge) read from metrics text, summed over every series of that
/// name (e.g. every core); 0 when there is none.
pub fn prometheus_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter_map(|line| {
            let rest = line.strip_prefix(name)?;
            let value = if let Some(labelled) = rest.strip_prefix('{') {
                labelled.rsplit_once("} ")?.1
            } else {
                rest.strip_prefix(' ')?
            };
            value.trim().parse::<f64>().ok()
        })
        .sum()
}

/// What a histogram gained between two readings of it (same buckets).
pub fn histogram_delta(before: &[(f64, u64)], after: &[(f64, u64)]) -> Vec<(f64, u64)> {
    after
        .iter()
        .map(|(b, c)| {
            let old = before
                .iter()
                .find(|(ob, _)| ob == b)
                .map_or(0, |(_, oc)| *oc);
            (*b, c.saturating_sub(old))
        })
        .collect()
}

/// The `q` quantile (0–1) of a cumulative histogram, in the buckets' unit, interpolated
/// linearly inside the bucket it falls in (the `+Inf` bucket answers its lower bound).
/// `None` when the histogram is empty.
pub fn histogram_quantile(buckets: &[(f64, u64)], q: f64) -> Option<f64> {
    let total = buckets.last()?.1;
    if total == 0 {
        return None;
    }
    let rank = q.clamp(0.0, 1.0) * total as f64;
    let mut lower = (0.0, 0u64);
    for &(bound, count) in buckets {
        if count as f64 >= rank {
            if bound.is_infinite() {
                return Some(lower.0);
            }
            let in_bucket = (count - lower.1) as f64;
            let frac = if in_bucket > 0.0 {
                (rank - lower.1 as f64) / in_bucket
            } else {
                1.0
            };
            return Some(lower.0 + (bound - lower.0) * frac);
        }
        lower = (bound, count);
    }
    Some(lower.0)
}

/// A plain scalar bilinear scaling of one plane (`sw × sh` into `dw × dh` at `x`, `y` of
/// a `stride`-wide plane): what mixer-bench measures its SIMD scaler against, and its
/// reference loop for the machine's speed.
#[allow(clippy::too_many_arguments)]
pub fn scalar_bilinear(
    src: &[u8],
    sw: usize,
    sh: usize,
    dst: &mut [u8],
    stride: usize,
    x: usize,
    y: usize,
    dw: usize,
    dh: usize,
) {
    let fx = (sw as f32 - 1.0) / (dw as f32 - 1.0).max(1.0);
    let fy = (sh as f32 - 1.0) / (dh as f32 - 1.0).max(1.0);
    for j in 0..dh {
        let sy = j as f32 * fy;
        let (y0, wy) = (sy as usize, sy.fract());
        let y1 = (y0 + 1).min(sh - 1);
        for i in 0..dw {
            let sx = i as f32 * fx;
            let (x0, wx) = (sx as usize, sx.fract());
            let x1 = (x0 + 1).min(sw - 1);
            let p = |xx: usize, yy: usize| f32::from(src[yy * sw + xx]);
            let top = p(x0, y0) * (1.0 - wx) + p(x1, y0) * wx;
            let bottom = p(x0, y1) * (1.0 - wx) + p(x1, y1) * wx;
            dst[(y + j) * stride + x + i] = (top * (1.0 - wy) + bottom * wy).round() as u8;
        }
    }
}

/// How much slower the machine is now than when the baseline was taken, judged by a
/// reference workload measured beside the figures (`base`: its baseline figure, `now`:
/// this run's; higher is faster): the factor to scale the figures up by. Never below 1 — a
/// faster run is not scaled down, as the reference's own spread would add to the figures'.
/// `None` when `now` is not positive.
pub fn slowdown(base: f64, now: f64) -> Option<f64> {
    (now > 0.0).then(|| (base / now).max(1.0))
}

/// A number of a baseline's section (`section.key`), if the file has it.
pub fn baseline_value(path: &std::path::Path, section: &str, key: &str) -> Option<f64> {
    let text = std::fs::read_to_string(path).ok()?;
    let base: serde_json::Value = serde_json::from_str(&text).ok()?;
    base[section][key].as_f64()
}

/// Compares `figures` (name, value; higher is better) with section `section` of the
/// baseline file (`{section: {noise_margin, figures: {name: value}}}`), printing a line
/// each; an error names every figure below its baseline by more than the margin. A
/// figure without a baseline is printed and passes.
pub fn check_baseline(
    path: &std::path::Path,
    section: &str,
    figures: &[(&str, f64)],
) -> Result<(), String> {
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    let base: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let margin = base[section]["noise_margin"].as_f64().unwrap_or(0.35);
    println!(
        "\nagainst the baseline {} ({section}, noise margin {:.0} %):",
        path.display(),
        margin * 100.0
    );
    let mut failed = Vec::new();
    for (name, got) in figures {
        let Some(want) = base[section]["figures"][*name].as_f64() else {
            println!("  {name:<40} {got:>12.2} (no baseline)");
            continue;
        };
        let ratio = got / want;
        let ok = ratio >= 1.0 - margin;
        println!(
            "  {name:<40} {got:>12.2} vs {want:>12.2}: {ratio:.2}x  {}",
            if ok { "ok" } else { "REGRESSION" }
        );
        if !ok {
            failed.push(format!(
                "{name}: {got:.2} < {want:.2} x {:.2}",
                1.0 - margin
            ));
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(failed.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_read_summed_over_cores_and_quantiles() {
        let text = "# TYPE h histogram\n\
            h_bucket{core=\"0\",le=\"0.0001\"} 50\n\
            h_bucket{core=\"0\",le=\"0.0002\"} 90\n\
            h_bucket{core=\"0\",le=\"+Inf\"} 100\n\
            h_sum{core=\"0\"} 0.5\n\
            h_bucket{core=\"1\",le=\"0.0001\"} 50\n\
            h_bucket{core=\"1\",le=\"0.0002\"} 90\n\
            h_bucket{core=\"1\",le=\"+Inf\"} 100\n\
            other_bucket{le=\"1\"} 7\n";
        let h = prometheus_histogram(text, "h");
        assert_eq!(h, vec![(0.0001, 100), (0.0002, 180), (f64::INFINITY, 200)]);
        // The median is the first bucket's top; 0.7 is halfway through the second.
        let p50 = histogram_quantile(&h, 0.5).unwrap_or(0.0);
        assert!((p50 - 0.0001).abs() < 1e-12, "{p50}");
        let p70 = histogram_quantile(&h, 0.7).unwrap_or(0.0);
        assert!((p70 - 0.00015).abs() < 1e-9, "{p70}");
        // Past the last finite bound the answer is that bound.
        assert_eq!(histogram_quantile(&h, 0.99), Some(0.0002));
        let before = vec![(0.0001, 100), (0.0002, 100), (f64::INFINITY, 100)];
        let d = histogram_delta(&before, &h);
        assert_eq!(d, vec![(0.0001, 0), (0.0002, 80), (f64::INFINITY, 100)]);
        assert_eq!(histogram_quantile(&[(1.0, 0)], 0.5), None);
        assert_eq!(histogram_quantile(&[], 0.5), None);
    }

    #[test]
    fn counters_are_summed_over_their_series() {
        let text = "# HELP c a counter\n\
            c{core=\"0\"} 12\n\
            c{core=\"1\"} 30.5\n\
            c_other{core=\"0\"} 1000\n\
            plain 7\n";
        assert_eq!(prometheus_sum(text, "c"), 42.5);
        assert_eq!(prometheus_sum(text, "plain"), 7.0);
        assert_eq!(prometheus_sum(text, "missing"), 0.0);
    }

    #[test]
    fn own_usage_is_readable() {
        assert!(cpu_seconds("self").is_some());
        assert!(rss_kib("self").unwrap_or(0) > 0);
        assert!(cpu_seconds("no-such-process").is_none());
        assert!(available_cores() >= 1);
    }
}
