//! Alipay's trade bill (`bill_type=trade`): the zip behind `bill_download_url` holds
//! `<account>_<yyyyMMdd>_业务明细.csv` (one line per payment `交易` or refund `退款`) and
//! `<account>_<yyyyMMdd>_业务明细(汇总).csv` (per store, and a `合计` line), both GBK, CRLF, with
//! `#` comment lines around the table. Member names are GBK too (no UTF-8 flag).
//!
//! The detail layout (25 columns; `（元）` in full-width parentheses):
//! `支付宝交易号,商户订单号,业务类型,商品名称,创建时间,完成时间,门店编号,门店名称,操作员,终端号,
//! 对方账户,订单金额（元）,商家实收（元）,支付宝红包（元）,集分宝（元）,支付宝优惠（元）,商家优惠（元）,
//! 券核销金额（元）,券名称,商家红包消费金额（元）,卡消费金额（元）,退款批次号/请求号,服务费（元）,
//! 分润（元）,备注`. Some fields end with a TAB before the comma (it keeps spreadsheets from
//! rounding long numbers): every field is trimmed. Columns are found by name (`（）` or `()`).
//!
//! Signs are the merchant's: a refund line's amounts are negative (read as their absolute value,
//! as every parser does), a payment's `服务费` negative (the fee charged). A line's `fee_fen` is
//! the fee charged, positive, and a fee returned on a refund negative: `-服务费`.
//!
//! Checked before a bill is trusted: the detail's `#交易合计：N笔，商家实收共X元` and
//! `#退款合计：M笔，商家实收退款共-Y元` lines, and the summary's `合计` line (counts of payments and
//! refunds, `订单金额`, `商家实收` and `服务费` as the signed sums of the lines). A bill that
//! disagrees with itself, ends before its end marker, or is not GBK is refused whole.
//!
//! Sources: dromara/dax-pay `AlipayReconcileService` and `AlipayReconcileBillDetail`/`…Total`,
//! real bills quoted in open parsers (fixtures/bills/README.md).

use std::io::{BufRead, BufReader, Read, Seek};

use paybridge_core::money::Fen;
use paybridge_core::statement::{
    BillError, BillLine, BillLineKind, BillSummary, bill_fen, check_total, column, next_bill_line,
};

/// The detail file's table ends at this comment.
const END_MARKER: &str = "业务明细列表结束";

/// A line of GBK text. A bill in UTF-8 (a re-saved file, say) often decodes as GBK without an
/// error, and is then refused by [`refuse_utf8`].
fn gbk(raw: &[u8]) -> Result<String, BillError> {
    let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
    encoding_rs::GBK
        .decode_without_bom_handling_and_without_replacement(raw)
        .map(std::borrow::Cow::into_owned)
        .ok_or(BillError::Encoding("GBK"))
}

/// A header that is not there in GBK but is in UTF-8: the bill is in the wrong encoding.
fn refuse_utf8(raw: &[u8], name: &str) -> Result<(), BillError> {
    match std::str::from_utf8(raw) {
        Ok(text) if text.contains(name) => Err(BillError::Encoding("GBK")),
        _ => Ok(()),
    }
}

/// A column name without its unit's parentheses form: `订单金额（元）` and `订单金额(元)` alike.
fn normal(name: &str) -> String {
    name.trim().replace('（', "(").replace('）', ")")
}

fn split(text: &str) -> Vec<&str> {
    text.split(',').map(str::trim).collect()
}

struct Columns {
    trade_no: usize,
    out_trade_no: usize,
    kind: usize,
    subject: usize,
    created: usize,
    finished: usize,
    amount: usize,
    received: usize,
    refund_no: usize,
    fee: usize,
    remark: usize,
    count: usize,
}

