//! Fused CPU kernels with their own backward passes for any model's training path: exact GELU, softmax
//! over the last dimension, LayerNorm, and the log-probability of each row's target (a language
//! model's loss). Written out in candle's elementwise ops each costs 5–10 temporaries and as many
//! backward nodes per call; here each is one pass forward and one pass backward, split over candle's
//! thread count. Checked against the written-out ops in `tests/fused.rs` (values and gradients), and
//! as a whole training step of a tiny BERT in `hone-encoder`'s `tests/fused_paths.rs`.
//!
//! The structural ops here exist for candle's backward pass: it gives every input of every node a
//! zero-filled gradient buffer and adds into it, and computes gradients for constant inputs too (a dropout
//! mask, the attention mask). A linear layer written as reshape → transpose → matmul → broadcast-add →
//! reshape is six nodes; as one op (`linear`, bias folded into gemm) it is one, and the mask and scale of
//! attention fold into its softmax (`masked_softmax`), dropout into one op that keeps its mask
//! (`dropout`, `dropout_add`), and the head split/merge into one copy each (`split_heads`,
//! `merge_heads`).

use rayon::prelude::*;
use std::sync::Arc;

use candle_core::{
    CpuStorage, CustomOp1, CustomOp2, CustomOp3, DType, Layout, Result, Shape, Tensor, bail,
};

fn slice<'a>(s: &'a CpuStorage, l: &Layout, what: &str) -> Result<&'a [f32]> {
    let CpuStorage::F32(v) = s else {
        bail!("{what}: fused kernels take f32")
    };
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&v[a..b]),
        None => bail!("{what}: input must be contiguous"),
    }
}

/// Runs `f(chunk_of_rows_out, first_row)` over `out` split by rows of `row_len` into one chunk per
/// thread, on rayon's pool: the workers gemm has just used, still awake, instead of a fresh OS thread
/// per chunk and per op (spawning cost ~10-30 µs a thread, and the new threads fought the pool's
/// spinning workers for two cores). The chunks are the same whoever runs them, so the results are too.
fn par_rows(out: &mut [f32], row_len: usize, f: &(dyn Fn(&mut [f32], usize) + Sync)) {
    let rows = out.len() / row_len.max(1);
    let threads = candle_core::utils::get_num_threads().clamp(1, rows.max(1));
    if threads == 1 || out.len() < 32_768 {
        f(out, 0);
        return;
    }
    let per = rows.div_ceil(threads);
    out.par_chunks_mut(per * row_len)
        .enumerate()
        .for_each(|(i, chunk)| f(chunk, i * per));
}

/// `e^x` for `x ≤ 0` (Cephes `expf`: round-to-nearest range reduction and its degree-6 polynomial,
/// relative error ~2e-7), branch-free so that the loops around it vectorise; below -87 it returns
/// ~1.6e-38 instead of an underflow. libm's scalar `expf` was ~5% of a MiniLM training step.
#[inline(always)]
fn exp_neg(x: f32) -> f32 {
    let x = x.max(-87.0);
    // 1.5·2²³: adding and subtracting it rounds to the nearest integer with plain float adds.
    let k = (x * std::f32::consts::LOG2_E + 12_582_912.0) - 12_582_912.0;
    let r = x - k * 0.693_359_4 + k * 2.121_944_4e-4;
    let p = (((((1.987_569_1e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2)
        * r
        + 1.666_666_5e-1)
        * r
        + 0.5)
        * r
        * r
        + r
        + 1.0;
    f32::from_bits(((k as i32 + 127) << 23) as u32) * p
}

/// erf by Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7, below f32 resolution of GELU's outputs), given
/// `e = exp(-x²)` (GELU's backward shares it with the normal density).
#[inline(always)]
fn erf_with(x: f32, e: f32) -> f32 {
    let a = x.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * a);
    let y = 1.0
        - (((((1.061_405_4 * t - 1.453_152_1) * t) + 1.421_413_8) * t - 0.284_496_74) * t
            + 0.254_829_6)
            * t
            * e;
    y.copysign(x)
}

#[inline(always)]
fn erf(x: f32) -> f32 {
    erf_with(x, exp_neg(-x * x))
}

const FRAC_1_SQRT_2: f32 = std::f32::consts::FRAC_1_SQRT_2;
const INV_SQRT_2PI: f32 = 0.398_942_3;

/// GELU with the exact (erf) form, as Hugging Face's `"gelu"`.
struct GeluErf;

impl CustomOp1 for GeluErf {
    fn name(&self) -> &'static str {
        "hone-gelu-erf"
    }
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = slice(s, l, "gelu")?;
        let mut out = vec![0f32; x.len()];
        par_rows(&mut out, 1024, &|o, r0| {
            let xs = &x[r0 * 1024..r0 * 1024 + o.len()];
            for (y, &v) in o.iter_mut().zip(xs) {
                *y = 0.5 * v * (1.0 + erf(v * FRAC_1_SQRT_2));
            }
        });
        Ok((CpuStorage::F32(out), l.shape().clone()))
    }
    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(
            arg.contiguous()?
                .apply_op2_no_bwd(&grad.contiguous()?, &GeluErfGrad)?,
        ))
    }
}

/// `grad * gelu'(x)` with `gelu'(x) = Φ(x) + x φ(x)`.
struct GeluErfGrad;

impl CustomOp2 for GeluErfGrad {
    fn name(&self) -> &'static str {
        "hone-gelu-erf-grad"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = slice(s1, l1, "gelu grad x")?;
        let g = slice(s2, l2, "gelu grad")?;
        if x.len() != g.len() {
            bail!("gelu grad: {} values, {} gradients", x.len(), g.len());
        }
        let mut out = vec![0f32; x.len()];
        par_rows(&mut out, 1024, &|o, r0| {
            let base = r0 * 1024;
            for (i, y) in o.iter_mut().enumerate() {
                let v = x[base + i];
                // exp(-v²/2) is both erf(v/√2)'s exp(-(v/√2)²) and the density's.
                let e = exp_neg(-0.5 * v * v);
                let cdf = 0.5 * (1.0 + erf_with(v * FRAC_1_SQRT_2, e));
                let pdf = INV_SQRT_2PI * e;
                *y = g[base + i] * (cdf + v * pdf);
            }
        });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }
}

