//! The flat `<xml><name>value</name>…</xml>` documents of Pay API v2, read and written by the
//! simulator's own code. Reading is strict: a DTD, an unknown entity, nesting, a repeated field or
//! anything after the root is refused, as a defensive server would.

use std::collections::BTreeMap;

use quick_xml::Reader;
use quick_xml::escape::resolve_xml_entity;
use quick_xml::events::{BytesRef, Event};

/// A document's fields by name.
pub(crate) type Fields = BTreeMap<String, String>;

/// Why a body is not a Pay API v2 document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum XmlError {
    /// The bytes are not UTF-8.
    NotUtf8,
    /// A `<!DOCTYPE …>` was present (entities are a classic XXE vector).
    Dtd,
    /// Anything else: the reason.
    Malformed(String),
}

impl std::fmt::Display for XmlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            XmlError::NotUtf8 => f.write_str("the body is not UTF-8"),
            XmlError::Dtd => f.write_str("a DTD is not allowed"),
            XmlError::Malformed(why) => f.write_str(why),
        }
    }
}

fn malformed(why: impl Into<String>) -> XmlError {
    XmlError::Malformed(why.into())
}

/// Reads a `<xml>` document with one level of children into its fields.
pub(crate) fn parse(body: &[u8]) -> Result<Fields, XmlError> {
    let text = std::str::from_utf8(body).map_err(|_| XmlError::NotUtf8)?;
    let mut reader = Reader::from_str(text);
    let mut fields = Fields::new();
    let mut root_seen = false;
    let mut root_closed = false;
    // The field being read: its name and the text collected so far.
    let mut current: Option<(String, String)> = None;
    loop {
        let event = reader.read_event().map_err(|e| malformed(e.to_string()))?;
        match event {
            Event::Decl(_) | Event::Comment(_) => {}
            Event::DocType(_) => return Err(XmlError::Dtd),
            Event::PI(_) => return Err(malformed("processing instructions are not allowed")),
            Event::Start(start) | Event::Empty(start) if root_closed => {
                let _ = start;
                return Err(malformed("content after the root element"));
            }
            Event::Start(start) => {
                let name = start.name().into_inner().to_owned();
                if !root_seen {
                    if name != "xml" {
                        return Err(malformed(format!(
                            "the root element must be <xml>, not <{name}>"
                        )));
                    }
                    root_seen = true;
                } else if let Some((parent, _)) = &current {
                    return Err(malformed(format!("<{name}> is nested in <{parent}>")));
                } else {
                    current = Some((name, String::new()));
                }
            }
            Event::Empty(start) => {
                let name = start.name().into_inner().to_owned();
                if !root_seen {
                    if name != "xml" {
                        return Err(malformed(format!(
                            "the root element must be <xml>, not <{name}>"
                        )));
                    }
                    root_seen = true;
                    root_closed = true;
                } else if let Some((parent, _)) = &current {
                    return Err(malformed(format!("<{name}> is nested in <{parent}>")));
                } else {
                    insert_field(&mut fields, name, String::new())?;
                }
            }
            Event::End(_) => match current.take() {
                Some((name, value)) => insert_field(&mut fields, name, value)?,
                None => root_closed = true,
            },
            Event::Text(text) => match &mut current {
                Some((_, value)) => value.push_str(&text.xml10_content()),
                None if text.trim().is_empty() => {}
                None => return Err(malformed("text outside a field")),
            },
            Event::CData(cdata) => match &mut current {
                Some((_, value)) => value.push_str(&cdata.xml10_content()),
                None => return Err(malformed("CDATA outside a field")),
            },
            Event::GeneralRef(reference) => match &mut current {
                Some((_, value)) => value.push_str(&resolve_reference(&reference)?),
                None => return Err(malformed("an entity reference outside a field")),
            },
            Event::Eof => break,
        }
    }
    if !root_seen {
        return Err(malformed("no <xml> root element"));
    }
    if !root_closed {
        return Err(malformed("the document ends inside an element"));
    }
    Ok(fields)
}

