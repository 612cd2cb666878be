//! The management executor: control's RPC, the publication registry, metrics over HTTP.
//!
//! It runs on its own (unpinned) glommio executor, off the packet path. It accepts one
//! control connection at a time on `dataplane.rpc_address`, turns `PEER_CREATE` and
//! `PEER_CLOSE` into commands for the right core, remembers which core each publication
//! lives on (so that a subscriber on another core can be given its codecs and home), and
//! relays the cores' events to control. When control's connection drops, every peer is
//! closed: sessions belong to control.

use crate::core::{Command, CoreEvent, PublicationSpec};
use crate::metrics::{render, CoreMetrics};
use futures_channel::oneshot;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::channels::local_channel::{self, LocalSender};
use glommio::channels::shared_channel::{ConnectedSender, SharedReceiver, SharedSender};
use std::cell::RefCell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use switchyard_dataplane_api::{
    encode, CoreInfo, DataplaneInfo, Decoder, ErrorCode, Event, Frame, PeerRole, Request, Response,
    RpcError, PROTOCOL_VERSION,
};

/// How long a core may take to answer a command.
const CORE_TIMEOUT: Duration = Duration::from_secs(10);

/// What the management executor needs.
pub struct MgmtSetup {
    /// Where control connects.
    pub rpc_address: SocketAddr,
    /// Where Prometheus scrapes, if anywhere.
    pub metrics_address: Option<SocketAddr>,
    /// The cores, for `DATAPLANE_INFO`.
    pub cores: Vec<CoreInfo>,
    /// Commands to each core.
    pub commands: Vec<SharedSender<Command>>,
    /// Events from each core.
    pub events: Vec<SharedReceiver<CoreEvent>>,
    /// Each core's counters.
    pub metrics: Vec<Arc<CoreMetrics>>,
    /// The most peers per core.
    pub max_peers_per_core: u32,
    /// Set by the signal handler: close everything and return.
    pub shutdown: Arc<AtomicBool>,
    /// Told once the listeners are bound (or why they could not be).
    pub ready: std::sync::mpsc::Sender<Result<(), String>>,
}

struct PublicationEntry {
    spec: PublicationSpec,
    subscribers: HashMap<String, u16>,
}

struct PeerEntry {
    core: u16,
    publication: String,
    publisher: bool,
}

struct PendingCreate {
    reply: oneshot::Sender<Response>,
    peer: String,
    core: u16,
    publication: String,
    publisher: bool,
}

#[derive(Default)]
struct State {
    publications: HashMap<String, PublicationEntry>,
    peers: HashMap<String, PeerEntry>,
    creating: HashMap<u64, PendingCreate>,
    closing: HashMap<u64, oneshot::Sender<Response>>,
    next_token: u64,
    control: Option<Rc<LocalSender<Frame>>>,
}

struct Mgmt {
    state: RefCell<State>,
    commands: Vec<ConnectedSender<Command>>,
    cores: Vec<CoreInfo>,
    metrics: Vec<Arc<CoreMetrics>>,
    max_peers_per_core: u32,
}

impl Mgmt {
    fn token(&self) -> u64 {
        let mut st = self.state.borrow_mut();
        st.next_token += 1;
        st.next_token
    }

    fn tell_control(&self, event: Event) {
        if let Some(c) = &self.state.borrow().control {
            let _ = c.try_send(Frame::Event { body: event });
        }
    }

    fn info(&self) -> DataplaneInfo {
        let cores = self
            .cores
            .iter()
            .zip(&self.metrics)
            .map(|(c, m)| CoreInfo {
                peers: m.peers.load(Ordering::Relaxed) as u32,
                ..c.clone()
            })
            .collect();
        DataplaneInfo {
            protocol: PROTOCOL_VERSION,
            version: env!("CARGO_PKG_VERSION").into(),
            pid: std::process::id(),
            cores,
            max_peers_per_core: self.max_peers_per_core,
        }
    }

    async fn send(&self, core: u16, cmd: Command) -> Result<(), RpcError> {
        match self.commands.get(usize::from(core)) {
            Some(c) => c
                .send(cmd)
                .await
                .map_err(|_| RpcError::new(ErrorCode::Internal, "the core stopped")),
            None => Err(RpcError::new(
                ErrorCode::CoreUnavailable,
                format!("there is no core {core}"),
            )),
        }
    }

    async fn wait(rx: oneshot::Receiver<Response>) -> Response {
        let timeout = async {
            glommio::timer::sleep(CORE_TIMEOUT).await;
            Response::Error(RpcError::new(
                ErrorCode::Internal,
                "the core did not answer in time",
            ))
        };
        let answer = async {
            rx.await.unwrap_or_else(|_| {
                Response::Error(RpcError::new(
                    ErrorCode::Internal,
                    "the core dropped the request",
                ))
            })
        };
        futures_lite::future::or(answer, timeout).await
    }

