//! What a subscriber asks for of a simulcast publication, read from its request: OWT's
//! `VideoParametersSpecification` in the portal's `subscribe` and `subscription-control`
//! (`update`), a `rid` named by the track id it subscribes `from`, or WHEP's query
//! parameters. Each becomes a [`SubscriptionCap`] for the dataplane, whose layer choice
//! serves it with the nearest layer not above it.
//!
//! A forwarding SFU cannot change a stream's frame rate or keyframe interval (that needs
//! transcoding, the mixer's work), so asking for either is refused with a clear reason
//! rather than ignored.

use serde_json::Value;
use switchyard_dataplane_api::SubscriptionCap;

/// Why a request's parameters were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CapError {
    /// A parameter is malformed; the message names it.
    #[error("{0}")]
    Bad(String),
    /// A parameter asks for what only transcoding could give.
    #[error("{0}")]
    NeedsTranscoding(String),
}

fn bad(msg: impl Into<String>) -> CapError {
    CapError::Bad(msg.into())
}

fn dimension(v: &Value, name: &str) -> Result<u16, CapError> {
    v.as_u64()
        .and_then(|n| u16::try_from(n).ok())
        .filter(|n| *n > 0)
        .ok_or_else(|| {
            bad(format!(
                "{name} must be a whole number of pixels, 1 to 65535"
            ))
        })
}

/// Reads OWT's video `parameters` (`resolution`, `bitrate` in kbit/s; `framerate` and
/// `keyFrameInterval` are refused) into `cap`, keeping what they leave out. A bitrate
/// multiplier (`"x0.8"`) is relative to the layer served and cannot bound a layer choice:
/// it is accepted and leaves the bitrate free.
/// What a player asks a stream's video to be beyond a simulcast layer: a size, frame
/// rate, bitrate or keyframe interval the publisher does not send, which the mixer makes
/// (a transcoding).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Transcode {
    /// Width in pixels.
    pub width: Option<u16>,
    /// Height in pixels.
    pub height: Option<u16>,
    /// Frames per second.
    pub framerate: Option<u32>,
    /// kbit/s.
    pub bitrate_kbps: Option<u32>,
    /// Seconds between keyframes.
    pub key_frame_interval: Option<u32>,
    /// Asked for explicitly (WHEP's `width`, `framerate`, …): transcode even where a
    /// simulcast layer would do.
    pub force: bool,
}

impl Transcode {
    /// Whether a player asking this needs a transcoding of a stream (`simulcast`: one with
    /// layers, where a size or bitrate picks a layer instead).
    pub fn needed(&self, simulcast: bool) -> bool {
        let any = self.width.is_some()
            || self.framerate.is_some()
            || self.bitrate_kbps.is_some()
            || self.key_frame_interval.is_some();
        (self.force && any)
            || self.framerate.is_some()
            || self.key_frame_interval.is_some()
            || (!simulcast && self.width.is_some())
    }
}

