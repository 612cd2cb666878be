//! Listeners: who plays a mixed stream without hearing themselves — a section of the
//! view's output of its own, carrying the mix without its own inputs.

use super::*;

/// Who listens to a mixed stream, for its mix-minus: a portal participant (who publishes
/// and plays on one connection), or a user (a WHIP publisher and a WHEP player of one
/// person are two participants with one user).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listener {
    /// A participant.
    Participant(String),
    /// A user.
    User(String),
}

impl Listener {
    pub(super) fn key(&self) -> String {
        match self {
            Listener::Participant(p) => format!("p:{p}"),
            Listener::User(u) => format!("u:{u}"),
        }
    }
}

/// The id of the publication carrying what `listener` hears of view `view` (not a room
/// stream: played only by that listener, in place of the view's audio).
pub fn minus_id(view: &str, listener: &str) -> String {
    format!("{view}~{listener}")
}

/// How long a listener's audio stays published with nobody playing it.
pub(super) const LISTENER_IDLE: Duration = Duration::from_secs(30);

pub(super) struct ListenerState {
    pub(super) who: Listener,
    pub(super) publication: String,
    pub(super) excluded: Vec<String>,
    pub(super) idle_since: Option<std::time::Instant>,
}

impl Mixing {
    /// The publication carrying what `who` hears of mixed stream `mixed` (the mix
    /// without its own inputs), published from the view's output peer on first use;
    /// `None` when it has no input in the view and (`may_publish` false) will have none:
    /// it hears the mix itself, like every other listener, at no cost per listener.
    pub(super) async fn listen(
        &self,
        room: &str,
        mixed: &str,
        who: Listener,
        may_publish: bool,
        views: &mut HashMap<String, ViewState>,
    ) -> Result<Option<String>, MixError> {
        let Some(v) = views.get_mut(mixed).filter(|v| v.room == room) else {
            return Err(MixError::Other(format!("{mixed} is not a running view")));
        };
        let key = who.key();
        if let Some(l) = v.listeners.get(&key) {
            return Ok(Some(l.publication.clone()));
        }
        let excluded = self.own_inputs(room, &v.label, &who);
        if excluded.is_empty() && !may_publish {
            return Ok(None);
        }
        let offer = match self
            .link
            .call(api::Request::ViewListenerAdd {
                view: mixed.to_string(),
                listener: key.clone(),
                excluded: excluded.clone(),
            })
            .await?
        {
            api::Response::Offer(o) => o,
            other => return Err(MixError::Other(format!("unexpected answer {other:?}"))),
        };
        let publication = minus_id(mixed, &key);
        let answer = match self
            .dataplane()
            .call(DpRequest::PeerOffer(PeerOffer {
                peer: v.out_peer.clone(),
                offer_sdp: offer.sdp,
                bindings: vec![Binding::Publish {
                    publication: publication.clone(),
                    mids: Some(offer.sections.iter().map(|s| s.mid.clone()).collect()),
                    audio: true,
                    video: false,
                    selection: None,
                }],
            }))
            .await
        {
            Ok(DpResponse::PeerCreated(c)) => c.answer_sdp,
            other => {
                let _ = self
                    .link
                    .call(api::Request::ViewListenerRemove {
                        view: mixed.to_string(),
                        listener: key,
                    })
                    .await;
                return Err(MixError::Other(format!(
                    "the dataplane refused the listener's audio: {other:?}"
                )));
            }
        };
        self.link
            .call(api::Request::ViewAnswer {
                view: mixed.to_string(),
                client: api::Client::Output,
                sdp: answer,
            })
            .await?;
        self.media.sessions.insert(Session {
            id: publication.clone(),
            peer: v.out_peer.clone(),
            room: room.to_string(),
            participant: MIXER_PARTICIPANT.into(),
            stream: publication.clone(),
            subscription: None,
            token_id: None,
            core: v.out_core,
            whole_peer: false,
        });
        v.listeners.insert(
            key,
            ListenerState {
                who,
                publication: publication.clone(),
                excluded,
                idle_since: None,
            },
        );
        tracing::info!(view = %mixed, listener = %publication, "a listener's own audio published");
        Ok(Some(publication))
    }

    /// The view's audio inputs that belong to `who`.
    fn own_inputs(&self, room: &str, label: &str, who: &Listener) -> Vec<String> {
        let owners: Vec<String> = match who {
            Listener::Participant(p) => vec![p.clone()],
            Listener::User(u) => self
                .media
                .conference
                .participants(room)
                .into_iter()
                .filter(|p| &p.user == u)
                .map(|p| p.id)
                .collect(),
        };
        self.media
            .conference
            .streams(room)
            .into_iter()
            .filter(|s| {
                wants(s, label)
                    && matches!(s.media.audio, OrFalse::Some(_))
                    && matches!(&s.info, StreamDetails::Forward(f) if owners.contains(&f.owner))
            })
            .map(|s| s.id)
            .collect()
    }

    /// The room's streams changed (or the periodic check): each listener's own inputs
    /// follow; listeners nobody has played for [`LISTENER_IDLE`] end.
    pub(super) async fn refresh_listeners(
        &self,
        room: Option<&str>,
        views: &mut HashMap<String, ViewState>,
    ) {
        let now = std::time::Instant::now();
        for (id, v) in views
            .iter_mut()
            .filter(|(_, v)| room.is_none_or(|r| v.room == r))
        {
            let mut gone = Vec::new();
            for (key, l) in v.listeners.iter_mut() {
                let excluded = self.own_inputs(&v.room, &v.label, &l.who);
                if excluded != l.excluded {
                    l.excluded = excluded.clone();
                    let _ = self
                        .link
                        .call(api::Request::ViewListenerUpdate {
                            view: id.clone(),
                            listener: key.clone(),
                            excluded,
                        })
                        .await;
                }
                let played = !self
                    .media
                    .sessions
                    .find(|s| s.stream == l.publication && s.subscription.is_some())
                    .is_empty();
                if played {
                    l.idle_since = None;
                } else if now.saturating_duration_since(*l.idle_since.get_or_insert(now))
                    >= LISTENER_IDLE
                {
                    gone.push(key.clone());
                }
            }
            for key in gone {
                if let Some(l) = v.listeners.remove(&key) {
                    if let Some(s) = self.media.sessions.get(&l.publication) {
                        self.media.close(vec![s], "nobody listens").await;
                    }
                    let _ = self
                        .link
                        .call(api::Request::ViewListenerRemove {
                            view: id.clone(),
                            listener: key,
                        })
                        .await;
                }
            }
        }
    }

    /// The publication to play instead of mixed stream `mixed`'s audio for `who`: what it
    /// hears of the view, without its own inputs (published on first use). `None` when it
    /// hears the mix itself — it has no input in the view and (`may_publish` false) will
    /// not — or `mixed` is not a running mixed stream or the mixer cannot now.
    pub async fn listener_publication(
        &self,
        room: &str,
        mixed: &str,
        who: Listener,
        may_publish: bool,
    ) -> Option<String> {
        let (reply, rx) = tokio::sync::oneshot::channel();
        self.jobs
            .send(Job::Listen {
                room: room.to_string(),
                mixed: mixed.to_string(),
                who,
                may_publish,
                reply,
            })
            .ok()?;
        match tokio::time::timeout(Duration::from_secs(10), rx).await {
            Ok(Ok(Ok(p))) => p,
            Ok(Ok(Err(e))) => {
                tracing::warn!(mixed, error = %e, "no mix-minus for a player: it hears the mix");
                None
            }
            _ => None,
        }
    }
}
