//! `hone compare A B`: metric deltas with paired bootstrap CIs and McNemar's test on the test examples the
//! two runs share, the config and data differences, and a plain verdict (DESIGN §7.7: "better" means
//! significantly better).

use std::collections::BTreeMap;

use hone_core::{Error, Result};
use hone_eval::{McNemar, Paired, Verdict};
use hone_store::Store;
use serde::Serialize;
use serde_json::Value;

use crate::record::{Predictions, Run};

#[derive(Debug, Serialize)]
pub struct Comparison {
    pub a: String,
    pub b: String,
    pub n_shared: usize,
    pub accuracy_a: f64,
    pub accuracy_b: f64,
    /// B − A.
    pub accuracy: Paired,
    pub macro_f1: Paired,
    pub mcnemar: McNemar,
    pub verdict: Verdict,
    pub config_diff: Vec<(String, Value, Value)>,
    pub data_diff: Vec<String>,
}

impl Comparison {
    pub fn verdict_text(&self) -> &'static str {
        verdict_text(self.verdict)
    }

    /// What `hone compare` prints for two classification runs.
    pub fn text(&self, ra: &Run, rb: &Run) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        writeln!(
            out,
            "A = run #{} {} ({}), B = run #{} {} ({}), {} shared test examples\n",
            ra.seq,
            ra.model,
            hone_core::hash::short(&ra.id),
            rb.seq,
            rb.model,
            hone_core::hash::short(&rb.id),
            self.n_shared
        )
        .ok();
        writeln!(
            out,
            "accuracy   A {:.4}  B {:.4}  Δ {:+.4}  95% CI [{:+.4}, {:+.4}]",
            self.accuracy_a,
            self.accuracy_b,
            self.accuracy.delta,
            self.accuracy.lo,
            self.accuracy.hi
        )
        .ok();
        writeln!(
            out,
            "macro-F1                       Δ {:+.4}  95% CI [{:+.4}, {:+.4}]",
            self.macro_f1.delta, self.macro_f1.lo, self.macro_f1.hi
        )
        .ok();
        writeln!(
            out,
            "McNemar    A right/B wrong {}, A wrong/B right {}, p = {:.4}{}",
            self.mcnemar.b,
            self.mcnemar.c,
            self.mcnemar.p_value,
            if self.mcnemar.exact { " (exact)" } else { "" }
        )
        .ok();
        for (k, va, vb) in &self.config_diff {
            writeln!(out, "config     {k}: {va} → {vb}").ok();
        }
        for d in &self.data_diff {
            writeln!(out, "data       {d}").ok();
        }
        if self.config_diff.is_empty() && self.data_diff.is_empty() {
            writeln!(out, "config and data: identical").ok();
        }
        writeln!(
            out,
            "\nB is {} than A.",
            self.verdict_text().replace(
                "indistinguishable",
                "indistinguishable from (neither better nor worse)"
            )
        )
        .ok();
        out
    }
}

/// A verdict in words, as `compare` prints it.
fn verdict_text(v: Verdict) -> &'static str {
    match v {
        Verdict::SignificantlyBetter => "significantly better",
        Verdict::SignificantlyWorse => "significantly worse",
        Verdict::Indistinguishable => "indistinguishable",
    }
}

/// `(id → (gold, predicted))` of a run's test predictions.
pub fn test_predictions(store: &Store, run: &Run) -> Result<BTreeMap<String, (String, String)>> {
    Ok(Predictions::load(store, run)?
        .test
        .into_iter()
        .map(|p| (p.id, (p.gold.unwrap_or_default(), p.predicted)))
        .collect())
}

fn flatten(prefix: &str, v: &Value, out: &mut BTreeMap<String, Value>) {
    match v {
        Value::Object(o) => o.iter().for_each(|(k, x)| {
            flatten(
                &format!("{prefix}{}{k}", if prefix.is_empty() { "" } else { "." }),
                x,
                out,
            )
        }),
        other => {
            out.insert(prefix.to_string(), other.clone());
        }
    }
}

