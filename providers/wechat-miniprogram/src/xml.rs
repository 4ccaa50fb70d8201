//! The flat XML of API v2: `<xml><name>value</name>…</xml>`, one level, strings in CDATA.
//!
//! Decoding is deliberately strict: no DTD (so no entity bombs and no external entities), no
//! references but the five predefined ones and character references, no nesting below a field, no
//! duplicate fields. Values are kept exactly as sent, whitespace included, because WeChat signs the
//! value as sent.

use std::collections::BTreeMap;

use quick_xml::events::Event;
use quick_xml::reader::Reader;

/// At most this many fields in one document; real messages carry a few dozen.
pub const MAX_FIELDS: usize = 200;

/// Why a document was refused. Never carries field values, only names and positions.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum XmlError {
    /// The bytes are not UTF-8.
    #[error("not UTF-8")]
    NotUtf8,
    /// A `<!DOCTYPE …>` (DTD) was present.
    #[error("a DOCTYPE/DTD is not allowed")]
    Doctype,
    /// An entity reference other than `&lt; &gt; &amp; &apos; &quot;` or a character reference.
    #[error("entity reference &{0}; is not allowed")]
    Entity(String),
    /// An element inside a field.
    #[error("field <{0}> contains an element; only flat fields are allowed")]
    Nested(String),
    /// The root element is not the expected one.
    #[error("root element is <{found}>, expected <{expected}>")]
    WrongRoot {
        /// The root the caller expects.
        expected: String,
        /// The root found.
        found: String,
    },
    /// A field appears twice.
    #[error("field <{0}> appears more than once")]
    Duplicate(String),
    /// More than [`MAX_FIELDS`] fields.
    #[error("more than {MAX_FIELDS} fields")]
    TooManyFields,
    /// Not well-formed, or text where only fields may be.
    #[error("malformed XML: {0}")]
    Malformed(String),
    /// A field name that cannot be written as an XML element name (encoding only).
    #[error("invalid field name {0:?}")]
    InvalidName(String),
}

fn is_valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
}

/// Write `params` as `<root><name>value</name>…</root>`. Values of ASCII digits only are written bare;
/// everything else goes in CDATA, split so that a `]]>` inside a value survives.
pub fn encode(root: &str, params: &BTreeMap<String, String>) -> Result<String, XmlError> {
    if !is_valid_name(root) {
        return Err(XmlError::InvalidName(root.to_owned()));
    }
    let mut out = String::with_capacity(64 + params.len() * 48);
    out.push('<');
    out.push_str(root);
    out.push('>');
    for (name, value) in params {
        if !is_valid_name(name) {
            return Err(XmlError::InvalidName(name.clone()));
        }
        out.push('<');
        out.push_str(name);
        out.push('>');
        if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
            out.push_str(value);
        } else {
            push_cdata(&mut out, value);
        }
        out.push_str("</");
        out.push_str(name);
        out.push('>');
    }
    out.push_str("</");
    out.push_str(root);
    out.push('>');
    Ok(out)
}

/// `<![CDATA[value]]>`, where each `]]>` in the value is split as `]]` + `]]><![CDATA[` + `>`.
pub(crate) fn push_cdata(out: &mut String, value: &str) {
    out.push_str("<![CDATA[");
    out.push_str(&value.replace("]]>", "]]]]><![CDATA[>"));
    out.push_str("]]>");
}

/// Parse a flat document whose root must be `root` into its fields, keeping every field (known or
/// not) and every value byte for byte. An empty element is an empty value.
pub fn decode(body: &[u8], root: &str) -> Result<BTreeMap<String, String>, XmlError> {
    let text = std::str::from_utf8(body).map_err(|_| XmlError::NotUtf8)?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut reader = Reader::from_str(text);
    let config = reader.config_mut();
    config.trim_text(false);
    config.check_end_names = true;
    config.expand_empty_elements = false;

    let malformed = |e: quick_xml::Error| XmlError::Malformed(e.to_string());
    let mut fields = BTreeMap::new();
    let mut seen_root = false;

    // Prolog: declaration, comments, whitespace; then the root.
    loop {
        match reader.read_event().map_err(malformed)? {
            Event::Decl(_) | Event::Comment(_) | Event::PI(_) => {}
            Event::Text(t) if is_xml_whitespace(&t) => {}
            Event::DocType(_) => return Err(XmlError::Doctype),
            Event::Start(e) | Event::Empty(e) if seen_root => {
                return Err(XmlError::Malformed(format!(
                    "second root element <{}>",
                    e.name().as_ref()
                )));
            }
            Event::Start(e) => {
                check_root(e.name().as_ref(), root)?;
                seen_root = true;
                read_fields(&mut reader, &mut fields)?;
            }
            Event::Empty(e) => {
                check_root(e.name().as_ref(), root)?;
                seen_root = true;
            }
            Event::Eof if seen_root => return Ok(fields),
            Event::Eof => return Err(XmlError::Malformed("no root element".to_owned())),
            Event::GeneralRef(r) => {
                return Err(XmlError::Malformed(format!(
                    "reference &{}; outside the root",
                    &*r
                )));
            }
            Event::Text(_) | Event::CData(_) => {
                return Err(XmlError::Malformed(
                    "text outside the root element".to_owned(),
                ));
            }
            Event::End(e) => {
                return Err(XmlError::Malformed(format!(
                    "unexpected </{}>",
                    e.name().as_ref()
                )));
            }
        }
    }
}

