//! The portal's request handlers, one per message of the protocol.

use super::protocol::{self as p, PortalError};
use super::{participant_room, Bound, Member, Portal, Transport};
use crate::dataplane::DataplaneError;
use crate::ids::{new_id, now_ms};
use crate::model::conference::{Participant, Permission};
use crate::model::or_false::OrFalse;
use crate::model::room::AudioVideo;
use serde_json::{json, Value};
use socketioxide::extract::{AckSender, Event, SocketRef, State, TryData};
use socketioxide::socket::DisconnectReason;
use std::collections::HashMap;
use std::sync::Arc;
use switchyard_dataplane_api::{
    Binding, ErrorCode, PeerCreate, PeerOffer, Request, Response, SubscriptionCap,
};

type Portal_ = State<Arc<Portal>>;

/// Answers a request: `("ok", data)` or `("error", {code, description})`.
fn answer(
    portal: &Portal,
    ack: AckSender,
    message: &'static str,
    result: Result<Value, PortalError>,
) {
    portal.st.metrics.portal_request(message, result.is_ok());
    let _ = match result {
        Ok(Value::Null) => ack.send(&("ok",)),
        Ok(data) => ack.send(&("ok", data)),
        Err(e) => {
            tracing::debug!(error = %e, "portal request refused");
            ack.send(&("error", e.body()))
        }
    };
}

fn data_of(d: Result<Value, socketioxide::ParserError>) -> Value {
    d.unwrap_or(Value::Null)
}

/// Registers every handler on a new connection.
pub async fn on_connect(socket: SocketRef, State(portal): Portal_) {
    portal.st.metrics.portal_connections(1);
    socket.on("login", login);
    socket.on("relogin", relogin);
    socket.on("refreshReconnectionTicket", refresh_ticket);
    socket.on("logout", logout);
    socket.on("text", text);
    socket.on("publish", publish);
    socket.on("unpublish", unpublish);
    socket.on("subscribe", subscribe);
    socket.on("unsubscribe", unsubscribe);
    socket.on("soac", soac);
    socket.on("stream-control", stream_control);
    socket.on("subscription-control", subscription_control);
    socket.on_fallback(unknown);
    socket.on_disconnect(on_disconnect);
}

async fn unknown(Event(name): Event, ack: AckSender, State(portal): Portal_) {
    answer(
        &portal,
        ack,
        "unknown",
        Err(PortalError::bad(format!("unknown message {name:?}"))),
    );
}

fn permission_json(p: &Permission) -> Value {
    let av = |x: &OrFalse<AudioVideo>| {
        let v = x.as_ref().copied().unwrap_or_default();
        json!({"audio": v.audio, "video": v.video, "data": false})
    };
    json!({"publish": av(&p.publish), "subscribe": av(&p.subscribe)})
}

async fn login(
    socket: SocketRef,
    TryData(data): TryData<Value>,
    ack: AckSender,
    State(portal): Portal_,
) {
    let result = do_login(&socket, data_of(data), &portal).await;
    answer(&portal, ack, "login", result);
}

