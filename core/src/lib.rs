//! paybridge-core: the domain of the paybridge payment gateway.
//!
//! - [`money`]: integer fen, and the exact yuan-text bridge.
//! - [`order`] and [`refund`]: the state machines, each one transition table.
//! - [`provider`]: the [`provider::PaymentProvider`] plugin trait and the
//!   [`provider::ProviderFactory`] registry (`inventory`).
//! - [`document`]: what tenant and platform documents share (errors, ids, wiping).
//! - [`tenant`]: a tenant's config document, validated by the factories.
//! - [`platform`]: service-provider credentials that tenants name with `platform = "<id>"`.
//! - [`ids`]: the merchant API's identity rules.
//! - [`beijing`]: the providers' UTC+8 timestamps.
//! - [`rfc3339`]: a UTC time as the storage and the API write it.
//!
//! No HTTP framework and no database live here.

pub mod beijing;
pub mod document;
pub mod ids;
pub mod money;
pub mod net;
pub mod order;
pub mod platform;
pub mod provider;
pub mod refund;
pub mod rfc3339;
pub mod statement;
pub mod tenant;

pub use inventory;
pub use secrecy;
