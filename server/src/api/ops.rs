//! Operations endpoints.

use actix_web::{HttpResponse, get, web};

use crate::state::AppState;

/// Liveness and database reachability.
#[utoipa::path(tag = "operations", responses((status = 200, description = "Healthy"), (status = 503, description = "Database unreachable")))]
#[get("/healthz")]
pub async fn healthz(state: web::Data<AppState>) -> HttpResponse {
    match state.store.db().ping().await {
        Ok(()) => HttpResponse::Ok().json(serde_json::json!({"status": "ok"})),
        Err(e) => {
            tracing::error!(error = %e, "health check: database unreachable");
            HttpResponse::ServiceUnavailable()
                .json(serde_json::json!({"status": "database unreachable"}))
        }
    }
}

/// Liveness: 200 while the process serves, whatever the database does.
#[utoipa::path(tag = "operations", responses((status = 200, description = "The process serves")))]
#[get("/livez")]
pub async fn livez() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({"status": "ok"}))
}

/// Readiness: 200 when the database answers a ping within 1 s and the tenants are loaded;
/// otherwise 503. A load balancer sends no traffic to an instance that is not ready.
#[utoipa::path(tag = "operations", responses((status = 200, description = "Ready"), (status = 503, description = "Not ready: the database did not answer within 1 s, or the instance is shutting down")))]
#[get("/readyz")]
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    match crate::usecases::health::ready(&state).await {
        Ok(()) => HttpResponse::Ok().json(serde_json::json!({"status": "ready"})),
        Err(reason) => {
            HttpResponse::ServiceUnavailable().json(serde_json::json!({"status": reason}))
        }
    }
}

/// The SQLite writer's groups and jobs (jobs per group is how many writes share one fsync), the
/// messages that carried the answers back to the request threads, and the groups run again
/// with a savepoint per job because one of their jobs failed after writing.
fn writer_metrics(state: &AppState) -> String {
    use std::sync::atomic::Ordering;
    let stats = state.store.write_stats();
    format!(
        "# TYPE paybridge_db_write_groups_total counter\npaybridge_db_write_groups_total {}\n\
         # TYPE paybridge_db_write_jobs_total counter\npaybridge_db_write_jobs_total {}\n\
         # TYPE paybridge_db_write_handoffs_total counter\npaybridge_db_write_handoffs_total {}\n\
         # TYPE paybridge_db_write_replays_total counter\npaybridge_db_write_replays_total {}\n",
        stats.groups.load(Ordering::Relaxed),
        stats.jobs.load(Ordering::Relaxed),
        stats.handoffs.load(Ordering::Relaxed),
        stats.replays.load(Ordering::Relaxed)
    )
}

/// Prometheus text exposition (0.0.4): histograms of HTTP requests, provider calls and database
/// commits, notification verdicts, the webhook backlog, and the `process_*` metrics.
#[utoipa::path(tag = "operations", responses((status = 200, description = "Prometheus text exposition", content_type = "text/plain")))]
#[get("/metrics")]
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(prometheus_client::encoding::prometheus_text::CONTENT_TYPE)
        .body(format!(
            "{}{}",
            state.metrics.render(),
            writer_metrics(&state)
        ))
}
