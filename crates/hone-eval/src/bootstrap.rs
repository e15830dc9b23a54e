//! Bootstrap uncertainty: percentile confidence intervals for one metric and paired intervals
//! (with a bootstrap p-value) for the difference between two systems scored on the same examples.
//!
//! Metrics are closures over an index multiset: `metric(&idx)` must score the examples
//! `idx[0], idx[1], …` (indices into `0..n`, repeats allowed). Resampling draws `n` indices
//! uniformly with replacement from the seeded [`Xoshiro256`]; the interval is the percentile
//! interval with linear interpolation between order statistics (numpy's default `percentile`).
//! Replicates where the metric is `NaN` are dropped.

use serde::{Deserialize, Serialize};

use crate::rng::Xoshiro256;

/// A point estimate with a confidence interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ci {
    /// The metric on the full data (identity index set `0..n`).
    pub estimate: f64,
    /// Lower percentile bound.
    pub lo: f64,
    /// Upper percentile bound.
    pub hi: f64,
}

/// Difference between two systems on the same examples.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Paired {
    /// `metric_b − metric_a` on the full data: positive means B scores higher.
    pub delta: f64,
    /// Lower percentile bound of the resampled delta.
    pub lo: f64,
    /// Upper percentile bound of the resampled delta.
    pub hi: f64,
    /// Two-sided bootstrap p-value; see [`paired_bootstrap`].
    pub p_value: f64,
}

/// Linear-interpolation quantile `q ∈ [0, 1]` of an ascending slice; `NaN` if empty.
pub fn quantile_sorted(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() || q.is_nan() {
        return f64::NAN;
    }
    let h = (sorted.len() - 1) as f64 * q.clamp(0.0, 1.0);
    let i = h.floor() as usize;
    let frac = h - i as f64;
    match (sorted.get(i), sorted.get(i + 1)) {
        (Some(&a), Some(&b)) if frac > 0.0 => a + frac * (b - a),
        (Some(&a), _) => a,
        _ => f64::NAN,
    }
}

/// Replicates of `f` over `reps` resamples of `0..n` (n ≥ 1), `NaN`s dropped, unsorted.
fn replicates(n: usize, reps: usize, seed: u64, f: &dyn Fn(&[usize]) -> f64) -> Vec<f64> {
    let mut rng = Xoshiro256::new(seed);
    let mut idx = vec![0usize; n];
    let mut out = Vec::with_capacity(reps.min(1 << 20));
    for _ in 0..reps {
        for slot in idx.iter_mut() {
            // n fits in u64 and the draw is < n, so it fits back in usize.
            *slot = rng.below(n as u64) as usize;
        }
        let v = f(&idx);
        if !v.is_nan() {
            out.push(v);
        }
    }
    out
}

/// `(lo, hi)` percentile bounds at `level`, or NaNs if the level is not in (0, 1) or no replicate.
fn interval(mut values: Vec<f64>, level: f64) -> (f64, f64) {
    if !(level > 0.0 && level < 1.0) {
        return (f64::NAN, f64::NAN);
    }
    values.sort_unstable_by(f64::total_cmp);
    let tail = (1.0 - level) / 2.0;
    (
        quantile_sorted(&values, tail),
        quantile_sorted(&values, 1.0 - tail),
    )
}

/// Percentile bootstrap confidence interval of `metric` over `n` examples.
///
/// `estimate` is `metric(&[0, 1, …, n−1])`; `lo`/`hi` are the `(1−level)/2` and `(1+level)/2`
/// quantiles of `reps` resampled values. `level` is e.g. `0.95`.
///
/// Returns all-`NaN` when `n` is 0 (the metric is not called); `lo`/`hi` are `NaN` when `reps` is
/// 0, `level` is not strictly between 0 and 1, or every replicate is `NaN`.
pub fn bootstrap_ci(
    n: usize,
    metric: &dyn Fn(&[usize]) -> f64,
    reps: usize,
    seed: u64,
    level: f64,
) -> Ci {
    if n == 0 {
        return Ci {
            estimate: f64::NAN,
            lo: f64::NAN,
            hi: f64::NAN,
        };
    }
    let identity: Vec<usize> = (0..n).collect();
    let estimate = metric(&identity);
    let (lo, hi) = interval(replicates(n, reps, seed, metric), level);
    Ci { estimate, lo, hi }
}

