//! The control API of refunds: settle a refund (and send its notification), and the automatic
//! mode that settles every accepted refund at once.

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};

use paybridge_core::provider::SimResponse;

use super::control::parse;
use super::notify::{self, Outgoing};
use super::refund_notify;
use super::refunds::{RefundLookup, RefundStatus};
use super::{State, WechatSimulator, json_error, json_response, lock};

/// The automatic notification waits this long, so that it arrives after the refund's answer.
const AUTO_NOTIFY_DELAY: Duration = Duration::from_millis(300);
/// Attempts of the automatic notification until one is acknowledged.
const AUTO_NOTIFY_ATTEMPTS: u32 = 4;
/// Pause between those attempts.
const AUTO_NOTIFY_RETRY: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum RefundNotifyMode {
    #[default]
    Deliver,
    Drop,
    Return,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RefundCommand {
    out_refund_no: String,
    mch_id: Option<String>,
    status: RefundStatus,
    #[serde(default)]
    notify: RefundNotifyMode,
}

fn lookup_error(lookup: RefundLookup, out_refund_no: &str) -> SimResponse {
    match lookup {
        RefundLookup::NotFound => json_error(
            404,
            "refund_not_found",
            &format!("no refund {out_refund_no:?} (create it with /secapi/pay/refund first)"),
        ),
        RefundLookup::Ambiguous => json_error(
            409,
            "ambiguous_refund",
            &format!("several merchants have a refund {out_refund_no:?}: give mch_id"),
        ),
    }
}

/// A refund's notification ready to send: v2 XML as is, v3 JSON signed now by the merchant's
/// key mode.
fn prepare(state: &mut State, mch_id: &str, out_refund_no: &str, notification: &str) -> Outgoing {
    let v3 = state
        .refunds
        .get(mch_id, out_refund_no)
        .is_some_and(|r| r.v3);
    if v3 {
        let signer = state.registry.signing_id(mch_id);
        state.v3.outgoing(&signer, notification, false)
    } else {
        Outgoing::xml(notification)
    }
}

/// What settling a refund produced.
struct Settled {
    mch_id: String,
    notify_url: Option<String>,
    notification: String,
    view: Value,
}

impl WechatSimulator {
    /// `POST /control/refund`
    pub(super) async fn control_refund(&self, body: &[u8]) -> SimResponse {
        let command: RefundCommand = match parse(body) {
            Ok(command) => command,
            Err(response) => return response,
        };
        if command.status == RefundStatus::Processing {
            return json_error(
                400,
                "invalid_request",
                "status must be SUCCESS, REFUNDCLOSE or CHANGE",
            );
        }
        let settled = match self.settle(&command) {
            Ok(settled) => settled,
            Err(response) => return response,
        };
        let deliveries = match (command.notify, &settled.notify_url) {
            (RefundNotifyMode::Deliver, Some(url)) => {
                let request = prepare(
                    &mut self.lock(),
                    &settled.mch_id,
                    &command.out_refund_no,
                    &settled.notification,
                );
                let deliveries = notify::deliver_each(self.http.as_ref(), url, vec![request]).await;
                if let Some(refund) = self
                    .lock()
                    .refunds
                    .get_mut(&settled.mch_id, &command.out_refund_no)
                {
                    refund.deliveries.extend(deliveries.iter().cloned());
                }
                deliveries
            }
            _ => Vec::new(),
        };
        let mut answer = settled.view;
        if let Some(object) = answer.as_object_mut() {
            object.insert("notification".into(), json!(settled.notification));
            object.insert("deliveries".into(), json!(deliveries));
        }
        json_response(200, &answer)
    }

    /// Moves the refund to the commanded status (or keeps it, to resend the same notification).
    fn settle(&self, command: &RefundCommand) -> Result<Settled, SimResponse> {
        let mut state = self.lock();
        let state = &mut *state;
        let out_refund_no = command.out_refund_no.as_str();
        let mch_id = state
            .refunds
            .find(out_refund_no, command.mch_id.as_deref())
            .map_err(|e| lookup_error(e, out_refund_no))?;
        let Some(merchant) = state.registry.merchant(&mch_id).cloned() else {
            return Err(json_error(
                409,
                "merchant_unknown",
                &format!("merchant {mch_id} is no longer registered"),
            ));
        };
        let Some(refund) = state.refunds.get_mut(&mch_id, out_refund_no) else {
            return Err(lookup_error(RefundLookup::NotFound, out_refund_no));
        };
        let notification = match &refund.notification {
            Some(sent) if refund.status == command.status => sent.clone(),
            _ if refund.status.may_become(command.status) => {
                refund_notify::finish(refund, command.status, &merchant)
            }
            _ => {
                return Err(json_error(
                    409,
                    "refund_final",
                    &format!(
                        "the refund is {}; it cannot become {}",
                        refund.status.as_str(),
                        command.status.as_str()
                    ),
                ));
            }
        };
        Ok(Settled {
            mch_id,
            notify_url: refund.notify_url.clone(),
            notification,
            view: refund.view(),
        })
    }

    /// `POST /control/settings` `{"auto_refund": "SUCCESS" | "REFUNDCLOSE" | "CHANGE" | null}`;
    /// `{}` only reads them.
    pub(super) fn control_settings(&self, body: &[u8]) -> SimResponse {
        let settings: serde_json::Map<String, Value> = match parse(body) {
            Ok(settings) => settings,
            Err(response) => return response,
        };
        if let Some(unknown) = settings.keys().find(|k| k.as_str() != "auto_refund") {
            return json_error(
                400,
                "invalid_request",
                &format!("unknown setting {unknown:?}; known: auto_refund"),
            );
        }
        let mut state = self.lock();
        if let Some(value) = settings.get("auto_refund") {
            let status = match value {
                Value::Null => None,
                other => match serde_json::from_value::<RefundStatus>(other.clone()) {
                    Ok(status) if status != RefundStatus::Processing => Some(status),
                    _ => {
                        return json_error(
                            400,
                            "invalid_request",
                            "auto_refund must be \"SUCCESS\", \"REFUNDCLOSE\", \"CHANGE\" or null",
                        );
                    }
                },
            };
            state.settings.auto_refund = status;
        }
        json_response(
            200,
            &json!({ "auto_refund": state.settings.auto_refund.map(RefundStatus::as_str) }),
        )
    }

    /// In automatic mode, settles a just-accepted refund and sends its notification shortly after
    /// the answer, again (up to a few times) until it is acknowledged.
    pub(super) fn auto_complete_refund(&self, mch_id: &str, out_refund_no: &str) {
        let prepared = {
            let mut state = self.lock();
            let state = &mut *state;
            let Some(status) = state.settings.auto_refund else {
                return;
            };
            let merchant = state.registry.merchant(mch_id).cloned();
            match (merchant, state.refunds.get_mut(mch_id, out_refund_no)) {
                (Some(merchant), Some(refund)) => {
                    let notification = refund_notify::finish(refund, status, &merchant);
                    refund.notify_url.clone().map(|url| (url, notification))
                }
                _ => None,
            }
        };
        let Some((url, notification)) = prepared else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!("wechat sandbox: no async runtime to send the refund notification");
            return;
        };
        let state = Arc::clone(&self.state);
        let http = self.http.clone();
        let (mch_id, out_refund_no) = (mch_id.to_owned(), out_refund_no.to_owned());
        runtime.spawn(async move {
            tokio::time::sleep(AUTO_NOTIFY_DELAY).await;
            for attempt in 1..=AUTO_NOTIFY_ATTEMPTS {
                let request = prepare(&mut lock(&state), &mch_id, &out_refund_no, &notification);
                let deliveries = notify::deliver_each(http.as_ref(), &url, vec![request]).await;
                let acknowledged = deliveries.iter().any(|d| d.acknowledged);
                if let Some(refund) = lock(&state).refunds.get_mut(&mch_id, &out_refund_no) {
                    refund.deliveries.extend(deliveries);
                }
                if acknowledged || attempt == AUTO_NOTIFY_ATTEMPTS {
                    break;
                }
                tokio::time::sleep(AUTO_NOTIFY_RETRY).await;
            }
        });
    }
}
