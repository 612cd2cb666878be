//! The core's forwarding, driven with str0m clients on a virtual network and clock: a
//! publisher's audio and video reach subscribers with rewritten sequence numbers,
//! keyframe requests go upstream rate-limited, and a subscriber on another core is
//! served through one hand-off per packet.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failing test should panic

mod common;

use common::{publish, subscribe, Net};
use std::time::Duration;
use str0m::media::MediaKind;
use switchyard_dataplane_api::{Binding, MediaKind as Kind};

/// Sends `frames` frames of audio and video, 20 ms apart.
fn send_media(net: &mut Net, publisher: usize, frames: u64) {
    for i in 0..frames {
        net.frame(publisher, i, &[0x10 + (i % 7) as u8; 1800]);
    }
    // Let what is in flight arrive.
    let until = net.now + Duration::from_millis(300);
    while net.now < until {
        net.step(Duration::from_millis(5));
    }
}

#[test]
fn publication_reaches_subscribers_with_rewritten_numbering() {
    let mut net = Net::new(1, 0.0);
    let (p, offer) = net.client("publisher", true, false);
    let (created, spec) = net
        .connect(0, p, offer, "pub", publish(true, true), vec![])
        .unwrap();
    assert_eq!(created.tracks("s1").len(), 2);
    assert!(created
        .tracks("s1")
        .iter()
        .any(|t| t.kind == Kind::Audio && t.codec == "opus"));
    assert!(created.tracks("s1").iter().any(|t| t.kind == Kind::Video));
    assert!(
        net.run_until(Duration::from_secs(5), |n| n.connected(p)),
        "publisher did not connect"
    );

    let (s, offer) = net.client("subscriber", false, true);
    net.connect(0, s, offer, "sub", subscribe("sub"), spec.clone())
        .unwrap();
    assert!(
        net.run_until(Duration::from_secs(5), |n| n.connected(s)),
        "subscriber did not connect"
    );

    send_media(&mut net, p, 50);
    let pkts = net.rtp_packets(s);
    let audio: Vec<_> = pkts.iter().filter(|p| p.payload.len() == 80).collect();
    let video: Vec<_> = pkts.iter().filter(|p| p.payload.len() > 80).collect();
    assert!(audio.len() >= 45, "audio packets: {}", audio.len());
    assert!(video.len() >= 40, "video packets: {}", video.len());
    assert!(
        audio.iter().all(|p| p.payload.iter().all(|b| *b == 0xA0)),
        "audio payload intact"
    );
    // Each outgoing stream is numbered without gaps (no loss here), whatever the input.
    for stream in [&audio, &video] {
        let seqs: Vec<u64> = stream.iter().map(|p| *p.seq_no).collect();
        for w in seqs.windows(2) {
            assert_eq!(w[1], w[0] + 1, "{seqs:?}");
        }
    }
    let m = &net.metrics[0];
    let forwarded = m.rtp_forwarded.load(std::sync::atomic::Ordering::Relaxed);
    assert!(forwarded >= 85);
    // Without bandwidth adaptation nothing paces a copy: each is encrypted at once, but
    // for a stream's first packets (before its first timeout sets it up).
    let queued = m.rtp_queued.load(std::sync::atomic::Ordering::Relaxed);
    println!("{queued} of {forwarded} copies queued");
    assert!(
        queued * 10 < forwarded,
        "{queued} of {forwarded} copies queued"
    );
}

#[test]
fn role_without_video_gets_video_rejected() {
    let mut net = Net::new(1, 0.0);
    let (p, offer) = net.client("audio-only", true, false);
    let (created, spec) = net
        .connect(0, p, offer, "pub", publish(true, false), vec![])
        .unwrap();
    assert_eq!(created.tracks("s1").len(), 1);
    assert_eq!(created.tracks("s1")[0].kind, Kind::Audio);
    assert!(
        created.answer_sdp.contains("m=video 0 "),
        "video rejected in the answer:\n{}",
        created.answer_sdp
    );
    assert!(!spec[0].video);
    let (q, offer) = net.client("nothing", true, false);
    let e = net
        .connect(
            0,
            q,
            offer,
            "pub2",
            vec![Binding::Publish {
                publication: "s2".into(),
                mids: None,
                audio: false,
                video: false,
                selection: None,
            }],
            vec![],
        )
        .unwrap_err();
    assert_eq!(e.code, switchyard_dataplane_api::ErrorCode::NoUsableMedia);
}