fn check_root(found: &str, expected: &str) -> Result<(), XmlError> {
    if found == expected {
        Ok(())
    } else {
        Err(XmlError::WrongRoot {
            expected: expected.to_owned(),
            found: found.to_owned(),
        })
    }
}

fn is_xml_whitespace(s: &str) -> bool {
    s.bytes().all(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
}

/// Inside the root: fields until the root's end tag.
fn read_fields(
    reader: &mut Reader<&[u8]>,
    fields: &mut BTreeMap<String, String>,
) -> Result<(), XmlError> {
    let malformed = |e: quick_xml::Error| XmlError::Malformed(e.to_string());
    loop {
        match reader.read_event().map_err(malformed)? {
            Event::Start(e) => {
                let name = e.name().as_ref().to_owned();
                let value = read_value(reader, &name)?;
                insert_field(fields, name, value)?;
            }
            Event::Empty(e) => insert_field(fields, e.name().as_ref().to_owned(), String::new())?,
            Event::End(_) => return Ok(()),
            Event::Text(t) if is_xml_whitespace(&t) => {}
            Event::Comment(_) | Event::PI(_) => {}
            Event::DocType(_) => return Err(XmlError::Doctype),
            Event::Text(_) | Event::CData(_) | Event::GeneralRef(_) => {
                return Err(XmlError::Malformed(
                    "text directly inside the root element".to_owned(),
                ));
            }
            Event::Decl(_) => {
                return Err(XmlError::Malformed(
                    "XML declaration inside the root".to_owned(),
                ));
            }
            Event::Eof => {
                return Err(XmlError::Malformed(
                    "document ends inside the root".to_owned(),
                ));
            }
        }
    }
}

fn insert_field(
    fields: &mut BTreeMap<String, String>,
    name: String,
    value: String,
) -> Result<(), XmlError> {
    if fields.contains_key(&name) {
        return Err(XmlError::Duplicate(name));
    }
    if fields.len() >= MAX_FIELDS {
        return Err(XmlError::TooManyFields);
    }
    fields.insert(name, value);
    Ok(())
}

/// A field's value: text, CDATA sections and allowed references, concatenated as sent.
fn read_value(reader: &mut Reader<&[u8]>, name: &str) -> Result<String, XmlError> {
    let malformed = |e: quick_xml::Error| XmlError::Malformed(e.to_string());
    let mut value = String::new();
    loop {
        match reader.read_event().map_err(malformed)? {
            Event::Text(t) => value.push_str(&t.into_inner()),
            Event::CData(c) => value.push_str(&c.into_inner()),
            Event::GeneralRef(r) => value.push(resolve_reference(&r)?),
            Event::End(_) => return Ok(value),
            Event::Comment(_) => {}
            Event::Start(_) | Event::Empty(_) => return Err(XmlError::Nested(name.to_owned())),
            Event::DocType(_) => return Err(XmlError::Doctype),
            Event::Decl(_) | Event::PI(_) => {
                return Err(XmlError::Malformed(format!(
                    "processing instruction inside <{name}>"
                )));
            }
            Event::Eof => {
                return Err(XmlError::Malformed(format!(
                    "document ends inside <{name}>"
                )));
            }
        }
    }
}

fn resolve_reference(reference: &quick_xml::events::BytesRef<'_>) -> Result<char, XmlError> {
    let name: &str = reference;
    match name {
        "lt" => return Ok('<'),
        "gt" => return Ok('>'),
        "amp" => return Ok('&'),
        "apos" => return Ok('\''),
        "quot" => return Ok('"'),
        _ => {}
    }
    match reference.resolve_char_ref() {
        Ok(Some(c)) => Ok(c),
        Ok(None) => Err(XmlError::Entity(name.to_owned())),
        Err(_) => Err(XmlError::Malformed(format!(
            "invalid character reference &{name};"
        ))),
    }
}

#[cfg(test)]
#[path = "xml_tests.rs"]
mod tests;