async fn do_login(
    socket: &SocketRef,
    data: Value,
    portal: &Arc<Portal>,
) -> Result<Value, PortalError> {
    if portal.member_of(socket.id).is_some() {
        return Err(PortalError::bad("already logged in on this connection"));
    }
    let info: p::LoginInfo = p::parse(data, "login")?;
    let st = &portal.st;
    let tokens = st.tokens.clone();
    let token = info.token.clone();
    let rec = st
        .db(move |s| tokens.redeem(s, &token, None, now_ms()))
        .await
        .map_err(|e| PortalError::new(1101, e.to_string()))?;
    let (svc, rid) = (rec.service_id.clone(), rec.room_id.clone());
    let room = st
        .db(move |s| s.room(&svc, &rid))
        .await
        .map_err(|e| PortalError::new(2001, e.to_string()))?
        .ok_or_else(|| PortalError::new(1003, "the token's room no longer exists"))?;
    let role = room.config.role(&rec.role).cloned().ok_or_else(|| {
        PortalError::denied(format!(
            "the role {:?} no longer exists in this room",
            rec.role
        ))
    })?;
    let id = new_id();
    let participant = Participant {
        id: id.clone(),
        role: rec.role.clone(),
        user: rec.user.clone(),
        permission: Permission::of_role(&role),
    };
    // In the rooms before the join is announced, so that the announcement skips it.
    socket.join([room.id.clone(), participant_room(&id)]);
    if let Err(e) = st.conference.admit_participant(
        &room.id,
        participant.clone(),
        room.config.participant_limit,
    ) {
        socket.leave_all();
        return Err(PortalError::denied(e.to_string()));
    }
    let reconnect = !matches!(info.reconnection, Some(Value::Bool(false)));
    portal.members().insert(
        id.clone(),
        Member {
            id: id.clone(),
            room: room.id.clone(),
            role: rec.role.clone(),
            service: rec.service_id.clone(),
            permission: participant.permission.clone(),
            socket: Some(socket.id),
            reconnect,
            ticket_id: String::new(),
            generation: 0,
            transports: HashMap::new(),
            bandwidth_adaptation: room.config.enable_bandwidth_adaptation,
            select_active_audio: room.config.select_active_audio,
        },
    );
    portal.sockets().insert(socket.id, id.clone());
    // A room that selects active audio lists its slot streams from the first login on
    // (a dataplane that is not up yet makes them at the first publication).
    let _ = st
        .media
        .selection_for(&room.id, room.config.select_active_audio)
        .await;
    let ticket = if reconnect { portal.ticket(&id) } else { None };
    let streams: Vec<Value> = st
        .conference
        .streams(&room.id)
        .iter()
        .map(p::stream_info)
        .collect();
    let participants: Vec<Value> = st
        .conference
        .participants(&room.id)
        .iter()
        .map(p::participant_info)
        .collect();
    let views: Vec<&str> = room.config.views.iter().map(|v| v.label.as_str()).collect();
    tracing::info!(participant = %id, room = %room.id, user = %rec.user, protocol = ?info.protocol, "portal login");
    Ok(json!({
        "id": id,
        "user": rec.user,
        "role": rec.role,
        "permission": permission_json(&participant.permission),
        "room": {"id": room.id, "views": views, "streams": streams, "participants": participants},
        "reconnectionTicket": ticket,
    }))
}

async fn relogin(
    socket: SocketRef,
    TryData(data): TryData<Value>,
    ack: AckSender,
    State(portal): Portal_,
) {
    let data = data_of(data);
    let result = (|| {
        if portal.member_of(socket.id).is_some() {
            return Err(PortalError::bad("already logged in on this connection"));
        }
        let ticket = p::relogin_ticket(&data)
            .ok_or_else(|| PortalError::bad("relogin needs the reconnection ticket"))?;
        let (participant, ticket_id) = portal
            .tickets
            .verify(ticket, now_ms())
            .map_err(|e| PortalError::new(1101, e.to_string()))?;
        let mut members = portal.members();
        let m = members.get_mut(&participant).ok_or_else(|| {
            PortalError::new(1101, "the session is over: log in again with a new token")
        })?;
        if m.ticket_id != ticket_id {
            return Err(PortalError::new(
                1101,
                "a newer reconnection ticket was issued: use that one",
            ));
        }
        if let Some(old) = m.socket.take() {
            portal.sockets().remove(&old);
        }
        m.socket = Some(socket.id);
        m.generation += 1;
        socket.join([m.room.clone(), participant_room(&m.id)]);
        portal.sockets().insert(socket.id, participant.clone());
        Ok(participant)
    })();
    match result {
        Ok(participant) => {
            tracing::info!(participant = %participant, "portal relogin");
            let ticket = portal.ticket(&participant);
            answer(&portal, ack, "relogin", Ok(json!(ticket)));
        }
        Err(e) => answer(&portal, ack, "relogin", Err(e)),
    }
}

async fn refresh_ticket(socket: SocketRef, ack: AckSender, State(portal): Portal_) {
    let result = match portal.member_of(socket.id) {
        Some(p) => portal
            .ticket(&p)
            .map(|t| json!(t))
            .ok_or_else(PortalError::not_logged_in),
        None => Err(PortalError::not_logged_in()),
    };
    answer(&portal, ack, "refreshReconnectionTicket", result);
}

