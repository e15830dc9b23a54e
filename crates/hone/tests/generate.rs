//! Generate tasks through the binary, on a tiny random decoder written in code: curation keeps the
//! target, the base model and a fine-tuned model run and are scored with text metrics, the fine-tuned
//! one is chosen, and `predict` answers in input order with the run's template.

mod common;

use std::path::Path;

use common::{hone, stderr, stdout};

const INTENTS: [(&str, &str); 4] = [
    ("refund", "We will refund you."),
    ("cancel", "Your order is cancelled."),
    ("late", "Your parcel is on its way."),
    ("password", "Use the reset link."),
];

const OPENERS: [&str; 6] = [
    "hi",
    "hello",
    "hey there",
    "good morning",
    "excuse me",
    "dear team",
];
const TAILS: [&str; 5] = ["please", "thanks", "asap", "today", "if you can"];

/// A project whose prompts name one of four intents in varied words; the target is the intent's reply.
fn project(dir: &Path, method: &str, extra: &str) {
    write_data(dir);
    std::fs::write(
        dir.join("hone.toml"),
        format!(
            r#"[task]
name = "replies"
kind = "generate"

[policy]
contamination = "drop_train"

[[source]]
name = "replies"
path = "data/replies.jsonl"
fields = {{ prompt = "question", target = "answer" }}

[split]
test = 0.2
dev = 0.15

[[model]]
name = "tuned"
kind = "lm"
path = "models/tiny.gguf"
method = "{method}"

[model.params]
epochs = 60
lr = 0.02
batch_size = 8
max_new_tokens = 24
{extra}
"#
        ),
    )
    .unwrap();
}

fn write_data(dir: &Path) {
    let model = dir.join("models/tiny.gguf");
    std::fs::create_dir_all(model.parent().unwrap()).unwrap();
    hone_lm::testing::tiny_gguf(&model, 7).unwrap();
    let mut lines = Vec::new();
    let mut i = 0;
    for (k, opener) in OPENERS.iter().enumerate() {
        for (j, tail) in TAILS.iter().enumerate() {
            for (intent, reply) in INTENTS {
                if (k + j) % 2 == 0 && intent != "refund" && intent != "late" {
                    continue;
                }
                lines.push(
                    serde_json::json!({
                        "id": format!("q{i}"),
                        "question": format!("{opener}, {intent} {tail}"),
                        "answer": reply,
                    })
                    .to_string(),
                );
                i += 1;
            }
        }
    }
    std::fs::create_dir_all(dir.join("data")).unwrap();
    std::fs::write(dir.join("data/replies.jsonl"), lines.join("\n") + "\n").unwrap();
}

fn run_json(dir: &Path) -> serde_json::Value {
    let o = hone(dir, &["--json", "run"]);
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    serde_json::from_slice(&o.stdout).unwrap()
}

