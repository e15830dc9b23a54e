//! Drift statistics between a reference sample (a run's test set) and a live window (what a server
//! answered): for a category (the predicted label) the chi-square test of homogeneity and the
//! population stability index; for a number (confidence, text length) the two-sample
//! Kolmogorov–Smirnov test and the PSI over the reference's deciles. An alarm needs a test that
//! rejects *and* a PSI above a floor beyond the PSI that sampling noise alone gives at those sizes,
//! so that neither a tiny window (noise) nor a huge one (trivial but significant differences)
//! raises it; the caller sets the minimum window.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One feature's comparison.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Shift {
    /// The population stability index, `Σ (live − ref) · ln(live / ref)` over bins, with an
    /// empty bin counted as half an observation.
    pub psi: f64,
    /// The PSI that sampling noise alone reaches one time in twenty at these sample sizes and bins
    /// (95th percentile of a seeded parametric bootstrap from the pooled bin shares;
    /// [`psi_noise`]). With many categories and a small window it is large (77 labels, 150
    /// answers: about 0.5), so alarms compare `psi − psi_noise` with the floor.
    #[serde(default)]
    pub psi_noise: f64,
    /// The test's p-value (chi-square homogeneity, or two-sample KS).
    pub p_value: f64,
    /// The test statistic (chi-square, or the KS distance D).
    pub statistic: f64,
    pub n_reference: usize,
    pub n_live: usize,
}

/// PSI of two count vectors over the same bins (empty bins smoothed by 0.5).
pub fn psi(reference: &[f64], live: &[f64]) -> f64 {
    let (nr, nl) = (
        reference.iter().sum::<f64>() + 0.5 * reference.len() as f64,
        live.iter().sum::<f64>() + 0.5 * live.len() as f64,
    );
    if reference.len() != live.len() || reference.is_empty() {
        return f64::NAN;
    }
    reference
        .iter()
        .zip(live)
        .map(|(r, l)| {
            let (p, q) = ((r + 0.5) / nr, (l + 0.5) / nl);
            (q - p) * (q / p).ln()
        })
        .sum()
}

/// Bootstrap replicates behind [`psi_noise`].
const NOISE_REPLICATES: usize = 100;

/// The 95th percentile of the PSI between two samples of `n_reference` and `n_live` drawn from the
/// same bin shares (the pooled counts `pooled`): a PSI that sampling noise alone reaches one time
/// in twenty. Seeded, so a check is reproducible.
pub fn psi_noise(pooled: &[f64], n_reference: usize, n_live: usize) -> f64 {
    let total: f64 = pooled.iter().sum();
    if total <= 0.0 || n_reference == 0 || n_live == 0 {
        return 0.0;
    }
    let cdf: Vec<f64> = pooled
        .iter()
        .scan(0.0, |acc, c| {
            *acc += c / total;
            Some(*acc)
        })
        .collect();
    let mut rng = crate::rng::Xoshiro256::new(0x5eed_d81f);
    let mut draw = |n: usize| {
        let mut counts = vec![0.0; pooled.len()];
        for _ in 0..n {
            let u = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
            let k = cdf.partition_point(|c| *c <= u).min(pooled.len() - 1);
            counts[k] += 1.0;
        }
        counts
    };
    let mut replicates: Vec<f64> = (0..NOISE_REPLICATES)
        .map(|_| {
            let (r, l) = (draw(n_reference), draw(n_live));
            psi(&r, &l)
        })
        .collect();
    replicates.sort_by(f64::total_cmp);
    replicates[NOISE_REPLICATES * 95 / 100]
}

