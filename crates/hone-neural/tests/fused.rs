//! The fused kernels agree with the same functions written in candle's differentiable ops, in value and in
//! gradient (for every input), on odd shapes and at more than one thread-chunk. (The whole training step
//! of a tiny BERT, fused against written-out, is checked in `hone-encoder`'s `tests/fused_paths.rs`.)

use candle_core::{D, Device, Tensor, Var};
use hone_neural::{Dropout, SeededRng, fused};

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    hone_neural::max_abs_diff(a, b).unwrap()
}

fn randn(shape: &[usize], seed: u64, scale: f64) -> Tensor {
    let mut r = SeededRng::new(seed);
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n).map(|_| (r.normal() * scale) as f32).collect();
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
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
        assert!(
            max_abs_diff(&y1, &y2) < 2e-6,
            "value {}",
            max_abs_diff(&y1, &y2)
        );
        assert!(
            max_abs_diff(&g1, &g2) < 2e-5,
            "gradient {}",
            max_abs_diff(&g1, &g2)
        );
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
        assert!(
            max_abs_diff(&y1, &y2) < 1e-6,
            "value {}",
            max_abs_diff(&y1, &y2)
        );
        assert!(
            max_abs_diff(&g1, &g2) < 1e-5,
            "gradient {}",
            max_abs_diff(&g1, &g2)
        );
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
        assert!(
            max_abs_diff(&y1, &y2) < 2e-5,
            "value {}",
            max_abs_diff(&y1, &y2)
        );
        assert!(
            max_abs_diff(&dx1, &dx2) < 1e-4,
            "dx {}",
            max_abs_diff(&dx1, &dx2)
        );
        // dw and db sum over every row: compare relative to their size.
        let scale = scale_of(&dw2);
        assert!(
            max_abs_diff(&dw1, &dw2) < 1e-4 * scale,
            "dw {}",
            max_abs_diff(&dw1, &dw2)
        );
        assert!(
            max_abs_diff(&db1, &db2) < 1e-4 * scale,
            "db {}",
            max_abs_diff(&db1, &db2)
        );
    }
}

fn scale_of(t: &Tensor) -> f32 {
    t.abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
        .max(1.0)
}

/// Value and the gradients of every input of `f(a, b, c)` under the loss `sum(f * r)`.
fn grads3(
    f: &dyn Fn(&Tensor, &Tensor, &Tensor) -> Tensor,
    ins: [&Tensor; 3],
    r: &Tensor,
) -> (Tensor, Vec<Tensor>) {
    let vars: Vec<Var> = ins.iter().map(|t| Var::from_tensor(t).unwrap()).collect();
    let y = f(
        vars[0].as_tensor(),
        vars[1].as_tensor(),
        vars[2].as_tensor(),
    );
    let g = (&y * r).unwrap().sum_all().unwrap().backward().unwrap();
    let gs = vars
        .iter()
        .map(|v| {
            g.get(v.as_tensor())
                .cloned()
                .unwrap_or_else(|| v.as_tensor().zeros_like().unwrap())
        })
        .collect();
    (y, gs)
}

#[test]
fn linear_matches_matmul_plus_bias_in_value_and_all_three_gradients() {
    for (lead, i, o, seed) in [
        (vec![3usize, 5], 7usize, 4usize, 40u64),
        (vec![32, 64], 384, 1536, 41),
    ] {
        let mut xs = lead.clone();
        xs.push(i);
        let mut ys = lead.clone();
        ys.push(o);
        let x = randn(&xs, seed, 1.0);
        let w = randn(&[o, i], seed + 1, 0.1);
        let b = randn(&[o], seed + 2, 0.1);
        let r = randn(&ys, seed + 3, 1.0);
        let (y1, g1) = grads3(&|x, w, b| fused::linear(x, w, b).unwrap(), [&x, &w, &b], &r);
        let (y2, g2) = grads3(
            &|x, w, b| {
                x.broadcast_matmul(&w.t().unwrap())
                    .unwrap()
                    .broadcast_add(b)
                    .unwrap()
            },
            [&x, &w, &b],
            &r,
        );
        assert!(
            max_abs_diff(&y1, &y2) < 1e-5 * scale_of(&y2),
            "value {}",
            max_abs_diff(&y1, &y2)
        );
        for (name, a, c) in [
            ("dx", &g1[0], &g2[0]),
            ("dw", &g1[1], &g2[1]),
            ("db", &g1[2], &g2[2]),
        ] {
            assert_eq!(a.dims(), c.dims(), "{name}");
            let d = max_abs_diff(a, c);
            assert!(d < 1e-5 * scale_of(c), "{name} differs by {d}");
        }
    }
}

