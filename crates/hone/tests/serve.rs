//! `hone serve` from the outside, as a client and as an attacker: the released run only, answers equal
//! to `hone predict`, tokens and roles before the body is read, malformed, oversized and slow
//! requests, rate limits, feedback durable before it is acknowledged (`kill -9` included), graceful
//! shutdown that flushes the prediction log.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{hone, set_policy, stderr, stdout};
use hone_train::demo::write_project;
use serde_json::{Value, json};

/// A demo project, trained, without success gates (so that approval has nothing to refuse).
fn trained_project(d: &Path) {
    write_project(d, 11, 300).unwrap();
    set_policy(d, "contamination = \"drop_train\"");
    let toml = std::fs::read_to_string(d.join("hone.toml")).unwrap();
    let start = toml.find("[success]").unwrap();
    let end = start + toml[start..].find("[policy]").unwrap();
    // The server recomputes its drift statistics every second here (`/metrics` is checked below).
    std::fs::write(
        d.join("hone.toml"),
        format!(
            "{}{}\n[monitor]\nwindow = 150\nrefresh_seconds = 1\n",
            &toml[..start],
            &toml[end..]
        ),
    )
    .unwrap();
    let o = hone(d, &["--json", "run"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}

fn token(d: &Path, name: &str, role: &str) -> String {
    let o = hone(
        d,
        &["--json", "token", "create", "--name", name, "--role", role],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    v["token"].as_str().unwrap().to_string()
}

struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(d: &Path, extra: &[&str]) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_hone"))
        .arg("-C")
        .arg(d)
        .args(["--json", "serve", "--addr", "127.0.0.1:0"])
        .args(extra)
        .env("HONE_USER", "test-user")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let v: Value = serde_json::from_str(&line).unwrap_or_else(|_| {
        let _ = child.kill();
        let mut err = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        panic!("no listening line: {line:?} {err}")
    });
    Server {
        child,
        addr: v["listening"].as_str().unwrap().parse().unwrap(),
    }
}

/// One HTTP/1.1 request on its own connection: (status, body as JSON or as a string).
fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &[u8],
) -> (u16, Value) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    let _ = s.write_all(body);
    // Read the head, then exactly Content-Length bytes where the server sends one: ChromeDriver
    // keeps the connection open despite `Connection: close`, so reading to the end would wait
    // for the read timeout.
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let n = s.read(&mut buf).unwrap_or(0);
        raw.extend_from_slice(&buf[..n]);
        let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
            if n == 0 {
                break;
            }
            continue;
        };
        let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
        let length = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse::<usize>().ok());
        match length {
            Some(len) if raw.len() >= end + 4 + len => break,
            _ if n == 0 => break,
            _ => {}
        }
    }
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status: u16 = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (
        status,
        serde_json::from_str(body).unwrap_or(Value::String(body.to_string())),
    )
}

fn post(addr: SocketAddr, path: &str, token: Option<&str>, body: &Value) -> (u16, Value) {
    request(addr, "POST", path, token, body.to_string().as_bytes())
}

