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
    fn key(&self) -> String {
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
const LISTENER_IDLE: Duration = Duration::from_secs(30);

/// The id of the binding that plays a subscription's mix-minus audio.
pub fn minus_subscription(subscription: &str) -> String {
    format!("{subscription}~audio")
}

/// Splits a subscription so that its audio sections play `audio` and its video sections
/// `video` (a player's mix-minus, a transcoding): the binding keeps the video sections
/// (`video_mids`), a second one plays the audio on `audio_mids`.
pub fn split_bindings(
    binding: Binding,
    audio: &str,
    video: &str,
    audio_mids: Vec<String>,
    video_mids: Vec<String>,
) -> Vec<Binding> {
    match binding {
        Binding::Subscribe {
            subscription,
            audio: wants_audio,
            video: wants_video,
            cap,
            ..
        } => vec![
            Binding::Subscribe {
                subscription: subscription.clone(),
                publication: video.to_string(),
                mids: Some(video_mids),
                audio: false,
                video: wants_video,
                cap,
            },
            Binding::Subscribe {
                subscription: minus_subscription(&subscription),
                publication: audio.to_string(),
                mids: Some(audio_mids),
                audio: wants_audio,
                video: false,
                cap: Default::default(),
            },
        ],
        other => vec![other],
    }
}

/// The codecs an SDP offer lists for `kind` (`audio`, `video`; lower case).
pub fn sdp_codecs(sdp: &str, kind: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut inside = false;
    for line in sdp.lines().map(|l| l.trim_end_matches('\r')) {
        if let Some(m) = line.strip_prefix("m=") {
            inside = m.split_whitespace().next() == Some(kind);
        } else if let Some(map) = line.strip_prefix("a=rtpmap:").filter(|_| inside) {
            if let Some(name) = map
                .split_whitespace()
                .nth(1)
                .and_then(|e| e.split('/').next())
            {
                let name = name.to_ascii_lowercase();
                if !out.contains(&name) {
                    out.push(name);
                }
            }
        }
    }
    out
}

/// How one player plays a stream: what decides its bindings beyond the stream itself.
pub struct Playback<'a> {
    /// The room.
    pub room: &'a str,
    /// The stream played.
    pub stream: &'a str,
    /// The player's offer (the codecs it takes).
    pub offer_sdp: &'a str,
    /// Its audio sections.
    pub audio_mids: Vec<String>,
    /// Its video sections.
    pub video_mids: Vec<String>,
    /// What it asks the video to be.
    pub transcode: &'a crate::caps::Transcode,
    /// Who it is (for a mixed stream's mix-minus), and whether it may publish audio.
    pub listener: Option<(Listener, bool)>,
}

