//! WeChat Pay's trade bill (交易账单, `bill_type=ALL`), the text that v2 `POST /pay/downloadbill`
//! answers and v3's `download_url` serves: a header line of Chinese column names, one data line
//! per payment or refund with every field behind a backquote (`` `2014-11-10 16:33:45,`wx…``),
//! then a summary header line (`总交易单数,…`) and one summary data line. Amounts are yuan.
//!
//! Read line by line: a bill of 10⁶ lines is never held in memory. Columns are found by their
//! names, not their places (the published note: the order is not fixed). The summary must equal
//! the sum of the lines, or the whole bill is refused.
//!
//! Assumptions to confirm against a real bill (they are what wechatpayv3, wechatpay-axios-plugin
//! and tenpay read, and the providers' published samples show): a payment line has `交易状态`
//! `SUCCESS` (or `REVOKED` for a payment cancelled that day, which is not settled); a refund
//! line has `REFUND` and carries `退款金额`; its `手续费` is negative (the fee returned);
//! `应结订单总金额` sums the payment lines' `应结订单金额`.

use std::io::BufRead;

use paybridge_core::money::Fen;
use paybridge_core::statement::{
    BillError, BillLine, BillLineKind, BillSummary, bill_fen, check_total, column, next_bill_line,
};

/// The columns read from a data line.
struct Columns {
    time: usize,
    provider_trade_no: usize,
    out_trade_no: usize,
    status: usize,
    settled: usize,
    provider_refund_no: usize,
    out_refund_no: usize,
    refund_amount: usize,
    refund_status: usize,
    fee: usize,
    order_amount: usize,
    requested_refund: usize,
    count: usize,
}

impl Columns {
    fn from_header(header: &str, line: u64) -> Result<Self, BillError> {
        let names: Vec<&str> = header.split(',').map(str::trim).collect();
        let find = |name: &str| column(&names, name, line);
        Ok(Columns {
            time: find("交易时间")?,
            provider_trade_no: find("微信订单号")?,
            out_trade_no: find("商户订单号")?,
            status: find("交易状态")?,
            settled: find("应结订单金额")?,
            provider_refund_no: find("微信退款单号")?,
            out_refund_no: find("商户退款单号")?,
            refund_amount: find("退款金额")?,
            refund_status: find("退款状态")?,
            fee: find("手续费")?,
            order_amount: find("订单金额")?,
            requested_refund: find("申请退款金额")?,
            count: names.len(),
        })
    }
}

/// The fields of a backquoted line: `` `a,`b,`c `` → `a`, `b`, `c`. A field may hold commas; it
/// cannot hold `` ,` ``.
fn fields(line: &str) -> Option<Vec<&str>> {
    let rest = line.strip_prefix('`')?;
    let bytes = rest.as_bytes();
    let mut values = Vec::with_capacity(32);
    let mut start = 0;
    // Each backquote after a comma ends a field: `str::split(",`")`, found with `memchr` (the
    // two-way searcher of `split` took 13 % of a reconciliation). The comma ending a field is
    // never the backquote starting the next, so the pairs cannot overlap; both are ASCII, so
    // every cut is at a character boundary.
    for at in memchr::memchr_iter(b'`', bytes) {
        if at > start && bytes[at - 1] == b',' {
            values.push(rest.get(start..at - 1)?);
            start = at + 1;
        }
    }
    values.push(rest.get(start..)?);
    Some(values)
}

fn money(value: &str, column: &str, line: u64) -> Result<i64, BillError> {
    bill_fen(value).ok_or_else(|| BillError::Malformed {
        line,
        reason: format!("{column} is not a yuan amount: {value:?}"),
    })
}

fn non_negative(fen: i64, status: &str, line: u64) -> Result<Fen, BillError> {
    if fen < 0 {
        return Err(BillError::Malformed {
            line,
            reason: format!("a negative amount on a {status} line"),
        });
    }
    Ok(Fen::new(fen))
}

fn non_empty(value: &str) -> Option<String> {
    let v = value.trim();
    (!v.is_empty() && v != "0").then(|| v.to_owned())
}

