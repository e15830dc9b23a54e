//! Significance testing between two systems: McNemar's test on paired correctness, and the
//! verdict rule that combines it with a paired bootstrap interval.

use serde::{Deserialize, Serialize};

use crate::bootstrap::Paired;
use crate::special::{binomial_two_sided_half, chi2_sf_1df};

/// Below this many discordant pairs (`b + c`) [`mcnemar`] uses the exact binomial test.
pub const MCNEMAR_EXACT_BELOW: u64 = 25;

/// Result of McNemar's test of system A against system B.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct McNemar {
    /// Examples A got right and B got wrong.
    pub b: u64,
    /// Examples A got wrong and B got right.
    pub c: u64,
    /// Exact test: `min(b, c)` (as statsmodels reports it). Chi-square test:
    /// `(|b − c| − 1)² / (b + c)`.
    pub statistic: f64,
    /// Two-sided p-value.
    pub p_value: f64,
    /// Whether the exact binomial test was used.
    pub exact: bool,
}

/// McNemar's test on per-example correctness of A and B over the same examples.
///
/// With `b + c < 25` discordant pairs: exact two-sided binomial test,
/// `p = min(1, 2 · P(Binomial(b + c, ½) ≤ min(b, c)))`. Otherwise: chi-square with one degree of
/// freedom and continuity correction, `statistic = (|b − c| − 1)² / (b + c)`,
/// `p = erfc(√(statistic / 2))`. No discordant pair (incl. empty input) gives `b = c = 0`,
/// `statistic = 0`, `p = 1`, `exact = true`.
///
/// Mismatched lengths give `b = c = 0`, `statistic = NaN`, `p_value = NaN`, `exact = false`
/// (which [`verdict`] treats as not significant).
pub fn mcnemar(correct_a: &[bool], correct_b: &[bool]) -> McNemar {
    if correct_a.len() != correct_b.len() {
        return McNemar {
            b: 0,
            c: 0,
            statistic: f64::NAN,
            p_value: f64::NAN,
            exact: false,
        };
    }
    let (mut b, mut c) = (0u64, 0u64);
    for (&ra, &rb) in correct_a.iter().zip(correct_b) {
        match (ra, rb) {
            (true, false) => b += 1,
            (false, true) => c += 1,
            _ => {}
        }
    }
    let n = b + c;
    if n < MCNEMAR_EXACT_BELOW {
        McNemar {
            b,
            c,
            statistic: b.min(c) as f64,
            p_value: binomial_two_sided_half(b.min(c), n),
            exact: true,
        }
    } else {
        let diff = b.abs_diff(c) as f64 - 1.0;
        let statistic = diff * diff / n as f64;
        McNemar {
            b,
            c,
            statistic,
            p_value: chi2_sf_1df(statistic),
            exact: false,
        }
    }
}

/// How system B compares with system A.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Verdict {
    /// B is better than A.
    SignificantlyBetter,
    /// B is worse than A.
    SignificantlyWorse,
    /// No significant difference (or the evidence disagrees).
    Indistinguishable,
}

