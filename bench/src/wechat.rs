//! `wechat-notify` and `wechat-v3-notify`: pending WeChat orders are created through the API
//! first (not measured), then each gets one genuinely signed, distinct payment notification at
//! `POST /notify/{tenant}/wechat_miniprogram`, as the sandbox simulator sends it: API v2 (XML,
//! HMAC-SHA256) for the `demo` tenant, API v3 (the transaction sealed with AES-256-GCM, signed
//! with RSA in `Wechatpay-*` headers, the sandbox's WeChat Pay public key) for `demo_v3`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use bytes::Bytes;
use chrono::Utc;
use hyper::Method;
use paybridge_wechat::SignType;
use rand::Rng;
use rand::distr::Alphanumeric;
use secrecy::SecretString;

use crate::Ctx;
use crate::gateway::{API_KEY, DemoTenant, Gateway, V3_API_KEY, V3Tenant};
use crate::load::{self, LoadConfig, PreparedRequest, Workload, f64_of};
use crate::report::ScenarioResult;

pub const NAME: &str = "wechat-notify";
pub const V3_NAME: &str = "wechat-v3-notify";

/// The sandbox's WeChat Pay public-key private half: v3 notifications are signed with it.
const V3_SIGNING_KEY: &str = include_str!(
    "../../providers/wechat-miniprogram/sandbox-keys/wechatpay_sandbox_pub_key_private.pem"
);

/// Which WeChat Pay API the notifications speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    V2,
    V3,
}

impl Protocol {
    /// The scenario's name.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::V2 => NAME,
            Protocol::V3 => V3_NAME,
        }
    }

    fn api_key(self) -> &'static str {
        match self {
            Protocol::V2 => API_KEY,
            Protocol::V3 => V3_API_KEY,
        }
    }
}
/// The success acknowledgement's marker (`paybridge_wechat::notify::ACK_SUCCESS`).
const ACK_MARKER: &[u8] = b"<return_code><![CDATA[SUCCESS]]>";
/// Orders checked after the run.
const VERIFY_SAMPLE: usize = 100;

fn out_trade_no(run_tag: u32, i: usize) -> String {
    format!("WN{run_tag:06}{i:09}")
}

/// A notification: its body and its own headers.
type Notification = (Bytes, Vec<(&'static str, String)>);

fn amount(i: usize) -> i64 {
    i64::try_from(100 + i % 900).unwrap_or(100)
}

/// Creating the pending orders.
struct CreateOrders {
    run_tag: u32,
    count: usize,
    next: AtomicUsize,
    openid: String,
    authorization: String,
}

impl Workload for CreateOrders {
    fn next_request(&self) -> Option<PreparedRequest> {
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        if i >= self.count {
            return None;
        }
        let body = serde_json::json!({
            "provider": "wechat_miniprogram",
            "out_trade_no": out_trade_no(self.run_tag, i),
            "amount": amount(i),
            "description": "bench",
            "payer": {"openid": self.openid},
        });
        Some(PreparedRequest {
            path: "/v1/orders".to_owned(),
            body: Bytes::from(body.to_string()),
            tag: i,
            headers: Vec::new(),
        })
    }

    fn is_success(&self, status: u16, _body: &[u8]) -> bool {
        status == 201
    }

    fn authorization(&self) -> Option<&str> {
        Some(&self.authorization)
    }
}

/// The pre-built notifications, each sent once.
struct Notifications {
    path: String,
    protocol: Protocol,
    requests: Vec<Notification>,
    next: AtomicUsize,
}

impl Workload for Notifications {
    fn next_request(&self) -> Option<PreparedRequest> {
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        let (body, headers) = self.requests.get(i)?.clone();
        Some(PreparedRequest {
            path: self.path.clone(),
            body,
            tag: i,
            headers,
        })
    }

    fn is_success(&self, status: u16, body: &[u8]) -> bool {
        match self.protocol {
            Protocol::V2 => {
                status == 200 && body.windows(ACK_MARKER.len()).any(|w| w == ACK_MARKER)
            }
            // v3: any 2xx acknowledges (paybridge answers 204).
            Protocol::V3 => (200..300).contains(&status),
        }
    }

    fn content_type(&self) -> &'static str {
        match self.protocol {
            Protocol::V2 => "text/xml",
            Protocol::V3 => "application/json",
        }
    }

    fn authorization(&self) -> Option<&str> {
        None
    }
}

fn nonce() -> String {
    rand::rng()
        .sample_iter(&Alphanumeric)
        .take(32)
        .map(char::from)
        .collect()
}

/// What every notification of the run shares.
struct NotificationSigner<'a> {
    tenant: &'a DemoTenant,
    sign_type: SignType,
    api_key: SecretString,
    openid: &'a str,
    time_end: String,
}

