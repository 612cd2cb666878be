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
pub fn read_owt_parameters(params: &Value, cap: &mut SubscriptionCap) -> Result<(), CapError> {
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
                return Err(CapError::NeedsTranscoding(format!(
                    "parameters.{key}: a forwarded stream keeps its publisher's frame rate and keyframe interval (changing them needs transcoding, not offered yet); ask for a resolution or bitrate instead"
                )));
            }
            "framerate" | "keyFrameInterval" => {}
            other => return Err(bad(format!("unknown video parameter {other:?}"))),
        }
    }
    Ok(())
}

/// Reads WHEP's query string: `rid`, `maxBitrate` (bit/s), `maxWidth`, `maxHeight`.
pub fn read_whep_query(query: Option<&str>) -> Result<SubscriptionCap, CapError> {
    let mut cap = SubscriptionCap::default();
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
            other => {
                return Err(bad(format!(
                    "unknown query parameter {other:?}: use rid, maxBitrate, maxWidth or maxHeight"
                )))
            }
        }
    }
    Ok(cap)
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
        )
        .unwrap();
        assert_eq!(cap.max_width, Some(640));
        assert_eq!(cap.max_height, Some(360));
        assert_eq!(cap.max_bitrate_bps, Some(500_000));
        // A multiplier frees the bitrate; the resolution stays.
        read_owt_parameters(&json!({"bitrate": "x0.8"}), &mut cap).unwrap();
        assert_eq!(cap.max_bitrate_bps, None);
        assert_eq!(cap.max_width, Some(640));
        read_owt_parameters(&Value::Null, &mut cap).unwrap();
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
                    read_owt_parameters(&refused, &mut cap),
                    Err(CapError::Bad(_))
                ),
                "{refused}"
            );
        }
        let e = read_owt_parameters(&json!({"framerate": 15}), &mut cap).unwrap_err();
        assert!(matches!(e, CapError::NeedsTranscoding(_)), "{e}");
        read_owt_parameters(&json!({"framerate": null}), &mut cap).unwrap();
    }

    #[test]
    fn whep_query_becomes_a_cap() {
        let cap =
            read_whep_query(Some("rid=q&maxBitrate=300000&maxWidth=320&maxHeight=180")).unwrap();
        assert_eq!(cap.rid.as_deref(), Some("q"));
        assert_eq!(cap.max_bitrate_bps, Some(300_000));
        assert_eq!((cap.max_width, cap.max_height), (Some(320), Some(180)));
        assert!(read_whep_query(None).unwrap().is_none());
        assert!(read_whep_query(Some("")).unwrap().is_none());
        for refused in [
            "maxBitrate=lots",
            "maxWidth=70000",
            "rid=",
            "rid=a%20b",
            "layer=2",
            "maxBitrate=0",
        ] {
            let e = read_whep_query(Some(refused)).unwrap_err();
            assert!(matches!(e, CapError::Bad(_)), "{refused}: {e}");
        }
    }
}
