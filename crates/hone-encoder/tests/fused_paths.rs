//! The whole training path of a tiny random BERT with `hone-neural`'s fused ops gives the gradients of the
//! written-out ops (the kernels one by one are checked in `hone-neural`'s `tests/fused.rs`).

use candle_core::{Device, Tensor};
use hone_encoder::fused;

/// Every parameter's gradient of one training step (dropout on, padded batch) of a tiny random BERT
/// classifier.
fn model_gradients() -> Vec<(String, Vec<f32>)> {
    let dir = std::env::temp_dir().join(format!("hone-fused-model-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    hone_encoder::testing::write_tiny_model(&dir, 5).unwrap();
    let p = hone_encoder::Pretrained::load(&dir, 16).unwrap();
    let enc =
        hone_encoder::BertEncoder::load(&p.config, &dir.join("model.safetensors"), &Device::Cpu)
            .unwrap();
    let m = hone_encoder::Classifier::new(enc, hone_encoder::Pooling::Cls, p.pooler.clone(), 3, 9)
        .unwrap();
    let texts = [
        "card lost",
        "refund my money please now",
        "win free cash call me now please",
        "pin",
    ];
    let tb = p.tokenizer.encode_batch(&texts).unwrap();
    let (ids, types, mask) = tb.to_tensors(&Device::Cpu).unwrap();
    let mut d = hone_encoder::Dropout::new(11);
    let logits = m.logits(&ids, &types, &mask, true, Some(&mut d)).unwrap();
    let y = Tensor::new(&[0u32, 1, 2, 0], &Device::Cpu).unwrap();
    let loss = candle_nn::loss::cross_entropy(&logits, &y).unwrap();
    let g = loss.backward().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    m.named_vars()
        .unwrap()
        .into_iter()
        .map(|(n, v)| {
            let t = g
                .get(v.as_tensor())
                .expect("every parameter has a gradient");
            (n, t.flatten_all().unwrap().to_vec1::<f32>().unwrap())
        })
        .collect()
}

/// The whole training path with the fused ops gives the gradients of the written-out ops: the same test
/// binary runs again with `HONE_UNFUSED=1` (read once per process) and hands its gradients back.
#[test]
fn fused_and_written_out_training_paths_give_the_same_gradients() {
    let grads = model_gradients();
    if let Some(path) = std::env::var_os("HONE_TEST_GRAD_DUMP") {
        std::fs::write(path, serde_json::to_vec(&grads).unwrap()).unwrap();
        return;
    }
    assert!(
        !fused::disabled(),
        "run without HONE_UNFUSED: this test compares both paths"
    );
    let dump = std::env::temp_dir().join(format!("hone-fused-grads-{}.json", std::process::id()));
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "fused_and_written_out_training_paths_give_the_same_gradients",
            "--exact",
            "--test-threads=1",
        ])
        .env("HONE_UNFUSED", "1")
        .env("HONE_TEST_GRAD_DUMP", &dump)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reference: Vec<(String, Vec<f32>)> =
        serde_json::from_slice(&std::fs::read(&dump).unwrap()).unwrap();
    let _ = std::fs::remove_file(&dump);
    assert_eq!(grads.len(), reference.len());
    let mut worst = (0.0f32, String::new());
    for ((n1, g1), (n2, g2)) in grads.iter().zip(&reference) {
        assert_eq!(n1, n2);
        assert_eq!(g1.len(), g2.len(), "{n1}");
        let scale = g2.iter().fold(0.0f32, |a, v| a.max(v.abs())).max(1e-3);
        let d = g1
            .iter()
            .zip(g2)
            .fold(0.0f32, |a, (x, y)| a.max((x - y).abs()))
            / scale;
        if d > worst.0 {
            worst = (d, n1.clone());
        }
    }
    eprintln!("fused vs written-out: worst {} ({})", worst.0, worst.1);
    assert!(
        worst.0 < 1e-4,
        "{} differs by {} (relative to its largest entry)",
        worst.1,
        worst.0
    );
    // Not a vacuous comparison: the gradients are not all zero.
    assert!(grads.iter().any(|(_, g)| g.iter().any(|v| v.abs() > 1e-6)));
}
