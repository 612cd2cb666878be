//! Reconnection tickets: what a client presents with `relogin` to resume its session
//! after losing its connection.
//!
//! A ticket is base64 of `{participantId, ticketId, notBefore, notAfter, signature}`
//! (times in milliseconds since the Unix epoch); OWT's SDK reads `notAfter` to refresh it
//! in time. The signature is base64 of the HMAC-SHA256, with a server secret, over
//! `participantId,ticketId,notBefore,notAfter`; only the newest ticket of a participant
//! is accepted.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// Why a ticket was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TicketError {
    /// Not base64 of a ticket object.
    #[error("malformed reconnection ticket")]
    Malformed,
    /// Forged or altered.
    #[error("invalid reconnection ticket signature")]
    BadSignature,
    /// Outside its validity.
    #[error("reconnection ticket expired: log in again with a new token")]
    Expired,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Ticket {
    participant_id: String,
    ticket_id: String,
    not_before: i64,
    not_after: i64,
    signature: String,
}

/// Issues and checks tickets.
#[derive(Clone)]
pub struct Tickets {
    key: Vec<u8>,
    lifetime_ms: i64,
}

impl Tickets {
    /// Tickets signed with `key`, valid for `lifetime_ms`.
    pub fn new(key: Vec<u8>, lifetime_ms: i64) -> Self {
        Tickets { key, lifetime_ms }
    }

    fn sign(&self, p: &str, id: &str, nb: i64, na: i64) -> String {
        let mut mac = match Hmac::<Sha256>::new_from_slice(&self.key) {
            Ok(m) => m,
            Err(_) => unreachable!("HMAC takes keys of any length"),
        };
        mac.update(format!("{p},{id},{nb},{na}").as_bytes());
        B64.encode(mac.finalize().into_bytes())
    }

    /// A new ticket for `participant`: the string and its id.
    pub fn issue(&self, participant: &str, now_ms: i64) -> (String, String) {
        let id = crate::ids::new_id();
        let (nb, na) = (now_ms, now_ms + self.lifetime_ms);
        let t = Ticket {
            participant_id: participant.into(),
            ticket_id: id.clone(),
            not_before: nb,
            not_after: na,
            signature: self.sign(participant, &id, nb, na),
        };
        let json = serde_json::to_vec(&t).unwrap_or_default();
        (B64.encode(json), id)
    }

    /// Checks a ticket: the participant and the ticket id.
    pub fn verify(&self, ticket: &str, now_ms: i64) -> Result<(String, String), TicketError> {
        let bytes = B64
            .decode(ticket.trim())
            .map_err(|_| TicketError::Malformed)?;
        let t: Ticket = serde_json::from_slice(&bytes).map_err(|_| TicketError::Malformed)?;
        let expected = self.sign(&t.participant_id, &t.ticket_id, t.not_before, t.not_after);
        if !bool::from(expected.as_bytes().ct_eq(t.signature.as_bytes())) {
            return Err(TicketError::BadSignature);
        }
        if now_ms < t.not_before || now_ms > t.not_after {
            return Err(TicketError::Expired);
        }
        Ok((t.participant_id, t.ticket_id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_expiry_and_forgery() {
        let t = Tickets::new(vec![1; 32], 60_000);
        let (s, id) = t.issue("p1", 1_000);
        assert_eq!(t.verify(&s, 2_000).unwrap(), ("p1".into(), id));
        assert_eq!(t.verify(&s, 61_001), Err(TicketError::Expired));
        let mut json: serde_json::Value = serde_json::from_slice(&B64.decode(&s).unwrap()).unwrap();
        assert!(
            json["notAfter"].as_i64().unwrap() == 61_000,
            "the SDK reads notAfter"
        );
        json["participantId"] = "p2".into();
        let forged = B64.encode(serde_json::to_vec(&json).unwrap());
        assert_eq!(t.verify(&forged, 2_000), Err(TicketError::BadSignature));
        assert_eq!(t.verify("!!", 2_000), Err(TicketError::Malformed));
        let other = Tickets::new(vec![2; 32], 60_000);
        assert_eq!(other.verify(&s, 2_000), Err(TicketError::BadSignature));
    }
}
