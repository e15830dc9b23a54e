//! Model judges (`score_model`, `label_model`): a chat model behind an OpenAI-compatible endpoint
//! grades an answer. The reply is held to a JSON shape (the server's structured output, or the
//! shape described in the prompt), then parsed and checked; a judge is probed before it grades
//! anything (it must answer two known questions in that shape); a refusal, a reply that is not a
//! grade (the schema echoed back, a score out of range, a label not in the list) and a failing
//! server are typed errors, never scores.

use std::collections::HashSet;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use serde_json::{Value, json};

use crate::error::{GradeError, Result};
use crate::spec::{SamplingParams, StructuredOutput};

/// What the pipeline allows judges.
#[derive(Debug, Clone, Default)]
pub struct JudgeEnv {
    /// Send items and answers to a judge that is not on this machine (`[policy]
    /// allow_remote_judges`); otherwise only loopback endpoints are used.
    pub allow_remote: bool,
}

/// The endpoint used by judges that name none.
pub const ENDPOINT_VAR: &str = "HONE_JUDGE_ENDPOINT";
/// The API key used by judges that name no `api_key_env`.
pub const API_KEY_VAR: &str = "HONE_JUDGE_API_KEY";

/// What a judge is asked for.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Ask {
    /// A number in `[lo, hi]`.
    Score { lo: f64, hi: f64 },
    /// One of these labels.
    Label(Vec<String>),
}

/// A judge's parsed answer.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Answer {
    Score(f64),
    Label(String),
}

/// How a judge is reached and held to its answer (from a `score_model` or `label_model` spec).
pub(crate) struct Settings<'a> {
    pub endpoint: Option<&'a str>,
    pub api_key_env: Option<&'a str>,
    pub timeout_seconds: f64,
    pub mode: StructuredOutput,
    pub model: &'a str,
    pub sampling: &'a SamplingParams,
    pub ask: Ask,
}

/// A judge, reachable and probed.
pub(crate) struct Judge {
    url: String,
    model: String,
    api_key: Option<String>,
    sampling: SamplingParams,
    mode: StructuredOutput,
    ask: Ask,
    agent: ureq::Agent,
}

impl std::fmt::Debug for Judge {
    // The API key is never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Judge")
            .field("url", &self.url)
            .field("model", &self.model)
            .field("mode", &self.mode)
            .field("ask", &self.ask)
            .finish_non_exhaustive()
    }
}

fn spec_err(grader: &str, msg: impl Into<String>) -> GradeError {
    GradeError::Spec {
        grader: grader.to_string(),
        msg: msg.into(),
    }
}

/// The host of an `http://` URL, without port or brackets.
fn host_of(url: &str) -> Option<&str> {
    let rest = url.strip_prefix("http://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let authority = authority.rsplit('@').next()?;
    if let Some(v6) = authority.strip_prefix('[') {
        return v6.split(']').next();
    }
    authority.split(':').next()
}

fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Judges already probed in this process (URL, model, mode and answer schema).
fn probed() -> &'static Mutex<HashSet<String>> {
    static PROBED: OnceLock<Mutex<HashSet<String>>> = OnceLock::new();
    PROBED.get_or_init(Default::default)
}

