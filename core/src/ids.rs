//! The identity rules of the merchant API, checked before any provider call.

/// Why an identifier or text field is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct IdError {
    /// The request field.
    pub field: &'static str,
    /// What is wrong.
    pub message: String,
}

fn charset_ok(s: &str, extra: &[u8]) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || extra.contains(&b))
}

/// `out_trade_no`: 6–32 characters, each a letter, a digit or one of `_ - | *`.
pub fn check_out_trade_no(s: &str) -> Result<(), IdError> {
    if (6..=32).contains(&s.len()) && charset_ok(s, b"_-|*") {
        Ok(())
    } else {
        Err(IdError {
            field: "out_trade_no",
            message: "must be 6-32 characters, each a letter, a digit or one of _ - | *".to_owned(),
        })
    }
}

/// `out_refund_no`: 1–64 characters, each a letter, a digit or one of `_ - | * @`.
pub fn check_out_refund_no(s: &str) -> Result<(), IdError> {
    if (1..=64).contains(&s.len()) && charset_ok(s, b"_-|*@") {
        Ok(())
    } else {
        Err(IdError {
            field: "out_refund_no",
            message: "must be 1-64 characters, each a letter, a digit or one of _ - | * @"
                .to_owned(),
        })
    }
}

/// `description`: 1–127 UTF-8 bytes, passed verbatim.
pub fn check_description(s: &str) -> Result<(), IdError> {
    if (1..=127).contains(&s.len()) && !s.chars().any(char::is_control) {
        Ok(())
    } else {
        Err(IdError {
            field: "description",
            message: format!(
                "must be 1-127 UTF-8 bytes without control characters (got {} bytes)",
                s.len()
            ),
        })
    }
}

/// `attach`: at most 127 UTF-8 bytes.
pub fn check_attach(s: &str) -> Result<(), IdError> {
    if s.len() <= 127 && !s.chars().any(char::is_control) {
        Ok(())
    } else {
        Err(IdError {
            field: "attach",
            message: format!("must be at most 127 UTF-8 bytes (got {})", s.len()),
        })
    }
}

/// `expires_in_seconds`: 300–604800.
pub fn check_expires_in(seconds: i64) -> Result<(), IdError> {
    if (300..=604_800).contains(&seconds) {
        Ok(())
    } else {
        Err(IdError {
            field: "expires_in_seconds",
            message: "must be between 300 and 604800".to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_trade_no_rules() {
        assert!(check_out_trade_no("abc123").is_ok());
        assert!(check_out_trade_no("A_b-c|d*e").is_ok());
        assert!(check_out_trade_no(&"x".repeat(32)).is_ok());
        for bad in [
            "abc12",
            &"x".repeat(33),
            "abc 123",
            "abc@123",
            "订单123456",
            "abc/123",
        ] {
            assert!(check_out_trade_no(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn out_refund_no_rules() {
        assert!(check_out_refund_no("r").is_ok());
        assert!(check_out_refund_no("r@1|2*3").is_ok());
        assert!(check_out_refund_no("").is_err());
        assert!(check_out_refund_no(&"r".repeat(65)).is_err());
        assert!(check_out_refund_no("r 1").is_err());
    }

    #[test]
    fn description_is_counted_in_utf8_bytes() {
        assert!(check_description(&"咖".repeat(42)).is_ok()); // 126 bytes
        assert!(check_description(&"咖".repeat(43)).is_err()); // 129 bytes
        assert!(check_description("").is_err());
        assert!(check_description("a\nb").is_err());
    }

    #[test]
    fn expiry_bounds() {
        assert!(check_expires_in(299).is_err());
        assert!(check_expires_in(300).is_ok());
        assert!(check_expires_in(604_800).is_ok());
        assert!(check_expires_in(604_801).is_err());
    }
}
