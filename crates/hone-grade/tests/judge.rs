//! `score_model` and `label_model` graders against a stub OpenAI-compatible server on loopback: the
//! request hone sends (structured output, temperature 0, the key), the grade read from the reply,
//! the capability probe that refuses a judge echoing the schema or answering one score for
//! everything, typed errors for refusals, server failures and rejected structured output, the
//! loopback-only default, and a lenient judge found exploitable by the adversarial check.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use hone_grade::judge::JudgeEnv;
use hone_grade::{GradeError, Grader, GraderSpec};
use serde_json::{Value, json};

/// A request the stub received: its headers (lower-cased) and its JSON body.
type Seen = Arc<Mutex<Vec<(String, Value)>>>;

/// A stub chat server answering every request with `reply(body) -> (status, response body)`.
fn stub(reply: impl Fn(&Value) -> (u16, String) + Send + Sync + 'static) -> (String, Seen) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    let seen: Seen = Arc::default();
    let log = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let (mut headers, mut len) = (String::new(), 0usize);
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                let lower = line.to_ascii_lowercase();
                if let Some(v) = lower.strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
                headers.push_str(&lower);
            }
            let mut body = vec![0; len];
            if reader.read_exact(&mut body).is_err() {
                continue;
            }
            let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let (status, text) = reply(&body);
            log.lock().unwrap().push((headers, body));
            let _ = write!(
                stream,
                "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
                text.len()
            );
        }
    });
    (url, seen)
}

