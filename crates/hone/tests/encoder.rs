//! `kind = "encoder"` models in `hone run` on a tiny random BERT written in code: the three methods train,
//! evaluate and predict; truncation is counted; frozen embeddings are cached in the store across runs;
//! a missing model directory is a clear error.

mod common;

use std::path::Path;

use common::{hone, stderr, stdout};

fn project() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    hone_train::demo::write_project(dir.path(), 7, 240).unwrap();
    hone_encoder::testing::write_tiny_model(&dir.path().join("tiny-bert"), 5).unwrap();
    let p = dir.path().join("hone.toml");
    let t = std::fs::read_to_string(&p).unwrap().replace(
        "on_bad_record = \"quarantine\"",
        "on_bad_record = \"quarantine\"\ncontamination = \"drop_train\"",
    );
    std::fs::write(&p, t).unwrap();
    std::fs::write(
        dir.path().join("unlabelled.txt"),
        "my card is lost\n{\"text\": \"where is my refund\"}\nplease help me\n",
    )
    .unwrap();
    dir
}

fn set_models(dir: &Path, models: &str) {
    let p = dir.join("hone.toml");
    let t = std::fs::read_to_string(&p).unwrap();
    let start = t.find("[[model]]").unwrap();
    let end = t.find("[costs]").unwrap();
    let t = format!("{}{}\n{}", &t[..start], models, &t[end..]);
    std::fs::write(p, t).unwrap();
}

const MODELS: &str = r#"
[[model]]
name = "frozen"
kind = "encoder"
path = "tiny-bert"
method = "frozen"
pooling = "mean"
[model.params]
max_length = 12
c_grid = [1.0, 100.0]

[[model]]
name = "tuned"
kind = "encoder"
path = "tiny-bert"
method = "finetune"
pooling = "cls"
[model.params]
max_length = 12
finetune = { epochs = 2, batch_size = 16, lr = 0.001, patience = 0, probe_init = 10.0 }

[[model]]
name = "student"
kind = "ngram"
[model.params]
distill_from = "tuned"
distill_temperature = 2.0
distill_alpha = 0.5
distill_unlabelled = "unlabelled.txt"

[[model]]
name = "fewshot"
kind = "encoder"
path = "tiny-bert"
method = "setfit"
[model.params]
max_length = 12
contrastive = { iterations = 1, batch_size = 16, lr = 0.001 }
"#;

fn run(dir: &Path) -> serde_json::Value {
    let o = hone(dir, &["--json", "--threads", "1", "run"]);
    assert!(
        matches!(o.status.code(), Some(0) | Some(3)),
        "exit {:?}: {}",
        o.status.code(),
        stderr(&o)
    );
    serde_json::from_slice(&o.stdout).unwrap()
}

fn record(dir: &Path, model: &str) -> serde_json::Value {
    let o = hone(dir, &["--json", "runs"]);
    let runs: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    runs.as_array()
        .unwrap()
        .iter()
        .rev()
        .find(|r| r["model"] == model)
        .cloned()
        .unwrap_or_else(|| panic!("no run of {model}: {runs}"))
}

