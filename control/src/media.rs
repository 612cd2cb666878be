//! Media sessions: which dataplane peer carries which publication or subscription, and
//! keeping the conference and the dataplane agreeing about it.
//!
//! A session begins when WHIP or WHEP creates a peer; it ends when the client deletes it,
//! when the dataplane reports the peer closed, when the dataplane goes away, or when the
//! REST API drops its stream, its participant or its room. Whichever comes first, the
//! participant and stream leave the conference (so REST lists and clients see it) and the
//! peer's core slot is released.

use crate::dataplane::{Link, LinkListener};
use crate::model::conference::{Conference, ConferenceEvent};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use switchyard_dataplane_api::{DataplaneInfo, Event, Request};

/// A publication or subscription carried by a dataplane peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The dataplane peer id.
    pub peer: String,
    /// The room.
    pub room: String,
    /// The participant the session made.
    pub participant: String,
    /// The published stream, or the stream subscribed to.
    pub stream: String,
    /// For a subscription, its id (the last segment of its WHEP URL).
    pub subscription: Option<String>,
    /// The token id that created it; the same token may delete it.
    pub token_id: String,
    /// The dataplane core.
    pub core: u16,
}

impl Session {
    /// Whether it publishes.
    pub fn is_publication(&self) -> bool {
        self.subscription.is_none()
    }
}

/// Every live session, by peer id.
#[derive(Default)]
pub struct Sessions {
    map: Mutex<HashMap<String, Session>>,
}

impl Sessions {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records a session.
    pub fn insert(&self, s: Session) {
        self.map().insert(s.peer.clone(), s);
    }

    /// Takes a session out.
    pub fn remove(&self, peer: &str) -> Option<Session> {
        self.map().remove(peer)
    }

    /// The sessions matching `f`.
    pub fn find(&self, f: impl Fn(&Session) -> bool) -> Vec<Session> {
        self.map().values().filter(|s| f(s)).cloned().collect()
    }

    /// Takes every session out.
    pub fn drain(&self) -> Vec<Session> {
        self.map().drain().map(|(_, s)| s).collect()
    }

    /// How many there are.
    pub fn len(&self) -> usize {
        self.map().len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Ends sessions in the conference when the dataplane says their peers are gone.
pub struct Media {
    /// The sessions.
    pub sessions: Arc<Sessions>,
    /// The conference.
    pub conference: Arc<Conference>,
    /// The dataplane link.
    pub link: Arc<Link>,
}

impl Media {
    /// A session is over: its stream and participant leave the conference.
    pub fn end(&self, s: &Session, reason: &str) {
        self.link.release(s.core);
        if s.is_publication() {
            // Tells listeners (and through them the REST lists) that the stream is gone.
            let _ = self.conference.drop_stream(&s.room, &s.stream);
        }
        let _ = self.conference.drop_participant(&s.room, &s.participant);
        tracing::info!(peer = %s.peer, room = %s.room, stream = %s.stream, reason, "media session ended");
    }

    /// Asks the dataplane to close the peers of `sessions`, and ends them here.
    pub async fn close(&self, sessions: Vec<Session>, reason: &str) {
        for s in sessions {
            if self.sessions.remove(&s.peer).is_some() {
                let _ = self
                    .link
                    .call(Request::PeerClose {
                        peer: s.peer.clone(),
                    })
                    .await;
                self.end(&s, reason);
            }
        }
    }

    /// Follows REST-driven changes: a dropped stream, participant or room ends the
    /// sessions that carried it.
    pub fn spawn_follow_conference(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let media = self.clone();
        let mut events = self.conference.subscribe();
        tokio::spawn(async move {
            loop {
                let ev = match events.recv().await {
                    Ok(ev) => ev,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(missed = n, "conference events missed");
                        continue;
                    }
                    Err(_) => break,
                };
                let doomed = match &ev {
                    ConferenceEvent::StreamDropped { room, stream } => media
                        .sessions
                        .find(|s| s.room == *room && s.stream == *stream && s.is_publication()),
                    ConferenceEvent::ParticipantDropped { room, participant } => media
                        .sessions
                        .find(|s| s.room == *room && s.participant == *participant),
                    ConferenceEvent::RoomDeleted { room } => {
                        media.sessions.find(|s| s.room == *room)
                    }
                    _ => Vec::new(),
                };
                if !doomed.is_empty() {
                    media
                        .close(doomed, "dropped through the management API")
                        .await;
                }
            }
        })
    }
}

impl LinkListener for Media {
    fn on_event(&self, event: Event) {
        match event {
            Event::PeerClosed { peer, reason } => {
                if let Some(s) = self.sessions.remove(&peer) {
                    self.end(&s, &reason);
                }
            }
            Event::PeerConnected { peer } => tracing::info!(peer = %peer, "media connected"),
            Event::Unbound { peer, id, reason } => {
                for s in self.sessions.find(|s| {
                    s.peer == peer
                        && (s.stream == id || s.subscription.as_deref() == Some(id.as_str()))
                }) {
                    if self.sessions.remove(&s.peer).is_some() {
                        self.end(&s, &reason);
                    }
                }
            }
        }
    }

    fn on_down(&self) {
        for s in self.sessions.drain() {
            self.end(&s, "the media dataplane went away");
        }
    }

    fn on_up(&self, info: &DataplaneInfo) {
        tracing::info!(cores = info.cores.len(), "media dataplane in service");
    }
}
