//! The v3 trade bill: `GET /v3/bill/tradebill?bill_date=&bill_type=ALL&tar_type=GZIP` (and
//! `&sub_mchid=` for a service provider's sub-merchant) answers, signed, `{hash_type,
//! hash_value, download_url}`; the file behind `download_url` is fetched with a signed `GET` and
//! is not signed itself, so it is trusted only when the SHA-1 of the bill it holds (the text
//! after gunzip, BOM included) equals `hash_value` (wechatpay-java's `DigestBillEntity` hashes
//! the decompressed stream; the official field text: "原始账单（gzip需要解压缩）的摘要值").
//!
//! The file is kept as downloaded (gzip); `bill::parse_downloaded` reads either form.

use std::io::Write;

use chrono::NaiveDate;
use paybridge_core::provider::ProviderError;
use paybridge_core::statement::BillDownload;
use reqwest::Method;
use serde::Deserialize;

use super::client::{V3Client, V3Reply};
use crate::client::BILL_DOWNLOAD_TIMEOUT;

#[derive(Deserialize)]
struct TradeBill {
    hash_type: String,
    hash_value: String,
    download_url: String,
}

/// The query of a day's `bill_type=ALL` bill, gzipped.
pub fn tradebill_path(day: NaiveDate, sub_mchid: Option<&str>) -> String {
    let mut path = format!(
        "/v3/bill/tradebill?bill_date={}&bill_type=ALL&tar_type=GZIP",
        day.format("%Y-%m-%d")
    );
    if let Some(sub) = sub_mchid {
        path.push_str("&sub_mchid=");
        path.push_str(sub);
    }
    path
}

/// Writes what it is given to the destination and, through gunzip when the file is gzipped,
/// into a SHA-1 of the bill's text.
struct HashingSink<'a> {
    dest: &'a mut (dyn Write + Send),
    /// `None` until the first bytes tell whether the file is gzipped.
    text: Option<TextHash>,
    first: Vec<u8>,
}

enum TextHash {
    Gzip(Box<flate2::write::GzDecoder<Sha1Writer>>),
    Plain(Sha1Writer),
}

struct Sha1Writer(aws_lc_rs::digest::Context);

impl Write for Sha1Writer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn sha1() -> Sha1Writer {
    Sha1Writer(aws_lc_rs::digest::Context::new(
        &aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY,
    ))
}

impl HashingSink<'_> {
    fn hash(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match &mut self.text {
            Some(TextHash::Gzip(g)) => g.write_all(bytes),
            Some(TextHash::Plain(h)) => h.write_all(bytes),
            None => {
                self.first.extend_from_slice(bytes);
                if self.first.len() < 2 {
                    return Ok(());
                }
                let first = std::mem::take(&mut self.first);
                self.text = Some(if first.starts_with(&[0x1f, 0x8b]) {
                    TextHash::Gzip(Box::new(flate2::write::GzDecoder::new(sha1())))
                } else {
                    TextHash::Plain(sha1())
                });
                self.hash(&first)
            }
        }
    }

    /// The lowercase hex SHA-1 of the bill's text; an error when a gzip file ends early.
    fn finish(mut self) -> std::io::Result<String> {
        if self.text.is_none() {
            let first = std::mem::take(&mut self.first);
            self.text = Some(TextHash::Plain(sha1()));
            self.hash(&first)?;
        }
        let digest = match self.text {
            Some(TextHash::Gzip(g)) => g.finish()?.0.finish(),
            Some(TextHash::Plain(h)) => h.0.finish(),
            None => sha1().0.finish(),
        };
        Ok(hex::encode(digest.as_ref()))
    }
}

impl Write for HashingSink<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.dest.write_all(buf)?;
        self.hash(buf)?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.dest.flush()
    }
}

