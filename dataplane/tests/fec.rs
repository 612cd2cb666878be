//! Video RED and ULPFEC, on a virtual network and clock.
//!
//! From a publisher: the answer takes them, the publication does not list them, a
//! RED-wrapped VP8 packet reaches the subscriber unwrapped, a packet lost on the way in
//! comes back from the FEC packet that follows it (header extensions as sent), and the
//! FEC packet itself leaves no gap in the subscriber's sequence numbers.
//!
//! To a subscriber that negotiated them: its video inside RED; where its path loses
//! packets (and it does not NACK), FEC packets of its own, from which it rebuilds what it
//! lost, byte for byte; on a clean path, none.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failing test should panic

mod common;

use common::{pt_of, publish, subscribe, Net};
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use str0m::format::Codec;
use str0m::media::MediaKind;
use str0m::rtp::RtpHeaderTail;
use str0m::Rtc;
use switchyard_dataplane::packet::ulpfec::{self, Protected, Receiver};

/// A publisher's datagram seen on its way: sequence number and bytes.
type Captured = (u16, Vec<u8>);

/// Sequence number of the packet lost on the way in.
const LOST: u16 = 103;

/// A VP8 payload: descriptor (start of partition 0), then a keyframe's first bytes when
/// `key`, then filler that differs per packet.
fn vp8(i: u8, key: bool) -> Vec<u8> {
    let mut v = vec![0x10];
    if key {
        v.extend_from_slice(&[0x50, 0x02, 0x00, 0x9d, 0x01, 0x2a, 0x80, 0x02, 0xe0, 0x01]);
    } else {
        v.extend_from_slice(&[0x51, 0x02, 0x00]);
    }
    v.extend((0..300 + 40 * usize::from(i)).map(|k| (k as u8) ^ i));
    v
}

/// The bytes ULPFEC protects of a captured (SRTP) datagram whose payload is `media`
/// with payload type `pt`: the header is in the clear.
fn protected_of(datagram: &[u8], pt: u8, media: &[u8]) -> Protected {
    let cc = usize::from(datagram[0] & 0x0f);
    let mut len = 12 + 4 * cc;
    if datagram[0] & 0x10 != 0 {
        let words = u16::from_be_bytes([datagram[len + 2], datagram[len + 3]]);
        len += 4 + 4 * usize::from(words);
    }
    let mut body = datagram[12..len].to_vec();
    body.extend_from_slice(media);
    Protected {
        b0: datagram[0],
        b1: (datagram[1] & 0x80) | pt,
        ts: u32::from_be_bytes([datagram[4], datagram[5], datagram[6], datagram[7]]),
        body: body.into(),
    }
}

/// Lets `ms` of network time pass (str0m's pacer sends what was written).
fn settle(net: &mut Net, ms: u64) {
    let until = net.now + Duration::from_millis(ms);
    while net.now < until {
        net.step(Duration::from_millis(5));
    }
}