#[test]
fn malformed_offers_are_refused_with_a_reason() {
    let mut net = Net::new(1, 0.0);
    let (p, _) = net.client("x", true, false);
    for bad in [
        "",
        "hello",
        "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n",
        "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=audio x\r\n",
    ] {
        let e = net
            .connect(0, p, bad.into(), "bad", publish(true, true), vec![])
            .unwrap_err();
        assert!(!e.message.is_empty());
        assert!(
            matches!(
                e.code,
                switchyard_dataplane_api::ErrorCode::BadSdp
                    | switchyard_dataplane_api::ErrorCode::NoUsableMedia
            ),
            "{bad:?}: {e:?}"
        );
    }
    assert_eq!(net.cores[0].peer_count(), 0);
}

#[test]
fn keyframe_requests_go_upstream_rate_limited() {
    let mut net = Net::new(1, 0.0);
    let (p, offer) = net.client("publisher", true, false);
    let (_, spec) = net
        .connect(0, p, offer, "pub", publish(true, true), vec![])
        .unwrap();
    assert!(net.run_until(Duration::from_secs(5), |n| n.connected(p)));
    let mut subs = Vec::new();
    for i in 0..5 {
        let (s, offer) = net.client(&format!("sub{i}"), false, true);
        net.connect(
            0,
            s,
            offer,
            &format!("sub{i}"),
            subscribe(&format!("sub{i}")),
            spec.clone(),
        )
        .unwrap();
        subs.push(s);
    }
    // Five subscribers join at once, with video flowing.
    send_media(&mut net, p, 10);
    assert!(subs.iter().all(|s| net.connected(*s)));
    send_media(&mut net, p, 100); // 2 s
    let requests = net.clients[p]
        .events
        .iter()
        .filter(|(_, e)| matches!(e, str0m::Event::KeyframeRequest(_)))
        .count();
    // Five joins merge into at most a couple of requests, never one per subscriber.
    assert!(
        (1..=3).contains(&requests),
        "publisher saw {requests} keyframe requests"
    );
    let sent = net.metrics[0]
        .keyframe_requests_sent
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(sent >= 1);
}

#[test]
fn subscriber_on_another_core_gets_one_hand_off_per_packet() {
    let mut net = Net::new(2, 0.0);
    let (p, offer) = net.client("publisher", true, false);
    let (_, spec) = net
        .connect(0, p, offer, "pub", publish(true, true), vec![])
        .unwrap();
    assert!(net.run_until(Duration::from_secs(5), |n| n.connected(p)));
    let mut subs = Vec::new();
    for i in 0..3 {
        let (s, offer) = net.client(&format!("far{i}"), false, true);
        net.connect(
            1,
            s,
            offer,
            &format!("far{i}"),
            subscribe(&format!("far{i}")),
            spec.clone(),
        )
        .unwrap();
        subs.push(s);
    }
    assert!(net.run_until(Duration::from_secs(5), |n| subs
        .iter()
        .all(|s| n.connected(*s))));
    send_media(&mut net, p, 40);
    for s in &subs {
        assert!(
            net.rtp_packets(*s).len() >= 50,
            "{}",
            net.rtp_packets(*s).len()
        );
    }
    let handed = net.metrics[0]
        .handed_off
        .load(std::sync::atomic::Ordering::Relaxed);
    let forwarded_far = net.metrics[1]
        .rtp_forwarded
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(handed > 0);
    assert_eq!(
        forwarded_far,
        handed * 3,
        "one hand-off per packet, three subscriptions served from it"
    );
}

#[test]
fn upstream_loss_is_repaired_with_nack_and_rtx() {
    // 10 % of the publisher's RTP is lost on its way into the core.
    let (mut net, p, subs) = common::one_publisher_room_on(Net::new(1, 10.0), 1);
    send_media(&mut net, p, 150);
    let m = &net.metrics[0];
    let lost = m.drops_for(switchyard_dataplane::metrics::DropReason::TestLoss);
    let nacks = m.nacks_sent.load(std::sync::atomic::Ordering::Relaxed);
    assert!(lost > 10, "loss hook dropped {lost}");
    assert!(nacks > 0, "no NACK sent to the publisher");
    // Video is repaired by retransmission: the subscriber ends with (nearly) every packet.
    let share = video_received_share(&net, subs[0]);
    assert!(
        share >= 0.97,
        "{:.1} % of video packets after repair",
        share * 100.0
    );
}

