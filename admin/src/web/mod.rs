//! The operators' page at `/admin/`: a single page that lists tenants, shows which providers are
//! on, and edits a tenant's TOML through the admin API; its console tabs find orders, show their
//! timelines and act on them, draw the dashboard (SVG, drawn by the page) and show the audit log. It loads without a token and asks for
//! one (kept in `sessionStorage`). Every asset is compiled in: no CDN, no internet.

use actix_web::http::header::{self, CacheControl, CacheDirective};
use actix_web::{HttpResponse, get, web};

const INDEX_HTML: &str = include_str!("index.html");
const APP_JS: &str = include_str!("app.js");
const CONSOLE_JS: &str = include_str!("console.js");
const STYLE_CSS: &str = include_str!("style.css");

/// A strict policy: only this origin's scripts and styles, no inline script, no framing.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'";

fn page(content_type: &str, body: &'static str) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(content_type)
        .insert_header(CacheControl(vec![CacheDirective::NoCache]))
        .insert_header(("Content-Security-Policy", CSP))
        .insert_header(("X-Content-Type-Options", "nosniff"))
        .insert_header(("Referrer-Policy", "no-referrer"))
        .body(body)
}

/// `GET /admin` → `/admin/`.
#[get("/admin")]
pub async fn admin_redirect() -> HttpResponse {
    HttpResponse::PermanentRedirect()
        .insert_header((header::LOCATION, "/admin/"))
        .finish()
}

/// `GET /admin/`: the page.
#[get("/admin/")]
pub async fn admin_page() -> HttpResponse {
    page("text/html; charset=utf-8", INDEX_HTML)
}

/// `GET /admin/assets/{file}`: `app.js`, `console.js`, `style.css`.
#[get("/admin/assets/{file}")]
pub async fn admin_asset(file: web::Path<String>) -> HttpResponse {
    match file.as_str() {
        "app.js" => page("text/javascript; charset=utf-8", APP_JS),
        "console.js" => page("text/javascript; charset=utf-8", CONSOLE_JS),
        "style.css" => page("text/css; charset=utf-8", STYLE_CSS),
        _ => HttpResponse::NotFound()
            .content_type("application/json")
            .body(r#"{"error":{"code":"not_found","message":"no such asset"}}"#),
    }
}

/// Register the page and its assets (plain actix; not part of the OpenAPI document).
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(admin_redirect)
        .service(admin_page)
        .service(admin_asset);
}