/// Verdict on B versus A, for a higher-is-better metric (`paired.delta = B − A`).
///
/// * `SignificantlyBetter` iff `paired.lo > 0` **and**, when `mcnemar` is given,
///   `mcnemar.p_value < alpha` and `mcnemar.c > mcnemar.b` (B wins more of the discordant pairs).
/// * `SignificantlyWorse` iff `paired.hi < 0` **and**, when given, `p_value < alpha` and `b > c`.
/// * otherwise `Indistinguishable` — including any `NaN` bound, p-value or `alpha`.
///
/// `alpha` applies to McNemar only; the bootstrap side is decided by the interval, so build
/// `paired` with `level = 1 − alpha` for a consistent test.
pub fn verdict(paired: &Paired, mcnemar: Option<&McNemar>, alpha: f64) -> Verdict {
    let agrees = |b_wins: bool| match mcnemar {
        None => true,
        Some(m) => m.p_value < alpha && if b_wins { m.c > m.b } else { m.b > m.c },
    };
    if paired.lo > 0.0 && agrees(true) {
        Verdict::SignificantlyBetter
    } else if paired.hi < 0.0 && agrees(false) {
        Verdict::SignificantlyWorse
    } else {
        Verdict::Indistinguishable
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Correctness vectors with `b` (A right, B wrong), `c` (A wrong, B right) and `same` ties.
    fn discordant(b: usize, c: usize, same: usize) -> (Vec<bool>, Vec<bool>) {
        let mut a = Vec::new();
        let mut bb = Vec::new();
        a.extend(std::iter::repeat_n(true, b));
        bb.extend(std::iter::repeat_n(false, b));
        a.extend(std::iter::repeat_n(false, c));
        bb.extend(std::iter::repeat_n(true, c));
        for i in 0..same {
            a.push(i % 2 == 0);
            bb.push(i % 2 == 0);
        }
        (a, bb)
    }

    #[test]
    fn exact_b1_c9() {
        // scipy.stats.binomtest(1, 10, 0.5).pvalue = 0.021484375 (= 22/1024)
        let (a, b) = discordant(1, 9, 30);
        let m = mcnemar(&a, &b);
        assert_eq!((m.b, m.c, m.exact), (1, 9, true));
        assert_eq!(m.statistic, 1.0);
        assert!((m.p_value - 0.021_484_375).abs() < 1e-15, "{m:?}");
    }

    #[test]
    fn chi_square_b10_c30() {
        // (|10 − 30| − 1)² / 40 = 9.025; chi2.sf(9.025, 1) = 0.002663119259...
        let (a, b) = discordant(10, 30, 7);
        let m = mcnemar(&a, &b);
        assert_eq!((m.b, m.c, m.exact), (10, 30, false));
        assert!((m.statistic - 9.025).abs() < 1e-12);
        assert!(
            (m.p_value - 0.002_663_119_259_138_554).abs() < 1e-12,
            "{m:?}"
        );
    }

    #[test]
    fn exact_threshold_is_25() {
        let (a, b) = discordant(12, 12, 0);
        assert!(mcnemar(&a, &b).exact);
        assert_eq!(mcnemar(&a, &b).p_value, 1.0);
        let (a, b) = discordant(12, 13, 0);
        let m = mcnemar(&a, &b);
        assert!(!m.exact);
        // (1 − 1)² / 25 = 0 -> p = 1
        assert_eq!((m.statistic, m.p_value), (0.0, 1.0));
    }

    #[test]
    fn empty_and_mismatched() {
        let m = mcnemar(&[], &[]);
        assert_eq!(
            (m.b, m.c, m.statistic, m.p_value, m.exact),
            (0, 0, 0.0, 1.0, true)
        );
        let m = mcnemar(&[true], &[]);
        assert!(m.p_value.is_nan() && m.statistic.is_nan() && !m.exact);
        let p = Paired {
            delta: 0.2,
            lo: 0.1,
            hi: 0.3,
            p_value: 0.0,
        };
        assert_eq!(verdict(&p, Some(&m), 0.05), Verdict::Indistinguishable);
        assert_eq!(verdict(&p, None, 0.05), Verdict::SignificantlyBetter);
    }

    #[test]
    fn verdict_rule() {
        let up = Paired {
            delta: 0.1,
            lo: 0.02,
            hi: 0.2,
            p_value: 0.01,
        };
        let down = Paired {
            delta: -0.1,
            lo: -0.2,
            hi: -0.02,
            p_value: 0.01,
        };
        let straddle = Paired {
            delta: 0.1,
            lo: -0.01,
            hi: 0.2,
            p_value: 0.2,
        };
        let (a, b) = discordant(10, 30, 0); // B wins, p ≈ 0.0027
        let b_wins = mcnemar(&a, &b);
        let a_wins = mcnemar(&b, &a);
        assert_eq!(
            verdict(&up, Some(&b_wins), 0.05),
            Verdict::SignificantlyBetter
        );
        assert_eq!(
            verdict(&up, Some(&b_wins), 0.001),
            Verdict::Indistinguishable
        );
        assert_eq!(
            verdict(&up, Some(&a_wins), 0.05),
            Verdict::Indistinguishable
        );
        assert_eq!(
            verdict(&down, Some(&a_wins), 0.05),
            Verdict::SignificantlyWorse
        );
        assert_eq!(verdict(&down, None, 0.05), Verdict::SignificantlyWorse);
        assert_eq!(
            verdict(&straddle, Some(&b_wins), 0.05),
            Verdict::Indistinguishable
        );
        assert_eq!(
            verdict(&up, Some(&b_wins), f64::NAN),
            Verdict::Indistinguishable
        );
    }
}
