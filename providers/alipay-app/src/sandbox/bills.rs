//! `alipay.data.dataservice.bill.downloadurl.query` (`bill_type=trade`) and the file behind its
//! `bill_download_url`: the day's trade bill of an app, written from the simulator's own trades
//! in Alipay's layout (a zip of `<account>_<yyyyMMdd>_业务明细.csv` and `…_业务明细(汇总).csv`,
//! GBK, CRLF, `#` comment lines, TAB-padded fields; what `bill::parse_trade_bill` reads). The
//! fee is 0.6 %, rounded to the fen, written negative on a payment (`服务费`), returned in
//! proportion (positive) on a refund. A day without a payment or a refund, and a day to come,
//! answer `40004 isp.bill_not_exist`, as Alipay does for both. The link is good for 30 seconds.
//!
//! Unlike Alipay's zip, the members' names are written in UTF-8 (with the zip's UTF-8 flag):
//! the zip writer cannot write GBK names. The committed fixture has GBK names.

use std::collections::HashMap;
use std::io::Write;
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::Value;

use super::faults::Api;
use super::gateway::{Call, Reply};
use super::trades::{TradeBook, TradeStatus, beijing_now};

/// How long a download link works.
const LINK_LIFETIME: Duration = Duration::from_secs(30);
/// Links kept at most (the oldest go first).
const MAX_LINKS: usize = 32;

/// How a test or a demo breaks an app's bill (`POST /control/bill` `corrupt`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Corruption {
    /// The summary's `合计` line disagrees with the lines (by one fen of `商家实收`).
    Summary,
    /// The zip is cut short.
    Truncate,
    /// The detail is written in UTF-8 instead of GBK.
    Encoding,
}

/// Differences a test or a demo injects into an app's bills (`POST /control/bill`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BillEdits {
    /// Payments left out of the bill.
    #[serde(default)]
    pub(crate) drop: Vec<String>,
    /// Payments shown with another amount (fen).
    #[serde(default)]
    pub(crate) amounts: HashMap<String, u64>,
    /// Refunds the bill shows that paybridge never made (as from the merchant's console).
    #[serde(default)]
    pub(crate) foreign_refunds: Vec<ForeignRefund>,
    /// A bill that cannot be trusted.
    #[serde(default)]
    pub(crate) corrupt: Option<Corruption>,
}

/// A refund made outside paybridge.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ForeignRefund {
    /// The refunded order.
    pub(crate) out_trade_no: String,
    /// A request number paybridge never made.
    pub(crate) out_request_no: String,
    /// Fen.
    pub(crate) amount: u64,
}

/// Bills handed out, by link token.
#[derive(Debug, Default)]
pub(crate) struct BillFiles {
    files: Vec<(String, Instant, Vec<u8>)>,
    issued: u64,
}

impl BillFiles {
    fn keep(&mut self, zip: Vec<u8>) -> String {
        self.issued += 1;
        let token = format!("{:016x}{:08x}", rand::random::<u64>(), self.issued);
        if self.files.len() >= MAX_LINKS {
            self.files.remove(0);
        }
        self.files.push((token.clone(), Instant::now(), zip));
        token
    }

    /// The file of a live link.
    pub(crate) fn get(&self, token: &str) -> Option<&[u8]> {
        self.files
            .iter()
            .find(|(t, at, _)| t == token && at.elapsed() < LINK_LIFETIME)
            .map(|(_, _, zip)| zip.as_slice())
    }
}

const DETAIL_HEADER: &str = "支付宝交易号,商户订单号,业务类型,商品名称,创建时间,完成时间,门店编号,门店名称,操作员,终端号,对方账户,订单金额（元）,商家实收（元）,支付宝红包（元）,集分宝（元）,支付宝优惠（元）,商家优惠（元）,券核销金额（元）,券名称,商家红包消费金额（元）,卡消费金额（元）,退款批次号/请求号,服务费（元）,分润（元）,备注";
const SUMMARY_HEADER: &str = "门店编号,门店名称,交易订单总笔数,退款订单总笔数,订单金额（元）,商家实收（元）,支付宝优惠（元）,商家优惠（元）,卡消费金额（元）,服务费（元）,分润（元）,实收净额（元）";

fn yuan(fen: i64) -> String {
    paybridge_core::money::Fen::new(fen).to_yuan()
}

/// 0.6 % of `fen`, rounded half up.
fn fee(fen: u64) -> i64 {
    i64::try_from((fen * 6 + 500) / 1000).unwrap_or(i64::MAX)
}

/// One line of the detail: signed amounts as Alipay writes them.
struct Line {
    trade_no: String,
    out_trade_no: String,
    refund: Option<String>,
    subject: String,
    created: String,
    finished: String,
    buyer: String,
    /// `订单金额`, `商家实收` (negative on a refund), `服务费` (negative on a payment).
    amount: i64,
    fee: i64,
}

