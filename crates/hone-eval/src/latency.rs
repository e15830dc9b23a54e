//! Latency summaries: p50/p95/p99 (linear interpolation between order statistics), mean and max
//! of per-example timings.

use serde::{Deserialize, Serialize};

use crate::bootstrap::quantile_sorted;

/// Summary of latency samples (same unit as the input, microseconds by convention).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    /// Median.
    pub p50: f64,
    /// 95th percentile.
    pub p95: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Arithmetic mean.
    pub mean: f64,
    /// Largest sample.
    pub max: f64,
}

/// Percentiles by linear interpolation between order statistics (numpy's default
/// `percentile`, Hyndman–Fan type 7): the `q` quantile of the `m` sorted samples is at rank
/// `(m − 1)·q`, interpolated between its neighbours.
///
/// Sorts `samples_us` in place (ascending, `NaN`s moved to the end). `NaN` samples are ignored.
/// Returns all fields `NaN` when no non-`NaN` sample remains (e.g. empty input).
pub fn percentiles(samples_us: &mut [f64]) -> Percentiles {
    samples_us.sort_unstable_by(|a, b| a.is_nan().cmp(&b.is_nan()).then(a.total_cmp(b)));
    let kept = samples_us.iter().take_while(|x| !x.is_nan()).count();
    let xs = &samples_us[..kept];
    let Some(&max) = xs.last() else {
        return Percentiles {
            p50: f64::NAN,
            p95: f64::NAN,
            p99: f64::NAN,
            mean: f64::NAN,
            max: f64::NAN,
        };
    };
    Percentiles {
        p50: quantile_sorted(xs, 0.50),
        p95: quantile_sorted(xs, 0.95),
        p99: quantile_sorted(xs, 0.99),
        mean: xs.iter().sum::<f64>() / xs.len() as f64,
        max,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_to_hundred() {
        // numpy.percentile(range(1, 101), [50, 95, 99]) = 50.5, 95.05, 99.01
        let mut xs: Vec<f64> = (1..=100).rev().map(f64::from).collect();
        xs.swap(3, 77);
        let p = percentiles(&mut xs);
        assert!((p.p50 - 50.5).abs() < 1e-12);
        assert!((p.p95 - 95.05).abs() < 1e-9);
        assert!((p.p99 - 99.01).abs() < 1e-9);
        assert!((p.mean - 50.5).abs() < 1e-12);
        assert_eq!(p.max, 100.0);
        assert_eq!(xs[0], 1.0); // sorted in place
    }

    #[test]
    fn small_sets_and_nan() {
        let mut xs = [f64::NAN, 30.0, 10.0, f64::NAN, 20.0];
        let p = percentiles(&mut xs);
        // sorted kept = [10, 20, 30]: p50 = 20, p95 at rank 1.9 = 29, p99 at rank 1.98 = 29.8
        assert_eq!(p.p50, 20.0);
        assert!((p.p95 - 29.0).abs() < 1e-12);
        assert!((p.p99 - 29.8).abs() < 1e-12);
        assert_eq!((p.mean, p.max), (20.0, 30.0));
        assert!(xs[3].is_nan() && xs[4].is_nan());
        let p = percentiles(&mut [7.0]);
        assert_eq!(
            (p.p50, p.p95, p.p99, p.mean, p.max),
            (7.0, 7.0, 7.0, 7.0, 7.0)
        );
    }

    #[test]
    fn empty_input() {
        let p = percentiles(&mut []);
        assert!(p.p50.is_nan() && p.p95.is_nan() && p.p99.is_nan());
        assert!(p.mean.is_nan() && p.max.is_nan());
        let p = percentiles(&mut [f64::NAN]);
        assert!(p.max.is_nan());
    }
}
