//! Worker threads: one per core, each a single-threaded tokio runtime running its share
//! of the sessions. The main thread sends [`Cmd`]s and receives [`Report`]s; figures come
//! back as one [`Tick`] per worker per second, so the packet path takes no lock.

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::IpAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use crate::media::{Source, VideoCodec};
use crate::session::{Role, Session, SessionEnd, SessionError, WorkerCtx};
use crate::signal::janus::Janus;
use crate::signal::switchyard::Switchyard;
use crate::signal::SignalError;
use crate::stats::Tick;

/// The server under test, as every worker reaches it.
#[derive(Debug, Clone)]
pub enum Target {
    /// Switchyard's control (REST, WHIP, WHEP).
    Switchyard {
        /// `http://host:port` of the management API.
        base: String,
        /// Service id for signing REST requests.
        service_id: String,
        /// Service key.
        service_key: String,
    },
    /// Janus's HTTP API, `http://host:8088/janus`.
    Janus {
        /// The API's URL.
        base: String,
    },
}

/// Where a publisher's stream can be subscribed.
#[derive(Debug, Clone)]
pub enum Feed {
    /// A Switchyard room and stream id.
    Switchyard {
        /// Room id.
        room: String,
        /// Stream id (from the WHIP Location).
        stream: String,
    },
    /// A Janus room and publisher id.
    Janus {
        /// Room number.
        room: u64,
        /// Publisher (feed) id.
        feed: u64,
    },
}

/// Where a publisher publishes.
#[derive(Debug, Clone)]
pub enum RoomRef {
    /// A Switchyard room id.
    Switchyard(String),
    /// A Janus room number.
    Janus(u64),
}

/// Commands from the main thread.
#[derive(Debug)]
pub enum Cmd {
    /// Start publisher `id` in a room.
    Publish {
        /// Session id.
        id: u64,
        /// The room.
        room: RoomRef,
    },
    /// Start subscriber `id` of a feed.
    Subscribe {
        /// Session id.
        id: u64,
        /// The feed.
        feed: Feed,
    },
    /// End session `id`.
    Stop {
        /// Session id.
        id: u64,
    },
    /// End every session and the thread.
    Shutdown,
}

/// Reports to the main thread.
#[derive(Debug)]
pub enum Report {
    /// A publisher is connected and sending; subscribers can use `feed`.
    PublisherReady {
        /// Its feed.
        feed: Feed,
    },
    /// A subscriber is connected.
    SubscriberReady {
        /// Session id.
        id: u64,
    },
    /// A session failed to start or was cut off.
    Failed {
        /// Session id.
        id: u64,
        /// What happened.
        error: String,
    },
    /// A session ended normally.
    Ended {
        /// What it measured at the end.
        end: SessionEnd,
    },
    /// One second of figures from one worker.
    Tick(Box<Tick>),
    /// The worker has ended every session and stopped.
    Stopped,
}

/// Starts a worker thread; returns its command channel.
pub fn spawn(
    index: usize,
    target: Target,
    media: Arc<Source>,
    codec: VideoCodec,
    local_ip: IpAddr,
    epoch: Instant,
    reports: mpsc::UnboundedSender<Report>,
) -> std::io::Result<mpsc::UnboundedSender<Cmd>> {
    let (tx, rx) = mpsc::unbounded_channel();
    std::thread::Builder::new()
        .name(format!("loadgen-{index}"))
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = reports.send(Report::Failed {
                        id: 0,
                        error: format!("worker {index}: {e}"),
                    });
                    return;
                }
            };
            let local = tokio::task::LocalSet::new();
            local.block_on(&rt, run(target, media, codec, local_ip, epoch, rx, reports));
        })?;
    Ok(tx)
}

/// Signalling state of one worker.
enum Signal {
    Switchyard(Switchyard),
    Janus(Rc<Janus>),
}