impl NotificationSigner<'_> {
    /// The signed notification of a paid order, with the fields WeChat sends (and the simulator
    /// builds): no `sign_type` field, signed with the tenant's type, which the order recorded.
    fn notification(
        &self,
        order: &str,
        total_fee: i64,
        transaction_id: &str,
    ) -> anyhow::Result<Bytes> {
        let total_fee = total_fee.to_string();
        let mut fields: BTreeMap<String, String> = [
            ("return_code", "SUCCESS"),
            ("return_msg", "OK"),
            ("appid", self.tenant.appid.as_str()),
            ("mch_id", self.tenant.mch_id.as_str()),
            ("result_code", "SUCCESS"),
            ("openid", self.openid),
            ("is_subscribe", "N"),
            ("trade_type", "JSAPI"),
            ("bank_type", "OTHERS"),
            ("total_fee", total_fee.as_str()),
            ("cash_fee", total_fee.as_str()),
            ("fee_type", "CNY"),
            ("transaction_id", transaction_id),
            ("out_trade_no", order),
            ("time_end", self.time_end.as_str()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        fields.insert("nonce_str".to_owned(), nonce());
        let sign = paybridge_wechat::sign::sign(&fields, self.sign_type, &self.api_key);
        fields.insert("sign".to_owned(), sign);
        let xml = paybridge_wechat::xml::encode("xml", &fields)
            .map_err(|e| anyhow!("encoding a notification: {e}"))?;
        Ok(Bytes::from(xml))
    }
}

/// What every v3 notification of the run shares: the transaction sealed under the APIv3 key
/// (AAD `transaction`), the envelope signed over `timestamp\nnonce\nbody\n`.
struct V3Signer<'a> {
    tenant: &'a V3Tenant,
    key: aws_lc_rs::rsa::KeyPair,
    openid: &'a str,
    success_time: String,
    rng: aws_lc_rs::rand::SystemRandom,
}

