//! Control's side of a worker RPC (the dataplane's, the mixer's): one connection to the
//! worker's address, kept up by a background task, with liveness checks.
//!
//! The task connects (retrying every second), sends the worker's handshake request, and
//! from then on multiplexes requests by id, sends a ping every second and declares the
//! worker gone when nothing has arrived for three. Going down fails every request in
//! flight and tells the [`LinkListener`] (which ends what lived there); coming back is
//! noticed by the next successful connection. What differs between workers — their
//! messages, their handshake, what their errors are — is a [`Protocol`].

use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use switchyard_rpc::{encode, Decoder, Frame};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};

/// How often a ping goes out.
pub const PING_EVERY: Duration = Duration::from_secs(1);
/// Silence after which the worker is declared gone.
pub const DEAD_AFTER: Duration = Duration::from_secs(3);
/// How long a request may take.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// A worker's RPC as the link needs to know it.
pub trait Protocol: Send + Sync + 'static {
    /// What control sends.
    type Request: Serialize + Send + Sync + 'static;
    /// What the worker answers.
    type Response: DeserializeOwned + Send + Sync + 'static;
    /// What the worker says on its own.
    type Event: DeserializeOwned + Send + Sync + 'static;
    /// The worker's description, from its handshake.
    type Info: Clone + Send + Sync + 'static;
    /// An error answer.
    type Error: std::fmt::Display + std::fmt::Debug + Send + Sync + 'static;
    /// The worker's name in logs and messages ("media dataplane").
    const NAME: &'static str;
    /// The handshake request.
    fn hello() -> Self::Request;
    /// The liveness request.
    fn ping() -> Self::Request;
    /// The worker's description from the handshake's answer, or why it is refused.
    fn welcome(answer: Self::Response) -> Result<Self::Info, String>;
    /// An answer, or the error it carries.
    fn split(answer: Self::Response) -> Result<Self::Response, Self::Error>;
    /// How many units of work the worker has (its cores, for placement), from its
    /// description.
    fn slots(_info: &Self::Info) -> Vec<u32> {
        Vec::new()
    }
}

/// Why a call to a worker failed.
pub enum LinkError<P: Protocol> {
    /// No worker is connected.
    Unavailable,
    /// It did not answer in time.
    Timeout,
    /// It answered with an error.
    Rpc(P::Error),
    /// It answered something unexpected.
    Protocol(String),
}

impl<P: Protocol> std::fmt::Display for LinkError<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LinkError::Unavailable => write!(f, "the {} is not available; retry shortly", P::NAME),
            LinkError::Timeout => write!(f, "the {} did not answer in time", P::NAME),
            LinkError::Rpc(e) => write!(f, "{e}"),
            LinkError::Protocol(s) => write!(f, "unexpected answer from the {}: {s}", P::NAME),
        }
    }
}

impl<P: Protocol> std::fmt::Debug for LinkError<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

impl<P: Protocol> std::error::Error for LinkError<P> {}

/// What a link reports to the rest of control.
pub trait LinkListener<P: Protocol>: Send + Sync + 'static {
    /// The worker sent an event.
    fn on_event(&self, event: P::Event);
    /// The worker went away: everything on it is gone.
    fn on_down(&self);
    /// The worker is (back) up.
    fn on_up(&self, info: &P::Info);
}

/// Where a request's answer goes.
type Reply<P> = oneshot::Sender<Result<<P as Protocol>::Response, LinkError<P>>>;

struct Outgoing<P: Protocol> {
    req: P::Request,
    reply: Reply<P>,
}

pub(crate) struct LinkState<P: Protocol> {
    tx: Option<mpsc::UnboundedSender<Outgoing<P>>>,
    pub(crate) info: Option<P::Info>,
    pub(crate) loads: Vec<u32>,
    /// Where each placed peer is: its slot and its room (dataplane placement).
    pub(crate) placed: HashMap<String, Placed>,
    ups: u64,
}

/// A placed peer's slot and room.
#[derive(Debug, Clone)]
pub(crate) struct Placed {
    pub(crate) slot: u16,
    pub(crate) room: String,
}

/// The link to one worker.
pub struct Link<P: Protocol> {
    addr: SocketAddr,
    state: Mutex<LinkState<P>>,
}

impl<P: Protocol> Link<P> {
    /// A link to `addr`, not yet connected: call [`Link::spawn`].
    pub fn new(addr: SocketAddr) -> Arc<Self> {
        Arc::new(Link {
            addr,
            state: Mutex::new(LinkState {
                tx: None,
                info: None,
                loads: Vec::new(),
                placed: HashMap::new(),
                ups: 0,
            }),
        })
    }

    pub(crate) fn st(&self) -> std::sync::MutexGuard<'_, LinkState<P>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the worker is connected now.
    pub fn is_up(&self) -> bool {
        self.st().tx.is_some()
    }

