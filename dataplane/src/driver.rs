//! The thin glommio loop of one core: it owns the core's sockets, timer and channels, and
//! feeds a [`Core`] (which does all the thinking) with what arrives.
//!
//! Tasks on the core's executor, all sharing the `Core` through a `RefCell` (one thread,
//! never held across an await): one receive loop per media socket, one timer loop, one
//! loop per other core's hand-off channel, and the command loop. After each input the
//! outbox is flushed at once: datagrams go out in batches of up to 64 with one non-blocking
//! `sendmmsg` on the same socket (a datagram the full socket buffer refuses is dropped and
//! counted), hand-offs go into bounded channels
//! (a full one drops and counts — a slow core never blocks this one), events go to the
//! management executor. Every [`LOAD_WINDOW`] the core is told its load (see
//! [`crate::load`]), which it uses to shed past saturation (see [`crate::overload`]).
//!
//! Added latency: one received datagram in [`LATENCY_SAMPLE_EVERY`] has its kernel receive
//! timestamp read (`SIOCGSTAMPNS`, taken when the datagram entered the network stack, so
//! time queued in the socket counts); each copy it caused is counted in the core's latency
//! histogram with the time from that stamp to the return of the `sendmmsg` that carried it
//! (so a fan-out to 200 shows how long its later copies wait behind the earlier ones).

use crate::core::{Command, Core, CoreEvent, CoreMsg, Datagram};
use crate::load::LoadMeter;
use crate::metrics::{CoreMetrics, DropReason};
use crate::overload::LOAD_WINDOW;
use glommio::channels::local_channel::{self, LocalSender};
use glommio::channels::shared_channel::{ConnectedSender, SharedReceiver, SharedSender};
use nix::sys::socket::{sendmmsg, ControlMessage, MsgFlags, MultiHeaders, SockaddrStorage};
use std::cell::RefCell;
use std::io::IoSlice;
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

/// The most datagrams handed to the kernel in one `sendmmsg`.
const SEND_BATCH: usize = 64;

/// A media socket's sending side: the socket and the `sendmmsg` headers, allocated once.
struct Sender {
    local: SocketAddr,
    socket: StdUdpSocket,
    headers: RefCell<MultiHeaders<SockaddrStorage>>,
}

struct Ctx {
    core: RefCell<Core>,
    send: Vec<Sender>,
    to_cores: Vec<Option<ConnectedSender<CoreMsg>>>,
    events: LocalSender<CoreEvent>,
    metrics: Arc<CoreMetrics>,
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
        let mut start = 0;
        while start < out.transmits.len() {
            // A run of datagrams from the same local address goes out in one batch.
            let from = out.transmits[start].from;
            let mut end = start + 1;
            while end < out.transmits.len()
                && end - start < SEND_BATCH
                && out.transmits[end].from == from
            {
                end += 1;
            }
            self.send_batch(&out.transmits[start..end], stamp);
            start = end;
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

    /// Sends datagrams that share a local address with as few `sendmmsg` calls as the
    /// kernel allows. A datagram the kernel refuses (a full socket buffer) is dropped and
    /// counted, as a lone `sendto` would be; the rest still go.
    fn send_batch(&self, batch: &[Datagram], stamp: Option<SystemTime>) {
        let Some(first) = batch.first() else {
            return;
        };
        let Some(sender) = self
            .send
            .iter()
            .find(|s| s.local == first.from)
            .or_else(|| self.send.first())
        else {
            self.metrics
                .dropped_n(DropReason::SendFailed, batch.len() as u64);
            return;
        };
        let mut headers = sender.headers.borrow_mut();
        let fd = sender.socket.as_raw_fd();
        let slices: [[IoSlice; 1]; SEND_BATCH] =
            std::array::from_fn(|i| [IoSlice::new(batch.get(i).map_or(&[][..], |d| &d.data[..]))]);
        let addrs: [Option<SockaddrStorage>; SEND_BATCH] =
            std::array::from_fn(|i| batch.get(i).map(|d| SockaddrStorage::from(d.to)));
        let cmsgs: [ControlMessage; 0] = [];
        let mut next = 0;
        while next < batch.len() {
            let sent = sendmmsg(
                fd,
                &mut headers,
                &slices[next..batch.len()],
                &addrs[next..batch.len()],
                cmsgs,
                MsgFlags::empty(),
            )
            .map(Iterator::count);
            match sent {
                Ok(n) if n > 0 => {
                    let bytes: usize = batch[next..next + n].iter().map(|d| d.data.len()).sum();
                    CoreMetrics::add(&self.metrics.packets_out, n as u64);
                    CoreMetrics::add(&self.metrics.bytes_out, bytes as u64);
                    if let Some(d) = stamp.and_then(|at| SystemTime::now().duration_since(at).ok())
                    {
                        self.metrics.forward_latency.record_n(d, n as u64);
                    }
                    next += n;
                }
                _ => {
                    self.metrics.dropped(DropReason::SendFailed);
                    next += 1;
                }
            }
        }
    }
}

/// Runs one core, pinned to `cpu`, until its command channel closes.
pub async fn run(
    cpu: usize,
    core: Core,
    sockets: Vec<MediaSocket>,
    links: CoreLinks,
    metrics: Arc<CoreMetrics>,
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
                send.push(Sender {
                    local: ms.local,
                    socket: std,
                    headers: RefCell::new(MultiHeaders::preallocate(SEND_BATCH, None)),
                });
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
            let mut buf = vec![0u8; 2048];
            let fd = sock.as_raw_fd();
            let mut sample = 0u32;
            loop {
                match sock.recv_from(&mut buf).await {
                    Ok((n, from)) => {
                        sample = (sample + 1) % LATENCY_SAMPLE_EVERY;
                        let stamp = if sample == 0 { receive_stamp(fd) } else { None };
                        let now = Instant::now();
                        ctx.core
                            .borrow_mut()
                            .handle_datagram(now, local, from, &buf[..n]);
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
