//! Building and running the actix-web application, and the OpenAPI document generated from the
//! real handlers.

use std::net::TcpListener;
use std::sync::atomic::AtomicI64;
use std::sync::{Arc, Mutex};

use actix_web::dev::Server;
use actix_web::error::InternalError;
use actix_web::http::StatusCode;
use actix_web::{App, HttpServer, web};
use paybridge_admin::api::AdminSecurity;
use paybridge_admin::{MasterKey, StoredTenant, TenantStore};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_actix_web::AppExt;
use utoipa_actix_web::service_config::ServiceConfig;
use utoipa_swagger_ui::{Config as SwaggerConfig, SwaggerUi};

use crate::api;
use crate::api::error::ApiError;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::state::{AppState, TenantRegistry, build_simulators};
use crate::store::Store;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "paybridge",
        description = "Multi-tenant payment gateway for WeChat Pay (mini-program, API v2 and v3) and Alipay. Amounts are integer fen. Errors are `{\"error\": {\"code\", \"message\", \"field\"?}}`."
    ),
    modifiers(&BearerAuth, &AdminSecurity),
    tags(
        (name = "orders", description = "Merchant API: orders"),
        (name = "refunds", description = "Merchant API: refunds"),
        (name = "sessions", description = "Merchant API: provider logins"),
        (name = "events", description = "Merchant API: webhook events and their deliveries"),
        (name = "notifications", description = "Provider notifications (signature-authenticated)"),
        (name = "operations", description = "Health and metrics"),
        (name = "admin", description = "Operators: tenant configuration (admin token)"),
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
    // Notifications first: the router tries the resources in this order, each dynamic path a
    // regex, and notifications are the busiest route. (The refund path is the longer one of the
    // two and stays before the payment path.)
    cfg.service(api::notify::refund_notification)
        .service(api::notify::payment_notification)
        .service(api::orders::create_order)
        .service(api::orders::get_order)
        .service(api::orders::close_order)
        .service(api::refunds::create_refund)
        .service(api::refunds::get_refund)
        .service(api::sessions::create_session)
        .service(api::events::list_events)
        .service(api::events::redeliver_event)
        .service(api::ops::healthz)
        .service(api::ops::livez)
        .service(api::ops::readyz)
        .service(api::ops::metrics)
        .service(api::console::search_orders)
        .service(api::console::order_timeline)
        .service(api::console::sync_order)
        .service(api::console::close_order)
        .service(api::console::redeliver_event)
        .service(api::console::stats)
        .service(api::statements::list_statements)
        .service(api::statements::discrepancies_csv)
        .service(api::statements::get_statement)
        .service(api::statements::run_statement)
        .configure(paybridge_admin::api::routes);
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

/// Connect the database, import and load the tenants, and build the shared state. Without a
/// master key only sandbox tenants may exist: otherwise this refuses to start.
pub async fn build_state(config: Config) -> Result<AppState, String> {
    let busy_timeout = std::time::Duration::from_secs(config.database.busy_timeout_seconds.max(1));
    let connections = crate::db::connect_pooled(
        &config.database.url,
        busy_timeout,
        config.database.max_connections,
    )
    .await
    .map_err(|e| format!("database {}: {e}", redact_url(&config.database.url)))?;
    let db = connections.write.clone();
    let key_name = &config.secrets.master_key_env;
    let master_key = match &config.secrets.master_key_override {
        Some(k) => Some(MasterKey::from_base64(k).map_err(|e| format!("master key: {e}"))?),
        None => MasterKey::from_env(key_name).map_err(|e| format!("{key_name}: {e}"))?,
    };
    let prefix = config.sandbox_prefix();
    let mut tenant_store = TenantStore::new(db.clone(), master_key)
        .with_tenants_dir(config.tenants.dir.clone())
        .with_platforms_dir(config.platforms.dir.clone())
        .with_http_timeout(config.outbound_timeout())
        .with_private_webhook_targets(config.webhooks.allow_private_targets);
    if !tenant_store.encrypts() {
        tenant_store = tenant_store.permit_plaintext_for_sandbox(prefix.clone());
    }
    let no_key_hint = format!(
        "no master key: set {key_name} to 32 random bytes in base64 (`paybridge-admin gen-master-key` makes one); \
         without it only sandbox tenants (every provider endpoint under {prefix}) are allowed"
    );
    tenant_store
        .import_platform_dir(&config.platforms.dir, "bootstrap")
        .await
        .map_err(|e| {
            format!(
                "importing {}: {e}{}",
                config.platforms.dir.display(),
                if tenant_store.encrypts() {
                    String::new()
                } else {
                    format!("\n{no_key_hint}")
                }
            )
        })?;
    tenant_store
        .import_dir(&config.tenants.dir, false, "bootstrap")
        .await
        .map_err(|e| {
            format!(
                "importing {}: {e}{}",
                config.tenants.dir.display(),
                if tenant_store.encrypts() {
                    String::new()
                } else {
                    format!("\n{no_key_hint}")
                }
            )
        })?;
    let mut stored = tenant_store.load_all().await.map_err(|e| e.to_string())?;
    let (mut platforms, mut problems) = tenant_store
        .platform_book()
        .await
        .map_err(|e| e.to_string())?;
    let (tenants, tenant_problems) = crate::live::build_all(
        &stored,
        &platforms,
        &config,
        tenant_store.encrypts(),
        |_| None,
    );
    problems.extend(tenant_problems);
    if !problems.is_empty() {
        let hint = if tenant_store.encrypts() {
            String::new()
        } else {
            format!("\n{no_key_hint}")
        };
        return Err(format!("{}{hint}", problems.join("\n")));
    }
    let version = tenant_store
        .config_version()
        .await
        .map_err(|e| e.to_string())?;
    let simulators = build_simulators(&config, &stored, &platforms, &tenants);
    platforms.wipe();
    let next_key_expiry = stored
        .iter()
        .filter_map(paybridge_admin::StoredTenant::next_key_expiry)
        .min();
    // The providers are built and the simulators taught: the plaintext documents go.
    stored.iter_mut().for_each(StoredTenant::wipe);
    drop(stored);
    let registry = TenantRegistry::default();
    tracing::info!(
        count = tenants.len(),
        encrypted = tenant_store.encrypts(),
        "tenants loaded"
    );
    registry.replace_all(tenants);
    let limits = crate::limits::Limits::new(&config.limits)?;
    let store = Store::new(connections).map_err(|e| format!("database: {e}"))?;
    let metrics = Metrics::new(store.write_stats().commit_seconds.clone());
    Ok(AppState {
        store,
        tenants: registry,
        simulators,
        metrics,
        activity: crate::store::activity::ActivityLog::default(),
        limits,
        shutting_down: std::sync::atomic::AtomicBool::new(false),
        workers: tokio_util::sync::CancellationToken::new(),
        instance_id: uuid::Uuid::new_v4().to_string(),
        config,
        tenant_store,
        loaded_version: AtomicI64::new(version),
        next_key_expiry: Mutex::new(next_key_expiry),
        reload_lock: tokio::sync::Mutex::new(()),
        statement_runs: tokio::sync::Semaphore::new(1),
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

/// Serve on an already-bound listener.
pub fn run(listener: TcpListener, state: Arc<AppState>) -> std::io::Result<Server> {
    let data = web::Data::from(state.clone());
    let doc = openapi();
    let max_body = state.config.http.max_body_bytes;
    let max_notification = state.config.http.max_notification_bytes;
    let sandbox = state.config.sandbox.enabled;
    let tokens = paybridge_admin::api::AdminTokens::from_config_and_env(&state.config.admin.tokens)
        .and_then(|t| t.with_read_only(&state.config.admin.read_only_tokens))
        .map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("[admin] tokens: {e}"),
            )
        })?;
    let live_state = state.clone();
    let limit_state = state.clone();
    let admin = web::Data::new(
        paybridge_admin::api::AdminState::new(state.tenant_store.clone(), tokens)
            .with_key_grace(std::time::Duration::from_secs(
                state.config.admin.key_grace_seconds,
            ))
            .with_rate_limit(move |actor| limit_state.limits.admin(actor))
            // Rebuild this instance's registry before answering: the change is live for the
            // very next request. Other instances see it at their next poll (1 s).
            .on_change(move || {
                let state = live_state.clone();
                async move {
                    if let Err(e) = crate::live::reload(&state).await {
                        tracing::error!(error = %e, "tenant config reload after an admin change failed");
                    }
                }
            }),
    );
    crate::live::spawn_watch(state.clone());
    let server = HttpServer::new(move || {
        // Runs on each worker thread, in its runtime: the writer answers this thread's jobs
        // with one wake-up per group.
        crate::store::writer::install_mailbox();
        let (app, _) = App::new()
            .into_utoipa_app()
            .configure(routes)
            .split_for_parts();
        let mut app = app
            .app_data(data.clone())
            .app_data(admin.clone())
            .configure(paybridge_admin::web::routes)
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
                api::idempotency::idempotency,
            ))
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
    // The drain gets what the workers' half of the shutdown timeout leaves.
    .shutdown_timeout(
        state
            .config
            .server
            .shutdown_timeout_seconds
            .saturating_sub(worker_timeout(&state.config))
            .max(1),
    )
    // Signals are `serve`'s: it marks the instance not ready before it stops the server.
    .disable_signals()
    .run();
    Ok(server)
}

/// Run the gateway with `config` until SIGTERM or SIGINT, then shut down gracefully:
/// - `/readyz` answers 503 at once, so that a load balancer stops sending traffic;
/// - the workers stop (half the timeout at most), and the reconciler releases its lease;
/// - the server stops accepting connections, and the requests in flight finish: what they wrote
///   is committed and acknowledged;
/// - the database connections close; `Ok` within `[server] shutdown_timeout_seconds`.
pub async fn serve(config: Config) -> Result<(), String> {
    let listen = config.server.listen.clone();
    let state = Arc::new(build_state(config).await?);
    let mut workers = Vec::new();
    if state.config.reconciler.enabled {
        workers.push(crate::reconciler::spawn(state.clone()));
    }
    if state.config.webhooks.enabled {
        workers.push(crate::webhooks::spawn(state.clone()));
    }
    if state.config.retention.enabled {
        workers.push(crate::retention::spawn(state.clone()));
    }
    workers.push(crate::usecases::activity::spawn(state.clone()));
    if state.config.statements.enabled {
        workers.push(crate::statements::spawn(state.clone()));
    }
    let listener =
        TcpListener::bind(&listen).map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    tracing::info!(%listen, "paybridge listening");
    let server = run(listener, state.clone()).map_err(|e| e.to_string())?;
    let handle = server.handle();
    let mut serving = tokio::spawn(server);
    tokio::select! {
        ended = &mut serving => {
            state.workers.cancel();
            return match ended {
                Ok(Ok(())) => Err("the HTTP server stopped by itself".to_owned()),
                Ok(Err(e)) => Err(e.to_string()),
                Err(e) => Err(e.to_string()),
            };
        }
        signal = shutdown_signal() => {
            let signal = signal.map_err(|e| format!("cannot listen for signals: {e}"))?;
            tracing::info!(signal, "shutting down");
        }
    }
    shutdown(&state, handle, serving, workers).await;
    Ok(())
}

/// The workers' share of the shutdown timeout, in seconds: half, at least one.
fn worker_timeout(config: &Config) -> u64 {
    (config.server.shutdown_timeout_seconds / 2).max(1)
}

/// Wait for SIGTERM or SIGINT; returns its name.
async fn shutdown_signal() -> std::io::Result<&'static str> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    })
}

