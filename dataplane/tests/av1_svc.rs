//! Scalable AV1 (L3T3) through a core, with str0m clients on a virtual clock: the layers
//! are said by the dependency descriptor header extension only (the template structure
//! on keyframes, a template id on every packet). Each subscription forwards the operating
//! point its cap allows — by bitrate, or by the picture sizes the structure announces —
//! with the marker moved and no numbering gap; subscribers that negotiated the descriptor
//! get it as it came, the others the same packets without it.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failing test should panic

mod common;

use common::*;
use std::time::Duration;
use str0m::format::Codec;
use str0m::{Event, Rtc};
use switchyard_dataplane::packet::bits::BitWriter;
use switchyard_dataplane::packet::dependency::{DTI_DISCARDABLE, DTI_REQUIRED, DTI_SWITCH};
use switchyard_dataplane::peer::{dependency_extension, DependencyBytes};
use switchyard_dataplane_api::SubscriptionCap;

/// Bits per second of each spatial layer alone.
const LAYER_BPS: [u64; 3] = [100_000, 300_000, 900_000];
/// Each spatial layer's size, announced in the structure.
const LAYER_SIZES: [(u32, u32); 3] = [(320, 180), (640, 360), (1280, 720)];

/// An RTP-mode client config with the dependency descriptor.
fn with_dependency() -> str0m::RtcConfig {
    Rtc::builder()
        .set_rtp_mode(true)
        .set_extension(12, dependency_extension())
}

/// A descriptor: template (s, t) of an L3T3 structure with nine templates
/// (s, t) = (0,0), (0,1), (0,2), (1,0), … and nine decode targets (s, t) = 3s + t;
/// the structure is attached when `structure`.
fn descriptor(start: bool, end: bool, s: u8, t: u8, frame: u16, structure: bool) -> Vec<u8> {
    let mut w = BitWriter::default();
    let template = u32::from(s * 3 + t);
    w.put(1, u32::from(start))
        .put(1, u32::from(end))
        .put(6, template)
        .put(16, u32::from(frame));
    if !structure {
        return w.bytes().to_vec();
    }
    w.put(1, 1).put(4, 0);
    // Offset 0, nine decode targets.
    w.put(6, 0).put(5, 8);
    for idc in [1, 1, 2, 1, 1, 2, 1, 1, 3] {
        w.put(2, idc);
    }
    // DTIs: target (ds, dt) includes (s, t) with s ≤ ds and t ≤ dt; a frame is a
    // switching point of its own target when it is not in T0.
    for s in 0..3 {
        for t in 0..3 {
            for ds in 0..3 {
                for dt in 0..3 {
                    let dti = if s > ds || t > dt {
                        0
                    } else if (s, t) == (ds, dt) && t > 0 {
                        DTI_SWITCH
                    } else if t == 0 {
                        DTI_REQUIRED
                    } else {
                        DTI_DISCARDABLE
                    };
                    w.put(2, u32::from(dti));
                }
            }
        }
    }
    // No frame differences, no chains (ns(10) in 3 bits), the sizes.
    for _ in 0..9 {
        w.put(1, 0);
    }
    w.put(3, 0).put(1, 1);
    for (wd, ht) in LAYER_SIZES {
        w.put(16, wd - 1).put(16, ht - 1);
    }
    w.bytes().to_vec()
}

/// An AV1 L3T3 publisher: per picture one or more packets per spatial layer (TID in the
/// pattern 0, 2, 1, 2), a keyframe every 3 s or when asked. Layers only in the
/// descriptor; each payload ends with its spatial and temporal layer.
struct Av1Publisher {
    client: usize,
    frame: u64,
    seq: u64,
    keyframe_due: bool,
    events_seen: usize,
    keyframes_asked: u32,
    sent: Vec<Vec<u8>>,
}

impl Av1Publisher {
    fn frame(&mut self, net: &mut Net) {
        let events = &net.clients[self.client].events;
        if events[self.events_seen..]
            .iter()
            .any(|(_, e)| matches!(e, Event::KeyframeRequest(_)))
        {
            self.keyframe_due = true;
            self.keyframes_asked += 1;
        }
        self.events_seen = events.len();
        let mid = net.clients[self.client].mids[1].0;
        let pt = pt_of(net, self.client, mid, Codec::Av1);
        let key = self.keyframe_due || self.frame.is_multiple_of(90);
        self.keyframe_due = false;
        let tid = [0u8, 2, 1, 2][(self.frame % 4) as usize];
        let ts = (self.frame * 3000) as u32;
        let now = net.now;
        let mut api = net.clients[self.client].rtc.direct_api();
        if api.stream_tx_by_mid(mid, None).is_none() {
            let ssrc = api.new_ssrc();
            api.declare_stream_tx(ssrc, None, mid, None);
        }
        for sid in 0..3u8 {
            let bytes = (LAYER_BPS[usize::from(sid)] / 8 / 30) as usize * if key { 3 } else { 1 };
            let packets = bytes.div_ceil(1100).max(1);
            for i in 0..packets {
                let mut payload = vec![0u8; (bytes / packets).max(16)];
                let (begin, end) = (i == 0, i + 1 == packets);
                // The aggregation header: N on a keyframe's first packet.
                payload[0] = if key && sid == 0 && begin { 0x18 } else { 0x10 };
                let n = payload.len();
                payload[n - 3] = u8::from(end);
                payload[n - 2] = tid;
                payload[n - 1] = sid;
                let dd = descriptor(
                    begin,
                    end,
                    sid,
                    if key { 0 } else { tid },
                    (self.frame * 3 + u64::from(sid)) as u16,
                    key && sid == 0 && begin,
                );
                self.sent.push(dd.clone());
                let mut ext = str0m::rtp::ExtensionValues::default();
                ext.user_values.set(DependencyBytes(dd.into()));
                let tx = api.stream_tx_by_mid(mid, None).unwrap();
                tx.write_rtp(
                    str0m::rtp::RtpWrite::new(pt, self.seq.into(), ts, now, payload)
                        .marker(sid == 2 && end)
                        .ext_vals(ext)
                        .nackable(true),
                );
                self.seq += 1;
            }
        }
        self.frame += 1;
        let until = net.now + Duration::from_millis(33);
        while net.now < until {
            net.step(Duration::from_millis(5));
        }
    }

