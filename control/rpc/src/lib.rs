//! The wire framing of control's RPCs with its workers (`switchyard-dataplane-api`,
//! `switchyard-mixer-api`): each worker's crate defines its own requests, responses and
//! events; this crate carries them.
//!
//! **Transport.** One TCP connection from control to the worker. Each message is a
//! [`Frame`]: a 4-byte big-endian length, then that many bytes of JSON. JSON because the
//! messages are few and small (session set-up, not media), carry SDP text anyway, and
//! stay readable in a packet capture; the length prefix makes framing exact and bounded
//! ([`MAX_FRAME`]). [`Decoder`] is sans-IO: feed it bytes as they arrive, take frames out.
//!
//! **Messages.** Control sends requests, each with an id; the worker answers each with
//! exactly one response carrying the same id, in any order, and sends events on its own.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// The largest frame either side accepts (an SDP is a few KiB).
pub const MAX_FRAME: usize = 4 * 1024 * 1024;

/// What travels on the connection: `Q` requests, `R` responses, `E` events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Frame<Q, R, E> {
    /// Control → worker.
    Request {
        /// Matches the response.
        id: u64,
        /// The request.
        body: Q,
    },
    /// Worker → control.
    Response {
        /// The request's id.
        id: u64,
        /// The answer.
        body: R,
    },
    /// Worker → control, unsolicited.
    Event {
        /// The event.
        body: E,
    },
}

/// A framing or decoding failure; the connection cannot continue after one.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// A frame announced more than [`MAX_FRAME`] bytes.
    #[error("frame of {0} bytes is larger than the {MAX_FRAME} allowed")]
    TooLarge(usize),
    /// A frame's JSON did not decode.
    #[error("undecodable frame: {0}")]
    Json(#[from] serde_json::Error),
}

/// Encodes a frame: length prefix and JSON.
pub fn encode<T: Serialize>(frame: &T) -> Result<Vec<u8>, FrameError> {
    let json = serde_json::to_vec(frame)?;
    if json.len() > MAX_FRAME {
        return Err(FrameError::TooLarge(json.len()));
    }
    let mut out = Vec::with_capacity(4 + json.len());
    out.extend_from_slice(&(json.len() as u32).to_be_bytes());
    out.extend_from_slice(&json);
    Ok(out)
}

/// Splits a byte stream into frames (sans-IO).
#[derive(Debug, Default)]
pub struct Decoder {
    buf: Vec<u8>,
}

impl Decoder {
    /// A decoder with nothing buffered.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds bytes as they arrive.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next whole frame, if one has arrived.
    pub fn next_frame<T: DeserializeOwned>(&mut self) -> Result<Option<T>, FrameError> {
        if self.buf.len() < 4 {
            return Ok(None);
        }
        let len = u32::from_be_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]) as usize;
        if len > MAX_FRAME {
            return Err(FrameError::TooLarge(len));
        }
        if self.buf.len() < 4 + len {
            return Ok(None);
        }
        let frame = serde_json::from_slice(&self.buf[4..4 + len]);
        self.buf.drain(..4 + len);
        Ok(Some(frame?))
    }
}
