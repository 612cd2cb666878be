//! Control's side of the dataplane RPC: one connection to `dataplane.rpc_address`, kept
//! up by a background task, with liveness checks and core placement.
//!
//! The task connects (retrying every second), asks `DATAPLANE_INFO`, and from then on
//! multiplexes requests by id, sends `PING` every second and declares the dataplane gone
//! when nothing has arrived for three. Going down fails every request in flight and tells
//! the [`Link`] listener (which ends the sessions that lived there); coming back is
//! noticed by the next successful connection.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use switchyard_dataplane_api::{
    encode, DataplaneInfo, Decoder, Event, Frame, Request, Response, RpcError, PROTOCOL_VERSION,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};

/// How often a `PING` goes out.
pub const PING_EVERY: Duration = Duration::from_secs(1);
/// Silence after which the dataplane is declared gone.
pub const DEAD_AFTER: Duration = Duration::from_secs(3);
/// How long a request may take.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a call to the dataplane failed.
#[derive(Debug, thiserror::Error)]
pub enum DataplaneError {
    /// No dataplane is connected.
    #[error("the media dataplane is not available; retry shortly")]
    Unavailable,
    /// It did not answer in time.
    #[error("the media dataplane did not answer in time")]
    Timeout,
    /// It answered with an error.
    #[error("{0}")]
    Rpc(RpcError),
    /// It answered something unexpected.
    #[error("unexpected answer from the dataplane: {0}")]
    Protocol(String),
}

/// What the dataplane link reports to the rest of control.
pub trait LinkListener: Send + Sync + 'static {
    /// The dataplane sent an event.
    fn on_event(&self, event: Event);
    /// The dataplane went away: every session on it is gone.
    fn on_down(&self);
    /// The dataplane is (back) up.
    fn on_up(&self, info: &DataplaneInfo);
}

struct Outgoing {
    req: Request,
    reply: oneshot::Sender<Result<Response, DataplaneError>>,
}

#[derive(Default)]
struct LinkState {
    tx: Option<mpsc::UnboundedSender<Outgoing>>,
    info: Option<DataplaneInfo>,
    loads: Vec<u32>,
    ups: u64,
}

/// The link to one dataplane.
pub struct Link {
    addr: SocketAddr,
    state: Mutex<LinkState>,
}

impl Link {
    /// A link to `addr`, not yet connected: call [`Link::spawn`].
    pub fn new(addr: SocketAddr) -> Arc<Self> {
        Arc::new(Link {
            addr,
            state: Mutex::new(LinkState::default()),
        })
    }

    fn st(&self) -> std::sync::MutexGuard<'_, LinkState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether a dataplane is connected now.
    pub fn is_up(&self) -> bool {
        self.st().tx.is_some()
    }

    /// How many times it has come up (a restart counts again).
    pub fn times_up(&self) -> u64 {
        self.st().ups
    }

    /// The connected dataplane's description.
    pub fn info(&self) -> Option<DataplaneInfo> {
        self.st().info.clone()
    }

    /// Picks the least-loaded core and counts the new peer on it.
    pub fn place(&self) -> Result<u16, DataplaneError> {
        let mut st = self.st();
        if st.tx.is_none() {
            return Err(DataplaneError::Unavailable);
        }
        let max = st
            .info
            .as_ref()
            .map(|i| i.max_peers_per_core)
            .unwrap_or(u32::MAX);
        let (core, load) = st
            .loads
            .iter()
            .enumerate()
            .min_by_key(|(_, l)| **l)
            .map(|(c, l)| (c, *l))
            .ok_or(DataplaneError::Unavailable)?;
        if load >= max {
            return Err(DataplaneError::Rpc(RpcError::new(
                switchyard_dataplane_api::ErrorCode::CoreUnavailable,
                "every dataplane core is full",
            )));
        }
        st.loads[core] += 1;
        Ok(core as u16)
    }

    /// A peer placed with [`Link::place`] is gone (or was never made).
    pub fn release(&self, core: u16) {
        let mut st = self.st();
        if let Some(l) = st.loads.get_mut(usize::from(core)) {
            *l = l.saturating_sub(1);
        }
    }

    /// One request, answered or failed within [`CALL_TIMEOUT`].
    pub async fn call(&self, req: Request) -> Result<Response, DataplaneError> {
        let tx = self.st().tx.clone().ok_or(DataplaneError::Unavailable)?;
        let (reply, rx) = oneshot::channel();
        tx.send(Outgoing { req, reply })
            .map_err(|_| DataplaneError::Unavailable)?;
        match tokio::time::timeout(CALL_TIMEOUT, rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(DataplaneError::Unavailable),
            Err(_) => Err(DataplaneError::Timeout),
        }
    }

