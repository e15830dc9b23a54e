//! Multi-class classification metrics over class-index labels: accuracy, per-class
//! precision/recall/F1, macro-F1 and the confusion matrix.
//!
//! Labels are `u32` class indices in `0..n_classes`. A pair whose true label is in range but whose
//! prediction is not counts as a false negative of the true class (and as no class's false
//! positive); a pair whose true label is out of range counts only as a false positive of the
//! predicted class (if that is in range). [`confusion`] drops every pair with an out-of-range label.

use serde::{Deserialize, Serialize};

/// Precision, recall, F1 and support of one class.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassMetrics {
    /// TP / (TP + FP); **0** when the class was never predicted.
    pub precision: f64,
    /// TP / (TP + FN); **0** when the class has no true examples (support 0).
    pub recall: f64,
    /// Harmonic mean of precision and recall; **0** when both are 0.
    pub f1: f64,
    /// Number of examples whose true label is this class.
    pub support: u64,
}

/// Share of positions where `pred` equals `y`.
///
/// Returns `NaN` when the slices are empty or differ in length.
pub fn accuracy(y: &[u32], pred: &[u32]) -> f64 {
    if y.is_empty() || y.len() != pred.len() {
        return f64::NAN;
    }
    let hits = y.iter().zip(pred).filter(|(a, b)| a == b).count();
    hits as f64 / y.len() as f64
}

/// Per-class (tp, fp, fn) counts for classes `0..min(n_classes, largest label + 1)` (classes past
/// the largest label seen have all-zero counts, so they need no storage); `None` on mismatched
/// lengths.
fn counts(y: &[u32], pred: &[u32], n_classes: usize) -> Option<Vec<[u64; 3]>> {
    if y.len() != pred.len() {
        return None;
    }
    let largest = y.iter().chain(pred).copied().max();
    let used = largest.map_or(0, |m| (m as usize).saturating_add(1).min(n_classes));
    let mut c = vec![[0u64; 3]; used];
    for (&t, &p) in y.iter().zip(pred) {
        let (t, p) = (t as usize, p as usize);
        if t == p {
            if let Some(row) = c.get_mut(t) {
                row[0] += 1;
            }
        } else {
            if let Some(row) = c.get_mut(p) {
                row[1] += 1;
            }
            if let Some(row) = c.get_mut(t) {
                row[2] += 1;
            }
        }
    }
    Some(c)
}

fn ratio_or_zero(num: u64, den: u64) -> f64 {
    if den == 0 {
        0.0
    } else {
        num as f64 / den as f64
    }
}

fn metrics_of(tp: u64, fp: u64, fn_: u64) -> ClassMetrics {
    let precision = ratio_or_zero(tp, tp + fp);
    let recall = ratio_or_zero(tp, tp + fn_);
    let f1 = if precision + recall > 0.0 {
        2.0 * precision * recall / (precision + recall)
    } else {
        0.0
    };
    ClassMetrics {
        precision,
        recall,
        f1,
        support: tp + fn_,
    }
}

/// Metrics for each class `0..n_classes`, in class order.
///
/// A class with no predictions gets precision 0; a class with no support gets recall 0 (the
/// scikit-learn `zero_division=0` convention); F1 is 0 when precision and recall are both 0.
/// Returns an empty `Vec` when the slices differ in length or `n_classes` entries could not be
/// addressed in memory (`n_classes × size_of::<ClassMetrics>() > isize::MAX`); empty slices give
/// `n_classes` all-zero entries.
pub fn per_class(y: &[u32], pred: &[u32], n_classes: usize) -> Vec<ClassMetrics> {
    if !fits_in_memory(n_classes, std::mem::size_of::<ClassMetrics>()) {
        return Vec::new();
    }
    let Some(c) = counts(y, pred, n_classes) else {
        return Vec::new();
    };
    let mut out: Vec<ClassMetrics> = c
        .iter()
        .map(|&[tp, fp, fn_]| metrics_of(tp, fp, fn_))
        .collect();
    out.resize(n_classes, metrics_of(0, 0, 0));
    out
}

/// Whether `n` items of `size` bytes stay within the allocator's `isize::MAX` limit.
fn fits_in_memory(n: usize, size: usize) -> bool {
    n.checked_mul(size)
        .is_some_and(|b| b <= isize::MAX as usize)
}

/// Unweighted mean F1 over the classes in `0..n_classes` that appear in `y` **or** `pred` (as
/// scikit-learn's `f1_score(average="macro")` without `labels=`): a class absent from both is
/// skipped, a class only predicted counts with F1 0.
///
/// Returns `NaN` when the slices differ in length or no in-range class appears (e.g. empty input).
pub fn macro_f1(y: &[u32], pred: &[u32], n_classes: usize) -> f64 {
    let Some(c) = counts(y, pred, n_classes) else {
        return f64::NAN;
    };
    let present: Vec<f64> = c
        .iter()
        .filter(|&&[tp, fp, fn_]| tp + fp + fn_ > 0)
        .map(|&[tp, fp, fn_]| metrics_of(tp, fp, fn_).f1)
        .collect();
    if present.is_empty() {
        return f64::NAN;
    }
    present.iter().sum::<f64>() / present.len() as f64
}

