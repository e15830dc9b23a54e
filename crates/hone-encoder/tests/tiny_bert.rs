//! Tiny random BERTs built in code: agreement with candle-transformers, gradient coverage, training, errors.

use std::path::{Path, PathBuf};

use candle_core::{D, DType, Device, Tensor};
use candle_nn::{AdamW, Optimizer, ParamsAdamW, VarBuilder, VarMap};
use hone_core::Error;
use hone_encoder::bert::{SeededRng, parameter_shapes};
use hone_encoder::{BertConfig, BertEncoder, Dropout, Pooling, pool};

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    hone_encoder::max_abs_diff(a, b).unwrap()
}

/// Hidden states `(batch, seq, hidden)` with padding positions set to zero (hone's are; a padded
/// implementation's hold values nothing reads).
fn at_tokens(h: &Tensor, mask: &Tensor) -> Tensor {
    h.broadcast_mul(&mask.to_dtype(h.dtype()).unwrap().unsqueeze(2).unwrap())
        .unwrap()
}

const TINY: &str = r#"{
  "model_type": "bert", "vocab_size": 100, "hidden_size": 32, "num_hidden_layers": 2,
  "num_attention_heads": 4, "intermediate_size": 64, "hidden_act": "gelu",
  "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1, "max_position_embeddings": 64,
  "type_vocab_size": 2, "initializer_range": 0.02, "layer_norm_eps": 1e-12, "pad_token_id": 0
}"#;

