//! `hone drift`: what a served run answered lately against what it answered on its frozen test set —
//! the predicted label mix, the confidence and the text length — each with a test and the PSI
//! (`hone_eval::drift`). A feature alarms only with enough live answers (`min_samples`), a test that
//! rejects at `alpha` split over the features (Bonferroni), and a PSI above `psi_floor`: quiet on
//! small windows and on trivial differences in large ones.

use std::collections::BTreeMap;

use hone_core::{Error, Result};
use hone_data::split::Part;
use hone_eval::drift::{Shift, categorical, numeric};
use hone_store::Store;
use serde::Serialize;

use crate::record::{Predictions, Run};

/// The alarm thresholds.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Thresholds {
    /// The most recent answers compared.
    pub window: usize,
    /// Fewer live answers than this never alarm.
    pub min_samples: usize,
    /// The family-wise false-alarm rate of one check, split over the features.
    pub alpha: f64,
    /// The smallest PSI that alarms.
    pub psi_floor: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            window: 500,
            min_samples: 100,
            alpha: 0.01,
            psi_floor: 0.1,
        }
    }
}

/// One feature's comparison and verdict.
#[derive(Debug, Clone, Serialize)]
pub struct Feature {
    pub feature: &'static str,
    #[serde(flatten)]
    pub shift: Shift,
    pub alarm: bool,
    /// Why it does not alarm, or what moved.
    pub note: String,
}

/// What `hone drift` found.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub run: String,
    pub model: String,
    pub first_at: Option<String>,
    pub last_at: Option<String>,
    pub n_live: usize,
    pub thresholds: Thresholds,
    pub features: Vec<Feature>,
    pub alarms: usize,
}

/// Compare the latest answers of `run` (by default the run of the latest logged answer) with its
/// test-set answers.
pub fn check(store: &Store, run: Option<&Run>, t: Thresholds) -> Result<Report> {
    let run = match run {
        Some(r) => r.clone(),
        None => {
            let last = store.recent_predictions(None, 1)?;
            let Some(p) = last.first() else {
                return Err(Error::NotFound {
                    what: "served answers",
                    name: "(any)".into(),
                    hint: "`hone serve` logs what it answers; drift compares those answers with the test set".into(),
                });
            };
            crate::record::resolve(store, &p.run)?
        }
    };
    if run.record.generation.is_some() {
        return Err(Error::Usage(
            "drift checks classification runs so far; a generate run's signals (answer length, grader pass rate) are not built yet".into(),
        ));
    }
    let live = store.recent_predictions(Some(&run.id), t.window)?;
    let preds = Predictions::load(store, &run)?;
    let mut ref_labels: BTreeMap<String, u64> = BTreeMap::new();
    for p in &preds.test {
        *ref_labels.entry(p.predicted.clone()).or_default() += 1;
    }
    let ref_conf: Vec<f64> = preds.test.iter().map(|p| p.confidence).collect();
    let version = store.resolve_version(Some(&run.version))?;
    let parts = crate::split_stage::assignment(store, &run.split)?;
    let ref_len: Vec<f64> = crate::curate::load_records(store, &version)?
        .iter()
        .filter(|r| parts.get(&r.id) == Some(&Part::Test))
        .map(|r| r.text.chars().count() as f64)
        .collect();
    let mut live_labels: BTreeMap<String, u64> = BTreeMap::new();
    for p in &live {
        *live_labels.entry(p.output.clone()).or_default() += 1;
    }
    let live_conf: Vec<f64> = live.iter().filter_map(|p| p.probability).collect();
    // Every answer's input length (kept with or without consent); rows from before hone kept
    // it fall back to the input where consent kept it.
    let live_len: Vec<f64> = live
        .iter()
        .filter_map(|p| {
            p.input_chars
                .map(|n| n as f64)
                .or_else(|| p.input.as_ref().map(|s| s.chars().count() as f64))
        })
        .collect();
    let per_test = t.alpha / 3.0;
    let verdict = |feature: &'static str, shift: Shift| {
        let (alarm, note) = if shift.n_live < t.min_samples {
            (
                false,
                format!(
                    "{} live value(s), fewer than min_samples {}: no verdict",
                    shift.n_live, t.min_samples
                ),
            )
        } else if shift.p_value >= per_test {
            (false, format!("p = {:.4} ≥ {per_test:.4}", shift.p_value))
        } else if shift.psi < t.psi_floor {
            (
                false,
                format!(
                    "significant (p = {:.2e}) but PSI {:.4} < {}: too small to act on",
                    shift.p_value, shift.psi, t.psi_floor
                ),
            )
        } else {
            (
                true,
                format!(
                    "moved: p = {:.2e}, PSI {:.4} ≥ {}",
                    shift.p_value, shift.psi, t.psi_floor
                ),
            )
        };
        Feature {
            feature,
            shift,
            alarm,
            note,
        }
    };
    let features = vec![
        verdict("predicted_label", categorical(&ref_labels, &live_labels)),
        verdict("confidence", numeric(&ref_conf, &live_conf)),
        verdict("text_length", numeric(&ref_len, &live_len)),
    ];
    Ok(Report {
        run: run.id.clone(),
        model: run.model.clone(),
        first_at: live.first().map(|p| p.at.clone()),
        last_at: live.last().map(|p| p.at.clone()),
        n_live: live.len(),
        thresholds: t,
        alarms: features.iter().filter(|f| f.alarm).count(),
        features,
    })
}

impl Report {
    /// The table and verdict `hone drift` prints.
    pub fn text(&self) -> String {
        let rows: Vec<Vec<String>> = self
            .features
            .iter()
            .map(|f| {
                vec![
                    f.feature.to_string(),
                    f.shift.n_live.to_string(),
                    f.shift.n_reference.to_string(),
                    format!("{:.4}", f.shift.psi),
                    format!("{:.2e}", f.shift.p_value),
                    if f.alarm { "ALARM" } else { "ok" }.to_string(),
                    f.note.clone(),
                ]
            })
            .collect();
        let mut out = format!(
            "run {} ({}): the latest {} answer(s) ({} to {}) against its test set\n\n",
            hone_core::hash::short(&self.run),
            self.model,
            self.n_live,
            self.first_at.as_deref().unwrap_or("-"),
            self.last_at.as_deref().unwrap_or("-"),
        );
        out.push_str(&crate::reports::table(
            &["feature", "live", "reference", "PSI", "p", "verdict", "why"],
            &rows,
        ));
        out.push_str(&match self.alarms {
            0 => "\nno drift alarm.\n".to_string(),
            n => format!(
                "\n{n} drift alarm(s): look at what users send now (`hone serve` logs, masked) before trusting the test-set figures.\n"
            ),
        });
        out
    }
}
