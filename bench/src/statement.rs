//! `statement`: reconcile a WeChat Pay bill of N lines against N orders, in this process, pinned
//! to one core, through the same use case the statements worker runs
//! (`usecases::statements::reconcile`: the day's orders read into the run's table, one read of
//! the bill that decides each line, then the fees written, the paybridge-only pass). Reported
//! beside a plain parse of the same file: lines/s, the ratio to the parse, CPU ms, and how much
//! the peak RSS grew.
//!
//! The orders are written straight into a fresh SQLite database (WAL, `synchronous=FULL`, as the
//! gateway opens it): N WeChat orders paid during one Beijing day, each with its transaction id.
//! The bill is written from the same numbers in WeChat's `bill_type=ALL` layout with a checked
//! summary, so that every line matches and the run records N fees.

use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use chrono::{NaiveDate, Utc};
use paybridge_core::statement::BillSource;
use paybridge_server::db::entities::order;
use paybridge_server::usecases::statements::{Bill, reconcile};
use sea_orm::{ActiveValue::Set, EntityTrait, TransactionTrait};

use crate::load::f64_of;
use crate::procfs;

pub const TENANT: &str = "stmt_bench";
const HEADER: &str = "交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,付款银行,货币种类,应结订单金额,代金券金额,微信退款单号,商户退款单号,退款金额,充值券退款金额,退款类型,退款状态,商品名称,商户数据包,手续费,费率,订单金额,申请退款金额,费率备注";
const SUMMARY: &str =
    "总交易单数,应结订单总金额,退款总金额,充值券退款总金额,手续费总金额,订单总金额,申请退款总金额";
const ROWS_PER_STATEMENT: u64 = 1_000;
const ORDERS_PER_TRANSACTION: u64 = 50_000;

/// What the run measured.
#[derive(Debug, Clone)]
pub struct StatementResult {
    pub lines: u64,
    pub bill_bytes: u64,
    pub seed: Duration,
    pub parse_wall: Duration,
    pub parse_cpu: Duration,
    pub reconcile_wall: Duration,
    pub reconcile_cpu: Duration,
    /// The same day run again with the same bill (every fee already recorded).
    pub rerun_wall: Duration,
    pub rerun_cpu: Duration,
    pub rss_before_kib: u64,
    pub rss_peak_kib: u64,
    pub matched: i64,
    pub fees: i64,
}

impl StatementResult {
    pub fn print(&self) {
        let per_s = |d: Duration| f64_of(self.lines) / d.as_secs_f64().max(1e-9);
        println!(
            "== statement: {} lines against {} orders",
            self.lines, self.lines
        );
        println!(
            "  bill: {:.1} MiB; orders seeded in {:.1} s",
            f64_of(self.bill_bytes) / 1_048_576.0,
            self.seed.as_secs_f64()
        );
        println!(
            "  plain parse:  {:>8.0} lines/s  (wall {:.2} s, CPU {:.2} s)",
            per_s(self.parse_wall),
            self.parse_wall.as_secs_f64(),
            self.parse_cpu.as_secs_f64()
        );
        println!(
            "  reconcile:    {:>8.0} lines/s  (wall {:.2} s, CPU {:.2} s; {} matched, fees {} fen)",
            per_s(self.reconcile_wall),
            self.reconcile_wall.as_secs_f64(),
            self.reconcile_cpu.as_secs_f64(),
            self.matched,
            self.fees
        );
        println!(
            "  re-run:       {:>8.0} lines/s  (wall {:.2} s, CPU {:.2} s; the same bill again, its fees already recorded)",
            per_s(self.rerun_wall),
            self.rerun_wall.as_secs_f64(),
            self.rerun_cpu.as_secs_f64()
        );
        println!(
            "  reconcile / parse: {:.2}x wall, {:.2}x CPU (the run reads the day's orders, parses the bill once, writes a fee per order)",
            self.reconcile_wall.as_secs_f64() / self.parse_wall.as_secs_f64().max(1e-9),
            self.reconcile_cpu.as_secs_f64() / self.parse_cpu.as_secs_f64().max(1e-9)
        );
        println!(
            "  RSS: {:.1} MiB before, peak {:.1} MiB during the run: +{:.1} MiB",
            f64_of(self.rss_before_kib) / 1024.0,
            f64_of(self.rss_peak_kib) / 1024.0,
            f64_of(self.rss_peak_kib.saturating_sub(self.rss_before_kib)) / 1024.0
        );
    }
}

fn amount(n: u64) -> i64 {
    i64::try_from(100 + (n * 7_919) % 99_900).unwrap_or(100)
}

/// 0.6 %, rounded half up.
fn fee(fen: i64) -> i64 {
    (fen * 6 + 500) / 1000
}

fn yuan(fen: i64) -> String {
    paybridge_core::money::Fen::new(fen).to_yuan()
}

