//! Curation passes: named values with a config that take records and return the kept records plus a
//! lineage entry for every record they drop, change or flag. Passes are pure functions over batches of
//! records; they know nothing about the store or the terminal (DESIGN §4, §9).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use hone_core::{Action, LineageEntry, Record, Result};
use serde::{Deserialize, Serialize};

mod basic;
mod dedup;
mod near_dup_pass;
mod pii_pass;
mod review;

pub use basic::{Consent, Length, Normalise, Outdated};
pub use dedup::{ExactDuplicates, LabelConflicts};
pub use near_dup_pass::{NearDuplicateClusters, NearDuplicateDrop};
pub use pii_pass::PiiMask;
pub use review::{Review, ReviewDecision};

/// A function that masks PII in a text; passes use it so that lineage never holds unmasked values.
pub type Masker = Arc<dyn Fn(&str) -> String + Send + Sync>;

/// What a pass returns.
#[derive(Debug, Default)]
pub struct PassOutput {
    pub kept: Vec<Record>,
    pub lineage: Vec<LineageEntry>,
    /// Pass-specific counters (e.g. PII found per type).
    pub stats: BTreeMap<String, u64>,
}

impl PassOutput {
    /// Keep `record`, or drop it under `rule` with `reason` (counted in `stats` under the rule).
    pub fn keep_or_drop(&mut self, record: Record, pass: &str, verdict: Option<(&str, String)>) {
        match verdict {
            Some((rule, reason)) => {
                *self.stats.entry(rule.to_string()).or_default() += 1;
                self.lineage
                    .push(LineageEntry::new(&record, pass, Action::Drop, rule, reason));
            }
            None => self.kept.push(record),
        }
    }
}

/// One curation step.
pub trait Pass: Send + Sync {
    /// Stable name, used in lineage and reports.
    fn name(&self) -> &'static str;
    /// The pass's configuration, recorded with the dataset version.
    fn config(&self) -> serde_json::Value;
    fn run(&self, records: Vec<Record>) -> Result<PassOutput>;
    /// What the pass does to protected (test-role) records, which may be rewritten (normalised, masked)
    /// but never dropped. Default: leave them as they are.
    fn run_protected(&self, records: Vec<Record>) -> Result<PassOutput> {
        Ok(PassOutput {
            kept: records,
            ..Default::default()
        })
    }
}

/// Per-pass counts, recorded with the dataset version: `n_in = n_kept + n_dropped`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PassReport {
    pub pass: String,
    pub config: serde_json::Value,
    pub n_in: u64,
    pub n_kept: u64,
    pub n_dropped: u64,
    pub n_changed: u64,
    pub n_flagged: u64,
    #[serde(default)]
    pub stats: BTreeMap<String, u64>,
}

/// The result of running a pipeline of passes.
#[derive(Debug, Default)]
pub struct CurationOutcome {
    pub records: Vec<Record>,
    pub lineage: Vec<LineageEntry>,
    pub reports: Vec<PassReport>,
}

/// Run `passes` in order. Records for which `protected` is true (test-role sources) only go through
/// passes that rewrite and never drop. The output keeps the input order.
pub fn run_passes(
    passes: &[Box<dyn Pass>],
    records: Vec<Record>,
    protected: &dyn Fn(&Record) -> bool,
    on_pass: &mut dyn FnMut(&str, usize, usize),
) -> Result<CurationOutcome> {
    let order: HashMap<String, usize> = records
        .iter()
        .enumerate()
        .map(|(i, r)| (r.id.clone(), i))
        .collect();
    let (mut guarded, mut open): (Vec<Record>, Vec<Record>) =
        records.into_iter().partition(|r| protected(r));
    let mut out = CurationOutcome::default();
    for (i, pass) in passes.iter().enumerate() {
        on_pass(pass.name(), i, passes.len());
        let n_in = (open.len() + guarded.len()) as u64;
        let mut result = pass.run(std::mem::take(&mut open))?;
        if !guarded.is_empty() {
            let n_guarded = guarded.len();
            let g = pass.run_protected(std::mem::take(&mut guarded))?;
            if g.kept.len() != n_guarded || g.lineage.iter().any(|l| l.action == Action::Drop) {
                return Err(hone_core::Error::Internal(format!(
                    "pass {} dropped a protected record",
                    pass.name()
                )));
            }
            guarded = g.kept;
            result.lineage.extend(g.lineage);
            for (k, v) in g.stats {
                *result.stats.entry(k).or_default() += v;
            }
        }
        let count = |a: Action| result.lineage.iter().filter(|l| l.action == a).count() as u64;
        let report = PassReport {
            pass: pass.name().to_string(),
            config: pass.config(),
            n_in,
            n_kept: (result.kept.len() + guarded.len()) as u64,
            n_dropped: count(Action::Drop),
            n_changed: count(Action::Change),
            n_flagged: count(Action::Flag),
            stats: result.stats,
        };
        if report.n_in != report.n_kept + report.n_dropped {
            return Err(hone_core::Error::Internal(format!(
                "pass {} lost records: {} in, {} kept, {} dropped",
                report.pass, report.n_in, report.n_kept, report.n_dropped
            )));
        }
        out.reports.push(report);
        out.lineage.extend(result.lineage);
        open = result.kept;
    }
    open.extend(guarded);
    open.sort_by_key(|r| order.get(&r.id).copied().unwrap_or(usize::MAX));
    out.records = open;
    Ok(out)
}
