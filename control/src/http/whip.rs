//! WHIP (RFC 9725) and WHEP: publish into a room and play a room's stream with a plain
//! SDP offer over HTTP, authorised by a token from `POST /v1/rooms/{room}/tokens`.
//!
//! - `POST /v1/whip/{room}` with `Authorization: Bearer <token>` and an
//!   `application/sdp` offer: `201 Created`, the answer, and `Location:
//!   /v1/whip/{room}/{stream}` where `{stream}` is the publication's stream id.
//! - `POST /v1/whep/{room}/{stream}` likewise plays one stream: `Location:
//!   /v1/whep/{room}/{stream}/{subscription}`.
//! - `DELETE` on either location ends the session; it takes the same token that created
//!   it (tokens are single use for creating, and name their session afterwards).
//! - `PATCH` answers 405: the server is ICE-lite and announces all its candidates in the
//!   answer, so trickle ICE is not needed, and ICE restarts are not offered (RFC 9725
//!   §4.3.1 allows a session to support neither).
//!
//! The token's role decides what may be sent or received; the room's `participantLimit`
//! and `inputLimit` are checked before the dataplane is asked.

use super::error::ApiError;
use super::Shared;
use crate::dataplane::DataplaneError;
use crate::ids::{new_id, now_ms};
use crate::media::Session;
use crate::model::conference::{
    AudioInfo, ForwardInfo, Participant, Permission, StreamDetails, StreamInfo, StreamKind,
    StreamMedia, TrackStatus, VideoInfo,
};
use crate::model::media::{AudioCodec, AudioFormat, VideoCodec, VideoFormat};
use crate::model::or_false::OrFalse;
use crate::store::TokenRecord;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::header::{ALLOW, AUTHORIZATION, CONTENT_TYPE, ETAG, LOCATION};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use switchyard_dataplane_api::{
    Binding, ErrorCode, MediaKind, PeerCreate, Request, Response as RpcResponse, Track,
};

fn bearer(headers: &HeaderMap) -> Result<&str, ApiError> {
    let value = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or(ApiError::TokenRequired)?;
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .ok_or(ApiError::TokenRequired)?;
    Ok(token.trim())
}

fn sdp_body(headers: &HeaderMap, body: &Bytes) -> Result<String, ApiError> {
    let ct = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !ct.to_ascii_lowercase().starts_with("application/sdp") {
        return Err(ApiError::UnsupportedMediaType("application/sdp".into()));
    }
    let text = std::str::from_utf8(body)
        .map_err(|_| ApiError::bad("", "the SDP offer is not UTF-8 text"))?;
    if !text.trim_start().starts_with("v=0") {
        return Err(ApiError::bad(
            "",
            "malformed SDP offer: it must start with \"v=0\"",
        ));
    }
    Ok(text.to_string())
}

fn created_response(location: String, answer: String, etag: &str) -> Response {
    let mut resp = (StatusCode::CREATED, answer).into_response();
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/sdp"));
    if let Ok(v) = HeaderValue::from_str(&location) {
        h.insert(LOCATION, v);
    }
    if let Ok(v) = HeaderValue::from_str(&format!("\"{etag}\"")) {
        h.insert(ETAG, v);
    }
    resp
}

fn dataplane_error(e: DataplaneError) -> ApiError {
    match e {
        DataplaneError::Rpc(r)
            if matches!(r.code, ErrorCode::BadSdp | ErrorCode::NoUsableMedia) =>
        {
            ApiError::bad("", r.message)
        }
        DataplaneError::Rpc(r) if r.code == ErrorCode::UnknownPublication => ApiError::NotFound {
            code: 1004,
            message: "stream not found".into(),
        },
        DataplaneError::Unavailable | DataplaneError::Timeout => {
            ApiError::Unavailable(e.to_string())
        }
        DataplaneError::Rpc(r) if r.code == ErrorCode::CoreUnavailable => {
            ApiError::Unavailable(r.message)
        }
        other => ApiError::Internal(other.to_string()),
    }
}

fn audio_format(t: &Track) -> AudioFormat {
    let codec = match t.codec.as_str() {
        "pcmu" => AudioCodec::Pcmu,
        "pcma" => AudioCodec::Pcma,
        "g722" => AudioCodec::G722,
        _ => AudioCodec::Opus,
    };
    let (rate, ch) = match codec {
        AudioCodec::Opus => (Some(48000), Some(2)),
        AudioCodec::G722 => (Some(16000), Some(1)),
        _ => (None, None),
    };
    AudioFormat::new(codec, rate, ch)
}

fn video_format(t: &Track) -> VideoFormat {
    let codec = match t.codec.as_str() {
        "h264" => VideoCodec::H264,
        "h265" => VideoCodec::H265,
        "vp9" => VideoCodec::Vp9,
        "av1" => VideoCodec::Av1,
        _ => VideoCodec::Vp8,
    };
    VideoFormat::new(codec, None)
}

