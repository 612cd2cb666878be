//! Mixed streams: each view of a room (OWT's `views`, `common` by default) mixed by
//! `switchyard-mixer` into the room's mixed stream `{room}-{label}`.
//!
//! A room's views start when someone is in the room (and mixer and dataplane are up),
//! and end when the room empties or goes. For each view control asks the mixer for the
//! offer of its output client, places a dataplane peer for it that publishes the mixed
//! stream, and hands the answer back; the stream then joins the room like any other
//! (clients are told, REST lists it) and is played like any other (portal, WHEP). Every
//! forward stream is mixed into the views its `inViews` names — all of the room's views
//! when published, as in OWT; `PATCH /info/inViews` adds and removes it — through the
//! view's input client: one more subscription on its dataplane peer per input. The
//! mixer's layout and active-speaker reports become the mixed stream's `video.layout`
//! and `activeInput` updates; `PATCH /info/layout` pins inputs to regions.
//!
//! One task does all of this in order (a view's negotiations must not interleave), and
//! every two seconds it reconciles what runs with what should, which also brings views
//! back after a mixer or dataplane restart.

use crate::dataplane::Link as DataplaneLink;
use crate::link::{self, LinkListener, Protocol};
use crate::media::{Media, Session};
use crate::model::conference::{
    AudioInfo, ConferenceEvent, MixedInfo, StreamDetails, StreamInfo, StreamKind, StreamMedia,
    StreamRegion, VideoInfo, VideoParameters,
};
use crate::model::media::{default_bitrate_kbps, AudioCodec, AudioFormat, VideoCodec};
use crate::model::or_false::OrFalse;
use crate::model::room::{self, Area, BaseTemplate, FitPolicy, Ratio, RoomConfig, Shape};
use crate::store::Store;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use switchyard_dataplane_api::{
    Binding, PeerCreate, PeerOffer, Request as DpRequest, Response as DpResponse,
};
use switchyard_mixer_api as api;
use tokio::sync::mpsc;

mod listeners;
mod playback;
mod spec;
mod transcoding;

pub use listeners::{minus_id, Listener};
use listeners::{ListenerState, LISTENER_IDLE};
pub use playback::{minus_subscription, sdp_codecs, sdp_mids, split_bindings, Playback};
use spec::mixed_stream;
pub use spec::view_spec;
pub use transcoding::{Transcoding, Variant};

/// The mixer's RPC.
#[derive(Debug)]
pub struct Mixer;

impl Protocol for Mixer {
    type Request = api::Request;
    type Response = api::Response;
    type Event = api::Event;
    type Info = api::MixerInfo;
    type Error = api::RpcError;
    const NAME: &'static str = "mixer";

    fn hello() -> api::Request {
        api::Request::MixerInfo
    }

    fn ping() -> api::Request {
        api::Request::Ping
    }

    fn welcome(answer: api::Response) -> Result<api::MixerInfo, String> {
        match answer {
            api::Response::MixerInfo(i) if i.protocol == api::PROTOCOL_VERSION => Ok(i),
            api::Response::MixerInfo(i) => Err(format!(
                "the mixer speaks protocol version {}, control {}",
                i.protocol,
                api::PROTOCOL_VERSION
            )),
            other => Err(format!("unexpected handshake answer {other:?}")),
        }
    }

    fn split(answer: api::Response) -> Result<api::Response, api::RpcError> {
        match answer {
            api::Response::Error(e) => Err(e),
            other => Ok(other),
        }
    }
}

/// The link to the mixer.
pub type MixerLink = link::Link<Mixer>;

/// The id of a room's mixed stream for view `label` (OWT's `{room}-{label}`).
pub fn view_id(room: &str, label: &str) -> String {
    format!("{room}-{label}")
}

/// How often what runs is reconciled with what should.
const RECONCILE_EVERY: Duration = Duration::from_secs(2);

/// The participant id mixer sessions are recorded under.
const MIXER_PARTICIPANT: &str = "mixer";

