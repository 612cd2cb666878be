//! Control's side of the dataplane RPC: the [`crate::link`] to `dataplane.rpc_address`,
//! and core placement (a room's peers kept on one core while it is not much busier than the
//! least-loaded one, [`choose_core`]).

use crate::link::{self, Protocol};
use switchyard_dataplane_api::{
    DataplaneInfo, Event, Request, Response, RpcError, PROTOCOL_VERSION,
};

/// The dataplane's RPC.
#[derive(Debug)]
pub struct Dataplane;

impl Protocol for Dataplane {
    type Request = Request;
    type Response = Response;
    type Event = Event;
    type Info = DataplaneInfo;
    type Error = RpcError;
    const NAME: &'static str = "media dataplane";

    fn hello() -> Request {
        Request::DataplaneInfo
    }

    fn ping() -> Request {
        Request::Ping
    }

    fn welcome(answer: Response) -> Result<DataplaneInfo, String> {
        match answer {
            Response::DataplaneInfo(info) if info.protocol == PROTOCOL_VERSION => Ok(info),
            Response::DataplaneInfo(info) => Err(format!(
                "the dataplane speaks protocol version {}, control {PROTOCOL_VERSION}",
                info.protocol
            )),
            other => Err(format!("unexpected handshake answer {other:?}")),
        }
    }

    fn split(answer: Response) -> Result<Response, RpcError> {
        match answer {
            Response::Error(e) => Err(e),
            other => Ok(other),
        }
    }

    fn slots(info: &DataplaneInfo) -> Vec<u32> {
        info.cores.iter().map(|c| c.peers).collect()
    }
}

/// The link to the dataplane.
pub type Link = link::Link<Dataplane>;

/// Why a call to the dataplane failed.
pub type DataplaneError = link::LinkError<Dataplane>;

/// What the dataplane link reports to the rest of control.
pub use link::LinkListener;

/// How many more peers than the least-loaded core a core may hold and still take a new
/// peer of a room it already serves. Below this a room stays on one core, so its packets are
/// forwarded where they arrive, without a hand-off to another core; past it the room spreads
/// over the cores (a large room must: one core cannot carry it).
pub const ROOM_SPILL: u32 = 32;

/// Chooses a core for a new peer of a room: the core already holding most of the room's
/// peers, while it holds no more than [`ROOM_SPILL`] peers above the least-loaded core and is
/// not full; otherwise the least-loaded core. `room_counts[c]` is the room's peers on core c.
/// None when every core is full.
pub fn choose_core(loads: &[u32], room_counts: &[u32], max: u32) -> Option<usize> {
    let (least, min) = loads
        .iter()
        .enumerate()
        .min_by_key(|(_, l)| **l)
        .map(|(c, l)| (c, *l))?;
    if min >= max {
        return None;
    }
    let home = room_counts
        .iter()
        .enumerate()
        .filter(|(c, n)| {
            let load = loads.get(*c).copied().unwrap_or(u32::MAX);
            **n > 0 && load < max && load <= min.saturating_add(ROOM_SPILL)
        })
        .max_by_key(|(c, n)| (**n, std::cmp::Reverse(loads.get(*c).copied().unwrap_or(0))))
        .map(|(c, _)| c);
    Some(home.unwrap_or(least))
}

impl Link {
    /// Picks a core for a new peer of `room` ([`choose_core`]) and counts the peer on it.
    /// Placing a peer already placed answers its core again.
    pub fn place(&self, room: &str, peer: &str) -> Result<u16, DataplaneError> {
        if !self.is_up() {
            return Err(DataplaneError::Unavailable);
        }
        let mut st = self.st();
        if let Some(p) = st.placed.get(peer) {
            return Ok(p.slot);
        }
        let max = st
            .info
            .as_ref()
            .map(|i| i.max_peers_per_core)
            .unwrap_or(u32::MAX);
        if st.loads.is_empty() {
            return Err(DataplaneError::Unavailable);
        }
        let mut room_counts = vec![0u32; st.loads.len()];
        for p in st.placed.values().filter(|p| p.room == room) {
            if let Some(n) = room_counts.get_mut(usize::from(p.slot)) {
                *n += 1;
            }
        }
        let Some(core) = choose_core(&st.loads, &room_counts, max) else {
            return Err(DataplaneError::Rpc(RpcError::new(
                switchyard_dataplane_api::ErrorCode::CoreUnavailable,
                "every dataplane core is full",
            )));
        };
        st.loads[core] += 1;
        let slot = core as u16;
        st.placed.insert(
            peer.to_string(),
            crate::link::Placed {
                slot,
                room: room.to_string(),
            },
        );
        Ok(slot)
    }

    /// A peer placed with [`Link::place`] is gone (or was never made). Releasing a peer
    /// twice, or one never placed, does nothing.
    pub fn release(&self, peer: &str) {
        let mut st = self.st();
        if let Some(p) = st.placed.remove(peer) {
            if let Some(l) = st.loads.get_mut(usize::from(p.slot)) {
                *l = l.saturating_sub(1);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_room_goes_to_the_least_loaded_core() {
        assert_eq!(choose_core(&[5, 2, 7], &[0, 0, 0], 100), Some(1));
    }

    #[test]
    fn a_room_stays_on_its_core_within_the_spill_margin() {
        // Core 0 holds the room and 20 more peers than core 1: the room stays there.
        assert_eq!(choose_core(&[30, 10], &[4, 0], 100), Some(0));
        // Past the margin the room spreads to the least-loaded core.
        assert_eq!(
            choose_core(&[10 + ROOM_SPILL + 1, 10], &[4, 0], 100),
            Some(1)
        );
    }

    #[test]
    fn a_spread_room_prefers_the_core_with_most_of_it() {
        assert_eq!(choose_core(&[40, 20, 20], &[0, 3, 9], 100), Some(2));
        // Equal shares: the less loaded of them.
        assert_eq!(choose_core(&[40, 25, 20], &[0, 5, 5], 100), Some(2));
    }

    #[test]
    fn full_cores_are_never_chosen() {
        assert_eq!(choose_core(&[10, 4], &[3, 0], 10), Some(1));
        assert_eq!(choose_core(&[10, 10], &[3, 0], 10), None);
        assert_eq!(choose_core(&[], &[], 10), None);
    }

    #[test]
    fn one_big_room_fills_the_cores_evenly_within_the_margin() {
        let (cores, max) = (4usize, 10_000u32);
        let mut loads = vec![0u32; cores];
        let mut room = vec![0u32; cores];
        for _ in 0..2_500 {
            let c = choose_core(&loads, &room, max).unwrap_or(0);
            loads[c] += 1;
            room[c] += 1;
        }
        let (lo, hi) = (loads.iter().min(), loads.iter().max());
        assert!(
            hi.zip(lo).is_some_and(|(h, l)| h - l <= ROOM_SPILL + 1),
            "{loads:?}"
        );
    }
}
