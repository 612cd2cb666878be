//! Services: the owners of rooms, each with a key that signs its requests.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A service as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Service {
    /// The service id (24 hex characters, like OWT's).
    pub id: String,
    /// A unique name.
    pub name: String,
    /// The secret key that signs the service's requests.
    pub key: String,
    /// Whether this is the super service, which manages services.
    pub is_super: bool,
}

/// OWT's `object(Service)` as the API returns it. The key is returned only when the
/// service is created.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ServiceView {
    /// The service id.
    #[serde(rename = "_id")]
    pub id: String,
    /// The service's name.
    pub name: String,
    /// The key, only in the answer to its creation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// OWT's flag; keys are stored as given, so always false.
    pub encrypted: bool,
    /// Whether this is the super service.
    #[serde(rename = "super", default)]
    pub is_super: bool,
    /// The ids of the service's rooms.
    pub rooms: Vec<String>,
}

/// OWT's `object(ServiceConfig)`.
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    /// A unique name.
    pub name: String,
    /// The key; when absent a random one is generated and returned.
    #[serde(default)]
    pub key: Option<String>,
}