/// `softmax(scale · x + mask)` written out in candle ops, the reference for the fused masked softmax.
fn written_masked_softmax(x: &Tensor, mask: &Tensor, scale: f64) -> Tensor {
    let z = (x * scale).unwrap().broadcast_add(mask).unwrap();
    let mx = z.max_keepdim(D::Minus1).unwrap().detach();
    let e = z.broadcast_sub(&mx).unwrap().exp().unwrap();
    let sum = e.sum_keepdim(D::Minus1).unwrap();
    e.broadcast_div(&sum).unwrap()
}

#[test]
fn masked_softmax_matches_scale_add_mask_softmax_and_gives_the_mask_no_gradient() {
    for (b, h, s, seed) in [(2usize, 3usize, 5usize, 50u64), (4, 12, 64, 51)] {
        let x = randn(&[b, h, s, s], seed, 3.0);
        let r = randn(&[b, h, s, s], seed + 1, 1.0);
        // Padding: the last `i` keys of batch item i are masked out.
        let mut m = vec![0f32; b * s];
        for bi in 0..b {
            for k in s - bi.min(s - 1)..s {
                m[bi * s + k] = f32::MIN;
            }
        }
        let mask = Tensor::from_vec(m, (b, s), &Device::Cpu).unwrap();
        let scale = 0.125;
        let (y1, g1) = run(&|t| fused::masked_softmax(t, &mask, scale).unwrap(), &x, &r);
        let reference =
            |t: &Tensor| written_masked_softmax(t, &mask.reshape((b, 1, 1, s)).unwrap(), scale);
        let (y2, g2) = run(&reference, &x, &r);
        assert!(
            max_abs_diff(&y1, &y2) < 1e-6,
            "value {}",
            max_abs_diff(&y1, &y2)
        );
        assert!(
            max_abs_diff(&g1, &g2) < 1e-5,
            "gradient {}",
            max_abs_diff(&g1, &g2)
        );
        // Masked keys get no probability.
        let row = y1
            .get(b - 1)
            .unwrap()
            .get(0)
            .unwrap()
            .get(0)
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert!(
            row[s - 1] == 0.0 && (row.iter().sum::<f32>() - 1.0).abs() < 1e-5,
            "{row:?}"
        );
        let mv = Var::from_tensor(&mask).unwrap();
        let y = fused::masked_softmax(&x, mv.as_tensor(), scale).unwrap();
        let g = (&y * &r).unwrap().sum_all().unwrap().backward().unwrap();
        assert!(g.get(mv.as_tensor()).is_none(), "the mask is a constant");
    }
}

