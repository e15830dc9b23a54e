//! `x · Wᵀ` for a few rows of `x` (a generation step: one row per sequence), each weight row read from
//! memory once and dotted with every row of `x`, which stays in cache.
//!
//! A decoding step of a batch of 8 reads every weight of the model for 8 rows of work. gemm packs
//! both operands into panels sized for large products, and with its AVX-512 kernels batch-8
//! generation of SmolLM2-135M ran ~20% slower than with its AVX2 ones (an A/B of `lm_speed`, see
//! ARCHITECTURE.md). Here the weight streams through once, in the row-major order it is
//! stored in, four rows of `x` per pass over a weight row, on AVX2 + FMA when the CPU has them
//! (detected at run time) and portable code otherwise.

use rayon::prelude::*;

/// The most rows of `x` this path takes; more rows than this are gemm's job.
pub const MAX_ROWS: usize = 16;

/// `dst (rows × out) = x (rows × in) · Wᵀ` with `W (out × in)` row-major, split by output features
/// over candle's thread count. Panics if a slice is shorter than its shape (callers check shapes).
pub fn x_wt(dst: &mut [f32], x: &[f32], w: &[f32], rows: usize, out_f: usize, in_f: usize) {
    assert!(dst.len() >= rows * out_f && x.len() >= rows * in_f && w.len() >= out_f * in_f);
    if rows == 0 || out_f == 0 {
        return;
    }
    // Computed as (out × rows), one contiguous block per task, then transposed into place.
    let mut t = vec![0f32; out_f * rows];
    let threads = candle_core::utils::get_num_threads().max(1);
    // Small products are not worth waking other threads for.
    let per = if threads == 1 || out_f * in_f < 1 << 16 {
        out_f
    } else {
        out_f.div_ceil(threads * 4).max(16)
    };
    let dot_rows = kernel();
    let block = |(b, chunk): (usize, &mut [f32])| {
        let first = b * per;
        for (o, out) in chunk.chunks_mut(rows).enumerate() {
            let wr = &w[(first + o) * in_f..(first + o + 1) * in_f];
            dot_rows(out, x, wr, in_f);
        }
    };
    if per >= out_f {
        t.chunks_mut(per * rows).enumerate().for_each(block);
    } else {
        t.par_chunks_mut(per * rows).enumerate().for_each(block);
    }
    for (o, col) in t.chunks(rows).enumerate() {
        for (r, v) in col.iter().enumerate() {
            dst[r * out_f + o] = *v;
        }
    }
}

/// `out[r] = x[r] · w` for every row `r` of `x` (rows of `n`); `x` holds at least `out.len()` rows
/// and `w` at least `n` values.
type DotRows = fn(&mut [f32], &[f32], &[f32], usize);

/// The [`DotRows`] kernel for this CPU, chosen once per product rather than once per weight row.
fn kernel() -> DotRows {
    #[cfg(target_arch = "x86_64")]
    if avx2_fma() {
        return |out, x, w, n| {
            assert!(x.len() >= out.len() * n && w.len() >= n);
            // SAFETY: `kernel` returns this only when the CPU has AVX2 and FMA; the assert above
            // covers every value the kernel reads.
            unsafe { avx2::dot_rows(out, x, w, n) }
        };
    }
    dot_rows_portable
}

fn dot_rows_portable(out: &mut [f32], x: &[f32], w: &[f32], n: usize) {
    for (r, o) in out.iter_mut().enumerate() {
        *o = dot_portable(&x[r * n..(r + 1) * n], w);
    }
}

fn dot_portable(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(p, q)| p * q)
        .sum();
    for (pa, pb) in ca.zip(cb) {
        for j in 0..8 {
            acc[j] += pa[j] * pb[j];
        }
    }
    acc.iter().sum::<f32>() + tail
}

