//! One WebRTC session: a str0m [`Rtc`] in RTP mode on a UDP socket of its own, driven by
//! a task on its worker thread. A publisher loops the clip's payloads in real time; a
//! subscriber reads each packet's send time from its trailer and counts latency, loss,
//! jitter and time to first keyframe into the worker's current [`Tick`].

use std::cell::RefCell;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::format::Codec;
use str0m::media::{Direction, MediaKind, Mid, Pt, Rid, Simulcast, SimulcastLayer};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{RtpPacket, RtpWrite, Ssrc};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc};
use tokio::net::UdpSocket;

use crate::media::{Source, VideoCodec, RIDS, TRAILER};
use crate::packetize;
use crate::stats::{StreamRx, Tick};

/// How long a session may take from its offer to ICE + DTLS connected.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);

/// What a worker thread shares with its sessions.
#[derive(Debug)]
pub struct WorkerCtx {
    /// The run's epoch: send times in trailers count microseconds from here.
    pub epoch: Instant,
    /// The figures of the current second.
    pub tick: RefCell<Tick>,
    /// The address sessions bind and announce.
    pub local_ip: IpAddr,
}

impl WorkerCtx {
    fn micros(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.epoch).as_micros() as u64
    }
}

/// Why a session ended.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The socket failed.
    #[error("socket: {0}")]
    Io(#[from] std::io::Error),
    /// str0m refused something.
    #[error("webrtc: {0}")]
    Rtc(#[from] str0m::RtcError),
    /// The remote SDP did not parse.
    #[error("sdp from the server: {0}")]
    Sdp(#[from] str0m::error::SdpError),
    /// ICE or DTLS did not complete in time.
    #[error("not connected within {0:?}")]
    ConnectTimeout(Duration),
    /// ICE failed or the peer closed after connecting.
    #[error("disconnected by the server or the network")]
    Disconnected,
    /// The answer has no usable audio and video sections.
    #[error("the server's answer accepts no {0} with the codecs offered")]
    NoMedia(&'static str),
}

/// A str0m configuration with only opus and the chosen video codec, RTP mode.
fn config(codec: VideoCodec) -> str0m::RtcConfig {
    let c = Rtc::builder()
        .clear_codecs()
        .enable_opus(true, false)
        .set_rtp_mode(true);
    match codec {
        VideoCodec::Vp8 => c.enable_vp8(true),
        VideoCodec::H264 => c.enable_h264(true),
    }
}

/// A session before it runs: its `Rtc`, socket and local candidate.
pub struct Session {
    rtc: Rtc,
    sock: UdpSocket,
    local: SocketAddr,
    codec: VideoCodec,
    /// The sections of our own offer.
    mids: Vec<(Mid, MediaKind)>,
}

impl Session {
    /// Binds a socket on `ip` and makes an `Rtc` announcing it as a host candidate.
    pub fn new(ip: IpAddr, codec: VideoCodec) -> Result<Session, SessionError> {
        let sock = socket2::Socket::new(
            socket2::Domain::for_address(SocketAddr::new(ip, 0)),
            socket2::Type::DGRAM,
            Some(socket2::Protocol::UDP),
        )?;
        let _ = sock.set_recv_buffer_size(1 << 20);
        let _ = sock.set_send_buffer_size(1 << 20);
        sock.set_nonblocking(true)?;
        sock.bind(&SocketAddr::new(ip, 0).into())?;
        let sock = UdpSocket::from_std(sock.into())?;
        let local = sock.local_addr()?;
        let mut rtc = config(codec).build(Instant::now());
        if let Ok(c) = Candidate::host(local, "udp") {
            rtc.add_local_candidate(c);
        }
        Ok(Session {
            rtc,
            sock,
            local,
            codec,
            mids: Vec::new(),
        })
    }

    /// An offer with one audio and one video section, sending or receiving; a sending
    /// video section with `simulcast` offers the layers [`RIDS`].
    pub fn offer(
        &mut self,
        send: bool,
        simulcast: bool,
    ) -> Result<(String, SdpPendingOffer), SessionError> {
        let dir = if send {
            Direction::SendOnly
        } else {
            Direction::RecvOnly
        };
        let layers = (send && simulcast).then(|| {
            let mut sc = Simulcast::new();
            for rid in RIDS {
                sc.add_send_layer(SimulcastLayer::new(rid));
            }
            sc
        });
        let mut change = self.rtc.sdp_api();
        let a = change.add_media(MediaKind::Audio, dir, None, None, None);
        let v = change.add_media(MediaKind::Video, dir, None, None, layers);
        self.mids = vec![(a, MediaKind::Audio), (v, MediaKind::Video)];
        let Some((offer, pending)) = change.apply() else {
            return Err(SessionError::NoMedia("media"));
        };
        Ok((offer.to_sdp_string(), pending))
    }

    /// Applies the server's answer to our offer.
    pub fn accept_answer(
        &mut self,
        pending: SdpPendingOffer,
        answer: &str,
    ) -> Result<(), SessionError> {
        let answer = SdpAnswer::from_sdp_string(answer)?;
        self.rtc.sdp_api().accept_answer(pending, answer)?;
        Ok(())
    }

    /// Answers the server's offer (Janus offers to its subscribers).
    pub fn accept_offer(&mut self, offer: &str) -> Result<String, SessionError> {
        let offer = SdpOffer::from_sdp_string(offer)?;
        let answer = self.rtc.sdp_api().accept_offer(offer)?;
        Ok(answer.to_sdp_string())
    }

    /// Runs until `stop` resolves, the peer goes away, or connecting times out.
    /// `on_connected` is called once ICE and DTLS are up.
    pub async fn run(
        mut self,
        ctx: Rc<WorkerCtx>,
        role: Role,
        stop: impl std::future::Future<Output = ()>,
        on_connected: impl FnOnce() + 'static,
    ) -> Result<SessionEnd, SessionError> {
        let started = Instant::now();
        let mut state = match role {
            Role::Publisher(media) => RoleState::Pub(Box::new(PubState::new(media))),
            Role::Subscriber { started } => RoleState::Sub(SubState {
                started,
                h264: self.codec == VideoCodec::H264,
                streams: Vec::new(),
                got_keyframe: false,
            }),
        };
        let mut conn = Conn {
            connected: false,
            on_connected: Some(Box::new(on_connected)),
        };
        let mut buf = vec![0u8; 2048];
        tokio::pin!(stop);
        loop {
            let timeout = self.drain(&ctx, &mut state, &mut conn)?;
            if !conn.connected && started.elapsed() > CONNECT_TIMEOUT {
                return Err(SessionError::ConnectTimeout(CONNECT_TIMEOUT));
            }
            let mut wake = timeout;
            if let RoleState::Pub(p) = &state {
                if let Some(t) = p.next_due() {
                    wake = wake.min(t);
                }
            }
            let wake = wake.min(Instant::now() + Duration::from_secs(1));
            tokio::select! {
                biased;
                _ = &mut stop => break,
                r = self.sock.recv_from(&mut buf) => {
                    let (n, source) = r?;
                    let now = Instant::now();
                    self.receive(&ctx, now, source, &buf[..n])?;
                    // Take what else is queued; str0m holds one packet event at a time,
                    // so its output is drained after every datagram.
                    for _ in 0..32 {
                        self.drain(&ctx, &mut state, &mut conn)?;
                        match self.sock.try_recv_from(&mut buf) {
                            // Each datagram's own arrival time: the batch's first would
                            // under-count the later ones' latency by the work done since.
                            Ok((n, source)) => {
                                self.receive(&ctx, Instant::now(), source, &buf[..n])?
                            }
                            Err(_) => break,
                        }
                    }
                }
                _ = tokio::time::sleep_until(wake.into()) => {
                    let now = Instant::now();
                    if let RoleState::Pub(p) = &mut state {
                        let sent = p.send_due(&mut self.rtc, &ctx, now);
                        ctx.tick.borrow_mut().sent_packets += sent;
                    }
                    self.rtc.handle_input(Input::Timeout(now))?;
                }
            }
        }
        self.rtc.disconnect();
        let jitter_us = match state {
            RoleState::Sub(s) => s.streams.iter().map(|(_, _, r)| r.jitter_us).collect(),
            RoleState::Pub(_) => Vec::new(),
        };
        Ok(SessionEnd { jitter_us })
    }

    /// Handles everything str0m has to say; returns when it next wants time.
    fn drain(
        &mut self,
        ctx: &WorkerCtx,
        state: &mut RoleState,
        conn: &mut Conn,
    ) -> Result<Instant, SessionError> {
        loop {
            match self.rtc.poll_output()? {
                Output::Timeout(t) => return Ok(t),
                Output::Transmit(t) => {
                    // A full socket buffer drops the datagram, as a congested network would.
                    let _ = self.sock.try_send_to(&t.contents, t.destination);
                }
                Output::Event(e) => match e {
                    Event::Connected => {
                        conn.connected = true;
                        if let RoleState::Pub(p) = state {
                            p.start(&mut self.rtc, &self.mids, self.codec, Instant::now())?;
                        }
                        if let Some(f) = conn.on_connected.take() {
                            f();
                        }
                    }
                    Event::IceConnectionStateChange(IceConnectionState::Disconnected)
                    | Event::Closed => return Err(SessionError::Disconnected),
                    Event::KeyframeRequest(req) => {
                        if let RoleState::Pub(p) = state {
                            p.keyframe_wanted(req.rid, Instant::now());
                        }
                    }
                    Event::RtpPacket(pkt) => {
                        if let RoleState::Sub(s) = state {
                            s.on_packet(&mut self.rtc, ctx, &pkt);
                        }
                    }
                    _ => {}
                },
            }
        }
    }

    fn receive(
        &mut self,
        ctx: &WorkerCtx,
        now: Instant,
        source: SocketAddr,
        data: &[u8],
    ) -> Result<(), SessionError> {
        ctx.tick.borrow_mut().received_bytes += data.len() as u64;
        let Ok(contents) = data.try_into() else {
            return Ok(());
        };
        let input = Input::Receive(
            now,
            Receive {
                proto: Protocol::Udp,
                source,
                destination: self.local,
                contents,
            },
        );
        if self.rtc.accepts(&input) {
            self.rtc.handle_input(input)?;
        }
        Ok(())
    }
}

/// What a session does.
pub enum Role {
    /// Sends the clip (or a clip per simulcast layer).
    Publisher(Arc<Source>),
    /// Receives; `started` is when it began signalling (for time to first frame).
    Subscriber {
        /// When the subscription was asked for.
        started: Instant,
    },
}

/// What a session leaves behind.
#[derive(Debug, Default)]
pub struct SessionEnd {
    /// RFC 3550 jitter of each received stream at the end, µs.
    pub jitter_us: Vec<f64>,
}

/// Connection state of a running session.
struct Conn {
    connected: bool,
    on_connected: Option<Box<dyn FnOnce()>>,
}

enum RoleState {
    Pub(Box<PubState>),
    Sub(SubState),
}

/// One outgoing stream's numbering.
struct TxStream {
    mid: Mid,
    pt: Pt,
    seq: u64,
    ts: u32,
    next: Instant,
}

/// One video layer being sent: its stream, its clip's position and its `rid`.
struct VideoOut {
    tx: TxStream,
    rid: Option<Rid>,
    layer: usize,
    frame: usize,
    last_keyframe: Option<Instant>,
}

struct PubState {
    source: Arc<Source>,
    video: Vec<VideoOut>,
    audio: Option<TxStream>,
}

impl PubState {
    fn new(source: Arc<Source>) -> Self {
        PubState {
            source,
            video: Vec::new(),
            audio: None,
        }
    }

    /// Declares the outgoing streams once connected (a video stream per layer).
    fn start(
        &mut self,
        rtc: &mut Rtc,
        mids: &[(Mid, MediaKind)],
        codec: VideoCodec,
        now: Instant,
    ) -> Result<(), SessionError> {
        let video_codec = match codec {
            VideoCodec::Vp8 => Codec::Vp8,
            VideoCodec::H264 => Codec::H264,
        };
        let mut found: Vec<(MediaKind, Mid, Pt)> = Vec::new();
        for kind in [MediaKind::Audio, MediaKind::Video] {
            let want = if kind == MediaKind::Audio {
                Codec::Opus
            } else {
                video_codec
            };
            let Some((mid, remote)) = mids
                .iter()
                .find(|(_, k)| *k == kind)
                .and_then(|(mid, _)| Some((*mid, rtc.media(*mid)?.remote_pts().to_vec())))
            else {
                continue;
            };
            let pt = rtc
                .codec_config()
                .params()
                .iter()
                .filter(|p| p.spec().codec == want && remote.contains(&p.pt()))
                .max_by_key(|p| p.spec().format.packetization_mode == Some(1))
                .map(|p| p.pt());
            if let Some(pt) = pt {
                found.push((kind, mid, pt));
            }
        }
        let simulcast = self.source.simulcast();
        let mut api = rtc.direct_api();
        let stream = |mid, pt| TxStream {
            mid,
            pt,
            seq: rand::random::<u16>() as u64 % 30000,
            ts: rand::random(),
            next: now,
        };
        for (kind, mid, pt) in found {
            match kind {
                MediaKind::Audio => {
                    if api.stream_tx_by_mid(mid, None).is_none() {
                        let ssrc = api.new_ssrc();
                        api.declare_stream_tx(ssrc, None, mid, None);
                    }
                    self.audio = Some(stream(mid, pt));
                }
                MediaKind::Video => {
                    for layer in 0..self.source.layers.len() {
                        let rid = simulcast.then(|| Rid::from(RIDS[layer.min(RIDS.len() - 1)]));
                        if api.stream_tx_by_mid(mid, rid).is_none() {
                            let ssrc = api.new_ssrc();
                            api.declare_stream_tx(ssrc, None, mid, rid);
                        }
                        self.video.push(VideoOut {
                            tx: stream(mid, pt),
                            rid,
                            layer,
                            frame: 0,
                            last_keyframe: None,
                        });
                    }
                }
            }
        }
        if self.video.is_empty() {
            return Err(SessionError::NoMedia("video"));
        }
        Ok(())
    }

    /// A keyframe request for one layer (`rid`) or every one.
    fn keyframe_wanted(&mut self, rid: Option<Rid>, now: Instant) {
        // An encoder answers a keyframe request with an intra frame; the clip restarts
        // at its first frame, which is one. At most twice a second per layer.
        for v in self
            .video
            .iter_mut()
            .filter(|v| rid.is_none() || v.rid == rid)
        {
            if v.last_keyframe
                .is_none_or(|t| now.duration_since(t) >= Duration::from_millis(500))
            {
                v.last_keyframe = Some(now);
                v.frame = 0;
            }
        }
    }

    fn next_due(&self) -> Option<Instant> {
        self.video
            .iter()
            .map(|v| v.tx.next)
            .chain(self.audio.as_ref().map(|a| a.next))
            .min()
    }

    /// Sends every frame and audio packet that is due; returns the RTP packets sent.
    fn send_due(&mut self, rtc: &mut Rtc, ctx: &WorkerCtx, now: Instant) -> u64 {
        let mut sent = 0;
        let stamp = ctx.micros(now).to_le_bytes();
        let mut api = rtc.direct_api();
        for v in &mut self.video {
            let Some(media) = self.source.layers.get(v.layer) else {
                continue;
            };
            let frame_time = Duration::from_micros(1_000_000 / media.fps.max(1) as u64);
            let ts_step = 90_000 / media.fps.max(1);
            let tx = &mut v.tx;
            while tx.next <= now {
                let frame = &media.video[v.frame % media.video.len()];
                v.frame = (v.frame + 1) % media.video.len();
                let last = frame.payloads.len().saturating_sub(1);
                for (i, p) in frame.payloads.iter().enumerate() {
                    let mut payload = Vec::with_capacity(p.len() + TRAILER);
                    payload.extend_from_slice(p);
                    payload.extend_from_slice(&stamp);
                    if let Some(stream) = api.stream_tx_by_mid(tx.mid, v.rid) {
                        stream.write_rtp(
                            RtpWrite::new(tx.pt, tx.seq.into(), tx.ts, now, payload)
                                .marker(i == last)
                                .nackable(true),
                        );
                        sent += 1;
                    }
                    tx.seq += 1;
                }
                tx.ts = tx.ts.wrapping_add(ts_step);
                tx.next += frame_time;
                // After a stall, catch up in one step rather than bursting.
                if now.duration_since(tx.next) > Duration::from_millis(500) {
                    tx.next = now + frame_time;
                }
            }
        }
        let audio = self.source.layers.first().map(|m| &m.audio);
        if let (Some(a), Some(clip)) = (&mut self.audio, audio) {
            while a.next <= now {
                let p = &clip[(a.seq as usize) % clip.len()];
                let mut payload = Vec::with_capacity(p.len() + TRAILER);
                payload.extend_from_slice(p);
                payload.extend_from_slice(&stamp);
                if let Some(tx) = api.stream_tx_by_mid(a.mid, None) {
                    tx.write_rtp(
                        RtpWrite::new(a.pt, a.seq.into(), a.ts, now, payload).marker(true),
                    );
                    sent += 1;
                }
                a.seq += 1;
                a.ts = a.ts.wrapping_add(960);
                a.next += Duration::from_millis(20);
                if now.duration_since(a.next) > Duration::from_millis(500) {
                    a.next = now + Duration::from_millis(20);
                }
            }
        }
        sent
    }
}

struct SubState {
    started: Instant,
    h264: bool,
    /// Per incoming SSRC: whether it is video, and its tracking.
    streams: Vec<(Ssrc, bool, StreamRx)>,
    got_keyframe: bool,
}

impl SubState {
    fn on_packet(&mut self, rtc: &mut Rtc, ctx: &WorkerCtx, pkt: &RtpPacket) {
        let ssrc = pkt.header.ssrc;
        let idx = match self.streams.iter().position(|(s, _, _)| *s == ssrc) {
            Some(i) => i,
            None => {
                let mid = rtc.direct_api().stream_rx(&ssrc).map(|s| s.mid());
                let video = mid
                    .and_then(|m| rtc.media(m))
                    .is_some_and(|m| m.kind() == MediaKind::Video);
                self.streams.push((ssrc, video, StreamRx::default()));
                self.streams.len() - 1
            }
        };
        let (_, video, rx) = &mut self.streams[idx];
        let now_us = ctx.micros(pkt.timestamp);
        let payload = &pkt.payload[..];
        let sent_us = payload
            .len()
            .checked_sub(TRAILER)
            .and_then(|at| payload.get(at..))
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .map(u64::from_le_bytes)
            .filter(|&s| s <= now_us && now_us - s < 60_000_000);
        let mut tick = ctx.tick.borrow_mut();
        tick.received_packets += 1;
        match sent_us {
            Some(s) => {
                let _ = tick.latency.record((now_us - s).max(1));
            }
            None => tick.unstamped += 1,
        }
        tick.expected_packets +=
            rx.on_packet(*pkt.seq_no, sent_us.map(|s| now_us as i64 - s as i64));
        if *video && !self.got_keyframe && packetize::starts_keyframe(self.h264, payload) {
            self.got_keyframe = true;
            let ms = pkt
                .timestamp
                .saturating_duration_since(self.started)
                .as_millis() as u64;
            let _ = tick.ttff.record(ms.max(1));
        }
    }
}
