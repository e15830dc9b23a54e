//! `hone data scan`: the label-issue finder (out-of-fold `ngram` probabilities + confident learning) and
//! the poisoning scan over train and dev — never the frozen test set — stored as an audited scan. Under
//! `[policy] label_issues = "drop" | "relabel"` or `poisoning = "drop"` the suspects become review
//! decisions made by the policy, which the next version applies.

use std::collections::BTreeMap;

use hone_core::config::{LabelIssuePolicy, PoisoningPolicy};
use hone_core::hash::KeyHasher;
use hone_core::{Error, Record, Result};
use hone_data::split::Part;
use hone_defend::label_issues::{
    LabelIssueConfig, OofConfig, find_label_issues, refined_out_of_fold_proba,
};
use hone_defend::poison::{PoisonConfig, scan_with};
use hone_store::{Decision, ScanRow, Store};
use serde::{Deserialize, Serialize};

use crate::curate::{self, Progress};
use crate::project::{Project, who};

/// One suspect, as `hone data scan --json` prints it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Suspect {
    pub id: String,
    /// `label_issue`, `trigger_token` or `spectral_outlier`.
    pub kind: String,
    pub label: String,
    pub suggested_label: Option<String>,
    pub score: f64,
    pub evidence: String,
}

pub struct ScanOutcome {
    pub scan: ScanRow,
    pub suspects: Vec<Suspect>,
    pub n_scanned: usize,
    /// Decisions the policy recorded (drop / relabel), if any.
    pub auto_decisions: usize,
}

/// The suspects a stored scan found.
pub fn load_suspects(store: &Store, scan: &ScanRow) -> Result<Vec<Suspect>> {
    serde_json::from_slice(&store.get_object(&scan.object)?)
        .map_err(|e| Error::Store(format!("scan {} unreadable: {e}", scan.id)))
}

/// Fewer records than this per fold make out-of-fold probabilities meaningless.
const MIN_RECORDS_FOR_OOF: usize = 50;

impl ScanOutcome {
    /// What `hone data scan` prints: the counts, the first `limit` suspects, what to do next.
    pub fn text(&self, limit: usize) -> String {
        let rows: Vec<Vec<String>> = self
            .suspects
            .iter()
            .take(limit)
            .map(|s| {
                vec![
                    s.id.clone(),
                    s.kind.clone(),
                    s.label.clone(),
                    s.suggested_label.clone().unwrap_or_else(|| "-".into()),
                    format!("{:.3}", s.score),
                    crate::reports::clip(&s.evidence, 90),
                ]
            })
            .collect();
        let mut out = format!(
            "scanned {} train/dev records: {} suspect(s) ({}); scan {}\n",
            self.n_scanned,
            self.suspects.len(),
            self.scan.summary["by_kind"],
            hone_core::hash::short(&self.scan.id)
        );
        out.push_str(&crate::reports::table(
            &["id", "kind", "label", "suggested", "score", "evidence"],
            &rows,
        ));
        if self.auto_decisions > 0 {
            out.push_str(&format!(
                "\nthe policy recorded {} decision(s); `hone data clean` (or `hone run`) applies them.\n",
                self.auto_decisions
            ));
        } else if !self.suspects.is_empty() {
            out.push_str("\nNext: `hone review` to accept, relabel or drop each one.\n");
        }
        out
    }
}

