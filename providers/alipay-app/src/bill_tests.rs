use std::io::{Cursor, Read, Write};

use super::*;

const FIXTURE: &[u8] = include_bytes!("../../../fixtures/bills/alipay_trade_20190916.zip");
const EXPECTED: &str = include_str!("../../../fixtures/bills/alipay_trade_20190916.expected.json");

fn parse(zip: &[u8]) -> Result<(Vec<BillLine>, BillSummary), BillError> {
    let mut lines = Vec::new();
    let summary = parse_trade_bill(Cursor::new(zip), |l| {
        lines.push(l);
        Ok(())
    })?;
    Ok((lines, summary))
}

/// The fixture's two texts (detail, summary), decoded.
fn texts() -> (String, String) {
    let mut zip = zip::ZipArchive::new(Cursor::new(FIXTURE)).unwrap();
    let mut read = |i: usize| {
        let mut raw = Vec::new();
        zip.by_index(i).unwrap().read_to_end(&mut raw).unwrap();
        encoding_rs::GBK.decode(&raw).0.into_owned()
    };
    (read(0), read(1))
}

/// A zip of these texts, GBK, as Alipay names its members (here with the UTF-8 flag).
fn zip_of(detail: &str, summary: &str) -> Vec<u8> {
    zip_raw(
        &encoding_rs::GBK.encode(detail).0,
        &encoding_rs::GBK.encode(summary).0,
    )
}

fn zip_raw(detail: &[u8], summary: &[u8]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    w.start_file("20880211096256330156_20190916_业务明细.csv", options)
        .unwrap();
    w.write_all(detail).unwrap();
    w.start_file("20880211096256330156_20190916_业务明细(汇总).csv", options)
        .unwrap();
    w.write_all(summary).unwrap();
    w.finish().unwrap().into_inner()
}

fn fen(v: &serde_json::Value) -> i64 {
    bill_fen(v.as_str().unwrap()).unwrap()
}

/// Every line reads as an independent reader reads it (dax-pay's way, in
/// fixtures/bills/alipay_bill.py), with GBK member names and TAB-padded fields; the totals are
/// the bill's own.
#[test]
fn the_fixture_reads_as_an_independent_reader_reads_it() {
    let expected: serde_json::Value = serde_json::from_str(EXPECTED).unwrap();
    assert_eq!(expected["members"][0]["utf8_flag"], false);
    let (lines, summary) = parse(FIXTURE).unwrap();
    let rows = expected["rows"].as_array().unwrap();
    assert_eq!((lines.len(), rows.len()), (3, 3));
    for (line, row) in lines.iter().zip(rows) {
        assert_eq!(line.out_trade_no, row["商户订单号"].as_str().unwrap());
        assert_eq!(
            line.provider_trade_no,
            row["支付宝交易号"].as_str().unwrap()
        );
        assert_eq!(line.status, row["业务类型"].as_str().unwrap());
        assert_eq!(line.time, row["完成时间"].as_str().unwrap());
        assert_eq!(line.amount.get(), fen(&row["订单金额（元）"]).abs());
        assert_eq!(line.settled.get(), fen(&row["商家实收（元）"]).abs());
        assert_eq!(line.fee_fen, -fen(&row["服务费（元）"]));
        let refund_no = row["退款批次号/请求号"].as_str().unwrap();
        assert_eq!(
            line.out_refund_no.as_deref(),
            (!refund_no.is_empty()).then_some(refund_no)
        );
    }
    assert_eq!(lines[1].kind, BillLineKind::Refund);
    assert_eq!(
        lines[1].out_refund_no.as_deref(),
        Some("re_test_1568602607356")
    );
    assert_eq!((lines[2].amount.get(), lines[2].fee_fen), (100, 1));
    let total = &expected["total"];
    assert_eq!(
        summary,
        BillSummary {
            lines: 3,
            gross_fen: 101,
            refunds_fen: 1,
            fees_fen: -fen(&total["服务费（元）"]),
        }
    );
    assert_eq!(
        summary.gross_fen - summary.refunds_fen,
        fen(&total["商家实收（元）"])
    );
}

#[test]
fn a_summary_or_a_trailer_that_disagrees_refuses_the_bill() {
    let (detail, summary) = texts();
    assert!(parse(&zip_of(&detail, &summary)).is_ok());
    let bad = summary.replace("合计,,2,1,1.00,1.00", "合计,,2,1,1.00,1.01");
    assert_eq!(
        parse(&zip_of(&detail, &bad)).unwrap_err(),
        BillError::SummaryMismatch {
            field: "商家实收（元）".to_owned(),
            stated: 101,
            summed: 100
        }
    );
    let fee = summary.replace("0.00,-0.01,0.00,0.99\r\n#", "0.00,-0.02,0.00,0.99\r\n#");
    assert!(matches!(
        parse(&zip_of(&detail, &fee)),
        Err(BillError::SummaryMismatch { field, .. }) if field == "服务费（元）"
    ));
    let count = detail.replace("#交易合计：2笔", "#交易合计：3笔");
    assert!(matches!(
        parse(&zip_of(&count, &summary)),
        Err(BillError::SummaryMismatch { field, .. }) if field == "#交易合计 笔数"
    ));
    let refunded = detail.replace("商家实收退款共-0.01元", "商家实收退款共-0.02元");
    assert!(matches!(
        parse(&zip_of(&refunded, &summary)),
        Err(BillError::SummaryMismatch { field, .. }) if field == "#退款合计 商家实收"
    ));
}

