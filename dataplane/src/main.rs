//! `switchyard-dataplane` (work in progress).
fn main() {}
