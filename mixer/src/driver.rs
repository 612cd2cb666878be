//! The thin driver of a view: a thread of its own (decoding, composing and encoding are
//! CPU work that must not hold up other views), its two UDP sockets, its timer, and the
//! commands control's RPC sends it. Everything else is [`crate::view::View`].
//!
//! The sockets are read by tasks on the mixer's shared runtime, not by the view's thread:
//! a view that cannot keep up with its inputs (more to decode than its CPU share allows)
//! must not stop reading, or the kernel's full receive buffer drops the dataplane's STUN
//! responses with the video, ICE gives up, and the view's connections end. The readers
//! hand every STUN, DTLS and RTCP datagram on, and RTP only while fewer than
//! [`MAX_MEDIA_BACKLOG`] wait for the view: past that, media is dropped (counted, and a
//! warning logged once per [`OVERFLOW_REPORT`]) and the decoder asks for a keyframe — a
//! busy view shows fewer, fresher frames and stays connected.

use crate::view::View;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchyard_dataplane::demux::{classify, PacketClass};
use switchyard_mixer_api::{Client, Event, Input, Offer, ViewSpec};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};

/// RTP datagrams that may wait for a busy view (about a second of a 2.5 Mbit/s video
/// input); more are dropped until it catches up.
pub const MAX_MEDIA_BACKLOG: usize = 512;

/// RTP datagrams a view takes between two looks at its timers and control datagrams.
const MEDIA_BATCH: usize = 32;

/// How often a view that drops input reports it.
pub const OVERFLOW_REPORT: Duration = Duration::from_secs(5);

/// A datagram one of the view's sockets received.
struct Received {
    client: Client,
    from: SocketAddr,
    data: Vec<u8>,
}

/// Where the readers put what they receive: control (STUN, DTLS, RTCP), which the view
/// takes first, and media (RTP).
#[derive(Clone)]
struct ToView {
    control: mpsc::UnboundedSender<Received>,
    media: mpsc::UnboundedSender<Received>,
}

/// What the readers and the view share: how many RTP datagrams wait, how many were
/// dropped.
#[derive(Default)]
struct Backlog {
    media: AtomicUsize,
    dropped: AtomicU64,
}

/// What control asks of a running view.
pub enum Command {
    /// The dataplane's answer to a client's offer.
    Answer {
        /// The client.
        client: Client,
        /// The SDP.
        sdp: String,
        /// Done, or why not.
        reply: oneshot::Sender<Result<(), String>>,
    },
    /// Mix a stream.
    AddInput {
        /// The input.
        input: Input,
        /// The input client's offer, or why not.
        reply: oneshot::Sender<Result<Offer, String>>,
    },
    /// Publish what a listener hears.
    AddListener {
        /// The listener.
        listener: String,
        /// The inputs it does not hear.
        excluded: Vec<String>,
        /// The output client's offer, or why not.
        reply: oneshot::Sender<Result<Offer, String>>,
    },
    /// A listener's own inputs changed.
    UpdateListener {
        /// The listener.
        listener: String,
        /// The inputs it does not hear.
        excluded: Vec<String>,
    },
    /// Stop a listener's audio.
    RemoveListener {
        /// The listener.
        listener: String,
    },
    /// Stop mixing a stream.
    RemoveInput {
        /// Its stream id.
        stream: String,
    },
    /// New layout settings.
    Update {
        /// The view as it is now.
        spec: ViewSpec,
    },
    /// End the view.
    Close,
}

/// A running view.
pub struct ViewHandle {
    tx: mpsc::UnboundedSender<Command>,
}

impl ViewHandle {
    /// Sends a command (lost if the view has ended: its `VIEW_CLOSED` says so).
    pub fn send(&self, cmd: Command) {
        let _ = self.tx.send(cmd);
    }
}

