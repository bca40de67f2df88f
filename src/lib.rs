//! placeholder
pub mod nano;
pub mod rpc;
pub mod verify;