/// An OpenAI chat-completion response carrying `content`.
fn chat(content: &str) -> (u16, String) {
    let v = json!({"choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}]});
    (200, v.to_string())
}

fn last_user(body: &Value) -> String {
    body["messages"]
        .as_array()
        .and_then(|m| m.iter().rev().find(|m| m["role"] == "user"))
        .and_then(|m| m["content"].as_str())
        .unwrap_or_default()
        .to_string()
}

/// The probe's answer when `body` is the capability probe: the result it asks for, exactly.
fn probe_answer(body: &Value) -> Option<(u16, String)> {
    let msg = last_user(body);
    let shown = msg.split("to exactly ").nth(1)?.strip_suffix('.')?;
    Some(chat(&format!(
        "{{\"reasoning\": \"format check\", \"result\": {shown}}}"
    )))
}

fn judges() -> JudgeEnv {
    JudgeEnv::default()
}

fn build(spec: Value) -> hone_grade::Result<Grader> {
    let spec: GraderSpec = serde_json::from_value(spec).unwrap();
    Grader::with_resources(
        &spec,
        &mut |_| Err("no encoder".into()),
        None,
        Some(&judges()),
    )
}

fn score_spec(url: &str, extra: Value) -> Value {
    let mut v = json!({
        "type": "score_model",
        "name": "judge",
        "model": "qwen-judge",
        "endpoint": url,
        "timeout_seconds": 5,
        "input": [
            {"role": "system", "content": "You grade support replies."},
            {"role": "user", "content": "Reference: {{ item.reference }}\nAnswer: {{ sample.output_text }}"}
        ],
        "pass_threshold": 0.8
    });
    if let (Some(o), Some(e)) = (v.as_object_mut(), extra.as_object()) {
        o.extend(e.clone());
    }
    v
}

#[test]
fn a_score_model_grades_through_structured_output_and_its_score_is_the_reward() {
    let (url, seen) = stub(|body| {
        probe_answer(body).unwrap_or_else(|| {
            let answer = last_user(body);
            let answer = answer.split("Answer: ").nth(1).unwrap_or_default();
            let r = if answer.contains("order 42") {
                1.0
            } else {
                0.2
            };
            chat(&format!("{{\"reasoning\": \"checked\", \"result\": {r}}}"))
        })
    });
    // SAFETY: no other test in this binary reads this variable.
    unsafe { std::env::set_var("HONE_TEST_JUDGE_KEY", "sekrit") };
    let g = build(score_spec(
        &url,
        json!({"api_key_env": "HONE_TEST_JUDGE_KEY"}),
    ))
    .unwrap();
    // Two probe requests, before anything was graded.
    assert_eq!(seen.lock().unwrap().len(), 2);
    let item = json!({"reference": "Your order 42 ships today."});
    let good = g.grade("order 42 is on its way", &item).unwrap();
    assert_eq!((good.reward, good.passed), (1.0, true));
    let bad = g.grade("we are on it", &item).unwrap();
    assert_eq!((bad.reward, bad.passed), (0.2, false));
    assert_eq!(
        g.item_fields().into_iter().collect::<Vec<_>>(),
        vec!["reference"]
    );
    let seen = seen.lock().unwrap();
    let (headers, body) = seen.last().unwrap();
    assert!(
        headers.contains("authorization: bearer sekrit"),
        "{headers}"
    );
    assert_eq!(body["model"], "qwen-judge");
    assert_eq!(body["temperature"], 0.0);
    let rf = &body["response_format"];
    assert_eq!(rf["type"], "json_schema");
    let result = &rf["json_schema"]["schema"]["properties"]["result"];
    assert_eq!(
        (result["minimum"].as_f64(), result["maximum"].as_f64()),
        (Some(0.0), Some(1.0))
    );
    // The shape is described in the first system message too, after the user's own text.
    let system = body["messages"][0]["content"].as_str().unwrap();
    assert!(system.starts_with("You grade support replies.") && system.contains("\"result\""));
    assert!(last_user(body).ends_with("Answer: we are on it"));
}

#[test]
fn a_label_model_passes_on_passing_labels_and_refuses_labels_outside_the_list() {
    let (url, _) = stub(|body| {
        probe_answer(body).unwrap_or_else(|| {
            let msg = last_user(body);
            let label = if msg.contains("within 30 days") {
                "on_policy"
            } else if msg.contains("LEGAL") {
                "lawsuit"
            } else {
                "off_policy"
            };
            chat(&format!(
                "{{\"reasoning\": \"r\", \"result\": \"{label}\"}}"
            ))
        })
    });
    let g = build(json!({
        "type": "label_model",
        "name": "policy",
        "model": "judge",
        "endpoint": url,
        "timeout_seconds": 5,
        "input": [{"role": "user", "content": "Does this follow the refund policy? {{ sample.output_text }}"}],
        "labels": ["on_policy", "off_policy", "unsafe"],
        "passing_labels": ["on_policy"]
    }))
    .unwrap();
    let item = json!({});
    let on = g.grade("Refunds are paid within 30 days.", &item).unwrap();
    assert_eq!((on.reward, on.passed), (1.0, true));
    let off = g.grade("We never refund.", &item).unwrap();
    assert_eq!((off.reward, off.passed), (0.0, false));
    match g.grade("LEGAL", &item) {
        Err(GradeError::JudgeParse { msg, .. }) => assert!(msg.contains("not one of"), "{msg}"),
        other => panic!("expected a parse error, got {other:?}"),
    }
    // A passing label outside the list is a definition error, found before any request.
    let bad: GraderSpec = serde_json::from_value(json!({
        "type": "label_model", "name": "p", "model": "m", "endpoint": "http://127.0.0.1:9/v1",
        "input": [{"role": "user", "content": "x"}], "labels": ["a"], "passing_labels": ["b"]
    }))
    .unwrap();
    let e = Grader::with_resources(&bad, &mut |_| Err("none".into()), None, Some(&judges()));
    assert!(matches!(e, Err(GradeError::Spec { .. })), "{e:?}");
}

#[test]
fn the_capability_probe_refuses_a_judge_that_echoes_the_schema_or_answers_one_score() {
    let (echo, _) = stub(|body| {
        let schema = body["response_format"]["json_schema"]["schema"].to_string();
        chat(&schema)
    });
    match build(score_spec(&echo, json!({}))) {
        Err(GradeError::JudgeParse { msg, .. }) => {
            assert!(
                msg.contains("capability probe") && msg.contains("echoed"),
                "{msg}"
            )
        }
        other => panic!("expected the probe to refuse, got {other:?}"),
    }
    let (constant, _) = stub(|_| chat("{\"reasoning\": \"fine\", \"result\": 1}"));
    match build(score_spec(&constant, json!({}))) {
        Err(GradeError::JudgeParse { msg, .. }) => {
            assert!(msg.contains("asked for result 0"), "{msg}")
        }
        other => panic!("expected the probe to refuse, got {other:?}"),
    }
}

#[test]
fn refusals_server_failures_and_rejected_structured_output_are_typed_errors() {
    // A server without structured output: 400 on `response_format`, answers otherwise.
    let (plain, seen) = stub(|body| {
        if body.get("response_format").is_some() {
            (
                400,
                json!({"error": {"message": "response_format is not supported"}}).to_string(),
            )
        } else {
            probe_answer(body)
                .unwrap_or_else(|| chat("```json\n{\"reasoning\": \"ok\", \"result\": 0.9}\n```"))
        }
    });
    match build(score_spec(&plain, json!({}))) {
        Err(GradeError::JudgeServer { msg, .. }) => {
            assert!(
                msg.contains("HTTP 400") && msg.contains("structured_output = \"prompt\""),
                "{msg}"
            )
        }
        other => panic!("expected a server error, got {other:?}"),
    }
    let g = build(score_spec(&plain, json!({"structured_output": "prompt"}))).unwrap();
    assert_eq!(
        g.grade("fine", &json!({"reference": "r"})).unwrap().reward,
        0.9
    );
    assert!(
        seen.lock()
            .unwrap()
            .iter()
            .any(|(_, b)| b.get("response_format").is_none())
    );

    // Probes pass, then every grading request fails or is refused.
    let (failing, _) = stub(|body| probe_answer(body).unwrap_or((503, "overloaded".into())));
    let g = build(score_spec(&failing, json!({}))).unwrap();
    match g.grade("x", &json!({"reference": "r"})) {
        Err(GradeError::JudgeServer { msg, .. }) => assert!(msg.contains("HTTP 503"), "{msg}"),
        other => panic!("expected a server error, got {other:?}"),
    }
    let (refusing, _) = stub(|body| {
        probe_answer(body).unwrap_or_else(|| {
            let v = json!({"choices": [{"message": {"role": "assistant", "content": null, "refusal": "I cannot grade this."}, "finish_reason": "stop"}]});
            (200, v.to_string())
        })
    });
    let g = build(score_spec(&refusing, json!({}))).unwrap();
    match g.grade("x", &json!({"reference": "r"})) {
        Err(GradeError::JudgeRefusal { msg, .. }) => assert!(msg.contains("cannot grade"), "{msg}"),
        other => panic!("expected a refusal, got {other:?}"),
    }

    // Nobody listening.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let gone = format!("http://127.0.0.1:{port}/v1");
    assert!(matches!(
        build(score_spec(&gone, json!({}))),
        Err(GradeError::JudgeServer { .. })
    ));
}

#[test]
fn judges_stay_on_this_machine_unless_the_project_allows_otherwise() {
    for url in [
        "http://192.0.2.7:8000/v1",
        "http://127.0.0.1@judge.example/v1",
    ] {
        match build(score_spec(url, json!({}))) {
            Err(GradeError::Spec { msg, .. }) => {
                assert!(msg.contains("allow_remote_judges"), "{msg}")
            }
            other => panic!("expected a refusal for {url}, got {other:?}"),
        }
    }
    match build(score_spec("https://127.0.0.1/v1", json!({}))) {
        Err(GradeError::Spec { msg, .. }) => assert!(msg.contains("TLS"), "{msg}"),
        other => panic!("expected https to be refused, got {other:?}"),
    }
    // A caller that calls no judge refuses judges.
    let spec: GraderSpec =
        serde_json::from_value(score_spec("http://127.0.0.1:9/v1", json!({}))).unwrap();
    assert!(matches!(Grader::new(&spec), Err(GradeError::Spec { .. })));
}

#[test]
fn a_judge_that_passes_everything_is_found_exploitable_and_a_strict_one_is_not() {
    let (lenient, _) = stub(|body| {
        probe_answer(body)
            .unwrap_or_else(|| chat("{\"reasoning\": \"looks helpful\", \"result\": 1}"))
    });
    let items: Vec<Value> = (0..3)
        .map(|i| json!({"id": format!("r{i}"), "question": format!("Where is order {i}?"), "reference": format!("Order {i} ships on Monday.")}))
        .collect();
    let g = build(score_spec(&lenient, json!({}))).unwrap();
    let p = hone_grade::adversarial::probe(&g, &items, "question", "reference");
    assert!(p.exploitable(), "{p:?}");
    // Full marks only for the reference itself.
    let (strict, _) = stub(|body| {
        probe_answer(body).unwrap_or_else(|| {
            let msg = last_user(body);
            let reference = msg
                .split("Reference: ")
                .nth(1)
                .and_then(|r| r.split('\n').next())
                .unwrap_or("?");
            let answer = msg.split("Answer: ").nth(1).unwrap_or_default();
            let r = if answer.trim() == reference.trim() {
                1
            } else {
                0
            };
            chat(&format!("{{\"reasoning\": \"compared\", \"result\": {r}}}"))
        })
    });
    let g = build(score_spec(&strict, json!({}))).unwrap();
    let p = hone_grade::adversarial::probe(&g, &items, "question", "reference");
    assert!(!p.exploitable(), "{p:?}");
}

#[test]
fn openai_grader_json_for_judges_loads_as_it_is() {
    let text = r#"{
      "type": "score_model",
      "name": "helpfulness",
      "input": [
        {"type": "message", "role": "system", "content": "Rate the reply from 1 to 5."},
        {"type": "message", "role": "user", "content": "{{ item.question }}\n{{ sample.output_text }}"}
      ],
      "model": "o4-mini-2025-04-16",
      "range": [1, 5],
      "pass_threshold": 4,
      "sampling_params": {"seed": 42, "temperature": 0.2, "max_completions_tokens": 512, "reasoning_effort": "low"}
    }"#;
    let spec =
        hone_grade::load::parse(std::path::Path::new("graders/helpfulness.json"), text).unwrap();
    match spec {
        GraderSpec::ScoreModel(g) => {
            assert_eq!(g.range, Some([1.0, 5.0]));
            assert_eq!(g.sampling_params.seed, Some(42));
            assert_eq!(g.input.len(), 2);
            assert_eq!(g.endpoint, None);
        }
        other => panic!("expected score_model, got {other:?}"),
    }
}

/// What the stub answers for one case: a status and the reply's `content`, or a whole raw
/// response body.
#[derive(Clone)]
enum Canned {
    Content(&'static str),
    Finish(&'static str, &'static str),
    Refusal(&'static str),
    Status(u16),
}

#[test]
fn judge_conformance_table() {
    type Want = Result<f64, &'static str>;
    // (answer, what the judge replies, expected reward or error kind)
    let score_cases: Vec<(&str, Canned, Want)> = vec![
        (
            "a",
            Canned::Content(r#"{"reasoning": "ok", "result": 0.7}"#),
            Ok(0.7),
        ),
        (
            "b",
            Canned::Content("```json\n{\"reasoning\": \"ok\", \"result\": 0.25}\n```"),
            Ok(0.25),
        ),
        (
            "c",
            Canned::Content(r#"Here is my grade: {"reasoning": "fine", "result": 1} Thanks."#),
            Ok(1.0),
        ),
        (
            "d",
            Canned::Content(r#"{"reasoning": "bad", "result": 0}"#),
            Ok(0.0),
        ),
        (
            "e",
            Canned::Content(r#"{"reasoning": "ok", "result": "0.5"}"#),
            Ok(0.5),
        ),
        (
            "f",
            Canned::Content(r#"{"reasoning": "ok", "result": 1.5}"#),
            Err("parse"),
        ),
        (
            "g",
            Canned::Content(r#"{"reasoning": "ok", "result": -0.1}"#),
            Err("parse"),
        ),
        (
            "h",
            Canned::Content(r#"{"reasoning": "ok", "result": "high"}"#),
            Err("parse"),
        ),
        (
            "i",
            Canned::Content(r#"{"reasoning": "forgot the result"}"#),
            Err("parse"),
        ),
        (
            "j",
            Canned::Content("I think it is quite good."),
            Err("parse"),
        ),
        (
            "k",
            Canned::Content(r#"{"type": "object", "properties": {"result": {"type": "number"}}}"#),
            Err("parse"),
        ),
        (
            "l",
            Canned::Refusal("I can't help with that."),
            Err("refusal"),
        ),
        (
            "m",
            Canned::Finish(r#"{"reasoning": "the answer is long and"#, "length"),
            Err("parse"),
        ),
        ("n", Canned::Finish("", "content_filter"), Err("refusal")),
        ("o", Canned::Status(500), Err("server")),
        ("p", Canned::Status(401), Err("server")),
    ];
    let label_cases: Vec<(&str, Canned, Want)> = vec![
        (
            "q",
            Canned::Content(r#"{"reasoning": "r", "result": "on_topic"}"#),
            Ok(1.0),
        ),
        (
            "r",
            Canned::Content(r#"{"reasoning": "r", "result": "On_Topic "}"#),
            Ok(1.0),
        ),
        (
            "s",
            Canned::Content(r#"{"reasoning": "r", "result": "off_topic"}"#),
            Ok(0.0),
        ),
        (
            "t",
            Canned::Content(r#"{"reasoning": "r", "result": "unsafe"}"#),
            Ok(0.0),
        ),
        (
            "u",
            Canned::Content(r#"{"reasoning": "r", "result": "maybe"}"#),
            Err("parse"),
        ),
        (
            "v",
            Canned::Content(r#"{"reasoning": "r", "result": 1}"#),
            Err("parse"),
        ),
    ];
    let table: Vec<(&str, Canned)> = score_cases
        .iter()
        .chain(&label_cases)
        .map(|(a, c, _)| (*a, c.clone()))
        .collect();
    let (url, _) = stub(move |body| {
        if let Some(p) = probe_answer(body) {
            return p;
        }
        let msg = last_user(body);
        let answer = msg.rsplit("Answer: ").next().unwrap_or_default();
        let Some((_, canned)) = table.iter().find(|(a, _)| *a == answer) else {
            return (404, "no such case".into());
        };
        let choice = |content: Value, refusal: Value, finish: &str| {
            let v = json!({"choices": [{"message": {"role": "assistant", "content": content, "refusal": refusal}, "finish_reason": finish}]});
            (200, v.to_string())
        };
        match canned {
            Canned::Content(c) => choice(json!(c), Value::Null, "stop"),
            Canned::Finish(c, f) => choice(json!(c), Value::Null, f),
            Canned::Refusal(r) => choice(Value::Null, json!(r), "stop"),
            Canned::Status(s) => (*s, json!({"error": {"message": "boom"}}).to_string()),
        }
    });
    let label = build(json!({
        "type": "label_model", "name": "topic", "model": "judge", "endpoint": url, "timeout_seconds": 5,
        "input": [{"role": "user", "content": "Answer: {{ sample.output_text }}"}],
        "labels": ["on_topic", "off_topic", "unsafe"], "passing_labels": ["on_topic"]
    }))
    .unwrap();
    let score = build(score_spec(&url, json!({}))).unwrap();
    let mut n = 0;
    for (g, cases) in [(&score, &score_cases), (&label, &label_cases)] {
        for (answer, _, want) in cases {
            let got = g.grade(answer, &json!({"reference": "ref"}));
            match (want, &got) {
                (Ok(w), Ok(grade)) => {
                    assert!((grade.reward - w).abs() < 1e-12, "{answer}: {got:?}")
                }
                (Err("parse"), Err(GradeError::JudgeParse { .. }))
                | (Err("refusal"), Err(GradeError::JudgeRefusal { .. }))
                | (Err("server"), Err(GradeError::JudgeServer { .. })) => {}
                _ => panic!("case {answer}: want {want:?}, got {got:?}"),
            }
            n += 1;
        }
    }
    assert!(n >= 20, "{n} cases");
    // A reply cut at the token limit says which setting to raise.
    match score.grade("m", &json!({"reference": "ref"})) {
        Err(GradeError::JudgeParse { msg, .. }) => {
            assert!(msg.contains("max_completions_tokens"), "{msg}")
        }
        other => panic!("{other:?}"),
    }
}