/// The share of a subscriber's video sequence numbers (from first to last) it received.
fn video_received_share(net: &Net, s: usize) -> f64 {
    let video: Vec<u64> = net
        .rtp_packets(s)
        .iter()
        .filter(|p| p.payload.len() > 80)
        .map(|p| *p.seq_no)
        .collect();
    let span = video.iter().max().unwrap() - video.iter().min().unwrap() + 1;
    video.len() as f64 / span as f64
}

#[test]
fn downstream_loss_is_repaired_from_the_retransmit_history_unless_it_is_off() {
    use switchyard_dataplane::core::CoreSettings;
    for history in [Duration::from_secs(1), Duration::ZERO] {
        let settings = CoreSettings {
            retransmit_history: history,
            ..CoreSettings::default()
        };
        let (mut net, p, subs) = common::one_publisher_room_on(Net::with_settings(1, settings), 1);
        let s = subs[0];
        // A tenth of the subscriber's video is lost on its way from the core.
        net.lossy_clients.push(s);
        send_media(&mut net, p, 150);
        let nacks = net.metrics[0]
            .nacks_received
            .load(std::sync::atomic::Ordering::Relaxed);
        let share = video_received_share(&net, s);
        println!(
            "history {history:?}: {} dropped, {nacks} NACKs received, {:.1} % of video received",
            net.downstream_dropped,
            share * 100.0
        );
        assert!(net.downstream_dropped > 10, "{}", net.downstream_dropped);
        assert!(nacks > 0, "the subscriber sent no NACK");
        if history.is_zero() {
            assert!(share < 0.95, "{share}: repaired without a history?");
        } else {
            assert!(share >= 0.97, "{share}: not repaired from the history");
        }
    }
}

#[test]
fn garbage_datagrams_are_dropped_and_counted_while_media_flows() {
    let mut net = Net::new(1, 0.0);
    let (p, offer) = net.client("publisher", true, false);
    let (_, spec) = net
        .connect(0, p, offer, "pub", publish(true, true), vec![])
        .unwrap();
    assert!(net.run_until(Duration::from_secs(5), |n| n.connected(p)));
    let (s, offer) = net.client("subscriber", false, true);
    net.connect(0, s, offer, "sub", subscribe("sub"), spec)
        .unwrap();
    assert!(net.run_until(Duration::from_secs(5), |n| n.connected(s)));
    let core_addr = net.core_addrs[0];
    let stranger: std::net::SocketAddr = "10.9.9.9:999".parse().unwrap();
    let publisher_addr = net.clients[p].addr;
    let garbage: Vec<Vec<u8>> = vec![
        vec![],
        vec![0xff; 3],
        b"GET / HTTP/1.1\r\n\r\n".to_vec(),
        vec![0x00, 0x01, 0x00, 0x08, 0x21, 0x12, 0xa4, 0x42], // truncated STUN
        vec![22, 254, 253, 0, 0],                             // truncated DTLS
        {
            let mut v = vec![0x80, 96, 0, 1];
            v.resize(40, 7);
            v
        }, // RTP with a bad SRTP tag
        vec![0x80, 200, 0, 1, 0, 0],                          // short RTCP
    ];
    for round in 0..20 {
        for g in &garbage {
            // From a stranger, and from the publisher's own address (spoofed).
            net.cores[0].handle_datagram(net.now, core_addr, stranger, g);
            net.cores[0].handle_datagram(net.now, core_addr, publisher_addr, g);
            let _ = net.cores[0].take_outbox();
        }
        if round % 5 == 0 {
            send_media(&mut net, p, 5);
        }
    }
    let m = &net.metrics[0];
    use switchyard_dataplane::metrics::DropReason::*;
    let dropped: u64 = [Malformed, UnknownSource, NotAccepted]
        .iter()
        .map(|d| m.drops_for(*d))
        .sum();
    assert!(
        dropped >= 200,
        "only {dropped} of 280 garbage datagrams counted as dropped"
    );
    assert!(
        m.drops_for(UnknownSource) >= 60,
        "{}",
        m.drops_for(UnknownSource)
    );
    // Media kept flowing to the subscriber and both peers are still there.
    assert!(
        net.rtp_packets(s).len() > 20,
        "{}",
        net.rtp_packets(s).len()
    );
    assert_eq!(net.cores[0].peer_count(), 2);
}

