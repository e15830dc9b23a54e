//! The HTTP surface: routes, the middleware every request passes (metrics, time limit, token and
//! role before the body is read, rate limit), the handlers, and JSON errors in the OpenAI shape
//! (`{"error": {"message", "type", "code"}}`) with the right status code.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Extension, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use hone_store::{FeedbackRow, PredictionRow};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::auth::{Caller, needed};
use crate::{App, Served};

/// An error answer.
pub(crate) struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) kind: &'static str,
    pub(crate) message: String,
    /// Seconds for a `Retry-After` header (429 and 503 answers).
    pub(crate) retry_after: Option<u64>,
}

impl ApiError {
    pub(crate) fn new(
        status: StatusCode,
        kind: &'static str,
        message: impl Into<String>,
    ) -> ApiError {
        ApiError {
            status,
            kind,
            message: message.into(),
            retry_after: None,
        }
    }
    pub(crate) fn bad(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_request_error", message)
    }
    pub(crate) fn internal(e: impl std::fmt::Display) -> ApiError {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            e.to_string(),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"error": {
            "message": self.message,
            "type": self.kind,
            "code": self.status.as_u16(),
        }});
        let mut r = (self.status, axum::Json(body)).into_response();
        if let Some(s) = self.retry_after {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        r
    }
}

/// The router with its middleware.
pub(crate) fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/v1/predict", post(predict))
        .route("/v1/feedback", post(feedback))
        .route("/v1/chat/completions", post(crate::chat::chat_completions))
        .route("/v1/completions", post(crate::chat::completions))
        .fallback(not_found)
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "invalid_request_error",
                "wrong method for this route: POST /v1/*, GET /metrics, /healthz, /readyz",
            )
        })
        .layer(middleware::from_fn_with_state(app.clone(), guard))
        .layer(DefaultBodyLimit::max(app.opts.max_body))
        .with_state(app.clone())
        .merge(crate::ui::router(app.ui.clone()))
}

/// Every request: time limit, token and role (before any body is read), rate limit, and the
/// request counted in the metrics.
async fn guard(State(app): State<Arc<App>>, mut req: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = crate::metrics::route_of(req.uri().path());
    let response = match admit(&app, &req) {
        Err(e) => e.into_response(),
        Ok(caller) => {
            if let Some(c) = caller {
                req.extensions_mut().insert(c);
            }
            match tokio::time::timeout(app.opts.timeout, next.run(req)).await {
                Ok(r) => r,
                Err(_) => ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "timeout",
                    format!(
                        "no answer within {} s (a body sent too slowly, or a busy model); send it again",
                        app.opts.timeout.as_secs_f64()
                    ),
                )
                .into_response(),
            }
        }
    };
    app.metrics.request(
        route,
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    response
}

fn admit(app: &App, req: &Request) -> Result<Option<Caller>, ApiError> {
    let Some(role) = needed(req.uri().path()) else {
        return Ok(None);
    };
    let header = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok());
    let caller = match app.auth.check(header, role).map_err(ApiError::internal)? {
        Ok(c) => c,
        Err(denied) => {
            let status = StatusCode::from_u16(denied.status()).unwrap_or(StatusCode::UNAUTHORIZED);
            let mut r = ApiError::new(status, "authentication_error", denied.to_string());
            if status == StatusCode::FORBIDDEN {
                r.kind = "permission_error";
            }
            return Err(r);
        }
    };
    if let Err(wait) = app.auth.take(&caller.name).map_err(ApiError::internal)? {
        let mut e = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limit_error",
            format!(
                "token `{}` is over {} requests/s; retry in {:.2} s (or batch texts: one request takes up to {})",
                caller.name, app.opts.rate_limit, wait, app.opts.max_batch
            ),
        );
        e.retry_after = Some(wait.ceil().max(1.0) as u64);
        return Err(e);
    }
    // Every answer is logged: while the log writer is behind, new answers wait instead of piling up.
    if matches!(
        req.uri().path(),
        "/v1/predict" | "/v1/chat/completions" | "/v1/completions"
    ) && let Some(q) = app.log.behind()
    {
        let mut e = ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "log_behind",
            format!(
                "{:.1} MB of answers are waiting to be written to the store (the limit is {:.1} MB): retry in a second",
                q as f64 / 1e6,
                app.opts.log_queue_bytes as f64 / 1e6
            ),
        );
        e.retry_after = Some(1);
        return Err(e);
    }
    Ok(Some(caller))
}

async fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        "no such route: POST /v1/predict, /v1/chat/completions, /v1/completions, /v1/feedback; GET /metrics, /healthz, /readyz",
    )
}

async fn healthz(State(app): State<Arc<App>>) -> Response {
    axum::Json(json!({
        "status": "ok",
        "run": app.run.id,
        "run_seq": app.run.seq,
        "model": app.run.model,
        "approved": app.approved,
        "warning": (!app.approved).then_some("this run is not the approved release (served with --allow-unapproved)"),
    }))
    .into_response()
}

async fn readyz(State(app): State<Arc<App>>) -> Response {
    if app.draining.load(Ordering::SeqCst) {
        return ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "draining", "shutting down")
            .into_response();
    }
    if crate::log::LAST_ERROR
        .lock()
        .ok()
        .is_some_and(|l| l.is_some())
    {
        // The error itself is not shown to callers without a token; `/metrics` counts the loss.
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_error",
            "the prediction log cannot be written to the store",
        )
        .into_response();
    }
    axum::Json(json!({"status": "ready"})).into_response()
}

async fn metrics(State(app): State<Arc<App>>) -> Response {
    let mut r = app
        .metrics
        .render(&app.run.id, &app.run.model, app.log.queued_bytes())
        .into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    r
}

/// The body as JSON of type `T`, with a message that says what is wrong and where.
pub(crate) fn parse<T: serde::de::DeserializeOwned>(
    body: Result<Bytes, BytesRejection>,
    shape: &str,
) -> Result<T, ApiError> {
    let body = body.map_err(|r| {
        let status = r.status();
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                status,
                "request_too_large",
                "the body is over the server's limit (--max-body); send fewer texts per request",
            )
        } else {
            ApiError::new(status, "invalid_request_error", r.body_text())
        }
    })?;
    serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad(format!(
            "the body is not valid JSON of the expected shape: {e} (expected {shape})"
        ))
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PredictRequest {
    #[serde(default)]
    texts: Option<Vec<String>>,
    #[serde(default)]
    inputs: Option<Vec<PredictInput>>,
    #[serde(default)]
    top_k: Option<usize>,
    /// Whether the caller consents to the input being kept (required under `require_consent`).
    #[serde(default)]
    consent: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PredictInput {
    #[serde(default)]
    id: Option<serde_json::Value>,
    text: String,
}

/// Prediction ids: the time in milliseconds (12 hex digits) then 96 random bits, so that no caller
/// can guess another's, and ids logged together sit together in the store's index: random keys
/// made every insert land on a random page of a large index, and the log writer fell behind.
pub(crate) fn prediction_id() -> String {
    prediction_ids(1).pop().unwrap_or_default()
}

/// `n` prediction ids: `pred_`, 12 hex digits of milliseconds since the epoch (ids sort by time, so
/// the log's index appends), then 96 random bits, all drawn with one call to the OS.
pub(crate) fn prediction_ids(n: usize) -> Vec<String> {
    let mut b = vec![0u8; 12 * n];
    if getrandom::fill(&mut b).is_err() {
        // No randomness from the OS: still unique (time and a counter), only guessable.
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        for chunk in b.chunks_exact_mut(12) {
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let t = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0) as u64;
            chunk[..8].copy_from_slice(&(t ^ n.rotate_left(32)).to_le_bytes());
            chunk[8..].copy_from_slice(&(n as u32).to_le_bytes());
        }
    }
    let ms = chrono::Utc::now().timestamp_millis().max(0) as u64 & 0xffff_ffff_ffff;
    const HEX: &[u8; 16] = b"0123456789abcdef";
    b.chunks_exact(12)
        .map(|chunk| {
            let mut id = String::with_capacity(5 + 12 + 24);
            id.push_str("pred_");
            for shift in (0..12).rev() {
                id.push(char::from(HEX[(ms >> (4 * shift)) as usize & 15]));
            }
            for x in chunk {
                id.push(char::from(HEX[usize::from(x >> 4)]));
                id.push(char::from(HEX[usize::from(x & 15)]));
            }
            id
        })
        .collect()
}

