//! Per-core counters, written by their core only (relaxed atomics, no sharing on the
//! packet path) and read by the metrics endpoint.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

/// Why a datagram or packet was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// Not STUN, DTLS, RTP or RTCP, or rejected by the peer as malformed.
    Malformed,
    /// From an address no peer knows, and not a STUN request naming one.
    UnknownSource,
    /// The peer's ICE agent refused it (wrong credentials, wrong state).
    NotAccepted,
    /// Dropped on purpose by `test_ingress_loss_percent`.
    TestLoss,
    /// The subscriber has no codec for the packet's payload.
    CodecMismatch,
    /// The hand-off queue to another core was full.
    CrossCoreFull,
    /// The socket refused the datagram (its buffer was full).
    SendFailed,
    /// Older than the subscription, or for a track the subscriber does not have.
    NotRoutable,
    /// Video of a subscription shed because the core was saturated.
    Overload,
    /// A payload too large to forward ([`crate::core::MAX_PAYLOAD`]).
    Oversized,
}

impl DropReason {
    /// Every reason, for iteration.
    pub const ALL: [DropReason; 10] = [
        DropReason::Malformed,
        DropReason::UnknownSource,
        DropReason::NotAccepted,
        DropReason::TestLoss,
        DropReason::CodecMismatch,
        DropReason::CrossCoreFull,
        DropReason::SendFailed,
        DropReason::NotRoutable,
        DropReason::Overload,
        DropReason::Oversized,
    ];

    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            DropReason::Malformed => "malformed",
            DropReason::UnknownSource => "unknown_source",
            DropReason::NotAccepted => "not_accepted",
            DropReason::TestLoss => "test_loss",
            DropReason::CodecMismatch => "codec_mismatch",
            DropReason::CrossCoreFull => "cross_core_full",
            DropReason::SendFailed => "send_failed",
            DropReason::NotRoutable => "not_routable",
            DropReason::Overload => "overload",
            DropReason::Oversized => "oversized",
        }
    }
}

/// One core's counters.
#[derive(Debug, Default)]
pub struct CoreMetrics {
    /// Datagrams received.
    pub packets_in: AtomicU64,
    /// Bytes received.
    pub bytes_in: AtomicU64,
    /// Datagrams sent.
    pub packets_out: AtomicU64,
    /// Bytes sent.
    pub bytes_out: AtomicU64,
    /// Messages handed to the kernel: a UDP GSO message carries several datagrams.
    pub send_messages: AtomicU64,
    /// RTP packets forwarded to subscriptions (one per subscription).
    pub rtp_forwarded: AtomicU64,
    /// Of those, copies that went through str0m's send queue and pacer (bandwidth
    /// adaptation on, or a resend waiting) instead of being encrypted at once.
    pub rtp_queued: AtomicU64,
    /// Packets handed to other cores.
    pub handed_off: AtomicU64,
    /// Drops, indexed like [`DropReason::ALL`].
    pub drops: [AtomicU64; DropReason::ALL.len()],
    /// Peers on the core now.
    pub peers: AtomicU64,
    /// Publishers on the core now.
    pub publishers: AtomicU64,
    /// ULPFEC packets received from publishers (inside video RED).
    pub fec_received: AtomicU64,
    /// Publishers' video packets lost on their way in and recovered from ULPFEC.
    pub fec_recovered: AtomicU64,
    /// ULPFEC packets sent to subscribers whose paths lose packets.
    pub fec_sent: AtomicU64,
    /// NACKs received from subscribers (answered from the send cache with RTX).
    pub nacks_received: AtomicU64,
    /// NACKs sent to publishers for packets lost on their way in.
    pub nacks_sent: AtomicU64,
    /// PLIs and FIRs received from subscribers.
    pub keyframe_requests_received: AtomicU64,
    /// Keyframe requests sent to publishers (after rate limiting).
    pub keyframe_requests_sent: AtomicU64,
    /// The core's load in percent, as overload shedding reads it: its thread's CPU share,
    /// or with half its CPU or more the CPU's busy share if larger (see `crate::load`);
    /// smoothed over about a second.
    pub load_percent: AtomicU64,
    /// Video subscriptions shed because the core is saturated.
    pub shed_subscriptions: AtomicU64,
    /// Per forwarded copy of a sampled datagram: the time from the datagram's arrival
    /// (the kernel's receive timestamp) to the copy being handed to the kernel.
    pub forward_latency: LatencyHistogram,
    /// How long each wake of the core's timer kept the core busy (the peers' timeouts and
    /// sending what they produced): forwarding waits that long.
    pub timer_work: LatencyHistogram,
    /// Simulcast layer switches of subscriptions (the first picture is not one).
    pub layer_switches: AtomicU64,
    /// Padding trials ended because the subscriber's round trip showed the padding had
    /// built a queue at the path's bottleneck (see `padding.rs`).
    pub padding_queue_stops: AtomicU64,
    /// Each bandwidth estimate of a peer with bandwidth adaptation, as it comes.
    pub bandwidth_estimate: Histogram<BitsPerSecond>,
}

