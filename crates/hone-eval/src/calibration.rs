//! Calibration: expected calibration error (ECE) and the reliability diagram over equal-width
//! confidence bins.

use serde::{Deserialize, Serialize};

/// One equal-width confidence bin of a reliability diagram.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReliabilityBin {
    /// Lower edge (inclusive).
    pub lo: f64,
    /// Upper edge (exclusive, except the last bin, which includes 1.0).
    pub hi: f64,
    /// Mean confidence of the samples in the bin; 0 when `count` is 0.
    pub mean_confidence: f64,
    /// Share of correct samples in the bin; 0 when `count` is 0.
    pub accuracy: f64,
    /// Number of samples in the bin.
    pub count: u64,
}

/// Expected calibration error and the reliability bins.
///
/// Bin `i` of `n_bins` covers `[i/n_bins, (i+1)/n_bins)`; a sample goes to bin
/// `min(floor(confidence × n_bins), n_bins − 1)`, so 1.0 lands in the last bin. Confidences
/// outside `[0, 1]` are clamped into it; `NaN` confidences are skipped.
/// `ECE = Σ_bins (count / N) · |accuracy − mean_confidence|` over the N samples kept.
///
/// All `n_bins` bins are returned, empty ones included. Returns `(NaN, vec![])` when the slices
/// differ in length, `n_bins` is 0, or `n_bins` bins could not be addressed in memory; `(NaN, bins)` with all counts 0 when no sample is kept
/// (e.g. empty input).
pub fn calibration(
    confidence: &[f64],
    correct: &[bool],
    n_bins: usize,
) -> (f64, Vec<ReliabilityBin>) {
    let addressable = n_bins
        .checked_mul(std::mem::size_of::<ReliabilityBin>())
        .is_some_and(|b| b <= isize::MAX as usize);
    if confidence.len() != correct.len() || n_bins == 0 || !addressable {
        return (f64::NAN, Vec::new());
    }
    // (sum of confidence, number correct, count) per bin
    let mut acc = vec![(0.0f64, 0u64, 0u64); n_bins];
    for (&c, &ok) in confidence.iter().zip(correct) {
        if c.is_nan() {
            continue;
        }
        let c = c.clamp(0.0, 1.0);
        // `as usize` saturates; c ∈ [0, 1] so the product is finite and non-negative.
        let i = ((c * n_bins as f64).floor() as usize).min(n_bins - 1);
        let slot = &mut acc[i];
        slot.0 += c;
        slot.1 += u64::from(ok);
        slot.2 += 1;
    }
    let total: u64 = acc.iter().map(|a| a.2).sum();
    let mut ece = 0.0;
    let bins = acc
        .iter()
        .enumerate()
        .map(|(i, &(sum_conf, n_ok, count))| {
            let (mean_confidence, accuracy) = if count == 0 {
                (0.0, 0.0)
            } else {
                (sum_conf / count as f64, n_ok as f64 / count as f64)
            };
            if count > 0 {
                ece += count as f64 / total as f64 * (accuracy - mean_confidence).abs();
            }
            ReliabilityBin {
                lo: i as f64 / n_bins as f64,
                hi: (i + 1) as f64 / n_bins as f64,
                mean_confidence,
                accuracy,
                count,
            }
        })
        .collect();
    if total == 0 {
        ece = f64::NAN;
    }
    (ece, bins)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ece_hand_example() {
        // bin [0, .5): conf .1 .2, both wrong  -> mean .15,  acc 0,   gap .15,   weight 2/6
        // bin [.5, 1]: conf .6 .7 .9 .95, 3/4 right -> mean .7875, acc .75, gap .0375, weight 4/6
        // ECE = (2·.15 + 4·.0375) / 6 = .075
        let conf = [0.1, 0.2, 0.6, 0.7, 0.9, 0.95];
        let ok = [false, false, true, false, true, true];
        let (ece, bins) = calibration(&conf, &ok, 2);
        assert!((ece - 0.075).abs() < 1e-12, "{ece}");
        assert_eq!(bins.len(), 2);
        assert_eq!((bins[0].lo, bins[0].hi, bins[0].count), (0.0, 0.5, 2));
        assert!((bins[0].mean_confidence - 0.15).abs() < 1e-12);
        assert_eq!(bins[0].accuracy, 0.0);
        assert_eq!((bins[1].lo, bins[1].hi, bins[1].count), (0.5, 1.0, 4));
        assert!((bins[1].mean_confidence - 0.7875).abs() < 1e-12);
        assert_eq!(bins[1].accuracy, 0.75);
    }

    #[test]
    fn edges_empty_bins_and_clamping() {
        // 1.0 and 7.0 (clamped) go to the last bin, -1 (clamped) to the first; NaN is skipped.
        let (ece, bins) = calibration(&[1.0, 7.0, -1.0, f64::NAN], &[true, true, false, true], 4);
        assert_eq!(
            bins.iter().map(|b| b.count).collect::<Vec<_>>(),
            vec![1, 0, 0, 2]
        );
        assert_eq!(bins[1].mean_confidence, 0.0);
        assert!(ece.abs() < 1e-12); // perfectly calibrated
    }

    #[test]
    fn empty_and_invalid_inputs() {
        let (ece, bins) = calibration(&[], &[], 3);
        assert!(ece.is_nan());
        assert_eq!(bins.len(), 3);
        assert!(bins.iter().all(|b| b.count == 0));
        let (ece, bins) = calibration(&[0.5], &[], 3);
        assert!(ece.is_nan() && bins.is_empty());
        let (ece, bins) = calibration(&[0.5], &[true], 0);
        assert!(ece.is_nan() && bins.is_empty());
        let (ece, bins) = calibration(&[0.5], &[true], usize::MAX);
        assert!(ece.is_nan() && bins.is_empty());
    }
}
