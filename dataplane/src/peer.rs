//! Building and negotiating a peer: a str0m `Rtc` in ICE-lite, RTP mode, answering a
//! client's offers.
//!
//! A peer accepts every codec browsers send (opus, PCMU, PCMA, G722, VP8, VP9, H264, H265,
//! AV1), and keeps what the client's offer has in common with them: for a published
//! section that set is the publication's codec list. A peer that only plays one
//! publication is given exactly the publication's list, so that its answer can only pick
//! codecs the publication may carry; in every case packets pass through without
//! transcoding (only the payload type number is mapped per section).

use crate::sdp;
use std::time::{Duration, Instant};
use str0m::bwe::Bitrate;
use str0m::change::SdpOffer;
use str0m::config::DtlsCert;
use str0m::format::{Codec, CodecConfig, PayloadParams};
use str0m::media::{Frequency, MediaKind as StrKind, Mid, Pt, Rid, Rids};
use str0m::rtp::{Extension, ExtensionMap, ExtensionSerializer, ExtensionValues, Ssrc};
use str0m::{Candidate, Rtc};
use switchyard_dataplane_api::{ErrorCode, MediaKind, RpcError, Track};

/// The OWT name of a codec.
pub fn codec_name(c: Codec) -> &'static str {
    match c {
        Codec::Opus => "opus",
        Codec::PCMU => "pcmu",
        Codec::PCMA => "pcma",
        Codec::G722 => "g722",
        Codec::H264 => "h264",
        Codec::H265 => "h265",
        Codec::Vp8 => "vp8",
        Codec::Vp9 => "vp9",
        Codec::Av1 => "av1",
        _ => "other",
    }
}

/// Our kind for str0m's.
pub fn kind_of(k: StrKind) -> MediaKind {
    match k {
        StrKind::Audio => MediaKind::Audio,
        StrKind::Video => MediaKind::Video,
    }
}

/// What a peer's `Rtc` needs that is shared by the core.
pub struct Setup<'a> {
    /// Now.
    pub now: Instant,
    /// The core's DTLS certificate (one per core: generating one per peer is slow).
    pub cert: &'a DtlsCert,
    /// The core's host candidates, as announced.
    pub candidates: &'a [Candidate],
}

fn bad_sdp(msg: impl Into<String>) -> RpcError {
    RpcError::new(ErrorCode::BadSdp, msg)
}

/// The codecs a peer accepts, by their SDP names, in Switchyard's own order of
/// preference.
const CODECS: [&str; 9] = [
    "opus", "g722", "pcmu", "pcma", "vp8", "vp9", "h264", "h265", "av1",
];

/// Enables codec `name`; opus with RED when `red` (the client offered it: str0m would
/// answer RED to a client that did not).
fn enable(c: &mut CodecConfig, name: &str, red: bool) {
    match name {
        "opus" => c.enable_opus(true, red),
        "g722" => c.enable_g722(true, false),
        "pcmu" => c.enable_pcmu(true, false),
        "pcma" => c.enable_pcma(true, false),
        "vp8" => c.enable_vp8(true),
        "vp9" => c.enable_vp9(true),
        "h264" => c.enable_h264(true),
        "h265" => c.enable_h265(true),
        "av1" => c.enable_av1(true),
        _ => {}
    }
}

/// Every codec a browser may send.
pub fn all_codecs() -> CodecConfig {
    all_codecs_preferring("")
}

/// Every codec a browser may send, those `offer` lists (`a=rtpmap`) first and in its
/// order: the answer keeps the offerer's preference, so a client that puts VP9 first
/// (for SVC) or H.264 first publishes in it.
pub fn all_codecs_preferring(offer: &str) -> CodecConfig {
    let mut order: Vec<&str> = Vec::new();
    for enc in encodings(offer) {
        let name = enc.split('/').next().unwrap_or("");
        if let Some(known) = CODECS.iter().find(|c| **c == name) {
            if !order.contains(known) {
                order.push(known);
            }
        }
    }
    for c in CODECS {
        if !order.contains(&c) {
            order.push(c);
        }
    }
    // RED where the client offers it (browsers do): passed through to subscribers that
    // negotiated it too, the primary block alone to the others.
    let red = offers_red(offer);
    let mut c = CodecConfig::empty();
    for name in order {
        enable(&mut c, name, red);
    }
    // Video RED with ULPFEC where the client offers both (browsers do): a publisher's
    // video is unwrapped, and what it lost on the way in recovered, at its core.
    c.enable_video_fec(offers_video_fec(offer));
    c
}

