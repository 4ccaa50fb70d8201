//! The database of a round: a SQLite file in the round's folder, or a fresh PostgreSQL database
//! created beside the one `--database` names, and dropped afterwards.

use std::sync::Mutex;

use anyhow::{Context, bail};
use sea_orm::{ConnectionTrait, Database};

/// A PostgreSQL database this run created.
#[derive(Debug, Clone)]
pub struct PgDatabase {
    admin_url: String,
    pub name: String,
    pub url: String,
}

/// The PostgreSQL databases still to drop (also after an interruption).
#[derive(Debug, Default)]
pub struct Cleanup {
    pending: Mutex<Vec<PgDatabase>>,
}

impl Cleanup {
    fn add(&self, db: &PgDatabase) {
        if let Ok(mut pending) = self.pending.lock() {
            pending.push(db.clone());
        }
    }

    fn remove(&self, name: &str) {
        if let Ok(mut pending) = self.pending.lock() {
            pending.retain(|d| d.name != name);
        }
    }

    /// Drop every database still listed.
    pub async fn drop_all(&self) {
        let pending = self
            .pending
            .lock()
            .map(|mut p| std::mem::take(&mut *p))
            .unwrap_or_default();
        for db in pending {
            if let Err(e) = drop_database(&db).await {
                eprintln!("warning: could not drop database {}: {e:#}", db.name);
            }
        }
    }
}

/// Create `name` on the server of `base_url` (connecting to its `postgres` database).
pub async fn create_pg(
    base_url: &str,
    name: &str,
    cleanup: &Cleanup,
) -> anyhow::Result<PgDatabase> {
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    {
        bail!("{name:?}: not a plain database name");
    }
    let mut admin = url::Url::parse(base_url).context("--database is not a URL")?;
    if !matches!(admin.scheme(), "postgres" | "postgresql") {
        bail!("--database must be a postgres:// URL");
    }
    let mut url = admin.clone();
    admin.set_path("/postgres");
    url.set_path(&format!("/{name}"));
    let db = PgDatabase {
        admin_url: admin.to_string(),
        name: name.to_owned(),
        url: url.to_string(),
    };
    let conn = Database::connect(db.admin_url.as_str())
        .await
        .with_context(|| format!("connecting to {}", db.admin_url))?;
    conn.execute_unprepared(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
        .await?;
    conn.execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
        .await
        .with_context(|| format!("creating database {name}"))?;
    conn.close().await?;
    cleanup.add(&db);
    Ok(db)
}

async fn drop_database(db: &PgDatabase) -> anyhow::Result<()> {
    let conn = Database::connect(db.admin_url.as_str()).await?;
    conn.execute_unprepared(&format!(
        "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
        db.name
    ))
    .await?;
    conn.close().await?;
    Ok(())
}

/// Drop a database created by `create_pg`.
pub async fn drop_pg(db: &PgDatabase, cleanup: &Cleanup) -> anyhow::Result<()> {
    drop_database(db).await?;
    cleanup.remove(&db.name);
    Ok(())
}
