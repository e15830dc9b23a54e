//! The web dashboard (`/` under `hone serve`, or alone under `hone ui`): runs and comparisons with
//! their intervals, model cards, the data report, the review queue (decisions recorded as `hone
//! review` records them, under the token's name), the rubric review of a generate run's answers
//! (recorded as `hone review import` records a sheet), and drift. Server-rendered HTML with inline SVG,
//! no scripts and no external resources (a Content-Security-Policy forbids them). Logged in by
//! token: the token stays on the server, the browser holds a random session id, every page checks
//! the token again (a revoked token ends its sessions within a second), and every page but the
//! login needs the `review` role, so a `predict` or `feedback` token sees nothing of the data.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Form, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use hone_core::{Error, Result};
use hone_report::esc;
use hone_store::{Decision, Store};
use hone_train::project::Project;
use hone_train::record::{Estimate, Run};
use hone_train::tokens::Role;
use serde::Deserialize;

use crate::auth::{Auth, Caller};

/// The dashboard's state.
pub(crate) struct Ui {
    root: PathBuf,
    auth: Arc<Auth>,
    /// The run `hone serve` serves (drift reads its answers); `None` under `hone ui`.
    served: Option<String>,
    sessions: Mutex<HashMap<String, Session>>,
}

#[derive(Clone)]
struct Session {
    /// `Bearer TOKEN`, checked again on every page.
    header: String,
    /// Sent back with every form: a cross-site form cannot know it.
    csrf: String,
    last: Instant,
}

/// A session unused this long is forgotten (log in again).
const IDLE: Duration = Duration::from_secs(12 * 3600);
const COOKIE: &str = "hone_session";

impl Ui {
    pub(crate) fn new(root: PathBuf, auth: Arc<Auth>, served: Option<String>) -> Ui {
        Ui {
            root,
            auth,
            served,
            sessions: Mutex::new(HashMap::new()),
        }
    }
}

/// The dashboard's routes, with the security headers every page carries.
pub(crate) fn router(ui: Arc<Ui>) -> Router {
    Router::new()
        .route("/", get(home))
        .route("/ui/login", post(login))
        .route("/ui/logout", post(logout))
        .route("/ui/runs", get(runs))
        .route("/ui/runs/{key}", get(run_page))
        .route("/ui/compare", get(compare))
        .route("/ui/data", get(data))
        .route("/ui/review", get(review).post(record_review))
        .route("/ui/answers", get(answers).post(record_answers))
        .route("/ui/drift", get(drift))
        .layer(middleware::from_fn(headers))
        .layer(DefaultBodyLimit::max(64 * 1024))
        .with_state(ui)
}

/// No scripts, no external resources, no framing, nothing cached, no referrer.
async fn headers(req: Request, next: Next) -> Response {
    let mut r = next.run(req).await;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// Random hex of `n` bytes.
fn random_hex(n: usize) -> String {
    let mut b = vec![0u8; n];
    if getrandom::fill(&mut b).is_err() {
        // Sessions are not handed out without real randomness.
        return String::new();
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

const EXTRA_STYLE: &str = "nav{display:flex;gap:1.2em;align-items:center;border-bottom:1px solid #dde;padding:.6em 0;margin-bottom:1em}nav a{color:#1d4ed8;text-decoration:none;font-weight:600}nav form{margin-left:auto}nav .who{color:#667}.note{background:#ecfdf3;border:1px solid #b7e4c7;padding:.5em .8em}.err{background:#fdecec;border:1px solid #f3b7b7;padding:.5em .8em}input,select,button{font:inherit;padding:.2em .4em}button{cursor:pointer}pre{background:#f3f5fa;padding:.8em;overflow-x:auto}td form{display:flex;gap:.3em;flex-wrap:wrap;margin:0}td{overflow-wrap:anywhere}";

/// One dashboard page: the navigation (with who is logged in), then `body`.
fn page(title: &str, who: Option<(&Caller, &str)>, body: &str) -> String {
    let nav = match who {
        Some((c, csrf)) => format!(
            "<nav><a href=\"/ui/runs\">Runs</a><a href=\"/ui/data\">Data</a><a href=\"/ui/review\">Review</a><a href=\"/ui/answers\">Answers</a><a href=\"/ui/drift\">Drift</a><form method=\"post\" action=\"/ui/logout\"><span class=\"who\">{} ({})</span> <input type=\"hidden\" name=\"csrf\" value=\"{}\"><button id=\"logout\">Log out</button></form></nav>",
            esc(&c.name),
            c.role.as_str(),
            esc(csrf)
        ),
        None => String::new(),
    };
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{} — hone</title><style>{}{EXTRA_STYLE}</style></head><body>{nav}{body}</body></html>",
        esc(title),
        hone_report::STYLE
    )
}

fn html(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        body,
    )
        .into_response()
}

fn redirect(to: &str) -> Response {
    (StatusCode::SEE_OTHER, [(header::LOCATION, to.to_string())]).into_response()
}

fn login_page(status: StatusCode, message: Option<&str>) -> Response {
    let msg = message
        .map(|m| format!("<p class=\"err\">{}</p>", esc(m)))
        .unwrap_or_default();
    html(
        status,
        page(
            "Log in",
            None,
            &format!(
                "<h1>hone dashboard</h1>{msg}<p>Log in with an access token (<code>hone token create --role review --name NAME</code>). Data pages need the <code>review</code> or <code>admin</code> role.</p><form method=\"post\" action=\"/ui/login\"><label>Token <input id=\"token\" name=\"token\" type=\"password\" autocomplete=\"off\" size=\"50\"></label> <button id=\"login\">Log in</button></form>"
            ),
        ),
    )
}

/// The session cookie's value, if the request carries one.
fn session_id(h: &HeaderMap) -> Option<String> {
    h.get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.to_string())
}