impl Line {
    fn text(&self) -> String {
        let t = "\t";
        let kind = if self.refund.is_some() {
            "退款"
        } else {
            "交易"
        };
        let amount = yuan(self.amount);
        format!(
            "{}{t},{}{t},{kind}{t},{},{},{},{t},{t},{t},{t},{}{t},{amount},{amount},0.00,0.00,0.00,0.00,0.00,,0.00{t},0.00,{}{t},{},0.00,",
            self.trade_no,
            self.out_trade_no,
            self.subject.replace(',', "，"),
            self.created,
            self.finished,
            self.buyer,
            self.refund.as_deref().unwrap_or_default(),
            yuan(self.fee),
        )
    }
}

fn dashes(title: &str, before: usize, after: usize) -> String {
    format!("#{}{title}{}", "-".repeat(before), "-".repeat(after))
}

/// The day's lines of an app (`day`: `yyyy-MM-dd`).
fn lines(book: &TradeBook, app_id: &str, day: &str, edits: &BillEdits) -> Vec<Line> {
    let mut lines = Vec::new();
    for trade in book.of_app(app_id) {
        let Some(paid) = &trade.gmt_payment else {
            continue;
        };
        if trade.status == TradeStatus::WaitBuyerPay {
            continue;
        }
        let line = |refund: Option<String>, finished: &str, amount: i64, fee: i64| Line {
            trade_no: trade.trade_no.clone(),
            out_trade_no: trade.out_trade_no.clone(),
            refund,
            subject: trade.subject.clone(),
            created: trade.gmt_create.clone(),
            finished: finished.to_owned(),
            buyer: trade.buyer_logon_id.clone(),
            amount,
            fee,
        };
        if paid.starts_with(day) && !edits.drop.contains(&trade.out_trade_no) {
            let fen = edits
                .amounts
                .get(&trade.out_trade_no)
                .copied()
                .unwrap_or(trade.total.0);
            lines.push(line(
                None,
                paid,
                i64::try_from(fen).unwrap_or(i64::MAX),
                -fee(fen),
            ));
        }
        for r in trade
            .refunds
            .iter()
            .filter(|r| r.gmt_refund_pay.starts_with(day))
        {
            let fen = r.refund_amount.0;
            lines.push(line(
                Some(r.out_request_no.clone()),
                &r.gmt_refund_pay,
                -i64::try_from(fen).unwrap_or(i64::MAX),
                fee(fen),
            ));
        }
    }
    for (i, f) in edits.foreign_refunds.iter().enumerate() {
        // Made on the day the order was paid.
        let Some(trade) = book
            .get(app_id, &f.out_trade_no)
            .filter(|t| t.gmt_payment.as_deref().is_some_and(|p| p.starts_with(day)))
        else {
            continue;
        };
        lines.push(Line {
            trade_no: trade.trade_no.clone(),
            out_trade_no: trade.out_trade_no.clone(),
            refund: Some(f.out_request_no.clone()),
            subject: trade.subject.clone(),
            created: trade.gmt_create.clone(),
            finished: format!("{day} 23:59:{:02}", i % 60),
            buyer: trade.buyer_logon_id.clone(),
            amount: -i64::try_from(f.amount).unwrap_or(i64::MAX),
            fee: fee(f.amount),
        });
    }
    lines.sort_by(|a, b| a.finished.cmp(&b.finished));
    lines
}