/// The encodings an SDP's `a=rtpmap` lines name, lower case (`vp8/90000`,
/// `red/48000/2`), in order.
fn encodings(sdp: &str) -> impl Iterator<Item = String> + '_ {
    sdp.lines().filter_map(|l| {
        l.trim_end_matches('\r')
            .strip_prefix("a=rtpmap:")
            .and_then(|m| m.split_whitespace().nth(1))
            .map(|enc| enc.to_ascii_lowercase())
    })
}

/// Whether an offer lists video RED and ULPFEC (`red/90000`, `ulpfec/90000`).
pub fn offers_video_fec(offer: &str) -> bool {
    let has = |name: &str| encodings(offer).any(|enc| enc == name);
    has("red/90000") && has("ulpfec/90000")
}

/// Exactly a publication's codecs (RED only when the client's `offer` lists it), and
/// video RED with ULPFEC where the client offers both, for protecting its video (see
/// [`crate::protection`]).
pub fn only(params: &[PayloadParams], offer: &str) -> CodecConfig {
    let mut c = CodecConfig::new_from_payload_params(params.to_vec());
    let opus = params.iter().any(|p| p.spec().codec == Codec::Opus);
    if opus && !offers_red(offer) {
        // str0m would answer RED to a client that did not offer it.
        c.enable_opus(true, false);
    }
    let video = params.iter().any(|p| p.spec().codec.is_video());
    if video && offers_video_fec(offer) {
        // On payload types the publication's codecs leave free (browsers number codecs
        // differently from str0m's defaults: Chromium's H.264 may be on 116, str0m's RED
        // number); the answer takes the client's own numbers.
        let used: Vec<u8> = params
            .iter()
            .flat_map(|p| [Some(p.pt()), p.resend()])
            .flatten()
            .map(|pt| *pt)
            .collect();
        let mut free = (96..=127u8).chain(35..=63).filter(|pt| !used.contains(pt));
        if let (Some(red), Some(rtx), Some(ulpfec)) = (free.next(), free.next(), free.next()) {
            let at = |pt: u8, resend: Option<u8>, codec: Codec, c: &mut CodecConfig| {
                let format = str0m::format::FormatParams::default();
                let resend = resend.map(Pt::from);
                c.add_config(
                    pt.into(),
                    resend,
                    codec,
                    Frequency::NINETY_KHZ,
                    None,
                    format,
                );
            };
            at(red, Some(rtx), Codec::Red, &mut c);
            at(ulpfec, None, Codec::Ulpfec, &mut c);
        }
    }
    c
}

/// The video RED and ULPFEC payload types section `mid` negotiated, if both.
pub fn negotiated_video_fec(rtc: &Rtc, mid: Mid) -> Option<(Pt, Pt)> {
    let pts = rtc.media(mid)?.remote_pts();
    let find = |codec: Codec| {
        rtc.codec_config()
            .params()
            .iter()
            .find(|p| p.spec().codec == codec && pts.contains(&p.pt()))
            .map(|p| p.pt())
    };
    Some((find(Codec::Red)?, find(Codec::Ulpfec)?))
}

/// Whether an offer lists an audio RED (RFC 2198) payload type (not video's
/// `red/90000`).
pub fn offers_red(offer: &str) -> bool {
    encodings(offer).any(|enc| enc.starts_with("red/") && enc != "red/90000")
}

/// A packet's dependency descriptor as it came (see [`crate::packet::dependency`]): read
/// at the publisher's core, carried as it is to subscriptions that negotiated it.
#[derive(Debug)]
pub struct DependencyBytes(pub Box<[u8]>);

