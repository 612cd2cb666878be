//! `POST /v1/rooms/{room}/tokens`.

use super::auth::Caller;
use super::body::JsonBody;
use super::error::{ApiError, ErrorBody};
use super::rooms::owned_room;
use super::Shared;
use crate::ids::now_ms;
use crate::model::validate::from_value;
use crate::store::Preference;
use crate::token::Grant;
use axum::extract::{Path, State};
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::Extension;
use serde::Deserialize;
use utoipa::ToSchema;

/// OWT's `object(TokenRequest)`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    /// The participant's user id, chosen by the app.
    #[serde(default)]
    pub user: Option<String>,
    /// One of the room's roles.
    #[serde(default)]
    pub role: Option<String>,
    /// Where the participant connects from.
    #[serde(default)]
    pub preference: Option<Preference>,
}

/// Create a token for one participant to join the room once, within the token lifetime.
#[utoipa::path(post, path = "/v1/rooms/{room}/tokens", tag = "tokens",
    params(("room" = String, Path, description = "Room id")),
    request_body = TokenRequest,
    responses((status = 200, description = "The token: base64 of {tokenId, host, secure, signature}", body = String, content_type = "text/plain"),
              (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("mauth" = []), ("sy_hmac" = [])))]
pub async fn create(
    State(st): State<Shared>,
    Extension(caller): Extension<Caller>,
    Path(room): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<impl IntoResponse, ApiError> {
    if !body.is_object() {
        return Err(ApiError::bad(
            "",
            "must be a JSON object: {\"user\": …, \"role\": …}",
        ));
    }
    let req: TokenRequest = from_value(body, "")?;
    let r = owned_room(&st, &caller, &room).await?;
    let user = req.user.unwrap_or_default();
    if user.trim().is_empty() || user.chars().count() > 256 {
        return Err(ApiError::bad("user", "is required: 1 to 256 characters"));
    }
    let role = req.role.unwrap_or_default();
    if r.config.role(&role).is_none() {
        let roles: Vec<&str> = r.config.roles.iter().map(|r| r.role.as_str()).collect();
        return Err(ApiError::bad(
            "role",
            format!("{role:?} is not a role of this room; its roles are {roles:?}"),
        ));
    }
    let tokens = st.tokens.clone();
    let service_id = caller.service.id.clone();
    let preference = req.preference.unwrap_or_default();
    let token = st
        .db(move |s| {
            tokens.issue(
                s,
                Grant {
                    service_id: &service_id,
                    room_id: &room,
                    user: &user,
                    role: &role,
                    preference,
                },
                now_ms(),
            )
        })
        .await?;
    Ok(([(CONTENT_TYPE, "text/plain; charset=utf-8")], token))
}