/// The audio and video sections (mids) of an SDP offer, in order.
pub fn sdp_mids(sdp: &str) -> (Vec<String>, Vec<String>) {
    let (mut audio, mut video) = (Vec::new(), Vec::new());
    let mut kind = None;
    for line in sdp.lines().map(|l| l.trim_end_matches('\r')) {
        if let Some(m) = line.strip_prefix("m=") {
            kind = m.split_whitespace().next().map(str::to_string);
        } else if let Some(mid) = line.strip_prefix("a=mid:") {
            match kind.as_deref() {
                Some("audio") => audio.push(mid.trim().to_string()),
                Some("video") => video.push(mid.trim().to_string()),
                _ => {}
            }
        }
    }
    (audio, video)
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

struct ListenerState {
    who: Listener,
    publication: String,
    excluded: Vec<String>,
    idle_since: Option<std::time::Instant>,
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
        let core = self.dataplane().place()?;
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
                self.dataplane().release(core);
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
            self.close_peer(&out_peer, core).await;
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
            let core = self.dataplane().place()?;
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
                if let Some(core) = placed {
                    self.dataplane().release(core);
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

    /// The publication carrying `stream`'s video as `variant` asks (started on first use,
    /// shared by every player that asks for the same).
    async fn transcode(
        &self,
        room: &str,
        stream: &str,
        variant: Transcoding,
        views: &mut HashMap<String, ViewState>,
    ) -> Result<String, MixError> {
        let id = variant.id(stream);
        if views.contains_key(&id) {
            return Ok(id);
        }
        let info = self
            .media
            .conference
            .stream(room, stream)
            .map_err(|_| MixError::Other(format!("no stream {stream} in the room")))?;
        let (audio, video) = match &variant {
            Transcoding::Audio(codec) => (
                Some(api::AudioSpec {
                    codec: codec.clone(),
                    vad: false,
                }),
                None,
            ),
            Transcoding::Video(v) => (
                None,
                Some(api::VideoSpec {
                    codec: v.codec.clone(),
                    width: u32::from(v.width),
                    height: u32::from(v.height),
                    framerate: v.framerate,
                    bitrate_kbps: v.bitrate_kbps,
                    key_frame_interval: v.key_frame_interval,
                    max_input: 1,
                    bg_color: [0, 0, 0],
                    fit: api::Fit::Letterbox,
                    keep_active_input_primary: false,
                    layout: api::LayoutSpec::default(),
                }),
            ),
        };
        let spec = api::ViewSpec {
            id: id.clone(),
            room: room.to_string(),
            label: id.clone(),
            audio,
            video,
        };
        let state = self.start(room, spec, Some(stream.to_string())).await?;
        views.insert(id.clone(), state);
        // The one input: the track transcoded.
        let media = match &variant {
            Transcoding::Audio(_) => StreamMedia {
                audio: info.media.audio.clone(),
                video: OrFalse::False,
            },
            Transcoding::Video(_) => StreamMedia {
                audio: OrFalse::False,
                video: info.media.video.clone(),
            },
        };
        let input = StreamInfo { media, ..info };
        self.add_input(&id, &input, views).await;
        if !views
            .get(&id)
            .is_some_and(|v| v.inputs.iter().any(|s| s == stream))
        {
            if let Some(v) = views.remove(&id) {
                self.teardown(&id, &v, true).await;
            }
            return Err(MixError::Other(format!("{stream} could not be transcoded")));
        }
        tracing::info!(stream, variant = %id, "transcoding started");
        Ok(id)
    }

    /// Transcodings nobody has played for [`LISTENER_IDLE`] end.
    async fn end_idle_variants(&self, views: &mut HashMap<String, ViewState>) {
        let now = std::time::Instant::now();
        let mut idle = Vec::new();
        for (id, v) in views.iter_mut().filter(|(_, v)| v.variant_of.is_some()) {
            let played = !self
                .media
                .sessions
                .find(|s| s.stream == *id && s.subscription.is_some())
                .is_empty();
            if played {
                v.idle_since = None;
            } else if now.saturating_duration_since(*v.idle_since.get_or_insert(now))
                >= LISTENER_IDLE
            {
                idle.push(id.clone());
            }
        }
        for id in idle {
            if let Some(v) = views.remove(&id) {
                tracing::info!(variant = %id, "transcoding ended: nobody plays it");
                self.teardown(&id, &v, true).await;
            }
        }
    }

    /// The publication carrying what `who` hears of mixed stream `mixed` (the mix
    /// without its own inputs), published from the view's output peer on first use;
    /// `None` when it has no input in the view and (`may_publish` false) will have none:
    /// it hears the mix itself, like every other listener, at no cost per listener.
    async fn listen(
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
    async fn refresh_listeners(&self, room: Option<&str>, views: &mut HashMap<String, ViewState>) {
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
        self.close_peer(&v.out_peer, v.out_core).await;
        if let Some(core) = v.in_core {
            self.close_peer(&v.in_peer, core).await;
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

    async fn close_peer(&self, peer: &str, core: u16) {
        let _ = self
            .dataplane()
            .call(DpRequest::PeerClose {
                peer: peer.to_string(),
            })
            .await;
        self.dataplane().release(core);
    }

    async fn on_mixer_event(&self, e: api::Event, views: &mut HashMap<String, ViewState>) {
        match e {
            api::Event::ViewClosed { view, reason } => {
                tracing::warn!(view = %view, reason = %reason, "the mixer ended a view; it starts again");
                if let Some(v) = views.remove(&view) {
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

impl Mixing {
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

impl Mixing {
    /// The bindings that play a stream to one player (`binding`, a subscription): its
    /// audio from what the player hears of a mixed stream (without itself), its video
    /// from a transcoding when it asks for what the stream is not — another size or frame
    /// rate, or a codec its offer lacks. Without either, `binding` alone.
    pub async fn bindings_for(&self, binding: Binding, p: Playback<'_>) -> Vec<Binding> {
        let Binding::Subscribe { audio, video, .. } = &binding else {
            return vec![binding];
        };
        let (audio, video) = (*audio, *video);
        let Ok(info) = self.media.conference.stream(p.room, p.stream) else {
            return vec![binding];
        };
        let mut audio_from = None;
        if let (true, StreamKind::Mixed, Some((who, may_publish))) = (audio, info.kind, p.listener)
        {
            audio_from = self
                .listener_publication(p.room, p.stream, who, may_publish)
                .await;
        }
        if let (true, None, OrFalse::Some(a)) = (audio, &audio_from, &info.media.audio) {
            if let Some(codec) = audio_codec_for(a.format.codec, p.offer_sdp) {
                audio_from = self
                    .transcoding(p.room, p.stream, Transcoding::Audio(codec))
                    .await;
            }
        }
        let mut video_from = None;
        if let (true, OrFalse::Some(v)) = (video, &info.media.video) {
            if let Some(variant) = variant_for(v, p.transcode, p.offer_sdp) {
                video_from = self
                    .transcoding(p.room, p.stream, Transcoding::Video(variant))
                    .await;
            }
        }
        if audio_from.is_none() && video_from.is_none() {
            return vec![binding];
        }
        split_bindings(
            binding,
            audio_from.as_deref().unwrap_or(p.stream),
            video_from.as_deref().unwrap_or(p.stream),
            p.audio_mids,
            p.video_mids,
        )
    }

    /// The publication carrying `stream`'s video transcoded as `variant` asks, started
    /// on first use and shared; `None` when the mixer cannot now.
    pub async fn transcoding(
        &self,
        room: &str,
        stream: &str,
        variant: Transcoding,
    ) -> Option<String> {
        let (reply, rx) = tokio::sync::oneshot::channel();
        self.jobs
            .send(Job::Transcode {
                room: room.to_string(),
                stream: stream.to_string(),
                variant,
                reply,
            })
            .ok()?;
        match tokio::time::timeout(Duration::from_secs(15), rx).await {
            Ok(Ok(Ok(p))) => Some(p),
            Ok(Ok(Err(e))) => {
                tracing::warn!(stream, error = %e, "no transcoding for a player");
                None
            }
            _ => None,
        }
    }
}

/// The transcoding a player needs of a stream's video `v`: when it asks for what the
/// stream is not (`t`), or its offer (`offer_sdp`) lacks the stream's codec. `None` when
/// the stream will do, or no codec the mixer encodes (VP8, H.264) is in the offer.
fn variant_for(
    v: &crate::model::conference::VideoInfo,
    t: &crate::caps::Transcode,
    offer_sdp: &str,
) -> Option<Variant> {
    let offered = sdp_codecs(offer_sdp, "video");
    let own = match v.format.codec {
        VideoCodec::H264 => "h264",
        VideoCodec::H265 => "h265",
        VideoCodec::Vp8 => "vp8",
        VideoCodec::Vp9 => "vp9",
        VideoCodec::Av1 => "av1",
    };
    let codec_ok = offered.is_empty() || offered.iter().any(|c| c == own);
    if codec_ok && !t.needed(!v.rids.is_empty()) {
        return None;
    }
    let takes = |c: &str| offered.is_empty() || offered.iter().any(|o| o == c);
    let codec = [own, "vp8", "h264"]
        .into_iter()
        .find(|c| matches!(*c, "vp8" | "h264") && takes(c))?;
    let (width, height) = (t.width.unwrap_or(0), t.height.unwrap_or(0));
    let framerate = t
        .framerate
        .or_else(|| v.parameters.as_ref().and_then(|p| p.framerate))
        .unwrap_or(30);
    let bitrate_kbps = t.bitrate_kbps.unwrap_or(if width > 0 && height > 0 {
        default_bitrate_kbps(
            crate::model::media::Resolution {
                width: u32::from(width),
                height: u32::from(height),
            },
            framerate,
            0.8,
        )
    } else {
        1000
    });
    Some(Variant {
        codec: codec.to_string(),
        width,
        height,
        framerate,
        bitrate_kbps,
        key_frame_interval: t.key_frame_interval.unwrap_or(5),
    })
}

/// What a transcoding makes of a stream: its audio in another codec, or its video as a
/// player asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transcoding {
    /// The audio in this codec (`opus`, `pcmu`, `pcma`, `g722`).
    Audio(String),
    /// The video.
    Video(Variant),
}

impl Transcoding {
    /// The id of `stream`'s transcoding (shared by every player asking the same).
    pub fn id(&self, stream: &str) -> String {
        match self {
            Transcoding::Audio(codec) => format!("{stream}@audio-{codec}"),
            Transcoding::Video(v) => v.id(stream),
        }
    }
}

/// The codec a player's audio needs to be transcoded to: `None` when its offer takes the
/// stream's `codec` (or names none), or takes nothing the mixer encodes.
fn audio_codec_for(codec: AudioCodec, offer_sdp: &str) -> Option<String> {
    let offered = sdp_codecs(offer_sdp, "audio");
    let own = match codec {
        AudioCodec::Opus => "opus",
        AudioCodec::Pcmu => "pcmu",
        AudioCodec::Pcma => "pcma",
        AudioCodec::G722 => "g722",
        _ => "",
    };
    if offered.is_empty() || offered.iter().any(|c| c == own) {
        return None;
    }
    ["opus", "g722", "pcmu", "pcma"]
        .into_iter()
        .find(|c| offered.iter().any(|o| o == c))
        .map(str::to_string)
}

/// What a player asks a stream's video to become.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Variant {
    /// `vp8` or `h264`.
    pub codec: String,
    /// Width and height in pixels; 0 × 0 keeps the stream's.
    pub width: u16,
    /// Height.
    pub height: u16,
    /// Frames per second.
    pub framerate: u32,
    /// kbit/s.
    pub bitrate_kbps: u32,
    /// Seconds between keyframes.
    pub key_frame_interval: u32,
}

impl Variant {
    /// The id of `stream`'s transcoding to this variant (shared by every player asking
    /// for the same).
    pub fn id(&self, stream: &str) -> String {
        format!(
            "{stream}@{}-{}x{}-{}fps-{}k-{}s",
            self.codec,
            self.width,
            self.height,
            self.framerate,
            self.bitrate_kbps,
            self.key_frame_interval
        )
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

fn ratio(r: &Ratio) -> f64 {
    r.value().unwrap_or(0.0)
}

fn region(r: &room::Region) -> api::Region {
    api::Region {
        id: r.id.clone(),
        left: ratio(&r.area.left),
        top: ratio(&r.area.top),
        width: ratio(&r.area.width),
        height: ratio(&r.area.height),
    }
}

fn video_codec(c: VideoCodec) -> &'static str {
    match c {
        VideoCodec::H264 => "h264",
        _ => "vp8",
    }
}

/// What the mixer needs of a room's view.
pub fn view_spec(room: &str, view: &room::View, pinned: &[(String, String)]) -> api::ViewSpec {
    let video = view.video.as_ref().map(|v| {
        let p = &v.parameters;
        let bitrate = p
            .bitrate
            .unwrap_or_else(|| default_bitrate_kbps(p.resolution, p.framerate, v.motion_factor));
        let byte = |c: i64| c.clamp(0, 255) as u8;
        api::VideoSpec {
            codec: video_codec(v.format.codec).into(),
            width: p.resolution.width,
            height: p.resolution.height,
            framerate: p.framerate,
            bitrate_kbps: bitrate,
            key_frame_interval: p.key_frame_interval,
            max_input: u32::try_from(v.max_input).unwrap_or(16),
            bg_color: [byte(v.bg_color.r), byte(v.bg_color.g), byte(v.bg_color.b)],
            fit: match v.layout.fit_policy {
                FitPolicy::Letterbox => api::Fit::Letterbox,
                FitPolicy::Crop => api::Fit::Crop,
            },
            keep_active_input_primary: v.keep_active_input_primary,
            layout: api::LayoutSpec {
                base: match v.layout.templates.base {
                    BaseTemplate::Fluid => api::BaseTemplate::Fluid,
                    BaseTemplate::Lecture => api::BaseTemplate::Lecture,
                    BaseTemplate::Void => api::BaseTemplate::Void,
                },
                custom: v
                    .layout
                    .templates
                    .custom
                    .iter()
                    .map(|c| api::CustomLayout {
                        primary: c.primary.clone(),
                        regions: c.region.iter().map(region).collect(),
                    })
                    .collect(),
                pinned: pinned.to_vec(),
            },
        }
    });
    api::ViewSpec {
        id: view_id(room, &view.label),
        room: room.to_string(),
        label: view.label.clone(),
        audio: Some(api::AudioSpec {
            codec: "opus".into(),
            vad: view.audio.vad,
        }),
        video,
    }
}

/// OWT's description of a view's mixed stream.
fn mixed_stream(id: &str, view: &room::View) -> StreamInfo {
    StreamInfo {
        id: id.to_string(),
        kind: StreamKind::Mixed,
        media: StreamMedia {
            audio: OrFalse::Some(AudioInfo {
                status: None,
                source: None,
                format: AudioFormat::new(AudioCodec::Opus, Some(48_000), Some(2)),
                optional: None,
            }),
            video: match view.video.as_ref() {
                Some(v) => OrFalse::Some(VideoInfo {
                    status: None,
                    source: None,
                    format: v.format.clone(),
                    parameters: Some(VideoParameters {
                        resolution: Some(v.parameters.resolution),
                        framerate: Some(v.parameters.framerate),
                        bitrate: v.parameters.bitrate,
                        key_frame_interval: Some(v.parameters.key_frame_interval),
                    }),
                    optional: None,
                    rids: Vec::new(),
                }),
                None => OrFalse::False,
            },
        },
        info: StreamDetails::Mixed(MixedInfo {
            label: view.label.clone(),
            layout: Vec::new(),
        }),
    }
}

#[cfg(test)]
mod tests {
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
