//! Alipay through a third-party application (ISV): two merchants share the ISV's app and key,
//! each acting by its own `app_auth_token`, on SQLite and (with `DATABASE_URL`) PostgreSQL. Each
//! notification lands on its merchant's tenant, and one sent to the other's URL is refused.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use paybridge_tests::alipay::{
    cashier, create_order, notify, order_string, parse_form, resign_notification, to_form,
};
use paybridge_tests::{Gateway, TestTenant, backends};
use serde_json::json;

const ISV_APP_ID: &str = "2021009900000001";

fn merchant(id: &str, n: u32, token: &str, own_app: &str) -> TestTenant {
    let mut t = TestTenant::wechat(id, n, "MD5");
    t.alipay_isv_app_id = Some(ISV_APP_ID.to_owned());
    t.extra = format!("app_auth_token = \"{token}\"\nauth_app_id = \"{own_app}\"\n");
    t
}

async fn status(gw: &Gateway, t: &str, no: &str) -> String {
    gw.get(t, &format!("/v1/orders/{no}")).await.1["status"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_merchants_of_one_third_party_app_are_kept_apart() {
    for backend in backends() {
        let name = backend.name();
        let a = merchant("isv_a", 91, "202612BBa91token", "2021000000009101");
        let b = merchant("isv_b", 92, "202612BBb92token", "2021000000009202");
        let gw = Gateway::start(&backend, &[a.clone(), b.clone()]).await;

        // Each orderString is the ISV's app with the merchant's token.
        let (no_a, created_a) = create_order(&gw, &a.id, 700).await;
        let params = parse_form(&order_string(&created_a));
        assert_eq!(params["app_id"], ISV_APP_ID);
        assert_eq!(params["app_auth_token"], "202612BBa91token");

        // A's payment notification lands on A.
        let paid = cashier(&gw, &order_string(&created_a), "deliver").await;
        assert_eq!(
            paid["deliveries"][0]["acknowledged"], true,
            "{name}: {paid}"
        );
        assert_eq!(status(&gw, &a.id, &no_a).await, "paid");

        // B has an order with the same number and amount; A's notification sent to B's URL is
        // refused (auth_app_id names A), and B's order stays pending.
        let (status_code, _) = gw
            .post(
                &b.id,
                "/v1/orders",
                &json!({"provider": "alipay_app", "out_trade_no": no_a, "amount": 700, "description": "same number"}),
            )
            .await;
        assert_eq!(status_code, 201);
        let (_, again) = gw
            .sandbox_of(
                "alipay_app",
                "/control/notify",
                &json!({"out_trade_no": no_a, "app_id": "2021000000009101", "copies": 1}),
            )
            .await;
        let body_a = again["notification"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| paid["notification"].as_str().unwrap_or_default().to_owned());
        let form = parse_form(&body_a);
        assert_eq!(form["app_id"], ISV_APP_ID, "{form:?}");
        assert_eq!(form["auth_app_id"], "2021000000009101");
        let (code, ack) = notify(&gw, &b.id, &body_a).await;
        assert_eq!((code, ack.as_str()), (200, "fail"), "{name}");
        assert_eq!(status(&gw, &b.id, &no_a).await, "pending");

        // B pays its own order with the same number (the sandbox keeps each merchant's trades
        // apart), and queries act for B by its token.
        let (no_b, created_b) = create_order(&gw, &b.id, 300).await;
        cashier(&gw, &order_string(&created_b), "drop").await;
        let (code, order) = gw.get(&b.id, &format!("/v1/orders/{no_b}?sync=true")).await;
        assert_eq!(
            (code, order["status"].as_str()),
            (200, Some("paid")),
            "{name}: {order}"
        );
        // B's own notification, re-signed by Alipay's key but naming A's app as auth_app_id:
        // everything else is B's, and only auth_app_id refuses it.
        let (_, sent) = gw
            .sandbox_of(
                "alipay_app",
                "/control/notify",
                &json!({"out_trade_no": no_b, "app_id": "2021000000009202", "copies": 1}),
            )
            .await;
        let mut form = parse_form(sent["notification"].as_str().unwrap());
        assert_eq!(form["auth_app_id"], "2021000000009202", "{sent}");
        form.insert("auth_app_id".into(), "2021000000009101".into());
        resign_notification(&mut form);
        let (code, ack) = notify(&gw, &b.id, &to_form(&form)).await;
        assert_eq!((code, ack.as_str()), (200, "fail"), "{name}");

        let (code, refund) = gw
            .post(
                &b.id,
                &format!("/v1/orders/{no_b}/refunds"),
                &json!({"out_refund_no": "RB-1", "amount": 100}),
            )
            .await;
        assert_eq!(
            (code, refund["status"].as_str()),
            (201, Some("succeeded")),
            "{name}: {refund}"
        );
        gw.finish().await;
    }
}