/// Softmax over the last dimension.
struct Softmax;

impl CustomOp1 for Softmax {
    fn name(&self) -> &'static str {
        "hone-softmax"
    }
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = slice(s, l, "softmax")?;
        let n = l.dims().last().copied().unwrap_or(1).max(1);
        let mut out = vec![0f32; x.len()];
        par_rows(&mut out, n, &|o, r0| {
            for (j, row) in o.chunks_mut(n).enumerate() {
                let xr = &x[(r0 + j) * n..(r0 + j + 1) * n];
                let m = xr.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let mut sum = 0.0;
                for (y, &v) in row.iter_mut().zip(xr) {
                    *y = (v - m).exp();
                    sum += *y;
                }
                let inv = 1.0 / sum;
                row.iter_mut().for_each(|y| *y *= inv);
            }
        });
        Ok((CpuStorage::F32(out), l.shape().clone()))
    }
    fn bwd(&self, _arg: &Tensor, res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(
            res.contiguous()?
                .apply_op2_no_bwd(&grad.contiguous()?, &SoftmaxGrad)?,
        ))
    }
}

/// `y * (g - Σ g·y)` per row.
struct SoftmaxGrad;

impl CustomOp2 for SoftmaxGrad {
    fn name(&self) -> &'static str {
        "hone-softmax-grad"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let y = slice(s1, l1, "softmax grad y")?;
        let g = slice(s2, l2, "softmax grad")?;
        let n = l1.dims().last().copied().unwrap_or(1).max(1);
        let mut out = vec![0f32; y.len()];
        par_rows(&mut out, n, &|o, r0| {
            for (j, row) in o.chunks_mut(n).enumerate() {
                let a = (r0 + j) * n;
                let (yr, gr) = (&y[a..a + n], &g[a..a + n]);
                let dot: f32 = yr.iter().zip(gr).map(|(p, q)| p * q).sum();
                for ((o, &p), &q) in row.iter_mut().zip(yr).zip(gr) {
                    *o = p * (q - dot);
                }
            }
        });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }
}

/// LayerNorm over the last dimension: `(x - mean) / sqrt(var + eps) * w + b`.
struct LayerNorm {
    eps: f32,
}

fn stats(row: &[f32], eps: f32) -> (f32, f32) {
    let n = row.len() as f32;
    let mean = row.iter().sum::<f32>() / n;
    let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / n;
    (mean, 1.0 / (var + eps).sqrt())
}

impl CustomOp3 for LayerNorm {
    fn name(&self) -> &'static str {
        "hone-layer-norm"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = slice(s1, l1, "layer norm x")?;
        let w = slice(s2, l2, "layer norm weight")?;
        let b = slice(s3, l3, "layer norm bias")?;
        let n = w.len();
        if n == 0 || x.len() % n != 0 || b.len() != n {
            bail!("layer norm: {} values for width {n}", x.len());
        }
        let mut out = vec![0f32; x.len()];
        let eps = self.eps;
        par_rows(&mut out, n, &|o, r0| {
            for (j, row) in o.chunks_mut(n).enumerate() {
                let xr = &x[(r0 + j) * n..(r0 + j + 1) * n];
                let (mean, rstd) = stats(xr, eps);
                for (i, y) in row.iter_mut().enumerate() {
                    *y = (xr[i] - mean) * rstd * w[i] + b[i];
                }
            }
        });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }
    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _b: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let n = w.dim(0)?;
        let xs = x.flatten_all()?.to_vec1::<f32>()?;
        let ws = w.to_vec1::<f32>()?;
        let gs = grad.flatten_all()?.to_vec1::<f32>()?;
        let rows = xs.len() / n;
        let mut dx = vec![0f32; xs.len()];
        let eps = self.eps;
        par_rows(&mut dx, n, &|o, r0| {
            let mut gw = vec![0f32; n];
            for (j, row) in o.chunks_mut(n).enumerate() {
                let a = (r0 + j) * n;
                let (xr, gr) = (&xs[a..a + n], &gs[a..a + n]);
                let (mean, rstd) = stats(xr, eps);
                let (mut m1, mut m2) = (0f32, 0f32);
                for i in 0..n {
                    gw[i] = gr[i] * ws[i];
                    let xh = (xr[i] - mean) * rstd;
                    m1 += gw[i];
                    m2 += gw[i] * xh;
                }
                let (m1, m2) = (m1 / n as f32, m2 / n as f32);
                for i in 0..n {
                    let xh = (xr[i] - mean) * rstd;
                    row[i] = rstd * (gw[i] - m1 - xh * m2);
                }
            }
        });
        let mut dw = vec![0f32; n];
        let mut db = vec![0f32; n];
        for r in 0..rows {
            let a = r * n;
            let (mean, rstd) = stats(&xs[a..a + n], eps);
            for i in 0..n {
                let g = gs[a + i];
                dw[i] += g * (xs[a + i] - mean) * rstd;
                db[i] += g;
            }
        }
        let dev = x.device();
        Ok((
            Some(Tensor::from_vec(dx, x.shape(), dev)?),
            Some(Tensor::from_vec(dw, n, dev)?),
            Some(Tensor::from_vec(db, n, dev)?),
        ))
    }
}

/// Exact GELU with a fused backward pass (f32, CPU).
pub fn gelu_erf(x: &Tensor) -> Result<Tensor> {
    x.contiguous()?.apply_op1(GeluErf)
}

/// Softmax over the last dimension with a fused backward pass (f32, CPU).
pub fn softmax_last_dim(x: &Tensor) -> Result<Tensor> {
    x.contiguous()?.apply_op1(Softmax)
}

/// LayerNorm over the last dimension with a fused backward pass (f32, CPU).
pub fn layer_norm(x: &Tensor, w: &Tensor, b: &Tensor, eps: f64) -> Result<Tensor> {
    x.contiguous()?
        .apply_op3(w, b, LayerNorm { eps: eps as f32 })
}