impl Columns {
    fn from_header(names: &[&str], line: u64) -> Result<Self, BillError> {
        let names: Vec<String> = names.iter().map(|n| normal(n)).collect();
        let find = |name: &str| column(&names, &normal(name), line);
        Ok(Columns {
            trade_no: find("支付宝交易号")?,
            out_trade_no: find("商户订单号")?,
            kind: find("业务类型")?,
            subject: find("商品名称")?,
            created: find("创建时间")?,
            finished: find("完成时间")?,
            amount: find("订单金额（元）")?,
            received: find("商家实收（元）")?,
            refund_no: find("退款批次号/请求号")?,
            fee: find("服务费（元）")?,
            remark: find("备注")?,
            count: names.len(),
        })
    }

    /// The index of column `i` in a line with `extra` commas in a free-text field: `商品名称`
    /// or `备注` (told apart by where `创建时间` and `完成时间` read as times).
    fn place(&self, fields: &[&str], line: u64) -> Result<impl Fn(usize) -> usize, BillError> {
        let extra = fields
            .len()
            .checked_sub(self.count)
            .ok_or(BillError::Malformed {
                line,
                reason: format!(
                    "{} fields for {} columns (a line cut short?)",
                    fields.len(),
                    self.count
                ),
            })?;
        let is_time = |i: usize| {
            fields.get(i).is_some_and(|f| {
                chrono::NaiveDateTime::parse_from_str(f, "%Y-%m-%d %H:%M:%S").is_ok()
            })
        };
        let subject = self.subject;
        let times_at =
            |shift: usize| is_time(self.created + shift) && is_time(self.finished + shift);
        let shift = if extra == 0 || (self.remark > self.finished && times_at(0)) {
            0
        } else if self.created > subject && times_at(extra) {
            extra
        } else {
            return Err(BillError::Malformed {
                line,
                reason: format!(
                    "{} fields for {} columns, and not from commas in 商品名称 or 备注",
                    fields.len(),
                    self.count
                ),
            });
        };
        Ok(move |i: usize| if i > subject { i + shift } else { i })
    }
}

/// What the lines add up to, signed as the bill writes them.
#[derive(Default)]
struct Sums {
    payments: i64,
    refunds: i64,
    /// `订单金额`, `商家实收` and `服务费` over all lines.
    amount: i64,
    received: i64,
    fee: i64,
    /// `商家实收` of the payment lines, and of the refund lines.
    payments_received: i64,
    refunds_received: i64,
    summary: BillSummary,
}

fn money(fields: &[&str], i: usize, column: &str, line: u64) -> Result<i64, BillError> {
    let text = fields.get(i).copied().unwrap_or_default();
    bill_fen(text).ok_or_else(|| BillError::Malformed {
        line,
        reason: format!("{column} is not a yuan amount: {text:?}"),
    })
}

/// `#交易合计：6笔，商家实收共0.06元，…`: the count and the first amount.
fn trailer(text: &str) -> Option<(i64, i64)> {
    let (_, rest) = text.split_once('：')?;
    let (count, rest) = rest.split_once('笔')?;
    let (_, rest) = rest.split_once('共')?;
    let (amount, _) = rest.split_once('元')?;
    Some((count.trim().parse().ok()?, bill_fen(amount)?))
}

