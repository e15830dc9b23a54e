//! Fused CPU kernels with their own backward passes for the training path: exact GELU, softmax over the
//! last dimension and LayerNorm. Written out in candle's elementwise ops each costs 5–10 temporaries and
//! as many backward nodes per call; here each is one pass forward and one pass backward, split over
//! candle's thread count. Checked against the written-out ops in `tests/fused.rs` (values and gradients).

use candle_core::{
    CpuStorage, CustomOp1, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor, bail,
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

/// Runs `f(chunk_of_rows_out, first_row)` over `out` split by rows of `row_len`, on candle's threads.
fn par_rows(out: &mut [f32], row_len: usize, f: &(dyn Fn(&mut [f32], usize) + Sync)) {
    let rows = out.len() / row_len.max(1);
    let threads = candle_core::utils::get_num_threads().clamp(1, rows.max(1));
    if threads == 1 || out.len() < 32_768 {
        f(out, 0);
        return;
    }
    let per = rows.div_ceil(threads);
    std::thread::scope(|s| {
        for (i, chunk) in out.chunks_mut(per * row_len).enumerate() {
            s.spawn(move || f(chunk, i * per));
        }
    });
}

/// erf by Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7, below f32 resolution of GELU's outputs).
#[inline]
fn erf(x: f32) -> f32 {
    let s = x.signum();
    let a = x.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * a);
    let y = 1.0
        - (((((1.061_405_4 * t - 1.453_152_1) * t) + 1.421_413_8) * t - 0.284_496_74) * t
            + 0.254_829_6)
            * t
            * (-a * a).exp();
    s * y
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
                let cdf = 0.5 * (1.0 + erf(v * FRAC_1_SQRT_2));
                let pdf = INV_SQRT_2PI * (-0.5 * v * v).exp();
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