    /// Keeps the link up for as long as the process runs.
    pub fn spawn(self: &Arc<Self>, listener: Arc<dyn LinkListener>) -> tokio::task::JoinHandle<()> {
        let link = self.clone();
        tokio::spawn(async move {
            let mut warned = false;
            loop {
                match tokio::time::timeout(
                    Duration::from_secs(1),
                    tokio::net::TcpStream::connect(link.addr),
                )
                .await
                {
                    Ok(Ok(stream)) => {
                        warned = false;
                        link.session(stream, &*listener).await;
                        let had = link.st().tx.take().is_some();
                        link.st().info = None;
                        if had {
                            tracing::warn!(dataplane = %link.addr, "media dataplane lost: ending its sessions");
                            listener.on_down();
                        }
                    }
                    _ => {
                        if !warned {
                            tracing::warn!(dataplane = %link.addr, "media dataplane not reachable; retrying every second");
                            warned = true;
                        }
                    }
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        })
    }

    async fn session(&self, stream: tokio::net::TcpStream, listener: &dyn LinkListener) {
        let _ = stream.set_nodelay(true);
        let (mut reader, mut writer) = stream.into_split();
        let (tx, mut rx) = mpsc::unbounded_channel::<Outgoing>();
        let mut pending: HashMap<u64, oneshot::Sender<Result<Response, DataplaneError>>> =
            HashMap::new();
        let mut next_id: u64 = 1;
        let mut decoder = Decoder::new();
        let mut buf = vec![0u8; 64 * 1024];
        let mut last_heard = Instant::now();
        let mut tick = tokio::time::interval(PING_EVERY);
        // The handshake goes first, through the same path as every request.
        let (hs_tx, hs_rx) = oneshot::channel();
        let _ = tx.send(Outgoing {
            req: Request::DataplaneInfo,
            reply: hs_tx,
        });
        let mut handshake = Some(hs_rx);
        let mut local_tx = Some(tx);
        loop {
            tokio::select! {
                out = rx.recv() => {
                    let Some(out) = out else { break };
                    let id = next_id;
                    next_id += 1;
                    let Ok(bytes) = encode(&Frame::Request { id, body: out.req }) else {
                        let _ = out.reply.send(Err(DataplaneError::Protocol("request too large".into())));
                        continue;
                    };
                    if writer.write_all(&bytes).await.is_err() {
                        let _ = out.reply.send(Err(DataplaneError::Unavailable));
                        break;
                    }
                    pending.insert(id, out.reply);
                }
                n = reader.read(&mut buf) => {
                    let n = match n { Ok(0) | Err(_) => break, Ok(n) => n };
                    last_heard = Instant::now();
                    decoder.push(&buf[..n]);
                    let mut broken = false;
                    loop {
                        match decoder.next_frame() {
                            Ok(Some(Frame::Response { id, body })) => {
                                if let Some(reply) = pending.remove(&id) {
                                    let _ = reply.send(match body {
                                        Response::Error(e) => Err(DataplaneError::Rpc(e)),
                                        other => Ok(other),
                                    });
                                }
                            }
                            Ok(Some(Frame::Event { body })) => listener.on_event(body),
                            Ok(Some(Frame::Request { .. })) => {}
                            Ok(None) => break,
                            Err(e) => {
                                tracing::warn!(error = %e, "undecodable frame from the dataplane");
                                broken = true;
                                break;
                            }
                        }
                    }
                    if broken {
                        break;
                    }
                    if let Some(mut hs) = handshake.take() {
                        match hs.try_recv() {
                            Ok(Ok(Response::DataplaneInfo(info))) => {
                                if info.protocol != PROTOCOL_VERSION {
                                    tracing::error!(theirs = info.protocol, ours = PROTOCOL_VERSION, "the dataplane speaks another protocol version");
                                    break;
                                }
                                tracing::info!(dataplane = %self.addr, cores = info.cores.len(), pid = info.pid, "media dataplane connected");
                                {
                                    let mut st = self.st();
                                    st.loads = info.cores.iter().map(|c| c.peers).collect();
                                    st.info = Some(info.clone());
                                    st.tx = local_tx.take();
                                    st.ups += 1;
                                }
                                listener.on_up(&info);
                            }
                            Ok(_) => break,
                            Err(oneshot::error::TryRecvError::Empty) => handshake = Some(hs),
                            Err(_) => break,
                        }
                    }
                }
                _ = tick.tick() => {
                    if last_heard.elapsed() > DEAD_AFTER {
                        tracing::warn!(dataplane = %self.addr, "no answer from the media dataplane for 3 s");
                        break;
                    }
                    let id = next_id;
                    next_id += 1;
                    if let Ok(bytes) = encode(&Frame::Request { id, body: Request::Ping }) {
                        if writer.write_all(&bytes).await.is_err() {
                            break;
                        }
                    }
                }
            }
        }
        for (_, reply) in pending {
            let _ = reply.send(Err(DataplaneError::Unavailable));
        }
    }
}
