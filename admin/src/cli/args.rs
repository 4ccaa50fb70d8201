//! The command line of `paybridge-admin`.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

/// The command line.
#[derive(Debug, Parser)]
#[command(
    name = "paybridge-admin",
    version,
    about = "Manage paybridge tenants in the database: versioned, audited, secrets encrypted",
    after_help = concat!(
        "Configuration: the server's own paybridge.toml and environment, read the same way.\n",
        "Environment:\n",
        "  PAYBRIDGE_<SECTION>__<KEY>  sets [section] key of the config file, e.g.\n",
        "                              PAYBRIDGE_DATABASE__URL=postgres://...\n",
        "  DATABASE_URL                the older form of [database] url (the form above wins)\n",
        "  PAYBRIDGE_MASTER_KEY        the master key of tenant secrets (named by [secrets] master_key_env)\n",
        "  USER                        recorded as the actor (cli:<user>) in the audit log"
    )
)]
pub struct Cli {
    /// The server config, with the server's PAYBRIDGE_<SECTION>__<KEY> overrides (uses
    /// [database] url, [tenants] dir, [secrets] master_key_env, [admin] key_grace_seconds).
    /// Default: ./paybridge.toml if it exists, else the server's defaults.
    #[arg(long, short, global = true)]
    pub config: Option<PathBuf>,
    /// The database URL (overrides the config file and its environment).
    #[arg(long, global = true)]
    pub database_url: Option<String>,
    /// Without a master key, store secrets in plaintext. Only for sandbox-only databases.
    #[arg(long, global = true)]
    pub allow_plaintext_secrets: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The operations on platforms.
#[derive(Debug, Subcommand)]
pub enum PlatformCommand {
    /// List platforms with their version, provider kinds and the tenants that use them.
    List,
    /// Print a platform's document (secrets as { set = true }).
    Get {
        /// Platform id.
        id: String,
        /// Output format.
        #[arg(long, value_enum, default_value = "toml")]
        format: Format,
    },
    /// Create or replace a platform from a TOML file ({ set = true } keeps a stored secret);
    /// refused if one of its tenants would no longer build.
    Put {
        /// The platform file; relative paths in it resolve against its folder.
        file: PathBuf,
    },
    /// Delete a platform (refused while a tenant uses it).
    Delete {
        /// Platform id.
        id: String,
    },
}

/// Output format of a document.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    /// As in tenants/<id>.toml.
    Toml,
    /// The same data as JSON.
    Json,
}

/// The operations.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// List tenants with their version and providers.
    List,
    /// Print a tenant's document (secrets as { set = true }).
    Get {
        /// Tenant id.
        id: String,
        /// Output format.
        #[arg(long, value_enum, default_value = "toml")]
        format: Format,
    },
    /// Create or replace a tenant from a TOML file ({ set = true } keeps a stored secret).
    Put {
        /// The tenant file; relative paths in it resolve against its folder.
        file: PathBuf,
    },
    /// Delete a tenant (its API keys stop working).
    Delete {
        /// Tenant id.
        id: String,
    },
    /// Validate a tenant file without saving.
    Validate {
        /// The tenant file.
        file: PathBuf,
    },
    /// Enable a configured provider.
    Enable {
        /// Tenant id.
        id: String,
        /// Provider kind.
        kind: String,
    },
    /// Disable a provider for new orders.
    Disable {
        /// Tenant id.
        id: String,
        /// Provider kind.
        kind: String,
    },
    /// Replace a tenant's API keys with a new one, printed once.
    RotateKey {
        /// Tenant id.
        id: String,
    },
    /// Import every *.toml of a folder: missing tenants are created; existing ones only with
    /// --overwrite. Nothing is written if any file is invalid.
    Import {
        /// The folder.
        dir: PathBuf,
        /// Replace tenants that already exist.
        #[arg(long)]
        overwrite: bool,
    },
    /// Write tenant documents as TOML: one to stdout, or each to <DIR>/<id>.toml.
    Export {
        /// One tenant (default: all, which needs --dir).
        id: Option<String>,
        /// Write files into this folder.
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Write secrets in plaintext instead of { set = true } (files get mode 0600).
        #[arg(long)]
        with_secrets: bool,
    },
    /// Print the audit log, newest first.
    Audit {
        /// At most this many entries.
        #[arg(long, default_value_t = 50)]
        limit: u64,
        /// Only this tenant.
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Platforms (service providers, third-party apps) that tenants name.
    Platform {
        /// What to do with them.
        #[command(subcommand)]
        command: PlatformCommand,
    },
    /// Print the sha256 digest of an admin token, for [admin] tokens.
    HashToken {
        /// The token.
        token: String,
    },
    /// Print a new random master key (base64), for the [secrets] master_key_env variable.
    GenMasterKey,
}