    async fn handle(&self, req: Request) -> Response {
        match req {
            Request::Ping => Response::Pong,
            Request::DataplaneInfo => Response::DataplaneInfo(self.info()),
            Request::PeerCreate(pc) => {
                let (publication, publisher) = match &pc.role {
                    PeerRole::Publisher { publication, .. } => (publication.clone(), true),
                    PeerRole::Subscriber { publication, .. } => (publication.clone(), false),
                };
                let spec = {
                    let st = self.state.borrow();
                    if st.peers.contains_key(&pc.peer) {
                        return Response::Error(RpcError::new(
                            ErrorCode::PeerExists,
                            format!("peer {} exists", pc.peer),
                        ));
                    }
                    match (publisher, st.publications.get(&publication)) {
                        (true, Some(_)) => {
                            return Response::Error(RpcError::new(
                                ErrorCode::PeerExists,
                                format!("publication {publication} exists"),
                            ))
                        }
                        (true, None) => None,
                        (false, Some(p)) => Some(p.spec.clone()),
                        (false, None) => {
                            return Response::Error(RpcError::new(
                                ErrorCode::UnknownPublication,
                                format!("publication {publication} does not exist"),
                            ))
                        }
                    }
                };
                let token = self.token();
                let (tx, rx) = oneshot::channel();
                let core = pc.core;
                self.state.borrow_mut().creating.insert(
                    token,
                    PendingCreate {
                        reply: tx,
                        peer: pc.peer.clone(),
                        core,
                        publication,
                        publisher,
                    },
                );
                if let Err(e) = self
                    .send(
                        core,
                        Command::CreatePeer {
                            token,
                            req: pc,
                            publication: spec,
                        },
                    )
                    .await
                {
                    self.state.borrow_mut().creating.remove(&token);
                    return Response::Error(e);
                }
                Self::wait(rx).await
            }
            Request::PeerClose { peer } => {
                let Some(core) = self.state.borrow().peers.get(&peer).map(|p| p.core) else {
                    return Response::Error(RpcError::new(
                        ErrorCode::UnknownPeer,
                        format!("peer {peer} does not exist"),
                    ));
                };
                let token = self.token();
                let (tx, rx) = oneshot::channel();
                self.state.borrow_mut().closing.insert(token, tx);
                if let Err(e) = self
                    .send(
                        core,
                        Command::ClosePeer {
                            token: Some(token),
                            peer,
                            reason: "closed by control".into(),
                        },
                    )
                    .await
                {
                    self.state.borrow_mut().closing.remove(&token);
                    return Response::Error(e);
                }
                Self::wait(rx).await
            }
        }
    }

    /// Bookkeeping for what a core reports; returns close commands to send.
    fn on_event(&self, ev: CoreEvent) -> Vec<(u16, Command)> {
        let mut follow = Vec::new();
        let mut st = self.state.borrow_mut();
        match ev {
            CoreEvent::Created { token, result } => {
                let Some(p) = st.creating.remove(&token) else {
                    return follow;
                };
                let resp = match result {
                    Ok((created, spec)) => {
                        if let Some(spec) = spec {
                            st.publications.insert(
                                p.publication.clone(),
                                PublicationEntry {
                                    spec,
                                    subscribers: HashMap::new(),
                                },
                            );
                        } else if let Some(entry) = st.publications.get_mut(&p.publication) {
                            entry.subscribers.insert(p.peer.clone(), p.core);
                        } else {
                            // The publication ended while the subscriber was being made.
                            follow.push((
                                p.core,
                                Command::ClosePeer {
                                    token: None,
                                    peer: p.peer.clone(),
                                    reason: "publication ended".into(),
                                },
                            ));
                        }
                        st.peers.insert(
                            p.peer,
                            PeerEntry {
                                core: p.core,
                                publication: p.publication,
                                publisher: p.publisher,
                            },
                        );
                        Response::PeerCreated(created)
                    }
                    Err(e) => Response::Error(e),
                };
                let _ = p.reply.send(resp);
            }
            CoreEvent::Connected { peer } => {
                drop(st);
                self.tell_control(Event::PeerConnected { peer });
                return follow;
            }
            CoreEvent::Closed {
                token,
                peer,
                reason,
                ..
            } => {
                if let Some(entry) = st.peers.remove(&peer) {
                    if entry.publisher {
                        if let Some(publication) = st.publications.remove(&entry.publication) {
                            for (sub, core) in publication.subscribers {
                                follow.push((
                                    core,
                                    Command::ClosePeer {
                                        token: None,
                                        peer: sub,
                                        reason: "publication ended".into(),
                                    },
                                ));
                            }
                        }
                    } else if let Some(p) = st.publications.get_mut(&entry.publication) {
                        p.subscribers.remove(&peer);
                    }
                }
                match token.and_then(|t| st.closing.remove(&t)) {
                    Some(reply) => {
                        let _ = reply.send(Response::PeerClosed);
                    }
                    None => {
                        drop(st);
                        self.tell_control(Event::PeerClosed { peer, reason });
                        return follow;
                    }
                }
            }
        }
        follow
    }
}

