//! The send plan (`switchyard_dataplane::gso`): which datagrams of a flush share a UDP GSO
//! message and which messages share a `sendmmsg`, within the kernel's rules.

use std::net::SocketAddr;
use switchyard_dataplane::gso::{Call, Outgoing, Plan, MAX_SEGMENTS};

#[derive(Debug, Clone)]
struct D {
    from: SocketAddr,
    to: SocketAddr,
    len: usize,
    /// Which packet of the burst it is a copy of.
    packet: usize,
    /// Its peer is paced.
    paced: bool,
}

impl Outgoing for D {
    fn from(&self) -> SocketAddr {
        self.from
    }
    fn to(&self) -> SocketAddr {
        self.to
    }
    fn bytes(&self) -> usize {
        self.len
    }
    fn alone(&self) -> bool {
        self.paced
    }
}

fn local() -> SocketAddr {
    SocketAddr::from(([10, 0, 0, 1], 40000))
}

fn sub(i: u16) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, 2], 50000 + i))
}

/// A fan-out as the core writes it: packet 0 to every subscriber, then packet 1 …
fn fan_out(sizes: &[usize], subscribers: u16) -> Vec<D> {
    let mut v = Vec::new();
    for (packet, &len) in sizes.iter().enumerate() {
        for s in 0..subscribers {
            v.push(D {
                from: local(),
                to: sub(s),
                len,
                packet,
                paced: false,
            });
        }
    }
    v
}

/// Checks every kernel rule on a plan and that it sends each datagram exactly once, in
/// its order per destination.
fn check_rules(plan: &Plan, d: &[D], per_call: usize) {
    let mut seen = vec![false; d.len()];
    for &i in &plan.order {
        assert!(!seen[i], "datagram {i} planned twice");
        seen[i] = true;
    }
    assert!(seen.iter().all(|s| *s), "a datagram was left out");
    for m in &plan.messages {
        let seg: Vec<&D> = plan.order[m.start..m.end].iter().map(|&i| &d[i]).collect();
        assert!(m.segments() <= MAX_SEGMENTS);
        assert!(
            m.segments() == 1 || plan.order[m.start..m.end].iter().all(|&i| !d[i].paced),
            "a paced datagram goes alone"
        );
        assert_eq!(m.segment, seg[0].len);
        for (k, x) in seg.iter().enumerate() {
            assert_eq!(
                (x.from, x.to),
                (seg[0].from, seg[0].to),
                "one destination per message"
            );
            if k + 1 < seg.len() {
                assert_eq!(x.len, m.segment, "only the last segment may be shorter");
            } else {
                assert!(x.len <= m.segment);
            }
        }
    }
    for c in &plan.calls {
        assert!(c.end - c.start <= per_call);
        let from = d[plan.order[plan.messages[c.start].start]].from;
        for m in &plan.messages[c.start..c.end] {
            assert_eq!(
                d[plan.order[m.start]].from, from,
                "one local address per call"
            );
            match c.gso {
                Some(g) if m.segments() > 1 => assert_eq!(m.segment, g),
                Some(g) => assert!(
                    m.segment <= g,
                    "a single datagram larger than the call's segment size would be split"
                ),
                None => assert_eq!(m.segments(), 1),
            }
        }
    }
    // Per destination, the packets keep their order.
    let mut last: std::collections::HashMap<SocketAddr, usize> = Default::default();
    for &i in &plan.order {
        if let Some(prev) = last.insert(d[i].to, d[i].packet) {
            assert!(prev < d[i].packet, "reordered to {}", d[i].to);
        }
    }
}

#[test]
fn a_frames_packets_to_each_subscriber_become_one_message() {
    // 4 packets of a frame (the last shorter) to 10 subscribers.
    let d = fan_out(&[1200, 1200, 1200, 700], 10);
    let mut plan = Plan::default();
    plan.make(&d, 64, true);
    check_rules(&plan, &d, 64);
    assert_eq!(plan.messages.len(), 10);
    assert!(plan.messages.iter().all(|m| m.segments() == 4));
    assert_eq!(
        plan.calls,
        vec![Call {
            start: 0,
            end: 10,
            gso: Some(1200)
        }]
    );
}