async fn logout(socket: SocketRef, ack: AckSender, State(portal): Portal_) {
    match portal.member_of(socket.id) {
        Some(p) => {
            portal.leave(&p, "logged out").await;
            socket.leave_all();
            answer(&portal, ack, "logout", Ok(Value::Null));
        }
        None => answer(&portal, ack, "logout", Err(PortalError::not_logged_in())),
    }
}

async fn on_disconnect(socket: SocketRef, reason: DisconnectReason, State(portal): Portal_) {
    portal.st.metrics.portal_connections(-1);
    let Some(participant) = portal.sockets().remove(&socket.id) else {
        return;
    };
    let waiting = {
        let mut members = portal.members();
        match members.get_mut(&participant) {
            Some(m) if m.reconnect && m.socket == Some(socket.id) => {
                m.socket = None;
                m.generation += 1;
                Some(m.generation)
            }
            _ => None,
        }
    };
    match waiting {
        Some(generation) => {
            tracing::info!(participant = %participant, ?reason, "connection lost; waiting for relogin");
            portal.schedule_timeout(participant, generation);
        }
        None => portal.leave(&participant, "disconnected").await,
    }
}

async fn text(
    socket: SocketRef,
    TryData(data): TryData<Value>,
    ack: AckSender,
    State(portal): Portal_,
) {
    let result = async {
        let me = portal
            .member_of(socket.id)
            .ok_or_else(PortalError::not_logged_in)?;
        let req: p::TextRequest = p::parse(data_of(data), "text")?;
        if req.message.chars().count() > 2048 {
            return Err(PortalError::bad(
                "a text message may have at most 2048 characters",
            ));
        }
        let room = portal
            .members()
            .get(&me)
            .map(|m| m.room.clone())
            .ok_or_else(PortalError::not_logged_in)?;
        if req.to == "all" {
            portal
                .to_room(
                    &room,
                    Some(&me),
                    "text",
                    &json!({"from": me, "to": "all", "message": req.message}),
                )
                .await;
        } else {
            let present = portal.st.conference.participant(&room, &req.to).is_ok();
            if !present {
                return Err(PortalError::new(
                    1005,
                    format!("no participant {:?} in the room", req.to),
                ));
            }
            portal
                .to_participant(
                    &req.to,
                    "text",
                    &json!({"from": me, "to": "me", "message": req.message}),
                )
                .await;
        }
        Ok(Value::Null)
    }
    .await;
    answer(&portal, ack, "text", result);
}

/// The transport a request names, or a new one.
fn transport_for(m: &mut Member, opts: &p::TransportOptions) -> Result<String, PortalError> {
    if opts.kind != "webrtc" {
        return Err(PortalError::bad(format!(
            "transport type {:?} is not offered: use \"webrtc\"",
            opts.kind
        )));
    }
    match &opts.id {
        Some(id) if m.transports.contains_key(id) => Ok(id.clone()),
        Some(id) => Err(PortalError::bad(format!("no transport {id:?} of yours"))),
        None => {
            let tid = new_id();
            m.transports.insert(
                tid.clone(),
                Transport {
                    peer: format!("portal-{tid}"),
                    ..Transport::default()
                },
            );
            Ok(tid)
        }
    }
}

fn kinds(tracks: &[p::TrackRequest]) -> Result<(bool, bool), PortalError> {
    let mut audio = false;
    let mut video = false;
    for t in tracks {
        match t.kind.as_str() {
            "audio" => audio = true,
            "video" => video = true,
            other => {
                return Err(PortalError::bad(format!(
                    "track type {other:?}: use \"audio\" or \"video\""
                )))
            }
        }
    }
    if !audio && !video {
        return Err(PortalError::bad(
            "no track: name at least one, of type \"audio\" or \"video\"",
        ));
    }
    Ok((audio, video))
}

fn mids(tracks: &[p::TrackRequest]) -> Option<Vec<String>> {
    tracks.iter().map(|t| t.mid.clone()).collect()
}

async fn publish(
    socket: SocketRef,
    TryData(data): TryData<Value>,
    ack: AckSender,
    State(portal): Portal_,
) {
    let result = do_publish(&socket, data_of(data), &portal).await;
    answer(&portal, ack, "publish", result);
}