#[test]
fn masked_softmax_takes_a_causal_mask_per_query_shared_by_the_heads() {
    // A decoder's mask: (batch | 1, q, k), causal with `pads[i]` left-padded keys for item i.
    for (b, h, q, past, shared, seed) in [
        (3usize, 4usize, 6usize, 0usize, false, 70u64),
        (2, 3, 5, 2, false, 71),
        (2, 9, 7, 0, true, 72),
    ] {
        let k = past + q;
        let x = randn(&[b, h, q, k], seed, 3.0);
        let r = randn(&[b, h, q, k], seed + 1, 1.0);
        let rows = if shared { 1 } else { b };
        let mut m = Vec::with_capacity(rows * q * k);
        for item in 0..rows {
            for j in 0..q {
                for key in 0..k {
                    let visible = key <= past + j && key >= item;
                    m.push(if visible { 0.0 } else { f32::MIN });
                }
            }
        }
        let mask = Tensor::from_vec(m, (rows, q, k), &Device::Cpu).unwrap();
        let scale = 0.125;
        let (y1, g1) = run(&|t| fused::masked_softmax(t, &mask, scale).unwrap(), &x, &r);
        let reference = |t: &Tensor| written_masked_softmax(t, &mask.unsqueeze(1).unwrap(), scale);
        let (y2, g2) = run(&reference, &x, &r);
        assert!(max_abs_diff(&y1, &y2) < 1e-6, "{}", max_abs_diff(&y1, &y2));
        assert!(max_abs_diff(&g1, &g2) < 1e-5, "{}", max_abs_diff(&g1, &g2));
        // The first query of the first item (no padding) sees no key after its own position.
        let row = y1.get(0).unwrap().get(h - 1).unwrap().get(0).unwrap();
        let row = row.to_vec1::<f32>().unwrap();
        assert_eq!(row[past + 1..].iter().sum::<f32>(), 0.0, "{row:?}");
    }
    let x = randn(&[2, 3, 4, 4], 80, 1.0);
    let wrong = Tensor::zeros((3, 4, 4), candle_core::DType::F32, &Device::Cpu).unwrap();
    assert!(fused::masked_softmax(&x, &wrong, 1.0).is_err());
    let empty = Tensor::zeros((2, 0, 4), candle_core::DType::F32, &Device::Cpu).unwrap();
    assert!(fused::masked_softmax(&x, &empty, 1.0).is_err());
}

#[test]
fn dropout_ops_multiply_by_their_mask_and_pass_the_residual_gradient_through() {
    let shape = [6usize, 33];
    let x = randn(&shape, 60, 1.0);
    let res = randn(&shape, 61, 1.0);
    let r = randn(&shape, 62, 1.0);
    let mut d = Dropout::new(7);
    let mask = d.mask(6 * 33, 0.25);
    assert!(
        mask.iter()
            .all(|&m| m == 0.0 || (m - 1.0 / 0.75).abs() < 1e-6)
    );
    let mt = Tensor::from_vec(mask.clone(), &shape, &Device::Cpu).unwrap();
    let (y1, g1) = grads3(
        &|x, res, _| fused::dropout_add(x, mask.clone(), res).unwrap(),
        [&x, &res, &r],
        &r,
    );
    let (y2, g2) = grads3(
        &|x, res, _| ((x * &mt).unwrap() + res).unwrap(),
        [&x, &res, &r],
        &r,
    );
    assert!(max_abs_diff(&y1, &y2) < 1e-6);
    assert!(max_abs_diff(&g1[0], &g2[0]) < 1e-6, "dx");
    assert!(max_abs_diff(&g1[1], &g2[1]) < 1e-6, "d residual");
    let (y3, g3) = run(&|t| fused::dropout(t, mask.clone()).unwrap(), &x, &r);
    let (y4, g4) = run(&|t| (t * &mt).unwrap(), &x, &r);
    assert!(max_abs_diff(&y3, &y4) < 1e-6 && max_abs_diff(&g3, &g4) < 1e-6);
    assert!(
        fused::dropout(&x, vec![1.0; 5]).is_err(),
        "a mask of the wrong size is an error"
    );
}

