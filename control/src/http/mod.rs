//! The REST management API: OWT's v1 paths and bodies, plus OpenAPI and metrics.
//!
//! [`app`] builds the whole router from an [`AppState`]; `main` only binds a listener and
//! serves it, so tests can drive the router directly or start the real binary. Every
//! handler reads the same way: the service is already authenticated (the [`auth`]
//! middleware), the handler checks what it is asked (ownership, limits, validation) and
//! hands off to the store or the conference.

pub mod auth;
pub mod body;
pub mod demo;
pub mod error;
pub mod metrics;
pub mod openapi;
pub mod participants;
pub mod rooms;
pub mod services;
pub mod streams;
pub mod tokens;
pub mod whip;

use crate::model::conference::Conference;
use crate::model::service::Service;
use crate::store::Store;
use crate::token::Tokens;
use axum::extract::{DefaultBodyLimit, Request};
use axum::routing::get;
use axum::{middleware, Router};
use error::ApiError;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use switchyard_auth::ReplayGuard;
use switchyard_config::Config;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

/// How many signed requests the replay guard remembers at most (about 32 bytes each).
pub const REPLAY_CACHE_ENTRIES: usize = 4_000_000;

/// Everything the handlers share.
pub struct AppState {
    /// The configuration the process started with.
    pub config: Arc<Config>,
    /// Rooms, services, tokens.
    pub store: Arc<dyn Store>,
    /// Who is live in which room.
    pub conference: Arc<Conference>,
    /// Token issuing and redemption.
    pub tokens: Tokens,
    /// Refuses replayed signatures.
    pub replay: Mutex<ReplayGuard>,
    /// Prometheus metrics.
    pub metrics: metrics::Metrics,
    /// Recently used services, so that signature checks need no store call.
    pub services: ServiceCache,
    /// The link to the media dataplane.
    pub link: Arc<crate::dataplane::Link>,
    /// Media sessions (WHIP and WHEP peers).
    pub sessions: Arc<crate::media::Sessions>,
    /// Keeps sessions, conference and dataplane in agreement.
    pub media: Arc<crate::media::Media>,
    /// Keeps rooms' views, the mixer and the dataplane in agreement.
    pub mixing: Arc<crate::mixing::Mixing>,
}

/// How long a cached service is trusted before the store is asked again. A service
/// deleted through another control instance (a cluster store) keeps working here for at
/// most this long.
pub const SERVICE_CACHE_TTL: Duration = Duration::from_secs(5);

/// Services by id, each trusted for [`SERVICE_CACHE_TTL`]. Unknown ids are not cached, so
/// strangers cannot fill it.
#[derive(Default)]
pub struct ServiceCache {
    entries: std::sync::RwLock<std::collections::HashMap<String, (std::time::Instant, Service)>>,
}

impl ServiceCache {
    fn get(&self, id: &str) -> Option<Service> {
        let map = self.entries.read().unwrap_or_else(|p| p.into_inner());
        map.get(id)
            .filter(|(at, _)| at.elapsed() < SERVICE_CACHE_TTL)
            .map(|(_, s)| s.clone())
    }

    fn put(&self, s: &Service) {
        let mut map = self.entries.write().unwrap_or_else(|p| p.into_inner());
        map.insert(s.id.clone(), (std::time::Instant::now(), s.clone()));
    }

    /// Drops a service (after it is deleted here).
    pub fn forget(&self, id: &str) {
        let mut map = self.entries.write().unwrap_or_else(|p| p.into_inner());
        map.remove(id);
    }
}

/// The state as handlers hold it.
pub type Shared = Arc<AppState>;

impl AppState {
    /// A service by id, from the cache or the store.
    pub async fn service(&self, id: &str) -> Result<Option<Service>, ApiError> {
        if let Some(s) = self.services.get(id) {
            return Ok(Some(s));
        }
        let id = id.to_string();
        let found = self.db(move |s| s.service(&id)).await?;
        if let Some(s) = &found {
            self.services.put(s);
        }
        Ok(found)
    }

    /// Runs a store call on the blocking pool.
    pub async fn db<R, E>(
        &self,
        f: impl FnOnce(&dyn Store) -> Result<R, E> + Send + 'static,
    ) -> Result<R, ApiError>
    where
        R: Send + 'static,
        E: Into<ApiError> + Send + 'static,
    {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || f(&*store))
            .await
            .map_err(|e| ApiError::Internal(format!("store task failed: {e}")))?
            .map_err(Into::into)
    }
}

/// The whole HTTP API.
pub fn app(state: Shared) -> Router {
    let body_limit = state.config.management_api.max_body_bytes;
    let signed = Router::new()
        .route("/v1/rooms", get(rooms::list).post(rooms::create))
        .route(
            "/v1/rooms/{room}",
            get(rooms::get)
                .put(rooms::put)
                .patch(rooms::patch)
                .delete(rooms::delete),
        )
        .route("/v1/rooms/{room}/participants", get(participants::list))
        .route(
            "/v1/rooms/{room}/participants/{participant}",
            get(participants::get)
                .patch(participants::patch)
                .delete(participants::delete),
        )
        .route("/v1/rooms/{room}/streams", get(streams::list))
        .route(
            "/v1/rooms/{room}/streams/{stream}",
            get(streams::get)
                .patch(streams::patch)
                .delete(streams::delete),
        )
        .route(
            "/v1/rooms/{room}/tokens",
            axum::routing::post(tokens::create),
        )
        .route("/services", get(services::list).post(services::create))
        .route(
            "/services/{service}",
            get(services::get).delete(services::delete),
        )
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::authenticate,
        ));
    let media = Router::new()
        .route("/v1/whip/{room}", axum::routing::post(whip::publish))
        .route(
            "/v1/whip/{room}/{stream}",
            axum::routing::delete(whip::unpublish).patch(whip::no_patch),
        )
        .route("/v1/whep/{room}/{stream}", axum::routing::post(whip::play))
        .route(
            "/v1/whep/{room}/{stream}/{subscription}",
            axum::routing::delete(whip::stop).patch(whip::no_patch),
        );
    let public = Router::new()
        .route("/v1/openapi.json", get(openapi::serve))
        .route("/metrics", get(metrics::serve))
        .route("/healthz", get(|| async { "ok" }));
    let mut router = signed.merge(media).merge(public);
    if state.config.demo.enabled {
        router = router.merge(
            Router::new()
                .route("/", get(demo::page))
                .route("/conference", get(demo::conference))
                .route("/demo/socket.io.js", get(demo::socket_io))
                .route("/demo/token", axum::routing::post(demo::token))
                .route("/demo/rooms", get(demo::streams)),
        );
    }
    router
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(middleware::from_fn_with_state(state.clone(), metrics::track))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|req: &Request| {
                    let id = req
                        .headers()
                        .get("x-request-id")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("-");
                    tracing::info_span!("request", request_id = %id, method = %req.method(), path = %req.uri().path())
                })
                .on_response(
                    |resp: &axum::response::Response, latency: Duration, _span: &tracing::Span| {
                        tracing::info!(status = resp.status().as_u16(), latency_us = latency.as_micros() as u64, "done");
                    },
                ),
        )
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::NotFound {
        code: 1001,
        message: "no such resource: see /v1/openapi.json for the API".into(),
    }
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}
