//! Active speakers (sans-IO): which of a room's audio publications fill its K "selecting"
//! streams, from the audio level each packet carries (RFC 6464: 0 is the loudest, 127
//! silence, in -dBov), with hysteresis so that the slots do not flap.
//!
//! A room with `selectActiveAudio` gets K audio-only streams (OWT's selecting streams);
//! a subscriber plays those K instead of every participant's audio, so a room of a
//! thousand listens to K streams, not a thousand. Each slot carries one publication at a
//! time. Every [`RANK_EVERY`] the speakers are ranked by a smoothed loudness: a free slot
//! takes the loudest unseated speaker; a seated one gives its slot up only to a speaker
//! louder by [`HYSTERESIS`] for [`SWITCH_HOLD`], or when it has sent nothing for
//! [`GONE_AFTER`]. The loudest seated speaker is the "major" one (OWT's `volume`), the
//! others "minor". Each change is an event ([`ActiveSpeakers::poll_change`]) for the
//! clients' notifications.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often the speakers are ranked.
pub const RANK_EVERY: Duration = Duration::from_millis(200);

/// How much louder (in smoothed dB) a speaker must be to take a seated speaker's slot …
pub const HYSTERESIS: f64 = 6.0;

/// … for this long.
pub const SWITCH_HOLD: Duration = Duration::from_millis(600);

/// A speaker that sent nothing for this long leaves its slot.
pub const GONE_AFTER: Duration = Duration::from_secs(2);

/// The weight of each packet's level in the smoothed loudness (20 ms packets: about a
/// 200 ms time constant).
const SMOOTHING: f64 = 0.1;

/// A slot's new state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotChange {
    /// The slot (0-based).
    pub slot: usize,
    /// The publication it now carries (`None`: nobody).
    pub source: Option<Arc<str>>,
    /// Whether it carries the loudest seated speaker.
    pub major: bool,
}

#[derive(Debug, Clone)]
struct Speaker {
    id: Arc<str>,
    /// Smoothed loudness in dB above silence (0 silent, 127 the loudest).
    loudness: f64,
    last_packet: Instant,
    /// Since when it has been louder than the quietest seated speaker by the hysteresis.
    louder_since: Option<Instant>,
}

/// The selection of one room.
#[derive(Debug, Clone)]
pub struct ActiveSpeakers {
    slots: Vec<Option<Arc<str>>>,
    major: Option<usize>,
    speakers: Vec<Speaker>,
    /// Where each speaker is in `speakers` (a room may have thousands: no linear search
    /// per packet).
    index: HashMap<Arc<str>, usize>,
    next_rank: Option<Instant>,
    changes: VecDeque<SlotChange>,
}

impl ActiveSpeakers {
    /// A selection of `k` slots.
    pub fn new(k: usize) -> Self {
        ActiveSpeakers {
            slots: vec![None; k.max(1)],
            major: None,
            speakers: Vec::new(),
            index: HashMap::new(),
            next_rank: None,
            changes: VecDeque::new(),
        }
    }

    /// The slots' count.
    pub fn k(&self) -> usize {
        self.slots.len()
    }

    /// The publication each slot carries.
    pub fn slots(&self) -> &[Option<Arc<str>>] {
        &self.slots
    }

    /// An audio packet of publication `source` with `level` (RFC 6464 dBov below full
    /// scale, either sign; `None` when the packet has no level: counted as silence). Returns the slot it is forwarded in, if
    /// its speaker is seated.
    pub fn on_packet(
        &mut self,
        now: Instant,
        source: &Arc<str>,
        level: Option<i8>,
    ) -> Option<usize> {
        // The level's magnitude: str0m reads it as negative dBov (-30), RFC 6464 writes
        // it as its magnitude (30).
        let loud = 127.0 - f64::from(level.map_or(127, |l| l.unsigned_abs().min(127)));
        match self
            .index
            .get(source)
            .and_then(|i| self.speakers.get_mut(*i))
        {
            Some(s) => {
                s.loudness += SMOOTHING * (loud - s.loudness);
                s.last_packet = now;
            }
            None => {
                self.index.insert(source.clone(), self.speakers.len());
                self.speakers.push(Speaker {
                    id: source.clone(),
                    loudness: loud,
                    last_packet: now,
                    louder_since: None,
                });
            }
        }
        if self.next_rank.is_none_or(|t| now >= t) {
            self.next_rank = Some(now + RANK_EVERY);
            self.rank(now);
        }
        self.slots.iter().position(|s| s.as_ref() == Some(source))
    }