#[cfg(target_arch = "x86_64")]
fn avx2_fma() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    })
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    #[target_feature(enable = "avx2,fma")]
    unsafe fn hsum(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
        _mm_cvtss_f32(s)
    }

    /// Four rows of `x` against one weight row: each 8 weights loaded once, two accumulators per row
    /// (eight independent FMA chains keep both FMA units busy).
    #[target_feature(enable = "avx2,fma")]
    unsafe fn four(out: &mut [f32], x: *const f32, w: *const f32, n: usize) {
        unsafe {
            let (x0, x1, x2, x3) = (x, x.add(n), x.add(2 * n), x.add(3 * n));
            let mut a = [_mm256_setzero_ps(); 8];
            let mut i = 0;
            while i + 16 <= n {
                let w0 = _mm256_loadu_ps(w.add(i));
                let w1 = _mm256_loadu_ps(w.add(i + 8));
                a[0] = _mm256_fmadd_ps(_mm256_loadu_ps(x0.add(i)), w0, a[0]);
                a[1] = _mm256_fmadd_ps(_mm256_loadu_ps(x0.add(i + 8)), w1, a[1]);
                a[2] = _mm256_fmadd_ps(_mm256_loadu_ps(x1.add(i)), w0, a[2]);
                a[3] = _mm256_fmadd_ps(_mm256_loadu_ps(x1.add(i + 8)), w1, a[3]);
                a[4] = _mm256_fmadd_ps(_mm256_loadu_ps(x2.add(i)), w0, a[4]);
                a[5] = _mm256_fmadd_ps(_mm256_loadu_ps(x2.add(i + 8)), w1, a[5]);
                a[6] = _mm256_fmadd_ps(_mm256_loadu_ps(x3.add(i)), w0, a[6]);
                a[7] = _mm256_fmadd_ps(_mm256_loadu_ps(x3.add(i + 8)), w1, a[7]);
                i += 16;
            }
            let mut s = [
                hsum(_mm256_add_ps(a[0], a[1])),
                hsum(_mm256_add_ps(a[2], a[3])),
                hsum(_mm256_add_ps(a[4], a[5])),
                hsum(_mm256_add_ps(a[6], a[7])),
            ];
            while i < n {
                let wi = *w.add(i);
                s[0] += *x0.add(i) * wi;
                s[1] += *x1.add(i) * wi;
                s[2] += *x2.add(i) * wi;
                s[3] += *x3.add(i) * wi;
                i += 1;
            }
            out[..4].copy_from_slice(&s);
        }
    }

    #[target_feature(enable = "avx2,fma")]
    unsafe fn one(x: *const f32, w: *const f32, n: usize) -> f32 {
        unsafe {
            let (mut a0, mut a1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
            let mut i = 0;
            while i + 16 <= n {
                a0 = _mm256_fmadd_ps(_mm256_loadu_ps(x.add(i)), _mm256_loadu_ps(w.add(i)), a0);
                a1 = _mm256_fmadd_ps(
                    _mm256_loadu_ps(x.add(i + 8)),
                    _mm256_loadu_ps(w.add(i + 8)),
                    a1,
                );
                i += 16;
            }
            let mut s = hsum(_mm256_add_ps(a0, a1));
            while i < n {
                s += *x.add(i) * *w.add(i);
                i += 1;
            }
            s
        }
    }

    /// `out[r] = x[r] · w`; the caller guarantees AVX2 + FMA and `x` holding `out.len()` rows of `n`,
    /// `w` holding `n` values.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn dot_rows(out: &mut [f32], x: &[f32], w: &[f32], n: usize) {
        debug_assert!(x.len() >= out.len() * n && w.len() >= n);
        let rows = out.len();
        let mut r = 0;
        unsafe {
            while r + 4 <= rows {
                four(&mut out[r..r + 4], x.as_ptr().add(r * n), w.as_ptr(), n);
                r += 4;
            }
            while r < rows {
                out[r] = one(x.as_ptr().add(r * n), w.as_ptr(), n);
                r += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 24) as f32) - 0.5
            })
            .collect()
    }

    #[test]
    fn matches_a_written_out_product_for_every_row_count_and_ragged_widths() {
        for rows in 1..=MAX_ROWS {
            for (out_f, in_f) in [(1, 1), (7, 15), (33, 16), (300, 577), (70, 1536)] {
                let x = values(rows * in_f, rows as u64);
                let w = values(out_f * in_f, 99 + in_f as u64);
                let mut dst = vec![f32::NAN; rows * out_f];
                x_wt(&mut dst, &x, &w, rows, out_f, in_f);
                for r in 0..rows {
                    for o in 0..out_f {
                        let want: f64 = (0..in_f)
                            .map(|i| x[r * in_f + i] as f64 * w[o * in_f + i] as f64)
                            .sum();
                        let got = dst[r * out_f + o] as f64;
                        assert!(
                            (got - want).abs() <= 1e-5 * (1.0 + want.abs()),
                            "rows {rows} out {out_f} in {in_f} at ({r}, {o}): {got} vs {want}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn the_portable_dot_agrees_with_the_vector_kernel() {
        let (a, b) = (values(1000, 1), values(1000, 2));
        let want: f64 = a.iter().zip(&b).map(|(p, q)| *p as f64 * *q as f64).sum();
        assert!((dot_portable(&a, &b) as f64 - want).abs() < 1e-4);
        let mut out = [0f32; 1];
        kernel()(&mut out, &a, &b, 1000);
        assert!((out[0] as f64 - want).abs() < 1e-4);
    }
}
