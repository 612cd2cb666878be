//! The portal: OWT's client signaling protocol over Socket.IO (protocol revision 4 on
//! Engine.IO 3, what `socket.io-client` 2.x and OWT's JS SDK 5.x speak), on
//! `portal.port`.
//!
//! A client logs in with a token, then publishes and subscribes over one WebRTC
//! transport (a dataplane peer) per `transport.id`, renegotiating with `soac` as it adds
//! media; the portal turns that into `PEER_CREATE`/`PEER_OFFER` with bindings, and
//! tells the client of progress (`soac` answers, `ready`, `error`). What happens in the
//! room — joins, leaves, streams added, updated, removed — reaches every client as OWT's
//! `participant` and `stream` notifications, whether it came from the portal, from
//! WHIP/WHEP or from the REST API, because the portal relays the conference's events.
//!
//! A client whose connection drops keeps its participant, publications and
//! subscriptions for `portal.reconnection_timeout` seconds; `relogin` with its ticket
//! resumes them. After that they end and the others are told.

mod handlers;
pub mod protocol;
pub mod ticket;

use crate::http::Shared;
use crate::ids::now_ms;
use crate::media::{MediaEvent, Session};
use crate::model::conference::{ConferenceEvent, Permission, StreamInfo};
use protocol::{participant_info, stream_info};
use serde_json::{json, Value};
use socketioxide::socket::Sid;
use socketioxide::SocketIo;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use switchyard_dataplane_api::{Binding, Request, Track};
use ticket::Tickets;

/// The largest message a client may send; a bigger one closes its connection. An SDP
/// offer with many tracks stays well under it.
const MAX_REQUEST_BYTES: usize = 1_000_000;

/// A publication or subscription a client asked for on one of its transports.
#[derive(Debug, Clone)]
struct Bound {
    /// The stream id (publication) or subscription id.
    id: String,
    /// For a subscription, the stream it plays.
    stream: Option<String>,
    /// What the client said of its tracks (publications: sources).
    requested: Vec<protocol::TrackRequest>,
    /// The app's attributes (publications).
    attributes: Option<Value>,
    /// The tracks negotiated, once an offer carried it.
    tracks: Vec<Track>,
    /// Whether the dataplane carries it (answered) and the client was told it is ready.
    ready: bool,
    /// For a subscription: what it asks its video to be beyond a layer (a transcoding).
    transcode: crate::caps::Transcode,
    /// For a subscription: its bindings on the dataplane and the publication each plays
    /// (more than one when its audio is a mix-minus or its video a transcoding).
    plays: Vec<(String, String)>,
}

/// One WebRTC connection of a client.
#[derive(Debug, Default)]
struct Transport {
    peer: String,
    core: Option<u16>,
    connected: bool,
    /// Asked for, not yet in an offer.
    pending: Vec<(Binding, Bound)>,
    /// Negotiated.
    bound: Vec<Bound>,
}

/// A logged-in participant.
#[derive(Debug)]
struct Member {
    id: String,
    room: String,
    role: String,
    service: String,
    permission: Permission,
    socket: Option<Sid>,
    reconnect: bool,
    ticket_id: String,
    /// Bumped on every (re)connection, so that a stale reconnection timer does nothing.
    generation: u64,
    transports: HashMap<String, Transport>,
    /// The room's `enableBandwidthAdaptation` when it joined: its transports estimate
    /// their bandwidth and fit simulcast layers to it.
    bandwidth_adaptation: bool,
    /// The room's `selectActiveAudio` when it joined: its audio publications compete for
    /// the room's active-speaker slots.
    select_active_audio: bool,
}

/// The portal's state.
pub struct Portal {
    st: Shared,
    io: OnceLock<SocketIo>,
    members: Mutex<HashMap<String, Member>>,
    sockets: Mutex<HashMap<Sid, String>>,
    tickets: Tickets,
    reconnection_timeout: Duration,
}

fn participant_room(id: &str) -> String {
    format!("participant:{id}")
}

