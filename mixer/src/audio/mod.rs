//! The audio side of a view: decoding the loudest inputs, mixing them (with a mix-minus
//! per speaker), encoding the mix.

pub mod codec;
pub mod mix;
pub mod mixer;
