//! HTTP handlers, one module per area of SPEC §3.

pub mod common;
pub mod coordination;
pub mod events;
pub mod operation;
pub mod work;
