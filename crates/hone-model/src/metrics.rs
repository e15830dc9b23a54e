//! Classification metrics over class indices: accuracy and macro-F1 (the mean of per-class F1 over the
//! classes that occur in gold or predictions; a class never predicted and never gold does not count).

/// Fraction of positions where `pred == gold` (0 for empty input; extra elements of the longer slice are
/// ignored).
pub fn accuracy(gold: &[u32], pred: &[u32]) -> f64 {
    let n = gold.len().min(pred.len());
    if n == 0 {
        return 0.0;
    }
    let ok = gold.iter().zip(pred).filter(|(g, p)| g == p).count();
    ok as f64 / n as f64
}

/// Macro-averaged F1 over the classes present in `gold` or `pred`.
pub fn macro_f1(gold: &[u32], pred: &[u32]) -> f64 {
    let k = gold
        .iter()
        .chain(pred)
        .map(|&c| c as usize + 1)
        .max()
        .unwrap_or(0);
    if k == 0 {
        return 0.0;
    }
    let (mut tp, mut fp, mut fnn) = (vec![0u64; k], vec![0u64; k], vec![0u64; k]);
    for (&g, &p) in gold.iter().zip(pred) {
        if g == p {
            tp[g as usize] += 1;
        } else {
            fp[p as usize] += 1;
            fnn[g as usize] += 1;
        }
    }
    let mut sum = 0.0;
    let mut classes = 0usize;
    for c in 0..k {
        let denom = 2 * tp[c] + fp[c] + fnn[c];
        if denom == 0 {
            continue;
        }
        classes += 1;
        sum += 2.0 * tp[c] as f64 / denom as f64;
    }
    if classes == 0 {
        0.0
    } else {
        sum / classes as f64
    }
}

/// Index of the largest value (first on ties; 0 for an empty slice; NaN never wins).
pub fn argmax(xs: &[f32]) -> usize {
    let mut best = 0;
    for (i, &x) in xs.iter().enumerate() {
        if x > xs[best] || (xs[best].is_nan() && !x.is_nan()) {
            best = i;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics() {
        assert_eq!(accuracy(&[0, 1, 1], &[0, 1, 0]), 2.0 / 3.0);
        assert_eq!(accuracy(&[], &[]), 0.0);
        // class 0: tp1 fp1 fn0 -> 2/3 ; class 1: tp1 fp0 fn1 -> 2/3
        assert!((macro_f1(&[0, 1, 1], &[0, 1, 0]) - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(macro_f1(&[2, 2], &[2, 2]), 1.0);
        assert_eq!(argmax(&[0.1, 0.5, 0.5]), 1);
        assert_eq!(argmax(&[]), 0);
    }
}
