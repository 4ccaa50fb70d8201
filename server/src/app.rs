//! Building and running the actix-web application, and the OpenAPI document generated from the
//! real handlers.

use std::net::TcpListener;
use std::sync::Arc;

use actix_web::dev::Server;
use actix_web::error::{InternalError, JsonPayloadError};
use actix_web::http::StatusCode;
use actix_web::{App, HttpRequest, HttpServer, web};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_actix_web::AppExt;
use utoipa_actix_web::service_config::ServiceConfig;
use utoipa_swagger_ui::{Config as SwaggerConfig, SwaggerUi};

use crate::api;
use crate::config::Config;
use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::state::{AppState, TenantRegistry, build_simulators, load_tenant_dir};
use crate::store::Store;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "paybridge",
        description = "Multi-tenant payment gateway for WeChat Pay (mini-program, API v2) and Alipay. Amounts are integer fen. Errors are `{\"error\": {\"code\", \"message\", \"field\"?}}`."
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "orders", description = "Merchant API: orders"),
        (name = "refunds", description = "Merchant API: refunds"),
        (name = "sessions", description = "Merchant API: provider logins"),
        (name = "events", description = "Merchant API: webhook events and their deliveries"),
        (name = "notifications", description = "Provider notifications (signature-authenticated)"),
        (name = "operations", description = "Health and metrics"),
    )
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

fn routes(cfg: &mut ServiceConfig) {
    cfg.service(api::orders::create_order)
        .service(api::orders::get_order)
        .service(api::orders::close_order)
        .service(api::refunds::create_refund)
        .service(api::refunds::get_refund)
        .service(api::sessions::create_session)
        .service(api::events::list_events)
        .service(api::events::redeliver_event)
        .service(api::notify::refund_notification)
        .service(api::notify::payment_notification)
        .service(api::ops::healthz)
        .service(api::ops::metrics);
}

/// The OpenAPI document of the real handlers (also committed at `docs/openapi.json`).
pub fn openapi() -> utoipa::openapi::OpenApi {
    let (_, doc) = App::new()
        .into_utoipa_app()
        .openapi(ApiDoc::openapi())
        .configure(routes)
        .split_for_parts();
    doc
}

/// Connect the database, load the tenants and build the shared state.
pub async fn build_state(config: Config) -> Result<AppState, String> {
    let db = crate::db::connect(&config.database.url)
        .await
        .map_err(|e| format!("database {}: {e}", redact_url(&config.database.url)))?;
    let tenants = load_tenant_dir(&config.tenants.dir, &config)?;
    let simulators = build_simulators(&config, &tenants);
    let registry = TenantRegistry::default();
    tracing::info!(count = tenants.len(), "tenants loaded");
    registry.replace_all(tenants);
    Ok(AppState {
        store: Store::new(db),
        tenants: registry,
        simulators,
        metrics: Metrics::default(),
        config,
    })
}

/// A database URL without its password, for messages.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_owned(),
    }
}

fn json_error(err: JsonPayloadError, _req: &HttpRequest) -> actix_web::Error {
    let api = match &err {
        JsonPayloadError::OverflowKnownLength { .. } | JsonPayloadError::Overflow { .. } => {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                "request body too large",
            )
        }
        JsonPayloadError::ContentType => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send Content-Type: application/json",
        ),
        other => ApiError::new(StatusCode::BAD_REQUEST, "invalid_json", other.to_string()),
    };
    InternalError::from_response(err, actix_web::ResponseError::error_response(&api)).into()
}

/// Serve on an already-bound listener.
pub fn run(listener: TcpListener, state: Arc<AppState>) -> std::io::Result<Server> {
    let data = web::Data::from(state.clone());
    let doc = openapi();
    let max_body = state.config.http.max_body_bytes;
    let max_notification = state.config.http.max_notification_bytes;
    let sandbox = state.config.sandbox.enabled;
    let server = HttpServer::new(move || {
        let (app, _) = App::new()
            .into_utoipa_app()
            .configure(routes)
            .split_for_parts();
        let mut app = app
            .app_data(data.clone())
            .app_data(
                web::JsonConfig::default()
                    .limit(max_body)
                    .error_handler(json_error),
            )
            .app_data(web::PayloadConfig::new(max_notification.max(max_body)))
            .app_data(web::PathConfig::default().error_handler(|err, _| {
                let api = ApiError::new(StatusCode::NOT_FOUND, "not_found", err.to_string());
                InternalError::from_response(err, actix_web::ResponseError::error_response(&api))
                    .into()
            }))
            .app_data(web::QueryConfig::default().error_handler(|err, _| {
                let api =
                    ApiError::new(StatusCode::BAD_REQUEST, "invalid_request", err.to_string());
                InternalError::from_response(err, actix_web::ResponseError::error_response(&api))
                    .into()
            }))
            .service(
                SwaggerUi::new("/docs/{_:.*}")
                    .url("/openapi.json", doc.clone())
                    .config(SwaggerConfig::from("/openapi.json").validator_url("none")),
            )
            .wrap(actix_web::middleware::from_fn(
                crate::http_log::log_requests,
            ));
        if sandbox {
            app = app.route(
                "/sandbox/{kind}/{rest:.*}",
                web::route().to(api::sandbox::simulator),
            );
        }
        app.default_service(web::to(|| async {
            actix_web::ResponseError::error_response(&ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                "no such endpoint",
            ))
        }))
    })
    .listen(listener)?
    .shutdown_timeout(10)
    .run();
    Ok(server)
}
