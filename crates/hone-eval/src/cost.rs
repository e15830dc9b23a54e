//! Cost accounting: training cost, prediction cost per 1,000 examples, and cost per useful
//! (correct) answer, from measured seconds and hourly prices.

use serde::{Deserialize, Serialize};

/// Money figures in US dollars.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cost {
    /// `train_cpu_seconds/3600 · cpu_hour_usd + train_gpu_seconds/3600 · gpu_hour_usd`.
    pub train_usd: f64,
    /// `1000 · predict_seconds_per_example / 3600 · cpu_hour_usd`.
    pub per_1k_predictions_usd: f64,
    /// `(n_total · predict_seconds_per_example / 3600 · cpu_hour_usd) / n_correct`; see [`cost`].
    pub per_useful_answer_usd: f64,
}

/// Cost of a model: what training cost, what prediction costs per 1,000 examples, and what one
/// correct answer costs when predicting the evaluated set.
///
/// Prediction is priced at the CPU hourly rate (hone predicts on CPU). Training cost is **not**
/// amortised into `per_useful_answer_usd`, which is the prediction cost of the `n_total`
/// evaluated examples divided by `n_correct`.
///
/// Edge cases: `n_correct = 0` gives `per_useful_answer_usd = +∞` (no useful answer at any
/// price), even when the prediction cost is 0. Inputs are not validated: `NaN` or negative
/// seconds/prices flow through the arithmetic (a `NaN` input gives `NaN` in every field that uses
/// it), and `n_correct > n_total` is not rejected.
pub fn cost(
    train_cpu_seconds: f64,
    train_gpu_seconds: f64,
    predict_seconds_per_example: f64,
    n_correct: u64,
    n_total: u64,
    cpu_hour_usd: f64,
    gpu_hour_usd: f64,
) -> Cost {
    const SECONDS_PER_HOUR: f64 = 3600.0;
    let train_usd = train_cpu_seconds / SECONDS_PER_HOUR * cpu_hour_usd
        + train_gpu_seconds / SECONDS_PER_HOUR * gpu_hour_usd;
    let per_example_usd = predict_seconds_per_example / SECONDS_PER_HOUR * cpu_hour_usd;
    let evaluated_set_usd = per_example_usd * n_total as f64;
    let per_useful_answer_usd = if n_correct == 0 {
        f64::INFINITY
    } else {
        evaluated_set_usd / n_correct as f64
    };
    Cost {
        train_usd,
        per_1k_predictions_usd: per_example_usd * 1000.0,
        per_useful_answer_usd,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-12 * b.abs().max(1e-300)
    }

    #[test]
    fn arithmetic() {
        // train: 1 CPU-hour at $0.10 + 0.5 GPU-hour at $2.00 = $1.10
        // predict: 36 ms/example at $0.10/h -> 36 s per 1k = $0.001 per 1k
        // evaluated set: 1000 examples = $0.001, 800 correct -> $1.25e-6 per useful answer
        let c = cost(3600.0, 1800.0, 0.036, 800, 1000, 0.10, 2.00);
        assert!(close(c.train_usd, 1.1), "{c:?}");
        assert!(close(c.per_1k_predictions_usd, 0.001), "{c:?}");
        assert!(close(c.per_useful_answer_usd, 1.25e-6), "{c:?}");
    }

    #[test]
    fn edge_cases() {
        let c = cost(0.0, 0.0, 0.01, 0, 100, 1.0, 1.0);
        assert_eq!(c.per_useful_answer_usd, f64::INFINITY);
        let c = cost(0.0, 0.0, 0.0, 0, 0, 0.0, 0.0);
        assert_eq!(c.train_usd, 0.0);
        assert_eq!(c.per_useful_answer_usd, f64::INFINITY);
        let c = cost(f64::NAN, 0.0, 0.01, 5, 10, 1.0, 1.0);
        assert!(c.train_usd.is_nan());
        assert!(c.per_1k_predictions_usd.is_finite());
    }
}
