//! Heap memory per subscriber, measured by a global allocator that keeps every live
//! allocation made inside a core (peer creation, datagrams, timeouts, hand-offs) with its
//! size, until it is freed. A room of one publisher is brought to steady forwarding with
//! few subscribers and with many; the difference in live bytes, divided by the extra
//! subscribers, is what one subscriber keeps. Allocations of 1 KiB or more are charged to
//! the innermost Switchyard or str0m function on their stack, so the report says where the
//! memory is. The test holds the figure without packet caches at issue 7's goal of 64 KiB,
//! and with the RTX history at what it is today (see perf/README.md).
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failing test should panic

mod common;

use common::Net;
use std::alloc::{GlobalAlloc, Layout, System};
use std::backtrace::Backtrace;
use std::cell::Cell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;
use switchyard_dataplane::core::CoreSettings;

struct Tracking;

/// Whether the test thread is inside a core now.
static INSIDE: AtomicBool = AtomicBool::new(false);

/// Live allocations made inside a core: address → (size, site).
struct Live {
    blocks: HashMap<usize, (usize, usize)>,
    sites: Vec<String>,
    site_ids: HashMap<String, usize>,
}

static LIVE: Mutex<Option<Live>> = Mutex::new(None);

thread_local! {
    /// Set while the allocator keeps its books (the books allocate too).
    static BOOKKEEPING: Cell<bool> = const { Cell::new(false) };
}

/// Site 0: allocations under 1 KiB, not traced (most allocations; a backtrace each would
/// take minutes).
const SMALL: usize = 0;
const TRACED_FROM: usize = 1024;

/// The innermost Switchyard or str0m function on the stack.
fn site_name() -> String {
    let trace = Backtrace::force_capture().to_string();
    trace
        .lines()
        .filter_map(|l| l.trim().split_once(": ").map(|(_, f)| f))
        .find(|f| f.contains("switchyard_dataplane::") || f.contains("str0m"))
        .map(|f| {
            // Drop the symbol hash.
            match f.rsplit_once("::h") {
                Some((name, hash)) if hash.len() == 16 => name.to_string(),
                _ => f.to_string(),
            }
        })
        .unwrap_or_else(|| "elsewhere".to_string())
}

fn record(ptr: *mut u8, size: usize) {
    if ptr.is_null() || !INSIDE.load(Ordering::Relaxed) {
        return;
    }
    if BOOKKEEPING.with(|b| b.replace(true)) {
        return;
    }
    let name = (size >= TRACED_FROM).then(site_name);
    let mut live = LIVE.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(live) = live.as_mut() {
        let site = match name {
            None => SMALL,
            Some(n) => match live.site_ids.get(&n) {
                Some(id) => *id,
                None => {
                    let id = live.sites.len();
                    live.sites.push(n.clone());
                    live.site_ids.insert(n, id);
                    id
                }
            },
        };
        live.blocks.insert(ptr as usize, (size, site));
    }
    drop(live);
    BOOKKEEPING.with(|b| b.set(false));
}

/// Forgets a freed block; answers the site it was charged to, if it was tracked.
fn forget(ptr: *mut u8) -> Option<usize> {
    if BOOKKEEPING.with(|b| b.replace(true)) {
        return None;
    }
    let site = LIVE
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_mut()
        .and_then(|l| l.blocks.remove(&(ptr as usize)))
        .map(|(_, s)| s);
    BOOKKEEPING.with(|b| b.set(false));
    site
}

// SAFETY: every call is passed on to the system allocator unchanged; the books are kept
// beside it.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Tracking {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc(layout);
        record(p, layout.size());
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        forget(ptr);
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let was = forget(ptr);
        let p = System.realloc(ptr, layout, new_size);
        if was.is_some() && !INSIDE.load(Ordering::Relaxed) {
            // A core's block grown outside a core stays the core's.
            INSIDE.store(true, Ordering::Relaxed);
            record(p, new_size);
            INSIDE.store(false, Ordering::Relaxed);
        } else {
            record(p, new_size);
        }
        p
    }
}

#[global_allocator]
static GLOBAL: Tracking = Tracking;

fn inside(on: bool) {
    INSIDE.store(on, Ordering::Relaxed);
}

/// Live bytes inside the cores, by site.
fn live_by_site() -> HashMap<String, usize> {
    BOOKKEEPING.with(|b| b.set(true));
    let mut out = HashMap::new();
    if let Some(live) = LIVE.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
        for (size, site) in live.blocks.values() {
            let name = if *site == SMALL {
                "(blocks under 1 KiB)".to_string()
            } else {
                live.sites[*site].clone()
            };
            *out.entry(name).or_insert(0) += size;
        }
    }
    BOOKKEEPING.with(|b| b.set(false));
    out
}

