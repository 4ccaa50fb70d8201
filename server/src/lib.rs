//! paybridge-server: the actix-web application and the `paybridge` binary.
//!
//! Provider crates are named here exactly once each, so the linker keeps their
//! `inventory::submit!` registrations. Nothing else in the server knows a provider by name.
//!
//! Layers, each calling only the ones below it:
//! - `app`, `api`: HTTP (actix-web): handlers, request/response shapes, the error contract;
//! - `reconciler`, `webhooks`, `retention`, `live`: background workers;
//! - `usecases`: what the API and the workers ask for, with the providers; no HTTP;
//! - `state`: the shared state (config, storage, tenants, simulators, metrics, limits);
//! - `store`: storage, the only layer that speaks SQL; `db`: connection, entities, migrations.

use paybridge_alipay as _;
use paybridge_wechat as _;

pub mod api;
pub mod app;
pub mod config;
pub mod db;
mod http_log;
pub mod limits;
pub mod live;
pub mod logging;
pub mod metrics;
pub mod reconciler;
pub mod retention;
pub mod state;
pub mod statements;
pub mod store;
pub mod usecases;
pub mod webhooks;