struct ViewState {
    room: String,
    label: String,
    out_peer: String,
    in_peer: String,
    out_core: u16,
    in_core: Option<u16>,
    inputs: Vec<String>,
    /// Inputs pinned to regions (`PATCH /info/layout`), sent with `VIEW_UPDATE`.
    pinned: Vec<(String, String)>,
    config: room::View,
    /// Listeners with their own audio, by key.
    listeners: HashMap<String, ListenerState>,
    /// For a transcoding (a stream in another codec, size or frame rate for the players
    /// that ask for it): the stream it transcodes. Not a room stream; it ends when nobody
    /// has played it for [`LISTENER_IDLE`].
    variant_of: Option<String>,
    idle_since: Option<std::time::Instant>,
}

impl ViewState {
    fn id(&self) -> String {
        if self.variant_of.is_some() {
            self.label.clone()
        } else {
            view_id(&self.room, &self.label)
        }
    }
}

/// Something for the mixing task to do.
enum Job {
    Conference(ConferenceEvent),
    RoomUpdated(String),
    Listen {
        room: String,
        mixed: String,
        who: Listener,
        may_publish: bool,
        reply: tokio::sync::oneshot::Sender<Result<Option<String>, String>>,
    },
    Transcode {
        room: String,
        stream: String,
        variant: Transcoding,
        reply: tokio::sync::oneshot::Sender<Result<String, String>>,
    },
    Mixer(api::Event),
    MixerDown,
    Reconcile,
}

/// Keeps rooms' views, the mixer and the dataplane in agreement.
pub struct Mixing {
    /// The link to the mixer.
    pub link: Arc<MixerLink>,
    media: Arc<Media>,
    store: Arc<dyn Store>,
    jobs: mpsc::UnboundedSender<Job>,
    rx: Mutex<Option<mpsc::UnboundedReceiver<Job>>>,
}