impl V3Signer<'_> {
    fn new<'a>(tenant: &'a V3Tenant, openid: &'a str) -> anyhow::Result<V3Signer<'a>> {
        use base64::Engine;
        let der: String = V3_SIGNING_KEY
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .collect();
        let der = base64::engine::general_purpose::STANDARD
            .decode(der)
            .context("the sandbox v3 key is not base64 PEM")?;
        let key = aws_lc_rs::rsa::KeyPair::from_pkcs8(&der)
            .map_err(|e| anyhow!("the sandbox v3 key: {e}"))?;
        let beijing =
            chrono::FixedOffset::east_opt(8 * 3600).ok_or_else(|| anyhow!("no +08:00 offset"))?;
        Ok(V3Signer {
            tenant,
            key,
            openid,
            success_time: Utc::now()
                .with_timezone(&beijing)
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, false),
            rng: aws_lc_rs::rand::SystemRandom::new(),
        })
    }

    fn notification(
        &self,
        order: &str,
        total: i64,
        transaction_id: &str,
    ) -> anyhow::Result<Notification> {
        use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD;
        let t = self.tenant;
        let transaction = serde_json::json!({
            "mchid": t.mch_id, "appid": t.appid, "out_trade_no": order,
            "transaction_id": transaction_id, "trade_type": "JSAPI", "trade_state": "SUCCESS",
            "trade_state_desc": "支付成功", "bank_type": "OTHERS", "success_time": self.success_time,
            "payer": {"openid": self.openid},
            "amount": {"total": total, "payer_total": total, "currency": "CNY", "payer_currency": "CNY"},
        });
        let resource_nonce: String = nonce().chars().take(12).collect();
        let sealing = LessSafeKey::new(
            UnboundKey::new(&AES_256_GCM, t.apiv3_key.as_bytes())
                .map_err(|_| anyhow!("apiv3_key is not 32 bytes"))?,
        );
        let mut sealed = transaction.to_string().into_bytes();
        sealing
            .seal_in_place_append_tag(
                Nonce::try_assume_unique_for_key(resource_nonce.as_bytes())
                    .map_err(|_| anyhow!("nonce"))?,
                Aad::from(b"transaction"),
                &mut sealed,
            )
            .map_err(|_| anyhow!("sealing a resource"))?;
        let body = serde_json::json!({
            "id": format!("EV-{transaction_id}"), "create_time": self.success_time,
            "resource_type": "encrypt-resource", "event_type": "TRANSACTION.SUCCESS",
            "summary": "支付成功",
            "resource": {
                "original_type": "transaction", "algorithm": "AEAD_AES_256_GCM",
                "ciphertext": b64.encode(&sealed), "associated_data": "transaction",
                "nonce": resource_nonce,
            },
        })
        .to_string();
        let timestamp = Utc::now().timestamp().to_string();
        let header_nonce = nonce();
        let message = format!("{timestamp}\n{header_nonce}\n{body}\n");
        let mut signature = vec![0; self.key.public_modulus_len()];
        self.key
            .sign(
                &aws_lc_rs::signature::RSA_PKCS1_SHA256,
                &self.rng,
                message.as_bytes(),
                &mut signature,
            )
            .map_err(|e| anyhow!("signing a v3 notification: {e}"))?;
        let headers = vec![
            ("wechatpay-serial", t.public_key_id.clone()),
            ("wechatpay-signature", b64.encode(&signature)),
            ("wechatpay-timestamp", timestamp),
            ("wechatpay-nonce", header_nonce),
            (
                "wechatpay-signature-type",
                "WECHATPAY2-SHA256-RSA2048".to_owned(),
            ),
        ];
        Ok((Bytes::from(body), headers))
    }
}

/// The orders and their signed notifications, made before measuring.
pub struct Prepared {
    protocol: Protocol,
    orders: Vec<(String, String)>,
    requests: Vec<Notification>,
    notes: Vec<String>,
}

impl Prepared {
    /// Two sets of notifications: the first half of the orders, and the rest.
    pub fn split(self) -> (Prepared, Prepared) {
        let Prepared {
            protocol,
            mut orders,
            mut requests,
            notes,
        } = self;
        let half = requests.len() / 2;
        let (later_orders, later_requests) = (orders.split_off(half), requests.split_off(half));
        (
            Prepared {
                protocol,
                orders,
                requests,
                notes: notes.clone(),
            },
            Prepared {
                protocol,
                orders: later_orders,
                requests: later_requests,
                notes,
            },
        )
    }
}

