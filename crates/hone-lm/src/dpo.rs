//! Direct preference optimisation (Rafailov et al. 2023): pairs of a preferred and a rejected answer
//! to the same prompt teach the model to raise the preferred answer's likelihood relative to a
//! frozen reference (the weights training starts from), with TRL's sigmoid loss
//! `-log σ(β · ((log π(y_w) − log π_ref(y_w)) − (log π(y_l) − log π_ref(y_l))))`.
//!
//! The reference's log-probabilities are computed once, before the first step (TRL's
//! `precompute_ref_log_probs`): the reference is exactly the starting weights, so no second copy of
//! the model is kept. Held-out pairs are scored before training and after every epoch; the weights
//! with the lowest held-out loss are kept.

use candle_core::Tensor;

use crate::grpo::{Seq, completion_logps, restore};
use crate::sft::{epoch_order, snapshot};
use crate::{Lm, LmError, Result};

/// One preference: a prompt (rendered, tokenised) and two answers to it.
#[derive(Debug, Clone, PartialEq)]
pub struct Pair {
    pub id: String,
    pub prompt: Vec<u32>,
    pub chosen: Vec<u32>,
    pub rejected: Vec<u32>,
}

/// Training settings (TRL's `DPOConfig` defaults where it has them).
#[derive(Debug, Clone, PartialEq)]
pub struct DpoConfig {
    pub epochs: usize,
    pub lr: f64,
    /// Pairs per optimiser step.
    pub batch_size: usize,
    /// How far the policy may move from the reference: higher keeps it closer (TRL: 0.1).
    pub beta: f64,
    pub warmup_ratio: f64,
    pub weight_decay: f64,
    pub max_grad_norm: f64,
    pub seed: u64,
    /// Pairs run through the model at once (0: 2).
    pub micro_batch: usize,
}

impl Default for DpoConfig {
    fn default() -> Self {
        DpoConfig {
            epochs: 1,
            lr: 1e-6,
            batch_size: 8,
            beta: 0.1,
            warmup_ratio: 0.1,
            weight_decay: 0.0,
            max_grad_norm: 1.0,
            seed: 0,
            micro_batch: 0,
        }
    }
}

/// The reference's summed log-probabilities of each pair's chosen and rejected answer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RefLogps {
    pub chosen: f64,
    pub rejected: f64,
}

/// How the model ranks a set of pairs against the reference.
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct PairScore {
    pub n: usize,
    /// Share of pairs whose implicit reward margin is positive (the preferred answer gained more
    /// likelihood than the rejected one). Ties (the reference itself) count half.
    pub accuracy: f64,
    /// Mean `β · margin`.
    pub margin: f64,
    /// Mean DPO loss (`ln 2` ≈ 0.6931 at the reference).
    pub loss: f64,
}

/// One optimiser step.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DpoStep {
    pub step: u64,
    pub epoch: usize,
    pub loss: f64,
    /// Share of the step's pairs ranked right.
    pub accuracy: f64,
    pub margin: f64,
    pub lr: f64,
    pub grad_norm: f64,
}

/// What training did.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DpoLog {
    pub steps: Vec<DpoStep>,
    /// Held-out pairs before training and after each epoch.
    pub heldout: Vec<PairScore>,
    /// The index into `heldout` of the weights kept (0: training did not beat the reference).
    pub kept: usize,
    pub seconds: f64,
}

/// Summed log-probabilities of the chosen and rejected answers of `pairs` under `lm`, as a
/// `(pairs, 2)` tensor. Differentiable.
fn pair_logps(lm: &Lm, pairs: &[&Pair]) -> Result<Tensor> {
    let mut list = Vec::with_capacity(pairs.len() * 2);
    for p in pairs {
        for answer in [&p.chosen, &p.rejected] {
            list.push(Seq {
                prompt: &p.prompt,
                completion: answer,
                weight: 0.0,
                advantage: 0.0,
            });
        }
    }
    let flat = completion_logps(lm, &list, 1.0)?;
    // Each sequence's tokens are contiguous in `flat`: a 0/1 matrix sums them per sequence.
    let total: usize = list.iter().map(|s| s.completion.len()).sum();
    let mut segments = vec![0f32; list.len() * total];
    let mut at = 0;
    for (i, s) in list.iter().enumerate() {
        for j in at..at + s.completion.len() {
            segments[i * total + j] = 1.0;
        }
        at += s.completion.len();
    }
    let seg = Tensor::from_vec(segments, (list.len(), total), flat.device())?;
    let sums = seg.matmul(&flat.to_dtype(candle_core::DType::F32)?.unsqueeze(1)?)?;
    Ok(sums.reshape((pairs.len(), 2))?)
}