#[test]
fn head_split_and_merge_are_the_reshape_transpose_and_its_inverse() {
    let (b, s, nh, d) = (3usize, 5usize, 4usize, 6usize);
    let x = randn(&[b, s, nh * d], 70, 1.0);
    let r = randn(&[b, nh, s, d], 71, 1.0);
    let (y1, g1) = run(&|t| fused::split_heads(t, nh).unwrap(), &x, &r);
    let reference = |t: &Tensor| {
        t.reshape((b, s, nh, d))
            .unwrap()
            .transpose(1, 2)
            .unwrap()
            .contiguous()
            .unwrap()
    };
    let (y2, g2) = run(&reference, &x, &r);
    assert_eq!(max_abs_diff(&y1, &y2), 0.0);
    assert_eq!(max_abs_diff(&g1, &g2), 0.0);
    let back = fused::merge_heads(&y1, nh).unwrap();
    assert_eq!(max_abs_diff(&back, &x), 0.0);
    let r2 = randn(&[b, s, nh * d], 72, 1.0);
    let (_, gm) = run(&|t| fused::merge_heads(t, nh).unwrap(), &y1, &r2);
    assert_eq!(
        max_abs_diff(&gm, &fused::split_heads(&r2, nh).unwrap()),
        0.0
    );
    assert!(
        fused::split_heads(&x, 5).is_err(),
        "24 is not a multiple of 5 heads"
    );
}

#[test]
fn picked_log_softmax_matches_log_softmax_and_gather() {
    for (rows, vocab, seed) in [(3usize, 7usize, 1u64), (37, 1500, 2)] {
        let x = randn(&[rows, vocab], seed, 4.0);
        let targets: Vec<u32> = (0..rows).map(|i| ((i * 7919) % vocab) as u32).collect();
        let r = randn(&[rows], seed + 10, 1.0);
        let t = Tensor::from_slice(&targets, (rows, 1), &Device::Cpu).unwrap();
        let (y1, g1) = run(&|z| fused::picked_log_softmax(z, &targets).unwrap(), &x, &r);
        let (y2, g2) = run(
            &|z| {
                candle_nn::ops::log_softmax(z, D::Minus1)
                    .unwrap()
                    .gather(&t, 1)
                    .unwrap()
                    .squeeze(1)
                    .unwrap()
            },
            &x,
            &r,
        );
        assert!(
            max_abs_diff(&y1, &y2) < 1e-5,
            "value {}",
            max_abs_diff(&y1, &y2)
        );
        assert!(
            max_abs_diff(&g1, &g2) < 1e-5,
            "gradient {}",
            max_abs_diff(&g1, &g2)
        );
    }
    let x = randn(&[2, 5], 3, 1.0);
    assert!(
        fused::picked_log_softmax(&x, &[0]).is_err(),
        "one target for two rows"
    );
    assert!(
        fused::picked_log_softmax(&x, &[0, 5]).is_err(),
        "a target outside the vocabulary"
    );
}

#[test]
fn linear_no_bias_matches_matmul_and_skips_frozen_weights() {
    let x = randn(&[3, 5, 7], 4, 1.0);
    let w = randn(&[11, 7], 5, 1.0);
    let r = randn(&[3, 5, 11], 6, 1.0);
    let wv = Var::from_tensor(&w).unwrap();
    let xv = Var::from_tensor(&x).unwrap();
    let grads = |fused_path: bool| {
        let y = if fused_path {
            fused::linear_no_bias(xv.as_tensor(), wv.as_tensor()).unwrap()
        } else {
            xv.as_tensor()
                .broadcast_matmul(&wv.as_tensor().t().unwrap())
                .unwrap()
        };
        let g = (&y * &r).unwrap().sum_all().unwrap().backward().unwrap();
        (
            y,
            g.get(xv.as_tensor()).unwrap().clone(),
            g.get(wv.as_tensor()).unwrap().clone(),
        )
    };
    let (y1, gx1, gw1) = grads(true);
    let (y2, gx2, gw2) = grads(false);
    assert!(
        max_abs_diff(&y1, &y2) < 1e-5,
        "value {}",
        max_abs_diff(&y1, &y2)
    );
    assert!(max_abs_diff(&gx1, &gx2) < 1e-5, "x gradient");
    assert!(max_abs_diff(&gw1, &gw2) < 1e-5, "weight gradient");
    // A frozen weight gets no gradient at all: nothing computed, nothing kept.
    let y = fused::linear_no_bias(xv.as_tensor(), &w).unwrap();
    let g = (&y * &r).unwrap().sum_all().unwrap().backward().unwrap();
    assert!(g.get(xv.as_tensor()).is_some());
    assert!(g.get(&w).is_none());
    assert!(fused::linear_no_bias(&x, &randn(&[11, 6], 7, 1.0)).is_err());
}

