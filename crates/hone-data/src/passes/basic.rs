//! Record-local passes: text normalisation, length limits, consent and outdated records.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use hone_core::{Action, LineageEntry, Record, Result};
use unicode_normalization::UnicodeNormalization;

use super::{Masker, Pass, PassOutput};
use crate::textdiff;

/// Unicode NFC, HTML entities, control characters and whitespace. The text before a change is kept only
/// as a blake3 hash plus a masked diff.
pub struct Normalise {
    pub mask: Masker,
    /// Keep line breaks (generation prompts); classification texts become one line.
    pub keep_newlines: bool,
    /// Normalise the label as a text too (a generation target), not only trim it.
    pub normalise_target: bool,
}

impl Normalise {
    /// Normalise one text, returning it and the names of the rules that changed it.
    pub fn apply(&self, text: &str) -> (String, Vec<&'static str>) {
        let mut rules = Vec::new();
        let mut t = if text.contains('&') {
            let d = html_escape::decode_html_entities(text).into_owned();
            if d != text {
                rules.push("html_entities");
            }
            d
        } else {
            text.to_string()
        };
        // ASCII is already NFC: most texts skip the decomposition.
        if !t.is_ascii() {
            let nfc: String = t.nfc().collect();
            if nfc != t {
                rules.push("nfc");
                t = nfc;
            }
        }
        let is_dropped_control = |c: char| {
            (c.is_control() && !matches!(c, '\n' | '\t' | '\r'))
                || matches!(c, '\u{200B}' | '\u{FEFF}' | '\u{2028}' | '\u{2029}')
        };
        if t.chars().any(is_dropped_control) {
            rules.push("control_chars");
            t = t.chars().filter(|c| !is_dropped_control(*c)).collect();
        }
        let ws = collapse_whitespace(&t, self.keep_newlines);
        if ws != t {
            rules.push("whitespace");
            t = ws;
        }
        (t, rules)
    }
}

fn collapse_whitespace(t: &str, keep_newlines: bool) -> String {
    if !keep_newlines {
        return t.split_whitespace().collect::<Vec<_>>().join(" ");
    }
    let lines: Vec<String> = t
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    lines.join("\n").trim_matches('\n').to_string()
}

impl Pass for Normalise {
    fn name(&self) -> &'static str {
        "normalise"
    }
    fn config(&self) -> serde_json::Value {
        let mut c = serde_json::json!({"unicode": "NFC", "html_entities": true, "control_chars": true, "whitespace": "collapse", "keep_newlines": self.keep_newlines});
        if self.normalise_target {
            c["normalise_target"] = serde_json::json!(true);
        }
        c
    }
    fn run_protected(&self, records: Vec<Record>) -> Result<PassOutput> {
        self.run(records)
    }
    fn run(&self, mut records: Vec<Record>) -> Result<PassOutput> {
        let mut out = PassOutput::default();
        for r in &mut records {
            let (text, mut rules) = self.apply(&r.text);
            if let Some(label) = &r.label {
                if self.normalise_target {
                    let (t, target_rules) = self.apply(label);
                    if !target_rules.is_empty() {
                        rules.push("target_normalised");
                        r.label = Some(t);
                    }
                } else {
                    let trimmed = label.trim();
                    if trimmed.len() != label.len() {
                        rules.push("label_whitespace");
                        r.label = Some(trimmed.to_string());
                    }
                }
            }
            if self.normalise_target {
                let mut turns_changed = false;
                for t in &mut r.turns {
                    let (c, turn_rules) = self.apply(&t.content);
                    if !turn_rules.is_empty() {
                        t.content = c;
                        turns_changed = true;
                    }
                }
                if turns_changed {
                    rules.push("turns_normalised");
                }
            }
            if rules.is_empty() {
                continue;
            }
            let mut e = LineageEntry::new(
                r,
                self.name(),
                Action::Change,
                &rules.join(","),
                format!("normalised: {}", rules.join(", ")),
            );
            e.before_hash = Some(hone_core::hash::hash_str(&r.text));
            e.diff = Some(textdiff::diff(&(self.mask)(&r.text), &(self.mask)(&text)));
            for rule in &rules {
                *out.stats.entry((*rule).to_string()).or_default() += 1;
            }
            out.lineage.push(e);
            r.text = text;
        }
        out.kept = records;
        Ok(out)
    }
}