pub fn compare(store: &Store, a: &Run, b: &Run, seed: u64) -> Result<Comparison> {
    let pa = test_predictions(store, a)?;
    let pb = test_predictions(store, b)?;
    let shared: Vec<&String> = pa.keys().filter(|k| pb.contains_key(*k)).collect();
    if shared.is_empty() {
        return Err(Error::Usage(format!(
            "runs {} and {} share no test examples; compare runs evaluated on the same frozen test set",
            hone_core::hash::short(&a.id),
            hone_core::hash::short(&b.id)
        )));
    }
    let mut labels: Vec<&str> = shared
        .iter()
        .flat_map(|k| [pa[*k].0.as_str(), pa[*k].1.as_str(), pb[*k].1.as_str()])
        .collect();
    labels.sort();
    labels.dedup();
    let idx = |l: &str| labels.binary_search(&l).unwrap_or(0) as u32;
    let gold: Vec<u32> = shared.iter().map(|k| idx(&pa[*k].0)).collect();
    let pred_a: Vec<u32> = shared.iter().map(|k| idx(&pa[*k].1)).collect();
    let pred_b: Vec<u32> = shared.iter().map(|k| idx(&pb[*k].1)).collect();
    let n_classes = labels.len();
    let gold = &gold;
    let acc_of = |p: &[u32], ix: &[usize]| {
        ix.iter().filter(|&&i| gold[i] == p[i]).count() as f64 / ix.len().max(1) as f64
    };
    let f1_of = |p: &[u32], ix: &[usize]| {
        let g: Vec<u32> = ix.iter().map(|&i| gold[i]).collect();
        let q: Vec<u32> = ix.iter().map(|&i| p[i]).collect();
        hone_eval::macro_f1(&g, &q, n_classes)
    };
    let n = shared.len();
    let accuracy = hone_eval::paired_bootstrap(
        n,
        &|ix: &[usize]| acc_of(&pred_a, ix),
        &|ix: &[usize]| acc_of(&pred_b, ix),
        2000,
        seed,
        0.95,
    );
    let macro_f1 = hone_eval::paired_bootstrap(
        n,
        &|ix: &[usize]| f1_of(&pred_a, ix),
        &|ix: &[usize]| f1_of(&pred_b, ix),
        2000,
        seed,
        0.95,
    );
    let ca: Vec<bool> = (0..n).map(|i| gold[i] == pred_a[i]).collect();
    let cb: Vec<bool> = (0..n).map(|i| gold[i] == pred_b[i]).collect();
    let mcnemar = hone_eval::mcnemar(&ca, &cb);
    let verdict = hone_eval::verdict(&accuracy, Some(&mcnemar), 0.05);
    let (config_diff, data_diff) = differences(a, b, pa.len(), pb.len(), n);
    Ok(Comparison {
        a: a.id.clone(),
        b: b.id.clone(),
        n_shared: n,
        accuracy_a: ca.iter().filter(|&&c| c).count() as f64 / n as f64,
        accuracy_b: cb.iter().filter(|&&c| c).count() as f64 / n as f64,
        accuracy,
        macro_f1,
        mcnemar,
        verdict,
        config_diff,
        data_diff,
    })
}

/// What differs between two runs' configs and data (`n_a`, `n_b` test examples, `n` shared).
fn differences(
    a: &Run,
    b: &Run,
    n_a: usize,
    n_b: usize,
    n: usize,
) -> (Vec<(String, Value, Value)>, Vec<String>) {
    let (mut fa, mut fb) = (BTreeMap::new(), BTreeMap::new());
    let as_json = |r: &Run| serde_json::to_value(&r.config).unwrap_or(Value::Null);
    flatten("", &as_json(a), &mut fa);
    flatten("", &as_json(b), &mut fb);
    fa.insert("seed".into(), a.seed.into());
    fb.insert("seed".into(), b.seed.into());
    let keys: std::collections::BTreeSet<&String> = fa.keys().chain(fb.keys()).collect();
    let config_diff = keys
        .into_iter()
        .filter(|k| fa.get(*k) != fb.get(*k))
        .map(|k| {
            (
                k.clone(),
                fa.get(k).cloned().unwrap_or(Value::Null),
                fb.get(k).cloned().unwrap_or(Value::Null),
            )
        })
        .collect();
    let mut data_diff = Vec::new();
    if a.version != b.version {
        data_diff.push(format!(
            "dataset version {} → {}",
            hone_core::hash::short(&a.version),
            hone_core::hash::short(&b.version)
        ));
    }
    if a.split != b.split {
        data_diff.push(format!(
            "split {} → {}",
            hone_core::hash::short(&a.split),
            hone_core::hash::short(&b.split)
        ));
    }
    if n_a != n || n_b != n {
        data_diff.push(format!(
            "test sets differ: {} and {} examples, {n} shared (compared on the shared ones)",
            n_a, n_b
        ));
    }
    (config_diff, data_diff)
}

