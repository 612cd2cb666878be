//! The thin glommio loop of one core: it owns the core's sockets, timer and channels, and
//! feeds a [`Core`] (which does all the thinking) with what arrives.
//!
//! Tasks on the core's executor, all sharing the `Core` through a `RefCell` (one thread,
//! never held across an await): one receive loop per media socket, one timer loop, one
//! loop per other core's hand-off channel, and the command loop. When a receive completes,
//! whatever else the socket already holds (up to 32 datagrams, one `recvmmsg`) is handled
//! too, and then the outbox is flushed at once: with `dataplane.udp_gso` [`crate::gso`]
//! groups the datagrams per subscriber — a frame's burst becomes one UDP GSO message — and
//! they go out with
//! non-blocking `sendmmsg`s of up to 64 messages on the same socket (a message the full
//! socket buffer refuses is dropped and counted), hand-offs go into bounded channels
//! (a full one drops and counts — a slow core never blocks this one), events go to the
//! management executor. Every [`LOAD_WINDOW`] the core is told its load (see
//! [`crate::load`]), which it uses to shed past saturation (see [`crate::overload`]).
//!
//! Added latency: one received datagram in [`LATENCY_SAMPLE_EVERY`] has its kernel receive
//! timestamp read (`SIOCGSTAMPNS`, taken when the datagram entered the network stack, so
//! time queued in the socket counts); each copy its flush sent (of the datagrams read with
//! it too, which arrived later: an upper bound) is counted in the core's latency
//! histogram with the time from that stamp to the return of the `sendmmsg` that carried it
//! (so a fan-out to 200 shows how long its later copies wait behind the earlier ones).

use crate::core::{Command, Core, CoreEvent, CoreMsg, Datagram};
use crate::gso::{Call, Message, Plan};
use crate::load::LoadMeter;
use crate::metrics::{CoreMetrics, DropReason};
use crate::overload::LOAD_WINDOW;
use glommio::channels::local_channel::{self, LocalSender};
use glommio::channels::shared_channel::{ConnectedSender, SharedReceiver, SharedSender};
use nix::sys::socket::{
    recvmmsg, sendmmsg, ControlMessage, MsgFlags, MultiHeaders, SockaddrStorage,
};
use std::cell::{Cell, RefCell};
use std::io::{IoSlice, IoSliceMut};
use std::net::{SocketAddr, UdpSocket as StdUdpSocket};
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The longest the timer loop sleeps without looking at the core.
const MAX_TICK: Duration = Duration::from_millis(20);

/// One received datagram in this many has its added latency measured.
pub const LATENCY_SAMPLE_EVERY: u32 = 4;

/// `SIOCGSTAMPNS` on 64-bit Linux (`SIOCGSTAMPNS_OLD`, a `struct timespec`): the receive
/// time of the last datagram read from the socket. The first call turns stamping on.
const SIOCGSTAMPNS: u64 = 0x8907;

/// The kernel's receive time of the last datagram read from `fd`, if it keeps one.
/// (nix has no wrapper for this request, and glommio's receive returns no control
/// messages, so `SO_TIMESTAMPNS` cannot be used instead.)
#[allow(unsafe_code)]
fn receive_stamp(fd: std::os::fd::RawFd) -> Option<SystemTime> {
    let mut ts = nix::libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: the request writes one `struct timespec` into the pointer given, which is
    // a live, properly aligned timespec; a bad fd only makes the call fail.
    let rc =
        unsafe { nix::libc::ioctl(fd, SIOCGSTAMPNS as _, &mut ts as *mut nix::libc::timespec) };
    if rc != 0 || ts.tv_sec <= 0 {
        return None;
    }
    let secs = u64::try_from(ts.tv_sec).ok()?;
    let nanos = u32::try_from(ts.tv_nsec).ok()?;
    Some(UNIX_EPOCH + Duration::new(secs, nanos))
}

