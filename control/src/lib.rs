//! The Switchyard control process: the REST management API, the client portal, rooms,
//! services, tokens and the embedded store. It replaces OWT's management-api and portal
//! (and later its conference-agent and cluster-manager).
//!
//! The contract, in layers:
//! - [`model`]: OWT's data model — rooms with OWT's defaults and validation that names the
//!   field, services, and what is live in each room ([`model::conference`]).
//! - [`store`]: one trait for what control keeps on disk; [`store::sqlite`] is the embedded
//!   default. Every call is atomic; a `kill -9` leaves the last committed state.
//! - [`token`]: single-use join tokens in OWT's format.
//! - [`http`]: the API itself. [`http::app`] builds the router from an [`http::AppState`],
//!   with no sockets, so tests can drive it; [`server`] binds, serves and shuts down.
//! - [`portal`]: OWT's client protocol over Socket.IO on its own port; it turns a client's
//!   publications and subscriptions into dataplane peers with bindings (through
//!   [`dataplane`] and [`media`]) and relays the conference's events as notifications.
//!
//! Requests are authenticated by `switchyard-auth` (OWT's MAuth or SY-HMAC-SHA256) before a
//! handler runs; handlers then check what they are asked and hand off to the store or the
//! conference. Errors are [`http::error::ApiError`], answered in OWT's JSON error shape.

pub mod caps;
pub mod dataplane;
pub mod http;
pub mod ids;
pub mod link;
pub mod media;
pub mod mixing;
pub mod model;
pub mod portal;
pub mod selection;
pub mod server;
pub mod store;
pub mod token;