/// A categorical feature: counts per category in each sample.
pub fn categorical(reference: &BTreeMap<String, u64>, live: &BTreeMap<String, u64>) -> Shift {
    let keys: Vec<&String> = reference
        .keys()
        .chain(live.keys())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let r: Vec<f64> = keys
        .iter()
        .map(|k| *reference.get(*k).unwrap_or(&0) as f64)
        .collect();
    let l: Vec<f64> = keys
        .iter()
        .map(|k| *live.get(*k).unwrap_or(&0) as f64)
        .collect();
    let (nr, nl) = (r.iter().sum::<f64>(), l.iter().sum::<f64>());
    // Chi-square test of homogeneity on the 2 × k table.
    let total = nr + nl;
    let mut stat = 0.0;
    let mut df = 0usize;
    for (a, b) in r.iter().zip(&l) {
        let col = a + b;
        if col == 0.0 {
            continue;
        }
        df += 1;
        for (obs, n) in [(a, nr), (b, nl)] {
            let e = n * col / total;
            if e > 0.0 {
                stat += (obs - e).powi(2) / e;
            }
        }
    }
    let df = df.saturating_sub(1);
    let pooled: Vec<f64> = r.iter().zip(&l).map(|(a, b)| a + b).collect();
    Shift {
        psi: psi(&r, &l),
        psi_noise: psi_noise(&pooled, nr as usize, nl as usize),
        p_value: if df == 0 || nr == 0.0 || nl == 0.0 {
            1.0
        } else {
            chi2_sf(stat, df as f64)
        },
        statistic: stat,
        n_reference: nr as usize,
        n_live: nl as usize,
    }
}

/// A numeric feature: the KS test, and the PSI over the reference's deciles.
pub fn numeric(reference: &[f64], live: &[f64]) -> Shift {
    let mut r: Vec<f64> = reference
        .iter()
        .copied()
        .filter(|x| x.is_finite())
        .collect();
    let mut l: Vec<f64> = live.iter().copied().filter(|x| x.is_finite()).collect();
    r.sort_by(f64::total_cmp);
    l.sort_by(f64::total_cmp);
    if r.is_empty() || l.is_empty() {
        return Shift {
            psi: f64::NAN,
            psi_noise: 0.0,
            p_value: 1.0,
            statistic: 0.0,
            n_reference: r.len(),
            n_live: l.len(),
        };
    }
    // Decile edges of the reference (distinct), bins (−∞, e1], (e1, e2], ..., (ek, ∞).
    let mut edges: Vec<f64> = (1..10)
        .map(|i| r[(i * r.len() / 10).min(r.len() - 1)])
        .collect();
    edges.dedup();
    let bin = |x: f64| edges.partition_point(|e| *e < x);
    let mut rc = vec![0.0; edges.len() + 1];
    let mut lc = vec![0.0; edges.len() + 1];
    for &x in &r {
        rc[bin(x)] += 1.0;
    }
    for &x in &l {
        lc[bin(x)] += 1.0;
    }
    let (d, p) = ks_two_sample(&r, &l);
    let pooled: Vec<f64> = rc.iter().zip(&lc).map(|(a, b)| a + b).collect();
    Shift {
        psi: psi(&rc, &lc),
        psi_noise: psi_noise(&pooled, r.len(), l.len()),
        p_value: p,
        statistic: d,
        n_reference: r.len(),
        n_live: l.len(),
    }
}

/// Two-sample Kolmogorov–Smirnov on sorted samples: the distance D and its asymptotic p-value
/// (Kolmogorov's series at `(√n_e + 0.12 + 0.11/√n_e)·D`, n_e = n·m/(n+m), as Numerical Recipes).
fn ks_two_sample(a: &[f64], b: &[f64]) -> (f64, f64) {
    let (n, m) = (a.len() as f64, b.len() as f64);
    let (mut i, mut j, mut d) = (0usize, 0usize, 0.0f64);
    while i < a.len() && j < b.len() {
        let x = a[i].min(b[j]);
        while i < a.len() && a[i] <= x {
            i += 1;
        }
        while j < b.len() && b[j] <= x {
            j += 1;
        }
        d = d.max((i as f64 / n - j as f64 / m).abs());
    }
    let ne = n * m / (n + m);
    let lambda = (ne.sqrt() + 0.12 + 0.11 / ne.sqrt()) * d;
    (d, kolmogorov_q(lambda))
}

/// `Q_KS(λ) = 2 Σ_{k≥1} (−1)^{k−1} e^{−2k²λ²}`, clamped to [0, 1].
fn kolmogorov_q(lambda: f64) -> f64 {
    if lambda < 1e-3 {
        return 1.0;
    }
    let mut sum = 0.0;
    let mut sign = 1.0;
    for k in 1..=100 {
        let term = sign * (-2.0 * (k as f64).powi(2) * lambda * lambda).exp();
        sum += term;
        if term.abs() < 1e-12 {
            break;
        }
        sign = -sign;
    }
    (2.0 * sum).clamp(0.0, 1.0)
}

