//! `paybridge-admin`: manage tenants in the database (list, get, put, delete, validate, enable,
//! disable, rotate-key, import, export, audit). See `paybridge_admin::cli`.
//!
//! Built here, not in the admin crate, because validating a tenant needs every provider plugin
//! linked: the server library names each provider crate once (its `lib.rs`), and naming the
//! library here links them all. `paybridge admin …` is the same command line.

use paybridge_server as _;

fn main() -> std::process::ExitCode {
    paybridge_admin::cli::main()
}
