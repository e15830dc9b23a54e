//! `/metrics` in the Prometheus text format: requests by route and status, a latency histogram per
//! route, predictions by label, and prediction logs that could not be committed.

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

    /// The exposition text.
    pub fn render(&self, run: &str, model: &str) -> String {
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
        out
    }
}