    /// The publication ended.
    pub fn remove(&mut self, now: Instant, source: &str) {
        self.speakers.retain(|s| &*s.id != source);
        self.reindex();
        for (i, slot) in self.slots.iter_mut().enumerate() {
            if slot.as_deref() == Some(source) {
                *slot = None;
                self.changes.push_back(SlotChange {
                    slot: i,
                    source: None,
                    major: false,
                });
            }
        }
        self.rank(now);
    }

    /// The next change to tell clients about.
    pub fn poll_change(&mut self) -> Option<SlotChange> {
        self.changes.pop_front()
    }

    fn reindex(&mut self) {
        self.index = self
            .speakers
            .iter()
            .enumerate()
            .map(|(i, s)| (s.id.clone(), i))
            .collect();
    }

    fn loudness_of(&self, id: &Arc<str>) -> f64 {
        self.index
            .get(id)
            .and_then(|i| self.speakers.get(*i))
            .map_or(0.0, |s| s.loudness)
    }

    /// The occupied slots and their speakers' loudness.
    fn seated(&self) -> impl Iterator<Item = (usize, f64)> + '_ {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.as_ref().map(|id| (i, self.loudness_of(id))))
    }

    fn rank(&mut self, now: Instant) {
        // Speakers gone quiet for good leave their slots.
        let gone: Vec<Arc<str>> = self
            .speakers
            .iter()
            .filter(|s| now.saturating_duration_since(s.last_packet) >= GONE_AFTER)
            .map(|s| s.id.clone())
            .collect();
        for (i, slot) in self.slots.iter_mut().enumerate() {
            if slot.as_ref().is_some_and(|id| gone.contains(id)) {
                *slot = None;
                self.changes.push_back(SlotChange {
                    slot: i,
                    source: None,
                    major: false,
                });
            }
        }
        if !gone.is_empty() {
            self.speakers.retain(|s| !gone.contains(&s.id));
            self.reindex();
        }
        // Unseated speakers, loudest first.
        let mut waiting: Vec<(Arc<str>, f64)> = self
            .speakers
            .iter()
            .filter(|s| !self.slots.iter().any(|x| x.as_ref() == Some(&s.id)))
            .map(|s| (s.id.clone(), s.loudness))
            .collect();
        waiting.sort_by(|a, b| b.1.total_cmp(&a.1));
        for (id, loudness) in waiting {
            if let Some(free) = self.slots.iter().position(Option::is_none) {
                self.seat(free, id);
                continue;
            }
            // The quietest seated speaker.
            let Some((q, q_loud)) = self.seated().min_by(|a, b| a.1.total_cmp(&b.1)) else {
                break;
            };
            let louder = loudness > q_loud + HYSTERESIS;
            let Some(sp) = self.index.get(&id).and_then(|i| self.speakers.get_mut(*i)) else {
                continue;
            };
            if !louder {
                sp.louder_since = None;
                continue;
            }
            let since = *sp.louder_since.get_or_insert(now);
            if now.saturating_duration_since(since) >= SWITCH_HOLD {
                sp.louder_since = None;
                self.seat(q, id);
            }
        }
        // The major slot: the loudest seated speaker's.
        let major = self
            .seated()
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(i, _)| i);
        if major != self.major {
            for (i, is_major) in [(self.major, false), (major, true)] {
                if let Some(i) = i {
                    if let Some(source) = self.slots.get(i).cloned().flatten() {
                        self.changes.push_back(SlotChange {
                            slot: i,
                            source: Some(source),
                            major: is_major,
                        });
                    }
                }
            }
            self.major = major;
        }
    }

    fn seat(&mut self, slot: usize, id: Arc<str>) {
        if let Some(s) = self.slots.get_mut(slot) {
            *s = Some(id.clone());
            self.changes.push_back(SlotChange {
                slot,
                source: Some(id),
                major: self.major == Some(slot),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds 20 ms packets of each speaker with its level for `secs`.
    fn talk(
        sel: &mut ActiveSpeakers,
        t: &mut Instant,
        levels: &[(&Arc<str>, Option<i8>)],
        secs: f64,
    ) {
        for _ in 0..(secs * 50.0) as usize {
            for (id, level) in levels {
                sel.on_packet(*t, id, *level);
            }
            *t += Duration::from_millis(20);
        }
    }

    fn changes(sel: &mut ActiveSpeakers) -> Vec<SlotChange> {
        std::iter::from_fn(|| sel.poll_change()).collect()
    }

    #[test]
    fn the_loudest_take_the_slots_and_a_louder_one_needs_to_stay_louder() {
        let (a, b, c): (Arc<str>, Arc<str>, Arc<str>) = ("a".into(), "b".into(), "c".into());
        let mut sel = ActiveSpeakers::new(2);
        let mut t = Instant::now();
        // a and b talk (level 20 and 30 dB below full scale), c is quiet (90).
        talk(
            &mut sel,
            &mut t,
            &[(&a, Some(20)), (&b, Some(30)), (&c, Some(90))],
            1.0,
        );
        assert_eq!(sel.slots(), &[Some(a.clone()), Some(b.clone())]);
        let first = changes(&mut sel);
        assert!(
            first
                .iter()
                .any(|c| c.source.as_ref() == Some(&a) && c.major),
            "{first:?}"
        );
        // c shouts for less than the hold: nothing changes.
        talk(
            &mut sel,
            &mut t,
            &[(&a, Some(20)), (&b, Some(60)), (&c, Some(5))],
            0.5,
        );
        assert_eq!(sel.slots(), &[Some(a.clone()), Some(b.clone())]);
        // c keeps it up and b has gone quiet: c takes b's slot; a keeps its own.
        talk(
            &mut sel,
            &mut t,
            &[(&a, Some(20)), (&b, Some(90)), (&c, Some(5))],
            1.5,
        );
        assert_eq!(sel.slots(), &[Some(a.clone()), Some(c.clone())]);
        let later = changes(&mut sel);
        assert!(
            later
                .iter()
                .any(|x| x.slot == 1 && x.source.as_ref() == Some(&c)),
            "{later:?}"
        );
        // c is now the loudest: the major slot moved to it.
        assert!(later.iter().any(|x| x.slot == 1 && x.major), "{later:?}");
        // A packet is forwarded in its speaker's slot, or not at all.
        assert_eq!(sel.on_packet(t, &c, Some(5)), Some(1));
        assert_eq!(sel.on_packet(t, &b, Some(90)), None);
    }

    #[test]
    fn a_close_contest_does_not_flap_and_silence_fills_free_slots_in_order() {
        let (a, b, c): (Arc<str>, Arc<str>, Arc<str>) = ("a".into(), "b".into(), "c".into());
        let mut sel = ActiveSpeakers::new(1);
        let mut t = Instant::now();
        // No levels at all (clients without the extension): the first speaker is seated.
        talk(&mut sel, &mut t, &[(&a, None), (&b, None)], 1.0);
        assert_eq!(sel.slots(), &[Some(a.clone())]);
        changes(&mut sel);
        // b is louder than a, but by less than the hysteresis: a stays.
        for i in 0..20 {
            let (la, lb) = if i % 2 == 0 { (40, 36) } else { (36, 40) };
            talk(
                &mut sel,
                &mut t,
                &[(&a, Some(la)), (&b, Some(lb - 2)), (&c, Some(100))],
                0.5,
            );
        }
        assert_eq!(sel.slots(), &[Some(a.clone())]);
        assert!(changes(&mut sel)
            .iter()
            .all(|x| x.source.as_ref() == Some(&a)));
    }

    #[test]
    fn a_speaker_that_goes_away_leaves_its_slot() {
        let (a, b): (Arc<str>, Arc<str>) = ("a".into(), "b".into());
        let mut sel = ActiveSpeakers::new(2);
        let mut t = Instant::now();
        // Levels as str0m reads them: negative dBov.
        talk(&mut sel, &mut t, &[(&a, Some(-10)), (&b, Some(-50))], 1.0);
        changes(&mut sel);
        // b stops sending; after GONE_AFTER its slot is free.
        talk(
            &mut sel,
            &mut t,
            &[(&a, Some(10))],
            GONE_AFTER.as_secs_f64() + 0.5,
        );
        assert_eq!(sel.slots(), &[Some(a.clone()), None]);
        assert!(changes(&mut sel).contains(&SlotChange {
            slot: 1,
            source: None,
            major: false
        }));
        // a's publication ends.
        sel.remove(t, "a");
        assert_eq!(sel.slots(), &[None, None]);
    }
}