/// The room's `inputLimit`, read when a publication is asked for (and checked again
/// when it becomes a stream, for publications racing each other).
async fn input_limit(portal: &Portal, me: &str) -> Result<i64, PortalError> {
    let (service, room) = portal
        .members()
        .get(me)
        .map(|m| (m.service.clone(), m.room.clone()))
        .ok_or_else(PortalError::not_logged_in)?;
    let r = portal
        .st
        .db(move |s| s.room(&service, &room))
        .await
        .map_err(|e| PortalError::new(2001, e.to_string()))?
        .ok_or_else(|| PortalError::new(1003, "the room no longer exists"))?;
    Ok(r.config.input_limit)
}

async fn do_publish(
    socket: &SocketRef,
    data: Value,
    portal: &Arc<Portal>,
) -> Result<Value, PortalError> {
    let me = portal
        .member_of(socket.id)
        .ok_or_else(PortalError::not_logged_in)?;
    let limit = input_limit(portal, &me).await?;
    {
        let req: p::PublicationRequest = p::parse(data, "publish")?;
        if req.data {
            return Err(PortalError::bad(
                "data publications are not offered: publish media",
            ));
        }
        let media = req
            .media
            .ok_or_else(|| PortalError::bad("media is required"))?;
        let (audio, video) = kinds(&media.tracks)?;
        let mut members = portal.members();
        let m = members
            .get_mut(&me)
            .ok_or_else(PortalError::not_logged_in)?;
        let may = m.permission.can_publish();
        if (audio && !may.audio) || (video && !may.video) {
            let what = if audio && !may.audio {
                "audio"
            } else {
                "video"
            };
            return Err(PortalError::denied(format!(
                "the role {:?} may not publish {what}",
                m.role
            )));
        }
        let room = m.room.clone();
        if limit >= 0 && portal.st.conference.forward_count(&room) as i64 >= limit {
            return Err(PortalError::denied(format!(
                "the room's input limit ({limit}) is reached: unpublish a stream first"
            )));
        }
        let tid = transport_for(m, &req.transport)?;
        let stream = new_id();
        let binding = Binding::Publish {
            publication: stream.clone(),
            mids: mids(&media.tracks),
            audio,
            video,
            selection: (m.select_active_audio && audio).then(|| room.clone()),
        };
        let bound = Bound {
            id: stream.clone(),
            stream: None,
            requested: media.tracks,
            attributes: req.attributes,
            tracks: Vec::new(),
            ready: false,
            transcode: Default::default(),
            plays: Vec::new(),
        };
        if let Some(t) = m.transports.get_mut(&tid) {
            t.pending.push((binding, bound));
        }
        Ok(json!({"transportId": tid, "id": stream}))
    }
}

async fn subscribe(
    socket: SocketRef,
    TryData(data): TryData<Value>,
    ack: AckSender,
    State(portal): Portal_,
) {
    let result = (|| {
        let me = portal
            .member_of(socket.id)
            .ok_or_else(PortalError::not_logged_in)?;
        let req: p::SubscriptionRequest = p::parse(data_of(data), "subscribe")?;
        let (audio, video) = kinds(&req.media.tracks)?;
        let froms: Vec<&str> = req
            .media
            .tracks
            .iter()
            .map(|t| t.from.as_deref().map(p::stream_of).unwrap_or(""))
            .collect();
        let stream = froms.first().copied().unwrap_or("").to_string();
        if stream.is_empty() || froms.iter().any(|f| *f != stream) {
            return Err(PortalError::bad(
                "every track must name the same stream in \"from\"",
            ));
        }
        // A simulcast layer named by its track (`{stream}-video-{rid}`), and the video
        // parameters asked for: the dataplane serves the nearest layer not above them.
        let mut cap = SubscriptionCap::default();
        let mut transcode = crate::caps::Transcode::default();
        for t in req.media.tracks.iter().filter(|t| t.kind == "video") {
            cap.rid = t.from.as_deref().and_then(p::rid_of).map(str::to_string);
            if let Some(params) = &t.parameters {
                crate::caps::read_owt_parameters(params, &mut cap, Some(&mut transcode))
                    .map_err(cap_error)?;
            }
        }
        let mut members = portal.members();
        let m = members
            .get_mut(&me)
            .ok_or_else(PortalError::not_logged_in)?;
        // Forward and mixed streams alike.
        portal
            .st
            .conference
            .stream(&m.room, &stream)
            .map_err(|_| PortalError::new(1004, format!("no stream {stream:?} in the room")))?;
        let may = m.permission.can_subscribe();
        if (audio && !may.audio) || (video && !may.video) {
            let what = if audio && !may.audio {
                "audio"
            } else {
                "video"
            };
            return Err(PortalError::denied(format!(
                "the role {:?} may not subscribe to {what}",
                m.role
            )));
        }
        let tid = transport_for(m, &req.transport)?;
        let sub = new_id();
        let binding = Binding::Subscribe {
            subscription: sub.clone(),
            publication: stream.clone(),
            mids: mids(&req.media.tracks),
            audio,
            video,
            cap,
        };
        let bound = Bound {
            id: sub.clone(),
            stream: Some(stream),
            requested: req.media.tracks,
            attributes: None,
            tracks: Vec::new(),
            ready: false,
            transcode,
            plays: Vec::new(),
        };
        if let Some(t) = m.transports.get_mut(&tid) {
            t.pending.push((binding, bound));
        }
        Ok(json!({"transportId": tid, "id": sub}))
    })();
    answer(&portal, ack, "subscribe", result);
}

