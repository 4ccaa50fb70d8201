//! Alipay's public-key certificate mode (公钥证书模式): the serial numbers that name certificates.
//!
//! - `app_cert_sn`, sent in the signed common parameters, names the app's certificate;
//! - `alipay_root_cert_sn`, sent beside it, names the root bundle: the number of each RSA-family
//!   root (signature algorithm under `1.2.840.113549.1.1`), joined with `_` in file order. The real
//!   bundle starts with an SM2 root, which does not count;
//! - `alipay_cert_sn`, in Alipay's answers, names the Alipay certificate that signed them.
//!
//! A certificate's number is the lowercase hex MD5 of its issuer's DN, most specific part first
//! (`CN=…,OU=…,O=…,L=…,ST=…,C=…`, every part kept), followed by its serial in decimal. This is
//! what the official Node SDK computes (`fixtures/alipay-cert`), and Java's
//! `getIssuerX500Principal().getName()` for the usual DNs.

use md5::{Digest, Md5};
use x509_parser::certificate::X509Certificate;
use x509_parser::pem::Pem;

/// Signature algorithms of the RSA family (PKCS #1).
const RSA_FAMILY: &str = "1.2.840.113549.1.1.";

/// Why a certificate file gives no number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertSnError {
    /// The file holds no PEM certificate.
    #[error("no PEM certificate in it")]
    NoCertificate,
    /// A certificate in it does not parse.
    #[error("certificate {index} of the file does not parse: {reason}")]
    Unreadable {
        /// Its position in the file, from 1.
        index: usize,
        /// What the parser said.
        reason: String,
    },
    /// A root bundle without any RSA root (Alipay's RSA2 keys need one).
    #[error("no RSA root certificate in the bundle (only {0} of other kinds)")]
    NoRsaRoot(usize),
}

/// The name Alipay's SDKs give an issuer attribute: the usual short names, `E` for an e-mail
/// address, nothing for the rest (as the Node SDK writes them).
fn short_name(oid: &str) -> &'static str {
    match oid {
        "2.5.4.3" => "CN",
        "2.5.4.6" => "C",
        "2.5.4.7" => "L",
        "2.5.4.8" => "ST",
        "2.5.4.10" => "O",
        "2.5.4.11" => "OU",
        "1.2.840.113549.1.9.1" => "E",
        _ => "",
    }
}

/// The number of one certificate.
pub fn cert_sn(cert: &X509Certificate<'_>) -> String {
    let attributes: Vec<String> = cert
        .issuer()
        .iter_rdn()
        .flat_map(|rdn| rdn.iter())
        .map(|attr| {
            let value = attr.as_str().map_or_else(
                |_| String::from_utf8_lossy(attr.as_slice()).into_owned(),
                str::to_owned,
            );
            format!("{}={value}", short_name(&attr.attr_type().to_id_string()))
        })
        .collect();
    let mut name: Vec<&str> = attributes.iter().map(String::as_str).collect();
    name.reverse();
    let text = format!("{}{}", name.join(","), cert.tbs_certificate.serial);
    hex::encode(Md5::digest(text.as_bytes()))
}

