//! The run's report (JSON), the processes' CPU and memory from /proc, and SVG charts.

use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use crate::stats::Tick;

pub use switchyard_perf::cpu_seconds;
use switchyard_perf::rss_kib;

/// The CPU seconds and RSS of a set of processes together.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Usage {
    /// CPU seconds, user + system.
    pub cpu_s: f64,
    /// Resident memory, KiB.
    pub rss_kib: u64,
}

/// Samples `pids` (the servers) now.
pub fn usage(pids: &[String]) -> Usage {
    let mut u = Usage::default();
    for p in pids {
        u.cpu_s += cpu_seconds(p).unwrap_or(0.0);
        u.rss_kib += rss_kib(p).unwrap_or(0);
    }
    u
}

/// Latency percentiles, µs.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Latency {
    /// Median.
    pub p50_us: u64,
    /// 90th percentile.
    pub p90_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// 99.9th percentile.
    pub p999_us: u64,
    /// The largest.
    pub max_us: u64,
}

impl Latency {
    /// Percentiles of a histogram.
    pub fn of(h: &hdrhistogram::Histogram<u64>) -> Self {
        if h.is_empty() {
            return Latency::default();
        }
        Latency {
            p50_us: h.value_at_quantile(0.5),
            p90_us: h.value_at_quantile(0.9),
            p99_us: h.value_at_quantile(0.99),
            p999_us: h.value_at_quantile(0.999),
            max_us: h.max(),
        }
    }
}

/// Figures of a measured window.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Window {
    /// Its length, s.
    pub seconds: f64,
    /// Publishers sending.
    pub publishers: usize,
    /// Subscribers connected.
    pub subscribers: usize,
    /// RTP packets publishers sent.
    pub sent_packets: u64,
    /// RTP packets subscribers received (what the server forwarded).
    pub received_packets: u64,
    /// Received per second.
    pub received_pps: f64,
    /// Received UDP payload, Mbit/s.
    pub received_mbit_s: f64,
    /// Fraction of expected packets missing: gaps in the sequence numbers each
    /// subscriber received.
    pub loss: f64,
    /// What subscribers received over what the publishers sent times their subscribers:
    /// 1 when every subscriber got every packet. Unlike `loss` it also counts streams a
    /// server stopped forwarding (shed under overload: no gap ever shows). Not measured
    /// with simulcast (each subscriber gets one of three layers).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivered: Option<f64>,
    /// Added latency: send → server → receive, on one clock.
    pub latency: Latency,
    /// Jitter (RFC 3550) of the subscribers' streams when they ended, µs: the median (set
    /// once every session has ended; 0 in ramp steps).
    pub jitter_p50_us: f64,
    /// The largest stream jitter, µs.
    pub jitter_max_us: f64,
    /// Time to first keyframe of subscriptions, ms.
    pub ttff_ms: Latency,
    /// Sessions that failed.
    pub failures: u64,
    /// The load generator's own CPU seconds in the window.
    pub loadgen_cpu_s: f64,
    /// The load generator's CPU use, in cores.
    pub loadgen_cores: f64,
    /// The servers' CPU seconds in the window (0 without --server-pid).
    pub server_cpu_s: f64,
    /// The servers' CPU use, in cores.
    pub server_cores: f64,
    /// Forwarded (received) packets per server CPU-second.
    pub packets_per_server_cpu_s: f64,
    /// Forwarded Mbit/s per server core busy.
    pub mbit_s_per_server_core: f64,
    /// Server RSS with publishers only, KiB.
    pub server_rss_before_kib: u64,
    /// Server RSS with every subscriber connected, KiB.
    pub server_rss_after_kib: u64,
    /// (after − before) / subscribers, KiB.
    pub rss_per_subscriber_kib: f64,
    /// The same of the dataplane's live heap (its `switchyard_dataplane_heap_bytes`, with
    /// `--server-metrics`): what RSS per subscriber is without the allocator's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heap_per_subscriber_kib: Option<f64>,
    /// The server's own added latency (Switchyard's dataplane histogram over the window,
    /// with `--server-metrics`), per forwarded copy: kernel receive stamp → the copy handed
    /// to the kernel.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_latency: Option<Latency>,
    /// Packets handed from one dataplane core to another per forwarded copy (with
    /// `--server-metrics`): 0 when every subscriber sits on its publisher's core.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub handoffs_per_forwarded: Option<f64>,
    /// Datagrams the dataplane sent per message it handed to the kernel (with
    /// `--server-metrics`): above 1 when UDP GSO carried several in one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub datagrams_per_send: Option<f64>,
}

