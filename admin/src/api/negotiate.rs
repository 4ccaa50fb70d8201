//! Content negotiation: documents come in as TOML (`Content-Type: application/toml`) or JSON, and
//! answers go out as JSON, or TOML with `Accept: application/toml`. Errors are always JSON.

use actix_web::http::StatusCode;
use actix_web::http::header::{ACCEPT, CONTENT_TYPE};
use actix_web::{HttpRequest, HttpResponse};
use serde::Serialize;

use super::error::AdminError;
use crate::format::{parse_json, parse_toml, render_toml, toml_to_json};

/// The TOML media type.
pub const TOML: &str = "application/toml";

fn header(req: &HttpRequest, name: actix_web::http::header::HeaderName) -> &str {
    req.headers()
        .get(name)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default()
}

/// Whether the client asked for TOML.
pub fn wants_toml(req: &HttpRequest) -> bool {
    let accept = header(req, ACCEPT).to_ascii_lowercase();
    accept.contains("application/toml") || accept.contains("text/toml")
}

/// Parse a tenant document from the body by its `Content-Type`.
pub fn read_document(req: &HttpRequest, body: &[u8]) -> Result<toml::Table, AdminError> {
    let content_type = header(req, CONTENT_TYPE).to_ascii_lowercase();
    if content_type.contains("toml") {
        let text = std::str::from_utf8(body)
            .map_err(|_| AdminError::bad_request("the TOML body is not UTF-8"))?;
        Ok(parse_toml(text)?)
    } else if content_type.contains("json") {
        Ok(parse_json(body)?)
    } else {
        Err(AdminError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the tenant document with Content-Type: application/toml or application/json",
        ))
    }
}

fn builder(status: StatusCode) -> actix_web::HttpResponseBuilder {
    let mut b = HttpResponse::build(status);
    b.insert_header(("Cache-Control", "no-store"));
    b
}

/// Answer with a (masked!) tenant document, tagged with its version.
pub fn document(
    req: &HttpRequest,
    status: StatusCode,
    masked: &toml::Table,
    version: i64,
) -> HttpResponse {
    let mut b = builder(status);
    b.insert_header(("ETag", format!("\"{version}\"")));
    if wants_toml(req) {
        b.content_type(TOML).body(render_toml(masked))
    } else {
        b.json(toml_to_json(masked))
    }
}

/// Answer with any serializable value.
pub fn reply<T: Serialize>(
    req: &HttpRequest,
    status: StatusCode,
    value: &T,
) -> Result<HttpResponse, AdminError> {
    if wants_toml(req) {
        let text = toml::to_string(value).map_err(|e| AdminError::internal(&e))?;
        Ok(builder(status).content_type(TOML).body(text))
    } else {
        Ok(builder(status).json(value))
    }
}

/// The version in an `If-Match` header (`"3"`), if one is sent.
pub fn if_match(req: &HttpRequest) -> Result<Option<i64>, AdminError> {
    let Some(value) = req.headers().get(actix_web::http::header::IF_MATCH) else {
        return Ok(None);
    };
    value
        .to_str()
        .ok()
        .map(|v| v.trim().trim_start_matches("W/").trim_matches('"'))
        .and_then(|v| v.parse().ok())
        .map(Some)
        .ok_or_else(|| AdminError::bad_request("If-Match must be the ETag of a tenant, e.g. \"3\""))
}