/// Every codec pair a browser may offer passes through untouched: the subscriber gets the
/// publisher's codec and payload bytes.
#[test]
fn every_browser_codec_passes_through() {
    use str0m::format::Codec;
    use str0m::Rtc;
    type Restrict = fn(str0m::RtcConfig) -> str0m::RtcConfig;
    let pairs: [(&str, Restrict, Codec, Codec); 5] = [
        (
            "opus+vp8",
            |c| c.clear_codecs().enable_opus(true, false).enable_vp8(true),
            Codec::Opus,
            Codec::Vp8,
        ),
        (
            "pcmu+h264",
            |c| c.clear_codecs().enable_pcmu(true, false).enable_h264(true),
            Codec::PCMU,
            Codec::H264,
        ),
        (
            "pcma+vp9",
            |c| c.clear_codecs().enable_pcma(true, false).enable_vp9(true),
            Codec::PCMA,
            Codec::Vp9,
        ),
        (
            "g722+av1",
            |c| c.clear_codecs().enable_g722(true, false).enable_av1(true),
            Codec::G722,
            Codec::Av1,
        ),
        // str0m packetizes no H.265 itself: this publisher writes RTP directly.
        (
            "opus+h265",
            |c| {
                c.clear_codecs()
                    .enable_opus(true, false)
                    .enable_h265(true)
                    .set_rtp_mode(true)
            },
            Codec::Opus,
            Codec::H265,
        ),
    ];
    for (name, restrict, audio, video) in pairs {
        let mut net = Net::new(1, 0.0);
        let (p, offer) = net.client_with("publisher", true, restrict(Rtc::builder()));
        let (created, spec) = net
            .connect(0, p, offer, "pub", publish(true, true), vec![])
            .unwrap();
        let codecs: Vec<&str> = created
            .tracks("s1")
            .iter()
            .map(|t| t.codec.as_str())
            .collect();
        assert_eq!(
            codecs,
            [
                switchyard_dataplane::peer::codec_name(audio),
                switchyard_dataplane::peer::codec_name(video)
            ],
            "{name}"
        );
        assert!(
            net.run_until(Duration::from_secs(5), |n| n.connected(p)),
            "{name}"
        );
        // The subscriber offers the same codecs plus opus and VP8; the answer keeps the
        // publication's.
        let (s, offer) = net.client_with(
            "subscriber",
            false,
            restrict(Rtc::builder())
                .enable_opus(true, false)
                .enable_vp8(true)
                .set_rtp_mode(true),
        );
        let (sub, _) = net
            .connect(0, s, offer, "sub", subscribe("sub"), spec)
            .unwrap();
        let sub_codecs: Vec<&str> = sub.tracks("sub").iter().map(|t| t.codec.as_str()).collect();
        assert_eq!(sub_codecs, codecs, "{name}");
        assert!(
            net.run_until(Duration::from_secs(5), |n| n.connected(s)),
            "{name}"
        );
        for i in 0..30u64 {
            let audio_bytes: Vec<u8> = vec![0xA5; 40];
            if video == Codec::H265 {
                net.write_rtp(p, MediaKind::Audio, 100 + i, 960 * i as u32, &audio_bytes);
                net.write_rtp(
                    p,
                    MediaKind::Video,
                    500 + i,
                    3000 * i as u32,
                    &[0x40, 0x01, 0x0c, 0x01, 0xff, 0xff, 0x01, 0x60],
                );
                let until = net.now + Duration::from_millis(20);
                while net.now < until {
                    net.step(Duration::from_millis(5));
                }
                continue;
            }
            net.write(p, MediaKind::Audio, 960 * i, &audio_bytes);
            // Frames in each codec's own framing, so that str0m's packetizers accept them.
            let frame: &[u8] = match video {
                // A temporal delimiter OBU and a small frame OBU, each with a size field.
                Codec::Av1 => &[0x12, 0x00, 0x32, 0x05, 1, 2, 3, 4, 5],
                // Annex B: a start code and a VPS NAL unit.
                Codec::H265 => &[
                    0x00, 0x00, 0x00, 0x01, 0x40, 0x01, 0x0c, 0x01, 0xff, 0xff, 0x01, 0x60, 0x00,
                    0x00, 0x03, 0x00, 0x90,
                ],
                // Annex B: a start code and an IDR slice NAL unit.
                Codec::H264 => &[0x00, 0x00, 0x00, 0x01, 0x65, 0x88, 0x84, 0x00, 0x33, 0xff],
                _ => &[0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a, 7, 7, 7, 7],
            };
            net.write(p, MediaKind::Video, 3000 * i, frame);
            let until = net.now + Duration::from_millis(20);
            while net.now < until {
                net.step(Duration::from_millis(5));
            }
        }
        let until = net.now + Duration::from_millis(300);
        while net.now < until {
            net.step(Duration::from_millis(5));
        }
        let pkts = net.rtp_packets(s);
        let audio_pkts = pkts
            .iter()
            .filter(|p| p.payload.len() == 40 && p.payload.iter().all(|b| *b == 0xA5))
            .count();
        let video_pkts = pkts.len() - audio_pkts;

        assert!(audio_pkts >= 25, "{name}: {audio_pkts} audio packets");
        assert!(video_pkts >= 20, "{name}: {video_pkts} video packets");
    }
}