/// Why a view could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Its sockets could not be bound.
    #[error("cannot bind the view's sockets on {ip}: {source} (check mixer.media_ip)")]
    Bind {
        /// The address.
        ip: IpAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The view refused its spec.
    #[error("{0}")]
    View(#[from] crate::view::ViewError),
    /// Its thread could not start.
    #[error("cannot start the view's thread: {0}")]
    Thread(std::io::Error),
    /// Called outside the mixer's runtime (which reads the view's sockets).
    #[error("a view starts only on the mixer's runtime")]
    NoRuntime,
}

fn bind(ip: IpAddr) -> Result<std::net::UdpSocket, StartError> {
    let s = std::net::UdpSocket::bind(SocketAddr::new(ip, 0))
        .map_err(|source| StartError::Bind { ip, source })?;
    s.set_nonblocking(true)
        .map_err(|source| StartError::Bind { ip, source })?;
    Ok(s)
}

/// Starts a view on a thread of its own, mixing the `speakers` loudest inputs; its events
/// go to `events`. Returns its handle and the output client's first offer.
pub fn start(
    spec: ViewSpec,
    ip: IpAddr,
    speakers: usize,
    events: mpsc::UnboundedSender<Event>,
) -> Result<(ViewHandle, Offer), StartError> {
    let out_sock = bind(ip)?;
    let in_sock = bind(ip)?;
    let local = |s: &std::net::UdpSocket| {
        s.local_addr()
            .map_err(|source| StartError::Bind { ip, source })
    };
    let (view, offer) = View::new(
        spec,
        speakers,
        local(&out_sock)?,
        local(&in_sock)?,
        Instant::now(),
    )?;
    let runtime = tokio::runtime::Handle::try_current().map_err(|_| StartError::NoRuntime)?;
    let register = |s: std::net::UdpSocket| {
        let _guard = runtime.enter();
        UdpSocket::from_std(s)
            .map(Arc::new)
            .map_err(|source| StartError::Bind { ip, source })
    };
    let (out_sock, in_sock) = (register(out_sock)?, register(in_sock)?);
    let (control_tx, control_rx) = mpsc::unbounded_channel();
    let (media_tx, media_rx) = mpsc::unbounded_channel();
    let to_view = ToView {
        control: control_tx,
        media: media_tx,
    };
    let backlog = Arc::new(Backlog::default());
    for (client, sock) in [(Client::Output, &out_sock), (Client::Input, &in_sock)] {
        runtime.spawn(read(client, sock.clone(), to_view.clone(), backlog.clone()));
    }
    let (tx, rx) = mpsc::unbounded_channel();
    let name = format!("view {}", view.id());
    std::thread::Builder::new()
        .name(name.chars().take(15).collect())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    tracing::error!(error = %e, "cannot start a view's runtime");
                    return;
                }
            };
            let sockets = Sockets {
                output: out_sock,
                input: in_sock,
                control: control_rx,
                media: media_rx,
                backlog,
            };
            rt.block_on(run(view, sockets, rx, events));
        })
        .map_err(StartError::Thread)?;
    Ok((ViewHandle { tx }, offer))
}