/// The dataplane's added-latency histogram.
pub const FORWARD_LATENCY: &str = "switchyard_dataplane_forward_latency_seconds";
/// The dataplane's count of copies forwarded to subscriptions.
pub const FORWARDED: &str = "switchyard_dataplane_rtp_forwarded_total";
/// The dataplane's live heap bytes (a gauge).
pub const HEAP: &str = "switchyard_dataplane_heap_bytes";
/// The dataplane's count of packets handed to another core.
pub const HANDED_OFF: &str = "switchyard_dataplane_handed_off_total";
/// The dataplane's count of datagrams sent.
pub const PACKETS_OUT: &str = "switchyard_dataplane_packets_out_total";
/// The dataplane's count of messages handed to the kernel (a GSO message holds several).
pub const SEND_MESSAGES: &str = "switchyard_dataplane_send_messages_total";

/// One reading of the dataplane's metrics.
#[derive(Debug, Clone)]
pub struct ServerReading {
    /// The added-latency histogram.
    pub latency: Vec<(f64, u64)>,
    /// Copies forwarded, every core.
    pub forwarded: f64,
    /// Packets handed to another core, every core.
    pub handed_off: f64,
    /// Datagrams sent, every core.
    pub packets_out: f64,
    /// Messages handed to the kernel, every core.
    pub send_messages: f64,
}

/// Percentiles (µs) of a cumulative histogram in seconds; `None` if it is empty.
pub fn histogram_latency(h: &[(f64, u64)]) -> Option<Latency> {
    let us = |q: f64| switchyard_perf::histogram_quantile(h, q).map(|s| (s * 1e6).round() as u64);
    Some(Latency {
        p50_us: us(0.5)?,
        p90_us: us(0.9)?,
        p99_us: us(0.99)?,
        p999_us: us(0.999)?,
        max_us: us(1.0)?,
    })
}

/// One second of the run.
#[derive(Debug, Clone, Serialize)]
pub struct Point {
    /// Seconds since the start.
    pub t: u64,
    /// Subscribers connected.
    pub subscribers: usize,
    /// Packets received in this second.
    pub received_pps: u64,
    /// Mbit/s received.
    pub received_mbit_s: f64,
    /// Loss in this second.
    pub loss: f64,
    /// Latency in this second.
    pub latency: Latency,
    /// Server CPU, % of one core.
    pub server_cpu_percent: f64,
    /// Load generator CPU, % of one core.
    pub loadgen_cpu_percent: f64,
    /// Server RSS, KiB.
    pub server_rss_kib: u64,
}

/// One step of a ramp.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    /// Subscribers during the step.
    pub subscribers: usize,
    /// Figures of the step's measured seconds.
    pub window: Window,
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// "switchyard" or "janus".
    pub target: String,
    /// "fixed", "ramp" or "churn".
    pub scenario: String,
    /// The settings of the run.
    pub settings: serde_json::Value,
    /// CPU model and cores.
    pub machine: String,
    /// The main window (fixed, churn) or the last good step (ramp).
    pub window: Window,
    /// Ramp steps.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<Step>,
    /// Ramp: subscribers at the knee (the last step within the limits).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub knee_subscribers: Option<usize>,
    /// Ramp: why it stopped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_reason: Option<String>,
    /// Churn: subscriptions started and ended during the window.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub churn_joins: Option<u64>,
    /// Every second of the run.
    pub series: Vec<Point>,
    /// Errors of failed sessions (the first 20).
    pub errors: Vec<String>,
}