#[test]
fn a_fine_tuned_tiny_model_beats_the_base_and_predict_answers_in_order() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // A grader scores every model's test answers; `[success]` gates on it by name.
    project(
        dir,
        "sft",
        "\n[success]\ngrader_exact_reply_mean = \">= 0\"\n",
    );
    std::fs::create_dir_all(dir.join("graders")).unwrap();
    std::fs::write(
        dir.join("graders/exact_reply.toml"),
        "type = \"string_check\"\nreference = \"{{ item.reference }}\"\noperation = \"eq\"\n",
    )
    .unwrap();
    let out = run_json(dir);
    let runs = out["runs"].as_array().unwrap();
    let names: Vec<&str> = runs.iter().map(|r| r["model"].as_str().unwrap()).collect();
    assert_eq!(names, ["base", "tuned"], "{out:#}");
    let exact = |r: &serde_json::Value| {
        r["graders"]["exact_reply"]["pass_rate"]["estimate"]
            .as_f64()
            .unwrap()
    };
    assert!(exact(&runs[1]) > exact(&runs[0]), "{out:#}");
    assert_eq!(
        out["gates"][0]["metric"], "grader_exact_reply_mean",
        "{out:#}"
    );
    assert_eq!(
        out["gates"][0]["value"].as_f64(),
        Some(exact(&runs[1])),
        "{out:#}"
    );
    // `hone compare` pairs the grader's pass rates on the shared test answers.
    let o = hone(dir, &["--json", "compare", "1", "2"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let c: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(c["graders"][0]["grader"], "exact_reply", "{c:#}");
    let delta = c["graders"][0]["pass"]["delta"].as_f64().unwrap();
    assert!(
        (delta - (exact(&runs[1]) - exact(&runs[0]))).abs() < 1e-9,
        "{c:#}"
    );
    // Mean rewards are paired too; an exact-match grader's mean is its pass rate.
    assert_eq!(
        c["graders"][0]["mean"]["delta"].as_f64(),
        Some(delta),
        "{c:#}"
    );

    // `hone grade run`: the stored test answers give the pipeline's figure, and every item's reward
    // is kept; dev answers are generated now, from the run's own weights (the base's score lower).
    let grade = |model: &str, split: &str| -> serde_json::Value {
        let o = hone(
            dir,
            &["--json", "grade", "run", "--model", model, "--split", split],
        );
        assert!(o.status.success(), "{}", stderr(&o));
        serde_json::from_slice(&o.stdout).unwrap()
    };
    let g = grade("tuned", "test");
    let rate = |g: &serde_json::Value| {
        g["graders"]["exact_reply"]["pass_rate"]["estimate"]
            .as_f64()
            .unwrap()
    };
    assert_eq!(
        (g["generated"].as_bool(), rate(&g)),
        (Some(false), exact(&runs[1])),
        "{g:#}"
    );
    let lines = |g: &serde_json::Value| -> Vec<serde_json::Value> {
        std::fs::read_to_string(g["path"].as_str().unwrap())
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let items = lines(&g);
    assert_eq!(items.len() as u64, g["n"].as_u64().unwrap());
    let passed = items
        .iter()
        .filter(|i| i["passed"]["exact_reply"] == true)
        .count();
    assert!(
        (passed as f64 / items.len() as f64 - rate(&g)).abs() < 1e-9,
        "{g:#}"
    );
    let dev = grade("tuned", "dev");
    assert_eq!(dev["generated"], true, "{dev:#}");
    assert!(
        dev["n"].as_u64().unwrap() > 0 && dev["path"] != g["path"],
        "{dev:#}"
    );
    // Seeded per item: grading dev again writes the same answers.
    let again = lines(&grade("tuned", "dev"));
    assert_eq!(again, lines(&dev));
    assert!(rate(&dev) > rate(&grade("base", "dev")), "{dev:#}");
    let rouge = |r: &serde_json::Value, part: &str| {
        r["generation"][part]["rouge_l"]["estimate"]
            .as_f64()
            .unwrap()
    };
    let (base, tuned) = (&runs[0], &runs[1]);
    // A 27k-parameter random decoder learning four replies: clearly better than the base, not perfect.
    assert!(rouge(tuned, "test") > 0.5, "{:#}", tuned["generation"]);
    assert!(rouge(base, "test") < 0.2, "{:#}", base["generation"]);
    assert_eq!(tuned["chosen"], true, "{out:#}");

    // Predict renders prompts with the run's stored template: on the test prompts it gives back the
    // answers the evaluation stored, in input order, with the input ids.
    let o = hone(dir, &["--json", "runs"]);
    let listing: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let chosen = listing
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["chosen"] == true)
        .unwrap();
    let hash = chosen["record"]["predictions"].as_str().unwrap();
    let stored: serde_json::Value = serde_json::from_slice(
        &std::fs::read(dir.join(".hone/objects").join(&hash[..2]).join(&hash[2..])).unwrap(),
    )
    .unwrap();
    let generated = stored["generated"].as_array().unwrap();
    assert!(generated.len() >= 10);
    let data = std::fs::read_to_string(dir.join("data/replies.jsonl")).unwrap();
    let prompt_of: std::collections::HashMap<String, String> = data
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .map(|v| {
            (
                v["id"].as_str().unwrap().to_string(),
                v["question"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let mut input = String::new();
    for g in generated.iter().rev() {
        let id = g["id"].as_str().unwrap();
        input.push_str(&serde_json::json!({"id": id, "prompt": prompt_of[id]}).to_string());
        input.push('\n');
    }
    let ask = dir.join("ask.jsonl");
    std::fs::write(&ask, input).unwrap();
    let o = hone(dir, &["predict", ask.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let lines: Vec<serde_json::Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), generated.len());
    for (line, g) in lines.iter().zip(generated.iter().rev()) {
        assert_eq!(line["id"], g["id"]);
        assert_eq!(
            line["completion"], g["completion"],
            "predict and evaluation differ"
        );
    }
    // Plain lines work too, and --max-new-tokens caps the answer.
    let plain = dir.join("ask.txt");
    std::fs::write(&plain, "hi, refund please\nhello, late thanks\n").unwrap();
    let o = hone(
        dir,
        &["predict", "--max-new-tokens", "3", plain.to_str().unwrap()],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let lines: Vec<serde_json::Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(
        (lines[0]["id"].as_str(), lines[1]["id"].as_str()),
        (Some("1"), Some("2"))
    );
    assert!(
        lines
            .iter()
            .all(|l| l["completion"].as_str().unwrap().len() <= 12),
        "{lines:?}"
    );

    // Bad decoding settings are usage errors naming the fix, not internal errors.
    let o = hone(
        dir,
        &["predict", "--temperature=-1", plain.to_str().unwrap()],
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let o = hone(
        dir,
        &[
            "predict",
            "--max-new-tokens",
            "100000",
            plain.to_str().unwrap(),
        ],
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("exceed the model's context")
            && stderr(&o).contains("hint: lower max_new_tokens")
    );
    // `hone runs` shows the text metrics of generate runs.
    let o = hone(dir, &["runs"]);
    assert!(
        stdout(&o).contains("test ROUGE-L") && !stdout(&o).contains("test acc"),
        "{}",
        stdout(&o)
    );

    // Export: a Hugging Face LlamaForCausalLM directory with the run's template and tokenizer.
    let out_dir = dir.join("export");
    let o = hone(
        dir,
        &[
            "export",
            "--model",
            "tuned",
            "--out",
            out_dir.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out_dir.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["architectures"][0], "LlamaForCausalLM");
    assert_eq!(config["num_key_value_heads"], 2);
    let tc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out_dir.join("tokenizer_config.json")).unwrap())
            .unwrap();
    assert_eq!(tc["chat_template"], hone_lm::testing::CHATML);
    assert_eq!(tc["eos_token"], "<|im_end|>");
    let weights = std::fs::read(out_dir.join("model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&weights).unwrap();
    let names = st.names();
    assert!(
        names.contains(&"model.layers.1.self_attn.q_proj.weight"),
        "{names:?}"
    );
    assert!(
        !names.iter().any(|n| n.starts_with("lm_head")),
        "tied embeddings"
    );
    assert!(out_dir.join("tokenizer.json").is_file());

    // A second run is cached.
    let again = run_json(dir);
    assert!(
        again["runs"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["cached"] == true),
        "{again:#}"
    );

    // `[task] select_by` ranks the models by a grader's dev pass rate instead of ROUGE-L. A grader
    // that passes anything but the reference prefers the base; the dev scores are the ones `hone grade
    // run --split dev` gives (each run stored its dev answers), and the report says why.
    std::fs::write(
        dir.join("graders/not_the_reply.toml"),
        "type = \"string_check\"\nreference = \"{{ item.reference }}\"\noperation = \"ne\"\n",
    )
    .unwrap();
    let toml = std::fs::read_to_string(dir.join("hone.toml")).unwrap();
    let select = "[task]\nselect_by = \"grader_not_the_reply_pass_rate\"\n";
    std::fs::write(dir.join("hone.toml"), toml.replace("[task]\n", select)).unwrap();
    let picked = run_json(dir);
    let choice = &picked["choice"];
    assert_eq!(choice["metric"], "dev grader_not_the_reply_pass_rate");
    assert!(
        choice["rule"]
            .as_str()
            .unwrap()
            .contains("dev pass rate of grader `not_the_reply`"),
        "{choice:#}"
    );
    let dev_rate = |model: &str| {
        grade(model, "dev")["graders"]["not_the_reply"]["pass_rate"]["estimate"].as_f64()
    };
    assert_eq!(
        choice["dev"],
        serde_json::json!([dev_rate("base"), dev_rate("tuned")]),
        "{choice:#}"
    );
    assert!(dev_rate("base") > dev_rate("tuned"), "{choice:#}");
    assert_eq!(
        (&picked["runs"][0]["chosen"], choice["chosen"].as_u64()),
        (&serde_json::json!(true), Some(0)),
        "{picked:#}"
    );
    let md = std::fs::read_to_string(
        std::path::Path::new(picked["report"].as_str().unwrap()).with_extension("md"),
    )
    .unwrap();
    assert!(
        md.contains("Chosen by `[task] select_by`: best dev pass rate of grader `not_the_reply`"),
        "{md}"
    );
    // `predict` and the listing follow the new choice.
    let o = hone(dir, &["--json", "runs"]);
    let listing: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(listing[0]["chosen"], true, "{listing:#}");
    // A grader that does not exist stops `hone run` before anything trains, naming the key.
    let typo = "[task]\nselect_by = \"grader_not_the_repy_pass_rate\"\n";
    std::fs::write(dir.join("hone.toml"), toml.replace("[task]\n", typo)).unwrap();
    let o = hone(dir, &["run"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("`[task] select_by` names grader `not_the_repy`")
            && stderr(&o).contains("not_the_reply"),
        "{}",
        stderr(&o)
    );
}

/// Pre-training from scratch: a tokenizer trained on the project's texts and two small decoders;
/// both learn the replies, `compare` states the difference with an interval, predict answers.
#[test]
fn pretrained_decoders_learn_the_replies_and_compare_with_intervals() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write_data(dir);
    let model = |name: &str, hidden: usize, epochs: usize| {
        format!(
            "\n[[model]]\nname = \"{name}\"\nkind = \"lm\"\nmethod = \"pretrain\"\n\n[model.params]\nhidden = {hidden}\nlayers = 2\nheads = 4\nkv_heads = 2\nffn = {}\nvocab_size = 400\nepochs = {epochs}\nlr = 0.01\nbatch_size = 8\nmax_new_tokens = 16\n",
            hidden * 2
        )
    };
    std::fs::write(
        dir.join("hone.toml"),
        format!(
            "[task]\nname = \"replies\"\nkind = \"generate\"\n\n[policy]\ncontamination = \"drop_train\"\n\n[[source]]\nname = \"replies\"\npath = \"data/replies.jsonl\"\nfields = {{ prompt = \"question\", target = \"answer\" }}\n\n[split]\ntest = 0.2\ndev = 0.15\n{}{}",
            model("small", 64, 40),
            model("smaller", 32, 2)
        ),
    )
    .unwrap();
    let out = run_json(dir);
    let runs = out["runs"].as_array().unwrap();
    let names: Vec<&str> = runs.iter().map(|r| r["model"].as_str().unwrap()).collect();
    assert_eq!(names, ["small", "smaller"], "{out:#}");
    let rouge = |i: usize| {
        runs[i]["generation"]["test"]["rouge_l"]["estimate"]
            .as_f64()
            .unwrap()
    };
    assert!(
        rouge(0) > 0.8 && rouge(0) > rouge(1),
        "{} vs {}",
        rouge(0),
        rouge(1)
    );
    assert_eq!(runs[0]["chosen"], true);
    let o = hone(dir, &["--json", "compare", "2", "1"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let c: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(c["rouge_l"]["lo"].as_f64().unwrap() > 0.0, "{c:#}");
    assert_eq!(c["verdict_text"], "significantly better");
    let ask = dir.join("ask.txt");
    std::fs::write(&ask, "hi, refund please\n").unwrap();
    let o = hone(dir, &["predict", ask.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("\"completion\""), "{}", stdout(&o));
}

/// `hone demo` runs its generation part offline: the seeded reply pairs, the planted leaks dropped
/// from training, two pre-trained decoders, the gate on ROUGE-L, and a reply to a new message.
#[test]
fn the_demo_generation_part_runs_offline_and_passes_its_gate() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("demo");
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_hone"))
        .args(["--json", "demo", "--dir", dir.to_str().unwrap()])
        .env("HONE_USER", "test-user")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    // The classification part wrote the chosen run's model card.
    let card = std::fs::read_to_string(v["card"].as_str().unwrap()).unwrap();
    assert!(
        card.starts_with("---\nlicense:") && card.contains("## Limits"),
        "{card}"
    );
    let g = &v["generate"];
    assert_eq!(g["gates_pass"], true, "{g:#}");
    assert!(g["leaks_dropped"].as_u64().unwrap() >= 3, "{g:#}");
    assert!(!g["sample"][1].as_str().unwrap().is_empty(), "{g:#}");
    assert!(Path::new(g["run_report"].as_str().unwrap()).is_file());
    // The grader check caught the lenient grader; GRPO ran and reported its signals.
    let r = &g["reward"];
    assert!(
        r["grader_warnings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w.as_str().unwrap().contains("`mentions_reply`")),
        "{r:#}"
    );
    assert_eq!(r["steps"], 30, "{r:#}");
    for key in [
        "reward_first",
        "reward_last",
        "frac_reward_zero_std",
        "clipped_ratio",
    ] {
        let x = r[key].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&x), "{key} {r:#}");
    }
    // The reply that carries an e-mail address was masked in the curated data.
    let o = hone(&dir.join("replies"), &["--json", "data", "show"]);
    let shown = stdout(&o);
    assert!(!shown.contains("agent.kim@example.com") && shown.contains("<EMAIL>"));
}

/// The checkpoint directory of a project's running SFT, once it holds a checkpoint.
fn checkpoint_meta(dir: &Path) -> Option<std::path::PathBuf> {
    std::fs::read_dir(dir.join(".hone/checkpoints"))
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("checkpoint.json"))
        .find(|p| p.is_file())
}

/// `kill -9` during SFT, then `hone run` again: training resumes from the checkpoint and ends
/// bit-identical (same weights object, same scores) to an uninterrupted run of the same project; the
/// checkpoint directory is gone once the run is stored.
#[test]
fn kill_9_mid_sft_then_rerun_ends_bit_identical_to_an_uninterrupted_run() {
    let tmp = tempfile::tempdir().unwrap();
    let (killed, whole) = (tmp.path().join("killed"), tmp.path().join("whole"));
    for d in [&killed, &whole] {
        project(d, "sft", "checkpoint_every = 1");
        let toml = std::fs::read_to_string(d.join("hone.toml")).unwrap();
        std::fs::write(
            d.join("hone.toml"),
            toml.replace("epochs = 60", "epochs = 12"),
        )
        .unwrap();
    }
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_hone"))
        .arg("-C")
        .arg(&killed)
        .args(["--json", "run"])
        .env("HONE_USER", "test-user")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Wait for a checkpoint a few steps in, then kill without warning.
    let t0 = std::time::Instant::now();
    loop {
        let step = checkpoint_meta(&killed)
            .and_then(|p| std::fs::read(p).ok())
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .and_then(|v| v["step"].as_u64());
        if step.is_some_and(|s| s >= 5) {
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none() && t0.elapsed().as_secs() < 120,
            "the run ended (or stalled) before a checkpoint at step 5"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(checkpoint_meta(&killed).is_some());

    let resumed = run_json(&killed);
    let uninterrupted = run_json(&whole);
    let listing = |d: &Path| -> serde_json::Value {
        let o = hone(d, &["--json", "runs"]);
        assert!(o.status.success(), "{}", stderr(&o));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        v.as_array()
            .unwrap()
            .iter()
            .find(|r| r["model"] == "tuned")
            .unwrap()
            .clone()
    };
    let (a, b) = (listing(&killed), listing(&whole));
    let report = |r: &serde_json::Value| r["record"]["train"]["report"].clone();
    assert!(
        report(&a)["resumed_at_step"].as_u64().unwrap() >= 5,
        "{:#}",
        report(&a)
    );
    assert!(report(&b)["resumed_at_step"].is_null());
    assert_eq!(report(&a)["losses"], report(&b)["losses"]);
    assert_eq!(
        a["record"]["artifacts"]["model.safetensors"],
        b["record"]["artifacts"]["model.safetensors"]
    );
    let tuned = |v: &serde_json::Value| {
        v["runs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["model"] == "tuned")
            .unwrap()["generation"]
            .clone()
    };
    // Everything but the measured speed.
    for part in ["dev", "test", "slices"] {
        assert_eq!(tuned(&resumed)[part], tuned(&uninterrupted)[part]);
    }
    assert!(checkpoint_meta(&killed).is_none() && checkpoint_meta(&whole).is_none());
}

/// `[costs] max_minutes` stops training cleanly: the run is recorded, says the budget ended it, and
/// keeps the weights scored on dev when it stopped.
#[test]
fn a_time_budget_stops_training_cleanly_and_the_run_says_so() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    project(dir, "sft", "");
    let toml = std::fs::read_to_string(dir.join("hone.toml")).unwrap();
    std::fs::write(
        dir.join("hone.toml"),
        toml.replace("[split]", "[costs]\nmax_minutes = 0.0\n\n[split]"),
    )
    .unwrap();
    let o = hone(dir, &["run"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("budget"), "{}", stdout(&o));
    let o = hone(dir, &["--json", "runs"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let tuned = v
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["model"] == "tuned")
        .unwrap();
    let report = &tuned["record"]["train"]["report"];
    assert_eq!(report["ended"], "budget", "{report:#}");
    assert_eq!(report["steps"], 1);
    assert_eq!(report["kept"]["step"], 1);
    // A training setting changed: the tuned model trains again, the base is not evaluated again.
    let toml = std::fs::read_to_string(dir.join("hone.toml")).unwrap();
    std::fs::write(
        dir.join("hone.toml"),
        toml.replace("lr = 0.02", "lr = 0.03"),
    )
    .unwrap();
    let again = run_json(dir);
    let cached: Vec<(&str, bool)> = again["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["model"].as_str().unwrap(), r["cached"].as_bool().unwrap()))
        .collect();
    assert_eq!(cached, [("base", true), ("tuned", false)], "{again:#}");
}

/// GRPO through `hone run`: a `grpo` model continues the fine-tuned model on a grader's reward; the
/// run records every step's signals, the report draws the reward curve, predict answers with the
/// GRPO weights, and changing the model GRPO starts from trains it again. Settings that cannot train
/// and a reward grader that does not exist stop the run before anything trains.
#[test]
fn grpo_continues_the_fine_tuned_model_on_a_grader_and_reports_its_signals() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let grpo = "\n[[model]]\nname = \"grpo\"\nkind = \"lm\"\npath = \"models/tiny.gguf\"\nmethod = \"grpo\"\n\n[model.params]\nreward = \"close\"\nstart_from = \"tuned\"\nsteps = 6\nprompts_per_step = 2\nnum_generations = 4\nmax_completion_length = 12\nmax_new_tokens = 24\nlr = 0.001\neval_every = 3\n";
    project(dir, "sft", grpo);
    std::fs::create_dir_all(dir.join("graders")).unwrap();
    // Partial credit (similarity to the reference), so completions of one prompt differ in reward.
    std::fs::write(
        dir.join("graders/close.toml"),
        "type = \"text_similarity\"\nreference = \"{{ item.reference }}\"\nevaluation_metric = \"fuzzy_match\"\npass_threshold = 0.9\n",
    )
    .unwrap();
    let o = hone(dir, &["run"]);
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    let report_md = std::fs::read_dir(dir.join("reports"))
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "md") && p.to_string_lossy().contains("run"))
        .map(|p| std::fs::read_to_string(p).unwrap())
        .unwrap_or_default();
    assert!(
        report_md.contains("## Reward training: grpo")
            && report_md.contains("6 steps on grader `close`"),
        "{report_md}"
    );
    let runs = |dir: &Path| -> serde_json::Value {
        serde_json::from_slice(&hone(dir, &["--json", "runs"]).stdout).unwrap()
    };
    let listing = runs(dir);
    let find = |v: &serde_json::Value, name: &str| {
        v.as_array()
            .unwrap()
            .iter()
            .find(|r| r["model"] == name)
            .unwrap_or_else(|| panic!("no {name} in {v:#}"))
            .clone()
    };
    let g = find(&listing, "grpo");
    let report = &g["record"]["train"]["report"];
    assert_eq!(report["method"], "grpo", "{report:#}");
    let steps = report["grpo"]["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 6, "{report:#}");
    for s in steps {
        for key in [
            "reward_mean",
            "reward_std",
            "frac_reward_zero_std",
            "clipped_ratio",
            "completion_length",
            "generate_seconds",
            "train_seconds",
        ] {
            assert!(s[key].as_f64().is_some(), "{key} in {s:#}");
        }
        assert!(s["completion_length"].as_f64().unwrap() <= 12.0);
    }
    // Dev is scored at the start and every 3 steps; the best of those weights is kept.
    let dev_steps: Vec<u64> = report["dev_by_epoch"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["step"].as_u64().unwrap())
        .collect();
    assert_eq!(dev_steps, [0, 3, 6], "{report:#}");
    assert!(report["kept"]["step"].is_u64(), "{report:#}");
    // The full fine-tune continued: every weight trained.
    let tuned = find(&listing, "tuned");
    assert_eq!(
        report["trainable_params"],
        tuned["record"]["train"]["report"]["trainable_params"]
    );
    // Predict with the GRPO weights.
    let ask = dir.join("ask.txt");
    std::fs::write(&ask, "hello, refund please\n").unwrap();
    let o = hone(dir, &["predict", "--model", "grpo", ask.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o).lines().count(), 1, "{}", stdout(&o));

    // The model GRPO starts from changes: both train again, the base does not.
    let toml = std::fs::read_to_string(dir.join("hone.toml")).unwrap();
    std::fs::write(
        dir.join("hone.toml"),
        toml.replace("lr = 0.02", "lr = 0.03"),
    )
    .unwrap();
    let again = run_json(dir);
    let cached: Vec<(&str, bool)> = again["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["model"].as_str().unwrap(), r["cached"].as_bool().unwrap()))
        .collect();
    assert_eq!(
        cached,
        [("base", true), ("tuned", false), ("grpo", false)],
        "{again:#}"
    );

    // Errors before training: a reward grader that does not exist, a group of one, a start model
    // listed after.
    let toml = std::fs::read_to_string(dir.join("hone.toml")).unwrap();
    std::fs::write(
        dir.join("hone.toml"),
        toml.replace("reward = \"close\"", "reward = \"nope\""),
    )
    .unwrap();
    let o = hone(dir, &["run"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("[[model]] `grpo`: reward = \"nope\" names no grader")
            && stderr(&o).contains("close"),
        "{}",
        stderr(&o)
    );
    std::fs::write(
        dir.join("hone.toml"),
        toml.replace("num_generations = 4", "num_generations = 1"),
    )
    .unwrap();
    let o = hone(dir, &["run"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("num_generations") && stderr(&o).contains("hone.toml:"),
        "{}",
        stderr(&o)
    );
    std::fs::write(
        dir.join("hone.toml"),
        toml.replace("start_from = \"tuned\"", "start_from = \"tunde\""),
    )
    .unwrap();
    let o = hone(dir, &["run"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("did you mean `tuned`?"),
        "{}",
        stderr(&o)
    );
}

/// DPO through `hone run`: a `dpo` model continues the fine-tuned model on preference pairs; pairs
/// on dev or test prompts are dropped (the evaluation stays clean), a held-out share measures
/// preference accuracy, and changed pairs train it again.
#[test]
fn dpo_trains_on_preference_pairs_and_keeps_dev_and_test_prompts_out() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let dpo = "\n[[model]]\nname = \"preferred\"\nkind = \"lm\"\npath = \"models/tiny.gguf\"\nmethod = \"dpo\"\n\n[model.params]\nstart_from = \"tuned\"\npreferences = \"data/pairs.jsonl\"\nepochs = 4\nlr = 0.002\nbatch_size = 8\nmax_new_tokens = 24\npreference_holdout = 0.3\n";
    project(dir, "sft", dpo);
    // One pair per record, and twenty more on new prompts: the right reply preferred to the next
    // intent's.
    let data = std::fs::read_to_string(dir.join("data/replies.jsonl")).unwrap();
    let mut pairs = Vec::new();
    let rejected = |answer: &str| {
        let k = INTENTS.iter().position(|(_, a)| *a == answer).unwrap();
        INTENTS[(k + 1) % INTENTS.len()].1
    };
    for l in data.lines() {
        let r: serde_json::Value = serde_json::from_str(l).unwrap();
        let answer = r["answer"].as_str().unwrap();
        pairs.push(serde_json::json!({"prompt": r["question"], "chosen": answer, "rejected": rejected(answer)}).to_string());
    }
    for i in 0..20 {
        let (intent, answer) = INTENTS[i % INTENTS.len()];
        pairs.push(serde_json::json!({"id": format!("new{i}"), "prompt": format!("customer {i} says {intent}"), "chosen": answer, "rejected": rejected(answer)}).to_string());
    }
    std::fs::write(dir.join("data/pairs.jsonl"), pairs.join("\n") + "\n").unwrap();
    let out = run_json(dir);
    let listing: serde_json::Value =
        serde_json::from_slice(&hone(dir, &["--json", "runs"]).stdout).unwrap();
    let run = listing
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["model"] == "preferred")
        .unwrap_or_else(|| panic!("{out:#}"))
        .clone();
    let d = &run["record"]["train"]["report"]["dpo"];
    let n = |k: &str| d[k].as_u64().unwrap();
    let record_n = &run["record"]["generation"];
    let eval_records =
        record_n["dev"]["n"].as_u64().unwrap() + record_n["test"]["n"].as_u64().unwrap();
    assert_eq!(n("pairs_read") as usize, pairs.len(), "{d:#}");
    // Every dev and test prompt had a pair: all of them were dropped, nothing else.
    assert_eq!(n("dropped_eval_prompts"), eval_records, "{d:#}");
    assert_eq!(
        n("pairs_train") + n("pairs_heldout") + n("dropped_eval_prompts") + n("dropped_unusable"),
        n("pairs_read")
    );
    assert!(
        n("pairs_heldout") > 0 && n("pairs_train") > n("pairs_heldout"),
        "{d:#}"
    );
    // At the reference every margin is 0 (loss ln 2); training ranks held-out pairs right.
    let f = |part: &str, k: &str| d[part][k].as_f64().unwrap();
    assert!(
        (f("before", "loss") - std::f64::consts::LN_2).abs() < 1e-3,
        "{d:#}"
    );
    assert!(f("after", "loss") < f("before", "loss"), "{d:#}");
    assert!(f("after", "accuracy") > 0.9, "{d:#}");

    // Changed pairs train the DPO model again, and nothing else.
    pairs.truncate(pairs.len() - 1);
    std::fs::write(dir.join("data/pairs.jsonl"), pairs.join("\n") + "\n").unwrap();
    let again = run_json(dir);
    let cached: Vec<(&str, bool)> = again["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["model"].as_str().unwrap(), r["cached"].as_bool().unwrap()))
        .collect();
    assert_eq!(
        cached,
        [("base", true), ("tuned", true), ("preferred", false)],
        "{again:#}"
    );
    // Answer review: a sheet of the base model's answers on training prompts (varied: it is
    // untrained), filled by two reviewers who disagree on one mark, becomes preference pairs and
    // an agreement report.
    let o = hone(
        dir,
        &["--json", "review", "answers", "--model", "base", "--n", "6"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let sheet: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(sheet["prompts"], 6, "{sheet:#}");
    let sheet_path = std::path::PathBuf::from(sheet["path"].as_str().unwrap());
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&sheet_path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len() as u64, sheet["answers"].as_u64().unwrap());
    let fill = |flip_first: bool| -> String {
        lines
            .iter()
            .enumerate()
            .map(|(i, l)| {
                let mut l = l.clone();
                let strong = (i % 2 == 0) != (flip_first && i == 0);
                l["mark"] = serde_json::json!(if strong { "strong" } else { "weak" });
                l["tone"] = serde_json::json!(i % 5 + 1);
                l.to_string()
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    let import_as = |who: &str, text: String| {
        let f = dir.join(format!("reviews/{who}.jsonl"));
        std::fs::write(&f, text).unwrap();
        std::process::Command::new(env!("CARGO_BIN_EXE_hone"))
            .arg("-C")
            .arg(dir)
            .args(["review", "import", f.to_str().unwrap()])
            .env("HONE_USER", who)
            .output()
            .unwrap()
    };
    // Pairs before any review: an error that says what to do, not an empty file.
    let o = hone(dir, &["review", "pairs", "--out", "reviews/pairs.jsonl"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("hone review import"), "{}", stderr(&o));
    assert!(!dir.join("reviews/pairs.jsonl").exists());
    assert!(import_as("ana", fill(false)).status.success());
    assert!(import_as("ben", fill(true)).status.success());
    let o = hone(
        dir,
        &["--json", "review", "pairs", "--out", "reviews/pairs.jsonl"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let p: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(p["pairs"]["conflicting"], 1, "{p:#}");
    // Pairs: every agreed strong answer against every agreed weak one of the same prompt.
    let mut expected = 0;
    for item in lines
        .iter()
        .map(|l| l["item"].as_str().unwrap().to_string())
        .collect::<std::collections::BTreeSet<_>>()
    {
        let of = |strong: bool| {
            (1..lines.len())
                .filter(|&i| lines[i]["item"] == item.as_str() && (i % 2 == 0) == strong)
                .count()
        };
        expected += of(true) * of(false);
    }
    assert_eq!(
        p["pairs"]["pairs"].as_array().unwrap().len(),
        expected,
        "{p:#}"
    );
    let written = std::fs::read_to_string(dir.join("reviews/pairs.jsonl")).unwrap();
    assert_eq!(written.lines().count(), expected);
    assert!(expected > 0, "the sheet gave no prompt two answers: {p:#}");
    // Ids name both answers by short run id and answer id.
    for line in written.lines().take(1) {
        let first: serde_json::Value = serde_json::from_str(line).unwrap();
        let id = first["id"].as_str().unwrap();
        assert!(
            id.contains(&format!("{}:", &sheet["run"].as_str().unwrap()[..12]))
                && id.contains('>')
                && id.len() < 80,
            "{id}"
        );
    }
    // Identical tone ratings agree perfectly; one flipped mark of n makes κ fall below 1.
    let kappa = |on: &str| {
        p["pairs"]["agreement"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["on"] == on)
            .unwrap_or_else(|| panic!("{p:#}"))["kappa"]
            .as_f64()
    };
    assert_eq!(kappa("tone"), Some(1.0), "{p:#}");
    assert!(kappa("mark").is_some_and(|k| k < 1.0 && k > 0.0), "{p:#}");
    // A rating off the scale is refused with its line, and nothing is recorded.
    let mut bad: Vec<String> = fill(false).lines().map(String::from).collect();
    bad[1] = bad[1].replace("\"tone\":2", "\"tone\":7");
    let o = import_as("cid", bad.join("\n"));
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("cid.jsonl:2") && stderr(&o).contains("not 1 to 5"),
        "{}",
        stderr(&o)
    );

    // A pairs file that is not there is named before anything trains.
    let toml = std::fs::read_to_string(dir.join("hone.toml")).unwrap();
    std::fs::write(
        dir.join("hone.toml"),
        toml.replace("data/pairs.jsonl", "data/nope.jsonl"),
    )
    .unwrap();
    let o = hone(dir, &["run"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("data/nope.jsonl"), "{}", stderr(&o));
}

/// Distillation between language models: a LoRA student on the teacher's base (same tokenizer)
/// learns its token distributions; a student pre-trained in the project (its own tokenizer) learns
/// from its answers. Both report retention and speed-up against the teacher's own test figures.
#[test]
fn students_learn_from_a_teacher_by_tokens_or_by_its_answers() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let students = "\n[[model]]\nname = \"by-tokens\"\nkind = \"lm\"\npath = \"models/tiny.gguf\"\nmethod = \"lora\"\n\n[model.params]\ndistill_from = \"tuned\"\ndistill_alpha = 0.0\nepochs = 30\nlr = 0.02\nbatch_size = 8\nmax_new_tokens = 24\n\n[[model]]\nname = \"by-answers\"\nkind = \"lm\"\nmethod = \"pretrain\"\n\n[model.params]\ndistill_from = \"tuned\"\nhidden = 32\nlayers = 2\nheads = 4\nkv_heads = 2\nffn = 64\nvocab_size = 400\nepochs = 40\nlr = 0.01\nbatch_size = 8\nmax_new_tokens = 24\n";
    project(dir, "sft", students);
    std::fs::create_dir_all(dir.join("graders")).unwrap();
    std::fs::write(
        dir.join("graders/exact.toml"),
        "type = \"string_check\"\nreference = \"{{ item.reference }}\"\noperation = \"eq\"\n",
    )
    .unwrap();
    let out = run_json(dir);
    let listing: serde_json::Value =
        serde_json::from_slice(&hone(dir, &["--json", "runs"]).stdout).unwrap();
    let find = |name: &str| {
        listing
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["model"] == name)
            .unwrap_or_else(|| panic!("no {name}: {out:#}"))
            .clone()
    };
    let rouge = |r: &serde_json::Value| {
        r["record"]["generation"]["test"]["rouge_l"]["estimate"]
            .as_f64()
            .unwrap()
    };
    let (base, teacher) = (find("base"), find("tuned"));
    for (name, mode) in [("by-tokens", "token"), ("by-answers", "sequence")] {
        let r = find(name);
        let d = &r["record"]["train"]["report"]["distill"];
        assert_eq!(d["mode"], mode, "{d:#}");
        assert_eq!(d["teacher_run"], teacher["id"], "{d:#}");
        assert_eq!(r["config"]["params"]["teacher_run"], teacher["id"]);
        // What the student kept is its ROUGE-L over the teacher's; it learned more than the
        // untrained base shows.
        let retention = d["retention"].as_f64().unwrap();
        assert!(
            (retention - rouge(&r) / rouge(&teacher)).abs() < 1e-9,
            "{d:#}"
        );
        assert!(
            rouge(&r) > rouge(&base),
            "{name}: {} vs base {}",
            rouge(&r),
            rouge(&base)
        );
        assert!(d["speedup"].as_f64().unwrap() > 0.0, "{d:#}");
    }
    let report_md = std::fs::read_dir(dir.join("reports"))
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect::<String>();
    assert!(
        report_md.contains("## Distillation")
            && report_md.contains("`by-tokens` learned from `tuned` (token-level KL"),
        "{report_md}"
    );
    // ROUGE-L retention can hide a loss on what a grader checks: the report gives the grader's too.
    let pass = |name: &str| {
        out["runs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["model"] == name)
            .unwrap()["graders"]["exact"]["pass_rate"]["estimate"]
            .as_f64()
            .unwrap()
    };
    let (s, t) = (pass("by-answers"), pass("tuned"));
    let line = format!(
        "retention of grader `exact` pass rate {:.4} ({s:.4} / {t:.4})",
        s / t
    );
    assert!(report_md.contains(&line), "{line}\n{report_md}");
    let seq = find("by-answers");
    assert!(
        seq["record"]["train"]["report"]["distill"]["teacher_answer_seconds"]
            .as_f64()
            .unwrap()
            > 0.0
    );
    // A teacher listed after its student is named before anything trains.
    let toml = std::fs::read_to_string(dir.join("hone.toml")).unwrap();
    std::fs::write(
        dir.join("hone.toml"),
        toml.replacen(
            "distill_from = \"tuned\"",
            "distill_from = \"by-answers\"",
            1,
        ),
    )
    .unwrap();
    let o = hone(dir, &["run"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("names no language model listed before it"),
        "{}",
        stderr(&o)
    );
}

/// Chat records (`messages`): earlier turns are curated like the prompt (an e-mail address in one is
/// masked), every assistant turn trains (two marked spans in `data check`), the run trains and
/// scores, and `predict` answers a conversation at its last user message.
#[test]
fn chat_records_train_on_every_answer_and_predict_answers_conversations() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write_data(dir);
    let mut lines = Vec::new();
    for (i, (intent, reply)) in INTENTS.iter().cycle().take(40).enumerate() {
        const WORDS: [&str; 13] = [
            "order", "parcel", "account", "card", "invoice", "address", "delivery", "payment",
            "voucher", "login", "courier", "receipt", "warranty",
        ];
        let salad: Vec<&str> = (0..7)
            .map(|k| WORDS[(i * 5 + k * k * 3 + i / 3) % 13])
            .collect();
        let first = if i == 0 {
            "hi, I am ann.lee@example.com".to_string()
        } else {
            format!("{} {}", OPENERS[i % 6], salad.join(" "))
        };
        let conv = serde_json::json!([
            {"role": "system", "content": "You answer support tickets."},
            {"role": "user", "content": first},
            {"role": "assistant", "content": "How can I help?"},
            {"role": "user", "content": format!("{intent} {}", TAILS[i % 5])},
            {"role": "assistant", "content": reply},
        ]);
        lines.push(serde_json::json!({"id": format!("c{i}"), "conversation": conv}).to_string());
    }
    std::fs::write(dir.join("data/chats.jsonl"), lines.join("\n") + "\n").unwrap();
    std::fs::write(
        dir.join("hone.toml"),
        "[task]\nname = \"chats\"\nkind = \"generate\"\n\n[policy]\ncontamination = \"drop_train\"\n\n[[source]]\nname = \"chats\"\npath = \"data/chats.jsonl\"\nfields = { messages = \"conversation\" }\n\n[split]\ntest = 0.2\ndev = 0.1\n\n[[model]]\nname = \"tuned\"\nkind = \"lm\"\npath = \"models/tiny.gguf\"\nmethod = \"lora\"\n\n[model.params]\nepochs = 2\nlr = 0.01\nmax_new_tokens = 8\n",
    )
    .unwrap();
    let o = hone(dir, &["data", "clean"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = hone(dir, &["--json", "data", "show", "--limit", "100"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let shown = stdout(&o);
    assert!(
        !shown.contains("ann.lee@example.com") && shown.contains("<EMAIL>"),
        "{shown}"
    );
    assert!(
        shown.contains("How can I help?"),
        "the turns are shown: {shown}"
    );
    let o = hone(dir, &["data", "check"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let check = stdout(&o);
    assert_eq!(
        check.matches("<|im_end|>]]").count(),
        2,
        "both answers train:\n{check}"
    );
    assert!(check.contains("[[How can I help?<|im_end|>]]"), "{check}");
    // Suites: a case no answer can fail and one no answer can pass, gated by tag.
    std::fs::create_dir_all(dir.join("suites")).unwrap();
    std::fs::write(
        dir.join("suites/checks.jsonl"),
        "{\"id\": \"s1\", \"prompt\": \"refund please\", \"expect_not_contains\": \"QX-NEVER-42\", \"tags\": [\"sure\"]}\n{\"id\": \"s2\", \"messages\": [{\"role\": \"user\", \"content\": \"hi\"}, {\"role\": \"assistant\", \"content\": \"How can I help?\"}, {\"role\": \"user\", \"content\": \"cancel\"}], \"expect_contains\": [\"QX-NEVER-42\"], \"tags\": [\"never\"]}\n",
    )
    .unwrap();
    let toml = std::fs::read_to_string(dir.join("hone.toml")).unwrap();
    std::fs::write(
        dir.join("hone.toml"),
        toml + "\n[success]\nsure_pass_rate = \">= 1.0\"\n",
    )
    .unwrap();
    let out = run_json(dir);
    assert_eq!(out["runs"].as_array().unwrap().len(), 2, "{out:#}");
    assert_eq!(out["gates_pass"], true, "{out:#}");
    let o = hone(dir, &["--json", "runs"]);
    let listing: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    for r in listing.as_array().unwrap() {
        let tags = &r["record"]["suites"]["by_tag"];
        assert_eq!(tags["sure"]["accuracy"], 1.0, "{tags:#}");
        assert_eq!(tags["never"]["accuracy"], 0.0, "{tags:#}");
        assert_eq!(r["record"]["suites"]["n"], 2);
    }

    let ask = dir.join("ask.jsonl");
    let conv = serde_json::json!({"id": "x1", "messages": [
        {"role": "user", "content": "hello"},
        {"role": "assistant", "content": "How can I help?"},
        {"role": "user", "content": "refund please"},
    ]});
    std::fs::write(&ask, format!("{conv}\n")).unwrap();
    let o = hone(dir, &["predict", ask.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let answer: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(answer["id"], "x1");
    assert!(answer["completion"].is_string());
    // A conversation that already ends with an answer: refused, naming the line and field.
    let done = serde_json::json!({"messages": [
        {"role": "user", "content": "hello"},
        {"role": "assistant", "content": "hi"},
    ]});
    std::fs::write(&ask, format!("{conv}\n{done}\n")).unwrap();
    let o = hone(dir, &["predict", ask.to_str().unwrap()]);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(e.contains(":2") && e.contains("messages"), "{e}");
}

/// A Hugging Face model directory as the base: `path` names the directory, LoRA trains on it, and
/// the run records the directory's fingerprint (changing a weight file is then refused by predict).
#[test]
fn a_hugging_face_directory_is_a_base_model() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    project(dir, "lora", "");
    let lm = hone_lm::Lm::load(&dir.join("models/tiny.gguf")).unwrap();
    hone_lm::hf::save_dir(&lm, &dir.join("models/tiny-hf")).unwrap();
    let toml = std::fs::read_to_string(dir.join("hone.toml")).unwrap();
    std::fs::write(
        dir.join("hone.toml"),
        toml.replace("models/tiny.gguf", "models/tiny-hf")
            .replace("epochs = 60", "epochs = 2"),
    )
    .unwrap();
    let out = run_json(dir);
    let names: Vec<&str> = out["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["model"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["base", "tuned"], "{out:#}");
    let ask = dir.join("ask.txt");
    std::fs::write(&ask, "hi, refund please\n").unwrap();
    let o = hone(dir, &["predict", "--model", "tuned", ask.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    // The base changed under the run: predict refuses rather than answer with other weights.
    let cfg = dir.join("models/tiny-hf/config.json");
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(&cfg).unwrap()).unwrap();
    v["rms_norm_eps"] = serde_json::json!(1e-6);
    std::fs::write(&cfg, v.to_string()).unwrap();
    let o = hone(dir, &["predict", "--model", "tuned", ask.to_str().unwrap()]);
    assert!(!o.status.success(), "{}", stdout(&o));
    assert!(
        stderr(&o).contains("changed since the run"),
        "{}",
        stderr(&o)
    );
}