async fn shutdown(
    state: &Arc<AppState>,
    handle: actix_web::dev::ServerHandle,
    serving: tokio::task::JoinHandle<std::io::Result<()>>,
    workers: Vec<tokio::task::JoinHandle<()>>,
) {
    state
        .shutting_down
        .store(true, std::sync::atomic::Ordering::SeqCst);
    // The workers first, while the HTTP workers' runtimes still run: pooled database connections
    // opened by a request belong to its worker's runtime and fail once that runtime is gone.
    // They get half the timeout, the drain the other half.
    let half = std::time::Duration::from_secs(worker_timeout(&state.config));
    let deadline = tokio::time::Instant::now() + half;
    state.workers.cancel();
    let aborts: Vec<_> = workers.iter().map(|w| w.abort_handle()).collect();
    let joined = async {
        for w in workers {
            let _ = w.await;
        }
    };
    if tokio::time::timeout_at(deadline, joined).await.is_err() {
        tracing::warn!("shutdown: workers still busy at the timeout; stopping them");
        for a in &aborts {
            a.abort();
        }
        // A reconciler or statements pass stopped midway did not release its lease.
        if let Err(e) = crate::reconciler::release_lease(state, &state.instance_id).await {
            tracing::warn!(error = %e, "shutdown: cannot release the reconciler lease");
        }
        if let Err(e) = crate::statements::release(state).await {
            tracing::warn!(error = %e, "shutdown: cannot release the statements lease");
        }
    }
    // Graceful: no new connections; requests in flight get the rest of the timeout to finish,
    // and are answered after what they wrote is committed.
    handle.stop(true).await;
    let _ = serving.await;
    // What the requests that just finished recorded.
    if let Err(e) = crate::usecases::activity::flush(state).await {
        tracing::warn!(error = %e, "shutdown: cannot write the last order activity");
    }
    state.store.close().await;
    tracing::info!("shut down");
}