#[test]
fn the_three_encoder_methods_train_evaluate_and_predict() {
    let dir = project();
    set_models(dir.path(), MODELS);
    let out = run(dir.path());
    let runs = out["runs"].as_array().unwrap();
    let names: Vec<&str> = runs.iter().map(|r| r["model"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        ["majority", "frozen", "tuned", "student", "fewshot"],
        "{out}"
    );
    for r in runs {
        let acc = r["test"]["accuracy"]["estimate"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&acc), "{r}");
    }
    let frozen = record(dir.path(), "frozen");
    let rep = &frozen["record"]["train"]["report"];
    assert_eq!(rep["method"], "frozen", "{rep}");
    assert!(
        rep["train_truncated"].as_u64().unwrap() > 0,
        "max_length 12 cuts demo texts: {rep}"
    );
    assert!(rep["test_truncated"].as_u64().is_some(), "{rep}");
    assert_eq!(rep["cached"], 0, "first run embeds everything: {rep}");
    assert!(rep["head"]["tried"].as_array().unwrap().len() == 2, "{rep}");
    assert!(rep["temperature"].as_f64().unwrap() > 0.0);
    // The default `fold_dev` refits a frozen encoder's head on train + dev with the C dev chose.
    assert_eq!(frozen["record"]["train"]["dev_folded"], true);
    assert_eq!(
        record(dir.path(), "tuned")["record"]["train"]["dev_folded"],
        false
    );
    let tuned = record(dir.path(), "tuned");
    let ft = &tuned["record"]["train"]["report"]["finetune"];
    assert_eq!(ft["epochs"].as_array().unwrap().len(), 2, "{ft}");
    let student = record(dir.path(), "student");
    let d = &student["record"]["test"]["distillation"];
    assert_eq!(d["teacher"], "tuned", "{d}");
    assert_eq!(d["n_unlabelled"], 3, "{d}");
    assert_eq!(d["alpha"], 0.5, "{d}");
    assert!(d["retention"].as_f64().is_some(), "{d}");
    assert_eq!(
        student["record"]["train"]["report"]["distillation"]["losses"]
            .as_array()
            .unwrap()
            .len(),
        10
    );
    let few = record(dir.path(), "fewshot");
    assert!(few["record"]["train"]["report"]["contrastive_losses"].is_array());

    // The frozen encoder's model card names its base model and carries the record's figures.
    let o = hone(dir.path(), &["--json", "card", "--model", "frozen"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let w: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let card = std::fs::read_to_string(dir.path().join(w["markdown"].as_str().unwrap())).unwrap();
    let acc = &frozen["record"]["test"]["accuracy"];
    let row = format!(
        "| accuracy | {:.4} | [{:.4}, {:.4}] |",
        acc["estimate"].as_f64().unwrap(),
        acc["lo"].as_f64().unwrap(),
        acc["hi"].as_f64().unwrap()
    );
    assert!(card.contains(&row), "missing {row}\n{card}");
    assert!(
        card.contains("base_model: \"") && card.contains("| method | encoder (frozen) |"),
        "{card}"
    );

    // Predict with each encoder model, from the stored artifacts.
    let input = dir.path().join("in.txt");
    std::fs::write(&input, "my card is lost\nwhere is my refund\n").unwrap();
    for m in ["frozen", "tuned", "fewshot"] {
        let o = hone(
            dir.path(),
            &["--json", "predict", input.to_str().unwrap(), "--model", m],
        );
        assert_eq!(o.status.code(), Some(0), "{m}: {}", stderr(&o));
        let lines: Vec<&str> = std::str::from_utf8(&o.stdout).unwrap().lines().collect();
        assert_eq!(lines.len(), 2, "{m}: {}", stdout(&o));
        let v: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
        assert!(v["probability"].as_f64().unwrap() > 0.0, "{v}");
    }

    // Export: the fine-tuned cls model as a Hugging Face classifier, the frozen one as sentence-transformers.
    let hf = dir.path().join("export-tuned");
    let o = hone(
        dir.path(),
        &[
            "--json",
            "export",
            "--model",
            "tuned",
            "--out",
            hf.to_str().unwrap(),
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["format"], "hf-classifier");
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(hf.join("config.json")).unwrap()).unwrap();
    assert_eq!(cfg["architectures"][0], "BertForSequenceClassification");
    assert!(cfg["id2label"]["0"].is_string() && cfg["label2id"].is_object());
    let bytes = std::fs::read(hf.join("model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let names: Vec<String> = st.names().into_iter().map(String::from).collect();
    for n in [
        "bert.embeddings.word_embeddings.weight",
        "bert.pooler.dense.weight",
        "classifier.weight",
    ] {
        assert!(names.iter().any(|x| x == n), "{n} missing from {names:?}");
    }
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    assert_eq!(
        meta.metadata()
            .as_ref()
            .and_then(|m| m.get("format"))
            .map(String::as_str),
        Some("pt"),
        "transformers needs the pt format tag"
    );
    let stdir = dir.path().join("export-frozen");
    let o = hone(
        dir.path(),
        &[
            "--json",
            "export",
            "--model",
            "frozen",
            "--out",
            stdir.to_str().unwrap(),
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    for f in [
        "modules.json",
        "1_Pooling/config.json",
        "2_Normalize",
        "head.safetensors",
        "head.json",
    ] {
        assert!(stdir.join(f).exists(), "{f} missing");
    }
    // Not an encoder, or an existing directory: clear usage errors, nothing written.
    let o = hone(
        dir.path(),
        &[
            "export",
            "--model",
            "student",
            "--out",
            dir.path().join("x").to_str().unwrap(),
        ],
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(!dir.path().join("x").exists());
    let o = hone(
        dir.path(),
        &["export", "--model", "tuned", "--out", hf.to_str().unwrap()],
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));

    // A new head setting retrains the frozen model, but every embedding comes from the cache.
    set_models(
        dir.path(),
        &MODELS.replace("c_grid = [1.0, 100.0]", "c_grid = [10.0]"),
    );
    let out = run(dir.path());
    let frozen_run = out["runs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["model"] == "frozen")
        .unwrap();
    assert_eq!(frozen_run["cached"], false);
    let rep = &record(dir.path(), "frozen")["record"]["train"]["report"];
    assert_eq!(rep["embedded"], 0, "all from the cache: {rep}");
    assert!(rep["cached"].as_u64().unwrap() > 100, "{rep}");
    // The fine-tuned and few-shot runs are unchanged, so cached whole.
    for r in out["runs"].as_array().unwrap() {
        if r["model"] != "frozen" {
            assert_eq!(r["cached"], true, "{r}");
        }
    }
}

#[test]
fn a_gpu_device_in_a_cpu_build_is_a_usage_error_not_a_silent_cpu_run() {
    if cfg!(feature = "cuda") {
        return;
    }
    let dir = project();
    set_models(
        dir.path(),
        "[[model]]\nname = \"enc\"\nkind = \"encoder\"\npath = \"tiny-bert\"\n[model.params]\nmax_length = 12\ndevice = \"cuda:0\"\n",
    );
    let o = hone(dir.path(), &["run"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("cuda:0") && err.contains("--features cuda"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn a_missing_model_directory_is_a_clear_usage_error() {
    let dir = project();
    set_models(
        dir.path(),
        "[[model]]\nname = \"enc\"\nkind = \"encoder\"\npath = \"no-such-model\"\n",
    );
    let o = hone(dir.path(), &["run"]);
    assert_ne!(o.status.code(), Some(0));
    let err = stderr(&o);
    assert!(
        err.contains("no-such-model") && err.contains("config.json"),
        "{err}"
    );
    assert!(
        err.contains("get-minilm"),
        "the hint says how to get a model: {err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn data_scan_can_use_frozen_encoder_features() {
    let dir = project();
    let p = dir.path().join("hone.toml");
    let t = std::fs::read_to_string(&p).unwrap().replace(
        "contamination = \"drop_train\"",
        "contamination = \"drop_train\"\nscan_encoder = \"tiny-bert\"",
    );
    std::fs::write(&p, t).unwrap();
    let o = hone(dir.path(), &["--json", "data", "scan"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(v.is_array(), "{v}");
    // The scan's embeddings went into the store's cache: a second scan embeds nothing new and agrees.
    let o2 = hone(dir.path(), &["--json", "data", "scan"]);
    assert_eq!(o2.status.code(), Some(0), "{}", stderr(&o2));
    let v2: serde_json::Value = serde_json::from_slice(&o2.stdout).unwrap();
    assert_eq!(v, v2, "same features, same suspects");
    // A wrong path is a clear error.
    let t = std::fs::read_to_string(&p)
        .unwrap()
        .replace("scan_encoder = \"tiny-bert\"", "scan_encoder = \"nope\"");
    std::fs::write(&p, t).unwrap();
    let o = hone(dir.path(), &["data", "scan"]);
    assert_ne!(o.status.code(), Some(0));
    assert!(stderr(&o).contains("nope"), "{}", stderr(&o));
}
