//! `paybridge-admin`: the admin operations straight against the database.
//!
//! Exit codes: 0 ok, 1 usage or I/O (database, files, master key), 2 invalid config (every bad
//! field is printed), 3 not found. The audit log records the actor as `cli:<$USER>`.
//!
//! Validation needs the provider factories linked into the binary; a binary that links none
//! (this crate's own) only accepts documents without `[providers.*]` tables.

mod args;
mod export;
mod settings;

use std::path::Path;
use std::process::ExitCode;

use clap::Parser;
use paybridge_core::provider::factories;
use paybridge_core::tenant::{ConfigErrors, hash_api_key};
use secrecy::ExposeSecret;

use crate::document::mask;
use crate::format::{parse_toml, render_toml, toml_to_json};
use crate::secrets::{MasterKey, SecretsError};
use crate::store::{self, StoreError, TenantStore, folder_of};

pub use args::{Cli, Command, Format, PlatformCommand};
pub use settings::{Loader, Settings};

/// A failure with its exit code.
#[derive(Debug)]
pub struct Failure {
    /// 1 usage/IO, 2 invalid config, 3 not found.
    pub code: u8,
    /// What to print on stderr.
    pub message: String,
}

impl Failure {
    fn usage(message: impl Into<String>) -> Self {
        Failure {
            code: 1,
            message: message.into(),
        }
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        let code = match &e {
            StoreError::Invalid(_)
            | StoreError::InvalidFiles(_)
            | StoreError::Secrets(SecretsError::PlaintextNotPermitted { .. }) => 2,
            StoreError::NotFound(_) => 3,
            _ => 1,
        };
        let mut message = match &e {
            StoreError::Invalid(errors) => describe(errors),
            StoreError::Secrets(SecretsError::PlaintextNotPermitted { .. }) => {
                format!("{e}\n(or pass --allow-plaintext-secrets for a sandbox-only database)")
            }
            StoreError::InvalidFiles(_) => format!("invalid tenant files:\n{e}"),
            other => other.to_string(),
        };
        if code == 2 && factories().is_empty() && message.contains("unknown provider kind") {
            message.push_str("\nnote: this binary links no provider plugin; use the build shipped with the server");
        }
        Failure { code, message }
    }
}

fn describe(errors: &ConfigErrors) -> String {
    let mut out = String::from("invalid tenant config:");
    for e in &errors.0 {
        out.push_str(&format!("\n  {}: {}", e.field, e.message));
    }
    out
}

/// Parse the arguments (the first is the program's name, e.g. `paybridge admin`), read the
/// settings with `load`, run, and map the outcome to an exit code (usage errors exit 1).
pub fn main_from<I, T>(args: I, load: Loader) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 1 } else { 0 });
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(cli, load)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("error: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}

fn actor() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown".to_owned());
    format!("cli:{user}")
}

fn read_file(path: &Path) -> Result<toml::Table, Failure> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Failure::usage(format!("cannot read {}: {e}", path.display())))?;
    parse_toml(&text).map_err(|e| Failure {
        code: 2,
        message: format!("{}: {}", path.display(), describe(&e)),
    })
}

async fn open_store(cli: &Cli, settings: &Settings) -> Result<TenantStore, Failure> {
    let url = settings.database_url.as_deref().ok_or_else(|| {
        Failure::usage(
            "no database: pass --database-url, set DATABASE_URL, or --config with [database] url",
        )
    })?;
    let key =
        MasterKey::from_env(&settings.master_key_env).map_err(|e| Failure::usage(e.to_string()))?;
    let db = store::connect(url)
        .await
        .map_err(|e| Failure::usage(format!("database: {e}")))?;
    Ok(TenantStore::new(db, key)
        .permit_plaintext_secrets(cli.allow_plaintext_secrets)
        .with_tenants_dir(settings.tenants_dir.clone())
        .with_http_timeout(settings.http_timeout))
}

fn print_document(masked: &toml::Table, format: Format) -> Result<(), Failure> {
    match format {
        Format::Toml => print!("{}", render_toml(masked)),
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(&toml_to_json(masked))
                .map_err(|e| Failure::usage(e.to_string()))?
        ),
    }
    Ok(())
}

async fn platform(
    store: &TenantStore,
    command: PlatformCommand,
    actor: &str,
) -> Result<(), Failure> {
    match command {
        PlatformCommand::List => {
            for p in store.list_platforms().await? {
                println!(
                    "{}\tv{}\t{}\t{}\t{}\ttenants: {}",
                    p.id,
                    p.version,
                    p.updated_at.to_rfc3339(),
                    p.name,
                    p.kinds.join(" "),
                    p.tenants.join(" ")
                );
            }
        }
        PlatformCommand::Get { id, format } => {
            let platform = store
                .get_platform(&id)
                .await?
                .ok_or_else(|| StoreError::NotFound(format!("platform {id:?} not found")))?;
            print_document(&platform.masked(), format)?;
        }
        PlatformCommand::Put { file } => {
            let doc = read_file(&file)?;
            let base = folder_of(&file)?;
            let written = match doc.get("id").and_then(toml::Value::as_str) {
                Some(id) => {
                    let id = id.to_owned();
                    store
                        .put_platform(&id, &doc, Some(base), actor, None)
                        .await?
                }
                None => store.create_platform(&doc, Some(base), actor).await?,
            };
            let verb = if written.created {
                "created"
            } else {
                "updated"
            };
            println!(
                "{verb} platform {} (version {})",
                written.platform.id, written.platform.version
            );
        }
        PlatformCommand::Delete { id } => {
            store.delete_platform(&id, actor).await?;
            println!("deleted platform {id}");
        }
    }
    Ok(())
}

