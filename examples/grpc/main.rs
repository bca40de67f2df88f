//! Placeholder main; the full demo comes with the paying client.
mod proto;
fn main() {}