/// The buckets of a [`Histogram`]: their upper bounds in the recorded unit (one more
/// bucket, `+Inf`, takes the rest), and how many of that unit make the exported one.
pub trait Buckets: Default {
    /// Upper bounds, ascending; at most [`MAX_BUCKETS`] − 1.
    const BOUNDS: &'static [u64];
    /// Recorded units per exported unit (1e6 for microseconds exported as seconds).
    const PER_UNIT: f64;
}

/// The most buckets a [`Histogram`] has, `+Inf` included.
pub const MAX_BUCKETS: usize = 24;

/// Latencies, recorded in microseconds, exported in seconds.
#[derive(Debug, Default)]
pub struct Micros;

impl Buckets for Micros {
    const BOUNDS: &'static [u64] = &[
        10, 20, 30, 50, 75, 100, 150, 200, 300, 500, 750, 1_000, 2_000, 5_000, 10_000, 20_000,
        50_000, 100_000, 500_000, 1_000_000,
    ];
    const PER_UNIT: f64 = 1e6;
}

/// Bitrates, in bits per second.
#[derive(Debug, Default)]
pub struct BitsPerSecond;

impl Buckets for BitsPerSecond {
    const BOUNDS: &'static [u64] = &[
        50_000, 100_000, 200_000, 300_000, 500_000, 750_000, 1_000_000, 1_500_000, 2_000_000,
        3_000_000, 5_000_000, 10_000_000, 20_000_000,
    ];
    const PER_UNIT: f64 = 1.0;
}

/// A fixed-bucket histogram written by one core (relaxed atomics) and rendered as a
/// Prometheus histogram.
#[derive(Debug, Default)]
pub struct Histogram<B: Buckets> {
    /// Counts per bucket (not cumulative), `+Inf` after the last bound.
    buckets: [AtomicU64; MAX_BUCKETS],
    /// The sum of every sample, in the recorded unit.
    sum: AtomicU64,
    _buckets: std::marker::PhantomData<B>,
}

/// Per-copy forwarding latency.
pub type LatencyHistogram = Histogram<Micros>;

impl<B: Buckets> Histogram<B> {
    /// Counts `n` samples of `value` (in the recorded unit).
    pub fn record_value_n(&self, value: u64, n: u64) {
        let i = B::BOUNDS
            .iter()
            .position(|b| value <= *b)
            .unwrap_or(B::BOUNDS.len())
            .min(MAX_BUCKETS - 1);
        self.buckets[i].fetch_add(n, Relaxed);
        self.sum.fetch_add(value.saturating_mul(n), Relaxed);
    }

    /// The samples so far.
    pub fn count(&self) -> u64 {
        self.buckets.iter().map(|b| b.load(Relaxed)).sum()
    }

    /// Appends the histogram's Prometheus lines for core `core` (buckets cumulative).
    fn render(&self, out: &mut String, name: &str, core: usize) {
        let mut cumulative = 0;
        for (i, b) in self.buckets.iter().enumerate().take(B::BOUNDS.len() + 1) {
            cumulative += b.load(Relaxed);
            let le = match B::BOUNDS.get(i) {
                Some(v) => format!("{}", *v as f64 / B::PER_UNIT),
                None => "+Inf".to_string(),
            };
            let _ = writeln!(
                out,
                "{name}_bucket{{core=\"{core}\",le=\"{le}\"}} {cumulative}"
            );
        }
        let sum = self.sum.load(Relaxed) as f64 / B::PER_UNIT;
        let _ = writeln!(out, "{name}_sum{{core=\"{core}\"}} {sum}");
        let _ = writeln!(out, "{name}_count{{core=\"{core}\"}} {cumulative}");
    }
}

impl Histogram<Micros> {
    /// Counts one latency.
    pub fn record(&self, d: std::time::Duration) {
        self.record_n(d, 1);
    }

    /// Counts `n` samples of the same latency.
    pub fn record_n(&self, d: std::time::Duration, n: u64) {
        self.record_value_n(u64::try_from(d.as_micros()).unwrap_or(u64::MAX), n);
    }
}

impl Histogram<BitsPerSecond> {
    /// Counts one bitrate.
    pub fn record(&self, bps: u64) {
        self.record_value_n(bps, 1);
    }
}

impl CoreMetrics {
    /// Counts a drop.
    pub fn dropped(&self, why: DropReason) {
        self.dropped_n(why, 1);
    }

    /// Counts `n` drops for one reason.
    pub fn dropped_n(&self, why: DropReason, n: u64) {
        let i = DropReason::ALL.iter().position(|d| *d == why).unwrap_or(0);
        self.drops[i].fetch_add(n, Relaxed);
    }