/// Two generate runs compared on the test examples they share: ROUGE-L (per-example means) and
/// chrF (pooled statistics) with paired bootstrap intervals; "better" means the ROUGE-L interval
/// excludes 0.
#[derive(Debug, Serialize)]
pub struct TextComparison {
    pub a: String,
    pub b: String,
    pub n_shared: usize,
    pub rouge_l_a: f64,
    pub rouge_l_b: f64,
    /// B − A.
    pub rouge_l: Paired,
    pub chrf_a: f64,
    pub chrf_b: f64,
    pub chrf: Paired,
    /// Each grader's pass rate on the shared examples, paired (the project's graders as they are now).
    pub graders: Vec<GraderPaired>,
    pub verdict: Verdict,
    pub config_diff: Vec<(String, Value, Value)>,
    pub data_diff: Vec<String>,
}

/// One grader's pass rate and mean reward on both runs' answers to the same test examples; `pass`
/// and `mean` are B − A (an answer the grader cannot score is reward 0, as in `hone run`).
#[derive(Debug, Serialize)]
pub struct GraderPaired {
    pub grader: String,
    pub pass_a: f64,
    pub pass_b: f64,
    pub pass: Paired,
    pub mean_a: f64,
    pub mean_b: f64,
    pub mean: Paired,
    /// A `multi` grader's sub-scores (by sub-grader name, e.g. a relevance score), paired the same
    /// way; an answer without the sub-score (the grader failed on it) counts 0.
    pub sub: Vec<SubPaired>,
}

/// One sub-grader's mean score on both runs' answers; `mean` is B − A.
#[derive(Debug, Serialize)]
pub struct SubPaired {
    pub name: String,
    pub mean_a: f64,
    pub mean_b: f64,
    pub mean: Paired,
}