#[test]
fn a_lost_video_packet_is_recovered_from_the_publishers_ulpfec() {
    let mut net = Net::new(1, 0.0);
    let mut config = Rtc::builder().set_rtp_mode(true);
    config.codec_config().enable_video_fec(true);
    let (p, offer) = net.client_with("publisher", true, config);
    assert!(offer.contains("ulpfec/90000"), "{offer}");
    let (_, specs) = net
        .connect(0, p, offer, "pub", publish(true, true), vec![])
        .unwrap();
    assert!(net.run_until(Duration::from_secs(5), |n| n.connected(p)));
    let vmid = net.clients[p].mids[1].0;
    // The answer took RED and ULPFEC; the publication lists neither (players get VP8).
    let (red, fec, vp8_pt) = (
        pt_of(&net, p, vmid, Codec::Red),
        pt_of(&net, p, vmid, Codec::Ulpfec),
        pt_of(&net, p, vmid, Codec::Vp8),
    );
    assert!(specs[0]
        .params
        .iter()
        .all(|c| !c.spec().codec.is_video_fec()));
    let (s, offer) = net.client("sub", false, true);
    net.connect(0, s, offer, "sub", subscribe("sub"), specs.clone())
        .unwrap();
    assert!(net.run_until(Duration::from_secs(5), |n| n.connected(s)));
    assert!(!net.clients[s]
        .rtc
        .codec_config()
        .params()
        .iter()
        .any(|c| c.spec().codec == Codec::Ulpfec));

    // Every RED datagram of the publisher is seen (its header is in the clear); LOST is
    // dropped on the way.
    let seen: Rc<RefCell<Vec<Captured>>> = Rc::default();
    let log = seen.clone();
    let red_pt = *red;
    net.intercept = Some(Box::new(move |client, d| {
        if client != p || d.len() < 12 || d[1] & 0x7f != red_pt {
            return true;
        }
        let seq = u16::from_be_bytes([d[2], d[3]]);
        log.borrow_mut().push((seq, d.to_vec()));
        seq != LOST
    }));

    // The stream is sending FEC: an FEC packet (in RED, the primary block's header its
    // PT) for a packet from before the stream began, which recovers nothing.
    let before = Protected {
        b0: 0x80,
        b1: *vp8_pt,
        ts: 6000,
        body: vp8(7, false).into(),
    };
    let mut payload = vec![*fec];
    payload.extend_from_slice(&ulpfec::encode(&[(99, &before)]));
    net.write_rtp_as(p, MediaKind::Video, red, 100, 6000, &payload, false);
    settle(&mut net, 50);
    assert!(seen.borrow().iter().any(|(s, _)| *s == 100));
    seen.borrow_mut().clear();

    // Four VP8 packets of one picture in RED, then an FEC packet protecting all four.
    let media: Vec<Vec<u8>> = (0..4).map(|i| vp8(i, i == 0)).collect();
    for (i, m) in media.iter().enumerate() {
        let mut payload = vec![*vp8_pt];
        payload.extend_from_slice(m);
        net.write_rtp_as(
            p,
            MediaKind::Video,
            red,
            101 + i as u64,
            9000,
            &payload,
            i == 3,
        );
    }
    settle(&mut net, 50);
    let captured = seen.borrow().clone();
    assert_eq!(captured.len(), 4, "the four media packets went out");
    let protected: Vec<(u16, Protected)> = captured
        .iter()
        .zip(&media)
        .map(|((seq, d), m)| (*seq, protected_of(d, *vp8_pt, m)))
        .collect();
    let group: Vec<(u16, &Protected)> = protected.iter().map(|(s, p)| (*s, p)).collect();
    let mut payload = vec![*fec];
    payload.extend_from_slice(&ulpfec::encode(&group));
    net.write_rtp_as(p, MediaKind::Video, red, 105, 9000, &payload, false);
    settle(&mut net, 50);
    // The next picture.
    let next = vp8(9, false);
    let mut payload = vec![*vp8_pt];
    payload.extend_from_slice(&next);
    net.write_rtp_as(p, MediaKind::Video, red, 106, 12000, &payload, true);
    settle(&mut net, 300);

    // In sequence order (the recovered packet is sent when the FEC packet comes, after
    // the one that follows it; the subscriber's jitter buffer puts it back in place).
    let mut got: Vec<(u64, Vec<u8>, bool)> = net
        .rtp_packets(s)
        .iter()
        .filter(|r| r.payload.len() > 100)
        .map(|r| (*r.seq_no, r.payload.to_vec(), r.header.marker))
        .collect();
    got.sort_by_key(|g| g.0);
    let want: Vec<&Vec<u8>> = media.iter().chain([&next]).collect();
    // Each payload by its place among what was sent (None: not sent like this).
    let places: Vec<Option<usize>> = got
        .iter()
        .map(|(_, p, _)| want.iter().position(|w| *w == p))
        .collect();
    assert_eq!(
        places,
        [Some(0), Some(1), Some(2), Some(3), Some(4)],
        "plain VP8, the lost packet recovered in its place"
    );
    // Consecutive: neither the loss nor the FEC packet leaves a gap.
    for w in got.windows(2) {
        assert_eq!(w[1].0, w[0].0 + 1);
    }
    // Recovered with its header as sent: the marker bit (from the FEC sum) on the
    // picture's last packet only.
    let markers: Vec<bool> = got.iter().map(|g| g.2).collect();
    assert_eq!(markers, [false, false, false, true, true]);
    let m = &net.metrics[0];
    assert_eq!(m.fec_received.load(Ordering::Relaxed), 2);
    assert_eq!(m.fec_recovered.load(Ordering::Relaxed), 1);
}

