//! A small counter registry rendered as Prometheus text at `/metrics`.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

/// Counters keyed by name and sorted label pairs.
#[derive(Default)]
pub struct Metrics {
    counters: Mutex<BTreeMap<(String, String), u64>>,
}

impl Metrics {
    /// Add one to a counter. Label values must not be secrets or payer data.
    pub fn inc(&self, name: &str, labels: &[(&str, &str)]) {
        let labels = labels
            .iter()
            .map(|(k, v)| format!("{k}=\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\"")))
            .collect::<Vec<_>>()
            .join(",");
        if let Ok(mut c) = self.counters.lock() {
            *c.entry((name.to_owned(), labels)).or_insert(0) += 1;
        }
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let Ok(counters) = self.counters.lock() else {
            return out;
        };
        let mut last = "";
        for ((name, labels), value) in counters.iter() {
            if name != last {
                let _ = writeln!(out, "# TYPE {name} counter");
                last = name;
            }
            if labels.is_empty() {
                let _ = writeln!(out, "{name} {value}");
            } else {
                let _ = writeln!(out, "{name}{{{labels}}} {value}");
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_render_as_prometheus_text() {
        let m = Metrics::default();
        m.inc("paybridge_x_total", &[("provider", "a\"b")]);
        m.inc("paybridge_x_total", &[("provider", "a\"b")]);
        m.inc("paybridge_y_total", &[]);
        assert_eq!(
            m.render(),
            "# TYPE paybridge_x_total counter\npaybridge_x_total{provider=\"a\\\"b\"} 2\n# TYPE paybridge_y_total counter\npaybridge_y_total 1\n"
        );
    }
}
