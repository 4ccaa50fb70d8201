//! JSON request bodies whose errors name the field.
//!
//! `web::Json` answers a value of the wrong type with serde's text and no field ("invalid type:
//! floating point `1.5`, expected i64 at line 1 column 85"). [`JsonBody`] deserializes through
//! `serde_path_to_error`, so a wrong type, a missing field or an unknown field is a
//! `400 invalid_request` whose `field` is the JSON path (`amount`, `payer.openid`). A body that is
//! not JSON at all stays `400 invalid_json`.

use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::http::StatusCode;
use actix_web::http::header::CONTENT_TYPE;
use actix_web::{FromRequest, HttpRequest, web};
use serde::de::DeserializeOwned;

use crate::api::error::ApiError;
use crate::state::AppState;

/// Largest body when the state is not reachable (never in the running server).
const DEFAULT_LIMIT: usize = 64 * 1024;

/// A JSON body of type `T`.
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<T> std::ops::Deref for JsonBody<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: DeserializeOwned + 'static> FromRequest for JsonBody<T> {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let limit = req
            .app_data::<web::Data<AppState>>()
            .map_or(DEFAULT_LIMIT, |s| s.config.http.max_body_bytes);
        let is_json = req
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(|v| v.trim().to_ascii_lowercase())
            .is_some_and(|v| v == "application/json" || v.ends_with("+json"));
        let declared = req
            .headers()
            .get(actix_web::http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        let bytes = web::Bytes::from_request(req, payload);
        Box::pin(async move {
            if !is_json {
                return Err(ApiError::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "unsupported_media_type",
                    "send Content-Type: application/json",
                ));
            }
            if declared.is_some_and(|n| n > limit) {
                return Err(too_large(limit));
            }
            let bytes = bytes.await.map_err(|_| too_large(limit))?;
            if bytes.len() > limit {
                return Err(too_large(limit));
            }
            parse(&bytes).map(JsonBody)
        })
    }
}

fn too_large(limit: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
        format!("request body too large: at most {limit} bytes"),
    )
}

/// Deserialize `body`, naming the field of a type error.
pub fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    // serde's derive also reads a struct from an array (`[…]` by position): only objects here.
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    if first.is_some_and(|b| *b != b'{')
        && serde_json::from_slice::<serde_json::Value>(body).is_ok()
    {
        let mut err = ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "body: send a JSON object",
        );
        err.field = Some("body".to_owned());
        return Err(err);
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let message = without_position(&inner);
        if inner.classify() != serde_json::error::Category::Data {
            return ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_json",
                format!("the body is not valid JSON: {message}"),
            );
        }
        let field = field_of(&path, &message);
        let mut err = ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            format!("{field}: {message}"),
        );
        err.field = Some(field);
        err
    })?;
    // Trailing characters after the value are not JSON either.
    de.end().map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            format!("the body is not valid JSON: {}", without_position(&e)),
        )
    })?;
    Ok(value)
}

/// serde_json's message without its " at line L column C".
fn without_position(e: &serde_json::Error) -> String {
    let text = e.to_string();
    match text.rfind(" at line ") {
        Some(i) => text[..i].to_owned(),
        None => text,
    }
}

/// The JSON path of the field at fault. serde reports a missing or unknown field at the path of
/// the object that holds it, with the name in backquotes: append it.
fn field_of(path: &str, message: &str) -> String {
    let named = ["missing field `", "unknown field `"]
        .iter()
        .find_map(|prefix| message.strip_prefix(prefix))
        .and_then(|rest| rest.split('`').next());
    let parent = if path == "." { "" } else { path };
    match named {
        Some(name) if !parent.ends_with(name) => {
            if parent.is_empty() {
                name.to_owned()
            } else {
                format!("{parent}.{name}")
            }
        }
        _ if parent.is_empty() => "body".to_owned(),
        _ => parent.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::usecases::resources::fen;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Payer {
        openid: String,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Order {
        #[serde(deserialize_with = "fen")]
        amount: i64,
        #[serde(default)]
        payer: Option<Payer>,
    }

    fn error(body: &str) -> ApiError {
        parse::<Order>(body.as_bytes()).expect_err(body)
    }

    #[test]
    fn wrong_types_name_the_field_and_what_to_send() {
        for body in [r#"{"amount": 1.5}"#, r#"{"amount": "1.00"}"#] {
            let e = error(body);
            assert_eq!(
                (e.status, e.code),
                (StatusCode::BAD_REQUEST, "invalid_request")
            );
            assert_eq!(e.field.as_deref(), Some("amount"), "{body}");
            assert!(
                e.message
                    .contains("integer number of fen, e.g. 150 for 1.50 CNY"),
                "{}",
                e.message
            );
            assert!(!e.message.contains("line 1"), "{}", e.message);
        }
        let e = error(r#"{"amount": 100, "payer": {"openid": null}}"#);
        assert_eq!(e.code, "invalid_request");
        assert_eq!(e.field.as_deref(), Some("payer.openid"));
        assert!(e.message.contains("expected a string"), "{}", e.message);
    }

    #[test]
    fn missing_and_unknown_fields_are_named_by_path() {
        let e = error(r#"{"payer": {"openid": "o"}}"#);
        assert_eq!(e.field.as_deref(), Some("amount"), "{}", e.message);
        let e = error(r#"{"amount": 1, "payer": {}}"#);
        assert_eq!(e.field.as_deref(), Some("payer.openid"), "{}", e.message);
        let e = error(r#"{"amount": 1, "amonut": 2}"#);
        assert_eq!(e.field.as_deref(), Some("amonut"), "{}", e.message);
        let e = error(r#"{"amount": 1, "payer": {"openid": "o", "x": 1}}"#);
        assert_eq!(e.field.as_deref(), Some("payer.x"), "{}", e.message);
    }

    #[test]
    fn an_amount_beyond_i64_is_refused_not_wrapped() {
        let e = error(r#"{"amount": 18446744073709551615}"#);
        assert_eq!(e.field.as_deref(), Some("amount"));
    }

    #[test]
    fn bodies_that_are_not_json_stay_invalid_json() {
        for body in ["{", "amount=1", r#"{"amount": 1} x"#, ""] {
            let e = error(body);
            assert_eq!(e.code, "invalid_json", "{body}: {}", e.message);
            assert!(e.field.is_none());
        }
        let e = error("[1]");
        assert_eq!(e.code, "invalid_request", "{}", e.message);
        assert_eq!(e.field.as_deref(), Some("body"));
    }

    #[test]
    fn a_good_body_parses() {
        let o = parse::<Order>(br#"{"amount": 150, "payer": {"openid": "o"}}"#).expect("parses");
        assert_eq!(o.amount, 150);
    }
}