/// `log_softmax(logits)[i, targets[i]]` per row of `logits (n, vocab)`, shape `(n,)`, with a backward
/// pass that recomputes the softmax from the logits: one `(n, vocab)` buffer (the gradient) instead of
/// the half-dozen a written-out log-softmax and gather keep for backward. For a language model's loss,
/// where `vocab` is 49,152 and every kept buffer is hundreds of megabytes.
pub fn picked_log_softmax(logits: &Tensor, targets: &[u32]) -> Result<Tensor> {
    let (n, v) = logits.dims2()?;
    if targets.len() != n {
        bail!("picked log-softmax: {n} rows, {} targets", targets.len());
    }
    if let Some(&t) = targets.iter().find(|&&t| t as usize >= v) {
        bail!("picked log-softmax: target {t} outside a vocabulary of {v}");
    }
    if !applies(logits) || disabled() {
        let t = Tensor::from_slice(targets, (n, 1), logits.device())?;
        let logp = log_softmax_unfused(logits)?;
        return logp.gather(&t, 1)?.squeeze(1);
    }
    logits.contiguous()?.apply_op1(PickedLogSoftmax {
        targets: Arc::new(targets.to_vec()),
    })
}

/// Log-softmax over the last dimension in candle's differentiable ops (the unfused path).
fn log_softmax_unfused(x: &Tensor) -> Result<Tensor> {
    let m = x.max_keepdim(candle_core::D::Minus1)?.detach();
    let shifted = x.broadcast_sub(&m)?;
    let lse = shifted.exp()?.sum_keepdim(candle_core::D::Minus1)?.log()?;
    shifted.broadcast_sub(&lse)
}

/// The row's maximum and `log Σ exp(x - max)`.
fn row_lse(row: &[f32]) -> (f32, f32) {
    let m = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let s: f32 = row.iter().map(|&x| exp_neg(x - m)).sum();
    (m, s.ln())
}

struct PickedLogSoftmax {
    targets: Arc<Vec<u32>>,
}

impl CustomOp1 for PickedLogSoftmax {
    fn name(&self) -> &'static str {
        "hone-picked-log-softmax"
    }
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = slice(s, l, "picked log-softmax")?;
        let v = l.dims().last().copied().unwrap_or(1).max(1);
        let n = x.len() / v;
        let mut out = vec![0f32; n];
        let targets = &self.targets;
        // One output value per row of `v` inputs: split by rows, as many as a thread's share.
        let per_thread = |o: &mut [f32], r0: usize| {
            for (j, y) in o.iter_mut().enumerate() {
                let r = r0 + j;
                let row = &x[r * v..(r + 1) * v];
                let (m, lse) = row_lse(row);
                *y = row[targets[r] as usize] - m - lse;
            }
        };
        par_rows_weighted(&mut out, v, &per_thread);
        Ok((CpuStorage::F32(out), Shape::from(n)))
    }
    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(arg.contiguous()?.apply_op2_no_bwd(
            &grad.contiguous()?,
            &PickedLogSoftmaxGrad {
                targets: self.targets.clone(),
            },
        )?))
    }
}

/// `g_i · (onehot(t_i) - softmax(x_i))`.
struct PickedLogSoftmaxGrad {
    targets: Arc<Vec<u32>>,
}

impl CustomOp2 for PickedLogSoftmaxGrad {
    fn name(&self) -> &'static str {
        "hone-picked-log-softmax-grad"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = slice(s1, l1, "picked log-softmax grad x")?;
        let g = slice(s2, l2, "picked log-softmax grad")?;
        let v = l1.dims().last().copied().unwrap_or(1).max(1);
        if x.len() != g.len() * v {
            bail!(
                "picked log-softmax grad: {} values, {} gradients",
                x.len(),
                g.len()
            );
        }
        let targets = &self.targets;
        let mut out = vec![0f32; x.len()];
        par_rows(&mut out, v, &|o, r0| {
            for (j, row_out) in o.chunks_mut(v).enumerate() {
                let r = r0 + j;
                let row = &x[r * v..(r + 1) * v];
                let (m, lse) = row_lse(row);
                let gi = g[r];
                let shift = m + lse;
                for (y, &z) in row_out.iter_mut().zip(row) {
                    *y = -gi * exp_neg(z - shift);
                }
                row_out[targets[r] as usize] += gi;
            }
        });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }
}

/// [`par_rows`] for an output of one value per input row of `row_cost` values: splits by rows when the
/// input is large, however short the output.
fn par_rows_weighted(out: &mut [f32], row_cost: usize, f: &(dyn Fn(&mut [f32], usize) + Sync)) {
    let rows = out.len();
    let threads = candle_core::utils::get_num_threads().clamp(1, rows.max(1));
    if threads == 1 || rows * row_cost < 32_768 {
        f(out, 0);
        return;
    }
    let per = rows.div_ceil(threads);
    out.par_chunks_mut(per)
        .enumerate()
        .for_each(|(i, chunk)| f(chunk, i * per));
}

/// RMSNorm over the last dimension, `x / sqrt(mean(x²) + eps) · w`, with a fused backward pass that
/// computes `w`'s gradient only when `w` trains (f32, CPU). Written out it is six ops, each a buffer kept
/// for backward, and candle's backward of the broadcast weight is a strided reduction even for a frozen
/// weight.
pub fn rms_norm(x: &Tensor, w: &Tensor, eps: f64) -> Result<Tensor> {
    x.contiguous()?
        .apply_op2(&w.contiguous()?, RmsNorm { eps: eps as f32 })
}

struct RmsNorm {
    eps: f32,
}

/// `1 / sqrt(mean(row²) + eps)`.
#[inline]
fn inv_rms(row: &[f32], eps: f32) -> f32 {
    let ss: f32 = row.iter().map(|v| v * v).sum();
    1.0 / (ss / row.len().max(1) as f32 + eps).sqrt()
}