/// Reads and writes the dependency descriptor extension for str0m, as bytes.
#[derive(Debug)]
struct DependencySerializer;

impl ExtensionSerializer for DependencySerializer {
    fn write_to(&self, buf: &mut [u8], ev: &ExtensionValues) -> usize {
        match ev.user_values.get::<DependencyBytes>() {
            Some(d) if !d.0.is_empty() && d.0.len() <= buf.len().min(255) => {
                buf[..d.0.len()].copy_from_slice(&d.0);
                d.0.len()
            }
            _ => 0,
        }
    }

    fn parse_value(&self, buf: &[u8], ev: &mut ExtensionValues) -> bool {
        ev.user_values.set(DependencyBytes(buf.into()));
        true
    }

    fn is_video(&self) -> bool {
        true
    }

    fn is_audio(&self) -> bool {
        false
    }

    fn requires_two_byte_form(&self, ev: &ExtensionValues) -> bool {
        ev.user_values
            .get::<DependencyBytes>()
            .is_some_and(|d| d.0.len() > 16)
    }
}

/// The extension id a peer gives the dependency descriptor until a client's offer
/// names its own (str0m's standard map leaves 12 free).
const DEPENDENCY_EXT_ID: u8 = 12;

/// The dependency descriptor extension, read and written as [`DependencyBytes`] (for a
/// `RtcConfig`'s extension map).
pub fn dependency_extension() -> Extension {
    Extension::with_serializer(crate::packet::dependency::URI, DependencySerializer)
}

/// Whether section `mid` negotiated the dependency descriptor.
pub fn negotiated_dependency(rtc: &Rtc, mid: Mid) -> bool {
    rtc.media(mid).is_some_and(|m| {
        m.remote_extmap()
            .iter()
            .any(|(_, e)| e.as_uri() == crate::packet::dependency::URI)
    })
}

/// What a new peer negotiates besides its codecs.
#[derive(Debug, Clone, Copy)]
pub struct Features {
    /// Estimate the bandwidth towards the client (bandwidth adaptation).
    pub bwe: bool,
    /// Offer transport-wide congestion control (TWCC). A peer that publishes needs it (the
    /// client's own estimate of its upstream path runs on our feedback), as does one whose
    /// estimate we use; a subscriber without bandwidth adaptation does not: str0m would keep
    /// a record of its last 1,000 sent packets (≈ 88 KiB, half of the subscriber's memory)
    /// and the client would send feedback every few tens of milliseconds for nothing.
    pub twcc: bool,
}

/// A new `Rtc` for a peer of this core.
pub fn new_rtc(setup: &Setup<'_>, codecs: CodecConfig, features: Features) -> Rtc {
    let mut config = Rtc::builder()
        .set_ice_lite(true)
        .set_rtp_mode(true)
        .set_dtls_cert(setup.cert.clone())
        .set_stats_interval(Some(std::time::Duration::from_secs(1)));
    if !features.twcc {
        config = config.clear_extension_map();
        for (id, ext) in ExtensionMap::standard().iter() {
            if *ext != Extension::TransportSequenceNumber {
                config = config.set_extension(id, ext.clone());
            }
        }
    }
    config = config.set_extension(DEPENDENCY_EXT_ID, dependency_extension());
    if features.bwe {
        config = config.enable_bwe(Some(Bitrate::bps(crate::core::INITIAL_ESTIMATE_BPS)));
    }
    *config.codec_config() = codecs;
    let mut rtc = config.build(setup.now);
    for c in setup.candidates {
        rtc.add_local_candidate(c.clone());
    }
    rtc
}

/// An offer's answer and the sections it accepted.
pub struct Answered {
    /// The SDP answer.
    pub answer: String,
    /// The answered audio and video sections that are not rejected.
    pub media: Vec<(Mid, MediaKind)>,
    /// The answered sections that negotiated RED.
    pub red: Vec<Mid>,
}

