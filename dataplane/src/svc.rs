//! Scalable video (VP9 and AV1 with temporal and spatial layers: L1T3, L2T3, L3T3, …): which
//! packets of one stream a subscription forwards (sans-IO).
//!
//! A scalable stream carries every layer in one RTP stream; each packet says its spatial
//! and temporal layer: VP9's in its payload descriptor ([`crate::packet::vp9`]), AV1's
//! (and any codec's, where negotiated) in the dependency descriptor header extension
//! ([`crate::packet::dependency`]). The
//! publication's core learns the structure ([`Structure`]) and offers at most
//! [`MAX_LAYERS`] operating points, cheapest first: with several spatial layers each
//! spatial layer at the full frame rate, with one the temporal layers. Each is measured
//! like a simulcast layer (cumulatively: a point's bitrate includes the layers below it),
//! and each subscription's [`crate::layers::LayerSelector`] picks one from its cap and
//! bandwidth share. An [`SvcFilter`] then forwards the packets of that point only:
//!
//! - down (fewer spatial or temporal layers) at the next picture;
//! - up a spatial layer only at a keyframe (an upper layer's frames need their own
//!   earlier frames), up a temporal layer at a keyframe or a switching-up point;
//! - the RTP marker bit on the last packet of the highest spatial layer forwarded (the
//!   end of the picture for this subscriber), and the subscription's sequence numbers
//!   close the gaps the left-out packets leave ([`crate::rewrite::Rewriter::skip`]).

use crate::layers::MAX_LAYERS;
use crate::packet::dependency::{self, Frame};

/// A scalable video packet's layer information.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SvcPacket {
    /// Spatial layer.
    pub spatial: u8,
    /// Temporal layer.
    pub temporal: u8,
    /// The packet starts a layer frame.
    pub begin: bool,
    /// The packet ends a layer frame.
    pub end: bool,
    /// The temporal layers a subscription may go up to at this packet's picture (bit
    /// `t` for layer `t`): VP9 marks a switching-up point of the frame's own layer, the
    /// dependency descriptor the decode targets that can be switched to at the frame.
    pub switch_up: u8,
    /// The packet starts a keyframe (of the base spatial layer).
    pub keyframe: bool,
}

/// The picture size of operating point `i` of `structure`, from a VP9 scalability
/// structure's `sizes` (carried on keyframes).
pub fn point_size(
    structure: &Structure,
    sizes: &[Option<(u16, u16)>],
    i: usize,
) -> Option<(u16, u16)> {
    sizes
        .get(usize::from(structure.point(i).0))
        .copied()
        .flatten()
}

impl SvcPacket {
    /// From a VP9 payload descriptor with layer indices (`None` without them).
    pub fn from_vp9(d: &crate::packet::vp9::Descriptor) -> Option<SvcPacket> {
        d.has_layers.then_some(SvcPacket {
            spatial: d.spatial,
            temporal: d.temporal,
            begin: d.begin,
            end: d.end,
            switch_up: if d.switch_up {
                1 << d.temporal.min(7)
            } else {
                0
            },
            keyframe: !d.inter && d.begin && d.spatial == 0,
        })
    }

    /// From a dependency descriptor's frame, read with the stream's `structure` (AV1's
    /// way of saying its layers); `keyframe`: the payload starts a coded video sequence.
    pub fn from_dependency(f: &Frame, structure: &dependency::Structure, keyframe: bool) -> Self {
        SvcPacket {
            spatial: f.spatial,
            temporal: f.temporal,
            begin: f.start,
            end: f.end,
            // The decode targets of its spatial layer that can be switched to here.
            switch_up: (0..8u8)
                .filter(|t| {
                    structure
                        .target_of(f.spatial, *t)
                        .is_some_and(|d| f.dti(d) == dependency::DTI_SWITCH)
                })
                .fold(0, |bits, t| bits | 1 << t),
            keyframe: (keyframe || f.new_structure) && f.start && f.spatial == 0,
        }
    }

    /// Whether it starts a picture (its base spatial layer's frame).
    pub fn starts_picture(&self) -> bool {
        self.begin && self.spatial == 0
    }
}

/// An operating point: the highest spatial and temporal layer forwarded.
pub type Point = (u8, u8);

/// The layers a scalable stream has shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Structure {
    /// The highest spatial layer seen.
    pub max_spatial: u8,
    /// The highest temporal layer seen.
    pub max_temporal: u8,
}

impl Structure {
    /// Learns from a packet.
    pub fn see(&mut self, p: &SvcPacket) {
        self.max_spatial = self.max_spatial.max(p.spatial);
        self.max_temporal = self.max_temporal.max(p.temporal);
    }