impl CustomOp2 for RmsNorm {
    fn name(&self) -> &'static str {
        "hone-rms-norm"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = slice(s1, l1, "rms norm x")?;
        let w = slice(s2, l2, "rms norm weight")?;
        let n = w.len();
        if l1.dims().last() != Some(&n) {
            bail!("rms norm: x {:?}, weight {:?}", l1.dims(), l2.dims());
        }
        let eps = self.eps;
        let mut out = vec![0f32; x.len()];
        par_rows(&mut out, n, &|o, r0| {
            for (j, row) in o.chunks_mut(n).enumerate() {
                let xr = &x[(r0 + j) * n..(r0 + j + 1) * n];
                let r = inv_rms(xr, eps);
                for ((y, &v), &g) in row.iter_mut().zip(xr).zip(w) {
                    *y = v * r * g;
                }
            }
        });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }
    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let n = w.elem_count();
        let rows = x.elem_count() / n.max(1);
        let (xd, wd, gd) = (x.detach(), w.detach(), grad.contiguous()?.detach());
        let dx = x
            .track_op()
            .then(|| xd.apply_op3_no_bwd(&wd, &gd, &RmsNormGradX { eps: self.eps }))
            .transpose()?;
        let dw = if w.track_op() {
            // Σ over rows of dy · x̂, one row of partial sums per thread chunk.
            let (xv, gv) = (
                xd.flatten_all()?.to_vec1::<f32>()?,
                gd.flatten_all()?.to_vec1::<f32>()?,
            );
            let mut acc = vec![0f32; n];
            for r in 0..rows {
                let xr = &xv[r * n..(r + 1) * n];
                let ir = inv_rms(xr, self.eps);
                for ((a, &v), &g) in acc.iter_mut().zip(xr).zip(&gv[r * n..(r + 1) * n]) {
                    *a += g * v * ir;
                }
            }
            Some(Tensor::from_vec(acc, w.shape(), w.device())?)
        } else {
            None
        };
        Ok((dx, dw))
    }
}

/// `dx = r · (dy·w − x̂ · mean(dy·w·x̂))` per row, `r = 1/rms(x)`, `x̂ = x·r`.
struct RmsNormGradX {
    eps: f32,
}

impl CustomOp3 for RmsNormGradX {
    fn name(&self) -> &'static str {
        "hone-rms-norm-grad"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = slice(s1, l1, "rms norm grad x")?;
        let w = slice(s2, l2, "rms norm grad weight")?;
        let g = slice(s3, l3, "rms norm grad")?;
        let n = w.len();
        if x.len() != g.len() {
            bail!("rms norm grad: {} values, {} gradients", x.len(), g.len());
        }
        let eps = self.eps;
        let mut out = vec![0f32; x.len()];
        par_rows(&mut out, n, &|o, r0| {
            for (j, row) in o.chunks_mut(n).enumerate() {
                let at = (r0 + j) * n;
                let (xr, gr) = (&x[at..at + n], &g[at..at + n]);
                let r = inv_rms(xr, eps);
                let dot: f32 = xr
                    .iter()
                    .zip(gr)
                    .zip(w)
                    .map(|((&v, &dy), &wv)| dy * wv * v * r)
                    .sum::<f32>()
                    / n as f32;
                for (((y, &v), &dy), &wv) in row.iter_mut().zip(xr).zip(gr).zip(w) {
                    *y = r * (dy * wv - v * r * dot);
                }
            }
        });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }
}

/// Rotary embedding in the half-split layout, `x·cos + rotate_half(x)·sin`, for `x` `(b, h, t, d)` and
/// tables `(1 or b, 1, t, d)`, as one op whose backward gives `x` its gradient and the constant tables
/// none (f32, CPU). Written out it is seven ops and two broadcast gradients computed for the tables.
pub fn rope(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    x.contiguous()?.apply_op3(
        &cos.contiguous()?,
        &sin.contiguous()?,
        Rope { inverse: false },
    )
}

/// `inverse`: the transpose of the rotation (the backward pass), `dy·cos + rotate_halfᵀ(dy·sin)`.
struct Rope {
    inverse: bool,
}

impl CustomOp3 for Rope {
    fn name(&self) -> &'static str {
        "hone-rope"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = slice(s1, l1, "rope x")?;
        let cos = slice(s2, l2, "rope cos")?;
        let sin = slice(s3, l3, "rope sin")?;
        let (b, h, t, d) = l1.shape().dims4()?;
        let (tb, _, tt, td) = l2.shape().dims4()?;
        if tt != t || td != d || !(tb == 1 || tb == b) || l3.dims() != l2.dims() || d % 2 != 0 {
            bail!(
                "rope: x {:?}, tables {:?} and {:?}",
                l1.dims(),
                l2.dims(),
                l3.dims()
            );
        }
        let half = d / 2;
        let inverse = self.inverse;
        let mut out = vec![0f32; x.len()];
        // Rows of d values: row index = ((bi * h) + hi) * t + ti.
        par_rows(&mut out, d, &|o, r0| {
            for (j, row) in o.chunks_mut(d).enumerate() {
                let r = r0 + j;
                let (bi, ti) = (r / (h * t), r % t);
                let tab = ((if tb == 1 { 0 } else { bi }) * t + ti) * d;
                let (c, s) = (&cos[tab..tab + d], &sin[tab..tab + d]);
                let xr = &x[r * d..(r + 1) * d];
                for i in 0..half {
                    let (a, z) = (xr[i], xr[i + half]);
                    if inverse {
                        row[i] = a * c[i] + z * s[i + half];
                        row[i + half] = z * c[i + half] - a * s[i];
                    } else {
                        row[i] = a * c[i] - z * s[i];
                        row[i + half] = z * c[i + half] + a * s[i + half];
                    }
                }
            }
        });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }
    fn bwd(
        &self,
        _x: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let dx = grad.contiguous()?.detach().apply_op3_no_bwd(
            &cos.detach(),
            &sin.detach(),
            &Rope { inverse: true },
        )?;
        Ok((Some(dx), None, None))
    }
}

/// SwiGLU's gate, `silu(gate) · up`, as one op with a fused backward pass (f32, CPU): written out it is
/// two ops and three buffers kept for backward.
pub fn silu_mul(gate: &Tensor, up: &Tensor) -> Result<Tensor> {
    if gate.dims() != up.dims() {
        bail!("silu·mul: gate {:?}, up {:?}", gate.dims(), up.dims());
    }
    gate.contiguous()?.apply_op2(&up.contiguous()?, SiluMul)
}

struct SiluMul;

#[inline(always)]
fn sigmoid(x: f32) -> f32 {
    // exp_neg takes x ≤ 0: σ(x) = 1/(1+e^-x) for x ≥ 0, e^x/(1+e^x) below.
    if x >= 0.0 {
        1.0 / (1.0 + exp_neg(-x))
    } else {
        let e = exp_neg(x);
        e / (1.0 + e)
    }
}

