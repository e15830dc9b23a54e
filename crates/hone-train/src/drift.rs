//! `hone drift`: what a served run answered lately against what it answered on its frozen test set —
//! for a classifier the predicted label mix, the confidence and the text length; for a generate
//! model the answer length in words, the refusal rate, the prompt length and the pass rate of each
//! grader that can judge an answer alone — each with a test and the PSI (`hone_eval::drift`). Thresholds come from the project's `[monitor]` table. A feature
//! alarms only with enough live answers (`min_samples`), a test that rejects at `alpha` split over
//! the features (Bonferroni), and a PSI at least `psi_floor` above the PSI that sampling noise alone
//! gives at those sizes: quiet on small windows and on trivial differences in large ones.

use std::collections::BTreeMap;

use hone_core::{Error, Result};
use hone_data::split::Part;
use hone_eval::drift::{Shift, categorical, numeric};
use hone_store::Store;
use serde::Serialize;

use crate::project::Project;
use crate::record::{Predictions, Run};

/// The alarm thresholds: the project's `[monitor]` table.
pub type Thresholds = hone_core::config::MonitorConfig;

/// The project's `[monitor]` thresholds, with the window and minimum sample a command line may
/// override.
pub fn thresholds(
    project: &Project,
    window: Option<usize>,
    min_samples: Option<usize>,
) -> Thresholds {
    let monitor = project.config.monitor;
    Thresholds {
        window: window.unwrap_or(monitor.window).max(1),
        min_samples: min_samples.unwrap_or(monitor.min_samples),
        ..monitor
    }
}

