#!/usr/bin/env bash
# A WeChat mini-program payment in the sandbox, from login to "paid", with curl.
# Start the gateway first:  cargo run -p paybridge-server -- --config examples/paybridge.toml
set -euo pipefail
BASE=${BASE:-http://127.0.0.1:8080}
KEY=${KEY:-demo-secret-key}
json() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }

echo "1. login: the mini-program's wx.login() code -> openid"
OPENID=$(curl -sf -X POST "$BASE/v1/wechat_miniprogram/sessions" \
  -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' \
  -d "{\"code\": \"demo-code-$(date +%s%N)\"}" | json "['openid']")
echo "   openid: $OPENID"

echo "2. create an order of 0.01 CNY (1 fen)"
NO="DEMO$(date +%s)"
curl -sf -X POST "$BASE/v1/orders" \
  -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' \
  -d "{\"provider\": \"wechat_miniprogram\", \"out_trade_no\": \"$NO\", \"amount\": 1,
       \"description\": \"Demo Coffee - flat white\", \"payer\": {\"openid\": \"$OPENID\"}}" \
  | tee /tmp/paybridge-order.json | python3 -m json.tool
echo "   the mini-program passes client_payment.wechat_miniprogram to wx.requestPayment()"

echo "3. the payer pays (the sandbox sends WeChat's signed notification to paybridge)"
curl -sf -X POST "$BASE/sandbox/wechat_miniprogram/control/pay" \
  -H 'Content-Type: application/json' -d "{\"out_trade_no\": \"$NO\", \"notify\": \"deliver\"}" \
  | python3 -m json.tool

echo "4. the order is paid"
curl -sf "$BASE/v1/orders/$NO" -H "Authorization: Bearer $KEY" | python3 -m json.tool