/// Set-up: log in, create the pending orders through the API, and sign one notification each.
pub async fn prepare(
    ctx: &Ctx<'_>,
    gateway: &Gateway,
    protocol: Protocol,
) -> anyhow::Result<Prepared> {
    let tenant = &ctx.env.tenant;
    let name = protocol.name();
    let api_key = protocol.api_key();
    let sign_type = SignType::parse(&tenant.sign_type)
        .ok_or_else(|| anyhow!("demo tenant: unknown sign_type {:?}", tenant.sign_type))?;

    // The payer: one openid from the sandbox's login.
    let code = format!("bench-{}-{}", ctx.run_tag, ctx.seed);
    let (status, body) = load::one_request(
        gateway.addr,
        Method::POST,
        "/v1/wechat_miniprogram/sessions",
        Some(serde_json::json!({ "code": code }).to_string()),
        Some(api_key),
        Duration::from_secs(10),
    )
    .await?;
    if status != 200 {
        bail!(
            "POST /v1/wechat_miniprogram/sessions: HTTP {status}: {}",
            String::from_utf8_lossy(&body)
        );
    }
    let session: serde_json::Value = serde_json::from_slice(&body)?;
    let openid = session
        .get("openid")
        .and_then(serde_json::Value::as_str)
        .ok_or_else(|| anyhow!("the session answer has no openid"))?
        .to_owned();

    // Set-up (not measured): the pending orders, through the API.
    let count = ctx.cli.notify_orders;
    println!(
        "  {name} set-up: creating {count} pending WeChat orders ({} connections)",
        ctx.cli.connections
    );
    let setup = load::run(
        gateway.addr,
        Arc::new(CreateOrders {
            run_tag: ctx.run_tag,
            count,
            next: AtomicUsize::new(0),
            openid: openid.clone(),
            authorization: format!("Bearer {api_key}"),
        }),
        LoadConfig {
            warmup: Duration::ZERO,
            duration: Duration::from_secs(ctx.cli.setup_timeout),
            ..ctx.load_config(gateway)
        },
    )
    .await?;
    let mut created = setup.success_tags.clone();
    created.sort_unstable();
    let setup_line = format!(
        "set-up: {} of {count} orders created in {:.1} s ({:.0} orders/s){}",
        created.len(),
        setup.window.as_secs_f64(),
        f64_of(u64::try_from(created.len())?) / setup.window.as_secs_f64().max(1e-9),
        if setup.exhausted {
            String::new()
        } else {
            format!(" (stopped at --setup-timeout {} s)", ctx.cli.setup_timeout)
        }
    );
    println!("  {setup_line}");
    if setup.error_count() > 0 {
        println!("  set-up errors: {:?}", setup.errors);
        for example in &setup.error_examples {
            println!("    {example}");
        }
    }
    if created.is_empty() {
        bail!("no WeChat order could be created");
    }

    // The notifications, built and signed before measuring.
    let built = Instant::now();
    let date = Utc::now().format("%Y%m%d").to_string();
    let orders: Vec<(String, String)> = created
        .iter()
        .map(|&i| {
            let order = out_trade_no(ctx.run_tag, i);
            (order, format!("4200{date}{:06}{i:010}", ctx.run_tag))
        })
        .collect();
    let (requests, how) = match protocol {
        Protocol::V2 => {
            let signer = NotificationSigner {
                tenant,
                sign_type,
                api_key: SecretString::from(tenant.api_key.clone()),
                openid: &openid,
                time_end: paybridge_core::beijing::format_compact(Utc::now()),
            };
            let mut requests = Vec::with_capacity(created.len());
            for (&i, (order, transaction_id)) in created.iter().zip(&orders) {
                let body = signer.notification(order, amount(i), transaction_id)?;
                requests.push((body, Vec::new()));
            }
            (requests, sign_type.to_string())
        }
        Protocol::V3 => (
            sign_v3(v3_tenant(ctx)?, &openid, &created, &orders)?,
            "v3: AES-256-GCM + RSA-2048, on both cores".to_owned(),
        ),
    };
    let build_line = format!(
        "built and signed {} notifications ({how}) in {:.2} s",
        requests.len(),
        built.elapsed().as_secs_f64()
    );
    println!("  {build_line}");
    Ok(Prepared {
        protocol,
        orders,
        requests,
        notes: vec![setup_line, build_line],
    })
}

/// The v3 demo tenant of this round.
fn v3_tenant<'a>(ctx: &Ctx<'a>) -> anyhow::Result<&'a V3Tenant> {
    ctx.env
        .v3_tenant
        .as_ref()
        .ok_or_else(|| anyhow!("the round was prepared without the v3 tenant"))
}