fn cap_error(e: crate::caps::CapError) -> PortalError {
    match e {
        crate::caps::CapError::Bad(m) => PortalError::bad(m),
        crate::caps::CapError::NeedsTranscoding(m) => PortalError::new(2002, m),
    }
}

fn rpc_error(e: DataplaneError) -> PortalError {
    match e {
        DataplaneError::Rpc(r)
            if matches!(
                r.code,
                ErrorCode::BadSdp | ErrorCode::NoUsableMedia | ErrorCode::BadRequest
            ) =>
        {
            PortalError::bad(r.message)
        }
        DataplaneError::Rpc(r) if r.code == ErrorCode::UnknownPublication => {
            PortalError::new(1004, r.message)
        }
        other => PortalError::new(1201, other.to_string()),
    }
}

async fn soac(
    socket: SocketRef,
    TryData(data): TryData<Value>,
    ack: AckSender,
    State(portal): Portal_,
) {
    let result = do_soac(&socket, data_of(data), &portal).await;
    answer(&portal, ack, "soac", result);
}

async fn do_soac(
    socket: &SocketRef,
    data: Value,
    portal: &Arc<Portal>,
) -> Result<Value, PortalError> {
    let me = portal
        .member_of(socket.id)
        .ok_or_else(PortalError::not_logged_in)?;
    let msg: p::SoacMessage = p::parse(data, "soac")?;
    let kind = msg
        .signaling
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("");
    match kind {
        "offer" => {}
        // ICE-lite: every server candidate is in the answer, and client candidates are
        // learned from its connectivity checks.
        "candidate" | "removed-candidates" => return Ok(Value::Null),
        "answer" => {
            return Err(PortalError::bad(
                "the portal never sends offers: send an offer",
            ))
        }
        other => {
            return Err(PortalError::bad(format!(
                "signaling type {other:?}: use offer, candidate or removed-candidates"
            )))
        }
    }
    let sdp = msg
        .signaling
        .get("sdp")
        .and_then(Value::as_str)
        .ok_or_else(|| PortalError::bad("an offer needs its sdp"))?
        .to_string();
    if !sdp.trim_start().starts_with("v=0") {
        return Err(PortalError::bad(
            "malformed SDP offer: it must start with \"v=0\"",
        ));
    }
    let tid = msg.id;
    // The room's active-speaker selection exists (again, after a dataplane restart)
    // before its publications are bound to it.
    let selecting = portal
        .members()
        .get(&me)
        .filter(|m| m.select_active_audio)
        .map(|m| m.room.clone());
    if let Some(room) = selecting {
        portal
            .st
            .media
            .selection_for(&room, true)
            .await
            .map_err(rpc_error)?;
    }
    let (peer, placed, pending, bandwidth_adaptation) = {
        let mut members = portal.members();
        let m = members
            .get_mut(&me)
            .ok_or_else(PortalError::not_logged_in)?;
        let adapt = m.bandwidth_adaptation;
        let t = m
            .transports
            .get_mut(&tid)
            .ok_or_else(|| PortalError::bad(format!("no transport {tid:?} of yours")))?;
        (
            t.peer.clone(),
            t.core,
            std::mem::take(&mut t.pending),
            adapt,
        )
    };
    // A subscription to a mixed stream its own audio is mixed into plays its mix-minus
    // on its audio sections (no one hears themselves; a participant that may publish
    // audio gets its own audio from its first subscription, as OWT apps subscribe to the
    // mix before they publish); one asking for another size, frame rate or codec plays a
    // transcoding.
    let (room, may_publish) = portal
        .members()
        .get(&me)
        .map(|m| (m.room.clone(), m.permission.can_publish().audio))
        .unwrap_or_default();
    let mut bindings: Vec<Binding> = Vec::new();
    let mut split: HashMap<String, Vec<(String, String)>> = HashMap::new();
    for (b, bound) in &pending {
        let Some(stream) = bound.stream.as_deref() else {
            bindings.push(b.clone());
            continue;
        };
        let of = |kind: &str| -> Vec<String> {
            bound
                .requested
                .iter()
                .filter(|t| t.kind == kind)
                .filter_map(|t| t.mid.clone())
                .collect()
        };
        let playback = crate::mixing::Playback {
            room: &room,
            stream,
            offer_sdp: &sdp,
            audio_mids: of("audio"),
            video_mids: of("video"),
            transcode: &bound.transcode,
            listener: Some((
                crate::mixing::Listener::Participant(me.clone()),
                may_publish,
            )),
        };
        let mine = portal.st.mixing.bindings_for(b.clone(), playback).await;
        if mine.len() > 1 {
            let plays = mine
                .iter()
                .filter_map(|x| match x {
                    Binding::Subscribe {
                        subscription,
                        publication,
                        ..
                    } => Some((subscription.clone(), publication.clone())),
                    Binding::Publish { .. } => None,
                })
                .collect();
            split.insert(bound.id.clone(), plays);
        }
        bindings.extend(mine);
    }

    let (req, new_core) = match placed {
        Some(_) => (
            Request::PeerOffer(PeerOffer {
                peer: peer.clone(),
                offer_sdp: sdp,
                bindings,
            }),
            None,
        ),
        None => {
            let core = portal.st.link.place(&room, &peer).map_err(rpc_error)?;
            (
                Request::PeerCreate(PeerCreate {
                    peer: peer.clone(),
                    core,
                    offer_sdp: sdp,
                    bindings,
                    close_when_empty: false,
                    bandwidth_adaptation,
                }),
                Some(core),
            )
        }
    };
    let outcome = portal.st.link.call(req).await;
    let created = match outcome {
        Ok(Response::PeerCreated(c)) => c,
        other => {
            if new_core.is_some() {
                portal.st.link.release(&peer);
            }
            let e = match other {
                Err(e) => rpc_error(e),
                Ok(r) => PortalError::new(2001, format!("unexpected dataplane answer {r:?}")),
            };
            for (_, b) in &pending {
                let data =
                    json!({"id": tid, "status": "error", "sessionId": b.id, "data": e.description});
                portal.to_participant(&me, "progress", &data).await;
            }
            return Err(e);
        }
    };
    let connected = {
        let mut members = portal.members();
        let m = members
            .get_mut(&me)
            .ok_or_else(PortalError::not_logged_in)?;
        let t = m
            .transports
            .get_mut(&tid)
            .ok_or_else(|| PortalError::bad("the transport ended"))?;
        if let Some(core) = new_core {
            t.core = Some(core);
        }
        for (_, mut b) in pending {
            b.plays = split.remove(&b.id).unwrap_or_default();
            b.tracks = created.tracks(&b.id).to_vec();
            // A mix-minus plays the subscription's audio under its own binding.
            b.tracks
                .extend_from_slice(created.tracks(&crate::mixing::minus_subscription(&b.id)));
            t.bound.push(b);
        }
        t.connected
    };
    let answer =
        json!({"id": tid, "status": "soac", "data": {"type": "answer", "sdp": created.answer_sdp}});
    portal.to_participant(&me, "progress", &answer).await;
    if connected {
        // A renegotiation of a live connection: no new connection event will come.
        portal.announce_ready(&me, &tid).await;
    }
    Ok(Value::Null)
}

