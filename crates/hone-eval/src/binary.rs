//! Binary ranking metrics over real-valued scores: average precision (PR-AUC, scikit-learn
//! semantics) and the F1-maximising decision threshold.
//!
//! Both work on the precision–recall curve over *distinct* score thresholds: at threshold `t`
//! every example with `score >= t` is predicted positive, so tied scores enter together.
//! Pairs whose score is `NaN` are ignored; `-0.0` and `0.0` are the same threshold.

/// One point of the curve: (threshold, true positives, false positives) at `score >= threshold`.
struct Point {
    threshold: f64,
    tp: u64,
    fp: u64,
}

/// Points for every distinct score, highest threshold first, and the number of positives.
/// `None` on mismatched lengths.
fn curve(scores: &[f64], positive: &[bool]) -> Option<(Vec<Point>, u64)> {
    if scores.len() != positive.len() {
        return None;
    }
    // `+ 0.0` turns -0.0 into 0.0 so total_cmp does not split them.
    let mut pairs: Vec<(f64, bool)> = scores
        .iter()
        .zip(positive)
        .filter(|(s, _)| !s.is_nan())
        .map(|(&s, &p)| (s + 0.0, p))
        .collect();
    pairs.sort_unstable_by(|a, b| b.0.total_cmp(&a.0));
    let n_pos = pairs.iter().filter(|p| p.1).count() as u64;
    let mut points: Vec<Point> = Vec::new();
    let (mut tp, mut fp) = (0u64, 0u64);
    for (i, &(s, p)) in pairs.iter().enumerate() {
        if p {
            tp += 1;
        } else {
            fp += 1;
        }
        let last_of_tie = pairs.get(i + 1).is_none_or(|next| next.0 != s);
        if last_of_tie {
            points.push(Point {
                threshold: s,
                tp,
                fp,
            });
        }
    }
    Some((points, n_pos))
}

/// Average precision as scikit-learn's `average_precision_score`:
/// `AP = Σ_n (R_n − R_{n−1}) · P_n` over distinct thresholds from the highest down, `R_0 = 0`,
/// with tied scores entering at the same threshold (no interpolation).
///
/// Returns `NaN` when the slices differ in length or there is no positive example (recall is
/// undefined), which includes empty input.
pub fn average_precision(scores: &[f64], positive: &[bool]) -> f64 {
    let Some((points, n_pos)) = curve(scores, positive) else {
        return f64::NAN;
    };
    if n_pos == 0 {
        return f64::NAN;
    }
    let mut ap = 0.0;
    let mut prev_tp = 0u64;
    for pt in &points {
        let precision = pt.tp as f64 / (pt.tp + pt.fp) as f64;
        ap += (pt.tp - prev_tp) as f64 / n_pos as f64 * precision;
        prev_tp = pt.tp;
    }
    ap
}

/// The threshold `t` (one of the scores; predict positive when `score >= t`) that maximises
/// `F1 = 2·TP / (2·TP + FP + FN)`, and that F1. Ties go to the highest such threshold (fewest
/// positive predictions).
///
/// Returns `(NaN, NaN)` when the slices differ in length, no score is kept (e.g. empty input), or
/// there is no positive example (F1 would be 0 at every threshold).
pub fn best_threshold_f1(scores: &[f64], positive: &[bool]) -> (f64, f64) {
    let Some((points, n_pos)) = curve(scores, positive) else {
        return (f64::NAN, f64::NAN);
    };
    if n_pos == 0 {
        return (f64::NAN, f64::NAN);
    }
    let mut best = (f64::NAN, f64::NEG_INFINITY);
    for pt in &points {
        let f1 = 2.0 * pt.tp as f64 / (2 * pt.tp + pt.fp + (n_pos - pt.tp)) as f64;
        if f1 > best.1 {
            best = (pt.threshold, f1);
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn average_precision_with_ties() {
        // scores 0.9 0.8 0.8 0.7 0.7 0.7 0.1, positives T T F T F F T (4 positives)
        // t=0.9: TP1 FP0 P=1   R=1/4
        // t=0.8: TP2 FP1 P=2/3 R=2/4
        // t=0.7: TP3 FP3 P=1/2 R=3/4
        // t=0.1: TP4 FP3 P=4/7 R=4/4
        // AP = 1/4 (1 + 2/3 + 1/2 + 4/7) = 115/168
        let s = [0.9, 0.8, 0.8, 0.7, 0.7, 0.7, 0.1];
        let p = [true, true, false, true, false, false, true];
        assert!(close(average_precision(&s, &p), 115.0 / 168.0));
        // order of input does not matter
        let (mut s2, mut p2) = (s.to_vec(), p.to_vec());
        s2.reverse();
        p2.reverse();
        assert!(close(average_precision(&s2, &p2), 115.0 / 168.0));
    }

    #[test]
    fn average_precision_simple_cases() {
        // perfect ranking -> 1; sklearn: average_precision_score([0,0,1,1],[.1,.4,.35,.8]) = 0.8333..
        assert!(close(average_precision(&[0.9, 0.1], &[true, false]), 1.0));
        let ap = average_precision(&[0.1, 0.4, 0.35, 0.8], &[false, false, true, true]);
        assert!(close(ap, 5.0 / 6.0), "{ap}");
        // all tied: AP = prevalence
        assert!(close(
            average_precision(&[0.5; 4], &[true, false, false, false]),
            0.25
        ));
        // -0.0 and 0.0 are one threshold
        assert!(close(average_precision(&[0.0, -0.0], &[true, false]), 0.5));
    }

    #[test]
    fn best_threshold_hand_example() {
        // t=.9: 2/(2+0+2)=.5  t=.8: 4/5  t=.7: 4/6  t=.6: 6/7  t=.5: 6/8  t=.4: 6/9
        let s = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4];
        let p = [true, true, false, true, false, false];
        let (t, f1) = best_threshold_f1(&s, &p);
        assert_eq!(t, 0.6);
        assert!(close(f1, 6.0 / 7.0));
    }

    #[test]
    fn empty_and_degenerate_inputs() {
        assert!(average_precision(&[], &[]).is_nan());
        assert!(average_precision(&[0.3], &[]).is_nan());
        assert!(average_precision(&[0.3, 0.2], &[false, false]).is_nan());
        assert!(average_precision(&[f64::NAN], &[true]).is_nan());
        let (t, f) = best_threshold_f1(&[], &[]);
        assert!(t.is_nan() && f.is_nan());
        let (t, f) = best_threshold_f1(&[0.1], &[false]);
        assert!(t.is_nan() && f.is_nan());
        let (t, f) = best_threshold_f1(&[0.1, 0.2], &[true]);
        assert!(t.is_nan() && f.is_nan());
        // NaN scores are ignored, infinities are ordinary scores
        let (t, f) = best_threshold_f1(&[f64::NAN, f64::INFINITY, 0.0], &[false, true, false]);
        assert_eq!((t, f), (f64::INFINITY, 1.0));
    }
}