/// Parse the detail file, handing each line to `each`.
fn parse_detail(
    mut reader: impl BufRead,
    each: &mut dyn FnMut(BillLine) -> Result<(), BillError>,
) -> Result<Sums, BillError> {
    let mut sums = Sums::default();
    let mut columns: Option<Columns> = None;
    let mut ended = false;
    let mut number = 0u64;
    let mut raw = Vec::new();
    let io = |e: std::io::Error| match e.kind() {
        std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::InvalidData => {
            BillError::Truncated(e.to_string())
        }
        _ => BillError::Io(e.to_string()),
    };
    while next_bill_line(&mut reader, &mut raw, number + 1, io)? {
        number += 1;
        let text = gbk(&raw)?;
        let text = text.trim_end();
        if text.is_empty() {
            continue;
        }
        if let Some(comment) = text.strip_prefix('#') {
            if columns.is_none() && number == 1 && !comment.starts_with("支付宝") {
                refuse_utf8(&raw, "支付宝")?;
            }
            if comment.contains(END_MARKER) {
                ended = true;
                continue;
            }
            let trailer_of = |kind: &str| {
                (ended && comment.starts_with(kind))
                    .then(|| trailer(comment))
                    .flatten()
            };
            if let Some((count, received)) = trailer_of("交易合计") {
                check_total("#交易合计 笔数", count, sums.payments)?;
                check_total("#交易合计 商家实收", received, sums.payments_received)?;
            } else if let Some((count, received)) = trailer_of("退款合计") {
                check_total("#退款合计 笔数", count, sums.refunds)?;
                check_total("#退款合计 商家实收", received, sums.refunds_received)?;
            }
            continue;
        }
        if ended {
            return Err(BillError::Malformed {
                line: number,
                reason: "a data line after the end of the table".to_owned(),
            });
        }
        let Some(cols) = &columns else {
            refuse_utf8(&raw, "支付宝交易号")?;
            columns = Some(Columns::from_header(&split(text), number)?);
            continue;
        };
        let fields = split(text);
        let at = cols.place(&fields, number)?;
        let get = |i: usize| fields.get(at(i)).copied().unwrap_or_default();
        let kind = match get(cols.kind) {
            "交易" => BillLineKind::Payment,
            "退款" => BillLineKind::Refund,
            other => {
                return Err(BillError::Malformed {
                    line: number,
                    reason: format!("业务类型 {other:?} is neither 交易 nor 退款"),
                });
            }
        };
        let amount = money(&fields, at(cols.amount), "订单金额（元）", number)?;
        let received = money(&fields, at(cols.received), "商家实收（元）", number)?;
        let fee = money(&fields, at(cols.fee), "服务费（元）", number)?;
        if kind == BillLineKind::Payment && (amount < 0 || received < 0) {
            return Err(BillError::Malformed {
                line: number,
                reason: "a negative amount on a payment line".to_owned(),
            });
        }
        sums.amount += amount;
        sums.received += received;
        sums.fee += fee;
        sums.summary.lines += 1;
        sums.summary.fees_fen -= fee;
        let settled = received.abs();
        let out_trade_no = get(cols.out_trade_no).to_owned();
        let out_refund_no = match kind {
            BillLineKind::Payment => None,
            // A refund asked without a request number carries the order's number.
            BillLineKind::Refund => Some(match get(cols.refund_no) {
                "" => out_trade_no.clone(),
                no => no.to_owned(),
            }),
        };
        match kind {
            BillLineKind::Payment => {
                sums.payments += 1;
                sums.payments_received += received;
                sums.summary.gross_fen += settled;
            }
            BillLineKind::Refund => {
                sums.refunds += 1;
                sums.refunds_received += received;
                sums.summary.refunds_fen += settled;
            }
        }
        each(BillLine {
            kind,
            out_trade_no,
            provider_trade_no: get(cols.trade_no).to_owned(),
            out_refund_no,
            provider_refund_no: None,
            amount: Fen::new(amount.abs()),
            settled: Fen::new(settled),
            fee_fen: -fee,
            status: get(cols.kind).to_owned(),
            refund_status: None,
            time: get(cols.finished).to_owned(),
        })?;
    }
    if columns.is_none() {
        return Err(BillError::Truncated("no header line".to_owned()));
    }
    if !ended {
        return Err(BillError::Truncated(format!(
            "no #{END_MARKER} line after the data lines"
        )));
    }
    Ok(sums)
}

