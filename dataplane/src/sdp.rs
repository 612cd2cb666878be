//! The little SDP inspection the dataplane does before str0m sees an offer (sans-IO).
//!
//! str0m parses and answers offers; this module only reads the m-sections' kinds and
//! rejects the ones a peer may not use, by giving them port 0 (RFC 3264 §6) and taking
//! them out of the BUNDLE group, so that str0m's answer rejects them and the client's
//! transceiver stops instead of sending media that would be dropped.

use switchyard_dataplane_api::MediaKind;

/// One media section of an offer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    /// Audio, video, or something else (`None`: application, text, …).
    pub kind: Option<MediaKind>,
    /// Its `a=mid`, if any.
    pub mid: Option<String>,
    /// Whether its port is 0 already.
    pub rejected: bool,
    /// Whether it is an audio section that lists a RED (RFC 2198) payload type (video
    /// RED is unwrapped at the publisher's core, never passed on).
    pub red: bool,
    /// Whether some payload type of it asks for NACKs (`a=rtcp-fb:<pt> nack`, not
    /// `nack pli`).
    pub nack: bool,
}

/// Why an offer was refused before str0m saw it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SdpError {
    /// Not an SDP at all.
    #[error("not an SDP offer: {0}")]
    NotSdp(&'static str),
}

/// The media sections of an SDP, in order.
pub fn sections(sdp: &str) -> Result<Vec<Section>, SdpError> {
    if !sdp.trim_start().starts_with("v=0") {
        return Err(SdpError::NotSdp("it must start with \"v=0\""));
    }
    let mut out: Vec<Section> = Vec::new();
    for line in sdp.lines() {
        let line = line.trim_end_matches('\r');
        if let Some(m) = line.strip_prefix("m=") {
            let mut parts = m.split_whitespace();
            let kind = match parts.next() {
                Some("audio") => Some(MediaKind::Audio),
                Some("video") => Some(MediaKind::Video),
                Some(_) => None,
                None => return Err(SdpError::NotSdp("an m= line has no media type")),
            };
            let rejected = parts.next() == Some("0");
            out.push(Section {
                kind,
                mid: None,
                rejected,
                red: false,
                nack: false,
            });
        } else if let (Some(mid), Some(last)) = (line.strip_prefix("a=mid:"), out.last_mut()) {
            last.mid = Some(mid.trim().to_string());
        } else if let (Some(fb), Some(last)) = (line.strip_prefix("a=rtcp-fb:"), out.last_mut()) {
            let mut words = fb.split_whitespace().skip(1);
            last.nack |= words.next() == Some("nack") && words.next().is_none();
        } else if let (Some(map), Some(last)) = (line.strip_prefix("a=rtpmap:"), out.last_mut()) {
            let encoding = map.split_whitespace().nth(1).unwrap_or("");
            last.red |= last.kind == Some(MediaKind::Audio)
                && encoding.to_ascii_lowercase().starts_with("red/");
        }
    }
    Ok(out)
}

/// The offer with every m-section for which `keep` is false rejected (port 0) and removed
/// from the BUNDLE group. Returns the new SDP and how many audio/video sections remain.
pub fn reject_sections(
    sdp: &str,
    keep: impl Fn(usize, &Section) -> bool,
) -> Result<(String, usize), SdpError> {
    let secs = sections(sdp)?;
    let kept: Vec<bool> = secs
        .iter()
        .enumerate()
        .map(|(i, s)| s.kind.is_some() && keep(i, s))
        .collect();
    let dropped_mids: Vec<&str> = secs
        .iter()
        .zip(&kept)
        .filter(|(_, k)| !**k)
        .filter_map(|(s, _)| s.mid.as_deref())
        .collect();
    let remaining = secs
        .iter()
        .zip(&kept)
        .filter(|(s, k)| **k && !s.rejected)
        .count();
    let mut out = String::with_capacity(sdp.len());
    let mut index = 0usize;
    for line in sdp.lines() {
        let line = line.trim_end_matches('\r');
        if let Some(m) = line.strip_prefix("m=") {
            let (sec, keep) = (&secs[index], kept[index]);
            index += 1;
            if !keep && !sec.rejected {
                let mut parts: Vec<&str> = m.split(' ').collect();
                if parts.len() > 1 {
                    parts[1] = "0";
                }
                out.push_str("m=");
                out.push_str(&parts.join(" "));
                out.push_str("\r\n");
                continue;
            }
        } else if let Some(group) = line.strip_prefix("a=group:BUNDLE") {
            let kept: Vec<&str> = group
                .split_whitespace()
                .filter(|m| !dropped_mids.contains(m))
                .collect();
            if kept.is_empty() {
                continue;
            }
            out.push_str("a=group:BUNDLE ");
            out.push_str(&kept.join(" "));
            out.push_str("\r\n");
            continue;
        }
        out.push_str(line);
        out.push_str("\r\n");
    }
    Ok((out, remaining))
}

/// [`reject_sections`] by kind: audio kept if `allow_audio`, video if `allow_video`.
pub fn reject_kinds(
    sdp: &str,
    allow_audio: bool,
    allow_video: bool,
) -> Result<(String, usize), SdpError> {
    reject_sections(sdp, |_, s| match s.kind {
        Some(MediaKind::Audio) => allow_audio,
        Some(MediaKind::Video) => allow_video,
        None => false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const OFFER: &str = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0 1 2\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:1\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=mid:2\r\n";

    #[test]
    fn reads_sections() {
        let s = sections(OFFER).unwrap();
        assert_eq!(s.len(), 3);
        assert_eq!(s[0].kind, Some(MediaKind::Audio));
        assert_eq!(s[1].mid.as_deref(), Some("1"));
        assert_eq!(s[2].kind, None);
    }

    #[test]
    fn reads_which_sections_ask_for_nacks() {
        let video = |fb: &str| format!("v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n{fb}");
        let nack = |fb: &str| sections(&video(fb)).unwrap()[0].nack;
        assert!(nack("a=rtcp-fb:96 nack\r\n"));
        assert!(!nack("a=rtcp-fb:96 nack pli\r\na=rtcp-fb:96 goog-remb\r\n"));
        assert!(!nack(""));
    }

    #[test]
    fn rejects_forbidden_kinds_and_unbundles_them() {
        let (sdp, n) = reject_kinds(OFFER, true, false).unwrap();
        assert_eq!(n, 1);
        assert!(sdp.contains("m=audio 9 "));
        assert!(sdp.contains("m=video 0 UDP/TLS/RTP/SAVPF 96"));
        assert!(sdp.contains("m=application 0 "));
        assert!(sdp.contains("a=group:BUNDLE 0\r\n"));
        let (_, n) = reject_kinds(OFFER, false, false).unwrap();
        assert_eq!(n, 0);
    }

    #[test]
    fn rejects_by_mid() {
        let (sdp, n) = reject_sections(OFFER, |_, s| s.mid.as_deref() == Some("1")).unwrap();
        assert_eq!(n, 1);
        assert!(sdp.contains("m=audio 0 ") && sdp.contains("m=video 9 "));
        assert!(sdp.contains("a=group:BUNDLE 1\r\n"));
    }

    #[test]
    fn refuses_non_sdp() {
        assert!(reject_kinds("hello", true, true).is_err());
        assert!(sections("").is_err());
        assert_eq!(sections("v=0\r\n").unwrap(), vec![]);
    }
}
