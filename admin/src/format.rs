//! The two wire forms of a tenant document: TOML (as in `tenants/<id>.toml`) and the same data as
//! JSON. Parse errors name the line, so an editor can point at it.

use paybridge_core::provider::FieldError;
use paybridge_core::tenant::ConfigErrors;

use crate::document::is_mask_marker;

/// The field name used for problems with the document as a whole (syntax, shape).
pub const DOCUMENT_FIELD: &str = "(document)";

/// Parse TOML text; a syntax error names its line (`line 7: expected '='`).
pub fn parse_toml(text: &str) -> Result<toml::Table, ConfigErrors> {
    text.parse::<toml::Table>().map_err(|e| {
        let line = e
            .span()
            .map(|s| text.get(..s.start).unwrap_or(text).matches('\n').count() + 1);
        let message = match line {
            Some(n) => format!("line {n}: {}", e.message()),
            None => e.message().to_owned(),
        };
        ConfigErrors(vec![FieldError::new(DOCUMENT_FIELD, message)])
    })
}

/// Parse JSON text that must be an object.
pub fn parse_json(text: &[u8]) -> Result<toml::Table, ConfigErrors> {
    let value: serde_json::Value = serde_json::from_slice(text).map_err(|e| {
        ConfigErrors(vec![FieldError::new(
            DOCUMENT_FIELD,
            format!("line {}: {e}", e.line()),
        )])
    })?;
    json_to_toml(&value)
}

/// A JSON object as a TOML table. `null` has no TOML form, so it is an error at its path.
pub fn json_to_toml(value: &serde_json::Value) -> Result<toml::Table, ConfigErrors> {
    let mut errors = Vec::new();
    let converted = convert(value, "", &mut errors);
    match converted {
        Some(toml::Value::Table(t)) if errors.is_empty() => Ok(t),
        Some(_) if errors.is_empty() => Err(ConfigErrors(vec![FieldError::new(
            DOCUMENT_FIELD,
            "the document must be a JSON object",
        )])),
        _ => Err(ConfigErrors(errors)),
    }
}

fn convert(
    value: &serde_json::Value,
    path: &str,
    errors: &mut Vec<FieldError>,
) -> Option<toml::Value> {
    use serde_json::Value as J;
    Some(match value {
        J::Null => {
            let field = if path.is_empty() {
                DOCUMENT_FIELD
            } else {
                path
            };
            errors.push(FieldError::new(
                field,
                "null is not allowed; leave the key out instead",
            ));
            return None;
        }
        J::Bool(b) => toml::Value::Boolean(*b),
        J::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => toml::Value::Integer(i),
            (None, Some(f)) => toml::Value::Float(f),
            (None, None) => {
                errors.push(FieldError::new(path, "number out of range"));
                return None;
            }
        },
        J::String(s) => toml::Value::String(s.clone()),
        J::Array(items) => toml::Value::Array(
            items
                .iter()
                .enumerate()
                .filter_map(|(i, v)| convert(v, &format!("{path}[{i}]"), errors))
                .collect(),
        ),
        J::Object(map) => {
            let mut t = toml::Table::new();
            for (k, v) in map {
                let child = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                if let Some(v) = convert(v, &child, errors) {
                    t.insert(k.clone(), v);
                }
            }
            toml::Value::Table(t)
        }
    })
}

/// A TOML table as JSON (datetimes become their RFC 3339 text).
pub fn toml_to_json(table: &toml::Table) -> serde_json::Value {
    serde_json::Value::Object(
        table
            .iter()
            .map(|(k, v)| (k.clone(), value_to_json(v)))
            .collect(),
    )
}

