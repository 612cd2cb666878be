//! Shared values whose allocations are reused: a core's ring of `Arc<T>`.
//!
//! A forwarded packet is shared (`Arc<MediaPacket>`) by every subscription and core that
//! takes it, and dropped a moment later. Allocating one per received packet was the last
//! allocation of Switchyard's own on the forwarding path; the ring keeps a reference to
//! each `Arc` it handed out and refills one in place once every other reference is gone
//! (`Arc::get_mut` proves that). Values are released roughly in the order they were made,
//! so the ring looks a few slots past its cursor and grows only when those are all held.
//! The same technique backs str0m's received payloads (`str0m::rtp::Payload`).

use std::sync::Arc;

/// How many slots past the cursor are looked at before the ring grows.
const PROBES: usize = 4;

/// A ring of reusable `Arc<T>`s, at most `max` of them.
#[derive(Debug)]
pub struct Recycler<T> {
    slots: Vec<Arc<T>>,
    next: usize,
    max: usize,
}

impl<T> Recycler<T> {
    /// An empty ring that grows to at most `max` values.
    pub fn new(max: usize) -> Self {
        Recycler {
            slots: Vec::new(),
            next: 0,
            max,
        }
    }

    /// `value`, shared: in a reused allocation when one is free, else a new one (kept in
    /// the ring while it has room).
    pub fn make(&mut self, value: T) -> Arc<T> {
        let n = self.slots.len();
        for i in 0..PROBES.min(n) {
            let at = (self.next + i) % n;
            if let Some(v) = Arc::get_mut(&mut self.slots[at]) {
                *v = value;
                self.next = (at + 1) % n;
                return self.slots[at].clone();
            }
        }
        let made = Arc::new(value);
        if n < self.max {
            let at = if n == 0 { 0 } else { self.next };
            self.slots.insert(at, made.clone());
            self.next = (at + 1) % (n + 1);
        } else if n > 0 {
            // Full, and these held: look further on next time.
            self.next = (self.next + PROBES) % n;
        }
        made
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_is_reused_once_nobody_holds_it() {
        let mut r = Recycler::new(8);
        let a = r.make(1u32);
        let b = r.make(2u32);
        assert_eq!(r.len(), 2);
        drop(a);
        // `a`'s slot is free: reused, the ring does not grow.
        let c = r.make(3u32);
        assert_eq!((r.len(), *b, *c), (2, 2, 3));
        drop((b, c));
        for i in 0..100 {
            assert_eq!(*r.make(i), i);
        }
        assert_eq!(r.len(), 2);
    }

    // str0m's received payloads use the same ring (vendor/str0m/src/payload.rs); its
    // unit tests do not build in this workspace, so the ring is tested here.
    #[test]
    fn a_received_payload_buffer_is_reused_once_its_clones_are_gone() {
        use str0m::rtp::{reused_buffers, Payload, SLOT_CAPACITY};
        // A thread of its own: the ring is per thread.
        std::thread::spawn(|| {
            let a = Payload::reused(&[1, 2, 3]);
            let b = a.clone();
            drop(a);
            // Still held by `b`: a new payload takes another buffer.
            let c = Payload::reused(&[4, 5]);
            assert_eq!(reused_buffers(), 2);
            assert_eq!((&*b, &*c), (&[1u8, 2, 3][..], &[4u8, 5][..]));
            drop((b, c));
            for i in 0..100u8 {
                let p = Payload::reused(&[i; 100]);
                assert_eq!(&*p, &[i; 100][..]);
            }
            assert_eq!(reused_buffers(), 2);
            // Larger than a slot: allocated alone, the ring unchanged.
            let big = vec![7u8; SLOT_CAPACITY + 1];
            assert_eq!(&*Payload::reused(&big), &big[..]);
            assert_eq!(reused_buffers(), 2);
        })
        .join()
        .unwrap_or_else(|e| std::panic::resume_unwind(e));
    }

    #[test]
    fn past_its_size_a_ring_allocates_without_keeping() {
        let mut r = Recycler::new(2);
        let held: Vec<_> = (0..5u32).map(|i| r.make(i)).collect();
        assert_eq!(r.len(), 2);
        assert_eq!(
            held.iter().map(|v| **v).collect::<Vec<_>>(),
            [0, 1, 2, 3, 4]
        );
    }

    #[test]
    fn a_full_ring_finds_a_free_slot_beyond_held_ones() {
        let mut r = Recycler::new(8);
        let mut values: Vec<_> = (0..8u32).map(|i| Some(r.make(i))).collect();
        // The first four stay held; the last four are let go.
        for v in &mut values[4..] {
            *v = None;
        }
        let _ = r.make(100); // past the held ones: allocated alone
        let again = r.make(101);
        assert_eq!((r.len(), *again), (8, 101));
        // ...and the next one reuses a slot that was let go.
        assert!(r.slots.iter().any(|s| Arc::ptr_eq(s, &again)));
        // A held value is untouched.
        assert_eq!(values[0].as_deref(), Some(&0));
    }
}
