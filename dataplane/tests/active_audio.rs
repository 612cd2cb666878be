//! Active-speaker selection (a room's `selectActiveAudio`) through the cores, with str0m
//! clients on a virtual clock: three publishers on two cores compete for two slot
//! streams; each slot's subscriber hears the speaker seated in it, a louder speaker takes
//! a quiet one's slot after the hold, numbering continues across the change, and every
//! change is reported.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failing test should panic

mod common;

use common::*;
use std::time::Duration;
use str0m::format::Codec;
use switchyard_dataplane::core::{Command, CoreEvent, PublicationSpec};
use switchyard_dataplane_api::{Binding, SubscriptionCap};

const SLOTS: [&str; 2] = ["room-audio-0", "room-audio-1"];

/// Sends one 20 ms opus packet from `client` with audio level `level` (negative dBov, as
/// str0m writes it); its payload says who sent it (`tag`).
fn speak(net: &mut Net, client: usize, seq: u64, level: i8, tag: u8) {
    let c = &mut net.clients[client];
    let mid = c.mids[0].0;
    let pt = pt_of(net, client, mid, Codec::Opus);
    let now = net.now;
    let mut api = net.clients[client].rtc.direct_api();
    if api.stream_tx_by_mid(mid, None).is_none() {
        let ssrc = api.new_ssrc();
        api.declare_stream_tx(ssrc, None, mid, None);
    }
    let tx = api.stream_tx_by_mid(mid, None).unwrap();
    let ext = str0m::rtp::ExtensionValues {
        audio_level: Some(level),
        voice_activity: Some(level > -60),
        ..Default::default()
    };
    tx.write_rtp(
        str0m::rtp::RtpWrite::new(pt, seq.into(), (seq * 960) as u32, now, vec![tag; 40])
            .ext_vals(ext)
            .marker(true),
    );
}

/// 20 ms of every publisher speaking at its level.
fn talk(net: &mut Net, pubs: &[(usize, i8, u8)], seq: &mut u64, secs: f64) {
    for _ in 0..(secs * 50.0) as usize {
        for &(client, level, tag) in pubs {
            speak(net, client, *seq, level, tag);
        }
        *seq += 1;
        let until = net.now + Duration::from_millis(20);
        while net.now < until {
            net.step(Duration::from_millis(5));
        }
    }
}

/// (sequence number, tag) of the audio `client` received.
fn heard(net: &Net, client: usize) -> Vec<(u64, u8)> {
    net.rtp_packets(client)
        .into_iter()
        .filter(|p| p.payload.len() == 40)
        .map(|p| (*p.seq_no, p.payload[0]))
        .collect()
}

fn tags_after(got: &[(u64, u8)], skip: usize) -> Vec<u8> {
    let mut t: Vec<u8> = got.iter().skip(skip).map(|g| g.1).collect();
    t.sort_unstable();
    t.dedup();
    t
}

