//! The operators' page `/admin/` in headless Chromium (tests/browser/admin.mjs, Playwright): an
//! operator signs in, opens a tenant, types an invalid `sign_type`, sees the error beside its
//! line, fixes it, saves, and the change is live for the merchant API at once; switching a
//! provider off and on from the page is live too. The operator then opens a platform, renames it
//! and saves: its secrets stay masked and keep signing for its tenant. Then the console: the
//! operator searches a paid order by its number, opens its timeline, redelivers its webhook event
//! (delivered again), sees the dashboard's charts (a screenshot of them is decoded here and must
//! show the bars) and finds the redelivery in the audit log. The page never shows a planted
//! secret.
//!
//! Needs node, `tests/browser/node_modules` (`npm ci` there) and Chromium. Without them the test
//! is skipped on a developer machine, but fails when `PAYBRIDGE_BROWSER_TESTS=1` or `CI` is set.
//! `PAYBRIDGE_NODE`, `PAYBRIDGE_CHROMIUM` and `PAYBRIDGE_BROWSER_DIR` override where they are.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use paybridge_tests::alipay;
use paybridge_tests::wechat::{self, login, trade_no};
use paybridge_tests::{
    Backend, Gateway, TestTenant, WebhookReceiver, api_key, backends, set_webhook, wechat_api_key,
};
use sha2::{Digest, Sha256};

/// The planted Alipay private key of the test tenants (the harness writes the same file).
const ALIPAY_PRIVATE_KEY: &str = include_str!("../../fixtures/vectors/app_private_pkcs8.pem");

/// How long a saved change may take to be live.
const LIVE_WITHIN: Duration = Duration::from_secs(3);

/// How long the script may stay silent (it is a few seconds in all).
const SCRIPT_SILENCE: Duration = Duration::from_secs(30);

struct Tools {
    node: PathBuf,
    chromium: PathBuf,
    script: PathBuf,
    dir: PathBuf,
}

fn env_flag(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| {
        let v = v.trim();
        !v.is_empty() && v != "0" && !v.eq_ignore_ascii_case("false")
    })
}

/// node, Chromium and the script's node_modules; `None` (skip) when one is missing on a
/// developer machine, a failure when browser tests are required.
fn browser_tools() -> Option<Tools> {
    let required = env_flag("PAYBRIDGE_BROWSER_TESTS") || env_flag("CI");
    let node = PathBuf::from(std::env::var("PAYBRIDGE_NODE").unwrap_or_else(|_| "node".into()));
    let chromium = PathBuf::from(
        std::env::var("PAYBRIDGE_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into()),
    );
    let dir = std::env::var("PAYBRIDGE_BROWSER_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/browser")));
    let script = dir.join("admin.mjs");

    let mut missing = Vec::new();
    match Command::new(&node).arg("--version").output() {
        Ok(out) if out.status.success() => {}
        Ok(out) => missing.push(format!(
            "`{} --version` failed: {}",
            node.display(),
            out.status
        )),
        Err(e) => missing.push(format!("no node ({}: {e})", node.display())),
    }
    if !chromium.is_file() {
        missing.push(format!(
            "no Chromium at {} (Debian: apt-get install chromium)",
            chromium.display()
        ));
    }
    if !script.is_file() {
        missing.push(format!("no script {}", script.display()));
    }
    if !dir
        .join("node_modules/playwright-core/package.json")
        .is_file()
    {
        missing.push(format!(
            "no {}/node_modules/playwright-core (run `npm ci` in {})",
            dir.display(),
            dir.display()
        ));
    }
    if missing.is_empty() {
        return Some(Tools {
            node,
            chromium,
            script,
            dir,
        });
    }
    let why = missing.join("; ");
    assert!(
        !required,
        "browser tests are required (PAYBRIDGE_BROWSER_TESTS=1 or CI is set) but cannot run: {why}"
    );
    eprintln!(
        "SKIPPED admin_browser: {why}. Set PAYBRIDGE_BROWSER_TESTS=1 to make this a failure."
    );
    None
}