/// A conference client keeps one connection: it publishes on it, then plays another
/// participant's stream on the same connection after a renegotiation; both flow.
#[test]
fn one_connection_publishes_and_subscribes_after_renegotiation() {
    let mut net = Net::new(1, 0.0);
    let (a, offer) = net.client("alice", true, false);
    let (_, specs_a) = net
        .connect(0, a, offer, "alice", publish(true, true), vec![])
        .unwrap();
    let (b, offer) = net.client("bob", true, true);
    let bob_pub = vec![Binding::Publish {
        publication: "s2".into(),
        mids: None,
        audio: true,
        video: true,
        selection: None,
    }];
    net.connect(0, b, offer, "bob", bob_pub, vec![]).unwrap();
    assert!(net.run_until(Duration::from_secs(5), |n| n.connected(a) && n.connected(b)));
    // Bob adds two receive sections and binds them to Alice's stream.
    let (offer, mids) = net.add_receivers(b);
    let bind = vec![Binding::Subscribe {
        subscription: "bob-plays-alice".into(),
        publication: "s1".into(),
        mids: Some(mids.clone()),
        audio: true,
        video: true,
        cap: Default::default(),
    }];
    let (answer, _) = net
        .renegotiate(0, b, offer, "bob", bind, specs_a.clone())
        .unwrap();
    assert_eq!(answer.tracks("bob-plays-alice").len(), 2);
    assert!(answer
        .tracks("bob-plays-alice")
        .iter()
        .all(|t| mids.contains(&t.mid)));
    send_media(&mut net, a, 40);
    let got = net.rtp_packets(b).len();
    assert!(
        got >= 50,
        "bob received {got} packets of alice's stream on his publishing connection"
    );
    // A second subscription id on a mid already bound is refused.
    let (offer, _) = net.add_receivers(b);
    let again = vec![Binding::Subscribe {
        subscription: "dup".into(),
        publication: "s1".into(),
        mids: Some(vec![mids[0].clone()]),
        audio: true,
        video: true,
        cap: Default::default(),
    }];
    assert!(net.renegotiate(0, b, offer, "bob", again, specs_a).is_err());
}

