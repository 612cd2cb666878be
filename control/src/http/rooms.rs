//! `/v1/rooms` and `/v1/rooms/{room}`.

use super::auth::Caller;
use super::body::{page_from_query, JsonBody};
use super::error::{ApiError, ErrorBody};
use super::Shared;
use crate::ids::new_id;
use crate::model::room::{Room, RoomConfig};
use crate::model::validate::{parse_room_config, FieldError};
use axum::extract::{Path, Query, State};
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde_json::Value;
use std::collections::HashMap;

/// Turns a create or PUT body into a room configuration. Two shapes are accepted:
/// OWT's documented `{name, options: {…}}`, and a room object itself (what OWT's server
/// actually took on PUT, and what GET returns).
pub fn config_from_body(body: Value) -> Result<RoomConfig, FieldError> {
    let Value::Object(mut obj) = body else {
        return Err(FieldError::new(
            "",
            "must be a JSON object: {\"name\": …, \"options\": {…}}",
        ));
    };
    if let Some(options) = obj.remove("options") {
        let Value::Object(mut options) = options else {
            return Err(FieldError::new("options", "must be a JSON object"));
        };
        if let Some((k, _)) = obj.iter().find(|(k, _)| k.as_str() != "name") {
            return Err(FieldError::new(
                k.as_str(),
                "unknown field: put room settings inside \"options\"",
            ));
        }
        match obj.remove("name") {
            Some(Value::String(name)) => {
                options.insert("name".into(), Value::String(name));
            }
            Some(_) => return Err(FieldError::new("name", "must be a string")),
            None => {}
        }
        parse_room_config(Value::Object(options), "options")
    } else {
        parse_room_config(Value::Object(obj), "")
    }
}

async fn load(st: &Shared, caller: &Caller, room: &str) -> Result<Room, ApiError> {
    let (svc, id) = (caller.service.id.clone(), room.to_string());
    st.db(move |s| s.room(&svc, &id))
        .await?
        .ok_or_else(ApiError::room_not_found)
}

/// Loads a room of the caller's, or 404 (shared by the sub-resources).
pub async fn owned_room(st: &Shared, caller: &Caller, room: &str) -> Result<Room, ApiError> {
    load(st, caller, room).await
}

/// Create a room.
#[utoipa::path(post, path = "/v1/rooms", tag = "rooms",
    request_body(content = Object, description = "OWT's RoomConfig: {name, options: object(Room)}; or a room object"),
    responses((status = 200, description = "The room, with OWT's defaults filled in", body = Room),
              (status = 400, description = "Invalid configuration; `error.field` names the field", body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 413, body = ErrorBody)),
    security(("mauth" = []), ("sy_hmac" = [])))]
pub async fn create(
    State(st): State<Shared>,
    Extension(caller): Extension<Caller>,
    JsonBody(body): JsonBody,
) -> Result<Json<Room>, ApiError> {
    let config = config_from_body(body)?;
    let room = Room {
        id: new_id(),
        config,
    };
    let svc = caller.service.id.clone();
    let room = st
        .db(move |s| s.create_room(&svc, &room).map(|_| room))
        .await?;
    tracing::info!(room = %room.id, name = %room.config.name, "room created");
    Ok(Json(room))
}

/// List the caller's rooms, oldest first.
#[utoipa::path(get, path = "/v1/rooms", tag = "rooms",
    params(("page" = Option<u64>, Query, description = "1-based page, with per_page"),
           ("per_page" = Option<u64>, Query, description = "Page size; without it every room is returned")),
    responses((status = 200, description = "The rooms; header X-Total-Count has the total", body = [Room]),
              (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)),
    security(("mauth" = []), ("sy_hmac" = [])))]
pub async fn list(
    State(st): State<Shared>,
    Extension(caller): Extension<Caller>,
    query: Result<Query<HashMap<String, String>>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::bad("", format!("malformed query string: {e}")))?;
    let page = page_from_query(&q)?;
    let svc = caller.service.id.clone();
    let (rooms, total) = st.db(move |s| s.rooms(&svc, page)).await?;
    let mut resp = Json(rooms).into_response();
    resp.headers_mut()
        .insert("x-total-count", HeaderValue::from(total));
    Ok(resp)
}

/// One room.
#[utoipa::path(get, path = "/v1/rooms/{room}", tag = "rooms",
    params(("room" = String, Path, description = "Room id")),
    responses((status = 200, body = Room), (status = 404, body = ErrorBody), (status = 401, body = ErrorBody)),
    security(("mauth" = []), ("sy_hmac" = [])))]
pub async fn get(
    State(st): State<Shared>,
    Extension(caller): Extension<Caller>,
    Path(room): Path<String>,
) -> Result<Json<Room>, ApiError> {
    Ok(Json(load(&st, &caller, &room).await?))
}

