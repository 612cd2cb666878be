//! The thin driver of a view: a thread of its own (decoding, composing and encoding are
//! CPU work that must not hold up other views), its two UDP sockets, its timer, and the
//! commands control's RPC sends it. Everything else is [`crate::view::View`].

use crate::view::View;
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;
use switchyard_mixer_api::{Client, Event, Input, Offer, ViewSpec};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};

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
            rt.block_on(run(view, out_sock, in_sock, rx, events));
        })
        .map_err(StartError::Thread)?;
    Ok((ViewHandle { tx }, offer))
}

async fn run(
    mut view: View,
    out_sock: std::net::UdpSocket,
    in_sock: std::net::UdpSocket,
    mut rx: mpsc::UnboundedReceiver<Command>,
    events: mpsc::UnboundedSender<Event>,
) {
    let (Ok(out_sock), Ok(in_sock)) = (UdpSocket::from_std(out_sock), UdpSocket::from_std(in_sock))
    else {
        let _ = events.send(Event::ViewClosed {
            view: view.id().to_string(),
            reason: "its sockets could not be registered".into(),
        });
        return;
    };
    let id = view.id().to_string();
    let mut out_buf = vec![0u8; 2048];
    let mut in_buf = vec![0u8; 2048];
    loop {
        let next = view.handle_timeout(Instant::now());
        for (client, sock) in [(Client::Output, &out_sock), (Client::Input, &in_sock)] {
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
        tokio::select! {
            r = out_sock.recv_from(&mut out_buf) => {
                if let Ok((n, from)) = r {
                    view.receive(Client::Output, Instant::now(), from, &out_buf[..n]);
                }
            }
            r = in_sock.recv_from(&mut in_buf) => {
                if let Ok((n, from)) = r {
                    view.receive(Client::Input, Instant::now(), from, &in_buf[..n]);
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
            _ = tokio::time::sleep_until(next.into()) => {}
        }
    }
    tracing::info!(view = %id, "view ended");
}