#[test]
fn a_truncated_bill_is_refused() {
    // The zip cut short: its directory (at the end) is gone.
    let cut = &FIXTURE[..FIXTURE.len() - 40];
    assert!(matches!(parse(cut), Err(BillError::Truncated(_))));
    // The detail cut before its end marker.
    let (detail, summary) = texts();
    let end = detail
        .find("#-----------------------------------------业务明细列表结束")
        .unwrap();
    assert!(matches!(
        parse(&zip_of(&detail[..end], &summary)),
        Err(BillError::Truncated(_))
    ));
    // A zip without its summary.
    let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
    w.start_file(
        "x_20190916_业务明细.csv",
        zip::write::SimpleFileOptions::default(),
    )
    .unwrap();
    w.write_all(&encoding_rs::GBK.encode(&detail).0).unwrap();
    let only = w.finish().unwrap().into_inner();
    assert!(matches!(
        parse(&only),
        Err(BillError::Malformed { reason, .. }) if reason.contains("汇总")
    ));
}

/// A detail or a summary without line breaks is refused at the longest line, not read whole
/// into memory.
#[test]
fn a_file_without_line_breaks_is_refused() {
    let (detail, summary) = texts();
    let long = "#".repeat(paybridge_core::statement::MAX_BILL_LINE + 1);
    for (zip, what) in [
        (zip_of(&format!("{long}\n{detail}"), &summary), "detail"),
        (zip_of(&detail, &long), "summary"),
    ] {
        match parse(&zip) {
            Err(BillError::Malformed { line: 1, reason }) => {
                assert!(reason.contains("without a line break"), "{what}: {reason}");
            }
            other => panic!("{what}: {other:?}"),
        }
    }
}

#[test]
fn a_bill_in_another_encoding_is_refused() {
    let (detail, summary) = texts();
    // UTF-8 where Alipay writes GBK.
    let utf8 = zip_raw(detail.as_bytes(), &encoding_rs::GBK.encode(&summary).0);
    assert_eq!(parse(&utf8).unwrap_err(), BillError::Encoding("GBK"));
    let utf8_summary = zip_raw(&encoding_rs::GBK.encode(&detail).0, summary.as_bytes());
    assert_eq!(
        parse(&utf8_summary).unwrap_err(),
        BillError::Encoding("GBK")
    );
    // Bytes that are no GBK at all.
    let mut broken = encoding_rs::GBK.encode(&detail).0.into_owned();
    let at = broken.len() / 2;
    broken[at] = 0xff;
    let broken = zip_raw(&broken, &encoding_rs::GBK.encode(&summary).0);
    assert_eq!(parse(&broken).unwrap_err(), BillError::Encoding("GBK"));
}

#[test]
fn commas_in_the_free_text_fields_keep_the_columns() {
    let (detail, summary) = texts();
    let subject = detail.replace(
        ",下单测试,2019-09-16 10:55:16,2019-09-16 10:55:23",
        ",下单,测试,2019-09-16 10:55:16,2019-09-16 10:55:23",
    );
    let (lines, _) = parse(&zip_of(&subject, &summary)).unwrap();
    assert_eq!(
        (lines[0].settled.get(), lines[0].time.as_str()),
        (1, "2019-09-16 10:55:23")
    );
    let remark = detail.replace("0.00,0.00,下单测试\r\n2019", "0.00,0.00,下单,测试\r\n2019");
    let (lines, _) = parse(&zip_of(&remark, &summary)).unwrap();
    assert_eq!((lines[0].settled.get(), lines[0].fee_fen), (1, 0));
    let kind = detail.replacen("交易\t", "冻结\t", 1);
    assert!(matches!(
        parse(&zip_of(&kind, &summary)),
        Err(BillError::Malformed { line: 6, reason }) if reason.contains("冻结")
    ));
}

/// `isp.bill_not_exist` means "not made yet" until noon (Beijing) of the next day, an empty day
/// from then on.
#[test]
fn no_bill_is_not_ready_until_noon_of_the_next_day() {
    use paybridge_core::statement::BillDownload;
    let day = chrono::NaiveDate::from_ymd_opt(2026, 12, 5).unwrap();
    let at = |s: &str| s.parse::<chrono::DateTime<chrono::Utc>>().unwrap();
    assert!(matches!(
        bill_not_exist(day, at("2026-12-06T03:59:59Z")),
        BillDownload::NotReady(_)
    ));
    assert_eq!(
        bill_not_exist(day, at("2026-12-06T04:00:00Z")),
        BillDownload::Empty
    );
}