impl Portal {
    /// The portal over the control process's state, with its Socket.IO layer.
    pub fn new(
        st: Shared,
        ticket_key: Vec<u8>,
    ) -> (Arc<Portal>, socketioxide::layer::SocketIoLayer) {
        let cfg = &st.config.portal;
        let portal = Arc::new(Portal {
            tickets: Tickets::new(ticket_key, (cfg.reconnection_ticket_lifetime as i64) * 1000),
            reconnection_timeout: Duration::from_secs(cfg.reconnection_timeout),
            st: st.clone(),
            io: OnceLock::new(),
            members: Mutex::new(HashMap::new()),
            sockets: Mutex::new(HashMap::new()),
        });
        let (layer, io) = SocketIo::builder()
            .with_state(portal.clone())
            // One limit for a request however it comes: a long-polling body, or a
            // WebSocket message (whose default would be 64 MiB).
            .max_payload(MAX_REQUEST_BYTES as u64)
            .ws_max_message_size(MAX_REQUEST_BYTES)
            .ws_max_frame_size(MAX_REQUEST_BYTES)
            .build_layer();
        io.ns("/", handlers::on_connect);
        let _ = portal.io.set(io);
        (portal, layer)
    }

    fn members(&self) -> std::sync::MutexGuard<'_, HashMap<String, Member>> {
        self.members.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn sockets(&self) -> std::sync::MutexGuard<'_, HashMap<Sid, String>> {
        self.sockets.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn member_of(&self, sid: Sid) -> Option<String> {
        self.sockets().get(&sid).cloned()
    }

    /// Emits to everyone in `room` but `except` (a participant id).
    async fn to_room(&self, room: &str, except: Option<&str>, event: &str, data: &Value) {
        let Some(io) = self.io.get() else { return };
        let op = io.to(room.to_string());
        let op = match except {
            Some(p) => op.except(participant_room(p)),
            None => op,
        };
        if let Err(e) = op.emit(event, data).await {
            tracing::debug!(error = %e, event, "notification not delivered");
        }
    }

    /// Emits to one participant.
    async fn to_participant(&self, participant: &str, event: &str, data: &Value) {
        let Some(io) = self.io.get() else { return };
        if let Err(e) = io.to(participant_room(participant)).emit(event, data).await {
            tracing::debug!(error = %e, event, "notification not delivered");
        }
    }

    /// Ends a participant's session: its transports close (their publications end, which
    /// the others hear of), and it leaves the room.
    async fn leave(&self, participant: &str, reason: &str) {
        let Some(m) = self.members().remove(participant) else {
            return;
        };
        if let Some(sid) = m.socket {
            self.sockets().remove(&sid);
        }
        for (_, t) in m.transports {
            if t.core.is_none() {
                continue;
            }
            let sessions = self.st.sessions.take(|s| s.peer == t.peer);
            let _ = self
                .st
                .link
                .call(Request::PeerClose {
                    peer: t.peer.clone(),
                })
                .await;
            if t.core.is_some() {
                self.st.link.release(&t.peer);
            }
            for s in sessions {
                self.st.media.end(&s, reason);
            }
        }
        let _ = self.st.conference.drop_participant(&m.room, &m.id);
        tracing::info!(participant = %m.id, room = %m.room, reason, "participant left");
    }