    /// The drops so far for one reason.
    pub fn drops_for(&self, why: DropReason) -> u64 {
        let i = DropReason::ALL.iter().position(|d| *d == why).unwrap_or(0);
        self.drops[i].load(Relaxed)
    }

    /// Adds to a counter.
    pub fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Relaxed);
    }
}

/// Reads one counter of a core.
type Field = fn(&CoreMetrics) -> &AtomicU64;

/// Prometheus text for every core.
pub fn render(cores: &[Arc<CoreMetrics>]) -> String {
    let mut out = String::new();
    let counters: [(&str, &str, Field); 17] = [
        (
            "switchyard_dataplane_packets_in_total",
            "Datagrams received",
            |m| &m.packets_in,
        ),
        (
            "switchyard_dataplane_bytes_in_total",
            "Bytes received",
            |m| &m.bytes_in,
        ),
        (
            "switchyard_dataplane_packets_out_total",
            "Datagrams sent",
            |m| &m.packets_out,
        ),
        ("switchyard_dataplane_bytes_out_total", "Bytes sent", |m| {
            &m.bytes_out
        }),
        (
            "switchyard_dataplane_send_messages_total",
            "Messages handed to the kernel (a UDP GSO message carries several of the datagrams sent)",
            |m| &m.send_messages,
        ),
        (
            "switchyard_dataplane_rtp_forwarded_total",
            "RTP packets forwarded to subscriptions",
            |m| &m.rtp_forwarded,
        ),
        (
            "switchyard_dataplane_rtp_queued_total",
            "Of the forwarded RTP packets, those sent through the pacer's queue (bandwidth adaptation on, or a resend waiting) instead of at once",
            |m| &m.rtp_queued,
        ),
        (
            "switchyard_dataplane_handed_off_total",
            "Packets handed to other cores",
            |m| &m.handed_off,
        ),
        (
            "switchyard_dataplane_fec_received_total",
            "ULPFEC packets received from publishers (inside video RED)",
            |m| &m.fec_received,
        ),
        (
            "switchyard_dataplane_fec_recovered_total",
            "Publishers' video packets lost on the way in and recovered from ULPFEC",
            |m| &m.fec_recovered,
        ),
        (
            "switchyard_dataplane_fec_sent_total",
            "ULPFEC packets sent to subscribers whose paths lose packets (inside video RED)",
            |m| &m.fec_sent,
        ),
        (
            "switchyard_dataplane_nacks_received_total",
            "NACKs received from subscribers",
            |m| &m.nacks_received,
        ),
        (
            "switchyard_dataplane_nacks_sent_total",
            "NACKs sent to publishers",
            |m| &m.nacks_sent,
        ),
        (
            "switchyard_dataplane_plis_received_total",
            "Keyframe requests (PLI/FIR) received from subscribers",
            |m| &m.keyframe_requests_received,
        ),
        (
            "switchyard_dataplane_keyframe_requests_sent_total",
            "Keyframe requests sent to publishers",
            |m| &m.keyframe_requests_sent,
        ),
        (
            "switchyard_dataplane_layer_switches_total",
            "Simulcast layer switches of subscriptions",
            |m| &m.layer_switches,
        ),
        (
            "switchyard_dataplane_padding_queue_stops_total",
            "Padding towards a subscriber's next layer stopped because its round trip showed a queue building at its path's bottleneck",
            |m| &m.padding_queue_stops,
        ),
    ];
    for (name, help, get) in counters {
        let _ = writeln!(out, "# HELP {name} {help}.\n# TYPE {name} counter");
        for (i, m) in cores.iter().enumerate() {
            let _ = writeln!(out, "{name}{{core=\"{i}\"}} {}", get(m).load(Relaxed));
        }
    }
    let _ = writeln!(out, "# HELP switchyard_dataplane_drops_total Dropped datagrams and packets by reason.\n# TYPE switchyard_dataplane_drops_total counter");
    for (i, m) in cores.iter().enumerate() {
        for d in DropReason::ALL {
            let _ = writeln!(
                out,
                "switchyard_dataplane_drops_total{{core=\"{i}\",reason=\"{}\"}} {}",
                d.label(),
                m.drops_for(d)
            );
        }
    }
    for (name, help, get) in [
        (
            "switchyard_dataplane_peers",
            "Peers on the core",
            (|m| &m.peers) as Field,
        ),
        (
            "switchyard_dataplane_publishers",
            "Publishers on the core",
            |m| &m.publishers,
        ),
        (
            "switchyard_dataplane_load_percent",
            "Core load as overload shedding reads it (CPU share of the core's thread, or of its CPU when the core uses half of it or more), smoothed over about a second",
            |m| &m.load_percent,
        ),
        (
            "switchyard_dataplane_shed_subscriptions",
            "Video subscriptions shed because the core is saturated",
            |m| &m.shed_subscriptions,
        ),
    ] {
        let _ = writeln!(out, "# HELP {name} {help}.\n# TYPE {name} gauge");
        for (i, m) in cores.iter().enumerate() {
            let _ = writeln!(out, "{name}{{core=\"{i}\"}} {}", get(m).load(Relaxed));
        }
    }
    if let Some(bytes) = crate::heap::live_bytes() {
        let name = "switchyard_dataplane_heap_bytes";
        let _ = writeln!(out, "# HELP {name} Heap bytes allocated and not freed by the whole process (requested sizes; resident memory adds the allocator's rounding and free pages).\n# TYPE {name} gauge\n{name} {bytes}");
    }
    let forward_help = format!("Per forwarded copy, time from the datagram's arrival (kernel receive timestamp) to the copy being handed to the kernel; the copies of one received datagram in {} are counted", crate::driver::LATENCY_SAMPLE_EVERY);
    render_histograms(
        &mut out,
        cores,
        "switchyard_dataplane_forward_latency_seconds",
        &forward_help,
        |m| &m.forward_latency,
    );
    render_histograms(&mut out, cores, "switchyard_dataplane_timer_work_seconds", "How long each wake of the core's timer kept the core busy with the peers' timeouts (RTCP, ICE, retransmission timers) and sending what they produced; forwarding on that core waits meanwhile", |m| &m.timer_work);
    render_histograms(&mut out, cores, "switchyard_dataplane_bandwidth_estimate_bps", "Bandwidth estimates towards clients with bandwidth adaptation, in bits per second, each counted as it comes", |m| &m.bandwidth_estimate);
    out
}

