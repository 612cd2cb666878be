//! Scalable video (VP9 L3T3) through a core, with str0m clients on a virtual clock: one
//! stream carries three spatial and three temporal layers; each subscription forwards
//! the operating point its cap (and bandwidth) allows — the spatial layers up to its
//! point at the full frame rate — with the marker bit on the last packet it forwards of
//! each picture and sequence numbers that leave no gap where packets were left out.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failing test should panic

mod common;

use common::*;
use std::time::Duration;
use str0m::format::Codec;
use str0m::Event;
use switchyard_dataplane::core::{Command, CoreEvent};
use switchyard_dataplane_api::SubscriptionCap;

/// Bits per second of each spatial layer alone.
const LAYER_BPS: [u64; 3] = [100_000, 300_000, 900_000];

/// A VP9 L3T3 publisher: per picture one packet per spatial layer (TID in the pattern
/// 0, 2, 1, 2; U set on the T1 and T2 frames), a keyframe every 3 s or when asked. Each
/// payload ends with its spatial and temporal layer.
struct SvcPublisher {
    client: usize,
    frame: u64,
    seq: u64,
    keyframe_due: bool,
    events_seen: usize,
    keyframes_asked: u32,
}

impl SvcPublisher {
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
        let pt = pt_of(net, self.client, mid, Codec::Vp9);
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
                let pid = (self.frame % 0x8000) as u16;
                let (begin, end) = (i == 0, i + 1 == packets);
                // I, P (not for a keyframe's base layer), L, B, E; 15-bit picture id;
                // TID U SID D; TL0PICIDX.
                let inter = !(key && sid == 0);
                payload[0] = 0x80
                    | if inter { 0x40 } else { 0 }
                    | 0x20
                    | if begin { 0x08 } else { 0 }
                    | if end { 0x04 } else { 0 };
                payload[1] = 0x80 | (pid >> 8) as u8;
                payload[2] = pid as u8;
                let up = tid > 0;
                payload[3] =
                    (tid << 5) | if up { 0x10 } else { 0 } | (sid << 1) | u8::from(sid > 0);
                payload[4] = (self.frame / 4) as u8;
                let n = payload.len();
                payload[n - 3] = u8::from(end);
                payload[n - 2] = tid;
                payload[n - 1] = sid;
                let tx = api.stream_tx_by_mid(mid, None).unwrap();
                tx.write_rtp(
                    str0m::rtp::RtpWrite::new(pt, self.seq.into(), ts, now, payload)
                        .marker(sid == 2 && end)
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

/// (sequence number, spatial layer, temporal layer, marker, ends its layer frame) of the
/// VP9 packets `client` received.
fn got(net: &Net, client: usize) -> Vec<(u64, u8, u8, bool, bool)> {
    let mid = net.clients[client].mids[1].0;
    let pt = pt_of(net, client, mid, Codec::Vp9);
    net.rtp_packets(client)
        .into_iter()
        .filter(|p| p.header.payload_type == pt && p.payload.len() >= 16)
        .map(|p| {
            let n = p.payload.len();
            (
                *p.seq_no,
                p.payload[n - 1],
                p.payload[n - 2],
                p.header.marker,
                p.payload[n - 3] == 1,
            )
        })
        .collect()
}

/// The highest spatial layer in the last `n` packets, and that every picture's last packet
/// (the highest spatial layer forwarded) carries the marker while no other does.
fn check(g: &[(u64, u8, u8, bool, bool)], n: usize, want_top: u8) {
    let tail = &g[g.len() - n..];
    let top = tail.iter().map(|x| x.1).max().unwrap();
    assert_eq!(top, want_top, "{tail:?}");
    for p in tail {
        assert_eq!(
            p.3,
            p.1 == want_top && p.4,
            "the marker is on the picture's last packet: {p:?}"
        );
    }
    for w in g.windows(2) {
        assert_eq!(w[1].0, w[0].0 + 1, "a gap in the numbering: {w:?}");
    }
    // Every temporal layer flows (full frame rate).
    let mut tids: Vec<u8> = tail.iter().map(|x| x.2).collect();
    tids.sort_unstable();
    tids.dedup();
    assert_eq!(tids, vec![0, 1, 2]);
}

#[test]
fn each_subscription_forwards_the_spatial_layers_its_cap_allows() {
    let mut net = Net::new(1, 0.0);
    let (p, specs) = net.publisher(true);
    let cap = |max| SubscriptionCap {
        max_bitrate_bps: max,
        ..Default::default()
    };
    let subs = net.subscribers(
        &specs,
        vec![
            ("full", cap(None)),
            ("mid", cap(Some(500_000))),
            ("base", cap(Some(150_000))),
        ],
    );
    let mut publisher = SvcPublisher {
        client: p,
        frame: 0,
        seq: 4000,
        keyframe_due: true,
        events_seen: 0,
        keyframes_asked: 0,
    };
    publisher.run(&mut net, 4);
    // The cumulative rates are 100k, 400k, 1.3M: full gets S2, mid S1, base S0.
    for (s, top) in subs.iter().zip([2u8, 1, 0]) {
        let g = got(&net, *s);
        assert!(g.len() > 60, "{} packets", g.len());
        check(&g, 30, top);
    }
    // The base subscriber's limit is lifted: up to all three layers, at a keyframe it
    // asks for.
    let asked = publisher.keyframes_asked;
    let events = net.command(
        0,
        Command::SubscriptionUpdate {
            token: 3,
            subscription: "base".into(),
            cap: SubscriptionCap::default(),
        },
    );
    assert!(matches!(
        events.as_slice(),
        [CoreEvent::Done { result: Ok(()), .. }]
    ));
    publisher.run(&mut net, 2);
    let g = got(&net, subs[2]);
    check(&g, 30, 2);
    assert!(
        publisher.keyframes_asked > asked,
        "a keyframe was asked for to go up"
    );
    // And the full one is capped down: at once, at the next picture.
    net.command(
        0,
        Command::SubscriptionUpdate {
            token: 4,
            subscription: "full".into(),
            cap: SubscriptionCap {
                max_bitrate_bps: Some(150_000),
                ..Default::default()
            },
        },
    );
    let before = got(&net, subs[0]).len();
    publisher.frame(&mut net);
    publisher.frame(&mut net);
    let g = got(&net, subs[0]);
    assert!(g[before..].iter().all(|x| x.1 == 0), "{:?}", &g[before..]);
    assert!(
        net.metrics[0]
            .layer_switches
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 2
    );
}
