//! Parsing and validation of room configurations, with errors that name the field.

use super::media::{named_resolution, H264Profile, VideoCodec, FRAMERATES, KEY_FRAME_INTERVALS};
use super::or_false::OrFalse;
use super::room::{BaseTemplate, RoomConfig};
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::collections::HashSet;

/// A value the API refused, with the dotted path of the field (e.g.
/// `views[0].video.maxInput`) and what is wrong with it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    /// The dotted path of the field; empty for the whole body.
    pub field: String,
    /// What is wrong and what would be accepted.
    pub message: String,
}

impl FieldError {
    /// An error about `field`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Deserializes `value` into `T`, naming the field of the first error. `prefix` is
/// prepended to paths (e.g. `options`).
pub fn from_value<T: DeserializeOwned>(value: Value, prefix: &str) -> Result<T, FieldError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let mut path = e.path().to_string();
        // For an unknown field the path already ends with the field's name.
        let message = e.inner().to_string();
        if path == "." {
            path.clear();
        }
        FieldError::new(join(prefix, &path), message)
    })
}

fn join(a: &str, b: &str) -> String {
    match (a.is_empty(), b.is_empty()) {
        (true, _) => b.to_string(),
        (_, true) => a.to_string(),
        _ if b.starts_with('[') => format!("{a}{b}"),
        _ => format!("{a}.{b}"),
    }
}

/// Parses a room configuration object (OWT's `object(Room)` or the `options` of a
/// `RoomConfig`), fills OWT's defaults and validates it. Keys OWT itself adds to stored
/// rooms (`_id`, `__v`) are ignored so that a room read with GET can be sent back with PUT.
pub fn parse_room_config(mut value: Value, prefix: &str) -> Result<RoomConfig, FieldError> {
    let obj = value
        .as_object_mut()
        .ok_or_else(|| FieldError::new(prefix, "must be a JSON object"))?;
    obj.remove("_id");
    obj.remove("__v");
    let mut config: RoomConfig = from_value(value, prefix)?;
    normalize(&mut config);
    validate(&config).map_err(|e| FieldError::new(join(prefix, &e.field), e.message))?;
    Ok(config)
}

/// OWT gives an H.264 view without a profile the constrained-baseline profile.
fn normalize(c: &mut RoomConfig) {
    for view in &mut c.views {
        if let OrFalse::Some(v) = &mut view.video {
            if v.format.codec == VideoCodec::H264 && v.format.profile.is_none() {
                v.format.profile = Some(H264Profile::ConstrainedBaseline);
            }
        }
    }
}

