//! One view (sans-IO): its two WebRTC clients towards the dataplane, its audio mixer and
//! its video compositor, driven by `now`.
//!
//! The *output* client publishes the mixed stream (opus and the view's video codec
//! only, so that the publication's codec list is exactly what is sent); the *input*
//! client receives every input as a subscription (opus, PCMU, PCMA, G.722, VP8, H.264:
//! what the mixer decodes). Both are str0m `Rtc`s in frame mode: the dataplane's RTP is
//! depacketized to frames here and the mix is packetized by str0m. Every 20 ms the audio
//! mixer's frame, and at the view's frame rate the compositor's, are written to the
//! output with RTP times from one clock, so the sender reports of both tracks let a
//! player synchronise them.

use crate::audio::mixer::AudioMixer;
use crate::video::compositor::Compositor;
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use str0m::change::{SdpAnswer, SdpPendingOffer};
use str0m::format::Codec;
use str0m::media::{Direction, Frequency, KeyframeRequestKind, MediaKind, MediaTime, Mid};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event as RtcEvent, IceConnectionState, Input as RtcInput, Output, Rtc};
use switchyard_dataplane::peer::codec_name;
use switchyard_mixer_api::{Client, Event, Input, Offer, Section, ViewSpec};

/// A view failed.
#[derive(Debug, thiserror::Error)]
pub enum ViewError {
    /// A codec could not be set up.
    #[error("{0}")]
    Codec(String),
    /// str0m refused.
    #[error("webrtc: {0}")]
    Rtc(#[from] str0m::RtcError),
    /// The answer did not parse.
    #[error("the dataplane's answer: {0}")]
    Sdp(#[from] str0m::error::SdpError),
    /// An answer came with no offer outstanding, or an offer while one is.
    #[error("{0}")]
    Negotiation(&'static str),
}

/// How often an input waiting for a keyframe asks again.
const KEYFRAME_RETRY: Duration = Duration::from_secs(1);

/// The audio frame interval.
const AUDIO_FRAME: Duration = Duration::from_millis(20);

/// A view's WebRTC client and its socket address.
struct Peer {
    rtc: Rtc,
    local: SocketAddr,
    pending: Option<SdpPendingOffer>,
    offered: bool,
    connected: bool,
    transmits: VecDeque<(SocketAddr, Vec<u8>)>,
    next_timeout: Option<Instant>,
}

impl Peer {
    fn new(config: str0m::RtcConfig, local: SocketAddr, now: Instant) -> Peer {
        let mut rtc = config.build(now);
        if let Ok(c) = Candidate::host(local, "udp") {
            rtc.add_local_candidate(c);
        }
        Peer {
            rtc,
            local,
            pending: None,
            offered: false,
            connected: false,
            transmits: VecDeque::new(),
            next_timeout: None,
        }
    }
}

/// The sections an input is received on.
struct InputSections {
    stream: Arc<str>,
    audio: Option<Mid>,
    video: Option<Mid>,
    keyframe_asked: Option<Instant>,
}

/// The audio one listener hears: the mix without its own inputs.
struct Listener {
    key: String,
    mid: Mid,
    excluded: Vec<Arc<str>>,
    on: bool,
}

/// Counters a view keeps.
#[derive(Debug, Default, Clone, Copy)]
pub struct ViewStats {
    /// Audio frames mixed.
    pub audio_frames: u64,
    /// Video frames composited.
    pub video_frames: u64,
    /// Input packets or frames that failed to decode.
    pub decode_errors: u64,
}

/// One view.
pub struct View {
    spec: ViewSpec,
    output: Peer,
    input: Peer,
    audio: Option<AudioMixer>,
    video: Option<Compositor>,
    inputs: Vec<InputSections>,
    out_audio: Option<Mid>,
    out_video: Option<Mid>,
    /// The output's sections for listeners that must not hear themselves.
    listeners: Vec<Listener>,
    epoch: Instant,
    audio_samples: u64,
    next_audio: Option<Instant>,
    events: VecDeque<Event>,
    closed: bool,
    major: Option<Arc<str>>,
    /// Counters.
    pub stats: ViewStats,
}

impl View {
    /// A view mixing the `speakers` loudest inputs, whose output client is at
    /// `output_addr` and input client at `input_addr`; returns it with the output's first
    /// offer.
    pub fn new(
        spec: ViewSpec,
        speakers: usize,
        output_addr: SocketAddr,
        input_addr: SocketAddr,
        now: Instant,
    ) -> Result<(View, Offer), ViewError> {
        let audio = match &spec.audio {
            Some(a) => Some(
                AudioMixer::with_codec(speakers, &a.codec)
                    .map_err(|e| ViewError::Codec(e.to_string()))?,
            ),
            None => None,
        };
        let video = match &spec.video {
            Some(v) => {
                Some(Compositor::new(v.clone()).map_err(|e| ViewError::Codec(e.to_string()))?)
            }
            None => None,
        };
        let mut out_config = Rtc::builder().clear_codecs();
        out_config = match spec.audio.as_ref().map(|a| a.codec.as_str()) {
            Some("pcmu") => out_config.enable_pcmu(true, false),
            Some("pcma") => out_config.enable_pcma(true, false),
            Some("g722") => out_config.enable_g722(true, false),
            _ => out_config.enable_opus(true, false),
        };
        out_config = match spec.video.as_ref().map(|v| v.codec.as_str()) {
            Some("h264") => out_config.enable_h264(true),
            _ => out_config.enable_vp8(true),
        };
        let in_config = Rtc::builder()
            .clear_codecs()
            .enable_opus(true, false)
            .enable_pcmu(true, false)
            .enable_pcma(true, false)
            .enable_g722(true, false)
            .enable_vp8(true)
            .enable_h264(true);
        let mut view = View {
            output: Peer::new(out_config, output_addr, now),
            input: Peer::new(in_config, input_addr, now),
            audio,
            video,
            inputs: Vec::new(),
            out_audio: None,
            out_video: None,
            listeners: Vec::new(),
            epoch: now,
            audio_samples: 0,
            next_audio: None,
            events: VecDeque::new(),
            closed: false,
            major: None,
            stats: ViewStats::default(),
            spec,
        };
        let mut change = view.output.rtc.sdp_api();
        let a = view
            .spec
            .audio
            .is_some()
            .then(|| change.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None));
        let v = view
            .spec
            .video
            .is_some()
            .then(|| change.add_media(MediaKind::Video, Direction::SendOnly, None, None, None));
        let Some((offer, pending)) = change.apply() else {
            return Err(ViewError::Negotiation(
                "a view with neither audio nor video",
            ));
        };
        view.out_audio = a;
        view.out_video = v;
        view.output.pending = Some(pending);
        view.output.offered = true;
        let sections = [(a, "audio"), (v, "video")]
            .into_iter()
            .filter_map(|(m, kind)| {
                Some(Section {
                    mid: m?.to_string(),
                    kind: kind.into(),
                    input: None,
                })
            })
            .collect();
        let offer = Offer {
            client: Client::Output,
            first: true,
            sdp: offer.to_sdp_string(),
            sections,
        };
        Ok((view, offer))
    }

    /// The view's id.
    pub fn id(&self) -> &str {
        &self.spec.id
    }

    /// The socket address of a client.
    pub fn local(&self, client: Client) -> SocketAddr {
        self.peer(client).local
    }

    fn peer(&self, client: Client) -> &Peer {
        match client {
            Client::Output => &self.output,
            Client::Input => &self.input,
        }
    }

    fn peer_mut(&mut self, client: Client) -> &mut Peer {
        match client {
            Client::Output => &mut self.output,
            Client::Input => &mut self.input,
        }
    }

    /// The dataplane's answer to a client's offer.
    pub fn answer(&mut self, client: Client, sdp: &str, now: Instant) -> Result<(), ViewError> {
        let peer = self.peer_mut(client);
        let pending = peer.pending.take().ok_or(ViewError::Negotiation(
            "no offer of this client is waiting for an answer",
        ))?;
        let answer = SdpAnswer::from_sdp_string(sdp)?;
        peer.rtc.sdp_api().accept_answer(pending, answer)?;
        peer.next_timeout = Some(now);
        Ok(())
    }

    /// Mixes a stream: the input client's offer adding its sections.
    pub fn add_input(&mut self, input: &Input, now: Instant) -> Result<Offer, ViewError> {
        if self.input.pending.is_some() {
            return Err(ViewError::Negotiation(
                "an offer of the input client still waits for its answer",
            ));
        }
        let stream: Arc<str> = input.stream.as_str().into();
        if self.inputs.iter().any(|i| i.stream == stream) {
            return Err(ViewError::Negotiation("the stream is mixed already"));
        }
        let want_audio = input.audio && self.audio.is_some();
        let want_video = input.video && self.video.is_some();
        let mut change = self.input.rtc.sdp_api();
        let a = want_audio
            .then(|| change.add_media(MediaKind::Audio, Direction::RecvOnly, None, None, None));
        let v = want_video
            .then(|| change.add_media(MediaKind::Video, Direction::RecvOnly, None, None, None));
        let Some((offer, pending)) = change.apply() else {
            return Err(ViewError::Negotiation(
                "the input has nothing this view mixes",
            ));
        };
        self.input.pending = Some(pending);
        let first = !self.input.offered;
        self.input.offered = true;
        self.input.next_timeout = Some(now);
        if let Some(m) = self.audio.as_mut().filter(|_| want_audio) {
            m.add_input(stream.clone());
        }
        if let Some(c) = self.video.as_mut() {
            // Every input has a region; one without video shows a placeholder.
            c.add_input(stream.clone(), want_video);
        }
        self.inputs.push(InputSections {
            stream: stream.clone(),
            audio: a,
            video: v,
            keyframe_asked: None,
        });
        let sections = [(a, "audio"), (v, "video")]
            .into_iter()
            .filter_map(|(m, kind)| {
                Some(Section {
                    mid: m?.to_string(),
                    kind: kind.into(),
                    input: Some(input.stream.clone()),
                })
            })
            .collect();
        Ok(Offer {
            client: Client::Input,
            first,
            sdp: offer.to_sdp_string(),
            sections,
        })
    }

    /// Publishes what `listener` hears (the mix without `excluded`): the output client's
    /// offer adding its section.
    pub fn add_listener(
        &mut self,
        listener: &str,
        excluded: &[String],
        now: Instant,
    ) -> Result<Offer, ViewError> {
        if self.output.pending.is_some() {
            return Err(ViewError::Negotiation(
                "an offer of the output client still waits for its answer",
            ));
        }
        if self.audio.is_none() {
            return Err(ViewError::Negotiation("the view has no audio"));
        }
        if self.listeners.iter().any(|l| l.key == listener && l.on) {
            return Err(ViewError::Negotiation("the listener is published already"));
        }
        let mut change = self.output.rtc.sdp_api();
        let mid = change.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
        let Some((offer, pending)) = change.apply() else {
            return Err(ViewError::Negotiation("no section could be added"));
        };
        self.output.pending = Some(pending);
        self.output.next_timeout = Some(now);
        self.listeners.retain(|l| l.key != listener);
        self.listeners.push(Listener {
            key: listener.to_string(),
            mid,
            excluded: excluded.iter().map(|s| Arc::from(s.as_str())).collect(),
            on: true,
        });
        Ok(Offer {
            client: Client::Output,
            first: false,
            sdp: offer.to_sdp_string(),
            sections: vec![Section {
                mid: mid.to_string(),
                kind: "audio".into(),
                input: Some(listener.to_string()),
            }],
        })
    }

    /// A listener's own inputs changed.
    pub fn update_listener(&mut self, listener: &str, excluded: &[String]) {
        if let Some(l) = self.listeners.iter_mut().find(|l| l.key == listener) {
            l.excluded = excluded.iter().map(|s| Arc::from(s.as_str())).collect();
        }
    }

    /// Stops a listener's audio.
    pub fn remove_listener(&mut self, listener: &str) {
        if let Some(l) = self.listeners.iter_mut().find(|l| l.key == listener) {
            l.on = false;
        }
    }

    /// Stops mixing a stream (its subscription on the dataplane is control's to end).
    pub fn remove_input(&mut self, stream: &str, now: Instant) {
        self.inputs.retain(|i| &*i.stream != stream);
        if let Some(m) = self.audio.as_mut() {
            m.remove_input(now, stream);
        }
        if let Some(c) = self.video.as_mut() {
            c.remove_input(stream);
        }
    }

    /// New layout settings.
    pub fn update(&mut self, spec: &ViewSpec) {
        if let (Some(c), Some(v)) = (self.video.as_mut(), spec.video.as_ref()) {
            c.update(v);
        }
        self.spec.video = match (&self.spec.video, &spec.video) {
            (Some(old), Some(new)) => Some(switchyard_mixer_api::VideoSpec {
                codec: old.codec.clone(),
                width: old.width,
                height: old.height,
                framerate: old.framerate,
                bitrate_kbps: old.bitrate_kbps,
                key_frame_interval: old.key_frame_interval,
                ..new.clone()
            }),
            (old, _) => old.clone(),
        };
    }

    /// A datagram for a client.
    pub fn receive(&mut self, client: Client, now: Instant, from: SocketAddr, data: &[u8]) {
        let peer = self.peer_mut(client);
        let Ok(contents) = data.try_into() else {
            return;
        };
        let input = RtcInput::Receive(
            now,
            Receive {
                proto: Protocol::Udp,
                source: from,
                destination: peer.local,
                contents,
            },
        );
        if peer.rtc.accepts(&input) {
            let _ = peer.rtc.handle_input(input);
            peer.next_timeout = Some(now);
        }
    }

    /// Whether the view ended (its connection failed).
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// The next event for control.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Datagrams a client wants sent: (destination, bytes).
    pub fn take_transmit(&mut self, client: Client) -> Option<(SocketAddr, Vec<u8>)> {
        self.peer_mut(client).transmits.pop_front()
    }

    /// Runs everything due at `now`; returns when to be called again.
    pub fn handle_timeout(&mut self, now: Instant) -> Instant {
        for client in [Client::Output, Client::Input] {
            self.drive(client, now);
        }
        self.ask_keyframes(now);
        if self.output.connected {
            self.mix_audio(now);
            self.compose_video(now);
            for client in [Client::Output, Client::Input] {
                self.drive(client, now);
            }
        }
        let mut next = now + Duration::from_millis(100);
        for t in [
            self.output.next_timeout,
            self.input.next_timeout,
            self.next_audio.filter(|_| self.output.connected),
            self.video
                .as_ref()
                .and_then(Compositor::next_due)
                .filter(|_| self.output.connected),
        ]
        .into_iter()
        .flatten()
        {
            next = next.min(t);
        }
        next.max(now)
    }

    /// Feeds a client the time and takes what it has to say.
    fn drive(&mut self, client: Client, now: Instant) {
        if self.peer(client).next_timeout.is_some_and(|t| t <= now) {
            let _ = self
                .peer_mut(client)
                .rtc
                .handle_input(RtcInput::Timeout(now));
        }
        loop {
            let out = match self.peer_mut(client).rtc.poll_output() {
                Ok(o) => o,
                Err(e) => {
                    self.close(format!("webrtc: {e}"));
                    return;
                }
            };
            match out {
                Output::Timeout(t) => {
                    self.peer_mut(client).next_timeout = Some(t);
                    return;
                }
                Output::Transmit(t) => {
                    self.peer_mut(client)
                        .transmits
                        .push_back((t.destination, t.contents.to_vec()));
                }
                Output::Event(e) => self.on_event(client, e, now),
            }
        }
    }

    fn close(&mut self, reason: String) {
        if !self.closed {
            self.closed = true;
            self.events.push_back(Event::ViewClosed {
                view: self.spec.id.clone(),
                reason,
            });
        }
    }

    fn on_event(&mut self, client: Client, e: RtcEvent, now: Instant) {
        match e {
            RtcEvent::Connected => {
                self.peer_mut(client).connected = true;
                if client == Client::Output {
                    tracing::info!(view = %self.spec.id, "mixed stream connected to the dataplane");
                    self.next_audio = Some(now);
                }
            }
            RtcEvent::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                let which = match client {
                    Client::Output => "output",
                    Client::Input => "input",
                };
                self.close(format!(
                    "the view's {which} connection to the dataplane was lost"
                ));
            }
            RtcEvent::KeyframeRequest(_) if client == Client::Output => {
                if let Some(c) = self.video.as_mut() {
                    c.request_keyframe();
                }
            }
            RtcEvent::MediaData(d) if client == Client::Input => {
                let Some(input) = self
                    .inputs
                    .iter()
                    .find(|i| i.audio == Some(d.mid) || i.video == Some(d.mid))
                else {
                    return;
                };
                let stream = input.stream.clone();
                let codec = codec_name(d.params.spec().codec);
                if input.audio == Some(d.mid) {
                    if let Some(m) = self.audio.as_mut() {
                        if m.on_packet(now, &stream, codec, d.ext_vals.audio_level, &d.data)
                            .is_err()
                        {
                            self.stats.decode_errors += 1;
                        }
                    }
                } else if let Some(c) = self.video.as_mut() {
                    let before = c.decode_errors;
                    c.on_frame(&stream, codec, &d.data, d.is_keyframe(), d.contiguous);
                    self.stats.decode_errors += c.decode_errors - before;
                }
            }
            _ => {}
        }
    }

    /// Asks the publishers of inputs that wait for a keyframe (at most once a second each).
    fn ask_keyframes(&mut self, now: Instant) {
        let Some(c) = self.video.as_ref() else {
            return;
        };
        let waiting: Vec<Arc<str>> = c.waiting_for_keyframes().cloned().collect();
        for input in self
            .inputs
            .iter_mut()
            .filter(|i| waiting.contains(&i.stream))
        {
            let Some(mid) = input.video else { continue };
            if input
                .keyframe_asked
                .is_some_and(|t| now.saturating_duration_since(t) < KEYFRAME_RETRY)
            {
                continue;
            }
            if let Some(mut w) = self.input.rtc.writer(mid) {
                if w.request_keyframe(None, KeyframeRequestKind::Pli).is_ok() {
                    input.keyframe_asked = Some(now);
                    self.input.next_timeout = Some(now);
                }
            }
        }
    }

    fn mix_audio(&mut self, now: Instant) {
        let (Some(mixer), Some(mid)) = (self.audio.as_mut(), self.out_audio) else {
            return;
        };
        // Catch up tick by tick (a late wake-up mixes the frames it missed), but never
        // more than five behind.
        let codec = match self.spec.audio.as_ref().map(|a| a.codec.as_str()) {
            Some("pcmu") => Codec::PCMU,
            Some("pcma") => Codec::PCMA,
            Some("g722") => Codec::G722,
            _ => Codec::Opus,
        };
        let mut due = self.next_audio.unwrap_or(now);
        if now.saturating_duration_since(due) > AUDIO_FRAME * 5 {
            due = now;
        }
        while due <= now {
            let frame = mixer.tick();
            self.audio_samples += 960;
            due += AUDIO_FRAME;
            let Ok(Some(mixed)) = frame else { continue };
            self.stats.audio_frames += 1;
            // RTP time in the codec's clock (48 kHz opus; 8 kHz G.711 and G.722).
            let clock = mixer.clock_rate();
            let time = MediaTime::new(
                self.audio_samples * u64::from(clock) / 48_000,
                Frequency::new(clock).unwrap_or(Frequency::FORTY_EIGHT_KHZ),
            );
            // Each listener hears the mix without its own inputs: the mix-minus of the
            // one of them that is speaking, else the mix (they are not in it). K + 1
            // encodes, however many listen. (A listener with two speaking inputs at once
            // hears the first one's mix-minus.)
            for l in self.listeners.iter().filter(|l| l.on) {
                let data = mixed
                    .minus
                    .iter()
                    .find(|(s, _)| l.excluded.contains(s))
                    .map_or(&mixed.main, |(_, d)| d);
                let (m, d) = (l.mid, data.clone());
                write(&mut self.output.rtc, m, codec, now, time, d);
            }
            write(&mut self.output.rtc, mid, codec, now, time, mixed.main);
        }
        self.next_audio = Some(due);
        self.output.next_timeout = Some(now);
        // With the view's `vad`, the loudest input is reported (and may take the primary
        // region).
        let vad = self.spec.audio.as_ref().is_some_and(|a| a.vad);
        while let Some(change) = mixer.poll_change() {
            if vad && change.major && change.source != self.major {
                self.major = change.source.clone();
                if let Some(stream) = &change.source {
                    self.events.push_back(Event::ViewActiveInput {
                        view: self.spec.id.clone(),
                        stream: stream.to_string(),
                    });
                }
                if let Some(c) = self.video.as_mut() {
                    c.set_primary(change.source);
                }
            }
        }
    }

    fn compose_video(&mut self, now: Instant) {
        let (Some(c), Some(mid)) = (self.video.as_mut(), self.out_video) else {
            return;
        };
        if c.next_due().is_some_and(|t| now < t) {
            return;
        }
        let codec = match self.spec.video.as_ref().map(|v| v.codec.as_str()) {
            Some("h264") => Codec::H264,
            _ => Codec::Vp8,
        };
        match c.tick(now) {
            Ok(frames) => {
                let time = MediaTime::from(now.saturating_duration_since(self.epoch))
                    .rebase(Frequency::NINETY_KHZ);
                for f in frames {
                    self.stats.video_frames += 1;
                    write(&mut self.output.rtc, mid, codec, now, time, f.data);
                }
            }
            Err(e) => {
                tracing::warn!(view = %self.spec.id, error = %e, "the composite did not encode")
            }
        }
        self.output.next_timeout = Some(now);
        if let Some(layout) = c.poll_layout() {
            self.events.push_back(Event::ViewLayout {
                view: self.spec.id.clone(),
                regions: layout,
            });
        }
    }

    /// The streams mixed now, by audio slot.
    pub fn speaking(&self) -> Vec<Option<Arc<str>>> {
        self.audio
            .as_ref()
            .map(|m| m.speaking().to_vec())
            .unwrap_or_default()
    }

    /// The composite as last drawn (for tests).
    pub fn picture(&self) -> Option<&crate::video::frame::I420> {
        self.video.as_ref().and_then(Compositor::picture)
    }

    /// The inputs' streams.
    pub fn inputs(&self) -> impl Iterator<Item = &str> {
        self.inputs.iter().map(|i| &*i.stream)
    }

    /// Which sections each input has, for tests and logs.
    pub fn input_sections(&self) -> HashMap<String, (Option<String>, Option<String>)> {
        self.inputs
            .iter()
            .map(|i| {
                (
                    i.stream.to_string(),
                    (
                        i.audio.map(|m| m.to_string()),
                        i.video.map(|m| m.to_string()),
                    ),
                )
            })
            .collect()
    }
}

/// Writes a frame of `codec` to section `mid` of `rtc` (dropped when the section has no
/// such codec: the dataplane's answer left it out).
fn write(rtc: &mut Rtc, mid: Mid, codec: Codec, now: Instant, time: MediaTime, data: Vec<u8>) {
    let Some(writer) = rtc.writer(mid) else {
        return;
    };
    let Some(pt) = writer
        .payload_params()
        .find(|p| p.spec().codec == codec)
        .map(|p| p.pt())
    else {
        return;
    };
    let _ = writer.write(pt, now, time, data);
}