#[test]
fn the_few_row_product_of_generation_steps_matches_matmul_at_any_row_count() {
    // 15 rows take the few-row product, 18 fall back to gemm; both match the matmul and its gradient.
    for (shape, seed) in [([3usize, 5, 40], 8u64), ([3, 6, 40], 9)] {
        let x = Var::from_tensor(&randn(&shape, seed, 1.0)).unwrap();
        let w = randn(&[33, 40], seed + 1, 1.0);
        let y1 = fused::linear_few_rows(x.as_tensor(), &w).unwrap();
        let y2 = x.as_tensor().broadcast_matmul(&w.t().unwrap()).unwrap();
        assert!(
            max_abs_diff(&y1, &y2) < 1e-5,
            "{shape:?}: {}",
            max_abs_diff(&y1, &y2)
        );
        let g1 = y1.sum_all().unwrap().backward().unwrap();
        let g2 = y2.sum_all().unwrap().backward().unwrap();
        let (a, b) = (
            g1.get(x.as_tensor()).unwrap(),
            g2.get(x.as_tensor()).unwrap(),
        );
        assert!(max_abs_diff(a, b) < 1e-5, "{shape:?} x gradient");
        assert!(g1.get(&w).is_none(), "a frozen weight gets no gradient");
    }
}

#[test]
fn rms_norm_matches_the_written_out_form() {
    for (shape, seed) in [
        (vec![3usize, 5, 7], 1u64),
        (vec![70, 600], 2),
        (vec![2, 255, 576], 3),
    ] {
        let n = *shape.last().unwrap();
        let x = randn(&shape, seed, 2.0);
        let w = randn(&[n], seed + 1, 1.0);
        let r = randn(&shape, seed + 2, 1.0);
        let wv = Var::from_tensor(&w).unwrap();
        let grads = |fused_path: bool| {
            let xv = Var::from_tensor(&x).unwrap();
            let y = if fused_path {
                fused::rms_norm(xv.as_tensor(), wv.as_tensor(), 1e-5).unwrap()
            } else {
                let ms = xv
                    .as_tensor()
                    .sqr()
                    .unwrap()
                    .mean_keepdim(D::Minus1)
                    .unwrap();
                xv.as_tensor()
                    .broadcast_div(&(ms + 1e-5).unwrap().sqrt().unwrap())
                    .unwrap()
                    .broadcast_mul(wv.as_tensor())
                    .unwrap()
            };
            let g = (&y * &r).unwrap().sum_all().unwrap().backward().unwrap();
            (
                y,
                g.get(xv.as_tensor()).unwrap().clone(),
                g.get(wv.as_tensor()).unwrap().clone(),
            )
        };
        let (y1, gx1, gw1) = grads(true);
        let (y2, gx2, gw2) = grads(false);
        assert!(
            max_abs_diff(&y1, &y2) < 1e-5,
            "value {}",
            max_abs_diff(&y1, &y2)
        );
        assert!(
            max_abs_diff(&gx1, &gx2) < 1e-4,
            "x gradient {}",
            max_abs_diff(&gx1, &gx2)
        );
        assert!(
            max_abs_diff(&gw1, &gw2) < 1e-3,
            "w gradient {}",
            max_abs_diff(&gw1, &gw2)
        );
        // A frozen weight: no gradient for it.
        let xv = Var::from_tensor(&x).unwrap();
        let y = fused::rms_norm(xv.as_tensor(), &w, 1e-5).unwrap();
        let g = (&y * &r).unwrap().sum_all().unwrap().backward().unwrap();
        assert!(g.get(&w).is_none());
    }
}