/// Pausing a publication's video stops it for every subscriber; resuming asks for a
/// keyframe; pausing one subscription stops only that one.
#[test]
fn pause_and_resume_publications_and_subscriptions() {
    use switchyard_dataplane::core::Command;
    let mut net = Net::new(1, 0.0);
    let (p, offer) = net.client("publisher", true, false);
    let (_, spec) = net
        .connect(0, p, offer, "pub", publish(true, true), vec![])
        .unwrap();
    assert!(net.run_until(Duration::from_secs(5), |n| n.connected(p)));
    let (s1, offer) = net.client("s1", false, true);
    net.connect(0, s1, offer, "sub1", subscribe("sub1"), spec.clone())
        .unwrap();
    let (s2, offer) = net.client("s2", false, true);
    net.connect(0, s2, offer, "sub2", subscribe("sub2"), spec.clone())
        .unwrap();
    assert!(net.run_until(Duration::from_secs(5), |n| n.connected(s1)
        && n.connected(s2)));
    let video = |net: &Net, c: usize| {
        net.rtp_packets(c)
            .iter()
            .filter(|p| p.payload.len() > 80)
            .count()
    };
    send_media(&mut net, p, 10);
    let (v1, v2) = (video(&net, s1), video(&net, s2));
    assert!(v1 > 0 && v2 > 0);
    let now = net.now;
    net.cores[0].handle_command(
        now,
        Command::PublicationControl {
            token: 1,
            publication: "s1".into(),
            audio: None,
            video: Some(false),
        },
    );
    send_media(&mut net, p, 10);
    assert_eq!(
        (video(&net, s1), video(&net, s2)),
        (v1, v2),
        "no video while the publication is paused"
    );
    let kf_before = net.metrics[0]
        .keyframe_requests_sent
        .load(std::sync::atomic::Ordering::Relaxed);
    let now = net.now;
    net.cores[0].handle_command(
        now,
        Command::PublicationControl {
            token: 2,
            publication: "s1".into(),
            audio: None,
            video: Some(true),
        },
    );
    send_media(&mut net, p, 10);
    assert!(video(&net, s1) > v1 && video(&net, s2) > v2);
    assert!(
        net.metrics[0]
            .keyframe_requests_sent
            .load(std::sync::atomic::Ordering::Relaxed)
            > kf_before,
        "resuming asks for a keyframe"
    );
    let (v1, v2) = (video(&net, s1), video(&net, s2));
    let now = net.now;
    net.cores[0].handle_command(
        now,
        Command::SubscriptionControl {
            token: 3,
            subscription: "sub1".into(),
            audio: Some(false),
            video: Some(false),
        },
    );
    send_media(&mut net, p, 10);
    assert_eq!(video(&net, s1), v1, "the paused subscription gets nothing");
    assert!(video(&net, s2) > v2, "the other one still plays");
}

/// Ending a publication binding tells the management side; ending the last binding of a
/// single-purpose peer closes it.
#[test]
fn unbinding_ends_bindings_and_empty_peers() {
    use switchyard_dataplane::core::{Command, CoreEvent};
    let mut net = Net::new(1, 0.0);
    let (p, offer) = net.client("publisher", true, false);
    let (_, spec) = net
        .connect(0, p, offer, "pub", publish(true, true), vec![])
        .unwrap();
    let (s, offer) = net.client("s", false, true);
    net.connect(0, s, offer, "sub", subscribe("sub"), spec)
        .unwrap();
    assert!(net.run_until(Duration::from_secs(5), |n| n.connected(p) && n.connected(s)));
    let now = net.now;
    net.cores[0].handle_command(
        now,
        Command::Unbind {
            token: Some(9),
            peer: "sub".into(),
            id: "sub".into(),
            reason: "test".into(),
        },
    );
    let events = net.cores[0].take_outbox().events;
    assert!(
        events
            .iter()
            .any(|e| matches!(e, CoreEvent::Closed { token: Some(9), peer, .. } if peer == "sub")),
        "{events:?}"
    );
    let now = net.now;
    net.cores[0].handle_command(
        now,
        Command::Unbind {
            token: Some(10),
            peer: "pub".into(),
            id: "nope".into(),
            reason: "test".into(),
        },
    );
    let events = net.cores[0].take_outbox().events;
    assert!(events.iter().any(|e| matches!(e, CoreEvent::Unbound { token: Some(10), reason, .. } if reason == "no such binding")), "{events:?}");
    let now = net.now;
    net.cores[0].handle_command(
        now,
        Command::ClosePeer {
            token: Some(11),
            peer: "pub".into(),
            reason: "test".into(),
        },
    );
    let events = net.cores[0].take_outbox().events;
    assert!(events.iter().any(|e| matches!(e, CoreEvent::Closed { publications, .. } if publications.len() == 1 && &*publications[0] == "s1")), "{events:?}");
    assert_eq!(net.cores[0].peer_count(), 0);
}

