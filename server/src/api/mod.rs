//! HTTP handlers.

pub mod auth;
pub mod events;
pub mod notify;
pub mod ops;
pub mod orders;
pub mod refunds;
pub mod sandbox;
pub mod sessions;
