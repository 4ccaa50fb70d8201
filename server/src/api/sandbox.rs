//! Mounts the provider simulators under `/sandbox/<kind>/` when `[sandbox] enabled = true`. Not
//! part of the merchant API (and not in the OpenAPI document).

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use paybridge_core::provider::SimRequest;

use crate::state::AppState;

/// Route one request to the simulator of its kind.
pub async fn simulator(
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    req: HttpRequest,
    body: web::Bytes,
) -> HttpResponse {
    let (kind, rest) = path.into_inner();
    let Some(sim) = state.simulators.get(kind.as_str()) else {
        return HttpResponse::NotFound().json(serde_json::json!({"error": {"code": "not_found", "message": "no simulator for this provider kind"}}));
    };
    let request = SimRequest {
        method: req.method().as_str().to_owned(),
        path: format!("/{rest}"),
        base: {
            let info = req.connection_info();
            format!("{}://{}/sandbox/{kind}", info.scheme(), info.host())
        },
        query: req.query_string().to_owned(),
        headers: req
            .headers()
            .iter()
            .filter_map(|(name, value)| {
                let value = value.to_str().ok()?;
                Some((name.as_str().to_owned(), value.to_owned()))
            })
            .collect(),
        body,
        tls: None,
    };
    let response = sim.handle(request).await;
    let mut answer = HttpResponse::build(
        StatusCode::from_u16(response.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
    );
    answer.content_type(response.content_type);
    for (name, value) in response.headers {
        answer.insert_header((name, value));
    }
    answer.body(response.body)
}
