#!/usr/bin/env bash
# The sandbox's certificate mode (公钥证书模式): a root, an issuing CA, Alipay's certificate for
# alipay_sandbox_private.pem (the key the simulator already signs with), a rotated Alipay
# certificate (a new key, same CA), a rogue one (same subject, under a root nobody configured),
# and the demo app's certificate for fixtures/vectors/app_private_pkcs8.pem. Run from this folder.
set -euo pipefail
days=3650
app_key=../../../fixtures/vectors/app_private_pkcs8.pem
root_subj="/C=CN/O=paybridge sandbox/OU=Certification Authority/CN=paybridge sandbox Alipay Root"
ca_subj="/C=CN/ST=Zhejiang/L=Hangzhou/O=paybridge sandbox/OU=Certification Authority/CN=paybridge sandbox Alipay Class 2"
alipay_subj="/C=CN/O=paybridge sandbox/OU=Alipay/CN=Alipay sandbox (RSA2)"
ca_ext=$(mktemp); printf 'basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n' > "$ca_ext"
openssl req -x509 -newkey rsa:2048 -nodes -keyout cert_root_key.pem -out alipay_root_cert.crt \
  -days $days -subj "$root_subj" -set_serial 0x50B0 -sha256 2>/dev/null
openssl req -new -newkey rsa:2048 -nodes -keyout cert_ca_key.pem -out ca.csr -subj "$ca_subj" 2>/dev/null
openssl x509 -req -in ca.csr -CA alipay_root_cert.crt -CAkey cert_root_key.pem -set_serial 0x50B1 \
  -days $days -sha256 -extfile "$ca_ext" -out cert_ca.pem 2>/dev/null
issue() { # csr-key subject serial out
  openssl req -new -key "$1" -out leaf.csr -subj "$2" 2>/dev/null
  openssl x509 -req -in leaf.csr -CA cert_ca.pem -CAkey cert_ca_key.pem -set_serial "$3" \
    -days $days -sha256 -out leaf.pem 2>/dev/null
  cat leaf.pem cert_ca.pem > "$4"; rm -f leaf.csr leaf.pem
}
issue alipay_sandbox_private.pem "$alipay_subj" 0x2026120600000001 alipay_cert.crt
openssl genrsa -traditional -out alipay_rotated_private.pem 2048 2>/dev/null
issue alipay_rotated_private.pem "$alipay_subj" 0x2026120600000002 alipay_rotated_cert.crt
issue "$app_key" "/C=CN/O=paybridge sandbox/OU=Demo Coffee/CN=2021000000000001" 0x2026120600000101 app_cert.crt
# The rogue: Alipay's subject, but under a root of its own.
openssl req -x509 -newkey rsa:2048 -nodes -keyout rogue_root_key.pem -out rogue_root.pem -days $days \
  -subj "$root_subj" -set_serial 0x50B0 -sha256 2>/dev/null
openssl req -new -key alipay_rotated_private.pem -out rogue.csr -subj "$alipay_subj" 2>/dev/null
openssl x509 -req -in rogue.csr -CA rogue_root.pem -CAkey rogue_root_key.pem -set_serial 0x2026120600000003 \
  -days $days -sha256 -out alipay_rogue_cert.crt 2>/dev/null
rm -f ca.csr rogue.csr "$ca_ext" rogue_root_key.pem rogue_root.pem cert_root_key.pem cert_ca_key.pem
