//! paybridge-server: the actix-web application and the `paybridge` binary.
//!
//! Provider crates are named here exactly once each, so the linker keeps their
//! `inventory::submit!` registrations. Nothing else in the server knows a provider by name.

use paybridge_alipay as _;
use paybridge_wechat as _;

pub mod api;
pub mod app;
pub mod config;
pub mod db;
pub mod error;
mod http_log;
pub mod live;
pub mod metrics;
pub mod reconciler;
pub mod refund_store;
pub mod refunds;
pub mod service;
pub mod state;
pub mod store;
pub mod views;
pub mod webhooks;