/// Reads OWT's video `parameters` into a layer cap, and (when `transcode` is given: a new
/// subscription) into what a transcoding would make; without it a frame rate or keyframe
/// interval is refused (a live subscription does not switch to a transcoding).
pub fn read_owt_parameters(
    params: &Value,
    cap: &mut SubscriptionCap,
    mut transcode: Option<&mut Transcode>,
) -> Result<(), CapError> {
    if params.is_null() {
        return Ok(());
    }
    let obj = params
        .as_object()
        .ok_or_else(|| bad("parameters must be an object"))?;
    for (key, v) in obj {
        match key.as_str() {
            "resolution" => {
                if v.is_null() {
                    continue;
                }
                let (Some(w), Some(h)) = (v.get("width"), v.get("height")) else {
                    return Err(bad("parameters.resolution needs width and height"));
                };
                cap.max_width = Some(dimension(w, "parameters.resolution.width")?);
                cap.max_height = Some(dimension(h, "parameters.resolution.height")?);
                if let Some(t) = transcode.as_deref_mut() {
                    t.width = cap.max_width;
                    t.height = cap.max_height;
                }
            }
            "bitrate" => match v {
                Value::Null => {}
                Value::Number(n) => {
                    let kbps = n
                        .as_f64()
                        .filter(|k| k.is_finite() && *k > 0.0 && *k <= 1e6)
                        .ok_or_else(|| {
                            bad("parameters.bitrate must be a positive number of kbit/s")
                        })?;
                    cap.max_bitrate_bps = Some((kbps * 1000.0) as u64);
                    if let Some(t) = transcode.as_deref_mut() {
                        t.bitrate_kbps = Some(kbps as u32);
                    }
                }
                Value::String(s) if s.starts_with('x') && s[1..].parse::<f64>().is_ok() => {
                    cap.max_bitrate_bps = None;
                }
                _ => {
                    return Err(bad(
                        "parameters.bitrate must be kbit/s (a number) or a multiple (\"x0.8\")",
                    ))
                }
            },
            "framerate" | "keyFrameInterval" if !v.is_null() => {
                let Some(t) = transcode.as_deref_mut() else {
                    return Err(CapError::NeedsTranscoding(format!(
                        "parameters.{key}: a live subscription does not switch to a transcoding; subscribe again asking for this {key} to get one"
                    )));
                };
                let n = v
                    .as_u64()
                    .and_then(|n| u32::try_from(n).ok())
                    .filter(|n| (1..=120).contains(n))
                    .ok_or_else(|| {
                        bad(format!("parameters.{key} must be a whole number, 1 to 120"))
                    })?;
                if key == "framerate" {
                    t.framerate = Some(n);
                } else {
                    t.key_frame_interval = Some(n);
                }
            }
            "framerate" | "keyFrameInterval" => {}
            other => return Err(bad(format!("unknown video parameter {other:?}"))),
        }
    }
    Ok(())
}

