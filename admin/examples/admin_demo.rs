//! Serve the admin API and page on a throw-away SQLite file, to try the page in a browser:
//! `cargo run -p paybridge-admin --example admin_demo`, then open http://127.0.0.1:8099/admin/
//! and sign in with the token `demo-admin-token` (env `ADMIN_DEMO_TOKEN` changes it,
//! `ADMIN_DEMO_LISTEN` the address). No provider plugin is linked, so only tenant-level keys
//! validate.

use actix_web::{App, HttpServer, web};
use paybridge_admin::{AdminState, AdminTokens, MasterKey, TenantStore};

fn io_error(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let listen = std::env::var("ADMIN_DEMO_LISTEN").unwrap_or_else(|_| "127.0.0.1:8099".into());
    let token = std::env::var("ADMIN_DEMO_TOKEN").unwrap_or_else(|_| "demo-admin-token".into());
    let path = std::env::temp_dir().join(format!("paybridge-admin-demo-{}.db", std::process::id()));
    let db = paybridge_admin::store::connect(&format!("sqlite://{}?mode=rwc", path.display()))
        .await
        .map_err(io_error)?;
    let (key, _) = MasterKey::generate().map_err(io_error)?;
    let tokens = AdminTokens::new(&[], Some(&token)).map_err(io_error)?;
    let state = web::Data::new(AdminState::new(TenantStore::new(db, Some(key)), tokens));
    eprintln!(
        "admin page on http://{listen}/admin/ (database {})",
        path.display()
    );
    HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .configure(paybridge_admin::api::actix_routes)
            .configure(paybridge_admin::web::routes)
    })
    .workers(1)
    .bind(listen)?
    .run()
    .await
}