/// One histogram family: its help and type lines, then every core's series.
fn render_histograms<B: Buckets>(
    out: &mut String,
    cores: &[Arc<CoreMetrics>],
    name: &str,
    help: &str,
    get: impl Fn(&CoreMetrics) -> &Histogram<B>,
) {
    let _ = writeln!(out, "# HELP {name} {help}.\n# TYPE {name} histogram");
    for (i, m) in cores.iter().enumerate() {
        get(m).render(out, name, i);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_core_and_reason() {
        let a = Arc::new(CoreMetrics::default());
        let b = Arc::new(CoreMetrics::default());
        a.dropped(DropReason::Malformed);
        a.dropped(DropReason::Malformed);
        CoreMetrics::add(&b.packets_in, 5);
        let text = render(&[a, b]);
        assert!(
            text.contains("switchyard_dataplane_drops_total{core=\"0\",reason=\"malformed\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("switchyard_dataplane_packets_in_total{core=\"1\"} 5"),
            "{text}"
        );
        assert!(
            text.contains("switchyard_dataplane_peers{core=\"1\"} 0"),
            "{text}"
        );
    }

    #[test]
    fn histograms_are_cumulative_with_inf() {
        let m = Arc::new(CoreMetrics::default());
        let h = &m.forward_latency;
        h.record(std::time::Duration::from_micros(5));
        h.record(std::time::Duration::from_micros(150));
        h.record(std::time::Duration::from_micros(151));
        h.record_n(std::time::Duration::from_secs(3), 2);
        assert_eq!(h.count(), 5);
        let text = render(std::slice::from_ref(&m));
        let name = "switchyard_dataplane_forward_latency_seconds";
        for (le, n) in [
            ("0.00001", 1),
            ("0.00015", 2),
            ("0.0002", 3),
            ("1", 3),
            ("+Inf", 5),
        ] {
            let line = format!("{name}_bucket{{core=\"0\",le=\"{le}\"}} {n}");
            assert!(text.contains(&line), "{line} missing in\n{text}");
        }
        assert!(
            text.contains(&format!("{name}_count{{core=\"0\"}} 5")),
            "{text}"
        );
        m.timer_work.record(std::time::Duration::from_micros(40));
        let text = render(std::slice::from_ref(&m));
        let line = "switchyard_dataplane_timer_work_seconds_bucket{core=\"0\",le=\"0.00005\"} 1";
        assert!(text.contains(line), "{line} missing in\n{text}");
        m.bandwidth_estimate.record(320_000);
        m.bandwidth_estimate.record(50_000_000);
        let text = render(&[m]);
        let name = "switchyard_dataplane_bandwidth_estimate_bps";
        for line in [
            format!("{name}_bucket{{core=\"0\",le=\"300000\"}} 0"),
            format!("{name}_bucket{{core=\"0\",le=\"500000\"}} 1"),
            format!("{name}_bucket{{core=\"0\",le=\"+Inf\"}} 2"),
        ] {
            assert!(text.contains(&line), "{line} missing in\n{text}");
        }
    }
}
