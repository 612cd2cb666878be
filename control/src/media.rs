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
use tokio::sync::broadcast;

/// A publication or subscription carried by a dataplane peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The publication's stream id, or the subscription's id.
    pub id: String,
    /// The dataplane peer carrying it.
    pub peer: String,
    /// The room.
    pub room: String,
    /// The participant it belongs to.
    pub participant: String,
    /// The published stream, or the stream subscribed to.
    pub stream: String,
    /// For a subscription, its id.
    pub subscription: Option<String>,
    /// WHIP and WHEP: the token that created it (and may delete it).
    pub token_id: Option<String>,
    /// The dataplane core of its peer.
    pub core: u16,
    /// WHIP and WHEP: the session is its peer and its participant: ending it closes the
    /// peer, releases the core slot and drops the participant. A portal session is one
    /// binding of a client's transport.
    pub whole_peer: bool,
}

impl Session {
    /// Whether it publishes.
    pub fn is_publication(&self) -> bool {
        self.subscription.is_none()
    }
}

/// Every live session, by id.
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
        self.map().insert(s.id.clone(), s);
    }

    /// Takes a session out.
    pub fn remove(&self, id: &str) -> Option<Session> {
        self.map().remove(id)
    }

    /// One session.
    pub fn get(&self, id: &str) -> Option<Session> {
        self.map().get(id).cloned()
    }

    /// The sessions matching `f`.
    pub fn find(&self, f: impl Fn(&Session) -> bool) -> Vec<Session> {
        self.map().values().filter(|s| f(s)).cloned().collect()
    }

    /// Takes out the sessions matching `f`.
    pub fn take(&self, f: impl Fn(&Session) -> bool) -> Vec<Session> {
        let mut map = self.map();
        let ids: Vec<String> = map
            .values()
            .filter(|s| f(s))
            .map(|s| s.id.clone())
            .collect();
        ids.iter().filter_map(|id| map.remove(id)).collect()
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

/// What happened to media, for the signaling side (the portal's progress notifications).
#[derive(Debug, Clone, PartialEq)]
pub enum MediaEvent {
    /// A peer's ICE and DTLS are up.
    Connected {
        /// The peer.
        peer: String,
    },
    /// A peer is gone; its sessions have ended.
    PeerClosed {
        /// The peer.
        peer: String,
        /// Why.
        reason: String,
    },
    /// One binding ended (its publication ended); its session has ended.
    Unbound {
        /// The peer.
        peer: String,
        /// The publication or subscription.
        id: String,
        /// Why.
        reason: String,
    },
    /// The dataplane went away; every session has ended.
    DataplaneDown,
}

/// Keeps sessions, conference and dataplane in agreement.
pub struct Media {
    /// The sessions.
    pub sessions: Arc<Sessions>,
    /// The conference.
    pub conference: Arc<Conference>,
    /// The dataplane link.
    pub link: Arc<Link>,
    /// What happened, for listeners.
    pub events: broadcast::Sender<MediaEvent>,
    /// Rooms whose active-speaker selection is made, with the dataplane's
    /// [`Link::times_up`] when it was (see [`crate::selection`]).
    selections: Mutex<HashMap<String, u64>>,
}

impl Media {
    /// Sessions, conference and link, with no listener yet.
    pub fn new(sessions: Arc<Sessions>, conference: Arc<Conference>, link: Arc<Link>) -> Self {
        Media {
            sessions,
            conference,
            link,
            events: broadcast::channel(1024).0,
            selections: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) fn selections(&self) -> std::sync::MutexGuard<'_, HashMap<String, u64>> {
        self.selections.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A session is over: its stream (and for WHIP/WHEP its participant) leaves the
    /// conference, which tells everyone.
    pub fn end(&self, s: &Session, reason: &str) {
        if s.whole_peer {
            self.link.release(&s.peer);
        }
        if s.is_publication() {
            let _ = self.conference.drop_stream(&s.room, &s.stream);
        }
        if s.whole_peer {
            let _ = self.conference.drop_participant(&s.room, &s.participant);
        }
        tracing::info!(session = %s.id, peer = %s.peer, room = %s.room, reason, "media session ended");
    }

    /// Asks the dataplane to end `sessions` (closing WHIP/WHEP peers, unbinding portal
    /// ones), and ends them here.
    pub async fn close(&self, sessions: Vec<Session>, reason: &str) {
        for s in sessions {
            self.sessions.remove(&s.id);
            let req = if s.whole_peer {
                Request::PeerClose {
                    peer: s.peer.clone(),
                }
            } else {
                Request::PeerUnbind {
                    peer: s.peer.clone(),
                    id: s.id.clone(),
                }
            };
            let _ = self.link.call(req).await;
            self.end(&s, reason);
        }
    }

    /// Follows REST-driven changes: a dropped stream, participant or room ends the
    /// sessions that carried it; a stream paused or resumed is paused or resumed at the
    /// source.
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
                match &ev {
                    ConferenceEvent::StreamUpdated {
                        stream, changes, ..
                    } if media
                        .sessions
                        .get(&stream.id)
                        .is_some_and(|s| s.is_publication()) =>
                    {
                        let status = |field: &str| {
                            changes
                                .iter()
                                .find(|(f, _)| f == field)
                                .map(|(_, v)| v == "active")
                        };
                        let (audio, video) = (status("audio.status"), status("video.status"));
                        if audio.is_some() || video.is_some() {
                            let _ = media
                                .link
                                .call(Request::PublicationControl {
                                    publication: stream.id.clone(),
                                    audio,
                                    video,
                                })
                                .await;
                        }
                        continue;
                    }
                    _ => {}
                }
                let doomed = match &ev {
                    ConferenceEvent::StreamDropped { room, stream } => {
                        // The publication and every subscription to it.
                        media
                            .sessions
                            .find(|s| s.room == *room && s.stream == *stream)
                    }
                    ConferenceEvent::ParticipantDropped { room, participant } => media
                        .sessions
                        .find(|s| s.room == *room && s.participant == *participant),
                    ConferenceEvent::RoomDeleted { room } => {
                        media.end_selection(room).await;
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

impl LinkListener<crate::dataplane::Dataplane> for Media {
    fn on_event(&self, event: Event) {
        let relay = match event {
            Event::PeerClosed { peer, reason } => {
                for s in self.sessions.take(|s| s.peer == peer) {
                    self.end(&s, &reason);
                }
                MediaEvent::PeerClosed { peer, reason }
            }
            Event::PeerConnected { peer } => {
                tracing::info!(peer = %peer, "media connected");
                MediaEvent::Connected { peer }
            }
            Event::SelectionChanged {
                selection,
                slot,
                input,
                major,
            } => {
                self.selection_changed(&selection, &slot, input.as_deref(), major);
                return;
            }
            Event::Unbound { peer, id, reason } => {
                if let Some(s) = self.sessions.remove(&id) {
                    self.end(&s, &reason);
                }
                MediaEvent::Unbound { peer, id, reason }
            }
        };
        let _ = self.events.send(relay);
    }

    fn on_down(&self) {
        for s in self.sessions.drain() {
            self.end(&s, "the media dataplane went away");
        }
        self.forget_selections();
        let _ = self.events.send(MediaEvent::DataplaneDown);
    }

    fn on_up(&self, info: &DataplaneInfo) {
        tracing::info!(cores = info.cores.len(), "media dataplane in service");
    }
}