/// The zip of the two files.
fn zip(account: &str, day: &str, lines: &[Line], corrupt: Option<Corruption>) -> Vec<u8> {
    let compact = day.replace('-', "");
    let period = |d: &str| format!("{}年{}月{}日 00:00:00", &d[0..4], &d[5..7], &d[8..10]);
    let next = chrono::NaiveDate::parse_from_str(day, "%Y-%m-%d")
        .map(|d| {
            (d + chrono::Duration::days(1))
                .format("%Y-%m-%d")
                .to_string()
        })
        .unwrap_or_else(|_| day.to_owned());
    let exported = beijing_now().format("%Y年%m月%d日 %H:%M:%S").to_string();
    let head = |title: &str| {
        vec![
            format!("#支付宝{title}查询"),
            format!("#账号：[{account}]"),
            format!(
                "#起始日期：[{}]   终止日期：[{}]",
                period(day),
                period(&next)
            ),
        ]
    };
    let (payments, refunds): (Vec<&Line>, Vec<&Line>) =
        lines.iter().partition(|l| l.refund.is_none());
    let sum = |ls: &[&Line]| ls.iter().map(|l| l.amount).sum::<i64>();
    let (paid, refunded) = (sum(&payments), sum(&refunds));
    let fees: i64 = lines.iter().map(|l| l.fee).sum();
    let mut detail = head("业务明细");
    detail.push(dashes("业务明细列表", 41, 40));
    detail.push(DETAIL_HEADER.to_owned());
    detail.extend(lines.iter().map(Line::text));
    detail.push(dashes("业务明细列表结束", 41, 36));
    detail.push(format!(
        "#交易合计：{}笔，商家实收共{}元，商家优惠共0.00元",
        payments.len(),
        yuan(paid)
    ));
    detail.push(format!(
        "#退款合计：{}笔，商家实收退款共{}元，商家优惠退款共0.00元",
        refunds.len(),
        yuan(refunded)
    ));
    detail.push(format!("#导出时间：[{exported}]"));
    let received = paid + refunded + i64::from(corrupt == Some(Corruption::Summary));
    let total = format!(
        "{},{},{},{},0.00,0.00,0.00,{},0.00,{}",
        payments.len(),
        refunds.len(),
        yuan(paid + refunded),
        yuan(received),
        yuan(fees),
        yuan(received + fees)
    );
    let mut summary = head("业务汇总");
    summary.push(dashes("业务汇总列表", 41, 40));
    summary.push(SUMMARY_HEADER.to_owned());
    summary.push(format!("\t,\t,{total}"));
    summary.push(format!("合计,,{total}"));
    summary.push(dashes("业务汇总列表结束", 40, 37));
    summary.push(format!("#导出时间：[{exported}]"));
    let crlf = |ls: Vec<String>| ls.join("\r\n") + "\r\n";
    let (detail, summary) = (crlf(detail), crlf(summary));
    let detail = match corrupt {
        Some(Corruption::Encoding) => detail.into_bytes(),
        _ => encoding_rs::GBK.encode(&detail).0.into_owned(),
    };
    let summary = encoding_rs::GBK.encode(&summary).0.into_owned();
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    let mut write = |name: String, bytes: &[u8]| -> zip::result::ZipResult<()> {
        writer.start_file(name, options)?;
        writer.write_all(bytes)?;
        Ok(())
    };
    let written = write(format!("{account}_{compact}_业务明细.csv"), &detail)
        .and_then(|()| write(format!("{account}_{compact}_业务明细(汇总).csv"), &summary));
    let mut zip = match written.and_then(|()| writer.finish()) {
        Ok(cursor) => cursor.into_inner(),
        Err(e) => {
            tracing::warn!(error = %e, "alipay sandbox: cannot write a bill");
            Vec::new()
        }
    };
    if corrupt == Some(Corruption::Truncate) {
        zip.truncate(zip.len() / 2);
    }
    zip
}

/// `alipay.data.dataservice.bill.downloadurl.query`.
pub(crate) fn downloadurl_query(
    book: &TradeBook,
    files: &mut BillFiles,
    edits: Option<&BillEdits>,
    seller_id: &str,
    call: &Call,
    base: &str,
) -> Reply {
    let api = Api::BillDownloadUrl;
    let invalid = |m: &str| Reply::business(api, "isv.invalid_arguments", m);
    match call.text("bill_type") {
        Some("trade") => {}
        Some(other) => return invalid(&format!("bill_type {other:?}: the sandbox serves trade")),
        None => return invalid("缺少bill_type"),
    }
    let Some(day) = call.text("bill_date") else {
        return invalid("缺少bill_date");
    };
    let Ok(date) = chrono::NaiveDate::parse_from_str(day, "%Y-%m-%d") else {
        return invalid(&format!(
            "bill_date {day:?} is not yyyy-MM-dd (a daily bill)"
        ));
    };
    let none = BillEdits::default();
    let edits = edits.unwrap_or(&none);
    // The real bill of a day is made the next morning; the sandbox serves today's too (what
    // happened so far), so that a day can be reconciled while trying it out.
    let lines = if date > beijing_now().date() {
        Vec::new()
    } else {
        lines(book, &call.app_id, day, edits)
    };
    if lines.is_empty() {
        return Reply::business(api, "isp.bill_not_exist", "账单不存在");
    }
    let account = format!("{seller_id}0156");
    let compact = day.replace('-', "");
    let token = files.keep(zip(&account, day, &lines, edits.corrupt));
    let url = format!(
        "{base}/downloadBillFile.resource?bizType=trade&fileType=csv.zip&bizDates={compact}&downloadFileName={account}_{compact}.csv.zip&token={token}"
    );
    Reply::success(api, [("bill_download_url", Some(Value::String(url)))])
}

/// `GET /downloadBillFile.resource?…&token=`: the zip, while its link lives.
pub(crate) fn download(files: &BillFiles, query: &str) -> paybridge_core::provider::SimResponse {
    let token = url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default();
    match files.get(&token) {
        Some(zip) => paybridge_core::provider::SimResponse {
            status: 200,
            content_type: "application/octet-stream",
            headers: Vec::new(),
            body: zip.to_vec(),
        },
        None => paybridge_core::provider::SimResponse {
            status: 404,
            content_type: "text/plain; charset=utf-8",
            headers: Vec::new(),
            body: "the link has expired (30 s) or was never issued"
                .as_bytes()
                .to_vec(),
        },
    }
}
