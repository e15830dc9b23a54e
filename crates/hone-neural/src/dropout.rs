//! Training-mode dropout with a seeded mask: one fused op on the CPU (`fused::dropout`,
//! `fused::dropout_add`), candle's elementwise ops elsewhere.

use candle_core::{Result, Tensor};

use crate::fused;
use crate::rng::SeededRng;

/// Training mode: dropout with a seeded mask. Models take `None` for eval mode (dropout is the identity).
#[derive(Debug, Clone)]
pub struct Dropout {
    rng: SeededRng,
}

impl Dropout {
    pub fn new(seed: u64) -> Self {
        Self {
            rng: SeededRng::new(seed),
        }
    }

    /// `x * mask / (1 - p)` with `mask ~ Bernoulli(1 - p)`; the identity when `p == 0`.
    pub fn apply(&mut self, x: &Tensor, p: f64) -> Result<Tensor> {
        if p <= 0.0 {
            return Ok(x.clone());
        }
        let mask = self.mask(x.elem_count(), p);
        if fused::applies(x) && !fused::disabled() {
            return fused::dropout(x, mask);
        }
        let mask = Tensor::from_vec(mask, x.shape(), x.device())?.to_dtype(x.dtype())?;
        x.mul(&mask)
    }

    /// The next mask of `n` values: `0` with probability `p`, else `1 / (1 - p)`.
    pub fn mask(&mut self, n: usize, p: f64) -> Vec<f32> {
        let scale = (1.0 / (1.0 - p)) as f32;
        (0..n)
            .map(|_| if self.rng.uniform() < p { 0.0 } else { scale })
            .collect()
    }

    /// `dropout(x) + residual`, one fused op on the CPU (the same mask as [`Dropout::apply`] would draw).
    pub fn apply_add(&mut self, x: &Tensor, p: f64, residual: &Tensor) -> Result<Tensor> {
        if p > 0.0 && fused::applies(x) && !fused::disabled() {
            let mask = self.mask(x.elem_count(), p);
            return fused::dropout_add(x, mask, residual);
        }
        self.apply(x, p)? + residual
    }
}
