//! Switchyard addition: an RTP payload shared without copying, whose buffer is reused.
//!
//! Every RTP packet str0m decrypts used to be copied into a freshly allocated
//! `Arc<[u8]>`: one allocation per received packet, and a forwarding server passes that
//! payload on to each subscriber's send queue and retransmission cache. A [`Payload`] is
//! the same cheap-to-clone, read-only byte slice, but a received packet's payload now
//! lands in a buffer from a per-thread ring that is reused once every clone of it is
//! gone — so receiving and forwarding a packet in steady state allocates nothing.
//!
//! The ring keeps one reference to each buffer it has handed out. A buffer whose only
//! reference is the ring's (`Arc::get_mut` succeeds: nobody else can see it) is refilled
//! in place. Buffers are released roughly in the order they were filled, so the ring
//! looks a few slots past its cursor and only grows (to [`MAX_SLOTS`]) when those are all
//! still held — by a retransmission cache, a packet queued to another core. Past that,
//! and for payloads larger than [`SLOT_CAPACITY`], a payload is allocated as before.
//!
//! Audio payloads, which no retransmission cache keeps, have a ring of their own, so that
//! the video ring holds about as many buffers as video payloads are alive.
//!
//! A clone dropped on another thread simply makes the buffer free again for the thread
//! that owns the ring.

use std::cell::RefCell;
use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

/// The largest payload kept in a reused buffer: the largest RTP payload in an
/// Ethernet-sized datagram. Each buffer is as large as the largest payload it has held.
pub const SLOT_CAPACITY: usize = 1500;

/// The most buffers one of a thread's two rings holds (at most 12 MiB of payloads each).
pub const MAX_SLOTS: usize = 8192;

/// How many slots past the cursor are looked at before the ring grows.
const PROBES: usize = 8;

/// An RTP payload (no header), cheap to clone and read-only.
#[derive(Clone)]
pub struct Payload(Inner);

#[derive(Clone)]
enum Inner {
    /// Allocated for this payload alone.
    Shared(Arc<[u8]>),
    /// A buffer of a thread's ring.
    Reused(Arc<Vec<u8>>),
}

struct Ring {
    slots: Vec<Arc<Vec<u8>>>,
    next: usize,
}

thread_local! {
    /// Video payloads, held as long as the retransmission caches keep them.
    static RING: RefCell<Ring> = const { RefCell::new(Ring { slots: Vec::new(), next: 0 }) };
    /// Audio payloads, which nobody keeps: a ring of their own, so that the video ring
    /// does not hold a slot for each audio packet sent within a retransmission window.
    static AUDIO_RING: RefCell<Ring> =
        const { RefCell::new(Ring { slots: Vec::new(), next: 0 }) };
}

impl Ring {
    /// A free slot filled with `data`, or `None` when every slot looked at is held and the
    /// ring is full.
    fn fill(&mut self, data: &[u8]) -> Option<Arc<Vec<u8>>> {
        let n = self.slots.len();
        for i in 0..PROBES.min(n) {
            let at = (self.next + i) % n;
            if let Some(buf) = Arc::get_mut(&mut self.slots[at]) {
                buf.clear();
                // A slot grows to the largest payload it has held (once), not further.
                buf.reserve_exact(data.len());
                buf.extend_from_slice(data);
                self.next = (at + 1) % n;
                return Some(self.slots[at].clone());
            }
        }
        if n >= MAX_SLOTS {
            // Full, and these held: look further on next time.
            self.next = (self.next + PROBES) % n;
            return None;
        }
        let slot = Arc::new(data.to_vec());
        // The new slot goes where the cursor is, so that it is looked at again after
        // the slots that were filled before it.
        let at = if n == 0 { 0 } else { self.next };
        self.slots.insert(at, slot.clone());
        self.next = (at + 1) % (n + 1);
        Some(slot)
    }
}

impl Payload {
    /// A copy of `data` in a reused buffer of this thread's ring (allocated once, when the
    /// ring grows, or when `data` is larger than [`SLOT_CAPACITY`]).
    pub fn reused(data: &[u8]) -> Payload {
        Self::reused_in(&RING, data)
    }

    /// [`Payload::reused`] for an audio payload (one that is not kept to be resent).
    pub fn reused_audio(data: &[u8]) -> Payload {
        Self::reused_in(&AUDIO_RING, data)
    }

    fn reused_in(ring: &'static std::thread::LocalKey<RefCell<Ring>>, data: &[u8]) -> Payload {
        if data.len() <= SLOT_CAPACITY {
            let filled = ring
                .try_with(|r| r.try_borrow_mut().ok().and_then(|mut r| r.fill(data)))
                .ok()
                .flatten();
            if let Some(buf) = filled {
                return Payload(Inner::Reused(buf));
            }
        }
        Payload(Inner::Shared(Arc::from(data)))
    }

    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        match &self.0 {
            Inner::Shared(a) => a,
            Inner::Reused(v) => v.as_slice(),
        }
    }

    /// The bytes as an `Arc<[u8]>` (a copy unless the payload was allocated alone).
    pub fn to_arc(&self) -> Arc<[u8]> {
        match &self.0 {
            Inner::Shared(a) => a.clone(),
            Inner::Reused(v) => Arc::from(v.as_slice()),
        }
    }
}

/// How many buffers this thread's rings hold (for tests and memory accounting).
pub fn reused_buffers() -> usize {
    [&RING, &AUDIO_RING]
        .iter()
        .map(|ring| {
            ring.try_with(|r| r.try_borrow().map(|r| r.slots.len()).unwrap_or(0))
                .unwrap_or(0)
        })
        .sum()
}

impl Deref for Payload {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl AsRef<[u8]> for Payload {
    fn as_ref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl Default for Payload {
    fn default() -> Self {
        Payload(Inner::Shared(Arc::from(&[][..])))
    }
}

impl PartialEq for Payload {
    fn eq(&self, other: &Self) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl Eq for Payload {}

impl fmt::Debug for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Payload({} bytes)", self.len())
    }
}

impl From<Arc<[u8]>> for Payload {
    fn from(a: Arc<[u8]>) -> Self {
        Payload(Inner::Shared(a))
    }
}

impl From<Vec<u8>> for Payload {
    fn from(v: Vec<u8>) -> Self {
        Payload(Inner::Shared(v.into()))
    }
}

impl From<&[u8]> for Payload {
    fn from(v: &[u8]) -> Self {
        Payload(Inner::Shared(v.into()))
    }
}

impl<const N: usize> From<[u8; N]> for Payload {
    fn from(v: [u8; N]) -> Self {
        Payload(Inner::Shared(Arc::new(v)))
    }
}

impl<const N: usize> From<&[u8; N]> for Payload {
    fn from(v: &[u8; N]) -> Self {
        Payload(Inner::Shared(Arc::from(&v[..])))
    }
}

impl From<Payload> for Arc<[u8]> {
    fn from(p: Payload) -> Self {
        match p.0 {
            Inner::Shared(a) => a,
            Inner::Reused(v) => Arc::from(v.as_slice()),
        }
    }
}
