//! Live heap bytes of the process, for the `switchyard_dataplane_heap_bytes` gauge.
//!
//! [`Counting`] wraps the real allocator (mimalloc in the binary) and keeps one process-wide
//! count of the bytes asked for and not yet freed. It is what an operator compares with the
//! process's resident memory: the difference is the allocator's own (size-class rounding,
//! free pages it keeps) and what is not heap (stacks, code). Cost: one relaxed atomic add per
//! allocation and per free — the forwarding path allocates nothing in steady state, so this
//! is off the per-packet path.
//!
//! The count is of requested sizes, not of the size classes the allocator rounds them to.
#![allow(unsafe_code)] // a global allocator is an unsafe trait; every call is passed on as it is

use std::alloc::{GlobalAlloc, Layout};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering::Relaxed};

/// Bytes allocated and not freed, since the process started (signed: a block allocated
/// before counting began would make it dip if freed; none is, the allocator is global).
static LIVE: AtomicI64 = AtomicI64::new(0);
/// Whether a [`Counting`] allocator is the global one (else the gauge is not exported).
static ON: AtomicBool = AtomicBool::new(false);

/// A global allocator that counts live bytes, around `A`.
pub struct Counting<A>(pub A);

// SAFETY: every call is forwarded to `A` unchanged; the count is bookkeeping only.
unsafe impl<A: GlobalAlloc> GlobalAlloc for Counting<A> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract is passed on as it is.
        let p = unsafe { self.0.alloc(layout) };
        if !p.is_null() {
            count(layout.size() as i64);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as above.
        let p = unsafe { self.0.alloc_zeroed(layout) };
        if !p.is_null() {
            count(layout.size() as i64);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { self.0.dealloc(ptr, layout) };
        count(-(layout.size() as i64));
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as above.
        let p = unsafe { self.0.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            count(new_size as i64 - layout.size() as i64);
        }
        p
    }
}

fn count(delta: i64) {
    LIVE.fetch_add(delta, Relaxed);
    if !ON.load(Relaxed) {
        ON.store(true, Relaxed);
    }
}

/// Live heap bytes, when the global allocator counts them.
pub fn live_bytes() -> Option<u64> {
    ON.load(Relaxed)
        .then(|| u64::try_from(LIVE.load(Relaxed)).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::alloc::System;

    #[test]
    fn counts_what_is_live() {
        let a = Counting(System);
        let before = LIVE.load(Relaxed);
        let layout = Layout::from_size_align(1000, 8).unwrap_or(Layout::new::<u8>());
        // SAFETY: a valid layout; the block is freed with the layout it was grown to.
        unsafe {
            let p = a.alloc(layout);
            assert!(!p.is_null());
            assert_eq!(LIVE.load(Relaxed) - before, 1000);
            let q = a.realloc(p, layout, 3000);
            assert!(!q.is_null());
            assert_eq!(LIVE.load(Relaxed) - before, 3000);
            let grown = Layout::from_size_align(3000, 8).unwrap_or(layout);
            a.dealloc(q, grown);
        }
        assert_eq!(LIVE.load(Relaxed), before);
        assert!(live_bytes().is_some());
    }
}
