//! The OpenAI-compatible endpoints for generate runs: `POST /v1/chat/completions` and `POST
//! /v1/completions`, whole or streamed as server-sent events. A prompt is prepared and rendered as
//! `hone predict` does it (`hone_train::predict::generate_prompt`) and sampled with the seed `hone
//! predict` gives a one-line input, so the same prompt gets the same answer from both. Answers pass
//! through the PII masker before they leave; a stream holds back its last characters until the
//! masker has seen what follows them.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{Extension, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hone_core::record::Turn;
use hone_lm::StopReason;
use hone_store::PredictionRow;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::api::{ApiError, parse, prediction_id};
use crate::auth::Caller;
use crate::{App, Served};

/// Characters a stream keeps back, so that the masker sees an e-mail address or a phone number
/// whole before any of it is sent.
const HOLD_BACK: usize = 48;

#[derive(Deserialize)]
#[serde(untagged)]
enum Content {
    Text(String),
    Parts(Vec<Part>),
}

#[derive(Deserialize)]
struct Part {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    text: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Stop {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
struct ChatMessage {
    role: String,
    content: Content,
}

/// The request fields hone honours; others that OpenAI clients send (`user`, `stream_options`,
/// ...) are accepted and ignored.
#[derive(Deserialize)]
struct Common {
    #[serde(default)]
    max_tokens: Option<usize>,
    #[serde(default)]
    max_completion_tokens: Option<usize>,
    #[serde(default)]
    temperature: Option<f64>,
    #[serde(default)]
    top_p: Option<f64>,
    #[serde(default)]
    seed: Option<u64>,
    #[serde(default)]
    stream: bool,
    #[serde(default)]
    n: Option<usize>,
    #[serde(default)]
    stop: Option<Stop>,
    #[serde(default)]
    consent: Option<bool>,
}

#[derive(Deserialize)]
struct ChatRequest {
    messages: Vec<ChatMessage>,
    #[serde(flatten)]
    common: Common,
}

#[derive(Deserialize)]
struct CompletionRequest {
    prompt: String,
    #[serde(flatten)]
    common: Common,
}

const CHAT_SHAPE: &str = r#"{"messages": [{"role": "user", "content": "..."}], "max_tokens"?, "temperature"?, "seed"?, "stream"?}"#;
const COMPLETION_SHAPE: &str =
    r#"{"prompt": "...", "max_tokens"?, "temperature"?, "seed"?, "stream"?}"#;

pub(crate) async fn chat_completions(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let req: ChatRequest = parse(body, CHAT_SHAPE)?;
    let mut turns = Vec::with_capacity(req.messages.len());
    for (i, m) in req.messages.into_iter().enumerate() {
        let content = match m.content {
            Content::Text(t) => t,
            Content::Parts(parts) => {
                let mut t = String::new();
                for p in parts {
                    match (p.kind.as_str(), p.text) {
                        ("text", Some(x)) => t.push_str(&x),
                        (kind, _) => {
                            return Err(ApiError::bad(format!(
                                "message {}: content part of type `{kind}`: only text parts are supported",
                                i + 1
                            )));
                        }
                    }
                }
                t
            }
        };
        turns.push(Turn {
            role: m.role,
            content,
        });
    }
    let (turns, text, target) = hone_core::record::split_conversation(turns)
        .map_err(|e| ApiError::bad(format!("messages: {e}")))?;
    if target.is_some() {
        return Err(ApiError::bad(
            "messages: the conversation ends with an assistant message; it is answered at its last user message",
        ));
    }
    answer(app, caller, turns, text, req.common, true).await
}

pub(crate) async fn completions(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let req: CompletionRequest = parse(body, COMPLETION_SHAPE)?;
    // A prompt is the user's message, rendered with the run's chat template (as `hone predict`
    // renders a `prompt` line): the model was trained on that shape.
    answer(app, caller, Vec::new(), req.prompt, req.common, false).await
}

/// What the generator sends: `Started` once the prompt is checked and the model is this request's,
/// deltas (streams only), then the outcome (`Err((is_the_request's_fault, message))`).
enum Frame {
    Started,
    Delta(String),
    Done(Result<Finished, (bool, String)>),
}

struct Finished {
    text: String,
    stop: StopReason,
    prompt_tokens: usize,
    completion_tokens: usize,
}

async fn answer(
    app: Arc<App>,
    caller: Caller,
    turns: Vec<Turn>,
    text: String,
    c: Common,
    chat: bool,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    let Served::Generate(_) = &app.model else {
        return Err(ApiError::bad(
            "this server serves a classification model: POST /v1/predict",
        ));
    };
    if c.n.is_some_and(|n| n != 1) {
        return Err(ApiError::bad("n: only one answer per request (n = 1)"));
    }
    if c.temperature.is_some_and(|t| !(t.is_finite() && t >= 0.0)) {
        return Err(ApiError::bad(
            "temperature must be a number >= 0 (0 is greedy)",
        ));
    }
    if c.top_p.is_some_and(|p| !(p > 0.0 && p <= 1.0)) {
        return Err(ApiError::bad("top_p must be in (0, 1]"));
    }
    let max_tokens = c.max_completion_tokens.or(c.max_tokens);
    if max_tokens.is_some_and(|m| m == 0 || m > 4096) {
        return Err(ApiError::bad("max_tokens must be 1 to 4096"));
    }
    let stop: Vec<String> = match c.stop {
        None => Vec::new(),
        Some(Stop::One(s)) => vec![s],
        Some(Stop::Many(v)) => v,
    };
    if stop.len() > 4 || stop.iter().any(String::is_empty) {
        return Err(ApiError::bad("stop: at most 4 non-empty strings"));
    }
    let consent = c.consent.unwrap_or(!app.require_consent);
    let pid = prediction_id();
    let created = chrono::Utc::now().timestamp();
    let model_name = app.run.model.clone();
    // At most a few requests wait for the model; more are told to come back.
    let Ok(permit) = app.generate_slots.clone().try_acquire_owned() else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded",
            "the model is busy with the requests already queued; retry shortly",
        ));
    };
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Frame>(256);
    let work = app.clone();
    let streaming = c.stream;
    let prompt_text = app.prep.apply(&text);
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        // Deltas never block the model: a client that reads slowly gets them merged, one that left
        // gets none (the answer is still finished and logged).
        let mut pending = String::new();
        let mut gone = false;
        let done = generate(
            &work,
            &turns,
            &text,
            (max_tokens, c.temperature, c.top_p, c.seed),
            stop,
            &mut || {
                let _ = tx.blocking_send(Frame::Started);
            },
            &mut |d| {
                if !streaming || gone {
                    return;
                }
                pending.push_str(d);
                match tx.try_send(Frame::Delta(std::mem::take(&mut pending))) {
                    Ok(()) => {}
                    Err(tokio::sync::mpsc::error::TrySendError::Full(Frame::Delta(p))) => {
                        pending = p
                    }
                    Err(_) => gone = true,
                }
            },
        );
        // The model is free again; now the last delta may wait for the client.
        if streaming && !gone && !pending.is_empty() {
            let _ = tx.blocking_send(Frame::Delta(pending));
        }
        let _ = tx.blocking_send(Frame::Done(
            done.map_err(|e| (matches!(e, hone_core::Error::Usage(_)), e.to_string())),
        ));
    });
    // A request the model cannot take (a prompt over its context) is a 400, before any stream.
    match rx.recv().await {
        Some(Frame::Started) => {}
        Some(Frame::Done(Err((true, e)))) => return Err(ApiError::bad(e)),
        Some(Frame::Done(Err((false, e)))) => return Err(ApiError::internal(e)),
        _ => return Err(ApiError::internal("the generator stopped")),
    }
    let log = {
        let (app, pid, caller) = (app.clone(), pid.clone(), caller.name.clone());
        move |f: &Finished| {
            app.log.predictions(vec![PredictionRow {
                id: pid.clone(),
                at: chrono::Utc::now().to_rfc3339(),
                run: app.run.id.clone(),
                model: app.run.model.clone(),
                token: caller.clone(),
                consent,
                input: consent.then(|| prompt_text.clone()),
                input_chars: Some(prompt_text.chars().count() as i64),
                output: f.text.clone(),
                probability: None,
                latency_us: started.elapsed().as_micros() as i64,
            }]);
        }
    };
    let finish = |s: &StopReason| match s {
        StopReason::Length => "length",
        _ => "stop",
    };
    if !streaming {
        let f = loop {
            match rx.recv().await {
                Some(Frame::Done(Ok(f))) => break f,
                Some(Frame::Done(Err((_, e)))) => return Err(ApiError::internal(e)),
                Some(Frame::Delta(_) | Frame::Started) => {}
                None => return Err(ApiError::internal("the generator stopped")),
            }
        };
        log(&f);
        let choice = if chat {
            json!({"index": 0, "message": {"role": "assistant", "content": f.text}, "finish_reason": finish(&f.stop), "logprobs": null})
        } else {
            json!({"index": 0, "text": f.text, "finish_reason": finish(&f.stop), "logprobs": null})
        };
        return Ok(axum::Json(json!({
            "id": pid,
            "object": if chat { "chat.completion" } else { "text_completion" },
            "created": created,
            "model": model_name,
            "choices": [choice],
            "usage": {
                "prompt_tokens": f.prompt_tokens,
                "completion_tokens": f.completion_tokens,
                "total_tokens": f.prompt_tokens + f.completion_tokens,
            },
            "prediction_id": pid,
        }))
        .into_response());
    }
    // Server-sent events: one chunk per delta, a last chunk with the finish reason, then [DONE].
    let chunk = move |delta: Option<&str>, finish_reason: Option<&str>, first: bool| -> Bytes {
        let choice = if chat {
            let mut d = serde_json::Map::new();
            if first {
                d.insert("role".into(), json!("assistant"));
            }
            if let Some(t) = delta {
                d.insert("content".into(), json!(t));
            }
            json!({"index": 0, "delta": Value::Object(d), "finish_reason": finish_reason, "logprobs": null})
        } else {
            json!({"index": 0, "text": delta.unwrap_or(""), "finish_reason": finish_reason, "logprobs": null})
        };
        let v = json!({
            "id": pid,
            "object": if chat { "chat.completion.chunk" } else { "text_completion" },
            "created": created,
            "model": model_name,
            "choices": [choice],
        });
        Bytes::from(format!("data: {v}\n\n"))
    };
    let stream = futures_util::stream::unfold(
        (rx, true, false, log),
        move |(mut rx, first, ended, log)| {
            let chunk = chunk.clone();
            async move {
                if ended {
                    return None;
                }
                let out = match rx.recv().await {
                    Some(Frame::Delta(d)) => (chunk(Some(&d), None, first), false),
                    Some(Frame::Started) => (Bytes::new(), false),
                    Some(Frame::Done(Ok(f))) => {
                        log(&f);
                        let mut b = chunk(None, Some(finish(&f.stop)), first).to_vec();
                        b.extend_from_slice(b"data: [DONE]\n\n");
                        (Bytes::from(b), true)
                    }
                    Some(Frame::Done(Err((_, e)))) => (
                        Bytes::from(format!(
                            "data: {}\n\n",
                            json!({"error": {"message": e, "type": "server_error", "code": 500}})
                        )),
                        true,
                    ),
                    None => return None,
                };
                Some((Ok::<_, Infallible>(out.0), (rx, false, out.1, log)))
            }
        },
    );
    let mut r = Response::new(Body::from_stream(stream));
    *r.status_mut() = StatusCode::OK;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Ok(r)
}

