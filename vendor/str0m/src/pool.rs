//! Switchyard addition: a per-thread pool of RTCP queues.
//!
//! The pool is per thread, which suits a thread-per-core server: a session borrows a
//! queue on the thread that runs it and gives it back there.

use std::cell::RefCell;
use std::collections::VecDeque;

use crate::rtp_::Rtcp;

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