/// The summary file's `合计` line (or, without one, the sum of its rows), checked against the
/// detail's sums.
fn check_summary(mut reader: impl BufRead, sums: &Sums) -> Result<(), BillError> {
    let mut header: Option<Vec<String>> = None;
    let mut total: Option<[i64; 5]> = None;
    let mut rows = [0i64; 5];
    let names = [
        "交易订单总笔数",
        "退款订单总笔数",
        "订单金额（元）",
        "商家实收（元）",
        "服务费（元）",
    ];
    let mut raw = Vec::new();
    let mut number = 0u64;
    let io = |e: std::io::Error| BillError::Truncated(format!("the summary: {e}"));
    while next_bill_line(&mut reader, &mut raw, number + 1, io)? {
        number += 1;
        let text = gbk(&raw)?;
        let text = text.trim();
        if text.is_empty() || text.starts_with('#') {
            continue;
        }
        let fields = split(text);
        let Some(head) = &header else {
            refuse_utf8(&raw, "门店编号")?;
            header = Some(fields.iter().map(|f| normal(f)).collect());
            continue;
        };
        let mut values = [0i64; 5];
        for (value, name) in values.iter_mut().zip(names) {
            let i = column(head, &normal(name), number)?;
            let text = fields.get(i).copied().unwrap_or_default();
            *value = if name.ends_with("笔数") {
                text.parse().ok()
            } else {
                bill_fen(text)
            }
            .ok_or_else(|| BillError::Malformed {
                line: number,
                reason: format!("the summary's {name} is not a number: {text:?}"),
            })?;
        }
        if fields.first() == Some(&"合计") {
            total = Some(values);
        } else {
            for (sum, v) in rows.iter_mut().zip(values) {
                *sum += v;
            }
        }
    }
    if header.is_none() {
        return Err(BillError::Truncated("the summary has no header".to_owned()));
    }
    let stated = total.unwrap_or(rows);
    let summed = [
        sums.payments,
        sums.refunds,
        sums.amount,
        sums.received,
        sums.fee,
    ];
    for ((name, stated), summed) in names.iter().zip(stated).zip(summed) {
        check_total(name, stated, summed)?;
    }
    Ok(())
}

/// Which member of the zip a name is.
#[derive(PartialEq)]
enum Member {
    Detail,
    Summary,
    Other,
}

fn member(raw_name: &[u8]) -> Member {
    let name = match std::str::from_utf8(raw_name) {
        Ok(utf8) => utf8.to_owned(),
        Err(_) => encoding_rs::GBK
            .decode_without_bom_handling(raw_name)
            .0
            .into_owned(),
    };
    if name.ends_with("业务明细(汇总).csv") || name.ends_with("业务明细（汇总）.csv")
    {
        Member::Summary
    } else if name.ends_with("业务明细.csv") {
        Member::Detail
    } else {
        Member::Other
    }
}

/// Parse the zip as downloaded, handing each detail line to `each` in file order, and return
/// the bill's totals once they have been checked against its own summaries.
pub fn parse_trade_bill<R: Read + Seek>(
    reader: R,
    mut each: impl FnMut(BillLine) -> Result<(), BillError>,
) -> Result<BillSummary, BillError> {
    let mut zip = zip::ZipArchive::new(reader).map_err(|e| match e {
        zip::result::ZipError::Io(e) => BillError::Io(e.to_string()),
        other => BillError::Truncated(format!("not a whole zip file: {other}")),
    })?;
    let (mut detail, mut summary) = (None, None);
    for i in 0..zip.len() {
        let file = zip.by_index_raw(i).map_err(|e| BillError::Malformed {
            line: 0,
            reason: format!("the zip's entry {i}: {e}"),
        })?;
        match member(file.name_raw()) {
            Member::Detail if detail.is_none() => detail = Some(i),
            Member::Summary if summary.is_none() => summary = Some(i),
            Member::Detail | Member::Summary => {
                return Err(BillError::Malformed {
                    line: 0,
                    reason: "the zip holds two bills of one kind".to_owned(),
                });
            }
            Member::Other => {}
        }
    }
    let (Some(detail), Some(summary)) = (detail, summary) else {
        return Err(BillError::Malformed {
            line: 0,
            reason: "the zip has no …_业务明细.csv and …_业务明细(汇总).csv".to_owned(),
        });
    };
    let sums = {
        let file = zip
            .by_index(detail)
            .map_err(|e| BillError::Truncated(e.to_string()))?;
        parse_detail(BufReader::with_capacity(64 * 1024, file), &mut each)?
    };
    let file = zip
        .by_index(summary)
        .map_err(|e| BillError::Truncated(e.to_string()))?;
    check_summary(BufReader::new(file), &sums)?;
    Ok(sums.summary)
}

