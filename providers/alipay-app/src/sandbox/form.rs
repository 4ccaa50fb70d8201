//! Form bodies (`application/x-www-form-urlencoded`) read with the simulator's own decoder, and
//! the sign content Alipay builds from parameters (PROTOCOLS §C.2, §C.4).

use std::collections::BTreeMap;

/// Parameters by name. Sorted, which is also the sign-content order (ASCII by key).
pub(crate) type Params = BTreeMap<String, String>;

/// Decodes a form body exactly once: `+` is a space, `%XX` a byte, the result must be UTF-8.
/// A name given twice is refused: which value was signed would be a guess.
pub(crate) fn decode(body: &[u8]) -> Result<Params, String> {
    let mut params = Params::new();
    for pair in body.split(|&b| b == b'&').filter(|p| !p.is_empty()) {
        let (name, value) = match pair.iter().position(|&b| b == b'=') {
            Some(eq) => (
                pair.get(..eq).unwrap_or_default(),
                pair.get(eq + 1..).unwrap_or_default(),
            ),
            None => (pair, &[][..]),
        };
        let name = decode_component(name)?;
        let value = decode_component(value)?;
        if params.contains_key(&name) {
            return Err(format!("parameter {name} is given twice"));
        }
        params.insert(name, value);
    }
    Ok(params)
}

fn decode_component(raw: &[u8]) -> Result<String, String> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while let Some(&b) = raw.get(i) {
        match b {
            b'+' => out.push(b' '),
            b'%' => {
                let byte = raw
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .filter(|h| h.bytes().all(|c| c.is_ascii_hexdigit()))
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| {
                        format!(
                            "a '%' not followed by two hex digits in {:?}",
                            String::from_utf8_lossy(raw)
                        )
                    })?;
                out.push(byte);
                i += 2;
            }
            other => out.push(other),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| "a value is not UTF-8 (charset must be utf-8)".to_owned())
}

/// Encodes parameters as a form body (space as `+`), in key order.
pub(crate) fn encode(params: &Params) -> String {
    let mut serializer = form_urlencoded::Serializer::new(String::new());
    for (name, value) in params {
        serializer.append_pair(name, value);
    }
    serializer.finish()
}

/// The sign content: every parameter but those in `excluded`, empty values dropped, sorted by
/// key, `key=value` joined with `&`, values raw (as decoded, never re-encoded).
pub(crate) fn sign_content(params: &Params, excluded: &[&str]) -> String {
    params
        .iter()
        .filter(|(name, value)| !value.is_empty() && !excluded.contains(&name.as_str()))
        .map(|(name, value)| format!("{name}={value}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// What request signatures cover: all but `sign` (PROTOCOLS §C.2).
pub(crate) const REQUEST_EXCLUDED: &[&str] = &["sign"];

/// What notification signatures cover (rsaCheckV1): all but `sign` and `sign_type` (§C.4).
pub(crate) const NOTIFY_EXCLUDED: &[&str] = &["sign", "sign_type"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_space_encodings_and_raw_bytes_decode_once() {
        let params = decode(b"a=x%20y+z&b=%25ZZ&c=%E8%AF%AD&d=&e").unwrap();
        assert_eq!(params["a"], "x y z");
        assert_eq!(params["b"], "%ZZ");
        assert_eq!(params["c"], "语");
        assert_eq!(params["d"], "");
        assert_eq!(params["e"], "");
    }

    #[test]
    fn malformed_forms_are_refused() {
        assert!(decode(b"a=%2").is_err());
        assert!(decode(b"a=%zz").is_err());
        assert!(decode(b"a=%FF").is_err());
        assert!(decode(b"a=1&a=1").is_err());
    }

    #[test]
    fn sign_content_sorts_drops_empties_and_keeps_raw_values() {
        let params: Params = [
            ("sign", "S"),
            ("sign_type", "RSA2"),
            ("b", "x&y=z"),
            ("a", "语 雀"),
            ("empty", ""),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        assert_eq!(
            sign_content(&params, REQUEST_EXCLUDED),
            "a=语 雀&b=x&y=z&sign_type=RSA2"
        );
        assert_eq!(sign_content(&params, NOTIFY_EXCLUDED), "a=语 雀&b=x&y=z");
        assert_eq!(decode(encode(&params).as_bytes()).unwrap(), params);
    }
}
