//! The one error type of the HTTP API, in OWT's shape:
//! `{"error": {"code": 1003, "message": "room not found", "field": …}}`.
//!
//! OWT's internal codes: 1001 general not found, 1002 service not found, 1003 room not
//! found, 1004 stream not found, 1005 participant not found, 1101 authentication failed,
//! 1102 permission denied, 1301 request data error, 1401 database error, 2001 unexpected.

use crate::model::conference::ConferenceError;
use crate::model::validate::FieldError;
use crate::store::StoreError;
use crate::token::TokenError;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use switchyard_auth::AuthError;
use utoipa::ToSchema;

/// Everything an API call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request body or a parameter is wrong (400, code 1301).
    #[error("{0}")]
    BadRequest(FieldError),
    /// The body is larger than `management-api.max_body_bytes` (413).
    #[error("request body is larger than the {0} bytes allowed")]
    TooLarge(usize),
    /// Authentication failed (401, code 1101).
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// A token was refused (401 for bad tokens, 403 for a wrong room).
    #[error(transparent)]
    Token(TokenError),
    /// No `Authorization: Bearer` token where one is needed (401, code 1101).
    #[error("Authorization: Bearer <token> is required: get a token from POST /v1/rooms/{{room}}/tokens")]
    TokenRequired,
    /// The body is not of the media type the endpoint takes (415).
    #[error("unsupported content type: send {0}")]
    UnsupportedMediaType(String),
    /// A needed part of the service is down (503, code 1201).
    #[error("{0}")]
    Unavailable(String),
    /// The service may not do this (403, code 1102).
    #[error("permission denied: {0}")]
    Forbidden(String),
    /// No such resource (404); the code says which kind.
    #[error("{message}")]
    NotFound {
        /// OWT's code: 1001-1005.
        code: u32,
        /// What was not found.
        message: String,
    },
    /// A unique value is taken (409).
    #[error("{0}")]
    Conflict(String),
    /// The route exists but not with this method (405).
    #[error("method not allowed on this path")]
    MethodNotAllowed,
    /// The store failed (500, code 1401); the detail goes to the log only.
    #[error("database error")]
    Store(StoreError),
    /// A bug (500, code 2001); the detail goes to the log only.
    #[error("unexpected server error")]
    Internal(String),
}

/// The body of every error answer.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// OWT's error object, with the offending field where there is one.
#[derive(Serialize, ToSchema)]
pub struct ErrorDetail {
    /// OWT's internal error code.
    pub code: u32,
    /// What went wrong and what to do about it.
    pub message: String,
    /// The dotted path of the offending field, for validation errors.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl ApiError {
    /// A 400 about `field`.
    pub fn bad(field: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError::BadRequest(FieldError::new(field, message))
    }

    /// 404 for a room.
    pub fn room_not_found() -> Self {
        ApiError::NotFound {
            code: 1003,
            message: "room not found".into(),
        }
    }

    /// 404 for a service.
    pub fn service_not_found() -> Self {
        ApiError::NotFound {
            code: 1002,
            message: "service not found".into(),
        }
    }

    /// The status and OWT code.
    pub fn status_code(&self) -> (StatusCode, u32) {
        match self {
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, 1301),
            ApiError::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, 1301),
            ApiError::Auth(AuthError::Overloaded) => (StatusCode::SERVICE_UNAVAILABLE, 1101),
            ApiError::Auth(_) => (StatusCode::UNAUTHORIZED, 1101),
            ApiError::Token(TokenError::WrongRoom) => (StatusCode::FORBIDDEN, 1102),
            ApiError::Token(TokenError::Store(_)) => (StatusCode::INTERNAL_SERVER_ERROR, 1401),
            ApiError::Token(_) | ApiError::TokenRequired => (StatusCode::UNAUTHORIZED, 1101),
            ApiError::UnsupportedMediaType(_) => (StatusCode::UNSUPPORTED_MEDIA_TYPE, 1301),
            ApiError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, 1201),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, 1102),
            ApiError::NotFound { code, .. } => (StatusCode::NOT_FOUND, *code),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, 1301),
            ApiError::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, 1001),
            ApiError::Store(_) => (StatusCode::INTERNAL_SERVER_ERROR, 1401),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, 2001),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(m) => ApiError::Conflict(m),
            e => ApiError::Store(e),
        }
    }
}

impl From<FieldError> for ApiError {
    fn from(e: FieldError) -> Self {
        ApiError::BadRequest(e)
    }
}

impl From<TokenError> for ApiError {
    fn from(e: TokenError) -> Self {
        match e {
            TokenError::Store(s) => ApiError::Store(s),
            e => ApiError::Token(e),
        }
    }
}

impl From<ConferenceError> for ApiError {
    fn from(e: ConferenceError) -> Self {
        match e {
            ConferenceError::ParticipantNotFound => ApiError::NotFound {
                code: 1005,
                message: "participant not found".into(),
            },
            ConferenceError::StreamNotFound => ApiError::NotFound {
                code: 1004,
                message: "stream not found".into(),
            },
            ConferenceError::BadPatch(f) => ApiError::BadRequest(f),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_code();
        match &self {
            ApiError::Store(e) => tracing::error!(error = %e, "store failure"),
            ApiError::Internal(e) => tracing::error!(error = %e, "internal error"),
            ApiError::Auth(e) => tracing::info!(reason = %e, "authentication refused"),
            _ => tracing::debug!(error = %self, "request refused"),
        }
        let field = match &self {
            ApiError::BadRequest(f) => Some(f.field.clone()),
            _ => None,
        };
        let message = match &self {
            ApiError::BadRequest(f) if f.field.is_empty() => f.message.clone(),
            ApiError::BadRequest(f) => format!("{}: {}", f.field, f.message),
            e => e.to_string(),
        };
        let body = ErrorBody {
            error: ErrorDetail {
                code,
                message,
                field,
            },
        };
        let mut resp = (status, axum::Json(body)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(
                    "MAuth realm=\"switchyard\", SY-HMAC-SHA256 realm=\"switchyard\"",
                ),
            );
        }
        if status == StatusCode::SERVICE_UNAVAILABLE {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        resp
    }
}