/// `softplus(-x) = -log σ(x)`, stable for large |x|: `max(-x, 0) + ln(1 + e^{-|x|})`.
fn neg_log_sigmoid(x: &Tensor) -> Result<Tensor> {
    let relu = x.neg()?.relu()?;
    let tail = ((x.abs()?.neg()?.exp()? + 1.0)?).log()?;
    Ok((relu + tail)?)
}

/// The DPO logits `β · margin` of `pairs` (a `(pairs,)` tensor). Differentiable.
fn logits(lm: &Lm, pairs: &[&Pair], refs: &[RefLogps], beta: f64) -> Result<Tensor> {
    let lp = pair_logps(lm, pairs)?;
    let dev = lp.device().clone();
    let r: Vec<f32> = refs
        .iter()
        .flat_map(|r| [r.chosen as f32, r.rejected as f32])
        .collect();
    let diff = (lp - Tensor::from_vec(r, (pairs.len(), 2), &dev)?)?;
    let margin = (diff.narrow(1, 0, 1)? - diff.narrow(1, 1, 1)?)?.squeeze(1)?;
    Ok((margin * beta)?)
}

fn micro(cfg: &DpoConfig) -> usize {
    if cfg.micro_batch == 0 {
        2
    } else {
        cfg.micro_batch
    }
}

/// The reference log-probabilities of every pair (the model as it is now).
pub fn reference_logps(lm: &Lm, pairs: &[Pair], micro_batch: usize) -> Result<Vec<RefLogps>> {
    let mut out = Vec::with_capacity(pairs.len());
    let refs: Vec<&Pair> = pairs.iter().collect();
    for chunk in refs.chunks(micro_batch.max(1)) {
        let lp = pair_logps(lm, chunk)?.to_dtype(candle_core::DType::F64)?;
        for row in lp.to_vec2::<f64>()? {
            out.push(RefLogps {
                chosen: row[0],
                rejected: row[1],
            });
        }
    }
    Ok(out)
}

/// How `lm` ranks `pairs` against the reference's log-probabilities `refs`.
pub fn score(
    lm: &Lm,
    pairs: &[Pair],
    refs: &[RefLogps],
    beta: f64,
    micro_batch: usize,
) -> Result<PairScore> {
    let all: Vec<&Pair> = pairs.iter().collect();
    let (mut acc, mut margin, mut loss) = (0.0, 0.0, 0.0);
    for (chunk, r) in all
        .chunks(micro_batch.max(1))
        .zip(refs.chunks(micro_batch.max(1)))
    {
        let z = logits(lm, chunk, r, beta)?;
        let l = neg_log_sigmoid(&z)?.to_dtype(candle_core::DType::F64)?;
        for (zi, li) in z
            .to_dtype(candle_core::DType::F64)?
            .to_vec1::<f64>()?
            .into_iter()
            .zip(l.to_vec1::<f64>()?)
        {
            acc += rank(zi);
            margin += zi;
            loss += li;
        }
    }
    let n = pairs.len().max(1) as f64;
    Ok(PairScore {
        n: pairs.len(),
        accuracy: acc / n,
        margin: margin / n,
        loss: loss / n,
    })
}

/// A pair ranked right (1), wrong (0), or tied (½: a margin within float noise of zero).
fn rank(z: f64) -> f64 {
    if z.abs() < 1e-6 {
        0.5
    } else if z > 0.0 {
        1.0
    } else {
        0.0
    }
}