/// One feature's comparison and verdict.
#[derive(Debug, Clone, Serialize)]
pub struct Feature {
    pub feature: String,
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
/// test-set answers. A generate run is also watched through the project's graders that can score
/// an answer on its own (see [`live_graders`]).
pub fn check(project: &Project, store: &Store, run: Option<&Run>, t: Thresholds) -> Result<Report> {
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
    let live = store.recent_predictions(Some(&run.id), t.window)?;
    let preds = Predictions::load(store, &run)?;
    let version = store.resolve_version(Some(&run.version))?;
    let parts = crate::split_stage::assignment(store, &run.split)?;
    let ref_len: Vec<f64> = crate::curate::load_records(store, &version)?
        .iter()
        .filter(|r| parts.get(&r.id) == Some(&Part::Test))
        .map(|r| r.text.chars().count() as f64)
        .collect();
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
    // Grader features (generate runs) come after the three fixed ones; all share the family-wise
    // alpha.
    let shifts = if run.record.generation.is_some() {
        // A generate run: how long its answers are, how often it refuses, how long the prompts are.
        let words = |s: &str| s.split_whitespace().count() as f64;
        let ref_words: Vec<f64> = preds
            .generated
            .iter()
            .map(|g| words(&g.completion))
            .collect();
        let live_words: Vec<f64> = live.iter().map(|p| words(&p.output)).collect();
        let refusals = |texts: &mut dyn Iterator<Item = &str>| {
            let mut counts: BTreeMap<String, u64> = BTreeMap::new();
            for text in texts {
                let kind = if is_refusal(text) {
                    "refusal"
                } else {
                    "answer"
                };
                *counts.entry(kind.into()).or_default() += 1;
            }
            counts
        };
        let ref_refusals = refusals(&mut preds.generated.iter().map(|g| g.completion.as_str()));
        let live_refusals = refusals(&mut live.iter().map(|p| p.output.as_str()));
        let mut shifts = vec![
            ("answer_words".to_string(), numeric(&ref_words, &live_words)),
            (
                "refusal".to_string(),
                categorical(&ref_refusals, &live_refusals),
            ),
            ("text_length".to_string(), numeric(&ref_len, &live_len)),
        ];
        let reference: Vec<&str> = preds
            .generated
            .iter()
            .map(|g| g.completion.as_str())
            .collect();
        let live_answers: Vec<&str> = live.iter().map(|p| p.output.as_str()).collect();
        let item = answer_only_item();
        for (name, grader, reference_tally) in live_graders(project, &reference)? {
            let live_tally = pass_tally(
                live_answers
                    .iter()
                    .map(|a| grader.grade(a, &item).is_ok_and(|r| r.passed)),
            );
            shifts.push((
                format!("grader_{name}_pass"),
                categorical(&reference_tally, &live_tally),
            ));
        }
        shifts
    } else {
        let mut ref_labels: BTreeMap<String, u64> = BTreeMap::new();
        for p in &preds.test {
            *ref_labels.entry(p.predicted.clone()).or_default() += 1;
        }
        let ref_conf: Vec<f64> = preds.test.iter().map(|p| p.confidence).collect();
        let mut live_labels: BTreeMap<String, u64> = BTreeMap::new();
        for p in &live {
            *live_labels.entry(p.output.clone()).or_default() += 1;
        }
        let live_conf: Vec<f64> = live.iter().filter_map(|p| p.probability).collect();
        vec![
            (
                "predicted_label".to_string(),
                categorical(&ref_labels, &live_labels),
            ),
            ("confidence".to_string(), numeric(&ref_conf, &live_conf)),
            ("text_length".to_string(), numeric(&ref_len, &live_len)),
        ]
    };
    let per_test = t.alpha / shifts.len() as f64;
    let features: Vec<Feature> = shifts
        .into_iter()
        .map(|(feature, shift)| verdict(&t, per_test, feature, shift))
        .collect();
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

/// One feature's verdict: quiet below `min_samples` live values, when the test does not reject at
/// `per_test`, or when the PSI is less than `psi_floor` above its noise level (the PSI two samples
/// of these sizes reach one time in twenty with no shift); an alarm otherwise.
fn verdict(t: &Thresholds, per_test: f64, feature: String, shift: Shift) -> Feature {
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
    } else if shift.psi - shift.psi_noise < t.psi_floor {
        (
            false,
            format!(
                "significant (p = {:.2e}) but PSI {:.4} is within {} of its noise level {:.4}: too small to act on",
                shift.p_value, shift.psi, t.psi_floor, shift.psi_noise
            ),
        )
    } else {
        (
            true,
            format!(
                "moved: p = {:.2e}, PSI {:.4} ≥ noise {:.4} + {}",
                shift.p_value, shift.psi, shift.psi_noise, t.psi_floor
            ),
        )
    };
    Feature {
        feature,
        shift,
        alarm,
        note,
    }
}

/// What a grader sees of a live answer's item: only an id. Live traffic has no reference, and its
/// prompt is kept only with consent, so a drift signal may use only graders of the answer itself.
fn answer_only_item() -> serde_json::Value {
    serde_json::json!({"id": "live"})
}

/// A grader that judges answers alone: its name, itself, and its pass tally on the reference.
type LiveGrader = (String, hone_grade::grader::Grader, BTreeMap<String, u64>);

/// Passes and failures, as a categorical sample.
fn pass_tally(passed: impl Iterator<Item = bool>) -> BTreeMap<String, u64> {
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    for pass in passed {
        *counts
            .entry(if pass { "pass" } else { "fail" }.into())
            .or_default() += 1;
    }
    counts
}

/// The project's graders that score answers on their own, each with its pass tally on `reference`
/// (the run's test answers): each grader scores every reference answer once, with an item that
/// holds nothing but an id, and is kept only if none of them is an error (a grader that needs the
/// reference or the prompt cannot judge live traffic, which has neither). Named by grader.
fn live_graders(project: &Project, reference: &[&str]) -> Result<Vec<LiveGrader>> {
    if reference.is_empty() {
        return Ok(Vec::new());
    }
    let item = answer_only_item();
    Ok(crate::graders::load(project)?
        .into_iter()
        .filter_map(|g| {
            let passed: Option<Vec<bool>> = reference
                .iter()
                .map(|a| g.grader.grade(a, &item).ok().map(|r| r.passed))
                .collect();
            let tally = pass_tally(passed?.into_iter());
            Some((g.grader.name.clone(), g.grader, tally))
        })
        .collect())
}

/// Openings that mark an answer as a refusal (lower-cased, apostrophes straightened). A fixed,
/// documented list: it counts the usual ways a chat model declines, not every way.
pub const REFUSAL_OPENINGS: &[&str] = &[
    "i can't",
    "i cannot",
    "i can not",
    "i'm sorry, but",
    "i am sorry, but",
    "sorry, but i",
    "i'm unable",
    "i am unable",
    "i'm not able to",
    "i am not able to",
    "i won't",
    "i will not",
    "as an ai",
];

/// Whether a generated answer declines: one of [`REFUSAL_OPENINGS`] in its first sentence or so
/// (the first 120 characters).
pub fn is_refusal(answer: &str) -> bool {
    let head: String = answer
        .chars()
        .take(120)
        .map(|c| if c == '\u{2019}' { '\'' } else { c })
        .collect::<String>()
        .to_lowercase();
    REFUSAL_OPENINGS.iter().any(|o| head.contains(o))
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
                    format!("{:.4}", f.shift.psi_noise),
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
            &[
                "feature",
                "live",
                "reference",
                "PSI",
                "noise",
                "p",
                "verdict",
                "why",
            ],
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_the_usual_openings_and_nothing_else() {
        for r in [
            "I can't help with that.",
            "I’m sorry, but I cannot share account details.",
            "As an AI, I do not have access to your order.",
            "Sorry, but I won't do that.",
        ] {
            assert!(is_refusal(r), "{r}");
        }
        for a in [
            "Your refund was issued on Monday; anything else I can help with?",
            "",
            "You can cancel from the orders page.",
        ] {
            assert!(!is_refusal(a), "{a}");
        }
        // Only the opening counts: a refusal quoted late in a long answer is an answer.
        let long = format!("{} I cannot.", "word ".repeat(40));
        assert!(!is_refusal(&long));
    }

    #[test]
    fn a_verdict_needs_samples_significance_and_size() {
        let t = Thresholds::default();
        let reference: Vec<f64> = (0..400).map(|i| f64::from(i % 40)).collect();
        let same: Vec<f64> = (0..200).map(|i| f64::from(i % 40)).collect();
        let moved: Vec<f64> = (0..200).map(|i| f64::from(i % 40) + 30.0).collect();
        let quiet = verdict(
            &t,
            0.01 / 3.0,
            "text_length".into(),
            numeric(&reference, &same),
        );
        assert!(!quiet.alarm, "{}", quiet.note);
        let loud = verdict(
            &t,
            0.01 / 3.0,
            "text_length".into(),
            numeric(&reference, &moved),
        );
        assert!(
            loud.alarm && loud.note.starts_with("moved"),
            "{}",
            loud.note
        );
        // The same move on too few answers gives no verdict.
        let few = verdict(
            &t,
            0.01 / 3.0,
            "text_length".into(),
            numeric(&reference, &moved[..20]),
        );
        assert!(
            !few.alarm && few.note.contains("min_samples"),
            "{}",
            few.note
        );
        // Refusals: from 0% to 50% alarms.
        let r: BTreeMap<String, u64> = [("answer".to_string(), 300)].into();
        let l: BTreeMap<String, u64> =
            [("answer".to_string(), 100), ("refusal".to_string(), 100)].into();
        assert!(verdict(&t, 0.01 / 3.0, "refusal".into(), categorical(&r, &l)).alarm);
    }
}
