//! Statements under `/admin/api/` (DESIGN.md, "Statements"): the list, one statement with its
//! discrepancies and runs, the discrepancies as CSV, and a run (full admin token; audited).
//! Read-only tokens may read.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, get, post, web};
use chrono::NaiveDate;
use paybridge_admin::api::{AdminAuth, AdminState, AdminWrite};
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa::IntoParams;

use crate::api::error::ApiError;
use crate::api::views::ErrorBody;
use crate::db::entities::{statement, statement_discrepancy, statement_run};
use crate::state::AppState;
use crate::store::statements::{self as store, StatementFilter};
use crate::usecases::Failure;
use crate::usecases::statements::{self as statements, Begun, statement_json as view};

/// Filters of the statements list.
#[derive(Debug, Deserialize, IntoParams)]
pub struct StatementsQuery {
    /// One tenant's.
    pub tenant: Option<String>,
    /// One provider kind's.
    pub provider: Option<String>,
    /// From this day (`YYYY-MM-DD`, inclusive).
    pub from: Option<String>,
    /// To this day (inclusive).
    pub to: Option<String>,
    /// `pending`, `running`, `not_ready`, `reconciled` or `failed`.
    pub status: Option<String>,
}

/// Which run to show.
#[derive(Debug, Deserialize, IntoParams)]
pub struct VersionQuery {
    /// An earlier run, whole (default: the latest).
    pub version: Option<i64>,
}

fn day(text: &str, field: &'static str) -> Result<NaiveDate, Failure> {
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .map_err(|_| Failure::invalid(field, "must be a day, YYYY-MM-DD"))
}

fn counts(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| json!({}))
}

fn discrepancy(d: &statement_discrepancy::Model) -> Value {
    let parse = |t: &Option<String>| {
        t.as_deref()
            .and_then(|t| serde_json::from_str::<Value>(t).ok())
    };
    json!({
        "kind": d.kind,
        "out_trade_no": d.out_trade_no,
        "out_refund_no": d.out_refund_no,
        "provider_trade_no": d.provider_trade_no,
        "healed": d.healed,
        "bill": parse(&d.bill),
        "paybridge": parse(&d.paybridge),
    })
}

fn run_view(r: &statement_run::Model) -> Value {
    let mut v = json!({
        "version": r.version,
        "at": r.at,
        "status": r.status,
        "totals": counts(&r.totals),
        "discrepancies": counts(&r.counts),
    });
    if let Some(reason) = &r.reason {
        v["reason"] = json!(reason);
    }
    v
}

async fn find(
    state: &AppState,
    tenant: &str,
    provider: &str,
    date: &str,
) -> Result<statement::Model, ApiError> {
    day(date, "date")?;
    Ok(store::find(state.store.db(), tenant, provider, date)
        .await?
        .ok_or_else(|| Failure::not_found("statement"))?)
}

/// The statements, newest day first.
#[utoipa::path(
    tag = "admin",
    params(StatementsQuery),
    responses(
        (status = 200, description = "`{\"statements\": [{tenant, provider, date, status, reason?, totals, discrepancies: {kind: count}}]}`", body = Object),
        (status = 400, description = "A day that is not YYYY-MM-DD", body = ErrorBody),
        (status = 401, description = "Missing or unknown admin token", body = ErrorBody),
    ),
    security(("admin" = []))
)]
#[get("/admin/api/statements")]
pub async fn list_statements(
    state: web::Data<AppState>,
    _auth: AdminAuth,
    query: web::Query<StatementsQuery>,
) -> Result<HttpResponse, ApiError> {
    let q = query.into_inner();
    for (value, field) in [(&q.from, "from"), (&q.to, "to")] {
        if let Some(v) = value {
            day(v, field)?;
        }
    }
    let filter = StatementFilter {
        tenant_id: q.tenant,
        provider: q.provider,
        from: q.from,
        to: q.to,
        status: q.status,
    };
    let rows = store::list(state.store.reader(), &filter, 1000).await?;
    Ok(HttpResponse::Ok().json(json!({ "statements": rows.iter().map(view).collect::<Vec<_>>() })))
}

/// One statement with its discrepancies and its runs (`?version=N`: an earlier run, whole).
#[utoipa::path(
    tag = "admin",
    params(VersionQuery),
    responses(
        (status = 200, description = "The statement with `discrepancies: [...]` and `runs`", body = Object),
        (status = 404, description = "No statement of that day, or no such run", body = ErrorBody),
    ),
    security(("admin" = []))
)]
#[get("/admin/api/statements/{tenant}/{provider}/{date}")]
pub async fn get_statement(
    state: web::Data<AppState>,
    _auth: AdminAuth,
    path: web::Path<(String, String, String)>,
    query: web::Query<VersionQuery>,
) -> Result<HttpResponse, ApiError> {
    let (tenant, provider, date) = path.into_inner();
    let s = find(&state, &tenant, &provider, &date).await?;
    let db = state.store.db();
    let runs = store::runs(db, &s.id).await?;
    let version = query.version.unwrap_or(s.version);
    let mut v = view(&s);
    let mut by_kind = counts(&s.counts);
    if version != s.version {
        let run = runs
            .iter()
            .find(|r| r.version == version)
            .ok_or_else(|| Failure::not_found("run"))?;
        v["version"] = json!(run.version);
        v["status"] = json!(run.status);
        v["totals"] = counts(&run.totals);
        v["reason"] = json!(run.reason);
        by_kind = counts(&run.counts);
    }
    let found = store::discrepancies(db, &s.id, version).await?;
    v["discrepancy_counts"] = by_kind;
    v["discrepancies"] = json!(found.iter().map(discrepancy).collect::<Vec<_>>());
    v["runs"] = json!(runs.iter().map(run_view).collect::<Vec<_>>());
    Ok(HttpResponse::Ok().json(v))
}