fn value_to_json(value: &toml::Value) -> serde_json::Value {
    use serde_json::Value as J;
    match value {
        toml::Value::String(s) => J::String(s.clone()),
        toml::Value::Integer(i) => J::from(*i),
        toml::Value::Float(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
        toml::Value::Boolean(b) => J::Bool(*b),
        toml::Value::Datetime(d) => J::String(d.to_string()),
        toml::Value::Array(items) => J::Array(items.iter().map(value_to_json).collect()),
        toml::Value::Table(t) => toml_to_json(t),
    }
}

/// The keys a tenant document shows first, in this order.
const LEADING_KEYS: [&str; 5] = ["id", "name", "api_keys", "webhook_url", "webhook_secret"];

/// Render a document as TOML that reads like a hand-written tenant file: the tenant's own keys
/// first, then one `[providers.<kind>]` section per provider, and `{ set = true }` inline.
pub fn render_toml(doc: &toml::Table) -> String {
    let mut out = String::new();
    render_table(doc, &[], &mut out);
    out
}

fn render_table(table: &toml::Table, path: &[String], out: &mut String) {
    let mut keys: Vec<&String> = table.keys().collect();
    if path.is_empty() {
        keys.sort_by_key(|k| {
            LEADING_KEYS
                .iter()
                .position(|l| l == k)
                .unwrap_or(LEADING_KEYS.len())
        });
    }
    let is_section = |v: &toml::Value| v.is_table() && !is_mask_marker(v);
    for key in keys.iter().copied() {
        if let Some(v) = table.get(key).filter(|v| !is_section(v)) {
            out.push_str(&format!("{} = {}\n", render_key(key), v));
        }
    }
    for key in keys {
        let Some(toml::Value::Table(inner)) = table.get(key).filter(|v| is_section(v)) else {
            continue;
        };
        let mut child = path.to_vec();
        child.push(key.clone());
        let has_plain = inner.values().any(|v| !is_section(v));
        if has_plain || inner.is_empty() {
            let header: Vec<String> = child.iter().map(|k| render_key(k)).collect();
            out.push_str(&format!("\n[{}]\n", header.join(".")));
        }
        render_table(inner, &child, out);
    }
}

fn render_key(key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if bare {
        key.to_owned()
    } else {
        toml::Value::String(key.to_owned()).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"
id = "demo"
name = "Demo"
api_keys = ["sha256:00"]
webhook_secret = { set = true }

[providers.testpay]
enabled = true
merchant_id = "123"
api_secret = { set = true }
pem = '''
-----BEGIN X-----
abc
-----END X-----
'''
"#;

    #[test]
    fn rendered_toml_parses_back_to_the_same_document() {
        let doc = parse_toml(SAMPLE).unwrap();
        let text = render_toml(&doc);
        assert!(
            text.starts_with("id = \"demo\"\nname = \"Demo\"\n"),
            "{text}"
        );
        assert!(text.contains("webhook_secret = { set = true }"), "{text}");
        assert!(text.contains("[providers.testpay]"), "{text}");
        assert!(!text.contains("[providers]\n"), "{text}");
        assert_eq!(parse_toml(&text).unwrap(), doc);
    }

    #[test]
    fn json_and_toml_carry_the_same_document() {
        let doc = parse_toml(SAMPLE).unwrap();
        let json = toml_to_json(&doc);
        assert_eq!(json["webhook_secret"], serde_json::json!({"set": true}));
        assert_eq!(json_to_toml(&json).unwrap(), doc);
    }

    #[test]
    fn syntax_errors_name_the_line_and_nulls_name_the_field() {
        let err = parse_toml("id = \"x\"\nname = \n").unwrap_err();
        assert!(err.0[0].message.starts_with("line 2:"), "{err}");
        let err = parse_json(br#"{"id": "x", "providers": {"k": {"a": null}}}"#).unwrap_err();
        assert_eq!(err.0[0].field, "providers.k.a");
        assert!(parse_json(b"[1]").is_err());
    }
}

/// Fuzzing (issue 8): the admin document parsers never panic, whatever the body.
#[cfg(test)]
mod fuzz {
    use super::*;
    use proptest::prelude::*;

    const TOKENS: &[&str] = &[
        "{",
        "}",
        "[",
        "]",
        "\"",
        ":",
        ",",
        "null",
        "true",
        "1e999",
        "-0",
        "18446744073709551616",
        "\"id\"",
        "\"providers\"",
        "\"a\\u0000\"",
        "=",
        "\n",
        "[providers.x]",
        "'''",
        "#",
        " ",
    ];

    proptest! {
        #[test]
        fn the_json_parser_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
            let _ = parse_json(&bytes);
        }

        #[test]
        fn json_and_toml_shaped_noise_never_panics(
            tokens in prop::collection::vec(prop::sample::select(TOKENS), 0..64),
        ) {
            let text = tokens.concat();
            let _ = parse_json(text.as_bytes());
            if let Ok(table) = parse_toml(&text) {
                // What parses also renders and converts back.
                let _ = json_to_toml(&toml_to_json(&table));
                let _ = render_toml(&table);
            }
        }

        #[test]
        fn the_toml_parser_never_panics(text in "\\PC{0,400}") {
            let _ = parse_toml(&text);
        }
    }
}
