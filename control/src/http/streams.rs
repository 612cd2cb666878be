//! `/v1/rooms/{room}/streams`: what is published (forward) or mixed in a room.

use super::auth::Caller;
use super::body::JsonBody;
use super::error::{ApiError, ErrorBody};
use super::rooms::owned_room;
use super::Shared;
use crate::model::conference::StreamInfo;
use axum::extract::{Path, State};
use axum::{Extension, Json};

/// The streams in a room.
#[utoipa::path(get, path = "/v1/rooms/{room}/streams", tag = "streams",
    params(("room" = String, Path, description = "Room id")),
    responses((status = 200, body = [StreamInfo]), (status = 404, body = ErrorBody)),
    security(("mauth" = []), ("sy_hmac" = [])))]
pub async fn list(
    State(st): State<Shared>,
    Extension(caller): Extension<Caller>,
    Path(room): Path<String>,
) -> Result<Json<Vec<StreamInfo>>, ApiError> {
    owned_room(&st, &caller, &room).await?;
    Ok(Json(st.conference.streams(&room)))
}

/// One stream.
#[utoipa::path(get, path = "/v1/rooms/{room}/streams/{stream}", tag = "streams",
    params(("room" = String, Path, description = "Room id"), ("stream" = String, Path, description = "Stream id")),
    responses((status = 200, body = StreamInfo), (status = 404, body = ErrorBody)),
    security(("mauth" = []), ("sy_hmac" = [])))]
pub async fn get(
    State(st): State<Shared>,
    Extension(caller): Extension<Caller>,
    Path((room, id)): Path<(String, String)>,
) -> Result<Json<StreamInfo>, ApiError> {
    owned_room(&st, &caller, &room).await?;
    Ok(Json(st.conference.stream(&room, &id)?))
}

/// Update a stream with OWT's operations: mix/unmix (`/info/inViews`) and pause/play
/// (`/media/{audio,video}/status`) on forward streams; regions (`/info/layout…`) on
/// mixed streams.
#[utoipa::path(patch, path = "/v1/rooms/{room}/streams/{stream}", tag = "streams",
    params(("room" = String, Path, description = "Room id"), ("stream" = String, Path, description = "Stream id")),
    request_body(content = Vec<Object>, description = "OWT's StreamUpdate list"),
    responses((status = 200, body = StreamInfo), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("mauth" = []), ("sy_hmac" = [])))]
pub async fn patch(
    State(st): State<Shared>,
    Extension(caller): Extension<Caller>,
    Path((room, id)): Path<(String, String)>,
    JsonBody(body): JsonBody,
) -> Result<Json<StreamInfo>, ApiError> {
    let r = owned_room(&st, &caller, &room).await?;
    Ok(Json(
        st.conference.patch_stream(&room, &r.config, &id, body)?,
    ))
}

/// Stop a stream.
#[utoipa::path(delete, path = "/v1/rooms/{room}/streams/{stream}", tag = "streams",
    params(("room" = String, Path, description = "Room id"), ("stream" = String, Path, description = "Stream id")),
    responses((status = 200, description = "Stopped"), (status = 404, body = ErrorBody)),
    security(("mauth" = []), ("sy_hmac" = [])))]
pub async fn delete(
    State(st): State<Shared>,
    Extension(caller): Extension<Caller>,
    Path((room, id)): Path<(String, String)>,
) -> Result<(), ApiError> {
    owned_room(&st, &caller, &room).await?;
    st.conference.drop_stream(&room, &id)?;
    tracing::info!(room = %room, stream = %id, "stream dropped");
    Ok(())
}