#[test]
fn rope_matches_the_written_out_form() {
    // Tables shared by the batch (training) and one per row (generation with left padding).
    // The last case is SmolLM2's query shape at 2 × 255 tokens: split over threads.
    for (b, tb, h, t, d, seed) in [
        (2usize, 1usize, 3usize, 5usize, 8usize, 1u64),
        (3, 3, 3, 5, 8, 2),
        (2, 1, 9, 255, 64, 3),
    ] {
        let x = randn(&[b, h, t, d], seed, 1.0);
        let cos = randn(&[tb, 1, t, d], seed + 1, 1.0);
        let sin = randn(&[tb, 1, t, d], seed + 2, 1.0);
        let r = randn(&[b, h, t, d], seed + 3, 1.0);
        let written = |x: &Tensor| {
            let a = x.narrow(D::Minus1, 0, d / 2).unwrap();
            let z = x.narrow(D::Minus1, d / 2, d / 2).unwrap();
            let rot = Tensor::cat(&[&z.neg().unwrap(), &a], D::Minus1).unwrap();
            (x.broadcast_mul(&cos).unwrap() + rot.broadcast_mul(&sin).unwrap()).unwrap()
        };
        let (y1, g1) = run(&|x| fused::rope(x, &cos, &sin).unwrap(), &x, &r);
        let (y2, g2) = run(&written, &x, &r);
        assert!(
            max_abs_diff(&y1, &y2) < 1e-6,
            "value {}",
            max_abs_diff(&y1, &y2)
        );
        assert!(
            max_abs_diff(&g1, &g2) < 1e-6,
            "gradient {}",
            max_abs_diff(&g1, &g2)
        );
    }
    let x = randn(&[1, 1, 4, 6], 9, 1.0);
    assert!(
        fused::rope(
            &x,
            &randn(&[1, 1, 3, 6], 1, 1.0),
            &randn(&[1, 1, 3, 6], 2, 1.0)
        )
        .is_err()
    );
}

#[test]
fn silu_mul_matches_the_written_out_form() {
    for (shape, seed) in [(vec![3usize, 5, 7], 1u64), (vec![70, 1100], 2)] {
        let g = randn(&shape, seed, 3.0);
        let u = randn(&shape, seed + 1, 1.0);
        let r = randn(&shape, seed + 2, 1.0);
        let grads = |fused_path: bool| {
            let (gv, uv) = (Var::from_tensor(&g).unwrap(), Var::from_tensor(&u).unwrap());
            let y = if fused_path {
                fused::silu_mul(gv.as_tensor(), uv.as_tensor()).unwrap()
            } else {
                (gv.as_tensor().silu().unwrap() * uv.as_tensor()).unwrap()
            };
            let s = (&y * &r).unwrap().sum_all().unwrap().backward().unwrap();
            (
                y,
                s.get(gv.as_tensor()).unwrap().clone(),
                s.get(uv.as_tensor()).unwrap().clone(),
            )
        };
        let (y1, dg1, du1) = grads(true);
        let (y2, dg2, du2) = grads(false);
        assert!(
            max_abs_diff(&y1, &y2) < 1e-5,
            "value {}",
            max_abs_diff(&y1, &y2)
        );
        assert!(
            max_abs_diff(&dg1, &dg2) < 1e-5,
            "gate gradient {}",
            max_abs_diff(&dg1, &dg2)
        );
        assert!(
            max_abs_diff(&du1, &du2) < 1e-5,
            "up gradient {}",
            max_abs_diff(&du1, &du2)
        );
    }
    assert!(fused::silu_mul(&randn(&[2, 3], 1, 1.0), &randn(&[3, 2], 2, 1.0)).is_err());
}