impl CustomOp2 for SiluMul {
    fn name(&self) -> &'static str {
        "hone-silu-mul"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let g = slice(s1, l1, "silu·mul gate")?;
        let u = slice(s2, l2, "silu·mul up")?;
        let mut out = vec![0f32; g.len()];
        par_rows(&mut out, 1024, &|o, r0| {
            let base = r0 * 1024;
            for (i, y) in o.iter_mut().enumerate() {
                let v = g[base + i];
                *y = v * sigmoid(v) * u[base + i];
            }
        });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }
    fn bwd(
        &self,
        gate: &Tensor,
        up: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (g, u, dy) = (gate.detach(), up.detach(), grad.contiguous()?.detach());
        let both = g.apply_op3_no_bwd(&u, &dy, &SiluMulGrad)?;
        let n = g.elem_count();
        let flat = both.flatten_all()?;
        let dg = flat.narrow(0, 0, n)?.reshape(gate.shape())?;
        let du = flat.narrow(0, n, n)?.reshape(up.shape())?;
        Ok((Some(dg), Some(du)))
    }
}

/// Both gradients of `silu(g)·u` in one buffer: `[dy·u·silu'(g) ; dy·silu(g)]`.
struct SiluMulGrad;

impl CustomOp3 for SiluMulGrad {
    fn name(&self) -> &'static str {
        "hone-silu-mul-grad"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let g = slice(s1, l1, "silu·mul grad gate")?;
        let u = slice(s2, l2, "silu·mul grad up")?;
        let dy = slice(s3, l3, "silu·mul grad")?;
        let n = g.len();
        let mut out = vec![0f32; 2 * n];
        let (dg, du) = out.split_at_mut(n);
        let work = |dg: &mut [f32], du: &mut [f32], at: usize| {
            for (i, (a, b)) in dg.iter_mut().zip(du.iter_mut()).enumerate() {
                let v = g[at + i];
                let s = sigmoid(v);
                let silu = v * s;
                *a = dy[at + i] * u[at + i] * s * (1.0 + v * (1.0 - s));
                *b = dy[at + i] * silu;
            }
        };
        let threads = candle_core::utils::get_num_threads().clamp(1, 8);
        if threads == 1 || n < 32_768 {
            work(dg, du, 0);
        } else {
            let per = n.div_ceil(threads);
            dg.par_chunks_mut(per)
                .zip(du.par_chunks_mut(per))
                .enumerate()
                .for_each(|(i, (a, b))| work(a, b, i * per));
        }
        Ok((CpuStorage::F32(out), Shape::from(2 * n)))
    }
}

/// Whether the fused kernels apply: f32 on the CPU.
pub fn applies(x: &Tensor) -> bool {
    x.dtype() == candle_core::DType::F32 && x.device().is_cpu()
}

/// `HONE_UNFUSED=1` turns the fused kernels off (the written-out ops run instead), read once: an escape
/// hatch and the A/B switch for measuring them.
pub fn disabled() -> bool {
    static OFF: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *OFF.get_or_init(|| std::env::var_os("HONE_UNFUSED").is_some_and(|v| v != "0"))
}

fn gemm_parallelism() -> gemm::Parallelism {
    match candle_core::utils::get_num_threads() {
        0 | 1 => gemm::Parallelism::None,
        n => gemm::Parallelism::Rayon(n),
    }
}

/// `dst (rows × out) = [dst +] x (rows × in) · Wᵀ (in × out)`, Wᵀ read through W's strides; `add`
/// keeps what `dst` holds (a bias) and adds to it.
fn gemm_x_wt(
    dst: &mut [f32],
    x: &[f32],
    w: &[f32],
    rows: usize,
    out_f: usize,
    in_f: usize,
    add: bool,
) {
    assert!(dst.len() >= rows * out_f && x.len() >= rows * in_f && w.len() >= out_f * in_f);
    // SAFETY: the assert above: every pointer covers the extent gemm reads or writes.
    unsafe {
        gemm::gemm(
            rows,
            out_f,
            in_f,
            dst.as_mut_ptr(),
            1,
            out_f as isize,
            add,
            x.as_ptr(),
            1,
            in_f as isize,
            w.as_ptr(),
            in_f as isize,
            1,
            if add { 1.0f32 } else { 0.0 },
            1.0f32,
            false,
            false,
            false,
            gemm_parallelism(),
        );
    }
}

/// `x · Wᵀ + b` over the last dimension of `x`, the bias folded into the gemm.
struct Linear;

impl CustomOp3 for Linear {
    fn name(&self) -> &'static str {
        "hone-linear"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = slice(s1, l1, "linear x")?;
        let w = slice(s2, l2, "linear weight")?;
        let b = slice(s3, l3, "linear bias")?;
        let (out_f, in_f) = l2.shape().dims2()?;
        if b.len() != out_f || l1.dims().last() != Some(&in_f) {
            bail!(
                "linear: x {:?}, weight {:?}, bias {}",
                l1.dims(),
                l2.dims(),
                b.len()
            );
        }
        let rows = x.len() / in_f.max(1);
        let mut dst = Vec::with_capacity(rows * out_f);
        for _ in 0..rows {
            dst.extend_from_slice(b);
        }
        gemm_x_wt(&mut dst, x, w, rows, out_f, in_f, true);
        let mut dims = l1.dims().to_vec();
        *dims.last_mut().unwrap_or(&mut 0) = out_f;
        Ok((CpuStorage::F32(dst), Shape::from(dims)))
    }
    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _b: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (out_f, in_f) = w.dims2()?;
        let rows = x.elem_count() / in_f.max(1);
        let g = grad.contiguous()?.reshape((rows, out_f))?;
        let x2 = x.detach().reshape((rows, in_f))?;
        let dx = g.matmul(&w.detach())?.reshape(x.shape())?;
        let dw = g.t()?.matmul(&x2)?;
        // Column sums of g as a (1 × rows) · (rows × out) gemm: faster than candle's strided reduce.
        let ones = Tensor::ones((1, rows), DType::F32, g.device())?;
        let db = ones.matmul(&g)?.reshape(out_f)?;
        Ok((Some(dx), Some(dw), Some(db)))
    }
}

