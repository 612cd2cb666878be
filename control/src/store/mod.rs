//! Storage of services, rooms, tokens and server secrets, behind one trait.
//!
//! [`Store`] is what control needs from a database; [`sqlite::SqliteStore`] is the
//! embedded default (one file in the data directory, no server). A distributed store for
//! clusters implements the same trait later. Implementations are synchronous and must be
//! safe to share between threads; async callers run them on the blocking pool.
//!
//! Guarantees every implementation gives:
//! - each call is atomic: it happens entirely or not at all, and a crash at any point
//!   leaves the state of the last completed call;
//! - [`Store::redeem_token`] succeeds at most once per token, even when called
//!   concurrently.

pub mod sqlite;

use crate::model::room::Room;
use crate::model::service::Service;
use serde::{Deserialize, Serialize};

/// A storage failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database engine failed (disk full, permissions, I/O error).
    #[error("database error: {0}")]
    Database(String),
    /// Stored data could not be read back.
    #[error("stored data is unreadable: {0}")]
    Corrupt(String),
    /// A unique value is already taken.
    #[error("{0}")]
    Conflict(String),
    /// The database file could not be opened or created.
    #[error("cannot open the store at {path}: {reason}")]
    Open {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
}

/// A page of a list: 1-based page number and page size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Page {
    /// 1-based.
    pub page: u64,
    /// Items per page, at least 1.
    pub per_page: u64,
}

/// OWT's token `preference`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Preference {
    /// Internet service provider hint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub isp: Option<String>,
    /// Region hint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
}

/// A token as stored: what it grants and until when.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenRecord {
    /// The token id (`tokenId` in the token).
    pub id: String,
    /// The service that created it.
    pub service_id: String,
    /// The room it admits to.
    pub room_id: String,
    /// The user id.
    pub user: String,
    /// The role.
    pub role: String,
    /// The creator's preference.
    pub preference: Preference,
    /// The portal `host:port` the token names.
    pub host: String,
    /// Whether the portal is reached over TLS.
    pub secure: bool,
    /// Milliseconds since the Unix epoch.
    pub created_ms: i64,
    /// Milliseconds since the Unix epoch.
    pub expires_ms: i64,
}

/// What redeeming a token found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Redeemed {
    /// The token was valid and is now used up.
    Granted(Box<TokenRecord>),
    /// The token had been redeemed before.
    AlreadyUsed,
    /// The token's lifetime is over (it is now used up too).
    Expired,
    /// No such token (never issued, its room was deleted, or purged long after use).
    Unknown,
}

/// What control needs from a database.
pub trait Store: Send + Sync + 'static {
    /// Adds a service; [`StoreError::Conflict`] when the name or id is taken.
    fn create_service(&self, service: &Service) -> Result<(), StoreError>;
    /// One service.
    fn service(&self, id: &str) -> Result<Option<Service>, StoreError>;
    /// The super service, once created.
    fn super_service(&self) -> Result<Option<Service>, StoreError>;
    /// Every service.
    fn services(&self) -> Result<Vec<Service>, StoreError>;
    /// Deletes a service and its rooms; returns the deleted rooms' ids, `None` if absent.
    fn delete_service(&self, id: &str) -> Result<Option<Vec<String>>, StoreError>;

    /// Adds a room owned by `service`.
    fn create_room(&self, service: &str, room: &Room) -> Result<(), StoreError>;
    /// One room of `service`.
    fn room(&self, service: &str, id: &str) -> Result<Option<Room>, StoreError>;
    /// One room, whichever service owns it (room ids are unique).
    fn room_by_id(&self, id: &str) -> Result<Option<Room>, StoreError>;
    /// Rooms of `service` in creation order, one page or all, and the total count.
    fn rooms(&self, service: &str, page: Option<Page>) -> Result<(Vec<Room>, u64), StoreError>;
    /// The ids of the rooms of `service`, in creation order.
    fn room_ids(&self, service: &str) -> Result<Vec<String>, StoreError>;
    /// Replaces a room's configuration; false if the room is not the service's.
    fn update_room(&self, service: &str, room: &Room) -> Result<bool, StoreError>;
    /// Deletes a room and its tokens; false if the room is not the service's.
    fn delete_room(&self, service: &str, id: &str) -> Result<bool, StoreError>;
    /// Rooms of every service.
    fn count_rooms(&self) -> Result<u64, StoreError>;

    /// Records an issued token.
    fn insert_token(&self, token: &TokenRecord) -> Result<(), StoreError>;
    /// Uses a token up, atomically: at most one caller ever gets `Granted` for an id.
    fn redeem_token(&self, id: &str, now_ms: i64) -> Result<Redeemed, StoreError>;
    /// Forgets tokens that expired before `before_ms`; returns how many.
    fn purge_tokens(&self, before_ms: i64) -> Result<usize, StoreError>;

    /// A named 32-byte secret, created at random the first time it is asked for.
    fn secret(&self, name: &str) -> Result<Vec<u8>, StoreError>;
}
