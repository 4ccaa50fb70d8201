//! `/metrics`: a `prometheus-client` registry per instance, rendered as Prometheus text 0.0.4.
//!
//! Histograms are real Prometheus histograms (`_bucket`, `_sum`, `_count`). Label values are
//! route patterns, provider kinds, endpoint names and fixed reason codes: never ids, amounts,
//! secrets or payer data, so the series stay few.

use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels of `paybridge_http_request_duration_seconds`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    /// `GET`, `POST`, … (`other` for a non-standard method).
    pub method: &'static str,
    /// The route pattern (`/v1/orders/{out_trade_no}`), or `unmatched`.
    pub route: String,
    /// The numeric status.
    pub status: u16,
}

/// Labels of `paybridge_provider_call_duration_seconds`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CallLabels {
    /// The provider kind.
    pub provider: &'static str,
    /// The provider operation: `create`, `query`, `close`, `refund`, `refund_query`, `login`,
    /// `authorize`.
    pub endpoint: &'static str,
    /// `ok`, `error` or `timeout`.
    pub outcome: &'static str,
}

/// Labels of `paybridge_notifications_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NotificationLabels {
    /// The provider kind of the notify URL.
    pub provider: &'static str,
    /// `payment` or `refund`.
    pub channel: &'static str,
    /// `accepted`, `duplicate` or `refused`.
    pub verdict: &'static str,
}

/// Labels of `paybridge_notifications_refused_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefusedLabels {
    /// The provider kind of the notify URL.
    pub provider: &'static str,
    /// `payment` or `refund`.
    pub channel: &'static str,
    /// A fixed code: `bad_signature`, `undecodable`, `mismatch`, `unknown`, `reported_failure`,
    /// `unsupported`, `rate_limited`, `storage_unavailable`.
    pub reason: &'static str,
}

/// Labels of the counters by provider alone. Provider kinds are `&'static str` (a provider's
/// `kind()`): no label costs an allocation on the request path.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProviderLabels {
    /// The provider kind.
    pub provider: &'static str,
    /// `payment` or `refund` (empty where it does not apply).
    pub channel: &'static str,
}

/// Labels of `paybridge_webhook_attempts_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// What happened.
    pub outcome: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn request_buckets() -> Histogram {
    // 0.25 ms … 8 s
    Histogram::new(exponential_buckets(0.000_25, 2.0, 16))
}

fn call_buckets() -> Histogram {
    // 2 ms … 16 s: a provider call crosses the internet.
    Histogram::new(exponential_buckets(0.002, 2.0, 14))
}

/// The instance's metrics.
pub struct Metrics {
    registry: Registry,
    http: HistogramFamily<HttpLabels>,
    provider_calls: HistogramFamily<CallLabels>,
    notifications: Family<NotificationLabels, Counter>,
    refused: Family<RefusedLabels, Counter>,
    unrecorded: Family<ProviderLabels, Counter>,
    orders_created: Family<ProviderLabels, Counter>,
    webhook_attempts: Family<OutcomeLabels, Counter>,
    webhook_backlog: Gauge,
    activity_dropped: Counter,
    statements: Family<StatementLabels, Counter>,
    statement_lines: Family<StatementLineLabels, Counter>,
}

/// Labels of `paybridge_statements_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatementLabels {
    /// The provider kind.
    pub provider: String,
    /// How the run ended: `reconciled`, `not_ready` or `failed`.
    pub status: &'static str,
}

/// Labels of `paybridge_statement_lines_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatementLineLabels {
    /// The provider kind.
    pub provider: String,
    /// `matched` or a discrepancy kind.
    pub result: String,
}