/// `x · Wᵀ + b` over the last dimension (`weight` `(out, in)` as in PyTorch), one node in the graph
/// (f32, CPU).
pub fn linear(x: &Tensor, weight: &Tensor, bias: &Tensor) -> Result<Tensor> {
    x.contiguous()?
        .apply_op3(&weight.contiguous()?, &bias.contiguous()?, Linear)
}

/// `x · Wᵀ` over the last dimension (`weight` `(out, in)` as in PyTorch), one node in the graph whose
/// backward computes the weight's gradient only when the weight is trained. Candle's matmul computes
/// the gradient of both factors whatever they are: for a LoRA model that is every frozen weight's
/// gradient (the size of the model), computed and kept until backward ends (f32, CPU).
pub fn linear_no_bias(x: &Tensor, weight: &Tensor) -> Result<Tensor> {
    x.contiguous()?
        .apply_op2(&weight.contiguous()?, LinearNoBias { few_rows: false })
}

/// [`linear_no_bias`] for a generation step: up to [`crate::skinny::MAX_ROWS`] rows, the forward
/// product goes through [`crate::skinny`] instead of gemm (more rows, a prompt's prefill, keep gemm);
/// the same backward. Its sums run in a
/// different order from gemm's, so training, whose results must not depend on how a batch is split,
/// keeps [`linear_no_bias`].
pub fn linear_few_rows(x: &Tensor, weight: &Tensor) -> Result<Tensor> {
    x.contiguous()?
        .apply_op2(&weight.contiguous()?, LinearNoBias { few_rows: true })
}

struct LinearNoBias {
    few_rows: bool,
}

impl CustomOp2 for LinearNoBias {
    fn name(&self) -> &'static str {
        "hone-linear-no-bias"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = slice(s1, l1, "linear x")?;
        let w = slice(s2, l2, "linear weight")?;
        let (out_f, in_f) = l2.shape().dims2()?;
        if l1.dims().last() != Some(&in_f) {
            bail!("linear: x {:?}, weight {:?}", l1.dims(), l2.dims());
        }
        let rows = x.len() / in_f.max(1);
        let mut dst = vec![0f32; rows * out_f];
        if self.few_rows && rows <= crate::skinny::MAX_ROWS {
            crate::skinny::x_wt(&mut dst, x, w, rows, out_f, in_f);
        } else {
            gemm_x_wt(&mut dst, x, w, rows, out_f, in_f, false);
        }
        let mut dims = l1.dims().to_vec();
        *dims.last_mut().unwrap_or(&mut 0) = out_f;
        Ok((CpuStorage::F32(dst), Shape::from(dims)))
    }
    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (out_f, in_f) = w.dims2()?;
        let rows = x.elem_count() / in_f.max(1);
        let g = grad.contiguous()?.reshape((rows, out_f))?;
        let dx = x
            .track_op()
            .then(|| g.matmul(&w.detach())?.reshape(x.shape()))
            .transpose()?;
        let dw = w
            .track_op()
            .then(|| g.t()?.matmul(&x.detach().reshape((rows, in_f))?))
            .transpose()?;
        Ok((dx, dw))
    }
}

/// `softmax(scale · x + mask)` over the last dimension of attention scores `(batch, heads, q, k)` with an
/// additive mask `(batch, k)`; the mask gets no gradient.
struct MaskedSoftmax {
    scale: f32,
}

impl CustomOp2 for MaskedSoftmax {
    fn name(&self) -> &'static str {
        "hone-masked-softmax"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = slice(s1, l1, "masked softmax x")?;
        let m = slice(s2, l2, "masked softmax mask")?;
        let n = l1.dims().last().copied().unwrap_or(0);
        let batch = l1.dims().first().copied().unwrap_or(0);
        // The mask row of score row `r`: `(batch, k)` has one row per batch item; `(batch | 1, q, k)`
        // one per query position of each item (or of all items), the heads sharing it.
        let (mb, q, k) = match *l2.dims() {
            [b, k] => (b, 1, k),
            [b, q, k] => (b, q, k),
            _ => bail!(
                "masked softmax: mask {:?} is not 2- or 3-dimensional",
                l2.dims()
            ),
        };
        let fits = n == k
            && q > 0
            && k > 0
            && batch > 0
            && (mb == batch || mb == 1)
            && x.len() % (batch * q * k) == 0;
        if !fits {
            bail!(
                "masked softmax: scores {:?}, mask {:?}",
                l1.dims(),
                l2.dims()
            );
        }
        let rows_per_batch = x.len() / (batch * k);
        let mask_row = |r: usize| {
            let item = if mb == 1 { 0 } else { r / rows_per_batch };
            item * q + r % q
        };
        let scale = self.scale;
        let mut out = vec![0f32; x.len()];
        par_rows(&mut out, n, &|o, r0| {
            for (j, row) in o.chunks_mut(n).enumerate() {
                let r = r0 + j;
                let xr = &x[r * n..(r + 1) * n];
                let mr = &m[mask_row(r) * n..(mask_row(r) + 1) * n];
                let mut mx = f32::NEG_INFINITY;
                for ((y, &v), &a) in row.iter_mut().zip(xr).zip(mr) {
                    *y = v * scale + a;
                    mx = mx.max(*y);
                }
                let mut sum = 0.0;
                for y in row.iter_mut() {
                    *y = (*y - mx).exp();
                    sum += *y;
                }
                let inv = 1.0 / sum;
                row.iter_mut().for_each(|y| *y *= inv);
            }
        });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }
    fn bwd(
        &self,
        _x: &Tensor,
        _mask: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let dx = res
            .contiguous()?
            .apply_op2_no_bwd(&grad.contiguous()?, &SoftmaxGrad)?;
        Ok((Some((dx * self.scale as f64)?), None))
    }
}

/// `softmax(scale · scores + mask)` over the last dimension; `scores` `(batch, heads, q, k)`, `mask`
/// additive (0 for tokens, a large negative number for padding), constant (f32, CPU): `(batch, k)` (an
/// encoder's padding) or `(batch | 1, q, k)` (a decoder's causal mask with left padding).
pub fn masked_softmax(scores: &Tensor, mask: &Tensor, scale: f64) -> Result<Tensor> {
    scores.contiguous()?.apply_op2(
        &mask.contiguous()?,
        MaskedSoftmax {
            scale: scale as f32,
        },
    )
}

