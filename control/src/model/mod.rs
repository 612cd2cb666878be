//! The domain model: rooms (stored), services and tokens (stored), and what is live in
//! each room (participants and streams, in memory).

pub mod conference;
pub mod media;
pub mod or_false;
pub mod room;
pub mod service;
pub mod validate;
