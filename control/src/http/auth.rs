//! Service authentication for every signed route.
//!
//! Order: parse the `Authorization` header; refuse OWT's scheme if it is switched off;
//! for `SY-HMAC-SHA256` read the body (within the size limit) because the signature
//! covers it; look the service up; verify the signature in constant time; then — only for
//! a genuine signature, so strangers cannot fill it — the replay guard checks the
//! timestamp and remembers `(service, timestamp, nonce)`. The handler then finds the
//! [`Caller`] in the request's extensions.

use super::error::ApiError;
use super::Shared;
use crate::ids::now_ms;
use crate::model::service::Service;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::Response;
use switchyard_auth::{AuthError, Credentials, RequestParts, Scheme};

/// The authenticated service making the request.
#[derive(Clone, Debug)]
pub struct Caller {
    /// The service.
    pub service: Service,
}

impl Caller {
    /// Refuses unless the caller is the super service.
    pub fn require_super(&self) -> Result<(), ApiError> {
        if self.service.is_super {
            Ok(())
        } else {
            Err(ApiError::Forbidden(
                "only the super service manages services".into(),
            ))
        }
    }
}

/// The middleware.
pub async fn authenticate(
    State(st): State<Shared>,
    req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let outcome = check(&st, req).await;
    if let Err(e) = &outcome {
        st.metrics.auth_failure(e);
    }
    let req = outcome?;
    Ok(next.run(req).await)
}

async fn check(st: &Shared, req: Request) -> Result<Request, ApiError> {
    let header = req.headers().get(AUTHORIZATION).ok_or(AuthError::Missing)?;
    let header = header
        .to_str()
        .map_err(|_| AuthError::Malformed("the header is not printable ASCII".into()))?;
    let creds = Credentials::parse(header)?;
    if creds.scheme == Scheme::OwtMauth && !st.config.management_api.owt_mauth {
        return Err(AuthError::SchemeDisabled.into());
    }
    let (req, body) = if creds.scheme == Scheme::SyHmac {
        let limit = st.config.management_api.max_body_bytes;
        let (parts, body) = req.into_parts();
        let bytes = axum::body::to_bytes(body, limit)
            .await
            .map_err(|_| ApiError::TooLarge(limit))?;
        (Request::from_parts(parts, Body::from(bytes.clone())), bytes)
    } else {
        (req, Default::default())
    };
    let service = st.service(&creds.service_id).await?;
    let path_and_query = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let parts = RequestParts {
        method: req.method().as_str(),
        path_and_query,
        body: &body,
    };
    let service = match service {
        Some(s) => {
            creds.verify(&s.key, parts)?;
            s
        }
        None => {
            // Spend the same work as for a known service, then answer as for a wrong
            // key: whether a service id exists is not told to strangers.
            let _ = creds.verify("", parts);
            tracing::info!(service = %creds.service_id, "unknown service");
            return Err(AuthError::BadSignature.into());
        }
    };
    st.replay
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .check(&creds, now_ms())?;
    let mut req = req;
    req.extensions_mut().insert(Caller { service });
    Ok(req)
}
