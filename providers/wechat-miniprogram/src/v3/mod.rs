//! WeChat Pay API v3: the protocol's cryptography (issue 9, first part).
//!
//! [`crypto`] signs requests and `paySign`, verifies answers and notifications, and opens
//! AES-256-GCM resources, byte for byte as the official SDK does (`fixtures/wechatpay-v3`).
//! [`merchant`] names who a call or notification is for (a merchant, or a service provider
//! and its sub-merchant). [`certificates`] keeps a merchant's platform certificates, downloaded only when needed.
//! [`notify`] verifies payment and refund notifications into provider events. [`client`] makes
//! a signed call and verifies the answer; [`orders`] creates (with `paySign`), queries and closes
//! JSAPI orders on it, and [`refunds`] sends and queries refunds. The v3
//! [`provider`] is what the `wechat_miniprogram` provider calls for a tenant with `apiv3_key`:
//! new orders when `api_version = "v3"`, v3 orders, and notifications signed in `Wechatpay-*`
//! headers. The sandbox's v3 simulator is `crate::sandbox::v3`, with its own code.

pub mod bills;
pub mod certificates;
pub mod client;
pub mod crypto;
pub mod merchant;
pub mod notify;
pub mod orders;
pub mod provider;
pub mod refunds;

#[cfg(test)]
mod crypto_tests;
#[cfg(test)]
mod provider_tests;
#[cfg(test)]
mod test_support;