/// A core's channels, made before its executor starts.
pub struct CoreLinks {
    /// Commands from the management executor.
    pub commands: SharedReceiver<Command>,
    /// Events to the management executor.
    pub events: SharedSender<CoreEvent>,
    /// Hand-offs to other cores, indexed by core (`None` for this one).
    pub to_cores: Vec<Option<SharedSender<CoreMsg>>>,
    /// Hand-offs from other cores.
    pub from_cores: Vec<SharedReceiver<CoreMsg>>,
}

/// A bound media socket.
pub struct MediaSocket {
    /// Its local address.
    pub local: SocketAddr,
    /// The socket.
    pub socket: socket2::Socket,
}

/// The most messages handed to the kernel in one `sendmmsg`.
const SEND_BATCH: usize = 64;

/// The most datagrams read with one `recvmmsg` after a receive completes.
const RECV_BATCH: usize = 32;

/// Room for one received datagram (media datagrams stay under the path MTU).
const RECV_SLOT: usize = 2048;

/// A media socket's sending side: the socket and the `sendmmsg` headers, allocated once.
struct Sender {
    local: SocketAddr,
    socket: StdUdpSocket,
    /// Headers for calls without control messages.
    plain: RefCell<MultiHeaders<SockaddrStorage>>,
    /// Headers with room for a `UDP_SEGMENT` control message each.
    segmented: RefCell<MultiHeaders<SockaddrStorage>>,
    /// The segments of a call's GSO messages, back to back (reused).
    joined: RefCell<Vec<u8>>,
}

impl Sender {
    fn new(local: SocketAddr, socket: StdUdpSocket) -> Sender {
        Sender {
            local,
            socket,
            plain: RefCell::new(MultiHeaders::preallocate(SEND_BATCH, None)),
            segmented: RefCell::new(MultiHeaders::preallocate(
                SEND_BATCH,
                Some(nix::cmsg_space!(u16)),
            )),
            joined: RefCell::new(Vec::new()),
        }
    }
}

/// A media socket's reading side beyond the awaited receive: `recvmmsg` buffers for what
/// else is already waiting, allocated once.
struct Drain {
    bufs: Vec<u8>,
    headers: MultiHeaders<SockaddrStorage>,
}

impl Drain {
    fn new() -> Drain {
        Drain {
            bufs: vec![0u8; RECV_BATCH * RECV_SLOT],
            headers: MultiHeaders::preallocate(RECV_BATCH, None),
        }
    }

    /// Reads, without waiting, up to [`RECV_BATCH`] datagrams the socket already holds and
    /// hands each to `each`.
    fn drain(&mut self, fd: std::os::fd::RawFd, mut each: impl FnMut(SocketAddr, &[u8])) {
        let mut got: [(usize, Option<SocketAddr>); RECV_BATCH] = [(0, None); RECV_BATCH];
        let count = {
            let mut chunks = self.bufs.chunks_mut(RECV_SLOT);
            let iovs: [[IoSliceMut; 1]; RECV_BATCH] =
                std::array::from_fn(|_| [IoSliceMut::new(chunks.next().unwrap_or_default())]);
            match recvmmsg(
                fd,
                &mut self.headers,
                iovs.iter(),
                MsgFlags::MSG_DONTWAIT,
                None,
            ) {
                Ok(results) => {
                    let mut n = 0;
                    for (slot, r) in got.iter_mut().zip(results) {
                        *slot = (r.bytes, r.address.as_ref().and_then(std_addr));
                        n += 1;
                    }
                    n
                }
                Err(_) => 0,
            }
        };
        for (k, (len, from)) in got.iter().take(count).enumerate() {
            if let (Some(from), Some(data)) =
                (from, self.bufs.get(k * RECV_SLOT..k * RECV_SLOT + len))
            {
                each(*from, data);
            }
        }
    }
}

/// A socket address from the kernel's, if it is IPv4 or IPv6.
fn std_addr(a: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = a.as_sockaddr_in() {
        return Some(SocketAddr::V4((*v4).into()));
    }
    a.as_sockaddr_in6().map(|v6| SocketAddr::V6((*v6).into()))
}