/// Parse a trade bill, handing each data line to `each` in file order, and return the bill's
/// summary once it has been checked against the lines. A line that `each` refuses stops the
/// parse with that error.
pub fn parse_trade_bill<R: BufRead>(
    mut reader: R,
    mut each: impl FnMut(BillLine) -> Result<(), BillError>,
) -> Result<BillSummary, BillError> {
    let mut columns: Option<Columns> = None;
    let mut summary_header: Option<Vec<String>> = None;
    let mut stated: Option<Vec<String>> = None;
    let mut summed = BillSummary::default();
    let mut number = 0u64;
    // One buffer for every line (`BufRead::split` allocates one a line).
    let mut raw = Vec::new();
    let io = |e: std::io::Error| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => BillError::Truncated(e.to_string()),
        _ => BillError::Io(e.to_string()),
    };
    while next_bill_line(&mut reader, &mut raw, number + 1, io)? {
        number += 1;
        let text = std::str::from_utf8(&raw).map_err(|_| BillError::Encoding("UTF-8"))?;
        let text = text.strip_suffix('\r').unwrap_or(text);
        let text = if number == 1 {
            text.strip_prefix('\u{feff}').unwrap_or(text)
        } else {
            text
        };
        if text.trim().is_empty() {
            continue;
        }
        if stated.is_some() {
            return Err(BillError::Malformed {
                line: number,
                reason: "text after the summary line".to_owned(),
            });
        }
        let Some(cols) = &columns else {
            columns = Some(Columns::from_header(text, number)?);
            continue;
        };
        if let Some(header) = &summary_header {
            let values = fields(text).ok_or_else(|| BillError::Malformed {
                line: number,
                reason: "the summary line has no backquoted fields".to_owned(),
            })?;
            if values.len() != header.len() {
                return Err(BillError::Malformed {
                    line: number,
                    reason: format!(
                        "the summary has {} fields for {} columns",
                        values.len(),
                        header.len()
                    ),
                });
            }
            stated = Some(values.into_iter().map(str::to_owned).collect());
            continue;
        }
        let Some(values) = fields(text) else {
            // The summary's header: the only unquoted line after the first.
            summary_header = Some(text.split(',').map(|s| s.trim().to_owned()).collect());
            continue;
        };
        if values.len() != cols.count {
            return Err(BillError::Malformed {
                line: number,
                reason: format!(
                    "{} fields for {} columns (a field holding \",`\"?)",
                    values.len(),
                    cols.count
                ),
            });
        }
        let status = values[cols.status].trim();
        let fee = money(values[cols.fee], "手续费", number)?;
        let kind = match status {
            "REFUND" => BillLineKind::Refund,
            _ => BillLineKind::Payment,
        };
        let (settled, amount) = match kind {
            BillLineKind::Refund => (
                money(values[cols.refund_amount], "退款金额", number)?,
                money(values[cols.requested_refund], "申请退款金额", number)?,
            ),
            BillLineKind::Payment => (
                money(values[cols.settled], "应结订单金额", number)?,
                money(values[cols.order_amount], "订单金额", number)?,
            ),
        };
        let settled = non_negative(settled, status, number)?;
        let amount = non_negative(amount, status, number)?;
        summed.lines += 1;
        summed.fees_fen += fee;
        match kind {
            BillLineKind::Refund => summed.refunds_fen += settled.get(),
            BillLineKind::Payment if status == "SUCCESS" => summed.gross_fen += settled.get(),
            BillLineKind::Payment => {}
        }
        let line = BillLine {
            kind,
            out_trade_no: values[cols.out_trade_no].trim().to_owned(),
            provider_trade_no: values[cols.provider_trade_no].trim().to_owned(),
            out_refund_no: non_empty(values[cols.out_refund_no]),
            provider_refund_no: non_empty(values[cols.provider_refund_no]),
            amount,
            settled,
            fee_fen: fee,
            status: status.to_owned(),
            refund_status: non_empty(values[cols.refund_status]),
            time: values[cols.time].trim().to_owned(),
        };
        each(line)?;
    }
    let (Some(header), Some(values)) = (summary_header, stated) else {
        return Err(BillError::Truncated(
            "no summary lines after the data lines".to_owned(),
        ));
    };
    let get = |name: &str| -> Result<&str, BillError> {
        header
            .iter()
            .position(|h| h == name)
            .map(|i| values[i].as_str())
            .ok_or_else(|| BillError::Malformed {
                line: number,
                reason: format!("the summary has no column {name:?}"),
            })
    };
    // A count, sometimes written `45.0`.
    let count_text = get("总交易单数")?.trim();
    let count: i64 = count_text
        .strip_suffix(".0")
        .unwrap_or(count_text)
        .parse()
        .map_err(|_| BillError::Malformed {
            line: number,
            reason: "总交易单数 is not a count".to_owned(),
        })?;
    check_total(
        "总交易单数",
        count,
        i64::try_from(summed.lines).unwrap_or(i64::MAX),
    )?;
    check_total(
        "应结订单总金额",
        money(get("应结订单总金额")?, "应结订单总金额", number)?,
        summed.gross_fen,
    )?;
    check_total(
        "退款总金额",
        money(get("退款总金额")?, "退款总金额", number)?,
        summed.refunds_fen,
    )?;
    check_total(
        "手续费总金额",
        money(get("手续费总金额")?, "手续费总金额", number)?,
        summed.fees_fen,
    )?;
    Ok(summed)
}