/// One publisher and `subscribers` subscribers on one core, forwarding for 6 s of virtual
/// time (audio every 20 ms, a two-packet video frame every 40 ms); the live bytes inside
/// the core, by site.
fn room(subscribers: usize, history: Duration) -> HashMap<String, usize> {
    set_books(Some(Live {
        blocks: HashMap::new(),
        sites: vec!["(blocks under 1 KiB)".into()],
        site_ids: HashMap::new(),
    }));
    let mut net = Net::with_settings(
        1,
        CoreSettings {
            retransmit_history: history,
            ..CoreSettings::default()
        },
    );
    net.around_core = Some(inside);
    let (mut net, p, subs) = common::one_publisher_room_on(net, subscribers);
    assert_eq!(subs.len(), subscribers);
    for i in 0..300 {
        net.frame(p, i, &[0x10; 1800]);
    }
    let forwarded = net.metrics[0]
        .rtp_forwarded
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        forwarded >= 400 * subscribers as u64,
        "forwarded {forwarded}"
    );
    let live = live_by_site();
    drop(net);
    set_books(None);
    live
}

/// Replaces the books; the old ones are freed outside the lock (freeing consults it).
fn set_books(books: Option<Live>) {
    let old = std::mem::replace(&mut *LIVE.lock().unwrap_or_else(|e| e.into_inner()), books);
    BOOKKEEPING.with(|b| b.set(true));
    drop(old);
    BOOKKEEPING.with(|b| b.set(false));
}

/// Bytes per extra subscriber between a room of `few` and one of `many`, with the sites
/// that hold most of it.
fn per_subscriber(few: usize, many: usize, history: Duration) -> f64 {
    let a = room(few, history);
    let b = room(many, history);
    let extra = (many - few) as f64;
    let mut sites: Vec<(String, f64)> = b
        .iter()
        .map(|(k, v)| {
            let before = a.get(k).copied().unwrap_or(0) as f64;
            (k.clone(), (*v as f64 - before) / extra)
        })
        .filter(|(_, v)| v.abs() >= 512.0)
        .collect();
    sites.sort_by(|x, y| y.1.total_cmp(&x.1));
    let total = (b.values().sum::<usize>() as f64 - a.values().sum::<usize>() as f64) / extra;
    println!(
        "RTX history {} ms: {:.1} KiB of heap per subscriber ({few} → {many} subscribers); \
         where (KiB per subscriber):",
        history.as_millis(),
        total / 1024.0
    );
    for (site, v) in sites.iter().take(12) {
        println!("  {:>7.1}  {site}", v / 1024.0);
    }
    total
}

/// The counters are global: one test counts at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

#[test]
fn heap_per_subscriber_without_packet_caches() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let kib = per_subscriber(2, 12, Duration::ZERO) / 1024.0;
    assert!(
        kib > 4.0,
        "a subscriber keeps {kib:.1} KiB: the books miss it"
    );
    assert!(kib <= LIMIT_NO_CACHE_KIB, "a subscriber keeps {kib:.1} KiB");
}

#[test]
fn heap_per_subscriber_with_the_rtx_history() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let kib = per_subscriber(2, 12, Duration::from_secs(1)) / 1024.0;
    assert!(
        kib <= LIMIT_WITH_CACHE_KIB,
        "a subscriber keeps {kib:.1} KiB"
    );
}

/// Issue 7's goal for what a subscriber keeps with no packet cache. Measured 39 KiB
/// (str0m's `Rtc`, its streams, SRTP and DTLS state; the thread's pooled datagram buffers
/// count too, 4.6 KiB per subscriber here though bounded per thread; aws-lc's own heap, C
/// code, is not seen here). It was 42 KiB while both SRTP contexts of a session kept a
/// 2 KiB decryption scratch though only the receive context of a publisher decrypts RTP; 44 KiB while
/// every `Rtc` held an SCTP association's room inline (1.5 KiB, for data channels that
/// Switchyard's peers never open); 46 KiB while
/// a stream's send queue kept the room of the packets written before its first timeout
/// (eight packet records, 3.2 KiB, though it then holds one at a time); 50 KiB while
/// str0m's `Rtc` held a bandwidth estimator and a probe stream inline (10.1 KiB, now 6.3)
/// though only sessions with bandwidth adaptation use them; 60 KiB while
/// str0m kept a stream's sent bytes per packet for 1 s (3 KiB at this test's rate, 12 KiB at
/// 2.5 Mbit/s), an RTX ring for its padding stream (4.2 KiB) and its streams inline in a
/// table with empty slots (3.6 KiB); 82 KiB while
/// every session kept its own RTCP queues (16 KiB) and an empty RTX ring (13 KiB), and
/// 172 KiB while subscribers without bandwidth adaptation negotiated TWCC.
const LIMIT_NO_CACHE_KIB: f64 = 64.0;
/// The same with one second of RTX history at this test's rate (≈ 0.5 Mbit/s of video):
/// 60 KiB today (64, 65, 67, 71, 81, then 99 before the changes above), and a tenth more.
const LIMIT_WITH_CACHE_KIB: f64 = 66.0;
