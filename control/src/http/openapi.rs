//! `GET /v1/openapi.json`: the OpenAPI 3 document of the whole API, generated from the
//! handlers' annotations and the model types.

use super::error::{ErrorBody, ErrorDetail};
use super::{metrics, participants, rooms, services, streams, tokens, whip};
use crate::model::conference::{Participant, Permission, StreamInfo};
use crate::model::room::{Room, RoomConfig, View, ViewVideo};
use crate::model::service::{ServiceConfig, ServiceView};
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use std::sync::OnceLock;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
use utoipa::{Modify, OpenApi};

/// The API document.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Switchyard management API",
        description = "OWT-compatible REST management API. Sign every request with OWT's MAuth \
scheme or with SY-HMAC-SHA256 (see the README): `Authorization: SY-HMAC-SHA256 \
service=<id>,timestamp=<ms>,nonce=<8-128 chars>,signature=<base64 HMAC-SHA256 of \
\"SY-HMAC-SHA256\\n<timestamp>\\n<nonce>\\n<METHOD>\\n<path?query>\\n<hex sha256(body)>\">`."
    ),
    paths(
        rooms::create, rooms::list, rooms::get, rooms::put, rooms::patch, rooms::delete,
        participants::list, participants::get, participants::patch, participants::delete,
        streams::list, streams::get, streams::patch, streams::delete,
        tokens::create,
        services::list, services::create, services::get, services::delete,
        whip::publish, whip::unpublish, whip::play, whip::stop,
        metrics::serve, serve,
    ),
    components(schemas(Room, RoomConfig, View, ViewVideo, Participant, Permission, StreamInfo, ServiceView, ServiceConfig, ErrorBody, ErrorDetail)),
    modifiers(&Security),
    tags(
        (name = "rooms", description = "Rooms and their configuration"),
        (name = "participants", description = "Who is connected"),
        (name = "streams", description = "Published and mixed streams"),
        (name = "tokens", description = "Single-use join tokens"),
        (name = "services", description = "Service keys (super service only)"),
        (name = "media", description = "WHIP publish and WHEP play, authorised by a Bearer token"),
        (name = "operations", description = "Metrics and this document"),
    )
)]
pub struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        let components = api.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "mauth",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "Authorization",
                "OWT MAuth: MAuth realm=…,mauth_signature_method=HMAC_SHA256,mauth_serviceid=…,mauth_cnonce=…,mauth_timestamp=…,mauth_signature=base64(hex(HMAC-SHA256(key, \"timestamp,cnonce\")))",
            ))),
        );
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(utoipa::openapi::security::Http::new(
                utoipa::openapi::security::HttpAuthScheme::Bearer,
            )),
        );
        components.add_security_scheme(
            "sy_hmac",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "Authorization",
                "SY-HMAC-SHA256 service=…,timestamp=…,nonce=…,signature=… (signs method, path, query and body)",
            ))),
        );
    }
}

/// This document (built once, on first request).
#[utoipa::path(get, path = "/v1/openapi.json", tag = "operations",
    responses((status = 200, description = "OpenAPI 3 document", body = Object)))]
pub async fn serve() -> impl IntoResponse {
    static DOC: OnceLock<String> = OnceLock::new();
    let json = DOC.get_or_init(|| {
        ApiDoc::openapi()
            .to_json()
            .unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    });
    ([(CONTENT_TYPE, "application/json")], json.as_str())
}
