//! placeholder
pub mod nano;
pub mod verify;