impl Metrics {
    /// The metrics of an instance whose database commits are timed in `commit_seconds`.
    pub fn new(commit_seconds: Histogram) -> Self {
        let mut registry = Registry::default();
        let http = HistogramFamily::<HttpLabels>::new_with_constructor(request_buckets);
        registry.register(
            "paybridge_http_request_duration_seconds",
            "Time to answer an HTTP request, by method, route pattern and status",
            http.clone(),
        );
        let provider_calls = HistogramFamily::<CallLabels>::new_with_constructor(call_buckets);
        registry.register(
            "paybridge_provider_call_duration_seconds",
            "Time of a call to a payment provider, by provider, endpoint and outcome",
            provider_calls.clone(),
        );
        let notifications = Family::<NotificationLabels, Counter>::default();
        registry.register(
            "paybridge_notifications",
            "Provider notifications received, by verdict",
            notifications.clone(),
        );
        let refused = Family::<RefusedLabels, Counter>::default();
        registry.register(
            "paybridge_notifications_refused",
            "Provider notifications refused, by reason",
            refused.clone(),
        );
        let unrecorded = Family::<ProviderLabels, Counter>::default();
        registry.register(
            "paybridge_notifications_unrecorded",
            "Unverified notifications refused beyond the recorded sample (counted only)",
            unrecorded.clone(),
        );
        let orders_created = Family::<ProviderLabels, Counter>::default();
        registry.register(
            "paybridge_orders_created",
            "Orders created",
            orders_created.clone(),
        );
        let webhook_attempts = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "paybridge_webhook_attempts",
            "Webhook delivery attempts, by outcome",
            webhook_attempts.clone(),
        );
        let webhook_backlog = Gauge::default();
        registry.register(
            "paybridge_webhook_backlog",
            "Webhook events not yet delivered, as this instance last counted them",
            webhook_backlog.clone(),
        );
        let activity_dropped = Counter::default();
        registry.register(
            "paybridge_activity_dropped",
            "Order activity records (provider calls, reconciler actions) dropped because the buffer was full",
            activity_dropped.clone(),
        );
        registry.register(
            "paybridge_db_commit_duration_seconds",
            "Time of a database commit (on SQLite, one commit holds a group of writes)",
            commit_seconds,
        );
        let statements = Family::<StatementLabels, Counter>::default();
        registry.register(
            "paybridge_statements",
            "Statement runs, by how they ended",
            statements.clone(),
        );
        let statement_lines = Family::<StatementLineLabels, Counter>::default();
        registry.register(
            "paybridge_statement_lines",
            "Bill lines reconciled, matched or by discrepancy kind",
            statement_lines.clone(),
        );
        registry.register_collector(Box::new(ProcessCollector));
        Metrics {
            registry,
            http,
            provider_calls,
            notifications,
            refused,
            unrecorded,
            orders_created,
            webhook_attempts,
            webhook_backlog,
            activity_dropped,
            statements,
            statement_lines,
        }
    }

    /// The buckets of `paybridge_db_commit_duration_seconds`: 0.1 ms … 3 s.
    pub fn commit_histogram() -> Histogram {
        Histogram::new(exponential_buckets(0.000_1, 2.0, 16))
    }

    /// One answered HTTP request.
    pub fn http_request(&self, labels: &HttpLabels, took: Duration) {
        self.http.get_or_create(labels).observe(took.as_secs_f64());
    }

    /// One provider call.
    pub fn provider_call(&self, labels: &CallLabels, took: Duration) {
        self.provider_calls
            .get_or_create(labels)
            .observe(took.as_secs_f64());
    }

    /// One notification's verdict, and its reason when refused.
    pub fn notification(
        &self,
        provider: &'static str,
        channel: &'static str,
        verdict: &'static str,
        reason: Option<&'static str>,
    ) {
        self.notifications
            .get_or_create(&NotificationLabels {
                provider,
                channel,
                verdict,
            })
            .inc();
        if let Some(reason) = reason {
            self.refused
                .get_or_create(&RefusedLabels {
                    provider,
                    channel,
                    reason,
                })
                .inc();
        }
    }

    /// An unverified notification refused and not recorded.
    pub fn notification_unrecorded(&self, provider: &'static str, channel: &'static str) {
        self.unrecorded
            .get_or_create(&ProviderLabels { provider, channel })
            .inc();
    }

    /// An order created.
    pub fn order_created(&self, provider: &'static str) {
        self.orders_created
            .get_or_create(&ProviderLabels {
                provider,
                channel: "payment",
            })
            .inc();
    }

    /// A webhook delivery attempt.
    pub fn webhook_attempt(&self, outcome: &'static str) {
        self.webhook_attempts
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
    }

    /// The webhook events not yet delivered, as just counted.
    pub fn set_webhook_backlog(&self, events: u64) {
        self.webhook_backlog
            .set(i64::try_from(events).unwrap_or(i64::MAX));
    }

    /// A statement run ended.
    pub fn statement(&self, provider: &str, status: &'static str) {
        self.statements
            .get_or_create(&StatementLabels {
                provider: provider.to_owned(),
                status,
            })
            .inc();
    }

    /// `n` lines of a statement with this result.
    pub fn statement_lines(&self, provider: &str, result: &str, n: u64) {
        self.statement_lines
            .get_or_create(&StatementLineLabels {
                provider: provider.to_owned(),
                result: result.to_owned(),
            })
            .inc_by(n);
    }

    /// An activity record dropped.
    pub fn activity_dropped(&self) {
        self.activity_dropped.inc();
    }

    /// The Prometheus text exposition (0.0.4).
    pub fn render(&self) -> String {
        let mut out = String::new();
        if let Err(e) =
            prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)
        {
            tracing::error!(error = %e, "cannot encode the metrics");
        }
        out
    }
}