/// Survival function of the chi-square distribution with `df` degrees of freedom: the regularised
/// upper incomplete gamma `Q(df/2, x/2)` (series below `a + 1`, Lentz's continued fraction above).
pub fn chi2_sf(x: f64, df: f64) -> f64 {
    if x.is_nan() || df <= 0.0 {
        return f64::NAN;
    }
    if x <= 0.0 {
        return 1.0;
    }
    let (a, x) = (df / 2.0, x / 2.0);
    let ln_front = a * x.ln() - x - ln_gamma(a);
    if x < a + 1.0 {
        let (mut sum, mut del, mut ap) = (1.0 / a, 1.0 / a, a);
        for _ in 0..1000 {
            ap += 1.0;
            del *= x / ap;
            sum += del;
            if del.abs() < sum.abs() * 1e-15 {
                break;
            }
        }
        (1.0 - sum * ln_front.exp()).clamp(0.0, 1.0)
    } else {
        let tiny = 1e-300;
        let mut b = x + 1.0 - a;
        let mut c = 1.0 / tiny;
        let mut d = 1.0 / b;
        let mut h = d;
        for i in 1..1000 {
            let an = -(i as f64) * (i as f64 - a);
            b += 2.0;
            d = an * d + b;
            if d.abs() < tiny {
                d = tiny;
            }
            c = b + an / c;
            if c.abs() < tiny {
                c = tiny;
            }
            d = 1.0 / d;
            let del = d * c;
            h *= del;
            if (del - 1.0).abs() < 1e-15 {
                break;
            }
        }
        (ln_front.exp() * h).clamp(0.0, 1.0)
    }
}