/// Attention over packed sequences, eval only: `q`, `k`, `v` `(tokens, heads·d)` hold sequence `i`'s
/// tokens at rows `starts[i]..starts[i + 1]`, and each token attends to the tokens of its own sequence:
/// `softmax(scale · q kᵀ) v` per sequence and head, written to `(tokens, heads·d)`. It replaces, for a
/// packed batch, the scatter into the padded grid, the head split, two batched matmuls (candle runs
/// them one `(batch, head)` pair at a time on the calling thread), the masked softmax, the head merge
/// and the gather back; sequences run in parallel on rayon's pool. No backward pass: training keeps
/// the grid (its attention dropout needs the probabilities as a tensor).
pub fn packed_attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    starts: Arc<Vec<usize>>,
    heads: usize,
    scale: f64,
) -> Result<Tensor> {
    q.contiguous()?.apply_op3_no_bwd(
        &k.contiguous()?,
        &v.contiguous()?,
        &PackedAttention {
            starts,
            heads,
            scale: scale as f32,
        },
    )
}

/// Dot product in eight running sums, so that it vectorises (a single running sum is a chain of
/// dependent adds the compiler may not reorder).
#[inline(always)]
fn dot8(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let split = n / 8 * 8;
    let mut acc = [0f32; 8];
    for (x, y) in a[..split].chunks_exact(8).zip(b[..split].chunks_exact(8)) {
        for l in 0..8 {
            acc[l] += x[l] * y[l];
        }
    }
    let tail: f32 = a[split..n]
        .iter()
        .zip(&b[split..n])
        .map(|(x, y)| x * y)
        .sum();
    acc.iter().sum::<f32>() + tail
}

struct PackedAttention {
    starts: Arc<Vec<usize>>,
    heads: usize,
    scale: f32,
}

impl CustomOp3 for PackedAttention {
    fn name(&self) -> &'static str {
        "hone-packed-attention"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let q = slice(s1, l1, "packed attention q")?;
        let k = slice(s2, l2, "packed attention k")?;
        let v = slice(s3, l3, "packed attention v")?;
        let (tokens, width) = l1.shape().dims2()?;
        let starts = &self.starts;
        let fits = l2.dims() == l1.dims()
            && l3.dims() == l1.dims()
            && self.heads > 0
            && width % self.heads == 0
            && starts.first() == Some(&0)
            && starts.last() == Some(&tokens)
            && starts.windows(2).all(|w| w[0] <= w[1]);
        if !fits {
            bail!(
                "packed attention: q {:?}, k {:?}, v {:?}, {} heads, sequence starts ending at {:?}",
                l1.dims(),
                l2.dims(),
                l3.dims(),
                self.heads,
                starts.last()
            );
        }
        let d = width / self.heads;
        let mut out = vec![0f32; tokens * width];
        // One output block per sequence (its rows are contiguous).
        let mut blocks = Vec::with_capacity(starts.len().saturating_sub(1));
        let mut rest = out.as_mut_slice();
        for w in starts.windows(2) {
            let (block, tail) = rest.split_at_mut((w[1] - w[0]) * width);
            blocks.push((w[0], block));
            rest = tail;
        }
        let scale = self.scale;
        let heads = self.heads;
        let one = |(start, block): (usize, &mut [f32])| {
            let len = block.len() / width.max(1);
            let mut p = vec![0f32; len];
            for h in 0..heads {
                let col = h * d;
                for i in 0..len {
                    let qi = &q[(start + i) * width + col..][..d];
                    let mut mx = f32::NEG_INFINITY;
                    for (j, pj) in p.iter_mut().enumerate() {
                        let kj = &k[(start + j) * width + col..][..d];
                        *pj = dot8(qi, kj) * scale;
                        mx = mx.max(*pj);
                    }
                    let mut sum = 0.0;
                    for pj in p.iter_mut() {
                        *pj = (*pj - mx).exp();
                        sum += *pj;
                    }
                    let inv = 1.0 / sum;
                    let o = &mut block[i * width + col..][..d];
                    for (j, &pj) in p.iter().enumerate() {
                        let w = pj * inv;
                        let vj = &v[(start + j) * width + col..][..d];
                        for (oo, &vv) in o.iter_mut().zip(vj) {
                            *oo += w * vv;
                        }
                    }
                }
            }
        };
        if candle_core::utils::get_num_threads() > 1 && blocks.len() > 1 {
            blocks.into_par_iter().for_each(one);
        } else {
            blocks.into_iter().for_each(one);
        }
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }
}

/// Multiplies by a fixed mask (dropout's `0` or `1 / (1 - p)`); the mask is the op's, not a tensor.
struct MaskMul {
    mask: Arc<Vec<f32>>,
}

impl CustomOp1 for MaskMul {
    fn name(&self) -> &'static str {
        "hone-dropout"
    }
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = slice(s, l, "dropout")?;
        if x.len() != self.mask.len() {
            bail!("dropout: {} values, mask of {}", x.len(), self.mask.len());
        }
        let out = x.iter().zip(self.mask.iter()).map(|(a, m)| a * m).collect();
        Ok((CpuStorage::F32(out), l.shape().clone()))
    }
    fn bwd(&self, _x: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let op = MaskMul {
            mask: self.mask.clone(),
        };
        Ok(Some(grad.contiguous()?.apply_op1_no_bwd(&op)?))
    }
}

/// `x · mask + residual` (dropout then the residual add).
struct MaskMulAdd {
    mask: Arc<Vec<f32>>,
}

impl CustomOp2 for MaskMulAdd {
    fn name(&self) -> &'static str {
        "hone-dropout-add"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = slice(s1, l1, "dropout-add x")?;
        let r = slice(s2, l2, "dropout-add residual")?;
        if x.len() != self.mask.len() || r.len() != x.len() {
            bail!(
                "dropout-add: {} values, {} residual, mask of {}",
                x.len(),
                r.len(),
                self.mask.len()
            );
        }
        let out = x
            .iter()
            .zip(self.mask.iter())
            .zip(r)
            .map(|((a, m), c)| a * m + c)
            .collect();
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }
    fn bwd(
        &self,
        _x: &Tensor,
        _r: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let op = MaskMul {
            mask: self.mask.clone(),
        };
        let g = grad.contiguous()?;
        Ok((Some(g.apply_op1_no_bwd(&op)?), Some(g)))
    }
}