/// Who is logged in, with the role `needed`; otherwise the answer to give (the login page, or 403).
#[allow(
    clippy::result_large_err,
    reason = "the error is the handler's response, returned at once; boxing it buys nothing"
)]
fn who(ui: &Ui, h: &HeaderMap, needed: Role) -> std::result::Result<(Caller, String), Response> {
    let Some(id) = session_id(h) else {
        return Err(redirect("/"));
    };
    let session = {
        let mut sessions = ui.sessions.lock().map_err(|_| internal_page("lock"))?;
        match sessions.get_mut(&id) {
            Some(s) if s.last.elapsed() < IDLE => {
                s.last = Instant::now();
                s.clone()
            }
            Some(_) => {
                sessions.remove(&id);
                return Err(login_page(
                    StatusCode::UNAUTHORIZED,
                    Some("the session expired: log in again"),
                ));
            }
            None => return Err(redirect("/")),
        }
    };
    match ui.auth.check(Some(&session.header), Role::Predict) {
        Ok(Ok(c)) if c.role.allows(needed) => Ok((c, session.csrf)),
        Ok(Ok(c)) => Err(html(
            StatusCode::FORBIDDEN,
            page(
                "Not allowed",
                Some((&c, &session.csrf)),
                &format!(
                    "<h1>Not allowed</h1><p class=\"err\">Token <code>{}</code> has the role <code>{}</code>; this page needs <code>{}</code> or above. The dashboard shows data only to review and admin tokens.</p>",
                    esc(&c.name),
                    c.role.as_str(),
                    needed.as_str()
                ),
            ),
        )),
        Ok(Err(denied)) => {
            if let Ok(mut s) = ui.sessions.lock() {
                s.remove(&id);
            }
            Err(login_page(
                StatusCode::UNAUTHORIZED,
                Some(&denied.to_string()),
            ))
        }
        Err(e) => Err(internal_page(e)),
    }
}

fn internal_page(e: impl std::fmt::Display) -> Response {
    html(
        StatusCode::INTERNAL_SERVER_ERROR,
        page(
            "Error",
            None,
            &format!("<h1>Error</h1><p class=\"err\">{}</p>", esc(&e.to_string())),
        ),
    )
}