/// One grader's verdicts on A's and B's answers to the same items, paired: pass rate, mean reward
/// and every sub-score either side has, each B − A with a paired bootstrap CI.
pub fn pair_verdicts(
    name: &str,
    ga: &crate::graders::Verdicts,
    gb: &crate::graders::Verdicts,
    seed: u64,
) -> GraderPaired {
    let m = ga.passed.len().min(gb.passed.len());
    let every: Vec<usize> = (0..m).collect();
    let rate = |v: &[bool], ix: &[usize]| {
        ix.iter().filter(|&&i| v[i]).count() as f64 / ix.len().max(1) as f64
    };
    let avg =
        |v: &[f64], ix: &[usize]| ix.iter().map(|&i| v[i]).sum::<f64>() / ix.len().max(1) as f64;
    let paired_mean = |a: &[f64], b: &[f64]| {
        hone_eval::paired_bootstrap(
            m,
            &|ix: &[usize]| avg(a, ix),
            &|ix: &[usize]| avg(b, ix),
            2000,
            seed,
            0.95,
        )
    };
    let rewards = |g: &crate::graders::Verdicts| -> Vec<f64> {
        g.rewards[..m].iter().map(|r| r.unwrap_or(0.0)).collect()
    };
    let (ra, rb) = (rewards(ga), rewards(gb));
    let subs: std::collections::BTreeSet<&String> = ga.sub_rewards[..m.min(ga.sub_rewards.len())]
        .iter()
        .chain(&gb.sub_rewards[..m.min(gb.sub_rewards.len())])
        .flat_map(|s| s.keys())
        .collect();
    let sub_of = |g: &crate::graders::Verdicts, key: &str| -> Vec<f64> {
        (0..m)
            .map(|i| {
                g.sub_rewards
                    .get(i)
                    .and_then(|s| s.get(key))
                    .copied()
                    .unwrap_or(0.0)
            })
            .collect()
    };
    let sub = subs
        .into_iter()
        .map(|key| {
            let (sa, sb) = (sub_of(ga, key), sub_of(gb, key));
            SubPaired {
                name: key.clone(),
                mean_a: avg(&sa, &every),
                mean_b: avg(&sb, &every),
                mean: paired_mean(&sa, &sb),
            }
        })
        .collect();
    GraderPaired {
        grader: name.to_string(),
        pass_a: rate(&ga.passed, &every),
        pass_b: rate(&gb.passed, &every),
        pass: hone_eval::paired_bootstrap(
            m,
            &|ix: &[usize]| rate(&ga.passed, ix),
            &|ix: &[usize]| rate(&gb.passed, ix),
            2000,
            seed,
            0.95,
        ),
        mean_a: avg(&ra, &every),
        mean_b: avg(&rb, &every),
        mean: paired_mean(&ra, &rb),
        sub,
    }
}

impl TextComparison {
    /// The comparison as `hone compare` prints it.
    pub fn text(&self, ra: &Run, rb: &Run) -> String {
        use std::fmt::Write;
        let short = hone_core::hash::short;
        let mut s = format!(
            "A = run #{} {} ({}), B = run #{} {} ({}), {} shared test examples\n\n",
            ra.seq,
            ra.model,
            short(&ra.id),
            rb.seq,
            rb.model,
            short(&rb.id),
            self.n_shared
        );
        for (name, va, vb, p) in [
            ("ROUGE-L", self.rouge_l_a, self.rouge_l_b, &self.rouge_l),
            ("chrF", self.chrf_a, self.chrf_b, &self.chrf),
        ] {
            let _ = writeln!(
                s,
                "{name:<8} A {va:.4}  B {vb:.4}  Δ {:+.4}  95% CI [{:+.4}, {:+.4}]",
                p.delta, p.lo, p.hi
            );
        }
        for g in &self.graders {
            let _ = writeln!(
                s,
                "grader {} pass rate  A {:.4}  B {:.4}  Δ {:+.4}  95% CI [{:+.4}, {:+.4}]",
                g.grader, g.pass_a, g.pass_b, g.pass.delta, g.pass.lo, g.pass.hi
            );
            let _ = writeln!(
                s,
                "grader {} mean reward  A {:.4}  B {:.4}  Δ {:+.4}  95% CI [{:+.4}, {:+.4}]",
                g.grader, g.mean_a, g.mean_b, g.mean.delta, g.mean.lo, g.mean.hi
            );
            for t in &g.sub {
                let _ = writeln!(
                    s,
                    "grader {} {} mean  A {:.4}  B {:.4}  Δ {:+.4}  95% CI [{:+.4}, {:+.4}]",
                    g.grader, t.name, t.mean_a, t.mean_b, t.mean.delta, t.mean.lo, t.mean.hi
                );
            }
        }
        for (k, va, vb) in &self.config_diff {
            let _ = writeln!(s, "config   {k}: {va} → {vb}");
        }
        for d in &self.data_diff {
            let _ = writeln!(s, "data     {d}");
        }
        let v = self.verdict_text().replace(
            "indistinguishable",
            "indistinguishable from (neither better nor worse)",
        );
        let _ = writeln!(s, "\nB is {v} than A (by ROUGE-L).");
        s
    }

    pub fn verdict_text(&self) -> &'static str {
        verdict_text(self.verdict)
    }
}