/// OWT's stream description of a WHIP publication, mixed into the views `in_views`.
pub fn stream_info(id: &str, owner: &str, tracks: &[Track], in_views: Vec<String>) -> StreamInfo {
    let audio = tracks.iter().find(|t| t.kind == MediaKind::Audio);
    let video = tracks.iter().find(|t| t.kind == MediaKind::Video);
    StreamInfo {
        id: id.to_string(),
        kind: StreamKind::Forward,
        media: StreamMedia {
            audio: audio.map_or(OrFalse::False, |t| {
                OrFalse::Some(AudioInfo {
                    status: Some(TrackStatus::Active),
                    source: Some("mic".into()),
                    format: audio_format(t),
                    optional: None,
                })
            }),
            video: video.map_or(OrFalse::False, |t| {
                OrFalse::Some(VideoInfo {
                    status: Some(TrackStatus::Active),
                    source: Some("camera".into()),
                    format: video_format(t),
                    parameters: None,
                    optional: None,
                    rids: t.rids.clone(),
                })
            }),
        },
        info: StreamDetails::Forward(ForwardInfo {
            owner: owner.to_string(),
            origin: "webrtc".into(),
            in_views,
            attributes: None,
            active_input: None,
        }),
    }
}

/// Redeems the token for `room` and loads the room and the token's role.
async fn admit(
    st: &Shared,
    headers: &HeaderMap,
    room: &str,
) -> Result<
    (
        TokenRecord,
        crate::model::room::Room,
        crate::model::room::Role,
    ),
    ApiError,
> {
    let token = bearer(headers)?.to_string();
    let tokens = st.tokens.clone();
    let room_id = room.to_string();
    let rec = st
        .db(move |s| tokens.redeem(s, &token, Some(&room_id), now_ms()))
        .await?;
    let (svc, rid) = (rec.service_id.clone(), rec.room_id.clone());
    let r = st
        .db(move |s| s.room(&svc, &rid))
        .await?
        .ok_or_else(ApiError::room_not_found)?;
    let role = r.config.role(&rec.role).cloned().ok_or_else(|| {
        ApiError::Forbidden(format!(
            "the role {:?} no longer exists in this room",
            rec.role
        ))
    })?;
    Ok((rec, r, role))
}

