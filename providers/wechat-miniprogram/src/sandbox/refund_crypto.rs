//! The refund notification's `req_info` (PROTOCOLS §B.10), encrypted by the simulator's own code:
//! AES-256-ECB under the 32 ASCII bytes of the lowercase hex MD5 of the API key, PKCS#7 padding
//! to 16-byte blocks, then base64.

use aes::Aes256;
use aes::cipher::{BlockCipherEncrypt, KeyInit};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use md5::{Digest, Md5};

const BLOCK: usize = 16;

/// The AES-256 key: `hex(md5(api_key))` as ASCII (not the 16 digest bytes).
fn aes_key(api_key: &str) -> Vec<u8> {
    hex::encode(Md5::digest(api_key.as_bytes())).into_bytes()
}

/// `base64(AES-256-ECB(key*, PKCS#7(plaintext)))`.
pub(crate) fn encrypt_req_info(plaintext: &str, api_key: &str) -> String {
    let Ok(cipher) = Aes256::new_from_slice(&aes_key(api_key)) else {
        // Unreachable: the key is always 32 bytes. Nothing decryptable is better than plaintext.
        return String::new();
    };
    let mut data = plaintext.as_bytes().to_vec();
    let pad = BLOCK - data.len() % BLOCK;
    let pad_byte = u8::try_from(pad).unwrap_or(16);
    data.extend(std::iter::repeat_n(pad_byte, pad));
    for chunk in data.chunks_exact_mut(BLOCK) {
        if let Ok(block) = <&mut aes::Block>::try_from(chunk) {
            cipher.encrypt_block(block);
        }
    }
    STANDARD.encode(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// IJPay's vector (PROTOCOLS §D.2): API key 42cc…f4f0 → key* 1c26…c130; "IJPay" →
    /// K8fdh/6THGfTKio8pxXS6Q==.
    #[test]
    fn ijpay_vector() {
        let key = "42cc1d91bab89b65ff55b19e28fff4f0";
        assert_eq!(aes_key(key), b"1c26ff4ebc15b88a8829febe1789c130");
        assert_eq!(encrypt_req_info("IJPay", key), "K8fdh/6THGfTKio8pxXS6Q==");
    }

    #[test]
    fn a_whole_block_gets_a_whole_block_of_padding() {
        let encrypted = encrypt_req_info("0123456789abcdef", "k");
        assert_eq!(STANDARD.decode(encrypted).unwrap().len(), 32);
    }
}