/// Reads WHEP's query string: `rid`, `maxBitrate` (bit/s), `maxWidth`, `maxHeight`.
pub fn read_whep_query(query: Option<&str>) -> Result<(SubscriptionCap, Transcode), CapError> {
    let mut cap = SubscriptionCap::default();
    let mut transcode = Transcode {
        force: true,
        ..Default::default()
    };
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let number = |name: &str| {
            value.parse::<u64>().ok().filter(|n| *n > 0).ok_or_else(|| {
                bad(format!(
                    "{name} must be a positive whole number, not {value:?}"
                ))
            })
        };
        match key {
            "rid" => {
                let ok = !value.is_empty()
                    && value.len() <= 16
                    && value
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
                if !ok {
                    return Err(bad(format!(
                        "rid {value:?} is not a simulcast layer name (letters, digits, - and _)"
                    )));
                }
                cap.rid = Some(value.to_string());
            }
            "maxBitrate" => cap.max_bitrate_bps = Some(number("maxBitrate")?),
            "maxWidth" => {
                cap.max_width = Some(
                    u16::try_from(number("maxWidth")?).map_err(|_| bad("maxWidth is too large"))?,
                )
            }
            "maxHeight" => {
                cap.max_height = Some(
                    u16::try_from(number("maxHeight")?)
                        .map_err(|_| bad("maxHeight is too large"))?,
                )
            }
            "width" | "height" => {
                let n = u16::try_from(number(key)?)
                    .ok()
                    .filter(|n| *n <= 4096)
                    .ok_or_else(|| bad(format!("{key} must be at most 4096")))?;
                if key == "width" {
                    transcode.width = Some(n);
                } else {
                    transcode.height = Some(n);
                }
            }
            "framerate" | "keyFrameInterval" => {
                let n = u32::try_from(number(key)?)
                    .ok()
                    .filter(|n| *n <= 120)
                    .ok_or_else(|| bad(format!("{key} must be 1 to 120")))?;
                if key == "framerate" {
                    transcode.framerate = Some(n);
                } else {
                    transcode.key_frame_interval = Some(n);
                }
            }
            "bitrate" => {
                let n = u32::try_from(number("bitrate")?)
                    .ok()
                    .filter(|n| *n <= 50_000)
                    .ok_or_else(|| bad("bitrate (kbit/s) must be at most 50000"))?;
                transcode.bitrate_kbps = Some(n);
            }
            other => {
                return Err(bad(format!(
                    "unknown query parameter {other:?}: use rid, maxBitrate, maxWidth or maxHeight to pick a simulcast layer, or width, height, framerate, bitrate (kbit/s), keyFrameInterval to have the stream transcoded"
                )))
            }
        }
    }
    if transcode.width.is_some() != transcode.height.is_some() {
        return Err(bad("width and height go together"));
    }
    Ok((cap, transcode))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn owt_parameters_become_a_cap() {
        let mut cap = SubscriptionCap::default();
        read_owt_parameters(
            &json!({"resolution": {"width": 640, "height": 360}, "bitrate": 500}),
            &mut cap,
            None,
        )
        .unwrap();
        assert_eq!(cap.max_width, Some(640));
        assert_eq!(cap.max_height, Some(360));
        assert_eq!(cap.max_bitrate_bps, Some(500_000));
        // A multiplier frees the bitrate; the resolution stays.
        read_owt_parameters(&json!({"bitrate": "x0.8"}), &mut cap, None).unwrap();
        assert_eq!(cap.max_bitrate_bps, None);
        assert_eq!(cap.max_width, Some(640));
        read_owt_parameters(&Value::Null, &mut cap, None).unwrap();
        for refused in [
            json!({"resolution": {"width": 0, "height": 360}}),
            json!({"resolution": {"width": 640}}),
            json!({"bitrate": -3}),
            json!({"bitrate": "fast"}),
            json!({"colour": "blue"}),
            json!([1, 2]),
        ] {
            assert!(
                matches!(
                    read_owt_parameters(&refused, &mut cap, None),
                    Err(CapError::Bad(_))
                ),
                "{refused}"
            );
        }
        // A live subscription does not switch to a transcoding; a new one gets one.
        let e = read_owt_parameters(&json!({"framerate": 15}), &mut cap, None).unwrap_err();
        assert!(matches!(e, CapError::NeedsTranscoding(_)), "{e}");
        read_owt_parameters(&json!({"framerate": null}), &mut cap, None).unwrap();
        let mut t = Transcode::default();
        read_owt_parameters(
            &json!({"resolution": {"width": 320, "height": 240}, "framerate": 10, "keyFrameInterval": 2}),
            &mut cap,
            Some(&mut t),
        )
        .unwrap();
        assert_eq!(
            (t.width, t.height, t.framerate, t.key_frame_interval),
            (Some(320), Some(240), Some(10), Some(2))
        );
        assert!(
            t.needed(true),
            "a frame rate needs a transcoding even with layers"
        );
        let size_only = Transcode {
            width: Some(320),
            height: Some(240),
            ..Default::default()
        };
        assert!(size_only.needed(false) && !size_only.needed(true));
        assert!(!Transcode::default().needed(false));
        assert!(read_owt_parameters(&json!({"framerate": 0}), &mut cap, Some(&mut t)).is_err());
    }

    #[test]
    fn whep_query_becomes_a_cap() {
        let (cap, t) =
            read_whep_query(Some("rid=q&maxBitrate=300000&maxWidth=320&maxHeight=180")).unwrap();
        assert_eq!(cap.rid.as_deref(), Some("q"));
        assert_eq!(cap.max_bitrate_bps, Some(300_000));
        assert_eq!((cap.max_width, cap.max_height), (Some(320), Some(180)));
        assert!(!t.needed(false), "caps pick layers, they do not transcode");
        assert!(read_whep_query(None).unwrap().0.is_none());
        assert!(read_whep_query(Some("")).unwrap().0.is_none());
        let (_, t) =
            read_whep_query(Some("width=320&height=240&framerate=10&bitrate=300")).unwrap();
        assert_eq!(
            (t.width, t.height, t.framerate, t.bitrate_kbps),
            (Some(320), Some(240), Some(10), Some(300))
        );
        assert!(
            t.needed(true),
            "asked for by name: transcoded even with layers"
        );
        for refused in [
            "maxBitrate=lots",
            "maxWidth=70000",
            "rid=",
            "rid=a%20b",
            "layer=2",
            "maxBitrate=0",
            "width=320",
            "framerate=500",
        ] {
            let e = read_whep_query(Some(refused)).unwrap_err();
            assert!(matches!(e, CapError::Bad(_)), "{refused}: {e}");
        }
    }
}
