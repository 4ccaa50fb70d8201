//! What tenant and platform documents share: the list of problems of a document, the rule for
//! ids, and wiping plaintext secrets out of a table.

use std::fmt;

use crate::provider::FieldError;

/// Every problem found in one tenant document, each with its full key path
/// (`providers.wechat_miniprogram.mch_id: required`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<FieldError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{}: {}", e.field, e.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Overwrite every string value of `table` with zeros, in place: a document that held plaintext
/// secrets does not leave them in freed memory once it is dropped.
pub fn wipe_table(table: &mut toml::Table) {
    for (_, value) in table.iter_mut() {
        wipe_value(value);
    }
}

/// Overwrite every string in `value` with zeros, in place.
pub fn wipe_value(value: &mut toml::Value) {
    use zeroize::Zeroize;
    match value {
        toml::Value::String(s) => s.zeroize(),
        toml::Value::Array(items) => items.iter_mut().for_each(wipe_value),
        toml::Value::Table(t) => wipe_table(t),
        _ => {}
    }
}

/// A tenant's or platform's id: 1–64 of `[a-z0-9_-]` (it appears in URLs and keys).
pub(crate) fn is_valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}
