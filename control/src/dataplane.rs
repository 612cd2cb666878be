//! Control's side of the dataplane RPC: the [`crate::link`] to `dataplane.rpc_address`,
//! and core placement (the least-loaded core takes a new peer).

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

impl Link {
    /// Picks the least-loaded core and counts the new peer on it.
    pub fn place(&self) -> Result<u16, DataplaneError> {
        if !self.is_up() {
            return Err(DataplaneError::Unavailable);
        }
        let mut st = self.st();
        let max = st
            .info
            .as_ref()
            .map(|i| i.max_peers_per_core)
            .unwrap_or(u32::MAX);
        let (core, load) = st
            .loads
            .iter()
            .enumerate()
            .min_by_key(|(_, l)| **l)
            .map(|(c, l)| (c, *l))
            .ok_or(DataplaneError::Unavailable)?;
        if load >= max {
            return Err(DataplaneError::Rpc(RpcError::new(
                switchyard_dataplane_api::ErrorCode::CoreUnavailable,
                "every dataplane core is full",
            )));
        }
        st.loads[core] += 1;
        Ok(core as u16)
    }

    /// A peer placed with [`Link::place`] is gone (or was never made).
    pub fn release(&self, core: u16) {
        let mut st = self.st();
        if let Some(l) = st.loads.get_mut(usize::from(core)) {
            *l = l.saturating_sub(1);
        }
    }
}
