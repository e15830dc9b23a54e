//! The fused kernels agree with the same functions written in candle's differentiable ops, in value and in
//! gradient (for every input), on odd shapes and at more than one thread-chunk.

use candle_core::{D, Device, Tensor, Var};
use hone_encoder::bert::SeededRng;
use hone_encoder::fused;

fn randn(shape: &[usize], seed: u64, scale: f64) -> Tensor {
    let mut r = SeededRng::new(seed);
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n).map(|_| (r.normal() * scale) as f32).collect();
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}

fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

/// Value and input gradient of `f` under the loss `sum(f(x) * r)`.
fn run(f: &dyn Fn(&Tensor) -> Tensor, x: &Tensor, r: &Tensor) -> (Tensor, Tensor) {
    let v = Var::from_tensor(x).unwrap();
    let y = f(v.as_tensor());
    let loss = (&y * r).unwrap().sum_all().unwrap();
    let g = loss.backward().unwrap();
    (y, g.get(v.as_tensor()).unwrap().clone())
}

#[test]
fn gelu_matches_the_erf_form() {
    for (shape, seed) in [(vec![3usize, 5, 7], 1u64), (vec![70, 1100], 2)] {
        let x = randn(&shape, seed, 2.0);
        let r = randn(&shape, seed + 10, 1.0);
        let (y1, g1) = run(&|t| fused::gelu_erf(t).unwrap(), &x, &r);
        let (y2, g2) = run(&|t| t.gelu_erf().unwrap(), &x, &r);
        assert!(max_diff(&y1, &y2) < 2e-6, "value {}", max_diff(&y1, &y2));
        assert!(max_diff(&g1, &g2) < 2e-5, "gradient {}", max_diff(&g1, &g2));
    }
}

#[test]
fn softmax_matches_exp_over_sum() {
    for (shape, seed) in [(vec![2usize, 3, 5], 3u64), (vec![4, 12, 64, 64], 4)] {
        let x = randn(&shape, seed, 3.0);
        let r = randn(&shape, seed + 10, 1.0);
        let reference = |t: &Tensor| {
            let m = t.max_keepdim(D::Minus1).unwrap().detach();
            let e = t.broadcast_sub(&m).unwrap().exp().unwrap();
            let s = e.sum_keepdim(D::Minus1).unwrap();
            e.broadcast_div(&s).unwrap()
        };
        let (y1, g1) = run(&|t| fused::softmax_last_dim(t).unwrap(), &x, &r);
        let (y2, g2) = run(&reference, &x, &r);
        assert!(max_diff(&y1, &y2) < 1e-6, "value {}", max_diff(&y1, &y2));
        assert!(max_diff(&g1, &g2) < 1e-5, "gradient {}", max_diff(&g1, &g2));
    }
}

#[test]
fn layer_norm_matches_mean_and_variance_in_value_and_all_three_gradients() {
    for (rows, n, seed) in [(5usize, 7usize, 5u64), (2048, 384, 6)] {
        let x = randn(&[rows, n], seed, 2.0);
        let r = randn(&[rows, n], seed + 10, 1.0);
        let w0 = (randn(&[n], seed + 20, 0.3) + 1.0).unwrap();
        let b0 = randn(&[n], seed + 30, 0.3);
        let grads = |fused_path: bool| {
            let (xv, wv, bv) = (
                Var::from_tensor(&x).unwrap(),
                Var::from_tensor(&w0).unwrap(),
                Var::from_tensor(&b0).unwrap(),
            );
            let y = if fused_path {
                fused::layer_norm(xv.as_tensor(), wv.as_tensor(), bv.as_tensor(), 1e-12).unwrap()
            } else {
                let t = xv.as_tensor();
                let mean = t.mean_keepdim(D::Minus1).unwrap();
                let c = t.broadcast_sub(&mean).unwrap();
                let var = c.sqr().unwrap().mean_keepdim(D::Minus1).unwrap();
                let nrm = c
                    .broadcast_div(&(var + 1e-12).unwrap().sqrt().unwrap())
                    .unwrap();
                nrm.broadcast_mul(wv.as_tensor())
                    .unwrap()
                    .broadcast_add(bv.as_tensor())
                    .unwrap()
            };
            let g = (&y * &r).unwrap().sum_all().unwrap().backward().unwrap();
            let get = |v: &Var| g.get(v.as_tensor()).unwrap().clone();
            (y, get(&xv), get(&wv), get(&bv))
        };
        let (y1, dx1, dw1, db1) = grads(true);
        let (y2, dx2, dw2, db2) = grads(false);
        assert!(max_diff(&y1, &y2) < 2e-5, "value {}", max_diff(&y1, &y2));
        assert!(max_diff(&dx1, &dx2) < 1e-4, "dx {}", max_diff(&dx1, &dx2));
        // dw and db sum over every row: compare relative to their size.
        let scale = dw2
            .abs()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
            .max(1.0);
        assert!(
            max_diff(&dw1, &dw2) < 1e-4 * scale,
            "dw {}",
            max_diff(&dw1, &dw2)
        );
        assert!(
            max_diff(&db1, &db2) < 1e-4 * scale,
            "db {}",
            max_diff(&db1, &db2)
        );
    }
}
