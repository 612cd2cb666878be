//! Tokens in OWT's format: what an app server gets from `POST /v1/rooms/{room}/tokens`
//! and hands to a client, which presents it to the portal (or to WHIP/WHEP).
//!
//! A token is base64 of a JSON object `{tokenId, host, secure, signature}`; OWT's client
//! SDKs read `host` and `secure` to find the portal, so the shape is kept. The signature
//! is base64 of the hex HMAC-SHA256, with a server secret, over `tokenId,host,secure`.
//! What the token grants (room, user, role) and its expiry are stored server-side under
//! its id: a token is single use ([`Store::redeem_token`]) and lives for the configured
//! lifetime (OWT: 3 minutes).

use crate::ids::new_id;
use crate::store::{Preference, Redeemed, Store, StoreError, TokenRecord};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// Why a token was refused.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// Not base64 of a JSON token object.
    #[error("malformed token: {0}")]
    Malformed(String),
    /// The signature does not match: forged or altered.
    #[error("invalid token signature")]
    BadSignature,
    /// No such token was issued (or its room was deleted).
    #[error("unknown token: ask the app server for a new one")]
    Unknown,
    /// The token was already used; tokens are single use.
    #[error("token already used: tokens are single use, ask the app server for a new one")]
    AlreadyUsed,
    /// The token's lifetime is over.
    #[error("token expired: ask the app server for a new one")]
    Expired,
    /// The token is for another room.
    #[error("token is for another room")]
    WrongRoom,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The JSON inside a token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenBody {
    /// The id the server stored the grant under.
    pub token_id: String,
    /// The portal's `host:port`.
    pub host: String,
    /// Whether the portal speaks TLS.
    pub secure: bool,
    /// base64 of the hex HMAC-SHA256 over `tokenId,host,secure`.
    pub signature: String,
}

/// Issues and redeems tokens.
#[derive(Clone)]
pub struct Tokens {
    secret: Vec<u8>,
    lifetime_ms: i64,
    host: String,
    secure: bool,
}

/// What a new token grants.
#[derive(Debug, Clone)]
pub struct Grant<'a> {
    /// The service asking.
    pub service_id: &'a str,
    /// The room.
    pub room_id: &'a str,
    /// The user id.
    pub user: &'a str,
    /// The role.
    pub role: &'a str,
    /// The app server's preference.
    pub preference: Preference,
}

impl Tokens {
    /// Tokens signed with `secret`, valid for `lifetime_ms`, naming the portal at `host`.
    pub fn new(secret: Vec<u8>, lifetime_ms: i64, host: String, secure: bool) -> Self {
        Tokens {
            secret,
            lifetime_ms,
            host,
            secure,
        }
    }

    fn sign(&self, id: &str, host: &str, secure: bool) -> String {
        let mut mac = match Hmac::<Sha256>::new_from_slice(&self.secret) {
            Ok(m) => m,
            Err(_) => unreachable!("HMAC takes keys of any length"),
        };
        mac.update(format!("{id},{host},{secure}").as_bytes());
        B64.encode(hex::encode(mac.finalize().into_bytes()))
    }

    /// Stores a grant and returns the token string.
    pub fn issue(
        &self,
        store: &dyn Store,
        grant: Grant<'_>,
        now_ms: i64,
    ) -> Result<String, StoreError> {
        let id = new_id();
        store.insert_token(&TokenRecord {
            id: id.clone(),
            service_id: grant.service_id.to_string(),
            room_id: grant.room_id.to_string(),
            user: grant.user.to_string(),
            role: grant.role.to_string(),
            preference: grant.preference,
            host: self.host.clone(),
            secure: self.secure,
            created_ms: now_ms,
            expires_ms: now_ms + self.lifetime_ms,
        })?;
        let body = TokenBody {
            signature: self.sign(&id, &self.host, self.secure),
            token_id: id,
            host: self.host.clone(),
            secure: self.secure,
        };
        let json = serde_json::to_vec(&body).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        Ok(B64.encode(json))
    }

    /// Decodes a token and checks its signature, without using it up.
    pub fn decode(&self, token: &str) -> Result<TokenBody, TokenError> {
        let bytes = B64
            .decode(token.trim())
            .map_err(|_| TokenError::Malformed("not base64".into()))?;
        let body: TokenBody = serde_json::from_slice(&bytes)
            .map_err(|e| TokenError::Malformed(format!("not a token object: {e}")))?;
        let expected = self.sign(&body.token_id, &body.host, body.secure);
        if !bool::from(expected.as_bytes().ct_eq(body.signature.as_bytes())) {
            return Err(TokenError::BadSignature);
        }
        Ok(body)
    }