struct Ctx {
    core: RefCell<Core>,
    send: Vec<Sender>,
    to_cores: Vec<Option<ConnectedSender<CoreMsg>>>,
    events: LocalSender<CoreEvent>,
    metrics: Arc<CoreMetrics>,
    /// How the next flush goes out (reused).
    plan: RefCell<Plan>,
    /// Whether to send with UDP GSO: off by configuration, or once the kernel refused it.
    gso: Cell<bool>,
}

impl Ctx {
    /// Carries out what the core asked for. The outbox is emptied in place, so its
    /// buffers keep their capacity from one input to the next.
    fn flush(&self) {
        self.flush_stamped(None);
    }

    /// [`Self::flush`] for a datagram received at `stamp` (kernel time), whose copies are
    /// counted in the latency histogram if it is given.
    fn flush_stamped(&self, stamp: Option<SystemTime>) {
        let mut core = self.core.borrow_mut();
        let out = core.outbox_mut();
        {
            let mut plan = self.plan.borrow_mut();
            plan.make(&out.transmits, SEND_BATCH, self.gso.get());
            for call in &plan.calls {
                self.send_call(&out.transmits, &plan, *call, stamp);
            }
        }
        // Sent (or dropped): str0m encrypts the next datagrams into these buffers.
        for d in out.transmits.drain(..) {
            str0m::recycle_datagram(d.data);
        }
        for (to, msg) in out.to_cores.drain(..) {
            match self.to_cores.get(usize::from(to)).and_then(|s| s.as_ref()) {
                Some(s) => {
                    if s.try_send(msg).is_err() {
                        self.metrics.dropped(DropReason::CrossCoreFull);
                    }
                }
                None => self.metrics.dropped(DropReason::CrossCoreFull),
            }
        }
        for e in out.events.drain(..) {
            // Unbounded and local: events are few (peer set-up and teardown).
            let _ = self.events.try_send(e);
        }
    }

