//! `paybridge-admin`: manage tenants in the database (list, get, put, delete, validate, enable,
//! disable, rotate-key, import, export, audit). See `paybridge_admin::cli`.
//!
//! Built here, not in the admin crate, because validating a tenant needs every provider plugin
//! linked: each provider crate is named once so the linker keeps its registration.

use paybridge_alipay as _;
use paybridge_wechat as _;

fn main() -> std::process::ExitCode {
    paybridge_admin::cli::main()
}
