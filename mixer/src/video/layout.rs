//! Where each input of a view goes: OWT's layout templates (fluid, lecture), custom
//! layouts in relative coordinates, regions pinned to inputs, the primary region for the
//! active speaker; and regions in pixels.

use switchyard_mixer_api::{BaseTemplate, LayoutSpec, Region};

/// A rectangle in pixels, its corners on even coordinates (chroma is half size).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rect {
    /// Left edge.
    pub x: u32,
    /// Top edge.
    pub y: u32,
    /// Width.
    pub w: u32,
    /// Height.
    pub h: u32,
}

impl Rect {
    /// A region of a `width × height` picture; clamped to it, even-aligned.
    pub fn of(region: &Region, width: u32, height: u32) -> Rect {
        let even = |f: f64, n: u32| -> u32 {
            let v = (f.clamp(0.0, 1.0) * f64::from(n)).round() as u32;
            (v & !1).min(n & !1)
        };
        let x = even(region.left, width);
        let y = even(region.top, height);
        let x2 = even(region.left + region.width, width);
        let y2 = even(region.top + region.height, height);
        Rect {
            x,
            y,
            w: x2.saturating_sub(x),
            h: y2.saturating_sub(y),
        }
    }
}

fn region(id: usize, left: f64, top: f64, width: f64, height: f64) -> Region {
    Region {
        id: id.to_string(),
        left,
        top,
        width,
        height,
    }
}

/// The fluid template for `n` inputs: equal tiles in the smallest square grid that holds
/// them (1, 2×2, 3×3, …), filled row by row.
pub fn fluid(n: usize) -> Vec<Region> {
    let k = (1..).find(|k| k * k >= n.max(1)).unwrap_or(1);
    let f = 1.0 / k as f64;
    (0..k * k)
        .map(|i| region(i + 1, (i % k) as f64 * f, (i / k) as f64 * f, f, f))
        .collect()
}

/// The lecture template for `n` inputs: a primary region of `(k-1)/k` of the view at the
/// top left, `k-1` small ones down its right and `k` along the bottom (6, 8, 10, …
/// regions), with the smallest `k` that holds every input.
pub fn lecture(n: usize) -> Vec<Region> {
    if n <= 1 {
        return vec![region(1, 0.0, 0.0, 1.0, 1.0)];
    }
    let k = (3..).find(|k| 2 * k >= n).unwrap_or(3);
    let f = 1.0 / k as f64;
    let big = f * (k - 1) as f64;
    let mut out = vec![region(1, 0.0, 0.0, big, big)];
    for i in 0..k - 1 {
        out.push(region(out.len() + 1, big, i as f64 * f, f, f));
    }
    for i in (0..k).rev() {
        out.push(region(out.len() + 1, i as f64 * f, big, f, f));
    }
    out
}

/// The regions for `n` inputs and the primary region's index: the custom layout with
/// the fewest regions that holds them all, else the base template's; with none that
/// holds them all, the largest there is (the inputs past it are not shown).
pub fn regions(spec: &LayoutSpec, n: usize) -> (Vec<Region>, Option<usize>) {
    let fits = spec
        .custom
        .iter()
        .filter(|c| c.regions.len() >= n && !c.regions.is_empty())
        .min_by_key(|c| c.regions.len());
    let primary_of = |c: &switchyard_mixer_api::CustomLayout| {
        c.primary
            .as_ref()
            .and_then(|p| c.regions.iter().position(|r| &r.id == p))
            .or(Some(0))
    };
    if let Some(c) = fits {
        return (c.regions.clone(), primary_of(c));
    }
    match spec.base {
        BaseTemplate::Fluid => (fluid(n), Some(0)),
        BaseTemplate::Lecture => (lecture(n), Some(0)),
        BaseTemplate::Void => match spec.custom.iter().max_by_key(|c| c.regions.len()) {
            Some(c) => (c.regions.clone(), primary_of(c)),
            None => (fluid(n), Some(0)),
        },
    }
}