/// `x · mask` with a fixed mask of `x`'s size (f32, CPU).
pub fn dropout(x: &Tensor, mask: Vec<f32>) -> Result<Tensor> {
    x.contiguous()?.apply_op1(MaskMul {
        mask: Arc::new(mask),
    })
}

/// `x · mask + residual` with a fixed mask of `x`'s size (f32, CPU).
pub fn dropout_add(x: &Tensor, mask: Vec<f32>, residual: &Tensor) -> Result<Tensor> {
    x.contiguous()?.apply_op2(
        &residual.contiguous()?,
        MaskMulAdd {
            mask: Arc::new(mask),
        },
    )
}

/// `(b, s, heads·d)` ↔ `(b, heads, s, d)`, contiguous.
struct Heads {
    heads: usize,
    split: bool,
}

impl CustomOp1 for Heads {
    fn name(&self) -> &'static str {
        "hone-heads"
    }
    fn cpu_fwd(&self, st: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = slice(st, l, "heads")?;
        let nh = self.heads;
        let (b, s, d, shape): (usize, usize, usize, Shape) = if self.split {
            let (b, s, h) = l.shape().dims3()?;
            if nh == 0 || h % nh != 0 {
                bail!("heads: width {h} is not a multiple of {nh} heads");
            }
            (b, s, h / nh, Shape::from((b, nh, s, h / nh)))
        } else {
            let (b, n, s, d) = l.shape().dims4()?;
            if n != nh {
                bail!("heads: {n} heads, expected {nh}");
            }
            (b, s, d, Shape::from((b, s, nh * d)))
        };
        let mut out = vec![0f32; x.len()];
        for bi in 0..b {
            for si in 0..s {
                for hi in 0..nh {
                    let merged = ((bi * s + si) * nh + hi) * d;
                    let split = ((bi * nh + hi) * s + si) * d;
                    let (src, dst) = if self.split {
                        (merged, split)
                    } else {
                        (split, merged)
                    };
                    out[dst..dst + d].copy_from_slice(&x[src..src + d]);
                }
            }
        }
        Ok((CpuStorage::F32(out), shape))
    }
    fn bwd(&self, _x: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let inverse = Heads {
            heads: self.heads,
            split: !self.split,
        };
        Ok(Some(grad.contiguous()?.apply_op1_no_bwd(&inverse)?))
    }
}

/// `(b, s, heads·d)` → `(b, heads, s, d)` contiguous (f32, CPU).
pub fn split_heads(x: &Tensor, heads: usize) -> Result<Tensor> {
    x.contiguous()?.apply_op1(Heads { heads, split: true })
}

/// `(b, heads, s, d)` → `(b, s, heads·d)` contiguous (f32, CPU).
pub fn merge_heads(x: &Tensor, heads: usize) -> Result<Tensor> {
    x.contiguous()?.apply_op1(Heads {
        heads,
        split: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packed_attention_is_attention_within_each_sequence() {
        // Sequences of 3, 0 (empty), 1 and 9 tokens; 2 heads of 10 (the dot product's 8 lanes and a tail).
        let (heads, d) = (2, 10);
        let width = heads * d;
        let starts = vec![0usize, 3, 3, 4, 13];
        let tokens = 13;
        let val = |seed: f32, i: usize| ((i as f32 * 0.37 + seed).sin() * 1.3) as f64;
        let q: Vec<f64> = (0..tokens * width).map(|i| val(0.1, i)).collect();
        let k: Vec<f64> = (0..tokens * width).map(|i| val(1.7, i)).collect();
        let v: Vec<f64> = (0..tokens * width).map(|i| val(2.3, i)).collect();
        let scale = 0.45;
        let t = |x: &[f64]| {
            let f: Vec<f32> = x.iter().map(|&a| a as f32).collect();
            Tensor::from_vec(f, (tokens, width), &candle_core::Device::Cpu).unwrap()
        };
        let got = packed_attention(
            &t(&q),
            &t(&k),
            &t(&v),
            Arc::new(starts.clone()),
            heads,
            scale,
        )
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
        // Reference in f64: each token attends to its own sequence only.
        let mut want = vec![0f64; tokens * width];
        for w in starts.windows(2) {
            for h in 0..heads {
                for i in w[0]..w[1] {
                    let s: Vec<f64> = (w[0]..w[1])
                        .map(|j| {
                            (0..d)
                                .map(|c| q[i * width + h * d + c] * k[j * width + h * d + c])
                                .sum::<f64>()
                                * scale
                        })
                        .collect();
                    let mx = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                    let e: Vec<f64> = s.iter().map(|x| (x - mx).exp()).collect();
                    let z: f64 = e.iter().sum();
                    for c in 0..d {
                        want[i * width + h * d + c] = (w[0]..w[1])
                            .map(|j| e[j - w[0]] / z * v[j * width + h * d + c])
                            .sum();
                    }
                }
            }
        }
        let worst = got
            .iter()
            .zip(&want)
            .map(|(a, b)| (*a as f64 - b).abs())
            .fold(0.0, f64::max);
        assert!(worst < 1e-5, "{worst}");
        let bad = packed_attention(&t(&q), &t(&k), &t(&v), Arc::new(vec![0, 5]), heads, scale);
        assert!(bad.is_err(), "starts must end at the token count");
    }

    #[test]
    fn exp_neg_matches_expf_to_float_precision() {
        let mut worst = 0.0f64;
        for i in 0..=870_000 {
            let x = -(i as f32) * 1e-4;
            let want = (x as f64).exp();
            let got = exp_neg(x) as f64;
            worst = worst.max((got - want).abs() / want);
        }
        assert!(worst < 4e-7, "relative error {worst}");
        assert_eq!(exp_neg(0.0), 1.0);
        assert!(exp_neg(-1000.0) < 2e-38, "underflow is clamped to ~0");
    }
}