/// Two runs compared as `hone compare` compares them: generate runs by ROUGE-L, chrF and the
/// project's graders; classification runs by accuracy, macro-F1 and McNemar.
pub struct RunsCompared {
    /// The typed comparison, serialised (what `--json` prints), with `verdict_text` added.
    pub json: Value,
    pub verdict: &'static str,
    /// The plain-text report.
    pub text: String,
}

fn json_of(c: &impl Serialize) -> Result<Value> {
    serde_json::to_value(c).map_err(|e| Error::Internal(format!("comparison as JSON: {e}")))
}

/// Compare runs `a` and `b` with the comparison that fits their task (seed 7, as `hone compare`).
pub fn compare_runs(
    project: &crate::project::Project,
    store: &Store,
    a: &Run,
    b: &Run,
) -> Result<RunsCompared> {
    let (mut json, verdict, text) =
        if a.record.generation.is_some() || b.record.generation.is_some() {
            let graders = crate::graders::load(project)?;
            let c = compare_texts(store, a, b, 7, &graders)?;
            (json_of(&c)?, c.verdict_text(), c.text(a, b))
        } else {
            let c = compare(store, a, b, 7)?;
            (json_of(&c)?, c.verdict_text(), c.text(a, b))
        };
    json["verdict_text"] = Value::from(verdict);
    Ok(RunsCompared {
        json,
        verdict,
        text,
    })
}

/// `(id → (reference, completion))` of a generate run's test answers.
fn answers(store: &Store, run: &Run) -> Result<BTreeMap<String, (String, String)>> {
    Ok(Predictions::load(store, run)?
        .generated
        .into_iter()
        .map(|p| (p.id, (p.reference.unwrap_or_default(), p.completion)))
        .collect())
}