    /// Checks and uses up a token; `room`, when given, must be the token's room.
    pub fn redeem(
        &self,
        store: &dyn Store,
        token: &str,
        room: Option<&str>,
        now_ms: i64,
    ) -> Result<TokenRecord, TokenError> {
        let body = self.decode(token)?;
        match store.redeem_token(&body.token_id, now_ms)? {
            Redeemed::Granted(rec) => {
                if rec.host != body.host || rec.secure != body.secure {
                    return Err(TokenError::BadSignature);
                }
                if room.is_some_and(|r| r != rec.room_id) {
                    return Err(TokenError::WrongRoom);
                }
                Ok(*rec)
            }
            Redeemed::AlreadyUsed => Err(TokenError::AlreadyUsed),
            Redeemed::Expired => Err(TokenError::Expired),
            Redeemed::Unknown => Err(TokenError::Unknown),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::room::{Room, RoomConfig};
    use crate::model::service::Service;
    use crate::store::sqlite::SqliteStore;

    fn setup() -> (SqliteStore, Tokens) {
        let store = SqliteStore::in_memory().unwrap();
        store
            .create_service(&Service {
                id: "s".into(),
                name: "s".into(),
                key: "k".into(),
                is_super: false,
            })
            .unwrap();
        for r in ["r1", "r2"] {
            store
                .create_room(
                    "s",
                    &Room {
                        id: r.into(),
                        config: RoomConfig {
                            name: r.into(),
                            ..RoomConfig::default()
                        },
                    },
                )
                .unwrap();
        }
        (
            store,
            Tokens::new(vec![7; 32], 180_000, "conf.example.com:8080".into(), true),
        )
    }

    fn grant() -> Grant<'static> {
        Grant {
            service_id: "s",
            room_id: "r1",
            user: "alice",
            role: "presenter",
            preference: Preference::default(),
        }
    }

    #[test]
    fn token_is_owt_shaped() {
        let (store, tokens) = setup();
        let t = tokens.issue(&store, grant(), 1_000).unwrap();
        let json: serde_json::Value = serde_json::from_slice(&B64.decode(&t).unwrap()).unwrap();
        assert_eq!(json["host"], "conf.example.com:8080");
        assert_eq!(json["secure"], true);
        assert_eq!(json["tokenId"].as_str().unwrap().len(), 24);
        assert!(json["signature"].is_string());
    }

    #[test]
    fn single_use_and_three_minutes() {
        let (store, tokens) = setup();
        let t = tokens.issue(&store, grant(), 1_000).unwrap();
        let rec = tokens.redeem(&store, &t, Some("r1"), 2_000).unwrap();
        assert_eq!(
            (rec.user.as_str(), rec.role.as_str()),
            ("alice", "presenter")
        );
        assert!(matches!(
            tokens.redeem(&store, &t, None, 2_001),
            Err(TokenError::AlreadyUsed)
        ));
        let t = tokens.issue(&store, grant(), 1_000).unwrap();
        assert!(matches!(
            tokens.redeem(&store, &t, None, 1_000 + 180_001),
            Err(TokenError::Expired)
        ));
        let t = tokens.issue(&store, grant(), 1_000).unwrap();
        assert!(matches!(
            tokens.redeem(&store, &t, Some("r2"), 1_001),
            Err(TokenError::WrongRoom)
        ));
    }

    #[test]
    fn forged_and_garbage_tokens_are_refused() {
        let (store, tokens) = setup();
        let t = tokens.issue(&store, grant(), 1_000).unwrap();
        let mut body: TokenBody = serde_json::from_slice(&B64.decode(&t).unwrap()).unwrap();
        body.host = "evil.example.com:8080".into();
        let forged = B64.encode(serde_json::to_vec(&body).unwrap());
        assert!(matches!(
            tokens.redeem(&store, &forged, None, 1_001),
            Err(TokenError::BadSignature)
        ));
        let other = Tokens::new(vec![8; 32], 180_000, "conf.example.com:8080".into(), true);
        assert!(matches!(
            other.redeem(&store, &t, None, 1_001),
            Err(TokenError::BadSignature)
        ));
        for junk in ["", "!!!", "aGVsbG8=", &B64.encode("{\"tokenId\":1}")] {
            assert!(
                matches!(
                    tokens.redeem(&store, junk, None, 1_001),
                    Err(TokenError::Malformed(_))
                ),
                "{junk}"
            );
        }
        // The genuine token is still unused after all that.
        tokens.redeem(&store, &t, None, 1_002).unwrap();
    }
}