pub fn run(
    project: &Project,
    store: &mut Store,
    command: &str,
    progress: &mut dyn FnMut(Progress),
) -> Result<ScanOutcome> {
    let cur = curate::clean(project, store, command, progress)?;
    let records = curate::load_records(store, &cur.version)?;
    let suites = crate::suites::load_project(project)?;
    let split = crate::split_stage::run(
        project,
        store,
        &cur.version,
        &records,
        &suites,
        None,
        command,
    )?;
    let pool: Vec<&Record> = records
        .iter()
        .filter(|r| {
            matches!(
                split.assignment.get(&r.id),
                Some(Part::Train) | Some(Part::Dev)
            )
        })
        .collect();
    let mut names: Vec<String> = pool.iter().filter_map(|r| r.label.clone()).collect();
    names.sort();
    names.dedup();
    let index: BTreeMap<&str, u32> = names
        .iter()
        .enumerate()
        .map(|(i, l)| (l.as_str(), i as u32))
        .collect();
    let texts: Vec<&str> = pool.iter().map(|r| r.text.as_str()).collect();
    let labels: Vec<u32> = pool
        .iter()
        .map(|r| {
            index
                .get(r.label.as_deref().unwrap_or(""))
                .copied()
                .unwrap_or(0)
        })
        .collect();
    let mut suspects = Vec::new();
    // With `scan_encoder`, frozen-encoder embeddings (cached in the store) are the features.
    let dense: Option<Vec<Vec<f32>>> = match &project.config.policy.scan_encoder {
        Some(path) => {
            progress(Progress::Pass {
                name: "encoder embeddings",
                index: 0,
                total: 3,
            });
            let dir = hone_core::config::resolve_path(&project.root, path);
            let max_len = hone_encoder::BertConfig::from_file(&dir.join("config.json"))
                .map(|c| c.max_position_embeddings.min(128))
                .unwrap_or(128);
            let base = hone_encoder::Pretrained::load(&dir, max_len)?;
            let (flat, _, _) = hone_encoder::model::embed_cached(
                &base.encoder,
                &base.tokenizer,
                &base.fingerprint,
                &texts,
                hone_encoder::Pooling::Mean,
                true,
                64,
                &mut crate::run_stage::StoreCache(store),
                &mut |_, _, _| {},
            )?;
            let d = base.config.hidden_size;
            Some(flat.chunks(d).map(<[f32]>::to_vec).collect())
        }
        None => None,
    };
    if pool.len() >= MIN_RECORDS_FOR_OOF && names.len() >= 2 {
        progress(Progress::Pass {
            name: "out-of-fold probabilities",
            index: 0,
            total: 2,
        });
        let proba = match &dense {
            Some(rows) => {
                let d = rows.first().map_or(0, Vec::len);
                let flat: Vec<f32> = rows.iter().flatten().copied().collect();
                let folds = hone_defend::label_issues::stratified_folds(&labels, 5, 0);
                hone_encoder::head::out_of_fold_proba(
                    hone_encoder::Rows {
                        data: &flat,
                        dim: d,
                    },
                    &labels,
                    names.len(),
                    &folds,
                    10.0,
                )?
            }
            None => refined_out_of_fold_proba(&texts, &labels, &names, &OofConfig::default(), 2)?,
        };
        for issue in find_label_issues(&proba, &labels, names.len(), &LabelIssueConfig::default()) {
            let r = pool[issue.index];
            suspects.push(Suspect {
                id: r.id.clone(),
                kind: "label_issue".into(),
                label: names[issue.given as usize].clone(),
                suggested_label: Some(names[issue.suggested as usize].clone()),
                score: issue.score,
                evidence: format!(
                    "out-of-fold models give the label `{}` p = {:.3} and `{}` p = {:.3}",
                    names[issue.given as usize],
                    issue.self_confidence,
                    names[issue.suggested as usize],
                    issue.suggested_confidence
                ),
            });
        }
    }
    progress(Progress::Pass {
        name: "poisoning scan",
        index: 1,
        total: 2,
    });
    // Spectral signatures flag only small outlying groups: a class that splits in halves is usually two
    // phrasings of one intent, not an attack (large insertion attacks are the trigger test's job).
    let poison_cfg = PoisonConfig {
        spectral_max_fraction: 0.25,
        ..PoisonConfig::default()
    };
    for p in scan_with(
        &texts,
        &labels,
        names.len(),
        &names,
        &poison_cfg,
        dense.as_deref(),
    ) {
        let r = pool[p.index];
        suspects.push(Suspect {
            id: r.id.clone(),
            kind: p.kind,
            label: r.label.clone().unwrap_or_default(),
            suggested_label: None,
            score: p.score,
            evidence: p.evidence,
        });
    }
    suspects.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then(a.id.cmp(&b.id))
            .then(a.kind.cmp(&b.kind))
    });
    let object = store.put_object(
        &serde_json::to_vec(&suspects).map_err(|e| Error::Internal(e.to_string()))?,
        "scan",
    )?;
    let id = KeyHasher::new()
        .part("version", cur.version.id.as_bytes())
        .part("split", split.row.id.as_bytes())
        .part("suspects", object.as_bytes())
        .finish();
    let mut by_kind: BTreeMap<&str, u64> = BTreeMap::new();
    for s in &suspects {
        *by_kind.entry(s.kind.as_str()).or_default() += 1;
    }
    let summary =
        serde_json::json!({"n_scanned": pool.len(), "by_kind": by_kind, "split": split.row.id});
    let scan = store.put_scan(&id, &cur.version.id, &object, &summary, &who(), command)?;
    // Policies other than `flag` act through review decisions, so the change is audited and reversible.
    let p = &project.config.policy;
    let reviewer = "hone data scan (policy)".to_string();
    let now = chrono::Utc::now().to_rfc3339();
    let mut decisions: BTreeMap<String, Decision> = BTreeMap::new();
    for s in &suspects {
        let d = match (s.kind.as_str(), p.label_issues, p.poisoning) {
            ("label_issue", LabelIssuePolicy::Drop, _) => Some(("drop", None)),
            ("label_issue", LabelIssuePolicy::Relabel, _) => {
                Some(("relabel", s.suggested_label.clone()))
            }
            ("trigger_token" | "spectral_outlier", _, PoisoningPolicy::Drop) => {
                Some(("drop", None))
            }
            _ => None,
        };
        if let Some((decision, label)) = d {
            // A drop wins over a relabel when both finders name the record.
            let keep_existing = decisions.get(&s.id).is_some_and(|e| e.decision == "drop");
            if !keep_existing {
                decisions.insert(
                    s.id.clone(),
                    Decision {
                        record_id: s.id.clone(),
                        decision: decision.into(),
                        label,
                        reviewer: reviewer.clone(),
                        at: now.clone(),
                        note: format!("{}: {}", s.kind, s.evidence),
                    },
                );
            }
        }
    }
    let auto_decisions = decisions.len();
    if auto_decisions > 0 {
        store.put_decisions(
            &decisions.into_values().collect::<Vec<_>>(),
            &who(),
            command,
        )?;
    }
    Ok(ScanOutcome {
        scan,
        suspects,
        n_scanned: pool.len(),
        auto_decisions,
    })
}