/// Trains `lm`'s trainable weights (its LoRA adapters, or every weight) on `train` pairs; `heldout`
/// pairs choose the weights kept. The reference is the model as it is when called.
pub fn train(
    lm: &mut Lm,
    train: &[Pair],
    heldout: &[Pair],
    cfg: &DpoConfig,
    on_step: &mut dyn FnMut(&DpoStep),
) -> Result<DpoLog> {
    if train.is_empty() {
        return Err(LmError::Data("no preference pairs to train on".into()));
    }
    if let Some(p) = train
        .iter()
        .chain(heldout)
        .find(|p| p.prompt.is_empty() || p.chosen.is_empty() || p.rejected.is_empty())
    {
        return Err(LmError::Data(format!(
            "pair {} has an empty prompt or answer",
            p.id
        )));
    }
    if !(cfg.beta > 0.0 && cfg.beta.is_finite()) {
        return Err(LmError::Data("beta must be a number > 0".into()));
    }
    let started = std::time::Instant::now();
    let nerr = |e: hone_core::Error| LmError::Model(e.to_string());
    let mb = micro(cfg);
    let train_refs = reference_logps(lm, train, mb)?;
    let held_refs = reference_logps(lm, heldout, mb)?;
    let mut log = DpoLog::default();
    if !heldout.is_empty() {
        log.heldout
            .push(score(lm, heldout, &held_refs, cfg.beta, mb)?);
    }
    let (vars, var_list, mut opt) = crate::sft::optimizer(lm, cfg.lr, cfg.weight_decay)?;
    let mut best = snapshot(&vars)?;
    let bs = cfg.batch_size.max(1);
    let steps_per_epoch = train.len().div_ceil(bs) as u64;
    let total = steps_per_epoch * cfg.epochs.max(1) as u64;
    let warmup = (cfg.warmup_ratio * total as f64).round() as u64;
    let mut step = 0u64;
    for epoch in 0..cfg.epochs.max(1) {
        let order = epoch_order(train.len(), cfg.seed, epoch);
        for batch in order.chunks(bs) {
            let mut acc = None;
            let (mut loss_sum, mut right, mut margin) = (0.0, 0.0, 0.0);
            for part in batch.chunks(mb) {
                let pairs: Vec<&Pair> = part.iter().map(|&i| &train[i]).collect();
                let refs: Vec<RefLogps> = part.iter().map(|&i| train_refs[i]).collect();
                let z = logits(lm, &pairs, &refs, cfg.beta)?;
                // Summed over the micro-batch, divided by the batch: the gradients add up to the
                // batch mean's.
                let loss = (neg_log_sigmoid(&z)?.sum_all()? / batch.len() as f64)?;
                loss_sum += loss.to_dtype(candle_core::DType::F64)?.to_scalar::<f64>()?;
                for zi in z.to_dtype(candle_core::DType::F64)?.to_vec1::<f64>()? {
                    right += rank(zi);
                    margin += zi;
                }
                let grads = loss.backward()?;
                hone_neural::optim::accumulate(&mut acc, grads, &var_list).map_err(nerr)?;
            }
            let Some(grads) = acc else { continue };
            let norm = hone_neural::optim::grad_norm(&grads, &var_list).map_err(nerr)?;
            let clip = hone_neural::optim::clip_factor(norm, cfg.max_grad_norm);
            let lr = hone_neural::optim::linear_schedule(cfg.lr, step, warmup, total);
            opt.step(&grads, lr, clip).map_err(nerr)?;
            let s = DpoStep {
                step,
                epoch,
                loss: loss_sum,
                accuracy: right / batch.len() as f64,
                margin: margin / batch.len() as f64,
                lr,
                grad_norm: norm,
            };
            on_step(&s);
            log.steps.push(s);
            step += 1;
        }
        if !heldout.is_empty() {
            let s = score(lm, heldout, &held_refs, cfg.beta, mb)?;
            if s.loss < log.heldout[log.kept].loss {
                log.kept = log.heldout.len();
                best = snapshot(&vars)?;
            }
            log.heldout.push(s);
        }
    }
    if !heldout.is_empty() && log.kept + 1 != log.heldout.len() {
        restore(&vars, &best)?;
    }
    log.seconds = started.elapsed().as_secs_f64();
    Ok(log)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing;

    /// Pairs preferring one fixed answer over another, for prompts built from the tiny vocabulary.
    fn pairs(lm: &Lm, n: usize, offset: usize) -> Vec<Pair> {
        let good = lm.encode(" yes").unwrap();
        let bad = lm.encode(" no").unwrap();
        (0..n)
            .map(|i| Pair {
                id: format!("p{}", i + offset),
                prompt: lm.encode(&format!("question {}", i + offset)).unwrap(),
                chosen: good.clone(),
                rejected: bad.clone(),
            })
            .collect()
    }

    #[test]
    fn the_reference_scores_ln2_and_training_ranks_held_out_pairs_right() {
        let dir = tempfile::tempdir().unwrap();
        let mut lm = testing::sharp_lm(dir.path()).unwrap();
        let train_pairs = pairs(&lm, 12, 0);
        let held = pairs(&lm, 6, 100);
        let refs = reference_logps(&lm, &held, 4).unwrap();
        let before = score(&lm, &held, &refs, 0.1, 4).unwrap();
        // At the reference every margin is zero: loss ln 2, accuracy one half (ties).
        assert!(
            (before.loss - std::f64::consts::LN_2).abs() < 1e-4,
            "{before:?}"
        );
        assert_eq!(before.accuracy, 0.5);
        let cfg = DpoConfig {
            epochs: 3,
            lr: 2e-2,
            batch_size: 4,
            seed: 3,
            ..DpoConfig::default()
        };
        let log = train(&mut lm, &train_pairs, &held, &cfg, &mut |_| {}).unwrap();
        assert_eq!(log.heldout.len(), 4);
        let kept = log.heldout[log.kept];
        assert_eq!(kept.accuracy, 1.0, "{:?}", log.heldout);
        assert!(
            kept.loss < 0.5 * std::f64::consts::LN_2,
            "{:?}",
            log.heldout
        );
        // The kept weights are the model's weights now: scoring again gives the kept figures.
        let now = score(&lm, &held, &refs, 0.1, 4).unwrap();
        assert!((now.loss - kept.loss).abs() < 1e-5, "{now:?} vs {kept:?}");
        // The preferred answer became more likely than the rejected one, as sampled text shows.
        let p = lm.encode("question 7").unwrap();
        let lp = pair_logps(
            &lm,
            &[&Pair {
                id: "x".into(),
                prompt: p,
                chosen: lm.encode(" yes").unwrap(),
                rejected: lm.encode(" no").unwrap(),
            }],
        )
        .unwrap()
        .to_vec2::<f32>()
        .unwrap();
        assert!(lp[0][0] > lp[0][1], "{lp:?}");
    }

    #[test]
    fn the_loss_is_stable_at_large_margins() {
        // softplus(-z) = ln(1 + e^-z), without overflow at either end.
        for z in [-30.0f64, -2.0, 0.0, 0.5, 40.0] {
            let t = Tensor::new(&[z], &candle_core::Device::Cpu).unwrap();
            let got = neg_log_sigmoid(&t).unwrap().to_vec1::<f64>().unwrap()[0];
            let want = (1.0 + (-z).exp()).ln();
            assert!(
                (got - want).abs() < 1e-9 * want.max(1.0),
                "z {z}: {got} vs {want}"
            );
        }
    }

    #[test]
    fn bad_pairs_and_settings_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let mut lm = testing::sharp_lm(dir.path()).unwrap();
        let mut p = pairs(&lm, 2, 0);
        assert!(train(&mut lm, &[], &[], &DpoConfig::default(), &mut |_| {}).is_err());
        let bad_beta = DpoConfig {
            beta: 0.0,
            ..DpoConfig::default()
        };
        assert!(train(&mut lm, &p, &[], &bad_beta, &mut |_| {}).is_err());
        p[1].rejected.clear();
        let e = train(&mut lm, &p, &[], &DpoConfig::default(), &mut |_| {}).unwrap_err();
        assert!(e.to_string().contains("p1"), "{e}");
    }
}