    /// How many operating points there are.
    pub fn points(&self) -> usize {
        if self.max_spatial > 0 {
            usize::from(self.max_spatial) + 1
        } else {
            usize::from(self.max_temporal) + 1
        }
        .min(MAX_LAYERS)
    }

    /// Operating point `i` (cheapest first); out of range: the richest.
    pub fn point(&self, i: usize) -> Point {
        let i = i.min(self.points().saturating_sub(1)) as u8;
        if self.max_spatial > 0 {
            // The top points are the top spatial layers when there are more than fit.
            let skip = (self.max_spatial + 1).saturating_sub(MAX_LAYERS as u8);
            (i + skip, self.max_temporal)
        } else {
            (0, i)
        }
    }

    /// Whether a packet of `p` belongs to point `i` (every point includes those below).
    pub fn in_point(&self, p: &SvcPacket, i: usize) -> bool {
        let (s, t) = self.point(i);
        p.spatial <= s && p.temporal <= t
    }
}

/// One subscription's forwarding of a scalable stream.
#[derive(Debug, Clone, Default)]
pub struct SvcFilter {
    current: Option<Point>,
}

impl SvcFilter {
    /// The operating point forwarded (`None` before the first keyframe).
    pub fn current(&self) -> Option<Point> {
        self.current
    }

