//! `/metrics` in the Prometheus text format: requests by route and status, a latency histogram per
//! route, predictions by label, prediction logs that could not be committed, and the served run's
//! drift statistics per feature (recomputed every `[monitor] refresh_seconds`).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

/// Latency bucket upper bounds, in seconds.
const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    n: u64,
    sum: f64,
}

#[derive(Default)]
struct Inner {
    requests: BTreeMap<(String, u16), u64>,
    latency: BTreeMap<String, Histogram>,
    labels: BTreeMap<String, u64>,
    /// The latest drift check: `None` before the first one or without answers.
    drift: Option<Drift>,
    drift_failures: u64,
}

/// One drift check, as `/metrics` shows it.
struct Drift {
    /// Unix seconds of the check.
    at: i64,
    n_live: usize,
    features: Vec<FeatureGauge>,
}

/// A per-feature gauge: name, help text, and how to read its value.
type Gauge = (&'static str, &'static str, fn(&FeatureGauge) -> String);

/// One feature of a drift check.
struct FeatureGauge {
    feature: String,
    psi: f64,
    p_value: f64,
    n_live: usize,
    alarm: bool,
}

#[derive(Default)]
pub(crate) struct Metrics {
    inner: Mutex<Inner>,
}

/// The route a path is counted under: known routes by name, everything else as `other` (so that
/// probing random paths cannot grow the metrics without bound).
pub(crate) fn route_of(path: &str) -> &'static str {
    match path {
        "/v1/predict" => "/v1/predict",
        "/v1/feedback" => "/v1/feedback",
        "/v1/chat/completions" => "/v1/chat/completions",
        "/v1/completions" => "/v1/completions",
        "/metrics" => "/metrics",
        "/healthz" => "/healthz",
        "/readyz" => "/readyz",
        _ => "other",
    }
}

impl Metrics {
    pub fn request(&self, route: &str, status: u16, seconds: f64) {
        let Ok(mut m) = self.inner.lock() else {
            return;
        };
        *m.requests.entry((route.to_string(), status)).or_default() += 1;
        let h = m.latency.entry(route.to_string()).or_default();
        h.n += 1;
        h.sum += seconds;
        for (i, b) in BUCKETS.iter().enumerate() {
            if seconds <= *b {
                h.counts[i] += 1;
            }
        }
    }

