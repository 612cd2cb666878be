//! Planning a flush's datagrams into `sendmmsg` calls with UDP GSO (sans-IO), when
//! `dataplane.udp_gso` is on (off by default: shaping, policing or filtering inside the
//! host sees a GSO burst as one packet, and drops it whole).
//!
//! Fan-out sends each packet to many addresses, so one packet's copies cannot share a
//! send. But the driver now handles every datagram already waiting in a socket before it
//! flushes, and a video frame arrives as a burst of packets: the flush then holds, for each
//! subscriber, several packets to the same address. Sent as one GSO message (the segments
//! concatenated, `UDP_SEGMENT` giving their size) they cross the kernel's UDP/IP send path
//! once instead of once each — `udp-bench` measured a third of the CPU per datagram.
//!
//! The kernel's rules shape the plan: in one message every segment but the last has the
//! same size and the last is no larger; at most [`MAX_SEGMENTS`] segments and
//! [`MAX_MESSAGE_BYTES`] in all; the `UDP_SEGMENT` size is one per `sendmmsg` call (the
//! control message is shared), and a single datagram no larger than it goes out unsplit.
//! Datagrams to one address keep their order; the plan reorders only between addresses.
//! A paced peer's datagrams (bandwidth adaptation) stay single: str0m's pacer spreads them
//! at the peer's estimate, and a burst would undo that. (Seen in the browser test of a
//! player behind a 300 kbit/s shaper: with its packets in GSO bursts, 2 of 4 runs froze
//! its video and a third lost 69 packets; left single, 5 of 5 ran clean, as did 4 of 4
//! with GSO off.)

use std::net::{IpAddr, SocketAddr};

/// The most segments in one GSO message (the kernel's `UDP_MAX_SEGMENTS` on older kernels).
pub const MAX_SEGMENTS: usize = 64;

/// The most bytes in one GSO message (a UDP datagram's limit, with room for headers).
pub const MAX_MESSAGE_BYTES: usize = 65_000;

/// One message: `order[start..end]` (indices into the flushed datagrams, all from one local
/// address to one destination), sent as segments of `segment` bytes when more than one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Message {
    /// First position in [`Plan::order`].
    pub start: usize,
    /// One past the last.
    pub end: usize,
    /// The size of every segment but the last (the first datagram's length).
    pub segment: usize,
}

impl Message {
    /// How many datagrams it carries.
    pub fn segments(&self) -> usize {
        self.end - self.start
    }
}

/// One `sendmmsg`: `messages[start..end]`, all from one local address, with `gso` the
/// `UDP_SEGMENT` size when any of them has more than one segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Call {
    /// First message.
    pub start: usize,
    /// One past the last.
    pub end: usize,
    /// The segment size all its multi-segment messages share, if it has any.
    pub gso: Option<usize>,
}

/// What a flush sends, and how; its vectors keep their capacity from one flush to the next.
#[derive(Debug, Default)]
pub struct Plan {
    keys: Vec<(u64, u32)>,
    /// The datagrams' indices in sending order.
    pub order: Vec<usize>,
    /// Messages over `order`.
    pub messages: Vec<Message>,
    /// Calls over `messages`.
    pub calls: Vec<Call>,
}

/// A datagram as the plan sees it.
pub trait Outgoing {
    /// The local address it leaves from.
    fn from(&self) -> SocketAddr;
    /// Its destination.
    fn to(&self) -> SocketAddr;
    /// Its length in bytes.
    fn bytes(&self) -> usize;
    /// It must go as a message of its own: its peer is paced (bandwidth adaptation), and
    /// a GSO burst would undo the pacer's spacing.
    fn alone(&self) -> bool {
        false
    }
}

impl Plan {
    /// Plans `datagrams` into calls of at most `per_call` messages. Without `gso` every
    /// datagram is a message of its own, in the order given.
    pub fn make<D: Outgoing>(&mut self, datagrams: &[D], per_call: usize, gso: bool) {
        self.order.clear();
        self.messages.clear();
        self.calls.clear();
        let per_call = per_call.max(1);
        if gso && datagrams.len() > 1 {
            // Group by (from, to), keeping each group's order: sort on (address key, index).
            self.keys.clear();
            self.keys.extend(
                datagrams
                    .iter()
                    .enumerate()
                    .map(|(i, d)| (key(d.from(), d.to()), i as u32)),
            );
            self.keys.sort_unstable();
            self.order
                .extend(self.keys.iter().map(|&(_, i)| i as usize));
        } else {
            self.order.extend(0..datagrams.len());
        }
        // Messages: runs to one address whose segments fit the kernel's rules.
        let mut i = 0;
        while i < self.order.len() {
            let first = &datagrams[self.order[i]];
            let segment = first.bytes();
            let mut end = i + 1;
            let mut bytes = segment;
            if gso && !first.alone() {
                while end < self.order.len() && end - i < MAX_SEGMENTS {
                    let d = &datagrams[self.order[end]];
                    if d.alone()
                        || d.to() != first.to()
                        || d.from() != first.from()
                        || d.bytes() > segment
                        || bytes + d.bytes() > MAX_MESSAGE_BYTES
                    {
                        break;
                    }
                    bytes += d.bytes();
                    end += 1;
                    if d.bytes() < segment {
                        // A shorter segment can only be the last.
                        break;
                    }
                }
            }
            self.messages.push(Message {
                start: i,
                end,
                segment,
            });
            i = end;
        }
        // Calls: consecutive messages from one local address sharing one segment size; a
        // single datagram joins any call whose size is at least its length.
        let mut m = 0;
        while m < self.messages.len() {
            let from = datagrams[self.order[self.messages[m].start]].from();
            let mut call = Call {
                start: m,
                end: m,
                gso: None,
            };
            let mut largest_single = 0;
            while call.end < self.messages.len() && call.end - call.start < per_call {
                let msg = self.messages[call.end];
                if datagrams[self.order[msg.start]].from() != from {
                    break;
                }
                if msg.segments() == 1 {
                    if call.gso.is_some_and(|g| msg.segment > g) {
                        break;
                    }
                    largest_single = largest_single.max(msg.segment);
                } else {
                    match call.gso {
                        Some(g) if g == msg.segment => {}
                        None if largest_single <= msg.segment => call.gso = Some(msg.segment),
                        _ => break,
                    }
                }
                call.end += 1;
            }
            self.calls.push(call);
            m = call.end;
        }
    }
}

impl Outgoing for crate::core::Datagram {
    fn from(&self) -> SocketAddr {
        self.from
    }
    fn to(&self) -> SocketAddr {
        self.to
    }
    fn bytes(&self) -> usize {
        self.data.len()
    }
    fn alone(&self) -> bool {
        self.paced
    }
}

/// A sort key that puts datagrams with the same (from, to) together (a collision only
/// splits a group).
fn key(from: SocketAddr, to: SocketAddr) -> u64 {
    let ip = match to.ip() {
        IpAddr::V4(v4) => u64::from(u32::from(v4)),
        IpAddr::V6(v6) => {
            let b = u128::from(v6);
            (b as u64) ^ ((b >> 64) as u64)
        }
    };
    (ip << 16 | u64::from(to.port())) ^ (u64::from(from.port()) << 48)
}