fn out_trade_no(n: u64) -> String {
    format!("STMT{n:010}")
}

fn trade_no(n: u64) -> String {
    format!("4200001234202612{n:012}")
}

/// The CPU time of this process so far.
fn cpu() -> anyhow::Result<Duration> {
    let ticks = procfs::cpu_ticks(std::process::id())?;
    let per_second = procfs::clock_ticks_per_second();
    Ok(Duration::from_micros(ticks * 1_000_000 / per_second))
}

fn rss_kib(field: &str) -> u64 {
    procfs::status_field(std::process::id(), field)
        .and_then(|v| v.split_whitespace().next().and_then(|n| n.parse().ok()))
        .unwrap_or(0)
}

pub async fn seed(db_url: &str, n: u64, day: NaiveDate) -> anyhow::Result<()> {
    let connections = paybridge_server::db::connect(db_url)
        .await
        .with_context(|| format!("connecting to {db_url}"))?;
    let db = connections.write;
    drop(connections.read);
    let (start, _) = paybridge_core::beijing::day_range(day).context("a day")?;
    let mut next = 0u64;
    while next < n {
        let txn = db.begin().await?;
        let end = n.min(next + ORDERS_PER_TRANSACTION);
        while next < end {
            let chunk = end.min(next + ROWS_PER_STATEMENT);
            let mut rows = Vec::new();
            for i in next..chunk {
                // Spread over the day (Beijing), a few per second.
                let paid_at = start
                    + chrono::Duration::milliseconds(i64::try_from(i * 80_000_000 / n.max(1))?);
                rows.push(order::ActiveModel {
                    // As the gateway makes them: UUIDv7, in the order the orders came.
                    id: Set(paybridge_server::store::new_id()),
                    tenant_id: Set(TENANT.to_owned()),
                    out_trade_no: Set(out_trade_no(i)),
                    provider: Set("wechat_miniprogram".to_owned()),
                    amount: Set(amount(i)),
                    currency: Set("CNY".to_owned()),
                    description: Set("Bench coffee".to_owned()),
                    payer_openid: Set(Some(format!("oBENCH{:012}", i % 50_000))),
                    client_ip: Set(None),
                    attach: Set(None),
                    expires_at: Set(paid_at + chrono::Duration::hours(2)),
                    status: Set("paid".to_owned()),
                    flags: Set("[]".to_owned()),
                    provider_trade_no: Set(Some(trade_no(i))),
                    refunded_amount: Set(0),
                    paid_at: Set(Some(paid_at)),
                    client_payment: Set(None),
                    provider_data: Set("{}".to_owned()),
                    last_notified_at: Set(Some(paid_at)),
                    created_at: Set(paid_at - chrono::Duration::seconds(30)),
                    next_check_at: Set(None),
                    updated_at: Set(paid_at),
                });
            }
            order::Entity::insert_many(rows)
                .exec_without_returning(&txn)
                .await
                .context("inserting orders")?;
            next = chunk;
        }
        txn.commit().await?;
    }
    db.close().await?;
    Ok(())
}

/// The bill of those orders; its size in bytes.
pub fn write_bill(path: &Path, n: u64, day: NaiveDate) -> anyhow::Result<u64> {
    let mut out = BufWriter::new(std::fs::File::create(path)?);
    write!(out, "\u{feff}{HEADER}\r\n")?;
    let (mut gross, mut fees) = (0i64, 0i64);
    for i in 0..n {
        let fen = amount(i);
        let f = fee(fen);
        gross += fen;
        fees += f;
        let second = i * 80_000 / n.max(1);
        let time = format!(
            "{day} {:02}:{:02}:{:02}",
            second / 3600,
            second / 60 % 60,
            second % 60
        );
        write!(
            out,
            "`{time},`wxd930ea5d5a258f4f,`1900000109,`0,`,`{},`{},`oBENCH{:012},`JSAPI,`SUCCESS,`OTHERS,`CNY,`{amount},`0.00,`0,`0,`0.00,`0.00,`,`,`Bench coffee,`,`{fee},`0.60%,`{amount},`0.00,`\r\n",
            trade_no(i),
            out_trade_no(i),
            i % 50_000,
            amount = yuan(fen),
            fee = yuan(f),
        )?;
    }
    write!(
        out,
        "{SUMMARY}\r\n`{n},`{},`0.00,`0.00,`{},`{},`0.00\r\n",
        yuan(gross),
        yuan(fees),
        yuan(gross)
    )?;
    out.flush()?;
    Ok(std::fs::metadata(path)?.len())
}