/// `POST /v1/whip/{room}`: publish.
#[utoipa::path(post, path = "/v1/whip/{room}", tag = "media",
    params(("room" = String, Path, description = "Room id")),
    request_body(content = String, content_type = "application/sdp", description = "The SDP offer"),
    responses((status = 201, description = "The SDP answer; Location names the session /v1/whip/{room}/{stream}", body = String, content_type = "application/sdp"),
              (status = 400, description = "Malformed SDP offer", body = super::error::ErrorBody),
              (status = 401, description = "Missing, malformed, used or expired token", body = super::error::ErrorBody),
              (status = 403, description = "The role may not publish, or a room limit is reached", body = super::error::ErrorBody),
              (status = 415, body = super::error::ErrorBody), (status = 503, description = "No media dataplane", body = super::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn publish(
    State(st): State<Shared>,
    Path(room): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let offer = sdp_body(&headers, &body)?;
    let (rec, r, role) = admit(&st, &headers, &room).await?;
    if !role.publish.audio && !role.publish.video {
        return Err(ApiError::Forbidden(format!(
            "the role {:?} may not publish",
            rec.role
        )));
    }
    let selection = st
        .media
        .selection_for(&room, r.config.select_active_audio)
        .await
        .map_err(dataplane_error)?;
    let participant = new_id();
    let stream = new_id();
    let p = Participant {
        id: participant.clone(),
        role: rec.role.clone(),
        user: rec.user.clone(),
        permission: Permission::of_role(&role),
    };
    st.conference
        .admit_participant(&room, p, r.config.participant_limit)
        .map_err(|e| ApiError::Forbidden(e.to_string()))?;
    let peer = format!("whip-{stream}");
    let result = create_peer(
        &st,
        &room,
        &peer,
        vec![Binding::Publish {
            publication: stream.clone(),
            mids: None,
            audio: role.publish.audio,
            video: role.publish.video,
            selection,
        }],
        offer,
        false,
    )
    .await;
    let (created, core) = match result {
        Ok(x) => x,
        Err(e) => {
            let _ = st.conference.drop_participant(&room, &participant);
            return Err(e);
        }
    };
    let info = stream_info(
        &stream,
        &participant,
        created.tracks(&stream),
        crate::mixing::default_in_views(&r.config),
    );
    if let Err(e) = st
        .conference
        .admit_stream(&room, info, r.config.input_limit)
    {
        let _ = st
            .link
            .call(Request::PeerClose { peer: peer.clone() })
            .await;
        st.link.release(&peer);
        let _ = st.conference.drop_participant(&room, &participant);
        return Err(ApiError::Forbidden(e.to_string()));
    }
    st.sessions.insert(Session {
        id: stream.clone(),
        peer,
        room: room.clone(),
        participant,
        stream: stream.clone(),
        subscription: None,
        token_id: Some(rec.id),
        core,
        whole_peer: true,
    });
    tracing::info!(room = %room, stream = %stream, user = %rec.user, core, "WHIP publication started");
    Ok(created_response(
        format!("/v1/whip/{room}/{stream}"),
        created.answer_sdp,
        &stream,
    ))
}

/// `POST /v1/whep/{room}/{stream}`: play.
#[utoipa::path(post, path = "/v1/whep/{room}/{stream}", tag = "media",
    params(("room" = String, Path, description = "Room id"), ("stream" = String, Path, description = "Stream id"),
           ("rid" = Option<String>, Query, description = "Of a simulcast stream: no layer costlier than this one"),
           ("maxBitrate" = Option<u64>, Query, description = "Of a simulcast stream: no layer above this many bits per second"),
           ("maxWidth" = Option<u16>, Query, description = "Of a simulcast stream: no layer wider than this"),
           ("maxHeight" = Option<u16>, Query, description = "Of a simulcast stream: no layer taller than this"),
           ("width" = Option<u16>, Query, description = "Transcode the video to this width (with height)"),
           ("height" = Option<u16>, Query, description = "Transcode the video to this height (with width)"),
           ("framerate" = Option<u32>, Query, description = "Transcode the video to this many frames per second"),
           ("bitrate" = Option<u32>, Query, description = "Transcode the video to this many kbit/s"),
           ("keyFrameInterval" = Option<u32>, Query, description = "Transcode the video with a keyframe this many seconds apart")),
    request_body(content = String, content_type = "application/sdp", description = "The SDP offer (recvonly)"),
    responses((status = 201, description = "The SDP answer; Location names the session /v1/whep/{room}/{stream}/{subscription}", body = String, content_type = "application/sdp"),
              (status = 400, body = super::error::ErrorBody), (status = 401, body = super::error::ErrorBody),
              (status = 403, body = super::error::ErrorBody), (status = 404, description = "No such stream", body = super::error::ErrorBody),
              (status = 503, body = super::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn play(
    State(st): State<Shared>,
    Path((room, stream)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let offer = sdp_body(&headers, &body)?;
    let (cap, transcode) = crate::caps::read_whep_query(query.as_deref())
        .map_err(|e| ApiError::bad("query", e.to_string()))?;
    let (rec, r, role) = admit(&st, &headers, &room).await?;
    if !role.subscribe.audio && !role.subscribe.video {
        return Err(ApiError::Forbidden(format!(
            "the role {:?} may not subscribe",
            rec.role
        )));
    }
    // A room that selects active audio has its slot streams from the first use on.
    let _ = st
        .media
        .selection_for(&room, r.config.select_active_audio)
        .await;
    // Forward and mixed streams alike.
    st.conference
        .stream(&room, &stream)
        .map_err(ApiError::from)?;
    let participant = new_id();
    let p = Participant {
        id: participant.clone(),
        role: rec.role.clone(),
        user: rec.user.clone(),
        permission: Permission::of_role(&role),
    };
    st.conference
        .admit_participant(&room, p, r.config.participant_limit)
        .map_err(|e| ApiError::Forbidden(e.to_string()))?;
    let subscription = new_id();
    let peer = format!("whep-{subscription}");
    let binding = Binding::Subscribe {
        subscription: subscription.clone(),
        publication: stream.clone(),
        mids: None,
        audio: role.subscribe.audio,
        video: role.subscribe.video,
        cap,
    };
    // A publisher playing a mixed stream its own audio is mixed into hears the view
    // without itself (a WHEP player cannot publish: only a user already publishing into
    // the view gets its own audio); a player asking for another size, frame rate or
    // codec gets a transcoding.
    let (audio_mids, video_mids) = crate::mixing::sdp_mids(&offer);
    let bindings = st
        .mixing
        .bindings_for(
            binding,
            crate::mixing::Playback {
                room: &room,
                stream: &stream,
                offer_sdp: &offer,
                audio_mids,
                video_mids,
                transcode: &transcode,
                listener: Some((crate::mixing::Listener::User(rec.user.clone()), false)),
            },
        )
        .await;
    // A split subscription's audio binding (a mix-minus, or the stream beside a
    // transcoding of its video) is a session of its own.
    let plays = |i: usize| match bindings.get(i) {
        Some(Binding::Subscribe { publication, .. }) => Some(publication.clone()),
        _ => None,
    };
    let (video_from, audio_from) = (plays(0), plays(1));
    let minus_subscription = crate::mixing::minus_subscription(&subscription);
    let result = create_peer(
        &st,
        &room,
        &peer,
        bindings,
        offer,
        r.config.enable_bandwidth_adaptation,
    )
    .await;
    let (created, core) = match result {
        Ok(x) => x,
        Err(e) => {
            let _ = st.conference.drop_participant(&room, &participant);
            return Err(e);
        }
    };
    if let Some(publication) = audio_from {
        // Ends with the peer; the peer is the main session's to close.
        st.sessions.insert(Session {
            id: minus_subscription.clone(),
            peer: peer.clone(),
            room: room.clone(),
            participant: participant.clone(),
            stream: publication,
            subscription: Some(minus_subscription),
            token_id: None,
            core,
            whole_peer: false,
        });
    }
    st.sessions.insert(Session {
        id: subscription.clone(),
        peer,
        room: room.clone(),
        participant,
        // What it plays: the stream, or a transcoding of it.
        stream: video_from.unwrap_or_else(|| stream.clone()),
        subscription: Some(subscription.clone()),
        token_id: Some(rec.id),
        core,
        whole_peer: true,
    });
    tracing::info!(room = %room, stream = %stream, user = %rec.user, core, "WHEP playback started");
    Ok(created_response(
        format!("/v1/whep/{room}/{stream}/{subscription}"),
        created.answer_sdp,
        &subscription,
    ))
}

async fn create_peer(
    st: &Shared,
    room: &str,
    peer: &str,
    bindings: Vec<Binding>,
    offer_sdp: String,
    bandwidth_adaptation: bool,
) -> Result<(switchyard_dataplane_api::PeerCreated, u16), ApiError> {
    let core = st.link.place(room, peer).map_err(dataplane_error)?;
    let req = Request::PeerCreate(PeerCreate {
        peer: peer.to_string(),
        core,
        offer_sdp,
        bindings,
        close_when_empty: true,
        bandwidth_adaptation,
    });
    match st.link.call(req).await {
        Ok(RpcResponse::PeerCreated(c)) => Ok((c, core)),
        Ok(other) => {
            st.link.release(peer);
            Err(ApiError::Internal(format!(
                "unexpected dataplane answer {other:?}"
            )))
        }
        Err(e) => {
            st.link.release(peer);
            Err(dataplane_error(e))
        }
    }
}

/// Ends the session at a WHIP or WHEP location, if the token is the one that made it.
async fn end(
    st: &Shared,
    headers: &HeaderMap,
    find: impl Fn(&Session) -> bool,
) -> Result<Response, ApiError> {
    let token = bearer(headers)?;
    let body = st.tokens.decode(token)?;
    let Some(session) = st.sessions.find(find).into_iter().next() else {
        return Err(ApiError::NotFound {
            code: 1001,
            message: "no such session".into(),
        });
    };
    if session.token_id.as_deref() != Some(body.token_id.as_str()) {
        return Err(ApiError::Forbidden(
            "this token did not create this session".into(),
        ));
    }
    let media = st.media.clone();
    media.close(vec![session], "deleted by the client").await;
    Ok(StatusCode::OK.into_response())
}

/// `DELETE /v1/whip/{room}/{stream}`.
#[utoipa::path(delete, path = "/v1/whip/{room}/{stream}", tag = "media",
    params(("room" = String, Path, description = "Room id"), ("stream" = String, Path, description = "Stream id")),
    responses((status = 200, description = "Ended"), (status = 403, description = "Not the token that created it", body = super::error::ErrorBody), (status = 404, body = super::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn unpublish(
    State(st): State<Shared>,
    Path((room, stream)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    end(&st, &headers, |s| {
        s.room == room && s.stream == stream && s.is_publication()
    })
    .await
}

/// `DELETE /v1/whep/{room}/{stream}/{subscription}`.
#[utoipa::path(delete, path = "/v1/whep/{room}/{stream}/{subscription}", tag = "media",
    params(("room" = String, Path, description = "Room id"), ("stream" = String, Path, description = "Stream id"), ("subscription" = String, Path, description = "Subscription id")),
    responses((status = 200, description = "Ended"), (status = 403, body = super::error::ErrorBody), (status = 404, body = super::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn stop(
    State(st): State<Shared>,
    Path((room, _stream, sub)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    // The subscription id names the session (which may play a transcoding of the stream).
    end(&st, &headers, |s| {
        s.room == room && s.subscription.as_deref() == Some(sub.as_str())
    })
    .await
}

/// `PATCH` on a session: neither trickle ICE nor ICE restart (RFC 9725 §4.3.1).
pub async fn no_patch() -> Response {
    let mut resp = ApiError::MethodNotAllowed.into_response();
    resp.headers_mut()
        .insert(ALLOW, HeaderValue::from_static("DELETE"));
    resp
}
