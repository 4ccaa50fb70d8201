//! A tenant document as a TOML table: which of its fields are secrets (from the provider
//! factories), masking them as `{ set = true }`, and merging `{ set = true }` back from the stored
//! document.

use paybridge_core::provider::{FieldError, factory};
use paybridge_core::tenant::ConfigErrors;

/// The prefix of every encrypted value at rest; a plaintext value may not start with it.
pub const ENCRYPTED_PREFIX: &str = "enc:v1:";

/// A key path into a document, e.g. `["providers", "alipay_app", "private_key"]`.
pub type FieldPath = Vec<String>;

/// The tenant-level secret, besides the providers' secret fields.
pub const WEBHOOK_SECRET: &str = "webhook_secret";

/// `providers.alipay_app.private_key`
pub fn path_string(path: &[String]) -> String {
    path.join(".")
}

/// Whether the value at this path is a secret: `webhook_secret`, every provider field whose
/// factory declares `secret: true`, and (conservatively) every field of a provider kind that no
/// linked factory knows.
pub fn is_secret_path(path: &[String]) -> bool {
    match path {
        [only] => only == WEBHOOK_SECRET,
        [providers, kind, rest @ ..] if providers == "providers" && !rest.is_empty() => {
            match factory(kind) {
                None => true,
                Some(f) => {
                    rest.len() == 1 && f.fields.iter().any(|s| s.secret && s.name == rest[0])
                }
            }
        }
        _ => false,
    }
}

/// Every leaf (a value that is not a table) with its path, in key order.
pub fn leaves(doc: &toml::Table) -> Vec<(FieldPath, &toml::Value)> {
    fn walk<'a>(
        t: &'a toml::Table,
        prefix: &mut FieldPath,
        out: &mut Vec<(FieldPath, &'a toml::Value)>,
    ) {
        for (k, v) in t {
            prefix.push(k.clone());
            match v {
                toml::Value::Table(inner) if !is_mask_marker(v) => walk(inner, prefix, out),
                _ => out.push((prefix.clone(), v)),
            }
            prefix.pop();
        }
    }
    let mut out = Vec::new();
    walk(doc, &mut Vec::new(), &mut out);
    out
}

/// Every string leaf with its path (owned, so the document can be edited meanwhile).
pub fn string_leaves(doc: &toml::Table) -> Vec<(FieldPath, String)> {
    leaves(doc)
        .into_iter()
        .filter_map(|(p, v)| v.as_str().map(|s| (p, s.to_owned())))
        .collect()
}

/// The paths of the secrets present in this document.
pub fn present_secret_paths(doc: &toml::Table) -> Vec<FieldPath> {
    leaves(doc)
        .into_iter()
        .map(|(p, _)| p)
        .filter(|p| is_secret_path(p))
        .collect()
}

/// The value at a path.
pub fn get_path<'a>(doc: &'a toml::Table, path: &[String]) -> Option<&'a toml::Value> {
    let (last, parents) = path.split_last()?;
    let mut table = doc;
    for key in parents {
        table = table.get(key)?.as_table()?;
    }
    table.get(last)
}

/// Set the value at a path, creating tables on the way.
pub fn set_path(doc: &mut toml::Table, path: &[String], value: toml::Value) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut table = doc;
    for key in parents {
        let entry = table
            .entry(key.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if !entry.is_table() {
            *entry = toml::Value::Table(toml::Table::new());
        }
        let toml::Value::Table(inner) = entry else {
            return;
        };
        table = inner;
    }
    table.insert(last.clone(), value);
}

/// Remove the value at a path.
pub fn remove_path(doc: &mut toml::Table, path: &[String]) -> Option<toml::Value> {
    let (last, parents) = path.split_last()?;
    let mut table = doc;
    for key in parents {
        table = table.get_mut(key)?.as_table_mut()?;
    }
    table.remove(last)
}

/// The value a secret shows as: `{ set = true }`.
pub fn mask_marker() -> toml::Value {
    let mut t = toml::Table::new();
    t.insert("set".to_owned(), toml::Value::Boolean(true));
    toml::Value::Table(t)
}

/// Whether a value is `{ set = <bool> }`.
pub fn is_mask_marker(value: &toml::Value) -> bool {
    matches!(value, toml::Value::Table(t) if t.len() == 1 && t.get("set").is_some_and(toml::Value::is_bool))
}

/// The document as every client sees it: each secret replaced by `{ set = true }`.
pub fn mask(doc: &toml::Table) -> toml::Table {
    let mut out = doc.clone();
    for path in present_secret_paths(doc) {
        set_path(&mut out, &path, mask_marker());
    }
    out
}

