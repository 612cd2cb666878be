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
    encode, Binding, CoreInfo, DataplaneInfo, Decoder, ErrorCode, Event, Frame, Request, Response,
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

/// What a request's bindings need: the specs of the publications they play, and the
/// cores of the selections they compete in.
type Checked = (Vec<PublicationSpec>, Vec<(String, u16)>);

struct PublicationEntry {
    spec: PublicationSpec,
    /// Subscription id → the peer it is on.
    subscribers: HashMap<String, String>,
}

struct SubscriptionEntry {
    peer: String,
    publication: String,
    core: u16,
}

struct PendingCreate {
    reply: oneshot::Sender<Response>,
    peer: String,
    core: u16,
    subscriptions: Vec<(String, String)>,
}

#[derive(Default)]
struct State {
    publications: HashMap<String, PublicationEntry>,
    /// Peer → its core.
    peers: HashMap<String, u16>,
    subscriptions: HashMap<String, SubscriptionEntry>,
    creating: HashMap<u64, PendingCreate>,
    waiting: HashMap<u64, oneshot::Sender<Response>>,
    /// Active-speaker selection → the core it is ranked on, and its slot streams.
    selections: HashMap<String, (u16, Vec<String>)>,
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

fn err(code: ErrorCode, msg: impl Into<String>) -> Response {
    Response::Error(RpcError::new(code, msg))
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
            err(ErrorCode::Internal, "the core did not answer in time")
        };
        let answer = async {
            rx.await
                .unwrap_or_else(|_| err(ErrorCode::Internal, "the core dropped the request"))
        };
        futures_lite::future::or(answer, timeout).await
    }

    /// Sends a command whose answer comes back under `token` in `waiting`.
    async fn ask(&self, core: u16, cmd: impl FnOnce(u64) -> Command) -> Response {
        let token = self.token();
        let (tx, rx) = oneshot::channel();
        self.state.borrow_mut().waiting.insert(token, tx);
        if let Err(e) = self.send(core, cmd(token)).await {
            self.state.borrow_mut().waiting.remove(&token);
            return Response::Error(e);
        }
        Self::wait(rx).await
    }

    /// Checks a request's bindings against the registry; the specs its subscriptions need
    /// and the cores of the selections its publications compete in.
    fn check_bindings(&self, bindings: &[Binding]) -> Result<Checked, Response> {
        let st = self.state.borrow();
        let mut specs = Vec::new();
        let mut selections = Vec::new();
        for b in bindings {
            match b {
                Binding::Publish {
                    publication,
                    selection,
                    ..
                } => {
                    if st.publications.contains_key(publication) {
                        return Err(err(
                            ErrorCode::PeerExists,
                            format!("publication {publication} exists"),
                        ));
                    }
                    if let Some(s) = selection {
                        let Some(core) = st.selections.get(s) else {
                            return Err(err(
                                ErrorCode::BadRequest,
                                format!("selection {s} does not exist: create it first"),
                            ));
                        };
                        selections.push((s.clone(), core.0));
                    }
                }
                Binding::Subscribe {
                    subscription,
                    publication,
                    ..
                } => {
                    if st.subscriptions.contains_key(subscription) {
                        return Err(err(
                            ErrorCode::PeerExists,
                            format!("subscription {subscription} exists"),
                        ));
                    }
                    match st.publications.get(publication) {
                        Some(p) => specs.push(p.spec.clone()),
                        None => {
                            return Err(err(
                                ErrorCode::UnknownPublication,
                                format!("publication {publication} does not exist"),
                            ))
                        }
                    }
                }
            }
        }
        Ok((specs, selections))
    }

    async fn create(
        &self,
        peer: String,
        core: u16,
        bindings: &[Binding],
        cmd: impl FnOnce(u64, Checked) -> Command,
    ) -> Response {
        let checked = match self.check_bindings(bindings) {
            Ok(s) => s,
            Err(r) => return r,
        };
        let subscriptions = bindings
            .iter()
            .filter_map(|b| match b {
                Binding::Subscribe {
                    subscription,
                    publication,
                    ..
                } => Some((subscription.clone(), publication.clone())),
                _ => None,
            })
            .collect();
        let token = self.token();
        let (tx, rx) = oneshot::channel();
        self.state.borrow_mut().creating.insert(
            token,
            PendingCreate {
                reply: tx,
                peer,
                core,
                subscriptions,
            },
        );
        if let Err(e) = self.send(core, cmd(token, checked)).await {
            self.state.borrow_mut().creating.remove(&token);
            return Response::Error(e);
        }
        Self::wait(rx).await
    }

    async fn handle(&self, req: Request) -> Response {
        match req {
            Request::Ping => Response::Pong,
            Request::DataplaneInfo => Response::DataplaneInfo(self.info()),
            Request::PeerCreate(pc) => {
                if self.state.borrow().peers.contains_key(&pc.peer) {
                    return err(ErrorCode::PeerExists, format!("peer {} exists", pc.peer));
                }
                let (peer, core, bindings) = (pc.peer.clone(), pc.core, pc.bindings.clone());
                self.create(peer, core, &bindings, |token, (specs, selections)| {
                    Command::CreatePeer {
                        token,
                        req: pc,
                        specs,
                        selections,
                    }
                })
                .await
            }
            Request::PeerOffer(po) => {
                let Some(core) = self.state.borrow().peers.get(&po.peer).copied() else {
                    return err(
                        ErrorCode::UnknownPeer,
                        format!("peer {} does not exist", po.peer),
                    );
                };
                let (peer, bindings) = (po.peer.clone(), po.bindings.clone());
                self.create(peer, core, &bindings, |token, (specs, selections)| {
                    Command::Offer {
                        token,
                        req: po,
                        specs,
                        selections,
                    }
                })
                .await
            }
            Request::PeerUnbind { peer, id } => {
                let Some(core) = self.state.borrow().peers.get(&peer).copied() else {
                    return err(
                        ErrorCode::UnknownPeer,
                        format!("peer {peer} does not exist"),
                    );
                };
                self.ask(core, |token| Command::Unbind {
                    token: Some(token),
                    peer,
                    id,
                    reason: "ended by control".into(),
                })
                .await
            }
            Request::PeerClose { peer } => {
                let Some(core) = self.state.borrow().peers.get(&peer).copied() else {
                    return err(
                        ErrorCode::UnknownPeer,
                        format!("peer {peer} does not exist"),
                    );
                };
                self.ask(core, |token| Command::ClosePeer {
                    token: Some(token),
                    peer,
                    reason: "closed by control".into(),
                })
                .await
            }
            Request::PublicationControl {
                publication,
                audio,
                video,
            } => {
                let Some(core) = self
                    .state
                    .borrow()
                    .publications
                    .get(&publication)
                    .map(|p| p.spec.home)
                else {
                    return err(
                        ErrorCode::UnknownPublication,
                        format!("publication {publication} does not exist"),
                    );
                };
                self.ask(core, |token| Command::PublicationControl {
                    token,
                    publication,
                    audio,
                    video,
                })
                .await
            }
            Request::SubscriptionControl {
                subscription,
                audio,
                video,
            } => match self.core_of_subscription(&subscription) {
                Ok(core) => {
                    self.ask(core, |token| Command::SubscriptionControl {
                        token,
                        subscription,
                        audio,
                        video,
                    })
                    .await
                }
                Err(e) => e,
            },
            Request::SelectionCreate {
                selection,
                slots,
                core,
            } => {
                if usize::from(core) >= self.commands.len() {
                    return err(
                        ErrorCode::CoreUnavailable,
                        format!("core {core} does not exist"),
                    );
                }
                if slots.is_empty() || slots.len() > 16 {
                    return err(ErrorCode::BadRequest, "a selection has 1 to 16 slots");
                }
                if self.state.borrow().selections.contains_key(&selection) {
                    // Idempotent: it exists (on the core it was made on).
                    return Response::Done;
                }
                {
                    let mut st = self.state.borrow_mut();
                    if let Some(s) = slots.iter().find(|s| st.publications.contains_key(*s)) {
                        return err(ErrorCode::PeerExists, format!("publication {s} exists"));
                    }
                    let opus: Vec<_> = crate::peer::all_codecs()
                        .params()
                        .iter()
                        .filter(|p| p.spec().codec == str0m::format::Codec::Opus)
                        .copied()
                        .collect();
                    for slot in &slots {
                        st.publications.insert(
                            slot.clone(),
                            PublicationEntry {
                                spec: PublicationSpec {
                                    id: Arc::from(slot.as_str()),
                                    home: core,
                                    params: opus.clone(),
                                    audio: true,
                                    video: false,
                                    rids: Vec::new(),
                                },
                                subscribers: HashMap::new(),
                            },
                        );
                    }
                    st.selections
                        .insert(selection.clone(), (core, slots.clone()));
                }
                self.ask(core, |token| Command::SelectionCreate {
                    token,
                    selection,
                    slots,
                })
                .await
            }
            Request::SelectionClose { selection } => {
                let Some((core, slots)) = self.state.borrow_mut().selections.remove(&selection)
                else {
                    return err(
                        ErrorCode::UnknownPublication,
                        format!("selection {selection} does not exist"),
                    );
                };
                let answer = self
                    .ask(core, |token| Command::SelectionClose {
                        token,
                        selection: selection.clone(),
                    })
                    .await;
                // The slots' subscriptions end with them.
                let mut follow = Vec::new();
                {
                    let mut st = self.state.borrow_mut();
                    for slot in slots {
                        Self::end_publication(&mut st, &slot, &mut follow);
                    }
                }
                for (c, cmd) in follow {
                    let _ = self.send(c, cmd).await;
                }
                answer
            }
            Request::SubscriptionUpdate { subscription, cap } => {
                match self.core_of_subscription(&subscription) {
                    Ok(core) => {
                        self.ask(core, |token| Command::SubscriptionUpdate {
                            token,
                            subscription,
                            cap,
                        })
                        .await
                    }
                    Err(e) => e,
                }
            }
            Request::SubscriptionQuery { subscription } => {
                match self.core_of_subscription(&subscription) {
                    Ok(core) => {
                        self.ask(core, |token| Command::SubscriptionQuery {
                            token,
                            subscription,
                        })
                        .await
                    }
                    Err(e) => e,
                }
            }
        }
    }

    /// The core a subscription is on, or the error answer.
    fn core_of_subscription(&self, subscription: &str) -> Result<u16, Response> {
        self.state
            .borrow()
            .subscriptions
            .get(subscription)
            .map(|s| s.core)
            .ok_or_else(|| {
                err(
                    ErrorCode::UnknownPeer,
                    format!("subscription {subscription} does not exist"),
                )
            })
    }

    /// Every subscription of an ended publication must end too.
    fn end_publication(st: &mut State, publication: &str, follow: &mut Vec<(u16, Command)>) {
        if let Some(entry) = st.publications.remove(publication) {
            for (sub, peer) in entry.subscribers {
                if let Some(s) = st.subscriptions.get(&sub) {
                    follow.push((
                        s.core,
                        Command::Unbind {
                            token: None,
                            peer,
                            id: sub,
                            reason: "publication ended".into(),
                        },
                    ));
                }
            }
        }
    }

    fn forget_subscription(st: &mut State, sub: &str) {
        if let Some(s) = st.subscriptions.remove(sub) {
            if let Some(p) = st.publications.get_mut(&s.publication) {
                p.subscribers.remove(sub);
            }
        }
    }

    /// Bookkeeping for what a core reports; returns commands to send as a result.
    fn on_event(&self, ev: CoreEvent) -> Vec<(u16, Command)> {
        let mut follow = Vec::new();
        let mut tell = None;
        {
            let mut st = self.state.borrow_mut();
            match ev {
                CoreEvent::Created { token, result } => {
                    let Some(p) = st.creating.remove(&token) else {
                        return follow;
                    };
                    let resp = match result {
                        Ok((created, specs)) => {
                            st.peers.insert(p.peer.clone(), p.core);
                            for spec in specs {
                                st.publications.insert(
                                    spec.id.to_string(),
                                    PublicationEntry {
                                        spec,
                                        subscribers: HashMap::new(),
                                    },
                                );
                            }
                            for (sub, publication) in p.subscriptions {
                                match st.publications.get_mut(&publication) {
                                    Some(entry) => {
                                        entry.subscribers.insert(sub.clone(), p.peer.clone());
                                        st.subscriptions.insert(
                                            sub,
                                            SubscriptionEntry {
                                                peer: p.peer.clone(),
                                                publication,
                                                core: p.core,
                                            },
                                        );
                                    }
                                    // The publication ended while the subscription was being made.
                                    None => follow.push((
                                        p.core,
                                        Command::Unbind {
                                            token: None,
                                            peer: p.peer.clone(),
                                            id: sub,
                                            reason: "publication ended".into(),
                                        },
                                    )),
                                }
                            }
                            Response::PeerCreated(created)
                        }
                        Err(e) => Response::Error(e),
                    };
                    let _ = p.reply.send(resp);
                }
                CoreEvent::Done { token, result } => {
                    if let Some(reply) = st.waiting.remove(&token) {
                        let _ = reply.send(match result {
                            Ok(()) => Response::Done,
                            Err(e) => Response::Error(e),
                        });
                    }
                }
                CoreEvent::State { token, result } => {
                    if let Some(reply) = st.waiting.remove(&token) {
                        let _ = reply.send(match result {
                            Ok(state) => Response::SubscriptionState(state),
                            Err(e) => Response::Error(e),
                        });
                    }
                }
                CoreEvent::Connected { peer } => tell = Some(Event::PeerConnected { peer }),
                CoreEvent::SelectionChanged {
                    selection,
                    slot,
                    input,
                    major,
                } => {
                    tell = Some(Event::SelectionChanged {
                        selection: selection.to_string(),
                        slot: slot.to_string(),
                        input: input.map(|i| i.to_string()),
                        major,
                    })
                }
                CoreEvent::Unbound {
                    token,
                    peer,
                    id,
                    publication,
                    reason,
                } => {
                    if publication {
                        Self::end_publication(&mut st, &id, &mut follow);
                    } else {
                        Self::forget_subscription(&mut st, &id);
                    }
                    match token.and_then(|t| st.waiting.remove(&t)) {
                        Some(reply) => {
                            let _ = reply.send(Response::Done);
                        }
                        None => {
                            tell = Some(Event::Unbound {
                                peer,
                                id: id.to_string(),
                                reason,
                            })
                        }
                    }
                }
                CoreEvent::Closed {
                    token,
                    peer,
                    publications,
                    reason,
                } => {
                    st.peers.remove(&peer);
                    for publication in &publications {
                        Self::end_publication(&mut st, publication, &mut follow);
                    }
                    let subs: Vec<String> = st
                        .subscriptions
                        .iter()
                        .filter(|(_, s)| s.peer == peer)
                        .map(|(id, _)| id.clone())
                        .collect();
                    for sub in subs {
                        Self::forget_subscription(&mut st, &sub);
                    }
                    match token.and_then(|t| st.waiting.remove(&t)) {
                        Some(reply) => {
                            let _ = reply.send(Response::PeerClosed);
                        }
                        None => tell = Some(Event::PeerClosed { peer, reason }),
                    }
                }
            }
        }
        if let Some(e) = tell {
            self.tell_control(e);
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
                        // Selections belong to control too: a reconnected one makes its own.
                        let mut st = mgmt.state.borrow_mut();
                        let ended: Vec<(String, Vec<String>)> = st
                            .selections
                            .drain()
                            .map(|(s, (_, slots))| (s, slots))
                            .collect();
                        for (_, slots) in ended {
                            for slot in slots {
                                st.publications.remove(&slot);
                            }
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