    /// Sends one planned call ([`Plan`]) with as few `sendmmsg` calls as the kernel
    /// allows. A message the kernel refuses (a full socket buffer) is dropped and counted,
    /// as a lone `sendto` would be; the rest still go. If the kernel refuses GSO itself (no
    /// support, or a device that cannot checksum), the core stops using it and sends the
    /// rest one datagram at a time.
    fn send_call(
        &self,
        datagrams: &[Datagram],
        plan: &Plan,
        call: Call,
        stamp: Option<SystemTime>,
    ) {
        let msgs = &plan.messages[call.start..call.end];
        let at = |m: &Message| datagrams.get(plan.order[m.start]);
        let Some(first) = msgs.first().and_then(at) else {
            return;
        };
        let count = |ms: &[Message]| ms.iter().map(Message::segments).sum::<usize>() as u64;
        let Some(sender) = self
            .send
            .iter()
            .find(|s| s.local == first.from)
            .or_else(|| self.send.first())
        else {
            self.metrics.dropped_n(DropReason::SendFailed, count(msgs));
            return;
        };
        // A GSO message's segments go back to back into one buffer: one iovec per message.
        let mut joined = sender.joined.borrow_mut();
        joined.clear();
        let mut spans = [(0usize, 0usize); SEND_BATCH];
        for (span, m) in spans.iter_mut().zip(msgs) {
            if m.segments() > 1 {
                let start = joined.len();
                for &i in &plan.order[m.start..m.end] {
                    if let Some(d) = datagrams.get(i) {
                        joined.extend_from_slice(&d.data);
                    }
                }
                *span = (start, joined.len() - start);
            }
        }
        let slices: [[IoSlice; 1]; SEND_BATCH] = std::array::from_fn(|k| {
            let bytes: &[u8] = match msgs.get(k) {
                Some(m) if m.segments() > 1 => joined
                    .get(spans[k].0..spans[k].0 + spans[k].1)
                    .unwrap_or_default(),
                Some(m) => at(m).map_or(&[][..], |d| &d.data[..]),
                None => &[],
            };
            [IoSlice::new(bytes)]
        });
        let addrs: [Option<SockaddrStorage>; SEND_BATCH] = std::array::from_fn(|k| {
            msgs.get(k)
                .and_then(at)
                .map(|d| SockaddrStorage::from(d.to))
        });
        let fd = sender.socket.as_raw_fd();
        let n = msgs.len();
        let mut next = 0;
        while next < n {
            // The segment size rides in each header's control message; calls without one
            // use headers that have no room for it.
            let size = call.gso.map(|s| u16::try_from(s).unwrap_or(u16::MAX));
            let gso = size.as_ref().map(ControlMessage::UdpGsoSegments);
            let (headers, cmsgs) = match &gso {
                Some(c) => (&sender.segmented, std::slice::from_ref(c)),
                None => (&sender.plain, &[][..]),
            };
            let sent = sendmmsg(
                fd,
                &mut headers.borrow_mut(),
                &slices[next..n],
                &addrs[next..n],
                cmsgs,
                MsgFlags::empty(),
            )
            .map(Iterator::count);
            match sent {
                Ok(k) if k > 0 => {
                    let done = &msgs[next..next + k];
                    let packets = count(done);
                    let bytes: u64 = done
                        .iter()
                        .flat_map(|m| &plan.order[m.start..m.end])
                        .filter_map(|&i| datagrams.get(i))
                        .map(|d| d.data.len() as u64)
                        .sum();
                    CoreMetrics::add(&self.metrics.packets_out, packets);
                    CoreMetrics::add(&self.metrics.bytes_out, bytes);
                    CoreMetrics::add(&self.metrics.send_messages, k as u64);
                    if let Some(d) = stamp.and_then(|at| SystemTime::now().duration_since(at).ok())
                    {
                        self.metrics.forward_latency.record_n(d, packets);
                    }
                    next += k;
                }
                // Only a message that is segmented says the kernel refuses GSO itself; an
                // error on a lone datagram is that datagram's (dropped below).
                Err(e) if msgs[next].segments() > 1 && gso_refused(e) => {
                    tracing::warn!(error = %e, "the kernel refused UDP GSO: this core sends one datagram at a time from now on");
                    self.gso.set(false);
                    let rest = msgs[next..]
                        .iter()
                        .flat_map(|m| &plan.order[m.start..m.end])
                        .filter_map(|&i| datagrams.get(i));
                    for d in rest {
                        match sender.socket.send_to(&d.data, d.to) {
                            Ok(_) => {
                                CoreMetrics::add(&self.metrics.packets_out, 1);
                                CoreMetrics::add(&self.metrics.bytes_out, d.data.len() as u64);
                                CoreMetrics::add(&self.metrics.send_messages, 1);
                            }
                            Err(_) => self.metrics.dropped(DropReason::SendFailed),
                        }
                    }
                    return;
                }
                _ => {
                    self.metrics
                        .dropped_n(DropReason::SendFailed, msgs[next].segments() as u64);
                    next += 1;
                }
            }
        }
    }
}

/// Whether a `sendmmsg` error means the kernel or the device cannot do UDP GSO.
fn gso_refused(e: nix::errno::Errno) -> bool {
    use nix::errno::Errno;
    matches!(
        e,
        Errno::EIO | Errno::EINVAL | Errno::ENOPROTOOPT | Errno::EOPNOTSUPP
    )
}