/// The v3 notifications, signed on two threads (set-up, not measured: an RSA signature each).
fn sign_v3(
    tenant: &V3Tenant,
    openid: &str,
    created: &[usize],
    orders: &[(String, String)],
) -> anyhow::Result<Vec<Notification>> {
    let half = created.len().div_ceil(2).max(1);
    std::thread::scope(|scope| {
        let parts: Vec<_> = created
            .chunks(half)
            .zip(orders.chunks(half))
            .map(|(indexes, orders)| {
                scope.spawn(move || -> anyhow::Result<Vec<Notification>> {
                    let signer = V3Signer::new(tenant, openid)?;
                    indexes
                        .iter()
                        .zip(orders)
                        .map(|(&i, (order, transaction_id))| {
                            signer.notification(order, amount(i), transaction_id)
                        })
                        .collect()
                })
            })
            .collect();
        let mut all = Vec::with_capacity(created.len());
        for part in parts {
            all.extend(
                part.join()
                    .map_err(|_| anyhow!("a signing thread panicked"))??,
            );
        }
        Ok(all)
    })
}

/// The measured run: every prepared notification, then a check of a sample.
pub async fn measure(
    ctx: &Ctx<'_>,
    gateway: &Gateway,
    prepared: Prepared,
) -> anyhow::Result<ScenarioResult> {
    let Prepared {
        protocol,
        orders,
        requests,
        notes,
    } = prepared;
    let name = protocol.name();
    let tenant_id = match protocol {
        Protocol::V2 => ctx.env.tenant.id.as_str(),
        Protocol::V3 => v3_tenant(ctx)?.id.as_str(),
    };
    println!(
        "  {name}: {} connections, warm-up {} s, measuring {} s or until the orders run out",
        ctx.cli.connections, ctx.cli.warmup, ctx.cli.duration
    );
    let workload = Arc::new(Notifications {
        path: format!("/notify/{tenant_id}/wechat_miniprogram"),
        protocol,
        requests,
        next: AtomicUsize::new(0),
    });
    let result = load::run(gateway.addr, workload, ctx.load_config(gateway)).await?;

    let verify_line =
        verify_sample(gateway, protocol.api_key(), &orders, &result.success_tags).await?;
    println!("  {verify_line}");

    let mut scenario = ScenarioResult::measured(ctx, name, &result, gateway)?;
    scenario.set_ratio(ctx.limits, crate::limits::Limit::SqliteCommits);
    if result.exhausted {
        scenario
            .notes
            .push("the orders ran out before the duration ended".to_owned());
    }
    scenario.notes.extend(notes);
    scenario.notes.push(verify_line);
    Ok(scenario)
}

/// `GET /v1/orders/{out_trade_no}` on about 100 acknowledged orders, spread over the run: each
/// must be `paid` with the notification's transaction id.
async fn verify_sample(
    gateway: &Gateway,
    api_key: &str,
    orders: &[(String, String)],
    acknowledged: &[usize],
) -> anyhow::Result<String> {
    let mut acked = acknowledged.to_vec();
    acked.sort_unstable();
    if acked.is_empty() {
        return Ok("check: no acknowledged notification to verify".to_owned());
    }
    let step = acked.len().div_ceil(VERIFY_SAMPLE).max(1);
    let (mut checked, mut paid) = (0usize, 0usize);
    let mut problems = Vec::new();
    for &i in acked.iter().step_by(step) {
        let (order, transaction_id) = orders
            .get(i)
            .ok_or_else(|| anyhow!("notification {i} has no order"))?;
        let (status, body) = load::one_request(
            gateway.addr,
            Method::GET,
            &format!("/v1/orders/{order}"),
            None,
            Some(api_key),
            Duration::from_secs(10),
        )
        .await
        .with_context(|| format!("GET /v1/orders/{order}"))?;
        checked += 1;
        let view: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        let state = view.get("status").and_then(serde_json::Value::as_str);
        let trade_no = view
            .get("provider_trade_no")
            .and_then(serde_json::Value::as_str);
        if status == 200 && state == Some("paid") && trade_no == Some(transaction_id.as_str()) {
            paid += 1;
        } else if problems.len() < 3 {
            problems.push(format!(
                "{order}: HTTP {status} status {state:?} provider_trade_no {trade_no:?}"
            ));
        }
    }
    let mut line = format!(
        "check: {paid}/{checked} sampled acknowledged orders are paid with the notified transaction_id"
    );
    if !problems.is_empty() {
        line.push_str(&format!(" — NOT PAID: {}", problems.join("; ")));
    }
    Ok(line)
}