/// From this many texts a request is split over the cores.
const PARALLEL_FROM: usize = 8;

const PREDICT_SHAPE: &str = r#"{"texts": ["..."]} or {"inputs": [{"id": "...", "text": "..."}]}, optional "top_k" and "consent""#;

async fn predict(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    let req: PredictRequest = parse(body, PREDICT_SHAPE)?;
    let inputs: Vec<(Option<serde_json::Value>, String)> = match (req.texts, req.inputs) {
        (Some(t), None) => t.into_iter().map(|t| (None, t)).collect(),
        (None, Some(i)) => i.into_iter().map(|i| (i.id, i.text)).collect(),
        _ => {
            return Err(ApiError::bad(format!(
                "give exactly one of \"texts\" or \"inputs\": {PREDICT_SHAPE}"
            )));
        }
    };
    if inputs.is_empty() {
        return Err(ApiError::bad("no texts to predict"));
    }
    if inputs.len() > app.opts.max_batch {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "request_too_large",
            format!(
                "{} texts in one request; the limit is {} (split the batch)",
                inputs.len(),
                app.opts.max_batch
            ),
        ));
    }
    if matches!(app.model, Served::Generate(_)) {
        return Err(ApiError::bad(
            "this server serves a generate model: POST /v1/chat/completions or /v1/completions",
        ));
    }
    let top_k = req.top_k.unwrap_or(3).clamp(1, 100);
    let consent = req.consent.unwrap_or(!app.require_consent);
    let work = app.clone();
    let (ids, texts): (Vec<Option<serde_json::Value>>, Vec<String>) = inputs.into_iter().unzip();
    let permit = app.compute.acquire().await.map_err(ApiError::internal)?;
    let decided = tokio::task::spawn_blocking(move || {
        let Served::Classify(model) = &work.model else {
            return Err(hone_core::Error::Internal("not a classifier".into()));
        };
        let labels = model.labels();
        let rule = work.run.record.decision;
        let part = |texts: &[String]| {
            let prepared: Vec<String> = texts.iter().map(|t| work.prep.apply(t)).collect();
            let refs: Vec<&str> = prepared.iter().map(String::as_str).collect();
            let decided: Vec<_> = model
                .proba_batch(&refs)?
                .iter()
                .map(|p| hone_train::predict::decide(labels, p, top_k, rule))
                .collect();
            Ok::<_, hone_core::Error>((prepared, decided))
        };
        // A batch is split over the cores while fewer requests than cores are being worked on: a
        // lone client with many texts gets every core; under load each request keeps to its own
        // thread, which is cheaper than splitting (measured in bench/serve).
        if texts.len() < PARALLEL_FROM || work.computing() >= rayon::current_num_threads() {
            return part(&texts);
        }
        let size = texts.len().div_ceil(rayon::current_num_threads().max(1));
        let parts: Vec<_> = texts
            .par_chunks(size)
            .map(part)
            .collect::<hone_core::Result<_>>()?;
        let (mut prepared, mut decided) = (Vec::new(), Vec::new());
        for (p, d) in parts {
            prepared.extend(p);
            decided.extend(d);
        }
        Ok((prepared, decided))
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(ApiError::internal)?;
    drop(permit);
    let (prepared, decided) = decided;
    let latency_us = started.elapsed().as_micros() as i64;
    let at = chrono::Utc::now().to_rfc3339();
    let mut logs = Vec::with_capacity(decided.len());
    let mut out = Vec::with_capacity(decided.len());
    let pids = prediction_ids(decided.len());
    for (((id, text), d), pid) in ids.into_iter().zip(prepared).zip(decided).zip(pids) {
        logs.push(PredictionRow {
            id: pid.clone(),
            at: at.clone(),
            run: app.run.id.clone(),
            model: app.run.model.clone(),
            token: caller.name.clone(),
            consent,
            input_chars: Some(text.chars().count() as i64),
            input: consent.then_some(text),
            output: d.label.clone(),
            probability: Some(f64::from(d.probability)),
            latency_us,
        });
        out.push(Answer {
            abstained: d.abstained,
            id,
            label: d.label,
            prediction_id: pid,
            probability: d.probability,
            top_k: d.top_k,
        });
    }
    app.metrics
        .predicted(logs.iter().map(|l| l.output.as_str()));
    app.log.predictions(logs);
    Ok(axum::Json(PredictResponse {
        model: &app.run.model,
        predictions: out,
        run: &app.run.id,
    })
    .into_response())
}

/// One answer of `POST /v1/predict`: the decision, its id for feedback, and the caller's own id.
#[derive(Serialize)]
struct Answer {
    abstained: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<serde_json::Value>,
    label: String,
    prediction_id: String,
    probability: f32,
    top_k: Vec<hone_train::predict::Scored>,
}

#[derive(Serialize)]
struct PredictResponse<'a> {
    model: &'a str,
    predictions: Vec<Answer>,
    run: &'a str,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FeedbackRequest {
    prediction_id: String,
    #[serde(default)]
    label: Option<String>,
    #[serde(default)]
    rating: Option<f64>,
    #[serde(default)]
    comment: Option<String>,
    #[serde(default)]
    consent: Option<bool>,
}