/// Download a Beijing `day`'s trade bill into `dest` (as WeChat Pay serves it, gzipped), once
/// its hash checked out. `NO_STATEMENT_EXIST` is a day without trades, `STATEMENT_CREATING` a
/// bill not made yet.
pub async fn download_bill(
    client: &V3Client,
    sub_mchid: Option<&str>,
    day: NaiveDate,
    dest: &mut (dyn Write + Send),
) -> Result<BillDownload, ProviderError> {
    let bill = match client
        .call(Method::GET, &tradebill_path(day, sub_mchid), None)
        .await?
    {
        V3Reply::Success { body, .. } => serde_json::from_slice::<TradeBill>(&body)
            .map_err(|e| ProviderError::Unavailable(format!("unreadable tradebill answer: {e}")))?,
        V3Reply::Error { code, message, .. } => {
            return match code.as_str() {
                "NO_STATEMENT_EXIST" => Ok(BillDownload::Empty),
                "STATEMENT_CREATING" => Ok(BillDownload::NotReady(format!("{code}: {message}"))),
                _ => Err(ProviderError::Rejected {
                    code: "bill_refused",
                    message: format!("WeChat Pay refused the bill: {code} {message}"),
                }),
            };
        }
    };
    if !bill.hash_type.eq_ignore_ascii_case("SHA1") {
        return Err(ProviderError::Rejected {
            code: "bill_refused",
            message: format!(
                "the bill's hash_type is {:?}; paybridge checks SHA1",
                bill.hash_type
            ),
        });
    }
    let path = client.path_of(&bill.download_url).ok_or_else(|| {
        ProviderError::Unavailable(format!(
            "the bill's download_url is not on the merchant's api_base: {}",
            bill.download_url.split('?').next().unwrap_or_default()
        ))
    })?;
    let mut sink = HashingSink {
        dest,
        text: None,
        first: Vec::new(),
    };
    let written = client
        .download_file(&path, BILL_DOWNLOAD_TIMEOUT, &mut sink)
        .await?;
    let hash = sink.finish().map_err(|e| ProviderError::Rejected {
        code: "bill_refused",
        message: format!("the bill's file is cut short or not gzip: {e}"),
    })?;
    if written == 0 {
        return Err(ProviderError::Unavailable("an empty bill file".to_owned()));
    }
    if !hash.eq_ignore_ascii_case(bill.hash_value.trim()) {
        return Err(ProviderError::Rejected {
            code: "bill_hash_mismatch",
            message: format!(
                "the bill's SHA1 is {hash}, WeChat Pay's hash_value {}: the file is not the bill",
                bill.hash_value.chars().take(64).collect::<String>()
            ),
        });
    }
    Ok(BillDownload::Written)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash_of(chunks: &[&[u8]]) -> String {
        let mut dest = Vec::new();
        let mut sink = HashingSink {
            dest: &mut dest,
            text: None,
            first: Vec::new(),
        };
        for c in chunks {
            sink.write_all(c).unwrap();
        }
        sink.finish().unwrap()
    }

    #[test]
    fn the_hash_is_of_the_text_gzipped_or_not() {
        let text = b"\xef\xbb\xbfheader\r\n`1,`2\r\n";
        let want = hex::encode(
            aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, text).as_ref(),
        );
        assert_eq!(hash_of(&[text]), want);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(text).unwrap();
        let gz = gz.finish().unwrap();
        // Chunks split anywhere, even inside the gzip magic.
        assert_eq!(hash_of(&[&gz[..1], &gz[1..5], &gz[5..]]), want);
        // A gzip file cut short is an error, not a hash.
        let mut dest = Vec::new();
        let mut sink = HashingSink {
            dest: &mut dest,
            text: None,
            first: Vec::new(),
        };
        sink.write_all(&gz[..gz.len() - 6]).unwrap();
        assert!(sink.finish().is_err());
    }

    #[test]
    fn the_query_names_the_day_and_the_sub_merchant() {
        let day = NaiveDate::from_ymd_opt(2026, 12, 5).unwrap();
        assert_eq!(
            tradebill_path(day, None),
            "/v3/bill/tradebill?bill_date=2026-12-05&bill_type=ALL&tar_type=GZIP"
        );
        assert_eq!(
            tradebill_path(day, Some("1900000109")),
            "/v3/bill/tradebill?bill_date=2026-12-05&bill_type=ALL&tar_type=GZIP&sub_mchid=1900000109"
        );
    }
}