/// Run one command.
pub async fn run(cli: Cli, load: Loader) -> Result<(), Failure> {
    match &cli.command {
        Command::HashToken { token } => {
            println!("{}", hash_api_key(token));
            return Ok(());
        }
        Command::GenMasterKey => {
            let (_, text) = MasterKey::generate().map_err(|e| Failure::usage(e.to_string()))?;
            println!("{text}");
            return Ok(());
        }
        _ => {}
    }
    let settings = load(cli.config.as_deref(), cli.database_url.clone()).map_err(Failure::usage)?;
    let store = open_store(&cli, &settings).await?;
    let actor = actor();
    match cli.command {
        Command::HashToken { .. } | Command::GenMasterKey => {}
        Command::List => {
            for t in store.list().await? {
                let providers: Vec<String> = t
                    .providers
                    .iter()
                    .map(|p| format!("{}({})", p.kind, if p.enabled { "on" } else { "off" }))
                    .collect();
                println!(
                    "{}\tv{}\t{}\t{}\t{}",
                    t.id,
                    t.version,
                    t.updated_at.to_rfc3339(),
                    t.name,
                    providers.join(" ")
                );
            }
        }
        Command::Get { id, format } => {
            let tenant = store
                .get(&id)
                .await?
                .ok_or_else(|| StoreError::NotFound(format!("tenant {id:?} not found")))?;
            print_document(&mask(&tenant.document), format)?;
        }
        Command::Put { file } => {
            let doc = read_file(&file)?;
            let id = doc
                .get("id")
                .and_then(toml::Value::as_str)
                .unwrap_or_default()
                .to_owned();
            let base = folder_of(&file)?;
            let written = if id.is_empty() {
                store.create(&doc, Some(base), &actor).await?
            } else {
                store.put(&id, &doc, Some(base), &actor, None).await?
            };
            let verb = if written.created {
                "created"
            } else {
                "updated"
            };
            println!(
                "{verb} {} (version {})",
                written.tenant.id, written.tenant.version
            );
        }
        Command::Delete { id } => {
            store.delete(&id, &actor).await?;
            println!("deleted {id}");
        }
        Command::Validate { file } => {
            let doc = read_file(&file)?;
            let id = store.check(&doc, Some(folder_of(&file)?)).await?;
            println!("{}: valid (tenant {id})", file.display());
        }
        Command::Enable { id, kind } => {
            let w = store.set_provider_enabled(&id, &kind, true, &actor).await?;
            println!("{id}: {kind} enabled (version {})", w.tenant.version);
        }
        Command::Disable { id, kind } => {
            let w = store
                .set_provider_enabled(&id, &kind, false, &actor)
                .await?;
            println!("{id}: {kind} disabled (version {})", w.tenant.version);
        }
        Command::RotateKey { id } => {
            let (key, w) = store
                .rotate_api_key(&id, settings.key_grace, &actor)
                .await?;
            eprintln!(
                "{id}: new API key (version {}); it is shown once. Old keys keep working for {} s.",
                w.tenant.version,
                settings.key_grace.as_secs()
            );
            println!("{}", key.expose_secret());
        }
        Command::Import { dir, overwrite } => {
            let report = store.import_dir(&dir, overwrite, &actor).await?;
            for (path, id, outcome) in &report.files {
                println!("{}\t{id}\t{}", path.display(), outcome.as_str());
            }
        }
        Command::Export {
            id,
            dir,
            with_secrets,
        } => export::export(&store, id, dir, with_secrets).await?,
        Command::Platform { command } => platform(&store, command, &actor).await?,
        Command::Audit { limit, tenant } => {
            for e in store.audit(tenant.as_deref(), limit).await? {
                println!(
                    "#{} {} {} {} {}",
                    e.id,
                    e.at.to_rfc3339(),
                    e.actor,
                    e.action,
                    e.platform_id
                        .as_ref()
                        .map(|p| format!("platform:{p}"))
                        .or(e.tenant_id)
                        .unwrap_or_else(|| "-".to_owned())
                );
                for d in e.diff {
                    let show = |v: &Option<serde_json::Value>| {
                        v.as_ref().map_or("(none)".to_owned(), ToString::to_string)
                    };
                    println!("    {}: {} -> {}", d.path, show(&d.from), show(&d.to));
                }
            }
        }
    }
    Ok(())
}