/// Empty, too short and too long texts (character counts, after normalising).
pub struct Length {
    pub min_chars: usize,
    pub max_chars: usize,
}

impl Pass for Length {
    fn name(&self) -> &'static str {
        "length"
    }
    fn config(&self) -> serde_json::Value {
        serde_json::json!({"min_chars": self.min_chars, "max_chars": self.max_chars})
    }
    fn run(&self, records: Vec<Record>) -> Result<PassOutput> {
        let mut out = PassOutput::default();
        for r in records {
            let n = r.text.chars().count();
            let verdict = if n == 0 {
                Some(("empty", "text is empty after normalising".to_string()))
            } else if n < self.min_chars {
                Some((
                    "too_short",
                    format!("{n} characters, below min_chars = {}", self.min_chars),
                ))
            } else if n > self.max_chars {
                Some((
                    "too_long",
                    format!("{n} characters, above max_chars = {}", self.max_chars),
                ))
            } else {
                None
            };
            out.keep_or_drop(r, self.name(), verdict);
        }
        Ok(out)
    }
}

/// With `require_consent`, records without an explicit opt-in never reach training.
pub struct Consent {
    pub require_consent: bool,
}

impl Pass for Consent {
    fn name(&self) -> &'static str {
        "consent"
    }
    fn config(&self) -> serde_json::Value {
        serde_json::json!({"require_consent": self.require_consent})
    }
    fn run(&self, records: Vec<Record>) -> Result<PassOutput> {
        let mut out = PassOutput::default();
        if !self.require_consent {
            out.kept = records;
            return Ok(out);
        }
        for r in records {
            match r.consent {
                Some(true) => out.kept.push(r),
                Some(false) => {
                    *out.stats.entry("opted_out".into()).or_default() += 1;
                    out.lineage.push(LineageEntry::new(
                        &r,
                        self.name(),
                        Action::Drop,
                        "opted_out",
                        "consent field says no (opted out)",
                    ));
                }
                None => {
                    *out.stats.entry("no_consent".into()).or_default() += 1;
                    out.lineage.push(LineageEntry::new(
                        &r,
                        self.name(),
                        Action::Drop,
                        "no_consent",
                        "no explicit opt-in (consent field empty)",
                    ));
                }
            }
        }
        Ok(out)
    }
}

/// Outdated records: older than `max_age_days` before the source's `as_of` date, or past `valid_until`.
/// Records without a date are kept (they cannot be judged) and counted as `undated`.
pub struct Outdated {
    pub max_age_days: Option<u32>,
    /// The reference date per source name (already resolved: policy `as_of`, else the source's
    /// `collected`, else the day the version is made).
    pub as_of: BTreeMap<String, NaiveDate>,
}