/// Compare two generate runs; `graders` (the project's, may be empty) are paired too, on the test
/// records of A's dataset version.
pub fn compare_texts(
    store: &Store,
    a: &Run,
    b: &Run,
    seed: u64,
    graders: &[crate::graders::ProjectGrader],
) -> Result<TextComparison> {
    use hone_eval::text::{chrf_corpus, chrf_stats, rouge_l};
    let pa = answers(store, a)?;
    let pb = answers(store, b)?;
    let shared: Vec<&String> = pa.keys().filter(|k| pb.contains_key(*k)).collect();
    if shared.is_empty() {
        return Err(Error::Usage(format!(
            "runs {} and {} share no test examples; compare runs evaluated on the same frozen test set",
            hone_core::hash::short(&a.id),
            hone_core::hash::short(&b.id)
        )));
    }
    let n = shared.len();
    let rouge = |p: &BTreeMap<String, (String, String)>| -> Vec<f64> {
        shared.iter().map(|k| rouge_l(&p[*k].1, &p[*k].0)).collect()
    };
    let stats = |p: &BTreeMap<String, (String, String)>| -> Vec<hone_eval::text::ChrfStats> {
        shared
            .iter()
            .map(|k| chrf_stats(&p[*k].1, &p[*k].0))
            .collect()
    };
    let (ra, rb, sa, sb) = (rouge(&pa), rouge(&pb), stats(&pa), stats(&pb));
    let mean =
        |v: &[f64], ix: &[usize]| ix.iter().map(|&i| v[i]).sum::<f64>() / ix.len().max(1) as f64;
    let rouge_l = hone_eval::paired_bootstrap(
        n,
        &|ix: &[usize]| mean(&ra, ix),
        &|ix: &[usize]| mean(&rb, ix),
        2000,
        seed,
        0.95,
    );
    let chrf = hone_eval::paired_bootstrap(
        n,
        &|ix: &[usize]| chrf_corpus(&sa, ix),
        &|ix: &[usize]| chrf_corpus(&sb, ix),
        2000,
        seed,
        0.95,
    );
    let all: Vec<usize> = (0..n).collect();
    let mut grader_pairs = Vec::new();
    if !graders.is_empty() {
        let version = store.resolve_version(Some(&a.version))?;
        let records: BTreeMap<String, hone_core::Record> =
            crate::curate::load_records(store, &version)?
                .into_iter()
                .map(|r| (r.id.clone(), r))
                .collect();
        let ids: Vec<&String> = shared
            .iter()
            .copied()
            .filter(|k| records.contains_key(*k))
            .collect();
        let items: Vec<Value> = ids
            .iter()
            .map(|k| crate::graders::item(&records[*k]))
            .collect();
        let ta: Vec<&str> = ids.iter().map(|k| pa[*k].1.as_str()).collect();
        let tb: Vec<&str> = ids.iter().map(|k| pb[*k].1.as_str()).collect();
        let va = crate::graders::grade_answers(graders, &items, &ta, seed);
        let vb = crate::graders::grade_answers(graders, &items, &tb, seed);
        for (name, ga) in &va {
            grader_pairs.push(pair_verdicts(name, ga, &vb[name], seed));
        }
    }
    let verdict = hone_eval::verdict(&rouge_l, None, 0.05);
    let (config_diff, data_diff) = differences(a, b, pa.len(), pb.len(), n);
    Ok(TextComparison {
        a: a.id.clone(),
        b: b.id.clone(),
        n_shared: n,
        rouge_l_a: mean(&ra, &all),
        rouge_l_b: mean(&rb, &all),
        rouge_l,
        chrf_a: chrf_corpus(&sa, &all),
        chrf_b: chrf_corpus(&sb, &all),
        chrf,
        graders: grader_pairs,
        verdict,
        config_diff,
        data_diff,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graders::Verdicts;

    /// One answer's verdict: passed, reward (`None`: the grader failed), sub-rewards.
    type Answer<'a> = (bool, Option<f64>, &'a [(&'a str, f64)]);

    fn verdicts(rows: &[Answer]) -> Verdicts {
        Verdicts {
            passed: rows.iter().map(|r| r.0).collect(),
            rewards: rows.iter().map(|r| r.1).collect(),
            sub_rewards: rows
                .iter()
                .map(|r| r.2.iter().map(|(k, v)| (k.to_string(), *v)).collect())
                .collect(),
            ..Verdicts::default()
        }
    }

    #[test]
    fn pairing_covers_pass_rate_mean_and_every_sub_score_with_failed_answers_as_zero() {
        let a = verdicts(&[
            (false, Some(0.6), &[("short", 1.0), ("on_topic", 0.8)]),
            (false, Some(0.4), &[("short", 0.0), ("on_topic", 0.6)]),
            (true, Some(1.0), &[("short", 1.0), ("on_topic", 0.7)]),
            (false, None, &[]),
        ]);
        let b = verdicts(&[
            (true, Some(1.0), &[("short", 1.0), ("on_topic", 0.6)]),
            (
                true,
                Some(1.0),
                &[("short", 1.0), ("on_topic", 0.5), ("offer", 1.0)],
            ),
            (true, Some(1.0), &[("short", 1.0), ("on_topic", 0.7)]),
            (false, Some(0.2), &[("short", 1.0), ("on_topic", 0.2)]),
        ]);
        let p = pair_verdicts("house", &a, &b, 7);
        assert_eq!(p.grader, "house");
        assert_eq!((p.pass_a, p.pass_b), (0.25, 0.75));
        assert!((p.pass.delta - 0.5).abs() < 1e-12);
        assert!((p.mean_a - 0.5).abs() < 1e-12, "the failed answer counts 0");
        assert!((p.mean.delta - (3.2 / 4.0 - 0.5)).abs() < 1e-12);
        let names: Vec<&str> = p.sub.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            ["offer", "on_topic", "short"],
            "a key either side has"
        );
        let topic = &p.sub[1];
        assert!((topic.mean_a - 2.1 / 4.0).abs() < 1e-12);
        assert!((topic.mean_b - 2.0 / 4.0).abs() < 1e-12);
        assert!((topic.mean.delta + 0.1 / 4.0).abs() < 1e-12);
        assert!(topic.mean.lo <= topic.mean.delta && topic.mean.delta <= topic.mean.hi);
        assert!((p.sub[0].mean_a, p.sub[0].mean_b) == (0.0, 0.25));
    }
}
