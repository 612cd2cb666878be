//! The rings that make forwarding allocation-free: `str0m::rtp::Recycler` (the core's
//! shared packets) and the received-payload rings behind `str0m::rtp::Payload`
//! (vendor/str0m/src/payload.rs). str0m's own unit tests do not build in this workspace,
//! so they are tested here.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failing test should panic

use str0m::rtp::Recycler;

#[test]
fn a_value_is_reused_once_nobody_holds_it() {
    let mut r = Recycler::new(8, 4);
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
    let mut r = Recycler::new(2, 4);
    let held: Vec<_> = (0..5u32).map(|i| r.make(i)).collect();
    assert_eq!(r.len(), 2);
    assert_eq!(
        held.iter().map(|v| **v).collect::<Vec<_>>(),
        [0, 1, 2, 3, 4]
    );
}

#[test]
fn a_full_ring_finds_a_free_slot_beyond_held_ones() {
    let mut r = Recycler::new(8, 4);
    let mut values: Vec<_> = (0..8u32).map(|i| Some(r.make(i))).collect();
    // The first four stay held; the last four are let go.
    for v in &mut values[4..] {
        *v = None;
    }
    // The slots looked at first are the held ones: handed back (the caller allocates).
    assert_eq!(r.pooled(100u32).err(), Some(100));
    // ...and the next one reuses a slot that was let go.
    let again = r.pooled(101u32).expect("a free slot beyond the held ones");
    assert_eq!((r.len(), *again), (8, 101));
    // A held value is untouched.
    assert_eq!(values[0].as_deref(), Some(&0));
}