#[test]
fn the_loudest_speakers_fill_the_slots_and_a_louder_one_takes_a_quiet_ones_slot() {
    let mut net = Net::new(2, 0.0);
    // The selection, ranked on core 0.
    let events = net.command(
        0,
        Command::SelectionCreate {
            token: 1,
            selection: "room".into(),
            slots: SLOTS.iter().map(|s| s.to_string()).collect(),
        },
    );
    assert!(matches!(
        events.as_slice(),
        [CoreEvent::Done { result: Ok(()), .. }]
    ));
    net.selections = vec![("room".into(), 0)];
    // Three speakers: a on core 0, b and c on core 1.
    let mut speakers = Vec::new();
    for (name, core) in [("a", 0), ("b", 1), ("c", 1)] {
        let (p, offer) = net.client(name, true, true);
        net.connect(
            core,
            p,
            offer,
            name,
            vec![Binding::Publish {
                publication: name.into(),
                mids: None,
                audio: true,
                video: false,
                selection: Some("room".into()),
            }],
            vec![],
        )
        .unwrap();
        assert!(net.run_until(Duration::from_secs(5), |n| n.connected(p)));
        speakers.push(p);
    }
    // A listener per slot, on the other core than the selection for slot 0.
    let opus: Vec<_> = switchyard_dataplane::peer::all_codecs()
        .params()
        .iter()
        .filter(|p| p.spec().codec == Codec::Opus)
        .copied()
        .collect();
    let mut listeners = Vec::new();
    for (i, (slot, core)) in SLOTS.iter().zip([1usize, 0]).enumerate() {
        let id = format!("listener{i}");
        let (s, offer) = net.client(&id, false, true);
        let spec = PublicationSpec {
            id: (*slot).into(),
            home: 0,
            params: opus.clone(),
            audio: true,
            video: false,
            rids: Vec::new(),
        };
        net.connect(
            core,
            s,
            offer,
            &id,
            vec![Binding::Subscribe {
                subscription: id.clone(),
                publication: slot.to_string(),
                mids: None,
                audio: true,
                video: false,
                cap: SubscriptionCap::default(),
            }],
            vec![spec],
        )
        .unwrap();
        assert!(net.run_until(Duration::from_secs(5), |n| n.connected(s)));
        listeners.push(s);
    }
    let (a, b, c) = (speakers[0], speakers[1], speakers[2]);
    let mut seq = 1000;
    // a talks at 10 dB below full scale, b at 30, c is almost silent.
    talk(
        &mut net,
        &[(a, -10, 1), (b, -30, 2), (c, -100, 3)],
        &mut seq,
        2.0,
    );
    let (h0, h1) = (heard(&net, listeners[0]), heard(&net, listeners[1]));
    assert!(
        h0.len() > 60 && h1.len() > 60,
        "{} and {} packets",
        h0.len(),
        h1.len()
    );
    assert_eq!(tags_after(&h0, 5), vec![1], "slot 0 carries a");
    assert_eq!(tags_after(&h1, 5), vec![2], "slot 1 carries b");
    // c starts to shout and b falls silent: after the hold c takes b's slot, a keeps its.
    let before = h1.len();
    talk(
        &mut net,
        &[(a, -10, 1), (b, -100, 2), (c, -5, 3)],
        &mut seq,
        2.0,
    );
    let h1 = heard(&net, listeners[1]);
    assert_eq!(
        tags_after(&h1, h1.len() - 20),
        vec![3],
        "slot 1 carries c now"
    );
    assert_eq!(tags_after(&heard(&net, listeners[0]), 5), vec![1]);
    // The listener heard one continuous stream across the change.
    for w in h1.windows(2) {
        assert_eq!(w[1].0, w[0].0 + 1, "a gap at the change: {w:?}");
    }
    // Not at once: b's slot changed hands only after the hold.
    let switched_at = h1.iter().position(|x| x.1 == 3).unwrap();
    assert!(
        switched_at - before >= 25,
        "switched after {} packets",
        switched_at - before
    );
    // Every change was reported: a seated in slot 0 as the major speaker, then c in slot 1
    // becoming the major one.
    let changes: Vec<(String, Option<String>, bool)> = net
        .core_events
        .iter()
        .filter_map(|e| match e {
            CoreEvent::SelectionChanged {
                slot, input, major, ..
            } => Some((
                slot.to_string(),
                input.as_ref().map(|i| i.to_string()),
                *major,
            )),
            _ => None,
        })
        .collect();
    assert!(
        changes.contains(&("room-audio-0".into(), Some("a".into()), true)),
        "{changes:?}"
    );
    assert!(
        changes
            .iter()
            .any(|(s, i, m)| s == "room-audio-1" && i.as_deref() == Some("c") && *m),
        "c became major: {changes:?}"
    );
    // The selection ends: its slots are gone.
    let events = net.command(
        0,
        Command::SelectionClose {
            token: 2,
            selection: "room".into(),
        },
    );
    assert!(matches!(
        events.as_slice(),
        [CoreEvent::Done { result: Ok(()), .. }]
    ));
    let before = heard(&net, listeners[1]).len();
    talk(&mut net, &[(a, -10, 1), (c, -5, 3)], &mut seq, 0.5);
    assert_eq!(
        heard(&net, listeners[1]).len(),
        before,
        "nothing flows into a closed selection"
    );
}
