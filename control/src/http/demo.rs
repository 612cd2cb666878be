//! The demo page and its little app server (`[demo] enabled = true` only).
//!
//! What an app server does for its users, done here so that the page works out of the box:
//! find or create a room by name, and hand out a token for it. It acts as the super
//! service, without any signature: anyone who can reach it can create rooms and tokens.
//! Never enable it on a public server.

use super::error::ApiError;
use super::Shared;
use crate::ids::{new_id, now_ms};
use crate::model::room::{Room, RoomConfig};
use crate::store::Preference;
use crate::token::Grant;
use axum::extract::{Query, State};
use axum::response::Html;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::HashMap;

/// The page.
pub async fn page() -> Html<&'static str> {
    Html(include_str!("../../web/demo.html"))
}

/// The conference page: joins a room over the client portal (Socket.IO), publishes the
/// camera and subscribes to everyone else.
pub async fn conference() -> Html<&'static str> {
    Html(include_str!("../../web/conference.html"))
}

/// The Socket.IO 2.x client the conference page loads (vendored, MIT; see `web/vendor`).
pub async fn socket_io() -> impl axum::response::IntoResponse {
    (
        [
            (axum::http::header::CONTENT_TYPE, "application/javascript"),
            (axum::http::header::CACHE_CONTROL, "public, max-age=86400"),
        ],
        include_str!("../../web/vendor/socket.io-2.5.0.min.js"),
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenAsk {
    room: String,
    user: String,
    #[serde(default)]
    role: Option<String>,
}

async fn room_by_name(st: &Shared, name: &str, create: bool) -> Result<Option<Room>, ApiError> {
    let svc = st
        .db(|s| s.super_service())
        .await?
        .ok_or_else(ApiError::service_not_found)?;
    let sid = svc.id.clone();
    let (rooms, _) = st.db(move |s| s.rooms(&sid, None)).await?;
    if let Some(r) = rooms.into_iter().find(|r| r.config.name == name) {
        return Ok(Some(r));
    }
    if !create {
        return Ok(None);
    }
    let room = Room {
        id: new_id(),
        config: RoomConfig {
            name: name.to_string(),
            ..RoomConfig::default()
        },
    };
    let sid = svc.id.clone();
    Ok(Some(
        st.db(move |s| s.create_room(&sid, &room).map(|_| room))
            .await?,
    ))
}

/// `POST /demo/token` `{room: name, user, role}` → `{room: id, token}`.
pub async fn token(
    State(st): State<Shared>,
    Json(ask): Json<TokenAsk>,
) -> Result<Json<Value>, ApiError> {
    if ask.room.trim().is_empty() || ask.user.trim().is_empty() {
        return Err(ApiError::bad("room", "room and user are required"));
    }
    let room = room_by_name(&st, ask.room.trim(), true)
        .await?
        .ok_or_else(ApiError::room_not_found)?;
    let role = ask.role.unwrap_or_else(|| "presenter".into());
    if room.config.role(&role).is_none() {
        return Err(ApiError::bad(
            "role",
            format!("{role:?} is not a role of this room"),
        ));
    }
    let svc = st
        .db(|s| s.super_service())
        .await?
        .ok_or_else(ApiError::service_not_found)?;
    let tokens = st.tokens.clone();
    let (rid, user) = (room.id.clone(), ask.user.clone());
    let token = st
        .db(move |s| {
            tokens.issue(
                s,
                Grant {
                    service_id: &svc.id,
                    room_id: &rid,
                    user: &user,
                    role: &role,
                    preference: Preference::default(),
                },
                now_ms(),
            )
        })
        .await?;
    Ok(Json(json!({"room": room.id, "token": token})))
}

/// `GET /demo/rooms?name=` → `{room, streams}`.
pub async fn streams(
    State(st): State<Shared>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let name = q.get("name").cloned().unwrap_or_default();
    let Some(room) = room_by_name(&st, &name, false).await? else {
        return Ok(Json(json!({"room": null, "streams": []})));
    };
    Ok(Json(
        json!({"room": room.id, "streams": st.conference.streams(&room.id)}),
    ))
}