/// A publisher's oversized packet (a payload that might not fit a subscriber's datagram
/// once re-headed and encrypted: str0m builds each in 2,000 bytes and stops the thread
/// when one does not fit) is dropped and counted; the core and everyone else go on.
#[test]
fn oversized_payloads_are_dropped_and_counted() {
    use switchyard_dataplane::metrics::DropReason;
    let mut net = Net::new(1, 0.0);
    let (p, specs) = net.publisher(true);
    let none = Default::default;
    let subs = net.subscribers(&specs, vec![("sub0", none()), ("sub1", none())]);
    let before = net.rtp_packets(subs[0]).len();
    for i in 0..20u64 {
        net.write_rtp(
            p,
            MediaKind::Video,
            10_000 + i,
            1000 * i as u32,
            &[0x55; 1_900],
        );
        net.step(Duration::from_millis(5));
    }
    assert!(net.metrics[0].drops_for(DropReason::Oversized) >= 20);
    assert_eq!(
        net.rtp_packets(subs[0]).len(),
        before,
        "nothing oversized was forwarded"
    );
    // Normal packets still flow.
    for i in 20..40u64 {
        net.write_rtp(
            p,
            MediaKind::Video,
            10_000 + i,
            1000 * i as u32,
            &[0x55; 1_000],
        );
        net.step(Duration::from_millis(5));
    }
    assert!(
        net.rtp_packets(subs[0]).len() > before,
        "normal packets flow again"
    );
}

/// RED audio (RFC 2198) from a publisher that negotiated it reaches a subscriber that
/// negotiated it too as it came, and one that did not as its primary block alone.
#[test]
fn red_audio_passes_through_or_is_unwrapped() {
    let mut net = Net::new(1, 0.0);
    let red_config = || {
        str0m::Rtc::builder()
            .set_rtp_mode(true)
            .clear_codecs()
            .enable_opus(true, true)
            .enable_vp8(true)
    };
    let (p, offer) = net.client_with("publisher", true, red_config());
    let (_, specs) = net
        .connect(0, p, offer, "pub", publish(true, true), vec![])
        .unwrap();
    assert!(net.run_until(Duration::from_secs(5), |n| n.connected(p)));
    let (with_red, offer) = net.client_with("red", false, red_config());
    net.connect(0, with_red, offer, "red", subscribe("red"), specs.clone())
        .unwrap();
    let (plain, offer) = net.client("plain", false, true);
    let (answer, _) = net
        .connect(0, plain, offer, "plain", subscribe("plain"), specs)
        .unwrap();
    assert!(
        !answer.answer_sdp.contains("red/"),
        "no RED in the answer to a client that did not offer it"
    );
    assert!(
        net.run_until(Duration::from_secs(5), |n| n.connected(with_red)
            && n.connected(plain))
    );
    let red_pt = |net: &Net, c: usize| {
        let rtc = &net.clients[c].rtc;
        rtc.codec_config()
            .params()
            .iter()
            .find(|x| x.spec().codec == str0m::format::Codec::Opus)
            .and_then(|x| x.red())
            .unwrap()
    };
    let pt = red_pt(&net, p);
    // RED packets: one redundant block (the previous frame, 3 bytes), then the primary.
    for i in 0..30u64 {
        let mid = net.clients[p].mids[0].0;
        let mut api = net.clients[p].rtc.direct_api();
        if api.stream_tx_by_mid(mid, None).is_none() {
            let ssrc = api.new_ssrc();
            api.declare_stream_tx(ssrc, None, mid, None);
        }
        let payload = vec![
            0x80 | 111,
            0x0f,
            0x00,
            0x03,
            111,
            7,
            7,
            7,
            0xAB,
            0xCD,
            i as u8,
        ];
        let now = net.now;
        api.stream_tx_by_mid(mid, None).unwrap().write_rtp(
            str0m::rtp::RtpWrite::new(pt, (100 + i).into(), (960 * i) as u32, now, payload)
                .marker(true),
        );
        net.step(Duration::from_millis(20));
    }
    let got = |net: &Net, c: usize| -> Vec<(u8, Vec<u8>)> {
        net.rtp_packets(c)
            .into_iter()
            .filter(|x| {
                x.payload.len() >= 3
                    && x.payload[x.payload.len() - 3..x.payload.len() - 1] == [0xAB, 0xCD]
            })
            .map(|x| (*x.header.payload_type, x.payload.to_vec()))
            .collect()
    };
    let r = got(&net, with_red);
    let q = got(&net, plain);
    assert!(
        r.len() >= 25 && q.len() >= 25,
        "{} and {} packets",
        r.len(),
        q.len()
    );
    let sub_red_pt = *red_pt(&net, with_red);
    assert!(
        r.iter().all(|(t, pl)| *t == sub_red_pt && pl.len() == 11),
        "{:?}",
        &r[..2]
    );
    assert!(
        q.iter().all(|(t, pl)| *t != sub_red_pt && pl.len() == 3),
        "{:?}",
        &q[..2]
    );
}