/// Checks the values of a room configuration that types alone cannot.
pub fn validate(c: &RoomConfig) -> Result<(), FieldError> {
    let err = |f: String, m: String| Err(FieldError::new(f, m));
    if c.name.trim().is_empty() {
        return err("name".into(), "is required and must not be empty".into());
    }
    if c.name.chars().count() > 256 {
        return err("name".into(), "must be at most 256 characters".into());
    }
    for (field, v) in [
        ("inputLimit", c.input_limit),
        ("participantLimit", c.participant_limit),
    ] {
        if v < -1 {
            return err(
                field.into(),
                format!("{v} is invalid: use -1 for no limit or a count >= 0"),
            );
        }
    }
    let mut names = HashSet::new();
    for (i, r) in c.roles.iter().enumerate() {
        if r.role.trim().is_empty() || r.role.len() > 64 {
            return err(
                format!("roles[{i}].role"),
                "must be 1 to 64 characters".into(),
            );
        }
        if !names.insert(r.role.as_str()) {
            return err(
                format!("roles[{i}].role"),
                format!("{:?} is defined twice", r.role),
            );
        }
    }
    let mut labels = HashSet::new();
    for (i, view) in c.views.iter().enumerate() {
        let at = |f: &str| format!("views[{i}].{f}");
        if view.label.trim().is_empty() || view.label.len() > 64 {
            return err(at("label"), "must be 1 to 64 characters".into());
        }
        if !labels.insert(view.label.as_str()) {
            return err(
                at("label"),
                format!("{:?} is used by another view", view.label),
            );
        }
        if !c.media_out.audio.contains(&view.audio.format) {
            return err(
                at("audio.format"),
                "is not one of mediaOut.audio: add it there or pick one of those".into(),
            );
        }
        let OrFalse::Some(v) = &view.video else {
            continue;
        };
        if !c.media_out.video.format.contains(&v.format) {
            return err(
                at("video.format"),
                "is not one of mediaOut.video.format: add it there or pick one of those".into(),
            );
        }
        let p = &v.parameters;
        let (w, h) = (p.resolution.width, p.resolution.height);
        if !(16..=7680).contains(&w) || !(16..=4320).contains(&h) || w % 2 != 0 || h % 2 != 0 {
            return err(
                at("video.parameters.resolution"),
                format!("{w}x{h} is invalid: width 16-7680 and height 16-4320, both even"),
            );
        }
        if !FRAMERATES.contains(&p.framerate) {
            return err(
                at("video.parameters.framerate"),
                format!("{} is invalid: use one of {FRAMERATES:?}", p.framerate),
            );
        }
        if let Some(b) = p.bitrate {
            if !(1..=100_000).contains(&b) {
                return err(
                    at("video.parameters.bitrate"),
                    format!("{b} kbit/s is invalid: use 1 to 100000"),
                );
            }
        }
        if !KEY_FRAME_INTERVALS.contains(&p.key_frame_interval) {
            return err(
                at("video.parameters.keyFrameInterval"),
                format!(
                    "{} is invalid: use one of {KEY_FRAME_INTERVALS:?}",
                    p.key_frame_interval
                ),
            );
        }
        if !(1..=256).contains(&v.max_input) {
            return err(
                at("video.maxInput"),
                format!("{} is invalid: use 1 to 256", v.max_input),
            );
        }
        if !(v.motion_factor > 0.0 && v.motion_factor <= 4.0) {
            return err(
                at("video.motionFactor"),
                format!("{} is invalid: use a number in (0, 4]", v.motion_factor),
            );
        }
        for (name, val) in [
            ("r", v.bg_color.r),
            ("g", v.bg_color.g),
            ("b", v.bg_color.b),
        ] {
            if !(0..=255).contains(&val) {
                return err(
                    at(&format!("video.bgColor.{name}")),
                    format!("{val} is invalid: use 0 to 255"),
                );
            }
        }
        let t = &v.layout.templates;
        if t.base == BaseTemplate::Void && t.custom.is_empty() {
            return err(
                at("video.layout.templates.custom"),
                "must not be empty when the base template is \"void\"".into(),
            );
        }
        for (j, layout) in t.custom.iter().enumerate() {
            let lat = |f: &str| at(&format!("video.layout.templates.custom[{j}].{f}"));
            if layout.region.is_empty() {
                return err(lat("region"), "must list at least one region".into());
            }
            if layout.region.len() as i64 > v.max_input {
                return err(
                    lat("region"),
                    format!(
                        "has {} regions, more than maxInput {}",
                        layout.region.len(),
                        v.max_input
                    ),
                );
            }
            let mut ids = HashSet::new();
            for (k, region) in layout.region.iter().enumerate() {
                let rat = |f: &str| lat(&format!("region[{k}].{f}"));
                if region.id.is_empty() {
                    return err(rat("id"), "must not be empty".into());
                }
                if !ids.insert(region.id.as_str()) {
                    return err(
                        rat("id"),
                        format!("{:?} is used by another region", region.id),
                    );
                }
                let a = &region.area;
                let mut vals = [0.0; 4];
                for (slot, (name, r)) in [
                    ("left", &a.left),
                    ("top", &a.top),
                    ("width", &a.width),
                    ("height", &a.height),
                ]
                .into_iter()
                .enumerate()
                {
                    match r.value() {
                        Some(x) if (0.0..=1.0).contains(&x) => vals[slot] = x,
                        _ => {
                            return err(
                                rat(&format!("area.{name}")),
                                "must be a number or fraction between 0 and 1".into(),
                            )
                        }
                    }
                }
                let eps = 1e-9;
                if vals[0] + vals[2] > 1.0 + eps || vals[1] + vals[3] > 1.0 + eps {
                    return err(
                        rat("area"),
                        "extends past the view: left+width and top+height must be at most 1".into(),
                    );
                }
            }
            if let Some(primary) = &layout.primary {
                if !ids.contains(primary.as_str()) {
                    return err(
                        lat("primary"),
                        format!("{primary:?} is not the id of one of its regions"),
                    );
                }
            }
        }
    }
    let params = &c.media_out.video.parameters;
    for (i, r) in params.resolution.iter().enumerate() {
        if !valid_resolution_choice(r) {
            return err(
                format!("mediaOut.video.parameters.resolution[{i}]"),
                format!("{r:?} is invalid: use a multiple such as \"x1/2\" or a name such as \"vga\" or \"hd720p\""),
            );
        }
    }
    for (i, f) in params.framerate.iter().enumerate() {
        if !FRAMERATES.contains(f) {
            return err(
                format!("mediaOut.video.parameters.framerate[{i}]"),
                format!("{f} is invalid: use one of {FRAMERATES:?}"),
            );
        }
    }
    for (i, b) in params.bitrate.iter().enumerate() {
        let ok = b
            .strip_prefix('x')
            .and_then(|m| m.parse::<f64>().ok())
            .is_some_and(|m| m > 0.0 && m <= 4.0);
        if !ok {
            return err(
                format!("mediaOut.video.parameters.bitrate[{i}]"),
                format!("{b:?} is invalid: use a multiple of the source such as \"x0.8\""),
            );
        }
    }
    for (i, k) in params.key_frame_interval.iter().enumerate() {
        if !KEY_FRAME_INTERVALS.contains(k) {
            return err(
                format!("mediaOut.video.parameters.keyFrameInterval[{i}]"),
                format!("{k} is invalid: use one of {KEY_FRAME_INTERVALS:?}"),
            );
        }
    }
    if let Some(sip) = &c.sip {
        if sip.sip_server.trim().is_empty() {
            return err(
                "sip.sipServer".into(),
                "must not be empty: give the SIP server's host or address".into(),
            );
        }
    }
    Ok(())
}