/// Which region each input takes: `inputs` in their order, `pinned` (input, region id)
/// first where that region exists, `primary` (the active speaker's input, with
/// `keepActiveInputPrimary`) in the primary region, the rest in region order. Returns
/// (input index, region index) pairs.
pub fn assign(
    inputs: &[&str],
    regions: &[Region],
    primary_region: Option<usize>,
    pinned: &[(String, String)],
    primary: Option<&str>,
) -> Vec<(usize, usize)> {
    let mut taken = vec![false; regions.len()];
    let mut placed = vec![None; inputs.len()];
    for (input, rid) in pinned {
        let Some(i) = inputs.iter().position(|s| s == input) else {
            continue;
        };
        if let Some(r) = regions.iter().position(|r| &r.id == rid) {
            if !taken[r] && placed[i].is_none() {
                taken[r] = true;
                placed[i] = Some(r);
            }
        }
    }
    if let (Some(p), Some(r)) = (primary, primary_region) {
        if let Some(i) = inputs.iter().position(|s| *s == p) {
            if placed[i].is_none() && !taken[r] {
                taken[r] = true;
                placed[i] = Some(r);
            }
        }
    }
    for slot in placed.iter_mut().filter(|p| p.is_none()) {
        if let Some(r) = taken.iter().position(|t| !t) {
            taken[r] = true;
            *slot = Some(r);
        }
    }
    placed
        .into_iter()
        .enumerate()
        .filter_map(|(i, r)| Some((i, r?)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_mixer_api::CustomLayout;

    #[test]
    fn fluid_grows_in_squares() {
        assert_eq!(fluid(1).len(), 1);
        assert_eq!(fluid(2).len(), 4);
        assert_eq!(fluid(4).len(), 4);
        assert_eq!(fluid(5).len(), 9);
        let four = fluid(4);
        assert_eq!(
            Rect::of(&four[3], 640, 480),
            Rect {
                x: 320,
                y: 240,
                w: 320,
                h: 240
            }
        );
    }

    #[test]
    fn lecture_has_a_primary_and_small_regions_around_it() {
        let six = lecture(4);
        assert_eq!(six.len(), 6);
        assert_eq!(
            Rect::of(&six[0], 1280, 720),
            Rect {
                x: 0,
                y: 0,
                w: 852,
                h: 480
            }
        );
        assert_eq!(lecture(7).len(), 8);
        // Regions do not overlap: their areas add up to the view.
        for l in [lecture(6), lecture(8), lecture(10)] {
            let area: f64 = l.iter().map(|r| r.width * r.height).sum();
            assert!((area - 1.0).abs() < 1e-9, "{area}");
        }
    }

    #[test]
    fn custom_layouts_come_first_and_pins_and_the_speaker_take_their_regions() {
        let custom = CustomLayout {
            primary: Some("b".into()),
            regions: vec![
                Region {
                    id: "a".into(),
                    left: 0.0,
                    top: 0.0,
                    width: 0.5,
                    height: 1.0,
                },
                Region {
                    id: "b".into(),
                    left: 0.5,
                    top: 0.0,
                    width: 0.5,
                    height: 1.0,
                },
            ],
        };
        let spec = LayoutSpec {
            base: BaseTemplate::Fluid,
            custom: vec![custom],
            pinned: vec![],
        };
        let (r, p) = regions(&spec, 2);
        assert_eq!((r.len(), p), (2, Some(1)));
        // Three inputs do not fit the custom layout: the fluid template.
        assert_eq!(regions(&spec, 3).0.len(), 4);
        // The speaker in the primary region, the other in the first free one.
        assert_eq!(
            assign(&["x", "y"], &r, p, &[], Some("x")),
            vec![(0, 1), (1, 0)]
        );
        // A pin wins over the speaker.
        let pins = vec![("y".to_string(), "b".to_string())];
        assert_eq!(
            assign(&["x", "y"], &r, p, &pins, Some("x")),
            vec![(0, 0), (1, 1)]
        );
        // More inputs than regions: the last is not shown.
        assert_eq!(assign(&["x", "y", "z"], &r, None, &[], None).len(), 2);
    }
}
