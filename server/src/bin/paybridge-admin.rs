//! `paybridge-admin`: manage tenants in the database (list, get, put, delete, validate, enable,
//! disable, rotate-key, import, export, audit). See `paybridge_admin::cli`.
//!
//! Built here, not in the admin crate, because validating a tenant needs every provider plugin
//! linked: the server library names each provider crate once (its `lib.rs`), and naming the
//! library here links them all, and the settings are read by the server's own `Config` (the same
//! file and environment overrides). `paybridge admin …` is the same command line.

fn main() -> std::process::ExitCode {
    paybridge_admin::cli::main_from(
        std::env::args_os(),
        paybridge_server::config::Config::admin_settings,
    )
}