/// The node process; killed if the test ends early.
struct Script {
    child: Child,
    stdin: Option<ChildStdin>,
}

impl Script {
    fn answer(&mut self, line: &str) {
        if let Some(stdin) = self.stdin.as_mut() {
            // The script may have died already; its exit status tells why.
            let _ = writeln!(stdin, "{line}").and_then(|()| stdin.flush());
        }
    }
}

impl Drop for Script {
    fn drop(&mut self) {
        drop(self.stdin.take());
        if !matches!(self.child.try_wait(), Ok(Some(_))) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Retry `f` until it succeeds or `within` is over; the last error otherwise.
async fn eventually<F, Fut>(within: Duration, mut f: F) -> Result<(), String>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let deadline = Instant::now() + within;
    loop {
        match f().await {
            Ok(()) => return Ok(()),
            Err(e) if Instant::now() >= deadline => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// Log in a payer, create a WeChat order, check its paySign with the tenant's WeChat key (so the
/// stored secret is still the planted one) and return its `signType`.
async fn wechat_sign_type(gw: &Gateway, tenant: &TestTenant) -> Result<String, String> {
    let openid = login(gw, &tenant.id).await;
    let (status, body) = gw
        .post(
            &tenant.id,
            "/v1/orders",
            &serde_json::json!({
                "provider": "wechat_miniprogram", "out_trade_no": trade_no(), "amount": 880,
                "description": "Mocha", "payer": { "openid": openid },
            }),
        )
        .await;
    if status != 201 {
        return Err(format!("WeChat order: {status} {body}"));
    }
    let cp = &body["client_payment"]["wechat_miniprogram"];
    let sign_type = cp["signType"].as_str().unwrap_or_default().to_owned();
    if sign_type != "MD5" && sign_type != "HMAC-SHA256" {
        return Err(format!("unexpected signType in {body}"));
    }
    let params: BTreeMap<String, String> = ["timeStamp", "nonceStr", "package", "signType"]
        .iter()
        .map(|k| {
            (
                (*k).to_owned(),
                cp[*k].as_str().unwrap_or_default().to_owned(),
            )
        })
        .chain([("appId".to_owned(), tenant.appid.clone())])
        .collect();
    let expected = wechat::sign(&params, &wechat_api_key(&tenant.id), &sign_type);
    if cp["paySign"].as_str() != Some(expected.as_str()) {
        return Err(format!(
            "paySign does not verify with the tenant's WeChat key and {sign_type}: {body}"
        ));
    }
    Ok(sign_type)
}

async fn expect_sign_type(gw: &Gateway, tenant: &TestTenant, want: &str) -> Result<(), String> {
    let got = wechat_sign_type(gw, tenant).await?;
    if got == want {
        Ok(())
    } else {
        Err(format!("WeChat orders are signed with {got}, not {want}"))
    }
}

/// Create an Alipay order: `Ok(())` when the status and error code are the expected ones.
async fn expect_alipay(
    gw: &Gateway,
    tenant: &str,
    want: (u16, Option<&str>),
) -> Result<(), String> {
    let (status, body) = gw
        .post(
            tenant,
            "/v1/orders",
            &serde_json::json!({
                "provider": "alipay_app", "out_trade_no": trade_no(), "amount": 1200,
                "description": "Cake",
            }),
        )
        .await;
    let got = (status, body["error"]["code"].as_str());
    if got != want {
        return Err(format!(
            "Alipay order: wanted {want:?}, got {status} {body}"
        ));
    }
    // Signed with the planted private key: the page kept it.
    if status == 201 && !alipay::order_string_verifies(&alipay::order_string(&body)) {
        return Err(format!("the orderString does not verify: {body}"));
    }
    Ok(())
}

/// The console's part: a paid order whose event was delivered once, the receiver, and where the
/// dashboard's screenshot goes.
struct ConsoleCase {
    out_trade_no: String,
    receiver: WebhookReceiver,
    dashboard: PathBuf,
}

/// The dashboard screenshot (PNG) shows the charts' bars: the first series' colour (#1f6feb: the
/// payments, the amount, the succeeded creates, the delivered webhooks) covers far more pixels
/// than its four legend swatches (about 500) could.
fn check_dashboard_png(path: &std::path::Path) -> Result<(), String> {
    let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let decoder = png::Decoder::new(std::io::BufReader::new(file));
    let mut reader = decoder.read_info().map_err(|e| format!("not a PNG: {e}"))?;
    let size = reader.output_buffer_size().ok_or("the PNG is too large")?;
    let mut buf = vec![0; size];
    let info = reader
        .next_frame(&mut buf)
        .map_err(|e| format!("PNG frame: {e}"))?;
    let channels = match info.color_type {
        png::ColorType::Rgba => 4,
        png::ColorType::Rgb => 3,
        other => return Err(format!("unexpected PNG colour type {other:?}")),
    };
    let bar = [0x1f_u8, 0x6f, 0xeb];
    let blue = buf[..info.buffer_size()]
        .chunks_exact(channels)
        .filter(|px| px.iter().zip(bar).all(|(a, b)| a.abs_diff(b) <= 8))
        .count();
    println!(
        "dashboard screenshot {}x{}: {blue} pixels of bars",
        info.width, info.height
    );
    if blue < 2000 {
        return Err(format!(
            "the dashboard screenshot shows no bars: {blue} pixels of the bars' colour"
        ));
    }
    Ok(())
}

/// What the Rust side checks at each checkpoint of the script.
async fn at_checkpoint(
    gw: &Gateway,
    tenant: &TestTenant,
    console: &ConsoleCase,
    name: &str,
) -> Result<(), String> {
    match name {
        // The page's redeliver scheduled the event: the next pass sends it again.
        "redelivered" => {
            let before = console.receiver.received().len();
            paybridge_server::webhooks::deliver_due(&gw.state, chrono::Utc::now())
                .await
                .map_err(|e| e.to_string())?;
            let after = console.receiver.received().len();
            if after == before + 1 {
                Ok(())
            } else {
                Err(format!(
                    "the redelivered event was sent {} time(s)",
                    after - before
                ))
            }
        }
        "dashboard" => check_dashboard_png(&console.dashboard),
        // A refused save changed nothing: orders are still signed as before.
        "refused-sha1" => expect_sign_type(gw, tenant, "HMAC-SHA256").await,
        // Live within a few seconds; the paySign verifies, so the WeChat key the page left as
        // `{ set = true }` was kept.
        "saved-md5" => eventually(LIVE_WITHIN, || expect_sign_type(gw, tenant, "MD5")).await,
        "alipay-off" => {
            eventually(LIVE_WITHIN, || {
                expect_alipay(gw, &tenant.id, (422, Some("provider_not_enabled")))
            })
            .await
        }
        "alipay-on" => eventually(LIVE_WITHIN, || expect_alipay(gw, &tenant.id, (201, None))).await,
        // The platform's secrets, left as { set = true } by the page, still sign for its tenant.
        "platform-saved" => expect_alipay(gw, PLATFORM_TENANT, (201, None)).await,
        // The page showed the redelivery in the audit log; the API agrees.
        "audited" => {
            let entries = gw
                .state
                .tenant_store
                .audit(Some(&tenant.id), 20)
                .await
                .map_err(|e| e.to_string())?;
            if entries.iter().any(|e| e.action == "redeliver_event") {
                Ok(())
            } else {
                Err("no redeliver_event entry in the audit log".to_owned())
            }
        }
        other => Err(format!("unknown checkpoint {other:?}")),
    }
}

/// A platform (an Alipay third-party app) and the tenant that uses it.
const PLATFORM_ID: &str = "web_platform";
const PLATFORM_TENANT: &str = "sub_web";
const PLATFORM_TOKEN: &str = "202612BBwebplatformtoken00000001";

fn platform_files(base: &str) -> Vec<(String, String)> {
    let platform = format!(
        "id = \"{PLATFORM_ID}\"\nname = \"Web Platform\"\n[alipay_app]\napp_id = \"2021009900000777\"\nprivate_key = '''\n{ALIPAY_PRIVATE_KEY}'''\nalipay_public_key = '''\n{}'''\ngateway_url = \"{base}/sandbox/alipay_app/gateway.do\"\n",
        include_str!("../../providers/alipay-app/sandbox-keys/alipay_sandbox_public.pem")
    );
    let tenant = format!(
        "id = \"{PLATFORM_TENANT}\"\napi_keys = [\"{}\"]\n[providers.alipay_app]\nplatform = \"{PLATFORM_ID}\"\napp_auth_token = \"{PLATFORM_TOKEN}\"\nauth_app_id = \"2021000000000777\"\nseller_id = \"2088000000000777\"\n",
        paybridge_core::tenant::hash_api_key(&api_key(PLATFORM_TENANT))
    );
    vec![
        (format!("platforms/{PLATFORM_ID}.toml"), platform),
        (format!("tenants/{PLATFORM_TENANT}.toml"), tenant),
    ]
}

async fn run_page_test(tools: &Tools, backend: &Backend) {
    let tenant = TestTenant::wechat("shop_web", 7, "HMAC-SHA256");
    let admin_token = format!("adm-{}", uuid::Uuid::new_v4().simple());
    let digest = format!(
        "sha256:{}",
        hex::encode(Sha256::digest(admin_token.as_bytes()))
    );
    let receiver = WebhookReceiver::start().await;
    let gw = Gateway::start_with_files(
        backend,
        std::slice::from_ref(&tenant),
        platform_files,
        |config| {
            config.admin.tokens = vec![digest];
            set_webhook(config, &tenant.id, &receiver.url, "whsec_console_web");
        },
    )
    .await;
    let name = backend.name();
    expect_sign_type(&gw, &tenant, "HMAC-SHA256").await.unwrap();
    expect_alipay(&gw, &tenant.id, (201, None)).await.unwrap();
    // A paid order whose webhook event was delivered once, for the console's steps.
    let (paid, _) = wechat::create_order(&gw, &tenant.id, 1288).await;
    wechat::pay(&gw, &tenant, &paid, "deliver").await;
    paybridge_server::webhooks::deliver_due(&gw.state, chrono::Utc::now())
        .await
        .unwrap();
    assert!(
        !receiver.received().is_empty(),
        "{name}: the event was delivered"
    );
    // Today's statement, for the Statements tab.
    let today = paybridge_core::beijing::local(chrono::Utc::now()).date_naive();
    let tenant_now = gw.state.tenants.get(&tenant.id).unwrap();
    let statement = paybridge_server::usecases::statements::run(
        &gw.state,
        &tenant_now,
        "wechat_miniprogram",
        today,
    )
    .await
    .unwrap();
    assert_eq!(statement.status, "reconciled", "{name}: {statement:?}");
    // Its statement.reconciled event goes out now, so that the redelivery below counts alone.
    paybridge_server::webhooks::deliver_due(&gw.state, chrono::Utc::now())
        .await
        .unwrap();
    let console = ConsoleCase {
        out_trade_no: paid,
        receiver,
        dashboard: std::env::temp_dir().join(format!(
            "paybridge-dashboard-{name}-{}.png",
            uuid::Uuid::new_v4().simple()
        )),
    };

    let secrets = serde_json::json!([
        wechat_api_key(&tenant.id),
        format!("secret-{}", tenant.id),
        ALIPAY_PRIVATE_KEY.trim(),
        api_key(&tenant.id),
        admin_token,
        PLATFORM_TOKEN,
    ]);
    let screenshot = std::env::temp_dir().join(format!(
        "paybridge-admin-{name}-{}.png",
        uuid::Uuid::new_v4().simple()
    ));
    let started = Instant::now();
    let mut child = Command::new(&tools.node)
        .arg(&tools.script)
        .arg(&gw.base)
        .arg(&admin_token)
        .arg(&tenant.id)
        .current_dir(&tools.dir)
        .env("PAYBRIDGE_BROWSER_SECRETS", secrets.to_string())
        .env("PAYBRIDGE_CHROMIUM", &tools.chromium)
        .env("PAYBRIDGE_SCREENSHOT", &screenshot)
        .env("PAYBRIDGE_PLATFORM_ID", PLATFORM_ID)
        .env("PAYBRIDGE_CONSOLE_ORDER", &console.out_trade_no)
        .env("PAYBRIDGE_STATEMENT_DAY", today.to_string())
        .env("PAYBRIDGE_DASHBOARD_SCREENSHOT", &console.dashboard)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {}: {e}", tools.node.display()));
    let stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let stdin = child.stdin.take();
    let mut script = Script { child, stdin };

    // The script's stdout, line by line, to this async test.
    let (lines_tx, mut lines) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let stderr_reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });

    let mut checkpoints = Vec::new();
    let mut failure: Option<String> = None;
    let mut passed = false;
    loop {
        let line = match tokio::time::timeout(SCRIPT_SILENCE, lines.recv()).await {
            Ok(Some(line)) => line,
            Ok(None) => break,
            Err(_) => {
                failure.get_or_insert(format!("the script was silent for {SCRIPT_SILENCE:?}"));
                break;
            }
        };
        println!("{name}: {line}");
        if let Some(checkpoint) = line.strip_prefix("@@checkpoint ") {
            checkpoints.push(checkpoint.to_owned());
            let checking = Instant::now();
            match at_checkpoint(&gw, &tenant, &console, checkpoint).await {
                Ok(()) => {
                    println!(
                        "{name}: checked {checkpoint} in {} ms",
                        checking.elapsed().as_millis()
                    );
                    script.answer("ok");
                }
                Err(e) => {
                    let msg = format!("checkpoint {checkpoint}: {e}");
                    script.answer(&format!("the Rust side failed: {msg}"));
                    failure.get_or_insert(msg);
                }
            }
        } else if line == "@@pass" {
            passed = true;
        }
    }
    drop(script.stdin.take());
    let status = script.child.wait().expect("wait for node");
    let errors = stderr_reader.join().unwrap_or_default();
    if !errors.is_empty() {
        eprintln!("{name}: script stderr:\n{errors}");
    }
    println!(
        "{name}: browser script ran {:.1}s; screenshot {}",
        started.elapsed().as_secs_f64(),
        screenshot.display()
    );
    if let Some(msg) = failure {
        panic!("{name}: {msg}\n{errors}");
    }
    assert!(
        status.success() && passed,
        "{name}: the browser script failed ({status}):\n{errors}"
    );
    assert_eq!(
        checkpoints,
        [
            "refused-sha1",
            "saved-md5",
            "alipay-off",
            "alipay-on",
            "platform-saved",
            "redelivered",
            "dashboard",
            "audited"
        ],
        "{name}: the script skipped a step"
    );
    // After the page's edits: MD5, Alipay on, and the planted secrets still work.
    expect_sign_type(&gw, &tenant, "MD5").await.unwrap();
    expect_alipay(&gw, &tenant.id, (201, None)).await.unwrap();
    gw.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_fixes_a_tenant_in_the_browser_and_the_change_is_live() {
    let Some(tools) = browser_tools() else {
        return;
    };
    for backend in backends() {
        run_page_test(&tools, &backend).await;
    }
}
