//! `hone grade validate` through the binary: graders in TOML and OpenAI JSON load, a lenient grader is
//! reported exploitable (a warning, or exit 3 under `exploitable_graders = "fail"`), a strict one
//! passes, a field the data lacks and a typo in a grader file are errors that name the place.

mod common;

use std::path::Path;

use common::{hone, stderr, stdout};

fn project(dir: &Path, policy: &str) {
    std::fs::create_dir_all(dir.join("data")).unwrap();
    let replies = [
        (
            "Where is order #48213?",
            "Your order #48213 shipped today. Is there anything else I can help with?",
        ),
        (
            "Cancel invoice INV-2291 please",
            "I have cancelled invoice INV-2291. Is there anything else I can help with?",
        ),
        (
            "I can't log in to my account",
            "Please reset your password from the sign-in page. Is there anything else I can help with?",
        ),
        (
            "Do you ship to Norway?",
            "Yes, we ship to Norway within five days. Is there anything else I can help with?",
        ),
        (
            "How do I change my address?",
            "Open your profile and edit the address there. Is there anything else I can help with?",
        ),
        (
            "My parcel arrived damaged",
            "Sorry to hear that; please send us a photo of the parcel. Is there anything else I can help with?",
        ),
    ];
    let lines: Vec<String> = replies
        .iter()
        .enumerate()
        .map(|(i, (q, a))| serde_json::json!({"id": format!("r{i}"), "question": q, "answer": a, "channel": if i % 2 == 0 { "mail" } else { "chat" }}).to_string())
        .collect();
    std::fs::write(dir.join("data/replies.jsonl"), lines.join("\n") + "\n").unwrap();
    std::fs::write(
        dir.join("hone.toml"),
        format!("[task]\nname = \"replies\"\nkind = \"generate\"\n\n[policy]\n{policy}\n\n[[source]]\nname = \"replies\"\npath = \"data/replies.jsonl\"\nfields = {{ prompt = \"question\", target = \"answer\" }}\n"),
    )
    .unwrap();
    std::fs::create_dir_all(dir.join("graders")).unwrap();
    // Strict, in TOML: short, close to the reference, ends by offering help. (With full credit from
    // ROUGE-L 0.5 instead of 0.7, a generic "anything else I can help you with?" reply passed on
    // these short references: the check reported it.)
    std::fs::write(
        dir.join("graders/house_rules.toml"),
        r#"type = "multi"
calculate_output = "short * offer * min(1, similar / 0.7)"

[graders.short]
type = "length"
min_words = 3
max_words = 40

[graders.similar]
type = "text_similarity"
reference = "{{ item.reference }}"
evaluation_metric = "rouge_l"
pass_threshold = 0.5

[graders.offer]
type = "regex"
pattern = "(?i)anything else"
"#,
    )
    .unwrap();
    // Lenient, as OpenAI grader JSON: "mentions the reference" passes an answer that repeats it.
    std::fs::write(
        dir.join("graders/mentions.json"),
        r#"{"type": "string_check", "name": "mentions", "input": "{{sample.output_text}}", "reference": "{{item.reference}}", "operation": "ilike"}"#,
    )
    .unwrap();
    let o = hone(dir, &["data", "clean"]);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn grade_validate_reports_the_lenient_grader_and_passes_the_strict_one() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    project(d, "");
    let o = hone(d, &["grade", "validate"]);
    assert_eq!(o.status.code(), Some(0), "{}\n{}", stdout(&o), stderr(&o));
    let out = stdout(&o);
    let line = |name: &str| {
        out.lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("{out}"))
            .to_string()
    };
    assert!(line("house_rules").ends_with("ok"), "{out}");
    assert!(line("mentions").ends_with("EXPLOITABLE"), "{out}");
    assert!(
        stderr(&o).contains("grader `mentions` passes a very long answer"),
        "{}",
        stderr(&o)
    );
    let v: serde_json::Value =
        serde_json::from_slice(&hone(d, &["--json", "grade", "validate"]).stdout).unwrap();
    assert_eq!(v["items"], 6);
    assert_eq!(v["graders"][0]["name"], "house_rules");
    assert_eq!(v["graders"][0]["fields"], serde_json::json!(["reference"]));

    // Under `exploitable_graders = "fail"` the same finding is exit code 3.
    std::fs::write(
        d.join("hone.toml"),
        std::fs::read_to_string(d.join("hone.toml"))
            .unwrap()
            .replace("[policy]\n", "[policy]\nexploitable_graders = \"fail\"\n"),
    )
    .unwrap();
    let o = hone(d, &["grade", "validate"]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(stderr(&o).contains("grader check failed"), "{}", stderr(&o));
    // `hone run` runs the same check before anything trains.
    let o = hone(d, &["run"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("grader check failed") && stderr(&o).contains("`mentions`"),
        "{}",
        stderr(&o)
    );
    std::fs::remove_file(d.join("graders/mentions.json")).unwrap();
    let o = hone(d, &["grade", "validate"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let toml = std::fs::read_to_string(d.join("hone.toml")).unwrap();
    std::fs::write(
        d.join("hone.toml"),
        toml.replace("exploitable_graders = \"fail\"\n", ""),
    )
    .unwrap();

    // A field the records lack fails whatever the policy (source column `channel` is on all; `ticket` on none).
    std::fs::write(
        d.join("graders/ticket.toml"),
        "type = \"string_check\"\nreference = \"{{ item.ticket }}\"\noperation = \"like\"\n",
    )
    .unwrap();
    let o = hone(d, &["grade", "validate"]);
    assert_eq!(o.status.code(), Some(3), "{}", stdout(&o));
    assert!(stdout(&o).contains("ticket (6 records)"), "{}", stdout(&o));
    std::fs::write(
        d.join("graders/ticket.toml"),
        "type = \"string_check\"\nreference = \"{{ item.channel }}\"\noperation = \"ne\"\n",
    )
    .unwrap();
    // `ne` is passed by an empty answer: a warning under the default policy, exit 0.
    let o = hone(d, &["grade", "validate"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("grader `ticket` passes an empty answer"),
        "{}",
        stderr(&o)
    );

    // A grader that cannot score the references (its formula divides by zero on every item) is
    // broken: exit 3, with the error named, even though no attack passes it.
    std::fs::remove_file(d.join("graders/ticket.toml")).unwrap();
    std::fs::write(
        d.join("graders/ratio.toml"),
        "type = \"multi\"\ncalculate_output = \"offer / (offer - offer)\"\n\n[graders.offer]\ntype = \"regex\"\npattern = \"(?i)anything else\"\n",
    )
    .unwrap();
    let o = hone(d, &["grade", "validate"]);
    assert_eq!(o.status.code(), Some(3), "{}", stdout(&o));
    assert!(
        line_of(&stdout(&o), "ratio").ends_with("BROKEN"),
        "{}",
        stdout(&o)
    );
    // The strict grader passes every reference outside the frozen test set; the column says so.
    assert!(
        line_of(&stdout(&o), "house_rules").contains("5/5"),
        "{}",
        stdout(&o)
    );
    assert!(
        stderr(&o).contains("grader `ratio` cannot score 5/5 reference answers")
            && stderr(&o).contains("division by zero"),
        "{}",
        stderr(&o)
    );
    std::fs::remove_file(d.join("graders/ratio.toml")).unwrap();

    // A typo names the file, line and column; exit 2 like any config error.
    std::fs::write(
        d.join("graders/typo.toml"),
        "type = \"regex\"\npatern = \"x\"\n",
    )
    .unwrap();
    let o = hone(d, &["grade", "validate"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("typo.toml:2:1"), "{}", stderr(&o));

    // A gate on a grader that does not exist stops `hone run` before anything trains.
    std::fs::remove_file(d.join("graders/typo.toml")).unwrap();
    let toml = std::fs::read_to_string(d.join("hone.toml")).unwrap();
    std::fs::write(
        d.join("hone.toml"),
        format!("{toml}\n[success]\ngrader_nope_pass_rate = \">= 0.5\"\n"),
    )
    .unwrap();
    let o = hone(d, &["run"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("names grader `nope`") && stderr(&o).contains("house_rules"),
        "{}",
        stderr(&o)
    );
}

fn line_of(out: &str, name: &str) -> String {
    out.lines()
        .find(|l| l.starts_with(name))
        .unwrap_or_else(|| panic!("no line for {name} in {out}"))
        .to_string()
}

fn minilm() -> Option<std::path::PathBuf> {
    let dir =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models/all-MiniLM-L6-v2");
    if dir.join("model.safetensors").is_file() {
        return Some(dir.canonicalize().unwrap());
    }
    assert!(
        std::env::var("HONE_REQUIRE_MINILM").as_deref() != Ok("1"),
        "all-MiniLM-L6-v2 not found at {} (HONE_REQUIRE_MINILM=1)",
        dir.display()
    );
    eprintln!("skipping: all-MiniLM-L6-v2 not found (run scripts/get-minilm)");
    None
}

/// `cosine` through the real all-MiniLM-L6-v2: a paraphrase scores near the reference, an unrelated
/// reply far from it; the prompt echoed back is close enough to pass a loose threshold, which the
/// adversarial check reports; a missing encoder directory names the grader file.
#[test]
fn cosine_through_the_local_minilm() {
    let Some(model) = minilm() else { return };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    project(d, "");
    std::fs::remove_file(d.join("graders/mentions.json")).unwrap();
    let cosine = |threshold: f64| {
        format!(
            "type = \"text_similarity\"\nreference = \"{{{{ item.reference }}}}\"\nevaluation_metric = \"cosine\"\npass_threshold = {threshold}\nencoder = \"{}\"\n",
            model.display()
        )
    };
    std::fs::write(d.join("graders/on_topic.toml"), cosine(0.3)).unwrap();
    let project = hone_train::project::Project::discover(d).unwrap();
    let graders = hone_train::graders::load(&project).unwrap();
    let g = &graders
        .iter()
        .find(|g| g.grader.name == "on_topic")
        .unwrap()
        .grader;
    let item = serde_json::json!({"reference": "Your order #48213 shipped today."});
    let score = |a: &str| g.grade(a, &item).unwrap().reward;
    assert!((score("Your order #48213 shipped today.") - 1.0).abs() < 1e-5);
    let (para, unrelated) = (
        score("We sent out order 48213 this morning."),
        score("Bananas are rich in potassium."),
    );
    assert!(
        para > 0.6 && unrelated < 0.3 && para > unrelated + 0.3,
        "paraphrase {para}, unrelated {unrelated}"
    );
    // At 0.3 the echoed prompt passes: reported, not silently accepted.
    let v: serde_json::Value =
        serde_json::from_slice(&hone(d, &["--json", "grade", "validate"]).stdout).unwrap();
    let on_topic = v["graders"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["name"] == "on_topic")
        .unwrap();
    let echo = on_topic["probe"]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["attack"] == "echo_prompt")
        .unwrap();
    assert!(echo["passed"].as_u64().unwrap() > 0, "{on_topic:#}");
    std::fs::write(
        d.join("graders/on_topic.toml"),
        cosine(0.3).replace(&model.display().to_string(), "models/nowhere"),
    )
    .unwrap();
    let o = hone(d, &["grade", "validate"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("on_topic.toml") && stderr(&o).contains("nowhere"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn command_graders_run_the_projects_program_and_get_the_same_adversarial_check() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    project(d, "");
    // A program that only checks for the closing offer: the generic reply and the repeated
    // reference pass it, so the check must call it exploitable, as it would a regex.
    std::fs::write(
        d.join("graders/offer.sh"),
        "doc=$(cat)\ncase \"$doc\" in *'\"output_text\":\"'*'anything else'*) echo 1;; *) echo 0;; esac\n",
    )
    .unwrap();
    std::fs::write(
        d.join("graders/offer.toml"),
        "type = \"command\"\ncommand = [\"sh\", \"graders/offer.sh\"]\ntimeout_seconds = 5\n",
    )
    .unwrap();
    let o = hone(d, &["--json", "grade", "validate"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let g = v["graders"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["name"] == "offer")
        .unwrap_or_else(|| panic!("{v}"))
        .clone();
    assert_eq!(g["type_name"], "command");
    // Every reference ends with the offer: the program ran on each and passed them all.
    assert_eq!(g["references"]["passed"], 6, "{g}");
    assert_eq!(g["references"]["errors"], 0, "{g}");
    let passing: Vec<&str> = g["probe"]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["passed"].as_u64().unwrap_or(0) > 0)
        .map(|a| a["attack"].as_str().unwrap())
        .collect();
    assert!(passing.contains(&"generic"), "{g}");

    // A program that is not there is named with the grader file before anything runs.
    std::fs::write(
        d.join("graders/offer.toml"),
        "type = \"command\"\ncommand = [\"graders/missing.py\"]\n",
    )
    .unwrap();
    let o = hone(d, &["grade", "validate"]);
    assert_ne!(o.status.code(), Some(0));
    let err = stderr(&o);
    assert!(
        err.contains("offer.toml") && err.contains("not found"),
        "{err}"
    );
}

/// A judge on loopback that follows the probe's format check and gives every answer full marks:
/// the lenient judge a team should be warned about.
fn lenient_judge() -> String {
    use std::io::{BufRead, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let mut r = std::io::BufReader::new(stream.try_clone().unwrap());
            let mut len = 0;
            let mut line = String::new();
            while r.read_line(&mut line).unwrap_or(0) > 0 && line != "\r\n" {
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
                line.clear();
            }
            let mut body = vec![0; len];
            let _ = r.read_exact(&mut body);
            let text = String::from_utf8_lossy(&body);
            // The probe asks for an exact result; everything else gets 1.
            let result = text
                .split("to exactly ")
                .nth(1)
                .and_then(|s| s.split(".\"").next())
                .unwrap_or("1");
            let content = format!("{{\"reasoning\": \"fine\", \"result\": {result}}}");
            let reply = serde_json::json!({"choices": [{"message": {"role": "assistant", "content": content}, "finish_reason": "stop"}]}).to_string();
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{reply}",
                reply.len()
            );
        }
    });
    url
}

#[test]
fn judge_graders_are_probed_and_checked_like_every_other_grader() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    project(d, "");
    let url = lenient_judge();
    std::fs::write(
        d.join("graders/helpful.toml"),
        format!(
            "type = \"score_model\"\nmodel = \"judge\"\nendpoint = \"{url}\"\npass_threshold = 0.7\n\n[[input]]\nrole = \"user\"\ncontent = \"Question: {{{{ item.prompt }}}}\\nReply: {{{{ sample.output_text }}}}\\nHow helpful is the reply?\"\n"
        ),
    )
    .unwrap();
    let o = hone(d, &["--json", "grade", "validate"]);
    assert_eq!(o.status.code(), Some(0), "{}\n{}", stderr(&o), stdout(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let g = v["graders"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["name"] == "helpful")
        .unwrap_or_else(|| panic!("{v}"))
        .clone();
    assert_eq!(g["type_name"], "score_model");
    assert_eq!(g["fields"], serde_json::json!(["prompt"]), "{g}");
    // Full marks for an empty answer: exploitable, said by name.
    let empty = g["probe"]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["attack"] == "empty")
        .unwrap()
        .clone();
    assert!(empty["passed"].as_u64().unwrap() > 0, "{g}");
    let o = hone(d, &["grade", "validate"]);
    assert!(stdout(&o).contains("EXPLOITABLE"), "{}", stdout(&o));

    // A judge elsewhere needs the project's consent: the file is named, nothing is sent.
    std::fs::write(
        d.join("graders/helpful.toml"),
        "type = \"score_model\"\nmodel = \"judge\"\nendpoint = \"http://192.0.2.7:8000/v1\"\n\n[[input]]\nrole = \"user\"\ncontent = \"{{ sample.output_text }}\"\n",
    )
    .unwrap();
    let o = hone(d, &["grade", "validate"]);
    assert_ne!(o.status.code(), Some(0));
    let err = stderr(&o);
    assert!(
        err.contains("helpful.toml") && err.contains("allow_remote_judges"),
        "{err}"
    );
}