async fn run(
    target: Target,
    media: Arc<Source>,
    codec: VideoCodec,
    local_ip: IpAddr,
    epoch: Instant,
    mut rx: mpsc::UnboundedReceiver<Cmd>,
    reports: mpsc::UnboundedSender<Report>,
) {
    let ctx = Rc::new(WorkerCtx {
        epoch,
        tick: RefCell::new(Tick::new(0)),
        local_ip,
    });
    let signal = match &target {
        Target::Switchyard {
            base,
            service_id,
            service_key,
        } => Switchyard::new(base, service_id, service_key).map(Signal::Switchyard),
        Target::Janus { base } => Janus::connect(base).await.map(Signal::Janus),
    };
    let signal = match signal {
        Ok(s) => Rc::new(s),
        Err(e) => {
            let _ = reports.send(Report::Failed {
                id: 0,
                error: format!("connecting to the server: {e}"),
            });
            let _ = reports.send(Report::Stopped);
            return;
        }
    };
    // The ticker hands one second of figures to the main thread.
    {
        let ctx = ctx.clone();
        let reports = reports.clone();
        tokio::task::spawn_local(async move {
            let mut index = 1u64;
            loop {
                tokio::time::sleep_until((epoch + Duration::from_secs(index)).into()).await;
                let t = std::mem::replace(&mut *ctx.tick.borrow_mut(), Tick::new(index + 1));
                let mut t = t;
                t.index = index;
                if reports.send(Report::Tick(Box::new(t))).is_err() {
                    break;
                }
                index += 1;
            }
        });
    }
    let mut stops: HashMap<u64, oneshot::Sender<()>> = HashMap::new();
    let mut tasks = Vec::new();
    while let Some(cmd) = rx.recv().await {
        match cmd {
            Cmd::Publish { id, room } => {
                let (stop, stopped) = oneshot::channel();
                stops.insert(id, stop);
                tasks.push(tokio::task::spawn_local(publisher(
                    id,
                    room,
                    signal.clone(),
                    media.clone(),
                    codec,
                    ctx.clone(),
                    stopped,
                    reports.clone(),
                )));
            }
            Cmd::Subscribe { id, feed } => {
                let (stop, stopped) = oneshot::channel();
                stops.insert(id, stop);
                tasks.push(tokio::task::spawn_local(subscriber(
                    id,
                    feed,
                    signal.clone(),
                    codec,
                    ctx.clone(),
                    stopped,
                    reports.clone(),
                )));
            }
            Cmd::Stop { id } => {
                if let Some(s) = stops.remove(&id) {
                    let _ = s.send(());
                }
            }
            Cmd::Shutdown => break,
        }
        tasks.retain(|t| !t.is_finished());
    }
    for (_, s) in stops.drain() {
        let _ = s.send(());
    }
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
    }
    if let Signal::Janus(j) = &*signal {
        j.close().await;
    }
    let _ = reports.send(Report::Stopped);
}

fn fail(reports: &mpsc::UnboundedSender<Report>, ctx: &WorkerCtx, id: u64, error: String) {
    ctx.tick.borrow_mut().failures += 1;
    let _ = reports.send(Report::Failed { id, error });
}

async fn stopped(rx: oneshot::Receiver<()>) {
    let _ = rx.await;
}

