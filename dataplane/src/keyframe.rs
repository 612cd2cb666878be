//! Rate limiting of keyframe requests towards a publisher (sans-IO).
//!
//! Every subscriber that joins, loses packets or switches asks for a keyframe (PLI/FIR),
//! and each keyframe costs the publisher several times a normal frame. Requests for one
//! publication are therefore merged: at most one goes upstream per interval; one that
//! arrives inside the interval is not dropped but deferred to its end, so the newest
//! subscriber still gets its keyframe within one interval.

use std::time::{Duration, Instant};

/// The shortest time between two keyframe requests sent to one publisher.
pub const MIN_INTERVAL: Duration = Duration::from_millis(500);

/// The limiter of one publication.
#[derive(Debug, Clone, Default)]
pub struct KeyframeLimiter {
    last_sent: Option<Instant>,
    deferred: bool,
}

/// What to do with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Send it upstream now.
    Send,
    /// Merged into a request that goes at the given time.
    Deferred(Instant),
}

impl KeyframeLimiter {
    /// A subscriber asks for a keyframe at `now`.
    pub fn request(&mut self, now: Instant) -> Decision {
        match self.last_sent {
            Some(t) if now < t + MIN_INTERVAL => {
                self.deferred = true;
                Decision::Deferred(t + MIN_INTERVAL)
            }
            _ => {
                self.last_sent = Some(now);
                self.deferred = false;
                Decision::Send
            }
        }
    }

    /// When a deferred request is due, if one is pending.
    pub fn due(&self) -> Option<Instant> {
        match (self.deferred, self.last_sent) {
            (true, Some(t)) => Some(t + MIN_INTERVAL),
            _ => None,
        }
    }

    /// Called at `now`; true when a deferred request must be sent now.
    pub fn poll(&mut self, now: Instant) -> bool {
        match self.due() {
            Some(at) if now >= at => {
                self.deferred = false;
                self.last_sent = Some(now);
                true
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merges_bursts_and_never_loses_the_last_request() {
        let t0 = Instant::now();
        let mut l = KeyframeLimiter::default();
        assert_eq!(l.request(t0), Decision::Send);
        // Ten subscribers join within 100 ms: one deferred request, due at +500 ms.
        for i in 1..=10 {
            assert_eq!(
                l.request(t0 + Duration::from_millis(10 * i)),
                Decision::Deferred(t0 + MIN_INTERVAL)
            );
        }
        assert!(!l.poll(t0 + Duration::from_millis(499)));
        assert!(l.poll(t0 + Duration::from_millis(500)));
        assert!(!l.poll(t0 + Duration::from_millis(501)), "sent once");
        assert_eq!(l.due(), None);
        // Quiet for a while: the next request goes at once.
        assert_eq!(l.request(t0 + Duration::from_secs(2)), Decision::Send);
    }

    #[test]
    fn sends_at_most_two_per_interval_under_a_flood() {
        let t0 = Instant::now();
        let mut l = KeyframeLimiter::default();
        let mut sent = 0;
        for ms in 0..5_000u64 {
            let now = t0 + Duration::from_millis(ms);
            if l.request(now) == Decision::Send {
                sent += 1;
            }
            if l.poll(now) {
                sent += 1;
            }
        }
        // One every 500 ms over 5 s, plus the first.
        assert!((10..=11).contains(&sent), "{sent}");
    }
}
