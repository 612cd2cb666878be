//! Measurements. Each worker thread keeps its own [`WorkerStats`] (no locks on the packet
//! path) and hands the main thread one [`Tick`] per second; the main thread merges them
//! into the run's time series and window totals.

use hdrhistogram::Histogram;

/// Latency histograms cover 1 µs to 60 s with 3 significant digits.
#[allow(clippy::expect_used)] // constant bounds, which new_with_bounds accepts
pub fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("constant histogram bounds")
}

/// Counters and histograms of one second (or one window, once merged).
#[derive(Debug, Clone)]
pub struct Tick {
    /// Seconds since the run's epoch at the end of this tick.
    pub index: u64,
    /// RTP packets sent by publishers.
    pub sent_packets: u64,
    /// RTP packets received by subscribers.
    pub received_packets: u64,
    /// UDP bytes received by subscribers (SRTP, RTCP included).
    pub received_bytes: u64,
    /// Packets the sequence numbers say should have arrived.
    pub expected_packets: u64,
    /// Added latency of each received packet, µs.
    pub latency: Histogram<u64>,
    /// Time to first keyframe of subscriptions that started in this tick, ms.
    pub ttff: Histogram<u64>,
    /// Sessions that failed to connect or were cut off.
    pub failures: u64,
    /// Packets without a readable send time.
    pub unstamped: u64,
}

impl Tick {
    /// An empty tick.
    pub fn new(index: u64) -> Self {
        Tick {
            index,
            sent_packets: 0,
            received_packets: 0,
            received_bytes: 0,
            expected_packets: 0,
            latency: latency_histogram(),
            ttff: latency_histogram(),
            failures: 0,
            unstamped: 0,
        }
    }

    /// Adds another tick's figures into this one.
    pub fn merge(&mut self, o: &Tick) {
        self.sent_packets += o.sent_packets;
        self.received_packets += o.received_packets;
        self.received_bytes += o.received_bytes;
        self.expected_packets += o.expected_packets;
        let _ = self.latency.add(&o.latency);
        let _ = self.ttff.add(&o.ttff);
        self.failures += o.failures;
        self.unstamped += o.unstamped;
    }

    /// The fraction of expected packets that did not arrive.
    pub fn loss(&self) -> f64 {
        if self.expected_packets == 0 {
            0.0
        } else {
            self.expected_packets.saturating_sub(self.received_packets) as f64
                / self.expected_packets as f64
        }
    }
}

/// Sequence tracking and RFC 3550 jitter of one received stream.
#[derive(Debug, Default)]
pub struct StreamRx {
    /// The highest extended sequence number seen.
    highest: Option<u64>,
    /// The last packet's transit time, µs.
    last_transit: Option<i64>,
    /// RFC 3550 interarrival jitter, µs (×16 fixed point kept as f64).
    pub jitter_us: f64,
}

impl StreamRx {
    /// Accounts one packet; returns how many packets this one advanced the expected count.
    pub fn on_packet(&mut self, seq: u64, transit_us: Option<i64>) -> u64 {
        let advanced = match self.highest {
            None => {
                self.highest = Some(seq);
                1
            }
            Some(h) if seq > h => {
                self.highest = Some(seq);
                seq - h
            }
            Some(_) => 0,
        };
        if let Some(t) = transit_us {
            if let Some(last) = self.last_transit {
                let d = (t - last).abs() as f64;
                self.jitter_us += (d - self.jitter_us) / 16.0;
            }
            self.last_transit = Some(t);
        }
        advanced
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expected_counts_gaps_and_ignores_late_packets() {
        let mut s = StreamRx::default();
        assert_eq!(s.on_packet(100, Some(500)), 1);
        assert_eq!(s.on_packet(101, Some(500)), 1);
        assert_eq!(s.on_packet(104, Some(500)), 3);
        assert_eq!(s.on_packet(103, Some(500)), 0);
        assert_eq!(s.jitter_us, 0.0);
        s.on_packet(105, Some(1300));
        assert!((s.jitter_us - 50.0).abs() < 1e-9);
    }

    #[test]
    fn loss_is_missing_over_expected() {
        let mut t = Tick::new(0);
        t.expected_packets = 200;
        t.received_packets = 190;
        assert!((t.loss() - 0.05).abs() < 1e-12);
        let mut u = Tick::new(0);
        u.merge(&t);
        u.merge(&t);
        assert_eq!(u.expected_packets, 400);
    }
}
