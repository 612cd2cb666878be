//! Building a peer: a str0m `Rtc` in ICE-lite, RTP mode, answering a client's offer.
//!
//! A publisher's `Rtc` offers every codec browsers send (opus, PCMU, PCMA, G722, VP8, VP9,
//! H264, H265, AV1) and keeps what the client's offer has in common with them: that set is
//! the publication's codec list. A subscriber's `Rtc` is given exactly the publication's
//! list, so its answer can only pick codecs the publication may carry, and packets pass
//! through without transcoding (only the payload type number is mapped).

use crate::sdp;
use std::time::Instant;
use str0m::change::SdpOffer;
use str0m::config::DtlsCert;
use str0m::format::{Codec, CodecConfig, PayloadParams};
use str0m::media::{Direction, MediaKind as StrKind, Mid};
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

/// What the peer's `Rtc` needs that is shared by the core.
pub struct Setup<'a> {
    /// Now.
    pub now: Instant,
    /// The core's DTLS certificate (one per core: generating one per peer is slow).
    pub cert: &'a DtlsCert,
    /// The core's host candidates, as announced.
    pub candidates: &'a [Candidate],
}

/// A new peer: its `Rtc`, its answer and its media.
pub struct Built {
    /// The state machine.
    pub rtc: Rtc,
    /// The SDP answer.
    pub answer: String,
    /// The negotiated media sections in use: mid and kind.
    pub media: Vec<(Mid, MediaKind)>,
    /// Tracks for control.
    pub tracks: Vec<Track>,
    /// The payload types negotiated (the publication's codec list, for a publisher).
    pub params: Vec<PayloadParams>,
}

fn bad_sdp(msg: impl Into<String>) -> RpcError {
    RpcError::new(ErrorCode::BadSdp, msg)
}

fn all_codecs() -> CodecConfig {
    let mut c = CodecConfig::empty();
    c.enable_opus(true, false);
    c.enable_g722(true, false);
    c.enable_pcmu(true, false);
    c.enable_pcma(true, false);
    c.enable_vp8(true);
    c.enable_vp9(true);
    c.enable_h264(true);
    c.enable_h265(true);
    c.enable_av1(true);
    c
}

fn build(
    offer_sdp: &str,
    allow_audio: bool,
    allow_video: bool,
    codecs: CodecConfig,
    setup: &Setup<'_>,
) -> Result<Built, RpcError> {
    let (offer_sdp, usable) = sdp::reject_kinds(offer_sdp, allow_audio, allow_video)
        .map_err(|e| bad_sdp(e.to_string()))?;
    if usable == 0 {
        return Err(RpcError::new(
            ErrorCode::NoUsableMedia,
            "the offer has no audio or video section this peer may use",
        ));
    }
    let offer = SdpOffer::from_sdp_string(&offer_sdp)
        .map_err(|e| bad_sdp(format!("unparsable SDP offer: {e}")))?;
    let mut config = Rtc::builder()
        .set_ice_lite(true)
        .set_rtp_mode(true)
        .set_dtls_cert(setup.cert.clone())
        .set_stats_interval(Some(std::time::Duration::from_secs(1)));
    *config.codec_config() = codecs;
    let mut rtc = config.build(setup.now);
    for c in setup.candidates {
        rtc.add_local_candidate(c.clone());
    }
    let answer = rtc
        .sdp_api()
        .accept_offer(offer)
        .map_err(|e| bad_sdp(format!("the SDP offer cannot be answered: {e}")))?;
    let answer = answer.to_sdp_string();
    // The answered media sections: str0m's own answer says which it accepted.
    let media: Vec<(Mid, MediaKind)> = sdp::sections(&answer)
        .map_err(|e| RpcError::new(ErrorCode::Internal, format!("unreadable answer: {e}")))?
        .into_iter()
        .filter(|s| !s.rejected)
        .filter_map(|s| Some((Mid::from(s.mid?.as_str()), s.kind?)))
        .collect();
    let mut tracks = Vec::new();
    let mut used = Vec::new();
    let mut params: Vec<PayloadParams> = Vec::new();
    for (mid, kind) in &media {
        let Some(m) = rtc.media(*mid) else { continue };
        if m.disabled() {
            continue;
        }
        let pts = m.remote_pts().to_vec();
        let negotiated: Vec<PayloadParams> = rtc
            .codec_config()
            .params()
            .iter()
            .filter(|p| pts.contains(&p.pt()) && p.spec().codec != Codec::Rtx)
            .cloned()
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
        });
        used.push((*mid, *kind));
        for p in negotiated {
            if !params.iter().any(|q| q.pt() == p.pt()) {
                params.push(p);
            }
        }
    }
    if tracks.is_empty() {
        return Err(RpcError::new(
            ErrorCode::NoUsableMedia,
            "no codec in the offer is one the peer can use (opus, G.711, G.722, VP8, VP9, H.264, H.265, AV1 for a publisher; the publication's codecs for a subscriber)",
        ));
    }
    Ok(Built {
        rtc,
        answer,
        media: used,
        tracks,
        params,
    })
}

/// A publisher's peer from its client's offer.
pub fn publisher(
    offer_sdp: &str,
    allow_audio: bool,
    allow_video: bool,
    setup: &Setup<'_>,
) -> Result<Built, RpcError> {
    let built = build(offer_sdp, allow_audio, allow_video, all_codecs(), setup)?;
    for (mid, _) in &built.media {
        if let Some(m) = built.rtc.media(*mid) {
            if !matches!(m.direction(), Direction::RecvOnly | Direction::SendRecv) {
                return Err(RpcError::new(
                    ErrorCode::NoUsableMedia,
                    "a publisher's offer must send its media (sendonly or sendrecv)",
                ));
            }
        }
    }
    Ok(built)
}

/// A subscriber's peer from its client's offer, restricted to the publication's codecs.
pub fn subscriber(
    offer_sdp: &str,
    allow_audio: bool,
    allow_video: bool,
    publication_params: &[PayloadParams],
    setup: &Setup<'_>,
) -> Result<Built, RpcError> {
    let codecs = CodecConfig::new_from_payload_params(publication_params.to_vec());
    let mut built = build(offer_sdp, allow_audio, allow_video, codecs, setup)?;
    // Every section we answer must have a send stream for the forwarded packets.
    for (mid, kind) in built.media.clone() {
        let mut api = built.rtc.direct_api();
        if api.stream_tx_by_mid(mid, None).is_none() {
            let ssrc = api.new_ssrc();
            let rtx = (kind == MediaKind::Video).then(|| api.new_ssrc());
            api.declare_stream_tx(ssrc, rtx, mid, None);
        }
    }
    Ok(built)
}