/// Generate one answer (blocking), calling `on_delta` with masked text as it becomes safe to send;
/// the deltas add up to the returned (masked) text.
/// The request's decoding overrides: max tokens, temperature, top-p, seed.
type Overrides = (Option<usize>, Option<f64>, Option<f64>, Option<u64>);

fn generate(
    app: &App,
    turns: &[Turn],
    text: &str,
    (max_tokens, temperature, top_p, seed): Overrides,
    stop: Vec<String>,
    on_start: &mut dyn FnMut(),
    on_delta: &mut dyn FnMut(&str),
) -> hone_core::Result<Finished> {
    let Served::Generate(g) = &app.model else {
        return Err(hone_core::Error::Internal("not a generate model".into()));
    };
    let mut g = g
        .lock()
        .map_err(|_| hone_core::Error::Internal("the model lock was poisoned".into()))?;
    let g = &mut *g;
    let prompt = hone_train::predict::generate_prompt(
        g.lm.template(),
        g.system.as_deref(),
        &app.prep,
        turns,
        text,
    )?;
    let mut cfg = g.cfg.clone();
    if let Some(m) = max_tokens {
        cfg.max_new_tokens = m;
    }
    if let Some(t) = temperature {
        cfg.temperature = t;
    }
    if top_p.is_some() {
        cfg.top_p = top_p;
    }
    if let Some(s) = seed {
        cfg.seed = s;
    }
    cfg.stop = stop;
    // The seed `hone predict` gives its first input line (id "1").
    let row_seed = hone_train::generate_stage::row_seed(cfg.seed, "1");
    let ids = g.lm.encode(&prompt)?;
    let context = g.lm.info().context;
    if ids.is_empty() || ids.len() + cfg.max_new_tokens > context {
        return Err(hone_core::Error::Usage(format!(
            "the prompt ({} tokens) plus max_tokens ({}) exceed the model's context ({context}): shorten the conversation or ask for fewer tokens",
            ids.len(),
            cfg.max_new_tokens
        )));
    }
    on_start();
    let tokenizer = g.lm.tokenizer().clone();
    let prep = &app.prep;
    let mut tokens: Vec<u32> = Vec::new();
    let mut sent = String::new();
    let mut on_token = |_: usize, t: u32| {
        tokens.push(t);
        let Ok(so_far) = tokenizer.decode(&tokens, true) else {
            return;
        };
        let masked = prep.mask(&so_far);
        let chars: Vec<(usize, char)> = masked.char_indices().collect();
        if chars.len() <= HOLD_BACK {
            return;
        }
        // Up to the last whitespace before the held-back tail.
        let limit = chars[chars.len() - HOLD_BACK].0;
        let Some(cut) = masked[..limit].rfind(char::is_whitespace) else {
            return;
        };
        let safe = &masked[..cut];
        if safe.len() > sent.len() && safe.starts_with(sent.as_str()) {
            on_delta(&safe[sent.len()..]);
            sent = safe.to_string();
        }
    };
    let mut out =
        g.lm.generate_batch_with(&[ids], &[row_seed], &cfg, &mut on_token)?;
    let answer = out
        .pop()
        .ok_or_else(|| hone_core::Error::Internal("no answer".into()))?;
    let text = prep.mask(&answer.text);
    match text.strip_prefix(sent.as_str()) {
        Some(rest) if !rest.is_empty() => on_delta(rest),
        Some(_) => {}
        // The masker changed text already sent (PII longer than the hold-back): the stream
        // cannot take it back; the logged answer and a non-streamed answer are masked whole.
        None => on_delta(&text[common_prefix(&text, &sent)..]),
    }
    Ok(Finished {
        text,
        completion_tokens: answer.tokens.len(),
        prompt_tokens: answer.prompt_tokens,
        stop: answer.stop,
    })
}

fn common_prefix(a: &str, b: &str) -> usize {
    a.char_indices()
        .zip(b.chars())
        .take_while(|((_, x), y)| x == y)
        .last()
        .map_or(0, |((i, x), _)| i + x.len_utf8())
}
