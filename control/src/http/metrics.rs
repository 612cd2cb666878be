//! `GET /metrics`: Prometheus metrics of the API and of what is live.
//!
//! - `switchyard_http_requests_total{route,method,status}`
//! - `switchyard_http_request_duration_seconds{route,method}` (histogram)
//! - `switchyard_auth_failures_total{reason}`
//! - `switchyard_rooms`, `switchyard_participants`, `switchyard_streams` (gauges, read
//!   when scraped)

use super::error::ApiError;
use super::Shared;
use axum::extract::{MatchedPath, Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::time::Instant;
use switchyard_auth::AuthError;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: String,
    method: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
    method: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PortalLabels {
    message: &'static str,
    outcome: &'static str,
}

type HistogramFamily = Family<RouteLabels, Histogram, fn() -> Histogram>;

/// The control process's metrics.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: HistogramFamily,
    auth_failures: Family<ReasonLabels, Counter>,
    rooms: Gauge,
    participants: Gauge,
    streams: Gauge,
    portal_connections: Gauge,
    portal_requests: Family<PortalLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        let latency: HistogramFamily =
            Family::new_with_constructor(|| Histogram::new(exponential_buckets(0.000_05, 2.0, 18)));
        let auth_failures = Family::<ReasonLabels, Counter>::default();
        let (rooms, participants, streams) = (Gauge::default(), Gauge::default(), Gauge::default());
        registry.register(
            "switchyard_http_requests",
            "HTTP requests by route, method and status",
            requests.clone(),
        );
        registry.register(
            "switchyard_http_request_duration_seconds",
            "HTTP request latency by route and method",
            latency.clone(),
        );
        registry.register(
            "switchyard_auth_failures",
            "Refused request signatures by reason",
            auth_failures.clone(),
        );
        registry.register("switchyard_rooms", "Rooms in the store", rooms.clone());
        registry.register(
            "switchyard_participants",
            "Participants connected",
            participants.clone(),
        );
        registry.register("switchyard_streams", "Streams live", streams.clone());
        let portal_connections = Gauge::default();
        let portal_requests = Family::<PortalLabels, Counter>::default();
        registry.register(
            "switchyard_portal_connections",
            "Socket.IO connections to the portal",
            portal_connections.clone(),
        );
        registry.register(
            "switchyard_portal_requests",
            "Portal requests by message and outcome (ok or error)",
            portal_requests.clone(),
        );
        Metrics {
            portal_connections,
            portal_requests,
            registry,
            requests,
            latency,
            auth_failures,
            rooms,
            participants,
            streams,
        }
    }

    /// A portal connection opened (+1) or closed (-1).
    pub fn portal_connections(&self, delta: i64) {
        self.portal_connections.inc_by(delta);
    }

    /// Counts an answered portal request; `message` is one of the protocol's names (or
    /// "unknown"), so the label set stays small.
    pub fn portal_request(&self, message: &'static str, ok: bool) {
        let outcome = if ok { "ok" } else { "error" };
        self.portal_requests
            .get_or_create(&PortalLabels { message, outcome })
            .inc();
    }

    /// Counts a refused signature.
    pub fn auth_failure(&self, e: &ApiError) {
        let reason = match e {
            ApiError::Auth(a) => match a {
                AuthError::Missing => "missing",
                AuthError::Malformed(_) | AuthError::UnsupportedMethod(_) => "malformed",
                AuthError::SchemeDisabled => "scheme_disabled",
                AuthError::UnknownService | AuthError::BadSignature => "bad_signature",
                AuthError::Stale { .. } => "stale",
                AuthError::Replayed => "replayed",
                AuthError::Overloaded => "overloaded",
            },
            ApiError::TooLarge(_) => "too_large",
            _ => "other",
        };
        self.auth_failures
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }
}

/// Middleware: counts and times every request by its route pattern.
pub async fn track(State(st): State<Shared>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let method = req.method().as_str().to_string();
    let start = Instant::now();
    let resp = next.run(req).await;
    let m = &st.metrics;
    m.latency
        .get_or_create(&RouteLabels {
            route: route.clone(),
            method: method.clone(),
        })
        .observe(start.elapsed().as_secs_f64());
    m.requests
        .get_or_create(&RequestLabels {
            route,
            method,
            status: resp.status().as_u16(),
        })
        .inc();
    resp
}

/// Prometheus text exposition.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus/OpenMetrics text", body = String, content_type = "application/openmetrics-text")))]
pub async fn serve(State(st): State<Shared>) -> Result<Response, ApiError> {
    let rooms = st.db(|s| s.count_rooms()).await?;
    let (participants, streams) = st.conference.totals();
    let m = &st.metrics;
    m.rooms.set(rooms as i64);
    m.participants.set(participants as i64);
    m.streams.set(streams as i64);
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &m.registry)
        .map_err(|e| ApiError::Internal(format!("metrics encoding: {e}")))?;
    Ok((
        [(
            CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        out,
    )
        .into_response())
}
