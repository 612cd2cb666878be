//! When and how much a subscription's video is protected with ULPFEC (sans-IO).
//!
//! A subscriber that negotiated video RED and ULPFEC (`red/90000`, `ulpfec/90000`; browsers
//! offer both) gets its VP8 or VP9 inside RED from the start, as a browser sends it:
//! Chromium's receiver drops frames for seconds when a stream moves from plain packets to
//! RED. Other codecs go plain: they carry no picture numbers, so a receiver could not tell
//! a lost FEC packet from lost media (browsers send them no ULPFEC either). When its path
//! loses packets, the subscriber also gets forward error correction on its own stream:
//! after every few frames, an FEC packet over their packets as they went out (see
//! `str0m::rtp::RtpWrite::ulpfec`). It recovers one lost packet per group without asking
//! for it again — what a path with a long round trip, or a player without NACK, needs.
//!
//! The subscriber's receiver reports say how much its path loses (the fraction lost
//! counts what the network lost, before FEC repaired it, so protection that works does not
//! switch itself off). Nothing is added while the loss stays under [`ON_LOSS`]; above it
//! one FEC packet goes after the frame that brings the packets waiting for protection to
//! [`Protection::group`], fewer the more is lost. Only between frames: an FEC packet's
//! sequence number inside a frame leaves Chromium unable to put the frame together (its
//! packets must be numbered one after another), so Chromium's own sender does the same. A
//! frame longer than the group (a keyframe) is protected by one FEC packet, over its last
//! 48 packets at most. A subscriber that NACKs with a round trip under
//! [`NACK_ENOUGH_RTT`] gets none: a resend arrives sooner than the overhead is worth (as
//! browsers decide for their own sending). Protection stops after [`OFF_AFTER`] reports in
//! a row under the threshold.

use std::time::Duration;

/// The fraction lost (out of 256) from which a subscription is protected: 1 %.
pub const ON_LOSS: u8 = 3;

/// Reports in a row under [`ON_LOSS`] after which protection stops.
pub const OFF_AFTER: u8 = 5;

/// With NACK and a round trip under this, resends repair loss soon enough.
pub const NACK_ENOUGH_RTT: Duration = Duration::from_millis(20);

/// The most and fewest media packets one FEC packet covers.
pub const MAX_GROUP: u8 = 12;
/// See [`MAX_GROUP`].
pub const MIN_GROUP: u8 = 2;

/// The protection of one subscription's video stream.
#[derive(Debug, Clone)]
pub struct Protection {
    nack: bool,
    /// Media packets per FEC packet; 0 while off.
    group: u8,
    /// Protected packets written since the last FEC packet.
    pending: u8,
    /// Reports in a row under [`ON_LOSS`].
    calm: u8,
}

impl Protection {
    /// Off until a report shows loss; `nack` when the subscriber negotiated NACK.
    pub fn new(nack: bool) -> Self {
        Protection {
            nack,
            group: 0,
            pending: 0,
            calm: 0,
        }
    }

    /// Media packets per FEC packet (0: not protected).
    pub fn group(&self) -> u8 {
        self.group
    }

    /// Whether media is protected.
    pub fn active(&self) -> bool {
        self.group > 0
    }

    /// A new receiver report: `fraction_lost` out of 256 since the last one, and the
    /// round trip time when known.
    pub fn on_report(&mut self, fraction_lost: u8, rtt: Option<Duration>) {
        let quick_resend = self.nack && rtt.is_some_and(|r| r < NACK_ENOUGH_RTT);
        if fraction_lost < ON_LOSS || quick_resend {
            self.calm = self.calm.saturating_add(1);
            if self.calm >= OFF_AFTER || quick_resend {
                self.group = 0;
                self.pending = 0;
            }
            return;
        }
        self.calm = 0;
        // With NACK behind it, one group in about three holds a loss at this rate
        // (mostly one, which FEC repairs; NACK the rest): 5 % → 6 packets per FEC packet,
        // 10 % → 3. Without NACK, FEC is the only repair and a group it cannot repair
        // costs a keyframe: twice as much (5 % → 3).
        let budget: u16 = if self.nack { 77 } else { 38 };
        let group =
            (budget / u16::from(fraction_lost)).clamp(u16::from(MIN_GROUP), u16::from(MAX_GROUP));
        self.group = group as u8;
    }

    /// A protected media packet was written (`marker`: the last of its frame). Whether an
    /// FEC packet goes right after it.
    pub fn on_media(&mut self, marker: bool) -> bool {
        if self.group == 0 {
            return false;
        }
        self.pending = self.pending.saturating_add(1);
        let due = marker && self.pending >= self.group;
        if due {
            self.pending = 0;
        }
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn percent(p: u32) -> u8 {
        (p * 256 / 100).min(255) as u8
    }

    #[test]
    fn loss_turns_it_on_sized_by_the_loss_and_calm_turns_it_off() {
        let mut without_nack = Protection::new(false);
        without_nack.on_report(percent(5), None);
        assert_eq!(without_nack.group(), 3, "FEC alone: more of it");
        let mut p = Protection::new(true);
        assert!(!p.active());
        assert!(!p.on_media(true), "nothing before a report shows loss");
        p.on_report(0, None);
        assert!(!p.active());
        p.on_report(percent(5), None);
        assert_eq!(p.group(), 6);
        p.on_report(percent(10), None);
        assert_eq!(p.group(), 3);
        p.on_report(percent(1) + 1, None);
        assert_eq!(p.group(), MAX_GROUP);
        p.on_report(percent(60), None);
        assert_eq!(p.group(), MIN_GROUP);
        for _ in 0..OFF_AFTER - 1 {
            p.on_report(0, None);
            assert!(p.active(), "one calm report does not stop it");
        }
        p.on_report(1, None);
        assert!(!p.active());
    }

    #[test]
    fn an_fec_packet_only_between_frames_once_a_group_waits() {
        let mut p = Protection::new(true);
        p.on_report(percent(5), None);
        // Frames of four packets, groups of six: after every second frame.
        let due: Vec<bool> = (0..16).map(|i| p.on_media(i % 4 == 3)).collect();
        let at: Vec<usize> = (0..16).filter(|i| due[*i]).collect();
        assert_eq!(at, [7, 15]);
        // A keyframe of 30 packets: one, after its last.
        let due: Vec<bool> = (0..30).map(|i| p.on_media(i == 29)).collect();
        assert_eq!(due.iter().filter(|d| **d).count(), 1);
        assert!(due[29]);
    }

    #[test]
    fn nack_with_a_short_round_trip_needs_none() {
        let mut p = Protection::new(true);
        p.on_report(percent(5), Some(Duration::from_millis(5)));
        assert!(!p.active());
        p.on_report(percent(5), None);
        assert!(p.active(), "round trip not known yet");
        p.on_report(percent(5), Some(Duration::from_millis(80)));
        assert!(p.active());
        p.on_report(percent(5), Some(Duration::from_millis(5)));
        assert!(!p.active());
        let mut no_nack = Protection::new(false);
        no_nack.on_report(percent(5), Some(Duration::from_millis(5)));
        assert!(no_nack.active(), "without NACK only FEC repairs");
    }
}