    pub fn predicted<'a>(&self, labels: impl Iterator<Item = &'a str>) {
        let Ok(mut m) = self.inner.lock() else {
            return;
        };
        for l in labels {
            *m.labels.entry(l.to_string()).or_default() += 1;
        }
    }

    /// Keep the latest drift check (`None`: no answers to compare yet).
    pub fn drift(&self, report: Option<&hone_train::drift::Report>) {
        let Ok(mut m) = self.inner.lock() else {
            return;
        };
        m.drift = report.map(|r| Drift {
            at: chrono::Utc::now().timestamp(),
            n_live: r.n_live,
            features: r
                .features
                .iter()
                .map(|f| FeatureGauge {
                    feature: f.feature.clone(),
                    psi: f.shift.psi,
                    p_value: f.shift.p_value,
                    n_live: f.shift.n_live,
                    alarm: f.alarm,
                })
                .collect(),
        });
    }

    pub fn drift_failed(&self) {
        if let Ok(mut m) = self.inner.lock() {
            m.drift_failures += 1;
        }
    }

    /// The exposition text.
    pub fn render(&self, run: &str, model: &str, queued: u64) -> String {
        let mut out = String::new();
        let Ok(m) = self.inner.lock() else {
            return out;
        };
        let esc = |s: &str| {
            s.replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n")
        };
        let _ = writeln!(out, "# HELP hone_served_run_info The run being served.");
        let _ = writeln!(out, "# TYPE hone_served_run_info gauge");
        let _ = writeln!(
            out,
            "hone_served_run_info{{run=\"{}\",model=\"{}\"}} 1",
            esc(run),
            esc(model)
        );
        let _ = writeln!(
            out,
            "# HELP hone_requests_total Requests answered, by route and status."
        );
        let _ = writeln!(out, "# TYPE hone_requests_total counter");
        for ((route, status), n) in &m.requests {
            let _ = writeln!(
                out,
                "hone_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}"
            );
        }
        let _ = writeln!(out, "# HELP hone_request_seconds Time to answer, by route.");
        let _ = writeln!(out, "# TYPE hone_request_seconds histogram");
        for (route, h) in &m.latency {
            for (b, c) in BUCKETS.iter().zip(h.counts) {
                let _ = writeln!(
                    out,
                    "hone_request_seconds_bucket{{route=\"{route}\",le=\"{b}\"}} {c}"
                );
            }
            let _ = writeln!(
                out,
                "hone_request_seconds_bucket{{route=\"{route}\",le=\"+Inf\"}} {}",
                h.n
            );
            let _ = writeln!(
                out,
                "hone_request_seconds_sum{{route=\"{route}\"}} {}",
                h.sum
            );
            let _ = writeln!(
                out,
                "hone_request_seconds_count{{route=\"{route}\"}} {}",
                h.n
            );
        }
        let _ = writeln!(
            out,
            "# HELP hone_predictions_total Answers given, by label."
        );
        let _ = writeln!(out, "# TYPE hone_predictions_total counter");
        for (label, n) in &m.labels {
            let _ = writeln!(
                out,
                "hone_predictions_total{{label=\"{}\"}} {n}",
                esc(label)
            );
        }
        let _ = writeln!(
            out,
            "# HELP hone_prediction_logs_lost_total Prediction logs the store could not commit."
        );
        let _ = writeln!(out, "# TYPE hone_prediction_logs_lost_total counter");
        let _ = writeln!(
            out,
            "hone_prediction_logs_lost_total {}",
            crate::log::LOST.load(std::sync::atomic::Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP hone_prediction_log_queue_bytes Answers waiting to be written to the store (503 past the limit)."
        );
        let _ = writeln!(out, "# TYPE hone_prediction_log_queue_bytes gauge");
        let _ = writeln!(out, "hone_prediction_log_queue_bytes {queued}");
        let _ = writeln!(
            out,
            "# HELP hone_drift_check_failures_total Drift checks that failed (the store could not be read)."
        );
        let _ = writeln!(out, "# TYPE hone_drift_check_failures_total counter");
        let _ = writeln!(out, "hone_drift_check_failures_total {}", m.drift_failures);
        let Some(d) = &m.drift else {
            return out;
        };
        let _ = writeln!(
            out,
            "# HELP hone_drift_checked_timestamp_seconds When the drift statistics below were computed."
        );
        let _ = writeln!(out, "# TYPE hone_drift_checked_timestamp_seconds gauge");
        let _ = writeln!(out, "hone_drift_checked_timestamp_seconds {}", d.at);
        let _ = writeln!(
            out,
            "# HELP hone_drift_window_answers Latest answers compared with the test set ([monitor] window)."
        );
        let _ = writeln!(out, "# TYPE hone_drift_window_answers gauge");
        let _ = writeln!(out, "hone_drift_window_answers {}", d.n_live);
        let gauges: [Gauge; 4] = [
            (
                "hone_drift_psi",
                "Population stability index of the feature, latest answers against the test set.",
                |f| f.psi.to_string(),
            ),
            (
                "hone_drift_p_value",
                "p-value of the feature's test (chi-square or Kolmogorov-Smirnov).",
                |f| f.p_value.to_string(),
            ),
            (
                "hone_drift_live_values",
                "Live values of the feature in the window.",
                |f| f.n_live.to_string(),
            ),
            (
                "hone_drift_alarm",
                "1 when the feature alarms under [monitor] (enough answers, significant, PSI over the floor).",
                |f| u8::from(f.alarm).to_string(),
            ),
        ];
        for (name, help, value) in gauges {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} gauge");
            for f in &d.features {
                let _ = writeln!(
                    out,
                    "{name}{{feature=\"{}\"}} {}",
                    esc(&f.feature),
                    value(f)
                );
            }
        }
        out
    }
}