/// Why mixing a view failed (logged; the reconcile tries again).
#[derive(Debug, thiserror::Error)]
enum MixError {
    #[error("mixer: {0}")]
    Mixer(#[from] link::LinkError<Mixer>),
    #[error("dataplane: {0}")]
    Dataplane(#[from] crate::dataplane::DataplaneError),
    #[error("{0}")]
    Other(String),
}

impl Mixing {
    /// Mixing over `link` for `media`'s conference, with rooms from `store`.
    pub fn new(link: Arc<MixerLink>, media: Arc<Media>, store: Arc<dyn Store>) -> Arc<Self> {
        let (jobs, rx) = mpsc::unbounded_channel();
        Arc::new(Mixing {
            link,
            media,
            store,
            jobs,
            rx: Mutex::new(Some(rx)),
        })
    }

    fn dataplane(&self) -> &Arc<DataplaneLink> {
        &self.media.link
    }

    /// Connects to the mixer (and keeps reconnecting) and runs the mixing task.
    pub fn spawn(self: &Arc<Self>) {
        self.link.spawn(self.clone());
        let Some(mut rx) = self.rx.lock().unwrap_or_else(|p| p.into_inner()).take() else {
            return;
        };
        let mut events = self.media.conference.subscribe();
        let jobs = self.jobs.clone();
        tokio::spawn(async move {
            loop {
                match events.recv().await {
                    Ok(ev) => {
                        if jobs.send(Job::Conference(ev)).is_err() {
                            break;
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(missed = n, "conference events missed by mixing");
                        let _ = jobs.send(Job::Reconcile);
                    }
                    Err(_) => break,
                }
            }
        });
        let jobs = self.jobs.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(RECONCILE_EVERY);
            loop {
                tick.tick().await;
                if jobs.send(Job::Reconcile).is_err() {
                    break;
                }
            }
        });
        let mixing = self.clone();
        tokio::spawn(async move {
            let mut views: HashMap<String, ViewState> = HashMap::new();
            while let Some(job) = rx.recv().await {
                mixing.run(job, &mut views).await;
            }
        });
    }

    async fn run(&self, job: Job, views: &mut HashMap<String, ViewState>) {
        match job {
            Job::Reconcile => {
                self.reconcile(views).await;
                self.refresh_listeners(None, views).await;
                self.end_idle_variants(views).await;
            }
            Job::MixerDown => {
                for (id, v) in views.drain() {
                    self.teardown(&id, &v, false).await;
                }
            }
            Job::Mixer(e) => self.on_mixer_event(e, views).await,
            Job::RoomUpdated(room) => self.room_updated(&room, views).await,
            Job::Transcode {
                room,
                stream,
                variant,
                reply,
            } => {
                let r = self.transcode(&room, &stream, variant, views).await;
                let _ = reply.send(r.map_err(|e| e.to_string()));
            }
            Job::Listen {
                room,
                mixed,
                who,
                may_publish,
                reply,
            } => {
                let r = self.listen(&room, &mixed, who, may_publish, views).await;
                let _ = reply.send(r.map_err(|e| e.to_string()));
            }
            Job::Conference(e) => self.on_conference_event(e, views).await,
        }
    }

    /// Starts the views of rooms with people in them, ends those of rooms without.
    async fn reconcile(&self, views: &mut HashMap<String, ViewState>) {
        if !self.link.is_up() || !self.dataplane().is_up() {
            return;
        }
        let active = self.media.conference.active_rooms();
        let idle: Vec<String> = views
            .iter()
            .filter(|(_, v)| !active.contains(&v.room))
            .map(|(id, _)| id.clone())
            .collect();
        for id in idle {
            if let Some(v) = views.remove(&id) {
                self.teardown(&id, &v, true).await;
            }
        }
        for room in active {
            let store = self.store.clone();
            let rid = room.clone();
            let config = match tokio::task::spawn_blocking(move || store.room_by_id(&rid)).await {
                Ok(Ok(Some(r))) => r.config,
                _ => continue,
            };
            for view in &config.views {
                let id = view_id(&room, &view.label);
                if views.contains_key(&id) {
                    continue;
                }
                match self.start_view(&room, view).await {
                    Ok(state) => {
                        views.insert(id.clone(), state);
                        self.mix_room_inputs(&id, views).await;
                    }
                    Err(e) => {
                        tracing::warn!(view = %id, error = %e, "the view could not start; retrying");
                        let _ = self
                            .link
                            .call(api::Request::ViewClose { view: id.clone() })
                            .await;
                    }
                }
            }
        }
    }

    /// A room's configuration changed: a view whose output format changed (codec, size,
    /// frame rate, bitrate, keyframe interval) or that is gone ends (the reconcile starts
    /// the new ones); one whose layout settings changed takes them live.
    async fn room_updated(&self, room: &str, views: &mut HashMap<String, ViewState>) {
        let store = self.store.clone();
        let rid = room.to_string();
        let Ok(Ok(Some(config))) =
            tokio::task::spawn_blocking(move || store.room_by_id(&rid)).await
        else {
            return;
        };
        let mine: Vec<String> = views
            .iter()
            .filter(|(_, v)| v.room == room && v.variant_of.is_none())
            .map(|(id, _)| id.clone())
            .collect();
        for id in mine {
            let Some(v) = views.get_mut(&id) else {
                continue;
            };
            let new = config
                .config
                .views
                .iter()
                .find(|n| n.label == v.label)
                .cloned();
            let same_format = new.as_ref().is_some_and(|n| {
                let (a, b) = (view_spec(room, &v.config, &[]), view_spec(room, n, &[]));
                a.audio == b.audio
                    && match (&a.video, &b.video) {
                        (Some(x), Some(y)) => {
                            (
                                x.codec.as_str(),
                                x.width,
                                x.height,
                                x.framerate,
                                x.bitrate_kbps,
                                x.key_frame_interval,
                            ) == (
                                y.codec.as_str(),
                                y.width,
                                y.height,
                                y.framerate,
                                y.bitrate_kbps,
                                y.key_frame_interval,
                            )
                        }
                        (None, None) => true,
                        _ => false,
                    }
            });
            match new {
                Some(n) if same_format => {
                    if n != v.config {
                        v.config = n;
                        let spec = view_spec(room, &v.config, &v.pinned);
                        let _ = self
                            .link
                            .call(api::Request::ViewUpdate { view: spec })
                            .await;
                        tracing::info!(view = %id, "view settings changed live");
                    }
                }
                _ => {
                    if let Some(v) = views.remove(&id) {
                        tracing::info!(view = %id, "view changed format or went: it starts again");
                        self.teardown(&id, &v, true).await;
                    }
                }
            }
        }
        self.reconcile(views).await;
    }

    /// The room's configuration was saved: running views follow it.
    pub fn room_changed(&self, room: &str) {
        let _ = self.jobs.send(Job::RoomUpdated(room.to_string()));
    }

    /// Starts a room's view: the mixer's output client, its dataplane peer, the mixed
    /// stream.
    async fn start_view(&self, room: &str, view: &room::View) -> Result<ViewState, MixError> {
        let spec = view_spec(room, view, &[]);
        let mut state = self.start(room, spec, None).await?;
        state.config = view.clone();
        if self.media.conference.stream(room, &state.id()).is_err() {
            self.media
                .conference
                .add_stream(room, mixed_stream(&state.id(), view));
        }
        Ok(state)
    }

    /// Starts a view of `spec` (a transcoding of `variant_of` when given) on the mixer and
    /// its output on the dataplane.
    async fn start(
        &self,
        room: &str,
        spec: api::ViewSpec,
        variant_of: Option<String>,
    ) -> Result<ViewState, MixError> {
        let id = spec.id.clone();
        let label = spec.label.clone();
        let offer = match self
            .link
            .call(api::Request::ViewCreate { view: spec })
            .await?
        {
            api::Response::Offer(o) => o,
            other => return Err(MixError::Other(format!("unexpected answer {other:?}"))),
        };
        let out_peer = format!("{id}#out");
        let core = self.dataplane().place(room, &out_peer)?;
        let mids: Vec<String> = offer.sections.iter().map(|s| s.mid.clone()).collect();
        let has = |kind: &str| offer.sections.iter().any(|s| s.kind == kind);
        let created = self
            .dataplane()
            .call(DpRequest::PeerCreate(PeerCreate {
                peer: out_peer.clone(),
                core,
                offer_sdp: offer.sdp,
                bindings: vec![Binding::Publish {
                    publication: id.clone(),
                    mids: Some(mids),
                    audio: has("audio"),
                    video: has("video"),
                    selection: None,
                }],
                close_when_empty: false,
                bandwidth_adaptation: false,
            }))
            .await;
        let answer = match created {
            Ok(DpResponse::PeerCreated(c)) => c.answer_sdp,
            other => {
                self.dataplane().release(&out_peer);
                return Err(MixError::Other(format!(
                    "the dataplane refused the view's peer: {other:?}"
                )));
            }
        };
        if let Err(e) = self
            .link
            .call(api::Request::ViewAnswer {
                view: id.clone(),
                client: api::Client::Output,
                sdp: answer,
            })
            .await
        {
            self.close_peer(&out_peer).await;
            return Err(e.into());
        }
        self.media.sessions.insert(Session {
            id: id.clone(),
            peer: out_peer.clone(),
            room: room.to_string(),
            participant: MIXER_PARTICIPANT.into(),
            stream: id.clone(),
            subscription: None,
            token_id: None,
            core,
            whole_peer: false,
        });
        tracing::info!(view = %id, core, "mixed stream started");
        Ok(ViewState {
            room: room.to_string(),
            label,
            out_peer,
            in_peer: format!("{id}#in"),
            out_core: core,
            in_core: None,
            inputs: Vec::new(),
            pinned: Vec::new(),
            config: room::View::default(),
            listeners: HashMap::new(),
            variant_of,
            idle_since: None,
        })
    }

    /// Mixes every stream of the view's room whose `inViews` names it.
    async fn mix_room_inputs(&self, id: &str, views: &mut HashMap<String, ViewState>) {
        let Some((room, label)) = views.get(id).map(|v| (v.room.clone(), v.label.clone())) else {
            return;
        };
        for s in self.media.conference.streams(&room) {
            if wants(&s, &label) {
                self.add_input(id, &s, views).await;
            }
        }
    }

    /// Mixes one stream into a view (no-op if it is already).
    async fn add_input(
        &self,
        id: &str,
        stream: &StreamInfo,
        views: &mut HashMap<String, ViewState>,
    ) {
        let Some(v) = views.get_mut(id) else { return };
        if v.inputs.contains(&stream.id) {
            return;
        }
        let input = api::Input {
            stream: stream.id.clone(),
            audio: matches!(stream.media.audio, OrFalse::Some(_)),
            video: matches!(stream.media.video, OrFalse::Some(_)),
        };
        match self.bind_input(v, input).await {
            Ok(()) => {
                v.inputs.push(stream.id.clone());
                tracing::info!(view = %id, input = %stream.id, "stream mixed");
            }
            Err(e) => {
                tracing::warn!(view = %id, input = %stream.id, error = %e, "the stream could not be mixed");
                let _ = self
                    .link
                    .call(api::Request::ViewInputRemove {
                        view: id.to_string(),
                        stream: stream.id.clone(),
                    })
                    .await;
            }
        }
    }

    async fn bind_input(&self, v: &mut ViewState, input: api::Input) -> Result<(), MixError> {
        let id = v.id();
        let stream = input.stream.clone();
        let offer = match self
            .link
            .call(api::Request::ViewInputAdd {
                view: id.clone(),
                input,
            })
            .await?
        {
            api::Response::Offer(o) => o,
            other => return Err(MixError::Other(format!("unexpected answer {other:?}"))),
        };
        let subscription = format!("{id}#{stream}");
        let mids: Vec<String> = offer.sections.iter().map(|s| s.mid.clone()).collect();
        let has = |kind: &str| offer.sections.iter().any(|s| s.kind == kind);
        let binding = Binding::Subscribe {
            subscription: subscription.clone(),
            publication: stream.clone(),
            mids: Some(mids),
            audio: has("audio"),
            video: has("video"),
            cap: Default::default(),
        };
        let (req, placed) = if offer.first || v.in_core.is_none() {
            let core = self.dataplane().place(&v.room, &v.in_peer)?;
            (
                DpRequest::PeerCreate(PeerCreate {
                    peer: v.in_peer.clone(),
                    core,
                    offer_sdp: offer.sdp,
                    bindings: vec![binding],
                    close_when_empty: false,
                    bandwidth_adaptation: false,
                }),
                Some(core),
            )
        } else {
            (
                DpRequest::PeerOffer(PeerOffer {
                    peer: v.in_peer.clone(),
                    offer_sdp: offer.sdp,
                    bindings: vec![binding],
                }),
                None,
            )
        };
        let answer = match self.dataplane().call(req).await {
            Ok(DpResponse::PeerCreated(c)) => c.answer_sdp,
            other => {
                if placed.is_some() {
                    self.dataplane().release(&v.in_peer);
                }
                return Err(MixError::Other(format!(
                    "the dataplane refused the input: {other:?}"
                )));
            }
        };
        if let Some(core) = placed {
            v.in_core = Some(core);
        }
        self.link
            .call(api::Request::ViewAnswer {
                view: id,
                client: api::Client::Input,
                sdp: answer,
            })
            .await?;
        self.media.sessions.insert(Session {
            id: subscription.clone(),
            peer: v.in_peer.clone(),
            room: v.room.clone(),
            participant: MIXER_PARTICIPANT.into(),
            stream,
            subscription: Some(subscription.clone()),
            token_id: None,
            core: v.in_core.unwrap_or(0),
            whole_peer: false,
        });
        Ok(())
    }

    /// Stops mixing a stream into a view.
    async fn remove_input(&self, id: &str, stream: &str, views: &mut HashMap<String, ViewState>) {
        let Some(v) = views.get_mut(id) else { return };
        if !v.inputs.iter().any(|s| s == stream) {
            return;
        }
        v.inputs.retain(|s| s != stream);
        if let Some(s) = self.media.sessions.get(&format!("{id}#{stream}")) {
            self.media.close(vec![s], "unmixed").await;
        }
        let _ = self
            .link
            .call(api::Request::ViewInputRemove {
                view: id.to_string(),
                stream: stream.to_string(),
            })
            .await;
        tracing::info!(view = %id, input = %stream, "stream unmixed");
    }

    /// Ends a view: its dataplane peers, its mixed stream, and (`tell_mixer`) its mixer
    /// side.
    async fn teardown(&self, id: &str, v: &ViewState, tell_mixer: bool) {
        for s in self
            .media
            .sessions
            .take(|s| s.peer == v.out_peer || s.peer == v.in_peer)
        {
            self.media.end(&s, "the view ended");
        }
        self.close_peer(&v.out_peer).await;
        if v.in_core.is_some() {
            self.close_peer(&v.in_peer).await;
        }
        let _ = self.media.conference.drop_stream(&v.room, id);
        if tell_mixer {
            let _ = self
                .link
                .call(api::Request::ViewClose {
                    view: id.to_string(),
                })
                .await;
        }
        tracing::info!(view = %id, "mixed stream ended");
    }

    async fn close_peer(&self, peer: &str) {
        let _ = self
            .dataplane()
            .call(DpRequest::PeerClose {
                peer: peer.to_string(),
            })
            .await;
        self.dataplane().release(peer);
    }

    async fn on_mixer_event(&self, e: api::Event, views: &mut HashMap<String, ViewState>) {
        match e {
            api::Event::ViewClosed { view, reason } => {
                if let Some(v) = views.remove(&view) {
                    if v.variant_of.is_some() {
                        tracing::warn!(view = %view, reason = %reason, "the mixer ended a transcoding; its players end (they may ask again)");
                    } else {
                        tracing::warn!(view = %view, reason = %reason, "the mixer ended a view; it starts again");
                    }
                    self.teardown(&view, &v, false).await;
                }
            }
            api::Event::ViewLayout { view, regions } => {
                let Some(v) = views.get(&view) else { return };
                let layout = regions
                    .into_iter()
                    .map(|(stream, r)| StreamRegion {
                        stream: Some(stream),
                        region: room::Region {
                            id: r.id,
                            shape: Shape::Rectangle,
                            area: Area {
                                left: Ratio::Number(r.left),
                                top: Ratio::Number(r.top),
                                width: Ratio::Number(r.width),
                                height: Ratio::Number(r.height),
                            },
                        },
                    })
                    .collect();
                let _ = self
                    .media
                    .conference
                    .set_mixed_layout(&v.room, &view, layout);
            }
            api::Event::ViewActiveInput { view, stream } => {
                if let Some(v) = views.get(&view) {
                    let _ = self
                        .media
                        .conference
                        .set_mixed_active_input(&v.room, &view, &stream);
                }
            }
        }
    }

    async fn on_conference_event(
        &self,
        e: ConferenceEvent,
        views: &mut HashMap<String, ViewState>,
    ) {
        let room = match &e {
            ConferenceEvent::StreamAdded { room, .. }
            | ConferenceEvent::StreamDropped { room, .. }
            | ConferenceEvent::StreamUpdated { room, .. } => Some(room.clone()),
            _ => None,
        };
        self.on_room_event(e, views).await;
        if let Some(room) = room {
            self.refresh_listeners(Some(&room), views).await;
        }
    }

    async fn on_room_event(&self, e: ConferenceEvent, views: &mut HashMap<String, ViewState>) {
        match e {
            ConferenceEvent::ParticipantJoined { .. } => self.reconcile(views).await,
            ConferenceEvent::StreamAdded { room, stream } => {
                let ids: Vec<String> = views
                    .iter()
                    .filter(|(_, v)| v.room == room && wants(&stream, &v.label))
                    .map(|(id, _)| id.clone())
                    .collect();
                for id in ids {
                    self.add_input(&id, &stream, views).await;
                }
            }
            ConferenceEvent::StreamDropped { room, stream } => {
                if let Some(v) = views.remove(&stream) {
                    // The mixed stream itself went (its dataplane peer closed, or the API
                    // dropped it): the view ends, and the reconcile starts it again.
                    self.teardown(&stream, &v, true).await;
                    return;
                }
                let variants: Vec<String> = views
                    .iter()
                    .filter(|(_, v)| v.variant_of.as_deref() == Some(stream.as_str()))
                    .map(|(id, _)| id.clone())
                    .collect();
                for id in variants {
                    if let Some(v) = views.remove(&id) {
                        self.teardown(&id, &v, true).await;
                    }
                }
                let ids: Vec<String> = views
                    .iter()
                    .filter(|(_, v)| v.room == room && v.inputs.contains(&stream))
                    .map(|(id, _)| id.clone())
                    .collect();
                for id in ids {
                    self.remove_input(&id, &stream, views).await;
                }
            }
            ConferenceEvent::StreamUpdated { room, stream, .. } => match &stream.info {
                StreamDetails::Forward(_) => {
                    let ids: Vec<(String, bool, bool)> = views
                        .iter()
                        .filter(|(_, v)| v.room == room)
                        .map(|(id, v)| {
                            (
                                id.clone(),
                                wants(&stream, &v.label),
                                v.inputs.contains(&stream.id),
                            )
                        })
                        .collect();
                    for (id, want, has) in ids {
                        if want && !has {
                            self.add_input(&id, &stream, views).await;
                        } else if !want && has {
                            self.remove_input(&id, &stream.id, views).await;
                        }
                    }
                }
                StreamDetails::Mixed(mixed) => {
                    let Some(v) = views.get_mut(&stream.id) else {
                        return;
                    };
                    let pinned: Vec<(String, String)> = mixed
                        .layout
                        .iter()
                        .filter_map(|r| Some((r.stream.clone()?, r.region.id.clone())))
                        .collect();
                    if pinned != v.pinned {
                        v.pinned = pinned;
                        let spec = view_spec(&v.room, &v.config, &v.pinned);
                        let _ = self
                            .link
                            .call(api::Request::ViewUpdate { view: spec })
                            .await;
                    }
                }
            },
            ConferenceEvent::ParticipantDropped { .. } | ConferenceEvent::RoomDeleted { .. } => {
                self.reconcile(views).await
            }
            _ => {}
        }
    }
}

impl LinkListener<Mixer> for Mixing {
    fn on_event(&self, event: api::Event) {
        let _ = self.jobs.send(Job::Mixer(event));
    }