async fn save(st: &Shared, caller: &Caller, room: Room) -> Result<Json<Room>, ApiError> {
    let svc = caller.service.id.clone();
    let (found, room) = st
        .db(move |s| s.update_room(&svc, &room).map(|f| (f, room)))
        .await?;
    if !found {
        return Err(ApiError::room_not_found());
    }
    tracing::info!(room = %room.id, "room updated");
    st.mixing.room_changed(&room.id);
    Ok(Json(room))
}

/// Replace a room's whole configuration: settings left out go back to their defaults.
#[utoipa::path(put, path = "/v1/rooms/{room}", tag = "rooms",
    params(("room" = String, Path, description = "Room id")),
    request_body(content = Object, description = "As for creation: {name, options} or a room object"),
    responses((status = 200, body = Room), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("mauth" = []), ("sy_hmac" = [])))]
pub async fn put(
    State(st): State<Shared>,
    Extension(caller): Extension<Caller>,
    Path(room): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Json<Room>, ApiError> {
    let current = load(&st, &caller, &room).await?;
    let config = config_from_body(body)?;
    save(
        &st,
        &caller,
        Room {
            id: current.id,
            config,
        },
    )
    .await
}

/// Change part of a room: a JSON merge patch (RFC 7396, an object) or a JSON patch
/// (RFC 6902, an array of operations) on the room object.
#[utoipa::path(patch, path = "/v1/rooms/{room}", tag = "rooms",
    params(("room" = String, Path, description = "Room id")),
    request_body(content = Object, description = "An object (merge patch) or an array of {op, path, value} (JSON patch)"),
    responses((status = 200, body = Room), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("mauth" = []), ("sy_hmac" = [])))]
pub async fn patch(
    State(st): State<Shared>,
    Extension(caller): Extension<Caller>,
    Path(room): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Json<Room>, ApiError> {
    let current = load(&st, &caller, &room).await?;
    let mut doc =
        serde_json::to_value(&current.config).map_err(|e| ApiError::Internal(e.to_string()))?;
    match body {
        Value::Object(_) => json_patch::merge(&mut doc, &body),
        Value::Array(_) => {
            let ops: json_patch::Patch = serde_json::from_value(body)
                .map_err(|e| ApiError::bad("", format!("not a JSON patch (RFC 6902): {e}")))?;
            json_patch::patch(&mut doc, &ops)
                .map_err(|e| ApiError::bad(format!("[{}]", e.operation), e.to_string()))?;
        }
        _ => {
            return Err(ApiError::bad(
                "",
                "must be an object (merge patch) or an array (JSON patch)",
            ))
        }
    }
    let config = parse_room_config(doc, "")?;
    save(
        &st,
        &caller,
        Room {
            id: current.id,
            config,
        },
    )
    .await
}

/// Delete a room; everyone in it is dropped and its tokens stop working.
#[utoipa::path(delete, path = "/v1/rooms/{room}", tag = "rooms",
    params(("room" = String, Path, description = "Room id")),
    responses((status = 200, description = "Deleted", body = String), (status = 404, body = ErrorBody)),
    security(("mauth" = []), ("sy_hmac" = [])))]
pub async fn delete(
    State(st): State<Shared>,
    Extension(caller): Extension<Caller>,
    Path(room): Path<String>,
) -> Result<&'static str, ApiError> {
    let svc = caller.service.id.clone();
    let id = room.clone();
    if !st.db(move |s| s.delete_room(&svc, &id)).await? {
        return Err(ApiError::room_not_found());
    }
    st.conference.delete_room(&room);
    tracing::info!(room = %room, "room deleted");
    Ok("Room deleted")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn both_body_shapes() {
        let a = config_from_body(json!({"name": "a", "options": {"participantLimit": 3}})).unwrap();
        let b = config_from_body(json!({"name": "a", "participantLimit": 3})).unwrap();
        assert_eq!(a, b);
        assert_eq!(
            config_from_body(json!({"name": "a", "options": 1}))
                .unwrap_err()
                .field,
            "options"
        );
        assert_eq!(
            config_from_body(json!({"name": "a", "options": {}, "x": 1}))
                .unwrap_err()
                .field,
            "x"
        );
        assert_eq!(
            config_from_body(json!({"name": 5, "options": {}}))
                .unwrap_err()
                .field,
            "name"
        );
        assert_eq!(
            config_from_body(
                json!({"name": "a", "options": {"views": [{"video": {"maxInput": 999}}]}})
            )
            .unwrap_err()
            .field,
            "options.views[0].video.maxInput"
        );
        assert_eq!(config_from_body(json!("room")).unwrap_err().field, "");
    }
}
