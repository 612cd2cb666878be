//! `/services`: service keys, managed by the super service only.

use super::auth::Caller;
use super::body::JsonBody;
use super::error::{ApiError, ErrorBody};
use super::Shared;
use crate::ids::{new_id, new_secret};
use crate::model::service::{Service, ServiceConfig, ServiceView};
use crate::model::validate::from_value;
use axum::extract::{Path, State};
use axum::{Extension, Json};

async fn view(st: &Shared, s: Service, with_key: bool) -> Result<ServiceView, ApiError> {
    let id = s.id.clone();
    let rooms = st.db(move |store| store.room_ids(&id)).await?;
    Ok(ServiceView {
        key: with_key.then(|| s.key.clone()),
        id: s.id,
        name: s.name,
        encrypted: false,
        is_super: s.is_super,
        rooms,
    })
}

/// List services.
#[utoipa::path(get, path = "/services", tag = "services",
    responses((status = 200, body = [ServiceView]), (status = 403, body = ErrorBody)),
    security(("mauth" = []), ("sy_hmac" = [])))]
pub async fn list(
    State(st): State<Shared>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<Vec<ServiceView>>, ApiError> {
    caller.require_super()?;
    let services = st.db(|s| s.services()).await?;
    let mut out = Vec::with_capacity(services.len());
    for s in services {
        out.push(view(&st, s, false).await?);
    }
    Ok(Json(out))
}

/// Create a service; its key is returned once, here.
#[utoipa::path(post, path = "/services", tag = "services",
    request_body = ServiceConfig,
    responses((status = 200, body = ServiceView), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("mauth" = []), ("sy_hmac" = [])))]
pub async fn create(
    State(st): State<Shared>,
    Extension(caller): Extension<Caller>,
    JsonBody(body): JsonBody,
) -> Result<Json<ServiceView>, ApiError> {
    caller.require_super()?;
    if !body.is_object() {
        return Err(ApiError::bad(
            "",
            "must be a JSON object: {\"name\": …, \"key\": …}",
        ));
    }
    let cfg: ServiceConfig = from_value(body, "")?;
    if cfg.name.trim().is_empty() || cfg.name.len() > 128 {
        return Err(ApiError::bad("name", "is required: 1 to 128 characters"));
    }
    let key = match cfg.key {
        Some(k) if k.len() < 16 => {
            return Err(ApiError::bad(
                "key",
                "must be at least 16 characters (or left out to get a random one)",
            ))
        }
        Some(k) => k,
        None => new_secret(32),
    };
    let service = Service {
        id: new_id(),
        name: cfg.name,
        key,
        is_super: false,
    };
    let s2 = service.clone();
    st.db(move |s| s.create_service(&s2)).await?;
    tracing::info!(service = %service.id, name = %service.name, "service created");
    Ok(Json(view(&st, service, true).await?))
}

/// One service.
#[utoipa::path(get, path = "/services/{service}", tag = "services",
    params(("service" = String, Path, description = "Service id")),
    responses((status = 200, body = ServiceView), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("mauth" = []), ("sy_hmac" = [])))]
pub async fn get(
    State(st): State<Shared>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<ServiceView>, ApiError> {
    caller.require_super()?;
    let s = st
        .db(move |s| s.service(&id))
        .await?
        .ok_or_else(ApiError::service_not_found)?;
    Ok(Json(view(&st, s, false).await?))
}

/// Delete a service and all its rooms. The super service cannot be deleted.
#[utoipa::path(delete, path = "/services/{service}", tag = "services",
    params(("service" = String, Path, description = "Service id")),
    responses((status = 200, description = "Deleted"), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("mauth" = []), ("sy_hmac" = [])))]
pub async fn delete(
    State(st): State<Shared>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<(), ApiError> {
    caller.require_super()?;
    if id == caller.service.id {
        return Err(ApiError::Forbidden(
            "the super service cannot delete itself".into(),
        ));
    }
    let id2 = id.clone();
    let rooms = st
        .db(move |s| s.delete_service(&id2))
        .await?
        .ok_or_else(ApiError::service_not_found)?;
    st.services.forget(&id);
    for room in &rooms {
        st.conference.delete_room(room);
    }
    tracing::info!(service = %id, rooms = rooms.len(), "service deleted");
    Ok(())
}