impl Judge {
    /// Check the settings, then probe the judge (once per process for the same server, model and
    /// answer shape): a judge that cannot be reached or cannot answer in shape is refused here,
    /// before it grades anything.
    pub(crate) fn new(grader: &str, s: Settings, env: &JudgeEnv) -> Result<Judge> {
        let from_env = std::env::var(ENDPOINT_VAR).ok().filter(|v| !v.is_empty());
        let endpoint = s.endpoint.map(str::to_string).or(from_env).ok_or_else(|| {
            spec_err(
                grader,
                format!("a judge needs `endpoint = \"http://127.0.0.1:8081/v1\"` (an OpenAI-compatible server) in the grader, or {ENDPOINT_VAR} set"),
            )
        })?;
        let base = endpoint.trim_end_matches('/');
        if base.starts_with("https://") {
            return Err(spec_err(
                grader,
                format!(
                    "`{base}`: hone talks plain HTTP to judges, on this machine or your network, and has no TLS; run the judge locally (llama.cpp's server, vLLM) or behind a local proxy"
                ),
            ));
        }
        let host = host_of(base)
            .filter(|h| !h.is_empty())
            .ok_or_else(|| spec_err(grader, format!("endpoint `{base}` is not an http:// URL")))?;
        if !is_loopback(host) && !env.allow_remote {
            return Err(spec_err(
                grader,
                format!(
                    "endpoint `{base}` is not on this machine, and a judge reads the dataset's items and the model's answers; set `allow_remote_judges = true` under [policy] to send them there"
                ),
            ));
        }
        let api_key = match s.api_key_env {
            Some(var) => Some(std::env::var(var).map_err(|_| {
                spec_err(
                    grader,
                    format!("api_key_env names `{var}`, which is not set; export it with the judge server's key"),
                )
            })?),
            None => std::env::var(API_KEY_VAR).ok().filter(|v| !v.is_empty()),
        };
        if !(s.timeout_seconds.is_finite()
            && s.timeout_seconds > 0.0
            && s.timeout_seconds <= 3600.0)
        {
            return Err(spec_err(grader, "timeout_seconds must lie in (0, 3600]"));
        }
        if s.model.trim().is_empty() {
            return Err(spec_err(
                grader,
                "`model` is empty: name the judge model the server serves",
            ));
        }
        match &s.ask {
            Ask::Score { lo, hi } if !(lo.is_finite() && hi.is_finite() && lo < hi) => {
                return Err(spec_err(
                    grader,
                    "range must be [low, high] with low < high",
                ));
            }
            Ask::Label(labels) if labels.is_empty() => {
                return Err(spec_err(grader, "labels is empty"));
            }
            _ => {}
        }
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs_f64(s.timeout_seconds)))
            .http_status_as_error(false)
            .proxy(None)
            .build()
            .into();
        let judge = Judge {
            url: format!("{base}/chat/completions"),
            model: s.model.to_string(),
            api_key,
            sampling: s.sampling.clone(),
            mode: s.mode,
            ask: s.ask,
            agent,
        };
        let key = format!(
            "{} {} {:?} {}",
            judge.url,
            judge.model,
            judge.mode,
            judge.schema()
        );
        let known = probed().lock().map(|p| p.contains(&key)).unwrap_or(false);
        if !known {
            judge.probe(grader)?;
            if let Ok(mut p) = probed().lock() {
                p.insert(key);
            }
        }
        Ok(judge)
    }

    /// The JSON schema of a reply: a short reasoning, then the result.
    pub(crate) fn schema(&self) -> Value {
        let result = match &self.ask {
            Ask::Score { lo, hi } => json!({"type": "number", "minimum": lo, "maximum": hi}),
            Ask::Label(labels) => json!({"type": "string", "enum": labels}),
        };
        json!({
            "type": "object",
            "properties": {"reasoning": {"type": "string"}, "result": result},
            "required": ["reasoning", "result"],
            "additionalProperties": false,
        })
    }

    fn instruction(&self) -> String {
        let result = match &self.ask {
            Ask::Score { lo, hi } => format!("<a number from {lo} to {hi}>"),
            Ask::Label(labels) => format!(
                "<one of {}>",
                labels
                    .iter()
                    .map(|l| format!("\"{l}\""))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        format!(
            "Reply with only a JSON object, nothing before or after it: {{\"reasoning\": \"<one or two sentences>\", \"result\": {result}}}"
        )
    }

    /// The request body for these messages (role, rendered content).
    pub(crate) fn body(&self, messages: &[(String, String)]) -> Value {
        let mut msgs: Vec<Value> = messages
            .iter()
            .map(|(role, content)| json!({"role": role, "content": content}))
            .collect();
        // The shape goes into the first system message, or a new one first: some chat templates
        // refuse a system message after the user's.
        let instruction = self.instruction();
        match msgs.first_mut() {
            Some(m) if matches!(m["role"].as_str(), Some("system" | "developer")) => {
                let c = m["content"].as_str().unwrap_or_default();
                m["content"] = Value::String(format!("{c}\n\n{instruction}"));
            }
            _ => msgs.insert(0, json!({"role": "system", "content": instruction})),
        }
        let p = &self.sampling;
        let mut body = json!({
            "model": self.model,
            "messages": msgs,
            "temperature": p.temperature.unwrap_or(0.0),
            "stream": false,
        });
        let o = body.as_object_mut().expect("an object");
        if let Some(v) = p.top_p {
            o.insert("top_p".into(), json!(v));
        }
        if let Some(v) = p.seed {
            o.insert("seed".into(), json!(v));
        }
        if let Some(v) = p.max_completions_tokens {
            o.insert("max_tokens".into(), json!(v));
        }
        if let Some(v) = &p.reasoning_effort {
            o.insert("reasoning_effort".into(), json!(v));
        }
        if self.mode == StructuredOutput::JsonSchema {
            o.insert(
                "response_format".into(),
                json!({"type": "json_schema", "json_schema": {"name": "grade", "strict": true, "schema": self.schema()}}),
            );
        }
        body
    }

    /// Ask the judge; transport failures, 429 and 5xx are retried twice.
    pub(crate) fn ask(&self, grader: &str, messages: &[(String, String)]) -> Result<Answer> {
        let body = self.body(messages).to_string();
        let server = |msg: String| GradeError::JudgeServer {
            grader: grader.to_string(),
            msg,
        };
        let mut attempt = 0;
        let (status, text) = loop {
            let mut req = self
                .agent
                .post(&self.url)
                .header("Content-Type", "application/json");
            if let Some(k) = &self.api_key {
                req = req.header("Authorization", &format!("Bearer {k}"));
            }
            let outcome = req.send(body.as_str()).and_then(|mut r| {
                let status = r.status().as_u16();
                r.body_mut().read_to_string().map(|t| (status, t))
            });
            let retry = match &outcome {
                Ok((s, _)) => *s == 429 || *s >= 500,
                Err(_) => true,
            };
            if retry && attempt < 2 {
                std::thread::sleep(Duration::from_millis(500 * 4u64.pow(attempt)));
                attempt += 1;
                continue;
            }
            break outcome.map_err(|e| server(format!("{}: {e}", self.url)))?;
        };
        if status != 200 {
            let detail = serde_json::from_str::<Value>(&text)
                .ok()
                .and_then(|v| v["error"]["message"].as_str().map(str::to_string))
                .unwrap_or_else(|| text.chars().take(300).collect());
            let lower = detail.to_lowercase();
            let hint = if self.mode == StructuredOutput::JsonSchema
                && status == 400
                && (lower.contains("response_format") || lower.contains("json_schema"))
            {
                "; the server rejected structured output: set `structured_output = \"prompt\"` in the grader"
            } else {
                ""
            };
            return Err(server(format!(
                "{} answered HTTP {status}: {detail}{hint}",
                self.url
            )));
        }
        let v: Value = serde_json::from_str(&text).map_err(|e| {
            server(format!(
                "{} did not answer OpenAI chat-completion JSON: {e}",
                self.url
            ))
        })?;
        let choice = &v["choices"][0];
        let message = &choice["message"];
        let finish = choice["finish_reason"].as_str().unwrap_or_default();
        if let Some(r) = message["refusal"].as_str().filter(|r| !r.trim().is_empty()) {
            return Err(GradeError::JudgeRefusal {
                grader: grader.to_string(),
                msg: r.to_string(),
            });
        }
        if finish == "content_filter" {
            return Err(GradeError::JudgeRefusal {
                grader: grader.to_string(),
                msg: "the server's content filter stopped the reply".into(),
            });
        }
        let parse_err = |msg: String| GradeError::JudgeParse {
            grader: grader.to_string(),
            msg,
        };
        let content = message["content"]
            .as_str()
            .ok_or_else(|| parse_err("the reply has no text content".into()))?;
        parse_reply(content, &self.ask).map_err(|e| {
            if finish == "length" {
                parse_err(format!("{e}; the reply was cut at the token limit (raise sampling_params.max_completions_tokens)"))
            } else {
                parse_err(e)
            }
        })
    }

    /// Two known questions: the judge must answer each in shape, with the answer asked for (the
    /// top and bottom of the range, the first and last label). A judge that cannot is refused.
    fn probe(&self, grader: &str) -> Result<()> {
        let wanted: Vec<Answer> = match &self.ask {
            Ask::Score { lo, hi } => vec![Answer::Score(*hi), Answer::Score(*lo)],
            Ask::Label(labels) => {
                let mut w = vec![Answer::Label(labels[0].clone())];
                if labels.len() > 1 {
                    w.push(Answer::Label(labels[labels.len() - 1].clone()));
                }
                w
            }
        };
        for want in wanted {
            let shown = match &want {
                Answer::Score(x) => x.to_string(),
                Answer::Label(l) => format!("\"{l}\""),
            };
            let msg = format!(
                "This is a format check, not a grading task. Set \"reasoning\" to \"format check\" and \"result\" to exactly {shown}."
            );
            let got = self
                .ask(grader, &[("user".to_string(), msg)])
                .map_err(prefix_probe)?;
            let same = match (&got, &want) {
                (Answer::Score(a), Answer::Score(b)) => (a - b).abs() <= 1e-6 * (1.0 + b.abs()),
                (a, b) => a == b,
            };
            if !same {
                return Err(GradeError::JudgeParse {
                    grader: grader.to_string(),
                    msg: format!(
                        "capability probe: asked for result {shown}, the judge answered {}; a judge that does not follow this cannot be trusted to grade (use a stronger model)",
                        match got {
                            Answer::Score(x) => x.to_string(),
                            Answer::Label(l) => format!("\"{l}\""),
                        }
                    ),
                });
            }
        }
        Ok(())
    }
}

fn prefix_probe(e: GradeError) -> GradeError {
    match e {
        GradeError::JudgeParse { grader, msg } => GradeError::JudgeParse {
            grader,
            msg: format!("capability probe: {msg}"),
        },
        GradeError::JudgeServer { grader, msg } => GradeError::JudgeServer {
            grader,
            msg: format!("capability probe: {msg}"),
        },
        GradeError::JudgeRefusal { grader, msg } => GradeError::JudgeRefusal {
            grader,
            msg: format!("capability probe: {msg}"),
        },
        other => other,
    }
}

/// Read a judge's reply: the JSON object in it (code fences and text around it ignored), which
/// must be an answer, not the answer's schema, with a `result` of the kind asked for.
pub(crate) fn parse_reply(content: &str, ask: &Ask) -> std::result::Result<Answer, String> {
    let short: String = content.chars().take(120).collect();
    let (Some(a), Some(b)) = (content.find('{'), content.rfind('}')) else {
        return Err(format!("no JSON object in `{short}`"));
    };
    if b < a {
        return Err(format!("no JSON object in `{short}`"));
    }
    let v: Value =
        serde_json::from_str(&content[a..=b]).map_err(|e| format!("not JSON ({e}): `{short}`"))?;
    let Value::Object(o) = &v else {
        return Err(format!("not a JSON object: `{short}`"));
    };
    let schema_like = ["properties", "$schema", "additionalProperties", "required"]
        .iter()
        .any(|k| o.contains_key(*k))
        || o.get("type").and_then(Value::as_str) == Some("object");
    if schema_like {
        return Err(
            "the judge echoed the answer's JSON schema instead of answering (a model that cannot follow structured output; use a stronger judge)"
                .into(),
        );
    }
    let result = o
        .get("result")
        .ok_or_else(|| format!("no `result` in `{short}`"))?;
    match ask {
        Ask::Score { lo, hi } => {
            let x = result
                .as_f64()
                .or_else(|| result.as_str().and_then(|s| s.trim().parse().ok()))
                .filter(|x: &f64| x.is_finite())
                .ok_or_else(|| format!("`result` is not a number: {result}"))?;
            if x < *lo || x > *hi {
                return Err(format!("result {x} is outside the range [{lo}, {hi}]"));
            }
            Ok(Answer::Score(x))
        }
        Ask::Label(labels) => {
            let got = result
                .as_str()
                .ok_or_else(|| format!("`result` is not a label: {result}"))?;
            labels
                .iter()
                .find(|l| l.as_str() == got)
                .or_else(|| {
                    labels
                        .iter()
                        .find(|l| l.trim().eq_ignore_ascii_case(got.trim()))
                })
                .map(|l| Answer::Label(l.clone()))
                .ok_or_else(|| format!("label `{got}` is not one of {}", labels.join(", ")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn score() -> Ask {
        Ask::Score { lo: 0.0, hi: 1.0 }
    }

    #[test]
    fn replies_are_read_through_fences_and_text_around_them() {
        let r = "Sure.\n```json\n{\"reasoning\": \"ok\", \"result\": 0.75}\n```";
        assert_eq!(parse_reply(r, &score()), Ok(Answer::Score(0.75)));
        assert_eq!(
            parse_reply("{\"result\": \"0.5\"}", &score()),
            Ok(Answer::Score(0.5))
        );
        let labels = Ask::Label(vec!["good".into(), "bad".into()]);
        assert_eq!(
            parse_reply("{\"result\": \" Good\"}", &labels),
            Ok(Answer::Label("good".into()))
        );
    }

    #[test]
    fn echoed_schemas_out_of_range_scores_and_unknown_labels_are_not_grades() {
        let echo = "{\"type\": \"object\", \"properties\": {\"result\": {\"type\": \"number\"}}}";
        assert!(parse_reply(echo, &score()).unwrap_err().contains("echoed"));
        // A schema-shaped answer carrying a result is still an echo.
        let sneaky = "{\"required\": [\"result\"], \"result\": 1}";
        assert!(
            parse_reply(sneaky, &score())
                .unwrap_err()
                .contains("echoed")
        );
        assert!(
            parse_reply("{\"result\": 7}", &score())
                .unwrap_err()
                .contains("outside")
        );
        assert!(parse_reply("{\"result\": \"high\"}", &score()).is_err());
        assert!(parse_reply("no json here", &score()).is_err());
        assert!(parse_reply("{\"reasoning\": \"x\"}", &score()).is_err());
        let labels = Ask::Label(vec!["good".into()]);
        assert!(
            parse_reply("{\"result\": \"great\"}", &labels)
                .unwrap_err()
                .contains("not one of")
        );
    }

    #[test]
    fn only_loopback_hosts_count_as_this_machine() {
        for (url, local) in [
            ("http://127.0.0.1:8081/v1", true),
            ("http://localhost/v1", true),
            ("http://[::1]:9000/v1", true),
            ("http://user@127.0.0.2:80", true),
            ("http://10.0.0.5:8000/v1", false),
            ("http://judge.example:8000/v1", false),
            ("http://127.0.0.1.example/v1", false),
        ] {
            assert_eq!(host_of(url).is_some_and(is_loopback), local, "{url}");
        }
        assert_eq!(host_of("ftp://x"), None);
    }
}
