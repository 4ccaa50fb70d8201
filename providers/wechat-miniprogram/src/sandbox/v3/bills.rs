//! `GET /v3/bill/tradebill` and `GET /v3/billdownload/file`: the v3 trade bill. The first
//! answers (signed) `{hash_type: "SHA1", hash_value, download_url}` for the day's bill of the
//! merchant (or, with `sub_mchid`, of a bound sub-merchant), the same text as v2's
//! `downloadbill` (`sandbox::bills`), gzipped with `tar_type=GZIP`; the hash is the SHA-1 of
//! the text. The second serves that file, unsigned, to the merchant that asked, while its link
//! lives (5 minutes). `400 NO_STATEMENT_EXIST` for a day without trades, `400
//! STATEMENT_CREATING` for a day to come.

use std::io::Write;
use std::time::{Duration, Instant};

use paybridge_core::provider::SimResponse;
use serde_json::json;

use crate::sandbox::State;
use crate::sandbox::bills::{Corruption, NoBill, bill_text, encoded};
use crate::sandbox::merchants::Merchant;

/// How long a download link works.
const LINK_LIFETIME: Duration = Duration::from_secs(300);
/// Links kept at most (the oldest go first).
const MAX_LINKS: usize = 32;

/// A file handed out.
#[derive(Debug)]
struct BillFile {
    token: String,
    /// The merchant whose signature may fetch it.
    caller: String,
    at: Instant,
    gzip: bool,
    bytes: Vec<u8>,
}

/// Bills handed out, by link token.
#[derive(Debug, Default)]
pub(crate) struct BillFiles {
    files: Vec<BillFile>,
    issued: u64,
}

fn query_param(query: &str, name: &str) -> Option<String> {
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

fn sha1_hex(bytes: &[u8]) -> String {
    hex::encode(
        aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, bytes).as_ref(),
    )
}

fn fail(code: &str, message: &str) -> (u16, String) {
    (400, json!({"code": code, "message": message}).to_string())
}

/// `GET /v3/bill/tradebill?bill_date=&bill_type=&tar_type=[&sub_mchid=]` for `acting` (the
/// caller, or its sub-merchant), asked by `caller`.
pub(crate) fn tradebill(
    state: &mut State,
    caller: &str,
    acting: &Merchant,
    query: &str,
    base: &str,
) -> (u16, String) {
    let Some(date) = query_param(query, "bill_date") else {
        return fail("PARAM_ERROR", "缺少参数bill_date");
    };
    let Ok(day) = chrono::NaiveDate::parse_from_str(&date, "%Y-%m-%d") else {
        return fail("PARAM_ERROR", "bill_date格式错误: YYYY-MM-DD");
    };
    if query_param(query, "bill_type").is_some_and(|t| t != "ALL") {
        return fail("PARAM_ERROR", "the sandbox serves bill_type=ALL only");
    }
    let gzip = match query_param(query, "tar_type").as_deref() {
        None => false,
        Some("GZIP") => true,
        Some(_) => return fail("PARAM_ERROR", "tar_type只支持GZIP"),
    };
    let edits = state.bill_edits.get(&acting.mch_id);
    let compact = day.format("%Y%m%d").to_string();
    let text = match bill_text(
        &state.orders,
        &state.refunds,
        edits,
        &acting.mch_id,
        &compact,
    ) {
        Ok(text) => text,
        Err(NoBill::Empty) => return fail("NO_STATEMENT_EXIST", "请求的账单文件不存在"),
        Err(NoBill::Creating) => return fail("STATEMENT_CREATING", "账单生成中，请稍后再试"),
    };
    let text = encoded(text, edits);
    let mut hash = sha1_hex(&text);
    if edits.and_then(|e| e.corrupt) == Some(Corruption::Hash) {
        hash = sha1_hex(hash.as_bytes());
    }
    let bytes = if gzip {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        match encoder.write_all(&text).and_then(|()| encoder.finish()) {
            Ok(bytes) => bytes,
            Err(e) => {
                return (
                    500,
                    json!({"code": "SYSTEM_ERROR", "message": e.to_string()}).to_string(),
                );
            }
        }
    } else {
        text
    };
    let files = &mut state.bill_files;
    files.issued += 1;
    let token = format!("{:016x}{:08x}", rand::random::<u64>(), files.issued);
    if files.files.len() >= MAX_LINKS {
        files.files.remove(0);
    }
    files.files.push(BillFile {
        token: token.clone(),
        caller: caller.to_owned(),
        at: Instant::now(),
        gzip,
        bytes,
    });
    let tartype = if gzip { "&tartype=gzip" } else { "" };
    (
        200,
        json!({
            "hash_type": "SHA1",
            "hash_value": hash,
            "download_url": format!("{base}/v3/billdownload/file?token={token}{tartype}"),
        })
        .to_string(),
    )
}

/// `GET /v3/billdownload/file?token=`: the file, unsigned, for the merchant that asked.
pub(crate) fn file(state: &State, caller: &str, query: &str) -> SimResponse {
    let token = query_param(query, "token").unwrap_or_default();
    let found = state
        .bill_files
        .files
        .iter()
        .find(|f| f.token == token && f.at.elapsed() < LINK_LIFETIME);
    match found {
        Some(f) if f.caller == caller => SimResponse {
            status: 200,
            content_type: if f.gzip {
                "application/x-gzip"
            } else {
                "text/plain; charset=utf-8"
            },
            headers: Vec::new(),
            body: f.bytes.clone(),
        },
        Some(_) => super::error(403, "NO_AUTH", "无权下载该账单"),
        None => super::error(400, "PARAM_ERROR", "token无效或已过期"),
    }
}