    /// A packet `p` (with the publisher's `marker`) while `want` is wanted: `None` to
    /// leave it out, or the marker bit to forward it with.
    pub fn on_packet(&mut self, want: Point, p: &SvcPacket, marker: bool) -> Option<bool> {
        if p.starts_picture() {
            self.current = match self.current {
                None => p.keyframe.then_some(want),
                Some((s, t)) => {
                    let s = if want.0 < s || (want.0 > s && p.keyframe) {
                        want.0
                    } else {
                        s
                    };
                    let t = if want.1 < t || (want.1 > t && p.keyframe) {
                        want.1
                    } else if let Some(up) = (t + 1..=want.1.min(7))
                        .rev()
                        .find(|u| p.switch_up & (1 << u) != 0)
                    {
                        up
                    } else {
                        t
                    };
                    Some((s, t))
                }
            };
        }
        let (s, t) = self.current?;
        if p.spatial > s || p.temporal > t {
            return None;
        }
        Some(marker || (p.end && p.spatial == s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The packets of one L3T3 picture: one packet per spatial layer, the base one a
    /// keyframe when asked; temporal layer `t`; the publisher's marker on the last.
    fn picture(t: u8, key: bool, switch_up: u8) -> Vec<(SvcPacket, bool)> {
        (0..3)
            .map(|s| {
                (
                    SvcPacket {
                        spatial: s,
                        temporal: t,
                        begin: true,
                        end: true,
                        switch_up,
                        keyframe: key && s == 0,
                    },
                    s == 2,
                )
            })
            .collect()
    }

    /// What a filter forwards of a picture: (spatial layer, marker) per packet.
    fn forward(f: &mut SvcFilter, want: Point, pic: &[(SvcPacket, bool)]) -> Vec<(u8, bool)> {
        pic.iter()
            .filter_map(|(p, m)| f.on_packet(want, p, *m).map(|mk| (p.spatial, mk)))
            .collect()
    }

    #[test]
    fn the_structure_gives_spatial_or_temporal_points() {
        let mut l3t3 = Structure::default();
        let mut l1t3 = Structure::default();
        for (s, t) in [(0, 0), (1, 2), (2, 1)] {
            l3t3.see(&SvcPacket {
                spatial: s,
                temporal: t,
                ..Default::default()
            });
        }
        for t in 0..3 {
            l1t3.see(&SvcPacket {
                temporal: t,
                ..Default::default()
            });
        }
        assert_eq!(l3t3.points(), 3);
        assert_eq!(
            (l3t3.point(0), l3t3.point(2), l3t3.point(9)),
            ((0, 2), (2, 2), (2, 2))
        );
        assert_eq!(
            (l1t3.point(0), l1t3.point(1), l1t3.point(2)),
            ((0, 0), (0, 1), (0, 2))
        );
        let p = SvcPacket {
            spatial: 1,
            temporal: 1,
            ..Default::default()
        };
        assert!(!l3t3.in_point(&p, 0) && l3t3.in_point(&p, 1));
        // Five spatial layers: the top three are offered.
        let mut l5 = Structure::default();
        l5.see(&SvcPacket {
            spatial: 4,
            ..Default::default()
        });
        assert_eq!((l5.point(0), l5.point(2)), ((2, 0), (4, 0)));
    }

    #[test]
    fn spatial_layers_go_up_at_keyframes_and_down_at_once_with_the_marker_moved() {
        let mut f = SvcFilter::default();
        // Nothing before the first keyframe.
        assert!(forward(&mut f, (1, 2), &picture(0, false, 0)).is_empty());
        // From the keyframe: spatial layers 0 and 1, the marker on layer 1's last packet.
        assert_eq!(
            forward(&mut f, (1, 2), &picture(0, true, 0)),
            vec![(0, false), (1, true)]
        );
        // Wanting all three: not before a keyframe.
        assert_eq!(
            forward(&mut f, (2, 2), &picture(1, false, 0)),
            vec![(0, false), (1, true)]
        );
        assert_eq!(
            forward(&mut f, (2, 2), &picture(0, true, 0)),
            vec![(0, false), (1, false), (2, true)]
        );
        // Down to the base layer: at the next picture, no keyframe needed.
        assert_eq!(
            forward(&mut f, (0, 2), &picture(2, false, 0)),
            vec![(0, true)]
        );
        assert_eq!(f.current(), Some((0, 2)));
    }

    #[test]
    fn temporal_layers_go_down_at_once_and_up_at_switching_points() {
        let one = |t: u8, up: bool| {
            vec![(
                SvcPacket {
                    spatial: 0,
                    temporal: t,
                    begin: true,
                    end: true,
                    switch_up: if up { 1 << t } else { 0 },
                    keyframe: false,
                },
                true,
            )]
        };
        let mut f = SvcFilter::default();
        let key = vec![(
            SvcPacket {
                begin: true,
                end: true,
                keyframe: true,
                ..Default::default()
            },
            true,
        )];
        assert_eq!(forward(&mut f, (0, 2), &key).len(), 1);
        // Down to T0: T1 and T2 frames are left out.
        assert!(forward(&mut f, (0, 0), &one(2, false)).is_empty());
        assert!(forward(&mut f, (0, 0), &one(1, false)).is_empty());
        assert_eq!(forward(&mut f, (0, 0), &one(0, false)).len(), 1);
        // Up again: not at a T1 frame that is no switching point, yes at one that is.
        assert!(forward(&mut f, (0, 2), &one(1, false)).is_empty());
        assert_eq!(forward(&mut f, (0, 2), &one(1, true)).len(), 1);
        assert_eq!(f.current(), Some((0, 1)));
        assert_eq!(forward(&mut f, (0, 2), &one(2, true)).len(), 1);
        assert_eq!(f.current(), Some((0, 2)));
    }

    #[test]
    fn a_dependency_descriptor_says_which_layers_a_frame_can_switch_to() {
        // Chromium's L2T3_KEY structure (see `packet::dependency`): a T0 frame is a
        // switching point of every temporal target, a T1 frame of T2's.
        let (k, s) = dependency::parse(&dependency::CHROMIUM_L2T3_KEY, None).unwrap();
        let s = s.unwrap();
        let read = |bytes: &[u8]| {
            let (f, _) = dependency::parse(bytes, Some(&s)).unwrap();
            SvcPacket::from_dependency(&f, &s, false)
        };
        let key = SvcPacket::from_dependency(&k, &s, true);
        assert!(key.keyframe && key.starts_picture());
        // S0T0 (template 1), S0T2 (template 3), S0T1 (template 2).
        let (t0, t2, t1) = (
            read(&[0xc1, 0x00, 0x07]),
            read(&[0xc3, 0x00, 0x09]),
            read(&[0xc2, 0x00, 0x0b]),
        );
        assert_eq!(
            (t0.switch_up, t2.switch_up, t1.switch_up),
            (0b111, 0, 0b100)
        );
        let mut f = SvcFilter::default();
        let go = |f: &mut SvcFilter, want: Point, p: &SvcPacket| f.on_packet(want, p, true);
        assert!(go(&mut f, (0, 0), &key).is_some());
        assert!(go(&mut f, (0, 0), &t2).is_none());
        // Up to T1 at a T0 frame; up to T2 at a T1 frame, not at a T2 one.
        assert!(go(&mut f, (0, 1), &t0).is_some());
        assert_eq!(f.current(), Some((0, 1)));
        assert!(go(&mut f, (0, 2), &t2).is_none());
        assert!(go(&mut f, (0, 2), &t1).is_some());
        assert_eq!(f.current(), Some((0, 2)));
        assert!(go(&mut f, (0, 2), &t2).is_some());
    }
}
