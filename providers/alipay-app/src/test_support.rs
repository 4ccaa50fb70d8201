//! Shared test helpers: the test keys, a provider config, a fixed clock, a fake order store and a
//! notification signer that joins its string by hand (not through `crate::sign`), so a bug shared
//! by signer and verifier cannot pass.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use paybridge_core::money::Fen;
use paybridge_core::provider::{BuildContext, OrderLookup, OrderSnapshot};

use crate::AlipayApp;
use crate::gateway::Clock;
use crate::keys::AppPrivateKey;

pub const APP_ID: &str = "2021001100600001";
pub const SELLER_ID: &str = "2088000000000001";

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A file under the workspace's `fixtures/`.
pub fn fixture(rel: &str) -> String {
    let path = manifest_dir().join("../../fixtures").join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A file under this crate's `sandbox-keys/`.
pub fn sandbox_key(name: &str) -> String {
    let path = manifest_dir().join("sandbox-keys").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The app key of the SDK vectors (PKCS#8 PEM).
pub fn app_private_pem() -> String {
    fixture("vectors/app_private_pkcs8.pem")
}

/// The key the tests sign notifications and responses with, standing in for Alipay's.
pub fn alipay_signer() -> AppPrivateKey {
    AppPrivateKey::parse(&sandbox_key("alipay_sandbox_private.pem")).expect("sandbox key")
}

pub fn ctx(timeout: Duration) -> BuildContext {
    BuildContext {
        base_dir: Path::new(".").to_path_buf(),
        http_timeout: timeout,
    }
}

/// A valid provider table with `overrides` applied (an empty value removes the key).
pub fn table(overrides: &[(&str, &str)]) -> toml::Table {
    let mut t = toml::Table::new();
    t.insert("app_id".into(), APP_ID.into());
    t.insert("private_key".into(), app_private_pem().into());
    t.insert(
        "alipay_public_key".into(),
        sandbox_key("alipay_sandbox_public.pem").into(),
    );
    t.insert("seller_id".into(), SELLER_ID.into());
    for (k, v) in overrides {
        if v.is_empty() {
            t.remove(*k);
        } else {
            t.insert((*k).into(), (*v).into());
        }
    }
    t
}

pub fn utc(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .expect("RFC 3339")
        .with_timezone(&Utc)
}

pub fn fixed_clock(at: &str) -> Clock {
    let at = utc(at);
    Arc::new(move || at)
}

/// The provider over `table(overrides)`, clock fixed at 2024-01-01T04:00:00Z (12:00 Beijing).
pub fn provider_with(overrides: &[(&str, &str)], timeout: Duration) -> AlipayApp {
    AlipayApp::with_clock(
        &table(overrides),
        &ctx(timeout),
        fixed_clock("2024-01-01T04:00:00Z"),
    )
    .expect("valid config")
}

pub fn provider() -> AlipayApp {
    provider_with(&[], Duration::from_secs(2))
}

/// rsaCheckV1 content joined by hand, signed with `key`.
pub fn sign_notification(fields: &[(&str, &str)], key: &AppPrivateKey) -> String {
    let mut kept: Vec<&(&str, &str)> = fields
        .iter()
        .filter(|(k, v)| *k != "sign" && *k != "sign_type" && !v.is_empty())
        .collect();
    kept.sort_by(|a, b| a.0.cmp(b.0));
    let joined: Vec<String> = kept.iter().map(|(k, v)| format!("{k}={v}")).collect();
    key.sign_rsa2(joined.join("&").as_bytes()).expect("sign")
}

/// `application/x-www-form-urlencoded` as Alipay posts it (space as `+`).
pub fn form_body(fields: &[(&str, &str)]) -> Vec<u8> {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(fields.iter())
        .finish()
        .into_bytes()
}

pub struct FakeOrders {
    pub orders: HashMap<String, Fen>,
    pub refunds: HashMap<(String, String), Fen>,
    pub lookups: Mutex<Vec<String>>,
}

impl FakeOrders {
    pub fn new(orders: &[(&str, i64)], refunds: &[(&str, &str, i64)]) -> Self {
        FakeOrders {
            orders: orders
                .iter()
                .map(|(no, fen)| ((*no).to_owned(), Fen::new(*fen)))
                .collect(),
            refunds: refunds
                .iter()
                .map(|(o, r, fen)| (((*o).to_owned(), (*r).to_owned()), Fen::new(*fen)))
                .collect(),
            lookups: Mutex::new(Vec::new()),
        }
    }

    pub fn lookups(&self) -> Vec<String> {
        self.lookups.lock().expect("lock").clone()
    }
}

#[async_trait]
impl OrderLookup for FakeOrders {
    async fn find_order(&self, out_trade_no: &str) -> Option<OrderSnapshot> {
        self.lookups
            .lock()
            .expect("lock")
            .push(format!("order {out_trade_no}"));
        self.orders.get(out_trade_no).map(|amount| OrderSnapshot {
            amount: *amount,
            provider_data: serde_json::json!({}),
        })
    }

    async fn find_refund(&self, out_trade_no: &str, out_refund_no: &str) -> Option<Fen> {
        self.lookups
            .lock()
            .expect("lock")
            .push(format!("refund {out_trade_no}/{out_refund_no}"));
        self.refunds
            .get(&(out_trade_no.to_owned(), out_refund_no.to_owned()))
            .copied()
    }
}