/// Runs one core, pinned to `cpu`, until its command channel closes.
pub async fn run(
    cpu: usize,
    core: Core,
    sockets: Vec<MediaSocket>,
    links: CoreLinks,
    metrics: Arc<CoreMetrics>,
    gso: bool,
) {
    // Connecting a shared channel waits for the other end to connect too: connect every
    // end at once, or two cores would wait on each other.
    let commands = glommio::spawn_local(links.commands.connect());
    let events_out = glommio::spawn_local(links.events.connect());
    let to_tasks: Vec<_> = links
        .to_cores
        .into_iter()
        .map(|s| s.map(|s| glommio::spawn_local(s.connect())))
        .collect();
    let from_tasks: Vec<_> = links
        .from_cores
        .into_iter()
        .map(|r| glommio::spawn_local(r.connect()))
        .collect();
    let commands = commands.await;
    let events_out = events_out.await;
    let mut to_cores = Vec::new();
    for t in to_tasks {
        to_cores.push(match t {
            Some(t) => Some(t.await),
            None => None,
        });
    }
    let mut from_cores = Vec::new();
    for t in from_tasks {
        from_cores.push(t.await);
    }
    let mut send = Vec::new();
    let mut recv = Vec::new();
    for ms in sockets {
        match ms.socket.try_clone() {
            Ok(dup) => {
                let std: StdUdpSocket = dup.into();
                if std.set_nonblocking(true).is_err() {
                    tracing::error!(addr = %ms.local, "cannot make the media socket non-blocking");
                    continue;
                }
                send.push(Sender::new(ms.local, std));
                recv.push((ms.local, glommio::net::UdpSocket::from(ms.socket)));
            }
            Err(e) => {
                tracing::error!(addr = %ms.local, error = %e, "cannot duplicate the media socket")
            }
        }
    }
    let (ev_tx, ev_rx) = local_channel::new_unbounded();
    let ctx = Rc::new(Ctx {
        core: RefCell::new(core),
        send,
        to_cores,
        events: ev_tx,
        metrics,
        plan: RefCell::new(Plan::default()),
        gso: Cell::new(gso),
    });

    glommio::spawn_local(async move {
        while let Some(e) = ev_rx.recv().await {
            if events_out.send(e).await.is_err() {
                break;
            }
        }
    })
    .detach();

    for (local, sock) in recv {
        let ctx = ctx.clone();
        glommio::spawn_local(async move {
            let mut buf = vec![0u8; RECV_SLOT];
            let mut more = Drain::new();
            let fd = sock.as_raw_fd();
            let mut sample = 0u32;
            loop {
                match sock.recv_from(&mut buf).await {
                    Ok((n, from)) => {
                        sample = (sample + 1) % LATENCY_SAMPLE_EVERY;
                        let stamp = if sample == 0 { receive_stamp(fd) } else { None };
                        let now = Instant::now();
                        {
                            let mut core = ctx.core.borrow_mut();
                            core.handle_datagram(now, local, from, &buf[..n]);
                            // What else already waits goes out in the same flush, so a
                            // frame's packets to one subscriber can share a GSO send.
                            more.drain(fd, |from, data| {
                                core.handle_datagram(now, local, from, data)
                            });
                        }
                        ctx.flush_stamped(stamp);
                    }
                    Err(e) => {
                        tracing::warn!(addr = %local, error = %e, "media socket receive failed");
                        glommio::timer::sleep(Duration::from_millis(10)).await;
                    }
                }
            }
        })
        .detach();
    }

    {
        let ctx = ctx.clone();
        glommio::spawn_local(async move {
            let mut window_start = Instant::now();
            let mut meter = LoadMeter::new(cpu, window_start);
            loop {
                let next = ctx.core.borrow().next_timeout();
                let now = Instant::now();
                let wait = match next {
                    Some(t) => t.saturating_duration_since(now).min(MAX_TICK),
                    None => MAX_TICK,
                };
                glommio::timer::sleep(wait.max(Duration::from_millis(1))).await;
                let now = Instant::now();
                ctx.core.borrow_mut().handle_timeout(now);
                ctx.flush();
                ctx.metrics.timer_work.record(now.elapsed());
                let window = now.saturating_duration_since(window_start);
                if window >= LOAD_WINDOW {
                    let load = meter.sample(now);
                    ctx.core.borrow_mut().handle_load(now, load);
                    ctx.flush();
                    window_start = now;
                }
            }
        })
        .detach();
    }

    for rx in from_cores {
        let ctx = ctx.clone();
        glommio::spawn_local(async move {
            while let Some(msg) = rx.recv().await {
                let now = Instant::now();
                ctx.core.borrow_mut().handle_core_msg(now, msg);
                ctx.flush();
            }
        })
        .detach();
    }

    while let Some(cmd) = commands.recv().await {
        ctx.core.borrow_mut().handle_command(Instant::now(), cmd);
        ctx.flush();
    }
}
