//! Past saturation a core sheds on purpose: told it is saturated, it stops the video of
//! its most recently started subscriptions (their audio goes on, every session stays up,
//! each shed packet is counted); told the load fell, it brings the video back with a
//! keyframe request and numbering that continues without a gap.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failing test should panic

mod common;

use common::Net;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;
use switchyard_dataplane::metrics::DropReason;

/// Media for `ms` milliseconds (audio every 20 ms, a two-packet video frame every 40 ms),
/// telling core 0 its load every 100 ms.
fn run(net: &mut Net, publisher: usize, frame: &mut u64, ms: u64, busy: f64) {
    for _ in 0..ms / 20 {
        let i = *frame;
        *frame += 1;
        if i.is_multiple_of(5) {
            net.load(0, busy);
        }
        net.frame(publisher, i, &[0x10; 1800]);
    }
}

/// (audio, video) packets a client received after `since`.
fn received(net: &Net, client: usize, since: Instant) -> (usize, usize) {
    let mut audio = 0;
    let mut video = 0;
    for (at, e) in &net.clients[client].events {
        if let str0m::Event::RtpPacket(p) = e {
            if *at >= since {
                if p.payload.len() == 80 {
                    audio += 1;
                } else {
                    video += 1;
                }
            }
        }
    }
    (audio, video)
}

#[test]
fn saturated_core_sheds_newest_video_first_and_restores_it() {
    let (mut net, p, subs) = common::one_publisher_room(4);
    let mut frame = 0;
    run(&mut net, p, &mut frame, 1000, 0.5);
    let m = net.metrics[0].clone();
    assert_eq!(m.shed_subscriptions.load(Relaxed), 0, "not saturated");

    // Saturated: once the smoothed load passes the mark (0.5 s), one more subscription
    // shed per 300 ms step, newest first.
    run(&mut net, p, &mut frame, 1200, 0.99);
    assert_eq!(m.shed_subscriptions.load(Relaxed), 3);
    assert!(m.load_percent.load(Relaxed) >= 95);
    // Between the marks the core holds what it shed.
    let shed_from = net.now;
    run(&mut net, p, &mut frame, 1000, 0.8);
    assert_eq!(m.shed_subscriptions.load(Relaxed), 3);
    let (a0, v0) = received(&net, subs[0], shed_from);
    assert!(
        a0 >= 45 && v0 >= 45,
        "the oldest keeps everything: {a0} {v0}"
    );
    for s in &subs[1..] {
        let (a, v) = received(&net, *s, shed_from);
        assert!(a >= 45, "audio goes on: {a}");
        assert_eq!(v, 0, "video shed");
        assert!(net.connected(*s));
    }
    assert!(m.drops_for(DropReason::Overload) >= 3 * 45);
    let requests_before = m.keyframe_requests_sent.load(Relaxed);

    // The load falls: video comes back, with a keyframe request, without a gap.
    run(&mut net, p, &mut frame, 2000, 0.3);
    assert_eq!(m.shed_subscriptions.load(Relaxed), 0);
    assert!(m.keyframe_requests_sent.load(Relaxed) > requests_before);
    let back_from = net.now;
    run(&mut net, p, &mut frame, 1000, 0.3);
    for s in &subs {
        let (_, v) = received(&net, *s, back_from);
        assert!(v >= 45, "video back: {v}");
        let seqs: Vec<u64> = net
            .rtp_packets(*s)
            .iter()
            .filter(|p| p.payload.len() > 80)
            .map(|p| *p.seq_no)
            .collect();
        for w in seqs.windows(2) {
            assert_eq!(w[1], w[0] + 1, "video numbering continues across the pause");
        }
    }
}