/// `n_classes × n_classes` confusion matrix: `m[true][predicted]` counts.
///
/// Pairs with a label `>= n_classes` are dropped. Memory is O(`n_classes²`). Returns an empty
/// `Vec` when the slices differ in length or the matrix could not be addressed in memory
/// (`n_classes² × 8 bytes > isize::MAX`).
pub fn confusion(y: &[u32], pred: &[u32], n_classes: usize) -> Vec<Vec<u64>> {
    let cells = n_classes.saturating_mul(n_classes);
    if y.len() != pred.len() || !fits_in_memory(cells, std::mem::size_of::<u64>()) {
        return Vec::new();
    }
    let mut m = vec![vec![0u64; n_classes]; n_classes];
    for (&t, &p) in y.iter().zip(pred) {
        if let Some(cell) = m.get_mut(t as usize).and_then(|r| r.get_mut(p as usize)) {
            *cell += 1;
        }
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    // y:    0 0 1 1 2 2 2
    // pred: 0 1 1 1 2 0 1
    // class 0: tp1 fp1 fn1 -> P 1/2, R 1/2, F1 1/2, support 2
    // class 1: tp2 fp2 fn0 -> P 1/2, R 1,   F1 2/3, support 2
    // class 2: tp1 fp0 fn2 -> P 1,   R 1/3, F1 1/2, support 3
    const Y: [u32; 7] = [0, 0, 1, 1, 2, 2, 2];
    const P: [u32; 7] = [0, 1, 1, 1, 2, 0, 1];

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn accuracy_hand_example() {
        assert!(close(accuracy(&Y, &P), 4.0 / 7.0));
    }

    #[test]
    fn per_class_hand_example() {
        let m = per_class(&Y, &P, 3);
        let want = [
            (0.5, 0.5, 0.5, 2),
            (0.5, 1.0, 2.0 / 3.0, 2),
            (1.0, 1.0 / 3.0, 0.5, 3),
        ];
        assert_eq!(m.len(), 3);
        for (got, (p, r, f, s)) in m.iter().zip(want) {
            assert!(close(got.precision, p), "{got:?}");
            assert!(close(got.recall, r), "{got:?}");
            assert!(close(got.f1, f), "{got:?}");
            assert_eq!(got.support, s);
        }
    }

    #[test]
    fn macro_f1_hand_example() {
        // (1/2 + 2/3 + 1/2) / 3 = 5/9; an absent class 3 is not averaged in.
        assert!(close(macro_f1(&Y, &P, 3), 5.0 / 9.0));
        assert!(close(macro_f1(&Y, &P, 4), 5.0 / 9.0));
    }

    #[test]
    fn macro_f1_counts_predicted_only_class() {
        // sklearn f1_score([0,1],[0,3],average="macro") = (1 + 0 + 0) / 3
        assert!(close(macro_f1(&[0, 1], &[0, 3], 4), 1.0 / 3.0));
        let m = per_class(&[0, 1], &[0, 3], 4);
        assert_eq!(m[1].precision, 0.0); // never predicted
        assert_eq!(m[3].recall, 0.0); // no support
        assert_eq!(m[2], metrics_of(0, 0, 0));
    }

    #[test]
    fn confusion_hand_example() {
        assert_eq!(
            confusion(&Y, &P, 3),
            vec![vec![1, 1, 0], vec![0, 2, 0], vec![1, 1, 1]]
        );
        // out-of-range labels are dropped
        assert_eq!(confusion(&[0, 5], &[0, 0], 2), vec![vec![1, 0], vec![0, 0]]);
    }

    #[test]
    fn out_of_range_prediction_is_a_false_negative() {
        let m = per_class(&[0, 0], &[0, 9], 2);
        assert!(close(m[0].recall, 0.5));
        assert!(close(m[0].precision, 1.0));
    }

    #[test]
    fn empty_and_mismatched_inputs() {
        assert!(accuracy(&[], &[]).is_nan());
        assert!(accuracy(&[1], &[]).is_nan());
        assert!(macro_f1(&[], &[], 3).is_nan());
        assert!(macro_f1(&[1, 2], &[1], 3).is_nan());
        assert_eq!(per_class(&[], &[], 2), vec![metrics_of(0, 0, 0); 2]);
        assert!(per_class(&[1], &[], 2).is_empty());
        assert!(per_class(&[1], &[1], 0).is_empty());
        assert_eq!(confusion(&[], &[], 2), vec![vec![0, 0]; 2]);
        assert!(confusion(&[1], &[], 2).is_empty());
        assert!(confusion(&[1], &[1], usize::MAX).is_empty());
        assert!(per_class(&[1], &[1], usize::MAX).is_empty());
        assert!(close(macro_f1(&[1], &[1], usize::MAX), 1.0));
    }
}
