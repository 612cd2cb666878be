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
//! that owns the ring. The ring itself is [`Recycler`], usable for any shared value.

use std::cell::RefCell;
use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

/// The largest payload kept in a reused buffer: the largest RTP payload in an
/// Ethernet-sized datagram. Each buffer is as large as the largest payload it has held.
pub const SLOT_CAPACITY: usize = 1500;

/// The most buffers one of a thread's two rings holds (at most 12 MiB of payloads each).
pub const MAX_SLOTS: usize = 8192;

/// How many slots past the cursor the payload rings look at before they grow.
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

/// A ring of reusable `Arc<T>`s, at most `max` of them: the technique above, for any
/// shared value (the dataplane shares its forwarded packets through one).
///
/// The ring keeps a reference to each `Arc` it handed out and refills one in place once
/// every other reference is gone (`Arc::get_mut` proves that). Values are released
/// roughly in the order they were made, so the ring looks `probes` slots past its cursor
/// and grows only when those are all held; full, it looks further on the next time.
#[derive(Debug)]
pub struct Recycler<T> {
    slots: Vec<Arc<T>>,
    next: usize,
    max: usize,
    probes: usize,
}

/// What a [`Recycler`] fills a slot from: a value replaces the slot's; a byte slice is
/// copied into a reused `Vec` (keeping its capacity).
pub trait Refill<T> {
    /// Puts `self` into a slot that held an earlier value.
    fn refill(self, slot: &mut T);
    /// `self` as a new value.
    fn fresh(self) -> T;
}

impl<T> Refill<T> for T {
    fn refill(self, slot: &mut T) {
        *slot = self;
    }
    fn fresh(self) -> T {
        self
    }
}

impl Refill<Vec<u8>> for &[u8] {
    fn refill(self, slot: &mut Vec<u8>) {
        slot.clear();
        // A buffer grows to the largest payload it has held (once), not further.
        slot.reserve_exact(self.len());
        slot.extend_from_slice(self);
    }
    fn fresh(self) -> Vec<u8> {
        self.to_vec()
    }
}

impl<T> Recycler<T> {
    /// An empty ring that grows to at most `max` values, looking `probes` slots past its
    /// cursor for a free one.
    pub const fn new(max: usize, probes: usize) -> Self {
        Recycler {
            slots: Vec::new(),
            next: 0,
            max,
            probes,
        }
    }

    /// `from`, shared, in a reused slot or a new one the ring keeps; handed back when the
    /// ring is full and the slots looked at are all held.
    pub fn pooled<F: Refill<T>>(&mut self, from: F) -> Result<Arc<T>, F> {
        let n = self.slots.len();
        for i in 0..self.probes.min(n) {
            let at = (self.next + i) % n;
            if let Some(v) = Arc::get_mut(&mut self.slots[at]) {
                from.refill(v);
                self.next = (at + 1) % n;
                return Ok(self.slots[at].clone());
            }
        }
        if n >= self.max {
            if n > 0 {
                // Full, and these held: look further on next time.
                self.next = (self.next + self.probes) % n;
            }
            return Err(from);
        }
        let made = Arc::new(from.fresh());
        // The new slot goes where the cursor is, so that it is looked at again after
        // the slots that were filled before it.
        let at = if n == 0 { 0 } else { self.next };
        self.slots.insert(at, made.clone());
        self.next = (at + 1) % (n + 1);
        Ok(made)
    }

    /// `from`, shared: [`Recycler::pooled`], or allocated alone when that hands it back.
    pub fn make<F: Refill<T>>(&mut self, from: F) -> Arc<T> {
        self.pooled(from).unwrap_or_else(|f| Arc::new(f.fresh()))
    }

    /// How many values the ring holds.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether the ring holds none.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }
}

thread_local! {
    /// Video payloads, held as long as the retransmission caches keep them.
    static RING: RefCell<Recycler<Vec<u8>>> = const { RefCell::new(Recycler::new(MAX_SLOTS, PROBES)) };
    /// Audio payloads, which nobody keeps: a ring of their own, so that the video ring
    /// does not hold a slot for each audio packet sent within a retransmission window.
    static AUDIO_RING: RefCell<Recycler<Vec<u8>>> =
        const { RefCell::new(Recycler::new(MAX_SLOTS, PROBES)) };
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

    fn reused_in(
        ring: &'static std::thread::LocalKey<RefCell<Recycler<Vec<u8>>>>,
        data: &[u8],
    ) -> Payload {
        if data.len() <= SLOT_CAPACITY {
            let filled = ring
                .try_with(|r| r.try_borrow_mut().ok().and_then(|mut r| r.pooled(data).ok()))
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
            ring.try_with(|r| r.try_borrow().map(|r| r.len()).unwrap_or(0))
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
        p.to_arc()
    }
}