    fn run(&mut self, net: &mut Net, secs: u64) {
        for _ in 0..secs * 30 {
            self.frame(net);
        }
    }
}

/// One AV1 packet a subscriber received.
#[derive(Debug)]
struct Got {
    seq: u64,
    spatial: u8,
    temporal: u8,
    marker: bool,
    ends_layer_frame: bool,
    descriptor: Option<Vec<u8>>,
}

fn got(net: &Net, client: usize) -> Vec<Got> {
    let mid = net.clients[client].mids[1].0;
    let pt = pt_of(net, client, mid, Codec::Av1);
    net.rtp_packets(client)
        .into_iter()
        .filter(|p| p.header.payload_type == pt && p.payload.len() >= 16)
        .map(|p| {
            let n = p.payload.len();
            Got {
                seq: *p.seq_no,
                spatial: p.payload[n - 1],
                temporal: p.payload[n - 2],
                marker: p.header.marker,
                ends_layer_frame: p.payload[n - 3] == 1,
                descriptor: p
                    .header
                    .ext_vals
                    .user_values
                    .get::<DependencyBytes>()
                    .map(|d| d.0.to_vec()),
            }
        })
        .collect()
}

/// The top spatial layer of the last `n` packets is `want_top`, the marker is on each
/// picture's last forwarded packet only, numbering has no gap, every temporal layer flows.
fn check(g: &[Got], n: usize, want_top: u8) {
    let tail = &g[g.len() - n..];
    let top = tail.iter().map(|x| x.spatial).max().unwrap();
    assert_eq!(top, want_top, "{tail:?}");
    for p in tail {
        assert_eq!(
            p.marker,
            p.spatial == want_top && p.ends_layer_frame,
            "the marker is on the picture's last packet: {p:?}"
        );
    }
    for w in g.windows(2) {
        assert_eq!(w[1].seq, w[0].seq + 1, "a gap in the numbering: {w:?}");
    }
    let mut tids: Vec<u8> = tail.iter().map(|x| x.temporal).collect();
    tids.sort_unstable();
    tids.dedup();
    assert_eq!(tids, vec![0, 1, 2]);
}

#[test]
fn av1_layers_are_read_from_the_dependency_descriptor_and_forwarded_per_cap() {
    let mut net = Net::new(1, 0.0);
    let (p, offer) = net.client_with("publisher", true, with_dependency());
    let (_, specs) = net
        .connect(0, p, offer, "pub", publish(true, true), vec![])
        .unwrap();
    assert!(net.run_until(Duration::from_secs(5), |n| n.connected(p)));
    let caps = [
        // Everything, with the descriptor.
        ("full", SubscriptionCap::default(), true),
        // At most 640×360: the middle spatial layer, by the structure's sizes.
        (
            "mid",
            SubscriptionCap {
                max_width: Some(640),
                max_height: Some(360),
                ..Default::default()
            },
            true,
        ),
        // At most 150 kbit/s: the base layer; this one does not negotiate the descriptor.
        (
            "base",
            SubscriptionCap {
                max_bitrate_bps: Some(150_000),
                ..Default::default()
            },
            false,
        ),
    ];
    let mut subs = Vec::new();
    for (id, cap, dd) in caps {
        let config = if dd {
            with_dependency()
        } else {
            Rtc::builder().set_rtp_mode(true)
        };
        let (s, offer) = net.client_with(id, false, config);
        net.connect(0, s, offer, id, subscribe_with(id, cap), specs.clone())
            .unwrap();
        assert!(net.run_until(Duration::from_secs(5), |n| n.connected(s)));
        subs.push(s);
    }
    let mut publisher = Av1Publisher {
        client: p,
        frame: 0,
        seq: 7000,
        keyframe_due: true,
        events_seen: 0,
        keyframes_asked: 0,
        sent: Vec::new(),
    };
    publisher.run(&mut net, 4);
    for (s, top) in subs.iter().zip([2u8, 1, 0]) {
        let g = got(&net, *s);
        assert!(g.len() > 60, "{} packets", g.len());
        check(&g, 30, top);
    }
    // The descriptor goes through as it came where negotiated (the structure too), and
    // is left off where not.
    let full = got(&net, subs[0]);
    let structures = full
        .iter()
        .filter_map(|g| g.descriptor.as_ref())
        .filter(|d| d.len() > 3)
        .count();
    assert!(
        structures >= 1,
        "the keyframe's structure reached the player"
    );
    for g in &full {
        let d = g
            .descriptor
            .as_ref()
            .expect("every packet has its descriptor");
        assert!(publisher.sent.contains(d));
    }
    assert!(got(&net, subs[2]).iter().all(|g| g.descriptor.is_none()));
}