/// `"x3/4"`-style multiples below 1, or OWT's named resolutions.
fn valid_resolution_choice(s: &str) -> bool {
    if let Some(frac) = s.strip_prefix('x') {
        if let Some((n, d)) = frac.split_once('/') {
            if let (Ok(n), Ok(d)) = (n.parse::<u32>(), d.parse::<u32>()) {
                return n > 0 && d > 0 && n < d;
            }
        }
        return false;
    }
    named_resolution(s).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn bad(v: Value) -> FieldError {
        match parse_room_config(v, "") {
            Ok(c) => panic!("accepted {c:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn accepts_a_full_custom_room() {
        let c = parse_room_config(
            json!({
                "_id": "ignored", "__v": 0,
                "name": "lecture hall",
                "participantLimit": 100, "inputLimit": 4,
                "views": [{
                    "label": "main",
                    "audio": {"format": {"codec": "opus", "sampleRate": 48000, "channelNum": 2}, "vad": true},
                    "video": {
                        "format": {"codec": "h264"},
                        "parameters": {"resolution": {"width": 1280, "height": 720}, "framerate": 30, "bitrate": 2000, "keyFrameInterval": 2},
                        "maxInput": 4, "bgColor": {"r": 10, "g": 20, "b": 30}, "motionFactor": 1.0,
                        "layout": {"fitPolicy": "crop", "templates": {"base": "void", "custom": [
                            {"primary": "1", "region": [
                                {"id": "1", "shape": "rectangle", "area": {"left": 0, "top": 0, "width": "2/3", "height": 1}},
                                {"id": "2", "area": {"left": "2/3", "top": 0, "width": "1/3", "height": 0.5}}
                            ]}
                        ]}}
                    }
                }]
            }),
            "",
        )
        .unwrap();
        let v = c.views[0].video.as_ref().unwrap();
        assert_eq!(v.format.profile, Some(H264Profile::ConstrainedBaseline));
        assert_eq!(v.layout.templates.custom[0].region.len(), 2);
    }

    #[test]
    fn names_the_field() {
        let cases = [
            (json!({"name": ""}), "name"),
            (json!({}), "name"),
            (json!({"name": 3}), "name"),
            (
                json!({"name": "a", "participantLimit": "ten"}),
                "participantLimit",
            ),
            (json!({"name": "a", "inputLimit": -2}), "inputLimit"),
            (json!({"name": "a", "colour": 1}), "colour"),
            (
                json!({"name": "a", "views": [{"video": {"maxInput": 0}}]}),
                "views[0].video.maxInput",
            ),
            (
                json!({"name": "a", "views": [{"video": {"maxInput": 257}}]}),
                "views[0].video.maxInput",
            ),
            (
                json!({"name": "a", "views": [{"video": {"parameters": {"framerate": 25}}}]}),
                "views[0].video.parameters.framerate",
            ),
            (
                json!({"name": "a", "views": [{"video": {"parameters": {"keyFrameInterval": 3}}}]}),
                "views[0].video.parameters.keyFrameInterval",
            ),
            (
                json!({"name": "a", "views": [{"video": {"parameters": {"resolution": {"width": 641, "height": 480}}}}]}),
                "views[0].video.parameters.resolution",
            ),
            (
                json!({"name": "a", "views": [{"video": {"bgColor": {"r": 256}}}]}),
                "views[0].video.bgColor.r",
            ),
            (
                json!({"name": "a", "views": [{"video": {"layout": {"fitPolicy": "stretch"}}}]}),
                "views[0].video.layout.fitPolicy",
            ),
            (
                json!({"name": "a", "views": [{"video": {"layout": {"templates": {"base": "grid"}}}}]}),
                "views[0].video.layout.templates.base",
            ),
            (
                json!({"name": "a", "views": [{"video": {"layout": {"templates": {"base": "void"}}}}]}),
                "views[0].video.layout.templates.custom",
            ),
            (
                json!({"name": "a", "views": [{"video": {"layout": {"templates": {"custom": [{"region": [{"id": "1", "area": {"left": 0.5, "top": 0, "width": 0.6, "height": 1}}]}]}}}}]}),
                "views[0].video.layout.templates.custom[0].region[0].area",
            ),
            (
                json!({"name": "a", "views": [{"video": {"layout": {"templates": {"custom": [{"region": [{"id": "1", "area": {"left": "x", "top": 0, "width": 0.5, "height": 1}}]}]}}}}]}),
                "views[0].video.layout.templates.custom[0].region[0].area.left",
            ),
            (
                json!({"name": "a", "views": [{"label": "x"}, {"label": "x"}]}),
                "views[1].label",
            ),
            (
                json!({"name": "a", "views": [{"video": true}]}),
                "views[0].video",
            ),
            (
                json!({"name": "a", "views": [{"audio": {"format": {"codec": "mp3"}}}]}),
                "views[0].audio.format.codec",
            ),
            (
                json!({"name": "a", "views": [{"audio": {"format": {"codec": "opus", "sampleRate": 8000}}}]}),
                "views[0].audio.format",
            ),
            (
                json!({"name": "a", "views": [{"video": {"format": {"codec": "h265"}}}]}),
                "views[0].video.format",
            ),
            (
                json!({"name": "a", "roles": [{"role": "p"}, {"role": "p"}]}),
                "roles[1].role",
            ),
            (
                json!({"name": "a", "mediaOut": {"video": {"parameters": {"resolution": ["x3/2"]}}}}),
                "mediaOut.video.parameters.resolution[0]",
            ),
            (
                json!({"name": "a", "mediaOut": {"video": {"parameters": {"bitrate": ["0.5"]}}}}),
                "mediaOut.video.parameters.bitrate[0]",
            ),
            (
                json!({"name": "a", "sip": {"sipServer": ""}}),
                "sip.sipServer",
            ),
        ];
        for (input, field) in cases {
            let e = bad(input.clone());
            assert_eq!(e.field, field, "{input} -> {e}");
            assert!(!e.message.is_empty());
        }
    }

    #[test]
    fn prefix_is_prepended() {
        let e = parse_room_config(
            json!({"name": "a", "views": [{"video": {"maxInput": 0}}]}),
            "options",
        )
        .unwrap_err();
        assert_eq!(e.field, "options.views[0].video.maxInput");
        let e = parse_room_config(json!([]), "options").unwrap_err();
        assert_eq!(e.field, "options");
    }

    #[test]
    fn audio_only_view_skips_video_checks() {
        let c = parse_room_config(
            json!({"name": "a", "views": [{"label": "a", "video": false}]}),
            "",
        )
        .unwrap();
        assert_eq!(c.views[0].video, OrFalse::False);
    }
}