/// Builds a window's figures from merged ticks and usage samples.
#[allow(clippy::too_many_arguments)]
pub fn window(
    ticks: &Tick,
    seconds: f64,
    publishers: usize,
    subscribers: usize,
    loadgen_cpu_s: f64,
    server_cpu_s: f64,
    rss: (u64, u64),
) -> Window {
    let secs = seconds.max(1e-9);
    let mbit = ticks.received_bytes as f64 * 8.0 / 1e6 / secs;
    let server_cores = server_cpu_s / secs;
    Window {
        seconds,
        publishers,
        subscribers,
        sent_packets: ticks.sent_packets,
        received_packets: ticks.received_packets,
        received_pps: ticks.received_packets as f64 / secs,
        received_mbit_s: mbit,
        loss: ticks.loss(),
        delivered: None,
        latency: Latency::of(&ticks.latency),
        jitter_p50_us: 0.0,
        jitter_max_us: 0.0,
        ttff_ms: Latency::of(&ticks.ttff),
        failures: ticks.failures,
        loadgen_cpu_s,
        loadgen_cores: loadgen_cpu_s / secs,
        server_cpu_s,
        server_cores,
        packets_per_server_cpu_s: if server_cpu_s > 0.0 {
            ticks.received_packets as f64 / server_cpu_s
        } else {
            0.0
        },
        mbit_s_per_server_core: if server_cores > 0.0 {
            mbit / server_cores
        } else {
            0.0
        },
        server_rss_before_kib: rss.0,
        server_rss_after_kib: rss.1,
        rss_per_subscriber_kib: if subscribers > 0 {
            (rss.1 as f64 - rss.0 as f64) / subscribers as f64
        } else {
            0.0
        },
        server_latency: None,
        handoffs_per_forwarded: None,
        datagrams_per_send: None,
        heap_per_subscriber_kib: None,
    }
}

/// One line of a chart: its name, colour and (x, y) points.
pub type Series<'a> = (&'a str, &'a str, Vec<(f64, f64)>);

/// A line chart of `series` over x, as SVG.
pub fn svg_chart(title: &str, x_label: &str, y_label: &str, series: &[Series<'_>]) -> String {
    let (w, h, left, bottom, top, right) = (720.0, 400.0, 70.0, 50.0, 40.0, 150.0);
    let pts = series.iter().flat_map(|s| s.2.iter());
    let (mut x0, mut x1, mut y1) = (f64::MAX, f64::MIN, 0.0f64);
    for &(x, y) in pts {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y1 = y1.max(y);
    }
    if x0 > x1 {
        (x0, x1) = (0.0, 1.0);
    }
    if x1 - x0 < 1e-9 {
        x1 = x0 + 1.0;
    }
    let y1 = if y1 <= 0.0 { 1.0 } else { y1 * 1.1 };
    let pw = w - left - right;
    let ph = h - top - bottom;
    let sx = |x: f64| left + (x - x0) / (x1 - x0) * pw;
    let sy = |y: f64| top + ph - y / y1 * ph;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="22" font-size="15" text-anchor="middle">{}</text>"#,
        w / 2.0,
        esc(title)
    );
    let _ = writeln!(
        s,
        r#"<line x1="{left}" y1="{}" x2="{}" y2="{}" stroke="black"/>"#,
        top + ph,
        left + pw,
        top + ph
    );
    let _ = writeln!(
        s,
        r#"<line x1="{left}" y1="{top}" x2="{left}" y2="{}" stroke="black"/>"#,
        top + ph
    );
    for i in 0..=4 {
        let fx = x0 + (x1 - x0) * i as f64 / 4.0;
        let fy = y1 * i as f64 / 4.0;
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            sx(fx),
            top + ph + 16.0,
            num(fx)
        );
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
            left - 6.0,
            sy(fy) + 4.0,
            num(fy)
        );
        let _ = writeln!(
            s,
            r##"<line x1="{left}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="#ddd"/>"##,
            sy(fy),
            left + pw,
            sy(fy)
        );
    }
    let _ = writeln!(
        s,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
        left + pw / 2.0,
        h - 10.0,
        esc(x_label)
    );
    let _ = writeln!(
        s,
        r#"<text x="16" y="{:.1}" text-anchor="middle" transform="rotate(-90 16 {:.1})">{}</text>"#,
        top + ph / 2.0,
        top + ph / 2.0,
        esc(y_label)
    );
    for (i, (name, colour, points)) in series.iter().enumerate() {
        let path: Vec<String> = points
            .iter()
            .map(|&(x, y)| format!("{:.1},{:.1}", sx(x), sy(y)))
            .collect();
        let _ = writeln!(
            s,
            r#"<polyline fill="none" stroke="{colour}" stroke-width="2" points="{}"/>"#,
            path.join(" ")
        );
        let ly = top + 14.0 + i as f64 * 18.0;
        let _ = writeln!(
            s,
            r#"<line x1="{:.1}" y1="{ly:.1}" x2="{:.1}" y2="{ly:.1}" stroke="{colour}" stroke-width="3"/>"#,
            left + pw + 12.0,
            left + pw + 32.0
        );
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}">{}</text>"#,
            left + pw + 38.0,
            ly + 4.0,
            esc(name)
        );
    }
    s.push_str("</svg>\n");
    s
}

