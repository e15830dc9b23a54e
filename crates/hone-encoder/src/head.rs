//! A linear softmax head on fixed vectors (multinomial logistic regression), fitted by L-BFGS, with
//! its L2 strength chosen on dev. Serves frozen-encoder models, SetFit-style heads and label-issue features.
//!
//! The objective is scikit-learn's `LogisticRegression(C)` divided by `n`: mean cross-entropy +
//! `1/(2·C·n)·‖W‖²` (the bias is not penalised), so `C` means the same thing in both.

use candle_core::{D, Device, Tensor};
use hone_core::{Error, Result};
use serde::{Deserialize, Serialize};

use crate::bert::candle_err;

/// Row-major `(n, dim)` vectors.
#[derive(Debug, Clone, Copy)]
pub struct Rows<'a> {
    pub data: &'a [f32],
    pub dim: usize,
}

impl Rows<'_> {
    pub fn len(&self) -> usize {
        self.data.len().checked_div(self.dim).unwrap_or(0)
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    fn tensor(&self) -> Result<Tensor> {
        Tensor::from_slice(self.data, (self.len(), self.dim), &Device::Cpu).map_err(candle_err)
    }
}

/// Weights `(classes, dim)` row-major and biases `(classes)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinearHead {
    pub classes: usize,
    pub dim: usize,
    pub weight: Vec<f32>,
    pub bias: Vec<f32>,
    /// The `C` it was fitted with.
    pub c: f64,
}

/// What [`LinearHead::fit_select`] tried and chose.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HeadReport {
    /// `(C, dev accuracy, L-BFGS iterations)` for each candidate.
    pub tried: Vec<(f64, f64, usize)>,
    pub chosen_c: f64,
}

fn softmax_rows(logits: &Tensor) -> candle_core::Result<Tensor> {
    let max = logits.max_keepdim(D::Minus1)?;
    let e = logits.broadcast_sub(&max)?.exp()?;
    e.broadcast_div(&e.sum_keepdim(D::Minus1)?)
}

/// Loss and gradient of the penalised mean cross-entropy at `theta` = `[W (k·d) | b (k)]`.
struct Objective {
    x: Tensor, // (n, d)
    q: Tensor, // (n, k) target distribution
    n: usize,
    d: usize,
    k: usize,
    lambda: f64,
}