#[test]
fn without_gso_every_datagram_is_its_own_message_in_order() {
    let d = fan_out(&[1200, 1200, 700], 30);
    let mut plan = Plan::default();
    plan.make(&d, 64, false);
    check_rules(&plan, &d, 64);
    assert_eq!(plan.order, (0..90).collect::<Vec<_>>());
    assert_eq!(plan.messages.len(), 90);
    assert_eq!(plan.calls.len(), 2, "64 + 26");
    assert!(plan.calls.iter().all(|c| c.gso.is_none()));
}

#[test]
fn a_larger_packet_after_a_smaller_starts_a_new_message() {
    // Sizes as libwebrtc's VP8 packetizer makes them (differing by a byte) and audio.
    let d = fan_out(&[1100, 1101, 1101, 120], 3);
    let mut plan = Plan::default();
    plan.make(&d, 64, true);
    check_rules(&plan, &d, 64);
    // Per subscriber: [1100] then [1101, 1101, 120].
    assert_eq!(plan.messages.len(), 6);
    // The 1,101-byte messages cannot share a call with a 1,100-byte GSO size, but the
    // single 1,100-byte datagrams fit under 1,101.
    assert!(plan.calls.len() <= 2, "{:?}", plan.calls);
}

#[test]
fn long_bursts_split_at_the_kernels_segment_limit() {
    let d = fan_out(&vec![1000; 150], 2);
    let mut plan = Plan::default();
    plan.make(&d, 64, true);
    check_rules(&plan, &d, 64);
    let per_dest: Vec<usize> = plan.messages.iter().map(|m| m.segments()).collect();
    assert_eq!(per_dest, vec![64, 64, 22, 64, 64, 22]);
}

#[test]
fn calls_hold_at_most_the_batch_and_one_local_address() {
    let mut d = fan_out(&[1200, 1200], 100);
    // A second local address (another interface) for some copies.
    for x in d.iter_mut().filter(|x| x.to.port() % 7 == 0) {
        x.from = SocketAddr::from(([10, 0, 1, 1], 40000));
    }
    let mut plan = Plan::default();
    plan.make(&d, 16, true);
    check_rules(&plan, &d, 16);
    assert_eq!(plan.messages.len(), 100);
    assert!(plan.calls.len() >= 100 / 16);
}

#[test]
fn mixed_sizes_and_addresses_keep_every_rule() {
    // A deterministic jumble: several publishers' packets of many sizes to many
    // subscribers, interleaved.
    let mut d = Vec::new();
    let mut x: u64 = 0x9e3779b97f4a7c15;
    for packet in 0..400 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        d.push(D {
            from: local(),
            to: sub((x % 37) as u16),
            len: [120, 700, 1000, 1200, 1200, 1200][(x >> 8) as usize % 6],
            packet,
            paced: x.is_multiple_of(5),
        });
    }
    let mut plan = Plan::default();
    for per_call in [1, 7, 64] {
        plan.make(&d, per_call, true);
        check_rules(&plan, &d, per_call);
    }
}

#[test]
fn a_paced_subscribers_packets_go_one_by_one() {
    let mut d = fan_out(&[1200, 1200, 1200], 4);
    // Subscriber 2 has bandwidth adaptation: str0m paces its packets.
    for x in d.iter_mut().filter(|x| x.to == sub(2)) {
        x.paced = true;
    }
    let mut plan = Plan::default();
    plan.make(&d, 64, true);
    check_rules(&plan, &d, 64);
    let segments: Vec<usize> = plan.messages.iter().map(|m| m.segments()).collect();
    assert_eq!(segments.iter().filter(|&&n| n == 3).count(), 3);
    assert_eq!(segments.iter().filter(|&&n| n == 1).count(), 3);
}
