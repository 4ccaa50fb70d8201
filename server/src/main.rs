//! The `paybridge` binary.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use paybridge_server::app;
use paybridge_server::config::Config;

/// mimalloc instead of glibc's malloc: the request path allocates and frees small objects by
/// the thousand (statements, rows, JSON), and glibc's free lists were about a tenth of the
/// notify profile.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "paybridge",
    version,
    about = "Multi-tenant payment gateway for WeChat Pay and Alipay",
    after_help = concat!(
        "Environment:\n",
        "  PAYBRIDGE_<SECTION>__<KEY>      sets [section] key of the config file (a TOML value, else a string)\n",
        "                                  e.g. PAYBRIDGE_SERVER__LISTEN=0.0.0.0:8080,\n",
        "                                  PAYBRIDGE_ADMIN__TOKENS='[\"sha256:...\"]'\n",
        "  DATABASE_URL, PAYBRIDGE_LISTEN  older forms of [database] url and [server] listen (the form above wins)\n",
        "  PAYBRIDGE_MASTER_KEY            the master key of tenant secrets (named by [secrets] master_key_env)\n",
        "  PAYBRIDGE_ADMIN_TOKEN           one more admin token, in plaintext\n",
        "  RUST_LOG                        the log filter (default info)"
    )
)]
struct Cli {
    /// The server config file.
    #[arg(long, short, default_value = "paybridge.toml")]
    config: PathBuf,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway (the default).
    Serve,
    /// Print the OpenAPI document.
    Openapi,
    /// Print the `sha256:<hex>` digest of an API key, for `api_keys` in a tenant file.
    HashKey {
        /// The plaintext key.
        key: String,
    },
    /// Manage tenants and platforms in the database: `paybridge admin --help` (the same as the
    /// `paybridge-admin` binary, with every provider of this build linked).
    #[command(disable_help_flag = true)]
    Admin {
        /// The admin command line.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<std::ffi::OsString>,
    },
}

/// The log filter when `RUST_LOG` is not set.
const DEFAULT_LOG_FILTER: &str = "info,sqlx=warn,sea_orm=warn";

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Serve) {
        Command::Openapi => match serde_json::to_string_pretty(&app::openapi()) {
            Ok(json) => {
                println!("{json}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        },
        Command::HashKey { key } => {
            println!("{}", paybridge_core::tenant::hash_api_key(&key));
            ExitCode::SUCCESS
        }
        Command::Admin { args } => paybridge_admin::cli::main_from(
            std::iter::once(std::ffi::OsString::from("paybridge admin")).chain(args),
            Config::admin_settings,
        ),
        Command::Serve => match serve(&cli.config) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        },
    }
}

fn serve(config_path: &std::path::Path) -> Result<(), String> {
    let config = Config::load(config_path)?;
    paybridge_server::logging::init(config.log.format, DEFAULT_LOG_FILTER);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    runtime.block_on(app::serve(config))
}
