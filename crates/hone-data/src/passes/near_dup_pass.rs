//! Near-duplicate passes over [`crate::near_dup`]: one assigns every record its cluster id (the id of the
//! cluster's first record, which the split keeps on one side), the other keeps one record per cluster.

use std::collections::HashMap;

use hone_core::config::NearDuplicatePolicy;
use hone_core::{Action, LineageEntry, Record, Result};

use super::{Pass, PassOutput};
use crate::near_dup::{MatchKind, NearDupConfig, find_near_duplicates};

/// Clusters near-duplicate texts (MinHash LSH verified by true Jaccard, plus containment for short texts)
/// and writes the cluster id on every record. Drops nothing.
pub struct NearDuplicateClusters {
    pub config: NearDupConfig,
    /// Compare prompt and target together (generation): templated prompts with different targets
    /// are different examples.
    pub with_target: bool,
}

impl Pass for NearDuplicateClusters {
    fn name(&self) -> &'static str {
        "near_duplicate_clusters"
    }
    fn config(&self) -> serde_json::Value {
        let c = &self.config;
        let mut j = serde_json::json!({"shingle_words": c.shingle_words, "num_perm": c.num_perm, "threshold": c.threshold, "short_text_words": c.short_text_words, "short_containment": c.short_containment, "seed": c.seed});
        if self.with_target {
            j["with_target"] = serde_json::json!(true);
        }
        j
    }
    fn run(&self, mut records: Vec<Record>) -> Result<PassOutput> {
        let joined: Vec<String> = if self.with_target {
            records.iter().map(Record::prompt_and_target).collect()
        } else {
            Vec::new()
        };
        let texts: Vec<&str> = if self.with_target {
            joined.iter().map(String::as_str).collect()
        } else {
            records.iter().map(|r| r.text.as_str()).collect()
        };
        let result = find_near_duplicates(&texts, &self.config);
        let mut sizes: HashMap<u32, u64> = HashMap::new();
        for &c in &result.cluster_of {
            *sizes.entry(c).or_default() += 1;
        }
        let ids: Vec<String> = result
            .cluster_of
            .iter()
            .map(|&c| records[c as usize].id.clone())
            .collect();
        for (r, id) in records.iter_mut().zip(ids) {
            r.cluster = Some(id);
        }
        let mut out = PassOutput {
            kept: records,
            ..Default::default()
        };
        out.stats.insert(
            "clusters_with_duplicates".into(),
            sizes.values().filter(|&&n| n > 1).count() as u64,
        );
        out.stats.insert(
            "records_in_clusters".into(),
            sizes.values().filter(|&&n| n > 1).sum(),
        );
        out.stats.insert(
            "pairs_jaccard".into(),
            result
                .pairs
                .iter()
                .filter(|p| p.kind == MatchKind::Jaccard)
                .count() as u64,
        );
        out.stats.insert(
            "pairs_containment".into(),
            result
                .pairs
                .iter()
                .filter(|p| p.kind == MatchKind::Containment)
                .count() as u64,
        );
        out.stats
            .insert("candidates_verified".into(), result.n_candidates);
        Ok(out)
    }
}

/// Keeps one record per near-duplicate cluster (the first) under `near_duplicates = "drop"`.
pub struct NearDuplicateDrop {
    pub policy: NearDuplicatePolicy,
}

impl Pass for NearDuplicateDrop {
    fn name(&self) -> &'static str {
        "near_duplicates"
    }
    fn config(&self) -> serde_json::Value {
        serde_json::json!({"near_duplicates": self.policy})
    }
    fn run(&self, records: Vec<Record>) -> Result<PassOutput> {
        let mut out = PassOutput::default();
        if self.policy == NearDuplicatePolicy::Keep {
            out.kept = records;
            return Ok(out);
        }
        let mut kept_for: HashMap<String, String> = HashMap::new();
        for r in records {
            let Some(cluster) = r.cluster.clone() else {
                out.kept.push(r);
                continue;
            };
            match kept_for.get(&cluster) {
                Some(first) => {
                    let e = LineageEntry::new(
                        &r,
                        self.name(),
                        Action::Drop,
                        "near_duplicate",
                        format!("near-duplicate of {first} (cluster {cluster})"),
                    )
                    .related(first.clone());
                    out.lineage.push(e);
                }
                None => {
                    kept_for.insert(cluster, r.id.clone());
                    out.kept.push(r);
                }
            }
        }
        out.stats
            .insert("near_duplicate".into(), out.lineage.len() as u64);
        Ok(out)
    }
}
