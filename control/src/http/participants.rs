//! `/v1/rooms/{room}/participants`: who is connected, their permissions, and kicking.

use super::auth::Caller;
use super::body::JsonBody;
use super::error::{ApiError, ErrorBody};
use super::rooms::owned_room;
use super::Shared;
use crate::model::conference::Participant;
use axum::extract::{Path, State};
use axum::{Extension, Json};

/// The participants in a room.
#[utoipa::path(get, path = "/v1/rooms/{room}/participants", tag = "participants",
    params(("room" = String, Path, description = "Room id")),
    responses((status = 200, body = [Participant]), (status = 404, body = ErrorBody)),
    security(("mauth" = []), ("sy_hmac" = [])))]
pub async fn list(
    State(st): State<Shared>,
    Extension(caller): Extension<Caller>,
    Path(room): Path<String>,
) -> Result<Json<Vec<Participant>>, ApiError> {
    owned_room(&st, &caller, &room).await?;
    Ok(Json(st.conference.participants(&room)))
}

/// One participant.
#[utoipa::path(get, path = "/v1/rooms/{room}/participants/{participant}", tag = "participants",
    params(("room" = String, Path, description = "Room id"), ("participant" = String, Path, description = "Participant id")),
    responses((status = 200, body = Participant), (status = 404, body = ErrorBody)),
    security(("mauth" = []), ("sy_hmac" = [])))]
pub async fn get(
    State(st): State<Shared>,
    Extension(caller): Extension<Caller>,
    Path((room, id)): Path<(String, String)>,
) -> Result<Json<Participant>, ApiError> {
    owned_room(&st, &caller, &room).await?;
    Ok(Json(st.conference.participant(&room, &id)?))
}

/// Change a participant's permissions:
/// `[{op: "replace", path: "/permission/publish[/audio|/video]", value}]`.
#[utoipa::path(patch, path = "/v1/rooms/{room}/participants/{participant}", tag = "participants",
    params(("room" = String, Path, description = "Room id"), ("participant" = String, Path, description = "Participant id")),
    request_body(content = Vec<Object>, description = "OWT's PermissionUpdate list"),
    responses((status = 200, body = Participant), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("mauth" = []), ("sy_hmac" = [])))]
pub async fn patch(
    State(st): State<Shared>,
    Extension(caller): Extension<Caller>,
    Path((room, id)): Path<(String, String)>,
    JsonBody(body): JsonBody,
) -> Result<Json<Participant>, ApiError> {
    owned_room(&st, &caller, &room).await?;
    Ok(Json(st.conference.patch_participant(&room, &id, body)?))
}

/// Drop a participant from the room.
#[utoipa::path(delete, path = "/v1/rooms/{room}/participants/{participant}", tag = "participants",
    params(("room" = String, Path, description = "Room id"), ("participant" = String, Path, description = "Participant id")),
    responses((status = 200, description = "Dropped"), (status = 404, body = ErrorBody)),
    security(("mauth" = []), ("sy_hmac" = [])))]
pub async fn delete(
    State(st): State<Shared>,
    Extension(caller): Extension<Caller>,
    Path((room, id)): Path<(String, String)>,
) -> Result<(), ApiError> {
    owned_room(&st, &caller, &room).await?;
    st.conference.drop_participant(&room, &id)?;
    tracing::info!(room = %room, participant = %id, "participant dropped");
    Ok(())
}
