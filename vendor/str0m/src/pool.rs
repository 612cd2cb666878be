//! Switchyard addition: per-thread pools of egress datagram buffers and RTCP queues.
//!
//! Every RTP and RTCP packet str0m encrypts used to land in a freshly allocated `Vec`,
//! which the caller dropped once the datagram was sent: one allocation per forwarded
//! copy. The encryption now takes its output buffer from this pool, and a caller that
//! has sent a datagram hands the buffer back with [`recycle_datagram`]. A caller that
//! never does simply gets fresh buffers, as before.
//!
//! The pool is per thread, which suits a thread-per-core server: buffers come back on
//! the thread that sent them. It holds at most [`MAX_POOLED`] buffers of
//! [`BUFFER_CAPACITY`] bytes (1 MiB per thread), so a burst cannot pin memory.

use std::cell::RefCell;
use std::collections::VecDeque;

use crate::rtp_::Rtcp;

/// Capacity of every pooled buffer: room for the largest SRTP datagram str0m sends
/// (an MTU-sized packet, its tag and the cipher's scratch).
pub const BUFFER_CAPACITY: usize = 2048;

/// The most buffers one thread keeps for reuse.
pub const MAX_POOLED: usize = 512;

thread_local! {
    static POOL: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

/// A zeroed buffer of `len` bytes, reused from the pool when one is there.
pub(crate) fn take(len: usize) -> Vec<u8> {
    let reused = POOL
        .try_with(|p| p.try_borrow_mut().ok().and_then(|mut p| p.pop()))
        .ok()
        .flatten();
    let mut buf = reused.unwrap_or_else(|| Vec::with_capacity(BUFFER_CAPACITY.max(len)));
    buf.clear();
    buf.resize(len, 0);
    buf
}

/// Hands a sent datagram's buffer back for str0m to encrypt the next one into.
///
/// Buffers smaller than [`BUFFER_CAPACITY`] are dropped rather than kept (they would
/// have to grow), as are buffers beyond [`MAX_POOLED`].
pub fn recycle_datagram(buf: Vec<u8>) {
    if buf.capacity() < BUFFER_CAPACITY {
        return;
    }
    let _ = POOL.try_with(|p| {
        if let Ok(mut p) = p.try_borrow_mut() {
            if p.len() < MAX_POOLED {
                if p.capacity() == 0 {
                    p.reserve_exact(MAX_POOLED);
                }
                p.push(buf);
            }
        }
    });
}

/// The most RTCP queues one thread keeps for reuse.
const MAX_POOLED_QUEUES: usize = 32;

thread_local! {
    static QUEUES: RefCell<Vec<VecDeque<Rtcp>>> = const { RefCell::new(Vec::new()) };
}

/// An empty RTCP queue with the capacity an earlier session on this thread grew, or a
/// new one.
///
/// A session's incoming and outgoing RTCP queues are empty between calls, but each
/// keeps the capacity it grew: 4–8 entries of about 1 KiB (an `Rtcp` holds up to 31
/// report blocks inline), 16 KiB per peer. Sessions now borrow a queue from here while
/// they fill and drain one and give it back once it is empty, so a thread keeps a few
/// queues however many peers it holds.
pub(crate) fn take_queue() -> VecDeque<Rtcp> {
    QUEUES
        .try_with(|q| q.try_borrow_mut().ok().and_then(|mut q| q.pop()))
        .ok()
        .flatten()
        .unwrap_or_default()
}

/// Gives an emptied queue back (see [`take_queue`]); one with entries or no capacity
/// is dropped.
pub(crate) fn give_queue(queue: VecDeque<Rtcp>) {
    if !queue.is_empty() || queue.capacity() == 0 {
        return;
    }
    let _ = QUEUES.try_with(|q| {
        if let Ok(mut q) = q.try_borrow_mut() {
            if q.len() < MAX_POOLED_QUEUES {
                if q.capacity() == 0 {
                    q.reserve_exact(MAX_POOLED_QUEUES);
                }
                q.push(queue);
            }
        }
    });
}