fn insert_field(fields: &mut Fields, name: String, value: String) -> Result<(), XmlError> {
    if fields.contains_key(&name) {
        return Err(malformed(format!("field <{name}> appears twice")));
    }
    fields.insert(name, value);
    Ok(())
}

/// Resolves `&#NN;`, `&#xNN;` and the five predefined entities; refuses every other entity.
fn resolve_reference(reference: &BytesRef<'_>) -> Result<String, XmlError> {
    match reference.resolve_char_ref() {
        Ok(Some(ch)) => Ok(ch.to_string()),
        Ok(None) => resolve_xml_entity(reference)
            .map(str::to_owned)
            .ok_or_else(|| malformed(format!("unknown entity &{};", &**reference))),
        Err(e) => Err(malformed(e.to_string())),
    }
}

/// Writes fields the way WeChat does: digits bare, everything else in CDATA.
pub(crate) fn write(fields: &Fields) -> String {
    write_root("xml", fields)
}

/// The same under another root element (the refund notification's `<root>`).
pub(crate) fn write_root(root: &str, fields: &Fields) -> String {
    let mut out = format!("<{root}>");
    for (name, value) in fields {
        out.push('<');
        out.push_str(name);
        out.push('>');
        if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
            out.push_str(value);
        } else {
            out.push_str("<![CDATA[");
            // "]]>" cannot appear inside CDATA: close the section after "]]" and reopen it.
            out.push_str(&value.replace("]]>", "]]]]><![CDATA[>"));
            out.push_str("]]>");
        }
        out.push_str("</");
        out.push_str(name);
        out.push('>');
    }
    out.push_str("</");
    out.push_str(root);
    out.push('>');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_cdata_bare_text_entities_and_empty_elements() {
        let body = "<?xml version=\"1.0\"?>\n<xml>\n  <a><![CDATA[x<y]]></a>\n  <b>12</b>\n  <c>A&amp;B&#x4e2d;</c>\n  <d/>\n  <e></e>\n</xml>\n";
        let fields = parse(body.as_bytes()).unwrap();
        assert_eq!(fields["a"], "x<y");
        assert_eq!(fields["b"], "12");
        assert_eq!(fields["c"], "A&B中");
        assert_eq!(fields["d"], "");
        assert_eq!(fields["e"], "");
    }

    #[test]
    fn refuses_a_dtd_even_without_entities() {
        let body =
            "<!DOCTYPE xml [<!ENTITY x SYSTEM \"file:///etc/passwd\">]><xml><a>&x;</a></xml>";
        assert_eq!(parse(body.as_bytes()), Err(XmlError::Dtd));
    }

    #[test]
    fn refuses_unknown_entities_nesting_duplicates_and_trailing_content() {
        for body in [
            "<xml><a>&x;</a></xml>",
            "<xml><a><b>1</b></a></xml>",
            "<xml><a>1</a><a>2</a></xml>",
            "<xml><a>1</a></xml><xml/>",
            "<xml><a>1</a>",
            "<root><a>1</a></root>",
            "<xml><a>1</b></xml>",
            "",
        ] {
            assert!(parse(body.as_bytes()).is_err(), "{body}");
        }
        assert_eq!(parse(&[0xff, 0xfe]), Err(XmlError::NotUtf8));
    }

    #[test]
    fn written_documents_read_back_identically() {
        let mut fields = Fields::new();
        fields.insert("total_fee".into(), "100".into());
        fields.insert("body".into(), "腾讯 ]]> <&>".into());
        fields.insert("empty".into(), String::new());
        let xml = write(&fields);
        assert!(xml.contains("<total_fee>100</total_fee>"));
        assert_eq!(parse(xml.as_bytes()).unwrap(), fields);
    }
}