/// Paired bootstrap of `metric_b − metric_a`: both metrics see the same resampled indices.
///
/// `delta` is the difference on the full data, `lo`/`hi` the percentile interval of the
/// resampled differences (as in [`bootstrap_ci`]).
///
/// `p_value` (two-sided): with observed `delta ≠ 0`, twice the share of resampled differences that
/// are **zero or of the opposite sign** to `delta`, capped at 1. Counting ties (0) against the
/// observed sign is a deliberate, conservative choice: with discrete metrics such as accuracy many
/// resamples tie exactly. An observed `delta` of exactly 0 gives `p_value = 1`.
///
/// Returns all-`NaN` when `n` is 0 (metrics not called); `p_value` is `NaN` when `delta` is `NaN`
/// or no replicate is usable; `lo`/`hi` are `NaN` as in [`bootstrap_ci`].
pub fn paired_bootstrap(
    n: usize,
    metric_a: &dyn Fn(&[usize]) -> f64,
    metric_b: &dyn Fn(&[usize]) -> f64,
    reps: usize,
    seed: u64,
    level: f64,
) -> Paired {
    if n == 0 {
        return Paired {
            delta: f64::NAN,
            lo: f64::NAN,
            hi: f64::NAN,
            p_value: f64::NAN,
        };
    }
    let identity: Vec<usize> = (0..n).collect();
    let delta = metric_b(&identity) - metric_a(&identity);
    let diff = |idx: &[usize]| metric_b(idx) - metric_a(idx);
    let deltas = replicates(n, reps, seed, &diff);
    let p_value = if delta.is_nan() || deltas.is_empty() {
        f64::NAN
    } else if delta == 0.0 {
        1.0
    } else {
        let against = deltas
            .iter()
            .filter(|&&d| d * delta.signum() <= 0.0)
            .count();
        (2.0 * against as f64 / deltas.len() as f64).min(1.0)
    };
    let (lo, hi) = interval(deltas, level);
    Paired {
        delta,
        lo,
        hi,
        p_value,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::significance::{Verdict, mcnemar, verdict};

    /// Mean of `data` over `idx`, NaN for no index.
    fn mean_over(data: &[f64]) -> impl Fn(&[usize]) -> f64 + '_ {
        move |idx: &[usize]| {
            if idx.is_empty() {
                return f64::NAN;
            }
            idx.iter().map(|&i| data[i]).sum::<f64>() / idx.len() as f64
        }
    }

    /// 0/1 correctness pattern with roughly `rate` share of ones, deterministic.
    fn pattern(n: usize, rate: f64, seed: u64) -> Vec<f64> {
        let mut r = Xoshiro256::new(seed);
        (0..n)
            .map(|_| {
                if (r.next_u64() >> 11) as f64 / (1u64 << 53) as f64 <= rate {
                    1.0
                } else {
                    0.0
                }
            })
            .collect()
    }

    #[test]
    fn quantile_matches_numpy_linear() {
        let xs: Vec<f64> = (1..=10).map(f64::from).collect();
        // numpy.percentile(range(1, 11), [0, 2.5, 50, 97.5, 100]) = 1, 1.225, 5.5, 9.775, 10
        assert_eq!(quantile_sorted(&xs, 0.0), 1.0);
        assert!((quantile_sorted(&xs, 0.025) - 1.225).abs() < 1e-12);
        assert!((quantile_sorted(&xs, 0.5) - 5.5).abs() < 1e-12);
        assert!((quantile_sorted(&xs, 0.975) - 9.775).abs() < 1e-12);
        assert_eq!(quantile_sorted(&xs, 1.0), 10.0);
        assert!(quantile_sorted(&[], 0.5).is_nan());
    }

    #[test]
    fn ci_contains_estimate_and_narrows_with_n() {
        let small = pattern(50, 0.7, 1);
        let large = pattern(2000, 0.7, 1);
        let a = bootstrap_ci(small.len(), &mean_over(&small), 1000, 42, 0.95);
        let b = bootstrap_ci(large.len(), &mean_over(&large), 1000, 42, 0.95);
        for ci in [&a, &b] {
            assert!(ci.lo <= ci.estimate && ci.estimate <= ci.hi, "{ci:?}");
            assert!(ci.lo < ci.hi, "{ci:?}");
        }
        // width scales like 1/sqrt(n): sqrt(2000/50) ≈ 6.3×; demand at least 4×.
        assert!((a.hi - a.lo) > 4.0 * (b.hi - b.lo), "{a:?} {b:?}");
        // the large-n interval is near the binomial normal approximation ±1.96·sqrt(p(1−p)/n)
        let p = b.estimate;
        let half = 1.96 * (p * (1.0 - p) / 2000.0).sqrt();
        assert!(((b.hi - b.lo) / 2.0 - half).abs() < 0.2 * half, "{b:?}");
    }

    #[test]
    fn deterministic_for_a_seed() {
        let d = pattern(100, 0.6, 3);
        let m = mean_over(&d);
        let x = bootstrap_ci(d.len(), &m, 500, 9, 0.9);
        let y = bootstrap_ci(d.len(), &m, 500, 9, 0.9);
        assert_eq!(x, y);
        let z = bootstrap_ci(d.len(), &m, 500, 10, 0.9);
        assert_ne!((x.lo, x.hi), (z.lo, z.hi));
        let other = pattern(100, 0.65, 4);
        let mo = mean_over(&other);
        assert_eq!(
            paired_bootstrap(100, &m, &mo, 300, 5, 0.95),
            paired_bootstrap(100, &m, &mo, 300, 5, 0.95)
        );
    }

    #[test]
    fn identical_predictors_are_indistinguishable() {
        let d = pattern(300, 0.8, 11);
        let m = mean_over(&d);
        let p = paired_bootstrap(d.len(), &m, &m, 1000, 1, 0.95);
        assert_eq!((p.delta, p.lo, p.hi, p.p_value), (0.0, 0.0, 0.0, 1.0));
        let ok: Vec<bool> = d.iter().map(|&x| x > 0.5).collect();
        let mc = mcnemar(&ok, &ok);
        assert_eq!(verdict(&p, Some(&mc), 0.05), Verdict::Indistinguishable);
        assert_eq!(verdict(&p, None, 0.05), Verdict::Indistinguishable);
    }

    #[test]
    fn clearly_better_and_worse_predictors() {
        let n = 400;
        let weak = pattern(n, 0.55, 21);
        // B fixes most of A's errors and keeps its hits.
        let strong: Vec<f64> = weak
            .iter()
            .enumerate()
            .map(|(i, &x)| if i % 10 == 0 { x } else { 1.0 })
            .collect();
        let (ma, mb) = (mean_over(&weak), mean_over(&strong));
        let better = paired_bootstrap(n, &ma, &mb, 2000, 7, 0.95);
        assert!(better.delta > 0.3 && better.lo > 0.0, "{better:?}");
        assert!(better.p_value < 0.01, "{better:?}");
        let (ca, cb): (Vec<bool>, Vec<bool>) = (
            weak.iter().map(|&x| x > 0.5).collect(),
            strong.iter().map(|&x| x > 0.5).collect(),
        );
        let mc = mcnemar(&ca, &cb);
        assert_eq!(
            verdict(&better, Some(&mc), 0.05),
            Verdict::SignificantlyBetter
        );
        let worse = paired_bootstrap(n, &mb, &ma, 2000, 7, 0.95);
        assert!(worse.hi < 0.0, "{worse:?}");
        let mc_rev = mcnemar(&cb, &ca);
        assert_eq!(
            verdict(&worse, Some(&mc_rev), 0.05),
            Verdict::SignificantlyWorse
        );
        // McNemar pointing the other way vetoes the verdict.
        assert_eq!(
            verdict(&better, Some(&mc_rev), 0.05),
            Verdict::Indistinguishable
        );
    }

    #[test]
    fn empty_and_degenerate_inputs() {
        let nan = |_: &[usize]| f64::NAN;
        let ci = bootstrap_ci(0, &nan, 100, 1, 0.95);
        assert!(ci.estimate.is_nan() && ci.lo.is_nan() && ci.hi.is_nan());
        let one = |_: &[usize]| 1.0;
        let ci = bootstrap_ci(5, &one, 0, 1, 0.95);
        assert_eq!(ci.estimate, 1.0);
        assert!(ci.lo.is_nan() && ci.hi.is_nan());
        let ci = bootstrap_ci(5, &one, 10, 1, 1.5);
        assert!(ci.lo.is_nan());
        let ci = bootstrap_ci(5, &nan, 10, 1, 0.95);
        assert!(ci.estimate.is_nan() && ci.lo.is_nan());
        let p = paired_bootstrap(0, &one, &one, 10, 1, 0.95);
        assert!(p.delta.is_nan() && p.p_value.is_nan());
        let p = paired_bootstrap(3, &one, &nan, 10, 1, 0.95);
        assert!(p.delta.is_nan() && p.p_value.is_nan() && p.lo.is_nan());
        assert_eq!(verdict(&p, None, 0.05), Verdict::Indistinguishable);
    }
}