/// A VP8 packet of about 800 bytes (the lossy path drops every tenth datagram over 500):
/// a frame's first starts partition 0 (a keyframe's when `key`), filler numbered `n`.
fn vp8_numbered(n: u32, first: bool, key: bool) -> Vec<u8> {
    let mut v = vec![if first { 0x10 } else { 0x00 }];
    if key {
        v.extend_from_slice(&[0x50, 0x02, 0x00, 0x9d, 0x01, 0x2a, 0x80, 0x02, 0xe0, 0x01]);
    } else if first {
        v.extend_from_slice(&[0x51, 0x02, 0x00]);
    }
    v.extend_from_slice(&n.to_be_bytes());
    v.extend((0..800u32).map(|k| (k.wrapping_mul(7) ^ n) as u8));
    v
}

#[test]
fn a_lossy_subscriber_gets_fec_of_its_own_and_rebuilds_what_it_lost() {
    let mut net = Net::new(1, 0.0);
    let (p, specs) = net.publisher(true);
    // Two players offering video RED and ULPFEC, without NACK (FEC alone repairs).
    let mut players = Vec::new();
    for name in ["lossy", "clean"] {
        let mut config = Rtc::builder().set_rtp_mode(true);
        config.codec_config().enable_video_fec(true);
        let (s, offer) = net.client_with(name, false, config);
        let offer: String = offer
            .split_inclusive("\r\n")
            .filter(|l| !(l.starts_with("a=rtcp-fb:") && l.trim_end().ends_with(" nack")))
            .collect();
        net.connect(0, s, offer, name, subscribe(name), specs.clone())
            .unwrap();
        assert!(net.run_until(Duration::from_secs(5), |n| n.connected(s)));
        players.push(s);
    }
    let (lossy, clean) = (players[0], players[1]);
    net.lossy_clients.push(lossy);
    let vmid = net.clients[lossy].mids[1].0;
    let (red, fec, vp8_pt) = (
        pt_of(&net, lossy, vmid, Codec::Red),
        pt_of(&net, lossy, vmid, Codec::Ulpfec),
        pt_of(&net, lossy, vmid, Codec::Vp8),
    );
    let pub_vp8 = {
        let pmid = net.clients[p].mids[1].0;
        pt_of(&net, p, pmid, Codec::Vp8)
    };

    // 8 s of video: 30 frames a second, 4 packets each.
    let mut sent = Vec::new();
    for frame in 0..240u32 {
        for k in 0..4u32 {
            let n = frame * 4 + k;
            let payload = vp8_numbered(n, k == 0, frame == 0 && k == 0);
            let ts = 3000 * frame;
            net.write_rtp_as(
                p,
                MediaKind::Video,
                pub_vp8,
                1000 + u64::from(n),
                ts,
                &payload,
                k == 3,
            );
            sent.push(payload);
        }
        for s in &players {
            let vmid = net.clients[*s].mids[1].0;
            if let Some(rx) = net.clients[*s]
                .rtc
                .direct_api()
                .stream_rx_by_mid(vmid, None)
            {
                rx.suppress_nack(true);
            }
        }
        settle(&mut net, 33);
    }

    // What the lossy player got, as its FEC receiver would take it.
    let mut receiver = Receiver::default();
    let (mut direct, mut fec_packets, mut recovered) = (Vec::new(), 0, Vec::new());
    // Where the first FEC packet came among the media packets.
    let mut first_fec = None;
    // Media packets' marker bits and FEC packets, by sequence number.
    let (mut markers, mut fec_seqs) = (std::collections::HashMap::new(), Vec::new());
    for r in net.rtp_packets(lossy) {
        if r.header.payload_type != red {
            assert_ne!(
                r.header.payload_type, vp8_pt,
                "no plain VP8 to a RED player"
            );
            continue;
        }
        let (inner, block) = (r.payload[0] & 0x7f, &r.payload[1..]);
        let seq = *r.seq_no;
        if inner == *fec {
            fec_seqs.push(seq);
            first_fec.get_or_insert(direct.len());
            fec_packets += 1;
            recovered.extend(receiver.on_fec(seq, block).unwrap());
            continue;
        }
        assert_eq!(inner, *vp8_pt, "RED wraps the player's VP8");
        markers.insert(seq, r.header.marker);
        direct.push(block.to_vec());
        let tail = r.header.ext_vals.user_values.get::<RtpHeaderTail>();
        let protected = tail.map(|t| Protected {
            b0: 0x80 | if r.header.has_extension { 0x10 } else { 0 },
            b1: if r.header.marker { 0x80 } else { 0 } | inner,
            ts: r.header.timestamp,
            body: [&t.0[..], block].concat().into(),
        });
        recovered.extend(receiver.on_media(seq, protected));
    }
    let m = &net.metrics[0];
    let fec_sent = m.fec_sent.load(Ordering::Relaxed);
    eprintln!(
        "lossy player: {} RED media packets, {fec_packets} FEC packets ({fec_sent} sent), \
         {} datagrams dropped on the way, {} packets rebuilt",
        direct.len(),
        net.downstream_dropped,
        recovered.len()
    );
    assert!(fec_packets >= 20, "FEC goes to the lossy player");
    // Only between frames (a browser cannot put together a frame with a gap inside).
    for s in &fec_seqs {
        assert_ne!(
            markers.get(&(s - 1)),
            Some(&false),
            "FEC packet {s} inside a frame"
        );
    }
    // Every packet sent after the first FEC packet came (but the last group, which may
    // wait for its FEC packet) came whole or was rebuilt.
    let place = |p: &[u8]| sent.iter().position(|s| s.as_slice() == p);
    let after: Vec<usize> = direct[first_fec.unwrap()..]
        .iter()
        .filter_map(|p| place(p))
        .collect();
    let from = *after.iter().min().unwrap();
    let to =
        *after.iter().max().unwrap() - usize::from(switchyard_dataplane::protection::MAX_GROUP);
    let ext_len = |p: &Protected| {
        if p.b0 & 0x10 != 0 {
            4 + 4 * usize::from(u16::from_be_bytes([p.body[2], p.body[3]]))
        } else {
            0
        }
    };
    for (n, s) in sent.iter().enumerate().take(to).skip(from) {
        let came = direct.iter().any(|d| d == s);
        let rebuilt = recovered
            .iter()
            .any(|(_, p)| &p.body[ext_len(p)..] == s.as_slice());
        assert!(
            came || rebuilt,
            "packet {n} of the publisher's was lost for good"
        );
    }
    assert!(recovered.len() >= 10, "it rebuilds what it lost");
    for (seq, p) in &recovered {
        // The VP8 payload after the header's extension block, as the publisher sent it.
        let payload = &p.body[ext_len(p)..];
        let n = sent.iter().position(|s| s.as_slice() == payload);
        let n = n.unwrap_or_else(|| panic!("packet {seq} rebuilt with bytes never sent"));
        assert!(
            !direct.iter().any(|d| d.as_slice() == payload),
            "{seq} was not lost"
        );
        assert_eq!(
            p.b1 & 0x80 != 0,
            n % 4 == 3,
            "{seq}: the marker bit as sent"
        );
        assert_eq!(p.b1 & 0x7f, *vp8_pt);
    }
    // The clean path reports no loss: VP8 in RED, no FEC.
    let clean = net.rtp_packets(clean);
    let clean_red = clean.iter().filter(|r| r.header.payload_type == red);
    let clean_fec = clean_red.clone().filter(|r| r.payload[0] == *fec).count();
    assert_eq!(clean_fec, 0, "no FEC to the clean player");
    assert!(clean_red.count() >= 700, "its video in RED too");
}