/// Ends one of the caller's publications or subscriptions.
async fn end_own(
    socket: &SocketRef,
    data: Value,
    portal: &Arc<Portal>,
    publication: bool,
) -> Result<Value, PortalError> {
    let me = portal
        .member_of(socket.id)
        .ok_or_else(PortalError::not_logged_in)?;
    let req: p::IdRequest = p::parse(
        data,
        if publication {
            "unpublish"
        } else {
            "unsubscribe"
        },
    )?;
    let peer = {
        let mut members = portal.members();
        let m = members
            .get_mut(&me)
            .ok_or_else(PortalError::not_logged_in)?;
        let mut found = None;
        for t in m.transports.values_mut() {
            let is = |b: &Bound| b.id == req.id && b.stream.is_none() == publication;
            if t.bound.iter().any(is) {
                t.bound.retain(|b| !is(b));
                found = Some(Some(t.peer.clone()));
            } else if t.pending.iter().any(|(_, b)| is(b)) {
                t.pending.retain(|(_, b)| !is(b));
                found = Some(None);
            }
        }
        found.ok_or_else(|| {
            PortalError::new(
                if publication { 1004 } else { 1001 },
                format!(
                    "no {} {:?} of yours",
                    if publication {
                        "publication"
                    } else {
                        "subscription"
                    },
                    req.id
                ),
            )
        })?
    };
    if let Some(peer) = peer {
        let _ = portal
            .st
            .link
            .call(Request::PeerUnbind {
                peer: peer.clone(),
                id: req.id.clone(),
            })
            .await;
        if !publication {
            // Its mix-minus binding, if it has one (the dataplane answers no such binding
            // otherwise).
            let _ = portal
                .st
                .link
                .call(Request::PeerUnbind {
                    peer,
                    id: crate::mixing::minus_subscription(&req.id),
                })
                .await;
        }
        // A split subscription's other binding ends with it.
        if let Some(s) = portal
            .st
            .sessions
            .remove(&crate::mixing::minus_subscription(&req.id))
        {
            portal.st.media.end(&s, "unsubscribed");
        }
        if let Some(s) = portal.st.sessions.remove(&req.id) {
            portal.st.media.end(
                &s,
                if publication {
                    "unpublished"
                } else {
                    "unsubscribed"
                },
            );
        }
    }
    Ok(Value::Null)
}