fn tiny_config() -> BertConfig {
    BertConfig::from_json_str(TINY, Path::new("config.json")).unwrap()
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("hone-encoder-test-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Perturbs every parameter (LayerNorm weights and biases too) so that no term is trivially 0 or 1.
fn randomise(enc: &BertEncoder, seed: u64, std: f64) {
    let mut rng = SeededRng::new(seed);
    for var in enc.varmap().all_vars() {
        let n = var.elem_count();
        let vals: Vec<f32> = (0..n).map(|_| (rng.normal() * std) as f32).collect();
        let noise = Tensor::from_vec(vals, var.shape(), &Device::Cpu).unwrap();
        var.set(&(var.as_tensor() + noise).unwrap()).unwrap();
    }
}

/// A batch with padding: row 0 full, row 1 padded after 5 tokens, row 2 after 3; mixed token types.
fn batch() -> (Tensor, Tensor, Tensor) {
    let dev = Device::Cpu;
    let ids: Vec<u32> = vec![
        2, 17, 45, 99, 3, 8, 61, 3, //
        2, 5, 88, 12, 3, 0, 0, 0, //
        2, 70, 3, 0, 0, 0, 0, 0,
    ];
    let types: Vec<u32> = vec![
        0, 0, 0, 0, 0, 1, 1, 1, //
        0, 0, 0, 1, 1, 0, 0, 0, //
        0, 0, 0, 0, 0, 0, 0, 0,
    ];
    let mask: Vec<u32> = vec![
        1, 1, 1, 1, 1, 1, 1, 1, //
        1, 1, 1, 1, 1, 0, 0, 0, //
        1, 1, 1, 0, 0, 0, 0, 0,
    ];
    let t = |v: Vec<u32>| Tensor::from_vec(v, (3, 8), &dev).unwrap();
    (t(ids), t(types), t(mask))
}

#[test]
fn matches_candle_transformers_on_the_same_random_weights() {
    let cfg = tiny_config();
    let dev = Device::Cpu;
    let enc = BertEncoder::new_random(&cfg, &dev, 7).unwrap();
    randomise(&enc, 11, 0.3);
    let dir = scratch("reference");
    let path = dir.join("model.safetensors");
    enc.save_weights(&path).unwrap();

    // hone's module, loaded from the file (not the in-memory VarMap).
    let ours = BertEncoder::load(&cfg, &path, &dev).unwrap();
    let ct_cfg: candle_transformers::models::bert::Config = serde_json::from_str(TINY).unwrap();
    let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[&path], DType::F32, &dev).unwrap() };
    let reference = candle_transformers::models::bert::BertModel::load(vb, &ct_cfg).unwrap();

    let (ids, types, mask) = batch();
    let a = ours.forward(&ids, Some(&types), Some(&mask), None).unwrap();
    let b = at_tokens(
        &reference.forward(&ids, &types, Some(&mask)).unwrap(),
        &mask,
    );
    assert_eq!(a.dims(), &[3, 8, 32]);
    assert_eq!(
        max_abs_diff(&a, &at_tokens(&a, &mask)),
        0.0,
        "zero at padding"
    );
    let d = max_abs_diff(&a, &b);
    println!("max abs difference vs candle-transformers BertModel: {d:e}");
    assert!(d <= 1e-5, "max abs difference {d}");
    let fast = ours
        .forward_inference(&ids, Some(&types), Some(&mask))
        .unwrap();
    let df = max_abs_diff(&fast, &b);
    println!(
        "forward_inference (fused ops) vs candle-transformers: {df:e}, vs forward: {:e}",
        max_abs_diff(&fast, &a)
    );
    assert!(df <= 1e-5, "{df}");

    // The same with the `bert.` prefix (as in bert-base-uncased checkpoints).
    let prefixed = dir.join("prefixed.safetensors");
    let tensors: std::collections::HashMap<String, Tensor> =
        candle_core::safetensors::load(&path, &dev)
            .unwrap()
            .into_iter()
            .map(|(k, v)| (format!("bert.{k}"), v))
            .collect();
    candle_core::safetensors::save(&tensors, &prefixed).unwrap();
    let ours2 = BertEncoder::load(&cfg, &prefixed, &dev).unwrap();
    let a2 = ours2
        .forward(&ids, Some(&types), Some(&mask), None)
        .unwrap();
    assert_eq!(max_abs_diff(&a, &a2), 0.0);
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn eval_is_deterministic_and_dropout_is_seeded_and_active_in_training() {
    let cfg = tiny_config();
    let enc = BertEncoder::new_random(&cfg, &Device::Cpu, 3).unwrap();
    let (ids, types, mask) = batch();
    let e1 = enc.forward(&ids, Some(&types), Some(&mask), None).unwrap();
    let e2 = enc.forward(&ids, Some(&types), Some(&mask), None).unwrap();
    assert_eq!(max_abs_diff(&e1, &e2), 0.0);
    let t1 = enc
        .forward(&ids, Some(&types), Some(&mask), Some(&mut Dropout::new(5)))
        .unwrap();
    let t2 = enc
        .forward(&ids, Some(&types), Some(&mask), Some(&mut Dropout::new(5)))
        .unwrap();
    let t3 = enc
        .forward(&ids, Some(&types), Some(&mask), Some(&mut Dropout::new(6)))
        .unwrap();
    assert_eq!(max_abs_diff(&t1, &t2), 0.0, "same seed, same mask");
    assert!(max_abs_diff(&t1, &t3) > 1e-3, "another seed, another mask");
    assert!(
        max_abs_diff(&t1, &e1) > 1e-3,
        "training mode differs from eval"
    );
}

#[test]
fn dropout_keeps_the_expected_fraction_and_scale() {
    let x = Tensor::ones(100_000, DType::F32, &Device::Cpu).unwrap();
    let y = Dropout::new(1)
        .apply(&x, 0.25)
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    let kept = y.iter().filter(|v| **v != 0.0).count() as f64 / y.len() as f64;
    assert!((kept - 0.75).abs() < 0.01, "{kept}");
    let mean = y.iter().map(|v| *v as f64).sum::<f64>() / y.len() as f64;
    assert!((mean - 1.0).abs() < 0.02, "{mean}");
}

fn toy_loss(
    enc: &BertEncoder,
    head: &candle_nn::Linear,
    pooling: Pooling,
    dropout: Option<&mut Dropout>,
) -> Tensor {
    use candle_nn::Module;
    let (ids, types, mask) = batch();
    let h = enc
        .forward(&ids, Some(&types), Some(&mask), dropout)
        .unwrap();
    let pooled = pool(&h, &mask, pooling).unwrap();
    let logits = head.forward(&pooled).unwrap();
    let labels = Tensor::new(&[0u32, 1, 2], &Device::Cpu).unwrap();
    candle_nn::loss::cross_entropy(&logits, &labels).unwrap()
}

/// A linear head with seeded weights (candle's own initialisation is not seeded).
fn head(vm: &VarMap) -> candle_nn::Linear {
    let vb = VarBuilder::from_varmap(vm, DType::F32, &Device::Cpu);
    let head = candle_nn::linear(32, 3, vb.pp("classifier")).unwrap();
    let mut rng = SeededRng::new(99);
    let mut names: Vec<String> = vm.data().lock().unwrap().keys().cloned().collect();
    names.sort();
    for name in names {
        let var = vm.data().lock().unwrap()[&name].clone();
        let vals: Vec<f32> = (0..var.elem_count())
            .map(|_| (rng.normal() * 0.2) as f32)
            .collect();
        var.set(&Tensor::from_vec(vals, var.shape(), &Device::Cpu).unwrap())
            .unwrap();
    }
    head
}

#[test]
fn packing_real_tokens_gives_the_padded_states_and_gradients() {
    let cfg = tiny_config();
    let mut enc = BertEncoder::new_random(&cfg, &Device::Cpu, 31).unwrap();
    randomise(&enc, 32, 0.2);
    let head_vm = VarMap::new();
    let head = head(&head_vm);
    let (ids, types, mask) = batch();
    let mut runs = Vec::new();
    for packing in [true, false] {
        enc.set_packing(packing);
        let h = enc.forward(&ids, Some(&types), Some(&mask), None).unwrap();
        let fast = enc
            .forward_inference(&ids, Some(&types), Some(&mask))
            .unwrap();
        let grads = toy_loss(&enc, &head, Pooling::Mean, None)
            .backward()
            .unwrap();
        let mut g: Vec<(String, Tensor)> = enc
            .varmap()
            .data()
            .lock()
            .unwrap()
            .iter()
            .filter_map(|(n, v)| grads.get(v.as_tensor()).map(|g| (n.clone(), g.clone())))
            .collect();
        g.sort_by(|a, b| a.0.cmp(&b.0));
        runs.push((at_tokens(&h, &mask), at_tokens(&fast, &mask), g));
    }
    let (packed, padded) = (&runs[0], &runs[1]);
    let d = max_abs_diff(&packed.0, &padded.0);
    assert!(d <= 1e-5, "states {d}");
    assert!(max_abs_diff(&packed.1, &padded.1) <= 1e-5);
    assert_eq!(packed.2.len(), padded.2.len());
    assert_eq!(packed.2.len(), parameter_shapes(&cfg).len());
    for ((name, a), (_, b)) in packed.2.iter().zip(&padded.2) {
        let scale = b.abs().unwrap().flatten_all().unwrap().max(0).unwrap();
        let scale = scale.to_scalar::<f32>().unwrap().max(1e-6);
        let d = max_abs_diff(a, b);
        assert!(
            d / scale <= 1e-4,
            "{name}: gradient differs by {d} (scale {scale})"
        );
    }
}

#[test]
fn every_parameter_receives_a_gradient() {
    let cfg = tiny_config();
    let enc = BertEncoder::new_random(&cfg, &Device::Cpu, 21).unwrap();
    let head_vm = VarMap::new();
    let head = head(&head_vm);
    for (pooling, dropout) in [(Pooling::Mean, None), (Pooling::Cls, Some(Dropout::new(9)))] {
        let mut dropout = dropout;
        let loss = toy_loss(&enc, &head, pooling, dropout.as_mut());
        let grads = loss.backward().unwrap();
        let data = enc.varmap().data().lock().unwrap();
        assert_eq!(data.len(), parameter_shapes(&cfg).len());
        let mut with_grad = 0;
        let mut missing = Vec::new();
        for (name, var) in data.iter() {
            match grads.get(var.as_tensor()) {
                Some(g)
                    if g.abs()
                        .unwrap()
                        .sum_all()
                        .unwrap()
                        .to_scalar::<f32>()
                        .unwrap()
                        > 0.0 =>
                {
                    with_grad += 1
                }
                _ => missing.push(name.clone()),
            }
        }
        println!(
            "{pooling:?}: {with_grad}/{} encoder tensors have a non-zero gradient",
            data.len()
        );
        assert!(
            missing.is_empty(),
            "{pooling:?}: no gradient for {missing:?}"
        );
        for v in head_vm.all_vars() {
            assert!(grads.get(v.as_tensor()).is_some());
        }
    }
}

#[test]
fn adamw_steps_reduce_a_toy_classification_loss() {
    let cfg = tiny_config();
    let enc = BertEncoder::new_random(&cfg, &Device::Cpu, 4).unwrap();
    let head_vm = VarMap::new();
    let head = head(&head_vm);
    let mut vars = enc.varmap().all_vars();
    vars.extend(head_vm.all_vars());
    let mut opt = AdamW::new(
        vars,
        ParamsAdamW {
            lr: 1e-3,
            weight_decay: 0.01,
            ..Default::default()
        },
    )
    .unwrap();
    let eval_loss = |p| toy_loss(&enc, &head, p, None).to_scalar::<f32>().unwrap();
    let before = eval_loss(Pooling::Cls);
    let embed_before =
        enc.varmap().data().lock().unwrap()["encoder.layer.0.attention.self.query.weight"]
            .as_tensor()
            .copy()
            .unwrap();
    let mut dropout = Dropout::new(1);
    for _ in 0..30 {
        let loss = toy_loss(&enc, &head, Pooling::Cls, Some(&mut dropout));
        opt.backward_step(&loss).unwrap();
    }
    let after = eval_loss(Pooling::Cls);
    println!("toy loss {before:.4} -> {after:.4}");
    assert!(after < before * 0.5, "{before} -> {after}");
    // The encoder itself moved (not only the head).
    let embed_after =
        &enc.varmap().data().lock().unwrap()["encoder.layer.0.attention.self.query.weight"];
    assert!(max_abs_diff(&embed_before, embed_after.as_tensor()) > 1e-4);
}

#[test]
fn bad_weights_and_inputs_are_typed_errors() {
    let cfg = tiny_config();
    let dev = Device::Cpu;
    let dir = scratch("errors");
    let enc = BertEncoder::new_random(&cfg, &dev, 1).unwrap();
    let path = dir.join("model.safetensors");
    enc.save_weights(&path).unwrap();

    // Missing tensor.
    let mut t = candle_core::safetensors::load(&path, &dev).unwrap();
    t.remove("encoder.layer.1.output.LayerNorm.bias");
    let missing = dir.join("missing.safetensors");
    candle_core::safetensors::save(&t, &missing).unwrap();
    let e = BertEncoder::load(&cfg, &missing, &dev).err().unwrap();
    assert!(matches!(e, Error::NotFound { what: "tensor", .. }), "{e:?}");
    assert!(
        e.to_string()
            .contains("encoder.layer.1.output.LayerNorm.bias"),
        "{e}"
    );

    // Wrong shape (config disagrees with weights).
    let mut big = cfg.clone();
    big.vocab_size = 200;
    let e = BertEncoder::load(&big, &path, &dev).err().unwrap();
    assert!(
        matches!(e, Error::Config { .. }) && e.to_string().contains("word_embeddings"),
        "{e}"
    );

    // Not a file / not safetensors.
    let e = BertEncoder::load(&cfg, &dir.join("nope.safetensors"), &dev)
        .err()
        .unwrap();
    assert!(matches!(e, Error::Io { .. }), "{e:?}");
    let junk = dir.join("junk.safetensors");
    std::fs::write(&junk, b"not a model").unwrap();
    let e = BertEncoder::load(&cfg, &junk, &dev).err().unwrap();
    assert!(matches!(e, Error::CorruptWeights { .. }), "{e:?}");
    assert!(e.to_string().contains("junk.safetensors"), "{e}");

    // Bad inputs.
    let ids = Tensor::new(&[[2u32, 150, 3]], &dev).unwrap();
    let e = enc.forward(&ids, None, None, None).unwrap_err();
    assert!(matches!(e, Error::Usage(_)), "{e:?}");
    let long = Tensor::zeros((1, 65), DType::U32, &dev).unwrap();
    assert!(matches!(
        enc.forward(&long, None, None, None).unwrap_err(),
        Error::Usage(_)
    ));
    let ids = Tensor::new(&[[2u32, 5, 3]], &dev).unwrap();
    let mask = Tensor::new(&[[1u32, 1]], &dev).unwrap();
    assert!(matches!(
        enc.forward(&ids, None, Some(&mask), None).unwrap_err(),
        Error::Usage(_)
    ));
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn mean_pooling_ignores_padding_and_cls_takes_the_first_token() {
    let dev = Device::Cpu;
    let h = Tensor::new(&[[[1f32, 2.], [3., 4.], [100., 100.]]], &dev).unwrap();
    let m = Tensor::new(&[[1u32, 1, 0]], &dev).unwrap();
    let mean = pool(&h, &m, Pooling::Mean)
        .unwrap()
        .to_vec2::<f32>()
        .unwrap();
    assert_eq!(mean, vec![vec![2., 3.]]);
    let cls = pool(&h, &m, Pooling::Cls)
        .unwrap()
        .to_vec2::<f32>()
        .unwrap();
    assert_eq!(cls, vec![vec![1., 2.]]);
    let n = hone_encoder::l2_normalize(&Tensor::new(&[[3f32, 4.]], &dev).unwrap()).unwrap();
    assert_eq!(n.to_vec2::<f32>().unwrap(), vec![vec![0.6, 0.8]]);
    let _ = D::Minus1;
}

#[test]
fn gelu_erf_and_tanh_approximation_differ_by_under_5e_4() {
    let x = Tensor::arange(-800i64, 800, &Device::Cpu)
        .unwrap()
        .to_dtype(DType::F32)
        .unwrap();
    let x = (x / 100.0).unwrap();
    let d = max_abs_diff(&x.gelu_erf().unwrap(), &x.gelu().unwrap());
    println!("max |gelu_erf - gelu_tanh| on [-8, 8]: {d:e}");
    assert!(d < 5e-4, "{d}");
}