/// How long a bill's whole download may take (a busy day's zip is large; an API call's
/// timeout is for a few KiB).
pub const BILL_DOWNLOAD_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(600);

/// The method that hands out a bill's download link.
pub const DOWNLOADURL_QUERY: &str = "alipay.data.dataservice.bill.downloadurl.query";

/// What `isp.bill_not_exist` means for `day` at `now`: Alipay answers it both before the bill
/// is made and for a day without trades; after noon of the next day (Beijing) the bill would
/// have been made (DESIGN.md, "Statements").
pub fn bill_not_exist(
    day: chrono::NaiveDate,
    now: chrono::DateTime<chrono::Utc>,
) -> paybridge_core::statement::BillDownload {
    use paybridge_core::statement::BillDownload;
    let noon_next = day
        .succ_opt()
        .and_then(paybridge_core::beijing::day_range)
        .map(|(start, _)| start + chrono::Duration::hours(12));
    match noon_next {
        Some(t) if now >= t => BillDownload::Empty,
        _ => BillDownload::NotReady(format!(
            "isp.bill_not_exist: Alipay has no bill of {day} yet (an empty day after noon of the next day)"
        )),
    }
}

/// Ask for a Beijing `day`'s trade bill (`bill_type=trade`; in third-party app mode the
/// merchant's, through its `app_auth_token`) and download the zip behind its link into `dest`
/// as it arrives. The zip is not signed; the link came in a verified answer, and the bill is
/// checked against its own summaries when parsed.
pub async fn download_bill(
    gw: &crate::gateway::Gateway,
    day: chrono::NaiveDate,
    dest: &mut (dyn std::io::Write + Send),
) -> Result<paybridge_core::statement::BillDownload, paybridge_core::provider::ProviderError> {
    use crate::gateway::Reply;
    use paybridge_core::provider::ProviderError;
    use paybridge_core::statement::BillDownload;
    let biz =
        serde_json::json!({"bill_type": "trade", "bill_date": day.format("%Y-%m-%d").to_string()});
    let url = match gw.call(DOWNLOADURL_QUERY, biz.to_string()).await? {
        Reply::Success(fields) => fields
            .get("bill_download_url")
            .and_then(serde_json::Value::as_str)
            .filter(|u| u.starts_with("http://") || u.starts_with("https://"))
            .map(str::to_owned)
            .ok_or_else(|| {
                ProviderError::Unavailable("the answer has no bill_download_url".to_owned())
            })?,
        Reply::BusinessFailed(f) if f.sub_code.contains("bill_not_exist") => {
            return Ok(bill_not_exist(day, gw.now()));
        }
        Reply::BusinessFailed(f) => return Err(f.rejected("bill_refused")),
    };
    let mut response = gw
        .http()
        .get(&url)
        .timeout(BILL_DOWNLOAD_TIMEOUT)
        .send()
        .await
        .map_err(crate::gateway::transport_error)?;
    let status = response.status();
    if !status.is_success() {
        return Err(ProviderError::Unavailable(format!(
            "the bill's link answered HTTP {status} (links last 30 seconds)"
        )));
    }
    let mut written = 0u64;
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(crate::gateway::transport_error)?
    {
        if written == 0 && !chunk.starts_with(b"PK") {
            let start: String = String::from_utf8_lossy(&chunk).chars().take(120).collect();
            return Err(ProviderError::Unavailable(format!(
                "the bill's link answered no zip: {start:?}"
            )));
        }
        dest.write_all(&chunk)
            .map_err(|e| ProviderError::Unavailable(format!("cannot keep the bill: {e}")))?;
        written = written.saturating_add(u64::try_from(chunk.len()).unwrap_or(u64::MAX));
    }
    if written == 0 {
        return Err(ProviderError::Unavailable(
            "the bill's link answered nothing".to_owned(),
        ));
    }
    Ok(BillDownload::Written)
}

#[cfg(test)]
#[path = "bill_tests.rs"]
mod tests;