fn num(v: f64) -> String {
    if v.abs() >= 100.0 || v == v.trunc() {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Writes latency.svg and cpu.svg for a report into `dir`.
pub fn plot(dir: &Path, r: &Report) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let lat = |f: fn(&Latency) -> u64| -> Vec<(f64, f64)> {
        r.series
            .iter()
            .filter(|p| p.received_pps > 0)
            .map(|p| (p.t as f64, f(&p.latency) as f64 / 1000.0))
            .collect()
    };
    let chart = svg_chart(
        &format!("{}: added latency per second ({})", r.target, r.scenario),
        "time (s)",
        "latency (ms)",
        &[
            ("p50", "#1f77b4", lat(|l| l.p50_us)),
            ("p99", "#ff7f0e", lat(|l| l.p99_us)),
            ("p99.9", "#d62728", lat(|l| l.p999_us)),
        ],
    );
    std::fs::write(dir.join("latency.svg"), chart)?;
    // The mean CPU at each subscriber count (seconds while subscribers were joining
    // would otherwise draw a saw-tooth).
    let by_count = |f: fn(&Point) -> f64| -> Vec<(f64, f64)> {
        let mut m: std::collections::BTreeMap<usize, (f64, u32)> = Default::default();
        for p in r.series.iter().filter(|p| p.subscribers > 0) {
            let e = m.entry(p.subscribers).or_default();
            e.0 += f(p);
            e.1 += 1;
        }
        m.into_iter()
            .map(|(k, (sum, n))| (k as f64, sum / f64::from(n.max(1))))
            .collect()
    };
    let cpu = by_count(|p| p.server_cpu_percent);
    let gen = by_count(|p| p.loadgen_cpu_percent);
    let chart = svg_chart(
        &format!("{}: CPU against subscribers ({})", r.target, r.scenario),
        "subscribers",
        "CPU (% of one core)",
        &[
            ("server", "#2ca02c", cpu),
            ("load generator", "#9467bd", gen),
        ],
    );
    std::fs::write(dir.join("cpu.svg"), chart)
}

/// CPU model and the cores this process may use.
pub fn machine() -> String {
    format!(
        "{}, {} cores available to the load generator",
        switchyard_perf::cpu_model(),
        switchyard_perf::available_cores()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chart_is_svg_with_each_series() {
        let s = svg_chart(
            "t",
            "x",
            "y",
            &[
                ("a", "red", vec![(0.0, 1.0), (1.0, 2.0)]),
                ("b", "blue", vec![]),
            ],
        );
        assert!(s.starts_with("<svg"));
        assert!(s.trim_end().ends_with("</svg>"));
        assert_eq!(s.matches("<polyline").count(), 2);
    }
}
