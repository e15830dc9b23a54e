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
        let rate = |v: &[bool], ix: &[usize]| {
            ix.iter().filter(|&&i| v[i]).count() as f64 / ix.len().max(1) as f64
        };
        let avg = |v: &[Option<f64>], ix: &[usize]| {
            ix.iter().map(|&i| v[i].unwrap_or(0.0)).sum::<f64>() / ix.len().max(1) as f64
        };
        let m = ids.len();
        let every: Vec<usize> = (0..m).collect();
        for (name, ga) in &va {
            let gb = &vb[name];
            grader_pairs.push(GraderPaired {
                mean_a: avg(&ga.rewards, &every),
                mean_b: avg(&gb.rewards, &every),
                mean: hone_eval::paired_bootstrap(
                    m,
                    &|ix: &[usize]| avg(&ga.rewards, ix),
                    &|ix: &[usize]| avg(&gb.rewards, ix),
                    2000,
                    seed,
                    0.95,
                ),
                grader: name.clone(),
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
            });
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
