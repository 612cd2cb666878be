//! Signalling with the servers under test: Switchyard over its REST API, WHIP and WHEP;
//! Janus's VideoRoom over Janus's HTTP API.

pub mod janus;
pub mod switchyard;

/// Why signalling failed.
#[derive(Debug, thiserror::Error)]
pub enum SignalError {
    /// The HTTP request itself failed (connection refused, timeout).
    #[error("http: {0}")]
    Http(String),
    /// The server answered with an error.
    #[error("refused: {0}")]
    Refused(String),
    /// The server's answer was not what its API documents.
    #[error("unexpected answer: {0}")]
    Protocol(String),
}
