//! The change between two versions of a tenant document, as the audit log records it. A secret
//! shows only whether it is set, never a value.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::document::{is_secret_path, leaves, path_string};
use crate::format::toml_to_json;

/// One changed field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DiffEntry {
    /// e.g. `providers.wechat_miniprogram.sign_type`.
    pub path: String,
    /// `added`, `removed` or `changed`.
    pub change: String,
    /// The old value; `{"set": true}` for a secret; absent when added.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub from: Option<serde_json::Value>,
    /// The new value; `{"set": true}` for a secret; absent when removed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub to: Option<serde_json::Value>,
    /// Whether the field is a secret (its values are never recorded).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub secret: bool,
}

/// The field-by-field difference of two plaintext documents (`None`: no document, e.g. before a
/// create or after a delete). Secrets are compared by value but recorded as `{"set": true}`.
pub fn diff(old: Option<&toml::Table>, new: Option<&toml::Table>) -> Vec<DiffEntry> {
    let empty = toml::Table::new();
    let old_leaves = leaves(old.unwrap_or(&empty));
    let new_leaves = leaves(new.unwrap_or(&empty));
    let mut paths: Vec<_> = old_leaves
        .iter()
        .chain(new_leaves.iter())
        .map(|(p, _)| p.clone())
        .collect();
    paths.sort();
    paths.dedup();
    let find = |list: &[(Vec<String>, &toml::Value)], path: &[String]| {
        list.iter()
            .find(|(p, _)| p.as_slice() == path)
            .map(|(_, v)| (*v).clone())
    };
    let mut entries = Vec::new();
    for path in paths {
        let before = find(&old_leaves, &path);
        let after = find(&new_leaves, &path);
        if before == after {
            continue;
        }
        let change = match (&before, &after) {
            (None, _) => "added",
            (_, None) => "removed",
            _ => "changed",
        };
        let secret = is_secret_path(&path);
        let show = |v: Option<toml::Value>| {
            v.map(|v| {
                if secret {
                    serde_json::json!({"set": true})
                } else {
                    let mut t = toml::Table::new();
                    t.insert("v".to_owned(), v);
                    toml_to_json(&t)["v"].take()
                }
            })
        };
        entries.push(DiffEntry {
            path: path_string(&path),
            change: change.to_owned(),
            from: show(before),
            to: show(after),
            secret,
        });
    }
    entries
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::TEST_KIND;

    #[test]
    fn changes_are_listed_by_path_and_secrets_are_never_shown() {
        let old: toml::Table = format!(
            "id = \"t\"\nname = \"Old\"\nwebhook_secret = \"hook-one\"\n[providers.{TEST_KIND}]\nsign_type = \"MD5\"\napi_secret = \"api-one\"\n"
        )
        .parse()
        .unwrap();
        let new: toml::Table = format!(
            "id = \"t\"\nname = \"New\"\nwebhook_secret = \"hook-two\"\n[providers.{TEST_KIND}]\nsign_type = \"HMAC-SHA256\"\napi_secret = \"api-one\"\nmerchant_id = \"9\"\n"
        )
        .parse()
        .unwrap();
        let entries = diff(Some(&old), Some(&new));
        let text = serde_json::to_string(&entries).unwrap();
        assert!(!text.contains("hook-"), "{text}");
        assert!(!text.contains("api-one"), "{text}");
        let by = |p: &str| entries.iter().find(|e| e.path == p).cloned();
        let sign = by(&format!("providers.{TEST_KIND}.sign_type")).unwrap();
        assert_eq!(sign.from, Some(serde_json::json!("MD5")));
        assert_eq!(sign.to, Some(serde_json::json!("HMAC-SHA256")));
        let hook = by("webhook_secret").unwrap();
        assert!(hook.secret);
        assert_eq!(hook.change, "changed");
        assert_eq!(hook.to, Some(serde_json::json!({"set": true})));
        assert!(
            by(&format!("providers.{TEST_KIND}.api_secret")).is_none(),
            "unchanged"
        );
        assert_eq!(
            by(&format!("providers.{TEST_KIND}.merchant_id"))
                .unwrap()
                .change,
            "added"
        );
    }

    #[test]
    fn a_deletion_lists_every_field_as_removed() {
        let old: toml::Table = "id = \"t\"\nwebhook_secret = \"x\"\n".parse().unwrap();
        let entries = diff(Some(&old), None);
        assert_eq!(entries.len(), 2);
        assert!(
            entries
                .iter()
                .all(|e| e.change == "removed" && e.to.is_none())
        );
    }
}