/// Accepts an offer (already stripped of what the peer may not use). The answered
/// sections are read from str0m's own answer: its media events come only later.
pub fn accept(rtc: &mut Rtc, offer_sdp: &str) -> Result<Answered, RpcError> {
    let offer = SdpOffer::from_sdp_string(offer_sdp)
        .map_err(|e| bad_sdp(format!("unparsable SDP offer: {e}")))?;
    let answer = rtc
        .sdp_api()
        .accept_offer(offer)
        .map_err(|e| bad_sdp(format!("the SDP offer cannot be answered: {e}")))?
        .to_sdp_string();
    let sections: Vec<sdp::Section> = sdp::sections(&answer)
        .map_err(|e| RpcError::new(ErrorCode::Internal, format!("unreadable answer: {e}")))?
        .into_iter()
        .filter(|s| !s.rejected)
        .collect();
    let red = sections
        .iter()
        .filter(|s| s.red)
        .filter_map(|s| Some(Mid::from(s.mid.as_deref()?)))
        .collect();
    let media = sections
        .into_iter()
        .filter_map(|s| Some((Mid::from(s.mid?.as_str()), s.kind?)))
        .filter(|(mid, _)| rtc.media(*mid).is_some_and(|m| !m.disabled()))
        .collect();
    Ok(Answered { answer, media, red })
}

/// The negotiated tracks of some sections, and the payload types they may carry.
pub fn tracks(rtc: &Rtc, media: &[(Mid, MediaKind)]) -> (Vec<Track>, Vec<PayloadParams>) {
    let mut tracks = Vec::new();
    let mut params: Vec<PayloadParams> = Vec::new();
    for (mid, kind) in media {
        let Some(m) = rtc.media(*mid) else { continue };
        let pts = m.remote_pts();
        let negotiated: Vec<PayloadParams> = rtc
            .codec_config()
            .params()
            .iter()
            .filter(|p| {
                let c = p.spec().codec;
                pts.contains(&p.pt()) && c != Codec::Rtx && !c.is_video_fec()
            })
            .copied()
            .collect();
        let Some(first) = negotiated.first() else {
            continue;
        };
        tracks.push(Track {
            kind: *kind,
            mid: mid.to_string(),
            codec: codec_name(first.spec().codec).to_string(),
            clock_rate: first.spec().clock_rate.get(),
            channels: first.spec().channels,
            rids: simulcast_rids(rtc, &[(*mid, *kind)])
                .iter()
                .map(|r| r.to_string())
                .collect(),
        });
        for p in negotiated {
            if !params.iter().any(|q| q.pt() == p.pt()) {
                params.push(p);
            }
        }
    }
    (tracks, params)
}

/// The simulcast layers a client publishes on a peer's video sections (the first such
/// section's), in the offer's order, at most [`crate::layers::MAX_LAYERS`]: the later
/// ones are not forwarded. Empty when the video is one encoding.
pub fn simulcast_rids(rtc: &Rtc, media: &[(Mid, MediaKind)]) -> Vec<Rid> {
    media
        .iter()
        .filter(|(_, k)| *k == MediaKind::Video)
        .filter_map(|(mid, _)| match rtc.media(*mid)?.rids_rx() {
            Rids::Specific(rids) if rids.len() > 1 => Some(rids.clone()),
            _ => None,
        })
        .next()
        .map(|mut r| {
            r.truncate(crate::layers::MAX_LAYERS);
            r
        })
        .unwrap_or_default()
}

/// How long a subscription keeps what it sent, to answer NACKs with RTX, unless
/// `dataplane.retransmit_history_ms` says otherwise. A NACK arrives one round trip after
/// the loss; older ones are not worth answering (the subscriber's jitter buffer has moved
/// on and asks for a keyframe instead).
pub const RTX_HISTORY: std::time::Duration = std::time::Duration::from_secs(1);

/// The most packets a video subscription keeps for RTX per second of history (1 s of
/// 4 Mbit/s video). The history is a ring of str0m packet records (a few hundred bytes
/// each; payloads are shared with the publication) that grows until it holds the history:
/// with str0m's default (1,000 packets over 3 s) it was most of a subscriber's memory.
pub const RTX_PACKETS: usize = 400;