/// Runs the management executor until shutdown.
pub async fn run(setup: MgmtSetup) {
    // Connect every channel end at once (each connect waits for its other end).
    let command_tasks: Vec<_> = setup
        .commands
        .into_iter()
        .map(|c| glommio::spawn_local(c.connect()))
        .collect();
    let event_tasks: Vec<_> = setup
        .events
        .into_iter()
        .map(|e| glommio::spawn_local(e.connect()))
        .collect();
    let mut commands = Vec::new();
    for t in command_tasks {
        commands.push(t.await);
    }
    let mut events = Vec::new();
    for t in event_tasks {
        events.push(t.await);
    }
    let mgmt = Rc::new(Mgmt {
        state: RefCell::new(State::default()),
        commands,
        cores: setup.cores,
        metrics: setup.metrics,
        max_peers_per_core: setup.max_peers_per_core,
    });

    for rx in events {
        let mgmt = mgmt.clone();
        glommio::spawn_local(async move {
            while let Some(ev) = rx.recv().await {
                for (core, cmd) in mgmt.on_event(ev) {
                    let _ = mgmt.send(core, cmd).await;
                }
            }
        })
        .detach();
    }

    let listener = match glommio::net::TcpListener::bind(setup.rpc_address) {
        Ok(l) => l,
        Err(e) => {
            let _ = setup.ready.send(Err(format!(
                "dataplane.rpc_address {}: {e}",
                setup.rpc_address
            )));
            return;
        }
    };
    if let Some(addr) = setup.metrics_address {
        match glommio::net::TcpListener::bind(addr) {
            Ok(l) => {
                let metrics = mgmt.metrics.clone();
                glommio::spawn_local(serve_metrics(l, metrics)).detach();
            }
            Err(e) => {
                let _ = setup
                    .ready
                    .send(Err(format!("dataplane.metrics_address {addr}: {e}")));
                return;
            }
        }
    }
    let _ = setup.ready.send(Ok(()));

    {
        let mgmt = mgmt.clone();
        glommio::spawn_local(async move {
            loop {
                match listener.accept().await {
                    Ok(stream) => {
                        let peer = stream.peer_addr().ok();
                        tracing::info!(control = ?peer, "control connected");
                        serve_control(mgmt.clone(), stream).await;
                        tracing::warn!(control = ?peer, "control disconnected: closing every peer");
                        for core in 0..mgmt.commands.len() {
                            let _ = mgmt.send(core as u16, Command::CloseAll).await;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "accepting control's connection failed");
                        glommio::timer::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        })
        .detach();
    }

    while !setup.shutdown.load(Ordering::Relaxed) {
        glommio::timer::sleep(Duration::from_millis(100)).await;
    }
    tracing::info!("shutting down: closing every peer");
    for core in 0..mgmt.commands.len() {
        let _ = mgmt.send(core as u16, Command::CloseAll).await;
    }
    glommio::timer::sleep(Duration::from_millis(300)).await;
}

async fn serve_control(mgmt: Rc<Mgmt>, stream: glommio::net::TcpStream) {
    let _ = stream.set_nodelay(true);
    let (mut reader, mut writer) = futures_lite::io::split(stream);
    let (out_tx, out_rx) = local_channel::new_unbounded::<Frame>();
    let out_tx = Rc::new(out_tx);
    mgmt.state.borrow_mut().control = Some(out_tx.clone());
    let writer_task = glommio::spawn_local(async move {
        while let Some(frame) = out_rx.recv().await {
            let Ok(bytes) = encode(&frame) else { continue };
            if writer.write_all(&bytes).await.is_err() {
                break;
            }
        }
    });
    let mut decoder = Decoder::new();
    let mut buf = vec![0u8; 64 * 1024];
    'conn: loop {
        let n = match reader.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        decoder.push(&buf[..n]);
        loop {
            match decoder.next_frame() {
                Ok(Some(Frame::Request { id, body })) => {
                    let mgmt = mgmt.clone();
                    let out = out_tx.clone();
                    glommio::spawn_local(async move {
                        let body = mgmt.handle(body).await;
                        let _ = out.try_send(Frame::Response { id, body });
                    })
                    .detach();
                }
                Ok(Some(other)) => {
                    tracing::warn!(frame = ?other, "unexpected frame from control, ignored")
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "undecodable frame from control: dropping the connection");
                    break 'conn;
                }
            }
        }
    }
    mgmt.state.borrow_mut().control = None;
    drop(out_tx);
    writer_task.cancel().await;
}

async fn serve_metrics(listener: glommio::net::TcpListener, metrics: Vec<Arc<CoreMetrics>>) {
    loop {
        let Ok(mut stream) = listener.accept().await else {
            glommio::timer::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let metrics = metrics.clone();
        glommio::spawn_local(async move {
            let mut req = Vec::new();
            let mut buf = [0u8; 1024];
            while !req.windows(4).any(|w| w == b"\r\n\r\n") && req.len() < 8192 {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => req.extend_from_slice(&buf[..n]),
                }
            }
            let first = String::from_utf8_lossy(&req).lines().next().unwrap_or("").to_string();
            let (status, body) = if first.starts_with("GET /metrics ") {
                ("200 OK", render(&metrics))
            } else {
                ("404 Not Found", "see /metrics\n".to_string())
            };
            let resp = format!(
                "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(resp.as_bytes()).await;
            let _ = stream.close().await;
        })
        .detach();
    }
}
