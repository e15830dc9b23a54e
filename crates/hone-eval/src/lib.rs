//! hone-eval: the evaluation math of hone — classification metrics, calibration, ranking metrics,
//! bootstrap confidence intervals, McNemar's test, significance verdicts, latency percentiles and
//! cost. Pure functions over slices: no I/O, no global state, std only (plus `serde` derives).
//!
//! # Conventions
//! * No function panics on any input. Empty or mismatched-length inputs return a documented
//!   value: `f64::NAN` for an undefined scalar, an empty `Vec` for an undefined table.
//! * `NaN` (and `inf`) in a result struct serialises to JSON `null` with `serde_json`, which does
//!   not deserialise back into `f64`; callers that persist results should check
//!   [`f64::is_finite`] first or use a format that keeps non-finite floats.
//! * Randomness (bootstrap) comes only from the seeded [`rng::Xoshiro256`]; equal seeds give equal
//!   results on every platform.

pub mod agreement;
pub mod binary;
pub mod bootstrap;
pub mod calibration;
pub mod classification;
pub mod cost;
pub mod drift;
pub mod latency;
pub mod rng;
pub mod significance;
pub mod special;
pub mod text;

pub use agreement::cohen_kappa;
pub use binary::{average_precision, best_threshold_f1};
pub use bootstrap::{Ci, Paired, bootstrap_ci, paired_bootstrap};
pub use calibration::{ReliabilityBin, calibration};
pub use classification::{ClassMetrics, accuracy, confusion, macro_f1, per_class};
pub use cost::{Cost, cost};
pub use latency::{Percentiles, percentiles};
pub use significance::{McNemar, Verdict, mcnemar, verdict};
pub use special::{chi2_sf_1df, erfc};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_public_function_accepts_empty_input() {
        assert!(accuracy(&[], &[]).is_nan());
        assert!(per_class(&[], &[], 0).is_empty());
        assert!(macro_f1(&[], &[], 0).is_nan());
        assert!(confusion(&[], &[], 0).is_empty());
        assert!(calibration(&[], &[], 10).0.is_nan());
        assert!(average_precision(&[], &[]).is_nan());
        assert!(best_threshold_f1(&[], &[]).0.is_nan());
        let m = |_: &[usize]| 0.0;
        assert!(bootstrap_ci(0, &m, 10, 0, 0.95).estimate.is_nan());
        assert!(paired_bootstrap(0, &m, &m, 10, 0, 0.95).delta.is_nan());
        let mc = mcnemar(&[], &[]);
        assert_eq!(mc.p_value, 1.0);
        let p = paired_bootstrap(0, &m, &m, 10, 0, 0.95);
        assert_eq!(verdict(&p, Some(&mc), 0.05), Verdict::Indistinguishable);
        assert!(percentiles(&mut []).p50.is_nan());
        assert_eq!(cost(0.0, 0.0, 0.0, 0, 0, 0.0, 0.0).train_usd, 0.0);
    }

    #[test]
    fn result_structs_round_trip_through_json() {
        let ci = Ci {
            estimate: 0.5,
            lo: 0.25,
            hi: 0.75,
        };
        let s = serde_json::to_string(&ci).unwrap();
        assert_eq!(s, r#"{"estimate":0.5,"lo":0.25,"hi":0.75}"#);
        assert_eq!(serde_json::from_str::<Ci>(&s).unwrap(), ci);
        let v: Verdict = serde_json::from_str("\"SignificantlyBetter\"").unwrap();
        assert_eq!(v, Verdict::SignificantlyBetter);
        let (_, bins) = calibration(&[0.2, 0.9], &[false, true], 2);
        let s = serde_json::to_string(&bins).unwrap();
        assert_eq!(
            serde_json::from_str::<Vec<ReliabilityBin>>(&s).unwrap(),
            bins
        );
        let m = mcnemar(&[true, false], &[false, false]);
        let s = serde_json::to_string(&m).unwrap();
        assert_eq!(serde_json::from_str::<McNemar>(&s).unwrap(), m);
    }
}
