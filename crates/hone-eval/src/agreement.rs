//! Agreement between two raters who labelled the same items: Cohen's κ (chance-corrected), as
//! scikit-learn's `cohen_kappa_score` computes it without weights.

use std::collections::BTreeMap;

/// Cohen's κ of two raters' labels for the same items (`a[i]` and `b[i]` label item `i`):
/// `(p_o − p_e) / (1 − p_e)`, with `p_o` the share of items they label alike and `p_e` the share
/// expected by chance from each rater's label frequencies. `None` for no items, for lists of
/// different lengths (not labels of the same items), or when chance agreement is total (both raters
/// gave one and the same label to everything: κ is undefined).
pub fn cohen_kappa<T: Ord>(a: &[T], b: &[T]) -> Option<f64> {
    let n = a.len();
    if n == 0 || b.len() != n {
        return None;
    }
    let mut fa: BTreeMap<&T, f64> = BTreeMap::new();
    let mut fb: BTreeMap<&T, f64> = BTreeMap::new();
    let mut same = 0usize;
    for (x, y) in a.iter().zip(b) {
        *fa.entry(x).or_default() += 1.0;
        *fb.entry(y).or_default() += 1.0;
        same += usize::from(x == y);
    }
    let nf = n as f64;
    let po = same as f64 / nf;
    let pe: f64 = fa
        .iter()
        .map(|(k, ca)| ca / nf * fb.get(k).copied().unwrap_or(0.0) / nf)
        .sum();
    if (1.0 - pe).abs() < 1e-12 {
        return None;
    }
    Some((po - pe) / (1.0 - pe))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_scikit_learn_on_worked_examples() {
        // cohen_kappa_score(["a","a","b","b"], ["a","b","b","b"]) = 0.5
        assert!(
            (cohen_kappa(&["a", "a", "b", "b"], &["a", "b", "b", "b"]).unwrap() - 0.5).abs()
                < 1e-12
        );
        // Perfect agreement is 1; systematic disagreement on two labels is -1.
        assert_eq!(cohen_kappa(&[1, 2, 3, 1], &[1, 2, 3, 1]), Some(1.0));
        assert_eq!(cohen_kappa(&[1, 2, 1, 2], &[2, 1, 2, 1]), Some(-1.0));
        // cohen_kappa_score([1,1,2,3,3,3], [1,2,2,3,3,1]) = 0.5 (p_o 4/6, p_e 12/36)
        let k = cohen_kappa(&[1, 1, 2, 3, 3, 3], &[1, 2, 2, 3, 3, 1]).unwrap();
        assert!((k - 0.5).abs() < 1e-12, "{k}");
        // cohen_kappa_score([1,2,3,4,5,3,4], [1,2,3,5,5,2,4]) = 0.65 (p_o 5/7, p_e 9/49)
        let k = cohen_kappa(&[1, 2, 3, 4, 5, 3, 4], &[1, 2, 3, 5, 5, 2, 4]).unwrap();
        assert!((k - 0.65).abs() < 1e-12, "{k}");
        // Undefined: nothing to compare, or one label everywhere on both sides.
        assert_eq!(cohen_kappa::<u8>(&[], &[]), None);
        assert_eq!(cohen_kappa(&["x", "x"], &["x", "x"]), None);
        assert_eq!(cohen_kappa(&[1, 2, 3], &[1, 2]), None);
    }
}
