//! The adversarial check: before a grader judges or trains anything, it scores answers that must
//! not pass (an empty answer, the prompt echoed, the reference's format with wrong content, the JSON
//! schema itself, a very long answer, a generic reply) on the dataset's own items. A grader that passes any of them
//! is exploitable: a policy trained on it learns the exploit (an empty answer with full reward from
//! a substring check, a format reward gamed by length).

use serde::Serialize;
use serde_json::Value;

use crate::grader::Grader;

/// An answer that must not pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Attack {
    /// The empty string.
    Empty,
    /// The prompt, echoed back.
    EchoPrompt,
    /// The reference with every word replaced and every digit changed (JSON: keys kept, values changed).
    WrongContent,
    /// The JSON schema the grader checks, as the answer (only for graders with a schema).
    Schema,
    /// The reference repeated to about 3,000 words, ending with its wrong-content version (so a
    /// rule that reads the last number or line does not see the reference's).
    Long,
    /// A polite reply that fits any message and answers none ([`GENERIC`]): what a policy learns
    /// when a grader rewards format (length, a closing offer of help) without content.
    Generic,
}

/// The [`Attack::Generic`] answer.
pub const GENERIC: &str = "Thank you for reaching out. I understand your concern and I'm here to help. Is there anything else I can help you with?";

impl Attack {
    pub fn describe(self) -> &'static str {
        match self {
            Attack::Empty => "an empty answer",
            Attack::EchoPrompt => "the prompt echoed back",
            Attack::WrongContent => "the reference's format with wrong content",
            Attack::Schema => "the JSON schema itself",
            Attack::Long => "a very long answer (the reference repeated)",
            Attack::Generic => "a generic reply that answers nothing",
        }
    }
}

/// How one attack fared over the items.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub attack: Attack,
    pub tried: usize,
    pub passed: usize,
    /// Answers the grader could not score (a typed error, never counted as a pass).
    pub errors: usize,
    /// The first item where the attack passed: its `id` field, else its position.
    pub first_pass: Option<String>,
}

/// One grader's adversarial report.
#[derive(Debug, Clone, Serialize)]
pub struct Probe {
    pub grader: String,
    pub findings: Vec<Finding>,
}

impl Probe {
    pub fn exploitable(&self) -> bool {
        self.findings.iter().any(|f| f.passed > 0)
    }

    /// One line per attack that passed, for reports and terminals.
    pub fn exploits(&self) -> Vec<String> {
        self.findings
            .iter()
            .filter(|f| f.passed > 0)
            .map(|f| {
                format!(
                    "grader `{}` passes {} on {}/{} items (first: {})",
                    self.grader,
                    f.attack.describe(),
                    f.passed,
                    f.tried,
                    f.first_pass.as_deref().unwrap_or("?")
                )
            })
            .collect()
    }
}

const FILLER: [&str; 8] = [
    "lorem", "ipsum", "dolor", "sit", "amet", "tempor", "magna", "aliqua",
];

/// `text` with each run of letters replaced by a filler word (first capital kept) and each digit d by
/// (d + 5) mod 10: the same shape, none of the content.
pub fn wrong_content(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut word = 0usize;
    let mut in_word = false;
    for c in text.chars() {
        if c.is_alphabetic() {
            if !in_word {
                let w = FILLER[word % FILLER.len()];
                word += 1;
                if c.is_uppercase() {
                    let mut cs = w.chars();
                    out.extend(cs.next().map(|f| f.to_ascii_uppercase()));
                    out.push_str(cs.as_str());
                } else {
                    out.push_str(w);
                }
                in_word = true;
            }
        } else {
            in_word = false;
            match c.to_digit(10) {
                Some(d) => out.extend(char::from_digit((d + 5) % 10, 10)),
                None => out.push(c),
            }
        }
    }
    out
}

fn wrong_json(v: &Value) -> Value {
    match v {
        Value::String(s) => Value::String(wrong_content(s)),
        Value::Number(n) => serde_json::json!(n.as_f64().map_or(0.0, |x| x + 7.0)),
        Value::Bool(b) => Value::Bool(!b),
        Value::Array(a) => Value::Array(a.iter().map(wrong_json).collect()),
        Value::Object(m) => {
            Value::Object(m.iter().map(|(k, v)| (k.clone(), wrong_json(v))).collect())
        }
        Value::Null => Value::Null,
    }
}

fn field_text(item: &Value, field: &str) -> String {
    match item.get(field) {
        Some(Value::String(s)) => s.clone(),
        Some(v) => v.to_string(),
        None => String::new(),
    }
}

/// The attack answers for one item.
pub fn attacks(
    g: &Grader,
    item: &Value,
    prompt_field: &str,
    reference_field: &str,
) -> Vec<(Attack, String)> {
    let prompt = field_text(item, prompt_field);
    let reference = field_text(item, reference_field);
    let wrong = match serde_json::from_str::<Value>(reference.trim()) {
        Ok(v @ (Value::Object(_) | Value::Array(_))) => wrong_json(&v).to_string(),
        _ => wrong_content(&reference),
    };
    let base = if reference.trim().is_empty() {
        "answer"
    } else {
        reference.as_str()
    };
    let reps = 3000 / base.split_whitespace().count().max(1) + 1;
    let long = format!("{} {}", vec![base; reps].join(" "), wrong);
    let mut out = vec![
        (Attack::Empty, String::new()),
        (Attack::EchoPrompt, prompt),
        (Attack::WrongContent, wrong),
        (Attack::Long, long),
        (Attack::Generic, GENERIC.to_string()),
    ];
    for s in g.schemas() {
        out.push((
            Attack::Schema,
            serde_json::to_string_pretty(&s).unwrap_or_default(),
        ));
    }
    out
}

/// Run every attack on every item (`prompt_field` and `reference_field` name the item's prompt
/// and reference answer).
pub fn probe(g: &Grader, items: &[Value], prompt_field: &str, reference_field: &str) -> Probe {
    let mut findings: Vec<Finding> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        for (attack, answer) in attacks(g, item, prompt_field, reference_field) {
            let f = match findings.iter_mut().find(|f| f.attack == attack) {
                Some(f) => f,
                None => {
                    findings.push(Finding {
                        attack,
                        tried: 0,
                        passed: 0,
                        errors: 0,
                        first_pass: None,
                    });
                    findings.last_mut().expect("just pushed")
                }
            };
            f.tried += 1;
            match g.grade(&answer, item) {
                Ok(r) if r.passed => {
                    f.passed += 1;
                    f.first_pass.get_or_insert_with(|| match item.get("id") {
                        Some(Value::String(id)) => id.clone(),
                        _ => format!("item {i}"),
                    });
                }
                Ok(_) => {}
                Err(_) => f.errors += 1,
            }
        }
    }
    Probe {
        grader: g.name.clone(),
        findings,
    }
}