/// An error of the pipeline as a page: not found is 404, bad input 400, the rest 500.
fn error_page(e: &Error, who: (&Caller, &str)) -> Response {
    let status = match e {
        Error::NotFound { .. } => StatusCode::NOT_FOUND,
        Error::Usage(_) | Error::Data { .. } | Error::BadRecord { .. } => StatusCode::BAD_REQUEST,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    html(
        status,
        page(
            "Error",
            Some(who),
            &format!("<h1>Error</h1><p class=\"err\">{}</p>", esc(&e.to_string())),
        ),
    )
}

/// Run `f` on the project and its store off the async threads; render its body in a page.
async fn blocking_page(
    ui: &Arc<Ui>,
    who: (Caller, String),
    title: String,
    f: impl FnOnce(&Project, &mut Store) -> Result<String> + Send + 'static,
) -> Response {
    let root = ui.root.clone();
    let done = tokio::task::spawn_blocking(move || {
        let project = Project::discover(&root)?;
        let mut store = Store::open_existing(&project.root)?;
        f(&project, &mut store)
    })
    .await;
    let (c, csrf) = who;
    match done {
        Ok(Ok(body)) => html(StatusCode::OK, page(&title, Some((&c, &csrf)), &body)),
        Ok(Err(e)) => error_page(&e, (&c, &csrf)),
        Err(e) => internal_page(e),
    }
}

async fn home(State(ui): State<Arc<Ui>>, h: HeaderMap) -> Response {
    match who(&ui, &h, Role::Predict) {
        Ok(_) => redirect("/ui/runs"),
        Err(_) => login_page(StatusCode::OK, None),
    }
}

#[derive(Deserialize)]
struct LoginForm {
    token: String,
}

async fn login(
    State(ui): State<Arc<Ui>>,
    form: std::result::Result<Form<LoginForm>, FormRejection>,
) -> Response {
    let Ok(Form(f)) = form else {
        return login_page(StatusCode::BAD_REQUEST, Some("the form needs a token"));
    };
    let header = format!("Bearer {}", f.token.trim());
    match ui.auth.check(Some(&header), Role::Predict) {
        Ok(Ok(_)) => {}
        Ok(Err(denied)) => {
            return login_page(StatusCode::UNAUTHORIZED, Some(&denied.to_string()));
        }
        Err(e) => return internal_page(e),
    }
    let (id, csrf) = (random_hex(16), random_hex(16));
    if id.is_empty() || csrf.is_empty() {
        return internal_page("no randomness from the operating system for a session id");
    }
    {
        let Ok(mut sessions) = ui.sessions.lock() else {
            return internal_page("lock");
        };
        sessions.retain(|_, s| s.last.elapsed() < IDLE);
        if sessions.len() >= 10_000 {
            return html(
                StatusCode::SERVICE_UNAVAILABLE,
                page(
                    "Busy",
                    None,
                    "<p class=\"err\">Too many sessions; try later.</p>",
                ),
            );
        }
        sessions.insert(
            id.clone(),
            Session {
                header,
                csrf,
                last: Instant::now(),
            },
        );
    }
    let mut r = redirect("/ui/runs");
    if let Ok(v) =
        HeaderValue::from_str(&format!("{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict"))
    {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

#[derive(Deserialize)]
struct CsrfForm {
    csrf: String,
}

/// A form post is only taken with the session's own form token (a cross-site page cannot know it).
fn csrf_ok(sent: &str, expected: &str) -> bool {
    !expected.is_empty()
        && sent.len() == expected.len()
        && sent
            .bytes()
            .zip(expected.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

fn csrf_refused() -> Response {
    html(
        StatusCode::FORBIDDEN,
        page(
            "Refused",
            None,
            "<p class=\"err\">The form's token does not match this session (a form from another page, or an old one): reload the page and send it again.</p>",
        ),
    )
}

async fn logout(
    State(ui): State<Arc<Ui>>,
    h: HeaderMap,
    form: std::result::Result<Form<CsrfForm>, FormRejection>,
) -> Response {
    let (_, csrf) = match who(&ui, &h, Role::Predict) {
        Ok(w) => w,
        Err(r) => return r,
    };
    if !form.is_ok_and(|Form(f)| csrf_ok(&f.csrf, &csrf)) {
        return csrf_refused();
    }
    if let (Some(id), Ok(mut s)) = (session_id(&h), ui.sessions.lock()) {
        s.remove(&id);
    }
    let mut r = redirect("/");
    r.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("hone_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
    );
    r
}

/// `0.9104 [0.8955, 0.9247]`, or `–`.
fn interval(e: &Estimate) -> String {
    match (e.estimate, e.lo, e.hi) {
        (Some(x), Some(lo), Some(hi)) => format!("{x:.4} [{lo:.4}, {hi:.4}]"),
        (Some(x), _, _) => format!("{x:.4}"),
        _ => "–".into(),
    }
}

fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut t = String::from("<table><tr>");
    for h in headers {
        t.push_str(&format!("<th>{}</th>", esc(h)));
    }
    t.push_str("</tr>");
    for r in rows {
        t.push_str("<tr>");
        for c in r {
            t.push_str(&format!("<td>{c}</td>"));
        }
        t.push_str("</tr>");
    }
    t.push_str("</table>");
    t
}

async fn runs(State(ui): State<Arc<Ui>>, h: HeaderMap) -> Response {
    let w = match who(&ui, &h, Role::Review) {
        Ok(w) => w,
        Err(r) => return r,
    };
    blocking_page(&ui, w, "Runs".into(), |project, store| {
        let listing = hone_train::record::listing(store)?;
        let released = store.approved_run()?.map(|a| a.run);
        let generate = listing.iter().any(|l| l.run.record.generation.is_some());
        let rows: Vec<Vec<String>> = listing
            .iter()
            .rev()
            .map(|l| {
                let r = &l.run;
                let (a, b, c) = match &r.record.generation {
                    Some(g) => (interval(&g.test.rouge_l), interval(&g.test.chrf), interval(&g.dev.rouge_l)),
                    None => (interval(&l.test.accuracy), interval(&l.test.macro_f1), interval(&l.dev.macro_f1)),
                };
                let mut marks = Vec::new();
                if l.chosen {
                    marks.push("chosen");
                }
                if released.as_deref() == Some(r.id.as_str()) {
                    marks.push("released");
                }
                vec![
                    format!("<a href=\"/ui/runs/{}\">#{}</a>", r.seq, r.seq),
                    format!("<code>{}</code>", esc(hone_core::hash::short(&r.id))),
                    esc(&r.created_at.chars().take(19).collect::<String>()),
                    esc(&r.model),
                    esc(&r.kind),
                    format!("<code>{}</code>", esc(hone_core::hash::short(&r.version))),
                    a,
                    b,
                    c,
                    marks.join(", "),
                ]
            })
            .collect();
        let metric = if generate {
            ["test ROUGE-L [95% CI]", "test chrF [95% CI]", "dev ROUGE-L [95% CI]"]
        } else {
            ["test accuracy [95% CI]", "test macro-F1 [95% CI]", "dev macro-F1 [95% CI]"]
        };
        let mut headers = vec!["run", "id", "created", "model", "kind", "data"];
        headers.extend(metric);
        headers.push("");
        // A defaults to the newest run, B to the one before it: the comparison a person makes most.
        let options = |selected: usize| -> String {
            listing
                .iter()
                .rev()
                .enumerate()
                .map(|(i, l)| {
                    format!(
                        "<option value=\"{}\"{}>#{} {}</option>",
                        l.run.seq,
                        if i == selected { " selected" } else { "" },
                        l.run.seq,
                        esc(&l.run.model)
                    )
                })
                .collect()
        };
        let (options_a, options_b) = (options(0), options(usize::from(listing.len() > 1)));
        Ok(format!(
            "<h1>Runs: {}</h1><p class=\"muted\">{} runs, newest first; intervals are 95% bootstrap CIs on the frozen test set.</p>{}<h2>Compare two runs</h2><form method=\"get\" action=\"/ui/compare\"><select id=\"a\" name=\"a\">{options_a}</select> against <select id=\"b\" name=\"b\">{options_b}</select> <button id=\"compare\">Compare</button></form>",
            esc(&project.config.task.name),
            listing.len(),
            table(&headers, &rows)
        ))
    })
    .await
}

async fn run_page(State(ui): State<Arc<Ui>>, h: HeaderMap, Path(key): Path<String>) -> Response {
    let w = match who(&ui, &h, Role::Review) {
        Ok(w) => w,
        Err(r) => return r,
    };
    blocking_page(&ui, w, format!("Run {key}"), move |project, store| {
        let run = hone_train::record::resolve(store, &key)?;
        let card = hone_train::card::build(project, store, &run)?;
        Ok(format!(
            "<p class=\"muted\">Run #{} <code>{}</code>, the model card as <code>hone card {}</code> writes it.</p>{}",
            run.seq,
            esc(&run.id),
            run.seq,
            card.body()
        ))
    })
    .await
}

#[derive(Deserialize)]
struct CompareQuery {
    a: String,
    b: String,
}

async fn compare(
    State(ui): State<Arc<Ui>>,
    h: HeaderMap,
    q: std::result::Result<Query<CompareQuery>, QueryRejection>,
) -> Response {
    let w = match who(&ui, &h, Role::Review) {
        Ok(w) => w,
        Err(r) => return r,
    };
    let Ok(Query(q)) = q else {
        let e = Error::Usage("compare needs two runs: /ui/compare?a=RUN&b=RUN".into());
        return error_page(&e, (&w.0, &w.1));
    };
    blocking_page(&ui, w, "Compare".into(), move |project, store| {
        let (a, b) = (
            hone_train::record::resolve(store, &q.a)?,
            hone_train::record::resolve(store, &q.b)?,
        );
        let c = hone_train::compare::compare_runs(project, store, &a, &b)?;
        Ok(format!(
            "<h1>Run #{} ({}) against #{} ({})</h1><p class=\"{}\" id=\"verdict\">B = run #{} is <b>{}</b> {}A = run #{}.</p><pre>{}</pre>",
            a.seq,
            esc(&a.model),
            b.seq,
            esc(&b.model),
            if c.verdict == "indistinguishable" { "muted" } else { "note" },
            b.seq,
            esc(c.verdict),
            if c.verdict == "indistinguishable" { "from " } else { "than " },
            a.seq,
            esc(&c.text)
        ))
    })
    .await
}

async fn data(State(ui): State<Arc<Ui>>, h: HeaderMap) -> Response {
    let w = match who(&ui, &h, Role::Review) {
        Ok(w) => w,
        Err(r) => return r,
    };
    blocking_page(&ui, w, "Data".into(), |project, store| {
        let v = store.resolve_version(None)?;
        Ok(hone_train::reports::data_report(project, store, &v)?.body)
    })
    .await
}

#[derive(Deserialize, Default)]
struct ReviewQuery {
    #[serde(default)]
    recorded: Option<String>,
    #[serde(default)]
    version: Option<String>,
}

/// How many queued suspects one page shows.
const QUEUE_PAGE: usize = 50;

async fn review(
    State(ui): State<Arc<Ui>>,
    h: HeaderMap,
    q: std::result::Result<Query<ReviewQuery>, QueryRejection>,
) -> Response {
    let w = match who(&ui, &h, Role::Review) {
        Ok(w) => w,
        Err(r) => return r,
    };
    let csrf = w.1.clone();
    let q = q.map(|Query(q)| q).unwrap_or_default();
    blocking_page(&ui, w, "Review".into(), move |_project, store| {
        let ctx = hone_train::review::ReviewContext::load(store)?;
        let mut body = String::from("<h1>Review queue</h1>");
        if let Some(id) = &q.recorded {
            body.push_str(&format!(
                "<p class=\"note\" id=\"recorded\">Recorded the decision on <code>{}</code>; dataset version <code>{}</code> applies it.</p>",
                esc(id),
                esc(q.version.as_deref().unwrap_or(""))
            ));
        }
        let labels: Vec<&str> = ctx.labels().into_iter().collect();
        match hone_train::review::queue(store, &ctx) {
            Ok((_, suspects)) => {
                body.push_str(&format!(
                    "<p class=\"muted\">{} suspect(s) without a decision (label issues, poisoning signals, corrections from feedback); the first {} below. Each decision is recorded under your token's name and makes a new dataset version, as <code>hone review</code> does.</p>",
                    suspects.len(),
                    QUEUE_PAGE.min(suspects.len())
                ));
                let rows: Vec<Vec<String>> = suspects
                    .iter()
                    .take(QUEUE_PAGE)
                    .enumerate()
                    .map(|(n, s)| {
                        let text = ctx.record(&s.id).map(|r| r.text.as_str()).unwrap_or("");
                        let suggested = s.suggested_label.as_deref().unwrap_or(&s.label);
                        let options: String = labels
                            .iter()
                            .map(|l| {
                                format!(
                                    "<option{}>{}</option>",
                                    if *l == suggested { " selected" } else { "" },
                                    esc(l)
                                )
                            })
                            .collect();
                        vec![
                            format!("<code>{}</code>", esc(&s.id)),
                            esc(&s.kind),
                            esc(&hone_train::reports::clip(text, 240)),
                            esc(&s.label),
                            esc(s.suggested_label.as_deref().unwrap_or("–")),
                            format!("{:.3}", s.score),
                            format!(
                                "<form id=\"review-{n}\" method=\"post\" action=\"/ui/review\"><input type=\"hidden\" name=\"csrf\" value=\"{}\"><input type=\"hidden\" name=\"id\" value=\"{}\"><select name=\"decision\"><option>accept</option><option>relabel</option><option>drop</option><option>skip</option></select><select name=\"label\">{options}</select><input name=\"note\" placeholder=\"note\" size=\"12\"><button>Record</button></form>",
                                esc(&csrf),
                                esc(&s.id)
                            ),
                        ]
                    })
                    .collect();
                body.push_str(&table(
                    &["record", "signal", "text (masked)", "label", "suggested", "score", "decision"],
                    &rows,
                ));
            }
            Err(Error::NotFound { hint, .. }) => {
                body.push_str(&format!("<p class=\"muted\">Nothing to review yet: {}.</p>", esc(&hint)));
            }
            Err(e) => return Err(e),
        }
        let mut recorded = store.decisions()?;
        recorded.sort_by(|a, b| b.at.cmp(&a.at));
        let rows: Vec<Vec<String>> = recorded
            .iter()
            .take(20)
            .map(|d| {
                vec![
                    esc(&d.at.chars().take(19).collect::<String>()),
                    format!("<code>{}</code>", esc(&d.record_id)),
                    esc(&d.decision),
                    esc(d.label.as_deref().unwrap_or("")),
                    esc(&d.reviewer),
                    esc(&d.note),
                ]
            })
            .collect();
        body.push_str(&format!(
            "<h2>Recorded decisions</h2><p class=\"muted\">The latest 20 of {}.</p>{}",
            recorded.len(),
            table(&["at", "record", "decision", "label", "reviewer", "note"], &rows)
        ));
        Ok(body)
    })
    .await
}

#[derive(Deserialize)]
struct ReviewForm {
    csrf: String,
    id: String,
    decision: String,
    #[serde(default)]
    label: Option<String>,
    #[serde(default)]
    note: String,
}

async fn record_review(
    State(ui): State<Arc<Ui>>,
    h: HeaderMap,
    form: std::result::Result<Form<ReviewForm>, FormRejection>,
) -> Response {
    let (caller, csrf) = match who(&ui, &h, Role::Review) {
        Ok(w) => w,
        Err(r) => return r,
    };
    let Ok(Form(f)) = form else {
        let e = Error::Usage("the review form needs csrf, id and decision".into());
        return error_page(&e, (&caller, &csrf));
    };
    if !csrf_ok(&f.csrf, &csrf) {
        return csrf_refused();
    }
    let root = ui.root.clone();
    let reviewer = caller.name.clone();
    let id = f.id.clone();
    let done = tokio::task::spawn_blocking(move || {
        let project = Project::discover(&root)?;
        let mut store = Store::open_existing(&project.root)?;
        let ctx = hone_train::review::ReviewContext::load(&store)?;
        let d = Decision {
            record_id: f.id,
            // Only a relabel carries a label.
            label: (f.decision == "relabel").then_some(f.label).flatten(),
            decision: f.decision,
            reviewer: reviewer.clone(),
            at: chrono::Utc::now().to_rfc3339(),
            note: f.note,
        };
        ctx.check(&d).map_err(Error::Usage)?;
        let (_, out) = hone_train::review::apply(
            &project,
            &mut store,
            &[d],
            &reviewer,
            "hone serve dashboard: review",
        )?;
        Ok::<_, Error>(out.version.id)
    })
    .await;
    match done {
        Ok(Ok(version)) => redirect(&format!(
            "/ui/review?recorded={}&version={}",
            url_escape(&id),
            hone_core::hash::short(&version)
        )),
        Ok(Err(e)) => error_page(&e, (&caller, &csrf)),
        Err(e) => internal_page(e),
    }
}

#[derive(Deserialize, Default)]
struct AnswersQuery {
    #[serde(default)]
    sheet: Option<String>,
    #[serde(default)]
    recorded: Option<usize>,
}

/// The rubric review of a generate run's answers: a sheet `hone review answers` wrote, as a form
/// (tone, accuracy, safety, usefulness 1–5, strong or weak, a note), and what reviewers recorded.
async fn answers(
    State(ui): State<Arc<Ui>>,
    h: HeaderMap,
    q: std::result::Result<Query<AnswersQuery>, QueryRejection>,
) -> Response {
    let w = match who(&ui, &h, Role::Review) {
        Ok(w) => w,
        Err(r) => return r,
    };
    let q = q.map(|Query(q)| q).unwrap_or_default();
    let csrf = w.1.clone();
    blocking_page(&ui, w, "Answers".into(), move |project, store| {
        use hone_train::answer_review as ar;
        let mut body = String::from("<h1>Answer review</h1>");
        if project.config.task.kind != hone_core::config::TaskKind::Generate {
            body.push_str("<p class=\"muted\">Answer review is for generate tasks; this project classifies (its suspects are in <a href=\"/ui/review\">Review</a>).</p>");
            return Ok(body);
        }
        if let Some(n) = q.recorded {
            body.push_str(&format!(
                "<p class=\"note\" id=\"recorded\">Recorded {n} reviewed answer(s) under your token's name.</p>"
            ));
        }
        let sheets = ar::sheets(project)?;
        let Some(chosen) = q
            .sheet
            .filter(|s| sheets.contains(s))
            .or_else(|| sheets.first().cloned())
        else {
            body.push_str("<p class=\"muted\">No review sheet yet: <code>hone review answers --run N</code> writes one (several answers per prompt) to <code>reviews/</code>.</p>");
            return Ok(body);
        };
        let links: Vec<String> = sheets
            .iter()
            .map(|s| {
                let b = if *s == chosen { ("<b>", "</b>") } else { ("", "") };
                format!("{}<a href=\"/ui/answers?sheet={}\">{}</a>{}", b.0, url_escape(s), esc(s), b.1)
            })
            .collect();
        body.push_str(&format!("<p>Sheets: {}</p>", links.join(" · ")));
        let (run, lines) = ar::sheet_lines(&project.root.join("reviews").join(&chosen))?;
        let select = |name: String, options: &[&str], current: Option<String>| {
            let opts: String = options
                .iter()
                .map(|o| {
                    let sel = if current.as_deref() == Some(*o) { " selected" } else { "" };
                    format!("<option value=\"{o}\"{sel}>{}</option>", if o.is_empty() { "–" } else { o })
                })
                .collect();
            format!("<select name=\"{name}\">{opts}</select>")
        };
        let scores = ["", "1", "2", "3", "4", "5"];
        let rows: Vec<Vec<String>> = lines
            .iter()
            .enumerate()
            .map(|(i, l)| {
                let mut row = vec![
                    format!("<code>{}</code>", esc(&l.answer_id)),
                    esc(&hone_train::reports::clip(&l.prompt, 300)),
                    esc(&hone_train::reports::clip(l.reference.as_deref().unwrap_or("–"), 300)),
                    esc(&hone_train::reports::clip(&l.answer, 600)),
                ];
                for (k, v) in ar::RUBRIC.iter().zip([l.tone, l.accuracy, l.safety, l.usefulness]) {
                    row.push(select(format!("{k}-{i}"), &scores, v.map(|v| v.to_string())));
                }
                let mark = l.mark.map(|m| match m {
                    ar::Mark::Strong => "strong".to_string(),
                    ar::Mark::Weak => "weak".to_string(),
                });
                row.push(select(format!("mark-{i}"), &["", "strong", "weak"], mark));
                row.push(format!(
                    "<input name=\"note-{i}\" value=\"{}\" size=\"10\">",
                    esc(&l.note)
                ));
                row
            })
            .collect();
        body.push_str(&format!(
            "<p class=\"muted\">Run <code>{}</code>, {} answer(s). Rate what you read (1 poor … 5 excellent) and mark the strong and weak answers to a prompt: strong × weak pairs become preference data for <code>method = \"dpo\"</code>. Only the rows you fill in are recorded, under your token's name, as <code>hone review import</code> records a sheet.</p><form id=\"answers\" method=\"post\" action=\"/ui/answers\"><input type=\"hidden\" name=\"csrf\" value=\"{}\"><input type=\"hidden\" name=\"sheet\" value=\"{}\">{}<button id=\"record-answers\">Record reviews</button></form>",
            esc(hone_core::hash::short(&run)),
            lines.len(),
            esc(&csrf),
            esc(&chosen),
            table(
                &["answer", "prompt (masked)", "reference", "answer (masked)", "tone", "accuracy", "safety", "usefulness", "mark", "note"],
                &rows
            )
        ));
        let p = match ar::pairs(store) {
            Ok(p) => p,
            // Nothing recorded yet is not an error on this page.
            Err(Error::Usage(_)) => {
                body.push_str("<h2>Recorded so far</h2><p class=\"muted\">No answer review recorded yet.</p>");
                return Ok(body);
            }
            Err(e) => return Err(e),
        };
        let agreement: Vec<Vec<String>> = p
            .agreement
            .iter()
            .map(|a| {
                vec![
                    esc(&format!("{} · {}", a.reviewers.0, a.reviewers.1)),
                    esc(&a.on),
                    a.n.to_string(),
                    a.kappa.map_or("–".into(), |k| format!("{k:.4}")),
                ]
            })
            .collect();
        body.push_str(&format!(
            "<h2>Recorded so far</h2><p>{} reviewer(s) ({}), {} reviewed answer(s), {} preference pair(s) (strong × weak on one prompt), {} answer(s) with conflicting marks.</p>{}",
            p.reviewers.len(),
            esc(&p.reviewers.join(", ")),
            p.answers,
            p.pairs.len(),
            p.conflicting,
            if agreement.is_empty() {
                "<p class=\"muted\">Agreement (Cohen's κ) shows once two reviewers rated the same answers.</p>".to_string()
            } else {
                table(&["reviewers", "on", "answers", "Cohen's κ"], &agreement)
            }
        ));
        Ok(body)
    })
    .await
}

/// Record the filled rows of an answer-review form.
async fn record_answers(
    State(ui): State<Arc<Ui>>,
    h: HeaderMap,
    form: std::result::Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Response {
    let (caller, csrf) = match who(&ui, &h, Role::Review) {
        Ok(w) => w,
        Err(r) => return r,
    };
    let Ok(Form(fields)) = form else {
        let e = Error::Usage("the answer-review form could not be read".into());
        return error_page(&e, (&caller, &csrf));
    };
    let fields: HashMap<String, String> = fields.into_iter().collect();
    if !csrf_ok(fields.get("csrf").map_or("", String::as_str), &csrf) {
        return csrf_refused();
    }
    let sheet = fields.get("sheet").cloned().unwrap_or_default();
    if !hone_train::answer_review::is_sheet_name(&sheet) {
        let e = Error::Usage(format!("`{sheet}` is not a review sheet's file name"));
        return error_page(&e, (&caller, &csrf));
    }
    let root = ui.root.clone();
    let reviewer = caller.name.clone();
    let target = sheet.clone();
    let done = tokio::task::spawn_blocking(move || {
        use hone_train::answer_review as ar;
        let project = Project::discover(&root)?;
        let mut store = Store::open_existing(&project.root)?;
        let (run, lines) = ar::sheet_lines(&project.root.join("reviews").join(&target))?;
        let bad = |m: String| Error::Usage(format!("{target}: {m}"));
        let mut filled = Vec::new();
        let total = lines.len();
        for (i, mut l) in lines.into_iter().enumerate() {
            let get = |k: &str| {
                fields
                    .get(&format!("{k}-{i}"))
                    .map(|v| v.trim())
                    .filter(|v| !v.is_empty())
            };
            let mut ratings = [None; 4];
            for (slot, k) in ratings.iter_mut().zip(ar::RUBRIC) {
                *slot = match get(k) {
                    None => None,
                    Some(v) => match v.parse::<u8>() {
                        Ok(n) if (1..=5).contains(&n) => Some(n),
                        _ => {
                            return Err(bad(format!(
                                "`{k}` of {} is {v:?}, not 1 to 5",
                                l.answer_id
                            )));
                        }
                    },
                };
            }
            [l.tone, l.accuracy, l.safety, l.usefulness] = ratings;
            l.mark = match get("mark") {
                None => None,
                Some("strong") => Some(ar::Mark::Strong),
                Some("weak") => Some(ar::Mark::Weak),
                Some(v) => {
                    return Err(bad(format!(
                        "mark of {} is {v:?}, not strong or weak",
                        l.answer_id
                    )));
                }
            };
            l.note = get("note").unwrap_or("").to_string();
            if l.reviewed() {
                filled.push(l);
            }
        }
        if filled.is_empty() {
            return Err(bad(
                "nothing was filled in: rate or mark at least one answer".into(),
            ));
        }
        let untouched = total - filled.len();
        let done = ar::record(
            &mut store,
            &format!("dashboard form on {target}"),
            &run,
            filled,
            untouched,
            (
                &reviewer,
                &chrono::Utc::now().to_rfc3339(),
                "hone serve dashboard: answer review",
            ),
        )?;
        Ok::<_, Error>(done.reviewed)
    })
    .await;
    match done {
        Ok(Ok(n)) => redirect(&format!(
            "/ui/answers?sheet={}&recorded={n}",
            url_escape(&sheet)
        )),
        Ok(Err(e)) => error_page(&e, (&caller, &csrf)),
        Err(e) => internal_page(e),
    }
}

/// Percent-encode everything but unreserved characters.
fn url_escape(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            b => format!("%{b:02X}"),
        })
        .collect()
}

async fn drift(State(ui): State<Arc<Ui>>, h: HeaderMap) -> Response {
    let w = match who(&ui, &h, Role::Review) {
        Ok(w) => w,
        Err(r) => return r,
    };
    let served = ui.served.clone();
    blocking_page(&ui, w, "Drift".into(), move |project, store| {
        let run: Option<Run> = served
            .map(|id| hone_train::record::resolve(store, &id))
            .transpose()?;
        let t = project.config.monitor;
        let report = match hone_train::drift::check(project, store, run.as_ref(), t) {
            Ok(r) => r,
            Err(Error::NotFound { hint, .. }) => {
                return Ok(format!(
                    "<h1>Drift</h1><p class=\"muted\">No served answers yet: {}.</p>",
                    esc(&hint)
                ));
            }
            Err(e) => return Err(e),
        };
        let rows: Vec<Vec<String>> = report
            .features
            .iter()
            .map(|f| {
                vec![
                    esc(&f.feature),
                    num(f.shift.psi),
                    num(f.shift.psi_noise),
                    num(f.shift.p_value),
                    num(f.shift.statistic),
                    f.shift.n_reference.to_string(),
                    f.shift.n_live.to_string(),
                    if f.alarm { "<b>ALARM</b>".into() } else { "quiet".into() },
                    esc(&f.note),
                ]
            })
            .collect();
        let bars: Vec<(String, f64)> = report
            .features
            .iter()
            .map(|f| {
                let beyond = f.shift.psi - f.shift.psi_noise;
                (format!("{} (PSI − noise)", f.feature), if beyond.is_finite() { beyond.max(0.0) } else { 0.0 })
            })
            .chain(std::iter::once(("alarm floor".to_string(), t.psi_floor)))
            .collect();
        Ok(format!(
            "<h1>Drift: run {} ({})</h1><p class=\"muted\">The latest {} served answers ({} to {}) against the run's test-set answers. A feature alarms only with at least {} live answers, p &lt; {}/{} and a PSI at least {} above its noise level (the PSI samples of these sizes show with no shift).</p><p class=\"{}\">{} alarm(s).</p>{}{}",
            esc(hone_core::hash::short(&report.run)),
            esc(&report.model),
            report.n_live,
            esc(report.first_at.as_deref().unwrap_or("–")),
            esc(report.last_at.as_deref().unwrap_or("–")),
            t.min_samples,
            t.alpha,
            report.features.len().max(1),
            t.psi_floor,
            if report.alarms > 0 { "err" } else { "note" },
            report.alarms,
            hone_report::svg::hbars(&bars, "#1d4ed8"),
            table(
                &["feature", "PSI", "PSI noise", "p-value", "statistic", "n reference", "n live", "verdict", "note"],
                &rows
            )
        ))
    })
    .await
}

/// A measurement with 4 decimals, or a dash where there is none (no live values).
fn num(x: f64) -> String {
    if x.is_finite() {
        format!("{x:.4}")
    } else {
        "–".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_tokens_compare_whole() {
        assert!(csrf_ok("abcd", "abcd"));
        assert!(!csrf_ok("abce", "abcd"));
        assert!(!csrf_ok("abc", "abcd"));
        assert!(!csrf_ok("", ""));
    }

    #[test]
    fn session_cookie_is_found_among_others() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; hone_session=xyz; b=2"),
        );
        assert_eq!(session_id(&h).as_deref(), Some("xyz"));
        assert_eq!(session_id(&HeaderMap::new()), None);
    }

    #[test]
    fn urls_escape_reserved_bytes() {
        assert_eq!(url_escape("a b/c?d"), "a%20b%2Fc%3Fd");
    }
}