/// The share of retransmissions in a stream above which queued resends are dropped
/// (str0m's default).
const RTX_RATIO_CAP: Option<f32> = Some(0.15);

/// The send stream of a section, declared if str0m did not make one, keeping `history`
/// of video for RTX (audio is not retransmitted).
pub fn send_stream(rtc: &mut Rtc, mid: Mid, kind: MediaKind, history: Duration) -> Ssrc {
    let mut api = rtc.direct_api();
    let tx = match api.stream_tx_by_mid(mid, None) {
        Some(tx) => tx,
        None => {
            let ssrc = api.new_ssrc();
            let rtx = (kind == MediaKind::Video).then(|| api.new_ssrc());
            api.declare_stream_tx(ssrc, rtx, mid, None)
        }
    };
    // Audio is not retransmitted (written not nackable): its history stays empty, as
    // does video's when the history is zero.
    let (packets, history) = if kind == MediaKind::Video && !history.is_zero() {
        let per_ms = RTX_PACKETS as f64 / 1000.0;
        let n = (history.as_millis() as f64 * per_ms).ceil() as usize;
        (n.max(1), history)
    } else {
        (1, Duration::ZERO)
    };
    tx.set_rtx_cache(packets, history, RTX_RATIO_CAP);
    tx.ssrc()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_offers_codec_order_comes_first() {
        let offer = "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 98 96 45\r\na=rtpmap:98 VP9/90000\r\na=rtpmap:96 VP8/90000\r\na=rtpmap:97 rtx/90000\r\na=rtpmap:45 AV1/90000\r\n";
        let mut names: Vec<Codec> = all_codecs_preferring(offer)
            .params()
            .iter()
            .map(|p| p.spec().codec)
            .filter(|c| c.is_video())
            .collect();
        names.dedup();
        assert_eq!(&names[..3], &[Codec::Vp9, Codec::Vp8, Codec::Av1]);
        // Video RED and ULPFEC only where both are offered; audio RED apart from them.
        let video_fec = "a=rtpmap:116 red/90000\r\na=rtpmap:118 ulpfec/90000\r\n";
        assert!(offers_video_fec(video_fec));
        assert!(!offers_red(video_fec));
        assert!(!offers_video_fec("a=rtpmap:116 red/90000\r\n"));
        assert!(offers_red("a=rtpmap:63 red/48000/2\r\n"));
        let fec = |o: &str| {
            all_codecs_preferring(o)
                .params()
                .iter()
                .filter(|p| p.spec().codec.is_video_fec())
                .count()
        };
        assert_eq!((fec(video_fec), fec("")), (2, 0));
        // A player of one publication: RED (and its RTX) and ULPFEC on numbers the
        // publication leaves free, whatever its codecs use.
        let mut publication = CodecConfig::empty();
        publication.add_h264(116.into(), Some(96.into()), true, 0x42e01f);
        publication.enable_opus(true, false);
        let params = publication.params().to_vec();
        let player = only(&params, video_fec);
        let pts: Vec<u8> = player
            .params()
            .iter()
            .flat_map(|p| [Some(p.pt()), p.resend()])
            .flatten()
            .map(|pt| *pt)
            .collect();
        let mut unique = pts.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), pts.len(), "{pts:?}");
        let fecs = |c: &CodecConfig| {
            c.params()
                .iter()
                .filter(|p| p.spec().codec.is_video_fec())
                .count()
        };
        assert_eq!(fecs(&player), 2);
        assert_eq!(fecs(&only(&params, "")), 0);
        let audio: Vec<PayloadParams> = params
            .iter()
            .filter(|p| !p.spec().codec.is_video())
            .copied()
            .collect();
        assert_eq!(fecs(&only(&audio, video_fec)), 0, "no video, no video FEC");
        // Without an offer: Switchyard's own order, every codec.
        let all = all_codecs().params().len();
        assert_eq!(all_codecs_preferring("").params().len(), all);
        assert_eq!(
            all_codecs_preferring("a=rtpmap:1 nonsense").params().len(),
            all
        );
    }
}