    /// How many times it has come up (a restart counts again).
    pub fn times_up(&self) -> u64 {
        self.st().ups
    }

    /// The connected worker's description.
    pub fn info(&self) -> Option<P::Info> {
        self.st().info.clone()
    }

    /// One request, answered or failed within [`CALL_TIMEOUT`].
    pub async fn call(&self, req: P::Request) -> Result<P::Response, LinkError<P>> {
        let tx = self.st().tx.clone().ok_or(LinkError::Unavailable)?;
        let (reply, rx) = oneshot::channel();
        tx.send(Outgoing { req, reply })
            .map_err(|_| LinkError::Unavailable)?;
        match tokio::time::timeout(CALL_TIMEOUT, rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(LinkError::Unavailable),
            Err(_) => Err(LinkError::Timeout),
        }
    }

    /// Keeps the link up for as long as the process runs.
    pub fn spawn(
        self: &Arc<Self>,
        listener: Arc<dyn LinkListener<P>>,
    ) -> tokio::task::JoinHandle<()> {
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
                            tracing::warn!(worker = P::NAME, addr = %link.addr, "{} lost", P::NAME);
                            listener.on_down();
                        }
                    }
                    _ => {
                        if !warned {
                            tracing::warn!(worker = P::NAME, addr = %link.addr, "{} not reachable; retrying every second", P::NAME);
                            warned = true;
                        }
                    }
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        })
    }

    async fn session(&self, stream: tokio::net::TcpStream, listener: &dyn LinkListener<P>) {
        let _ = stream.set_nodelay(true);
        let (mut reader, mut writer) = stream.into_split();
        let (tx, mut rx) = mpsc::unbounded_channel::<Outgoing<P>>();
        let mut pending: HashMap<u64, Reply<P>> = HashMap::new();
        let mut next_id: u64 = 1;
        let mut decoder = Decoder::new();
        let mut buf = vec![0u8; 64 * 1024];
        let mut last_heard = Instant::now();
        let mut tick = tokio::time::interval(PING_EVERY);
        // The handshake goes first, through the same path as every request.
        let (hs_tx, hs_rx) = oneshot::channel();
        let _ = tx.send(Outgoing {
            req: P::hello(),
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
                    let frame: Frame<&P::Request, (), ()> = Frame::Request { id, body: &out.req };
                    let Ok(bytes) = encode(&frame) else {
                        let _ = out.reply.send(Err(LinkError::Protocol("request too large".into())));
                        continue;
                    };
                    if writer.write_all(&bytes).await.is_err() {
                        let _ = out.reply.send(Err(LinkError::Unavailable));
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
                        match decoder.next_frame::<Frame<serde::de::IgnoredAny, P::Response, P::Event>>() {
                            Ok(Some(Frame::Response { id, body })) => {
                                if let Some(reply) = pending.remove(&id) {
                                    let _ = reply.send(P::split(body).map_err(LinkError::Rpc));
                                }
                            }
                            Ok(Some(Frame::Event { body })) => listener.on_event(body),
                            Ok(Some(Frame::Request { .. })) => {}
                            Ok(None) => break,
                            Err(e) => {
                                tracing::warn!(worker = P::NAME, error = %e, "undecodable frame");
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
                            Ok(Ok(answer)) => match P::welcome(answer) {
                                Ok(info) => {
                                    {
                                        let mut st = self.st();
                                        st.loads = P::slots(&info);
                                        st.placed.clear();
                                        st.info = Some(info.clone());
                                        st.tx = local_tx.take();
                                        st.ups += 1;
                                    }
                                    // Logged once calls can go through (tests wait for it).
                                    tracing::info!(worker = P::NAME, addr = %self.addr, "{} connected", P::NAME);
                                    listener.on_up(&info);
                                }
                                Err(why) => {
                                    tracing::error!(worker = P::NAME, "refused: {why}");
                                    break;
                                }
                            },
                            Ok(Err(_)) => break,
                            Err(oneshot::error::TryRecvError::Empty) => handshake = Some(hs),
                            Err(_) => break,
                        }
                    }
                }
                _ = tick.tick() => {
                    if last_heard.elapsed() > DEAD_AFTER {
                        tracing::warn!(worker = P::NAME, addr = %self.addr, "no answer for 3 s");
                        break;
                    }
                    let id = next_id;
                    next_id += 1;
                    let frame: Frame<P::Request, (), ()> = Frame::Request { id, body: P::ping() };
                    if let Ok(bytes) = encode(&frame) {
                        if writer.write_all(&bytes).await.is_err() {
                            break;
                        }
                    }
                }
            }
        }
        for (_, reply) in pending {
            let _ = reply.send(Err(LinkError::Unavailable));
        }
    }
}
