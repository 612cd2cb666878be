//! The Switchyard dataplane: WebRTC media forwarding, one pinned executor per core.
//!
//! Layers, from the inside out:
//! - sans-IO pieces, each tested with a virtual clock: [`demux`] (whose datagram is it),
//!   [`rewrite`] (per-subscription sequence numbers and timestamps), [`keyframe`] (merging
//!   keyframe requests), [`sdp`] (rejecting media a role may not use), [`peer`] (a str0m
//!   `Rtc` in ICE-lite, RTP mode, answering an offer), [`overload`] (how much to shed
//!   past saturation);
//! - [`core::Core`], one core's state machine: peers, routes, forwarding, all driven by
//!   `handle_*` calls that take `now` and fill an outbox;
//! - [`driver`], the thin glommio loop per core: its sockets, timer and channels,
//!   [`gso`], how a flush's datagrams are grouped into UDP GSO sends, and [`load`], its
//!   measure of how busy the core is;
//! - [`mgmt`], the management executor: control's RPC (`switchyard-dataplane-api`), the
//!   publication registry, metrics over HTTP.
//!
//! Cores share nothing on the packet path: core *i* owns UDP port `webrtc.minport + i` on
//! each media address and every peer placed on it; a packet for subscribers on another
//! core is handed over once per core through a bounded channel, dropped and counted when
//! the channel is full.
//!
//! Forwarding allocates nothing in steady state: a received payload is decrypted into a
//! buffer of str0m's per-thread ring (`str0m::rtp::Payload`), the packet every
//! subscription shares comes from the core's `str0m::rtp::Recycler`, and each copy is
//! encrypted into a pooled datagram buffer the driver hands back after sending
//! (`dataplane/tests/allocations.rs` holds all three at zero).

pub mod core;
pub mod demux;
pub mod driver;
pub mod gso;
pub mod heap;
pub mod keyframe;
pub mod layers;
pub mod load;
pub mod metrics;
pub mod mgmt;
pub mod overload;
pub mod packet;
pub mod padding;
pub mod peer;
pub mod protection;
pub mod rewrite;
pub mod sdp;
pub mod setup;
pub mod speakers;
pub mod svc;
