//! The HTTP layer: handlers, the request and response shapes, and the error contract. Handlers
//! call the use cases and never the storage.

pub mod auth;
pub mod body;
pub mod console;
pub mod error;
pub mod events;
pub mod idempotency;
pub mod notify;
pub mod ops;
pub mod orders;
pub mod refunds;
pub mod sandbox;
pub mod sessions;
pub mod statements;
pub mod views;