/// ln Γ(x) for x > 0 (Lanczos, g = 7, n = 9; relative error below 1e-14).
fn ln_gamma(x: f64) -> f64 {
    const G: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        return (std::f64::consts::PI / (std::f64::consts::PI * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut a = G[0];
    let t = x + 7.5;
    for (i, g) in G.iter().enumerate().skip(1) {
        a += g / (x + i as f64);
    }
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + a.ln()
}

/// The one-sided Clopper–Pearson upper bound on a rate from `k` events in `n` trials, at
/// confidence `conf` (e.g. 0.95): the `p` with `P(Binomial(n, p) ≤ k) = 1 − conf`, by bisection.
pub fn clopper_pearson_upper(k: u64, n: u64, conf: f64) -> f64 {
    if n == 0 {
        return 1.0;
    }
    if k >= n {
        return 1.0;
    }
    let cdf = |p: f64| -> f64 {
        // P(X ≤ k), summed in log space.
        let (ln_p, ln_q) = (p.ln(), (1.0 - p).ln());
        let mut ln_choose = 0.0;
        let mut total = 0.0;
        for i in 0..=k {
            if i > 0 {
                ln_choose += ((n - i + 1) as f64).ln() - (i as f64).ln();
            }
            total += (ln_choose + i as f64 * ln_p + (n - i) as f64 * ln_q).exp();
        }
        total
    };
    let (mut lo, mut hi) = (k as f64 / n as f64, 1.0);
    for _ in 0..100 {
        let mid = 0.5 * (lo + hi);
        if cdf(mid) > 1.0 - conf {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    hi
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Xoshiro256;

    #[test]
    fn chi_square_survival_matches_known_values() {
        // Reference values: the 95% quantiles of chi-square(1) and (10), and Simpson integration of the
        // chi-square density in Python (400,000 intervals) for the others.
        for (x, df, want) in [
            (3.841_458_820_694_124, 1.0, 0.05),
            (18.307_038_053_275_146, 10.0, 0.05),
            (2.0, 3.0, 0.572_406_704_470_83),
            (100.0, 76.0, 0.033_954_894_096_845),
        ] {
            let got = chi2_sf(x, df);
            assert!(
                (got - want).abs() < 1e-8,
                "chi2_sf({x}, {df}) = {got}, want {want}"
            );
        }
        // Zero events in 150 windows: the 95% upper bound is 1 − 0.05^(1/150).
        let ub = clopper_pearson_upper(0, 150, 0.95);
        assert!(
            (ub - (1.0 - 0.05f64.powf(1.0 / 150.0))).abs() < 1e-9,
            "{ub}"
        );
        assert!(clopper_pearson_upper(3, 150, 0.95) > 0.02);
    }

    fn unit(rng: &mut Xoshiro256) -> f64 {
        (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn sample(rng: &mut Xoshiro256, weights: &[f64], n: usize) -> BTreeMap<String, u64> {
        let total: f64 = weights.iter().sum();
        let mut out = BTreeMap::new();
        for _ in 0..n {
            let mut u = unit(rng) * total;
            let mut k = 0;
            while k + 1 < weights.len() && u >= weights[k] {
                u -= weights[k];
                k += 1;
            }
            *out.entry(format!("l{k}")).or_insert(0) += 1;
        }
        out
    }

    #[test]
    fn psi_beyond_its_noise_keeps_windows_resampled_from_a_fixed_pool_quiet() {
        // 77 labels, a reference of 1,540, windows of 150 resampled from another 1,540 of the same
        // population (as held-back traffic replayed): the pool's own offset from the reference makes
        // the test reject far more often than alpha, but that offset is small against PSI's noise.
        let mut rng = Xoshiro256::new(11);
        let weights: Vec<f64> = (0..77).map(|i| 1.0 + (i % 3) as f64 * 0.3).collect();
        let (mut rejected, mut alarms) = (0, 0);
        for _ in 0..20 {
            let reference = sample(&mut rng, &weights, 1540);
            let pool: Vec<String> = sample(&mut rng, &weights, 1540)
                .into_iter()
                .flat_map(|(k, n)| std::iter::repeat_n(k, n as usize))
                .collect();
            for _ in 0..25 {
                let mut live = BTreeMap::new();
                for _ in 0..150 {
                    let k = &pool[rng.below(pool.len() as u64) as usize];
                    *live.entry(k.clone()).or_insert(0u64) += 1;
                }
                let s = categorical(&reference, &live);
                assert!(s.psi_noise > 0.4 && s.psi_noise < 0.7, "{s:?}");
                if s.p_value < 0.01 / 3.0 {
                    rejected += 1;
                    alarms += usize::from(s.psi - s.psi_noise >= 0.1);
                }
            }
        }
        assert!(
            rejected > 5,
            "the pool effect this guards against: {rejected} of 500"
        );
        assert!(alarms <= 2, "{alarms} of 500 windows would alarm");
        // A real shift (8 labels only) is far beyond the noise.
        let reference = sample(&mut rng, &weights, 1540);
        let mut few = vec![0.0; 77];
        few[..8].copy_from_slice(&weights[..8]);
        let s = categorical(&reference, &sample(&mut rng, &few, 150));
        assert!(s.p_value < 1e-10 && s.psi - s.psi_noise > 1.0, "{s:?}");
    }

    #[test]
    fn same_distribution_windows_rarely_reject_and_shifted_ones_do() {
        let mut rng = Xoshiro256::new(7);
        let weights: Vec<f64> = (0..20).map(|i| 1.0 + (i % 5) as f64).collect();
        let reference = sample(&mut rng, &weights, 2000);
        let mut rejected = 0;
        for _ in 0..300 {
            let live = sample(&mut rng, &weights, 200);
            if categorical(&reference, &live).p_value < 0.01 {
                rejected += 1;
            }
        }
        // About 1% expected; far below 5% with margin.
        assert!(
            rejected <= 9,
            "{rejected} of 300 same-distribution windows rejected"
        );
        let mut shifted = weights.clone();
        shifted[0] *= 10.0;
        let live = sample(&mut rng, &shifted, 200);
        let s = categorical(&reference, &live);
        assert!(s.p_value < 1e-4 && s.psi > 0.1, "{s:?}");
        // Numbers: lengths from the same range vs longer ones.
        let r: Vec<f64> = (0..1000).map(|_| 20.0 + 60.0 * unit(&mut rng)).collect();
        let same: Vec<f64> = (0..200).map(|_| 20.0 + 60.0 * unit(&mut rng)).collect();
        let longer: Vec<f64> = (0..200).map(|_| 50.0 + 60.0 * unit(&mut rng)).collect();
        assert!(numeric(&r, &same).p_value > 0.001);
        let s = numeric(&r, &longer);
        assert!(s.p_value < 1e-6 && s.psi > 0.5, "{s:?}");
    }
}