impl Objective {
    fn eval(&self, theta: &[f64]) -> Result<(f64, Vec<f64>)> {
        let (k, d) = (self.k, self.d);
        let w32: Vec<f32> = theta[..k * d].iter().map(|&v| v as f32).collect();
        let b32: Vec<f32> = theta[k * d..].iter().map(|&v| v as f32).collect();
        let r = (|| {
            let w = Tensor::from_vec(w32, (k, d), &Device::Cpu)?;
            let b = Tensor::from_vec(b32, k, &Device::Cpu)?;
            let logits = self.x.matmul(&w.t()?)?.broadcast_add(&b)?;
            let max = logits.max_keepdim(D::Minus1)?;
            let shifted = logits.broadcast_sub(&max)?;
            let lse = shifted.exp()?.sum_keepdim(D::Minus1)?.log()?;
            let logp = shifted.broadcast_sub(&lse)?;
            let ce = (logp * &self.q)?.sum_all()?.to_scalar::<f32>()? as f64;
            let p = softmax_rows(&logits)?;
            let diff = (p - &self.q)?; // (n, k)
            let gw = diff.t()?.matmul(&self.x)?; // (k, d)
            let gb = diff.sum(0)?;
            Ok::<_, candle_core::Error>((
                -ce,
                gw.flatten_all()?.to_vec1::<f32>()?,
                gb.to_vec1::<f32>()?,
            ))
        })()
        .map_err(candle_err)?;
        let (ce_sum, gw, gb) = r;
        let n = self.n as f64;
        let mut loss = ce_sum / n;
        let mut grad = Vec::with_capacity(theta.len());
        for (i, g) in gw.iter().enumerate() {
            grad.push(*g as f64 / n + self.lambda * theta[i]);
            loss += 0.5 * self.lambda * theta[i] * theta[i];
        }
        grad.extend(gb.iter().map(|g| *g as f64 / n));
        Ok((loss, grad))
    }
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// A function returning the loss and its gradient.
type LossGrad<'a> = dyn Fn(&[f64]) -> Result<(f64, Vec<f64>)> + 'a;

/// Minimises `f` from `theta` by L-BFGS (history 10, backtracking Armijo line search).
/// Returns the iterations used.
fn lbfgs(f: &LossGrad<'_>, theta: &mut [f64], max_iter: usize, tol: f64) -> Result<usize> {
    const M: usize = 10;
    let (mut fx, mut g) = f(theta)?;
    let mut s_hist: Vec<Vec<f64>> = Vec::new();
    let mut y_hist: Vec<Vec<f64>> = Vec::new();
    for it in 0..max_iter {
        let gmax = g.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        if gmax < tol {
            return Ok(it);
        }
        // Two-loop recursion: direction = -H g.
        let mut q = g.clone();
        let mut alpha = vec![0.0; s_hist.len()];
        for i in (0..s_hist.len()).rev() {
            let rho = 1.0 / dot(&y_hist[i], &s_hist[i]);
            alpha[i] = rho * dot(&s_hist[i], &q);
            for (qj, yj) in q.iter_mut().zip(&y_hist[i]) {
                *qj -= alpha[i] * yj;
            }
        }
        let gamma = match (s_hist.last(), y_hist.last()) {
            (Some(s), Some(y)) => dot(s, y) / dot(y, y),
            _ => 1.0 / dot(&g, &g).sqrt().max(1e-12),
        };
        for qj in q.iter_mut() {
            *qj *= gamma;
        }
        for i in 0..s_hist.len() {
            let rho = 1.0 / dot(&y_hist[i], &s_hist[i]);
            let beta = rho * dot(&y_hist[i], &q);
            for (qj, sj) in q.iter_mut().zip(&s_hist[i]) {
                *qj += (alpha[i] - beta) * sj;
            }
        }
        let dir: Vec<f64> = q.iter().map(|v| -v).collect();
        let mut slope = dot(&g, &dir);
        let dir = if slope >= 0.0 {
            // Not a descent direction (numerical trouble): restart from steepest descent.
            s_hist.clear();
            y_hist.clear();
            slope = -dot(&g, &g);
            g.iter().map(|v| -v).collect()
        } else {
            dir
        };
        let mut step = 1.0;
        let mut accepted = None;
        for _ in 0..30 {
            let cand: Vec<f64> = theta.iter().zip(&dir).map(|(t, d)| t + step * d).collect();
            let (fc, gc) = f(&cand)?;
            if fc.is_finite() && fc <= fx + 1e-4 * step * slope {
                accepted = Some((cand, fc, gc));
                break;
            }
            step *= 0.5;
        }
        let Some((cand, fc, gc)) = accepted else {
            return Ok(it); // no progress possible at f32 precision
        };
        let s: Vec<f64> = cand.iter().zip(theta.iter()).map(|(a, b)| a - b).collect();
        let y: Vec<f64> = gc.iter().zip(&g).map(|(a, b)| a - b).collect();
        theta.copy_from_slice(&cand);
        let rel = (fx - fc).abs() / fx.abs().max(1e-12);
        fx = fc;
        g = gc;
        if dot(&s, &y) > 1e-12 {
            if s_hist.len() == M {
                s_hist.remove(0);
                y_hist.remove(0);
            }
            s_hist.push(s);
            y_hist.push(y);
        }
        if rel < 1e-10 {
            return Ok(it + 1);
        }
    }
    Ok(max_iter)
}

/// Targets: hard class indices or one probability row per example.
#[derive(Debug, Clone, Copy)]
pub enum Targets<'a> {
    Hard(&'a [u32]),
    Soft(&'a [f32]),
}

impl LinearHead {
    /// Fits with a fixed `c` (scikit-learn's inverse regularisation strength), warm-started from `init`.
    pub fn fit(
        x: Rows<'_>,
        y: Targets<'_>,
        classes: usize,
        c: f64,
        max_iter: usize,
        init: Option<&LinearHead>,
    ) -> Result<(LinearHead, usize)> {
        let (n, d, k) = (x.len(), x.dim, classes);
        if n == 0 || k < 2 {
            return Err(Error::Usage(format!(
                "a linear head needs examples and at least two classes (got {n} examples, {k} classes)"
            )));
        }
        let q: Vec<f32> = match y {
            Targets::Hard(y) => {
                if y.len() != n {
                    return Err(Error::Internal(format!("{n} rows, {} labels", y.len())));
                }
                let mut q = vec![0.0f32; n * k];
                for (i, &c) in y.iter().enumerate() {
                    if c as usize >= k {
                        return Err(Error::Internal(format!("label {c} >= {k} classes")));
                    }
                    q[i * k + c as usize] = 1.0;
                }
                q
            }
            Targets::Soft(q) => {
                if q.len() != n * k {
                    return Err(Error::Internal(format!(
                        "{n} rows × {k} classes, {} targets",
                        q.len()
                    )));
                }
                q.to_vec()
            }
        };
        let obj = Objective {
            x: x.tensor()?,
            q: Tensor::from_vec(q, (n, k), &Device::Cpu).map_err(candle_err)?,
            n,
            d,
            k,
            lambda: 1.0 / (c * n as f64),
        };
        let mut theta = vec![0.0f64; k * d + k];
        if let Some(h) = init.filter(|h| h.classes == k && h.dim == d) {
            for (t, w) in theta.iter_mut().zip(h.weight.iter().chain(&h.bias)) {
                *t = *w as f64;
            }
        }
        let iters = lbfgs(&|t| obj.eval(t), &mut theta, max_iter, 1e-5)?;
        Ok((
            LinearHead {
                classes: k,
                dim: d,
                weight: theta[..k * d].iter().map(|&v| v as f32).collect(),
                bias: theta[k * d..].iter().map(|&v| v as f32).collect(),
                c,
            },
            iters,
        ))
    }

    /// Fits one head per `C` in `grid` (strongest regularisation first, each warm-started from the last)
    /// and keeps the one with the best dev accuracy (ties: the stronger regularisation). Without dev
    /// examples the largest-but-one `C` of the grid is used.
    pub fn fit_select(
        train: Rows<'_>,
        y: Targets<'_>,
        classes: usize,
        dev: Option<(Rows<'_>, &[u32])>,
        grid: &[f64],
    ) -> Result<(LinearHead, HeadReport)> {
        let mut grid = grid.to_vec();
        grid.sort_by(f64::total_cmp);
        if grid.is_empty() {
            return Err(Error::Usage("the C grid is empty".into()));
        }
        let mut report = HeadReport::default();
        let Some((dx, dy)) = dev.filter(|(dx, _)| !dx.is_empty()) else {
            let c = grid[grid.len().saturating_sub(2)];
            let (h, it) = Self::fit(train, y, classes, c, 500, None)?;
            report.tried.push((c, f64::NAN, it));
            report.chosen_c = c;
            return Ok((h, report));
        };
        let mut best: Option<(f64, LinearHead)> = None;
        let mut prev: Option<LinearHead> = None;
        for &c in &grid {
            let (h, it) = Self::fit(train, y, classes, c, 500, prev.as_ref())?;
            let pred = h.predict(dx)?;
            let acc = pred.iter().zip(dy).filter(|(p, g)| *p == *g).count() as f64
                / dy.len().max(1) as f64;
            report.tried.push((c, acc, it));
            if best.as_ref().is_none_or(|(b, _)| acc > *b + 1e-12) {
                best = Some((acc, h.clone()));
            }
            prev = Some(h);
        }
        let (_, h) = best.ok_or_else(|| Error::Internal("no head fitted".into()))?;
        report.chosen_c = h.c;
        Ok((h, report))
    }

    /// Logits `(n, classes)` row-major.
    pub fn logits(&self, x: Rows<'_>) -> Result<Vec<f32>> {
        if x.dim != self.dim {
            return Err(Error::Internal(format!(
                "head expects {}-dimensional vectors, got {}",
                self.dim, x.dim
            )));
        }
        if x.is_empty() {
            return Ok(Vec::new());
        }
        (|| {
            let w = Tensor::from_slice(&self.weight, (self.classes, self.dim), &Device::Cpu)?;
            let b = Tensor::from_slice(&self.bias, self.classes, &Device::Cpu)?;
            x.tensor()
                .map_err(|e| candle_core::Error::Msg(e.to_string()))?
                .matmul(&w.t()?)?
                .broadcast_add(&b)?
                .flatten_all()?
                .to_vec1::<f32>()
        })()
        .map_err(candle_err)
    }

    /// Class probabilities `(n, classes)` row-major.
    pub fn proba(&self, x: Rows<'_>) -> Result<Vec<f32>> {
        let mut l = self.logits(x)?;
        for row in l.chunks_mut(self.classes) {
            softmax_in_place(row);
        }
        Ok(l)
    }

    pub fn predict(&self, x: Rows<'_>) -> Result<Vec<u32>> {
        let l = self.logits(x)?;
        Ok(l.chunks(self.classes).map(argmax).collect())
    }
}

/// Out-of-fold class probabilities: for each fold `f`, a head fitted (with `c`) on the rows whose
/// `folds[i] != f` predicts the rows of fold `f`. Rows in input order. Classes absent from a fold's
/// training part still get a (small) probability.
pub fn out_of_fold_proba(
    x: Rows<'_>,
    y: &[u32],
    classes: usize,
    folds: &[usize],
    c: f64,
) -> Result<Vec<Vec<f32>>> {
    let n = x.len();
    if y.len() != n || folds.len() != n {
        return Err(Error::Internal(format!(
            "{n} rows, {} labels, {} fold ids",
            y.len(),
            folds.len()
        )));
    }
    let d = x.dim;
    let k = folds.iter().copied().max().map_or(0, |m| m + 1);
    let mut out = vec![Vec::new(); n];
    for f in 0..k {
        let (tr, te): (Vec<usize>, Vec<usize>) = (0..n).partition(|&i| folds[i] != f);
        if tr.is_empty() || te.is_empty() {
            continue;
        }
        let rows = |idx: &[usize]| -> Vec<f32> {
            idx.iter()
                .flat_map(|&i| x.data[i * d..(i + 1) * d].iter().copied())
                .collect()
        };
        let (tx, ex) = (rows(&tr), rows(&te));
        let ty: Vec<u32> = tr.iter().map(|&i| y[i]).collect();
        let (h, _) = LinearHead::fit(
            Rows { data: &tx, dim: d },
            Targets::Hard(&ty),
            classes,
            c,
            500,
            None,
        )?;
        let p = h.proba(Rows { data: &ex, dim: d })?;
        for (j, &i) in te.iter().enumerate() {
            out[i] = p[j * classes..(j + 1) * classes].to_vec();
        }
    }
    Ok(out)
}

pub fn softmax_in_place(row: &mut [f32]) {
    let m = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut s = 0.0;
    for v in row.iter_mut() {
        *v = (*v - m).exp();
        s += *v;
    }
    for v in row.iter_mut() {
        *v /= s;
    }
}

pub fn argmax(row: &[f32]) -> u32 {
    let mut best = 0;
    for (i, v) in row.iter().enumerate() {
        if *v > row[best] {
            best = i;
        }
    }
    best as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Three Gaussian blobs in 4-d, seeded.
    fn blobs(n_per: usize, seed: u64) -> (Vec<f32>, Vec<u32>) {
        let mut rng = crate::bert::SeededRng::new(seed);
        let centres = [
            [2.0, 0.0, 0.0, 1.0],
            [0.0, 2.0, 0.0, -1.0],
            [0.0, 0.0, 2.0, 0.0],
        ];
        let (mut x, mut y) = (Vec::new(), Vec::new());
        for i in 0..n_per * 3 {
            let c = i % 3;
            for v in centres[c] {
                x.push((v + rng.normal()) as f32);
            }
            y.push(c as u32);
        }
        (x, y)
    }

    #[test]
    fn lbfgs_reaches_the_optimum_and_separates_blobs() {
        let (x, y) = blobs(200, 1);
        let rows = Rows { data: &x, dim: 4 };
        let (h, iters) = LinearHead::fit(rows, Targets::Hard(&y), 3, 1.0, 500, None).unwrap();
        assert!(iters < 500, "did not converge");
        // At the optimum the gradient vanishes: check it directly.
        let obj = Objective {
            x: rows.tensor().unwrap(),
            q: {
                let mut q = vec![0.0f32; y.len() * 3];
                for (i, &c) in y.iter().enumerate() {
                    q[i * 3 + c as usize] = 1.0;
                }
                Tensor::from_vec(q, (y.len(), 3), &Device::Cpu).unwrap()
            },
            n: y.len(),
            d: 4,
            k: 3,
            lambda: 1.0 / y.len() as f64,
        };
        let theta: Vec<f64> = h.weight.iter().chain(&h.bias).map(|&v| v as f64).collect();
        let (_, g) = obj.eval(&theta).unwrap();
        let gmax = g.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        assert!(gmax < 1e-4, "gradient {gmax} at the reported optimum");
        let (tx, ty) = blobs(100, 2);
        let pred = h.predict(Rows { data: &tx, dim: 4 }).unwrap();
        let acc = pred.iter().zip(&ty).filter(|(p, g)| p == g).count() as f64 / ty.len() as f64;
        assert!(acc > 0.85, "accuracy {acc}");
        let p = h
            .proba(Rows {
                data: &tx[..4],
                dim: 4,
            })
            .unwrap();
        assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-5);
    }

    #[test]
    fn stronger_regularisation_shrinks_weights_and_dev_picks_c() {
        let (x, y) = blobs(100, 3);
        let rows = Rows { data: &x, dim: 4 };
        let norm = |h: &LinearHead| h.weight.iter().map(|w| w * w).sum::<f32>();
        let (weak, _) = LinearHead::fit(rows, Targets::Hard(&y), 3, 100.0, 500, None).unwrap();
        let (strong, _) = LinearHead::fit(rows, Targets::Hard(&y), 3, 0.01, 500, None).unwrap();
        assert!(norm(&strong) < norm(&weak) / 4.0);
        let (dx, dy) = blobs(50, 4);
        let (h, rep) = LinearHead::fit_select(
            rows,
            Targets::Hard(&y),
            3,
            Some((Rows { data: &dx, dim: 4 }, &dy)),
            &[0.01, 1.0, 100.0],
        )
        .unwrap();
        assert_eq!(rep.tried.len(), 3);
        let best = rep.tried.iter().map(|t| t.1).fold(0.0, f64::max);
        let chosen = rep.tried.iter().find(|t| t.0 == h.c).unwrap().1;
        assert_eq!(chosen, best);
    }

    #[test]
    fn soft_targets_equal_to_one_hot_give_the_hard_fit() {
        let (x, y) = blobs(50, 5);
        let rows = Rows { data: &x, dim: 4 };
        let mut q = vec![0.0f32; y.len() * 3];
        for (i, &c) in y.iter().enumerate() {
            q[i * 3 + c as usize] = 1.0;
        }
        let (a, _) = LinearHead::fit(rows, Targets::Hard(&y), 3, 1.0, 500, None).unwrap();
        let (b, _) = LinearHead::fit(rows, Targets::Soft(&q), 3, 1.0, 500, None).unwrap();
        for (u, v) in a.weight.iter().zip(&b.weight) {
            assert!((u - v).abs() < 1e-5);
        }
    }
}
