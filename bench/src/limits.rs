//! The two costs that bound the gateway on one core, measured on that core with the gateway
//! stopped: RSA-2048 signatures (every Alipay create signs one) and serial durable SQLite commits
//! (every applied notification commits one transaction).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
use base64::Engine;
use sea_orm::sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sea_orm::sqlx::{self, ConnectOptions, Connection, Executor, Row};

use crate::load::{f64_of, pin_current_thread};

/// What one core can do.
#[derive(Debug, Clone)]
pub struct Limits {
    pub core: usize,
    pub rsa_bits: usize,
    pub rsa_signs: u64,
    pub rsa_elapsed: Duration,
    pub sqlite_commits: u64,
    pub sqlite_elapsed: Duration,
    /// `PRAGMA journal_mode` / `PRAGMA synchronous` as SQLite reported them.
    pub sqlite_mode: String,
}

impl Limits {
    pub fn rsa_signs_per_second(&self) -> f64 {
        rate(self.rsa_signs, self.rsa_elapsed)
    }

    pub fn sqlite_commits_per_second(&self) -> f64 {
        rate(self.sqlite_commits, self.sqlite_elapsed)
    }
}

/// Which of the two limits a scenario's throughput is compared with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// RSA-2048 signatures per second (Alipay creates).
    RsaSigns,
    /// Serial FULL commits per second (notifications).
    SqliteCommits,
}

impl Limit {
    /// Its rate in `limits`.
    pub fn of(self, limits: &Limits) -> f64 {
        match self {
            Limit::RsaSigns => limits.rsa_signs_per_second(),
            Limit::SqliteCommits => limits.sqlite_commits_per_second(),
        }
    }

    /// How the report names it.
    pub fn name(self) -> &'static str {
        match self {
            Limit::RsaSigns => "RSA signs/s on one core",
            Limit::SqliteCommits => "SQLite serial FULL commits/s",
        }
    }
}

fn rate(count: u64, elapsed: Duration) -> f64 {
    let secs = elapsed.as_secs_f64();
    if secs > 0.0 {
        f64_of(count) / secs
    } else {
        0.0
    }
}

/// Measure both on a thread pinned to `core`, `seconds` each. `key_pem` is an RSA-2048 private
/// key (PKCS#8 or PKCS#1 PEM); `dir` gets a fresh SQLite file.
pub async fn measure(
    core: usize,
    key_pem: String,
    dir: PathBuf,
    seconds: u64,
) -> anyhow::Result<Limits> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("bench-limits".to_owned())
        .spawn(move || {
            let result = (|| {
                // Threads created from here (SQLite's worker) inherit the pinning.
                pin_current_thread(core)?;
                let duration = Duration::from_secs(seconds);
                let (rsa_bits, rsa_signs, rsa_elapsed) = rsa_signs(&key_pem, duration)?;
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                let (sqlite_commits, sqlite_elapsed, sqlite_mode) =
                    runtime.block_on(sqlite_commits(&dir, duration))?;
                Ok(Limits {
                    core,
                    rsa_bits,
                    rsa_signs,
                    rsa_elapsed,
                    sqlite_commits,
                    sqlite_elapsed,
                    sqlite_mode,
                })
            })();
            let _ = tx.send(result);
        })
        .context("cannot start the limits thread")?;
    rx.await
        .map_err(|_| anyhow!("the limits thread ended without a result"))?
}

fn pem_der(pem: &str) -> anyhow::Result<(bool, Vec<u8>)> {
    let pkcs1 = pem.contains("BEGIN RSA PRIVATE KEY");
    let body: String = pem
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("-----"))
        .collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(body)
        .context("the RSA key is not PEM/base64")?;
    Ok((pkcs1, der))
}

/// RSA PKCS#1 v1.5 SHA-256 signatures of a ~300-byte message with aws-lc-rs for `duration`.
fn rsa_signs(key_pem: &str, duration: Duration) -> anyhow::Result<(usize, u64, Duration)> {
    let (pkcs1, der) = pem_der(key_pem)?;
    let key = if pkcs1 {
        RsaKeyPair::from_der(&der)
    } else {
        RsaKeyPair::from_pkcs8(&der)
    }
    .map_err(|e| anyhow!("the RSA key does not load: {e}"))?;
    let rng = SystemRandom::new();
    // An orderString's sign content is about this long.
    let message = "app_id=2021000000000001&biz_content={\"out_trade_no\":\"BA1234560000000001\",\
                   \"total_amount\":\"19.90\",\"subject\":\"bench\",\"product_code\":\"QUICK_MSECURITY_PAY\",\
                   \"timeout_express\":\"120m\"}&charset=utf-8&format=json&method=alipay.trade.app.pay\
                   &notify_url=http://127.0.0.1:8080/notify/demo/alipay_app&sign_type=RSA2\
                   &timestamp=2024-01-01 12:00:00&version=1.0";
    let mut signature = vec![0u8; key.public_modulus_len()];
    // A short warm-up so the first, cold signatures do not count.
    let warm_until = Instant::now() + Duration::from_millis(200);
    while Instant::now() < warm_until {
        key.sign(&RSA_PKCS1_SHA256, &rng, message.as_bytes(), &mut signature)
            .map_err(|_| anyhow!("RSA signing failed"))?;
    }
    let started = Instant::now();
    let mut count = 0u64;
    loop {
        for _ in 0..16 {
            key.sign(&RSA_PKCS1_SHA256, &rng, message.as_bytes(), &mut signature)
                .map_err(|_| anyhow!("RSA signing failed"))?;
        }
        count += 16;
        let elapsed = started.elapsed();
        if elapsed >= duration {
            return Ok((key.public_modulus_len() * 8, count, elapsed));
        }
    }
}

/// Serial commits, one single-row INSERT per transaction, to a fresh WAL + synchronous=FULL
/// database in `dir`, for `duration`.
async fn sqlite_commits(dir: &Path, duration: Duration) -> anyhow::Result<(u64, Duration, String)> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join("commits.db");
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    let mut conn = SqliteConnectOptions::new()
        .filename(&path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .connect()
        .await
        .with_context(|| format!("opening {}", path.display()))?;
    conn.execute(
        "CREATE TABLE commits (id INTEGER PRIMARY KEY, payload TEXT NOT NULL, at TEXT NOT NULL)",
    )
    .await?;
    let journal: String = sqlx::query("PRAGMA journal_mode")
        .fetch_one(&mut conn)
        .await?
        .try_get(0)?;
    let synchronous: i64 = sqlx::query("PRAGMA synchronous")
        .fetch_one(&mut conn)
        .await?
        .try_get(0)?;
    let mode = format!("journal_mode={journal}, synchronous={synchronous} (2 = FULL)");
    let payload = "x".repeat(200);
    let started = Instant::now();
    let mut count = 0u64;
    loop {
        let mut txn = conn.begin().await?;
        sqlx::query("INSERT INTO commits (payload, at) VALUES (?, ?)")
            .bind(payload.as_str())
            .bind(chrono::Utc::now().to_rfc3339())
            .execute(&mut *txn)
            .await?;
        txn.commit().await?;
        count += 1;
        let elapsed = started.elapsed();
        if elapsed >= duration {
            conn.close().await?;
            return Ok((count, elapsed, mode));
        }
    }
}