/// Put the stored values back where the incoming document says `{ set = true }` ("keep"), drop
/// the field where it says `{ set = false }`, and refuse values that only the store may write.
/// Every problem is reported with its path.
pub fn merge_kept_secrets(
    incoming: &toml::Table,
    stored: Option<&toml::Table>,
) -> Result<toml::Table, ConfigErrors> {
    let mut out = incoming.clone();
    let mut errors = Vec::new();
    for (path, value) in leaves(incoming) {
        let field = path_string(&path);
        if let toml::Value::String(s) = value
            && s.starts_with(ENCRYPTED_PREFIX)
        {
            errors.push(FieldError::new(
                field,
                format!("values starting with {ENCRYPTED_PREFIX:?} are reserved for encrypted secrets; send the plaintext value"),
            ));
            continue;
        }
        if !is_mask_marker(value) {
            continue;
        }
        if !is_secret_path(&path) {
            errors.push(FieldError::new(
                field,
                "{ set = true } stands only for a secret field; send the value",
            ));
            continue;
        }
        match value.get("set").and_then(toml::Value::as_bool) {
            Some(false) => {
                remove_path(&mut out, &path);
            }
            _ => match stored.and_then(|s| get_path(s, &path)) {
                Some(kept) => set_path(&mut out, &path, kept.clone()),
                None => errors.push(FieldError::new(
                    field,
                    "{ set = true } keeps the stored value, but none is stored; send the value",
                )),
            },
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(ConfigErrors(errors))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::TEST_KIND;

    fn doc(text: &str) -> toml::Table {
        text.parse().unwrap()
    }

    #[test]
    fn secrets_come_from_the_factories_and_webhook_secret() {
        let p = |s: &str| s.split('.').map(str::to_owned).collect::<Vec<_>>();
        assert!(is_secret_path(&p("webhook_secret")));
        assert!(is_secret_path(&p(&format!(
            "providers.{TEST_KIND}.api_secret"
        ))));
        assert!(!is_secret_path(&p(&format!(
            "providers.{TEST_KIND}.merchant_id"
        ))));
        assert!(!is_secret_path(&p(&format!(
            "providers.{TEST_KIND}.enabled"
        ))));
        assert!(is_secret_path(&p("providers.unknown_kind.anything")));
        assert!(!is_secret_path(&p("name")));
    }

    #[test]
    fn masking_hides_every_secret_and_keeps_the_rest() {
        let d = doc(&format!(
            "id = \"t\"\nwebhook_secret = \"hook-s3cret\"\n[providers.{TEST_KIND}]\nmerchant_id = \"123\"\napi_secret = \"api-s3cret\"\n"
        ));
        let masked = mask(&d);
        let text = toml::to_string(&masked).unwrap();
        assert!(!text.contains("s3cret"), "{text}");
        assert_eq!(masked.get("webhook_secret"), Some(&mask_marker()));
        assert_eq!(
            get_path(
                &masked,
                &["providers".into(), TEST_KIND.into(), "merchant_id".into()]
            )
            .and_then(toml::Value::as_str),
            Some("123")
        );
    }

    #[test]
    fn set_true_keeps_the_stored_value_and_a_new_value_replaces_it() {
        let stored = doc(&format!(
            "id = \"t\"\nwebhook_secret = \"old-hook\"\n[providers.{TEST_KIND}]\napi_secret = \"old-api\"\n"
        ));
        let incoming = mask(&stored);
        assert_eq!(
            merge_kept_secrets(&incoming, Some(&stored)).unwrap(),
            stored
        );

        let mut edited = incoming.clone();
        edited.insert("webhook_secret".into(), "new-hook".into());
        let merged = merge_kept_secrets(&edited, Some(&stored)).unwrap();
        assert_eq!(merged["webhook_secret"].as_str(), Some("new-hook"));
        assert_eq!(
            merged["providers"][TEST_KIND]["api_secret"].as_str(),
            Some("old-api")
        );
    }

    #[test]
    fn set_true_without_a_stored_value_or_on_a_plain_field_is_an_error() {
        let incoming = doc("id = \"t\"\nwebhook_secret = { set = true }\nname = { set = true }\n");
        let errors = merge_kept_secrets(&incoming, None).unwrap_err().to_string();
        assert!(
            errors.contains("webhook_secret: { set = true } keeps"),
            "{errors}"
        );
        assert!(
            errors.contains("name: { set = true } stands only"),
            "{errors}"
        );
    }

    #[test]
    fn set_false_removes_a_secret_and_encrypted_looking_input_is_refused() {
        let stored = doc("id = \"t\"\nwebhook_secret = \"old\"\n");
        let merged = merge_kept_secrets(
            &doc("id = \"t\"\nwebhook_secret = { set = false }\n"),
            Some(&stored),
        )
        .unwrap();
        assert!(!merged.contains_key("webhook_secret"));
        let err = merge_kept_secrets(&doc("id = \"t\"\nwebhook_secret = \"enc:v1:AAAA\"\n"), None)
            .unwrap_err();
        assert_eq!(err.0[0].field, "webhook_secret");
    }
}
