//! The Switchyard mixer.