#[test]
fn serves_the_released_run_behind_tokens_and_keeps_every_acknowledged_feedback() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    trained_project(d);

    // Nothing approved: refused, unless named for development.
    let o = hone(d, &["serve", "--addr", "127.0.0.1:0"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("hone approve"), "{}", stderr(&o));
    let o = hone(d, &["--json", "runs"]);
    let runs: Vec<Value> = serde_json::from_slice(&o.stdout).unwrap();
    let chosen = runs.iter().find(|r| r["chosen"] == true).unwrap();
    let seq = chosen["seq"].to_string();
    let o = hone(d, &["approve", &seq, "--reason", "test release"]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));

    let app = token(d, "app", "predict");
    let ops = token(d, "ops", "feedback");
    let gone = token(d, "gone", "admin");
    let other = token(d, "other", "feedback");
    let reviewer = token(d, "reviewer", "review");
    let o = hone(d, &["token", "revoke", "gone"]);
    assert_eq!(o.status.code(), Some(0));

    let srv = serve(d, &[]);
    let a = srv.addr;

    // Health needs no token and names the run; everything else does.
    let (st, h) = request(a, "GET", "/healthz", None, b"");
    assert_eq!(st, 200);
    assert_eq!(h["run"], chosen["id"]);
    assert_eq!(h["approved"], true);
    let texts = json!({"texts": ["where is my card? it has not arrived", "I want my money back for order 1234"]});
    let mut counted = [0usize; 5];
    let mut expect = |got: u16, want: u16, i: usize| {
        assert_eq!(got, want);
        counted[i] += 1;
    };
    expect(post(a, "/v1/predict", None, &texts).0, 401, 0);
    expect(post(a, "/v1/predict", Some("hone_guess"), &texts).0, 401, 0);
    let (st, e) = post(a, "/v1/predict", Some(&gone), &texts);
    expect(st, 401, 1);
    assert!(e["error"]["message"].as_str().unwrap().contains("revoked"));
    let (st, e) = post(
        a,
        "/v1/feedback",
        Some(&app),
        &json!({"prediction_id": "x", "rating": 1}),
    );
    expect(st, 403, 2);
    assert_eq!(e["error"]["type"], "permission_error");
    // Malformed and oversized bodies: a status and a message, the server unharmed.
    let (st, e) = request(a, "POST", "/v1/predict", Some(&app), b"{\"texts\": [");
    expect(st, 400, 3);
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not valid JSON"),
        "{e}"
    );
    let (st, _) = post(a, "/v1/predict", Some(&app), &json!({"text": "x"}));
    expect(st, 400, 3);
    let big = json!({"texts": ["x".repeat(2 << 20)]});
    expect(post(a, "/v1/predict", Some(&app), &big).0, 413, 4);
    // Path traversal and unknown routes: 404 with a token, 401 without (no route is a file server).
    for path in [
        "/../../etc/passwd",
        "/%2e%2e/hone.toml",
        "/v1/../hone.toml",
        "/.hone/hone.db",
    ] {
        assert_eq!(request(a, "GET", path, Some(&app), b"").0, 404, "{path}");
        assert_eq!(request(a, "GET", path, None, b"").0, 401, "{path}");
    }

    // A wrong method is a JSON 405; headers past 64 KiB are refused, not buffered.
    let (st, e) = request(a, "GET", "/v1/predict", Some(&app), b"");
    assert_eq!(st, 405);
    assert!(e["error"]["message"].is_string());
    let mut s = TcpStream::connect(a).unwrap();
    let big = format!(
        "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
        "b".repeat(100_000)
    );
    let _ = s.write_all(big.as_bytes());
    let mut raw = String::new();
    let _ = s.read_to_string(&mut raw);
    assert!(raw.starts_with("HTTP/1.1 431"), "{raw:?}");

    // A slow client that never finishes its headers holds no one else up.
    let mut slow = TcpStream::connect(a).unwrap();
    slow.write_all(b"POST /v1/predict HTTP/1.1\r\nHost: x\r\n")
        .unwrap();

    // Answers are `hone predict`'s, with prediction ids (asked with the feedback token, which may
    // predict too, so that it may correct them).
    let (st, p) = post(a, "/v1/predict", Some(&ops), &texts);
    assert_eq!(st, 200, "{p}");
    let preds = p["predictions"].as_array().unwrap();
    assert_eq!(preds.len(), 2);
    let input = d.join("in.jsonl");
    std::fs::write(
        &input,
        "{\"text\": \"where is my card? it has not arrived\"}\n{\"text\": \"I want my money back for order 1234\"}\n",
    )
    .unwrap();
    let o = hone(d, &["predict", input.to_str().unwrap(), "--run", &seq]);
    let cli: Vec<Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for (s, c) in preds.iter().zip(&cli) {
        assert_eq!(s["label"], c["label"]);
        assert_eq!(s["probability"], c["probability"]);
        assert_eq!(s["top_k"], c["top_k"]);
    }
    let pid = preds[0]["prediction_id"].as_str().unwrap().to_string();

    // Feedback: unknown ids are 404, labels outside the model's are 400, several entries are kept.
    let (st, _) = post(
        a,
        "/v1/feedback",
        Some(&ops),
        &json!({"prediction_id": "pred_nope_1", "rating": 1}),
    );
    assert_eq!(st, 404);
    let (st, _) = post(
        a,
        "/v1/feedback",
        Some(&ops),
        &json!({"prediction_id": pid, "label": "no_such_label"}),
    );
    assert_eq!(st, 400);
    let label = preds[1]["label"].as_str().unwrap();
    // Another feedback token cannot correct answers it did not ask for; a review token can.
    let (st, _) = post(
        a,
        "/v1/feedback",
        Some(&other),
        &json!({"prediction_id": pid, "rating": 1}),
    );
    assert_eq!(st, 404);
    let (st, _) = post(
        a,
        "/v1/feedback",
        Some(&reviewer),
        &json!({"prediction_id": pid, "rating": 1}),
    );
    assert_eq!(st, 201);
    for body in [
        json!({"prediction_id": pid, "rating": 0, "comment": "wrong, mail me at jane.doe@example.com"}),
        json!({"prediction_id": pid, "label": label}),
    ] {
        let (st, f) = post(a, "/v1/feedback", Some(&ops), &body);
        assert_eq!(st, 201, "{f}");
    }
    drop(slow);

    // Metrics count what happened.
    let (st, m) = request(a, "GET", "/metrics", Some(&app), b"");
    assert_eq!(st, 200);
    let m = m.as_str().unwrap().to_string();
    assert!(
        m.contains("hone_requests_total{route=\"/v1/predict\",status=\"401\"} 3"),
        "{m}"
    );
    assert!(m.contains("hone_request_seconds_bucket{route=\"/v1/predict\",le=\"+Inf\"}"));
    // The log queue is shown (and drained: feedback above committed every answer before it).
    assert!(m.contains("hone_prediction_log_queue_bytes 0\n"), "{m}");

    // Feedback under load, then kill -9: every acknowledged entry is in the store.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (stop2, ops2, pid2) = (stop.clone(), ops.clone(), pid.clone());
    let sender = std::thread::spawn(move || {
        let (mut sent, mut acked) = (0usize, 0usize);
        while !stop2.load(std::sync::atomic::Ordering::SeqCst) {
            sent += 1;
            let body = json!({"prediction_id": pid2, "rating": sent}).to_string();
            let ok = std::panic::catch_unwind(|| {
                request(a, "POST", "/v1/feedback", Some(&ops2), body.as_bytes()).0
            });
            match ok {
                Ok(201) => acked += 1,
                _ => break,
            }
        }
        (sent, acked)
    });
    std::thread::sleep(Duration::from_millis(1500));
    let mut srv = srv;
    signal(&srv.child, "KILL");
    let _ = srv.child.wait();
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let (sent, acked) = sender.join().unwrap();
    assert!(
        acked >= 5,
        "only {acked} feedback acknowledged before the kill"
    );
    let store = hone_store::Store::open_existing(d).unwrap();
    let stored = store.feedback().unwrap();
    let rated = stored
        .iter()
        .filter(|f| f.rating.is_some_and(|r| r >= 1.0))
        .count();
    eprintln!("kill -9 during feedback: sent {sent}, acknowledged {acked}, stored {rated}");
    assert!(rated >= acked, "acknowledged {acked} but stored {rated}");
    // The comment was masked; the feedback is in the audit chain under the token's name.
    assert!(
        stored
            .iter()
            .all(|f| !f.comment.as_deref().unwrap_or("").contains("jane.doe"))
    );
    assert!(
        store
            .audit_entries()
            .unwrap()
            .iter()
            .any(|e| e.who == "ops")
    );
    assert!(store.verify_audit().unwrap().ok());
    // Without consent (the demo requires it), inputs are not kept.
    let logged = store.prediction(&pid).unwrap().unwrap();
    assert_eq!(logged.input, None);
    assert_eq!(logged.token, "ops");
    drop(store);

    // After restart: rate limit, graceful shutdown flushes the prediction log.
    let srv = serve(d, &["--rate-limit", "2"]);
    let statuses: Vec<u16> = (0..8)
        .map(|_| {
            post(
                srv.addr,
                "/v1/predict",
                Some(&app),
                &json!({"texts": ["hello"], "consent": true}),
            )
            .0
        })
        .collect();
    assert!(statuses.contains(&429), "{statuses:?}");
    let answered = statuses.iter().filter(|s| **s == 200).count();
    let mut srv = srv;
    signal(&srv.child, "TERM");
    let status = srv.child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    let store = hone_store::Store::open_existing(d).unwrap();
    let kept = store
        .predictions_since("2000-01-01")
        .unwrap()
        .into_iter()
        .filter(|p| p.consent && p.input.is_some())
        .count();
    assert_eq!(kept, answered);
    drop(store);

    // Feedback becomes data: a new correction joins the next version as the `feedback` source; one
    // that contradicts a record's label is withheld and queued for review.
    let version = store_version(d);
    let records = hone_train::curate::load_records(&open(d), &version).unwrap();
    let known = records
        .iter()
        .find(|r| r.source == "helpdesk" && r.label.is_some())
        .unwrap();
    let other = records
        .iter()
        .filter_map(|r| r.label.clone())
        .find(|l| Some(l) != known.label.as_ref())
        .unwrap();
    let srv = serve(d, &[]);
    let (st, p) = post(
        srv.addr,
        "/v1/predict",
        Some(&ops),
        &json!({"texts": [known.text, "my parcel says delivered but nothing came, what now"], "consent": true}),
    );
    assert_eq!(st, 200, "{p}");
    let ids: Vec<String> = p["predictions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["prediction_id"].as_str().unwrap().to_string())
        .collect();
    for (id, label) in [(&ids[0], other.as_str()), (&ids[1], label)] {
        let (st, f) = post(
            srv.addr,
            "/v1/feedback",
            Some(&ops),
            &json!({"prediction_id": id, "label": label, "consent": true}),
        );
        assert_eq!(st, 201, "{f}");
    }
    // Drift: test-set texts replayed stay quiet; one out-of-scope text repeated alarms.
    let test_texts: Vec<&str> = records
        .iter()
        .filter(|r| r.source == "official-test")
        .map(|r| r.text.as_str())
        .collect();
    assert!(!test_texts.is_empty());
    let replay: Vec<&str> = test_texts.iter().cycle().take(150).copied().collect();
    let (st, _) = post(
        srv.addr,
        "/v1/predict",
        Some(&app),
        &json!({"texts": replay, "consent": true}),
    );
    assert_eq!(st, 200);
    let o = hone(d, &["--json", "drift", "--window", "150"]);
    let quiet: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(o.status.code(), Some(0), "{quiet}");
    assert_eq!(quiet["n_live"], 150);
    let odd = vec!["what is the weather on mars tomorrow"; 150];
    let (st, _) = post(
        srv.addr,
        "/v1/predict",
        Some(&app),
        &json!({"texts": odd, "consent": true}),
    );
    assert_eq!(st, 200);
    let o = hone(d, &["--json", "drift", "--window", "150"]);
    let loud: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(o.status.code(), Some(3), "{loud}");
    let label_drift = loud["features"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["feature"] == "predicted_label")
        .unwrap();
    assert_eq!(label_drift["alarm"], true, "{loud}");
    // `/metrics` says the same within a refresh (`[monitor] refresh_seconds = 1`).
    let alarm_line = "hone_drift_alarm{feature=\"predicted_label\"} 1";
    let seen = (0..50).any(|_| {
        let (_, m) = request(srv.addr, "GET", "/metrics", Some(&app), b"");
        m.as_str()
            .is_some_and(|m| m.contains(alarm_line) && m.contains("hone_drift_window_answers 150"))
            || {
                std::thread::sleep(Duration::from_millis(200));
                false
            }
    });
    assert!(seen, "no drift alarm on /metrics");
    let mut srv = srv;
    signal(&srv.child, "TERM");
    assert!(srv.child.wait().unwrap().success());
    let o = hone(d, &["--json", "data", "clean"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let store = open(d);
    let v = store_version(d);
    let info = hone_train::curate::version_info(&v).unwrap();
    let fb = info
        .sources
        .iter()
        .find(|s| s.name == "feedback")
        .expect("a feedback source");
    assert_eq!(fb.role, hone_core::config::SourceRole::Feedback);
    assert_eq!(fb.n_rows, 2);
    assert!(fb.notes.as_deref().unwrap().contains("ops"));
    let new = hone_train::curate::load_records(&store, &v).unwrap();
    let joined = format!("feedback-{}", ids[1]);
    let r = new
        .iter()
        .find(|r| r.id == joined)
        .expect("the correction joined the data");
    assert_eq!(r.label.as_deref(), Some(label));
    let held = format!("feedback-{}", ids[0]);
    assert!(new.iter().all(|r| r.id != held));
    let lineage = store.lineage_of(&v.id, &held).unwrap();
    assert_eq!(lineage[0].rule, "feedback_conflict");
    assert_eq!(lineage[0].related_id.as_deref(), Some(known.id.as_str()));
    let ctx = hone_train::review::ReviewContext::load(&store).unwrap();
    let (_, queue) = hone_train::review::queue(&store, &ctx).unwrap();
    let s = queue
        .iter()
        .find(|s| s.kind == "feedback_conflict")
        .expect("queued for review");
    assert_eq!(s.id, known.id);
    assert_eq!(s.suggested_label.as_deref(), Some(other.as_str()));
    eprintln!(
        "faults counted: no/unknown token {}, revoked {}, wrong role {}, malformed {}, oversized {}",
        counted[0], counted[1], counted[2], counted[3], counted[4]
    );
}

fn open(d: &Path) -> hone_store::Store {
    hone_store::Store::open_existing(d).unwrap()
}

fn store_version(d: &Path) -> hone_store::VersionRow {
    open(d).resolve_version(None).unwrap()
}

fn signal(child: &Child, signal: &str) {
    let st = Command::new("kill")
        .args([&format!("-{signal}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
}

/// A generate project on a tiny random decoder, as it is (method `none`): its greedy answers are
/// long runs of whitespace, enough to stream in many pieces.
fn generate_project(d: &Path) {
    let model = d.join("models/tiny.gguf");
    std::fs::create_dir_all(model.parent().unwrap()).unwrap();
    hone_lm::testing::tiny_gguf(&model, 7).unwrap();
    let mut lines = Vec::new();
    for (i, q) in ["refund", "late parcel", "change address", "close account"]
        .iter()
        .cycle()
        .take(40)
        .enumerate()
    {
        lines.push(
            json!({"id": format!("q{i}"), "question": format!("case {i}: {q} please"), "answer": format!("We will look at your {q} now. Thank you for writing to us about it, and please reply here if anything else about your {q} comes up.")})
                .to_string(),
        );
    }
    std::fs::create_dir_all(d.join("data")).unwrap();
    std::fs::write(d.join("data/replies.jsonl"), lines.join("\n") + "\n").unwrap();
    std::fs::write(
        d.join("hone.toml"),
        "[task]\nname = \"replies\"\nkind = \"generate\"\n\n[policy]\ncontamination = \"drop_train\"\n\n[[source]]\nname = \"replies\"\npath = \"data/replies.jsonl\"\nfields = { prompt = \"question\", target = \"answer\" }\n\n[split]\ntest = 0.2\ndev = 0.15\n\n[[model]]\nname = \"tiny\"\nkind = \"lm\"\npath = \"models/tiny.gguf\"\nmethod = \"none\"\n\n[model.params]\nmax_new_tokens = 120\n",
    )
    .unwrap();
    let o = hone(d, &["--json", "run"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}

/// The text of a server-sent-events body: every `data:` payload until `[DONE]`.
fn sse_text(body: &str, chat: bool) -> (String, Vec<Value>) {
    let mut text = String::new();
    let mut chunks = Vec::new();
    let mut done = false;
    for line in body.lines() {
        let Some(data) = line.strip_prefix("data: ") else {
            continue;
        };
        if data == "[DONE]" {
            done = true;
            continue;
        }
        let v: Value = serde_json::from_str(data).unwrap();
        let piece = if chat {
            v["choices"][0]["delta"]["content"].as_str()
        } else {
            v["choices"][0]["text"].as_str()
        };
        text.push_str(piece.unwrap_or(""));
        chunks.push(v);
    }
    assert!(done, "no [DONE] in {body}");
    (text, chunks)
}

#[test]
fn a_generate_run_answers_openai_clients_whole_and_streamed_as_hone_predict_does() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    generate_project(d);
    let app = token(d, "app", "predict");
    let srv = serve(d, &["--run", "1", "--allow-unapproved"]);
    let a = srv.addr;
    let (_, h) = request(a, "GET", "/healthz", None, b"");
    assert_eq!(h["approved"], false);
    assert!(h["warning"].as_str().unwrap().contains("not the approved"));

    let messages = json!([{"role": "user", "content": "case 3: refund please, write to me at jane.doe@example.com"}]);
    let (st, whole) = post(
        a,
        "/v1/chat/completions",
        Some(&app),
        &json!({"model": "tiny", "messages": messages, "temperature": 0.0, "seed": 5}),
    );
    assert_eq!(st, 200, "{whole}");
    assert_eq!(whole["object"], "chat.completion");
    let answer = whole["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(whole["usage"]["completion_tokens"].as_u64().unwrap() > 0);
    assert!(
        whole["prediction_id"]
            .as_str()
            .unwrap()
            .starts_with("pred_")
    );

    // Streamed: the deltas add up to the same answer.
    let (st, body) = post(
        a,
        "/v1/chat/completions",
        Some(&app),
        &json!({"messages": messages, "stream": true, "temperature": 0.0, "seed": 5}),
    );
    assert_eq!(st, 200);
    let (streamed, chunks) = sse_text(body.as_str().unwrap(), true);
    assert_eq!(streamed, answer);
    eprintln!(
        "answer of {} chars streamed in {} chunks: {answer:?}",
        answer.chars().count(),
        chunks.len()
    );
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    assert!(chunks.last().unwrap()["choices"][0]["finish_reason"].is_string());
    assert!(chunks.len() > 3, "the answer came in one piece: {chunks:?}");

    // `hone predict` answers the same conversation byte for byte.
    let input = d.join("in.jsonl");
    std::fs::write(&input, format!("{}\n", json!({"messages": messages}))).unwrap();
    let o = hone(
        d,
        &[
            "predict",
            input.to_str().unwrap(),
            "--run",
            "1",
            "--temperature",
            "0",
            "--seed",
            "5",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let cli: Value = serde_json::from_str(stdout(&o).lines().next().unwrap()).unwrap();
    assert_eq!(cli["completion"].as_str().unwrap(), answer);

    // /v1/completions renders a prompt as the user's message, as `hone predict` renders `prompt`.
    let (st, c) = post(
        a,
        "/v1/completions",
        Some(&app),
        &json!({"prompt": messages[0]["content"], "max_tokens": 120, "temperature": 0.0, "seed": 5}),
    );
    assert_eq!(st, 200, "{c}");
    assert_eq!(c["choices"][0]["text"].as_str().unwrap(), answer);
    let (st, body) = post(
        a,
        "/v1/completions",
        Some(&app),
        &json!({"prompt": messages[0]["content"], "stream": true, "temperature": 0.0, "seed": 5}),
    );
    assert_eq!(st, 200);
    assert_eq!(sse_text(body.as_str().unwrap(), false).0, answer);

    // Wrong shapes are 400s with a message; a classifier route says which to use.
    for (path, body) in [
        ("/v1/chat/completions", json!({"messages": []})),
        (
            "/v1/chat/completions",
            json!({"messages": [{"role": "tool", "content": "x"}]}),
        ),
        (
            "/v1/chat/completions",
            json!({"messages": messages, "n": 2}),
        ),
        (
            "/v1/chat/completions",
            json!({"messages": messages, "temperature": -1}),
        ),
        ("/v1/completions", json!({"prompt": 3})),
        // Over the model's context: refused before any stream starts.
        (
            "/v1/chat/completions",
            json!({"messages": messages, "max_tokens": 4000, "stream": true}),
        ),
        ("/v1/predict", json!({"texts": ["x"]})),
    ] {
        let (st, e) = post(a, path, Some(&app), &body);
        assert_eq!(st, 400, "{path} {body}: {e}");
        assert!(e["error"]["message"].is_string());
    }
    let (st, _) = post(
        a,
        "/v1/chat/completions",
        None,
        &json!({"messages": messages}),
    );
    assert_eq!(st, 401);

    // The answers were logged, masked, without the input (no consent under the default policy is
    // needed: require_consent is off here, so inputs are kept, masked).
    let mut srv = srv;
    signal(&srv.child, "TERM");
    assert!(srv.child.wait().unwrap().success());
    let logged = open(d).predictions_since("2000").unwrap();
    assert_eq!(logged.len(), 4);
    assert!(logged.iter().all(|p| p.output == answer));
    assert!(
        logged
            .iter()
            .all(|p| !p.input.as_deref().unwrap().contains("jane.doe"))
    );
    // A generate run's drift signals: answer length, refusals, prompt length, and the pass rate of
    // each grader that can judge an answer alone (`short`; `close` needs the reference, which live
    // traffic lacks); 4 answers are too few for a verdict.
    std::fs::create_dir_all(d.join("graders")).unwrap();
    std::fs::write(
        d.join("graders/short.toml"),
        "type = \"length\"\nmax_words = 80\n",
    )
    .unwrap();
    std::fs::write(
        d.join("graders/close.toml"),
        "type = \"text_similarity\"\nreference = \"{{ item.reference }}\"\nevaluation_metric = \"fuzzy_match\"\npass_threshold = 0.9\n",
    )
    .unwrap();
    let o = hone(d, &["--json", "drift"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let report: Value = serde_json::from_slice(&o.stdout).unwrap();
    let features: Vec<&str> = report["features"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["feature"].as_str().unwrap())
        .collect();
    assert_eq!(
        features,
        [
            "answer_words",
            "refusal",
            "text_length",
            "grader_short_pass"
        ]
    );
    assert_eq!(report["n_live"], 4);
    assert!(report["features"][0]["n_reference"].as_u64().unwrap() > 0);
}

/// A headless Chromium driven over WebDriver (Debian's `chromium` and `chromium-driver`).
struct Browser {
    driver: Child,
    addr: SocketAddr,
    session: String,
    /// Screenshots go here when `HONE_UI_SHOTS` names a folder (`bench/ui/run.sh` sets it).
    shots: Option<PathBuf>,
    _profile: tempfile::TempDir,
}

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

impl Browser {
    /// `None` (and a line saying why) where the machine has no Chromium or ChromeDriver.
    fn start() -> Option<Browser> {
        let (driver_bin, chromium) = ("/usr/bin/chromedriver", "/usr/bin/chromium");
        if !Path::new(driver_bin).exists() || !Path::new(chromium).exists() {
            assert!(
                std::env::var_os("HONE_REQUIRE_BROWSER").is_none(),
                "HONE_REQUIRE_BROWSER is set but {driver_bin} or {chromium} is missing"
            );
            eprintln!(
                "SKIPPED: no {driver_bin} or {chromium} (`apt-get install chromium chromium-driver`; .ci/run installs them)"
            );
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let driver = Command::new(driver_bin)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let ready = (0..100).any(|_| {
            std::thread::sleep(Duration::from_millis(100));
            TcpStream::connect(addr).is_ok()
                && request(addr, "GET", "/status", None, b"").1["value"]["ready"] == true
        });
        assert!(ready, "chromedriver did not start");
        let profile = tempfile::tempdir().unwrap();
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1280,1000",
            &format!("--user-data-dir={}", profile.path().display()),
        ];
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": chromium, "args": args},
        }}});
        let (st, v) = post(addr, "/session", None, &caps);
        assert_eq!(st, 200, "new session: {v}");
        let b = Browser {
            driver,
            addr,
            session: v["value"]["sessionId"].as_str().unwrap().to_string(),
            shots: std::env::var_os("HONE_UI_SHOTS").map(Into::into),
            _profile: profile,
        };
        if let Some(d) = &b.shots {
            std::fs::create_dir_all(d).unwrap();
        }
        Some(b)
    }

    fn call(&self, method: &str, path: &str, body: &Value) -> Value {
        let path = format!("/session/{}{path}", self.session);
        // ChromeDriver rejects a GET that carries a body, even `null`.
        let body = if body.is_null() {
            String::new()
        } else {
            body.to_string()
        };
        let (st, v) = request(self.addr, method, &path, None, body.as_bytes());
        assert_eq!(st, 200, "{method} {path}: {v}");
        v["value"].clone()
    }

    /// Opens `url` and waits until the new page has loaded: on a busy machine ChromeDriver's own
    /// wait can return while the document is still empty.
    fn go(&self, url: &str) {
        self.mark_page();
        self.call("POST", "/url", &json!({"url": url}));
        self.wait_new_page(url);
    }

    fn script(&self, js: &str) -> Value {
        self.call("POST", "/execute/sync", &json!({"script": js, "args": []}))
    }

    /// Marks the current document, so that `wait_new_page` can tell a new one from it.
    fn mark_page(&self) {
        self.script("window.__honeOld = true");
    }

    fn wait_new_page(&self, what: &str) {
        let loaded = (0..400).any(|_| {
            let v = self.script(
                "return window.__honeOld === undefined && document.readyState === 'complete' && document.body !== null && document.body.innerHTML.length > 0",
            );
            v == true || {
                std::thread::sleep(Duration::from_millis(50));
                false
            }
        });
        assert!(loaded, "{what} loaded no new page");
    }

    fn find(&self, css: &str) -> String {
        let v = self.call(
            "POST",
            "/element",
            &json!({"using": "css selector", "value": css}),
        );
        v[ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("no element {css}: {v}"))
            .to_string()
    }

    fn type_in(&self, css: &str, text: &str) {
        let e = self.find(css);
        self.call(
            "POST",
            &format!("/element/{e}/value"),
            &json!({"text": text}),
        );
    }

    fn click(&self, css: &str) {
        let e = self.find(css);
        self.call("POST", &format!("/element/{e}/click"), &json!({}));
    }

    /// Clicks something that loads a new page and waits until the new page has loaded: a
    /// WebDriver click does not wait for the navigation a form submission starts.
    fn follow(&self, css: &str) {
        self.mark_page();
        self.click(css);
        self.wait_new_page(&format!("clicking {css}"));
    }

    fn source(&self) -> String {
        self.call("GET", "/source", &Value::Null)
            .as_str()
            .unwrap()
            .to_string()
    }

    fn url(&self) -> String {
        self.call("GET", "/url", &Value::Null)
            .as_str()
            .unwrap()
            .to_string()
    }

    /// Every resource the page loaded (images, styles, scripts, fonts), by the browser's own count.
    fn resources(&self) -> Vec<String> {
        let v = self.call(
            "POST",
            "/execute/sync",
            &json!({"script": "return performance.getEntriesByType('resource').map(e => e.name)", "args": []}),
        );
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_str().unwrap().to_string())
            .collect()
    }

    fn shot(&self, name: &str) {
        let Some(dir) = &self.shots else { return };
        let b64 = self.call("GET", "/screenshot", &Value::Null);
        let png = base64_decode(b64.as_str().unwrap());
        assert!(png.starts_with(b"\x89PNG"));
        std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let path = format!("/session/{}", self.session);
        let _ = request(self.addr, "DELETE", &path, None, b"");
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

fn base64_decode(s: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => panic!("not base64: {c}"),
    };
    let digits: Vec<u8> = s
        .bytes()
        .filter(|c| *c != b'=' && !c.is_ascii_whitespace())
        .map(value)
        .collect();
    let mut out = Vec::with_capacity(digits.len() * 3 / 4);
    for chunk in digits.chunks(4) {
        let mut n = 0u32;
        for (i, d) in chunk.iter().enumerate() {
            n |= u32::from(*d) << (18 - 6 * i);
        }
        out.extend(&n.to_be_bytes()[1..chunk.len()]);
    }
    out
}

#[test]
fn the_dashboard_logs_in_by_token_shows_runs_and_records_a_relabel_in_a_real_browser() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    trained_project(d);
    let o = hone(d, &["data", "scan"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let alice = token(d, "alice", "review");
    let app = token(d, "app", "predict");
    let srv = serve(d, &["--allow-unapproved"]);
    let base = format!("http://{}", srv.addr);
    // Answers to watch on the drift page.
    let texts = json!({"texts": vec!["where is my card? it has not arrived"; 20]});
    assert_eq!(post(srv.addr, "/v1/predict", Some(&app), &texts).0, 200);

    // Without a browser: no session, no page; a form without the session's form token is refused.
    let (st, _) = request(srv.addr, "GET", "/ui/runs", None, b"");
    assert_eq!(st, 303);
    let (st, _) = request(srv.addr, "GET", "/ui/review", Some(&alice), b"");
    assert_eq!(st, 303, "a bearer header is not a dashboard session");

    let Some(b) = Browser::start() else { return };
    b.go(&format!("{base}/"));
    assert!(b.source().contains("id=\"token\""));
    b.shot("1-login");
    // A predict token logs in but sees nothing of the data.
    b.type_in("#token", &app);
    b.follow("#login");
    let page = b.source();
    assert!(
        page.contains("Not allowed") && page.contains("review"),
        "{page}"
    );
    assert!(!page.contains("/ui/runs/"), "{page}");
    b.shot("2-predict-token-refused");
    b.go(&format!("{base}/ui/review"));
    assert!(b.source().contains("Not allowed"));
    b.follow("#logout");
    assert!(b.source().contains("id=\"token\""));
    // A wrong token: the login page again, with the reason.
    b.type_in("#token", "hone_wrong");
    b.follow("#login");
    assert!(b.source().contains("unknown token"));

    // A review token: runs with their intervals, then one run's card.
    b.type_in("#token", &alice);
    b.follow("#login");
    assert!(b.url().ends_with("/ui/runs"), "{}", b.url());
    let page = b.source();
    assert!(
        page.contains("test accuracy [95% CI]") && page.contains("baseline"),
        "{page}"
    );
    b.shot("3-runs");
    let o = hone(d, &["--json", "runs"]);
    let runs: Vec<Value> = serde_json::from_slice(&o.stdout).unwrap();
    let chosen = runs.iter().find(|r| r["chosen"] == true).unwrap();
    let acc = chosen["record"]["test"]["accuracy"]["estimate"]
        .as_f64()
        .unwrap();
    assert!(
        page.contains(&format!("{acc:.4} [")),
        "the chosen run's accuracy {acc:.4}"
    );
    b.follow(&format!("a[href=\"/ui/runs/{}\"]", chosen["seq"]));
    let page = b.source();
    assert!(
        page.contains("Limits") && page.contains(&format!("{acc:.4}")),
        "{page}"
    );
    b.shot("4-run-card");
    b.go(&format!("{base}/ui/runs"));
    b.click("#b option:nth-child(2)");
    b.follow("#compare");
    assert!(b.source().contains("against"));
    b.shot("5-compare");
    b.go(&format!("{base}/ui/data"));
    assert!(b.source().contains("Data report"));
    b.shot("6-data");
    b.go(&format!("{base}/ui/drift"));
    let page = b.source();
    assert!(
        page.contains("20 served answers") && page.contains("0 alarm(s)"),
        "{page}"
    );
    b.shot("7-drift");

    // Relabel the first queued record.
    b.go(&format!("{base}/ui/review"));
    let page = b.source();
    let id_at = page
        .find("name=\"id\" value=\"")
        .unwrap_or_else(|| panic!("no queued record on the review page ({}): {page}", b.url()))
        + "name=\"id\" value=\"".len();
    let record = page[id_at..].split('"').next().unwrap().to_string();
    b.shot("8-review-queue");
    let before = store_version(d).id;
    b.click("#review-0 select[name=decision] option:nth-child(2)");
    let why = hone(d, &["--json", "data", "why", &record]);
    let why: Value = serde_json::from_slice(&why.stdout).unwrap();
    let old_label = why["record"]["label"].as_str().unwrap().to_string();
    let e = b.call(
        "POST",
        "/element",
        &json!({"using": "xpath", "value": format!("//form[@id='review-0']//select[@name='label']/option[text()!='{old_label}']")}),
    );
    let new_label = b.call(
        "GET",
        &format!("/element/{}/text", e[ELEMENT].as_str().unwrap()),
        &Value::Null,
    );
    let new_label = new_label.as_str().unwrap().to_string();
    b.call(
        "POST",
        &format!("/element/{}/click", e[ELEMENT].as_str().unwrap()),
        &json!({}),
    );
    b.type_in("#review-0 input[name=note]", "checked in the dashboard");
    b.follow("#review-0 button");
    let page = b.source();
    assert!(page.contains("id=\"recorded\""), "{page}");
    b.shot("9-review-recorded");
    // Recorded as `hone review` records it: under the token's name, in a new dataset version.
    let decisions = open(d).decisions().unwrap();
    let dec = decisions.iter().find(|x| x.record_id == record).unwrap();
    assert_eq!(
        (dec.decision.as_str(), dec.reviewer.as_str()),
        ("relabel", "alice")
    );
    let version = store_version(d);
    assert_ne!(version.id, before);
    let o = hone(d, &["--json", "data", "why", &record]);
    let why: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(why["record"]["label"], new_label.as_str(), "{why}");
    assert!(why.to_string().contains("alice"), "{why}");
    // No page asked for anything: no images, styles, scripts or fonts from anywhere.
    assert_eq!(b.resources(), Vec::<String>::new());
    let o = hone(d, &["audit", "verify"]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
}

#[test]
fn the_dashboard_records_a_rubric_review_of_generated_answers_in_a_real_browser() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    generate_project(d);
    let o = hone(
        d,
        &["--json", "review", "answers", "--model", "tiny", "--n", "3"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let sheet: Value = serde_json::from_slice(&o.stdout).unwrap();
    let sheet_path = PathBuf::from(sheet["path"].as_str().unwrap());
    let sheet_name = sheet_path
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    let lines: Vec<Value> = std::fs::read_to_string(&sheet_path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(lines.len() >= 3);
    let alice = token(d, "alice", "review");
    let srv = serve(d, &["--run", "1", "--allow-unapproved"]);
    let base = format!("http://{}", srv.addr);

    let Some(b) = Browser::start() else { return };
    b.go(&format!("{base}/"));
    b.type_in("#token", &alice);
    b.follow("#login");
    b.go(&format!("{base}/ui/answers"));
    let page = b.source();
    assert!(
        page.contains("Answer review") && page.contains(&sheet_name),
        "{page}"
    );
    b.shot("10-answers");
    // Rate the first answer and mark it strong; mark the second weak; leave the rest.
    b.click("select[name=tone-0] option[value=\"4\"]");
    b.click("select[name=usefulness-0] option[value=\"5\"]");
    b.click("select[name=mark-0] option[value=\"strong\"]");
    b.click("select[name=mark-1] option[value=\"weak\"]");
    b.type_in("input[name=note-0]", "clear and polite");
    b.follow("#record-answers");
    let page = b.source();
    assert!(
        page.contains("id=\"recorded\"") && page.contains("Recorded 2 reviewed answer(s)"),
        "{page}"
    );
    assert!(page.contains("1 reviewer(s) (alice)"), "{page}");
    b.shot("11-answers-recorded");
    // Recorded as `hone review import` records a sheet: under the token's name, in the audit
    // chain, and the strong and weak answers to one prompt make a preference pair.
    let o = hone(
        d,
        &["--json", "review", "pairs", "--out", "reviews/pairs.jsonl"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let p: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(p["pairs"]["reviewers"], json!(["alice"]), "{p:#}");
    assert_eq!(p["pairs"]["answers"], 2, "{p:#}");
    let same_prompt = lines[0]["item"] == lines[1]["item"];
    assert_eq!(
        p["pairs"]["pairs"].as_array().unwrap().len(),
        usize::from(same_prompt),
        "{p:#}"
    );
    let audit = stdout(&hone(d, &["--json", "audit", "log"]));
    assert!(
        audit.contains("hone serve dashboard: answer review"),
        "{audit}"
    );
    assert_eq!(hone(d, &["audit", "verify"]).status.code(), Some(0));
    assert_eq!(b.resources(), Vec::<String>::new());
}