/// The standard `process_*` metrics, read at each scrape.
#[derive(Debug)]
struct ProcessCollector;

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let p = metrics_process::collector::collect();
        if let Some(v) = p.cpu_seconds_total {
            let m = ConstCounter::new(v);
            m.encode(encoder.encode_descriptor(
                "process_cpu_seconds",
                "Total user and system CPU time spent in seconds",
                None,
                m.metric_type(),
            )?)?;
        }
        let gauges = [
            (
                "process_open_fds",
                "Number of open file descriptors",
                p.open_fds,
            ),
            (
                "process_max_fds",
                "Maximum number of open file descriptors",
                p.max_fds,
            ),
            (
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes",
                p.virtual_memory_bytes,
            ),
            (
                "process_resident_memory_bytes",
                "Resident memory size in bytes",
                p.resident_memory_bytes,
            ),
            (
                "process_start_time_seconds",
                "Start time of the process since the Unix epoch in seconds",
                p.start_time_seconds,
            ),
            (
                "process_threads",
                "Number of OS threads in the process",
                p.threads,
            ),
        ];
        for (name, help, value) in gauges {
            if let Some(v) = value {
                let m = ConstGauge::new(i64::try_from(v).unwrap_or(i64::MAX));
                m.encode(encoder.encode_descriptor(name, help, None, m.metric_type())?)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_counters_and_process_metrics_render_as_prometheus_text() {
        let m = Metrics::new(Metrics::commit_histogram());
        m.http_request(
            &HttpLabels {
                method: "GET",
                route: "/v1/orders/{out_trade_no}".to_owned(),
                status: 200,
            },
            Duration::from_millis(3),
        );
        m.notification("wechat\"x", "payment", "refused", Some("bad_signature"));
        m.notification("wechat\"x", "payment", "refused", Some("bad_signature"));
        let text = m.render();
        assert!(
            text.contains("# TYPE paybridge_http_request_duration_seconds histogram"),
            "{text}"
        );
        assert!(text.contains(
            "paybridge_http_request_duration_seconds_bucket{method=\"GET\",route=\"/v1/orders/{out_trade_no}\",status=\"200\",le=\"0.004\"} 1"
        ), "{text}");
        assert!(text.contains(
            "paybridge_http_request_duration_seconds_bucket{method=\"GET\",route=\"/v1/orders/{out_trade_no}\",status=\"200\",le=\"0.002\"} 0"
        ), "{text}");
        assert!(
            text.contains(
                "paybridge_notifications_total{provider=\"wechat\\\"x\",channel=\"payment\",verdict=\"refused\"} 2"
            ),
            "{text}"
        );
        assert!(
            text.contains("# TYPE paybridge_db_commit_duration_seconds histogram"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE process_cpu_seconds_total counter"),
            "{text}"
        );
        assert!(text.contains("process_resident_memory_bytes "), "{text}");
    }
}