/// Every certificate of a PEM file, in order, parsed by `use_cert`.
fn each_certificate<T>(
    pem: &str,
    mut use_cert: impl FnMut(&X509Certificate<'_>) -> T,
) -> Result<Vec<T>, CertSnError> {
    let mut out = Vec::new();
    for (i, block) in Pem::iter_from_buffer(pem.as_bytes()).enumerate() {
        let index = i + 1;
        let block = block.map_err(|e| CertSnError::Unreadable {
            index,
            reason: e.to_string(),
        })?;
        if block.label != "CERTIFICATE" {
            continue;
        }
        let cert = block.parse_x509().map_err(|e| CertSnError::Unreadable {
            index,
            reason: e.to_string(),
        })?;
        out.push(use_cert(&cert));
    }
    if out.is_empty() {
        return Err(CertSnError::NoCertificate);
    }
    Ok(out)
}

/// The number of the first certificate of a PEM file (`app_cert_sn` of the app's certificate,
/// `alipay_cert_sn` of Alipay's, whose file holds the leaf first, then its issuer).
pub fn first_cert_sn(pem: &str) -> Result<String, CertSnError> {
    let mut numbers = each_certificate(pem, cert_sn)?;
    Ok(numbers.swap_remove(0))
}

/// `alipay_root_cert_sn` of a root bundle.
pub fn root_cert_sn(pem: &str) -> Result<String, CertSnError> {
    let all = each_certificate(pem, |cert| {
        let rsa = cert
            .signature_algorithm
            .algorithm
            .to_id_string()
            .starts_with(RSA_FAMILY);
        rsa.then(|| cert_sn(cert))
    })?;
    let others = all.iter().filter(|n| n.is_none()).count();
    let numbers: Vec<String> = all.into_iter().flatten().collect();
    if numbers.is_empty() {
        return Err(CertSnError::NoRsaRoot(others));
    }
    Ok(numbers.join("_"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures/alipay-cert");

    fn read(name: &str) -> String {
        std::fs::read_to_string(format!("{FIXTURES}/{name}")).unwrap()
    }

    fn vectors() -> serde_json::Value {
        serde_json::from_str(&read("vectors.json")).unwrap()
    }

    #[test]
    fn every_number_equals_the_official_sdks() {
        let v = vectors();
        assert_eq!(
            first_cert_sn(&read("app_cert.crt")).unwrap(),
            v["app_cert_sn"]
        );
        assert_eq!(
            first_cert_sn(&read("alipay_cert.crt")).unwrap(),
            v["alipay_cert_sn"]
        );
        assert_eq!(
            root_cert_sn(&read("alipay_root_cert.crt")).unwrap(),
            v["alipay_root_cert_sn"]
        );
        assert_eq!(
            v["order_string_signed_params"]["alipay_root_cert_sn"],
            v["alipay_root_cert_sn"]
        );
        for root in v["roots"].as_array().unwrap() {
            let file = root["file"].as_str().unwrap();
            let expected = root["alipay_root_cert_sn"].as_str().unwrap();
            match root_cert_sn(&read(file)) {
                Ok(sn) => assert_eq!(sn, expected, "{file}"),
                // The SDK sends an empty number; paybridge refuses the file instead.
                Err(e) => {
                    assert_eq!(expected, "", "{file}");
                    assert_eq!(e, CertSnError::NoRsaRoot(1));
                }
            }
        }
    }

    #[test]
    fn the_number_is_md5_of_the_reversed_issuer_and_the_decimal_serial() {
        // Written out for the app certificate (issuer and serial from `openssl x509 -issuer
        // -serial`): 0x20230919123456789ABCDEF0 = 9945875681748270357317213936.
        let text = "CN=Ant Financial Test Class 2 R1,OU=Certification Authority,\
                    O=Ant Financial Test,L=Hangzhou,ST=Zhejiang,C=CN9945875681748270357317213936";
        assert_eq!(
            hex::encode(Md5::digest(text.as_bytes())),
            first_cert_sn(&read("app_cert.crt")).unwrap()
        );
    }

    #[test]
    fn files_without_certificates_are_refused_by_name() {
        assert_eq!(
            first_cert_sn("not a certificate"),
            Err(CertSnError::NoCertificate)
        );
        assert_eq!(
            first_cert_sn(&read("app_key.pem")),
            Err(CertSnError::NoCertificate)
        );
        let broken = "-----BEGIN CERTIFICATE-----\nMIIBAAAA\n-----END CERTIFICATE-----\n";
        assert!(matches!(
            root_cert_sn(broken),
            Err(CertSnError::Unreadable { index: 1, .. })
        ));
    }
}
