//! The store's order lookup reads on SQLite without sea-orm's row of named values (it decodes
//! the cells by place): it must give exactly what sea-orm's read gives, for every column, on
//! rows written by the writer and by sqlx, with every optional column set and with none.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use chrono::{TimeZone, Utc};
use paybridge_server::db::entities::order;
use paybridge_server::store::orders::find_order;
use paybridge_tests::{Gateway, TestTenant, backends, wechat};
use sea_orm::{ActiveModelTrait, IntoActiveModel};
use serde_json::json;

/// An order whose every field differs from every other of the same type, so that two columns
/// read from each other's places cannot go unseen.
fn every_field_set(tenant: &str) -> order::Model {
    let at = |s: u32| Utc.with_ymd_and_hms(2026, 12, 1, 8, 0, s).unwrap();
    order::Model {
        id: "0193a7c0-0000-7000-8000-00000000000a".into(),
        tenant_id: tenant.into(),
        out_trade_no: "READ-ALL".into(),
        provider: "wechat_miniprogram".into(),
        amount: 101,
        currency: "CNY".into(),
        description: "every column".into(),
        payer_openid: Some("openid-7".into()),
        client_ip: Some("10.0.0.8".into()),
        attach: Some("attach-9".into()),
        expires_at: at(10) + chrono::Duration::microseconds(123_456),
        status: "partially_refunded".into(),
        flags: r#"["late_payment"]"#.into(),
        provider_trade_no: Some("4200000011".into()),
        refunded_amount: 12,
        paid_at: Some(at(13)),
        client_payment: Some(r#"{"paySign":"x"}"#.into()),
        provider_data: r#"{"prepay_id":"wx15"}"#.into(),
        last_notified_at: Some(at(16)),
        created_at: at(17),
        next_check_at: Some(at(18)),
        updated_at: at(19),
    }
}

fn no_optional_field(tenant: &str) -> order::Model {
    order::Model {
        id: "0193a7c0-0000-7000-8000-00000000000b".into(),
        out_trade_no: "READ-NONE".into(),
        payer_openid: None,
        client_ip: None,
        attach: None,
        provider_trade_no: None,
        paid_at: None,
        client_payment: None,
        last_notified_at: None,
        next_check_at: None,
        status: "pending".into(),
        flags: "[]".into(),
        refunded_amount: 0,
        ..every_field_set(tenant)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_order_lookup_reads_every_column_as_sea_orm_does() {
    for backend in backends() {
        let name = backend.name();
        let t = TestTenant::wechat("reads_shop", 71, "MD5");
        let gw = Gateway::start(&backend, std::slice::from_ref(&t)).await;
        let store = &gw.state.store;
        // Rows written by sqlx, as they are.
        for model in [every_field_set(&t.id), no_optional_field(&t.id)] {
            model
                .clone()
                .into_active_model()
                .reset_all()
                .insert(store.db())
                .await
                .unwrap();
            let fast = store.find_order(&t.id, &model.out_trade_no).await.unwrap();
            let slow = find_order(store.db(), &t.id, &model.out_trade_no)
                .await
                .unwrap();
            assert_eq!(fast.as_ref(), Some(&model), "{name}");
            assert_eq!(fast, slow, "{name}");
        }
        // A row written by the writer, through the API, then paid by a notification.
        let openid = wechat::login(&gw, &t.id).await;
        let (status, body) = gw
            .post(
                &t.id,
                "/v1/orders",
                &json!({"provider": "wechat_miniprogram", "out_trade_no": "READ-API",
                        "amount": 88, "description": "tea", "attach": "a-1",
                        "payer": {"openid": openid}}),
            )
            .await;
        assert_eq!(status, 201, "{name}: {body}");
        let paid = wechat::pay(&gw, &t, "READ-API", "deliver").await;
        assert_eq!(
            paid["deliveries"][0]["acknowledged"], true,
            "{name}: {paid}"
        );
        let fast = store.find_order(&t.id, "READ-API").await.unwrap().unwrap();
        let slow = find_order(store.db(), &t.id, "READ-API")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(fast, slow, "{name}");
        assert_eq!(fast.status, "paid", "{name}");
        assert!(fast.paid_at.is_some() && fast.provider_trade_no.is_some());
        assert!(store.find_order(&t.id, "NO-SUCH").await.unwrap().is_none());
        gw.finish().await;
    }
}