/// Reads one of a view's sockets until the view ends (its receiving end is dropped).
async fn read(client: Client, sock: Arc<UdpSocket>, to_view: ToView, backlog: Arc<Backlog>) {
    let mut buf = vec![0u8; 2048];
    loop {
        tokio::select! {
            r = sock.recv_from(&mut buf) => {
                let Ok((n, from)) = r else { continue };
                let data = &buf[..n];
                let media = classify(data) == PacketClass::Rtp;
                if media && backlog.media.load(Ordering::Relaxed) >= MAX_MEDIA_BACKLOG {
                    backlog.dropped.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                let received = Received { client, from, data: data.to_vec() };
                let sent = if media {
                    backlog.media.fetch_add(1, Ordering::Relaxed);
                    to_view.media.send(received)
                } else {
                    to_view.control.send(received)
                };
                if sent.is_err() {
                    return;
                }
            }
            _ = to_view.control.closed() => return,
        }
    }
}

/// A view's sockets, as its thread sees them.
struct Sockets {
    output: Arc<UdpSocket>,
    input: Arc<UdpSocket>,
    control: mpsc::UnboundedReceiver<Received>,
    media: mpsc::UnboundedReceiver<Received>,
    backlog: Arc<Backlog>,
}

async fn run(
    mut view: View,
    mut sockets: Sockets,
    mut rx: mpsc::UnboundedReceiver<Command>,
    events: mpsc::UnboundedSender<Event>,
) {
    let id = view.id().to_string();
    let mut reported_drops = 0;
    let mut next_report = Instant::now() + OVERFLOW_REPORT;
    loop {
        let now = Instant::now();
        let next = view.handle_timeout(now);
        for (client, sock) in [
            (Client::Output, &sockets.output),
            (Client::Input, &sockets.input),
        ] {
            while let Some((to, data)) = view.take_transmit(client) {
                // UDP: a full socket buffer drops the datagram, as the network would.
                let _ = sock.try_send_to(&data, to);
            }
        }
        while let Some(e) = view.poll_event() {
            let _ = events.send(e);
        }
        if view.is_closed() {
            break;
        }
        if now >= next_report {
            next_report = now + OVERFLOW_REPORT;
            let dropped = sockets.backlog.dropped.load(Ordering::Relaxed);
            if dropped > reported_drops {
                tracing::warn!(view = %id, dropped = dropped - reported_drops, "the view could not keep up with its inputs and dropped media (it asks for keyframes)");
                reported_drops = dropped;
            }
        }
        // Control datagrams and commands first: a view busy with media still answers.
        tokio::select! {
            biased;
            Some(r) = sockets.control.recv() => {
                // All that waits: one heavy tick per datagram would let STUN responses
                // queue behind RTCP until ICE gives up.
                view.receive(r.client, Instant::now(), r.from, &r.data);
                while let Ok(r) = sockets.control.try_recv() {
                    view.receive(r.client, Instant::now(), r.from, &r.data);
                }
            }
            cmd = rx.recv() => {
                let now = Instant::now();
                match cmd {
                    Some(Command::Answer { client, sdp, reply }) => {
                        let _ = reply.send(view.answer(client, &sdp, now).map_err(|e| e.to_string()));
                    }
                    Some(Command::AddInput { input, reply }) => {
                        let _ = reply.send(view.add_input(&input, now).map_err(|e| e.to_string()));
                    }
                    Some(Command::AddListener { listener, excluded, reply }) => {
                        let _ = reply.send(view.add_listener(&listener, &excluded, now).map_err(|e| e.to_string()));
                    }
                    Some(Command::UpdateListener { listener, excluded }) => view.update_listener(&listener, &excluded),
                    Some(Command::RemoveListener { listener }) => view.remove_listener(&listener),
                    Some(Command::RemoveInput { stream }) => view.remove_input(&stream, now),
                    Some(Command::Update { spec }) => view.update(&spec),
                    Some(Command::Close) | None => break,
                }
            }
            Some(r) = sockets.media.recv() => {
                let mut batch = Some(r);
                for _ in 0..MEDIA_BATCH {
                    let Some(r) = batch.take().or_else(|| sockets.media.try_recv().ok()) else {
                        break;
                    };
                    sockets.backlog.media.fetch_sub(1, Ordering::Relaxed);
                    view.receive(r.client, Instant::now(), r.from, &r.data);
                }
            }
            _ = tokio::time::sleep_until(next.into()) => {}
        }
    }
    tracing::info!(view = %id, "view ended");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rtp(seq: u16) -> Vec<u8> {
        let mut p = vec![0u8; 100];
        p[0] = 0x80;
        p[1] = 96;
        p[2..4].copy_from_slice(&seq.to_be_bytes());
        p
    }

    /// A STUN binding success response (header only).
    const STUN: [u8; 20] = [
        0x01, 0x01, 0, 0, 0x21, 0x12, 0xA4, 0x42, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12,
    ];

    /// Sends `seqs` from `sender`, pausing every 50 so that the reader (on this test's
    /// one thread) empties the kernel's buffer before it fills.
    async fn flood(sender: &std::net::UdpSocket, to: SocketAddr, seqs: std::ops::Range<u16>) {
        for seq in seqs {
            sender.send_to(&rtp(seq), to).unwrap();
            if seq % 50 == 0 {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
    }

    async fn until(what: &str, mut done: impl FnMut() -> bool) {
        let end = Instant::now() + Duration::from_secs(10);
        while !done() {
            assert!(Instant::now() < end, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[tokio::test]
    async fn a_view_that_falls_behind_loses_media_but_never_stun() {
        let sock = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
        let addr = sock.local_addr().unwrap();
        let (control, mut control_rx) = mpsc::unbounded_channel();
        let (media, mut media_rx) = mpsc::unbounded_channel();
        let backlog = Arc::new(Backlog::default());
        let reader = tokio::spawn(read(
            Client::Input,
            sock,
            ToView { control, media },
            backlog.clone(),
        ));
        let sender = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let waiting = |b: &Backlog| {
            (
                b.media.load(Ordering::Relaxed),
                b.dropped.load(Ordering::Relaxed),
            )
        };

        // The view takes nothing: past the limit, RTP is dropped and counted...
        let extra = 200u16;
        let limit = u16::try_from(MAX_MEDIA_BACKLOG).unwrap();
        flood(&sender, addr, 0..limit + extra).await;
        // ...and a STUN response that comes after the flood still gets through.
        sender.send_to(&STUN, addr).unwrap();
        let stun = tokio::time::timeout(Duration::from_secs(10), control_rx.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(stun.data, STUN);
        assert!(matches!(stun.client, Client::Input));
        until("the flood to be read", || {
            let (m, d) = waiting(&backlog);
            m + d as usize == usize::from(limit + extra)
        })
        .await;
        assert_eq!(waiting(&backlog), (MAX_MEDIA_BACKLOG, u64::from(extra)));
        // What waits is the oldest, in order.
        for seq in 0..100u16 {
            let r = media_rx.try_recv().unwrap();
            assert_eq!(r.data, rtp(seq));
            backlog.media.fetch_sub(1, Ordering::Relaxed);
        }

        // Once the view has caught up a little, media is taken again.
        flood(&sender, addr, 1000..1100).await;
        until("the second flood to be read", || {
            waiting(&backlog).0 == MAX_MEDIA_BACKLOG
        })
        .await;
        assert_eq!(
            waiting(&backlog).1,
            u64::from(extra),
            "nothing more dropped"
        );

        // The view ending ends its readers.
        drop((control_rx, media_rx));
        tokio::time::timeout(Duration::from_secs(5), reader)
            .await
            .unwrap()
            .unwrap();
    }
}