    /// Starts following the conference and the media, for the life of the process.
    pub fn spawn_relays(self: &Arc<Self>) {
        let portal = self.clone();
        let mut conference = self.st.conference.subscribe();
        tokio::spawn(async move {
            loop {
                match conference.recv().await {
                    Ok(ev) => portal.on_conference(ev).await,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(missed = n, "conference events missed by the portal")
                    }
                    Err(_) => break,
                }
            }
        });
        let portal = self.clone();
        let mut media = self.st.media.events.subscribe();
        tokio::spawn(async move {
            loop {
                match media.recv().await {
                    Ok(ev) => portal.on_media(ev).await,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(missed = n, "media events missed by the portal")
                    }
                    Err(_) => break,
                }
            }
        });
    }

    /// Conference changes become notifications.
    async fn on_conference(&self, ev: ConferenceEvent) {
        match ev {
            ConferenceEvent::ParticipantJoined { room, participant } => {
                let data = json!({"action": "join", "data": participant_info(&participant)});
                self.to_room(&room, Some(&participant.id), "participant", &data)
                    .await;
            }
            ConferenceEvent::ParticipantDropped { room, participant } => {
                // Dropped through the API while connected here: tell it, and end it.
                let member_socket = self.members().get(&participant).map(|m| m.socket);
                if let Some(socket) = member_socket {
                    self.to_participant(&participant, "drop", &Value::Null)
                        .await;
                    self.leave(&participant, "dropped through the management API")
                        .await;
                    if let (Some(sid), Some(io)) = (socket, self.io.get()) {
                        if let Some(s) = io.get_socket(sid) {
                            let _ = s.disconnect();
                        }
                    }
                }
                let data = json!({"action": "leave", "data": participant});
                self.to_room(&room, Some(&participant), "participant", &data)
                    .await;
            }
            ConferenceEvent::ParticipantUpdated { participant, .. } => {
                if let Some(m) = self.members().get_mut(&participant.id) {
                    m.permission = participant.permission.clone();
                }
            }
            ConferenceEvent::StreamAdded { room, stream } => {
                let owner = owner_of(&stream);
                let data = json!({"id": stream.id, "status": "add", "data": stream_info(&stream)});
                self.to_room(&room, owner.as_deref(), "stream", &data).await;
            }
            ConferenceEvent::StreamUpdated {
                room,
                stream,
                changes,
            } => {
                for (field, value) in changes {
                    let data = json!({"id": stream.id, "status": "update", "data": {"field": field, "value": value}});
                    self.to_room(&room, None, "stream", &data).await;
                }
            }
            ConferenceEvent::StreamDropped { room, stream } => {
                self.forget_binding(&stream);
                let data = json!({"id": stream, "status": "remove"});
                self.to_room(&room, None, "stream", &data).await;
            }
            ConferenceEvent::RoomDeleted { room } => {
                let inside: Vec<(String, Option<Sid>)> = self
                    .members()
                    .values()
                    .filter(|m| m.room == room)
                    .map(|m| (m.id.clone(), m.socket))
                    .collect();
                for (id, socket) in inside {
                    self.to_participant(&id, "drop", &Value::Null).await;
                    self.leave(&id, "the room was deleted").await;
                    if let (Some(sid), Some(io)) = (socket, self.io.get()) {
                        if let Some(s) = io.get_socket(sid) {
                            let _ = s.disconnect();
                        }
                    }
                }
            }
        }
    }

    /// Forgets a publication or subscription the portal was tracking.
    fn forget_binding(&self, id: &str) {
        for m in self.members().values_mut() {
            for t in m.transports.values_mut() {
                t.bound.retain(|b| b.id != id);
            }
        }
    }

    /// Media events become `progress` notifications.
    async fn on_media(&self, ev: MediaEvent) {
        match ev {
            MediaEvent::Connected { peer } => {
                let found = self.members().values_mut().find_map(|m| {
                    let (tid, t) = m.transports.iter_mut().find(|(_, t)| t.peer == peer)?;
                    t.connected = true;
                    Some((m.id.clone(), tid.clone()))
                });
                if let Some((participant, tid)) = found {
                    self.announce_ready(&participant, &tid).await;
                }
            }
            MediaEvent::PeerClosed { peer, reason } => {
                let found = self.members().values_mut().find_map(|m| {
                    let tid = m
                        .transports
                        .iter()
                        .find(|(_, t)| t.peer == peer)
                        .map(|(id, _)| id.clone())?;
                    let t = m.transports.remove(&tid)?;
                    Some((m.id.clone(), tid, t))
                });
                if let Some((participant, tid, t)) = found {
                    if t.core.is_some() {
                        self.st.link.release(&t.peer);
                    }
                    for b in t.bound.iter().chain(t.pending.iter().map(|(_, b)| b)) {
                        let data = json!({"id": tid, "status": "error", "sessionId": b.id, "data": reason});
                        self.to_participant(&participant, "progress", &data).await;
                    }
                }
            }
            MediaEvent::Unbound { id, .. } => self.forget_binding(&id),
            MediaEvent::DataplaneDown => {
                // (participant, transport, binding) for every binding that just ended.
                let mut ended: Vec<(String, String, String)> = Vec::new();
                for m in self.members().values_mut() {
                    for (tid, t) in m.transports.drain() {
                        for b in &t.bound {
                            ended.push((m.id.clone(), tid.clone(), b.id.clone()));
                        }
                    }
                }
                for (participant, tid, id) in ended {
                    let data = json!({"id": tid, "status": "error", "sessionId": id, "data": "the media dataplane went away"});
                    self.to_participant(&participant, "progress", &data).await;
                }
            }
        }
    }

    /// Tells a client that the negotiated bindings of a connected transport are ready;
    /// a publication becomes a stream of the room then.
    async fn announce_ready(&self, participant: &str, tid: &str) {
        let (room, peer, core, fresh, limit_service) = {
            let mut members = self.members();
            let Some(m) = members.get_mut(participant) else {
                return;
            };
            let room = m.room.clone();
            let service = m.service.clone();
            let Some(t) = m.transports.get_mut(tid) else {
                return;
            };
            if !t.connected {
                return;
            }
            let fresh: Vec<Bound> = t
                .bound
                .iter_mut()
                .filter(|b| !b.ready)
                .map(|b| {
                    b.ready = true;
                    b.clone()
                })
                .collect();
            (room, t.peer.clone(), t.core.unwrap_or(0), fresh, service)
        };
        let svc = limit_service.clone();
        let rid = room.clone();
        let config = self
            .st
            .db(move |s| s.room(&svc, &rid))
            .await
            .ok()
            .flatten()
            .map(|r| r.config);
        let input_limit = config.as_ref().map_or(-1, |c| c.input_limit);
        let in_views = config
            .as_ref()
            .map(crate::mixing::default_in_views)
            .unwrap_or_default();
        for b in fresh {
            let session = Session {
                id: b.id.clone(),
                peer: peer.clone(),
                room: room.clone(),
                participant: participant.to_string(),
                stream: b.stream.clone().unwrap_or_else(|| b.id.clone()),
                subscription: b.stream.as_ref().map(|_| b.id.clone()),
                token_id: None,
                core,
                whole_peer: false,
            };
            // A subscription played from several publications (a mix-minus, a
            // transcoding): a session per binding, each with what it plays.
            for (id, publication) in &b.plays {
                self.st.sessions.insert(Session {
                    id: id.clone(),
                    stream: publication.clone(),
                    subscription: Some(id.clone()),
                    ..session.clone()
                });
            }
            if !b.plays.is_empty() {
                let data = json!({"id": tid, "status": "ready", "sessionId": b.id});
                self.to_participant(participant, "progress", &data).await;
                continue;
            }
            if b.stream.is_none() {
                // A publication: now a stream of the room (which tells the others).
                let info = publication_info(&b, participant, in_views.clone());
                if let Err(e) = self.st.conference.admit_stream(&room, info, input_limit) {
                    let _ = self
                        .st
                        .link
                        .call(Request::PeerUnbind {
                            peer: peer.clone(),
                            id: b.id.clone(),
                        })
                        .await;
                    let data = json!({"id": tid, "status": "error", "sessionId": b.id, "data": e.to_string()});
                    self.to_participant(participant, "progress", &data).await;
                    continue;
                }
            }
            self.st.sessions.insert(session);
            let data = json!({"id": tid, "status": "ready", "sessionId": b.id});
            self.to_participant(participant, "progress", &data).await;
        }
    }

    /// Ends reconnection waits that ran out.
    fn schedule_timeout(self: &Arc<Self>, participant: String, generation: u64) {
        let portal = self.clone();
        let wait = self.reconnection_timeout;
        tokio::spawn(async move {
            tokio::time::sleep(wait).await;
            let expired = portal
                .members()
                .get(&participant)
                .is_some_and(|m| m.socket.is_none() && m.generation == generation);
            if expired {
                portal
                    .leave(&participant, "did not reconnect in time")
                    .await;
            }
        });
    }

    /// A fresh reconnection ticket for a member.
    fn ticket(&self, participant: &str) -> Option<String> {
        let (ticket, id) = self.tickets.issue(participant, now_ms());
        let mut members = self.members();
        let m = members.get_mut(participant)?;
        m.ticket_id = id;
        Some(ticket)
    }
}

fn owner_of(s: &StreamInfo) -> Option<String> {
    match &s.info {
        crate::model::conference::StreamDetails::Forward(f) => Some(f.owner.clone()),
        _ => None,
    }
}

/// The room's description of a portal publication.
fn publication_info(b: &Bound, owner: &str, in_views: Vec<String>) -> StreamInfo {
    let mut info = crate::http::whip::stream_info(&b.id, owner, &b.tracks, in_views);
    if let crate::model::conference::StreamDetails::Forward(f) = &mut info.info {
        f.attributes = b.attributes.clone();
    }
    let source = |kind: &str| {
        b.requested
            .iter()
            .find(|t| t.kind == kind)
            .and_then(|t| t.source.clone())
    };
    if let Some(a) = info.media.audio.as_mut() {
        a.source = source("audio").or(a.source.take());
    }
    if let Some(v) = info.media.video.as_mut() {
        v.source = source("video").or(v.source.take());
    }
    info
}