    fn on_down(&self) {
        let _ = self.jobs.send(Job::MixerDown);
    }

    fn on_up(&self, info: &api::MixerInfo) {
        tracing::info!(pid = info.pid, "mixer in service");
        let _ = self.jobs.send(Job::Reconcile);
    }
}

/// Whether `stream` is a forward input whose `inViews` names `label`.
fn wants(stream: &StreamInfo, label: &str) -> bool {
    stream.is_input()
        && matches!(&stream.info, StreamDetails::Forward(f) if f.in_views.iter().any(|v| v == label))
}

/// The view labels a new forward stream is mixed into: all of the room's (OWT's default).
pub fn default_in_views(config: &RoomConfig) -> Vec<String> {
    config.views.iter().map(|v| v.label.clone()).collect()
}

#[cfg(test)]
mod tests {
    use super::transcoding::{audio_codec_for, variant_for};
    use super::*;

    #[test]
    fn an_offers_mids_are_read_by_kind() {
        let sdp = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:1\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=mid:2\r\n";
        assert_eq!(
            sdp_mids(sdp),
            (vec!["0".to_string()], vec!["1".to_string()])
        );
        assert_eq!(sdp_mids("garbage"), (vec![], vec![]));
    }

    #[test]
    fn a_subscription_splits_into_its_video_and_its_own_audio() {
        let b = Binding::Subscribe {
            subscription: "s".into(),
            publication: "r-common".into(),
            mids: None,
            audio: true,
            video: true,
            cap: Default::default(),
        };
        let split = split_bindings(
            b,
            "r-common~p:x",
            "r-common",
            vec!["0".into()],
            vec!["1".into()],
        );
        assert_eq!(split.len(), 2);
        match (&split[0], &split[1]) {
            (
                Binding::Subscribe {
                    subscription: s0,
                    publication: p0,
                    mids: m0,
                    audio: a0,
                    video: v0,
                    ..
                },
                Binding::Subscribe {
                    subscription: s1,
                    publication: p1,
                    mids: m1,
                    audio: a1,
                    video: v1,
                    ..
                },
            ) => {
                assert_eq!(
                    (s0.as_str(), p0.as_str(), *a0, *v0),
                    ("s", "r-common", false, true)
                );
                assert_eq!(m0.as_deref(), Some(&["1".to_string()][..]));
                assert_eq!(
                    (s1.as_str(), p1.as_str(), *a1, *v1),
                    ("s~audio", "r-common~p:x", true, false)
                );
                assert_eq!(m1.as_deref(), Some(&["0".to_string()][..]));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            Listener::User("alice".into()).key(),
            "u:alice",
            "users and participants do not collide"
        );
        assert_ne!(Listener::Participant("alice".into()).key(), "u:alice");
    }

    #[test]
    fn a_players_offer_decides_codec_transcodings() {
        let offer = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0 8\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\nm=video 9 UDP/TLS/RTP/SAVPF 102\r\na=rtpmap:102 H264/90000\r\n";
        assert_eq!(sdp_codecs(offer, "audio"), vec!["pcmu", "pcma"]);
        assert_eq!(sdp_codecs(offer, "video"), vec!["h264"]);
        // Opus is not offered: PCMU it is; PCMU is: no transcoding.
        assert_eq!(
            audio_codec_for(AudioCodec::Opus, offer).as_deref(),
            Some("pcmu")
        );
        assert_eq!(audio_codec_for(AudioCodec::Pcmu, offer), None);
        assert_eq!(audio_codec_for(AudioCodec::Opus, "v=0\r\n"), None);
        let vp8 = VideoInfo {
            status: None,
            source: None,
            format: crate::model::media::VideoFormat::new(VideoCodec::Vp8, None),
            parameters: None,
            optional: None,
            rids: Vec::new(),
        };
        let none = crate::caps::Transcode::default();
        let v = variant_for(&vp8, &none, offer).expect("H.264 of a VP8 stream");
        assert_eq!((v.codec.as_str(), v.width, v.height), ("h264", 0, 0));
        let vp8_offer = offer.replace("H264", "VP8");
        assert_eq!(variant_for(&vp8, &none, &vp8_offer), None);
        let small = crate::caps::Transcode {
            width: Some(320),
            height: Some(240),
            framerate: Some(10),
            ..Default::default()
        };
        let v = variant_for(&vp8, &small, &vp8_offer).expect("a smaller VP8");
        assert_eq!((v.codec.as_str(), v.width, v.framerate), ("vp8", 320, 10));
        assert!(v.id("s").starts_with("s@vp8-320x240-10fps-"));
    }

    #[test]
    fn a_views_spec_takes_owts_defaults() {
        let view = room::View::default();
        let spec = view_spec("r", &view, &[("s1".into(), "2".into())]);
        assert_eq!(spec.id, "r-common");
        let v = spec.video.expect("the default view has video");
        assert_eq!(
            (v.codec.as_str(), v.width, v.height, v.framerate),
            ("vp8", 640, 480, 24)
        );
        // OWT's table: 640×480 at 24 fps with motion factor 0.8.
        assert_eq!(v.bitrate_kbps, 512);
        assert_eq!(v.layout.pinned, vec![("s1".to_string(), "2".to_string())]);
        assert_eq!(v.max_input, 16);
    }
}