const FEEDBACK_SHAPE: &str = r#"{"prediction_id": "...", "label"?: "...", "rating"?: number, "comment"?: "...", "consent"?: bool}"#;

async fn feedback(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let req: FeedbackRequest = parse(body, FEEDBACK_SHAPE)?;
    if req.label.is_none() && req.rating.is_none() && req.comment.is_none() {
        return Err(ApiError::bad(format!(
            "feedback needs a \"label\", a \"rating\" or a \"comment\": {FEEDBACK_SHAPE}"
        )));
    }
    if let (Served::Classify(model), Some(l)) = (&app.model, &req.label)
        && !model.labels().iter().any(|x| x == l)
    {
        return Err(ApiError::bad(format!(
            "label `{l}` is not one of the model's {} labels",
            model.labels().len()
        )));
    }
    if req.rating.is_some_and(|r| !r.is_finite()) {
        return Err(ApiError::bad("rating must be a finite number"));
    }
    if req
        .comment
        .as_ref()
        .is_some_and(|c| c.chars().count() > 4000)
    {
        return Err(ApiError::bad("comment is over 4000 characters"));
    }
    if req.prediction_id.is_empty() || req.prediction_id.len() > 200 {
        return Err(ApiError::bad("prediction_id is empty or too long"));
    }
    let row = FeedbackRow {
        seq: 0,
        prediction_id: req.prediction_id.clone(),
        at: chrono::Utc::now().to_rfc3339(),
        token: caller.name,
        consent: req.consent.unwrap_or(!app.require_consent),
        // A generate model's `label` is a corrected answer: free text, masked.
        label: match &app.model {
            Served::Generate(_) => req.label.map(|c| app.prep.mask(&c)),
            Served::Classify(_) => req.label,
        },
        rating: req.rating,
        // Comments are free text from users: masked like every input.
        comment: req.comment.map(|c| app.prep.mask(&c)),
    };
    // A token corrects the answers it asked for; `review` and `admin` tokens any answer. Someone
    // else's prediction reads as unknown (its existence is not confirmed).
    let any = caller.role >= hone_train::tokens::Role::Review;
    match app.log.feedback(row, any).await {
        Ok(seq) => Ok((
            StatusCode::CREATED,
            axum::Json(json!({"feedback_id": seq, "prediction_id": req.prediction_id})),
        )
            .into_response()),
        Err(hone_core::Error::NotFound { .. }) => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!(
                "no prediction `{}` was answered to this token (or it was purged after the retention period)",
                req.prediction_id
            ),
        )),
        Err(e) => Err(ApiError::internal(e)),
    }
}