async fn unpublish(
    socket: SocketRef,
    TryData(data): TryData<Value>,
    ack: AckSender,
    State(portal): Portal_,
) {
    let r = end_own(&socket, data_of(data), &portal, true).await;
    answer(&portal, ack, "unpublish", r);
}

async fn unsubscribe(
    socket: SocketRef,
    TryData(data): TryData<Value>,
    ack: AckSender,
    State(portal): Portal_,
) {
    let r = end_own(&socket, data_of(data), &portal, false).await;
    answer(&portal, ack, "unsubscribe", r);
}

async fn stream_control(
    socket: SocketRef,
    TryData(data): TryData<Value>,
    ack: AckSender,
    State(portal): Portal_,
) {
    let result = async {
        let me = portal
            .member_of(socket.id)
            .ok_or_else(PortalError::not_logged_in)?;
        let req: p::ControlRequest = p::parse(data_of(data), "stream-control")?;
        let status = match req.operation.as_str() {
            "pause" => "inactive",
            "play" => "active",
            "mix" | "unmix" => {
                return Err(PortalError::new(
                    2002,
                    "mixing comes with the mixer: not offered yet",
                ))
            }
            other => {
                return Err(PortalError::bad(format!(
                    "operation {other:?}: use pause or play"
                )))
            }
        };
        let (audio, video) = p::av(&req.data)?;
        let (room, service) = portal
            .members()
            .get(&me)
            .map(|m| (m.room.clone(), m.service.clone()))
            .ok_or_else(PortalError::not_logged_in)?;
        let s = portal
            .st
            .conference
            .stream(&room, &req.id)
            .map_err(|_| PortalError::new(1004, format!("no stream {:?}", req.id)))?;
        match &s.info {
            crate::model::conference::StreamDetails::Forward(f)
                if f.owner == me && f.origin != crate::model::conference::SELECTING => {}
            _ => {
                return Err(PortalError::denied(
                    "only the publisher controls its stream",
                ))
            }
        }
        let mut ops = Vec::new();
        if audio && s.media.audio.as_ref().is_some() {
            ops.push(json!({"op": "replace", "path": "/media/audio/status", "value": status}));
        }
        if video && s.media.video.as_ref().is_some() {
            ops.push(json!({"op": "replace", "path": "/media/video/status", "value": status}));
        }
        if ops.is_empty() {
            return Err(PortalError::bad("the stream has no such track"));
        }
        let rid = room.clone();
        let r = portal
            .st
            .db(move |st| st.room(&service, &rid))
            .await
            .map_err(|e| PortalError::new(2001, e.to_string()))?
            .ok_or_else(|| PortalError::new(1003, "room not found"))?;
        // The conference tells everyone (stream update) and the media follows it.
        portal
            .st
            .conference
            .patch_stream(&room, &r.config, &req.id, Value::Array(ops))
            .map_err(|e| PortalError::bad(e.to_string()))?;
        Ok(Value::Null)
    }
    .await;
    answer(&portal, ack, "stream-control", result);
}

