//! WeChat Pay API v3: the protocol's cryptography (issue 9, first part).
//!
//! [`crypto`] signs requests and `paySign`, verifies answers and notifications, and opens
//! AES-256-GCM resources, byte for byte as the official SDK does (`fixtures/wechatpay-v3`).
//! [`certificates`] keeps a merchant's platform certificates, downloaded only when needed.
//! [`notify`] verifies payment and refund notifications into provider events. [`client`] makes
//! a signed call and verifies the answer; [`orders`] creates (with `paySign`), queries and closes
//! JSAPI orders on it, and [`refunds`] sends and queries refunds. The v3
//! provider itself (orders, notifications, platform certificates, its simulator) is not built
//! yet: nothing in a tenant's config reaches this module.

pub mod certificates;
pub mod client;
pub mod crypto;
pub mod notify;
pub mod orders;
pub mod refunds;

#[cfg(test)]
mod crypto_tests;
#[cfg(test)]
mod test_support;