/// A CSV field: quoted when it must be, and never read as a formula by a spreadsheet.
fn csv_field(value: &str) -> String {
    let value = if value.starts_with(['=', '+', '@', '\t', '\r']) {
        format!("'{value}")
    } else {
        value.to_owned()
    };
    if value.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value
    }
}

/// The discrepancies of a statement's run as CSV.
#[utoipa::path(
    tag = "admin",
    params(VersionQuery),
    responses(
        (status = 200, description = "`kind,out_trade_no,out_refund_no,provider_trade_no,healed,bill_amount,paybridge_amount,bill_status,paybridge_status`", content_type = "text/csv"),
        (status = 404, description = "No statement of that day", body = ErrorBody),
    ),
    security(("admin" = []))
)]
#[get("/admin/api/statements/{tenant}/{provider}/{date}/discrepancies.csv")]
pub async fn discrepancies_csv(
    state: web::Data<AppState>,
    _auth: AdminAuth,
    path: web::Path<(String, String, String)>,
    query: web::Query<VersionQuery>,
) -> Result<HttpResponse, ApiError> {
    let (tenant, provider, date) = path.into_inner();
    let s = find(&state, &tenant, &provider, &date).await?;
    let found =
        store::discrepancies(state.store.db(), &s.id, query.version.unwrap_or(s.version)).await?;
    let mut out = String::from(
        "kind,out_trade_no,out_refund_no,provider_trade_no,healed,bill_amount,paybridge_amount,bill_status,paybridge_status\r\n",
    );
    for d in &found {
        let v = discrepancy(d);
        let text = |x: &Value| match x {
            Value::Null => String::new(),
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let cells = [
            text(&v["kind"]),
            text(&v["out_trade_no"]),
            text(&v["out_refund_no"]),
            text(&v["provider_trade_no"]),
            text(&v["healed"]),
            text(&v["bill"]["amount"]),
            text(&v["paybridge"]["amount"]),
            text(&v["bill"]["status"]),
            text(&v["paybridge"]["status"]),
        ];
        out.push_str(
            &cells
                .iter()
                .map(|c| csv_field(c))
                .collect::<Vec<_>>()
                .join(","),
        );
        out.push_str("\r\n");
    }
    Ok(HttpResponse::Ok()
        .content_type("text/csv; charset=utf-8")
        .insert_header((
            "Content-Disposition",
            format!("attachment; filename=\"{tenant}-{provider}-{date}-discrepancies.csv\""),
        ))
        .body(out))
}

/// Run (or re-run) a day's statement: `202 {"statement"}`, `running`; a run in progress is
/// answered as it is. A day to come is `422`. A full admin token; audited.
#[utoipa::path(
    tag = "admin",
    responses(
        (status = 202, description = "`{\"statement\": …}` with `status: running` (or the run already in progress)", body = Object),
        (status = 403, description = "A read-only admin token", body = ErrorBody),
        (status = 404, description = "No such tenant or provider", body = ErrorBody),
        (status = 422, description = "A day to come", body = ErrorBody),
    ),
    security(("admin" = []))
)]
#[post("/admin/api/statements/{tenant}/{provider}/{date}/run")]
pub async fn run_statement(
    state: web::Data<AppState>,
    admin: web::Data<AdminState>,
    who: AdminWrite,
    path: web::Path<(String, String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (tenant_id, provider, date) = path.into_inner();
    let the_day = day(&date, "date")?;
    let today = paybridge_core::beijing::local(chrono::Utc::now()).date_naive();
    if the_day > today {
        return Err(Failure::new(
            crate::usecases::FailureKind::Unprocessable,
            "future_day",
            "a day to come has no bill yet",
        )
        .field("date")
        .into());
    }
    let tenant = state
        .tenants
        .get(&tenant_id)
        .ok_or_else(|| Failure::not_found("tenant"))?;
    if tenant.any_provider(&provider).is_none() {
        return Err(Failure::not_found("provider").into());
    }
    let row = match statements::begin(&state, &tenant, &provider, the_day).await? {
        Begun::Running(row) => row,
        Begun::Started(row) => {
            let (state, started) = (state.clone(), row.clone());
            tokio::spawn(async move {
                if let Err(e) = statements::carry_on(&state, &tenant, &started, the_day).await {
                    tracing::error!(error = %e.message, statement = %started.id, "statement run failed");
                }
            });
            row
        }
    };
    crate::api::console::audit(
        &admin,
        &who.actor,
        "run_statement",
        &tenant_id,
        &format!("statements.{provider}.{date}"),
        json!({ "version": row.version, "status": row.status }),
    )
    .await;
    Ok(HttpResponse::build(StatusCode::ACCEPTED).json(json!({ "statement": view(&row) })))
}