async fn subscription_control(
    socket: SocketRef,
    TryData(data): TryData<Value>,
    ack: AckSender,
    State(portal): Portal_,
) {
    let result = async {
        let me = portal.member_of(socket.id).ok_or_else(PortalError::not_logged_in)?;
        let req: p::ControlRequest = p::parse(data_of(data), "subscription-control")?;
        let owns = portal.members().get(&me).is_some_and(|m| m.transports.values().any(|t| t.bound.iter().any(|b| b.id == req.id && b.stream.is_some())));
        if !owns {
            return Err(PortalError::new(1001, format!("no subscription {:?} of yours", req.id)));
        }
        match req.operation.as_str() {
            "pause" | "play" => {
                let (audio, video) = p::av(&req.data)?;
                let on = req.operation == "play";
                let r = portal
                    .st
                    .link
                    .call(Request::SubscriptionControl { subscription: req.id.clone(), audio: audio.then_some(on), video: video.then_some(on) })
                    .await;
                r.map_err(rpc_error)?;
                Ok(Value::Null)
            }
            "update" => {
                let update: p::SubscriptionUpdate = serde_json::from_value(req.data.clone())
                    .map_err(|e| PortalError::bad(format!("subscription-control update: {e}")))?;
                if update.audio.as_ref().is_some_and(|a| a.from.is_some())
                    || update.video.as_ref().is_some_and(|v| v.from.is_some())
                {
                    return Err(PortalError::new(2002, "switching a subscription to another stream is not offered: subscribe to it instead"));
                }
                let mut cap = SubscriptionCap::default();
                if let Some(params) = update.video.as_ref().and_then(|v| v.parameters.as_ref()) {
                    crate::caps::read_owt_parameters(params, &mut cap, None).map_err(cap_error)?;
                }
                let r = portal.st.link.call(Request::SubscriptionUpdate { subscription: req.id.clone(), cap }).await;
                r.map_err(rpc_error)?;
                Ok(Value::Null)
            }
            "querybwe" => {
                let r = portal.st.link.call(Request::SubscriptionQuery { subscription: req.id.clone() }).await;
                match r.map_err(rpc_error)? {
                    Response::SubscriptionState(s) => match s.estimated_bitrate_bps {
                        Some(bps) => Ok(json!({"estimatedBitrate": bps})),
                        None => Err(PortalError::new(2002, "no bandwidth estimate: the room's enableBandwidthAdaptation is off, or the estimate has not started")),
                    },
                    other => Err(PortalError::new(2001, format!("unexpected dataplane answer {other:?}"))),
                }
            }
            other => Err(PortalError::bad(format!("operation {other:?}: use pause, play, update or querybwe"))),
        }
    }
    .await;
    answer(&portal, ack, "subscription-control", result);
}