impl Pass for Outdated {
    fn name(&self) -> &'static str {
        "outdated"
    }
    fn config(&self) -> serde_json::Value {
        let as_of: BTreeMap<&String, String> =
            self.as_of.iter().map(|(k, v)| (k, v.to_string())).collect();
        serde_json::json!({"max_age_days": self.max_age_days, "as_of": as_of})
    }
    fn run(&self, records: Vec<Record>) -> Result<PassOutput> {
        let mut out = PassOutput::default();
        for r in records {
            let Some(as_of) = self.as_of.get(&r.source).copied() else {
                out.kept.push(r);
                continue;
            };
            let date = r.date.as_deref().and_then(crate::readers::parse_date_str);
            let until = r
                .valid_until
                .as_deref()
                .and_then(crate::readers::parse_date_str);
            if date.is_none() {
                *out.stats.entry("undated".into()).or_default() += 1;
            }
            let verdict = if let Some(u) = until.filter(|u| *u < as_of) {
                Some((
                    "expired",
                    format!("valid_until {u} is before as_of {as_of}"),
                ))
            } else if let (Some(max), Some(d)) = (self.max_age_days, date) {
                let age = (as_of - d).num_days();
                (age > i64::from(max)).then(|| {
                    (
                        "outdated",
                        format!(
                            "dated {d}, {age} days before as_of {as_of} (max_age_days = {max})"
                        ),
                    )
                })
            } else {
                None
            };
            out.keep_or_drop(r, self.name(), verdict);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn rec(id: &str, text: &str) -> Record {
        Record {
            id: id.into(),
            text: text.into(),
            label: Some("a".into()),
            source: "s".into(),
            meta: "{}".into(),
            ..Default::default()
        }
    }

    #[test]
    fn normalise_records_rules_hash_and_masked_diff() {
        let n = Normalise {
            mask: Arc::new(|s: &str| s.replace("bob@x.io", "<EMAIL>")),
            keep_newlines: false,
            normalise_target: false,
        };
        let (t, rules) = n.apply("  Cafe\u{301} &lt;3\u{0007} \n\n bob@x.io ");
        assert_eq!(t, "Café <3 bob@x.io");
        assert_eq!(
            rules,
            vec!["html_entities", "nfc", "control_chars", "whitespace"]
        );
        let out = n
            .run(vec![rec("1", "x &amp; bob@x.io"), rec("2", "clean")])
            .unwrap();
        assert_eq!(out.kept.len(), 2);
        assert_eq!(out.lineage.len(), 1);
        let e = &out.lineage[0];
        assert_eq!(
            e.before_hash.as_deref(),
            Some(hone_core::hash::hash_str("x &amp; bob@x.io").as_str())
        );
        assert!(
            !e.diff.as_ref().unwrap().contains("bob@x.io"),
            "diff must be masked: {:?}",
            e.diff
        );
    }

    #[test]
    fn length_consent_outdated_account_for_every_record() {
        let recs = vec![
            rec("1", ""),
            rec("2", "x"),
            rec("3", "ok text"),
            rec("4", &"y".repeat(50)),
        ];
        let out = Length {
            min_chars: 2,
            max_chars: 20,
        }
        .run(recs)
        .unwrap();
        assert_eq!(
            out.kept.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
            vec!["3"]
        );
        let rules: Vec<_> = out.lineage.iter().map(|l| l.rule.as_str()).collect();
        assert_eq!(rules, vec!["empty", "too_short", "too_long"]);

        let mut a = rec("a", "t");
        a.consent = Some(true);
        let mut b = rec("b", "t");
        b.consent = Some(false);
        let c = rec("c", "t");
        let out = Consent {
            require_consent: true,
        }
        .run(vec![a, b, c])
        .unwrap();
        assert_eq!(out.kept.len(), 1);
        assert_eq!(
            out.lineage
                .iter()
                .map(|l| l.rule.as_str())
                .collect::<Vec<_>>(),
            vec!["opted_out", "no_consent"]
        );

        let mut old = rec("old", "t");
        old.date = Some("2020-01-01".into());
        let mut new = rec("new", "t");
        new.date = Some("2025-01-01".into());
        let mut expired = rec("exp", "t");
        expired.valid_until = Some("2025-05-01".into());
        let as_of = BTreeMap::from([(
            "s".to_string(),
            NaiveDate::from_ymd_opt(2025, 6, 1).unwrap(),
        )]);
        let out = Outdated {
            max_age_days: Some(365),
            as_of,
        }
        .run(vec![old, new, expired, rec("undated", "t")])
        .unwrap();
        assert_eq!(
            out.kept.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
            vec!["new", "undated"]
        );
        assert_eq!(out.stats["undated"], 2);
        assert_eq!(
            out.lineage
                .iter()
                .map(|l| l.rule.as_str())
                .collect::<Vec<_>>(),
            vec!["outdated", "expired"]
        );
    }
}
