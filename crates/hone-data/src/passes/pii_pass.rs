//! The PII pass: detects personal data with [`crate::pii`] and masks it with typed placeholders, drops the
//! record, or stops, as `[policy] pii` says. Also masks PII in the record's other free-text fields.

use hone_core::config::PiiPolicy;
use hone_core::{Action, Error, LineageEntry, Record, Result};

use super::{Pass, PassOutput};
use crate::pii::{PiiDetector, PiiKind};

pub struct PiiMask {
    pub policy: PiiPolicy,
    pub detector: std::sync::Arc<PiiDetector>,
}

fn kinds_summary(counts: &[(PiiKind, usize)]) -> String {
    counts
        .iter()
        .map(|(k, n)| format!("{n} {}", k.name()))
        .collect::<Vec<_>>()
        .join(", ")
}

impl PiiMask {
    /// Mask PII inside a JSON value's strings; group values are replaced by a keyed hash instead, so that
    /// records of one customer still group together without carrying the customer's address.
    fn mask_meta(&self, meta: &str) -> String {
        match serde_json::from_str::<serde_json::Value>(meta) {
            Ok(mut v) => {
                mask_json(&mut v, &self.detector);
                v.to_string()
            }
            Err(_) => self.detector.mask(meta).text,
        }
    }
}

fn mask_json(v: &mut serde_json::Value, d: &PiiDetector) {
    match v {
        serde_json::Value::String(s) => {
            let m = d.mask(s);
            if m.changed() {
                *s = m.text;
            }
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(|x| mask_json(x, d)),
        serde_json::Value::Object(o) => o.values_mut().for_each(|x| mask_json(x, d)),
        _ => {}
    }
}

impl Pass for PiiMask {
    fn name(&self) -> &'static str {
        "pii"
    }
    fn config(&self) -> serde_json::Value {
        let kinds: Vec<&str> = self.detector.kinds().iter().map(|k| k.name()).collect();
        let mut c = serde_json::json!({"pii": self.policy, "kinds": kinds});
        if self.detector.uses_tagger() {
            c["tagger"] = serde_json::Value::from(format!(
                "hone-ner {}",
                &hone_ner::default_fingerprint()[..16]
            ));
        }
        c
    }
    /// Protected (test) records are always masked, never dropped, whatever the policy.
    fn run_protected(&self, records: Vec<Record>) -> Result<PassOutput> {
        PiiMask {
            policy: PiiPolicy::Mask,
            detector: self.detector.clone(),
        }
        .run(records)
    }
    fn run(&self, records: Vec<Record>) -> Result<PassOutput> {
        let mut out = PassOutput::default();
        for mut r in records {
            let masked = self.detector.mask(&r.text);
            // Side fields never keep PII, whatever the policy.
            r.meta = self.mask_meta(&r.meta);
            if let Some(v) = r.topic.as_mut() {
                let m = self.detector.mask(v);
                if m.changed() {
                    *v = m.text;
                }
            }
            // A generation target and a conversation's earlier turns are masked like the text:
            // counted, and in the lineage (the text's diff is recorded; these are hashed with it).
            let mut other_counts: Vec<(PiiKind, usize)> = Vec::new();
            let mut mask_counted = |v: &mut String| {
                let m = self.detector.mask(v);
                if m.changed() {
                    for k in PiiKind::ALL {
                        let n = m.count(k);
                        if n > 0 {
                            other_counts.push((k, n));
                        }
                    }
                    *v = m.text;
                }
            };
            if let Some(v) = r.label.as_mut() {
                mask_counted(v);
            }
            for t in &mut r.turns {
                mask_counted(&mut t.content);
            }
            if let Some(g) = r.group.as_mut()
                && self.detector.mask(g).changed()
            {
                *g = format!("pii:{}", &hone_core::hash::hash_str(g)[..16]);
            }
            if !masked.changed() && other_counts.is_empty() {
                out.kept.push(r);
                continue;
            }
            let counts: Vec<(PiiKind, usize)> = PiiKind::ALL
                .iter()
                .map(|&k| {
                    let other: usize = other_counts
                        .iter()
                        .filter(|(o, _)| *o == k)
                        .map(|(_, n)| n)
                        .sum();
                    (k, masked.count(k) + other)
                })
                .filter(|(_, n)| *n > 0)
                .collect();
            for (k, n) in &counts {
                *out.stats.entry(k.name().to_string()).or_default() += *n as u64;
            }
            let summary = kinds_summary(&counts);
            match self.policy {
                PiiPolicy::Mask => {
                    let mut e = LineageEntry::new(
                        &r,
                        self.name(),
                        Action::Change,
                        "pii_mask",
                        format!("masked {summary}"),
                    );
                    e.before_hash = Some(hone_core::hash::hash_str(&r.text));
                    e.diff = Some(masked.text.clone());
                    out.lineage.push(e);
                    r.text = masked.text;
                    out.kept.push(r);
                }
                PiiPolicy::Drop => {
                    let mut e = LineageEntry::new(
                        &r,
                        self.name(),
                        Action::Drop,
                        "pii_drop",
                        format!("contains {summary}"),
                    );
                    e.before_hash = Some(hone_core::hash::hash_str(&r.text));
                    out.lineage.push(e);
                }
                PiiPolicy::Fail => {
                    return Err(Error::BadRecord {
                        file: r.source.clone().into(),
                        line: r.line,
                        field: if masked.changed() { "text" } else { "target" }.into(),
                        reason: format!(
                            "record {} contains personal data ({summary}): {}",
                            r.id, masked.text
                        ),
                        hint:
                            "remove it from the source, or set [policy] pii = \"mask\" or \"drop\""
                                .into(),
                    });
                }
            }
        }
        Ok(out)
    }
}
