//! The two decisions every consumer of a run must make the same way: how a model's probabilities become
//! an answer ([`DecisionRule`], used by evaluation, suites, `predict` and serving), and which model of a
//! `hone run` is the chosen one ([`choose`], used by `run`, recorded in the store, and read back by
//! `predict`, `export` and the reports).

use serde::{Deserialize, Serialize};

/// The label a model answers with when it abstains; its class index is `labels.len()`.
pub const ABSTAIN: &str = "abstain";

/// How probabilities become an answer. Temperature scaling is part of the model (fitted on dev and applied
/// inside `predict_proba`); this rule acts on the calibrated probabilities.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
#[serde(tag = "rule", rename_all = "snake_case")]
pub enum DecisionRule {
    /// The most probable label (the first on a tie).
    #[default]
    Argmax,
    /// `abstain` when the top probability is below `below`, else the most probable label.
    Abstain { below: f64 },
    /// Two classes: `positive` when its probability reaches `threshold` (chosen on dev), else the other.
    Binary { positive: usize, threshold: f64 },
}

impl DecisionRule {
    /// The answer for one probability vector: a class index, or `None` to abstain.
    pub fn decide(&self, p: &[f32]) -> Option<usize> {
        match *self {
            DecisionRule::Argmax => Some(argmax(p)),
            DecisionRule::Abstain { below } => {
                let best = argmax(p);
                (f64::from(p.get(best).copied().unwrap_or(0.0)) >= below).then_some(best)
            }
            DecisionRule::Binary {
                positive,
                threshold,
            } => Some(
                if f64::from(p.get(positive).copied().unwrap_or(0.0)) >= threshold {
                    positive
                } else {
                    1 - positive.min(1)
                },
            ),
        }
    }

    /// The abstention threshold, if the rule abstains.
    pub fn abstain_below(&self) -> Option<f64> {
        match *self {
            DecisionRule::Abstain { below } => Some(below),
            _ => None,
        }
    }
}

/// The index of the largest probability; the first one on a tie.
pub fn argmax(p: &[f32]) -> usize {
    p.iter()
        .enumerate()
        .fold(
            (0, f32::MIN),
            |(bi, bv), (i, &v)| if v > bv { (i, v) } else { (bi, bv) },
        )
        .0
}

/// A candidate for [`choose`]: whether it is the `majority` baseline, and its dev score (`None` when
/// not measured): macro-F1 for classification, ROUGE-L for generation (where the base model is a
/// candidate like any other, not a baseline).
pub struct Candidate {
    pub baseline: bool,
    pub dev_score: Option<f64>,
}

/// The rule, in words, as recorded with every choice.
pub const CHOICE_RULE: &str = "best dev macro-F1 among the [[model]]s (majority only when alone); the earliest listed wins a tie";

/// The rule for generate tasks, in words.
pub const CHOICE_RULE_GENERATE: &str = "best dev ROUGE-L among the language models, the base model included; the earliest listed wins a tie";

/// Which candidate is chosen: the best dev macro-F1 among the non-`majority` candidates, the earliest on
/// a tie; `majority` only when it is the only candidate. `None` for no candidates.
pub fn choose(candidates: &[Candidate]) -> Option<usize> {
    let score = |c: &Candidate| c.dev_score.unwrap_or(f64::MIN);
    let trained: Vec<usize> = (0..candidates.len())
        .filter(|&i| !candidates[i].baseline)
        .collect();
    if trained.is_empty() {
        return (!candidates.is_empty()).then_some(0);
    }
    trained.into_iter().max_by(|&a, &b| {
        score(&candidates[a])
            .total_cmp(&score(&candidates[b]))
            .then(b.cmp(&a))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_decide_as_documented() {
        assert_eq!(DecisionRule::Argmax.decide(&[0.2, 0.5, 0.3]), Some(1));
        assert_eq!(DecisionRule::Argmax.decide(&[0.5, 0.5]), Some(0));
        let a = DecisionRule::Abstain { below: 0.6 };
        assert_eq!(a.decide(&[0.55, 0.45]), None);
        assert_eq!(a.decide(&[0.6, 0.4]), Some(0));
        let b = DecisionRule::Binary {
            positive: 1,
            threshold: 0.3,
        };
        assert_eq!(b.decide(&[0.69, 0.31]), Some(1));
        assert_eq!(b.decide(&[0.71, 0.29]), Some(0));
        let b0 = DecisionRule::Binary {
            positive: 0,
            threshold: 0.9,
        };
        assert_eq!(b0.decide(&[0.8, 0.2]), Some(1));
    }

    #[test]
    fn rules_round_trip_through_json() {
        for r in [
            DecisionRule::Argmax,
            DecisionRule::Abstain { below: 0.4 },
            DecisionRule::Binary {
                positive: 0,
                threshold: 0.25,
            },
        ] {
            let s = serde_json::to_string(&r).unwrap();
            assert_eq!(serde_json::from_str::<DecisionRule>(&s).unwrap(), r, "{s}");
        }
    }

    #[test]
    fn the_earliest_best_wins_and_majority_only_when_alone() {
        let c = |kind: &str, f1| Candidate {
            baseline: kind == "majority",
            dev_score: f1,
        };
        assert_eq!(
            choose(&[c("majority", Some(0.9)), c("ngram", Some(0.5))]),
            Some(1)
        );
        assert_eq!(
            choose(&[
                c("majority", Some(0.1)),
                c("ngram", Some(0.7)),
                c("encoder", Some(0.7)),
                c("ngram", Some(0.6))
            ]),
            Some(1)
        );
        assert_eq!(
            choose(&[c("majority", None), c("ngram", None), c("ngram", Some(0.2))]),
            Some(2)
        );
        assert_eq!(choose(&[c("majority", Some(0.3))]), Some(0));
        assert_eq!(choose(&[]), None);
    }
}