/// Why a session did not start or ended early.
#[derive(Debug, thiserror::Error)]
enum Failure {
    #[error(transparent)]
    Session(#[from] SessionError),
    #[error(transparent)]
    Signal(#[from] SignalError),
    #[error("a {0} of another target")]
    Mismatch(&'static str),
}

#[allow(clippy::too_many_arguments)]
async fn publisher(
    id: u64,
    room: RoomRef,
    signal: Rc<Signal>,
    media: Arc<Source>,
    codec: VideoCodec,
    ctx: Rc<WorkerCtx>,
    stop: oneshot::Receiver<()>,
    reports: mpsc::UnboundedSender<Report>,
) {
    let result: Result<(), Failure> = async {
        let mut s = Session::new(ctx.local_ip, codec)?;
        let (offer, pending) = s.offer(true, media.simulcast())?;
        let user = format!("loadgen-pub-{id}");
        let (answer, feed, leave) = match (&*signal, &room) {
            (Signal::Switchyard(sy), RoomRef::Switchyard(r)) => {
                let (answer, res, stream) = sy.publish(r, &user, offer).await?;
                let feed = Feed::Switchyard {
                    room: r.clone(),
                    stream,
                };
                (answer, feed, Leave::Switchyard(res))
            }
            (Signal::Janus(j), RoomRef::Janus(r)) => {
                let (answer, feed, handle) = j.publish(*r, &user, offer).await?;
                (answer, Feed::Janus { room: *r, feed }, Leave::Janus(handle))
            }
            _ => return Err(Failure::Mismatch("room")),
        };
        s.accept_answer(pending, &answer)?;
        let ready = Report::PublisherReady { feed };
        live(
            s,
            Role::Publisher(media),
            stop,
            ready,
            leave,
            &signal,
            &ctx,
            &reports,
        )
        .await
    }
    .await;
    if let Err(e) = result {
        fail(&reports, &ctx, id, format!("publisher {id}: {e}"));
    }
}

async fn subscriber(
    id: u64,
    feed: Feed,
    signal: Rc<Signal>,
    codec: VideoCodec,
    ctx: Rc<WorkerCtx>,
    stop: oneshot::Receiver<()>,
    reports: mpsc::UnboundedSender<Report>,
) {
    let started = Instant::now();
    let result: Result<(), Failure> = async {
        let mut s = Session::new(ctx.local_ip, codec)?;
        let user = format!("loadgen-sub-{id}");
        let leave = match (&*signal, &feed) {
            (Signal::Switchyard(sy), Feed::Switchyard { room, stream }) => {
                let (offer, pending) = s.offer(false, false)?;
                let (answer, res) = sy.subscribe(room, stream, &user, offer).await?;
                s.accept_answer(pending, &answer)?;
                Leave::Switchyard(res)
            }
            (Signal::Janus(j), Feed::Janus { room, feed }) => {
                let (handle, offer) = j.subscribe_offer(*room, *feed).await?;
                let answer = s.accept_offer(&offer)?;
                j.start(handle, answer).await?;
                Leave::Janus(handle)
            }
            _ => return Err(Failure::Mismatch("feed")),
        };
        let ready = Report::SubscriberReady { id };
        let role = Role::Subscriber { started };
        live(s, role, stop, ready, leave, &signal, &ctx, &reports).await
    }
    .await;
    if let Err(e) = result {
        fail(&reports, &ctx, id, format!("subscriber {id}: {e}"));
    }
}

/// Runs a negotiated session until it is stopped, sending `ready` once it connects; then
/// ends it on the server and reports what it measured.
#[allow(clippy::too_many_arguments)]
async fn live(
    s: Session,
    role: Role,
    stop: oneshot::Receiver<()>,
    ready: Report,
    leave: Leave,
    signal: &Signal,
    ctx: &Rc<WorkerCtx>,
    reports: &mpsc::UnboundedSender<Report>,
) -> Result<(), Failure> {
    let r = reports.clone();
    let end = s
        .run(ctx.clone(), role, stopped(stop), move || {
            let _ = r.send(ready);
        })
        .await;
    leave.run(signal).await;
    let _ = reports.send(Report::Ended { end: end? });
    Ok(())
}

/// How a session is ended on the server.
enum Leave {
    Switchyard(crate::signal::switchyard::Resource),
    Janus(u64),
}

impl Leave {
    async fn run(self, signal: &Signal) {
        match (self, signal) {
            (Leave::Switchyard(res), Signal::Switchyard(sy)) => sy.leave(&res).await,
            (Leave::Janus(h), Signal::Janus(j)) => j.detach(h).await,
            _ => {}
        }
    }
}
