use super::*;

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

#[test]
fn round_trip_keeps_every_value_exactly() {
    let p = map(&[
        ("appid", "wx1"),
        ("body", "  奶茶🍵 <b>&amp; ]]> x ]]]]> ]]"),
        ("empty", ""),
        ("total_fee", "0100"),
        ("nl", "a\r\nb\n"),
        ("unknown_future_field", "kept"),
    ]);
    let xml = encode("xml", &p).expect("encodes");
    assert!(xml.contains("<total_fee>0100</total_fee>"), "{xml}");
    assert_eq!(decode(xml.as_bytes(), "xml").expect("decodes"), p);
}

#[test]
fn cdata_terminator_is_split_into_two_sections() {
    let xml = encode("xml", &map(&[("a", "x]]>y")])).expect("encodes");
    assert_eq!(xml, "<xml><a><![CDATA[x]]]]><![CDATA[>y]]></a></xml>");
}

#[test]
fn decodes_what_wechat_sends() {
    let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<xml>\n  <return_code><![CDATA[SUCCESS]]></return_code>\n  \
                    <total_fee>1</total_fee>\n  <attach/>\n  <msg>a &lt;&#x4E2D;&#25991;&gt; &amp; b</msg>\n</xml>\n";
    let got = decode(body.as_bytes(), "xml").expect("decodes");
    assert_eq!(
        got,
        map(&[
            ("return_code", "SUCCESS"),
            ("total_fee", "1"),
            ("attach", ""),
            ("msg", "a <中文> & b")
        ])
    );
}

#[test]
fn whitespace_inside_values_is_not_trimmed() {
    let got = decode(
        b"<xml><a>  x  </a><b><![CDATA[ y ]]></b><c> </c></xml>",
        "xml",
    )
    .expect("decodes");
    assert_eq!(got, map(&[("a", "  x  "), ("b", " y "), ("c", " ")]));
}

#[test]
fn billion_laughs_is_refused() {
    let bomb = r#"<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol9 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
]>
<xml><return_code>&lol9;</return_code></xml>"#;
    assert_eq!(decode(bomb.as_bytes(), "xml"), Err(XmlError::Doctype));
}

#[test]
fn external_entity_dtd_is_refused() {
    let xxe =
        r#"<!DOCTYPE xml [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><xml><a>&xxe;</a></xml>"#;
    assert_eq!(decode(xxe.as_bytes(), "xml"), Err(XmlError::Doctype));
}

#[test]
fn undeclared_entity_reference_is_refused() {
    assert_eq!(
        decode(b"<xml><a>&lol;</a></xml>", "xml"),
        Err(XmlError::Entity("lol".to_owned()))
    );
    assert!(matches!(
        decode(b"<xml><a>&#0;</a></xml>", "xml"),
        Err(XmlError::Malformed(_))
    ));
}

#[test]
fn nested_elements_are_refused() {
    assert_eq!(
        decode(b"<xml><a><b>1</b></a></xml>", "xml"),
        Err(XmlError::Nested("a".to_owned()))
    );
    assert_eq!(
        decode(b"<xml><a>x<b/></a></xml>", "xml"),
        Err(XmlError::Nested("a".to_owned()))
    );
}

#[test]
fn wrong_root_is_refused() {
    assert!(matches!(
        decode(b"<root><a>1</a></root>", "xml"),
        Err(XmlError::WrongRoot { .. })
    ));
    assert!(decode(b"<root><a>1</a></root>", "root").is_ok());
    assert!(matches!(
        decode(b"<xml><a>1</a></xml>", "root"),
        Err(XmlError::WrongRoot { .. })
    ));
}

#[test]
fn duplicate_fields_are_refused() {
    assert_eq!(
        decode(
            b"<xml><total_fee>1</total_fee><total_fee>100</total_fee></xml>",
            "xml"
        ),
        Err(XmlError::Duplicate("total_fee".to_owned()))
    );
}

#[test]
fn more_than_200_fields_are_refused() {
    let doc = |n: usize| {
        let mut s = String::from("<xml>");
        for i in 0..n {
            s.push_str(&format!("<f{i}>v</f{i}>"));
        }
        s + "</xml>"
    };
    assert_eq!(decode(doc(200).as_bytes(), "xml").map(|m| m.len()), Ok(200));
    assert_eq!(
        decode(doc(201).as_bytes(), "xml"),
        Err(XmlError::TooManyFields)
    );
}

#[test]
fn non_utf8_is_refused() {
    // "中" in GBK.
    assert_eq!(
        decode(b"<xml><a>\xd6\xd0</a></xml>", "xml"),
        Err(XmlError::NotUtf8)
    );
}

#[test]
fn malformed_documents_are_refused() {
    for bad in [
        &b""[..],
        b"   ",
        b"not xml",
        b"<xml><a>1</a>",
        b"<xml><a>1</b></xml>",
        b"<xml>loose text<a>1</a></xml>",
        b"<xml><a>1</a></xml><xml></xml>",
        b"<xml><a>1</a></xml>trailing",
        b"<xml><a>1</a><",
        b"<xml><a>x & y</a></xml>",
    ] {
        assert!(
            decode(bad, "xml").is_err(),
            "{:?} was accepted",
            String::from_utf8_lossy(bad)
        );
    }
}

#[test]
fn invalid_names_are_not_encoded() {
    assert!(encode("xml", &map(&[("a b", "1")])).is_err());
    assert!(encode("xml", &map(&[("", "1")])).is_err());
    assert!(encode("x<", &map(&[])).is_err());
}