/// Parse a trade bill as downloaded: the text, or the text gzipped (v3 `tar_type=GZIP`).
pub fn parse_downloaded(
    reader: &mut dyn BufRead,
    each: impl FnMut(BillLine) -> Result<(), BillError>,
) -> Result<BillSummary, BillError> {
    let gzip = reader
        .fill_buf()
        .map_err(|e| BillError::Io(e.to_string()))?
        .starts_with(&[0x1f, 0x8b]);
    if gzip {
        let text = std::io::BufReader::new(flate2::bufread::GzDecoder::new(reader));
        parse_trade_bill(text, each)
    } else {
        parse_trade_bill(reader, each)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BILL: &str = include_str!("../../../fixtures/bills/wechat_trade_all.txt");
    const SDK: &str = include_str!("../../../fixtures/bills/wechat_trade_all.sdk.json");

    fn parse(text: &[u8]) -> Result<(Vec<BillLine>, BillSummary), BillError> {
        let mut lines = Vec::new();
        let summary = parse_trade_bill(text, |l| {
            lines.push(l);
            Ok(())
        })?;
        Ok((lines, summary))
    }

    fn fen(yuan: &serde_json::Value) -> i64 {
        bill_fen(yuan.as_str().unwrap()).unwrap()
    }

    /// Every line reads as the SDKs read it (wechatpay-axios-plugin 0.9.6 and tenpay 2.1.18,
    /// fixtures/bills/sdk_parse.js), and the totals are the bill's own.
    #[test]
    fn the_fixture_reads_as_the_sdks_read_it() {
        let (lines, summary) = parse(BILL.as_bytes()).unwrap();
        let sdk: serde_json::Value = serde_json::from_str(SDK).unwrap();
        let rows = sdk["wechatpay_axios_plugin"]["rows"].as_array().unwrap();
        let tenpay = sdk["tenpay"]["list_data"].as_array().unwrap();
        assert_eq!((lines.len(), rows.len(), tenpay.len()), (4, 4, 4));
        for ((line, row), fields) in lines.iter().zip(rows).zip(tenpay) {
            assert_eq!(line.out_trade_no, row["商户订单号"].as_str().unwrap());
            assert_eq!(line.provider_trade_no, row["微信订单号"].as_str().unwrap());
            assert_eq!(line.status, row["交易状态"].as_str().unwrap());
            assert_eq!(line.time, row["交易时间"].as_str().unwrap());
            assert_eq!(line.fee_fen, fen(&row["手续费"]));
            let (settled, amount) = match line.kind {
                BillLineKind::Refund => (fen(&row["退款金额"]), fen(&row["申请退款金额"])),
                BillLineKind::Payment => (fen(&row["应结订单金额"]), fen(&row["订单金额"])),
            };
            assert_eq!(
                (line.settled.get(), line.amount.get()),
                (settled, amount),
                "{row}"
            );
            // tenpay splits the same fields.
            assert_eq!(fields[6], row["商户订单号"]);
            assert_eq!(fields.as_array().unwrap().len(), 27);
        }
        assert_eq!(lines[1].out_refund_no, None);
        let refund = &lines[3];
        assert_eq!(refund.kind, BillLineKind::Refund);
        assert_eq!(refund.out_refund_no.as_deref(), Some("R-T20261205A2-1"));
        assert_eq!(
            refund.provider_refund_no.as_deref(),
            Some("50300000012026120500000000001")
        );
        assert_eq!(refund.refund_status.as_deref(), Some("SUCCESS"));
        assert_eq!((refund.amount.get(), refund.fee_fen), (2000, -12));
        let stated = &sdk["wechatpay_axios_plugin"]["summary"];
        assert_eq!(
            summary,
            BillSummary {
                lines: 4,
                gross_fen: fen(&stated["应结订单总金额"]),
                refunds_fen: fen(&stated["退款总金额"]),
                fees_fen: fen(&stated["手续费总金额"]),
            }
        );
        assert_eq!((summary.gross_fen, summary.fees_fen), (10791, 53));
    }

    #[test]
    fn a_summary_that_disagrees_with_the_lines_refuses_the_bill() {
        let bad = BILL.replace("`107.91,`20.00,`0.00,`0.53", "`107.92,`20.00,`0.00,`0.53");
        assert_eq!(
            parse(bad.as_bytes()).unwrap_err(),
            BillError::SummaryMismatch {
                field: "应结订单总金额".to_owned(),
                stated: 10792,
                summed: 10791
            }
        );
        let count = BILL.replace("\r\n`4,`", "\r\n`5,`");
        assert!(matches!(
            parse(count.as_bytes()),
            Err(BillError::SummaryMismatch { field, .. }) if field == "总交易单数"
        ));
    }

    #[test]
    fn a_truncated_bill_is_refused_and_nothing_is_kept_from_it() {
        let cut = &BILL[..BILL.find("总交易单数").unwrap()];
        assert!(matches!(
            parse(cut.as_bytes()),
            Err(BillError::Truncated(_))
        ));
        // Cut inside a data line: the last line has too few fields.
        let mid = &BILL[..BILL.find("`Cake, large").unwrap()];
        assert!(matches!(
            parse(mid.as_bytes()),
            Err(BillError::Malformed { line: 3, .. })
        ));
    }

    #[test]
    fn a_bill_in_another_encoding_or_layout_is_refused() {
        // "交易时间" in GBK is not UTF-8.
        let mut gbk = vec![0xbd, 0xbb, 0xd2, 0xd7, 0xca, 0xb1, 0xbc, 0xe4];
        gbk.extend_from_slice(b",x\r\n");
        assert_eq!(parse(&gbk).unwrap_err(), BillError::Encoding("UTF-8"));
        let renamed = BILL.replacen("商户订单号", "订单号", 1);
        assert!(matches!(
            parse(renamed.as_bytes()),
            Err(BillError::Malformed { line: 1, reason }) if reason.contains("商户订单号")
        ));
        let bad_amount = BILL.replacen("`19.90,`0.00", "`19.905,`0.00", 1);
        assert!(matches!(
            parse(bad_amount.as_bytes()),
            Err(BillError::Malformed { line: 2, reason }) if reason.contains("应结订单金额")
        ));
        let trailing = format!("{BILL}`oops\r\n");
        assert!(matches!(
            parse(trailing.as_bytes()),
            Err(BillError::Malformed { .. })
        ));
    }

    /// v3's `tar_type=GZIP` file is the same text gzipped: read the same, and a gzip cut short
    /// is a truncated bill.
    #[test]
    fn the_gzipped_bill_reads_as_the_text() {
        use std::io::Write;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(BILL.as_bytes()).unwrap();
        let gz = gz.finish().unwrap();
        let read = |bytes: &[u8]| {
            let mut lines = Vec::new();
            let mut cursor = std::io::Cursor::new(bytes.to_vec());
            parse_downloaded(&mut cursor, |l| {
                lines.push(l);
                Ok(())
            })
            .map(|summary| (lines, summary))
        };
        assert_eq!(read(&gz).unwrap(), read(BILL.as_bytes()).unwrap());
        assert_eq!(read(&gz).unwrap(), parse(BILL.as_bytes()).unwrap());
        assert!(matches!(
            read(&gz[..gz.len() - 30]),
            Err(BillError::Truncated(_))
        ));
    }

    #[test]
    fn an_empty_day_is_a_header_and_a_zero_summary() {
        let header = BILL.lines().next().unwrap();
        let empty = format!(
            "{header}\r\n总交易单数,应结订单总金额,退款总金额,充值券退款总金额,手续费总金额,订单总金额,申请退款总金额\r\n`0,`0.00,`0.00,`0.00,`0.00,`0.00,`0.00\r\n"
        );
        let (lines, summary) = parse(empty.as_bytes()).unwrap();
        assert!(lines.is_empty());
        assert_eq!(summary, BillSummary::default());
    }

    proptest::proptest! {
        /// A line splits into the fields `str::split(",`")` gives, whatever its commas,
        /// backquotes and other characters.
        #[test]
        fn fields_are_what_split_gives(line in "[`,a中 ]{0,24}") {
            let expected: Option<Vec<&str>> =
                line.strip_prefix('`').map(|rest| rest.split(",`").collect());
            proptest::prop_assert_eq!(fields(&line), expected);
        }
    }

    /// A file without line breaks (a wrong download, a binary) is refused at the longest line,
    /// not read whole into memory.
    #[test]
    fn a_file_without_line_breaks_is_refused() {
        let header = BILL.lines().next().unwrap();
        let mut text = format!("{header}\n").into_bytes();
        text.resize(
            text.len() + paybridge_core::statement::MAX_BILL_LINE + 1,
            b'`',
        );
        match parse(&text) {
            Err(BillError::Malformed { line: 2, reason }) => {
                assert!(reason.contains("without a line break"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
    }

    /// The cases the property's alphabet makes rare: empty fields, a doubled backquote, a
    /// backquote after a cut.
    #[test]
    fn fields_of_edge_lines() {
        assert_eq!(fields("`a,`,`b"), Some(vec!["a", "", "b"]));
        assert_eq!(fields("`a,``b"), Some(vec!["a", "`b"]));
        assert_eq!(fields("`,`"), Some(vec!["", ""]));
        assert_eq!(fields("`"), Some(vec![""]));
        assert_eq!(fields("`a,b"), Some(vec!["a,b"]));
        assert_eq!(fields("a,`b"), None);
    }
}