/// The tenant whose bill is reconciled, its WeChat Pay endpoints at `api_base`.
pub fn tenant_toml_at(api_base: &str) -> String {
    format!(
        r#"id = "{TENANT}"
name = "Statement benchmark"
api_keys = []

[providers.wechat_miniprogram]
enabled = true
appid = "wxd930ea5d5a258f4f"
mch_id = "1900000109"
api_key = "sandboxsandboxsandboxsandbox0001"
app_secret = "sandbox-app-secret"
sign_type = "HMAC-SHA256"
api_base = "{api_base}"
login_base = "{api_base}"
"#
    )
}

fn tenant_toml() -> String {
    tenant_toml_at("http://127.0.0.1:9/sandbox/wechat_miniprogram")
}

/// Run it in `dir` (a fresh folder), this thread pinned to `core` (the runtime's blocking
/// threads and the SQLite writer are started from it, and inherit it).
pub async fn run(dir: &Path, lines: u64, core: usize) -> anyhow::Result<StatementResult> {
    if !core_affinity::set_for_current(core_affinity::CoreId { id: core }) {
        bail!("cannot pin to core {core}");
    }
    let day = paybridge_core::beijing::local(Utc::now()).date_naive() - chrono::Duration::days(1);
    let db_path = dir.join("statement.db");
    let db_url = format!("sqlite://{}?mode=rwc", db_path.display());
    println!("== statement: seeding {lines} paid orders of {day}");
    let started = Instant::now();
    seed(&db_url, lines, day).await?;
    let seed_time = started.elapsed();
    let bill_path = dir.join("bill.txt");
    let bill_bytes = write_bill(&bill_path, lines, day)?;

    // A plain parse of the file.
    let (wall, before) = (Instant::now(), cpu()?);
    let file = std::fs::File::open(&bill_path)?;
    let summary = paybridge_wechat::bill::parse_trade_bill(
        std::io::BufReader::with_capacity(64 * 1024, file),
        |_| Ok(()),
    )
    .map_err(|e| anyhow::anyhow!("the bill does not parse: {e}"))?;
    let (parse_wall, parse_cpu) = (wall.elapsed(), cpu()? - before);
    if summary.lines != lines {
        bail!("parsed {} lines of {lines}", summary.lines);
    }

    let tenants = dir.join("tenants");
    std::fs::create_dir_all(&tenants)?;
    std::fs::write(tenants.join(format!("{TENANT}.toml")), tenant_toml())?;
    let mut config = paybridge_server::config::Config::default();
    config.server.public_base_url = "http://127.0.0.1:9".to_owned();
    config.database.url = db_url;
    config.tenants.dir = tenants;
    config.platforms.dir = dir.join("platforms");
    config.sandbox.enabled = true;
    config.reconciler.enabled = false;
    config.statements.enabled = false;
    let state = paybridge_server::app::build_state(config)
        .await
        .map_err(|e| anyhow::anyhow!("building the gateway state: {e}"))?;
    let tenant = state
        .tenants
        .get(TENANT)
        .ok_or_else(|| anyhow::anyhow!("the tenant did not load"))?;
    let open_path = bill_path.clone();
    let bill = Bill {
        open: Arc::new(move || {
            let file = std::fs::File::open(&open_path)?;
            let reader: Box<dyn BillSource> = Box::new(std::io::BufReader::new(file));
            Ok(reader)
        }),
        parse: Arc::new(|r, each| paybridge_wechat::bill::parse_downloaded(r, each)),
    };
    // The peak from here on.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let rss_before_kib = rss_kib("VmRSS:");
    let (wall, before) = (Instant::now(), cpu()?);
    let statement = reconcile(
        &state,
        &tenant,
        "wechat_miniprogram",
        day,
        Some(bill.clone()),
    )
    .await
    .map_err(|e| anyhow::anyhow!("reconcile: {e:?}"))?;
    let (reconcile_wall, reconcile_cpu) = (wall.elapsed(), cpu()? - before);
    let rss_peak_kib = rss_kib("VmHWM:");
    if statement.status != "reconciled" || u64::try_from(statement.matched).ok() != Some(lines) {
        bail!("the run did not reconcile every line: {statement:?}");
    }
    let (wall, before) = (Instant::now(), cpu()?);
    let again = reconcile(&state, &tenant, "wechat_miniprogram", day, Some(bill))
        .await
        .map_err(|e| anyhow::anyhow!("re-run: {e:?}"))?;
    let (rerun_wall, rerun_cpu) = (wall.elapsed(), cpu()? - before);
    if again.status != "reconciled" || again.matched != statement.matched || again.version != 2 {
        bail!("the re-run did not reconcile every line again: {again:?}");
    }
    Ok(StatementResult {
        lines,
        bill_bytes,
        seed: seed_time,
        parse_wall,
        parse_cpu,
        reconcile_wall,
        reconcile_cpu,
        rerun_wall,
        rerun_cpu,
        rss_before_kib,
        rss_peak_kib,
        matched: statement.matched,
        fees: statement.fees,
    })
}
