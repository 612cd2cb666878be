//! The Switchyard mixer (OWT's audio-agent and video-agent): for each view of a room, an
//! audio mix and a video composite of its inputs, published back into the room as the
//! view's mixed stream.

pub mod audio;
pub mod driver;
pub mod rpc;
pub mod video;
pub mod view;
