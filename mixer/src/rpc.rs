//! The mixer's side of control's RPC (`switchyard-mixer-api`): one connection at a time
//! from control; each request handled in turn, views' events sent as they come. When
//! control's connection drops every view ends (views belong to control, and a
//! restarted control knows none of them).

use crate::driver::{self, Command, ViewHandle};
use std::collections::HashMap;
use std::net::IpAddr;
use switchyard_mixer_api::{
    encode, Decoder, Event, Frame, MixerInfo, Request, Response, RpcError, PROTOCOL_VERSION,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};

/// How views are run.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// The address views' WebRTC clients bind.
    pub media_ip: IpAddr,
    /// How many loudest inputs a view's audio mixes.
    pub speakers: usize,
}

/// Serves control's connections on `listener` until the process ends.
pub async fn serve(listener: TcpListener, settings: Settings) {
    loop {
        match listener.accept().await {
            Ok((stream, from)) => {
                tracing::info!(%from, "control connected");
                session(stream, settings).await;
                tracing::info!(%from, "control's connection ended: its views end too");
            }
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}

async fn session(stream: TcpStream, settings: Settings) {
    let _ = stream.set_nodelay(true);
    let (mut reader, mut writer) = stream.into_split();
    let mut views: HashMap<String, ViewHandle> = HashMap::new();
    let (ev_tx, mut ev_rx) = mpsc::unbounded_channel::<Event>();
    let mut decoder = Decoder::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let out: Vec<Frame> = tokio::select! {
            n = reader.read(&mut buf) => {
                let n = match n { Ok(0) | Err(_) => break, Ok(n) => n };
                decoder.push(&buf[..n]);
                let mut out = Vec::new();
                loop {
                    match decoder.next_frame::<Frame>() {
                        Ok(Some(Frame::Request { id, body })) => {
                            let body = handle(body, &mut views, settings, &ev_tx).await;
                            out.push(Frame::Response { id, body });
                        }
                        Ok(Some(_)) => {}
                        Ok(None) => break,
                        Err(e) => {
                            tracing::warn!(error = %e, "undecodable frame from control: closing its connection");
                            close_all(&mut views);
                            return;
                        }
                    }
                }
                out
            }
            e = ev_rx.recv() => {
                let Some(e) = e else { break };
                if let Event::ViewClosed { view, reason } = &e {
                    tracing::warn!(view = %view, reason = %reason, "view closed");
                    views.remove(view);
                }
                vec![Frame::Event { body: e }]
            }
        };
        for f in out {
            let Ok(bytes) = encode(&f) else { continue };
            if writer.write_all(&bytes).await.is_err() {
                close_all(&mut views);
                return;
            }
        }
    }
    close_all(&mut views);
}

fn close_all(views: &mut HashMap<String, ViewHandle>) {
    for (_, v) in views.drain() {
        v.send(Command::Close);
    }
}

fn error(msg: impl Into<String>) -> Response {
    Response::Error(RpcError::new(msg))
}

async fn handle(
    req: Request,
    views: &mut HashMap<String, ViewHandle>,
    settings: Settings,
    events: &mpsc::UnboundedSender<Event>,
) -> Response {
    let unknown = |id: &str| error(format!("no view {id:?} on this mixer"));
    match req {
        Request::MixerInfo => Response::MixerInfo(MixerInfo {
            protocol: PROTOCOL_VERSION,
            pid: std::process::id(),
            views: views.len(),
        }),
        Request::Ping => Response::Ok,
        Request::ViewCreate { view } => {
            if views.contains_key(&view.id) {
                return error(format!("view {:?} exists already", view.id));
            }
            let id = view.id.clone();
            match driver::start(view, settings.media_ip, settings.speakers, events.clone()) {
                Ok((handle, offer)) => {
                    tracing::info!(view = %id, "view started");
                    views.insert(id, handle);
                    Response::Offer(offer)
                }
                Err(e) => error(e.to_string()),
            }
        }
        Request::ViewAnswer { view, client, sdp } => {
            let Some(v) = views.get(&view) else {
                return unknown(&view);
            };
            let (reply, rx) = oneshot::channel();
            v.send(Command::Answer { client, sdp, reply });
            match rx.await {
                Ok(Ok(())) => Response::Ok,
                Ok(Err(e)) => error(e),
                Err(_) => error("the view ended"),
            }
        }
        Request::ViewInputAdd { view, input } => {
            let Some(v) = views.get(&view) else {
                return unknown(&view);
            };
            let (reply, rx) = oneshot::channel();
            v.send(Command::AddInput { input, reply });
            match rx.await {
                Ok(Ok(offer)) => Response::Offer(offer),
                Ok(Err(e)) => error(e),
                Err(_) => error("the view ended"),
            }
        }
        Request::ViewListenerAdd {
            view,
            listener,
            excluded,
        } => {
            let Some(v) = views.get(&view) else {
                return unknown(&view);
            };
            let (reply, rx) = oneshot::channel();
            v.send(Command::AddListener {
                listener,
                excluded,
                reply,
            });
            match rx.await {
                Ok(Ok(offer)) => Response::Offer(offer),
                Ok(Err(e)) => error(e),
                Err(_) => error("the view ended"),
            }
        }
        Request::ViewListenerUpdate {
            view,
            listener,
            excluded,
        } => match views.get(&view) {
            Some(v) => {
                v.send(Command::UpdateListener { listener, excluded });
                Response::Ok
            }
            None => unknown(&view),
        },
        Request::ViewListenerRemove { view, listener } => match views.get(&view) {
            Some(v) => {
                v.send(Command::RemoveListener { listener });
                Response::Ok
            }
            None => unknown(&view),
        },
        Request::ViewInputRemove { view, stream } => match views.get(&view) {
            Some(v) => {
                v.send(Command::RemoveInput { stream });
                Response::Ok
            }
            None => unknown(&view),
        },
        Request::ViewUpdate { view } => match views.get(&view.id) {
            Some(v) => {
                v.send(Command::Update { spec: view });
                Response::Ok
            }
            None => unknown(&view.id),
        },
        Request::ViewClose { view } => match views.remove(&view) {
            Some(v) => {
                v.send(Command::Close);
                Response::Ok
            }
            None => unknown(&view),
        },
    }
}
